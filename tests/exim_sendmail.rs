//! Exim and Sendmail: replays of real logs with exact values, and format
//! detection. The Exim lab log (tests/fixtures/exim/real_exim496_lab_mainlog.log)
//! is a run of tests/lab/exim_lab.py whose outcomes are known.

use crate::support::{assert_values, fixture_bytes, fixture_text, Replay};
use maillog_exporter::parser::Format;

/// The metrics after an in-process replay of `tests/fixtures/{path}`, the
/// format detected, in UTC.
fn replay(path: &str) -> String {
    Replay::new(None, 1_795_292_430.0)
        .all_nonempty(&fixture_bytes(path))
        .text()
}

/// Checks exact values; an absent series counts as 0.
fn check(text: &str, expected: &[(&str, f64)]) {
    assert_values("replay", text, expected, 0.0);
}

#[test]
fn exim_lab_log_matches_its_truth() {
    let text = replay("exim/real_exim496_lab_mainlog.log");
    let d = |status: &str| {
        format!(r#"mail_deliveries_total{{mta="exim",status="{status}",transport="remote_smtp"}}"#)
    };
    check(
        &text,
        &[
            (
                r#"maillog_lines_total{format="exim",result="parsed",source="test"}"#,
                67.0,
            ),
            (
                r#"maillog_lines_total{format="exim",result="unparsed",source="test"}"#,
                0.0,
            ),
            (r#"mail_messages_received_total{mta="exim"}"#, 8.0),
            (r#"mail_messages_removed_total{mta="exim"}"#, 8.0),
            (r#"mail_messages_expired_total{mta="exim"}"#, 1.0),
            (&d("sent"), 7.0),
            (&d("deferred"), 3.0),
            (&d("bounced"), 1.0),
            (
                r#"mail_delivery_attempts_sum{mta="exim",status="sent",transport="remote_smtp"}"#,
                8.0,
            ),
            (
                r#"mail_delivery_attempts_sum{mta="exim",status="bounced",transport="remote_smtp"}"#,
                1.0,
            ),
            (r#"mail_message_queue_seconds_sum{mta="exim"}"#, 17.268), // the QT= of the 8 Completed lines
            (
                r#"mail_smtp_rejects_total{code="550",mta="exim",service="smtpd",stage="RCPT"}"#,
                1.0,
            ),
            (
                r#"mail_smtp_rejects_total{code="550",mta="exim",service="smtpd",stage="MAIL"}"#,
                1.0,
            ),
            (
                r#"mail_smtp_rejects_total{code="550",mta="exim",service="smtpd",stage="END-OF-MESSAGE"}"#,
                1.0,
            ),
            // The readiness probe of that run: one connection more, lost.
            (
                r#"mail_smtp_connections_total{mta="exim",service="smtpd"}"#,
                9.0,
            ),
            (
                r#"mail_smtp_session_errors_total{after="other",kind="lost_connection",mta="exim",service="smtpd"}"#,
                1.0,
            ),
            (
                r#"mail_bounce_notifications_total{kind="non_delivery",mta="exim"}"#,
                2.0,
            ),
            (
                r#"mail_system_lifecycle_events_total{event="start",mta="exim"}"#,
                1.0,
            ),
            (r#"mail_queue_messages{mta="exim"}"#, 0.0),
        ],
    );
}

#[test]
fn exim_samples_replay() {
    // Counted with grep: ` <= ` 9, `rejected RCPT` 10, `rejected by
    // local_scan` 6, `Frozen` 2; authenticators named *login* 10, *plain* 3.
    let text = replay("exim/ddgrey_mainlog_shapes.log");
    check(
        &text,
        &[
            (
                r#"maillog_lines_total{format="exim",result="unparsed",source="test"}"#,
                0.0,
            ),
            (r#"mail_messages_received_total{mta="exim"}"#, 9.0),
            (r#"mail_messages_frozen_total{mta="exim"}"#, 2.0),
            (
                r#"mail_smtp_rejects_total{code="550",mta="exim",service="smtpd",stage="RCPT"}"#,
                10.0,
            ),
            (
                r#"mail_smtp_rejects_total{code="550",mta="exim",service="smtpd",stage="END-OF-MESSAGE"}"#,
                6.0,
            ),
        ],
    );
    let text = replay("exim/fail2ban_exim.log");
    check(
        &text,
        &[
            (
                r#"maillog_lines_total{format="exim",result="unparsed",source="test"}"#,
                0.0,
            ),
            (
                r#"mail_auth_failures_total{mechanism="LOGIN",mta="exim",service="smtpd"}"#,
                10.0,
            ),
            (
                r#"mail_auth_failures_total{mechanism="PLAIN",mta="exim",service="smtpd"}"#,
                3.0,
            ),
        ],
    );
}

#[test]
fn sendmail_samples_replay() {
    let text = replay("sendmail/fonylew_config_mailgateway_sendmail_shapes.log");
    check(
        &text,
        &[
            (
                r#"maillog_lines_total{format="sendmail",result="unparsed",source="test"}"#,
                0.0,
            ),
            (
                r#"mail_deliveries_total{mta="sendmail",status="sent",transport="relay"}"#,
                4.0,
            ),
            (
                r#"mail_deliveries_total{mta="sendmail",status="bounced",transport="relay"}"#,
                4.0,
            ),
            (
                r#"mail_bounce_notifications_total{kind="non_delivery",mta="sendmail"}"#,
                4.0,
            ),
            (
                r#"mail_delivery_attempts_count{mta="sendmail",status="sent",transport="relay"}"#,
                4.0,
            ),
            (r#"mail_messages_received_total{mta="sendmail"}"#, 2.0),
        ],
    );
    // Sendmail logs no removal and no expiry: those series never move, so
    // they do not exist (Format::logs_queue).
    for never in [
        r#"mail_messages_removed_total{mta="sendmail"}"#,
        r#"mail_messages_expired_total{mta="sendmail"}"#,
        r#"mail_message_queue_seconds_count{mta="sendmail"}"#,
    ] {
        assert!(!text.contains(never), "{never}");
    }
    let text = replay("sendmail/fail2ban_sendmail.log");
    check(
        &text,
        &[(
            r#"maillog_lines_total{format="sendmail",result="unparsed",source="test"}"#,
            0.0,
        )],
    );
}

#[test]
fn both_formats_are_detected_and_others_still_are() {
    let first = |path: &str| {
        fixture_text(path)
            .lines()
            .find_map(|l| Format::detect(l.as_bytes()))
    };
    for f in [
        "exim/ddgrey_mainlog_shapes.log",
        "exim/fail2ban_exim.log",
        "exim/real_exim496_lab_mainlog.log",
        "exim/exim_testsuite_mainlog_shapes.log",
        "exim/wazuh_ruleset_tests.log",
    ] {
        assert_eq!(first(f), Some(Format::Exim), "{f}");
    }
    for f in [
        "sendmail/fail2ban_sendmail.log",
        "sendmail/fonylew_config_mailgateway_sendmail_shapes.log",
        "sendmail/awstats_maillogconvert_comment_examples.log",
    ] {
        assert_eq!(first(f), Some(Format::Sendmail), "{f}");
    }
    assert_eq!(
        first("postfix/kdent_conch_excerpt.log"),
        Some(Format::Postfix)
    );
    assert_eq!(
        first("qmail/real_notqmail_send_multilog.log"),
        Some(Format::Qmail)
    );
    assert_eq!(Format::from_name("exim"), Some(Format::Exim));
    assert_eq!(Format::from_name("sendmail"), Some(Format::Sendmail));
}

/// Every line of every fixture is recognised by at most one format, and
/// only by the format of its fixture directory: no Exim or Sendmail line is
/// taken for another format, and no other format's line for Exim or
/// Sendmail.
#[test]
fn no_fixture_line_is_recognised_by_another_format() {
    let root = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");
    let own = |dir: &str| -> &[Format] {
        match dir {
            "postfix" => &[Format::Postfix],
            "qmail" => &[Format::Qmail],
            "exim" => &[Format::Exim],
            "sendmail" => &[Format::Sendmail],
            "messaging_server" => &[Format::MessagingServer],
            "hosting" => &[Format::HostingSmtp, Format::HostingDelivery],
            "spamdyke" => &[Format::Spamdyke],
            other => panic!("fixture directory {other} has no format here"),
        }
    };
    let mut wrong = Vec::new();
    let mut checked = 0;
    for dir in std::fs::read_dir(root).unwrap().flatten() {
        if !dir.path().is_dir() {
            continue;
        }
        let name = dir.file_name().into_string().unwrap();
        let expected = own(&name);
        for file in std::fs::read_dir(dir.path()).unwrap().flatten() {
            let path = file.path();
            if path.extension().is_none_or(|x| x != "log") {
                continue;
            }
            let text = std::fs::read(&path).unwrap();
            for line in text.split(|&b| b == b'\n') {
                let found: Vec<Format> = Format::ALL
                    .into_iter()
                    .filter(|f| f.recognizes(line))
                    .collect();
                checked += 1;
                if found.len() > 1 || found.iter().any(|f| !expected.contains(f)) {
                    wrong.push(format!(
                        "{name}/{}: {found:?}: {}",
                        path.file_name().unwrap().to_string_lossy(),
                        String::from_utf8_lossy(line)
                    ));
                }
            }
        }
    }
    assert!(checked > 3000, "only {checked} lines");
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}
