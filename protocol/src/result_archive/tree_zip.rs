//! The plain result archive: a file tree to a deterministic zip and back, reading the zip as
//! hostile input.

use std::io::{Cursor, ErrorKind, Read, Write};

use zip::write::SimpleFileOptions;
use zip::{CompressionMethod, DateTime, ZipArchive, ZipWriter};

use super::{ArchiveError, ExtractLimits, COPY_BUFFER_LEN, MAX_RESERVE};
use crate::tree::{join, normalize, EntryKind, FileTree, MemTree};

/// Zips every file and directory under `root` of `tree`, with entry names relative to `root`.
///
/// The output depends only on the tree: entries sorted by name (byte order, so a directory
/// entry `sub/` comes just before its content), timestamps 1980-01-01 00:00, deflate, mode 0644
/// for files and 0755 for directories. Directories are stored as `name/` entries so that empty
/// directories survive a round trip (iexec-common stores files only; unzippers accept both).
/// Files of 4 GiB or more are refused by the zip writer (no zip64): results that large do not
/// fit the in-memory archive anyway.
///
/// # Errors
/// [`ArchiveError::Tree`] when `root` is not a directory or the tree fails,
/// [`ArchiveError::Zip`] when the zip writer fails.
pub fn zip_tree<T: FileTree>(tree: &T, root: &str) -> Result<Vec<u8>, ArchiveError> {
    let root = normalize(root).map_err(tree_error)?;
    match tree.kind(&root).map_err(tree_error)? {
        Some(EntryKind::Dir) => {}
        Some(EntryKind::File) => {
            return Err(ArchiveError::Tree(format!(
                "expected a directory at {root:?}, found a file"
            )))
        }
        None => {
            return Err(ArchiveError::Tree(format!(
                "expected a directory at {root:?}, found nothing"
            )))
        }
    }
    let mut writer = ZipWriter::new(Cursor::new(Vec::new()));
    let mut buf = vec![0u8; COPY_BUFFER_LEN];
    for (name, kind) in list_recursively(tree, &root)? {
        let path = join(&root, name.trim_end_matches('/'));
        match kind {
            EntryKind::Dir => writer.add_directory(name, entry_options(0o755))?,
            EntryKind::File => {
                writer.start_file(name, entry_options(0o644))?;
                let mut reader = tree.open(&path).map_err(tree_error)?;
                loop {
                    let n = match reader.read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => n,
                        Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                        Err(e) => return Err(ArchiveError::Tree(format!("reading {path:?}: {e}"))),
                    };
                    writer
                        .write_all(&buf[..n])
                        .map_err(|e| ArchiveError::Zip(e.to_string()))?;
                }
            }
        }
    }
    Ok(writer.finish()?.into_inner())
}

/// Every entry under `root` as `(zip entry name, kind)`, directories with a trailing `/`, sorted
/// by entry name.
fn list_recursively<T: FileTree>(
    tree: &T,
    root: &str,
) -> Result<Vec<(String, EntryKind)>, ArchiveError> {
    let mut entries = Vec::new();
    // Directories still to list, as paths relative to `root`.
    let mut pending = vec![String::new()];
    while let Some(rel_dir) = pending.pop() {
        for child in tree.list(&join(root, &rel_dir)).map_err(tree_error)? {
            let rel = join(&rel_dir, &child);
            match tree.kind(&join(root, &rel)).map_err(tree_error)? {
                Some(EntryKind::Dir) => {
                    entries.push((format!("{rel}/"), EntryKind::Dir));
                    pending.push(rel);
                }
                Some(EntryKind::File) => entries.push((rel, EntryKind::File)),
                // Gone between `list` and `kind`: nothing to archive.
                None => {}
            }
        }
    }
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(entries)
}

pub(super) fn entry_options(mode: u32) -> SimpleFileOptions {
    SimpleFileOptions::default()
        .compression_method(CompressionMethod::Deflated)
        .last_modified_time(DateTime::default())
        .unix_permissions(mode)
}

fn tree_error(e: impl std::fmt::Display) -> ArchiveError {
    ArchiveError::Tree(e.to_string())
}

/// Reads a zip archive into a [`MemTree`], treating it as hostile.
///
/// Refused: entry names that are absolute, contain a `..` component, a backslash or NUL, start
/// with a drive letter or are empty ([`ArchiveError::UnsafePath`]); more than
/// `limits.max_entries` entries; more than `limits.max_total_bytes` decompressed bytes, counted
/// while inflating so that a lying header cannot get past it. Directory entries (`name/`) become
/// directories, including empty ones.
///
/// # Errors
/// The variants above, [`ArchiveError::Zip`] for a malformed archive or a bad CRC, and
/// [`ArchiveError::Tree`] when entries conflict (a file used as a directory).
pub fn unzip_to_tree(zip: &[u8], limits: &ExtractLimits) -> Result<MemTree, ArchiveError> {
    let mut archive = open_archive(zip, limits)?;
    let mut tree = MemTree::new();
    let mut total = 0u64;
    for index in 0..archive.len() {
        let mut entry = archive.by_index(index)?;
        let name = safe_entry_name(entry.name(), entry.name_raw())?;
        if entry.is_dir() {
            tree.insert_dir(&name).map_err(tree_error)?;
            continue;
        }
        let budget = limits.max_total_bytes - total;
        let content = read_bounded(&mut entry, &name, budget, limits.max_total_bytes)?;
        total += content.len() as u64;
        tree.insert_file(&name, content).map_err(tree_error)?;
    }
    Ok(tree)
}

/// Opens an archive and checks its entry count.
pub(super) fn open_archive<'a>(
    zip: &'a [u8],
    limits: &ExtractLimits,
) -> Result<ZipArchive<Cursor<&'a [u8]>>, ArchiveError> {
    let archive = ZipArchive::new(Cursor::new(zip))?;
    if archive.len() > limits.max_entries {
        return Err(ArchiveError::TooManyEntries {
            limit: limits.max_entries,
            found: archive.len(),
        });
    }
    Ok(archive)
}

/// Reads at most `budget` decompressed bytes of an entry; more gives [`ArchiveError::TooLarge`]
/// reporting `limit`.
pub(super) fn read_bounded<R: Read>(
    entry: &mut zip::read::ZipFile<'_, R>,
    name: &str,
    budget: u64,
    limit: u64,
) -> Result<Vec<u8>, ArchiveError> {
    let too_large = || ArchiveError::TooLarge {
        entry: name.to_string(),
        limit,
    };
    // An honest header that admits to being too big is refused without inflating anything.
    if entry.size() > budget {
        return Err(too_large());
    }
    // The declared size only sizes the first allocation, within the budget and a cap.
    let mut content = Vec::with_capacity(entry.size().min(MAX_RESERVE) as usize);
    entry
        .take(budget.saturating_add(1))
        .read_to_end(&mut content)
        .map_err(|e| ArchiveError::Zip(format!("reading entry {name:?}: {e}")))?;
    if content.len() as u64 > budget {
        return Err(too_large());
    }
    Ok(content)
}

/// Checks an entry name from a hostile archive and returns it normalized (without a trailing `/`).
fn safe_entry_name(name: &str, raw: &[u8]) -> Result<String, ArchiveError> {
    let unsafe_path = || ArchiveError::UnsafePath(name.escape_default().to_string());
    let bytes = name.as_bytes();
    let drive_letter = bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':';
    if name.is_empty()
        || name.contains(['\0', '\\'])
        || raw.contains(&0)
        || name.starts_with('/')
        || drive_letter
        || name.split('/').any(|part| part == "..")
    {
        return Err(unsafe_path());
    }
    match normalize(name) {
        Ok(normalized) if !normalized.is_empty() => Ok(normalized),
        _ => Err(unsafe_path()),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_that_could_escape_are_unsafe() {
        for name in [
            "../evil",
            "a/../../b",
            "a/..",
            "/abs",
            "..\\evil",
            "a\\b",
            "C:/windows",
            "c:evil",
            "nul\0byte",
            "",
            "./",
            "//",
        ] {
            assert!(
                matches!(
                    safe_entry_name(name, name.as_bytes()),
                    Err(ArchiveError::UnsafePath(_))
                ),
                "{name:?}"
            );
        }
        assert_eq!(safe_entry_name("./a//b/", b"./a//b/").unwrap(), "a/b");
        assert_eq!(
            safe_entry_name("x:y", b"x:y").unwrap_err(),
            ArchiveError::UnsafePath("x:y".into())
        );
        assert_eq!(safe_entry_name("ab:c", b"ab:c").unwrap(), "ab:c");
    }

    #[test]
    fn zip_tree_is_deterministic_and_sorted_with_directory_entries() {
        let mut tree = MemTree::new();
        tree.insert_file("out/b.txt", "b").unwrap();
        tree.insert_file("out/sub/inner.txt", "i").unwrap();
        tree.insert_file("out/sub-file", "s").unwrap();
        tree.insert_dir("out/empty").unwrap();
        tree.insert_file("elsewhere.txt", "no").unwrap();
        let zip = zip_tree(&tree, "out").unwrap();
        assert_eq!(zip, zip_tree(&tree, "./out/").unwrap());

        let mut archive = ZipArchive::new(Cursor::new(zip.as_slice())).unwrap();
        let names: Vec<String> = (0..archive.len())
            .map(|i| archive.by_index(i).unwrap().name().to_string())
            .collect();
        assert_eq!(
            names,
            ["b.txt", "empty/", "sub-file", "sub/", "sub/inner.txt"]
        );
        let entry = archive.by_index(0).unwrap();
        assert_eq!(entry.compression(), CompressionMethod::Deflated);
        assert_eq!(entry.unix_mode(), Some(0o100644));
        assert_eq!(entry.last_modified(), Some(DateTime::default()));
    }

    #[test]
    fn zip_tree_round_trips_empty_directories_and_empty_files() {
        let mut tree = MemTree::new();
        tree.insert_dir("keep/me").unwrap();
        tree.insert_file("empty.bin", Vec::new()).unwrap();
        tree.insert_file("data/x", vec![7u8; 100_000]).unwrap();
        let back = unzip_to_tree(&zip_tree(&tree, "").unwrap(), &ExtractLimits::default()).unwrap();
        assert_eq!(back, tree);
    }

    #[test]
    fn zip_tree_of_a_file_or_nothing_is_a_tree_error() {
        let mut tree = MemTree::new();
        tree.insert_file("f", "x").unwrap();
        assert!(matches!(zip_tree(&tree, "f"), Err(ArchiveError::Tree(_))));
        assert!(matches!(
            zip_tree(&tree, "missing"),
            Err(ArchiveError::Tree(_))
        ));
    }

    #[test]
    fn unzip_counts_bytes_across_entries_against_the_total_limit() {
        let mut tree = MemTree::new();
        for i in 0..4 {
            tree.insert_file(&format!("f{i}"), vec![0u8; 1000]).unwrap();
        }
        let zip = zip_tree(&tree, "").unwrap();
        let limits = ExtractLimits {
            max_entries: 10,
            max_total_bytes: 3500,
        };
        assert_eq!(
            unzip_to_tree(&zip, &limits),
            Err(ArchiveError::TooLarge {
                entry: "f3".into(),
                limit: 3500
            })
        );
        let limits = ExtractLimits {
            max_entries: 3,
            max_total_bytes: 1 << 20,
        };
        assert_eq!(
            unzip_to_tree(&zip, &limits),
            Err(ArchiveError::TooManyEntries { limit: 3, found: 4 })
        );
    }
}
