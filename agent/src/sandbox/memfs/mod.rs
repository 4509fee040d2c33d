//! An in-memory filesystem for the guest, on wasi-common's public `WasiDir`/`WasiFile` traits.
//!
//! No host directory is ever preopened: `/iexec_in` and `/iexec_out` are [`Volume`]s held in
//! memory, so a decrypted dataset never touches the disk. Sandboxing is done here, because
//! wasi-common passes the guest's raw relative paths through: paths are resolved with a stack of
//! directories and anything absolute or climbing above the preopen is refused with `EPERM`.
//! `/iexec_in` is read-only (`EROFS` on any change); `/iexec_out` counts bytes and entries (files
//! and directories, so empty files cannot flood it) and stops the guest when either runs over.
//!
//! Every call completes at once: wasmi_wasi polls each host call once and cannot wait.
//!
//! # Layout
//! - `volume`: nodes, quota and path resolution.
//! - `dir`: [`MemDir`], the directory calls.
//! - `file`: [`MemFile`], the open-file calls.

mod dir;
mod file;
mod volume;

pub use dir::MemDir;
pub use file::MemFile;
pub use volume::{Quota, QuotaExceeded, Volume, MAX_NAME_BYTES, MAX_PATH_BYTES};

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::io::{IoSlice, IoSliceMut, SeekFrom};
    use std::sync::Arc;
    use std::time::{Duration, UNIX_EPOCH};

    use wasi_common::dir::{OpenResult, ReaddirCursor, WasiDir};
    use wasi_common::file::{FdFlags, FileType, OFlags, WasiFile};
    use wasi_common::snapshots::preview_1::error::Errno;
    use wasi_common::Error;

    use super::*;

    /// Polls a future that never suspends (as wasmi_wasi does).
    fn now<F: std::future::Future>(future: F) -> F::Output {
        let mut future = std::pin::pin!(future);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        match future.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(value) => value,
            std::task::Poll::Pending => panic!("a memfs call suspended"),
        }
    }

    fn errno_of(error: Error) -> Errno {
        error.downcast().unwrap()
    }

    fn out_volume(max_bytes: u64, max_entries: u64) -> Arc<Volume> {
        let quota = Quota {
            max_bytes,
            max_entries,
        };
        Arc::new(Volume::new(2, true, Some(quota), UNIX_EPOCH))
    }

    fn in_volume() -> Arc<Volume> {
        let volume = Volume::new(1, false, None, UNIX_EPOCH + Duration::from_secs(7));
        volume.add_root_file("data.txt", b"hello".to_vec()).unwrap();
        Arc::new(volume)
    }

    fn open(dir: &MemDir, path: &str, oflags: OFlags, write: bool) -> Result<OpenResult, Error> {
        now(dir.open_file(false, path, oflags, true, write, FdFlags::empty()))
    }

    fn open_file(dir: &MemDir, path: &str, oflags: OFlags, write: bool) -> Box<dyn WasiFile> {
        match open(dir, path, oflags, write).unwrap() {
            OpenResult::File(file) => file,
            OpenResult::Dir(_) => panic!("{path} is a directory"),
        }
    }

    fn write(file: &dyn WasiFile, bytes: &[u8]) -> Result<u64, Error> {
        now(file.write_vectored(&[IoSlice::new(bytes)]))
    }

    fn read_all(file: &dyn WasiFile) -> Vec<u8> {
        let mut buf = vec![0u8; 64];
        let n = now(file.read_vectored_at(&mut [IoSliceMut::new(&mut buf)], 0)).unwrap();
        buf.truncate(n as usize);
        buf
    }

    #[test]
    fn a_written_file_reads_back_and_shows_in_the_tree() {
        let volume = out_volume(1024, 10);
        let root = MemDir::root(volume.clone());
        now(root.create_dir("sub")).unwrap();
        let file = open_file(&root, "sub/../sub/./a.txt", OFlags::CREATE, true);
        assert_eq!(write(file.as_ref(), b"abc").unwrap(), 3);
        assert_eq!(write(file.as_ref(), b"de").unwrap(), 2);
        assert_eq!(read_all(file.as_ref()), b"abcde");
        assert_eq!(now(file.seek(SeekFrom::End(-2))).unwrap(), 3);
        let tree = volume.to_mem_tree().unwrap();
        assert_eq!(tree.read("sub/a.txt").unwrap(), b"abcde");
    }

    #[test]
    fn paths_that_climb_out_or_are_absolute_are_refused_with_eperm() {
        let root = MemDir::root(in_volume());
        for path in [
            "../x",
            "./../x",
            "/etc/passwd",
            "..",
            "./..",
            "../iexec_in/data.txt",
        ] {
            let error = open(&root, path, OFlags::empty(), false).err().unwrap();
            assert_eq!(errno_of(error), Errno::Perm, "{path}");
        }
        assert!(open(&root, "./data.txt", OFlags::empty(), false).is_ok());
    }

    #[test]
    fn a_subdirectory_handle_may_climb_back_to_the_preopen_but_not_above() {
        let volume = out_volume(1024, 10);
        let root = MemDir::root(volume);
        now(root.create_dir("sub")).unwrap();
        let OpenResult::Dir(sub) = open(&root, "sub", OFlags::DIRECTORY, false).unwrap() else {
            panic!("sub is not a directory");
        };
        now(sub.create_dir("../sibling")).unwrap();
        let error = now(sub.create_dir("../../outside")).unwrap_err();
        assert_eq!(errno_of(error), Errno::Perm);
    }

    #[test]
    fn the_input_volume_refuses_every_change_with_erofs() {
        let root = MemDir::root(in_volume());
        let cases = [
            open(&root, "data.txt", OFlags::empty(), true).err(),
            open(&root, "new.txt", OFlags::CREATE, true).err(),
            open(&root, "data.txt", OFlags::TRUNCATE, false).err(),
            now(root.create_dir("d")).err(),
            now(root.unlink_file("data.txt")).err(),
        ];
        for error in cases {
            assert_eq!(errno_of(error.unwrap()), Errno::Rofs);
        }
        let file = open_file(&root, "data.txt", OFlags::empty(), false);
        assert_eq!(read_all(file.as_ref()), b"hello");
        let stat = now(file.get_filestat()).unwrap();
        assert_eq!(stat.size, 5);
        assert_eq!(stat.mtim, Some(UNIX_EPOCH + Duration::from_secs(7)));
    }

    #[test]
    fn readdir_lists_dot_entries_first_with_nonzero_inodes_and_resumes_at_the_cursor() {
        let volume = out_volume(1024, 10);
        let root = MemDir::root(volume);
        now(root.create_dir("b")).unwrap();
        drop(open_file(&root, "a", OFlags::CREATE, true));
        let all: Vec<_> = now(root.readdir(ReaddirCursor::from(0)))
            .unwrap()
            .map(|e| e.unwrap())
            .collect();
        let names: Vec<&str> = all.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, [".", "..", "a", "b"]);
        assert!(all.iter().all(|e| e.inode != 0));
        assert_eq!(all[3].filetype, FileType::Directory);
        let rest: Vec<String> = now(root.readdir(all[1].next))
            .unwrap()
            .map(|e| e.unwrap().name)
            .collect();
        assert_eq!(rest, ["a", "b"]);
    }

    #[test]
    fn the_byte_quota_stops_a_write_before_allocating_and_is_remembered() {
        let volume = out_volume(10, 10);
        let root = MemDir::root(volume.clone());
        let file = open_file(&root, "big", OFlags::CREATE, true);
        write(file.as_ref(), b"0123456789").unwrap();
        assert!(write(file.as_ref(), b"x").is_err());
        assert!(now(file.write_vectored_at(&[IoSlice::new(b"x")], 1 << 40)).is_err());
        assert_eq!(volume.exceeded(), Some(QuotaExceeded::Bytes { limit: 10 }));
    }

    #[test]
    fn the_entry_quota_counts_empty_files_and_directories() {
        let volume = out_volume(1024, 2);
        let root = MemDir::root(volume.clone());
        drop(open_file(&root, "empty", OFlags::CREATE, true));
        now(root.create_dir("dir")).unwrap();
        assert!(now(root.create_dir("one-more")).is_err());
        assert_eq!(volume.exceeded(), Some(QuotaExceeded::Entries { limit: 2 }));
    }

    #[test]
    fn removing_entries_gives_the_quota_back() {
        let volume = out_volume(4, 1);
        let root = MemDir::root(volume.clone());
        let file = open_file(&root, "t", OFlags::CREATE, true);
        write(file.as_ref(), b"1234").unwrap();
        now(root.unlink_file("t")).unwrap();
        // Still open: still readable, and its bytes still count.
        assert_eq!(read_all(file.as_ref()), b"1234");
        drop(file);
        let again = open_file(&root, "u", OFlags::CREATE, true);
        write(again.as_ref(), b"5678").unwrap();
        assert_eq!(volume.exceeded(), None);
    }

    #[test]
    fn rename_moves_files_and_directories_and_refuses_a_directory_into_itself() {
        let volume = out_volume(1024, 10);
        let root = MemDir::root(volume.clone());
        now(root.create_dir("d")).unwrap();
        let file = open_file(&root, "d/f", OFlags::CREATE, true);
        write(file.as_ref(), b"x").unwrap();
        now(root.rename("d/f", &root, "g")).unwrap();
        now(root.rename("d", &root, "e")).unwrap();
        let error = now(root.rename("e", &root, "e/inner")).unwrap_err();
        assert_eq!(errno_of(error), Errno::Inval);
        let tree = volume.to_mem_tree().unwrap();
        assert_eq!(tree.read("g").unwrap(), b"x");
        assert_eq!(tree.dirs().collect::<Vec<_>>(), ["e"]);
    }

    #[test]
    fn rename_across_volumes_is_refused_with_exdev() {
        let input = MemDir::root(in_volume());
        let output = MemDir::root(out_volume(1024, 10));
        let error = now(output.rename("x", &input, "y")).unwrap_err();
        assert_eq!(errno_of(error), Errno::Xdev);
    }

    #[test]
    fn exclusive_create_of_an_existing_file_fails_with_eexist() {
        let root = MemDir::root(out_volume(1024, 10));
        drop(open_file(&root, "f", OFlags::CREATE, true));
        let error = open(&root, "f", OFlags::CREATE | OFlags::EXCLUSIVE, true)
            .err()
            .unwrap();
        assert_eq!(errno_of(error), Errno::Exist);
    }

    #[test]
    fn input_names_must_be_plain_file_names() {
        let volume = Volume::new(1, false, None, UNIX_EPOCH);
        for bad in ["", ".", "..", "a/b", "x\0y"] {
            assert!(volume.add_root_file(bad, Vec::new()).is_err(), "{bad:?}");
        }
        volume.add_root_file("ok", Vec::new()).unwrap();
        assert!(volume.add_root_file("ok", Vec::new()).is_err());
    }
}
