//! Following one log file by path, across rotations, without losing or
//! repeating a line.
//!
//! # Contract
//!
//! In: a path, the limit on line length, where to start ([`TailSettings`]).
//! Out: complete lines (each ending in `\n`, at most `max_line_bytes` bytes
//! before it), appended to a caller's buffer by [`FileTail::poll`], every
//! line of every file that was at the path exactly once and in file order.
//! Everything else goes to the [`SourceObserver`]: up/down transitions, bytes
//! read, rotations, oversized lines, I/O errors. Bytes are not decoded:
//! invalid UTF-8 passes through. Nothing here panics on any input.
//!
//! [`FileTail`] is a synchronous state machine: it does nothing until polled,
//! and each poll reads everything available, so tests step it
//! deterministically. [`spawn_file_tail`] drives one on a thread of its own,
//! woken by file-system events (hints only, never data) with a timed poll as
//! the fallback, and sends [`LineBatch`]es into a bounded channel, blocking
//! when it is full.
//!
//! # Opening
//!
//! A missing path reports `source_up(false)` once and is retried on every
//! poll. Any other failure to open (permission denied, not a regular file)
//! also reports `read_error`, once until the error changes or the file
//! opens. Opening reports `source_up(true)`.
//!
//! Where reading starts, on the first poll only: at `start_at` if it names
//! the same file (`dev`, `ino`, and the same first bytes: see
//! [`Fingerprint`]) and the file is still at least that long. If the path
//! now names another file (rotated while the exporter was down), the path's
//! directory is searched for the saved file (e.g. `mail.log.1`; compressed
//! names are skipped): if found with the same first bytes and at least that
//! long, its unread tail is read first from the saved offset, and then the
//! file at the path from offset 0 (the ordinary *Replaced* rule below). If
//! the saved file is gone, or the file shrank, or its first bytes changed
//! (inode reused), the file at the path is read from offset 0. Without
//! `start_at`, from 0 if `from_beginning`, else at the end of the file, backed
//! up to the start of an unterminated last line so that a line being written
//! at startup is read whole. Every file opened later (the path was missing at
//! first, or the file was replaced) is read from offset 0.
//!
//! # Rotation rules
//!
//! Decided only at end of file, after everything readable was read from the
//! open descriptor:
//!
//! * **Replaced**: the path names a different file (`dev`, `ino`) than the
//!   one held open (rename+create, delete+recreate, symlink swap). The new
//!   file is opened, the old descriptor is drained to EOF once more (catching
//!   lines written between the first EOF and the check), and then *retired*:
//!   kept open and drained on every poll, because the program writing the
//!   log keeps appending to it until it reopens the path (syslog after its
//!   HUP, which logrotate sends only after creating the new file). A retired
//!   file is dropped once it gave no bytes for [`RETIRE_AFTER_IDLE`], or
//!   when another replacement retires the next one; then, if it ends in a
//!   line without `\n`, that line is passed on with a `\n` appended: nothing
//!   will ever complete it, and dropping it would lose a line.
//!   [`Rotation::Replaced`] is reported and the new file is read from offset
//!   0. If the new file cannot be opened, the old one is kept and drained,
//!   and the switch is retried on the next poll. Lines of the retired file
//!   and of the new one are each passed on in file order; between the two
//!   files, order follows reading.
//! * **Gone**: nothing at the path (deleted, or renamed with no replacement
//!   yet). The old descriptor is kept and drained on every poll until a new
//!   file appears; the source stays up.
//! * **Truncated**: same file, but its size is below the read offset
//!   (copytruncate, `> file`). [`Rotation::Truncated`] is reported, a partial
//!   line is dropped (its start went to the copy), and reading restarts at
//!   offset 0.
//!
//! * **Unreadable**: the path still names the open file but its owner or
//!   mode changed and opening it now fails (e.g. `chmod 000`). Reading goes
//!   on through the descriptor already held (nothing is lost), but
//!   `source_up(false)` and `read_error` are reported, since the next
//!   rotation or restart would fail; `source_up(true)` once it opens again.
//!   Likewise when the path names a new file that cannot be opened.
//!
//! Limits of truncation detection, inherent to comparing sizes: lines
//! written after the last poll and before the copy exist only in the copy and
//! are not read; and if, by the time of the check, the truncated file has
//! already grown back to at least the old offset, the truncation cannot be
//! seen, and reading goes on from the old offset (the start of the new
//! content is missed, and the first line read may be a fragment).
//!
//! # Position
//!
//! [`FileTail::position`] is that of the file at the path (a retired file's
//! position is not saved: lines appended to it after the last read before a
//! restart are not read after the restart). It is the file identity (with the fingerprint of its
//! first bytes) and the offset of the first line not yet passed on (a
//! partial line is re-read after a restart); feed it back as `start_at` to
//! resume. [`spawn_file_tail`] attaches the position after each batch's last
//! line to the batch, so that the receiver can acknowledge exactly what it
//! has processed.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{FileExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, RecvTimeoutError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use memchr::memrchr;
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc::Sender;

use super::line_reader::LineAssembler;
use super::{LineBatch, Rotation, SourceId, SourceObserver};

/// Size of one `read` from the file.
const READ_CHUNK: usize = 64 * 1024;

/// Target size of one [`LineBatch`] sent by [`spawn_file_tail`]; a batch may
/// exceed it by up to one read chunk plus one line.
pub const BATCH_BYTES: usize = 256 * 1024;

/// How long a replaced file is still read after it last gave bytes: the
/// writer may append to it until it reopens the path.
pub const RETIRE_AFTER_IDLE: Duration = Duration::from_secs(10);

/// Rotations handled within one poll before returning, so that a path being
/// swapped in a loop cannot keep a poll from ending.
const MAX_SWITCHES_PER_POLL: usize = 4;

/// What to follow and how.
#[derive(Clone, Debug)]
pub struct TailSettings {
    /// Reported with every batch and observer event.
    pub source: SourceId,
    /// The path to follow; a symlink is followed to its target.
    pub path: PathBuf,
    /// On the first open only: read the file from the start (`true`) or only
    /// what is appended from now on (`false`). Ignored if `start_at` is set.
    pub from_beginning: bool,
    /// Longest line content (excluding `\n`) passed on; longer lines are
    /// skipped and reported.
    pub max_line_bytes: usize,
    /// Resume at a saved [`FileTail::position`] on the first open.
    pub start_at: Option<Position>,
    /// How long a replaced file is still read after it last gave bytes
    /// ([`RETIRE_AFTER_IDLE`] in the daemon); zero drops it at the switch.
    pub retire_after_idle: Duration,
}

/// Where a follower stands: the identity of the open file and the offset of
/// the first line not passed on yet.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Position {
    pub dev: u64,
    pub ino: u64,
    /// The file's first bytes, to tell a reused inode from the same file.
    pub head: Fingerprint,
    pub offset: u64,
}

/// How many leading bytes of a file [`Fingerprint`] covers at most.
pub const FINGERPRINT_BYTES: u32 = 256;

/// A hash (64-bit FNV-1a) of the first `len` bytes of a file, `len` at most
/// [`FINGERPRINT_BYTES`]. A file that grew still matches the fingerprint
/// taken when it was shorter; `len == 0` matches every file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Fingerprint {
    pub len: u32,
    pub hash: u64,
}

impl Fingerprint {
    /// The fingerprint of `bytes` (all of them).
    pub fn of(bytes: &[u8]) -> Fingerprint {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in bytes {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        Fingerprint {
            len: u32::try_from(bytes.len()).unwrap_or(u32::MAX),
            hash,
        }
    }

    /// The fingerprint of the first `min(len, FINGERPRINT_BYTES)` bytes of
    /// `file` (fewer if the file is shorter).
    fn read(file: &File, len: u64) -> io::Result<Fingerprint> {
        let want = len.min(u64::from(FINGERPRINT_BYTES));
        let mut buf = vec![0; usize::try_from(want).unwrap_or(0)];
        let mut got = 0;
        while got < buf.len() {
            match file.read_at(&mut buf[got..], got as u64) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(Fingerprint::of(&buf[..got]))
    }

    /// Whether `file` starts with the bytes this fingerprint was taken of.
    fn matches(&self, file: &File) -> io::Result<bool> {
        if self.len == 0 {
            return Ok(true);
        }
        Ok(Fingerprint::read(file, u64::from(self.len))? == *self)
    }
}

/// What a poll found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PollOutcome {
    /// Everything available was read; wait for a wake-up.
    Idle,
    /// Stopped at the caller's byte limit with more to read; poll again
    /// without waiting.
    More,
    /// The file could not be opened or read (already reported); retried on
    /// the next poll.
    Unavailable,
}

/// Identity of a file: stable across renames, differs between files that
/// exist at the same time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    fn of(meta: &fs::Metadata) -> Self {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }
}

/// A replaced file still being drained.
struct Retired {
    open: OpenFile,
    lines: LineAssembler,
    last_data: Instant,
}

/// The file being read.
#[derive(Debug)]
struct OpenFile {
    file: File,
    id: FileId,
    /// Position of the descriptor: bytes of this file consumed so far.
    offset: u64,
    /// Fingerprint of the file's first bytes, extended as the file grows.
    head: Fingerprint,
    /// Owner and mode seen at the path when this file was last opened by
    /// name; a change triggers a check that it still opens.
    access: Access,
}

/// The parts of a file's metadata that decide whether it can be opened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Access {
    mode: u32,
    uid: u32,
    gid: u32,
}

impl Access {
    fn of(meta: &fs::Metadata) -> Self {
        Access {
            mode: meta.mode(),
            uid: meta.uid(),
            gid: meta.gid(),
        }
    }
}

/// A freshly opened file and its size at opening.
struct Opened {
    file: File,
    id: FileId,
    size: u64,
    access: Access,
}

/// How a read to end of file stopped.
enum ReadEnd {
    Eof,
    Limit,
}

/// Follows one path; see the module documentation for the rules.
pub struct FileTail {
    settings: TailSettings,
    observer: Arc<dyn SourceObserver>,
    open: Option<OpenFile>,
    lines: LineAssembler,
    /// The file replaced at the path last, still drained (see the
    /// *Replaced* rule), with its own partial line and when it last gave
    /// bytes.
    retired: Option<Retired>,
    /// Reusable read buffer, `READ_CHUNK` bytes.
    chunk: Vec<u8>,
    /// Whether an open was attempted yet (the start rules apply to the first).
    tried_open: bool,
    /// Last reported up/down state, so transitions are reported once.
    up: Option<bool>,
    /// Kind of the last reported open/stat error (deduplicates reports).
    open_error: Option<io::ErrorKind>,
    /// Kind of the last reported read/seek error (deduplicates reports).
    read_error: Option<io::ErrorKind>,
    /// Bytes read during the current poll.
    bytes_this_poll: u64,
}

impl FileTail {
    /// A follower that has not touched the file system yet; the first
    /// [`poll`](Self::poll) opens the path.
    pub fn new(settings: TailSettings, observer: Arc<dyn SourceObserver>) -> Self {
        let lines = LineAssembler::new(settings.max_line_bytes);
        FileTail {
            settings,
            observer,
            open: None,
            lines,
            retired: None,
            chunk: vec![0; READ_CHUNK],
            tried_open: false,
            up: None,
            open_error: None,
            read_error: None,
            bytes_this_poll: 0,
        }
    }

    pub fn settings(&self) -> &TailSettings {
        &self.settings
    }

    /// The open file and the offset of the first line not passed on yet;
    /// `None` while no file is open.
    pub fn position(&self) -> Option<Position> {
        self.open.as_ref().map(|open| Position {
            dev: open.id.dev,
            ino: open.id.ino,
            head: open.head,
            offset: open
                .offset
                .saturating_sub(u64::try_from(self.lines.pending()).unwrap_or(u64::MAX)),
        })
    }

    /// Opens the path if needed, reads to end of file, handles rotation, and
    /// appends every complete line to `out`.
    pub fn poll(&mut self, out: &mut Vec<u8>) -> PollOutcome {
        self.poll_limited(out, usize::MAX)
    }

    /// Like [`poll`](Self::poll), but stops reading once `out` holds at least
    /// `limit` bytes, returning [`PollOutcome::More`]. `out` may end up
    /// longer than `limit` by up to one read chunk plus one line.
    pub fn poll_limited(&mut self, out: &mut Vec<u8>, limit: usize) -> PollOutcome {
        self.bytes_this_poll = 0;
        let outcome = self.poll_inner(out, limit);
        self.extend_head();
        if self.bytes_this_poll > 0 {
            self.observer
                .bytes_read(self.settings.source, self.bytes_this_poll);
        }
        outcome
    }

    fn poll_inner(&mut self, out: &mut Vec<u8>, limit: usize) -> PollOutcome {
        if self.drain_retired(out, limit) {
            return PollOutcome::More;
        }
        if self.open.is_none() && !self.open_when_closed() {
            return PollOutcome::Unavailable;
        }
        let mut switches = 0;
        loop {
            match self.read_to_eof(out, limit) {
                Ok(ReadEnd::Limit) => return PollOutcome::More,
                Ok(ReadEnd::Eof) => {}
                Err(e) => {
                    self.report_read_error(&e);
                    return PollOutcome::Unavailable;
                }
            }
            if switches >= MAX_SWITCHES_PER_POLL {
                return PollOutcome::More;
            }
            match self.check_at_eof(out, limit) {
                Ok(AtEof::Unchanged) => return PollOutcome::Idle,
                Ok(AtEof::Limit) => return PollOutcome::More,
                Ok(AtEof::Switched) => switches += 1,
                Err(e) => {
                    self.report_read_error(&e);
                    return PollOutcome::Unavailable;
                }
            }
        }
    }

    /// Extends the fingerprint of the open file over bytes read since, up to
    /// [`FINGERPRINT_BYTES`]. Errors leave the shorter fingerprint, which is
    /// still valid.
    fn extend_head(&mut self) {
        let Some(open) = self.open.as_mut() else {
            return;
        };
        if open.head.len < FINGERPRINT_BYTES && open.offset > u64::from(open.head.len) {
            if let Ok(head) = Fingerprint::read(&open.file, open.offset) {
                open.head = head;
            }
        }
    }

    /// Opens the path when no file is open. Returns whether a file is open.
    fn open_when_closed(&mut self) -> bool {
        let first = !self.tried_open;
        self.tried_open = true;
        let opened = match self.open_path() {
            Ok(opened) => opened,
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    self.report_open_error(&e);
                } else if first && self.resume_in_rotated_file() {
                    return true;
                }
                self.set_up(false);
                return false;
            }
        };
        if first && self.saved_position_elsewhere(&opened) && self.resume_in_rotated_file() {
            // The file at the path is read from 0 after the old one, through
            // the rotation rules.
            return true;
        }
        let start = if first {
            self.start_offset(&opened)
        } else {
            Ok(Start::At(0))
        };
        let mut file = opened.file;
        let result = start.and_then(|start| {
            let offset = match start {
                Start::At(offset) | Start::MidLine(offset) => offset,
            };
            file.seek(SeekFrom::Start(offset))?;
            Ok((start, offset))
        });
        let (start, offset) = match result {
            Ok(ok) => ok,
            Err(e) => {
                self.report_open_error(&e);
                self.set_up(false);
                return false;
            }
        };
        self.lines.reset();
        if let Start::MidLine(_) = start {
            self.lines.skip_silently();
        }
        self.open = Some(OpenFile {
            file,
            id: opened.id,
            offset,
            head: Fingerprint::default(),
            access: opened.access,
        });
        self.open_error = None;
        self.read_error = None;
        self.set_up(true);
        true
    }

    /// Whether `start_at` is set and does not name the file at the path.
    fn saved_position_elsewhere(&self, opened: &Opened) -> bool {
        match self.settings.start_at {
            Some(pos) => !self.is_saved_file(&pos, &opened.file, opened.id, opened.size),
            None => false,
        }
    }

    /// Whether `file` is the file of the saved position `pos`, still long
    /// enough to resume at its offset.
    fn is_saved_file(&self, pos: &Position, file: &File, id: FileId, size: u64) -> bool {
        id == (FileId {
            dev: pos.dev,
            ino: pos.ino,
        }) && pos.offset <= size
            && pos.head.matches(file).unwrap_or(false)
    }

    /// On the first open, when the saved position names a file no longer at
    /// the path: finds it in the path's directory and opens it at the saved
    /// offset. Returns whether it was found.
    fn resume_in_rotated_file(&mut self) -> bool {
        let Some(pos) = self.settings.start_at else {
            return false;
        };
        let dir = parent_dir(&self.settings.path);
        let Ok(entries) = fs::read_dir(&dir) else {
            return false;
        };
        for entry in entries.flatten() {
            let candidate = entry.path();
            if is_compressed(&candidate) {
                continue;
            }
            let Ok(meta) = fs::metadata(&candidate) else {
                continue;
            };
            if !meta.is_file() || meta.dev() != pos.dev || meta.ino() != pos.ino {
                continue;
            }
            let Ok(mut file) = File::open(&candidate) else {
                continue;
            };
            let Ok(meta) = file.metadata() else {
                continue;
            };
            if !self.is_saved_file(&pos, &file, FileId::of(&meta), meta.len())
                || file.seek(SeekFrom::Start(pos.offset)).is_err()
            {
                continue;
            }
            tracing::info!(
                path = %self.settings.path.display(),
                rotated = %candidate.display(),
                offset = pos.offset,
                "the file was rotated while stopped; reading the rest of the old file first"
            );
            self.lines.reset();
            self.open = Some(OpenFile {
                file,
                id: FileId::of(&meta),
                offset: pos.offset,
                head: pos.head,
                access: Access::default(),
            });
            self.open_error = None;
            self.read_error = None;
            self.set_up(true);
            return true;
        }
        false
    }

    /// Where the first file opened is read from.
    fn start_offset(&self, opened: &Opened) -> io::Result<Start> {
        if let Some(pos) = self.settings.start_at {
            if self.is_saved_file(&pos, &opened.file, opened.id, opened.size) {
                return Ok(Start::At(pos.offset));
            }
            tracing::info!(
                path = %self.settings.path.display(),
                "saved position does not match the file (replaced or truncated since); reading it from the start"
            );
            return Ok(Start::At(0));
        }
        if self.settings.from_beginning {
            return Ok(Start::At(0));
        }
        self.start_of_last_line(&opened.file, opened.size)
    }

    /// End of file, backed up to the start of an unterminated last line if
    /// that line is short enough to be kept.
    fn start_of_last_line(&self, file: &File, size: u64) -> io::Result<Start> {
        let max = u64::try_from(self.settings.max_line_bytes).unwrap_or(u64::MAX);
        // Looking at max + 1 bytes finds the newline before any keepable line.
        let window = size.min(max.saturating_add(1));
        let mut buf = vec![0; READ_CHUNK];
        let mut end = size;
        while size - end < window {
            let n = (window - (size - end)).min(READ_CHUNK as u64);
            let start = end - n;
            // `n <= READ_CHUNK`, so this fits.
            let len = usize::try_from(n).unwrap_or(READ_CHUNK);
            let part = &mut buf[..len];
            match file.read_exact_at(part, start) {
                Ok(()) => {}
                // The file shrank under us; start at its (new) end.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Ok(Start::At(file.metadata()?.len()));
                }
                Err(e) => return Err(e),
            }
            if let Some(i) = memrchr(b'\n', part) {
                return Ok(Start::At(start + i as u64 + 1));
            }
            end = start;
        }
        if size <= max {
            // The whole file is one unterminated line.
            Ok(Start::At(0))
        } else {
            // The unterminated last line is already too long: drop its rest.
            Ok(Start::MidLine(size))
        }
    }

    /// Stats, opens and fstats the path; only regular files are accepted
    /// (opening a FIFO would block).
    fn open_path(&self) -> io::Result<Opened> {
        let path = &self.settings.path;
        if !fs::metadata(path)?.is_file() {
            return Err(not_regular());
        }
        let file = File::open(path)?;
        let meta = file.metadata()?;
        if !meta.is_file() {
            return Err(not_regular());
        }
        Ok(Opened {
            file,
            id: FileId::of(&meta),
            size: meta.len(),
            access: Access::of(&meta),
        })
    }

    /// Reads the open file until end of file or until `out` reaches `limit`.
    fn read_to_eof(&mut self, out: &mut Vec<u8>, limit: usize) -> io::Result<ReadEnd> {
        let Some(open) = self.open.as_mut() else {
            return Ok(ReadEnd::Eof);
        };
        let end = read_file_to_eof(
            open,
            &mut self.lines,
            &mut self.chunk,
            &mut self.bytes_this_poll,
            &*self.observer,
            self.settings.source,
            &self.settings.path,
            out,
            limit,
        );
        if end.is_ok() {
            self.read_error = None;
        }
        end
    }

    /// Reads the retired file to its end; drops it (finishing its last line)
    /// after [`RETIRE_AFTER_IDLE`] without bytes or on a read error. Returns
    /// whether `out` reached `limit` first.
    fn drain_retired(&mut self, out: &mut Vec<u8>, limit: usize) -> bool {
        let Some(retired) = self.retired.as_mut() else {
            return false;
        };
        let before = retired.open.offset;
        let end = read_file_to_eof(
            &mut retired.open,
            &mut retired.lines,
            &mut self.chunk,
            &mut self.bytes_this_poll,
            &*self.observer,
            self.settings.source,
            &self.settings.path,
            out,
            limit,
        );
        if retired.open.offset != before {
            retired.last_data = Instant::now();
        }
        match end {
            Ok(ReadEnd::Limit) => return true,
            Ok(ReadEnd::Eof) if retired.last_data.elapsed() < self.settings.retire_after_idle => {}
            Ok(ReadEnd::Eof) => self.drop_retired(out),
            Err(e) => {
                self.report_read_error(&e);
                self.drop_retired(out);
            }
        }
        false
    }

    /// Drains the retired file a last time and drops it, passing on an
    /// unterminated last line.
    fn drop_retired(&mut self, out: &mut Vec<u8>) {
        if let Some(mut retired) = self.retired.take() {
            let _ = read_file_to_eof(
                &mut retired.open,
                &mut retired.lines,
                &mut self.chunk,
                &mut self.bytes_this_poll,
                &*self.observer,
                self.settings.source,
                &self.settings.path,
                out,
                usize::MAX,
            );
            retired.lines.finish(out);
        }
    }
}

/// Reads `open` until end of file or until `out` reaches `limit`, passing
/// complete lines through `lines`.
#[allow(clippy::too_many_arguments)] // The disjoint parts of a FileTail.
fn read_file_to_eof(
    open: &mut OpenFile,
    lines: &mut LineAssembler,
    chunk: &mut [u8],
    bytes_this_poll: &mut u64,
    observer: &dyn SourceObserver,
    source: SourceId,
    path: &Path,
    out: &mut Vec<u8>,
    limit: usize,
) -> io::Result<ReadEnd> {
    {
        loop {
            if out.len() >= limit {
                return Ok(ReadEnd::Limit);
            }
            let n = match open.file.read(chunk) {
                Ok(0) => return Ok(ReadEnd::Eof),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            open.offset = open.offset.saturating_add(n as u64);
            *bytes_this_poll = bytes_this_poll.saturating_add(n as u64);
            let data = chunk.get(..n).unwrap_or(&[]);
            lines.push(data, out, |len| observer.line_too_long(source, path, len));
        }
    }
}

impl FileTail {
    /// At end of file: looks for replacement, then truncation.
    fn check_at_eof(&mut self, out: &mut Vec<u8>, limit: usize) -> io::Result<AtEof> {
        let Some(old_id) = self.open.as_ref().map(|open| open.id) else {
            return Ok(AtEof::Unchanged);
        };
        let path_meta = match fs::metadata(&self.settings.path) {
            Ok(meta) => Some(meta),
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    self.report_open_error(&e);
                }
                None
            }
        };
        let path_id = path_meta.as_ref().map(FileId::of);
        if path_id.is_some_and(|id| id != old_id) {
            match self.open_path() {
                Ok(new) if new.id != old_id => {
                    // Lines may have been added to the old file between the
                    // EOF above and the stat: drain it once more.
                    match self.read_to_eof(out, limit) {
                        Ok(ReadEnd::Eof) => {}
                        // `new` is dropped; the check runs again next poll.
                        Ok(ReadEnd::Limit) => return Ok(AtEof::Limit),
                        // The old file is going away anyway: switch.
                        Err(e) => self.report_read_error(&e),
                    }
                    // The next older one has had its time.
                    self.drop_retired(out);
                    if self.settings.retire_after_idle.is_zero() {
                        self.lines.finish(out);
                    } else if let Some(old) = self.open.take() {
                        self.retired = Some(Retired {
                            open: old,
                            lines: std::mem::replace(
                                &mut self.lines,
                                LineAssembler::new(self.settings.max_line_bytes),
                            ),
                            last_data: Instant::now(),
                        });
                    }
                    self.observer.rotated(
                        self.settings.source,
                        &self.settings.path,
                        Rotation::Replaced,
                    );
                    self.open = Some(OpenFile {
                        file: new.file,
                        id: new.id,
                        offset: 0,
                        head: Fingerprint::default(),
                        access: new.access,
                    });
                    self.open_error = None;
                    self.set_up(true);
                    return Ok(AtEof::Switched);
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                // Keep draining the old file; retry the new one next poll.
                Err(e) => {
                    self.report_open_error(&e);
                    self.set_up(false);
                }
            }
        } else if let Some(meta) = path_meta.filter(|_| path_id == Some(old_id)) {
            self.check_still_openable(Access::of(&meta));
        }
        let Some(open) = self.open.as_mut() else {
            return Ok(AtEof::Unchanged);
        };
        let size = open.file.metadata()?.len();
        if size < open.offset {
            open.file.seek(SeekFrom::Start(0))?;
            open.offset = 0;
            open.head = Fingerprint::default();
            self.lines.reset();
            self.observer.rotated(
                self.settings.source,
                &self.settings.path,
                Rotation::Truncated,
            );
            return Ok(AtEof::Switched);
        }
        Ok(AtEof::Unchanged)
    }

    /// The path names the open file: if its owner or mode changed since it
    /// was last opened by name, or it was found unopenable before, checks
    /// that it still opens, and reports the source down or up accordingly.
    fn check_still_openable(&mut self, access: Access) {
        let Some(open) = self.open.as_mut() else {
            return;
        };
        if open.access == access && self.up == Some(true) {
            return;
        }
        match File::open(&self.settings.path) {
            Ok(_) => {
                open.access = access;
                self.open_error = None;
                self.set_up(true);
            }
            Err(e) => {
                self.report_open_error(&e);
                self.set_up(false);
            }
        }
    }

    fn set_up(&mut self, up: bool) {
        if self.up != Some(up) {
            self.up = Some(up);
            self.observer.source_up(self.settings.source, up);
        }
    }

    fn report_open_error(&mut self, e: &io::Error) {
        if self.open_error != Some(e.kind()) {
            self.open_error = Some(e.kind());
            self.observer
                .read_error(self.settings.source, &self.settings.path, e);
        }
    }

    fn report_read_error(&mut self, e: &io::Error) {
        if self.read_error != Some(e.kind()) {
            self.read_error = Some(e.kind());
            self.observer
                .read_error(self.settings.source, &self.settings.path, e);
        }
    }
}

/// Where reading starts in the first file.
#[derive(Clone, Copy)]
enum Start {
    /// At the start of a line.
    At(u64),
    /// In the middle of a line too long to keep: skip to the next one.
    MidLine(u64),
}

/// What the end-of-file check did.
enum AtEof {
    Unchanged,
    /// Reached the caller's limit while draining the old file.
    Limit,
    /// Switched to a new file or restarted a truncated one; read again.
    Switched,
}

/// Names of compressed rotated files, never resumed in.
fn is_compressed(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("gz" | "bz2" | "xz" | "zst" | "lz4" | "Z" | "lzma" | "zip")
    )
}

fn not_regular() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "not a regular file; point the source at a log file (or a symlink to one)",
    )
}

/// Follows `settings.path` on a thread of its own until `stop` is set,
/// sending complete lines to `tx` in batches of about [`BATCH_BYTES`].
///
/// The thread polls the [`FileTail`] to end of file, sends what it read
/// (blocking while the channel is full), then waits for a file-system event
/// in the file's directory (and, for a symlink, its target's directory) or
/// for `poll_interval`, whichever comes first. Each batch carries the
/// position after its last line; a batch with no lines is sent when only the
/// position changed. If the watcher cannot be set
/// up, a warning is logged and the thread just polls. When `stop` is seen,
/// it polls once more, sends what it got, and returns. It also returns,
/// quietly, when the receiver is gone. The only error is failing to spawn
/// the thread.
pub fn spawn_file_tail(
    settings: TailSettings,
    observer: Arc<dyn SourceObserver>,
    tx: Sender<LineBatch>,
    poll_interval: Duration,
    stop: Arc<AtomicBool>,
) -> io::Result<JoinHandle<()>> {
    let name = format!("tail-{}", settings.source.0);
    std::thread::Builder::new()
        .name(name)
        .spawn(move || run_file_tail(settings, observer, tx, poll_interval, stop))
}

fn run_file_tail(
    settings: TailSettings,
    observer: Arc<dyn SourceObserver>,
    tx: Sender<LineBatch>,
    poll_interval: Duration,
    stop: Arc<AtomicBool>,
) {
    let source = settings.source;
    // Capacity 1: events only say "look again", so pending ones coalesce.
    let (wake_tx, wake_rx) = sync_channel::<()>(1);
    let _watcher = watch_for(&settings.path, wake_tx.clone(), poll_interval);
    // Held so `recv_timeout` keeps timing out even without a watcher.
    let _keep_open = wake_tx;
    let mut tail = FileTail::new(settings, observer);
    let mut sent_position = None;
    loop {
        let stopping = stop.load(Ordering::Acquire);
        loop {
            let mut data = Vec::new();
            let outcome = tail.poll_limited(&mut data, BATCH_BYTES);
            let position = tail.position();
            // A batch without lines still carries a new position (a file
            // opened, a rotation, a skipped line) to be acknowledged.
            if !data.is_empty() || (position.is_some() && position != sent_position) {
                sent_position = position;
                let batch = LineBatch {
                    source,
                    data,
                    position,
                };
                if tx.blocking_send(batch).is_err() {
                    return;
                }
            }
            if outcome != PollOutcome::More {
                break;
            }
        }
        if stopping {
            return;
        }
        wait_for_wake(&wake_rx, poll_interval, &stop);
    }
}

/// Longest the reader sleeps before looking at `stop` again, so shutdown
/// never waits a whole (possibly long) poll interval.
const STOP_CHECK: Duration = Duration::from_millis(200);

/// Returns on a wake-up, after `poll_interval`, or soon after `stop` is set.
fn wait_for_wake(
    wake_rx: &std::sync::mpsc::Receiver<()>,
    poll_interval: Duration,
    stop: &AtomicBool,
) {
    let deadline = std::time::Instant::now() + poll_interval;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() || stop.load(Ordering::Acquire) {
            return;
        }
        match wake_rx.recv_timeout(left.min(STOP_CHECK)) {
            Ok(()) => return,
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => std::thread::sleep(left.min(STOP_CHECK)),
        }
    }
}

/// Watches the directories where changes to `path` show up; `None` (after a
/// warning) if nothing could be watched.
fn watch_for(
    path: &Path,
    wake: std::sync::mpsc::SyncSender<()>,
    poll_interval: Duration,
) -> Option<RecommendedWatcher> {
    let handler = move |_event: notify::Result<notify::Event>| {
        // Any event, errors and overflows included, means "look again"; a
        // full channel already holds a wake-up.
        let _ = wake.try_send(());
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(watcher) => watcher,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, ?poll_interval, "cannot create a file watcher; polling only");
            return None;
        }
    };
    let mut dirs = vec![parent_dir(path)];
    // For a symlink, appends happen in the target's directory.
    if let Ok(target) = fs::canonicalize(path) {
        let target_dir = parent_dir(&target);
        if !dirs.contains(&target_dir) {
            dirs.push(target_dir);
        }
    }
    let mut watching = false;
    for dir in &dirs {
        match watcher.watch(dir, RecursiveMode::NonRecursive) {
            Ok(()) => watching = true,
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, ?poll_interval, "cannot watch directory; polling it");
            }
        }
    }
    watching.then_some(watcher)
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::OpenOptions;
    use std::io::Write;
    use std::os::unix::fs::{symlink, PermissionsExt};
    use std::sync::atomic::AtomicU64;
    use std::sync::Mutex;
    use std::time::Instant;

    #[derive(Clone, Debug, PartialEq, Eq)]
    enum Ev {
        Up(bool),
        Rotated(Rotation),
        TooLong(usize),
        Error(io::ErrorKind),
    }

    /// Records what the tail reports; a read error fails the test unless
    /// the test expects errors.
    #[derive(Default)]
    struct Recorder {
        events: Mutex<Vec<Ev>>,
        bytes: AtomicU64,
        allow_errors: bool,
    }

    impl Recorder {
        fn take(&self) -> Vec<Ev> {
            std::mem::take(&mut *self.events.lock().unwrap())
        }
        fn push(&self, ev: Ev) {
            self.events.lock().unwrap().push(ev);
        }
    }

    impl SourceObserver for Recorder {
        fn source_up(&self, source: SourceId, up: bool) {
            assert_eq!(source, SourceId(7));
            self.push(Ev::Up(up));
        }
        fn bytes_read(&self, _: SourceId, n: u64) {
            assert!(n > 0, "bytes_read(0) reported");
            self.bytes.fetch_add(n, Ordering::Relaxed);
        }
        fn rotated(&self, _: SourceId, _: &Path, rotation: Rotation) {
            self.push(Ev::Rotated(rotation));
        }
        fn line_too_long(&self, _: SourceId, _: &Path, len: usize) {
            self.push(Ev::TooLong(len));
        }
        fn read_error(&self, _: SourceId, path: &Path, error: &io::Error) {
            assert!(
                self.allow_errors,
                "unexpected read error on {}: {error}",
                path.display()
            );
            self.push(Ev::Error(error.kind()));
        }
    }

    fn settings(path: &Path, from_beginning: bool) -> TailSettings {
        TailSettings {
            source: SourceId(7),
            path: path.to_path_buf(),
            from_beginning,
            max_line_bytes: 1024,
            start_at: None,
            retire_after_idle: Duration::ZERO,
        }
    }

    fn tail_with(settings: TailSettings, allow_errors: bool) -> (FileTail, Arc<Recorder>) {
        let rec = Arc::new(Recorder {
            allow_errors,
            ..Recorder::default()
        });
        (FileTail::new(settings, rec.clone()), rec)
    }

    fn tail(path: &Path, from_beginning: bool) -> (FileTail, Arc<Recorder>) {
        tail_with(settings(path, from_beginning), false)
    }

    /// Polls until nothing more is available; returns what was emitted.
    fn read(t: &mut FileTail) -> Vec<u8> {
        let mut out = Vec::new();
        while t.poll(&mut out) == PollOutcome::More {}
        out
    }

    fn append(path: &Path, data: &[u8]) {
        let mut f = OpenOptions::new()
            .append(true)
            .create(true)
            .open(path)
            .unwrap();
        f.write_all(data).unwrap();
    }

    fn writer(path: &Path) -> File {
        OpenOptions::new().append(true).open(path).unwrap()
    }

    fn s(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    #[test]
    fn from_beginning_reads_existing_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.log");
        fs::write(&path, b"one\ntwo\n").unwrap();
        let (mut t, rec) = tail(&path, true);
        assert_eq!(s(&read(&mut t)), "one\ntwo\n");
        append(&path, b"three\n");
        assert_eq!(s(&read(&mut t)), "three\n");
        assert_eq!(s(&read(&mut t)), "");
        assert_eq!(rec.take(), vec![Ev::Up(true)]);
        assert_eq!(rec.bytes.load(Ordering::Relaxed), 14);
    }

    #[test]
    fn from_end_skips_existing_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.log");
        fs::write(&path, b"old\nolder\n").unwrap();
        let (mut t, rec) = tail(&path, false);
        assert_eq!(s(&read(&mut t)), "");
        append(&path, b"new\n");
        assert_eq!(s(&read(&mut t)), "new\n");
        assert_eq!(rec.take(), vec![Ev::Up(true)]);
    }

    #[test]
    fn from_end_keeps_a_line_being_written_at_startup() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.log");
        fs::write(&path, b"old\nhalf a ").unwrap();
        let (mut t, _rec) = tail(&path, false);
        assert_eq!(s(&read(&mut t)), "");
        append(&path, b"line\nnext\n");
        assert_eq!(s(&read(&mut t)), "half a line\nnext\n");
    }

    #[test]
    fn from_end_with_only_an_unterminated_line_reads_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.log");
        fs::write(&path, b"start").unwrap();
        let (mut t, _rec) = tail(&path, false);
        assert_eq!(s(&read(&mut t)), "");
        append(&path, b"ed\n");
        assert_eq!(s(&read(&mut t)), "started\n");
    }

    #[test]
    fn from_end_drops_an_oversized_unterminated_line_silently() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.log");
        fs::write(&path, b"old\nxxxxxxxxxx").unwrap();
        let mut set = settings(&path, false);
        set.max_line_bytes = 4;
        let (mut t, rec) = tail_with(set, false);
        assert_eq!(s(&read(&mut t)), "");
        append(&path, b"xx\nnew\n");
        assert_eq!(s(&read(&mut t)), "new\n");
        assert_eq!(rec.take(), vec![Ev::Up(true)]);
    }

    #[test]
    fn partial_line_is_held_until_completed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.log");
        fs::write(&path, b"a\nbeg").unwrap();
        let (mut t, _rec) = tail(&path, true);
        assert_eq!(s(&read(&mut t)), "a\n");
        append(&path, b"in");
        assert_eq!(s(&read(&mut t)), "");
        append(&path, b"ning\nc");
        assert_eq!(s(&read(&mut t)), "beginning\n");
    }

    #[test]
    fn rename_create_reads_lines_appended_to_old_after_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.log");
        fs::write(&path, b"a\n").unwrap();
        let (mut t, rec) = tail(&path, true);
        assert_eq!(s(&read(&mut t)), "a\n");
        let mut old = writer(&path);
        fs::rename(&path, dir.path().join("mail.log.1")).unwrap();
        old.write_all(b"b\n").unwrap();
        fs::write(&path, b"c\n").unwrap();
        assert_eq!(s(&read(&mut t)), "b\nc\n");
        append(&path, b"d\n");
        assert_eq!(s(&read(&mut t)), "d\n");
        assert_eq!(
            rec.take(),
            vec![Ev::Up(true), Ev::Rotated(Rotation::Replaced)]
        );
    }

    #[test]
    fn old_file_lines_come_before_new_file_created_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.log");
        fs::write(&path, b"a\n").unwrap();
        let (mut t, rec) = tail(&path, false);
        assert_eq!(s(&read(&mut t)), "");
        let mut old = writer(&path);
        old.write_all(b"b\n").unwrap();
        fs::rename(&path, dir.path().join("mail.log.1")).unwrap();
        fs::write(&path, b"c\n").unwrap();
        // A late writer still finishing on the old file.
        old.write_all(b"d\n").unwrap();
        assert_eq!(s(&read(&mut t)), "b\nd\nc\n");
        assert_eq!(
            rec.take(),
            vec![Ev::Up(true), Ev::Rotated(Rotation::Replaced)]
        );
    }

    #[test]
    fn renamed_away_file_is_drained_until_a_new_one_appears() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.log");
        fs::write(&path, b"a\n").unwrap();
        let (mut t, rec) = tail(&path, true);
        assert_eq!(s(&read(&mut t)), "a\n");
        let mut old = writer(&path);
        fs::rename(&path, dir.path().join("mail.log.1")).unwrap();
        old.write_all(b"b\n").unwrap();
        assert_eq!(s(&read(&mut t)), "b\n");
        old.write_all(b"c\n").unwrap();
        assert_eq!(s(&read(&mut t)), "c\n");
        assert_eq!(rec.take(), vec![Ev::Up(true)]);
        fs::write(&path, b"d\n").unwrap();
        assert_eq!(s(&read(&mut t)), "d\n");
        assert_eq!(rec.take(), vec![Ev::Rotated(Rotation::Replaced)]);
    }

    #[test]
    fn delete_and_recreate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.log");
        fs::write(&path, b"a\n").unwrap();
        let (mut t, rec) = tail(&path, true);
        assert_eq!(s(&read(&mut t)), "a\n");
        let mut old = writer(&path);
        old.write_all(b"b\n").unwrap();
        fs::remove_file(&path).unwrap();
        old.write_all(b"c\n").unwrap();
        assert_eq!(s(&read(&mut t)), "b\nc\n");
        old.write_all(b"d\n").unwrap();
        drop(old);
        fs::write(&path, b"e\n").unwrap();
        assert_eq!(s(&read(&mut t)), "d\ne\n");
        assert_eq!(
            rec.take(),
            vec![Ev::Up(true), Ev::Rotated(Rotation::Replaced)]
        );
    }

    #[test]
    fn symlink_swap_is_a_replacement() {
        let dir = tempfile::tempdir().unwrap();
        let first = dir.path().join("mail-1.log");
        let second = dir.path().join("mail-2.log");
        let link = dir.path().join("mail.log");
        fs::write(&first, b"a\n").unwrap();
        symlink(&first, &link).unwrap();
        let (mut t, rec) = tail(&link, true);
        assert_eq!(s(&read(&mut t)), "a\n");
        append(&first, b"b\n");
        fs::write(&second, b"c\n").unwrap();
        let tmp = dir.path().join("mail.log.tmp");
        symlink(&second, &tmp).unwrap();
        fs::rename(&tmp, &link).unwrap();
        append(&first, b"d\n");
        assert_eq!(s(&read(&mut t)), "b\nd\nc\n");
        append(&second, b"e\n");
        assert_eq!(s(&read(&mut t)), "e\n");
        assert_eq!(
            rec.take(),
            vec![Ev::Up(true), Ev::Rotated(Rotation::Replaced)]
        );
    }

    #[test]
    fn copytruncate_detected_when_new_content_is_shorter() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.log");
        fs::write(&path, b"line1\nline2\nline3\n").unwrap();
        let (mut t, rec) = tail(&path, true);
        assert_eq!(s(&read(&mut t)), "line1\nline2\nline3\n");
        append(&path, b"line4\n");
        fs::copy(&path, dir.path().join("mail.log.1")).unwrap();
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        append(&path, b"new1\nnew2\n");
        // line4 went only to the copy: the documented copytruncate limit.
        assert_eq!(s(&read(&mut t)), "new1\nnew2\n");
        append(&path, b"new3\n");
        assert_eq!(s(&read(&mut t)), "new3\n");
        assert_eq!(
            rec.take(),
            vec![Ev::Up(true), Ev::Rotated(Rotation::Truncated)]
        );
    }

    #[test]
    fn copytruncate_undetectable_once_new_content_outgrows_offset() {
        // Pins the documented limit: the size check cannot see a truncation
        // if the file already grew back past the old offset.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.log");
        fs::write(&path, b"old-1\n").unwrap();
        let (mut t, rec) = tail(&path, true);
        assert_eq!(s(&read(&mut t)), "old-1\n");
        fs::write(&path, b"new-1\nnew-2\n").unwrap();
        assert_eq!(s(&read(&mut t)), "new-2\n");
        assert_eq!(rec.take(), vec![Ev::Up(true)]);
    }

    #[test]
    fn truncation_to_zero_drops_partial_line_and_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.log");
        fs::write(&path, b"a\nparti").unwrap();
        let (mut t, rec) = tail(&path, true);
        assert_eq!(s(&read(&mut t)), "a\n");
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(0)
            .unwrap();
        assert_eq!(s(&read(&mut t)), "");
        assert_eq!(
            rec.take(),
            vec![Ev::Up(true), Ev::Rotated(Rotation::Truncated)]
        );
        append(&path, b"al\nb\n");
        assert_eq!(s(&read(&mut t)), "al\nb\n");
        assert_eq!(rec.take(), vec![]);
        assert_eq!(t.position().map(|p| p.offset), Some(5));
    }

    #[test]
    fn missing_file_created_later_is_read_from_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.log");
        // from_beginning = false applies to the first open only.
        let (mut t, rec) = tail(&path, false);
        let mut out = Vec::new();
        assert_eq!(t.poll(&mut out), PollOutcome::Unavailable);
        assert_eq!(t.poll(&mut out), PollOutcome::Unavailable);
        assert!(out.is_empty());
        assert_eq!(t.position(), None);
        assert_eq!(rec.take(), vec![Ev::Up(false)]);
        fs::write(&path, b"first\n").unwrap();
        assert_eq!(s(&read(&mut t)), "first\n");
        assert_eq!(rec.take(), vec![Ev::Up(true)]);
    }

    #[test]
    fn permission_denied_then_allowed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.log");
        fs::write(&path, b"secret\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap();
        if File::open(&path).is_ok() {
            eprintln!("skipping: file modes are not enforced (running as root?)");
            return;
        }
        let (mut t, rec) = tail_with(settings(&path, true), true);
        let mut out = Vec::new();
        assert_eq!(t.poll(&mut out), PollOutcome::Unavailable);
        assert_eq!(t.poll(&mut out), PollOutcome::Unavailable);
        assert!(out.is_empty());
        assert_eq!(
            rec.take(),
            vec![Ev::Error(io::ErrorKind::PermissionDenied), Ev::Up(false)]
        );
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(s(&read(&mut t)), "secret\n");
        assert_eq!(rec.take(), vec![Ev::Up(true)]);
    }

    #[test]
    fn directory_at_path_is_an_error_not_a_hang() {
        let dir = tempfile::tempdir().unwrap();
        let (mut t, rec) = tail_with(settings(dir.path(), true), true);
        let mut out = Vec::new();
        assert_eq!(t.poll(&mut out), PollOutcome::Unavailable);
        assert_eq!(
            rec.take(),
            vec![Ev::Error(io::ErrorKind::InvalidInput), Ev::Up(false)]
        );
    }

    #[test]
    fn oversized_line_is_skipped_and_next_line_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.log");
        fs::write(&path, b"short\n0123456789abcdef\nnext\n").unwrap();
        let mut set = settings(&path, true);
        set.max_line_bytes = 8;
        let (mut t, rec) = tail_with(set, false);
        assert_eq!(s(&read(&mut t)), "short\nnext\n");
        append(&path, b"0123456789");
        assert_eq!(s(&read(&mut t)), "");
        append(&path, b"more");
        assert_eq!(s(&read(&mut t)), "");
        append(&path, b"\n12345678\n");
        assert_eq!(s(&read(&mut t)), "12345678\n");
        assert_eq!(
            rec.take(),
            vec![Ev::Up(true), Ev::TooLong(16), Ev::TooLong(10)]
        );
    }

    #[test]
    fn rotated_file_last_line_without_newline_is_terminated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.log");
        fs::write(&path, b"a\nb").unwrap();
        let (mut t, rec) = tail(&path, true);
        assert_eq!(s(&read(&mut t)), "a\n");
        fs::rename(&path, dir.path().join("mail.log.1")).unwrap();
        fs::write(&path, b"c\n").unwrap();
        assert_eq!(s(&read(&mut t)), "b\nc\n");
        assert_eq!(
            rec.take(),
            vec![Ev::Up(true), Ev::Rotated(Rotation::Replaced)]
        );
    }

    #[test]
    fn position_resumes_at_first_unfinished_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.log");
        fs::write(&path, b"a\nb\nc").unwrap();
        let (mut t, _rec) = tail(&path, true);
        assert_eq!(s(&read(&mut t)), "a\nb\n");
        let pos = t.position().unwrap();
        assert_eq!(pos.offset, 4);
        let meta = fs::metadata(&path).unwrap();
        assert_eq!((pos.dev, pos.ino), (meta.dev(), meta.ino()));
        drop(t);

        append(&path, b"d\n");
        let mut set = settings(&path, false);
        set.start_at = Some(pos);
        let (mut t, _rec) = tail_with(set, false);
        assert_eq!(s(&read(&mut t)), "cd\n");
        assert_eq!(t.position().map(|p| p.offset), Some(7));
    }

    #[test]
    fn saved_position_of_another_file_reads_from_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.log");
        fs::write(&path, b"a\nb\n").unwrap();
        let meta = fs::metadata(&path).unwrap();
        let mut set = settings(&path, false);
        set.start_at = Some(Position {
            head: Fingerprint::default(),
            dev: meta.dev(),
            ino: meta.ino().wrapping_add(1),
            offset: 2,
        });
        let (mut t, _rec) = tail_with(set, false);
        assert_eq!(s(&read(&mut t)), "a\nb\n");
    }

    #[test]
    fn saved_position_past_end_reads_from_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.log");
        fs::write(&path, b"a\nb\n").unwrap();
        let meta = fs::metadata(&path).unwrap();
        let mut set = settings(&path, false);
        set.start_at = Some(Position {
            head: Fingerprint::default(),
            dev: meta.dev(),
            ino: meta.ino(),
            offset: 100,
        });
        let (mut t, _rec) = tail_with(set, false);
        assert_eq!(s(&read(&mut t)), "a\nb\n");
    }

    #[test]
    fn saved_position_in_file_rotated_while_stopped_reads_old_rest_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.log");
        fs::write(&path, b"a\nb\n").unwrap();
        let (mut t, _rec) = tail(&path, true);
        assert_eq!(s(&read(&mut t)), "a\nb\n");
        let pos = t.position().unwrap();
        assert_eq!(pos.head, Fingerprint::of(b"a\nb\n"));
        drop(t);
        // While stopped: more lines, rotation, a compressed decoy, new file.
        append(&path, b"c\n");
        fs::rename(&path, dir.path().join("mail.log.1")).unwrap();
        fs::write(dir.path().join("mail.log.2.gz"), b"zz").unwrap();
        fs::write(&path, b"d\n").unwrap();
        let mut set = settings(&path, false);
        set.start_at = Some(pos);
        let (mut t, rec) = tail_with(set, false);
        assert_eq!(s(&read(&mut t)), "c\nd\n");
        assert_eq!(
            rec.take(),
            vec![Ev::Up(true), Ev::Rotated(Rotation::Replaced)]
        );
    }

    #[test]
    fn saved_position_in_renamed_file_with_nothing_at_path_yet() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.log");
        fs::write(&path, b"a\n").unwrap();
        let (mut t, _rec) = tail(&path, true);
        assert_eq!(s(&read(&mut t)), "a\n");
        let pos = t.position().unwrap();
        drop(t);
        append(&path, b"b\n");
        fs::rename(&path, dir.path().join("mail.log-20261121-101010")).unwrap();
        let mut set = settings(&path, false);
        set.start_at = Some(pos);
        let (mut t, _rec) = tail_with(set, false);
        assert_eq!(s(&read(&mut t)), "b\n");
        fs::write(&path, b"c\n").unwrap();
        assert_eq!(s(&read(&mut t)), "c\n");
    }

    #[test]
    fn reused_inode_with_other_content_is_read_from_start() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.log");
        fs::write(&path, b"old line 1\nold line 2\n").unwrap();
        let (mut t, _rec) = tail(&path, true);
        read(&mut t);
        let pos = t.position().unwrap();
        drop(t);
        // Same inode, new content at least as long: only the fingerprint
        // tells them apart.
        fs::write(&path, b"new line 1\nnew line 2\nnew 3\n").unwrap();
        let mut set = settings(&path, false);
        set.start_at = Some(pos);
        let (mut t, _rec) = tail_with(set, false);
        assert_eq!(s(&read(&mut t)), "new line 1\nnew line 2\nnew 3\n");
    }

    #[test]
    fn fingerprint_grows_with_the_file_up_to_its_limit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.log");
        fs::write(&path, b"a\n").unwrap();
        let (mut t, _rec) = tail(&path, true);
        read(&mut t);
        assert_eq!(t.position().unwrap().head.len, 2);
        let data = many_lines(20);
        append(&path, &data);
        read(&mut t);
        let head = t.position().unwrap().head;
        assert_eq!(head.len, FINGERPRINT_BYTES);
        let mut all = b"a\n".to_vec();
        all.extend_from_slice(&data);
        assert_eq!(head, Fingerprint::of(&all[..FINGERPRINT_BYTES as usize]));
    }

    #[test]
    fn open_file_made_unreadable_reports_down_and_keeps_reading() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.log");
        fs::write(&path, b"a\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap();
        if File::open(&path).is_ok() {
            eprintln!("skipping: file modes are not enforced (running as root?)");
            return;
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let (mut t, rec) = tail_with(settings(&path, true), true);
        assert_eq!(s(&read(&mut t)), "a\n");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o000)).unwrap();
        append_as_owner(&path, b"b\n");
        assert_eq!(s(&read(&mut t)), "b\n");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        append(&path, b"c\n");
        assert_eq!(s(&read(&mut t)), "c\n");
        assert_eq!(
            rec.take(),
            vec![
                Ev::Up(true),
                Ev::Error(io::ErrorKind::PermissionDenied),
                Ev::Up(false),
                Ev::Up(true)
            ]
        );
    }

    /// Appends to a file whose mode forbids opening it, by lending it write
    /// permission for the moment.
    fn append_as_owner(path: &Path, data: &[u8]) {
        let mode = fs::metadata(path).unwrap().permissions();
        fs::set_permissions(path, fs::Permissions::from_mode(0o200)).unwrap();
        append(path, data);
        fs::set_permissions(path, mode).unwrap();
    }

    #[test]
    fn replaced_file_is_still_read_until_its_writer_reopens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.log");
        fs::write(&path, b"a\n").unwrap();
        let mut set = settings(&path, true);
        set.retire_after_idle = Duration::from_secs(60);
        let (mut t, rec) = tail_with(set, false);
        assert_eq!(s(&read(&mut t)), "a\n");
        let mut old = writer(&path);
        fs::rename(&path, dir.path().join("mail.log.1")).unwrap();
        fs::write(&path, b"new 1\n").unwrap();
        old.write_all(b"b\npart").unwrap();
        assert_eq!(s(&read(&mut t)), "b\nnew 1\n");
        // The writer has not reopened yet: the old file still gets lines.
        old.write_all(b"ial\nc\n").unwrap();
        append(&path, b"new 2\n");
        assert_eq!(s(&read(&mut t)), "partial\nc\nnew 2\n");
        assert_eq!(
            rec.take(),
            vec![Ev::Up(true), Ev::Rotated(Rotation::Replaced)]
        );
        // A second replacement drops the first one after a last drain.
        old.write_all(b"d\ne").unwrap();
        fs::rename(&path, dir.path().join("mail.log.2")).unwrap();
        fs::write(&path, b"newer\n").unwrap();
        assert_eq!(s(&read(&mut t)), "d\ne\nnewer\n");
    }

    /// Lines `0..n`, each `line NNNNNN padded...\n`.
    fn many_lines(n: usize) -> Vec<u8> {
        let mut data = Vec::new();
        for i in 0..n {
            writeln!(data, "line {i:06} {}", "x".repeat(40)).unwrap();
        }
        data
    }

    #[test]
    fn limited_poll_splits_large_reads_without_losing_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.log");
        let data = many_lines(5000); // about 250 KiB, several read chunks
        fs::write(&path, &data).unwrap();
        let (mut t, rec) = tail(&path, true);
        let mut all = Vec::new();
        let mut mores = 0;
        loop {
            let mut out = Vec::new();
            let outcome = t.poll_limited(&mut out, 1);
            assert!(out.len() <= READ_CHUNK + 1024 + 1);
            all.extend_from_slice(&out);
            match outcome {
                PollOutcome::More => mores += 1,
                PollOutcome::Idle => break,
                PollOutcome::Unavailable => panic!("unavailable"),
            }
        }
        assert!(mores >= 3, "only {mores} partial polls");
        assert_eq!(all, data);
        assert_eq!(rec.bytes.load(Ordering::Relaxed), data.len() as u64);
    }

    #[test]
    fn spawned_tail_follows_appends_and_rename() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.log");
        let initial = many_lines(12_000); // about 600 KiB: several batches
        fs::write(&path, &initial).unwrap();

        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<LineBatch>(4);
        let stop = Arc::new(AtomicBool::new(false));
        let rec = Arc::new(Recorder::default());
        let handle = spawn_file_tail(
            settings(&path, true),
            rec.clone(),
            tx,
            Duration::from_millis(50),
            stop.clone(),
        )
        .unwrap();

        let mut got = Vec::new();
        let mut receive_until = |want: &[u8], got: &mut Vec<u8>| {
            let deadline = Instant::now() + Duration::from_secs(30);
            while got.len() < want.len() && Instant::now() < deadline {
                let batch = rt.block_on(async {
                    tokio::time::timeout(Duration::from_millis(200), rx.recv()).await
                });
                if let Ok(Some(batch)) = batch {
                    assert_eq!(batch.source, SourceId(7));
                    assert!(batch.position.is_some());
                    if batch.data.is_empty() {
                        continue;
                    }
                    assert!(batch.data.len() <= BATCH_BYTES + READ_CHUNK + 1024 + 1);
                    assert_eq!(batch.data.last(), Some(&b'\n'));
                    got.extend_from_slice(&batch.data);
                }
            }
            assert_eq!(s(got), s(want));
        };

        let mut want = initial.clone();
        receive_until(&want, &mut got);

        append(&path, b"appended 1\n");
        want.extend_from_slice(b"appended 1\n");
        receive_until(&want, &mut got);

        let mut old = writer(&path);
        fs::rename(&path, dir.path().join("mail.log.1")).unwrap();
        old.write_all(b"late on old\n").unwrap();
        fs::write(&path, b"new 1\n").unwrap();
        append(&path, b"new 2\n");
        want.extend_from_slice(b"late on old\nnew 1\nnew 2\n");
        receive_until(&want, &mut got);

        // Written just before stop: the final poll still picks it up.
        append(&path, b"last\n");
        want.extend_from_slice(b"last\n");
        stop.store(true, Ordering::Release);
        handle.join().unwrap();
        while let Ok(batch) = rx.try_recv() {
            got.extend_from_slice(&batch.data);
        }
        assert_eq!(s(&got), s(&want));
        assert_eq!(
            rec.take(),
            vec![Ev::Up(true), Ev::Rotated(Rotation::Replaced)]
        );
    }

    #[test]
    fn spawned_tail_stops_quietly_when_receiver_is_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mail.log");
        fs::write(&path, b"a\n").unwrap();
        let (tx, rx) = tokio::sync::mpsc::channel::<LineBatch>(1);
        drop(rx);
        let handle = spawn_file_tail(
            settings(&path, true),
            Arc::new(Recorder::default()),
            tx,
            Duration::from_millis(10),
            Arc::new(AtomicBool::new(false)),
        )
        .unwrap();
        handle.join().unwrap();
    }
}
