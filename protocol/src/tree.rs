//! A small read-only file-tree abstraction, so that the result digest and the result archive are
//! computed by one implementation over the sandbox's in-memory files ([`MemTree`]) and over real
//! directories (the agent's `DirTree`).
//!
//! Paths are relative, `/`-separated, without `.` or `..` components; `""` is the root.

use std::collections::BTreeMap;
use std::io::Read;

/// What a path names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
}

/// A read-only tree of files and directories.
pub trait FileTree {
    /// Why an access failed.
    type Error: std::error::Error + Send + Sync + 'static;

    /// What `path` is, or `None` when nothing is there.
    ///
    /// # Errors
    /// An invalid path, or the underlying storage failed.
    fn kind(&self, path: &str) -> Result<Option<EntryKind>, Self::Error>;

    /// The names (not paths) of the direct children of the directory `dir`, in no given order.
    ///
    /// # Errors
    /// `dir` is missing or not a directory, or the storage failed.
    fn list(&self, dir: &str) -> Result<Vec<String>, Self::Error>;

    /// A reader over the content of the file `path`.
    ///
    /// # Errors
    /// `path` is missing or not a file, or the storage failed.
    fn open(&self, path: &str) -> Result<Box<dyn Read + '_>, Self::Error>;
}

/// Joins a directory path and a child name.
pub fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() {
        name.to_string()
    } else {
        format!("{dir}/{name}")
    }
}

/// Normalizes a relative path (strips `./`, `/` repeats and a leading or trailing `/`) and refuses
/// anything that climbs (`..`).
///
/// # Errors
/// [`TreeError::InvalidPath`] for `..` components or NUL bytes.
pub fn normalize(path: &str) -> Result<String, TreeError> {
    if path.contains('\0') {
        return Err(TreeError::InvalidPath(path.escape_default().to_string()));
    }
    let mut parts = Vec::new();
    for part in path.split('/') {
        match part {
            "" | "." => {}
            ".." => return Err(TreeError::InvalidPath(path.to_string())),
            other => parts.push(other),
        }
    }
    Ok(parts.join("/"))
}

/// Why a [`MemTree`] access failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TreeError {
    /// Nothing at this path.
    #[error("no such file or directory: {0:?}")]
    NotFound(String),
    /// A file was expected.
    #[error("not a file: {0:?}")]
    NotAFile(String),
    /// A directory was expected.
    #[error("not a directory: {0:?}")]
    NotADir(String),
    /// A path with `..`, NUL or a file used as a directory.
    #[error("invalid path: {0:?}")]
    InvalidPath(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Node {
    File(Vec<u8>),
    Dir,
}

/// An in-memory file tree. The root always exists.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemTree {
    nodes: BTreeMap<String, Node>,
}

impl MemTree {
    /// An empty tree (just the root directory).
    pub fn new() -> Self {
        Self::default()
    }

    /// Creates or replaces the file `path` with `content`, creating missing parent directories.
    ///
    /// # Errors
    /// An invalid path, a parent that is a file, or `path` naming an existing directory.
    pub fn insert_file(
        &mut self,
        path: &str,
        content: impl Into<Vec<u8>>,
    ) -> Result<(), TreeError> {
        let path = normalize(path)?;
        if path.is_empty() || matches!(self.nodes.get(&path), Some(Node::Dir)) {
            return Err(TreeError::NotAFile(path));
        }
        self.make_parents(&path)?;
        self.nodes.insert(path, Node::File(content.into()));
        Ok(())
    }

    /// Creates the directory `path` and its missing parents.
    ///
    /// # Errors
    /// An invalid path, or a component that is a file.
    pub fn insert_dir(&mut self, path: &str) -> Result<(), TreeError> {
        let path = normalize(path)?;
        if path.is_empty() {
            return Ok(());
        }
        self.make_parents(&path)?;
        match self.nodes.get(&path) {
            Some(Node::File(_)) => Err(TreeError::NotADir(path)),
            _ => {
                self.nodes.insert(path, Node::Dir);
                Ok(())
            }
        }
    }

    fn make_parents(&mut self, path: &str) -> Result<(), TreeError> {
        let mut end = 0;
        while let Some(pos) = path[end..].find('/') {
            let parent = &path[..end + pos];
            match self.nodes.get(parent) {
                Some(Node::File(_)) => return Err(TreeError::InvalidPath(path.to_string())),
                Some(Node::Dir) => {}
                None => {
                    self.nodes.insert(parent.to_string(), Node::Dir);
                }
            }
            end += pos + 1;
        }
        Ok(())
    }

    /// The content of the file `path`.
    ///
    /// # Errors
    /// Missing, or not a file.
    pub fn read(&self, path: &str) -> Result<&[u8], TreeError> {
        let path = normalize(path)?;
        match self.nodes.get(&path) {
            Some(Node::File(content)) => Ok(content),
            Some(Node::Dir) => Err(TreeError::NotAFile(path)),
            None if path.is_empty() => Err(TreeError::NotAFile(path)),
            None => Err(TreeError::NotFound(path)),
        }
    }

    /// Every file, as `(path, content)`, in path order.
    pub fn files(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.nodes.iter().filter_map(|(path, node)| match node {
            Node::File(content) => Some((path.as_str(), content.as_slice())),
            Node::Dir => None,
        })
    }

    /// Every directory except the root, in path order.
    pub fn dirs(&self) -> impl Iterator<Item = &str> {
        self.nodes
            .iter()
            .filter(|(_, node)| matches!(node, Node::Dir))
            .map(|(path, _)| path.as_str())
    }

    /// Total bytes of all files.
    pub fn total_bytes(&self) -> u64 {
        self.files().map(|(_, c)| c.len() as u64).sum()
    }

    /// Number of entries (files and directories, root excluded).
    pub fn entry_count(&self) -> usize {
        self.nodes.len()
    }
}

impl FileTree for MemTree {
    type Error = TreeError;

    fn kind(&self, path: &str) -> Result<Option<EntryKind>, TreeError> {
        let path = normalize(path)?;
        if path.is_empty() {
            return Ok(Some(EntryKind::Dir));
        }
        Ok(self.nodes.get(&path).map(|node| match node {
            Node::File(_) => EntryKind::File,
            Node::Dir => EntryKind::Dir,
        }))
    }

    fn list(&self, dir: &str) -> Result<Vec<String>, TreeError> {
        let dir = normalize(dir)?;
        match self.kind(&dir)? {
            Some(EntryKind::Dir) => {}
            Some(EntryKind::File) => return Err(TreeError::NotADir(dir)),
            None => return Err(TreeError::NotFound(dir)),
        }
        let prefix = if dir.is_empty() {
            String::new()
        } else {
            format!("{dir}/")
        };
        Ok(self
            .nodes
            .range(prefix.clone()..)
            .take_while(|(path, _)| path.starts_with(&prefix))
            .filter_map(|(path, _)| {
                let rest = &path[prefix.len()..];
                (!rest.contains('/')).then(|| rest.to_string())
            })
            .collect())
    }

    fn open(&self, path: &str) -> Result<Box<dyn Read + '_>, TreeError> {
        Ok(Box::new(self.read(path)?))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn list_returns_direct_children_only() {
        let mut t = MemTree::new();
        t.insert_file("a.txt", "a").unwrap();
        t.insert_file("sub/inner.txt", "i").unwrap();
        t.insert_file("sub/deeper/x", "x").unwrap();
        t.insert_file("sub-file", "s").unwrap();
        let mut root = t.list("").unwrap();
        root.sort();
        assert_eq!(root, ["a.txt", "sub", "sub-file"]);
        let mut sub = t.list("sub").unwrap();
        sub.sort();
        assert_eq!(sub, ["deeper", "inner.txt"]);
    }

    #[test]
    fn paths_that_climb_are_refused() {
        let mut t = MemTree::new();
        assert!(matches!(
            t.insert_file("../etc/passwd", "x"),
            Err(TreeError::InvalidPath(_))
        ));
        assert!(matches!(
            t.insert_file("a/../../b", "x"),
            Err(TreeError::InvalidPath(_))
        ));
        assert_eq!(normalize("./a//b/").unwrap(), "a/b");
    }

    #[test]
    fn a_file_cannot_be_used_as_a_directory() {
        let mut t = MemTree::new();
        t.insert_file("a", "x").unwrap();
        assert!(t.insert_file("a/b", "y").is_err());
        assert!(t.insert_dir("a").is_err());
        assert!(matches!(t.list("a"), Err(TreeError::NotADir(_))));
    }
}
