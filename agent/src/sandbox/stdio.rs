//! Capture of the guest's stdout and stderr, each capped.
//!
//! Writes past the cap are accepted and dropped (the guest is not told, so it neither fails nor
//! retries); [`Captured::truncated`] says it happened. Reads of stdin see an empty stream
//! (wasi-common's default).

use std::any::Any;
use std::io::IoSlice;
use std::sync::{Arc, Mutex};

use wasi_common::file::{FileType, WasiFile};
use wasi_common::Error;

/// What a stream received.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Captured {
    /// The first bytes written, up to the cap.
    pub bytes: Vec<u8>,
    /// Whether more was written than kept.
    pub truncated: bool,
}

/// A capped in-memory sink; clones share the buffer.
#[derive(Debug, Clone)]
pub struct CapturePipe {
    cap: usize,
    captured: Arc<Mutex<Captured>>,
}

impl CapturePipe {
    /// A sink that keeps at most `cap` bytes.
    pub fn new(cap: usize) -> Self {
        Self {
            cap,
            captured: Arc::new(Mutex::new(Captured::default())),
        }
    }

    /// What was captured so far.
    pub fn take(&self) -> Captured {
        std::mem::take(&mut *self.captured.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[async_trait::async_trait]
impl WasiFile for CapturePipe {
    fn as_any(&self) -> &dyn Any {
        self
    }

    async fn get_filetype(&self) -> Result<FileType, Error> {
        Ok(FileType::Pipe)
    }

    async fn write_vectored<'a>(&self, bufs: &[IoSlice<'a>]) -> Result<u64, Error> {
        let mut captured = self.captured.lock().unwrap_or_else(|e| e.into_inner());
        let mut total = 0u64;
        for buf in bufs {
            total += buf.len() as u64;
            let room = self.cap.saturating_sub(captured.bytes.len());
            if buf.len() > room {
                captured.truncated = true;
            }
            captured
                .bytes
                .extend_from_slice(&buf[..buf.len().min(room)]);
        }
        Ok(total)
    }

    async fn writable(&self) -> Result<(), Error> {
        Ok(())
    }
}
