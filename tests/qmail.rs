//! qmail: golden replays of the real notqmail run against its ground truth
//! (tests/fixtures/qmail/real_notqmail_TRUTH.md), exact values on small
//! samples, and format detection.

use crate::support::{fixture_bytes, Replay};
use maillog_exporter::parser::Format;

fn fixture(name: &str) -> Vec<u8> {
    fixture_bytes(&format!("qmail/{name}"))
}

/// A pipeline over one source, UTC, clock fixed on the run's day.
fn replay(format: Option<&str>) -> Replay {
    let format = format.map(|f| Format::from_name(f).expect("a format name"));
    Replay::new(format, 1_795_292_430.0)
}

fn deliveries(transport: &str, status: &str) -> String {
    format!("mail_deliveries_total{{mta=\"qmail\",status=\"{status}\",transport=\"{transport}\"}}")
}

/// Checks every count of the ground truth's qmail-send table.
fn check_send_truth(r: &mut Replay) {
    assert_eq!(
        r.value(r#"maillog_lines_total{format="qmail",result="parsed",source="test"}"#),
        728.0
    );
    assert_eq!(
        r.value(r#"maillog_lines_total{format="qmail",result="unparsed",source="test"}"#),
        0.0
    );
    // new msg, info msg, end msg, bounce msg, triple bounce.
    assert_eq!(
        r.value(r#"mail_messages_received_total{mta="qmail"}"#),
        55.0
    );
    assert_eq!(
        r.value(r#"mail_message_size_bytes_count{mta="qmail"}"#),
        55.0
    );
    assert_eq!(r.value(r#"mail_messages_removed_total{mta="qmail"}"#), 55.0);
    assert_eq!(
        r.value(r#"mail_message_queue_seconds_count{mta="qmail"}"#),
        55.0
    );
    assert_eq!(
        r.value(r#"mail_bounce_notifications_total{kind="non_delivery",mta="qmail"}"#),
        19.0
    );
    assert_eq!(r.value(r#"mail_bounces_discarded_total{mta="qmail"}"#), 0.0);
    // Results by channel and status (135 started = 55 local + 80 remote).
    for (transport, status, n) in [
        ("local", "sent", 43.0),
        ("local", "deferred", 6.0),
        ("local", "bounced", 6.0),
        ("remote", "sent", 30.0),
        ("remote", "deferred", 33.0),
        ("remote", "bounced", 17.0),
    ] {
        assert_eq!(
            r.value(&deliveries(transport, status)),
            n,
            "{transport} {status}"
        );
        // Every result was joined to its start: each has a delay.
        let delay = format!(
            "mail_delivery_delay_seconds_count{{mta=\"qmail\",status=\"{status}\",transport=\"{transport}\"}}"
        );
        assert_eq!(r.value(&delay), n, "{transport} {status} delay");
    }
    assert_eq!(r.get(&deliveries("unknown", "sent")), None);
    // Recipients that only ever got temporary errors were tried 4 times
    // (3 deferrals + the failure), across the restart: local 2, remote 11;
    // the other failures were first attempts.
    let attempts = |t: &str, le: &str| {
        format!(
            "mail_delivery_attempts_bucket{{mta=\"qmail\",status=\"bounced\",transport=\"{t}\",le=\"{le}\"}}"
        )
    };
    assert_eq!(r.value(&attempts("local", "1")), 4.0);
    assert_eq!(r.value(&attempts("local", "3")), 4.0);
    assert_eq!(r.value(&attempts("local", "4")), 6.0);
    assert_eq!(r.value(&attempts("remote", "1")), 6.0);
    assert_eq!(r.value(&attempts("remote", "3")), 6.0);
    assert_eq!(r.value(&attempts("remote", "4")), 17.0);
    assert_eq!(
        r.value(r#"mail_delivery_attempts_count{mta="qmail",status="sent",transport="remote"}"#),
        30.0
    );
    assert_eq!(
        r.value(r#"mail_delivery_attempts_sum{mta="qmail",status="sent",transport="remote"}"#),
        30.0
    );
    // status: exiting twice (one restart in the middle, one at the end).
    assert_eq!(
        r.value(r#"mail_system_lifecycle_events_total{event="stop",mta="qmail"}"#),
        2.0
    );
    // Queue at end: empty; nothing left half-joined, nothing evicted.
    assert_eq!(r.value(r#"mail_queue_messages{mta="qmail"}"#), 0.0);
    assert_eq!(r.value("maillog_tracked_messages"), 0.0);
    assert_eq!(r.value("maillog_tracked_deliveries"), 0.0);
    for reason in ["capacity", "expired", "id_reused"] {
        let series = format!("maillog_tracked_messages_evicted_total{{reason=\"{reason}\"}}");
        assert_eq!(r.value(&series), 0.0, "{reason}");
    }
    for reason in ["capacity", "expired", "id_reused", "restart"] {
        let series = format!("maillog_tracked_deliveries_evicted_total{{reason=\"{reason}\"}}");
        assert_eq!(r.value(&series), 0.0, "{reason}");
    }
    // The last status line: idle, limits from control/concurrency*.
    for (transport, limit) in [("local", 10.0), ("remote", 20.0)] {
        let active =
            format!("mail_queue_active_deliveries{{mta=\"qmail\",transport=\"{transport}\"}}");
        let lim =
            format!("mail_queue_concurrency_limit{{mta=\"qmail\",transport=\"{transport}\"}}");
        assert_eq!(r.value(&active), 0.0);
        assert_eq!(r.value(&lim), limit);
    }
}

#[test]
fn real_notqmail_multilog_matches_ground_truth() {
    let log = fixture("real_notqmail_send_multilog.log");
    check_send_truth(replay(None).all_nonempty(&log));
}

#[test]
fn real_notqmail_splogger_matches_ground_truth() {
    let log = fixture("real_notqmail_send_splogger.log");
    check_send_truth(replay(None).all_nonempty(&log));
}

/// Replays line by line and checks the per-run split of the ground truth
/// and the highest concurrency the gauges showed.
#[test]
fn real_notqmail_runs_split_at_the_restart_and_max_concurrency() {
    let log = fixture("real_notqmail_send_multilog.log");
    let mut r = replay(Some("qmail"));
    let local = r#"mail_queue_active_deliveries{mta="qmail",transport="local"}"#;
    let remote = r#"mail_queue_active_deliveries{mta="qmail",transport="remote"}"#;
    let mut max = [[0.0f64; 2]; 2];
    let mut run = 0;
    for line in log.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        r.line(line);
        if line.ends_with(b"status: exiting") {
            if run == 0 {
                // Run 1 per the ground truth.
                assert_eq!(
                    r.value(r#"mail_messages_received_total{mta="qmail"}"#),
                    29.0
                );
                assert_eq!(r.value(r#"mail_messages_removed_total{mta="qmail"}"#), 23.0);
                assert_eq!(
                    r.value(r#"mail_bounce_notifications_total{kind="non_delivery",mta="qmail"}"#),
                    5.0
                );
                for (t, s, n) in [
                    ("local", "sent", 23.0),
                    ("local", "deferred", 1.0),
                    ("local", "bounced", 4.0),
                    ("remote", "sent", 24.0),
                    ("remote", "deferred", 7.0),
                    ("remote", "bounced", 2.0),
                ] {
                    assert_eq!(r.value(&deliveries(t, s)), n, "run 1 {t} {s}");
                }
                // 6 messages stay queued across the restart.
                assert_eq!(r.value(r#"mail_queue_messages{mta="qmail"}"#), 6.0);
                assert_eq!(r.value("maillog_tracked_deliveries"), 0.0);
            }
            run += 1;
        }
        if line.contains(&b'/') && line.windows(7).any(|w| w == b"status:") {
            max[run.min(1)][0] = max[run.min(1)][0].max(r.value(local));
            max[run.min(1)][1] = max[run.min(1)][1].max(r.value(remote));
        }
    }
    assert_eq!(run, 2);
    // run 1: 6/14, run 2: 4/11.
    assert_eq!(max, [[6.0, 14.0], [4.0, 11.0]]);
}

#[test]
fn real_tcpserver_log_exact_values() {
    let log = fixture("real_notqmail_smtpd_tcpserver.log");
    let mut r = replay(None);
    let mut max_open = 0.0f64;
    for line in log.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        r.line(line);
        if let Some(v) = r.get(r#"mail_smtp_connections_open{mta="qmail",service="smtpd"}"#) {
            max_open = max_open.max(v);
        }
    }
    assert_eq!(max_open, 3.0);
    assert_eq!(
        r.value(r#"maillog_lines_total{format="qmail",result="parsed",source="test"}"#),
        41.0
    );
    assert_eq!(
        r.value(r#"mail_smtp_connections_total{mta="qmail",service="smtpd"}"#),
        8.0
    );
    assert_eq!(
        r.value(r#"mail_smtp_connections_open{mta="qmail",service="smtpd"}"#),
        0.0
    );
    assert_eq!(
        r.value(r#"mail_smtp_connection_limit{mta="qmail",service="smtpd"}"#),
        20.0
    );
    assert_eq!(
        r.value(
            r#"mail_spam_verdicts_total{filter="tcprules",reason="denylisted",verdict="denied"}"#
        ),
        1.0
    );
    // The last line's stamp: @400000006b01fd2714acea54.
    let last = r.value(r#"maillog_last_line_timestamp_seconds{source="test"}"#);
    assert!((last - (0x6b01_fd27_u64 - 10) as f64 - 0x14ac_ea54 as f64 / 1e9).abs() < 1e-6);
}

/// The seed example, one message: exact delay and queue time from the
/// TAI64N labels (`new msg` at …eb027f41c7c, result at …eb104a13804,
/// `end msg` at …eb104a6ecf4).
#[test]
fn seed_example_exact_delay_and_queue_time() {
    let log = fixture("seed_qmail_multilog_cleaned.log");
    let mut r = replay(None);
    r.all_nonempty(&log);
    assert_eq!(r.value(&deliveries("remote", "sent")), 1.0);
    let delay =
        r.value(r#"mail_delivery_delay_seconds_sum{mta="qmail",status="sent",transport="remote"}"#);
    let expected = 1.0 + (0x04a1_3804_i64 - 0x27f4_1c7c_i64) as f64 / 1e9;
    assert!((delay - expected).abs() < 1e-6, "{delay} {expected}");
    let queue = r.value(r#"mail_message_queue_seconds_sum{mta="qmail"}"#);
    let expected = 1.0 + (0x04a6_ecf4_i64 - 0x27f4_1c7c_i64) as f64 / 1e9;
    assert!((queue - expected).abs() < 1e-6, "{queue} {expected}");
    assert_eq!(
        r.value(r#"mail_message_size_bytes_sum{mta="qmail"}"#),
        2343.0
    );
    assert_eq!(
        r.value(r#"mail_queue_concurrency_limit{mta="qmail",transport="remote"}"#),
        20.0
    );
}

/// tai64nlocal stamps are local time: the same log read with two zones
/// gives stamps an hour apart, and indimail's rate-control lines parse.
#[test]
fn tai64nlocal_uses_the_source_zone() {
    let log = fixture("indimail_readme_slowq_tai64nlocal.log");
    let mut r = replay(None);
    r.all_nonempty(&log);
    assert_eq!(
        r.value(r#"maillog_lines_total{format="qmail",result="parsed",source="test"}"#),
        33.0
    );
    assert_eq!(r.value(r#"mail_messages_received_total{mta="qmail"}"#), 3.0);
    assert_eq!(r.value(&deliveries("local", "sent")), 3.0);
    assert_eq!(
        r.value(
            r#"mail_daemon_log_messages_total{daemon="qmail-send",mta="qmail",severity="warning"}"#
        ),
        3.0
    );
    // Last line 2021-06-05 21:06:48.734762500 in UTC.
    let last = r.value(r#"maillog_last_line_timestamp_seconds{source="test"}"#);
    assert!((last - 1_622_927_208.734_762_5).abs() < 1e-6, "{last}");
    // Message 932523 was received twice (its id reused after `end msg`):
    // the second one's delay is measured from its own arrival (20:42:57.59)
    // to 20:54:47.59, not from the first one's.
    let sum =
        r.value(r#"mail_delivery_delay_seconds_sum{mta="qmail",status="sent",transport="local"}"#);
    let expected =
        (52.844_974_5 - 52.803_287_5) + (11.0 * 60.0 + 49.997_009) + (23.0 * 60.0 + 37.287_374);
    assert!((sum - expected).abs() < 1e-3, "{sum} {expected}");
}

#[test]
fn detection_picks_qmail_for_every_envelope_and_postfix_for_postfix() {
    for (file, lines) in [
        ("real_notqmail_send_multilog.log", 728.0),
        ("real_notqmail_send_splogger.log", 728.0),
        ("indimail_readme_slowq_tai64nlocal.log", 33.0),
        ("real_notqmail_smtpd_tcpserver.log", 41.0),
        ("notqmail_TEST.deliver_splogger_examples.log", 29.0),
    ] {
        let mut r = replay(None);
        r.all_nonempty(&fixture(file));
        assert_eq!(
            r.value(r#"maillog_lines_total{format="qmail",result="parsed",source="test"}"#),
            lines,
            "{file}"
        );
        assert_eq!(
            r.get(r#"maillog_lines_total{format="unknown",result="unparsed",source="test"}"#),
            None,
            "{file}"
        );
    }
    let postfix = fixture_bytes("postfix/kdent_conch_excerpt.log");
    let mut r = replay(None);
    r.all_nonempty(&postfix);
    let text = r.text();
    assert!(
        text.contains(r#"maillog_lines_total{format="postfix",result="parsed",source="test"}"#),
        "{text}"
    );
    // A Postfix-only exporter shows no qmail series, and the other way round.
    assert!(!text.contains(r#"format="qmail""#));
    assert!(!text.contains(r#"mta="qmail""#), "{text}");
    let mut r = replay(None);
    r.all_nonempty(&fixture("real_notqmail_send_multilog.log"));
    assert!(!r.text().contains(r#"mta="postfix""#));
}
