//! The daemon: sources, pipeline and HTTP wired together until a signal.
//!
//! Reader threads (one per file, or the demo feeder) send [`LineBatch`]es
//! over a bounded channel to one pipeline thread, which owns all parsing
//! and per-message state. The HTTP server runs on the tokio runtime and
//! only gathers the registry, so a slow scrape never stalls the pipeline
//! and a burst of log lines never delays a scrape. On shutdown the server
//! stops first (bounded drain), then readers do a final read and stop, then
//! the pipeline drains what they sent, then the positions file is saved.
//!
//! Positions: each batch carries the reader's position after its last line;
//! the pipeline thread acknowledges it in a [`PositionBook`] only after
//! processing the batch, and a writer thread saves the book every
//! [`POSITIONS_SAVE_INTERVAL`] when it changed, and once more at shutdown.
//! So the saved offsets are always of processed lines.

use crate::config::FileSource;
use crate::http::{self, HttpSettings};
use crate::metrics::{BuildInfo, Metrics, SourceMetrics};
use crate::parser::time::{SystemClock, Zone};
use crate::parser::Format;
use crate::pipeline::{Pipeline, SourceSpec};
use crate::source::{
    self, LineBatch, PositionBook, PositionsFile, SourceId, SourceObserver, TailSettings,
};
use crate::state::StateSettings;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Batches in flight between readers and the pipeline.
const CHANNEL_BATCHES: usize = 64;

/// How long readers, the pipeline and the positions writer get to finish
/// after the HTTP server stopped: with its bounded drain
/// ([`http::DRAIN_TIMEOUT`], 3 s) the whole shutdown stays under 5 s.
const READERS_STOP_TIMEOUT: Duration = Duration::from_millis(1500);

/// How often acknowledged positions are saved, when they changed.
pub const POSITIONS_SAVE_INTERVAL: Duration = Duration::from_secs(3);

/// Where lines come from.
#[derive(Clone, Debug)]
pub enum Feed {
    /// Follow files.
    Files {
        files: Vec<FileSource>,
        from_beginning: bool,
        poll_interval: Duration,
        max_line_bytes: usize,
        /// Where positions are saved and resumed from; `None` disables it.
        positions_file: Option<std::path::PathBuf>,
    },
    /// Replay the bundled sample logs in a loop.
    Demo { lines_per_second: usize },
}

/// Everything the daemon needs.
#[derive(Clone, Debug)]
pub struct DaemonSettings {
    pub feed: Feed,
    pub http: HttpSettings,
    pub state: StateSettings,
}

/// Errors that stop the daemon.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Http(#[from] http::HttpError),
    #[error("cannot start a reader thread: {0}")]
    Thread(std::io::Error),
}

/// Runs until `shutdown` resolves; `on_listening` is told the bound address.
pub async fn run(
    settings: DaemonSettings,
    shutdown: impl Future<Output = ()> + Send + 'static,
    on_listening: impl FnOnce(std::net::SocketAddr),
) -> Result<(), DaemonError> {
    let metrics = Arc::new(Metrics::new(&BuildInfo::CURRENT));
    let specs: Vec<SourceSpec> = match &settings.feed {
        Feed::Files { files, .. } => files
            .iter()
            .map(|f| SourceSpec {
                name: f.name.clone(),
                format: f.format,
                settings: f.settings,
            })
            .collect(),
        Feed::Demo { .. } => vec![
            SourceSpec::new("demo-postfix-lab", Some(Format::Postfix)),
            SourceSpec::new("demo-postfix-production", Some(Format::Postfix)),
        ],
    };
    let observer = Arc::new(SourceMetrics::new(
        metrics.clone(),
        specs.iter().map(|s| s.name.clone()).collect(),
    ));
    let mut pipeline = Pipeline::new(
        metrics.clone(),
        &specs,
        settings.state,
        Zone::Local,
        Box::new(SystemClock),
    );
    let listener = http::bind(&settings.http).await?;
    if let Ok(addr) = listener.local_addr() {
        on_listening(addr);
    }

    let (tx, mut rx) = tokio::sync::mpsc::channel::<LineBatch>(CHANNEL_BATCHES);
    let stop = Arc::new(AtomicBool::new(false));
    let mut readers = Vec::new();
    let mut positions: Option<(PositionsFile, Arc<PositionBook>)> = None;
    match &settings.feed {
        Feed::Files {
            files,
            from_beginning,
            poll_interval,
            max_line_bytes,
            positions_file,
        } => {
            let saved = match positions_file {
                Some(path) => {
                    let file = PositionsFile::new(path.clone());
                    let saved = file.load();
                    let book = PositionBook::new(
                        files.iter().map(|f| position_key(&f.path)).collect(),
                        &saved,
                    );
                    positions = Some((file, Arc::new(book)));
                    saved
                }
                None => Default::default(),
            };
            for (i, file) in files.iter().enumerate() {
                let start_at = saved.get(&position_key(&file.path)).copied();
                if let Some(pos) = start_at {
                    tracing::info!(path = %file.path.display(), offset = pos.offset, "resuming at the saved position");
                }
                let tail = TailSettings {
                    source: SourceId(i),
                    path: file.path.clone(),
                    from_beginning: *from_beginning,
                    max_line_bytes: *max_line_bytes,
                    start_at,
                    retire_after_idle: source::RETIRE_AFTER_IDLE,
                };
                let obs: Arc<dyn SourceObserver> = observer.clone();
                let handle =
                    source::spawn_file_tail(tail, obs, tx.clone(), *poll_interval, stop.clone())
                        .map_err(DaemonError::Thread)?;
                readers.push(handle);
            }
        }
        Feed::Demo { lines_per_second } => {
            for (i, log) in [
                source::demo::POSTFIX_LAB_LOG,
                source::demo::POSTFIX_PRODUCTION_EXCERPT,
            ]
            .into_iter()
            .enumerate()
            {
                observer.source_up(SourceId(i), true);
                let handle = source::demo::spawn_demo(
                    log,
                    SourceId(i),
                    *lines_per_second,
                    tx.clone(),
                    stop.clone(),
                )
                .map_err(DaemonError::Thread)?;
                readers.push(handle);
            }
        }
    }
    drop(tx);
    let book = positions.as_ref().map(|(_, book)| book.clone());
    let pipeline_thread = std::thread::Builder::new()
        .name("pipeline".into())
        .spawn(move || {
            while let Some(batch) = rx.blocking_recv() {
                if !batch.data.is_empty() {
                    pipeline.process_batch(&batch);
                }
                if let (Some(book), Some(pos)) = (&book, batch.position) {
                    book.acknowledge(batch.source, pos);
                }
            }
        })
        .map_err(DaemonError::Thread)?;
    let (writer_stop, writer_thread) = match positions {
        Some((file, book)) => {
            let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
            let metrics = metrics.clone();
            let handle = std::thread::Builder::new()
                .name("positions".into())
                .spawn(move || save_positions_until_stopped(&file, &book, &metrics, &stop_rx))
                .map_err(DaemonError::Thread)?;
            (Some(stop_tx), Some(handle))
        }
        None => (None, None),
    };

    let served = http::serve(
        listener,
        settings.http.clone(),
        metrics.registry().clone(),
        shutdown,
    )
    .await;
    stop.store(true, Ordering::Relaxed);
    // Readers notice `stop` within one poll interval; the pipeline ends
    // when the last reader drops its sender.
    let joined = tokio::task::spawn_blocking(move || {
        for r in readers {
            let _ = r.join();
        }
        let _ = pipeline_thread.join();
        // Every batch sent is processed and acknowledged: final save.
        drop(writer_stop);
        if let Some(w) = writer_thread {
            let _ = w.join();
        }
    });
    if tokio::time::timeout(READERS_STOP_TIMEOUT, joined)
        .await
        .is_err()
    {
        tracing::warn!("readers did not stop within 1.5 s; exiting anyway");
    }
    served?;
    Ok(())
}

/// The key of a followed path in the positions file: absolute, so that a
/// restart from another working directory finds it.
fn position_key(path: &std::path::Path) -> std::path::PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// Saves the acknowledged positions every [`POSITIONS_SAVE_INTERVAL`] when
/// they changed, and once more (always) when `stop` is dropped.
fn save_positions_until_stopped(
    file: &PositionsFile,
    book: &PositionBook,
    metrics: &Metrics,
    stop: &std::sync::mpsc::Receiver<()>,
) {
    let mut last_error: Option<std::io::ErrorKind> = None;
    let mut save = |force: bool| {
        let Some(snapshot) = book.snapshot_if_changed(force) else {
            return;
        };
        match file.save(&snapshot) {
            Ok(()) => {
                metrics.positions_written(true);
                last_error = None;
            }
            Err(e) => {
                metrics.positions_written(false);
                book.mark_changed();
                if last_error != Some(e.kind()) {
                    tracing::warn!(file = %file.path().display(), error = %e, "cannot save positions; retrying");
                    last_error = Some(e.kind());
                }
            }
        }
    };
    loop {
        match stop.recv_timeout(POSITIONS_SAVE_INTERVAL) {
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => save(false),
            Ok(()) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                save(true);
                return;
            }
        }
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("SIGINT received, shutting down"),
        _ = term => tracing::info!("SIGTERM received, shutting down"),
    }
}
