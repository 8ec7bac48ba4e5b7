//! The Grafana dashboards and Prometheus rules in dashboards/.
//!
//! - the rule files pass `promtool check rules` and their unit tests
//!   (`promtool test rules dashboards/rules/tests/*.yml`);
//! - every PromQL expression of the dashboards and rules parses (promtool,
//!   wrapped as recording rules) and names only metrics and labels the
//!   exporter really exposes, taken from the replay output of the fixtures,
//!   so renaming a metric breaks this test instead of a dashboard;
//! - the dashboard JSON is well formed for Grafana;
//! - end to end: a real Prometheus scrapes the running exporter while a log
//!   is written, gets the exact delivery count and the expected rate, loads
//!   the shipped rules, and raises the deferred-ratio alert after a burst of
//!   deferrals.
//!
//! promtool and prometheus come from the Debian package `prometheus`
//! (tests/run.sh installs it); without them these tests fail.

use crate::support::{status_code, try_http_get, wait_until, Exporter, Guard};
use regex::Regex;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const DASHBOARDS: [&str; 6] = [
    "maillog-overview.json",
    "maillog-postfix.json",
    "maillog-qmail.json",
    "maillog-exim.json",
    "maillog-messaging-server.json",
    "maillog-hosting.json",
];
const RULE_FILES: [&str; 2] = ["maillog-recording.yml", "maillog-alerts.yml"];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn dashboards_dir() -> PathBuf {
    root().join("dashboards")
}

fn rules_dir() -> PathBuf {
    dashboards_dir().join("rules")
}

/// Runs a Prometheus tool; panics with its output if it is missing or fails.
fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {program}: {e}; install the Debian package `prometheus` (tests/run.sh does)"
            )
        });
    assert!(
        out.status.success(),
        "{program} {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn rule_paths() -> Vec<String> {
    RULE_FILES
        .iter()
        .map(|f| rules_dir().join(f).display().to_string())
        .collect()
}

fn load_json(name: &str) -> Value {
    let text = std::fs::read_to_string(dashboards_dir().join(name)).unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} is not valid JSON: {e}"))
}

fn load_yaml(path: &Path) -> serde_yaml::Value {
    serde_yaml::from_str(&std::fs::read_to_string(path).unwrap())
        .unwrap_or_else(|e| panic!("{} is not valid YAML: {e}", path.display()))
}

/// Every rule of a rules file (`record` or `alert`, `expr`, …).
fn rules_of(path: &Path) -> Vec<serde_yaml::Value> {
    let doc = load_yaml(path);
    let mut rules = Vec::new();
    for group in doc["groups"].as_sequence().unwrap() {
        rules.extend(group["rules"].as_sequence().unwrap().iter().cloned());
    }
    rules
}

/// Recording rule name → expression, from maillog-recording.yml.
fn recording_rules() -> BTreeMap<String, String> {
    rules_of(&rules_dir().join("maillog-recording.yml"))
        .into_iter()
        .map(|r| {
            (
                r["record"].as_str().unwrap().to_string(),
                r["expr"].as_str().unwrap().trim().to_string(),
            )
        })
        .collect()
}

// --- promtool on the rule files ------------------------------------------

#[test]
fn rules_pass_promtool_check_and_unit_tests() {
    let paths = rule_paths();
    let mut args = vec!["check", "rules"];
    args.extend(paths.iter().map(String::as_str));
    run("promtool", &args);

    let tests_dir = rules_dir().join("tests");
    let mut test_files: Vec<String> = std::fs::read_dir(&tests_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yml" || e == "yaml"))
        .map(|p| p.display().to_string())
        .collect();
    test_files.sort();
    assert!(!test_files.is_empty(), "no rule tests in {tests_dir:?}");
    let mut args = vec!["test", "rules"];
    args.extend(test_files.iter().map(String::as_str));
    run("promtool", &args);

    // Every alert has at least one test case that expects it to fire.
    let tests_text: String = test_files
        .iter()
        .map(|f| std::fs::read_to_string(f).unwrap())
        .collect();
    for rule in rules_of(&rules_dir().join("maillog-alerts.yml")) {
        let name = rule["alert"].as_str().unwrap();
        let fires = tests_text
            .split("alertname: ")
            .skip(1)
            .any(|case| case.starts_with(name) && case.contains("exp_labels"));
        assert!(fires, "alert {name} has no test case where it fires");
        for key in ["summary", "description"] {
            assert!(
                rule["annotations"][key]
                    .as_str()
                    .is_some_and(|s| !s.is_empty()),
                "alert {name} has no {key}"
            );
        }
        assert!(rule["labels"]["severity"].is_string(), "{name}: severity");
        assert!(rule["for"].is_string(), "{name}: no `for:`");
    }
}

// --- PromQL of dashboards and rules ---------------------------------------

/// An expression and where it comes from (for messages).
struct Expr {
    origin: String,
    promql: String,
}

/// Metric names used by `label_values(metric{…}, label)` variable queries,
/// with the label; these queries are Grafana's, not PromQL.
struct LabelValues {
    origin: String,
    metric: String,
    matchers: String,
    label: String,
}

fn collect_dashboard_exprs(exprs: &mut Vec<Expr>, label_values: &mut Vec<LabelValues>) {
    let lv = Regex::new(r"^label_values\(\s*([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\{[^}]*\})?\s*,\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*\)$").unwrap();
    for name in DASHBOARDS {
        let d = load_json(name);
        for p in all_panels(&d) {
            for t in p["targets"].as_array().into_iter().flatten() {
                exprs.push(Expr {
                    origin: format!("{name}: panel {:?}", p["title"]),
                    promql: t["expr"].as_str().unwrap_or_default().to_string(),
                });
            }
        }
        for a in d["annotations"]["list"].as_array().unwrap() {
            if let Some(e) = a["expr"].as_str() {
                exprs.push(Expr {
                    origin: format!("{name}: annotation {:?}", a["name"]),
                    promql: e.to_string(),
                });
            }
        }
        for v in d["templating"]["list"].as_array().unwrap() {
            if v["type"] != "query" {
                continue;
            }
            let q = v["query"]["query"]
                .as_str()
                .or(v["query"].as_str())
                .unwrap()
                .trim();
            let origin = format!("{name}: variable {}", v["name"]);
            match lv.captures(q) {
                Some(c) => label_values.push(LabelValues {
                    origin,
                    metric: c[1].to_string(),
                    matchers: c.get(2).map_or("", |m| m.as_str()).to_string(),
                    label: c[3].to_string(),
                }),
                None => exprs.push(Expr {
                    origin,
                    promql: q.to_string(),
                }),
            }
        }
    }
}

/// Grafana's variables replaced by values Prometheus accepts.
fn substitute_grafana_variables(promql: &str) -> String {
    let s = promql
        .replace("$__rate_interval", "5m")
        .replace("${__rate_interval}", "5m")
        .replace("$__interval", "1m")
        .replace("${__interval}", "1m")
        .replace("$__range", "1h");
    let var = Regex::new(r"\$\{?[a-zA-Z_][a-zA-Z0-9_]*\}?").unwrap();
    var.replace_all(&s, ".*").into_owned()
}

/// Metric names, label names used in matchers, per metric family, from the
/// exporter's replay output.
struct Exposed {
    /// Series names (with `_bucket`, `_sum`, `_count` for histograms).
    names: BTreeSet<String>,
    /// Series name → label names seen on it.
    labels: BTreeMap<String, BTreeSet<String>>,
}

/// Lines the real fixtures do not contain, so the metrics they feed show up
/// in the replay output too: a postscreen verdict, an inbound TLS session
/// and a failed SASL login (the shapes of tests in src/parser/postfix.rs).
const COVERAGE_LINES: &str = "\
Nov 21 10:00:01 mx1 postfix/postscreen[100]: CONNECT from [192.0.2.5]:51000 to [192.0.2.1]:25
Nov 21 10:00:01 mx1 postfix/postscreen[100]: PASS NEW [192.0.2.5]:51000
Nov 21 10:00:02 mx1 postfix/smtpd[101]: Anonymous TLS connection established from unknown[192.0.2.5]: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)
Nov 21 10:00:03 mx1 postfix/smtpd[101]: warning: unknown[192.0.2.5]: SASL LOGIN authentication failed: UGFzc3dvcmQ6
";

/// Fixture directories whose logs are replayed for [`exposed_metrics`]: one
/// per log format, so the metrics only one MTA logs (qmail's concurrency,
/// tcpserver's connection limit, Exim's frozen messages, Messaging Server's
/// connections by direction, the hosting SMTP log's recipients, spamdyke's
/// clients…) are in the output too.
const FIXTURE_DIRS: [&str; 7] = [
    "postfix",
    "qmail",
    "exim",
    "sendmail",
    "messaging_server",
    "hosting",
    "spamdyke",
];

/// The metrics of the replay output of every fixture of [`FIXTURE_DIRS`]
/// plus [`COVERAGE_LINES`], and of the running daemon's `/metrics` while it
/// follows those lines (replay reads no live source, so `maillog_source_up`
/// only exists there).
fn exposed_metrics() -> Exposed {
    let dir = tempfile::tempdir().unwrap();
    let coverage = dir.path().join("coverage.log");
    std::fs::write(&coverage, COVERAGE_LINES).unwrap();
    let mut files = Vec::new();
    for fixtures in FIXTURE_DIRS {
        let mut logs: Vec<PathBuf> =
            std::fs::read_dir(root().join("tests/fixtures").join(fixtures))
                .unwrap()
                .map(|e| e.unwrap().path())
                .filter(|p| p.extension().is_some_and(|e| e == "log"))
                .collect();
        logs.sort();
        assert!(!logs.is_empty(), "no {fixtures} fixtures");
        files.extend(logs);
    }
    files.push(coverage.clone());
    let out = Command::new(env!("CARGO_BIN_EXE_maillog_exporter"))
        .arg("replay")
        .args(&files)
        .output()
        .unwrap();
    assert!(out.status.success(), "replay failed: {out:?}");
    let mut exposed = Exposed {
        names: BTreeSet::new(),
        labels: BTreeMap::new(),
    };
    exposed.add(&String::from_utf8(out.stdout).unwrap());

    let mut daemon = start_exporter(&coverage);
    let lines = COVERAGE_LINES.lines().count();
    let scraped = wait_until(20, "the daemon to read the coverage lines", || {
        daemon.assert_running();
        let body = daemon.scrape()?;
        body.lines()
            .any(|l| {
                l.starts_with("maillog_lines_total{")
                    && l.contains("result=\"parsed\"")
                    && l.ends_with(&format!(" {lines}"))
            })
            .then_some(body)
    });
    exposed.add(&scraped);
    // Prometheus adds these to every scraped series.
    for set in exposed.labels.values_mut() {
        set.insert("job".into());
        set.insert("instance".into());
    }
    exposed
}

impl Exposed {
    /// Adds the families and label names of a text exposition.
    fn add(&mut self, text: &str) {
        let label_re = Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)="#).unwrap();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                let mut it = rest.split_whitespace();
                let (name, kind) = (it.next().unwrap(), it.next().unwrap());
                self.names.insert(name.to_string());
                if kind == "histogram" {
                    for suffix in ["_bucket", "_sum", "_count"] {
                        self.names.insert(format!("{name}{suffix}"));
                    }
                }
            } else if !line.starts_with('#') && !line.is_empty() {
                let end = line.find(['{', ' ']).unwrap();
                let set = self.labels.entry(line[..end].to_string()).or_default();
                if line[end..].starts_with('{') {
                    let close = line.rfind('}').unwrap();
                    for c in label_re.captures_iter(&line[end..close]) {
                        set.insert(c[1].to_string());
                    }
                }
            }
        }
    }
}

/// The metric names an expression selects: identifiers that are not
/// functions, keywords, label names, numbers or durations.
fn metric_names(promql: &str) -> Vec<String> {
    let strings = Regex::new(r#""(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'"#).unwrap();
    let braces = Regex::new(r"\{[^}]*\}").unwrap();
    let ranges = Regex::new(r"\[[^\]]*\]").unwrap();
    let grouping =
        Regex::new(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)").unwrap();
    let token = Regex::new(r"(\d[0-9a-zA-Z_.]*)|([a-zA-Z_:][a-zA-Z0-9_:]*)").unwrap();
    const KEYWORDS: [&str; 13] = [
        "and",
        "or",
        "unless",
        "bool",
        "offset",
        "by",
        "without",
        "on",
        "ignoring",
        "group_left",
        "group_right",
        "inf",
        "nan",
    ];
    let s = strings.replace_all(promql, "\"\"");
    let s = braces.replace_all(&s, "{}");
    let s = ranges.replace_all(&s, "[]");
    let s = grouping.replace_all(&s, " ");
    let mut names = Vec::new();
    for c in token.captures_iter(&s) {
        let Some(m) = c.get(2) else { continue };
        let next = s[m.end()..].trim_start();
        if next.starts_with('(') || KEYWORDS.contains(&m.as_str().to_ascii_lowercase().as_str()) {
            continue;
        }
        names.push(m.as_str().to_string());
    }
    names
}

/// (metric, label names in its matchers) for each `metric{…}` selector.
fn selector_labels(promql: &str) -> Vec<(String, Vec<String>)> {
    let sel =
        Regex::new(r#"([a-zA-Z_:][a-zA-Z0-9_:]*)\s*\{((?:[^}"]|"(?:[^"\\]|\\.)*")*)\}"#).unwrap();
    let matcher = Regex::new(r#"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)\s*""#).unwrap();
    sel.captures_iter(promql)
        .map(|c| {
            let labels = matcher
                .captures_iter(&c[2])
                .map(|m| m[1].to_string())
                .collect();
            (c[1].to_string(), labels)
        })
        .collect()
}

#[test]
fn every_expression_parses_and_uses_exposed_metrics() {
    let mut exprs = Vec::new();
    let mut label_values = Vec::new();
    collect_dashboard_exprs(&mut exprs, &mut label_values);
    let dashboard_count = exprs.len();
    assert!(
        dashboard_count > 40,
        "only {dashboard_count} dashboard expressions found"
    );
    for file in RULE_FILES {
        for r in rules_of(&rules_dir().join(file)) {
            let name = r["record"].as_str().or(r["alert"].as_str()).unwrap();
            exprs.push(Expr {
                origin: format!("{file}: {name}"),
                promql: r["expr"].as_str().unwrap().to_string(),
            });
        }
    }

    // 1. Each expression parses: all of them as recording rules of one file.
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| {
            assert!(
                !e.promql.trim().is_empty(),
                "{}: empty expression",
                e.origin
            );
            serde_json::json!({
                "record": format!("check:expr_{i}"),
                "expr": substitute_grafana_variables(&e.promql),
            })
        })
        .collect();
    let doc = serde_json::json!({ "groups": [{ "name": "expressions", "rules": rules }] });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("expressions.yml");
    std::fs::write(&file, serde_yaml::to_string(&doc).unwrap()).unwrap();
    let out = Command::new("promtool")
        .args(["check", "rules"])
        .arg(&file)
        .output()
        .expect("promtool not found: install the Debian package `prometheus`");
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        // Name the expressions promtool complains about.
        let mut named = String::new();
        for (i, e) in exprs.iter().enumerate() {
            if stderr.contains(&format!("check:expr_{i}\""))
                || stderr.contains(&format!("expr_{i}:"))
            {
                named += &format!("\n  {}: {}", e.origin, e.promql);
            }
        }
        panic!("promtool rejects expressions:\n{stderr}{named}");
    }

    // 2. Every metric they name is exposed by the exporter (or is a
    // recording rule of ours, or Prometheus's own `up`), and every label
    // they match on exists on it.
    let exposed = exposed_metrics();
    let recorded = recording_rules();
    let mut errors = Vec::new();
    let mut used = BTreeSet::new();
    for e in &exprs {
        let promql = substitute_grafana_variables(&e.promql);
        for name in metric_names(&promql) {
            used.insert(name.clone());
            if !(exposed.names.contains(&name) || recorded.contains_key(&name) || name == "up") {
                errors.push(format!("{}: unknown metric {name}", e.origin));
            }
        }
        for (metric, labels) in selector_labels(&promql) {
            let Some(known) = exposed.labels.get(&metric) else {
                continue; // recording rules and `up`: labels are ours
            };
            for l in labels {
                let histogram_le = l == "le" && metric.ends_with("_bucket");
                if !known.contains(&l) && !histogram_le {
                    errors.push(format!("{}: {metric} has no label {l}", e.origin));
                }
            }
        }
    }
    for lv in &label_values {
        if !exposed.names.contains(&lv.metric) {
            errors.push(format!("{}: unknown metric {}", lv.origin, lv.metric));
            continue;
        }
        let known = &exposed.labels[&lv.metric];
        if !known.contains(&lv.label) {
            errors.push(format!(
                "{}: {} has no label {}",
                lv.origin, lv.metric, lv.label
            ));
        }
        for (_, labels) in selector_labels(&format!("{}{}", lv.metric, lv.matchers)) {
            for l in labels.iter().filter(|l| !known.contains(*l)) {
                errors.push(format!("{}: {} has no label {l}", lv.origin, lv.metric));
            }
        }
    }
    assert!(errors.is_empty(), "{}", errors.join("\n"));

    // The check itself sees what it should: histogram buckets, recording
    // rules, counters.
    for name in [
        "mail_delivery_delay_seconds_bucket",
        "mail_delivery_stage_delay_seconds_bucket",
        "instance_mta:mail_deliveries_deferred:ratio_rate30m",
        "mail_spam_verdicts_total",
        "maillog_lines_total",
        "mail_queue_concurrency_limit",
        "mail_smtp_connection_limit",
        "mail_smtp_connections_current",
        "mail_messages_frozen_total",
        "mail_smtp_recipients_total",
        "mail_spam_filter_clients_total",
        "maillog_tracked_deliveries",
    ] {
        assert!(used.contains(name), "{name} not found in any expression");
    }
}

#[test]
fn metric_name_extraction() {
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.95, sum by (job, le) (rate(a_bucket{x="y{}"}[5m]))) > 600 and on (job) sum without (z) (b_total offset 1d) / 10 > bool c:rec"#
        ),
        ["a_bucket", "b_total", "c:rec"]
    );
    assert_eq!(
        selector_labels(r#"rate(m_total{a=~"$x", b!="}"}[5m]) / n{c="1"}"#),
        [
            (
                "m_total".to_string(),
                vec!["a".to_string(), "b".to_string()]
            ),
            ("n".to_string(), vec!["c".to_string()])
        ]
    );
}

// --- Dashboard JSON -------------------------------------------------------

/// Panels, including those nested in collapsed rows.
fn all_panels(d: &Value) -> Vec<&Value> {
    let mut out = Vec::new();
    for p in d["panels"].as_array().unwrap() {
        out.push(p);
        for inner in p["panels"].as_array().into_iter().flatten() {
            out.push(inner);
        }
    }
    out
}

#[test]
fn dashboards_are_well_formed() {
    let hard_coded = Regex::new(r#"\binstance\s*(?:=~|!~|!=|=)\s*"([^"]*)""#).unwrap();
    let mut uids = BTreeSet::new();
    for name in DASHBOARDS {
        let d = load_json(name);
        let uid = d["uid"].as_str().unwrap();
        assert!(uids.insert(uid.to_string()), "{name}: uid {uid} used twice");
        assert!(
            d["title"].as_str().is_some_and(|t| !t.is_empty()),
            "{name}: title"
        );
        assert!(
            d["schemaVersion"].as_u64().unwrap() >= 36,
            "{name}: Grafana 10+ schema"
        );
        assert!(d["id"].is_null(), "{name}: id must be null for import");

        // The data source is chosen on import and by a variable.
        let inputs = d["__inputs"].as_array().unwrap();
        assert!(
            inputs
                .iter()
                .any(|i| i["type"] == "datasource" && i["pluginId"] == "prometheus"),
            "{name}: __inputs has no Prometheus data source"
        );
        let vars = d["templating"]["list"].as_array().unwrap();
        let var = |n: &str| {
            vars.iter()
                .find(|v| v["name"] == n)
                .unwrap_or_else(|| panic!("{name}: no variable {n}"))
        };
        let ds = var("datasource");
        assert_eq!(ds["type"], "datasource", "{name}");
        assert_eq!(ds["query"], "prometheus", "{name}");
        for n in ["job", "instance", "mta", "transport"] {
            let v = var(n);
            assert_eq!(v["type"], "query", "{name}: {n}");
            assert_eq!(v["datasource"]["uid"], "${datasource}", "{name}: {n}");
            let q = v["query"]["query"].as_str().unwrap();
            assert!(q.starts_with("label_values("), "{name}: {n}: {q}");
            assert!(
                q.ends_with(&format!(", {n})")),
                "{name}: {n} lists another label: {q}"
            );
            assert_eq!(v["includeAll"], true, "{name}: {n}");
            assert_eq!(v["allValue"], ".*", "{name}: {n}");
        }

        let mut ids = BTreeSet::new();
        let mut y_rows = Vec::new();
        for p in all_panels(&d) {
            let title = p["title"].as_str().unwrap_or_default();
            let id = p["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{name}: {title}: no id"));
            assert!(ids.insert(id), "{name}: panel id {id} used twice");
            let g = &p["gridPos"];
            let (x, w) = (g["x"].as_u64().unwrap(), g["w"].as_u64().unwrap());
            assert!(
                x + w <= 24 && g["h"].as_u64().unwrap() > 0,
                "{name}: {title}: gridPos {g}"
            );
            if p["type"] == "row" {
                y_rows.push(g["y"].as_u64().unwrap());
                continue;
            }
            assert!(!title.is_empty(), "{name}: panel {id} has no title");
            assert_eq!(p["datasource"]["type"], "prometheus", "{name}: {title}");
            assert_eq!(p["datasource"]["uid"], "${datasource}", "{name}: {title}");
            let targets = p["targets"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default();
            assert!(!targets.is_empty(), "{name}: {title}: no target");
            let mut refs = BTreeSet::new();
            for t in targets {
                let expr = t["expr"].as_str().unwrap_or_default();
                assert!(!expr.trim().is_empty(), "{name}: {title}: empty expr");
                assert!(
                    refs.insert(t["refId"].as_str().unwrap()),
                    "{name}: {title}: refId"
                );
                assert_eq!(t["datasource"]["uid"], "${datasource}", "{name}: {title}");
                for c in hard_coded.captures_iter(expr) {
                    assert!(
                        c[1] == *"$instance" || c[1] == *"${instance}",
                        "{name}: {title}: hard-coded instance {:?}",
                        &c[1]
                    );
                }
            }
        }
        assert!(ids.len() > 10, "{name}: only {} panels", ids.len());
        assert!(!y_rows.is_empty(), "{name}: no rows");
        // The exporter's default port never appears: nothing points at one host.
        let text = std::fs::read_to_string(dashboards_dir().join(name)).unwrap();
        assert!(!text.contains(":9873"), "{name}: names a host:port");
    }
    // The overview has an exporter-health row and the Postfix dashboard its
    // delay stages.
    let overview = load_json("maillog-overview.json");
    assert!(all_panels(&overview)
        .iter()
        .any(|p| p["type"] == "row" && p["title"] == "Exporter health"));
    let postfix = serde_json::to_string(&load_json("maillog-postfix.json")).unwrap();
    assert!(postfix.contains("mail_delivery_stage_delay_seconds_bucket"));
}

#[test]
fn dashboards_match_their_generator() {
    let out = Command::new("python3")
        .arg(dashboards_dir().join("generate.py"))
        .arg("--check")
        .output()
        .expect("python3 not found (tests/run.sh installs it)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

// --- End to end with a real Prometheus -------------------------------------

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `path`: (status code, body), or `None` without an HTTP answer.
fn http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let (status, body) = try_http_get(addr, path)?;
    Some((status_code(&status)?, body))
}

fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// `/api/v1/query` → the instant vector's samples (labels, value).
fn query(prom: SocketAddr, promql: &str) -> Vec<(Value, f64)> {
    let Some((200, body)) = http_get(prom, &format!("/api/v1/query?query={}", encode(promql)))
    else {
        return Vec::new();
    };
    let v: Value = serde_json::from_str(&body).unwrap();
    v["data"]["result"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|r| {
            let value = r["value"][1].as_str().unwrap().parse::<f64>().unwrap();
            (r["metric"].clone(), value)
        })
        .collect()
}

fn query_one(prom: SocketAddr, promql: &str) -> Option<f64> {
    query(prom, promql).first().map(|(_, v)| *v)
}

/// Starts the exporter following `log`.
fn start_exporter(log: &Path) -> Exporter {
    Exporter::start(&[
        log.to_str().unwrap(),
        "--log.format",
        "postfix",
        "--tail.from-beginning",
        "--tail.poll-interval",
        "100ms",
    ])
}

/// The shipped MailDeferredRatioHigh alert with its recording rules inlined,
/// its 30-minute window shortened to 20 s and its `for:` to 2 s, so it can
/// fire within the test; labelled `window="20s"` to tell it from the
/// shipped rule (which is loaded as well).
fn short_deferred_alert() -> String {
    let mut rule = rules_of(&rules_dir().join("maillog-alerts.yml"))
        .into_iter()
        .find(|r| r["alert"] == "MailDeferredRatioHigh")
        .unwrap();
    let mut expr = rule["expr"].as_str().unwrap().to_string();
    let mut recorded: Vec<(String, String)> = recording_rules().into_iter().collect();
    recorded.sort_by_key(|(name, _)| std::cmp::Reverse(name.len()));
    for (name, body) in &recorded {
        expr = expr.replace(name.as_str(), &format!("({body})"));
    }
    assert!(
        !expr.contains("instance_mta:"),
        "not all recording rules inlined: {expr}"
    );
    assert!(
        expr.contains("[30m]"),
        "the window changed; update this test: {expr}"
    );
    let expr = expr.replace("[30m]", "[20s]");
    rule["expr"] = serde_yaml::Value::String(expr);
    rule["for"] = serde_yaml::Value::String("2s".into());
    rule["labels"]["window"] = serde_yaml::Value::String("20s".into());
    let mut doc = serde_yaml::Mapping::new();
    let mut group = serde_yaml::Mapping::new();
    group.insert("name".into(), "e2e.short-window".into());
    group.insert("rules".into(), serde_yaml::Value::Sequence(vec![rule]));
    doc.insert(
        "groups".into(),
        serde_yaml::Value::Sequence(vec![serde_yaml::Value::Mapping(group)]),
    );
    serde_yaml::to_string(&doc).unwrap()
}

fn delivery_line(i: u64, status: &str) -> String {
    let ts = chrono::Local::now().format("%b %e %H:%M:%S");
    let qid = format!("3F2A{i:07X}");
    match status {
        "sent" => format!(
            "{ts} mx1 postfix/smtp[2001]: {qid}: to=<user{i}@example.net>, relay=mx.example.net[192.0.2.10]:25, delay=0.52, delays=0.05/0.01/0.2/0.26, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as ABC)\n"
        ),
        _ => format!(
            "{ts} mx1 postfix/smtp[2002]: {qid}: to=<user{i}@example.org>, relay=none, delay=30, delays=0.02/0.01/30/0, dsn=4.4.1, status=deferred (connect to mx.example.org[192.0.2.20]:25: Connection timed out)\n"
        ),
    }
}

/// Appends delivery lines at `per_second` on a fixed schedule (catching up
/// if the machine is slow) until `count` lines or `stop`; returns how many.
fn write_lines(
    log: &Path,
    status: &'static str,
    first_id: u64,
    per_second: u64,
    count: Option<u64>,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<u64> {
    let log = log.to_path_buf();
    std::thread::spawn(move || {
        let mut f = std::fs::OpenOptions::new().append(true).open(log).unwrap();
        let start = Instant::now();
        let mut written = 0;
        while count.is_none_or(|c| written < c) && !stop.load(Ordering::Relaxed) {
            let due = Duration::from_millis(written * 1000 / per_second);
            if let Some(wait) = due.checked_sub(start.elapsed()) {
                std::thread::sleep(wait);
            }
            f.write_all(delivery_line(first_id + written, status).as_bytes())
                .unwrap();
            written += 1;
        }
        written
    })
}

#[test]
fn prometheus_scrapes_the_exporter_and_fires_the_deferred_ratio_alert() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("mail.log");
    std::fs::write(&log, "").unwrap();
    let mut exporter = start_exporter(&log);
    let exporter_addr = exporter.addr;

    // Prometheus: scrape every second, evaluate every second, the shipped
    // rules plus the short-window copy of the deferred-ratio alert.
    let short = dir.path().join("e2e-short-window.yml");
    std::fs::write(&short, short_deferred_alert()).unwrap();
    let mut rule_files = rule_paths();
    rule_files.push(short.display().to_string());
    let prom_port = free_port();
    let prom_addr: SocketAddr = format!("127.0.0.1:{prom_port}").parse().unwrap();
    let config = serde_json::json!({
        "global": {"scrape_interval": "1s", "scrape_timeout": "1s", "evaluation_interval": "1s"},
        "rule_files": rule_files,
        "scrape_configs": [{
            "job_name": "maillog",
            "static_configs": [{"targets": [exporter_addr.to_string()]}],
        }],
    });
    let config_path = dir.path().join("prometheus.yml");
    std::fs::write(&config_path, serde_yaml::to_string(&config).unwrap()).unwrap();
    let prom_log = dir.path().join("prometheus.log");
    let mut prometheus = Guard {
        child: Command::new("prometheus")
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address={prom_addr}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&prom_log).unwrap())
            .spawn()
            .expect("prometheus not found: install the Debian package `prometheus`"),
        what: "prometheus",
    };
    wait_until(30, "Prometheus to be ready", || {
        prometheus.assert_running(|| std::fs::read_to_string(&prom_log).unwrap_or_default());
        matches!(http_get(prom_addr, "/-/ready"), Some((200, _))).then_some(())
    });

    // The shipped rule files loaded, and every rule evaluates without error.
    wait_until(10, "the rules to be evaluated", || {
        let (_, body) = http_get(prom_addr, "/api/v1/rules")?;
        let v: Value = serde_json::from_str(&body).ok()?;
        let groups = v["data"]["groups"].as_array()?;
        let names: BTreeSet<&str> = groups.iter().filter_map(|g| g["name"].as_str()).collect();
        for g in ["maillog.recording", "maillog.alerts", "e2e.short-window"] {
            assert!(names.contains(g), "rule group {g} not loaded: {names:?}");
        }
        let rules: Vec<&Value> = groups
            .iter()
            .flat_map(|g| g["rules"].as_array().unwrap())
            .collect();
        for r in &rules {
            assert_ne!(r["health"], "err", "rule failed in Prometheus: {r}");
        }
        rules.iter().all(|r| r["health"] == "ok").then_some(())
    });
    wait_until(15, "the first scrape", || {
        exporter.assert_running();
        (query_one(prom_addr, r#"up{job="maillog"}"#) == Some(1.0)).then_some(())
    });

    // 1. 20 sent deliveries a second for 8 seconds: Prometheus sees the
    // rate while they are written and the exact count afterwards.
    let stop = Arc::new(AtomicBool::new(false));
    let sent = write_lines(&log, "sent", 0, 20, Some(160), stop.clone());
    std::thread::sleep(Duration::from_secs(6));
    let rate = query_one(
        prom_addr,
        r#"sum(rate(mail_deliveries_total{job="maillog", mta="postfix", status="sent"}[4s]))"#,
    )
    .expect("no rate of mail_deliveries_total");
    assert!(
        (14.0..=26.0).contains(&rate),
        "rate(mail_deliveries_total) is {rate}/s, expected 20/s"
    );
    let sent = sent.join().unwrap();
    assert_eq!(sent, 160);
    wait_until(15, "all 160 sent deliveries in Prometheus", || {
        let got = query_one(
            prom_addr,
            r#"sum(mail_deliveries_total{job="maillog", mta="postfix", transport="smtp", status="sent"})"#,
        );
        (got == Some(160.0)).then_some(())
    });
    // No alert before the deferrals.
    let alerts = |prom: SocketAddr| -> Vec<Value> {
        let (_, body) = http_get(prom, "/api/v1/alerts").unwrap_or_default();
        let v: Value = serde_json::from_str(&body).unwrap_or_default();
        v["data"]["alerts"].as_array().cloned().unwrap_or_default()
    };
    assert!(
        !alerts(prom_addr)
            .iter()
            .any(|a| a["labels"]["alertname"] == "MailDeferredRatioHigh"),
        "deferred-ratio alert before any deferral"
    );

    // 2. A burst of deferrals, 20 a second, until the alert fires.
    let deferred = write_lines(&log, "deferred", 1000, 20, None, stop.clone());
    let mut seen_pending = false;
    let alert = wait_until(30, "MailDeferredRatioHigh to fire", || {
        let found = alerts(prom_addr).into_iter().find(|a| {
            a["labels"]["alertname"] == "MailDeferredRatioHigh" && a["labels"]["window"] == "20s"
        })?;
        seen_pending |= found["state"] == "pending";
        (found["state"] == "firing").then_some(found)
    });
    stop.store(true, Ordering::Relaxed);
    let deferred = deferred.join().unwrap();
    assert!(deferred > 0);
    let l = &alert["labels"];
    assert_eq!(l["job"], "maillog");
    assert_eq!(l["instance"], exporter_addr.to_string());
    assert_eq!(l["mta"], "postfix");
    assert_eq!(l["severity"], "warning");
    let summary = alert["annotations"]["summary"].as_str().unwrap();
    assert!(
        summary.contains("% of postfix delivery attempts on") && summary.contains("are deferred"),
        "{summary}"
    );
    let value: f64 = alert["value"].as_str().unwrap().parse().unwrap();
    assert!(value > 0.2 && value <= 1.0, "alert value {value}");
    eprintln!("deferred-ratio alert: pending seen: {seen_pending}, firing at ratio {value}");

    // The shipped recording rule computed the same ratio over its 30-minute
    // window: deferred / all attempts so far, between 0 and 1.
    let ratio = wait_until(10, "the recorded deferred ratio", || {
        query_one(
            prom_addr,
            r#"instance_mta:mail_deliveries_deferred:ratio_rate30m{job="maillog", mta="postfix"}"#,
        )
        .filter(|r| *r > 0.0)
    });
    assert!(ratio > 0.0 && ratio < 1.0, "recorded ratio {ratio}");

    exporter.assert_running();
    prometheus.assert_running(|| std::fs::read_to_string(&prom_log).unwrap_or_default());
    drop(prometheus);
    drop(exporter);
    eprintln!("end-to-end test took {:?}", started.elapsed());
}
