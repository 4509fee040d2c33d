//! An open regular file of a [`Volume`]: a cursor, access rights and the `WasiFile` calls.

use std::any::Any;
use std::io::{IoSlice, IoSliceMut, SeekFrom};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use wasi_common::file::{Advice, FdFlags, FileType, Filestat, WasiFile};
use wasi_common::snapshots::preview_1::error::Errno;
use wasi_common::{Error, SystemTimeSpec};

use super::volume::{errno, Ino, Node, State, Volume};

/// An open file; the node stays alive (even unlinked) until every handle is dropped.
#[derive(Debug)]
pub struct MemFile {
    volume: Arc<Volume>,
    ino: Ino,
    position: AtomicU64,
    append: AtomicBool,
    readable: bool,
    writable: bool,
}

impl MemFile {
    /// Opens the file node `ino` (the caller has checked that it is one).
    pub(super) fn open(
        volume: Arc<Volume>,
        state: &mut State,
        ino: Ino,
        readable: bool,
        writable: bool,
        append: bool,
    ) -> Result<Self, Error> {
        state.file_mut(ino)?.open += 1;
        Ok(Self {
            volume,
            ino,
            position: AtomicU64::new(0),
            append: AtomicBool::new(append),
            readable,
            writable,
        })
    }

    fn read_at(&self, bufs: &mut [IoSliceMut<'_>], offset: u64) -> Result<u64, Error> {
        if !self.readable {
            return Err(errno(Errno::Badf));
        }
        let state = self.volume.lock();
        let Node::File(file) = state.node(self.ino)? else {
            return Err(errno(Errno::Isdir));
        };
        let mut at = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(file.data.len());
        let start = at;
        for buf in bufs.iter_mut() {
            let n = buf.len().min(file.data.len() - at);
            buf[..n].copy_from_slice(&file.data[at..at + n]);
            at += n;
            if n < buf.len() {
                break;
            }
        }
        Ok((at - start) as u64)
    }

    fn write_at(&self, bufs: &[IoSlice<'_>], offset: Option<u64>) -> Result<(u64, u64), Error> {
        if !self.writable || !self.volume.writable {
            return Err(errno(Errno::Badf));
        }
        let mut state = self.volume.lock();
        let len = state.file_mut(self.ino)?.data.len() as u64;
        let start = match offset {
            Some(offset) => offset,
            None if self.append.load(Ordering::Relaxed) => len,
            None => self.position.load(Ordering::Relaxed),
        };
        let total: u64 = bufs.iter().map(|b| b.len() as u64).sum();
        let end = start.checked_add(total).ok_or_else(|| errno(Errno::Fbig))?;
        if end > len {
            state.resize(self.ino, end)?;
        }
        let file = state.file_mut(self.ino)?;
        let mut at = usize::try_from(start).map_err(|_| errno(Errno::Fbig))?;
        for buf in bufs {
            file.data[at..at + buf.len()].copy_from_slice(buf);
            at += buf.len();
        }
        Ok((total, end))
    }
}

impl Drop for MemFile {
    fn drop(&mut self) {
        let mut state = self.volume.lock();
        let unused = match state.file_mut(self.ino) {
            Ok(file) => {
                file.open = file.open.saturating_sub(1);
                file.open == 0 && !file.linked
            }
            Err(_) => false,
        };
        if unused {
            state.free(self.ino);
        }
    }
}

#[async_trait::async_trait]
impl WasiFile for MemFile {
    fn as_any(&self) -> &dyn Any {
        self
    }

    async fn get_filetype(&self) -> Result<FileType, Error> {
        Ok(FileType::RegularFile)
    }

    async fn get_fdflags(&self) -> Result<FdFlags, Error> {
        Ok(if self.append.load(Ordering::Relaxed) {
            FdFlags::APPEND
        } else {
            FdFlags::empty()
        })
    }

    async fn set_fdflags(&mut self, flags: FdFlags) -> Result<(), Error> {
        self.append
            .store(flags.contains(FdFlags::APPEND), Ordering::Relaxed);
        Ok(())
    }

    async fn get_filestat(&self) -> Result<Filestat, Error> {
        self.volume
            .lock()
            .filestat(self.ino, self.volume.device, self.volume.time)
    }

    async fn set_filestat_size(&self, size: u64) -> Result<(), Error> {
        if !self.writable || !self.volume.writable {
            return Err(errno(Errno::Badf));
        }
        self.volume.lock().resize(self.ino, size)
    }

    async fn advise(&self, _offset: u64, _len: u64, _advice: Advice) -> Result<(), Error> {
        Ok(())
    }

    async fn set_times(
        &self,
        _atime: Option<SystemTimeSpec>,
        _mtime: Option<SystemTimeSpec>,
    ) -> Result<(), Error> {
        // Every node reports the task's start time: accepted and ignored.
        if !self.volume.writable {
            return Err(errno(Errno::Rofs));
        }
        Ok(())
    }

    async fn read_vectored<'a>(&self, bufs: &mut [IoSliceMut<'a>]) -> Result<u64, Error> {
        let position = self.position.load(Ordering::Relaxed);
        let n = self.read_at(bufs, position)?;
        self.position.store(position + n, Ordering::Relaxed);
        Ok(n)
    }

    async fn read_vectored_at<'a>(
        &self,
        bufs: &mut [IoSliceMut<'a>],
        offset: u64,
    ) -> Result<u64, Error> {
        self.read_at(bufs, offset)
    }

    async fn write_vectored<'a>(&self, bufs: &[IoSlice<'a>]) -> Result<u64, Error> {
        let (n, end) = self.write_at(bufs, None)?;
        self.position.store(end, Ordering::Relaxed);
        Ok(n)
    }

    async fn write_vectored_at<'a>(&self, bufs: &[IoSlice<'a>], offset: u64) -> Result<u64, Error> {
        Ok(self.write_at(bufs, Some(offset))?.0)
    }

    async fn seek(&self, pos: SeekFrom) -> Result<u64, Error> {
        let (base, delta) = match pos {
            SeekFrom::Start(offset) => {
                self.position.store(offset, Ordering::Relaxed);
                return Ok(offset);
            }
            SeekFrom::Current(delta) => (self.position.load(Ordering::Relaxed), delta),
            SeekFrom::End(delta) => {
                let state = self.volume.lock();
                let Node::File(file) = state.node(self.ino)? else {
                    return Err(errno(Errno::Isdir));
                };
                (file.data.len() as u64, delta)
            }
        };
        let target = base
            .checked_add_signed(delta)
            .ok_or_else(|| errno(Errno::Inval))?;
        self.position.store(target, Ordering::Relaxed);
        Ok(target)
    }

    async fn peek(&self, buf: &mut [u8]) -> Result<u64, Error> {
        let position = self.position.load(Ordering::Relaxed);
        self.read_at(&mut [IoSliceMut::new(buf)], position)
    }

    fn num_ready_bytes(&self) -> Result<u64, Error> {
        let state = self.volume.lock();
        let Node::File(file) = state.node(self.ino)? else {
            return Ok(0);
        };
        Ok((file.data.len() as u64).saturating_sub(self.position.load(Ordering::Relaxed)))
    }

    async fn readable(&self) -> Result<(), Error> {
        Ok(())
    }

    async fn writable(&self) -> Result<(), Error> {
        Ok(())
    }
}
