//! Every line of every Postfix fixture goes through the parser; the lines
//! that stay `Unparsed` must be exactly the ones listed in [`ALLOWED`],
//! each with the reason it is not (or not a well-formed) Postfix line.

use maillog_exporter::parser::postfix::{parse, parse_message};
use maillog_exporter::parser::LineOutcome;
use std::path::{Path, PathBuf};

const VERBOSE: &str =
    "`-v` verbose debug output (match_string:, dict_open:, qmgr_*, attribute traffic…)";
const SYNTHETIC_UNSUPPORTED: &str =
    "synthetic test line: placeholder text `Unsupported`, not Postfix output";

/// Lines allowed to stay unparsed: (file relative to tests/fixtures/postfix,
/// first line, last line (inclusive, 1-based), reason).
const ALLOWED: &[(&str, usize, usize, &str)] = &[
    ("anantg21_dashboard_shapes.log", 1, 1, "`status=failed` with dsn=2.0.0: not a status Postfix writes, altered before publication"),
    ("anantg21_dashboard_shapes.log", 4, 4, "`status=failed` with dsn=2.0.0: not a status Postfix writes, altered before publication"),
    ("github_issues_excerpts.log", 58, 58, "`docker compose logs` wrapper (`postfix-mailcow-1  | `) in front of the syslog line"),
    ("github_issues_excerpts.log", 59, 63, "docker image's own `<stamp> INFO    program:` envelope (not syslog) around verbose SMTP dialogue"),
    ("github_issues_excerpts.log", 94, 94, "rsyslog `message repeated 2 times: [ … ]`: written by rsyslog, not a Postfix line"),
    ("infohtreasure_maillog_dump_shapes.log", 26, 33, VERBOSE),
    ("infohtreasure_maillog_dump_shapes.log", 38, 61, VERBOSE),
    ("infohtreasure_maillog_dump_shapes.log", 62, 62, "delivery status line truncated after `to=<…>, ` as published"),
    ("infohtreasure_maillog_dump_shapes.log", 64, 102, VERBOSE),
    ("infohtreasure_maillog_dump_shapes.log", 104, 188, VERBOSE),
    ("infohtreasure_maillog_dump_shapes.log", 190, 192, VERBOSE),
    ("infohtreasure_maillog_dump_shapes.log", 194, 208, VERBOSE),
    ("infohtreasure_maillog_dump_shapes.log", 210, 214, VERBOSE),
    ("infohtreasure_maillog_dump_shapes.log", 218, 230, VERBOSE),
    ("infohtreasure_maillog_dump_shapes.log", 232, 237, VERBOSE),
    ("infohtreasure_maillog_dump_shapes.log", 242, 242, VERBOSE),
    ("infohtreasure_maillog_dump_shapes.log", 244, 244, VERBOSE),
    ("infohtreasure_maillog_dump_shapes.log", 247, 300, VERBOSE),
    ("infohtreasure_maillog_dump_shapes.log", 316, 332, VERBOSE),
    ("infohtreasure_maillog_dump_shapes.log", 334, 380, VERBOSE),
    ("infohtreasure_maillog_dump_shapes.log", 382, 394, VERBOSE),
    ("infohtreasure_maillog_dump_shapes.log", 396, 444, VERBOSE),
    ("infohtreasure_maillog_dump_shapes.log", 446, 446, VERBOSE),
    ("mensetmanus_gomaillex_shapes.log", 4, 4, "corrupted as published: `removedo`"),
    ("postfix_maillog.log", 1, 5, "published without timestamp and host (`program[pid]: message` only)"),
    ("sergeymakinen_postfix_exporter_mail_synthetic.log", 1, 9, "synthetic, deliberately malformed envelope or unknown program"),
    ("sergeymakinen_postfix_exporter_mail_synthetic.log", 42, 43, SYNTHETIC_UNSUPPORTED),
    ("sergeymakinen_postfix_exporter_mail_synthetic.log", 46, 46, SYNTHETIC_UNSUPPORTED),
    ("sergeymakinen_postfix_exporter_mail_synthetic.log", 50, 51, "synthetic status line without `to=<…>`"),
    ("sergeymakinen_postfix_exporter_mail_synthetic.log", 55, 55, SYNTHETIC_UNSUPPORTED),
    ("sergeymakinen_postfix_exporter_mail_synthetic.log", 57, 57, SYNTHETIC_UNSUPPORTED),
    ("sergeymakinen_postfix_exporter_mail_synthetic.log", 59, 59, SYNTHETIC_UNSUPPORTED),
    ("message_only/tls_features.log", 7, 12, "fragments of a `tls=` field from pattern tests, not whole messages"),
];

fn allowed(file: &str, n: usize) -> bool {
    ALLOWED
        .iter()
        .any(|(f, first, last, _)| *f == file && (*first..=*last).contains(&n))
}

fn fixture_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/postfix")
}

fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    files.sort();
    files
}

/// The program a message-only sample was logged by.
fn message_only_program(stem: &str) -> String {
    match stem {
        "tls_features" => "postfix/smtp".to_string(),
        "script" => "postfix/postfix-script".to_string(),
        "trivial_rewrite" => "postfix/trivial-rewrite".to_string(),
        other => format!("postfix/{other}"),
    }
}

/// The lines of a file, without the empty piece after a final newline.
fn lines(path: &Path) -> Vec<Vec<u8>> {
    let data = std::fs::read(path).unwrap();
    let data = data.strip_suffix(b"\n").unwrap_or(&data);
    data.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect()
}

/// (file, line number, line) of every line the parser leaves unparsed.
fn unparsed_lines() -> Vec<(String, usize, String)> {
    let dir = fixture_dir();
    let mut out = Vec::new();
    for path in log_files(&dir) {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        for (i, line) in lines(&path).iter().enumerate() {
            if parse(line).outcome == LineOutcome::Unparsed {
                out.push((
                    name.clone(),
                    i + 1,
                    String::from_utf8_lossy(line).into_owned(),
                ));
            }
        }
    }
    for path in log_files(&dir.join("message_only")) {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        let program = message_only_program(&stem);
        let name = format!("message_only/{stem}.log");
        for (i, line) in lines(&path).iter().enumerate() {
            if parse_message(program.as_bytes(), line) == LineOutcome::Unparsed {
                out.push((
                    name.clone(),
                    i + 1,
                    String::from_utf8_lossy(line).into_owned(),
                ));
            }
        }
    }
    out
}

#[test]
fn only_the_listed_fixture_lines_stay_unparsed() {
    let unparsed = unparsed_lines();
    let unexpected: Vec<String> = unparsed
        .iter()
        .filter(|(file, n, _)| !allowed(file, *n))
        .map(|(file, n, line)| format!("{file}:{n}: {line}"))
        .collect();
    let mut now_parsed = Vec::new();
    for (file, first, last, reason) in ALLOWED {
        for n in *first..=*last {
            if !unparsed.iter().any(|(f, m, _)| f == file && *m == n) {
                now_parsed.push(format!("{file}:{n} ({reason})"));
            }
        }
    }
    assert!(
        unexpected.is_empty() && now_parsed.is_empty(),
        "{} unexpected unparsed lines:\n{}\n\n{} listed lines that are now parsed (remove them from ALLOWED):\n{}",
        unexpected.len(),
        unexpected.join("\n"),
        now_parsed.len(),
        now_parsed.join("\n"),
    );
}

#[test]
fn allowed_ranges_are_sorted_and_disjoint() {
    for pair in ALLOWED.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        assert!(a.1 <= a.2 && !a.3.is_empty(), "{a:?}");
        assert!(
            a.0 != b.0 || a.2 < b.1,
            "overlapping or unsorted: {a:?} {b:?}"
        );
    }
}
