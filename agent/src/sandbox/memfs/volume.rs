//! One in-memory volume (`/iexec_in` or `/iexec_out`): its nodes, its quota and path resolution.
//!
//! Everything sits behind one mutex: a guest is single-threaded and every host call is short, so
//! finer locking would buy nothing. Nodes are numbered (the inode) and directories point to their
//! parent, so `..` and rename work without string paths.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};
use std::time::SystemTime;

use wasi_common::file::{FileType, Filestat};
use wasi_common::snapshots::preview_1::error::Errno;
use wasi_common::Error;

use edgepool_protocol::tree::{join, MemTree, TreeError};

/// An inode number; never zero (wasi-libc treats inode 0 as "unknown" and stats again).
pub type Ino = u64;
/// The root directory of every volume.
pub const ROOT: Ino = 1;
/// The longest name of a directory entry, in bytes.
pub const MAX_NAME_BYTES: usize = 255;
/// The longest path the guest may pass, in bytes.
pub const MAX_PATH_BYTES: usize = 4096;

/// Limits on what the guest may create in a writable volume.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// Total bytes of all files (their sizes, holes included).
    pub max_bytes: u64,
    /// Files and directories, the root excluded.
    pub max_entries: u64,
}

/// Which quota the guest ran into (sticky: the first one wins).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaExceeded {
    /// [`Quota::max_bytes`].
    Bytes {
        /// The limit.
        limit: u64,
    },
    /// [`Quota::max_entries`].
    Entries {
        /// The limit.
        limit: u64,
    },
}

#[derive(Debug)]
pub(super) struct FileNode {
    pub data: Vec<u8>,
    /// Whether a directory entry names the file (false once unlinked or replaced).
    pub linked: bool,
    /// Open handles; an unlinked file lives (and counts) until the last one closes.
    pub open: u32,
}

#[derive(Debug)]
pub(super) struct DirNode {
    pub parent: Ino,
    pub entries: BTreeMap<String, Ino>,
}

#[derive(Debug)]
pub(super) enum Node {
    File(FileNode),
    Dir(DirNode),
}

/// What a path resolved to.
#[derive(Debug)]
pub(super) struct Resolved {
    /// The directory holding the last component.
    pub parent: Ino,
    /// The last component; `None` when the path ends in `.` or `..` (it names a directory
    /// reached by navigation, `node`).
    pub name: Option<String>,
    /// The node the path names, when it exists.
    pub node: Option<Ino>,
    /// The path ended with `/`: it must name a directory.
    pub must_be_dir: bool,
}

#[derive(Debug)]
pub(super) struct State {
    pub nodes: BTreeMap<Ino, Node>,
    next_ino: Ino,
    quota: Option<Quota>,
    used_bytes: u64,
    used_entries: u64,
    pub exceeded: Option<QuotaExceeded>,
}

/// An in-memory volume.
#[derive(Debug)]
pub struct Volume {
    state: Mutex<State>,
    /// Reported as the device id of every node.
    pub(super) device: u64,
    /// Whether the guest may change anything.
    pub(super) writable: bool,
    /// The time every node reports (the task's start: nothing in a stat may differ between runs).
    pub(super) time: SystemTime,
}

/// Errno as a wasi-common error.
pub(super) fn errno(errno: Errno) -> Error {
    errno.into()
}

impl Volume {
    /// An empty volume; `quota` `None` means unlimited (used for read-only volumes).
    pub fn new(device: u64, writable: bool, quota: Option<Quota>, time: SystemTime) -> Self {
        let mut nodes = BTreeMap::new();
        nodes.insert(
            ROOT,
            Node::Dir(DirNode {
                parent: ROOT,
                entries: BTreeMap::new(),
            }),
        );
        Self {
            state: Mutex::new(State {
                nodes,
                next_ino: ROOT + 1,
                quota,
                used_bytes: 0,
                used_entries: 0,
                exceeded: None,
            }),
            device,
            writable,
            time,
        }
    }

    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while the lock is held cannot leave the tree half-changed in a way that
        // matters more than the panic itself; keep serving.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a file at the root when the volume is built (not counted against the quota).
    ///
    /// # Errors
    /// [`TreeError::InvalidPath`] for a name that is not a plain file name or already exists.
    pub fn add_root_file(&self, name: &str, content: Vec<u8>) -> Result<(), TreeError> {
        if check_name(name).is_err() {
            return Err(TreeError::InvalidPath(name.escape_default().to_string()));
        }
        let mut state = self.lock();
        if state.dir(ROOT).is_ok_and(|d| d.entries.contains_key(name)) {
            return Err(TreeError::InvalidPath(name.to_string()));
        }
        let ino = state.alloc(Node::File(FileNode {
            data: content,
            linked: true,
            open: 0,
        }));
        if let Ok(root) = state.dir_mut(ROOT) {
            root.entries.insert(name.to_string(), ino);
        }
        Ok(())
    }

    /// The first quota the guest ran into, if any.
    pub fn exceeded(&self) -> Option<QuotaExceeded> {
        self.lock().exceeded
    }

    /// Copies the tree into a [`MemTree`] (paths relative to the volume's root).
    ///
    /// # Errors
    /// A name that [`MemTree`] refuses (cannot happen for names the guest could create).
    pub fn to_mem_tree(&self) -> Result<MemTree, TreeError> {
        let state = self.lock();
        let mut tree = MemTree::new();
        let mut pending = vec![(ROOT, String::new())];
        while let Some((dir, path)) = pending.pop() {
            let Ok(node) = state.dir(dir) else { continue };
            for (name, &ino) in &node.entries {
                let child = join(&path, name);
                match state.nodes.get(&ino) {
                    Some(Node::File(file)) => tree.insert_file(&child, file.data.clone())?,
                    Some(Node::Dir(_)) => {
                        tree.insert_dir(&child)?;
                        pending.push((ino, child));
                    }
                    None => {}
                }
            }
        }
        Ok(tree)
    }
}

impl Drop for Volume {
    fn drop(&mut self) {
        // Inputs include the decrypted dataset: leave nothing of it in freed memory.
        let state = self.state.get_mut().unwrap_or_else(|e| e.into_inner());
        for node in state.nodes.values_mut() {
            if let Node::File(file) = node {
                crate::wipe::wipe(&mut file.data);
            }
        }
    }
}

/// Checks one path component that is about to be looked up or created.
pub(super) fn check_name(name: &str) -> Result<(), Error> {
    if name.len() > MAX_NAME_BYTES {
        return Err(errno(Errno::Nametoolong));
    }
    if name.is_empty() || name == "." || name == ".." || name.contains(['/', '\0']) {
        return Err(errno(Errno::Inval));
    }
    Ok(())
}

impl State {
    fn alloc(&mut self, node: Node) -> Ino {
        let ino = self.next_ino;
        self.next_ino += 1;
        self.nodes.insert(ino, node);
        ino
    }

    pub fn node(&self, ino: Ino) -> Result<&Node, Error> {
        self.nodes.get(&ino).ok_or_else(|| errno(Errno::Noent))
    }

    pub fn dir(&self, ino: Ino) -> Result<&DirNode, Error> {
        match self.node(ino)? {
            Node::Dir(dir) => Ok(dir),
            Node::File(_) => Err(errno(Errno::Notdir)),
        }
    }

    pub fn dir_mut(&mut self, ino: Ino) -> Result<&mut DirNode, Error> {
        match self.nodes.get_mut(&ino) {
            Some(Node::Dir(dir)) => Ok(dir),
            Some(Node::File(_)) => Err(errno(Errno::Notdir)),
            None => Err(errno(Errno::Noent)),
        }
    }

    pub fn file_mut(&mut self, ino: Ino) -> Result<&mut FileNode, Error> {
        match self.nodes.get_mut(&ino) {
            Some(Node::File(file)) => Ok(file),
            Some(Node::Dir(_)) => Err(errno(Errno::Isdir)),
            None => Err(errno(Errno::Badf)),
        }
    }

    /// The directories from the root down to `dir`, both included.
    fn ancestors(&self, dir: Ino) -> Result<Vec<Ino>, Error> {
        let mut chain = vec![dir];
        let mut current = dir;
        while current != ROOT {
            current = self.dir(current)?.parent;
            chain.push(current);
            if chain.len() > self.nodes.len() {
                return Err(errno(Errno::Io));
            }
        }
        chain.reverse();
        Ok(chain)
    }

    /// Resolves `path` relative to the directory `start` with a stack of directories: `..`
    /// pops, and popping the volume's root (climbing out of the preopen) or an absolute path is
    /// refused with `EPERM`, as cap-std refuses it. No symlinks exist, so none are followed.
    pub fn resolve(&self, start: Ino, path: &str) -> Result<Resolved, Error> {
        if path.is_empty() {
            return Err(errno(Errno::Noent));
        }
        if path.starts_with('/') {
            return Err(errno(Errno::Perm));
        }
        if path.len() > MAX_PATH_BYTES {
            return Err(errno(Errno::Nametoolong));
        }
        if path.contains('\0') {
            return Err(errno(Errno::Inval));
        }
        let must_be_dir = path.ends_with('/');
        let components: Vec<&str> = path.split('/').filter(|c| !c.is_empty()).collect();
        let mut stack = self.ancestors(start)?;
        let last = components.len().saturating_sub(1);
        for (index, component) in components.iter().enumerate() {
            let current = *stack.last().unwrap_or(&ROOT);
            match *component {
                "." => {}
                ".." => {
                    if stack.len() == 1 {
                        return Err(errno(Errno::Perm));
                    }
                    stack.pop();
                }
                name => {
                    if name.len() > MAX_NAME_BYTES {
                        return Err(errno(Errno::Nametoolong));
                    }
                    let child = self.dir(current)?.entries.get(name).copied();
                    if index == last {
                        return Ok(Resolved {
                            parent: current,
                            name: Some(name.to_string()),
                            node: child,
                            must_be_dir,
                        });
                    }
                    match child {
                        None => return Err(errno(Errno::Noent)),
                        Some(ino) => match self.node(ino)? {
                            Node::Dir(_) => stack.push(ino),
                            Node::File(_) => return Err(errno(Errno::Notdir)),
                        },
                    }
                }
            }
        }
        let dir = *stack.last().unwrap_or(&ROOT);
        Ok(Resolved {
            parent: self.dir(dir)?.parent,
            name: None,
            node: Some(dir),
            must_be_dir: true,
        })
    }

    /// The stat of a node.
    pub fn filestat(&self, ino: Ino, device: u64, time: SystemTime) -> Result<Filestat, Error> {
        let (filetype, nlink, size) = match self.node(ino)? {
            Node::File(file) => (
                FileType::RegularFile,
                u64::from(file.linked),
                file.data.len() as u64,
            ),
            Node::Dir(dir) => (FileType::Directory, 2, dir.entries.len() as u64),
        };
        Ok(Filestat {
            device_id: device,
            inode: ino,
            filetype,
            nlink,
            size,
            atim: Some(time),
            mtim: Some(time),
            ctim: Some(time),
        })
    }

    /// Records a quota failure and makes the error that stops the guest.
    fn exceed(&mut self, which: QuotaExceeded) -> Error {
        self.exceeded.get_or_insert(which);
        let message = match which {
            QuotaExceeded::Bytes { limit } => format!("output exceeds its limit of {limit} bytes"),
            QuotaExceeded::Entries { limit } => {
                format!("output exceeds its limit of {limit} files and directories")
            }
        };
        Error::trap(anyhow::Error::msg(message))
    }

    /// Counts one more entry against the quota.
    fn charge_entry(&mut self) -> Result<(), Error> {
        if let Some(quota) = self.quota {
            if self.used_entries >= quota.max_entries {
                return Err(self.exceed(QuotaExceeded::Entries {
                    limit: quota.max_entries,
                }));
            }
        }
        self.used_entries += 1;
        Ok(())
    }

    fn release_entry(&mut self) {
        self.used_entries = self.used_entries.saturating_sub(1);
    }

    /// Resizes a file, charging or refunding the quota. The quota is checked before anything is
    /// allocated, so a write at a huge offset cannot make the agent allocate it.
    pub fn resize(&mut self, ino: Ino, new_len: u64) -> Result<(), Error> {
        let old_len = self.file_mut(ino)?.data.len() as u64;
        if new_len > old_len {
            let grown = self.used_bytes.saturating_add(new_len - old_len);
            if let Some(quota) = self.quota {
                if grown > quota.max_bytes {
                    return Err(self.exceed(QuotaExceeded::Bytes {
                        limit: quota.max_bytes,
                    }));
                }
            }
            self.used_bytes = grown;
        } else {
            self.used_bytes = self.used_bytes.saturating_sub(old_len - new_len);
        }
        let new_len = usize::try_from(new_len).map_err(|_| errno(Errno::Fbig))?;
        self.file_mut(ino)?.data.resize(new_len, 0);
        Ok(())
    }

    /// Creates an empty file `name` in `parent`.
    pub fn create_file(&mut self, parent: Ino, name: &str) -> Result<Ino, Error> {
        check_name(name)?;
        self.dir(parent)?;
        self.charge_entry()?;
        let ino = self.alloc(Node::File(FileNode {
            data: Vec::new(),
            linked: true,
            open: 0,
        }));
        self.dir_mut(parent)?.entries.insert(name.to_string(), ino);
        Ok(ino)
    }

    /// Creates an empty directory `name` in `parent`.
    pub fn create_dir(&mut self, parent: Ino, name: &str) -> Result<Ino, Error> {
        check_name(name)?;
        self.dir(parent)?;
        self.charge_entry()?;
        let ino = self.alloc(Node::Dir(DirNode {
            parent,
            entries: BTreeMap::new(),
        }));
        self.dir_mut(parent)?.entries.insert(name.to_string(), ino);
        Ok(ino)
    }

    /// Removes the entry `name` of `parent` (its node must already be checked by the caller).
    /// A file stays alive while handles are open; a directory must be empty.
    pub fn detach(&mut self, parent: Ino, name: &str) -> Result<(), Error> {
        let Some(ino) = self.dir_mut(parent)?.entries.remove(name) else {
            return Err(errno(Errno::Noent));
        };
        self.release_entry();
        let free = match self.nodes.get_mut(&ino) {
            Some(Node::File(file)) => {
                file.linked = false;
                file.open == 0
            }
            Some(Node::Dir(_)) => true,
            None => false,
        };
        if free {
            self.free(ino);
        }
        Ok(())
    }

    /// Forgets a node and refunds its bytes.
    pub fn free(&mut self, ino: Ino) {
        if let Some(Node::File(mut file)) = self.nodes.remove(&ino) {
            self.used_bytes = self.used_bytes.saturating_sub(file.data.len() as u64);
            crate::wipe::wipe(&mut file.data);
        }
    }

    /// Whether `ancestor` is `dir` or one of its ancestors.
    pub fn is_within(&self, dir: Ino, ancestor: Ino) -> Result<bool, Error> {
        Ok(self.ancestors(dir)?.contains(&ancestor))
    }
}
