//! Shared helpers of the process tests: start the real binary, scrape it.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The exporter binary running as a child process; killed and reaped on drop.
pub struct Exporter {
    child: Child,
    pub addr: SocketAddr,
    /// Keeps the stderr reader's channel open so it never blocks the child.
    _stderr_lines: mpsc::Receiver<String>,
}

impl Exporter {
    /// Starts `maillog_exporter ARGS --web.listen-address 127.0.0.1:0` and
    /// waits until it logs the address it listens on.
    pub fn start(args: &[&str]) -> Exporter {
        // Daemon runs keep their positions to themselves, never in the
        // system default file.
        let positions: &[&str] = if args.first() == Some(&"demo") {
            &[]
        } else {
            &["--tail.positions-file", ""]
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_maillog_exporter"))
            .args(args)
            .args(positions)
            .args(["--web.listen-address", "127.0.0.1:0"])
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = rx.recv_timeout(left) else {
                let _ = child.kill();
                let _ = child.wait();
                panic!("exporter did not report its listening address");
            };
            if line.contains("listening") {
                if let Some(addr) = line.split("addr=").nth(1) {
                    let addr = addr.split_whitespace().next().unwrap().parse().unwrap();
                    return Exporter {
                        child,
                        addr,
                        _stderr_lines: rx,
                    };
                }
            }
        }
    }

    /// GET `path`, returning (status line, body).
    pub fn get(&self, path: &str) -> (String, String) {
        http_get(self.addr, path)
    }

    /// The value of the series `series` (exact text up to the value), if present.
    pub fn value(&self, series: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics");
        metric_value(&body, series)
    }

    /// Waits until `series` has `want`; panics with the last value otherwise.
    pub fn wait_for(&self, series: &str, want: f64) {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut last = None;
        while Instant::now() < deadline {
            last = self.value(series);
            if last == Some(want) {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("{series}: want {want}, last seen {last:?}");
    }

    /// Sends SIGTERM and waits; returns how long the exit took.
    pub fn terminate(mut self) -> Duration {
        let start = Instant::now();
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let status = self.child.wait().unwrap();
        assert!(status.success(), "exporter exited with {status}");
        start.elapsed()
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A minimal HTTP/1.1 GET over a fresh connection.
pub fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).unwrap();
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head.lines().next().unwrap_or("").to_string();
    (status, body.to_string())
}

/// The value of `series` (e.g. `mail_deliveries_total{mta="postfix",status="sent",transport="smtp"}`)
/// in a Prometheus text body.
pub fn metric_value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series).and_then(|v| v.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
}
