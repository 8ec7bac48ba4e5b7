//! Messaging Server: exact values on the documentation's examples (folded
//! as printed, and unfolded into one record per line as real logs write
//! them: both must give identical metrics), golden replays, format
//! detection, and the channel label cap. Fixtures and what was changed in
//! them: tests/fixtures/messaging_server/README.md.

use crate::support::{assert_golden, fixture_bytes, keep_lines, replay_fixture, Replay};
use maillog_exporter::metrics::MAX_FREE_LABEL_VALUES;
use maillog_exporter::parser::Format;
use maillog_exporter::pipeline::SourceSpec;
use maillog_exporter::source::{LineBatch, SourceId};
use std::path::Path;

const FIXTURES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/messaging_server"
);

/// The clock of the pipelines.
const NOW: f64 = 1_795_292_430.0;

fn fixture(name: &str) -> Vec<u8> {
    fixture_bytes(&format!("messaging_server/{name}"))
}

/// A pipeline over one source named `test`, UTC.
fn replay(format: Option<Format>) -> Replay {
    Replay::new(format, NOW)
}

const MTA: &str = r#"mta="messaging_server""#;

fn series(name: &str, labels: &str) -> String {
    if labels.is_empty() {
        format!("{name}{{{MTA}}}")
    } else {
        format!("{name}{{{labels},{MTA}}}")
    }
}

fn tcp_local(name: &str, status: &str) -> String {
    format!("{name}{{{MTA},status=\"{status}\",transport=\"tcp_local\"}}")
}

fn bucket(name: &str, status: &str, le: &str) -> String {
    format!("{name}_bucket{{{MTA},status=\"{status}\",transport=\"tcp_local\",le=\"{le}\"}}")
}

fn connections(name: &str, direction: &str) -> String {
    format!("{name}{{direction=\"{direction}\",{MTA},service=\"tcp_local\"}}")
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() < 1e-6
}

/// Example 21–9: three E records for one message id (two queue files),
/// two outbound connections, three D records through tcp_local.
fn check_example_21_9(r: &mut Replay) {
    assert_eq!(
        r.value(r#"maillog_lines_total{format="messaging_server",result="parsed",source="test"}"#),
        10.0
    );
    assert_eq!(
        r.value(
            r#"maillog_lines_total{format="messaging_server",result="unparsed",source="test"}"#
        ),
        0.0
    );
    // One message, counted once; its three recipients separately.
    assert_eq!(r.value(&series("mail_messages_received_total", "")), 1.0);
    assert_eq!(r.value(&series("mail_message_size_bytes_count", "")), 1.0);
    assert_eq!(r.value(&series("mail_message_size_bytes_sum", "")), 1024.0);
    assert_eq!(r.value(&series("mail_message_recipients_count", "")), 1.0);
    assert_eq!(r.value(&series("mail_message_recipients_sum", "")), 3.0);
    assert_eq!(r.value(&tcp_local("mail_deliveries_total", "sent")), 3.0);
    for status in ["deferred", "bounced"] {
        assert_eq!(r.get(&tcp_local("mail_deliveries_total", status)), None);
    }
    // Delays from the first E (10:52:05.41): 6.87, 6.87, 7.60 s.
    assert_eq!(
        r.value(&tcp_local("mail_delivery_delay_seconds_count", "sent")),
        3.0
    );
    assert!(close(
        r.value(&tcp_local("mail_delivery_delay_seconds_sum", "sent")),
        6.87 + 6.87 + 7.60
    ));
    assert_eq!(
        r.value(&bucket("mail_delivery_delay_seconds", "sent", "5")),
        0.0
    );
    assert_eq!(
        r.value(&bucket("mail_delivery_delay_seconds", "sent", "10")),
        3.0
    );
    // All first attempts (ZZ files, no Q).
    assert_eq!(r.value(&bucket("mail_delivery_attempts", "sent", "1")), 3.0);
    // The message left the queue with its last recipient (10:52:13.01).
    assert_eq!(r.value(&series("mail_messages_removed_total", "")), 1.0);
    assert!(close(
        r.value(&series("mail_message_queue_seconds_sum", "")),
        7.60
    ));
    assert_eq!(r.value(&series("mail_queue_messages", "")), 0.0);
    // Two outbound connections opened, both closed, none open now.
    assert_eq!(
        r.value(&connections(
            "mail_smtp_connections_opened_total",
            "outbound"
        )),
        2.0
    );
    assert_eq!(
        r.value(&connections(
            "mail_smtp_connections_closed_total",
            "outbound"
        )),
        2.0
    );
    assert_eq!(
        r.value(&connections("mail_smtp_connections_current", "outbound")),
        0.0
    );
    // Outbound connections are not connections accepted.
    assert_eq!(
        r.get(r#"mail_smtp_connections_total{mta="messaging_server",service="tcp_local"}"#),
        None
    );
}

/// Example 21–7: one E, three Q (ZZ, ZY, ZX), then the D.
fn check_example_21_7(r: &mut Replay) {
    assert_eq!(
        r.value(r#"maillog_lines_total{format="messaging_server",result="parsed",source="test"}"#),
        5.0
    );
    assert_eq!(r.value(&series("mail_messages_received_total", "")), 1.0);
    assert_eq!(r.value(&series("mail_message_size_bytes_sum", "")), 3072.0);
    assert_eq!(
        r.value(&tcp_local("mail_deliveries_total", "deferred")),
        3.0
    );
    assert_eq!(r.value(&tcp_local("mail_deliveries_total", "sent")), 1.0);
    // Delivered on its fourth attempt: the three deferrals seen, although
    // the D record's file name says ZX (see the README).
    assert_eq!(
        r.value(&tcp_local("mail_delivery_attempts_count", "sent")),
        1.0
    );
    assert_eq!(
        r.value(&tcp_local("mail_delivery_attempts_sum", "sent")),
        4.0
    );
    assert_eq!(r.value(&bucket("mail_delivery_attempts", "sent", "3")), 0.0);
    assert_eq!(r.value(&bucket("mail_delivery_attempts", "sent", "4")), 1.0);
    // 20:45:51.55 − 10:31:05.18.
    let delay = 10.0 * 3600.0 + 14.0 * 60.0 + 46.37;
    assert!(close(
        r.value(&tcp_local("mail_delivery_delay_seconds_sum", "sent")),
        delay
    ));
    // Deferrals have their own delay series: 5.19 s, 2 h 14 min 34.30 s,
    // 6 h 14 min 19.54 s.
    assert!(close(
        r.value(&tcp_local("mail_delivery_delay_seconds_sum", "deferred")),
        5.19 + 8074.30 + 22459.54
    ));
    assert_eq!(r.value(&series("mail_messages_removed_total", "")), 1.0);
    assert!(close(
        r.value(&series("mail_message_queue_seconds_sum", "")),
        delay
    ));
}

#[test]
fn example_21_9_exact_values_folded_and_single_line() {
    for name in ["example_21_9_folded.log", "example_21_9_single_line.log"] {
        for format in [Some(Format::MessagingServer), None] {
            check_example_21_9(replay(format).all_records(&fixture(name)));
        }
    }
}

#[test]
fn example_21_7_exact_values_folded_and_single_line() {
    for name in ["example_21_7_folded.log", "example_21_7_single_line.log"] {
        for format in [Some(Format::MessagingServer), None] {
            check_example_21_7(replay(format).all_records(&fixture(name)));
        }
    }
}

#[test]
fn attempts_come_from_the_file_name_without_earlier_lines() {
    // The exporter started after the two deferrals: the D record's ZX file
    // name alone says it was (at least) the third attempt.
    let text = fixture("example_21_7_single_line.log");
    let last = text
        .split(|&b| b == b'\n')
        .rfind(|l| !l.is_empty())
        .expect("a record");
    let mut r = replay(Some(Format::MessagingServer));
    r.all_records(last);
    assert_eq!(
        r.value(&tcp_local("mail_delivery_attempts_sum", "sent")),
        3.0
    );
    // No E seen: no delay, no message counted.
    assert_eq!(
        r.get(&tcp_local("mail_delivery_delay_seconds_count", "sent")),
        Some(0.0)
    );
    assert_eq!(r.value(&series("mail_messages_received_total", "")), 0.0);
    assert_eq!(r.value("maillog_tracked_messages"), 0.0);
}

#[test]
fn folded_and_single_line_forms_give_identical_metrics() {
    for stem in ["example_21_9", "example_21_7", "oracle_docs_examples"] {
        let folded = replay(None)
            .all_records(&fixture(&format!("{stem}_folded.log")))
            .text_without_build_info();
        let single = replay(None)
            .all_records(&fixture(&format!("{stem}_single_line.log")))
            .text_without_build_info();
        assert_eq!(folded, single, "{stem}");
        assert!(!folded.contains(r#"result="unparsed",source="test"} 1"#));
    }
}

#[test]
fn live_batches_flush_the_last_record() {
    // The daemon hands the pipeline whole batches; a record is complete at
    // the end of its batch, so the gauge is right before the next line.
    let mut r = replay(Some(Format::MessagingServer));
    let open =
        b"28-Feb-2007 11:50:59.10 tcp_local + O TCP|206.184.139.12|25|192.160.253.66|1244 SMTP\n";
    r.pipeline.process_batch(&LineBatch {
        source: SourceId(0),
        data: open.to_vec(),
        position: None,
    });
    assert_eq!(
        r.value(&connections("mail_smtp_connections_current", "inbound")),
        1.0
    );
    assert_eq!(
        r.value(r#"mail_smtp_connections_total{mta="messaging_server",service="tcp_local"}"#),
        1.0
    );
    let close_record =
        b"28-Feb-2007 11:51:15.66 tcp_local + C\n TCP|206.184.139.12|25|192.160.253.66|1244 SMTP\n";
    r.pipeline.process_batch(&LineBatch {
        source: SourceId(0),
        data: close_record.to_vec(),
        position: None,
    });
    assert_eq!(
        r.value(&connections("mail_smtp_connections_current", "inbound")),
        0.0
    );
    // A close whose open was not seen never makes the gauge negative.
    r.pipeline.process_batch(&LineBatch {
        source: SourceId(0),
        data: close_record.to_vec(),
        position: None,
    });
    assert_eq!(
        r.value(&connections("mail_smtp_connections_current", "inbound")),
        0.0
    );
    assert_eq!(
        r.value(&connections(
            "mail_smtp_connections_closed_total",
            "inbound"
        )),
        2.0
    );
}

#[test]
fn block_size_scales_sizes() {
    let mut spec = SourceSpec::new("test", Some(Format::MessagingServer));
    spec.settings.block_size = Some(512);
    let mut r = Replay::with_spec(spec, NOW);
    r.all_records(&fixture("example_21_7_single_line.log"));
    assert_eq!(r.value(&series("mail_message_size_bytes_sum", "")), 1536.0);
}

#[test]
fn channels_beyond_the_label_cap_are_other() {
    let mut log = Vec::new();
    for i in 0..MAX_FREE_LABEL_VALUES + 6 {
        log.extend_from_slice(
            format!(
                "28-Feb-2007 11:51:15.32 ch_{i} D 1 a@x rfc822;b@y b@y\n28-Feb-2007 11:51:15.32 ch_{i} - O\n"
            )
            .as_bytes(),
        );
    }
    let mut r = replay(Some(Format::MessagingServer));
    r.all_records(&log);
    let text = r.text();
    let delivery_series = text
        .lines()
        .filter(|l| l.starts_with("mail_deliveries_total{"))
        .count();
    assert_eq!(delivery_series, MAX_FREE_LABEL_VALUES + 1);
    assert_eq!(
        r.value(r#"mail_deliveries_total{mta="messaging_server",status="sent",transport="other"}"#),
        6.0
    );
    assert_eq!(
        r.value(r#"mail_smtp_connections_opened_total{direction="outbound",mta="messaging_server",service="other"}"#),
        6.0
    );
}

#[test]
fn detection_picks_messaging_server_and_keeps_the_others() {
    for name in [
        "example_21_9_folded.log",
        "oracle_docs_examples_folded.log",
        "oracle_docs_field_format_examples.log",
    ] {
        let text = fixture(name);
        let first = text
            .split(|&b| b == b'\n')
            .find(|l| !l.is_empty())
            .expect("a line");
        assert_eq!(
            Format::detect(first),
            Some(Format::MessagingServer),
            "{name}"
        );
    }
    assert_eq!(
        Format::detect(b"Nov 21 10:00:00 mx1 postfix/smtpd[54046]: connect from x[1.2.3.4]"),
        Some(Format::Postfix)
    );
    assert_eq!(
        Format::detect(b"@400000006b01fd1901f7e60c new msg 746539"),
        Some(Format::Qmail)
    );
    assert_eq!(
        Format::detect(b"2026-11-21 20:20:31.033023500 new msg 746539"),
        Some(Format::Qmail)
    );
    assert_eq!(
        Format::from_name("messaging_server"),
        Some(Format::MessagingServer)
    );
    // The formats after it in detection order still get their own lines,
    // and no Messaging Server line is taken for one of them.
    for (file, format) in [
        ("hosting/icdsoft_smtp.log", Format::HostingSmtp),
        ("hosting/icdsoft_delivery.log", Format::HostingDelivery),
        ("spamdyke/icdsoft_spamdyke.log", Format::Spamdyke),
    ] {
        let text = fixture(&format!("../{file}"));
        let detected: Vec<_> = text
            .split(|&b| b == b'\n')
            .filter_map(Format::detect)
            .collect();
        assert!(!detected.is_empty(), "{file}");
        assert!(
            detected.iter().all(|f| *f == format),
            "{file}: {detected:?}"
        );
    }
    for name in [
        "example_21_9_single_line.log",
        "example_21_7_single_line.log",
        "oracle_docs_examples_single_line.log",
    ] {
        for line in fixture(name).split(|&b| b == b'\n') {
            assert!(
                matches!(Format::detect(line), None | Some(Format::MessagingServer)),
                "{name}: {}",
                String::from_utf8_lossy(line)
            );
        }
    }
    let mut r = replay(None);
    r.all_records(&fixture("oracle_docs_field_format_examples.log"));
    assert_eq!(
        r.value(r#"maillog_lines_total{format="messaging_server",result="parsed",source="test"}"#),
        3.0
    );
    assert_eq!(r.value(&series("mail_messages_received_total", "")), 3.0);
}

#[test]
fn garbage_never_panics() {
    let mut r = replay(Some(Format::MessagingServer));
    let mut log = Vec::new();
    let record = fixture("example_21_9_single_line.log");
    for (i, &b) in record.iter().enumerate().take(2000) {
        log.extend_from_slice(&record[..i]);
        log.push(b'\n');
        log.push(b.wrapping_mul(31));
        log.extend_from_slice(b" \xff\xfe-\t\n");
    }
    r.all_records(&log);
}

const GOLDEN: [&str; 3] = [
    "example_21_9_folded",
    "example_21_7_folded",
    "oracle_docs_examples_folded",
];

/// `maillog_exporter replay` of a fixture, as printed (TZ=UTC: the stamps
/// are local time), without the build's line.
fn replay_binary(name: &str) -> String {
    keep_lines(
        &replay_fixture(&format!("messaging_server/{name}.log")),
        |l| !l.contains("maillog_exporter_build_info"),
    )
}

#[test]
fn golden_replays() {
    assert_golden(
        &GOLDEN,
        |name| Path::new(FIXTURES).join(format!("{name}.golden.prom")),
        replay_binary,
    );
}
