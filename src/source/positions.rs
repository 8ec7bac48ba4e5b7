//! Saving where each followed file stands, so a restart reads on from there.
//!
//! # Contract
//!
//! In: the positions the pipeline has *acknowledged*, i.e. the position
//! after the last line it has processed of each source ([`PositionBook`],
//! fed from [`LineBatch::position`](super::LineBatch::position)). Out: a
//! JSON file ([`PositionsFile`]) mapping each followed path to the identity
//! of its file (device, inode, fingerprint of the first bytes) and the offset
//! of the first line not processed yet. Because only acknowledged positions
//! are saved, lines still in the channel at shutdown are neither lost nor
//! counted twice: they are read again after the restart, and were not
//! counted before it.
//!
//! Writing is atomic: a temporary file in the same directory, `fsync`,
//! `rename` over the old file, `fsync` of the directory. A crash leaves the
//! old or the new file, never a torn one.
//!
//! Loading never fails: a missing file is a fresh start; an unreadable,
//! corrupt or foreign file (not written by this program, or by a newer
//! version of the format) is a warning and a fresh start.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::{Fingerprint, Position, SourceId};

/// The `format` field that marks a positions file as ours.
const FORMAT: &str = "maillog_exporter positions";
/// The version of the layout below; a file with another version is ignored.
const VERSION: u32 = 1;

#[derive(Serialize, Deserialize)]
struct FileLayout {
    format: String,
    version: u32,
    files: Vec<EntryLayout>,
}

#[derive(Serialize, Deserialize)]
struct EntryLayout {
    path: PathBuf,
    dev: u64,
    ino: u64,
    /// Offset of the first line not processed yet.
    offset: u64,
    /// How many leading bytes the fingerprint covers.
    head_len: u32,
    /// FNV-1a 64 of those bytes, as 16 hex digits.
    head_hash: String,
}

/// The positions file at a path.
#[derive(Clone, Debug)]
pub struct PositionsFile {
    path: PathBuf,
}

impl PositionsFile {
    pub fn new(path: PathBuf) -> Self {
        PositionsFile { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The saved positions by followed path. Missing file: empty. Any other
    /// problem: a warning naming the file and the problem, and empty.
    pub fn load(&self) -> BTreeMap<PathBuf, Position> {
        let text = match fs::read(&self.path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return BTreeMap::new(),
            Err(e) => {
                self.warn_fresh_start(&format!("cannot read it: {e}"));
                return BTreeMap::new();
            }
        };
        match parse(&text) {
            Ok(positions) => positions,
            Err(problem) => {
                self.warn_fresh_start(&problem);
                BTreeMap::new()
            }
        }
    }

    fn warn_fresh_start(&self, problem: &str) {
        tracing::warn!(
            file = %self.path.display(),
            problem,
            "ignoring the positions file: files are read as if for the first time (it is overwritten at the next save)"
        );
    }

    /// Replaces the file with `positions`, atomically.
    pub fn save(&self, positions: &BTreeMap<PathBuf, Position>) -> io::Result<()> {
        let layout = FileLayout {
            format: FORMAT.into(),
            version: VERSION,
            files: positions
                .iter()
                .map(|(path, pos)| EntryLayout {
                    path: path.clone(),
                    dev: pos.dev,
                    ino: pos.ino,
                    offset: pos.offset,
                    head_len: pos.head.len,
                    head_hash: format!("{:016x}", pos.head.hash),
                })
                .collect(),
        };
        let mut text = serde_json::to_vec_pretty(&layout).map_err(io::Error::other)?;
        text.push(b'\n');
        let dir = match self.path.parent() {
            Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
            _ => PathBuf::from("."),
        };
        let name = self
            .path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "positions".into());
        let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
        let written = (|| {
            let mut file = File::create(&tmp)?;
            file.write_all(&text)?;
            file.sync_all()?;
            fs::rename(&tmp, &self.path)
        })();
        if written.is_err() {
            let _ = fs::remove_file(&tmp);
            return written;
        }
        // Make the rename itself durable.
        File::open(&dir)?.sync_all()
    }
}

/// Parses a positions file; the error says what is wrong with it.
fn parse(text: &[u8]) -> Result<BTreeMap<PathBuf, Position>, String> {
    let value: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| format!("not valid JSON: {e}"))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        return Err(format!(
            "not a maillog_exporter positions file (no \"format\": {FORMAT:?})"
        ));
    }
    let layout: FileLayout =
        serde_json::from_value(value).map_err(|e| format!("malformed: {e}"))?;
    if layout.version != VERSION {
        return Err(format!(
            "version {} is not supported (this program writes version {VERSION})",
            layout.version
        ));
    }
    let mut positions = BTreeMap::new();
    for entry in layout.files {
        let hash = u64::from_str_radix(&entry.head_hash, 16)
            .map_err(|_| format!("head_hash {:?} is not 16 hex digits", entry.head_hash))?;
        positions.insert(
            entry.path,
            Position {
                dev: entry.dev,
                ino: entry.ino,
                head: Fingerprint {
                    len: entry.head_len,
                    hash,
                },
                offset: entry.offset,
            },
        );
    }
    Ok(positions)
}

/// The acknowledged position of every source, shared between the pipeline
/// (which records) and the writer (which saves).
#[derive(Debug)]
pub struct PositionBook {
    inner: Mutex<BookInner>,
}

#[derive(Debug)]
struct BookInner {
    paths: Vec<PathBuf>,
    positions: Vec<Option<Position>>,
    /// Changed since the last [`PositionBook::snapshot_if_changed`].
    changed: bool,
}

impl PositionBook {
    /// A book for sources `0..paths.len()` following `paths`, starting from
    /// the positions loaded at startup (kept until a source acknowledges a
    /// newer one, so that a source that reads nothing keeps its entry).
    pub fn new(paths: Vec<PathBuf>, loaded: &BTreeMap<PathBuf, Position>) -> Self {
        let positions = paths.iter().map(|p| loaded.get(p).copied()).collect();
        PositionBook {
            inner: Mutex::new(BookInner {
                paths,
                positions,
                changed: false,
            }),
        }
    }

    /// Records that every line of `source` before `position` was processed.
    pub fn acknowledge(&self, source: SourceId, position: Position) {
        if let Ok(mut inner) = self.inner.lock() {
            if let Some(slot) = inner.positions.get_mut(source.0) {
                if *slot != Some(position) {
                    *slot = Some(position);
                    inner.changed = true;
                }
            }
        }
    }

    /// Every known position by path, if anything changed since the last
    /// call (or `force`).
    pub fn snapshot_if_changed(&self, force: bool) -> Option<BTreeMap<PathBuf, Position>> {
        let mut inner = self.inner.lock().ok()?;
        if !inner.changed && !force {
            return None;
        }
        inner.changed = false;
        Some(
            inner
                .paths
                .iter()
                .zip(&inner.positions)
                .filter_map(|(path, pos)| pos.map(|pos| (path.clone(), pos)))
                .collect(),
        )
    }

    /// Marks the book changed again (after a failed save, to retry).
    pub fn mark_changed(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.changed = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pos(offset: u64) -> Position {
        Position {
            dev: 2049,
            ino: u64::MAX - 1,
            head: Fingerprint::of(b"first line\n"),
            offset,
        }
    }

    #[test]
    fn save_then_load_round_trips() {
        let dir = tempfile::tempdir().unwrap();
        let file = PositionsFile::new(dir.path().join("positions.json"));
        let mut map = BTreeMap::new();
        map.insert(PathBuf::from("/var/log/mail.log"), pos(1234));
        map.insert(PathBuf::from("/var/log/ma\"il ☃.log"), pos(0));
        file.save(&map).unwrap();
        assert_eq!(file.load(), map);
        // No temporary file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    #[test]
    fn missing_corrupt_and_foreign_files_load_empty() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("positions.json");
        let file = PositionsFile::new(path.clone());
        assert!(file.load().is_empty());
        for bad in [
            &b"\x00\xff\xfegarbage"[..],
            b"",
            b"{\"format\": \"maillog_exporter positions\", \"version\": 1, \"files\": [{\"path\": 3}]}",
            b"{\"format\": \"maillog_exporter positions\", \"version\": 99, \"files\": []}",
            b"{\"format\": \"maillog_exporter positions\", \"version\": 1, \"files\": [{\"path\": \"/a\", \"dev\": 1, \"ino\": 2, \"offset\": 3, \"head_len\": 0, \"head_hash\": \"zz\"}]}",
            b"{\"positions\": {\"/var/log/mail.log\": 12}}",
            b"[1, 2, 3]",
            b"{\"format\": \"maillog_exporter positions\", \"version\": 1, \"files\": [{\"path\": \"/a\", \"dev\": -1, \"ino\": 2, \"offset\": 3, \"head_len\": 0, \"head_hash\": \"00\"}]}",
        ] {
            fs::write(&path, bad).unwrap();
            assert!(file.load().is_empty(), "{:?}", String::from_utf8_lossy(bad));
        }
        // A directory where the file should be.
        let as_dir = PositionsFile::new(dir.path().to_path_buf());
        assert!(as_dir.load().is_empty());
    }

    #[test]
    fn save_into_missing_directory_fails_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let file = PositionsFile::new(dir.path().join("no/such/dir/positions.json"));
        assert!(file.save(&BTreeMap::new()).is_err());
    }

    #[test]
    fn book_keeps_loaded_positions_until_acknowledged() {
        let mut loaded = BTreeMap::new();
        loaded.insert(PathBuf::from("/a"), pos(10));
        loaded.insert(PathBuf::from("/not-followed"), pos(20));
        let book = PositionBook::new(vec!["/a".into(), "/b".into()], &loaded);
        assert_eq!(book.snapshot_if_changed(false), None);
        let snap = book.snapshot_if_changed(true).unwrap();
        assert_eq!(snap.len(), 1);
        assert_eq!(snap[Path::new("/a")], pos(10));
        book.acknowledge(SourceId(1), pos(5));
        book.acknowledge(SourceId(9), pos(5));
        let snap = book.snapshot_if_changed(false).unwrap();
        assert_eq!(snap[Path::new("/b")], pos(5));
        assert_eq!(book.snapshot_if_changed(false), None);
        book.acknowledge(SourceId(1), pos(5));
        assert_eq!(book.snapshot_if_changed(false), None);
    }
}
