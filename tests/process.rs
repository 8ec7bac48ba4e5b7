//! Process tests: the real binary follows files and is scraped over HTTP.

use crate::support::{metric_value, poll, Exporter};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

const SENT: &str = r#"mail_deliveries_total{mta="postfix",status="sent",transport="smtp"}"#;
const PARSED: &str = r#"maillog_lines_total{format="postfix",result="parsed",source="mx"}"#;

/// A Postfix smtp delivery line with a distinct queue id.
fn delivery(n: u32) -> String {
    format!(
        "Nov 21 10:00:00 mx postfix/smtp[1]: {:010X}: to=<u{n}@example.org>, relay=mx.example.org[192.0.2.1]:25, delay=0.2, delays=0.01/0/0.1/0.09, dsn=2.0.0, status=sent (250 2.0.0 Ok)\n",
        0xA0000000u32 + n
    )
}

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn lines(range: std::ops::Range<u32>) -> String {
    range.map(delivery).collect()
}

/// A config naming the source `mx`, so the `source` label is stable.
fn config(dir: &Path, log: &Path) -> String {
    let cfg = dir.join("sources.yml");
    fs::write(
        &cfg,
        format!(
            "sources:\n  - path: {}\n    format: postfix\n    name: mx\n",
            log.display()
        ),
    )
    .unwrap();
    cfg.display().to_string()
}

#[test]
fn follows_appends_rename_and_copytruncate_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, &lines(0..3));
    let cfg = config(dir.path(), &log);
    let exporter = Exporter::start(&[
        "--config.file",
        &cfg,
        "--tail.from-beginning",
        "--tail.poll-interval",
        "100ms",
    ]);
    exporter.wait_for(SENT, 3.0);

    append(&log, &lines(3..5));
    exporter.wait_for(SENT, 5.0);

    // logrotate `create`: rename, the writer still appends to the old file,
    // then the new file appears.
    let rotated = dir.path().join("mail.log.1");
    fs::rename(&log, &rotated).unwrap();
    append(&rotated, &lines(5..6));
    append(&log, &lines(6..8));
    exporter.wait_for(SENT, 8.0);
    exporter.wait_for(
        r#"maillog_source_rotations_total{kind="replaced",source="mx"}"#,
        1.0,
    );

    // logrotate `copytruncate`: copy, truncate, then more lines.
    fs::copy(&log, dir.path().join("mail.log.2")).unwrap();
    OpenOptions::new()
        .write(true)
        .open(&log)
        .unwrap()
        .set_len(0)
        .unwrap();
    exporter.wait_for(
        r#"maillog_source_rotations_total{kind="truncated",source="mx"}"#,
        1.0,
    );
    append(&log, &lines(8..11));
    exporter.wait_for(SENT, 11.0);
    exporter.wait_for(PARSED, 11.0);
    assert_eq!(
        exporter.value(r#"maillog_source_up{source="mx"}"#),
        Some(1.0)
    );
    assert_eq!(
        exporter.value(r#"maillog_lines_total{format="postfix",result="unparsed",source="mx"}"#),
        Some(0.0)
    );
}

#[test]
fn starts_at_the_end_unless_told_otherwise() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, &lines(0..4));
    let cfg = config(dir.path(), &log);
    let exporter = Exporter::start(&["--config.file", &cfg, "--tail.poll-interval", "100ms"]);
    exporter.wait_for(r#"maillog_source_up{source="mx"}"#, 1.0);
    append(&log, &lines(4..6));
    exporter.wait_for(SENT, 2.0);
    exporter.wait_for(PARSED, 2.0);
}

#[test]
fn a_missing_file_is_followed_once_created() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    let cfg = config(dir.path(), &log);
    let exporter = Exporter::start(&["--config.file", &cfg, "--tail.poll-interval", "100ms"]);
    exporter.wait_for(r#"maillog_source_up{source="mx"}"#, 0.0);
    append(&log, &lines(0..2));
    exporter.wait_for(r#"maillog_source_up{source="mx"}"#, 1.0);
    exporter.wait_for(SENT, 2.0);
}

#[test]
fn bad_input_is_counted_and_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    let cfg = config(dir.path(), &log);
    let exporter = Exporter::start(&[
        "--config.file",
        &cfg,
        "--tail.from-beginning",
        "--tail.poll-interval",
        "100ms",
        "--log.max-line-bytes",
        "1000",
    ]);
    let mut bad = Vec::new();
    bad.extend_from_slice(delivery(0).as_bytes());
    bad.extend_from_slice(
        b"Nov 21 10:00:00 mx postfix/smtpd[1]: connect from \xff\xfe[192.0.2.9]\n",
    );
    bad.extend_from_slice(&vec![b'x'; 5000]);
    bad.push(b'\n');
    bad.extend_from_slice(b"Nov 21 10:00:00 mx postfix/smtpd[1]: a shape nobody knows\n");
    bad.extend_from_slice(b"\0\0\0 binary junk\n");
    bad.extend_from_slice(delivery(1).as_bytes());
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap()
        .write_all(&bad)
        .unwrap();
    exporter.wait_for(SENT, 2.0);
    exporter.wait_for(r#"maillog_invalid_utf8_lines_total{source="mx"}"#, 1.0);
    exporter.wait_for(r#"maillog_lines_too_long_total{source="mx"}"#, 1.0);
    exporter.wait_for(
        r#"maillog_lines_total{format="postfix",result="unparsed",source="mx"}"#,
        2.0,
    );
    exporter.wait_for(PARSED, 3.0);
    exporter.wait_for(
        r#"mail_smtp_connections_total{mta="postfix",service="smtpd"}"#,
        1.0,
    );
}

#[test]
fn landing_page_404_and_prompt_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, "");
    let exporter = Exporter::start(&["--web.telemetry-path", "/stats", log.to_str().unwrap()]);
    let (status, body) = exporter.get("/");
    assert!(status.contains(" 200 "), "{status}");
    assert!(body.contains("href=\"/stats\""), "{body}");
    let (status, _) = exporter.get("/metrics");
    assert!(status.contains(" 404 "), "{status}");
    let (status, body) = exporter.get("/stats");
    assert!(status.contains(" 200 "), "{status}");
    assert_eq!(metric_value(&body, "maillog_tracked_messages"), Some(0.0));
    assert!(body.contains("maillog_exporter_build_info{"));
    let took = exporter.terminate();
    assert!(took.as_secs_f64() < 5.0, "SIGTERM took {took:?}");
}

#[test]
fn demo_serves_live_numbers() {
    let exporter = Exporter::start(&["demo", "--demo.lines-per-second", "400"]);
    let received = r#"mail_messages_received_total{mta="postfix"}"#;
    let mut first = None;
    let grew = poll(Duration::from_secs(20), Duration::from_millis(100), || {
        let v = exporter.value(received).unwrap_or(0.0);
        match first {
            None if v > 0.0 => first = Some(v),
            Some(f) if v > f => return Some(()),
            _ => {}
        }
        None
    });
    assert!(
        grew.is_some(),
        "demo did not show growing numbers (first {first:?})"
    );
}

#[test]
fn exits_2_and_says_what_to_pass_without_a_log() {
    if ["/var/log/mail.log", "/var/log/maillog"]
        .iter()
        .any(|p| Path::new(p).exists())
    {
        // The default mail log exists on this machine: the no-argument path
        // follows it instead; nothing to check here.
        return;
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_maillog_exporter"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("/var/log/mail.log") && err.contains("--config.file") && err.contains("demo"),
        "{err}"
    );
}

/// SIGTERM ends the process within 5 s even with a client stuck mid-request
/// and a poll interval far longer than that.
#[test]
fn sigterm_within_5s_despite_stuck_client_and_long_poll_interval() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    append(&log, &lines(0..2));
    let cfg = config(dir.path(), &log);
    let exporter = Exporter::start(&[
        "--config.file",
        &cfg,
        "--tail.from-beginning",
        "--tail.poll-interval",
        "30s",
    ]);
    exporter.wait_for(SENT, 2.0);
    let mut stuck = std::net::TcpStream::connect(exporter.addr).unwrap();
    stuck
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let took = exporter.terminate();
    assert!(took.as_secs_f64() < 5.0, "SIGTERM took {took:?}");
    drop(stuck);
}
