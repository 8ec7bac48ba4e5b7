//! The daemon: sources, pipeline and HTTP wired together until a signal.
//!
//! Reader threads (one per file, or the demo feeder) send [`LineBatch`]es
//! over a bounded channel to one pipeline thread, which owns all parsing
//! and per-message state. The HTTP server runs on the tokio runtime and
//! only gathers the registry, so a slow scrape never stalls the pipeline
//! and a burst of log lines never delays a scrape. On shutdown the server
//! stops first (bounded drain), then readers do a final read and stop, then
//! the pipeline drains what they sent.

use crate::config::FileSource;
use crate::http::{self, HttpSettings};
use crate::metrics::{BuildInfo, Metrics, SourceMetrics};
use crate::parser::time::{SystemClock, Zone};
use crate::parser::Format;
use crate::pipeline::{Pipeline, SourceSpec};
use crate::source::{self, LineBatch, SourceId, SourceObserver, TailSettings};
use crate::state::StateSettings;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Batches in flight between readers and the pipeline.
const CHANNEL_BATCHES: usize = 64;

/// Where lines come from.
#[derive(Clone, Debug)]
pub enum Feed {
    /// Follow files.
    Files {
        files: Vec<FileSource>,
        from_beginning: bool,
        poll_interval: Duration,
        max_line_bytes: usize,
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
            })
            .collect(),
        Feed::Demo { .. } => vec![
            SourceSpec {
                name: "demo-postfix-lab".into(),
                format: Some(Format::Postfix),
            },
            SourceSpec {
                name: "demo-postfix-production".into(),
                format: Some(Format::Postfix),
            },
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
    match &settings.feed {
        Feed::Files {
            files,
            from_beginning,
            poll_interval,
            max_line_bytes,
        } => {
            for (i, file) in files.iter().enumerate() {
                let tail = TailSettings {
                    source: SourceId(i),
                    path: file.path.clone(),
                    from_beginning: *from_beginning,
                    max_line_bytes: *max_line_bytes,
                    start_at: None,
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
    let pipeline_thread = std::thread::Builder::new()
        .name("pipeline".into())
        .spawn(move || {
            while let Some(batch) = rx.blocking_recv() {
                pipeline.process_batch(&batch);
            }
        })
        .map_err(DaemonError::Thread)?;

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
    });
    if tokio::time::timeout(Duration::from_secs(3), joined)
        .await
        .is_err()
    {
        tracing::warn!("readers did not stop within 3 s; exiting anyway");
    }
    served?;
    Ok(())
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
