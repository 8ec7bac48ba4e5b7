//! Sources: where log lines come from.
//!
//! A source reads bytes (today: files tailed live, or read once for
//! `replay`), cuts them into complete lines and hands them on in
//! [`LineBatch`]es over a bounded channel to the single pipeline task. A
//! source never parses: it only guarantees that every line it passes on is
//! complete (ends with `\n`), no longer than the configured limit, and passed
//! on exactly once. Everything that happens to a source (it went up or down,
//! was rotated, truncated, hit an oversized line or an I/O error) is reported
//! through one [`SourceObserver`], which production implements with logs and
//! metrics and tests implement to assert on.

use std::io;
use std::path::Path;

pub mod demo;
mod file;
mod line_reader;
mod positions;

pub use positions::{PositionBook, PositionsFile};

pub use file::{
    spawn_file_tail, FileTail, Fingerprint, PollOutcome, Position, TailSettings, BATCH_BYTES,
    FINGERPRINT_BYTES, RETIRE_AFTER_IDLE,
};

/// Index of a configured source; the pipeline maps it to its `source` label
/// and format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SourceId(pub usize);

/// Complete lines read from one source, in order.
#[derive(Debug, Default)]
pub struct LineBatch {
    pub source: SourceId,
    /// Complete lines, each terminated by `\n` (none when the batch only
    /// reports a new position).
    pub data: Vec<u8>,
    /// Where the source stands after the last line of `data`: acknowledged
    /// by the pipeline once processed, and saved for a restart. `None` for
    /// sources that cannot resume.
    pub position: Option<Position>,
}

/// How a followed file was found to have changed under the reader.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rotation {
    /// The path now names a different file (rename+create, delete+recreate,
    /// symlink swap); the old file was drained first.
    Replaced,
    /// The file shrank below the read offset (copytruncate); reading restarts
    /// at offset 0.
    Truncated,
}

impl Rotation {
    pub fn as_str(self) -> &'static str {
        match self {
            Rotation::Replaced => "replaced",
            Rotation::Truncated => "truncated",
        }
    }
}

/// Everything a source reports about itself. Implementations must be cheap:
/// they are called from reader threads.
pub trait SourceObserver: Send + Sync {
    /// The source's file could (`true`) or could not (`false`) be opened.
    fn source_up(&self, source: SourceId, up: bool);
    /// `n` bytes were read from the source.
    fn bytes_read(&self, source: SourceId, n: u64);
    /// The followed file was rotated or truncated.
    fn rotated(&self, source: SourceId, path: &Path, rotation: Rotation);
    /// A line longer than the limit was skipped (`len` bytes so far).
    fn line_too_long(&self, source: SourceId, path: &Path, len: usize);
    /// Opening or reading failed; the source keeps retrying.
    fn read_error(&self, source: SourceId, path: &Path, error: &io::Error);
}
