//! HTTP: serves the metrics registry to Prometheus.
//!
//! Contract:
//!
//! - In: [`HttpSettings`] (listen address, telemetry path, optional
//!   [`WebConfig`] from `--web.config.file`), a `prometheus::Registry`, and a
//!   shutdown future. The server only calls `registry.gather()`; it never
//!   touches the pipeline.
//! - [`bind`] opens the listener first, so callers (and tests) can use port 0
//!   and learn the address. `":9873"` means every interface (IPv6 and IPv4
//!   where the host allows, else IPv4).
//! - [`serve`] runs an accept loop that spawns one task per connection: a
//!   slow or stuck client only holds its own task. Each connection has a
//!   header read timeout ([`HEADER_READ_TIMEOUT`], which also ends idle
//!   keep-alive connections), an idle limit on any I/O progress
//!   ([`IDLE_TIMEOUT`]) and, with TLS, a handshake timeout. Accept errors
//!   (such as running out of file descriptors) are logged and retried after
//!   a short pause, never fatal.
//! - Routes: GET/HEAD on the telemetry path gives the text exposition format,
//!   gzipped when `Accept-Encoding` allows it; `/` gives a small HTML landing
//!   page; other methods on those paths give 405 with `Allow`; any other path
//!   gives 404. With `basic_auth_users`, every request needs valid
//!   credentials (401 with `WWW-Authenticate: Basic` otherwise).
//! - Shutdown: when the shutdown future resolves, the listener closes,
//!   in-flight connections are asked to finish (keep-alive is turned off),
//!   and after [`DRAIN_TIMEOUT`] whatever is left is aborted, so [`serve`]
//!   returns within 5 seconds even if a client hangs.
//! - Errors: [`HttpError`] messages say how to fix the input; only bad
//!   settings make [`bind`], [`serve`] or [`load_web_config`] fail.

mod handler;
mod web_config;

#[cfg(test)]
mod tests;

use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::pin::{pin, Pin};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio::time::Instant;

use handler::AppState;

pub use web_config::{load_web_config, WebConfig};

/// The conventional telemetry path.
pub const DEFAULT_TELEMETRY_PATH: &str = "/metrics";
/// How long a client may take to send a request's headers, counted from
/// the connection start or the end of the previous response.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(30);
/// A connection on which no byte moves either way for this long is closed
/// (a client that stopped reading the response, or sending its body).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(120);
/// How long a TLS client may take to complete the handshake.
pub const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long shutdown waits for in-flight connections before aborting them.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(3);
/// Pause after a failed `accept` (e.g. out of file descriptors).
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(100);

/// Where and how to serve.
#[derive(Debug, Clone)]
pub struct HttpSettings {
    /// `host:port`, e.g. `0.0.0.0:9873`, `[::]:9873`, `localhost:9873`, or
    /// `:9873` for every interface.
    pub listen_address: String,
    /// Path that serves the metrics, e.g. [`DEFAULT_TELEMETRY_PATH`].
    pub telemetry_path: String,
    /// TLS, basic auth and extra headers from `--web.config.file`.
    pub web_config: Option<WebConfig>,
}

/// Why the HTTP server could not start.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// `--web.listen-address` is not `host:port`.
    #[error(
        "invalid listen address {address:?}: {reason}; use host:port such as 0.0.0.0:9873, \
         [::]:9873 or :9873 (all interfaces)"
    )]
    InvalidListenAddress {
        /// The address as given.
        address: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The address is well-formed but cannot be listened on.
    #[error(
        "cannot listen on {address}: {source}; check that the port is free and the host is an \
         address of this machine"
    )]
    Bind {
        /// The address as given.
        address: String,
        /// The operating system's answer.
        source: io::Error,
    },
    /// `--web.telemetry-path` is not an absolute URL path.
    #[error(
        "invalid telemetry path {path:?}: it must start with '/' and contain no spaces, '?' or \
         '#', e.g. /metrics"
    )]
    InvalidTelemetryPath {
        /// The path as given.
        path: String,
    },
    /// The web config file cannot be read.
    #[error("cannot read web config file {}: {source}; check --web.config.file", path.display())]
    WebConfigRead {
        /// The file.
        path: PathBuf,
        /// The operating system's answer.
        source: io::Error,
    },
    /// The web config file is not valid YAML of the expected shape (this
    /// includes unknown keys, which are named).
    #[error(
        "web config file {} is not valid: {source}; the allowed top-level keys are \
         tls_server_config, http_server_config and basic_auth_users",
        path.display()
    )]
    WebConfigSyntax {
        /// The file.
        path: PathBuf,
        /// The parser's answer, naming the key and position.
        source: serde_yaml::Error,
    },
    /// A value in the web config file is wrong or does not fit the others.
    #[error("web config file {}: {message}", path.display())]
    WebConfigInvalid {
        /// The file.
        path: PathBuf,
        /// What is wrong and how to fix it.
        message: String,
    },
    /// The web config file uses a setting this exporter does not implement.
    #[error("web config file {}: {setting} is not supported: {hint}", path.display())]
    WebConfigUnsupported {
        /// The setting, e.g. `rate_limit`.
        setting: &'static str,
        /// The file.
        path: PathBuf,
        /// What to do instead.
        hint: &'static str,
    },
}

/// Opens the listening socket for `settings.listen_address`.
pub async fn bind(settings: &HttpSettings) -> Result<TcpListener, HttpError> {
    let address = settings.listen_address.trim();
    let invalid = |reason| HttpError::InvalidListenAddress {
        address: settings.listen_address.clone(),
        reason,
    };
    let bind_error = |source| HttpError::Bind {
        address: settings.listen_address.clone(),
        source,
    };
    let Some((host, port)) = address.rsplit_once(':') else {
        return Err(invalid("no port"));
    };
    if host.contains(':') && !(host.starts_with('[') && host.ends_with(']')) {
        return Err(invalid("an IPv6 address needs brackets, e.g. [::1]:9873"));
    }
    let port: u16 = port
        .parse()
        .map_err(|_| invalid("the port is not a number from 0 to 65535"))?;
    if host.is_empty() {
        // All interfaces: dual-stack where IPv6 works, else IPv4 only.
        return match TcpListener::bind((Ipv6Addr::UNSPECIFIED, port)).await {
            Ok(listener) => Ok(listener),
            Err(e) => {
                tracing::debug!(error = %e, "cannot listen on [::], trying 0.0.0.0");
                TcpListener::bind((Ipv4Addr::UNSPECIFIED, port))
                    .await
                    .map_err(bind_error)
            }
        };
    }
    TcpListener::bind(address).await.map_err(bind_error)
}

fn check_telemetry_path(path: &str) -> Result<(), HttpError> {
    let ok = path.starts_with('/')
        && !path
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '?' || c == '#');
    if ok {
        Ok(())
    } else {
        Err(HttpError::InvalidTelemetryPath {
            path: path.to_owned(),
        })
    }
}

/// Serves `registry` on `listener` until `shutdown` resolves (see the
/// module docs for routes, limits and the shutdown bound).
pub async fn serve(
    listener: TcpListener,
    settings: HttpSettings,
    registry: prometheus::Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), HttpError> {
    serve_with_limits(listener, settings, registry, shutdown, Limits::default()).await
}

/// The timeouts of [`serve`]; tests shorten them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub(crate) header_read: Duration,
    pub(crate) idle: Duration,
    pub(crate) tls_handshake: Duration,
    pub(crate) drain: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            header_read: HEADER_READ_TIMEOUT,
            idle: IDLE_TIMEOUT,
            tls_handshake: TLS_HANDSHAKE_TIMEOUT,
            drain: DRAIN_TIMEOUT,
        }
    }
}

pub(crate) async fn serve_with_limits(
    listener: TcpListener,
    settings: HttpSettings,
    registry: prometheus::Registry,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: Limits,
) -> Result<(), HttpError> {
    check_telemetry_path(&settings.telemetry_path)?;
    let tls = settings
        .web_config
        .as_ref()
        .and_then(|c| c.tls.clone())
        .map(tokio_rustls::TlsAcceptor::from);
    let state = Arc::new(AppState::new(
        settings.telemetry_path,
        registry,
        settings.web_config.as_ref(),
    ));
    match listener.local_addr() {
        Ok(addr) => tracing::info!(%addr, tls = tls.is_some(), "serving metrics"),
        Err(e) => tracing::warn!(error = %e, "serving metrics on an unknown address"),
    }

    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    let mut shutdown = pin!(shutdown);
    loop {
        tokio::select! {
            biased;
            () = &mut shutdown => break,
            Some(done) = connections.join_next(), if !connections.is_empty() => {
                if let Err(e) = done {
                    if e.is_panic() {
                        tracing::error!(error = %e, "a connection task panicked");
                    }
                }
            }
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Small responses go out at once; failure only costs latency.
                    let _ = stream.set_nodelay(true);
                    let conn = connection(stream, peer, tls.clone(), state.clone(), graceful.watcher(), limits);
                    connections.spawn(conn);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accepting a connection failed; retrying");
                    tokio::select! {
                        () = &mut shutdown => break,
                        () = tokio::time::sleep(ACCEPT_RETRY_PAUSE) => {}
                    }
                }
            },
        }
    }

    drop(listener);
    tracing::info!(
        connections = connections.len(),
        "shutting down the HTTP server"
    );
    let drained = tokio::time::timeout(limits.drain, async {
        graceful.shutdown().await;
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::warn!(
            connections = connections.len(),
            "connections still open after the drain timeout; closing them"
        );
    }
    connections.shutdown().await;
    Ok(())
}

/// One accepted connection, run on its own task.
async fn connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    tls: Option<tokio_rustls::TlsAcceptor>,
    state: Arc<AppState>,
    watcher: Watcher,
    limits: Limits,
) {
    match tls {
        None => serve_http(stream, peer, state, watcher, limits).await,
        Some(acceptor) => {
            match tokio::time::timeout(limits.tls_handshake, acceptor.accept(stream)).await {
                Ok(Ok(stream)) => serve_http(stream, peer, state, watcher, limits).await,
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        }
    }
}

/// Serves HTTP/1.1 on one (possibly TLS) stream until the client leaves,
/// a timeout hits, or a graceful shutdown completes it.
async fn serve_http<S>(
    stream: S,
    peer: SocketAddr,
    state: Arc<AppState>,
    watcher: Watcher,
    limits: Limits,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let activity = Arc::new(Activity::new());
    let io = TokioIo::new(ActivityIo {
        inner: stream,
        activity: activity.clone(),
    });
    let service = service_fn(move |req| handler::handle(state.clone(), req));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read);
    let conn = watcher.watch(builder.serve_connection(io, service));
    let mut conn = pin!(conn);
    loop {
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            () = tokio::time::sleep_until(activity.last() + limits.idle) => {
                if activity.last().elapsed() >= limits.idle {
                    tracing::debug!(%peer, idle = ?limits.idle, "closing an idle connection");
                    return;
                }
            }
        }
    }
}

/// When a connection last moved a byte, as milliseconds since its start.
struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }

    fn touch(&self) {
        let ms = u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_ms.store(ms, Ordering::Relaxed);
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last_ms.load(Ordering::Relaxed))
    }
}

/// A stream that records progress in an [`Activity`].
struct ActivityIo<S> {
    inner: S,
    activity: Arc<Activity>,
}

impl<S: AsyncRead + Unpin> AsyncRead for ActivityIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(result, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.touch();
        }
        result
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for ActivityIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(result, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        result
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
