//! Giving the kernel back the executable's pages that start-up touched once.
//!
//! The agent is a 10 MiB binary, and starting it (unlocking the keystore, opening the journal,
//! detecting the capacity, connecting with TLS, benchmarking the sandbox, building the HTTP
//! client) runs code from all over it. Each first touch of a page of the binary maps it with its
//! neighbours (the kernel's fault-around, 64 KiB), so by READY about 8 MiB of the file are
//! mapped: measured on the idle agent, 6.0 MiB of its text and 1.7 MiB of its read-only data
//! were resident for 93 + 27 page faults (BENCHMARKS.md, "Agent idle footprint"). These pages
//! are clean and file-backed, so the kernel can always drop and re-read them; but they count in
//! the process's resident set and its cgroup until memory pressure reclaims them.
//!
//! [`release_startup_pages`] asks the kernel to reclaim the binary's read-only mappings now
//! (`MADV_PAGEOUT`): the idle loop then faults back only the few pages it uses. The advice keeps
//! the contents (a later access reads the same bytes from the page cache or the file), so it is
//! only a hint, never a correctness matter. The cost: the first task after it may fault some
//! code back in from the disk.

use std::io::{BufRead, BufReader};
use std::path::Path;

/// What [`release_startup_pages`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Released {
    /// Mappings advised.
    pub mappings: usize,
    /// Their total size in bytes (mapped, not necessarily resident before).
    pub bytes: usize,
}

/// Advises the kernel to reclaim the pages of every read-only mapping of our own executable
/// (text and read-only data; never a writable mapping).
///
/// # Errors
/// When `/proc/self/maps` cannot be read, or the kernel refuses the advice (`MADV_PAGEOUT`
/// needs Linux 5.4); nothing is changed then.
pub fn release_startup_pages() -> std::io::Result<Released> {
    let exe = std::fs::read_link("/proc/self/exe")?;
    let maps = BufReader::new(std::fs::File::open("/proc/self/maps")?);
    let mut released = Released::default();
    for line in maps.lines() {
        let line = line?;
        let Some((start, len)) = read_only_mapping_of(&line, &exe) else {
            continue;
        };
        advise_pageout(start, len)?;
        released.mappings += 1;
        released.bytes += len;
    }
    Ok(released)
}

/// The start and length of a `/proc/self/maps` line's mapping if it is a read-only (not
/// writable) mapping of `exe`.
fn read_only_mapping_of(line: &str, exe: &Path) -> Option<(usize, usize)> {
    let mut fields = line.split_whitespace();
    let range = fields.next()?;
    let perms = fields.next()?;
    // offset, device, inode, then the path (which may hold spaces).
    let path = line.splitn(6, char::is_whitespace).nth(5)?.trim_start();
    if perms.as_bytes().get(1) != Some(&b'-') || Path::new(path) != exe {
        return None;
    }
    let (start, end) = range.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    (end > start).then_some((start, end - start))
}

#[allow(unsafe_code)]
fn advise_pageout(start: usize, len: usize) -> std::io::Result<()> {
    // SAFETY: `start..start + len` is a mapping of this process as `/proc/self/maps` listed it a
    // moment ago: a read-only mapping of the executable, which nothing unmaps while the process
    // runs. MADV_PAGEOUT never changes memory contents (reclaimed pages are read again, with the
    // same bytes, on the next access), so no reference into the range is invalidated.
    unsafe {
        rustix::mm::madvise(
            start as *mut std::ffi::c_void,
            len,
            rustix::mm::Advice::LinuxPageOut,
        )
    }
    .map_err(std::io::Error::from)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn only_read_only_mappings_of_the_executable_are_chosen() {
        let exe = Path::new("/usr/bin/edgepool agent");
        let text =
            "55d0c0000000-55d0c0700000 r-xp 00312000 fe:00 5974893    /usr/bin/edgepool agent";
        assert_eq!(
            read_only_mapping_of(text, exe),
            Some((0x55d0c0000000, 0x700000))
        );
        let data =
            "55d0c0800000-55d0c0810000 rw-p 00a5a000 fe:00 5974893    /usr/bin/edgepool agent";
        assert_eq!(read_only_mapping_of(data, exe), None);
        let libc = "7f14ba45c000-7f14ba5b2000 r-xp 00026000 fe:00 326279 /usr/lib/libc.so.6";
        assert_eq!(read_only_mapping_of(libc, exe), None);
        let anonymous = "7f14ba22c000-7f14ba42c000 rw-p 00000000 00:00 0";
        assert_eq!(read_only_mapping_of(anonymous, exe), None);
    }

    #[test]
    fn releasing_the_pages_of_this_test_binary_keeps_it_running() {
        let released = release_startup_pages().unwrap();
        assert!(released.mappings >= 1, "{released:?}");
        // Code and constants still work after the advice.
        assert_eq!(format!("{}", 6 * 7), "42");
    }
}
