//! An open directory of a [`Volume`]: the `WasiDir` calls (open, create, remove, rename, list).

use std::any::Any;
use std::path::PathBuf;
use std::sync::Arc;

use wasi_common::dir::{OpenResult, ReaddirCursor, ReaddirEntity, WasiDir};
use wasi_common::file::{FdFlags, FileType, Filestat, OFlags};
use wasi_common::snapshots::preview_1::error::Errno;
use wasi_common::{Error, SystemTimeSpec};

use super::file::MemFile;
use super::volume::{errno, Ino, Node, Volume, ROOT};

/// A directory handle; a preopen is the handle of a volume's root.
#[derive(Debug)]
pub struct MemDir {
    volume: Arc<Volume>,
    ino: Ino,
}

impl MemDir {
    /// The root of `volume`, to preopen.
    pub fn root(volume: Arc<Volume>) -> Self {
        Self { volume, ino: ROOT }
    }

    fn check_writable(&self) -> Result<(), Error> {
        if self.volume.writable {
            Ok(())
        } else {
            Err(errno(Errno::Rofs))
        }
    }
}

#[async_trait::async_trait]
impl WasiDir for MemDir {
    fn as_any(&self) -> &dyn Any {
        self
    }

    async fn open_file(
        &self,
        _symlink_follow: bool,
        path: &str,
        oflags: OFlags,
        read: bool,
        write: bool,
        fdflags: FdFlags,
    ) -> Result<OpenResult, Error> {
        let changes = write
            || oflags.intersects(OFlags::CREATE | OFlags::TRUNCATE)
            || fdflags.contains(FdFlags::APPEND);
        if oflags.contains(OFlags::DIRECTORY) && oflags.contains(OFlags::CREATE) {
            return Err(errno(Errno::Inval));
        }
        let mut state = self.volume.lock();
        let resolved = state.resolve(self.ino, path)?;
        let ino = match resolved.node {
            Some(ino) => {
                if oflags.contains(OFlags::CREATE | OFlags::EXCLUSIVE) {
                    return Err(errno(Errno::Exist));
                }
                ino
            }
            None if oflags.contains(OFlags::CREATE) && !resolved.must_be_dir => {
                self.check_writable()?;
                let name = resolved
                    .name
                    .as_deref()
                    .ok_or_else(|| errno(Errno::Inval))?;
                state.create_file(resolved.parent, name)?
            }
            None => return Err(errno(Errno::Noent)),
        };
        match state.node(ino)? {
            Node::Dir(_) => {
                if write || oflags.contains(OFlags::TRUNCATE) {
                    return Err(errno(Errno::Isdir));
                }
                Ok(OpenResult::Dir(Box::new(MemDir {
                    volume: self.volume.clone(),
                    ino,
                })))
            }
            Node::File(_) => {
                if oflags.contains(OFlags::DIRECTORY) || resolved.must_be_dir {
                    return Err(errno(Errno::Notdir));
                }
                if changes {
                    self.check_writable()?;
                }
                if oflags.contains(OFlags::TRUNCATE) {
                    state.resize(ino, 0)?;
                }
                let append = fdflags.contains(FdFlags::APPEND);
                let file =
                    MemFile::open(self.volume.clone(), &mut state, ino, read, write, append)?;
                Ok(OpenResult::File(Box::new(file)))
            }
        }
    }

    async fn create_dir(&self, path: &str) -> Result<(), Error> {
        let mut state = self.volume.lock();
        let resolved = state.resolve(self.ino, path)?;
        if resolved.node.is_some() {
            return Err(errno(Errno::Exist));
        }
        self.check_writable()?;
        let name = resolved
            .name
            .as_deref()
            .ok_or_else(|| errno(Errno::Exist))?;
        state.create_dir(resolved.parent, name)?;
        Ok(())
    }

    async fn readdir(
        &self,
        cursor: ReaddirCursor,
    ) -> Result<Box<dyn Iterator<Item = Result<ReaddirEntity, Error>> + Send>, Error> {
        let state = self.volume.lock();
        let dir = state.dir(self.ino)?;
        let mut listing = vec![
            (".".to_string(), self.ino, FileType::Directory),
            ("..".to_string(), dir.parent, FileType::Directory),
        ];
        for (name, &ino) in &dir.entries {
            let filetype = match state.node(ino)? {
                Node::File(_) => FileType::RegularFile,
                Node::Dir(_) => FileType::Directory,
            };
            listing.push((name.clone(), ino, filetype));
        }
        let skip = usize::try_from(u64::from(cursor)).unwrap_or(usize::MAX);
        let entities: Vec<Result<ReaddirEntity, Error>> = listing
            .into_iter()
            .enumerate()
            .skip(skip)
            .map(|(index, (name, inode, filetype))| {
                Ok(ReaddirEntity {
                    next: ReaddirCursor::from(index as u64 + 1),
                    inode,
                    name,
                    filetype,
                })
            })
            .collect();
        Ok(Box::new(entities.into_iter()))
    }

    async fn symlink(&self, _old_path: &str, _new_path: &str) -> Result<(), Error> {
        Err(errno(Errno::Notsup))
    }

    async fn remove_dir(&self, path: &str) -> Result<(), Error> {
        let mut state = self.volume.lock();
        let resolved = state.resolve(self.ino, path)?;
        let ino = resolved.node.ok_or_else(|| errno(Errno::Noent))?;
        let name = resolved.name.ok_or_else(|| errno(Errno::Inval))?;
        match state.node(ino)? {
            Node::File(_) => return Err(errno(Errno::Notdir)),
            Node::Dir(dir) if !dir.entries.is_empty() => return Err(errno(Errno::Notempty)),
            Node::Dir(_) => {}
        }
        self.check_writable()?;
        state.detach(resolved.parent, &name)
    }

    async fn unlink_file(&self, path: &str) -> Result<(), Error> {
        let mut state = self.volume.lock();
        let resolved = state.resolve(self.ino, path)?;
        let ino = resolved.node.ok_or_else(|| errno(Errno::Noent))?;
        let name = resolved.name.ok_or_else(|| errno(Errno::Isdir))?;
        match state.node(ino)? {
            Node::Dir(_) => return Err(errno(Errno::Isdir)),
            Node::File(_) if resolved.must_be_dir => return Err(errno(Errno::Notdir)),
            Node::File(_) => {}
        }
        self.check_writable()?;
        state.detach(resolved.parent, &name)
    }

    async fn read_link(&self, path: &str) -> Result<PathBuf, Error> {
        // No symlinks exist: anything that exists is "not a link".
        let state = self.volume.lock();
        match state.resolve(self.ino, path)?.node {
            Some(_) => Err(errno(Errno::Inval)),
            None => Err(errno(Errno::Noent)),
        }
    }

    async fn get_filestat(&self) -> Result<Filestat, Error> {
        self.volume
            .lock()
            .filestat(self.ino, self.volume.device, self.volume.time)
    }

    async fn get_path_filestat(
        &self,
        path: &str,
        _follow_symlinks: bool,
    ) -> Result<Filestat, Error> {
        let state = self.volume.lock();
        let resolved = state.resolve(self.ino, path)?;
        let ino = resolved.node.ok_or_else(|| errno(Errno::Noent))?;
        if resolved.must_be_dir && matches!(state.node(ino)?, Node::File(_)) {
            return Err(errno(Errno::Notdir));
        }
        state.filestat(ino, self.volume.device, self.volume.time)
    }

    async fn rename(
        &self,
        path: &str,
        dest_dir: &dyn WasiDir,
        dest_path: &str,
    ) -> Result<(), Error> {
        let dest = dest_dir
            .as_any()
            .downcast_ref::<MemDir>()
            .ok_or_else(|| errno(Errno::Xdev))?;
        if !Arc::ptr_eq(&self.volume, &dest.volume) {
            return Err(errno(Errno::Xdev));
        }
        self.check_writable()?;
        let mut state = self.volume.lock();
        let from = state.resolve(self.ino, path)?;
        let to = state.resolve(dest.ino, dest_path)?;
        let ino = from.node.ok_or_else(|| errno(Errno::Noent))?;
        let from_name = from.name.ok_or_else(|| errno(Errno::Busy))?;
        let to_name = to.name.ok_or_else(|| errno(Errno::Busy))?;
        let moving_dir = matches!(state.node(ino)?, Node::Dir(_));
        if (from.must_be_dir || to.must_be_dir) && !moving_dir {
            return Err(errno(Errno::Notdir));
        }
        if to.node == Some(ino) {
            return Ok(());
        }
        if moving_dir && state.is_within(to.parent, ino)? {
            return Err(errno(Errno::Inval));
        }
        if let Some(existing) = to.node {
            match (moving_dir, state.node(existing)?) {
                (true, Node::File(_)) => return Err(errno(Errno::Notdir)),
                (false, Node::Dir(_)) => return Err(errno(Errno::Isdir)),
                (true, Node::Dir(dir)) if !dir.entries.is_empty() => {
                    return Err(errno(Errno::Notempty))
                }
                _ => {}
            }
            state.detach(to.parent, &to_name)?;
        }
        state.dir_mut(from.parent)?.entries.remove(&from_name);
        state.dir_mut(to.parent)?.entries.insert(to_name, ino);
        if let Ok(dir) = state.dir_mut(ino) {
            dir.parent = to.parent;
        }
        Ok(())
    }

    async fn hard_link(
        &self,
        _path: &str,
        _target_dir: &dyn WasiDir,
        _target_path: &str,
    ) -> Result<(), Error> {
        Err(errno(Errno::Notsup))
    }

    async fn set_times(
        &self,
        path: &str,
        _atime: Option<SystemTimeSpec>,
        _mtime: Option<SystemTimeSpec>,
        _follow_symlinks: bool,
    ) -> Result<(), Error> {
        // Every node reports the task's start time: accepted and ignored.
        let state = self.volume.lock();
        state
            .resolve(self.ino, path)?
            .node
            .ok_or_else(|| errno(Errno::Noent))?;
        self.check_writable()
    }
}
