//! Cgroup limits of the agent (v2, and v1 on older or hybrid hosts) from `proc/self/cgroup` and
//! the limit files under `sys/fs/cgroup`.
//!
//! The `parse_*` functions are pure (text in, value or [`ParseError`] out); the `read_*` functions
//! find and read the files under a system root. A limit applies along the whole path: the
//! tightest level wins.

use std::fs;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::ParseError;

/// A cgroup v1 memory limit at or above this is "no limit" (the kernel writes `i64::MAX` rounded
/// down to a page).
const V1_UNLIMITED: u64 = 1 << 62;

/// The agent's cgroups, from `proc/self/cgroup`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupPaths {
    /// The unified (v2) hierarchy path, from the `0::/path` line.
    pub v2: Option<String>,
    /// The v1 `memory` controller path.
    pub v1_memory: Option<String>,
    /// The v1 `cpu` controller path (`cpu` or `cpu,cpuacct`).
    pub v1_cpu: Option<String>,
}

/// Parses `proc/self/cgroup` (`hierarchy-id:controllers:path` lines); other lines are ignored.
pub fn parse_proc_cgroup(text: &str) -> CgroupPaths {
    let mut paths = CgroupPaths::default();
    for line in text.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(id), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        if !path.starts_with('/') {
            continue;
        }
        if id == "0" && controllers.is_empty() {
            paths.v2 = Some(path.to_string());
        }
        for controller in controllers.split(',') {
            match controller {
                "memory" => paths.v1_memory = Some(path.to_string()),
                "cpu" => paths.v1_cpu = Some(path.to_string()),
                _ => {}
            }
        }
    }
    paths
}

/// Parses cgroup v2 `memory.max` (`max` or a number of bytes); `None` is no limit.
///
/// # Errors
/// [`ParseError::Malformed`] for anything else.
pub fn parse_memory_max(text: &str) -> Result<Option<u64>, ParseError> {
    match text.trim() {
        "max" => Ok(None),
        n => n.parse().map(Some).map_err(|_| ParseError::Malformed {
            file: "memory.max",
            expected: "max or a number of bytes",
            found: n.to_string(),
        }),
    }
}

/// Parses cgroup v2 `cpu.max` (`max PERIOD` or `QUOTA PERIOD`) to a number of cores,
/// `ceil(quota / period)`; `None` is no limit.
///
/// # Errors
/// [`ParseError::Malformed`] for anything else, a zero period included.
pub fn parse_cpu_max(text: &str) -> Result<Option<u32>, ParseError> {
    let malformed = || ParseError::Malformed {
        file: "cpu.max",
        expected: "max PERIOD or QUOTA PERIOD",
        found: text.trim().to_string(),
    };
    let mut parts = text.split_whitespace();
    let (Some(quota), period, None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(malformed());
    };
    let period: u64 = match period {
        Some(p) => p.parse().map_err(|_| malformed())?,
        None => 100_000,
    };
    if period == 0 {
        return Err(malformed());
    }
    if quota == "max" {
        return Ok(None);
    }
    let quota: u64 = quota.parse().map_err(|_| malformed())?;
    Ok(Some(cores_from_quota(quota, period)))
}

fn cores_from_quota(quota: u64, period: u64) -> u32 {
    u32::try_from(quota.div_ceil(period).max(1)).unwrap_or(u32::MAX)
}

/// Parses cgroup v1 `memory.limit_in_bytes`; `None` is no limit.
///
/// # Errors
/// [`ParseError::Malformed`] when it is not a number.
pub fn parse_v1_memory_limit(text: &str) -> Result<Option<u64>, ParseError> {
    let value: u64 = text.trim().parse().map_err(|_| ParseError::Malformed {
        file: "memory.limit_in_bytes",
        expected: "a number of bytes",
        found: text.trim().to_string(),
    })?;
    Ok((value < V1_UNLIMITED).then_some(value))
}

/// Parses cgroup v1 `cpu.cfs_quota_us` and `cpu.cfs_period_us` to a number of cores; `None` is no
/// limit (quota `-1`).
///
/// # Errors
/// [`ParseError::Malformed`] when either is not a number or the period is zero.
pub fn parse_v1_cpu_quota(quota: &str, period: &str) -> Result<Option<u32>, ParseError> {
    let malformed = || ParseError::Malformed {
        file: "cpu.cfs_quota_us",
        expected: "a quota (-1 or microseconds) and a non-zero period",
        found: format!("{} {}", quota.trim(), period.trim()),
    };
    let quota: i64 = quota.trim().parse().map_err(|_| malformed())?;
    let period: u64 = period.trim().parse().map_err(|_| malformed())?;
    if period == 0 {
        return Err(malformed());
    }
    match u64::try_from(quota) {
        Ok(q) => Ok(Some(cores_from_quota(q, period))),
        Err(_) => Ok(None),
    }
}

/// The limits of the cgroup the agent runs in (the tightest along its path to the root).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CgroupLimits {
    /// `1` or `2`.
    pub version: u8,
    /// The cgroup path, as in `proc/self/cgroup`.
    pub path: String,
    /// `memory.max` (v2) or `memory.limit_in_bytes` (v1); `None` when unlimited.
    pub memory_max_bytes: Option<u64>,
    /// `ceil(quota / period)` of `cpu.max` (v2) or the CFS quota (v1); `None` when unlimited.
    pub cpu_max_cores: Option<u32>,
}

/// Where the cgroup files of the agent are, and how to read them.
struct CgroupDirs {
    version: u8,
    path: String,
    /// The cgroup's own directory first, then its ancestors up to the hierarchy root.
    memory: Vec<PathBuf>,
    cpu: Vec<PathBuf>,
}

fn locate_cgroups(root: &Path) -> Option<CgroupDirs> {
    let text = fs::read_to_string(root.join("proc/self/cgroup")).ok()?;
    let paths = parse_proc_cgroup(&text);
    let base = root.join("sys/fs/cgroup");
    // Pure v2 mounts the unified hierarchy at sys/fs/cgroup and lists only the `0::` line;
    // hybrid systems mount it at sys/fs/cgroup/unified and leave the controllers (memory, cpu)
    // on v1.
    let v1_listed = paths.v1_memory.is_some() || paths.v1_cpu.is_some();
    if let Some(path) = &paths.v2 {
        if base.join("cgroup.controllers").exists() || !v1_listed {
            let dirs = ancestors(&base, path);
            return Some(CgroupDirs {
                version: 2,
                path: path.clone(),
                memory: dirs.clone(),
                cpu: dirs,
            });
        }
    }
    if v1_listed {
        let memory = paths
            .v1_memory
            .as_deref()
            .map(|p| ancestors(&base.join("memory"), p))
            .unwrap_or_default();
        let cpu_base = ["cpu", "cpu,cpuacct"]
            .iter()
            .map(|d| base.join(d))
            .find(|d| d.is_dir())
            .unwrap_or_else(|| base.join("cpu"));
        let cpu = paths
            .v1_cpu
            .as_deref()
            .map(|p| ancestors(&cpu_base, p))
            .unwrap_or_default();
        let path = paths.v1_memory.or(paths.v1_cpu).unwrap_or_default();
        return Some(CgroupDirs {
            version: 1,
            path,
            memory,
            cpu,
        });
    }
    None
}

/// `base/a/b`, `base/a`, `base` for the cgroup path `/a/b`. Components that could leave `base`
/// (`..`) end the list: the path comes from a file and is not trusted.
fn ancestors(base: &Path, cgroup_path: &str) -> Vec<PathBuf> {
    let mut dirs = vec![base.to_path_buf()];
    let mut current = base.to_path_buf();
    for part in cgroup_path.split('/').filter(|p| !p.is_empty()) {
        if part == ".." || part == "." {
            break;
        }
        current.push(part);
        dirs.push(current.clone());
    }
    dirs.reverse();
    dirs
}

/// Reads the agent's cgroup limits under `root`. `Ok(None)` when no cgroup is found;
/// unreadable or malformed limit files are skipped and described in `warnings`.
pub fn read_cgroup_limits(root: &Path, warnings: &mut Vec<String>) -> Option<CgroupLimits> {
    let dirs = locate_cgroups(root)?;
    let mut limits = CgroupLimits {
        version: dirs.version,
        path: dirs.path.clone(),
        memory_max_bytes: None,
        cpu_max_cores: None,
    };
    for dir in &dirs.memory {
        let parsed = if dirs.version == 2 {
            read_parsed(&dir.join("memory.max"), parse_memory_max)
        } else {
            read_parsed(&dir.join("memory.limit_in_bytes"), parse_v1_memory_limit)
        };
        limits.memory_max_bytes = min_option(limits.memory_max_bytes, collect(parsed, warnings));
    }
    for dir in &dirs.cpu {
        let parsed = if dirs.version == 2 {
            read_parsed(&dir.join("cpu.max"), parse_cpu_max)
        } else {
            let quota = fs::read_to_string(dir.join("cpu.cfs_quota_us"));
            let period = fs::read_to_string(dir.join("cpu.cfs_period_us"));
            match (quota, period) {
                (Ok(q), Ok(p)) => Some(
                    parse_v1_cpu_quota(&q, &p)
                        .map_err(|e| format!("{}: {e}", dir.join("cpu.cfs_quota_us").display())),
                ),
                _ => None,
            }
        };
        limits.cpu_max_cores = min_option(limits.cpu_max_cores, collect(parsed, warnings));
    }
    Some(limits)
}

/// Memory the agent's cgroup may still take: the smallest `limit - usage` along its path, or
/// `None` when no level sets a limit.
pub fn cgroup_memory_headroom(root: &Path) -> Option<u64> {
    let dirs = locate_cgroups(root)?;
    let (limit_file, usage_file): (&str, &str) = if dirs.version == 2 {
        ("memory.max", "memory.current")
    } else {
        ("memory.limit_in_bytes", "memory.usage_in_bytes")
    };
    let mut headroom = None;
    for dir in &dirs.memory {
        let limit = fs::read_to_string(dir.join(limit_file)).ok().and_then(|t| {
            if dirs.version == 2 {
                parse_memory_max(&t).ok().flatten()
            } else {
                parse_v1_memory_limit(&t).ok().flatten()
            }
        });
        let Some(limit) = limit else { continue };
        let usage: u64 = fs::read_to_string(dir.join(usage_file))
            .ok()
            .and_then(|t| t.trim().parse().ok())
            .unwrap_or(0);
        headroom = min_option(headroom, Some(limit.saturating_sub(usage)));
    }
    headroom
}

/// Reads and parses a file; `None` when it does not exist, `Some(Err(reason))` when it cannot be
/// read or parsed.
fn read_parsed<T>(
    path: &Path,
    parse: impl Fn(&str) -> Result<Option<T>, ParseError>,
) -> Option<Result<Option<T>, String>> {
    match fs::read_to_string(path) {
        Ok(text) => Some(parse(&text).map_err(|e| format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => Some(Err(format!("{}: {e}", path.display()))),
    }
}

fn collect<T>(parsed: Option<Result<Option<T>, String>>, warnings: &mut Vec<String>) -> Option<T> {
    match parsed {
        Some(Ok(value)) => value,
        Some(Err(reason)) => {
            warnings.push(format!("ignored cgroup limit: {reason}"));
            None
        }
        None => None,
    }
}

fn min_option<T: Ord>(a: Option<T>, b: Option<T>) -> Option<T> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.min(b)),
        (a, b) => a.or(b),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn proc_cgroup_yields_v2_and_v1_paths() {
        let paths = parse_proc_cgroup("4:memory:/a/b\n1:cpu,cpuacct:/c\n0::/user.slice/x\nbad\n");
        assert_eq!(paths.v2.as_deref(), Some("/user.slice/x"));
        assert_eq!(paths.v1_memory.as_deref(), Some("/a/b"));
        assert_eq!(paths.v1_cpu.as_deref(), Some("/c"));
    }

    #[test]
    fn cpu_max_rounds_the_quota_up_to_whole_cores() {
        assert_eq!(parse_cpu_max("150000 100000\n").unwrap(), Some(2));
        assert_eq!(parse_cpu_max("100000 100000").unwrap(), Some(1));
        assert_eq!(parse_cpu_max("1000 100000").unwrap(), Some(1));
        assert_eq!(parse_cpu_max("max 100000").unwrap(), None);
    }

    #[test]
    fn malformed_cpu_max_is_a_typed_error() {
        for text in ["", "x 100000", "100 0", "100 200 300", "-5 100000"] {
            assert!(
                matches!(
                    parse_cpu_max(text),
                    Err(ParseError::Malformed {
                        file: "cpu.max",
                        ..
                    })
                ),
                "{text:?}"
            );
        }
    }

    #[test]
    fn memory_max_is_max_or_a_number() {
        assert_eq!(parse_memory_max("max\n").unwrap(), None);
        assert_eq!(parse_memory_max("536870912\n").unwrap(), Some(536_870_912));
        assert!(parse_memory_max("-1").is_err());
    }

    #[test]
    fn v1_limits_treat_the_huge_default_and_minus_one_as_unlimited() {
        assert_eq!(
            parse_v1_memory_limit("9223372036854771712\n").unwrap(),
            None
        );
        assert_eq!(parse_v1_memory_limit("1048576").unwrap(), Some(1_048_576));
        assert_eq!(parse_v1_cpu_quota("-1\n", "100000\n").unwrap(), None);
        assert_eq!(parse_v1_cpu_quota("250000", "100000").unwrap(), Some(3));
        assert!(parse_v1_cpu_quota("1", "0").is_err());
    }

    #[test]
    fn cgroup_paths_with_dot_dot_stay_under_the_hierarchy() {
        let dirs = ancestors(Path::new("/r"), "/a/../../etc");
        assert_eq!(dirs, vec![PathBuf::from("/r/a"), PathBuf::from("/r")]);
    }

    #[test]
    fn a_malformed_limit_file_is_ignored_with_a_reason() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("proc/self")).unwrap();
        fs::write(root.path().join("proc/self/cgroup"), "0::/job\n").unwrap();
        let job = root.path().join("sys/fs/cgroup/job");
        fs::create_dir_all(&job).unwrap();
        fs::write(root.path().join("sys/fs/cgroup/cgroup.controllers"), "").unwrap();
        fs::write(job.join("memory.max"), "lots\n").unwrap();
        fs::write(job.join("cpu.max"), "50000 100000\n").unwrap();
        let mut warnings = Vec::new();
        let limits = read_cgroup_limits(root.path(), &mut warnings).unwrap();
        assert_eq!(limits.memory_max_bytes, None);
        assert_eq!(limits.cpu_max_cores, Some(1));
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("memory.max"), "{warnings:?}");
    }

    #[test]
    fn the_tightest_limit_along_the_path_wins() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("proc/self")).unwrap();
        fs::write(root.path().join("proc/self/cgroup"), "0::/a/b\n").unwrap();
        let base = root.path().join("sys/fs/cgroup");
        fs::create_dir_all(base.join("a/b")).unwrap();
        fs::write(base.join("cgroup.controllers"), "").unwrap();
        fs::write(base.join("a/memory.max"), "1000\n").unwrap();
        fs::write(base.join("a/memory.current"), "900\n").unwrap();
        fs::write(base.join("a/b/memory.max"), "max\n").unwrap();
        fs::write(base.join("a/b/memory.current"), "100\n").unwrap();
        let limits = read_cgroup_limits(root.path(), &mut Vec::new()).unwrap();
        assert_eq!(limits.memory_max_bytes, Some(1000));
        assert_eq!(cgroup_memory_headroom(root.path()), Some(100));
    }
}
