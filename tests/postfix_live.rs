//! The exporter follows the log of a real, running Postfix (the private lab
//! instance of `tests/lab/`) while the lab's workload is delivered, and its
//! scraped counters must equal the workload's design truth exactly.
//!
//! Needs root, python3 and Debian's `postfix` (tests/run.sh installs it).
//! Without them the test fails, unless `MAILLOG_SKIP_POSTFIX=1` is set.

use crate::support::{metric_value, poll, runs, uids, Exporter, Lab};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const LAB_SCRIPT: &str = "tests/lab/postfix_lab.py";
const POSTFIX: &str = "/usr/sbin/postfix";

/// Why the lab cannot run here, if it cannot.
fn missing_prerequisites() -> Option<String> {
    let mut missing = Vec::new();
    if !runs("python3", &["--version"]) {
        missing.push("python3 is not installed".to_string());
    }
    if !Path::new(POSTFIX).exists() {
        missing.push(format!("{POSTFIX} is missing (Debian package postfix)"));
    }
    match uids().map(|(_, effective)| effective) {
        Some(0) => {}
        uid => missing.push(format!(
            "the lab must run as root (postfix start), effective uid is {uid:?}"
        )),
    }
    (!missing.is_empty()).then(|| missing.join("; "))
}

/// One scraped sample.
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
    value: f64,
}

/// Parses the Prometheus text format (enough of it for our own output).
fn parse_samples(body: &str) -> Vec<Sample> {
    let mut samples = Vec::new();
    for line in body.lines() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').unwrap();
        let value: f64 = value.parse().unwrap();
        let (name, labels) = match series.split_once('{') {
            None => (series.to_string(), BTreeMap::new()),
            Some((name, rest)) => (name.to_string(), parse_labels(rest)),
        };
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    samples
}

/// `a="x",b="y\"z"}` into a map.
fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, escaped)) = chars.next() {
                        value.push(if escaped == 'n' { '\n' } else { escaped });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        labels.insert(key.trim_start_matches(',').to_string(), value);
        rest = &after[end..];
    }
    labels
}

/// Sum of the samples of `name` whose labels include `want`.
fn sum(samples: &[Sample], name: &str, want: &[(&str, &str)]) -> f64 {
    samples
        .iter()
        .filter(|s| s.name == name)
        .filter(|s| {
            want.iter()
                .all(|(k, v)| s.labels.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|s| s.value)
        .sum()
}

/// A counter value the truth prescribes.
struct Expectation {
    what: String,
    name: &'static str,
    labels: Vec<(String, String)>,
    want: f64,
}

impl Expectation {
    fn new(
        what: impl Into<String>,
        name: &'static str,
        labels: &[(&str, &str)],
        want: u64,
    ) -> Self {
        Expectation {
            what: what.into(),
            name,
            labels: labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            want: want as f64,
        }
    }

    fn got(&self, samples: &[Sample]) -> f64 {
        let labels: Vec<(&str, &str)> = self
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        sum(samples, self.name, &labels)
    }
}

fn count(v: &Value) -> u64 {
    v.as_u64()
        .unwrap_or_else(|| panic!("truth: expected a count, got {v}"))
}

/// What the scrape must show, from the lab's truth JSON.
fn expectations(truth: &Value) -> Vec<Expectation> {
    let pf = ("mta", "postfix");
    let mut exp = Vec::new();
    let mut deliveries = 0;
    for (transport, statuses) in truth["deliveries"].as_object().unwrap() {
        for (status, n) in statuses.as_object().unwrap() {
            deliveries += count(n);
            exp.push(Expectation::new(
                format!("deliveries {transport} {status}"),
                "mail_deliveries_total",
                &[pf, ("transport", transport), ("status", status)],
                count(n),
            ));
        }
    }
    // No delivery counted under a transport or status the truth lacks.
    exp.push(Expectation::new(
        "deliveries, all series",
        "mail_deliveries_total",
        &[pf],
        deliveries,
    ));
    for (what, name, key) in [
        ("received", "mail_messages_received_total", "received"),
        ("removed", "mail_messages_removed_total", "removed"),
        ("expired", "mail_messages_expired_total", "expired"),
    ] {
        exp.push(Expectation::new(what, name, &[pf], count(&truth[key])));
    }
    let mut rejects: BTreeMap<(String, String), u64> = BTreeMap::new();
    for r in truth["smtpd_rejects"].as_array().unwrap() {
        let key = (
            r["code"].to_string(),
            r["stage"].as_str().unwrap().to_string(),
        );
        *rejects.entry(key).or_default() += count(&r["count"]);
    }
    for ((code, stage), n) in &rejects {
        exp.push(Expectation::new(
            format!("smtpd rejects {code} at {stage}"),
            "mail_smtp_rejects_total",
            &[pf, ("service", "smtpd"), ("code", code), ("stage", stage)],
            *n,
        ));
    }
    exp.push(Expectation::new(
        "rejects, all series",
        "mail_smtp_rejects_total",
        &[pf],
        count(&truth["smtpd_rejects_total"]),
    ));
    for (kind, n) in truth["bounce_notifications"].as_object().unwrap() {
        exp.push(Expectation::new(
            format!("bounce notifications {kind}"),
            "mail_bounce_notifications_total",
            &[pf, ("kind", kind)],
            count(n),
        ));
    }
    let connections = count(&truth["connections"]["smtpd_connect"]);
    exp.push(Expectation::new(
        "smtpd connections",
        "mail_smtp_connections_total",
        &[pf, ("service", "smtpd")],
        connections,
    ));
    exp.push(Expectation::new(
        "connections, all services",
        "mail_smtp_connections_total",
        &[pf],
        connections,
    ));
    exp.push(Expectation::new(
        "mail system starts",
        "mail_system_lifecycle_events_total",
        &[pf, ("event", "start")],
        count(&truth["lifecycle"]["master_start"]),
    ));
    exp.push(Expectation::new(
        "unparsed lines",
        "maillog_lines_total",
        &[("result", "unparsed")],
        0,
    ));
    exp
}

#[test]
fn scraped_counters_equal_the_lab_truth() {
    let started = Instant::now();
    if let Some(why) = missing_prerequisites() {
        if std::env::var("MAILLOG_SKIP_POSTFIX").as_deref() == Ok("1") {
            eprintln!("postfix_live skipped (MAILLOG_SKIP_POSTFIX=1): {why}");
            return;
        }
        panic!(
            "the real-Postfix test cannot run: {why}. Run tests/run.sh (as root; it installs \
             postfix and python3), or set MAILLOG_SKIP_POSTFIX=1 to skip it."
        );
    }

    let work = tempfile::Builder::new()
        .prefix("maillog-live-")
        .tempdir()
        .unwrap();
    // Postfix daemons and labuser must traverse the path to the lab.
    std::fs::set_permissions(
        work.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let mut lab = Lab::new(LAB_SCRIPT, &work.path().join("lab"), work.path());
    let maillog = lab.dir.join("maillog");
    let truth_path = work.path().join("truth.json");

    lab.run("setup", &[], Duration::from_secs(30)).unwrap();
    assert!(!maillog.exists(), "setup leaves no log behind");
    // Started before Postfix: the log does not exist yet and must be picked
    // up, from its first line, when postlogd creates it.
    let exporter = Exporter::start(&[maillog.to_str().unwrap(), "--tail.poll-interval", "100ms"]);
    lab.started = true;
    lab.run("start", &[], Duration::from_secs(60)).unwrap();
    lab.run(
        "run-workload",
        &["--truth", truth_path.to_str().unwrap()],
        Duration::from_secs(120),
    )
    .unwrap();
    let truth: Value =
        serde_json::from_str(&std::fs::read_to_string(&truth_path).unwrap()).unwrap();
    let expected = expectations(&truth);

    // Postfix writes its last lines asynchronously (postlogd): settled when
    // the exporter has read every line the log holds and the counters agree.
    let mut last = None;
    poll(Duration::from_secs(30), Duration::from_millis(200), || {
        let log_lines = std::fs::read_to_string(&maillog)
            .map(|t| t.lines().count())
            .unwrap_or(0);
        let (_, body) = exporter.get("/metrics");
        let samples = parse_samples(&body);
        let read = sum(&samples, "maillog_lines_total", &[]);
        let agree = expected.iter().all(|e| e.got(&samples) == e.want);
        last = Some((samples, log_lines));
        (read == log_lines as f64 && agree).then_some(())
    });
    let (samples, log_lines) = last.unwrap();

    let mut report = Vec::new();
    let read = sum(&samples, "maillog_lines_total", &[]);
    if read != log_lines as f64 {
        report.push(format!(
            "lines read: exporter {read}, the log has {log_lines}"
        ));
    }
    for e in &expected {
        let got = e.got(&samples);
        if got != e.want {
            report.push(format!(
                "{}: exporter {got}, truth {} ({}{:?})",
                e.what, e.want, e.name, e.labels
            ));
        }
    }
    assert!(
        report.is_empty(),
        "the exporter disagrees with the lab truth:\n  {}\nlog: {}",
        report.join("\n  "),
        maillog.display()
    );
    let (_, body) = exporter.get("/metrics");
    let up = format!("maillog_source_up{{source=\"{}\"}}", maillog.display());
    assert_eq!(metric_value(&body, &up), Some(1.0), "{up}");

    drop(exporter);
    drop(lab);
    eprintln!(
        "postfix_live: {log_lines} log lines, counters equal the truth; {:.1}s",
        started.elapsed().as_secs_f64()
    );
}
