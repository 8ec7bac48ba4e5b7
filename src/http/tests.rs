//! End-to-end tests: a real server on 127.0.0.1:0, raw HTTP over TCP.

use std::io::Read as _;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{IntCounter, Registry};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::*;

/// Bound on every client step, so a broken server fails instead of hanging.
const STEP: Duration = Duration::from_secs(10);

struct Server {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), HttpError>>,
}

impl Server {
    async fn stop(mut self) -> Duration {
        let started = Instant::now();
        if let Some(stop) = self.stop.take() {
            stop.send(()).unwrap();
        }
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("serve did not return")
            .unwrap()
            .unwrap();
        started.elapsed()
    }
}

fn registry_with_counter(value: u64) -> Registry {
    let registry = Registry::new();
    let counter = IntCounter::new("maillog_test_events_total", "Events seen by the test.").unwrap();
    counter.inc_by(value);
    registry.register(Box::new(counter)).unwrap();
    registry
}

async fn start_with(telemetry_path: &str, web_config: Option<WebConfig>) -> Server {
    start_limited(telemetry_path, web_config, Limits::default()).await
}

async fn start_limited(
    telemetry_path: &str,
    web_config: Option<WebConfig>,
    limits: Limits,
) -> Server {
    let settings = HttpSettings {
        listen_address: "127.0.0.1:0".to_owned(),
        telemetry_path: telemetry_path.to_owned(),
        web_config,
    };
    let listener = bind(&settings).await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(serve_with_limits(
        listener,
        settings,
        registry_with_counter(42),
        async move {
            let _ = stopped.await;
        },
        limits,
    ));
    Server {
        addr,
        stop: Some(stop),
        task,
    }
}

async fn start() -> Server {
    start_with("/metrics", None).await
}

#[derive(Debug)]
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
}

/// Sends `head` (request line and headers, without the blank line) and
/// reads one response, using Content-Length to find its end.
async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    stream: &mut S,
    head: &str,
    is_head: bool,
) -> Reply {
    let request = format!("{head}\r\nConnection: close\r\n\r\n");
    tokio::time::timeout(STEP, stream.write_all(request.as_bytes()))
        .await
        .unwrap()
        .unwrap();
    let mut data = Vec::new();
    let header_end = loop {
        if let Some(pos) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        let mut chunk = [0u8; 4096];
        let n = tokio::time::timeout(STEP, stream.read(&mut chunk))
            .await
            .unwrap()
            .unwrap();
        assert!(n > 0, "connection closed before the response headers");
        data.extend_from_slice(&chunk[..n]);
    };
    let head_text = String::from_utf8(data[..header_end].to_vec()).unwrap();
    let mut lines = head_text.split("\r\n");
    let status_line = lines.next().unwrap();
    let status: u16 = status_line.split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .map(|l| {
            let (n, v) = l.split_once(':').unwrap();
            (n.trim().to_owned(), v.trim().to_owned())
        })
        .collect();
    let mut reply = Reply {
        status,
        headers,
        body: data[header_end + 4..].to_vec(),
    };
    let length: usize = reply
        .header("content-length")
        .expect("response has a Content-Length")
        .parse()
        .unwrap();
    if !is_head {
        while reply.body.len() < length {
            let mut chunk = [0u8; 4096];
            let n = tokio::time::timeout(STEP, stream.read(&mut chunk))
                .await
                .unwrap()
                .unwrap();
            assert!(n > 0, "connection closed inside the body");
            reply.body.extend_from_slice(&chunk[..n]);
        }
    }
    // Nothing may follow: the server closes after one exchange.
    let mut rest = Vec::new();
    tokio::time::timeout(STEP, stream.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(
        rest.is_empty(),
        "unexpected bytes after the response: {rest:?}"
    );
    reply
}

async fn request(addr: SocketAddr, head: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let is_head = head.starts_with("HEAD ");
    exchange(&mut stream, head, is_head).await
}

const COUNTER_LINE: &str = "maillog_test_events_total 42\n";

#[tokio::test]
async fn scrape_serves_the_registry_as_text() {
    let server = start().await;
    let reply = request(server.addr, "GET /metrics HTTP/1.1\r\nHost: x").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert_eq!(reply.header("content-encoding"), None);
    assert_eq!(reply.header("vary"), Some("Accept-Encoding"));
    let body = reply.text();
    assert!(body.contains(COUNTER_LINE), "{body}");
    assert!(body.contains("# TYPE maillog_test_events_total counter\n"));
    server.stop().await;
}

#[tokio::test]
async fn gzip_scrape_decodes_to_the_same_body() {
    let server = start().await;
    let plain = request(server.addr, "GET /metrics HTTP/1.1\r\nHost: x").await;
    let zipped = request(
        server.addr,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: deflate, gzip;q=0.8",
    )
    .await;
    assert_eq!(zipped.status, 200);
    assert_eq!(zipped.header("content-encoding"), Some("gzip"));
    assert_eq!(zipped.header("vary"), Some("Accept-Encoding"));
    assert_eq!(
        zipped.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let mut decoded = String::new();
    flate2::read::GzDecoder::new(zipped.body.as_slice())
        .read_to_string(&mut decoded)
        .unwrap();
    assert_eq!(decoded, plain.text());
    assert!(decoded.contains(COUNTER_LINE));
    server.stop().await;
}

#[tokio::test]
async fn gzip_with_q_zero_gives_identity() {
    let server = start().await;
    let reply = request(
        server.addr,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAccept-Encoding: gzip;q=0, identity",
    )
    .await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-encoding"), None);
    assert!(reply.text().contains(COUNTER_LINE));
    server.stop().await;
}

#[tokio::test]
async fn head_has_headers_but_no_body() {
    let server = start().await;
    let get = request(server.addr, "GET /metrics HTTP/1.1\r\nHost: x").await;
    let head = request(server.addr, "HEAD /metrics HTTP/1.1\r\nHost: x").await;
    assert_eq!(head.status, 200);
    assert_eq!(
        head.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    assert!(head.body.is_empty());
    assert_eq!(
        head.header("content-length"),
        Some(get.body.len().to_string().as_str())
    );
    server.stop().await;
}

#[tokio::test]
async fn unknown_path_is_404() {
    let server = start().await;
    let reply = request(server.addr, "GET /nope HTTP/1.1\r\nHost: x").await;
    assert_eq!(reply.status, 404);
    assert_eq!(reply.text(), "Not found\n");
    server.stop().await;
}

#[tokio::test]
async fn post_to_metrics_is_405_with_allow() {
    let server = start().await;
    let reply = request(
        server.addr,
        "POST /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 0",
    )
    .await;
    assert_eq!(reply.status, 405);
    assert_eq!(reply.header("allow"), Some("GET, HEAD"));
    server.stop().await;
}

#[tokio::test]
async fn landing_page_links_to_a_custom_telemetry_path() {
    let server = start_with("/custom/stats", None).await;
    let reply = request(server.addr, "GET / HTTP/1.1\r\nHost: x").await;
    assert_eq!(reply.status, 200);
    assert_eq!(
        reply.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    let page = reply.text();
    assert!(page.contains("<title>maillog_exporter</title>"), "{page}");
    assert!(page.contains("href=\"/custom/stats\""), "{page}");
    assert!(page.contains(env!("CARGO_PKG_VERSION")));
    let metrics = request(server.addr, "GET /custom/stats HTTP/1.1\r\nHost: x").await;
    assert!(metrics.text().contains(COUNTER_LINE));
    let old = request(server.addr, "GET /metrics HTTP/1.1\r\nHost: x").await;
    assert_eq!(old.status, 404);
    server.stop().await;
}

#[tokio::test]
async fn stuck_client_does_not_block_a_scrape() {
    let server = start().await;
    let mut stuck = TcpStream::connect(server.addr).await.unwrap();
    stuck.write_all(b"GET /met").await.unwrap();
    let started = Instant::now();
    let reply = request(server.addr, "GET /metrics HTTP/1.1\r\nHost: x").await;
    assert_eq!(reply.status, 200);
    assert!(reply.text().contains(COUNTER_LINE));
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(stuck);
    server.stop().await;
}

#[tokio::test]
async fn shutdown_returns_in_time_while_a_client_holds_a_connection() {
    let server = start().await;
    let addr = server.addr;
    // One client mid-request, one that finished a request and keeps the
    // connection alive.
    let mut half = TcpStream::connect(addr).await.unwrap();
    half.write_all(b"GET /metrics HTTP/1.1\r\nHost:")
        .await
        .unwrap();
    let mut kept = TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut first = [0u8; 12];
    tokio::time::timeout(STEP, kept.read_exact(&mut first))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    tokio::time::sleep(Duration::from_millis(50)).await;

    let took = server.stop().await;
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    // The listener is closed.
    assert!(TcpStream::connect(addr).await.is_err());
    drop((half, kept));
}

#[tokio::test]
async fn accept_loop_serves_many_connections() {
    let server = start().await;
    let mut clients = Vec::new();
    for _ in 0..20 {
        let addr = server.addr;
        clients.push(tokio::spawn(async move {
            request(addr, "GET /metrics HTTP/1.1\r\nHost: x").await
        }));
    }
    for client in clients {
        assert_eq!(client.await.unwrap().status, 200);
    }
    server.stop().await;
}

fn web_config(yaml: &str, dir: &Path) -> Result<WebConfig, HttpError> {
    let path = dir.join("web.yml");
    std::fs::write(&path, yaml).unwrap();
    load_web_config(&path)
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine as _;
    let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
    format!("Authorization: Basic {token}")
}

#[tokio::test]
async fn basic_auth_rejects_missing_and_wrong_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let hash = bcrypt::hash("s3cret", 4).unwrap();
    let config = web_config(
        &format!("basic_auth_users:\n  alice: '{hash}'\n"),
        dir.path(),
    )
    .unwrap();
    assert!(config.basic_auth_enabled());
    assert!(!config.tls_enabled());
    let server = start_with("/metrics", Some(config)).await;

    let none = request(server.addr, "GET /metrics HTTP/1.1\r\nHost: x").await;
    assert_eq!(none.status, 401);
    assert_eq!(none.header("www-authenticate"), Some("Basic"));

    for (user, password) in [("alice", "wrong"), ("bob", "s3cret"), ("alice", "")] {
        let head = format!(
            "GET /metrics HTTP/1.1\r\nHost: x\r\n{}",
            basic(user, password)
        );
        let reply = request(server.addr, &head).await;
        assert_eq!(reply.status, 401, "{user}:{password}");
        assert_eq!(reply.header("www-authenticate"), Some("Basic"));
    }
    let garbage = request(
        server.addr,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Basic !!!notbase64",
    )
    .await;
    assert_eq!(garbage.status, 401);

    // Twice: the second answer comes from the cache.
    for _ in 0..2 {
        let head = format!(
            "GET /metrics HTTP/1.1\r\nHost: x\r\n{}",
            basic("alice", "s3cret")
        );
        let reply = request(server.addr, &head).await;
        assert_eq!(reply.status, 200);
        assert!(reply.text().contains(COUNTER_LINE));
    }
    // The landing page is protected too.
    let landing = request(server.addr, "GET / HTTP/1.1\r\nHost: x").await;
    assert_eq!(landing.status, 401);
    server.stop().await;
}

#[tokio::test]
async fn http_server_config_headers_are_added() {
    let dir = tempfile::tempdir().unwrap();
    let config = web_config(
        "http_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n    \
         X-Content-Type-Options: nosniff\n    X-XSS-Protection: ''\n",
        dir.path(),
    )
    .unwrap();
    let server = start_with("/metrics", Some(config)).await;
    let reply = request(server.addr, "GET /nope HTTP/1.1\r\nHost: x").await;
    assert_eq!(reply.header("x-frame-options"), Some("deny"));
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(reply.header("x-xss-protection"), None);
    server.stop().await;
}

/// Writes a self-signed certificate for `localhost`; returns its DER.
fn write_self_signed(dir: &Path) -> rustls::pki_types::CertificateDer<'static> {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    std::fs::write(dir.join("cert.pem"), certified.cert.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem()).unwrap();
    certified.cert.der().clone()
}

fn tls_client(cert: rustls::pki_types::CertificateDer<'static>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

#[tokio::test]
async fn tls_scrape_works_with_a_self_signed_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let cert = write_self_signed(dir.path());
    // Relative names resolve against the config file's directory.
    let config = web_config(
        "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n  min_version: TLS12\n",
        dir.path(),
    )
    .unwrap();
    assert!(config.tls_enabled());
    let server = start_with("/metrics", Some(config)).await;

    let tcp = TcpStream::connect(server.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = tokio::time::timeout(STEP, tls_client(cert).connect(name, tcp))
        .await
        .unwrap()
        .unwrap();
    let reply = exchange(&mut tls, "GET /metrics HTTP/1.1\r\nHost: localhost", false).await;
    assert_eq!(reply.status, 200);
    assert!(reply.text().contains(COUNTER_LINE));

    // Plain HTTP on the TLS port gets no HTTP answer.
    let mut plain = TcpStream::connect(server.addr).await.unwrap();
    plain
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(STEP, plain.read_to_end(&mut answer))
        .await
        .unwrap();
    assert!(!answer.starts_with(b"HTTP/1.1 200"));
    server.stop().await;
}

#[test]
fn unknown_web_config_keys_are_named() {
    let dir = tempfile::tempdir().unwrap();
    let top = web_config("basic_auth_users: {}\nbasic_auth_user: {}\n", dir.path()).unwrap_err();
    assert!(matches!(top, HttpError::WebConfigSyntax { .. }));
    assert!(top.to_string().contains("basic_auth_user"), "{top}");

    let nested = web_config(
        "tls_server_config:\n  cert_file: c.pem\n  key_fiel: k.pem\n",
        dir.path(),
    )
    .unwrap_err();
    assert!(nested.to_string().contains("key_fiel"), "{nested}");

    let header = web_config(
        "http_server_config:\n  headers:\n    X-Powered-By: me\n",
        dir.path(),
    )
    .unwrap_err();
    assert!(header.to_string().contains("X-Powered-By"), "{header}");
}

#[test]
fn unsupported_security_settings_are_errors() {
    let dir = tempfile::tempdir().unwrap();
    write_self_signed(dir.path());
    let tls = "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n";
    let cases = [
        (
            format!("{tls}  client_auth_type: RequireAndVerifyClientCert\n"),
            "client_auth_type",
        ),
        (format!("{tls}  client_ca_file: ca.pem\n"), "client_ca_file"),
        (
            format!("{tls}  client_allowed_sans: [a]\n"),
            "client_allowed_sans",
        ),
        (
            format!("{tls}  cipher_suites: [TLS_AES_128_GCM_SHA256]\n"),
            "cipher_suites",
        ),
        (
            format!("{tls}  curve_preferences: [X25519]\n"),
            "curve_preferences",
        ),
        (format!("{tls}  min_version: TLS10\n"), "min_version"),
        (
            format!("{tls}  min_version: TLS13\n  max_version: TLS12\n"),
            "max_version",
        ),
        (
            "rate_limit:\n  interval: 1s\n  burst: 5\n".to_owned(),
            "rate_limit",
        ),
        ("tls_server_config: {}\n".to_owned(), "cert_file"),
        (
            "tls_server_config:\n  cert_file: missing.pem\n  key_file: key.pem\n".to_owned(),
            "missing.pem",
        ),
        (
            "tls_server_config:\n  cert_file: key.pem\n  key_file: key.pem\n".to_owned(),
            "CERTIFICATE",
        ),
        (
            "basic_auth_users:\n  alice: plaintext\n".to_owned(),
            "bcrypt",
        ),
        (
            "http_server_config:\n  headers:\n    X-Frame-Options: allow\n".to_owned(),
            "X-Frame-Options",
        ),
    ];
    for (yaml, needle) in cases {
        let err = web_config(&yaml, dir.path()).unwrap_err().to_string();
        assert!(err.contains(needle), "{yaml}\n→ {err}");
    }
    // NoClientCert is the documented default and is accepted.
    let ok = web_config(
        &format!("{tls}  client_auth_type: NoClientCert\n"),
        dir.path(),
    )
    .unwrap();
    assert!(ok.tls_enabled());
    // An empty file is an empty config.
    let empty = web_config("", dir.path()).unwrap();
    assert!(!empty.tls_enabled() && !empty.basic_auth_enabled());
}

#[tokio::test]
async fn bad_settings_are_reported() {
    let mut settings = HttpSettings {
        listen_address: "127.0.0.1".to_owned(),
        telemetry_path: "/metrics".to_owned(),
        web_config: None,
    };
    let err = bind(&settings).await.unwrap_err();
    assert!(
        matches!(err, HttpError::InvalidListenAddress { .. }),
        "{err}"
    );
    settings.listen_address = "127.0.0.1:http".to_owned();
    assert!(bind(&settings).await.is_err());
    settings.listen_address = "::1".to_owned();
    let err = bind(&settings).await.unwrap_err();
    assert!(err.to_string().contains("brackets"), "{err}");

    settings.listen_address = ":0".to_owned();
    let listener = bind(&settings).await.unwrap();
    settings.telemetry_path = "metrics".to_owned();
    let err = serve(listener, settings, Registry::new(), async {})
        .await
        .unwrap_err();
    assert!(
        matches!(err, HttpError::InvalidTelemetryPath { .. }),
        "{err}"
    );
}

/// Reads until the server closes the connection; returns how long it took.
async fn time_until_closed(stream: &mut TcpStream) -> Duration {
    let started = Instant::now();
    let mut sink = Vec::new();
    // A reset also counts as closed.
    let _ = tokio::time::timeout(STEP, stream.read_to_end(&mut sink))
        .await
        .expect("the server kept the connection open");
    started.elapsed()
}

#[tokio::test]
async fn header_read_timeout_closes_a_stuck_client() {
    let limits = Limits {
        header_read: Duration::from_millis(300),
        ..Limits::default()
    };
    let server = start_limited("/metrics", None, limits).await;
    let mut stuck = TcpStream::connect(server.addr).await.unwrap();
    stuck.write_all(b"GET /metrics HTT").await.unwrap();
    let took = time_until_closed(&mut stuck).await;
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
    server.stop().await;
}

#[tokio::test]
async fn idle_limit_closes_a_silent_connection() {
    let limits = Limits {
        idle: Duration::from_millis(300),
        ..Limits::default()
    };
    let server = start_limited("/metrics", None, limits).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let took = time_until_closed(&mut silent).await;
    assert!(took >= Duration::from_millis(250), "closed after {took:?}");
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
    server.stop().await;
}

#[tokio::test]
async fn tls_handshake_timeout_closes_a_silent_client() {
    let dir = tempfile::tempdir().unwrap();
    write_self_signed(dir.path());
    let config = web_config(
        "tls_server_config:\n  cert_file: cert.pem\n  key_file: key.pem\n",
        dir.path(),
    )
    .unwrap();
    let limits = Limits {
        tls_handshake: Duration::from_millis(300),
        ..Limits::default()
    };
    let server = start_limited("/metrics", Some(config), limits).await;
    let mut silent = TcpStream::connect(server.addr).await.unwrap();
    let took = time_until_closed(&mut silent).await;
    assert!(took < Duration::from_secs(3), "closed after {took:?}");
    server.stop().await;
}
