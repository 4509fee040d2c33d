//! Figures of a benchmark run: latency percentiles and CPU time per thread group (read from
//! `/proc/self/task/*/stat`, so that the report says where the time went without a profiler).

use std::collections::BTreeMap;

use serde::Serialize;

/// Percentiles of a set of durations, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Percentiles {
    /// Samples.
    pub count: usize,
    /// Median.
    pub p50: f64,
    /// 90th percentile.
    pub p90: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Largest.
    pub max: f64,
    /// Mean.
    pub mean: f64,
}

impl Percentiles {
    /// Nearest-rank percentiles of `samples` (ms); all zero when empty.
    pub fn of(mut samples: Vec<u64>) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable();
        let n = samples.len();
        let rank = |p: f64| {
            // Nearest rank: the smallest value with at least p% of the samples at or below it.
            let r = (p / 100.0 * n as f64).ceil() as usize;
            samples[r.clamp(1, n) - 1] as f64
        };
        let sum: u128 = samples.iter().map(|&s| u128::from(s)).sum();
        Self {
            count: n,
            p50: rank(50.0),
            p90: rank(90.0),
            p99: rank(99.0),
            max: samples[n - 1] as f64,
            mean: sum as f64 / n as f64,
        }
    }
}

/// CPU seconds (user + system) per thread group, by thread name with digits and a trailing
/// `-N` dropped (`rumqttd-41231` and `tokio-runtime-w` are groups).
pub type CpuByGroup = BTreeMap<String, f64>;

/// Linux reports thread times in clock ticks; every Linux configuration this runs on uses 100
/// per second (`getconf CLK_TCK`), and reading it properly needs libc.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU time of every live thread of this process, grouped by name. Empty where `/proc` is not
/// readable (not Linux).
pub fn cpu_by_thread_group() -> CpuByGroup {
    let mut groups = CpuByGroup::new();
    let Ok(dir) = std::fs::read_dir("/proc/self/task") else {
        return groups;
    };
    for entry in dir.flatten() {
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        if let Some((name, seconds)) = parse_stat(&stat) {
            *groups.entry(group_of(&name)).or_default() += seconds;
        }
    }
    groups
}

/// CPU seconds of the whole process (threads that ended included).
pub fn process_cpu_seconds() -> f64 {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| parse_stat(&s))
        .map_or(0.0, |(_, s)| s)
}

/// (comm, utime + stime in seconds) from a `stat` line; comm may contain spaces and parentheses.
fn parse_stat(stat: &str) -> Option<(String, f64)> {
    let open = stat.find('(')?;
    let close = stat.rfind(')')?;
    let name = stat.get(open + 1..close)?.to_string();
    // After ") ": state is field 3; utime and stime are fields 14 and 15.
    let rest: Vec<&str> = stat.get(close + 2..)?.split_whitespace().collect();
    let utime: u64 = rest.get(11)?.parse().ok()?;
    let stime: u64 = rest.get(12)?.parse().ok()?;
    Some((name, (utime + stime) as f64 / TICKS_PER_SECOND))
}

fn group_of(name: &str) -> String {
    let trimmed = name.trim_end_matches(|c: char| c.is_ascii_digit() || c == '-');
    if trimmed.is_empty() {
        name.to_string()
    } else {
        trimmed.to_string()
    }
}

/// `after − before` per group (threads that ended in between are missing from `after`).
pub fn cpu_delta(before: &CpuByGroup, after: &CpuByGroup) -> CpuByGroup {
    after
        .iter()
        .map(|(k, v)| (k.clone(), v - before.get(k).copied().unwrap_or(0.0)))
        .filter(|(_, v)| *v > 0.0)
        .collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_the_nearest_rank() {
        let p = Percentiles::of((1..=100).collect());
        assert_eq!((p.p50, p.p90, p.p99, p.max), (50.0, 90.0, 99.0, 100.0));
        assert_eq!(p.count, 100);
        assert!((p.mean - 50.5).abs() < 1e-9);
        assert_eq!(Percentiles::of(vec![7]).p99, 7.0);
        assert_eq!(Percentiles::of(Vec::new()).count, 0);
    }

    #[test]
    fn a_stat_line_with_spaces_in_the_name_parses() {
        let line = "42 (tokio (w) 3) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0";
        let (name, secs) = parse_stat(line).unwrap();
        assert_eq!(name, "tokio (w) 3");
        assert!((secs - 3.0).abs() < 1e-9);
    }

    #[test]
    fn thread_names_group_without_their_numbers() {
        assert_eq!(group_of("rumqttd-41231"), "rumqttd");
        assert_eq!(group_of("bench-agent"), "bench-agent");
        assert_eq!(group_of("pool-mqtt"), "pool-mqtt");
        assert_eq!(group_of("1234"), "1234");
    }

    #[test]
    fn this_process_has_cpu_time_on_linux() {
        if std::path::Path::new("/proc/self/stat").exists() {
            let mut x = 0u64;
            for i in 0..5_000_000u64 {
                x = x.wrapping_mul(31).wrapping_add(i);
            }
            assert!(x != 1);
            assert!(!cpu_by_thread_group().is_empty());
        }
    }
}
