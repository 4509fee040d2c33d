//! Giving the kernel back the pages that start-up touched once.
//!
//! The agent is an 8 MiB binary, and starting it (unlocking the keystore, opening the journal,
//! detecting the capacity, connecting with TLS, benchmarking the sandbox, building the HTTP
//! client) runs code from all over it and from libc. Each first touch of a page of a mapped file
//! maps it with its neighbours (the kernel's fault-around, 64 KiB), so by READY about 8 MiB of
//! the binary and 2 MiB of libc, libm and ld.so are mapped into the process (BENCHMARKS.md,
//! "Idle RSS"). These pages are clean copies of the files, which the page cache keeps and the
//! kernel can always drop and read again; but they count in the process's resident set.
//!
//! [`release_startup_pages`] drops the process's page-table entries for every mapping that holds
//! nothing but clean file pages (`MADV_DONTNEED`): the idle loop then maps back only the pages it
//! uses, from the page cache. It also hands the heap's free pages back to the kernel
//! (`malloc_trim`).
//!
//! Why `MADV_DONTNEED`, and why it is safe here:
//! - `MADV_PAGEOUT`, used before, skips a page that another process also maps (libc's, or the
//!   binary's when two agents run) and, for file pages, works only if the caller could open the
//!   file for writing: a service user running a root-owned `/usr/bin/edgepool-agent` got nothing
//!   back from it. `MADV_DONTNEED` only unmaps: the pages stay in the page cache, shared.
//! - On a private mapping, `MADV_DONTNEED` throws away the process's own copies of pages (the
//!   ones written since mapping: relocated RELRO data, `.data`, `.bss`); the next access reads the
//!   file's bytes again. So a mapping is chosen only if it is not writable and `/proc/self/smaps`
//!   shows no anonymous (copied) page in it: every resident page is then the file's own page, and
//!   reading it again gives the same bytes, exactly as after the kernel reclaims it under memory
//!   pressure. A not-writable mapping cannot gain a copied page without an `mprotect` to
//!   writable, which this process does not do after start-up (ld.so's relocation of a library
//!   happens before it makes the RELRO part read-only, and that part then has anonymous pages).
//! - Anonymous memory, the heap, stacks and every writable mapping are never advised.

use std::io::{BufRead, BufReader};
use std::path::Path;

use rustix::mm::Advice;

/// What [`release_startup_pages`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Released {
    /// Mappings advised.
    pub mappings: usize,
    /// Their resident size before the advice, in bytes.
    pub resident_bytes: usize,
    /// Whether `malloc_trim` gave memory back to the kernel.
    pub heap_trimmed: bool,
}

/// One mapping of `/proc/self/smaps`, as far as the choice needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Mapping {
    start: usize,
    len: usize,
    /// Read-only (not writable), private, backed by a file (inode not 0, a path).
    clean_candidate: bool,
    /// The mapped file's path (empty for anonymous memory).
    path: String,
    rss_kib: usize,
    anonymous_kib: usize,
}

impl Mapping {
    /// A mapping whose resident pages are all clean file pages.
    fn is_clean_file_mapping(&self) -> bool {
        self.clean_candidate && self.anonymous_kib == 0 && self.rss_kib > 0
    }
}

/// Unmaps the clean file pages of every read-only private file mapping (the binary's and the
/// shared libraries' text and read-only data, never RELRO or any writable mapping) and trims
/// the heap.
///
/// # Errors
/// When `/proc/self/smaps` cannot be read, or the kernel refuses the advice; the mappings
/// advised before the error stay advised (which changes nothing but residency).
pub fn release_startup_pages() -> std::io::Result<Released> {
    let smaps = BufReader::new(std::fs::File::open("/proc/self/smaps")?);
    let mut mappings = Vec::new();
    for line in smaps.lines() {
        let line = line?;
        if let Some(mapping) = parse_header(&line) {
            mappings.push(mapping);
        } else if let Some(current) = mappings.last_mut() {
            if let Some(kib) = field_kib(&line, "Rss:") {
                current.rss_kib = kib;
            } else if let Some(kib) = field_kib(&line, "Anonymous:") {
                current.anonymous_kib = kib;
            }
        }
    }
    let exe = std::fs::read_link("/proc/self/exe")?;
    let mut released = Released::default();
    // Every mapping of the binary, writable ones too (a first write to `.data` reads the file):
    // read back only the page that is touched, not the read-ahead window (8 MiB on some disks).
    for mapping in mappings.iter().filter(|m| Path::new(&m.path) == exe) {
        advise(mapping.start, mapping.len, Advice::Random)?;
    }
    for mapping in mappings.iter().filter(|m| m.is_clean_file_mapping()) {
        advise(mapping.start, mapping.len, Advice::LinuxDontNeed)?;
        released.mappings += 1;
        released.resident_bytes += mapping.rss_kib * 1024;
    }
    // The page cache holds the binary in large folios (read ahead, or written by the install),
    // and a fault maps a whole cached folio: touching one function would map hundreds of KiB
    // back. Dropping the binary's cached pages that no process maps any more makes the idle
    // loop read back, 4 KiB at a time (MADV_RANDOM above), only what it runs.
    let binary = std::fs::File::open("/proc/self/exe")?;
    rustix::fs::fadvise(&binary, 0, None, rustix::fs::Advice::DontNeed)?;
    released.heap_trimmed = trim_heap();
    Ok(released)
}

/// Parses a mapping's header line of `/proc/self/smaps`
/// (`start-end perms offset dev inode [path]`); `None` for the other lines.
fn parse_header(line: &str) -> Option<Mapping> {
    let mut fields = line.split_whitespace();
    let (start, end) = fields.next()?.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    let perms = fields.next()?.as_bytes();
    let _offset = fields.next()?;
    let _device = fields.next()?;
    let inode: u64 = fields.next()?.parse().ok()?;
    if perms.len() != 4 || end <= start {
        return None;
    }
    // The path may hold spaces: it is the rest of the line.
    let path = line
        .splitn(6, char::is_whitespace)
        .nth(5)
        .map_or("", str::trim_start);
    let clean_candidate = perms[0] == b'r'
        && perms[1] == b'-'
        && perms[3] == b'p'
        && inode != 0
        && path.starts_with('/');
    Some(Mapping {
        start,
        len: end - start,
        clean_candidate,
        path: path.to_string(),
        rss_kib: 0,
        anonymous_kib: 0,
    })
}

/// The value of a `Name:   123 kB` line of smaps.
fn field_kib(line: &str, name: &str) -> Option<usize> {
    line.strip_prefix(name)?
        .trim()
        .strip_suffix("kB")?
        .trim()
        .parse()
        .ok()
}

/// `advice` is `LinuxDontNeed`, only for a mapping that [`Mapping::is_clean_file_mapping`], or
/// `Random`, for any mapping of the binary.
#[allow(unsafe_code)]
fn advise(start: usize, len: usize, advice: Advice) -> std::io::Result<()> {
    // SAFETY: `start..start + len` is a mapping of this process as `/proc/self/smaps` listed it a
    // moment ago. For MADV_DONTNEED it is private, not writable, backed by a file, and without a
    // single anonymous (copied-on-write) page: the advice only removes page-table entries of page-cache
    // pages; the next access maps the same file bytes again, so no memory content changes and no
    // reference into the range is invalidated (see the module documentation). MADV_RANDOM changes
    // only how much the kernel reads ahead on a fault, never contents.
    unsafe { rustix::mm::madvise(start as *mut std::ffi::c_void, len, advice) }
        .map_err(std::io::Error::from)
}

/// Gives the heap's free pages back to the kernel (glibc only; elsewhere nothing to do).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim_heap() -> bool {
    // SAFETY: malloc_trim takes no pointer and is thread-safe (it locks every arena).
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim_heap() -> bool {
    false
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn mapping(line: &str, rss_kib: usize, anonymous_kib: usize) -> Mapping {
        Mapping {
            rss_kib,
            anonymous_kib,
            ..parse_header(line).unwrap()
        }
    }

    #[test]
    fn only_read_only_private_file_mappings_without_copied_pages_are_chosen() {
        let text =
            "55d0c0000000-55d0c0700000 r-xp 00312000 fe:00 5974893    /usr/bin/edgepool agent";
        assert!(mapping(text, 2048, 0).is_clean_file_mapping());
        assert_eq!(parse_header(text).unwrap().len, 0x700000);
        let rodata = "7f14ba42c000-7f14ba45c000 r--p 00000000 fe:00 326279 /usr/lib/libc.so.6";
        assert!(mapping(rodata, 120, 0).is_clean_file_mapping());
        // RELRO: read-only now, but relocated (copied) pages in it.
        let relro = "55d0c0800000-55d0c0860000 r--p 00a00000 fe:00 5974893 /usr/bin/edgepool-agent";
        assert!(!mapping(relro, 380, 380).is_clean_file_mapping());
        let data = "55d0c0860000-55d0c0870000 rw-p 00a5a000 fe:00 5974893 /usr/bin/edgepool-agent";
        assert!(!mapping(data, 64, 0).is_clean_file_mapping());
        let shared = "7f14ba000000-7f14ba100000 r--s 00000000 fe:00 1234 /dev/shm/x";
        assert!(!mapping(shared, 64, 0).is_clean_file_mapping());
        let anonymous = "7f14ba22c000-7f14ba42c000 r--p 00000000 00:00 0";
        assert!(!mapping(anonymous, 64, 0).is_clean_file_mapping());
        let vdso =
            "7ffd1a3f0000-7ffd1a3f2000 r-xp 00000000 00:00 0                          [vdso]";
        assert!(!mapping(vdso, 8, 0).is_clean_file_mapping());
        assert!(parse_header("Rss:                 380 kB").is_none());
        assert_eq!(
            field_kib("Anonymous:           380 kB", "Anonymous:"),
            Some(380)
        );
        assert_eq!(field_kib("AnonHugePages:         0 kB", "Anonymous:"), None);
    }

    #[test]
    fn releasing_the_pages_of_this_test_binary_keeps_it_running_and_lowers_its_file_rss() {
        let before = rss_file_kib();
        let released = release_startup_pages().unwrap();
        assert!(released.mappings >= 1, "{released:?}");
        let after = rss_file_kib();
        assert!(
            after < before,
            "RssFile {before} KiB before, {after} KiB after"
        );
        // Code, constants and the heap still work after the advice.
        assert_eq!(format!("{}", 6 * 7), "42");
        let v: Vec<u64> = (0..100_000).collect();
        assert_eq!(v.iter().sum::<u64>(), 4_999_950_000);
    }

    fn rss_file_kib() -> usize {
        let status = std::fs::read_to_string("/proc/self/status").unwrap();
        status
            .lines()
            .find_map(|l| field_kib(l, "RssFile:"))
            .unwrap()
    }
}
