//! Shared helpers of the integration tests: replay fixtures (through the
//! binary or an in-process pipeline), read values out of the text format,
//! start the real binary and scrape it, poll with a deadline, run the lab
//! scripts of tests/lab/.

use maillog_exporter::metrics::{BuildInfo, Metrics};
use maillog_exporter::parser::time::{FixedClock, Zone};
use maillog_exporter::parser::Format;
use maillog_exporter::pipeline::{Pipeline, SourceSpec};
use maillog_exporter::source::SourceId;
use maillog_exporter::state::StateSettings;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

/// The repository root.
pub const ROOT: &str = env!("CARGO_MANIFEST_DIR");

// ----------------------------------------------------------------- fixtures

/// The bytes of `tests/fixtures/{path}`.
pub fn fixture_bytes(path: &str) -> Vec<u8> {
    let path = format!("{ROOT}/tests/fixtures/{path}");
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The text of `tests/fixtures/{path}`.
pub fn fixture_text(path: &str) -> String {
    let path = format!("{ROOT}/tests/fixtures/{path}");
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// `maillog_exporter replay tests/fixtures/{path}` from the repository root
/// (so the `source` label is that relative path), with `TZ=UTC` (classic
/// syslog stamps are local time) and without `RUST_LOG`: the output as
/// printed.
pub fn replay_fixture(path: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_maillog_exporter"))
        .current_dir(ROOT)
        .env("TZ", "UTC")
        .env_remove("RUST_LOG")
        .args(["replay", &format!("tests/fixtures/{path}")])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "replay {path} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The lines of `text` for which `keep` holds, each ending in a newline.
pub fn keep_lines(text: &str, keep: impl Fn(&str) -> bool) -> String {
    text.lines()
        .filter(|l| keep(l))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// Compares `output(name)` with the golden file `golden(name)` for every
/// name, listing the differing lines; `UPDATE_GOLDEN=1` rewrites the golden
/// files instead.
pub fn assert_golden(
    names: &[&str],
    golden: impl Fn(&str) -> PathBuf,
    output: impl Fn(&str) -> String,
) {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some_and(|v| v == "1");
    let mut mismatches = Vec::new();
    for &name in names {
        let got = output(name);
        let path = golden(name);
        if update {
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1", path.display()));
        if got != want {
            let diff: Vec<String> = want
                .lines()
                .filter(|l| !got.lines().any(|g| g == *l))
                .map(|l| format!("- {l}"))
                .chain(
                    got.lines()
                        .filter(|l| !want.lines().any(|w| w == *l))
                        .map(|l| format!("+ {l}")),
                )
                .collect();
            mismatches.push(format!("{name}:\n{}", diff.join("\n")));
        }
    }
    assert!(
        mismatches.is_empty(),
        "replay output differs from the golden files (UPDATE_GOLDEN=1 rewrites them):\n{}",
        mismatches.join("\n\n")
    );
}

// ----------------------------------------------------------- text format

/// The value of `series` (e.g. `mail_deliveries_total{mta="postfix",status="sent",transport="smtp"}`,
/// labels in alphabetical order, exactly as printed) in a Prometheus text
/// body; `None` if the series is absent. A value that is not a number
/// fails the test.
pub fn metric_value(body: &str, series: &str) -> Option<f64> {
    body.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| {
            v.trim()
                .parse()
                .unwrap_or_else(|e| panic!("{series} has the value {v:?}: {e}"))
        })
}

/// The value of `series` in `body`; fails the test if it is absent.
pub fn expect_value(body: &str, series: &str) -> f64 {
    metric_value(body, series).unwrap_or_else(|| panic!("{series} missing from the output"))
}

/// One line per series of `expected` whose value in `body` is not the
/// expected one (within `tolerance`). An absent series counts as 0: a
/// counter never incremented is not printed.
pub fn value_mismatches<S: AsRef<str>>(
    body: &str,
    expected: &[(S, f64)],
    tolerance: f64,
) -> Vec<String> {
    expected
        .iter()
        .filter_map(|(series, want)| {
            let series = series.as_ref();
            let got = metric_value(body, series).unwrap_or(0.0);
            let same = (got - want).abs() <= tolerance;
            (!same).then(|| format!("{series}: want {want}, got {got}"))
        })
        .collect()
}

/// Fails, naming every wrong series, unless each series of `expected` has
/// its value in `body` (see [`value_mismatches`]).
pub fn assert_values<S: AsRef<str>>(
    context: &str,
    body: &str,
    expected: &[(S, f64)],
    tolerance: f64,
) {
    let wrong = value_mismatches(body, expected, tolerance);
    assert!(wrong.is_empty(), "{context}:\n{}", wrong.join("\n"));
}

// ------------------------------------------------------ in-process replay

/// A pipeline over one source, in UTC, its clock fixed at a given time; the
/// tests feed it lines and read its metrics as text.
pub struct Replay {
    pub metrics: Arc<Metrics>,
    pub pipeline: Pipeline,
}

impl Replay {
    /// A pipeline over the source `test` in `format` (detected if `None`).
    pub fn new(format: Option<Format>, clock: f64) -> Replay {
        Replay::with_spec(SourceSpec::new("test", format), clock)
    }

    pub fn with_spec(spec: SourceSpec, clock: f64) -> Replay {
        let metrics = Arc::new(Metrics::new(&BuildInfo::CURRENT));
        let pipeline = Pipeline::new(
            metrics.clone(),
            &[spec],
            StateSettings::default(),
            Zone::Fixed(0),
            Box::new(FixedClock(clock)),
        );
        Replay { metrics, pipeline }
    }

    pub fn line(&mut self, line: &[u8]) {
        self.pipeline.process_line(SourceId(0), line);
    }

    /// Ends the input: lines whose format was never detected are counted.
    pub fn end(&mut self) -> &mut Replay {
        self.pipeline.flush_undetected();
        self.pipeline.finish_batch();
        self
    }

    /// Feeds every line of `text` (as `str::lines` splits it, empty lines
    /// included), then ends the input.
    pub fn all_lines(&mut self, text: &str) -> &mut Replay {
        for line in text.lines() {
            self.line(line.as_bytes());
        }
        self.end()
    }

    /// Feeds the non-empty lines of `text`, then ends the input.
    pub fn all_nonempty(&mut self, text: &[u8]) -> &mut Replay {
        for line in text.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
            self.line(line);
        }
        self.end()
    }

    /// Feeds every piece of `text` between newlines (empty ones too: they
    /// may end a folded record), then ends the input with the last record.
    pub fn all_records(&mut self, text: &[u8]) -> &mut Replay {
        for line in text.split(|&b| b == b'\n') {
            self.line(line);
        }
        self.pipeline.flush_records();
        self.end()
    }

    /// The metrics in the text format.
    pub fn text(&mut self) -> String {
        self.pipeline.finish_batch();
        prometheus::TextEncoder::new()
            .encode_to_string(&self.metrics.registry().gather())
            .expect("metrics encode as text")
    }

    /// The metrics, without the build's own line.
    pub fn text_without_build_info(&mut self) -> String {
        keep_lines(&self.text(), |l| !l.contains("maillog_exporter_build_info"))
    }

    /// The value of one series (see [`metric_value`]); `None` if absent.
    pub fn get(&mut self, series: &str) -> Option<f64> {
        metric_value(&self.text(), series)
    }

    /// The value of one series; fails, showing all metrics, if absent.
    pub fn value(&mut self, series: &str) -> f64 {
        self.get(series)
            .unwrap_or_else(|| panic!("no series {series}:\n{}", self.text()))
    }
}

// ---------------------------------------------------------------- polling

/// Calls `check` every `interval` until it returns `Some`, and returns
/// that; `None` once `timeout` has passed. `check` runs at least once.
pub fn poll<T>(
    timeout: Duration,
    interval: Duration,
    mut check: impl FnMut() -> Option<T>,
) -> Option<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check() {
            return Some(v);
        }
        if Instant::now() >= deadline {
            return None;
        }
        std::thread::sleep(interval);
    }
}

/// Polls `check` every 200 ms until it returns Some, or fails after `secs`.
pub fn wait_until<T>(secs: u64, what: &str, check: impl FnMut() -> Option<T>) -> T {
    poll(Duration::from_secs(secs), Duration::from_millis(200), check)
        .unwrap_or_else(|| panic!("timed out waiting for {what}"))
}

// -------------------------------------------------------------- processes

/// A child process, killed and reaped on drop whatever the test's outcome.
pub struct Guard {
    pub child: Child,
    pub what: &'static str,
}

impl Guard {
    /// Fails with `output` if the process has exited.
    pub fn assert_running(&mut self, output: impl FnOnce() -> String) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("{} exited with {status}:\n{}", self.what, output());
        }
    }

    /// Sends SIGTERM and waits (at most 20 s) for a successful exit.
    pub fn terminate(&mut self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM {}: {status}", self.child.id());
        let status = poll(Duration::from_secs(20), Duration::from_millis(20), || {
            self.child.try_wait().unwrap()
        })
        .unwrap_or_else(|| panic!("{} did not exit after SIGTERM", self.what));
        assert!(status.success(), "{} exited with {status}", self.what);
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The exporter binary running as a child process; killed and reaped on
/// drop. Its stderr is kept for failure messages.
pub struct Exporter {
    guard: Guard,
    pub addr: SocketAddr,
    stderr: Arc<Mutex<Vec<String>>>,
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
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_maillog_exporter"));
        cmd.args(args)
            .args(positions)
            .args(["--web.listen-address", "127.0.0.1:0"])
            .env("RUST_LOG", "info");
        Exporter::spawn(cmd)
    }

    /// Runs `cmd` (the exporter, possibly behind a wrapper such as
    /// setpriv; it must listen on an address it logs at level info) and
    /// waits, at most 20 s, until it logs `listening addr=…`.
    pub fn spawn(mut cmd: Command) -> Exporter {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start maillog_exporter");
        let pipe = child.stderr.take().unwrap();
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let lines = stderr.clone();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if line.contains("listening") {
                    if let Some(addr) = line.split("addr=").nth(1) {
                        let addr = addr.split_whitespace().next().unwrap_or("").to_string();
                        let _ = tx.send(addr);
                    }
                }
                lines.lock().unwrap().push(line);
            }
        });
        let guard = Guard {
            child,
            what: "maillog_exporter",
        };
        let Ok(addr) = rx.recv_timeout(Duration::from_secs(20)) else {
            panic!(
                "exporter did not report its listening address; stderr:\n{}",
                stderr.lock().unwrap().join("\n")
            );
        };
        Exporter {
            guard,
            addr: addr.parse().unwrap(),
            stderr,
        }
    }

    /// What the exporter has logged so far.
    pub fn stderr_text(&self) -> String {
        self.stderr.lock().unwrap().join("\n")
    }

    /// Fails, with its log, if the exporter has exited.
    pub fn assert_running(&mut self) {
        let stderr = self.stderr.clone();
        self.guard
            .assert_running(|| stderr.lock().unwrap().join("\n"));
    }

    /// GET `path`, returning (status line, body).
    pub fn get(&self, path: &str) -> (String, String) {
        http_get(self.addr, path)
    }

    /// The body of `/metrics`, or `None` if the scrape fails.
    pub fn scrape(&self) -> Option<String> {
        try_http_get(self.addr, "/metrics").map(|(_, body)| body)
    }

    /// The value of the series `series` (exact text up to the value), if present.
    pub fn value(&self, series: &str) -> Option<f64> {
        let (_, body) = self.get("/metrics");
        metric_value(&body, series)
    }

    /// Waits until `series` has `want`; panics with the last value otherwise.
    pub fn wait_for(&self, series: &str, want: f64) {
        let mut last = None;
        let reached = poll(Duration::from_secs(20), Duration::from_millis(50), || {
            last = self.value(series);
            (last == Some(want)).then_some(())
        });
        if reached.is_none() {
            panic!("{series}: want {want}, last seen {last:?}");
        }
    }

    /// Sends SIGTERM and waits for a clean exit; returns how long it took.
    pub fn terminate(mut self) -> Duration {
        let start = Instant::now();
        self.guard.terminate();
        start.elapsed()
    }
}

// ------------------------------------------------------------------- HTTP

/// A GET over a fresh HTTP/1.0 connection: (status line, body), or `None`
/// if connecting or reading fails or the answer is not HTTP.
pub fn try_http_get(addr: SocketAddr, path: &str) -> Option<(String, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(s, "GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n").ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.lines().next().unwrap_or("");
    status
        .starts_with("HTTP/1.")
        .then(|| (status.to_string(), body.to_string()))
}

/// A GET over a fresh connection, returning (status line, body); fails the
/// test if there is no HTTP answer.
pub fn http_get(addr: SocketAddr, path: &str) -> (String, String) {
    try_http_get(addr, path).unwrap_or_else(|| panic!("GET http://{addr}{path}: no HTTP answer"))
}

/// The status code of a status line such as `HTTP/1.0 200 OK`.
pub fn status_code(status_line: &str) -> Option<u16> {
    status_line.split_whitespace().nth(1)?.parse().ok()
}

// ------------------------------------------------------------- lab scripts

/// The (real, effective) user ids of this process.
pub fn uids() -> Option<(u32, u32)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    let mut ids = line.split_whitespace().skip(1);
    Some((ids.next()?.parse().ok()?, ids.next()?.parse().ok()?))
}

/// Whether `program ARGS` runs and exits successfully (output discarded).
pub fn runs(program: &str, args: &[&str]) -> bool {
    Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A lab directory driven by one of the tests/lab/ scripts. Dropping it
/// runs the script's `stop` (which ends the lab's processes by pid) if the
/// lab was started, also when the test panics.
pub struct Lab {
    /// The script, e.g. `tests/lab/postfix_lab.py`.
    pub script: PathBuf,
    pub dir: PathBuf,
    /// Output of the lab commands, kept outside the lab directory.
    pub out_dir: PathBuf,
    pub started: bool,
}

impl Lab {
    pub fn new(script: &str, dir: &Path, out_dir: &Path) -> Lab {
        Lab {
            script: Path::new(ROOT).join(script),
            dir: dir.to_path_buf(),
            out_dir: out_dir.to_path_buf(),
            started: false,
        }
    }

    fn name(&self) -> String {
        self.script
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    /// Runs `python3 SCRIPT SUBCOMMAND --dir DIR ARGS`, ending it if it
    /// takes longer than `limit`. Returns its output on failure.
    pub fn run(&self, subcommand: &str, args: &[&str], limit: Duration) -> Result<(), String> {
        let script = self.script.display();
        let name = self.name();
        let out_path = self.out_dir.join(format!("{subcommand}.out"));
        let out = File::create(&out_path).map_err(|e| e.to_string())?;
        let err = out.try_clone().map_err(|e| e.to_string())?;
        let mut child = Command::new("python3")
            .arg(&self.script)
            .arg(subcommand)
            .arg("--dir")
            .arg(&self.dir)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .map_err(|e| format!("cannot run python3 {script}: {e}"))?;
        let status = poll(limit, Duration::from_millis(100), || {
            child.try_wait().unwrap_or(None)
        });
        if status.is_none() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let output = std::fs::read_to_string(&out_path).unwrap_or_default();
        match status {
            Some(s) if s.success() => Ok(()),
            Some(s) => Err(format!("{name} {subcommand}: {s}\n{output}")),
            None => Err(format!(
                "{name} {subcommand}: still running after {limit:?}, killed\n{output}"
            )),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if self.started {
            if let Err(e) = self.run("stop", &[], Duration::from_secs(60)) {
                eprintln!("stopping the lab ({}) failed: {e}", self.name());
            }
        }
    }
}
