//! The exporter follows the mainlog of a real Exim (Debian's
//! exim4-daemon-light, fetched with `apt-get download` and unpacked into a
//! temporary lab by `tests/lab/exim_lab.py`) while a workload of known
//! outcomes is delivered to the loopback sink, and its scraped counters
//! must equal the workload's truth exactly.
//!
//! Needs root, python3, apt-get (with the Debian archive reachable, or the
//! packages already in the cache, `target/exim-debs` or `$EXIM_DEB_CACHE`),
//! dpkg, unshare and ldconfig. Without them the test fails, unless
//! `MAILLOG_SKIP_EXIM=1` is set.

use crate::support::{runs, uids, value_mismatches, Exporter, Lab};
use serde_json::Value;
use std::time::Duration;

const LAB_SCRIPT: &str = "tests/lab/exim_lab.py";

fn missing_prerequisites() -> Option<String> {
    let mut missing = Vec::new();
    for tool in ["python3", "apt-get", "dpkg", "unshare"] {
        if !runs(tool, &["--version"]) {
            missing.push(format!("{tool} is not installed"));
        }
    }
    let uid = uids().map(|(_, effective)| effective);
    if uid != Some(0) {
        missing.push(format!(
            "the lab must run as root (mount namespace, exim -C), effective uid is {uid:?}"
        ));
    }
    (!missing.is_empty()).then(|| missing.join("; "))
}

fn truth_count(truth: &Value, key: &str) -> f64 {
    truth
        .pointer(key)
        .and_then(Value::as_u64)
        .unwrap_or_else(|| panic!("truth has no {key}")) as f64
}

#[test]
fn scraped_counters_equal_the_exim_lab_truth() {
    if let Some(why) = missing_prerequisites() {
        if std::env::var("MAILLOG_SKIP_EXIM").as_deref() == Ok("1") {
            eprintln!("exim_live skipped (MAILLOG_SKIP_EXIM=1): {why}");
            return;
        }
        panic!("cannot run the real-Exim test: {why}. Run tests/run.sh, or set MAILLOG_SKIP_EXIM=1 to skip it.");
    }
    // Declared before the lab, so they outlive its stop on drop.
    let dir = tempfile::Builder::new()
        .prefix("maillog-exim-lab")
        .tempdir()
        .unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut lab = Lab::new(LAB_SCRIPT, dir.path(), out.path());
    // Setup downloads the packages on first use (a few MB).
    lab.run("setup", &[], Duration::from_secs(300))
        .unwrap_or_else(|e| panic!("{e}"));
    let mainlog = lab.dir.join("log/mainlog");
    let mainlog_str = mainlog.to_str().unwrap().to_string();
    // Detected from the content: no --log.format.
    let exporter = Exporter::start(&["--tail.from-beginning", &mainlog_str]);
    lab.started = true;
    lab.run("start", &[], Duration::from_secs(60))
        .unwrap_or_else(|e| panic!("{e}"));
    let truth_path = out.path().join("truth.json");
    lab.run(
        "run-workload",
        &["--truth", truth_path.to_str().unwrap()],
        Duration::from_secs(180),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(&truth_path).unwrap()).unwrap();

    let removed = truth_count(&truth, "/removed");
    exporter.wait_for(r#"mail_messages_removed_total{mta="exim"}"#, removed);
    let (_, body) = exporter.get("/metrics");
    let t = "remote_smtp";
    let mut checks: Vec<(String, f64)> = vec![
        (
            r#"mail_messages_received_total{mta="exim"}"#.into(),
            truth_count(&truth, "/received"),
        ),
        (r#"mail_messages_removed_total{mta="exim"}"#.into(), removed),
        (
            r#"mail_messages_expired_total{mta="exim"}"#.into(),
            truth_count(&truth, "/expired"),
        ),
        (r#"mail_queue_messages{mta="exim"}"#.into(), 0.0),
        (
            r#"mail_message_size_bytes_count{mta="exim"}"#.into(),
            truth_count(&truth, "/size_count"),
        ),
        (
            r#"mail_message_queue_seconds_count{mta="exim"}"#.into(),
            truth_count(&truth, "/queue_time_count"),
        ),
        (
            r#"mail_bounce_notifications_total{kind="non_delivery",mta="exim"}"#.into(),
            truth_count(&truth, "/bounce_notifications"),
        ),
        (
            r#"mail_smtp_connections_total{mta="exim",service="smtpd"}"#.into(),
            truth_count(&truth, "/connections"),
        ),
        (
            format!(
                r#"maillog_lines_total{{format="exim",result="unparsed",source="{mainlog_str}"}}"#
            ),
            0.0,
        ),
        (r#"mail_messages_frozen_total{mta="exim"}"#.into(), 0.0),
    ];
    for status in ["sent", "deferred", "bounced"] {
        checks.push((
            format!(r#"mail_deliveries_total{{mta="exim",status="{status}",transport="{t}"}}"#),
            truth_count(&truth, &format!("/{status}")),
        ));
        checks.push((
            format!(r#"mail_delivery_delay_seconds_count{{mta="exim",status="{status}",transport="{t}"}}"#),
            truth_count(&truth, &format!("/delay_{status}_count")),
        ));
    }
    for status in ["sent", "bounced"] {
        for part in ["count", "sum"] {
            checks.push((
                format!(r#"mail_delivery_attempts_{part}{{mta="exim",status="{status}",transport="{t}"}}"#),
                truth_count(&truth, &format!("/attempts_{status}_{part}")),
            ));
        }
    }
    for stage in ["RCPT", "MAIL", "END-OF-MESSAGE"] {
        checks.push((
            format!(r#"mail_smtp_rejects_total{{code="550",mta="exim",service="smtpd",stage="{stage}"}}"#),
            truth_count(&truth, &format!("/rejects/{stage}")),
        ));
    }
    // An absent series counts as 0.
    let wrong = value_mismatches(&body, &checks, 0.0);
    // Nothing else: no delivery under another transport, no session error.
    let stray: Vec<&str> = body
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| {
            (l.starts_with("mail_deliveries_total{") && !l.contains(r#"transport="remote_smtp""#))
                || l.starts_with("mail_smtp_session_errors_total{")
                || l.starts_with("mail_auth_failures_total{")
        })
        .filter(|l| !l.ends_with(" 0"))
        .collect();
    let log = std::fs::read_to_string(&mainlog).unwrap_or_default();
    assert!(
        wrong.is_empty() && stray.is_empty(),
        "scraped values differ from the truth:\n{}\nunexpected series: {stray:?}\n--- mainlog ---\n{log}",
        wrong.join("\n")
    );
    drop(exporter);
}
