//! Golden tests: a real log in, exact metrics out.
//!
//! Each fixture is replayed by the built binary (`maillog_exporter replay`)
//! from the repository root with a relative path, so the `source` label is
//! stable, and with `TZ=UTC`, because classic syslog stamps are local time.
//! The output is compared with `tests/fixtures/postfix/<name>.golden.prom`.
//! Set `UPDATE_GOLDEN=1` to rewrite the golden files, then read the diff.
//!
//! The golden files are snapshots; the `*_counts_match_the_log` tests
//! check the key numbers against counts taken by hand from the logs.

use crate::support::{assert_golden, assert_values, keep_lines, replay_fixture};
use std::path::Path;
use std::process::{Command, Stdio};

const FIXTURES: [&str; 6] = [
    "kdent_conch_excerpt",
    "digineo_postfix_exporter_mail",
    "oleg_medovikov_mail_server_anal",
    "kumina_postfix_exporter_tests",
    "fail2ban_postfix",
    "github_issues_excerpts",
];

/// The replay output of one fixture, as printed.
fn replay(name: &str) -> String {
    replay_fixture(&format!("postfix/{name}.log"))
}

/// The output without the lines that depend on the build or the clock:
/// `maillog_exporter_build_info` (version, revision, rustc) and
/// `maillog_last_line_timestamp_seconds`: classic syslog stamps carry no
/// year, it is inferred from the current date, so the value changes with
/// the day the test runs.
fn deterministic(text: &str) -> String {
    keep_lines(text, |l| {
        !l.contains("maillog_exporter_build_info")
            && !l.contains("maillog_last_line_timestamp_seconds")
    })
}

#[test]
fn replay_output_matches_golden_files() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/postfix");
    assert_golden(
        &FIXTURES,
        |name| dir.join(format!("{name}.golden.prom")),
        |name| deterministic(&replay(name)),
    );
}

/// Checks the values of the series in the replay of `name`; an absent
/// series counts as 0.
fn assert_counts(name: &str, expected: &[(&str, f64)]) {
    assert_values(name, &replay(name), expected, 1e-9);
}

// The numbers below were counted in the logs with grep, not copied from the
// replay output; each comment says what was counted.

#[test]
fn kdent_conch_excerpt_counts_match_the_log() {
    assert_counts(
        "kdent_conch_excerpt",
        &[
            // 200 lines, all Postfix and all understood.
            (
                r#"maillog_lines_total{format="postfix",result="parsed",source="tests/fixtures/postfix/kdent_conch_excerpt.log"}"#,
                200.0,
            ),
            // `postfix/smtp[…]: …status=sent`: 5; `status=deferred`: 21.
            (
                r#"mail_deliveries_total{mta="postfix",status="sent",transport="smtp"}"#,
                5.0,
            ),
            (
                r#"mail_deliveries_total{mta="postfix",status="deferred",transport="smtp"}"#,
                21.0,
            ),
            // delay= of the 5 sent lines: 3.1 + 2.9 + 3.6 + 8.2 + 14.
            (
                r#"mail_delivery_delay_seconds_sum{mta="postfix",status="sent",transport="smtp"}"#,
                31.8,
            ),
            // cleanup `message-id=`: 5; qmgr `: removed`: 5.
            (r#"mail_messages_received_total{mta="postfix"}"#, 5.0),
            (r#"mail_messages_removed_total{mta="postfix"}"#, 5.0),
            // qmgr `from=<…>, size=…, nrcpt=…`: 26 lines for 17 queue ids
            // (retries log it again); envelopes are observed once per id:
            // sizes sum to 335752, nrcpt to 17.
            (r#"mail_message_size_bytes_count{mta="postfix"}"#, 17.0),
            (r#"mail_message_size_bytes_sum{mta="postfix"}"#, 335_752.0),
            (r#"mail_message_recipients_sum{mta="postfix"}"#, 17.0),
            // 17 queue ids seen, 5 removed: 12 still queued.
            (r#"mail_queue_messages{mta="postfix"}"#, 12.0),
            // smtpd `connect from`: 27.
            (
                r#"mail_smtp_connections_total{mta="postfix",service="smtpd"}"#,
                27.0,
            ),
            // `NOQUEUE: reject: RCPT … 554`: 19; `… 450`: 3.
            (
                r#"mail_smtp_rejects_total{code="554",mta="postfix",service="smtpd",stage="RCPT"}"#,
                19.0,
            ),
            (
                r#"mail_smtp_rejects_total{code="450",mta="postfix",service="smtpd",stage="RCPT"}"#,
                3.0,
            ),
            // smtp `connect to …: Connection refused` lines (not the status
            // lines quoting it): 7.
            (
                r#"mail_smtp_outbound_connect_errors_total{error="refused",mta="postfix",transport="smtp"}"#,
                7.0,
            ),
            // `lost connection after RCPT`: 8, `after DATA`: 1.
            (
                r#"mail_smtp_session_errors_total{after="RCPT",kind="lost_connection",mta="postfix",service="smtpd"}"#,
                8.0,
            ),
            (
                r#"mail_smtp_session_errors_total{after="DATA",kind="lost_connection",mta="postfix",service="smtpd"}"#,
                1.0,
            ),
            // smtpd `warning: … address not listed for hostname`: 6.
            (
                r#"mail_daemon_log_messages_total{daemon="smtpd",mta="postfix",severity="warning"}"#,
                6.0,
            ),
        ],
    );
}

#[test]
fn digineo_postfix_exporter_mail_counts_match_the_log() {
    assert_counts(
        "digineo_postfix_exporter_mail",
        &[
            // smtp `status=sent`: 2; `: removed`: 35; `message-id=`: 1.
            (
                r#"mail_deliveries_total{mta="postfix",status="sent",transport="smtp"}"#,
                2.0,
            ),
            (r#"mail_messages_removed_total{mta="postfix"}"#, 35.0),
            (r#"mail_messages_received_total{mta="postfix"}"#, 1.0),
            // `TLS connection established to`: 3.
            (
                r#"mail_smtp_tls_connections_total{direction="outbound",mta="postfix",service="smtp"}"#,
                3.0,
            ),
            // `reject: RCPT … 450`: 1; `SASL PLAIN authentication failed`: 1.
            (
                r#"mail_smtp_rejects_total{code="450",mta="postfix",service="smtpd",stage="RCPT"}"#,
                1.0,
            ),
            (
                r#"mail_auth_failures_total{mechanism="PLAIN",mta="postfix",service="smtpd"}"#,
                1.0,
            ),
            // one `connect from` each on smtpd and submission/smtpd.
            (
                r#"mail_smtp_connections_total{mta="postfix",service="smtpd"}"#,
                1.0,
            ),
            (
                r#"mail_smtp_connections_total{mta="postfix",service="submission"}"#,
                1.0,
            ),
        ],
    );
}

#[test]
fn oleg_medovikov_mail_server_anal_counts_match_the_log() {
    assert_counts(
        "oleg_medovikov_mail_server_anal",
        &[
            // smtp (incl. `postfix/amavis/smtp`) `status=sent`: 7; pipe sent
            // 2, deferred 1.
            (
                r#"mail_deliveries_total{mta="postfix",status="sent",transport="smtp"}"#,
                7.0,
            ),
            (
                r#"mail_deliveries_total{mta="postfix",status="sent",transport="pipe"}"#,
                2.0,
            ),
            (
                r#"mail_deliveries_total{mta="postfix",status="deferred",transport="pipe"}"#,
                1.0,
            ),
            // `message-id=`: 7 (both sides of the amavis hop); removed: 7.
            (r#"mail_messages_received_total{mta="postfix"}"#, 7.0),
            (r#"mail_messages_removed_total{mta="postfix"}"#, 7.0),
            // `reject: RCPT … 450`: 19.
            (
                r#"mail_smtp_rejects_total{code="450",mta="postfix",service="smtpd",stage="RCPT"}"#,
                19.0,
            ),
            // 15 amavis/opendkim lines are another program's.
            (
                r#"maillog_lines_total{format="postfix",result="ignored",source="tests/fixtures/postfix/oleg_medovikov_mail_server_anal.log"}"#,
                15.0,
            ),
            (
                r#"maillog_lines_total{format="postfix",result="unparsed",source="tests/fixtures/postfix/oleg_medovikov_mail_server_anal.log"}"#,
                0.0,
            ),
        ],
    );
}

#[test]
fn kumina_postfix_exporter_tests_counts_match_the_log() {
    assert_counts(
        "kumina_postfix_exporter_tests",
        &[
            // qmgr `: removed`: 31; `status=expired`/`force-expired`: 2
            // (per message, from qmgr).
            (r#"mail_messages_removed_total{mta="postfix"}"#, 31.0),
            (r#"mail_messages_expired_total{mta="postfix"}"#, 2.0),
            // one status line each: smtp sent, deferred, bounced; virtual sent.
            (
                r#"mail_deliveries_total{mta="postfix",status="sent",transport="smtp"}"#,
                1.0,
            ),
            (
                r#"mail_deliveries_total{mta="postfix",status="deferred",transport="smtp"}"#,
                1.0,
            ),
            (
                r#"mail_deliveries_total{mta="postfix",status="bounced",transport="smtp"}"#,
                1.0,
            ),
            (
                r#"mail_deliveries_total{mta="postfix",status="sent",transport="virtual"}"#,
                1.0,
            ),
            // bounce `sender non-delivery notification`: 1.
            (
                r#"mail_bounce_notifications_total{kind="non_delivery",mta="postfix"}"#,
                1.0,
            ),
            // SASL failures: PLAIN on smtpd, LOGIN on submissions/smtpd.
            (
                r#"mail_auth_failures_total{mechanism="PLAIN",mta="postfix",service="smtpd"}"#,
                1.0,
            ),
            (
                r#"mail_auth_failures_total{mechanism="LOGIN",mta="postfix",service="submissions"}"#,
                1.0,
            ),
        ],
    );
}

#[test]
fn fail2ban_postfix_counts_match_the_log() {
    assert_counts(
        "fail2ban_postfix",
        &[
            // All 72 lines understood (three have a one-digit unpadded day).
            (
                r#"maillog_lines_total{format="postfix",result="parsed",source="tests/fixtures/postfix/fail2ban_postfix.log"}"#,
                72.0,
            ),
            // `authentication failed`: 13 lines.
            (
                r#"mail_auth_failures_total{mechanism="LOGIN",mta="postfix",service="smtpd"}"#,
                6.0,
            ),
            (
                r#"mail_auth_failures_total{mechanism="CRAM-MD5",mta="postfix",service="smtpd"}"#,
                2.0,
            ),
            (
                r#"mail_auth_failures_total{mechanism="PLAIN",mta="postfix",service="smtpd"}"#,
                1.0,
            ),
            (
                r#"mail_auth_failures_total{mechanism="LOGIN",mta="postfix",service="submission"}"#,
                2.0,
            ),
            (
                r#"mail_auth_failures_total{mechanism="PLAIN",mta="postfix",service="submission"}"#,
                1.0,
            ),
            (
                r#"mail_auth_failures_total{mechanism="LOGIN",mta="postfix",service="smtps"}"#,
                1.0,
            ),
            // `reject: RCPT … 554`: 6, `… 450`: 9, `… 454`: 3, `… 553`: 2;
            // `… 550`: 5 of which 1 by postscreen.
            (
                r#"mail_smtp_rejects_total{code="554",mta="postfix",service="smtpd",stage="RCPT"}"#,
                6.0,
            ),
            (
                r#"mail_smtp_rejects_total{code="450",mta="postfix",service="smtpd",stage="RCPT"}"#,
                9.0,
            ),
            (
                r#"mail_smtp_rejects_total{code="454",mta="postfix",service="smtpd",stage="RCPT"}"#,
                3.0,
            ),
            (
                r#"mail_smtp_rejects_total{code="553",mta="postfix",service="smtpd",stage="RCPT"}"#,
                2.0,
            ),
            (
                r#"mail_smtp_rejects_total{code="550",mta="postfix",service="smtpd",stage="RCPT"}"#,
                4.0,
            ),
            (
                r#"mail_smtp_rejects_total{code="550",mta="postfix",service="postscreen",stage="RCPT"}"#,
                1.0,
            ),
            // `reject: EHLO … 504`: 3 (2 smtpd, 1 smtps); DATA and BDAT 550.
            (
                r#"mail_smtp_rejects_total{code="504",mta="postfix",service="smtpd",stage="HELO"}"#,
                2.0,
            ),
            (
                r#"mail_smtp_rejects_total{code="504",mta="postfix",service="smtps",stage="HELO"}"#,
                1.0,
            ),
            (
                r#"mail_smtp_rejects_total{code="550",mta="postfix",service="smtpd",stage="DATA"}"#,
                1.0,
            ),
            (
                r#"mail_smtp_rejects_total{code="550",mta="postfix",service="submission",stage="DATA"}"#,
                1.0,
            ),
            // `lost connection after`: 7 (CONNECT 2 incl. the NOQUEUE one,
            // DATA 1, AUTH 3 and STARTTLS 1 as `other`); `too many errors
            // after RCPT`: 1.
            (
                r#"mail_smtp_session_errors_total{after="CONNECT",kind="lost_connection",mta="postfix",service="smtpd"}"#,
                2.0,
            ),
            (
                r#"mail_smtp_session_errors_total{after="DATA",kind="lost_connection",mta="postfix",service="smtpd"}"#,
                1.0,
            ),
            (
                r#"mail_smtp_session_errors_total{after="AUTH",kind="lost_connection",mta="postfix",service="smtpd"}"#,
                3.0,
            ),
            (
                r#"mail_smtp_session_errors_total{after="STARTTLS",kind="lost_connection",mta="postfix",service="smtpd"}"#,
                1.0,
            ),
            (
                r#"mail_smtp_session_errors_total{after="RCPT",kind="too_many_errors",mta="postfix",service="smtpd"}"#,
                1.0,
            ),
            // postscreen PREGREET, HANGUP, DNSBL rank: 1 each.
            (
                r#"mail_spam_verdicts_total{filter="postscreen",reason="pregreet",verdict="denied"}"#,
                1.0,
            ),
            (
                r#"mail_spam_verdicts_total{filter="postscreen",reason="hangup",verdict="denied"}"#,
                1.0,
            ),
            (
                r#"mail_spam_verdicts_total{filter="postscreen",reason="dnsbl",verdict="denied"}"#,
                1.0,
            ),
        ],
    );
}

#[test]
fn github_issues_excerpts_counts_match_the_log() {
    assert_counts(
        "github_issues_excerpts",
        &[
            // 7 lines left unparsed: see tests/postfix_coverage.rs.
            (
                r#"maillog_lines_total{format="postfix",result="unparsed",source="tests/fixtures/postfix/github_issues_excerpts.log"}"#,
                7.0,
            ),
            // smtp `status=sent`: 2, one behind a `docker compose` prefix.
            (
                r#"mail_deliveries_total{mta="postfix",status="sent",transport="smtp"}"#,
                1.0,
            ),
            (
                r#"mail_deliveries_total{mta="postfix",status="sent",transport="lmtp"}"#,
                1.0,
            ),
            (
                r#"mail_deliveries_total{mta="postfix",status="deferred",transport="lmtp"}"#,
                2.0,
            ),
            (
                r#"mail_deliveries_total{mta="postfix",status="sent",transport="local"}"#,
                1.0,
            ),
            (
                r#"mail_deliveries_total{mta="postfix",status="sent",transport="pipe"}"#,
                1.0,
            ),
            // `message-id=`: 5; `: removed`: 3.
            (r#"mail_messages_received_total{mta="postfix"}"#, 5.0),
            (r#"mail_messages_removed_total{mta="postfix"}"#, 3.0),
            // `connect to …: Operation timed out` (FreeBSD) and `Address
            // not available`.
            (
                r#"mail_smtp_outbound_connect_errors_total{error="timeout",mta="postfix",transport="smtp"}"#,
                1.0,
            ),
            (
                r#"mail_smtp_outbound_connect_errors_total{error="other",mta="postfix",transport="smtp"}"#,
                1.0,
            ),
            // cleanup `milter-reject: END-OF-MESSAGE … 4.7.1`: a 451.
            (
                r#"mail_smtp_rejects_total{code="451",mta="postfix",service="cleanup",stage="END-OF-MESSAGE"}"#,
                1.0,
            ),
        ],
    );
}

/// `promtool check metrics` on a replay output. promtool must be on PATH
/// unless `MAILLOG_SKIP_PROMTOOL=1`.
#[test]
fn replay_output_passes_promtool_check_metrics() {
    use std::io::Write;
    let text = replay("github_issues_excerpts");
    let child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(c) => c,
        Err(e) if std::env::var_os("MAILLOG_SKIP_PROMTOOL").is_some_and(|v| v == "1") => {
            eprintln!("promtool not run ({e}); MAILLOG_SKIP_PROMTOOL=1");
            return;
        }
        Err(e) => panic!("cannot run promtool ({e}); install it or set MAILLOG_SKIP_PROMTOOL=1"),
    };
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The recorded real Postfix 3.7 log gives exactly what that Postfix did:
/// every count of the lab's ground truth (derived from the workload, not
/// from the log) equals the replay's metric, and no Postfix line is
/// unparsed.
#[test]
fn real_postfix_lab_log_matches_its_ground_truth() {
    let name = "real_postfix37_lab";
    let truth: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join(format!("tests/fixtures/postfix/{name}.truth.json")),
        )
        .unwrap(),
    )
    .unwrap();
    let out = replay(name);
    let n = |v: &serde_json::Value| v.as_f64().unwrap();
    let mut want: Vec<(String, f64)> = Vec::new();
    for (transport, statuses) in truth["deliveries"].as_object().unwrap() {
        for (status, count) in statuses.as_object().unwrap() {
            want.push((
                format!(r#"mail_deliveries_total{{mta="postfix",status="{status}",transport="{transport}"}}"#),
                n(count),
            ));
        }
    }
    want.push((
        r#"mail_messages_received_total{mta="postfix"}"#.into(),
        n(&truth["received"]),
    ));
    want.push((
        r#"mail_messages_removed_total{mta="postfix"}"#.into(),
        n(&truth["removed"]),
    ));
    want.push((
        r#"mail_messages_expired_total{mta="postfix"}"#.into(),
        n(&truth["expired"]),
    ));
    for (kind, count) in truth["bounce_notifications"].as_object().unwrap() {
        want.push((
            format!(r#"mail_bounce_notifications_total{{kind="{kind}",mta="postfix"}}"#),
            n(count),
        ));
    }
    let mut rejects: std::collections::BTreeMap<(String, String), f64> = Default::default();
    for r in truth["smtpd_rejects"].as_array().unwrap() {
        *rejects
            .entry((
                r["code"].to_string(),
                r["stage"].as_str().unwrap().to_string(),
            ))
            .or_default() += n(&r["count"]);
    }
    for ((code, stage), count) in rejects {
        want.push((
            format!(r#"mail_smtp_rejects_total{{code="{code}",mta="postfix",service="smtpd",stage="{stage}"}}"#),
            count,
        ));
    }
    want.push((
        r#"mail_smtp_connections_total{mta="postfix",service="smtpd"}"#.into(),
        n(&truth["connections"]["smtpd_connect"]),
    ));
    want.push((
        r#"mail_message_size_bytes_count{mta="postfix"}"#.into(),
        n(&truth["received"]),
    ));
    want.push((
        format!(r#"maillog_lines_total{{format="postfix",result="unparsed",source="tests/fixtures/postfix/{name}.log"}}"#),
        0.0,
    ));
    // A series never incremented is absent, which means zero.
    assert_values(name, &out, &want, 0.0);
    // Nothing else was rejected or delivered than the truth says.
    let rejects_total: f64 = out
        .lines()
        .filter(|l| l.starts_with("mail_smtp_rejects_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(rejects_total, n(&truth["smtpd_rejects_total"]));
}
