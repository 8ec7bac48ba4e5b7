//! spamdyke: the filter in front of qmail-smtpd, one line per decision.
//!
//! spamdyke's README ("Log Messages") documents the shape of its traffic
//! lines (log level `info` and above):
//!
//! ```text
//! CODE from: SENDER to: RECIPIENT origin_ip: IPADDRESS origin_rdns: RDNSNAME auth: USERNAME encryption: TYPE [ reason: REALCODE ]
//! ```
//!
//! (`reason:` is absent in older versions), through syslog
//! (`Mar 9 11:10:37 server spamdyke[29207]: DENIED_RDNS_MISSING from: …`)
//! or, with `log-target=stderr`, through multilog (`@4000… ALLOWED from:
//! …`). Each line gives an [`Event::SpamVerdict`] (`filter="spamdyke"`,
//! `reason` the CODE from the fixed set [`CODES`], anything else `other`)
//! and an [`Event::SpamFilterClient`] (encryption and whether the client
//! authenticated). spamdyke's `ERROR:` lines are daemon problems; its
//! `FILTER:`, `DEBUG…:` and `EXCESSIVE…:` diagnostics are parsed and carry
//! nothing. Syslog lines of other programs are [`LineOutcome::Ignored`].
//!
//! Pure: byte-level, no allocation, no regex, no panic on any input.

use crate::event::{Event, Events, Severity, Verdict};
use crate::line::split_syslog;
use crate::parser::time::parse_tai64n;
use crate::parser::{LineOutcome, ParsedLine};
use smallvec::smallvec;

/// The `reason` label values: the codes of the exporter's specification
/// and those spamdyke's README (4.1.0, "Log Messages") documents, with the
/// verdict each stands for. Any other code is counted as `other`.
pub const CODES: [(&str, Verdict); 31] = [
    ("ALLOWED", Verdict::Allowed),
    ("ALLOWED_AUTHENTICATED", Verdict::Allowed),
    ("ALLOWED_TLS", Verdict::Allowed),
    // The client started TLS with qmail itself; spamdyke passed it through.
    ("TLS_ENCRYPTED", Verdict::Allowed),
    ("DENIED_ACCESS_DENIED", Verdict::Denied),
    ("DENIED_AUTH_REQUIRED", Verdict::Denied),
    ("DENIED_BLACKLIST_IP", Verdict::Denied),
    ("DENIED_BLACKLIST_NAME", Verdict::Denied),
    ("DENIED_EARLYTALKER", Verdict::Denied),
    ("DENIED_GRAYLISTED", Verdict::Denied),
    ("DENIED_HEADER_BLACKLISTED", Verdict::Denied),
    ("DENIED_IDENTICAL_SENDER_RECIPIENT", Verdict::Denied),
    ("DENIED_IP_IN_CC_RDNS", Verdict::Denied),
    ("DENIED_IP_IN_RDNS", Verdict::Denied),
    ("DENIED_OTHER", Verdict::Denied),
    ("DENIED_RBL_MATCH", Verdict::Denied),
    ("DENIED_RDNS_MISSING", Verdict::Denied),
    ("DENIED_RDNS_RESOLVE", Verdict::Denied),
    ("DENIED_RECIPIENT_BLACKLISTED", Verdict::Denied),
    ("DENIED_REJECT_ALL", Verdict::Denied),
    ("DENIED_RELAYING", Verdict::Denied),
    ("DENIED_RHSBL_MATCH", Verdict::Denied),
    ("DENIED_SENDER_BLACKLISTED", Verdict::Denied),
    ("DENIED_SENDER_NO_MX", Verdict::Denied),
    ("DENIED_TOO_MANY_RECIPIENTS", Verdict::Denied),
    ("DENIED_UNQUALIFIED_RECIPIENT", Verdict::Denied),
    ("DENIED_ZERO_RECIPIENTS", Verdict::Denied),
    ("FAILED_AUTH", Verdict::Denied),
    ("FAILED_TLS", Verdict::Denied),
    ("TIMEOUT", Verdict::Denied),
    ("UNKNOWN_AUTH", Verdict::Denied),
];

/// The `filter` label of spamdyke's verdicts.
pub const FILTER: &str = "spamdyke";

/// Whether `line` is a spamdyke line.
pub fn recognizes(line: &[u8]) -> bool {
    matches!(parse(line).outcome, LineOutcome::Parsed(_))
}

/// Parses one spamdyke log line.
pub fn parse(line: &[u8]) -> ParsedLine<'_> {
    if line.first() == Some(&b'@') {
        let (Some(label), Some(b' '), Some(text)) = (line.get(..25), line.get(25), line.get(26..))
        else {
            return ParsedLine::unparsed();
        };
        let Some(time) = parse_tai64n(label) else {
            return ParsedLine::unparsed();
        };
        return ParsedLine {
            time: Some(time),
            time_text: label,
            outcome: message(text),
        };
    }
    let Some(env) = split_syslog(line) else {
        return ParsedLine::unparsed();
    };
    ParsedLine {
        time: Some(env.time),
        time_text: env.time_text,
        outcome: if env.program == b"spamdyke" {
            message(env.message)
        } else {
            LineOutcome::Ignored
        },
    }
}

/// The text after the envelope.
pub fn message(text: &[u8]) -> LineOutcome<'_> {
    let code_len = text
        .iter()
        .take_while(|b| b.is_ascii_uppercase() || **b == b'_')
        .count();
    let (code, rest) = text.split_at(code_len);
    if code.is_empty() {
        return LineOutcome::Unparsed;
    }
    if rest.starts_with(b" from: ") {
        return decision(code, rest).map_or(LineOutcome::Unparsed, LineOutcome::Parsed);
    }
    if code == b"ERROR" && rest.first() == Some(&b':') {
        return LineOutcome::Parsed(smallvec![Event::DaemonProblem {
            daemon: "spamdyke",
            severity: Severity::Error,
        }]);
    }
    // Verbose diagnostics: `FILTER_RBL ip: …`, `DEBUG(filter.c:123): …`,
    // `EXCESSIVE(…): …`.
    if [&b"FILTER"[..], b"DEBUG", b"EXCESSIVE"]
        .iter()
        .any(|p| code.starts_with(p))
    {
        return LineOutcome::Parsed(Events::new());
    }
    LineOutcome::Unparsed
}

/// ` from: S to: R origin_ip: IP origin_rdns: N auth: A encryption: E[ reason: X]`
fn decision<'a>(code: &[u8], rest: &'a [u8]) -> Option<Events<'a>> {
    let rest = rest.strip_prefix(b" from: ")?;
    let after_to = find_after(rest, b" to: ")?;
    let after_ip = find_after(after_to, b" origin_ip: ")?;
    let after_rdns = find_after(after_ip, b" origin_rdns: ")?;
    let auth = find_after(after_rdns, b" auth: ")?;
    let (auth, tail) = word(auth);
    let encryption = tail.strip_prefix(b" encryption: ")?;
    let (encryption, tail) = word(encryption);
    if !(tail.is_empty() || tail.starts_with(b" reason: ")) {
        return None;
    }
    let (reason, verdict) = CODES
        .iter()
        .find(|(c, _)| c.as_bytes() == code)
        .copied()
        .unwrap_or((
            "other",
            if code.starts_with(b"ALLOWED") {
                Verdict::Allowed
            } else {
                Verdict::Denied
            },
        ));
    let encryption = match encryption {
        b"(none)" => "none",
        b"TLS" => "tls",
        b"SSL" => "ssl",
        b"TLS_PASSTHROUGH" => "tls_passthrough",
        _ => "other",
    };
    Some(smallvec![
        Event::SpamVerdict {
            filter: FILTER,
            verdict,
            reason,
        },
        Event::SpamFilterClient {
            filter: FILTER,
            encryption,
            authenticated: !auth.is_empty() && auth != b"(unknown)",
        },
    ])
}

/// What follows the first `marker` in `text`.
fn find_after<'a>(text: &'a [u8], marker: &[u8]) -> Option<&'a [u8]> {
    memchr::memmem::find(text, marker).map(|i| &text[i + marker.len()..])
}

/// The word at the start of `text` and what follows it (from its space).
fn word(text: &[u8]) -> (&[u8], &[u8]) {
    let end = memchr::memchr(b' ', text).unwrap_or(text.len());
    text.split_at(end)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::time::LogTime;

    const SEED: &str = include_str!("../../tests/fixtures/spamdyke/icdsoft_spamdyke.log");

    fn events(line: &str) -> Vec<Event<'_>> {
        crate::parser::test_lines::events(parse(line.as_bytes()), line)
    }

    fn verdict(verdict: Verdict, reason: &'static str) -> Event<'static> {
        Event::SpamVerdict {
            filter: "spamdyke",
            verdict,
            reason,
        }
    }

    fn client(encryption: &'static str, authenticated: bool) -> Event<'static> {
        Event::SpamFilterClient {
            filter: "spamdyke",
            encryption,
            authenticated,
        }
    }

    #[test]
    fn seed_lines() {
        let lines: Vec<&str> = SEED.lines().collect();
        assert_eq!(
            events(lines[0]),
            vec![
                verdict(Verdict::Denied, "DENIED_RDNS_MISSING"),
                client("none", false)
            ]
        );
        assert_eq!(
            events(lines[1]),
            vec![verdict(Verdict::Allowed, "ALLOWED"), client("none", false)]
        );
        assert_eq!(
            parse(lines[0].as_bytes()).time,
            Some(LogTime::Syslog {
                month: 3,
                day: 9,
                second_of_day: 11 * 3600 + 10 * 60 + 37
            })
        );
    }

    #[test]
    fn older_lines_without_reason_tls_auth_and_unknown_codes() {
        let line = "Jan 10 09:00:00 mx spamdyke[1]: ALLOWED from: a@example.net to: b@example.com origin_ip: 192.0.2.1 origin_rdns: mail.example.net auth: alice encryption: TLS";
        assert_eq!(
            events(line),
            vec![verdict(Verdict::Allowed, "ALLOWED"), client("tls", true)]
        );
        let line = "Jan 10 09:00:00 mx spamdyke[1]: TIMEOUT from: (unknown) to: (unknown) origin_ip: 192.0.2.1 origin_rdns: (unknown) auth: (unknown) encryption: SSL reason: DENIED_RDNS_MISSING";
        assert_eq!(
            events(line),
            vec![verdict(Verdict::Denied, "TIMEOUT"), client("ssl", false)]
        );
        // spamdyke 5 codes outside the fixed set.
        let line = "Jan 10 09:00:00 mx spamdyke[1]: DENIED_INVALID_RECIPIENT from: a@example.net to: x@example.com origin_ip: 192.0.2.1 origin_rdns: mail.example.net auth: (unknown) encryption: TLS_PASSTHROUGH reason: (empty)";
        assert_eq!(
            events(line),
            vec![
                verdict(Verdict::Denied, "other"),
                client("tls_passthrough", false)
            ]
        );
        let line = "@400000006046f2f2110a4f04 ALLOWED_DATA from: a@example.net to: x@example.com origin_ip: 192.0.2.1 origin_rdns: mail.example.net auth: (unknown) encryption: STARTTLS";
        assert_eq!(
            events(line),
            vec![verdict(Verdict::Allowed, "other"), client("other", false)]
        );
    }

    #[test]
    fn diagnostics_and_other_programs() {
        assert_eq!(
            events("Jan 10 09:00:00 mx spamdyke[1]: ERROR: unable to open file /etc/spamdyke.conf: No such file"),
            vec![Event::DaemonProblem {
                daemon: "spamdyke",
                severity: Severity::Error
            }]
        );
        assert_eq!(
            events("Jan 10 09:00:00 mx spamdyke[1]: FILTER_RDNS_MISSING ip: 192.0.2.1"),
            Vec::<Event>::new()
        );
        assert_eq!(
            parse(b"Jan 10 09:00:00 mx qmail: 1615286631.0 new msg 1").outcome,
            LineOutcome::Ignored
        );
    }

    #[test]
    fn garbage_is_unparsed() {
        for line in [
            "",
            "spamdyke",
            "Jan 10 09:00:00 mx spamdyke[1]: ",
            "Jan 10 09:00:00 mx spamdyke[1]: hello world",
            "Jan 10 09:00:00 mx spamdyke[1]: ALLOWED",
            "Jan 10 09:00:00 mx spamdyke[1]: ALLOWED from: a to: b",
            "Jan 10 09:00:00 mx spamdyke[1]: ALLOWED from: a to: b origin_ip: c origin_rdns: d auth: e",
            "Jan 10 09:00:00 mx spamdyke[1]: ALLOWED from: a to: b origin_ip: c origin_rdns: d auth: e encryption: f junk",
            "Jan 10 09:00:00 mx spamdyke[1]: SOMETHING: else",
            "@400000006046f2f2110a4f04",
            "@400000006046f2f2110a4f04 new msg 1",
        ] {
            assert_eq!(parse(line.as_bytes()).outcome, LineOutcome::Unparsed, "{line}");
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = parse(&bytes);
        }

        #[test]
        fn never_panics_on_cut_real_lines(i in 0usize..2, cut in 0usize..260) {
            if let Some(line) = SEED.lines().nth(i) {
                let b = line.as_bytes();
                let _ = parse(&b[..cut.min(b.len())]);
                let _ = parse(&b[cut.min(b.len())..]);
            }
        }
    }
}
