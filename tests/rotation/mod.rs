//! The rotation matrix and restart without loss, as process tests: the real
//! binary follows a file that a writer thread appends realistic Postfix
//! delivery lines to at more than 10,000 lines/s while the test rotates it
//! in every way logrotate, `postfix logrotate` and admins do; `/metrics` is
//! scraped over plain TCP until the counts settle, and the totals must equal
//! the lines written exactly. Waiting is always a deadline loop on an
//! observable condition (20 s), never a fixed sleep used as an assertion;
//! the short sleeps below only let the writer append while a rotation is
//! half done. The model-based property test of the follower is in `model`.

mod model;

use crate::support::{poll, runs, uids, Exporter};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{symlink, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const POLL: &str = "200ms";
const DEADLINE: Duration = Duration::from_secs(20);
/// Lines per second the writer keeps up.
const RATE: u64 = 12_000;

/// One delivery line; every line has the same length (fixed-width queue id),
/// so an offset in the file is a line count.
fn line(n: u64) -> String {
    format!(
        "Nov 21 10:00:00 mx postfix/smtp[4242]: {n:010X}: to=<user{}@example.org>, relay=mx.example.org[192.0.2.1]:25, delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued)\n",
        n % 10
    )
}

fn line_len() -> u64 {
    line(0).len() as u64
}

// ---------------------------------------------------------------- exporter

/// The binary under test following one log (see [`Exporter`]), with the
/// waits of these tests.
struct Follower {
    exporter: Exporter,
}

impl Follower {
    fn start(log: &Path, positions: Option<&Path>, as_nobody: bool) -> Follower {
        let bin = env!("CARGO_BIN_EXE_maillog_exporter");
        let mut cmd = if as_nobody {
            let mut c = Command::new("setpriv");
            c.args([
                "--reuid",
                "nobody",
                "--regid",
                "nogroup",
                "--clear-groups",
                "--",
                bin,
            ]);
            c
        } else {
            Command::new(bin)
        };
        cmd.args([
            "--web.listen-address",
            "127.0.0.1:0",
            "--tail.from-beginning",
            "--tail.poll-interval",
            POLL,
            "--log.level",
            "info",
            "--tail.positions-file",
        ])
        .arg(positions.map_or(PathBuf::new(), Path::to_path_buf))
        .arg(log)
        .env("NO_COLOR", "1");
        Follower {
            exporter: Exporter::spawn(cmd),
        }
    }

    fn stderr_text(&self) -> String {
        self.exporter.stderr_text()
    }

    /// SIGTERM, then wait for a clean exit.
    fn terminate(self) {
        self.exporter.terminate();
    }

    fn scrape(&self) -> Option<String> {
        self.exporter.scrape()
    }

    /// The sample of `name` whose labels include every `label`.
    fn value(&self, name: &str, labels: &[&str]) -> Option<f64> {
        sample(&self.scrape()?, name, labels)
    }

    /// Polls until both counts reach `want`, then checks that they stay
    /// there for a few poll intervals (a late double count would show).
    fn settle_at(&self, want: u64) {
        let mut last = (0, 0);
        let reached = poll(DEADLINE, Duration::from_millis(50), || {
            let text = self.scrape()?;
            last = (sent(&text), parsed(&text));
            (last.0 >= want && last.1 >= want).then_some(())
        });
        assert!(
            reached.is_some(),
            "counts (sent, parsed) = {last:?}, want {want}; stderr:\n{}",
            self.stderr_text()
        );
        std::thread::sleep(Duration::from_millis(600));
        let text = self.scrape().expect("scrape");
        assert_eq!(
            (sent(&text), parsed(&text)),
            (want, want),
            "exact totals (sent, parsed)"
        );
        let unparsed = sample(&text, "maillog_lines_total", &["result=\"unparsed\""]);
        assert_eq!(unparsed, Some(0.0), "no fragment of a line was read");
    }

    /// Polls until the parsed count is at least `want`; returns it.
    fn wait_parsed_at_least(&self, want: u64) -> u64 {
        poll(DEADLINE, Duration::from_millis(20), || {
            self.scrape().map(|t| parsed(&t)).filter(|n| *n >= want)
        })
        .unwrap_or_else(|| panic!("parsed never reached {want}"))
    }

    fn wait_source_up(&self, up: f64) {
        let mut now = None;
        let reached = poll(DEADLINE, Duration::from_millis(20), || {
            now = self.value("maillog_source_up", &[]);
            (now == Some(up)).then_some(())
        });
        assert!(
            reached.is_some(),
            "maillog_source_up is {now:?}, never became {up}; stderr:\n{}",
            self.stderr_text()
        );
    }
}

fn sent(text: &str) -> u64 {
    sample(text, "mail_deliveries_total", &["status=\"sent\""]).unwrap_or(0.0) as u64
}

fn parsed(text: &str) -> u64 {
    sample(text, "maillog_lines_total", &["result=\"parsed\""]).unwrap_or(0.0) as u64
}

fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with('{') || rest.starts_with(' '))
        })
        .find(|l| labels.iter().all(|lab| l.contains(lab)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

// ------------------------------------------------------------------ writer

/// Appends lines at [`RATE`] to whichever file it holds, like syslog: it
/// keeps writing to its open descriptor until told to reopen the path.
struct Writer {
    file: Arc<Mutex<File>>,
    written: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    paused: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

fn append_to(path: &Path) -> File {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .expect("open log for append")
}

impl Writer {
    fn start(path: &Path) -> Writer {
        let file = Arc::new(Mutex::new(append_to(path)));
        let written = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let paused = Arc::new(AtomicBool::new(false));
        let (f, w, s, p) = (file.clone(), written.clone(), stop.clone(), paused.clone());
        let thread = std::thread::spawn(move || {
            let start = Instant::now();
            let mut credit_from = 0u64;
            let mut paused_for = Duration::ZERO;
            let mut pause_start: Option<Instant> = None;
            while !s.load(Ordering::Acquire) {
                if p.load(Ordering::Acquire) {
                    pause_start.get_or_insert_with(Instant::now);
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                }
                if let Some(t) = pause_start.take() {
                    paused_for += t.elapsed();
                }
                let due = ((start.elapsed() - paused_for).as_secs_f64() * RATE as f64) as u64;
                let n = due.saturating_sub(credit_from).min(2_000);
                if n > 0 {
                    let mut buf = String::new();
                    let first = w.load(Ordering::Relaxed);
                    for i in first..first + n {
                        buf.push_str(&line(i));
                    }
                    // The lock makes a burst and a reopen or pause exclusive.
                    let file = f.lock().unwrap();
                    if p.load(Ordering::Acquire) {
                        continue;
                    }
                    (&*file).write_all(buf.as_bytes()).expect("append");
                    w.store(first + n, Ordering::Release);
                    credit_from += n;
                }
                std::thread::sleep(Duration::from_millis(3));
            }
        });
        Writer {
            file,
            written,
            stop,
            paused,
            thread: Some(thread),
        }
    }

    fn written(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// Lets the writer append for `d`.
    fn run_for(&self, d: Duration) {
        std::thread::sleep(d);
    }

    /// Like syslog after a HUP: reopen the path (creating it).
    fn reopen(&self, path: &Path) {
        *self.file.lock().unwrap() = append_to(path);
    }

    /// Stops appending; when this returns no burst is in progress.
    fn pause(&self) {
        self.paused.store(true, Ordering::Release);
        drop(self.file.lock().unwrap());
    }

    fn resume(&self) {
        self.paused.store(false, Ordering::Release);
    }

    /// Stops the writer; returns how many lines it wrote.
    fn finish(mut self) -> u64 {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            t.join().expect("writer thread");
        }
        let n = self.written();
        assert!(n > 0);
        n
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

struct Setup {
    dir: tempfile::TempDir,
    log: PathBuf,
    positions: PathBuf,
}

fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    let positions = dir.path().join("positions.json");
    Setup {
        dir,
        log,
        positions,
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// The writer's rate is as promised (checked once per test run).
fn assert_rate(written: u64, elapsed: Duration) {
    let rate = written as f64 / elapsed.as_secs_f64();
    assert!(rate >= 10_000.0, "writer only managed {rate:.0} lines/s");
}

// ------------------------------------------------------------------- cases

#[test]
fn rename_and_create() {
    let s = setup();
    let w = Writer::start(&s.log);
    let started = Instant::now();
    let e = Follower::start(&s.log, Some(&s.positions), false);
    for round in 1..=3 {
        w.run_for(ms(300));
        fs::rename(&s.log, s.dir.path().join(format!("mail.log.{round}"))).unwrap();
        // The writer keeps appending to the renamed file...
        w.run_for(ms(60));
        // ...after the new file exists, before the old one's last lines are read.
        File::create(&s.log).unwrap();
        w.run_for(ms(60));
        w.reopen(&s.log);
    }
    w.run_for(ms(300));
    let active = started.elapsed();
    let n = w.finish();
    assert_rate(n, active);
    e.settle_at(n);
    assert_eq!(
        e.value("maillog_source_rotations_total", &["kind=\"replaced\""]),
        Some(3.0)
    );
}

#[test]
fn copytruncate_with_the_writer_paused_around_it() {
    // logrotate's copytruncate copies, then truncates: lines appended in
    // between are in neither file, and lines appended after the exporter's
    // last read and before the truncation are only in the copy. That loss
    // is inherent (see src/source/file.rs, "Limits"), so this case pauses
    // the writer until the exporter has read everything, as a careful
    // copytruncate would, and then asserts exact totals.
    let s = setup();
    let w = Writer::start(&s.log);
    let e = Follower::start(&s.log, Some(&s.positions), false);
    for round in 1..=2 {
        w.run_for(ms(400));
        w.pause();
        e.wait_parsed_at_least(w.written());
        fs::copy(&s.log, s.dir.path().join(format!("mail.log.{round}"))).unwrap();
        OpenOptions::new()
            .write(true)
            .open(&s.log)
            .unwrap()
            .set_len(0)
            .unwrap();
        w.resume();
    }
    w.run_for(ms(400));
    let n = w.finish();
    e.settle_at(n);
    assert_eq!(
        e.value("maillog_source_rotations_total", &["kind=\"truncated\""]),
        Some(2.0)
    );
}

#[test]
fn copytruncate_while_lines_are_still_appended() {
    // The writer does not pause. Lines the exporter had not read when the
    // file was truncated can only be lost (never counted twice), and only
    // those written after the count observed just before the copy.
    let s = setup();
    let w = Writer::start(&s.log);
    let e = Follower::start(&s.log, Some(&s.positions), false);
    w.run_for(ms(500));
    let seen_before = e.wait_parsed_at_least(w.written().saturating_sub(RATE / 10));
    fs::copy(&s.log, s.dir.path().join("mail.log.1")).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&s.log)
        .unwrap()
        .set_len(0)
        .unwrap();
    let at_truncation = w.written();
    w.run_for(ms(500));
    let n = w.finish();
    let at_risk = at_truncation - seen_before;
    poll(DEADLINE, ms(50), || {
        let text = e.scrape().unwrap_or_default();
        let (sent, parsed) = (sent(&text), parsed(&text));
        (parsed + at_risk >= n && sent == parsed).then_some(())
    });
    std::thread::sleep(ms(600));
    let text = e.scrape().expect("scrape");
    let (sent, parsed) = (sent(&text), parsed(&text));
    assert_eq!(sent, parsed);
    assert!(parsed <= n, "counted {parsed} of {n} lines: a double count");
    assert!(
        parsed + at_risk >= n,
        "counted {parsed} of {n}; only {at_risk} were at risk"
    );
    assert_eq!(
        sample(&text, "maillog_lines_total", &["result=\"unparsed\""]),
        Some(0.0)
    );
    assert_eq!(
        sample(
            &text,
            "maillog_source_rotations_total",
            &["kind=\"truncated\""]
        ),
        Some(1.0)
    );
}

#[test]
fn delete_and_recreate() {
    let s = setup();
    let w = Writer::start(&s.log);
    let e = Follower::start(&s.log, Some(&s.positions), false);
    for _ in 0..2 {
        w.run_for(ms(300));
        fs::remove_file(&s.log).unwrap();
        w.run_for(ms(80));
        w.reopen(&s.log);
    }
    w.run_for(ms(300));
    let n = w.finish();
    e.settle_at(n);
}

#[test]
fn postfix_logrotate() {
    // `postfix logrotate`: rename to a time-stamped name, HUP (the new file
    // is created), sleep one second, gzip the renamed file (the name
    // vanishes). The exporter must drain the old file through the
    // descriptor it holds.
    let s = setup();
    let w = Writer::start(&s.log);
    let e = Follower::start(&s.log, Some(&s.positions), false);
    w.run_for(ms(400));
    let rotated = s.dir.path().join("mail.log.20261121-101010");
    fs::rename(&s.log, &rotated).unwrap();
    w.run_for(ms(50));
    w.reopen(&s.log);
    w.run_for(ms(1000));
    let mut gz = flate2::write::GzEncoder::new(
        File::create(s.dir.path().join("mail.log.20261121-101010.gz")).unwrap(),
        flate2::Compression::fast(),
    );
    gz.write_all(&fs::read(&rotated).unwrap()).unwrap();
    gz.finish().unwrap();
    fs::remove_file(&rotated).unwrap();
    w.run_for(ms(300));
    let n = w.finish();
    e.settle_at(n);
}

#[test]
fn symlink_swap() {
    let s = setup();
    let first = s.dir.path().join("mail-1.log");
    let second = s.dir.path().join("mail-2.log");
    File::create(&first).unwrap();
    symlink(&first, &s.log).unwrap();
    let w = Writer::start(&first);
    let e = Follower::start(&s.log, Some(&s.positions), false);
    w.run_for(ms(400));
    File::create(&second).unwrap();
    let tmp = s.dir.path().join("mail.log.tmp");
    symlink(&second, &tmp).unwrap();
    fs::rename(&tmp, &s.log).unwrap();
    w.run_for(ms(60));
    w.reopen(&second);
    w.run_for(ms(400));
    let n = w.finish();
    e.settle_at(n);
}

#[test]
fn truncation_to_zero_of_a_file_being_read() {
    // As for copytruncate, the writer is paused until the exporter has read
    // everything: lines written between its last read and the truncation
    // are gone from the file, so no reader could count them.
    let s = setup();
    let w = Writer::start(&s.log);
    let e = Follower::start(&s.log, Some(&s.positions), false);
    w.run_for(ms(400));
    w.pause();
    e.wait_parsed_at_least(w.written());
    File::create(&s.log).unwrap(); // O_TRUNC: `> mail.log`
    w.resume();
    w.run_for(ms(400));
    let n = w.finish();
    e.settle_at(n);
}

#[test]
fn unreadable_for_a_while() {
    // As root, file modes do not stop reads: run the exporter as nobody.
    let root = uids().is_some_and(|(real, _)| real == 0);
    let setpriv = runs("setpriv", &["--version"]);
    if root && !setpriv {
        eprintln!("skipping: running as root and setpriv is missing");
        return;
    }
    let s = setup();
    fs::set_permissions(s.dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
    let w = Writer::start(&s.log);
    fs::set_permissions(&s.log, fs::Permissions::from_mode(0o644)).unwrap();
    // Positions off: the directory is not writable for nobody.
    let e = Follower::start(&s.log, None, root);
    w.run_for(ms(300));
    e.wait_source_up(1.0);

    // The open file becomes unreadable: shown, but its descriptor still
    // reads, so nothing is lost.
    fs::set_permissions(&s.log, fs::Permissions::from_mode(0o000)).unwrap();
    e.wait_source_up(0.0);
    w.run_for(ms(300));
    fs::set_permissions(&s.log, fs::Permissions::from_mode(0o644)).unwrap();
    e.wait_source_up(1.0);
    w.run_for(ms(200));

    // Rotated to a new file the exporter may not open: counting stops at
    // the old file's end and resumes when the new file becomes readable.
    fs::rename(&s.log, s.dir.path().join("mail.log.1")).unwrap();
    // Created unreadable at once (no window in which it is 0644).
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&s.log)
        .unwrap();
    w.reopen(&s.log);
    e.wait_source_up(0.0);
    w.run_for(ms(300));
    w.pause();
    let before_new = w.written();
    // Everything up to the rotation is counted, nothing of the new file.
    let old_lines = fs::metadata(s.dir.path().join("mail.log.1")).unwrap().len() / line_len();
    e.settle_at(old_lines);
    assert!(old_lines < before_new);
    w.resume();
    fs::set_permissions(&s.log, fs::Permissions::from_mode(0o644)).unwrap();
    e.wait_source_up(1.0);
    w.run_for(ms(300));
    let n = w.finish();
    e.settle_at(n);
}

#[test]
fn restart_without_loss() {
    let s = setup();
    let w = Writer::start(&s.log);
    let first = Follower::start(&s.log, Some(&s.positions), false);
    w.run_for(ms(500));
    let seen = first.wait_parsed_at_least(1);
    // Stopped while the writer keeps appending.
    first.terminate();
    let saved = fs::read_to_string(&s.positions).expect("positions saved at shutdown");
    let offset = json_u64(&saved, "offset");
    assert_eq!(offset % line_len(), 0, "saved offset is at a line start");
    let counted_before = offset / line_len();
    assert!(counted_before >= seen);
    // Down: more lines, and a rotation that leaves mail.log.1.
    w.run_for(ms(300));
    fs::rename(&s.log, s.dir.path().join("mail.log.1")).unwrap();
    w.run_for(ms(50));
    w.reopen(&s.log);
    w.run_for(ms(300));
    // Back up with the same positions file (and --tail.from-beginning, which
    // the saved position overrides).
    let second = Follower::start(&s.log, Some(&s.positions), false);
    w.run_for(ms(500));
    let n = w.finish();
    second.settle_at(n - counted_before);
}

#[test]
fn corrupt_positions_file_is_a_fresh_start() {
    let s = setup();
    fs::write(&s.positions, b"\x00\xffnot json at all{{{").unwrap();
    let mut data = String::new();
    for i in 0..1000 {
        data.push_str(&line(i));
    }
    fs::write(&s.log, data).unwrap();
    let e = Follower::start(&s.log, Some(&s.positions), false);
    e.settle_at(1000);
    assert!(e.stderr_text().contains("ignoring the positions file"));
    e.terminate();
    let saved = fs::read_to_string(&s.positions).unwrap();
    assert_eq!(json_u64(&saved, "offset"), 1000 * line_len());
}

/// The first `"key": N` in a JSON text.
fn json_u64(text: &str, key: &str) -> u64 {
    let at = text.find(&format!("\"{key}\"")).expect("key") + key.len() + 2;
    text[at..]
        .trim_start_matches([':', ' '])
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .expect("number")
}
