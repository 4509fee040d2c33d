//! CPU and memory from the files the kernel exposes (`proc/cpuinfo`, `proc/meminfo`).
//!
//! The parsers are pure (text in, value or [`ParseError`] out); [`super::detect`] reads the files.

use std::collections::BTreeSet;

use super::ParseError;

/// What `proc/cpuinfo` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuInfoFile {
    /// The first model name found (`model name`, `Model`, `Hardware`, `cpu model` or `cpu`).
    pub model: Option<String>,
    /// Distinct `(physical id, core id)` pairs; `None` when the file does not say.
    pub cores: Option<u32>,
    /// `processor` entries.
    pub threads: u32,
}

/// Parses `proc/cpuinfo`.
///
/// # Errors
/// [`ParseError::Missing`] when no `processor` entry is found.
pub fn parse_cpuinfo(text: &str) -> Result<CpuInfoFile, ParseError> {
    const MODEL_KEYS: [&str; 5] = ["model name", "Model", "Hardware", "cpu model", "cpu"];
    let mut threads = 0u32;
    let mut model: Option<(usize, String)> = None;
    let mut cores = BTreeSet::new();
    let mut physical_id: Option<String> = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            // A blank line ends one processor's block.
            physical_id = None;
            continue;
        };
        let (key, value) = (key.trim(), value.trim());
        if key == "processor" {
            threads = threads.saturating_add(1);
        } else if key == "physical id" {
            physical_id = Some(value.to_string());
        } else if key == "core id" {
            cores.insert((physical_id.clone().unwrap_or_default(), value.to_string()));
        } else if let Some(rank) = MODEL_KEYS.iter().position(|k| *k == key) {
            let better = model.as_ref().is_none_or(|(best, _)| rank < *best);
            if better && !value.is_empty() {
                model = Some((rank, value.to_string()));
            }
        }
    }
    if threads == 0 {
        return Err(ParseError::Missing {
            file: "cpuinfo",
            field: "a processor entry",
        });
    }
    let cores = u32::try_from(cores.len()).ok().filter(|n| *n > 0);
    Ok(CpuInfoFile {
        model: model.map(|(_, m)| m),
        cores,
        threads,
    })
}

/// What `proc/meminfo` says, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemInfoFile {
    /// `MemTotal`.
    pub total_bytes: u64,
    /// `MemAvailable` (older kernels lack it: then `MemFree`).
    pub available_bytes: u64,
}

/// Parses `proc/meminfo`.
///
/// # Errors
/// [`ParseError::Missing`] without `MemTotal`, [`ParseError::Malformed`] for a value that is not
/// `<number> kB`.
pub fn parse_meminfo(text: &str) -> Result<MemInfoFile, ParseError> {
    let mut total = None;
    let mut available = None;
    let mut free = None;
    for line in text.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let slot = match key.trim() {
            "MemTotal" => &mut total,
            "MemAvailable" => &mut available,
            "MemFree" => &mut free,
            _ => continue,
        };
        *slot = Some(parse_kib(value)?);
    }
    let total_bytes = total.ok_or(ParseError::Missing {
        file: "meminfo",
        field: "MemTotal",
    })?;
    Ok(MemInfoFile {
        total_bytes,
        available_bytes: available.or(free).unwrap_or(total_bytes),
    })
}

fn parse_kib(value: &str) -> Result<u64, ParseError> {
    let malformed = || ParseError::Malformed {
        file: "meminfo",
        expected: "a number of kB",
        found: value.trim().to_string(),
    };
    let mut parts = value.split_whitespace();
    let number: u64 = parts
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(malformed)?;
    match parts.next() {
        Some("kB") | None => number.checked_mul(1024).ok_or_else(malformed),
        Some(_) => Err(malformed()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    const X86_CPUINFO: &str = "processor\t: 0\nmodel name\t: AMD EPYC\nphysical id\t: 0\n\
        core id\t\t: 0\n\nprocessor\t: 1\nmodel name\t: AMD EPYC\nphysical id\t: 0\ncore id\t\t: 0\n\n\
        processor\t: 2\nmodel name\t: AMD EPYC\nphysical id\t: 0\ncore id\t\t: 1\n\n";

    #[test]
    fn x86_cpuinfo_counts_threads_and_distinct_cores() {
        let info = parse_cpuinfo(X86_CPUINFO).unwrap();
        assert_eq!(info.model.as_deref(), Some("AMD EPYC"));
        assert_eq!(info.threads, 3);
        assert_eq!(info.cores, Some(2));
    }

    #[test]
    fn arm_cpuinfo_without_core_ids_leaves_cores_unknown() {
        let text = "processor\t: 0\nBogoMIPS\t: 108.00\nCPU part\t: 0xd08\n\n\
            processor\t: 1\nBogoMIPS\t: 108.00\n\nHardware\t: BCM2835\nModel\t\t: Raspberry Pi 4\n";
        let info = parse_cpuinfo(text).unwrap();
        assert_eq!(info.threads, 2);
        assert_eq!(info.cores, None);
        assert_eq!(info.model.as_deref(), Some("Raspberry Pi 4"));
    }

    #[test]
    fn cpuinfo_without_processors_is_a_missing_field_error() {
        assert_eq!(
            parse_cpuinfo("garbage\n\u{0}\u{1}: x\n"),
            Err(ParseError::Missing {
                file: "cpuinfo",
                field: "a processor entry"
            })
        );
    }

    #[test]
    fn meminfo_values_are_converted_from_kib() {
        let info =
            parse_meminfo("MemTotal:  1000 kB\nMemFree: 10 kB\nMemAvailable:   500 kB\n").unwrap();
        assert_eq!(info.total_bytes, 1_024_000);
        assert_eq!(info.available_bytes, 512_000);
    }

    #[test]
    fn meminfo_without_mem_available_falls_back_to_mem_free() {
        let info = parse_meminfo("MemTotal: 1000 kB\nMemFree: 10 kB\n").unwrap();
        assert_eq!(info.available_bytes, 10_240);
    }

    #[test]
    fn malformed_meminfo_values_are_typed_errors() {
        assert!(matches!(
            parse_meminfo("MemTotal: lots kB\n"),
            Err(ParseError::Malformed {
                file: "meminfo",
                ..
            })
        ));
        assert!(matches!(
            parse_meminfo("MemTotal: 18446744073709551615 kB\n"),
            Err(ParseError::Malformed { .. })
        ));
        assert!(matches!(
            parse_meminfo("MemFree: 1 kB\n"),
            Err(ParseError::Missing {
                field: "MemTotal",
                ..
            })
        ));
    }
}
