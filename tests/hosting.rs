//! Hosting-provider SMTP and delivery logs and spamdyke: exact values on
//! every seed example, golden replays, garbage counted as unparsed, and
//! format detection.
//!
//! The expected numbers come from reading the seed lines
//! (tests/fixtures/hosting/README.md), not from the exporter's output.

use crate::support::{assert_golden, fixture_text, keep_lines, replay_fixture, Replay};
use maillog_exporter::parser::Format;
use maillog_exporter::pipeline::SourceSpec;
use std::path::Path;
use std::process::Command;

const DIR: &str = env!("CARGO_MANIFEST_DIR");

/// A pipeline over one source, UTC, reading the logs of `port`.
fn replay(format: Option<Format>, port: Option<u16>) -> Replay {
    let mut spec = SourceSpec::new("test", format);
    spec.settings.port = port;
    Replay::with_spec(spec, 1_615_400_000.0)
}

/// Lines `from..=to` (1-based) of a fixture.
fn lines(text: &str, from: usize, to: usize) -> String {
    text.lines()
        .skip(from - 1)
        .take(to + 1 - from)
        .map(|l| format!("{l}\n"))
        .collect()
}

fn lines_total(format: &str, result: &str) -> String {
    format!("maillog_lines_total{{format=\"{format}\",result=\"{result}\",source=\"test\"}}")
}

fn smtp(name: &str, service: &str) -> String {
    format!("{name}{{mta=\"hosting\",service=\"{service}\"}}")
}

fn recipients(service: &str, result: &str) -> String {
    format!(
        "mail_smtp_recipients_total{{mta=\"hosting\",result=\"{result}\",service=\"{service}\"}}"
    )
}

const CHECK_ACCEPTED: &str = r#"mail_smtp_recipient_checks_total{detail="existing_recipient",mta="hosting",result="accepted",service="smtp"}"#;

#[test]
fn smtp_first_group_one_recipient_refused_with_554() {
    let log = fixture_text("hosting/icdsoft_smtp.log");
    let mut r = replay(Some(Format::HostingSmtp), Some(25));
    r.all_lines(&lines(&log, 1, 4));
    assert_eq!(r.value(&lines_total("hosting_smtp", "parsed")), 4.0);
    assert_eq!(r.value(&smtp("mail_smtp_transactions_total", "smtp")), 1.0);
    assert_eq!(r.value(&recipients("smtp", "rejected")), 1.0);
    assert_eq!(r.value(&recipients("smtp", "accepted")), 0.0);
    assert_eq!(
        r.value(r#"mail_smtp_rejects_total{code="554",mta="hosting",service="smtp",stage="RCPT"}"#),
        1.0
    );
    assert_eq!(
        r.value(&smtp("mail_smtp_messages_accepted_total", "smtp")),
        0.0
    );
    assert_eq!(
        r.value(r#"mail_messages_received_total{mta="hosting"}"#),
        0.0
    );
    assert_eq!(
        r.value(r#"mail_message_size_bytes_count{mta="hosting"}"#),
        0.0
    );
    // The positive reply to MAIL is no reject and no recipient.
    let text = r.text();
    assert_eq!(
        text.matches("mail_smtp_rejects_total{").count(),
        1,
        "{text}"
    );
}

#[test]
fn smtp_second_group_accepted_with_size_23533() {
    let log = fixture_text("hosting/icdsoft_smtp.log");
    let mut r = replay(Some(Format::HostingSmtp), Some(25));
    r.all_lines(&lines(&log, 5, 11));
    assert_eq!(r.value(&lines_total("hosting_smtp", "parsed")), 7.0);
    assert_eq!(r.value(&smtp("mail_smtp_transactions_total", "smtp")), 1.0);
    assert_eq!(r.value(&recipients("smtp", "accepted")), 1.0);
    assert_eq!(r.value(&recipients("smtp", "rejected")), 0.0);
    assert_eq!(r.value(CHECK_ACCEPTED), 1.0);
    assert_eq!(
        r.value(&smtp("mail_smtp_messages_accepted_total", "smtp")),
        1.0
    );
    assert_eq!(
        r.value(r#"mail_messages_received_total{mta="hosting"}"#),
        1.0
    );
    assert_eq!(
        r.value(r#"mail_message_size_bytes_sum{mta="hosting"}"#),
        23533.0
    );
    assert_eq!(
        r.value(r#"mail_message_size_bytes_count{mta="hosting"}"#),
        1.0
    );
    // 23533 bytes: above the 16 KiB bucket, within 64 KiB.
    assert_eq!(
        r.value(r#"mail_message_size_bytes_bucket{mta="hosting",le="16384"}"#),
        0.0
    );
    assert_eq!(
        r.value(r#"mail_message_size_bytes_bucket{mta="hosting",le="65536"}"#),
        1.0
    );
    assert!(!r.text().contains("mail_smtp_rejects_total{"));
}

/// The page's example for the logs of ports 465 and 587, read as each.
#[test]
fn smtp_submission_example_on_ports_465_and_587() {
    let log = fixture_text("hosting/icdsoft_smtp.log");
    for (port, service) in [(465, "smtps"), (587, "submission")] {
        let mut r = replay(Some(Format::HostingSmtp), Some(port));
        r.all_lines(&lines(&log, 12, 18));
        assert_eq!(r.value(&lines_total("hosting_smtp", "parsed")), 7.0);
        assert_eq!(r.value(&smtp("mail_smtp_transactions_total", service)), 1.0);
        assert_eq!(r.value(&recipients(service, "accepted")), 1.0);
        assert_eq!(r.value(&recipients(service, "rejected")), 0.0);
        assert_eq!(
            r.value(&format!("mail_smtp_recipient_checks_total{{detail=\"existing_recipient\",mta=\"hosting\",result=\"accepted\",service=\"{service}\"}}")),
            1.0
        );
        assert_eq!(
            r.value(&smtp("mail_smtp_messages_accepted_total", service)),
            1.0
        );
        assert_eq!(
            r.value(r#"mail_message_size_bytes_sum{mta="hosting"}"#),
            620.0
        );
        // Only this port's service exists.
        assert!(!r.text().contains("service=\"smtp\""), "{port}");
    }
}

#[test]
fn smtp_whole_seed_log() {
    let log = fixture_text("hosting/icdsoft_smtp.log");
    let mut r = replay(Some(Format::HostingSmtp), Some(25));
    r.all_lines(&log);
    assert_eq!(r.value(&lines_total("hosting_smtp", "parsed")), 18.0);
    assert_eq!(r.value(&lines_total("hosting_smtp", "unparsed")), 0.0);
    assert_eq!(r.value(&smtp("mail_smtp_transactions_total", "smtp")), 3.0);
    assert_eq!(r.value(&recipients("smtp", "accepted")), 2.0);
    assert_eq!(r.value(&recipients("smtp", "rejected")), 1.0);
    assert_eq!(r.value(CHECK_ACCEPTED), 2.0);
    assert_eq!(
        r.value(&smtp("mail_smtp_messages_accepted_total", "smtp")),
        2.0
    );
    assert_eq!(
        r.value(r#"mail_message_size_bytes_sum{mta="hosting"}"#),
        24153.0
    );
    // Last line 2021-03-10 14:17:33 UTC.
    assert_eq!(
        r.value(r#"maillog_last_line_timestamp_seconds{source="test"}"#),
        1_615_385_853.0
    );
    // The hosting logs keep no queue: no queue series for them.
    let text = r.text();
    assert!(!text.contains("mail_queue_messages"), "{text}");
    assert!(!text.contains("mail_messages_removed_total"), "{text}");
    assert_eq!(r.value("maillog_tracked_messages"), 0.0);
}

/// A refusal of MAIL and of the message data count at their stages; a
/// 4xx to RCPT refuses the recipient; a size whose message was refused
/// is not observed.
#[test]
fn smtp_refusals_at_each_stage() {
    let log = "\
2021-03-11 10:00:00, from, a@example.net
2021-03-11 10:00:00, resp, 553 sorry, your envelope sender is in my badmailfrom list (#5.7.1)
2021-03-11 10:00:01, from, b@example.net
2021-03-11 10:00:01, resp, 250 ok
2021-03-11 10:00:01, to, <x@example.com>
2021-03-11 10:00:01, resp, 451 greylisted
2021-03-11 10:00:01, to, <y@example.com>
2021-03-11 10:00:01, resp, 250 ok
2021-03-11 10:00:02, size, 999
2021-03-11 10:00:02, resp, 554 message content rejected
";
    let mut r = replay(Some(Format::HostingSmtp), None);
    r.all_lines(log);
    assert_eq!(
        r.value(&smtp("mail_smtp_transactions_total", "unknown")),
        2.0
    );
    assert_eq!(
        r.value(
            r#"mail_smtp_rejects_total{code="553",mta="hosting",service="unknown",stage="MAIL"}"#
        ),
        1.0
    );
    assert_eq!(
        r.value(
            r#"mail_smtp_rejects_total{code="451",mta="hosting",service="unknown",stage="RCPT"}"#
        ),
        1.0
    );
    assert_eq!(
        r.value(r#"mail_smtp_rejects_total{code="554",mta="hosting",service="unknown",stage="END-OF-MESSAGE"}"#),
        1.0
    );
    assert_eq!(r.value(&recipients("unknown", "accepted")), 1.0);
    assert_eq!(r.value(&recipients("unknown", "rejected")), 1.0);
    assert_eq!(
        r.value(r#"mail_message_size_bytes_count{mta="hosting"}"#),
        0.0
    );
}

#[test]
fn delivery_groups_with_did_and_smtp_auth() {
    let log = fixture_text("hosting/icdsoft_delivery.log");
    let sent = r#"mail_deliveries_total{mta="hosting",status="sent",transport="local"}"#;
    let delay_count =
        r#"mail_delivery_delay_seconds_count{mta="hosting",status="sent",transport="local"}"#;
    let delay_sum =
        r#"mail_delivery_delay_seconds_sum{mta="hosting",status="sent",transport="local"}"#;
    let auth = r#"mail_authenticated_submissions_total{mta="hosting"}"#;

    // First group: `did_0+0+1/`, not an authenticated submission.
    let mut r = replay(Some(Format::HostingDelivery), None);
    r.all_lines(&lines(&log, 1, 3));
    assert_eq!(r.value(&lines_total("hosting_delivery", "parsed")), 3.0);
    assert_eq!(r.value(sent), 1.0);
    assert_eq!(r.value(delay_count), 1.0);
    // init and result in the same second.
    assert_eq!(r.value(delay_sum), 0.0);
    assert_eq!(r.value(auth), 0.0);
    assert_eq!(r.value("maillog_tracked_deliveries"), 0.0);

    // Second group: `smtp_auth/did_0+0+1/`.
    let mut r = replay(Some(Format::HostingDelivery), None);
    r.all_lines(&lines(&log, 4, 6));
    assert_eq!(r.value(sent), 1.0);
    assert_eq!(r.value(auth), 1.0);

    // Both.
    let mut r = replay(Some(Format::HostingDelivery), None);
    r.all_lines(&log);
    assert_eq!(r.value(&lines_total("hosting_delivery", "parsed")), 6.0);
    assert_eq!(r.value(&lines_total("hosting_delivery", "unparsed")), 0.0);
    assert_eq!(r.value(sent), 2.0);
    assert_eq!(r.value(delay_count), 2.0);
    assert_eq!(r.value(auth), 1.0);
    for (transport, status) in [
        ("local", "deferred"),
        ("local", "bounced"),
        ("remote", "sent"),
        ("remote", "deferred"),
        ("remote", "bounced"),
    ] {
        let series = format!("mail_deliveries_total{{mta=\"hosting\",status=\"{status}\",transport=\"{transport}\"}}");
        assert_eq!(r.value(&series), 0.0, "{series}");
    }
    // No queue ids, so no attempts histogram.
    assert!(!r.text().contains("mail_delivery_attempts"));
}

/// Delay from `init` to each result; several recipients of one
/// authenticated message count one submission; a result whose `try` was
/// not seen counts under transport `unknown` without a delay.
#[test]
fn delivery_delays_and_one_submission_per_message() {
    let log = "\
2021-03-11 10:00:00, result, 5, success, did_0+0+1/
2021-03-11 10:00:00, init, <sender@example.com>
2021-03-11 10:00:01, try, 6, local, a@example.com
2021-03-11 10:00:02, try, 7, remote, b@example.net
2021-03-11 10:00:03, result, 6, success, smtp_auth/did_0+0+1/
2021-03-11 10:00:30, result, 7, deferral, smtp_auth/Connection_refused._(#4.4.1)/
2021-03-11 10:10:00, try, 8, remote, b@example.net
2021-03-11 10:10:05, result, 8, failure, smtp_auth/Sorry,_I_couldn't_find_any_host_by_that_name._(#4.1.2)/
";
    let mut r = replay(Some(Format::HostingDelivery), None);
    r.all_lines(log);
    let series = |name: &str, status: &str, transport: &str| {
        format!("{name}{{mta=\"hosting\",status=\"{status}\",transport=\"{transport}\"}}")
    };
    assert_eq!(
        r.value(&series("mail_deliveries_total", "sent", "unknown")),
        1.0
    );
    assert_eq!(
        r.get(&series(
            "mail_delivery_delay_seconds_count",
            "sent",
            "unknown"
        )),
        Some(0.0)
    );
    assert_eq!(
        r.value(&series("mail_delivery_delay_seconds_sum", "sent", "local")),
        3.0
    );
    assert_eq!(
        r.value(&series(
            "mail_delivery_delay_seconds_sum",
            "deferred",
            "remote"
        )),
        30.0
    );
    assert_eq!(
        r.value(&series(
            "mail_delivery_delay_seconds_sum",
            "bounced",
            "remote"
        )),
        605.0
    );
    assert_eq!(
        r.value(r#"mail_authenticated_submissions_total{mta="hosting"}"#),
        1.0
    );
    assert_eq!(r.value("maillog_tracked_deliveries"), 0.0);
}

#[test]
fn spamdyke_denied_rdns_missing_and_allowed() {
    let log = fixture_text("spamdyke/icdsoft_spamdyke.log");
    let denied = r#"mail_spam_verdicts_total{filter="spamdyke",reason="DENIED_RDNS_MISSING",verdict="denied"}"#;
    let allowed =
        r#"mail_spam_verdicts_total{filter="spamdyke",reason="ALLOWED",verdict="allowed"}"#;
    let plain = r#"mail_spam_filter_clients_total{authenticated="false",encryption="none",filter="spamdyke"}"#;
    for (i, want_denied, want_allowed) in [(1, 1.0, 0.0), (2, 0.0, 1.0)] {
        let mut r = replay(Some(Format::Spamdyke), None);
        r.all_lines(&lines(&log, i, i));
        assert_eq!(r.value(&lines_total("spamdyke", "parsed")), 1.0);
        assert_eq!(r.get(denied).unwrap_or(0.0), want_denied, "line {i}");
        assert_eq!(r.value(allowed), want_allowed, "line {i}");
        assert_eq!(r.value(plain), 1.0, "line {i}");
    }
    let mut r = replay(Some(Format::Spamdyke), None);
    r.all_lines(&log);
    assert_eq!(r.value(denied), 1.0);
    assert_eq!(r.value(allowed), 1.0);
    assert_eq!(r.value(plain), 2.0);
    // spamdyke keeps no queue: no qmail queue series appear for it.
    let text = r.text();
    assert!(!text.contains("mail_messages_received_total"), "{text}");
    assert!(!text.contains("mail_queue_messages"), "{text}");
}

/// Lines that are not the format's own shape are counted as unparsed,
/// before and after detection; other programs' syslog lines in a spamdyke
/// file are ignored.
#[test]
fn garbage_lines_are_unparsed() {
    let garbage = "this is not a log line\n2021-03-09 11:10:37, helo, x\n\n\u{1}\u{2}\n";
    for (format, file, good) in [
        ("hosting_smtp", "hosting/icdsoft_smtp.log", 18.0),
        ("hosting_delivery", "hosting/icdsoft_delivery.log", 6.0),
        ("spamdyke", "spamdyke/icdsoft_spamdyke.log", 2.0),
    ] {
        let log = fixture_text(file);
        let mut r = replay(None, None);
        r.all_lines(&format!("{garbage}{log}{garbage}"));
        assert_eq!(r.value(&lines_total(format, "parsed")), good, "{format}");
        assert_eq!(r.value(&lines_total(format, "unparsed")), 8.0, "{format}");
        assert_eq!(
            r.get(r#"maillog_lines_total{format="unknown",result="unparsed",source="test"}"#),
            None,
            "{format}"
        );
    }
    let mut r = replay(Some(Format::Spamdyke), None);
    r.all_lines("Mar 9 11:10:37 server qmail: 1615286631.033035 new msg 1\nMar 9 11:10:37 server spamdyke[1]: NONSENSE\n");
    assert_eq!(r.value(&lines_total("spamdyke", "ignored")), 1.0);
    assert_eq!(r.value(&lines_total("spamdyke", "unparsed")), 1.0);
}

#[test]
fn detection_picks_each_format() {
    for (file, format, n) in [
        ("hosting/icdsoft_smtp.log", "hosting_smtp", 18.0),
        ("hosting/icdsoft_delivery.log", "hosting_delivery", 6.0),
        ("spamdyke/icdsoft_spamdyke.log", "spamdyke", 2.0),
        ("qmail/real_notqmail_send_multilog.log", "qmail", 728.0),
        ("qmail/real_notqmail_smtpd_tcpserver.log", "qmail", 41.0),
        ("postfix/kdent_conch_excerpt.log", "postfix", 200.0),
    ] {
        let mut r = replay(None, None);
        r.all_lines(&fixture_text(file));
        assert_eq!(r.value(&lines_total(format, "parsed")), n, "{file}");
        let text = r.text();
        for other in Format::ALL.map(Format::name) {
            if other != format {
                assert!(
                    !text.contains(&format!("format=\"{other}\"")),
                    "{file} also counted as {other}"
                );
            }
        }
    }
    for format in Format::ALL {
        assert_eq!(Format::from_name(format.name()), Some(format));
    }
}

// ---- golden replays -------------------------------------------------------

const GOLDEN: [&str; 3] = [
    "hosting/icdsoft_smtp",
    "hosting/icdsoft_delivery",
    "spamdyke/icdsoft_spamdyke",
];

/// `maillog_exporter replay` of a fixture from the repository root, in UTC,
/// without the build-dependent line.
fn replay_binary(name: &str) -> String {
    // Build-dependent; and the spamdyke stamps have no year (inferred
    // from today's date).
    keep_lines(&replay_fixture(&format!("{name}.log")), |l| {
        let yearless_stamp =
            name.starts_with("spamdyke") && l.contains("maillog_last_line_timestamp");
        !l.contains("maillog_exporter_build_info") && !yearless_stamp
    })
}

#[test]
fn replay_output_matches_golden_files() {
    assert_golden(
        &GOLDEN,
        |name| Path::new(DIR).join(format!("tests/fixtures/{name}.golden.prom")),
        replay_binary,
    );
}

/// The replay takes the port from a mail port number in the file name.
#[test]
fn replay_takes_the_port_from_the_file_name() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("smtp_587.log");
    std::fs::copy(
        Path::new(DIR).join("tests/fixtures/hosting/icdsoft_smtp.log"),
        &path,
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_maillog_exporter"))
        .env("TZ", "UTC")
        .args(["replay", "--log.format", "hosting_smtp"])
        .arg(&path)
        .output()
        .unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains(r#"mail_smtp_transactions_total{mta="hosting",service="submission"} 3"#),
        "{text}"
    );
}
