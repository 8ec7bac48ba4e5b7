//! Bounded resources: a million messages that never leave the queue stay
//! within `--state.max-messages`, are evicted oldest first and counted.

use crate::support::expect_value;
use std::io::{BufWriter, Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

const MESSAGES: u64 = 1_000_000;
const CAP: u64 = 10_000;
/// Peak RSS allowed for the replay. The tracked state of 10,000 messages is
/// about a megabyte; a correlator that kept every queue id would need well
/// over 100 MiB for a million.
const MAX_RSS_KIB: u64 = 64 * 1024;
const TIME: &str = "/usr/bin/time";

fn queue_id(n: u64) -> String {
    format!("{:010X}", 0x10_0000_0000u64 + n)
}

/// Log time advances one second per 1,000 messages (17 minutes in all).
fn stamp(n: u64) -> String {
    let s = n / 1000;
    format!(
        "Nov 21 {:02}:{:02}:{:02}",
        10 + s / 3600,
        s / 60 % 60,
        s % 60
    )
}

/// The message's cleanup and qmgr lines: received, queued, never removed.
fn queued(out: &mut impl Write, n: u64) -> std::io::Result<()> {
    let (t, id) = (stamp(n), queue_id(n));
    writeln!(
        out,
        "{t} mx postfix/cleanup[200]: {id}: message-id=<{n}.stuck@example.org>"
    )?;
    writeln!(
        out,
        "{t} mx postfix/qmgr[100]: {id}: from=<sender{}@example.org>, size=2048, nrcpt=1 (queue active)",
        n % 97
    )
}

#[test]
fn a_million_stuck_messages_stay_within_the_cap_oldest_evicted_first() {
    let dir = tempfile::tempdir().unwrap();
    let rss_file = dir.path().join("rss");
    let exe = env!("CARGO_BIN_EXE_maillog_exporter");
    let args = [
        "replay",
        "--log.format",
        "postfix",
        "--state.max-messages",
        "10000",
        "-",
    ];
    // GNU time reports the child's peak RSS (getrusage ru_maxrss) exactly.
    let measured = Path::new(TIME).exists();
    let mut cmd = if measured {
        let mut c = Command::new(TIME);
        c.arg("-f").arg("%M").arg("-o").arg(&rss_file).arg(exe);
        c
    } else {
        Command::new(exe)
    };
    let mut child = cmd
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdin = child.stdin.take().unwrap();
    let writer = std::thread::spawn(move || -> std::io::Result<()> {
        let mut out = BufWriter::with_capacity(1 << 16, stdin);
        for n in 0..MESSAGES {
            queued(&mut out, n)?;
        }
        // The first and the last evicted, the oldest and the newest kept.
        let t = stamp(MESSAGES);
        for n in [0, MESSAGES - CAP - 1, MESSAGES - CAP, MESSAGES - 1] {
            writeln!(out, "{t} mx postfix/qmgr[100]: {}: removed", queue_id(n))?;
        }
        out.flush()
    });
    let mut text = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    let status = child.wait().unwrap();
    writer.join().unwrap().unwrap();
    assert!(status.success(), "replay exited with {status}");

    let v = |series: &str| expect_value(&text, series);
    assert_eq!(v(r#"mail_messages_received_total{mta="postfix"}"#), 1e6);
    assert_eq!(
        v(r#"maillog_lines_total{format="postfix",result="parsed",source="-"}"#),
        (2 * MESSAGES + 4) as f64
    );
    assert_eq!(
        v(r#"maillog_lines_total{format="postfix",result="unparsed",source="-"}"#),
        0.0
    );
    assert_eq!(
        v(r#"maillog_tracked_messages_evicted_total{reason="capacity"}"#),
        (MESSAGES - CAP) as f64
    );
    assert_eq!(
        v(r#"maillog_tracked_messages_evicted_total{reason="expired"}"#),
        0.0
    );
    // At the cap before the removals; the two kept messages then left.
    assert_eq!(v("maillog_tracked_messages"), (CAP - 2) as f64);
    assert_eq!(v(r#"mail_queue_messages{mta="postfix"}"#), (CAP - 2) as f64);
    assert_eq!(v(r#"mail_messages_removed_total{mta="postfix"}"#), 4.0);
    // Only the kept messages still knew their arrival: the evicted ones
    // (the very first, and the last one evicted) were the oldest.
    assert_eq!(v(r#"mail_message_queue_seconds_count{mta="postfix"}"#), 2.0);

    if measured {
        let rss = std::fs::read_to_string(&rss_file).unwrap();
        let kib: u64 = rss.trim().lines().last().unwrap().trim().parse().unwrap();
        eprintln!("replay of {MESSAGES} stuck messages, cap {CAP}: peak RSS {kib} KiB");
        assert!(
            kib < MAX_RSS_KIB,
            "peak RSS {kib} KiB, bound {MAX_RSS_KIB} KiB"
        );
    } else {
        eprintln!("{TIME} not installed (Debian package time): peak RSS not measured");
    }
}
