//! [`DirTree`]: the protocol's [`FileTree`] over a real directory, so the CLI computes digests and
//! archives with the same code the sandbox uses on its in-memory output.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use edgepool_protocol::tree::{normalize, EntryKind, FileTree};

/// A directory on disk seen as a [`FileTree`]. Paths never leave the root (`..` is refused).
#[derive(Debug, Clone)]
pub struct DirTree {
    root: PathBuf,
}

impl DirTree {
    /// A tree rooted at `root` (which may also be a single file, reached with the path `""`).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The root on disk.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn resolve(&self, path: &str) -> io::Result<PathBuf> {
        let relative =
            normalize(path).map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        Ok(if relative.is_empty() {
            self.root.clone()
        } else {
            self.root.join(relative)
        })
    }
}

impl FileTree for DirTree {
    type Error = io::Error;

    fn kind(&self, path: &str) -> io::Result<Option<EntryKind>> {
        match std::fs::metadata(self.resolve(path)?) {
            Ok(meta) if meta.is_dir() => Ok(Some(EntryKind::Dir)),
            Ok(meta) if meta.is_file() => Ok(Some(EntryKind::File)),
            // Sockets, devices and FIFOs are neither: treat them as absent.
            Ok(_) => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn list(&self, dir: &str) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(self.resolve(dir)?)? {
            let name = entry?.file_name();
            let name = name.into_string().map_err(|raw| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("file name {raw:?} is not UTF-8"),
                )
            })?;
            names.push(name);
        }
        Ok(names)
    }

    fn open(&self, path: &str) -> io::Result<Box<dyn Read + '_>> {
        let file = File::open(self.resolve(path)?)?;
        Ok(Box::new(io::BufReader::with_capacity(64 * 1024, file)))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn lists_children_and_refuses_paths_that_climb() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "a").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        let tree = DirTree::new(dir.path());
        let mut names = tree.list("").unwrap();
        names.sort();
        assert_eq!(names, ["a.txt", "sub"]);
        assert_eq!(tree.kind("a.txt").unwrap(), Some(EntryKind::File));
        assert_eq!(tree.kind("sub").unwrap(), Some(EntryKind::Dir));
        assert_eq!(tree.kind("nope").unwrap(), None);
        assert!(tree.open("../etc/passwd").is_err());
    }
}
