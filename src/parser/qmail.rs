//! qmail: qmail-send, tcpserver (in front of qmail-smtpd) and rblsmtpd lines.
//!
//! Three envelopes carry the same lines:
//!
//! * multilog: `@` + a 24-hex-digit TAI64N label, a space, the line
//!   (`@400000006b01fd1901f7e60c new msg 746539`);
//! * splogger inside syslog: `Nov 21 20:20:31 mx qmail: 1795292431.033035
//!   new msg 746539`: the Unix `seconds.microseconds` stamp splogger wrote
//!   is used, not the syslog one (it has a fraction and no year to infer);
//!   splogger output without a syslog envelope (`qmail: new msg 53`) is read
//!   too, without a time;
//! * `tai64nlocal`: `2026-11-21 20:20:31.033023500 new msg 746539`, local
//!   time converted with the source's zone.
//!
//! The line itself is dispatched on its first byte and a prefix test, then
//! sliced; nothing is allocated and no regex is run. qmail-send logs a
//! delivery's result with only its delivery id (`delivery 7: success: …`):
//! the parser emits [`Event::DeliveryStarted`] and [`Event::DeliveryResult`]
//! and the correlator joins them (see [`crate::state`]). Message ids are
//! inode numbers and are reused, so `new msg` is [`Event::NewMessage`].
//! Trailing words that qmail derivatives append (indimail's queue name
//! `queue2`, `delayed jobs=1 slowq`, ` exitasap` while qmail-send stops) are
//! tolerated.
//!
//! Syslog lines of other programs are [`LineOutcome::Ignored`]; syslog
//! lines tagged `tcpserver` or `rblsmtpd`, or whose message starts with
//! `tcpserver: `/`rblsmtpd: `, are read as this format's lines.

use crate::event::{BounceKind, DeliveryStatus, Event, Events, RejectStage, Severity, Verdict};
use crate::line::{as_str, parse_u32, parse_u64, split_syslog};
use crate::parser::time::{parse_local_datetime, parse_tai64n, parse_unix_stamp};
use crate::parser::{LineOutcome, ParsedLine};
use smallvec::smallvec;

/// Whether `line` is a qmail line: one of the shapes below in one of the
/// three envelopes.
pub fn recognizes(line: &[u8]) -> bool {
    matches!(parse(line).outcome, LineOutcome::Parsed(_))
}

/// Parses one qmail log line.
pub fn parse(line: &[u8]) -> ParsedLine<'_> {
    match line.first() {
        Some(b'@') => {
            let Some((label, text)) = line.get(..25).zip(line.get(26..)) else {
                return ParsedLine::unparsed();
            };
            return match (parse_tai64n(label), line[25]) {
                (Some(time), b' ') => ParsedLine {
                    time: Some(time),
                    time_text: label,
                    outcome: message(None, text),
                },
                _ => ParsedLine::unparsed(),
            };
        }
        Some(b'0'..=b'9') if line.get(4) == Some(&b'-') && line.get(10) == Some(&b' ') => {
            // tai64nlocal: the stamp is `date time`, two words.
            let end = line
                .get(11..)
                .and_then(|r| memchr::memchr(b' ', r))
                .map_or(line.len(), |i| i + 11);
            if let Some(time) = parse_local_datetime(&line[..end]) {
                return ParsedLine {
                    time: Some(time),
                    time_text: &line[..end],
                    outcome: message(None, line.get(end + 1..).unwrap_or(&[])),
                };
            }
        }
        _ => {}
    }
    if let Some(text) = line.strip_prefix(b"qmail: ") {
        // splogger's output before syslog adds its envelope.
        return with_splogger_stamp(b"qmail", text).unwrap_or(ParsedLine {
            time: None,
            time_text: &[],
            outcome: message(Some(b"qmail"), text),
        });
    }
    let Some(env) = split_syslog(line) else {
        return ParsedLine::unparsed();
    };
    if let Some(parsed) = with_splogger_stamp(env.program, env.message) {
        return parsed;
    }
    let text = env.message;
    let outcome = match env.program {
        b"tcpserver" => tcpserver(Some(env.program), text),
        b"rblsmtpd" => rblsmtpd(text),
        b"qmail" => message(Some(env.program), text),
        _ if text.starts_with(b"tcpserver: ") || text.starts_with(b"rblsmtpd: ") => {
            message(Some(env.program), text)
        }
        _ => LineOutcome::Ignored,
    };
    ParsedLine {
        time: Some(env.time),
        time_text: env.time_text,
        outcome,
    }
}

/// `1795292431.033035 line` (splogger's stamp) → the stamp's time and the
/// line's outcome; `None` if `text` does not start with such a stamp.
fn with_splogger_stamp<'a>(program: &'a [u8], text: &'a [u8]) -> Option<ParsedLine<'a>> {
    if !text.first().is_some_and(u8::is_ascii_digit) {
        return None;
    }
    let space = memchr::memchr(b' ', text)?;
    let time = parse_unix_stamp(&text[..space])?;
    Some(ParsedLine {
        time: Some(time),
        time_text: &text[..space],
        outcome: message(Some(program), &text[space + 1..]),
    })
}

/// Parses the line after its envelope. `program` is the syslog tag, if
/// the line came through syslog.
pub fn message<'a>(program: Option<&'a [u8]>, t: &'a [u8]) -> LineOutcome<'a> {
    let events = match t.first() {
        Some(b'n') => t.strip_prefix(b"new msg ").and_then(new_msg),
        Some(b'i') => match t.strip_prefix(b"info msg ") {
            Some(r) => info_msg(r),
            // indimail-mta's rate control notes.
            None => t.starts_with(b"info: ").then(none),
        },
        Some(b's') => match t.strip_prefix(b"starting delivery ") {
            Some(r) => starting_delivery(r),
            None => t.strip_prefix(b"status: ").and_then(status),
        },
        Some(b'd') => t.strip_prefix(b"delivery ").and_then(delivery),
        Some(b'e') => t.strip_prefix(b"end msg ").and_then(end_msg),
        Some(b'b') => t
            .strip_prefix(b"bounce msg ")
            .and_then(message_id)
            .map(|_| {
                one(Event::BounceNotification {
                    kind: BounceKind::NonDelivery,
                })
            }),
        Some(b't') => {
            if t.starts_with(b"triple bounce: discarding ") {
                Some(one(Event::BounceDiscarded))
            } else {
                return t
                    .strip_prefix(b"tcpserver: ")
                    .map_or(LineOutcome::Unparsed, |r| tcpserver(program, r));
            }
        }
        Some(b'r') => {
            return t
                .strip_prefix(b"rblsmtpd: ")
                .map_or(LineOutcome::Unparsed, rblsmtpd);
        }
        Some(b'w') => t
            .starts_with(b"warning: ")
            .then(|| problem(Severity::Warning)),
        Some(b'a') => t.starts_with(b"alert: ").then(|| problem(Severity::Alert)),
        // indimail-mta: `local: sender recipient msg queue`.
        Some(b'l') => t.starts_with(b"local: ").then(none),
        Some(b'q') => t.strip_prefix(b"qmail-smtpd: ").and_then(qmail_smtpd),
        _ => None,
    };
    events.map_or(LineOutcome::Unparsed, LineOutcome::Parsed)
}

fn none<'a>() -> Events<'a> {
    Events::new()
}

fn one(event: Event<'_>) -> Events<'_> {
    smallvec![event]
}

fn problem<'a>(severity: Severity) -> Events<'a> {
    one(Event::DaemonProblem {
        daemon: "qmail-send",
        severity,
    })
}

/// The run of digits at the start of `text` and what follows it.
fn leading_digits(text: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = text.iter().take_while(|b| b.is_ascii_digit()).count();
    (n > 0).then(|| text.split_at(n))
}

/// A message id that makes up the rest of the line, possibly followed by
/// trailing words (`53 `, `100926020 queue5`, `746539 qp 16066`).
fn message_id(text: &[u8]) -> Option<&str> {
    let (id, rest) = leading_digits(text)?;
    if !(rest.is_empty() || rest[0] == b' ') {
        return None;
    }
    as_str(id)
}

/// `new msg 746539`
fn new_msg(rest: &[u8]) -> Option<Events<'_>> {
    let queue_id = message_id(rest)?;
    Some(one(Event::NewMessage { queue_id }))
}

/// `end msg 746539`
fn end_msg(rest: &[u8]) -> Option<Events<'_>> {
    let queue_id = message_id(rest)?;
    Some(one(Event::MessageRemoved { queue_id }))
}

/// `info msg 746539: bytes 2468 from <alice@example.test> qp 16066 uid 1008`
fn info_msg(rest: &[u8]) -> Option<Events<'_>> {
    let (id, rest) = leading_digits(rest)?;
    let rest = rest.strip_prefix(b": bytes ")?;
    let (bytes, rest) = leading_digits(rest)?;
    if !rest.starts_with(b" from ") {
        return None;
    }
    Some(one(Event::MessageEnvelope {
        queue_id: as_str(id)?,
        size: parse_u64(bytes)?,
        recipients: None,
    }))
}

/// `starting delivery 1: msg 746539 to local bob@example.test`
fn starting_delivery(rest: &[u8]) -> Option<Events<'_>> {
    let (delivery, rest) = leading_digits(rest)?;
    let rest = rest.strip_prefix(b": msg ")?;
    let (id, rest) = leading_digits(rest)?;
    let rest = rest.strip_prefix(b" to ")?;
    let (transport, recipient) = if let Some(r) = rest.strip_prefix(b"local ") {
        ("local", r)
    } else if let Some(r) = rest.strip_prefix(b"remote ") {
        ("remote", r)
    } else {
        return None;
    };
    let end = memchr::memchr(b' ', recipient).unwrap_or(recipient.len());
    Some(one(Event::DeliveryStarted {
        delivery_id: parse_u64(delivery)?,
        queue_id: as_str(id)?,
        transport,
        recipient: as_str(&recipient[..end]).unwrap_or(""),
    }))
}

/// `delivery 1: success: did_1+0+0/`, `deferral: …`, `failure: …` and
/// qmail-send's `report mangled, will defer`.
fn delivery(rest: &[u8]) -> Option<Events<'_>> {
    let (delivery, rest) = leading_digits(rest)?;
    let rest = rest.strip_prefix(b": ")?;
    let status = if rest.starts_with(b"success:") {
        DeliveryStatus::Sent
    } else if rest.starts_with(b"deferral:") || rest.starts_with(b"report mangled") {
        DeliveryStatus::Deferred
    } else if rest.starts_with(b"failure:") {
        DeliveryStatus::Bounced
    } else {
        return None;
    };
    Some(one(Event::DeliveryResult {
        delivery_id: parse_u64(delivery)?,
        status,
    }))
}

/// `local 1/10 remote 0/20` (then maybe ` exitasap`, ` queue2`, ` delayed
/// jobs=1 slowq`) or `exiting`.
fn status(rest: &[u8]) -> Option<Events<'_>> {
    if rest.starts_with(b"exiting") {
        return Some(one(Event::QueueManagerExited));
    }
    let rest = rest.strip_prefix(b"local ")?;
    let (local_active, local_limit, rest) = fraction(rest)?;
    let rest = rest.strip_prefix(b" remote ")?;
    let (remote_active, remote_limit, rest) = fraction(rest)?;
    if !(rest.is_empty() || rest[0] == b' ') {
        return None;
    }
    Some(smallvec![
        Event::QueueConcurrency {
            transport: "local",
            active: local_active,
            limit: local_limit,
        },
        Event::QueueConcurrency {
            transport: "remote",
            active: remote_active,
            limit: remote_limit,
        },
    ])
}

/// `3/20` → (3, 20, what follows).
fn fraction(text: &[u8]) -> Option<(u32, u32, &[u8])> {
    let (a, rest) = leading_digits(text)?;
    let (b, rest) = leading_digits(rest.strip_prefix(b"/")?)?;
    Some((parse_u32(a)?, parse_u32(b)?, rest))
}

/// The `service` label of tcpserver lines: the syslog tag when the line
/// came through syslog with a tag of its own (`vpopmaild`), else `smtpd`
/// (a multilog directory has no name in its lines).
fn tcpserver_service(program: Option<&[u8]>) -> &str {
    match program {
        None | Some(b"tcpserver" | b"qmail") => "smtpd",
        Some(p) => as_str(p).unwrap_or("smtpd"),
    }
}

/// ucspi-tcp `tcpserver -v`: `status: 1/20`, `pid 16189 from 127.0.0.1`,
/// `ok 16189 local:ip:port :remoteip::port`, `deny 16205 …`, `end 16189
/// status 0`, and its `warning:`/`fatal:` lines.
fn tcpserver<'a>(program: Option<&'a [u8]>, t: &'a [u8]) -> LineOutcome<'a> {
    let service = tcpserver_service(program);
    let events = if let Some(r) = t.strip_prefix(b"status: ") {
        fraction(r)
            .filter(|(_, _, rest)| rest.is_empty())
            .map(|(open, limit, _)| {
                one(Event::SmtpConcurrency {
                    service,
                    open,
                    limit,
                })
            })
    } else if let Some(r) = t.strip_prefix(b"pid ") {
        leading_digits(r)
            .filter(|(_, rest)| rest.starts_with(b" from "))
            .map(|_| one(Event::SmtpConnect { service }))
    } else if t.starts_with(b"ok ") || t.starts_with(b"end ") {
        Some(none())
    } else if t.starts_with(b"deny ") {
        Some(one(Event::SpamVerdict {
            filter: "tcprules",
            verdict: Verdict::Denied,
            reason: "denylisted",
        }))
    } else if t.starts_with(b"warning: ") || t.starts_with(b"fatal: ") {
        let severity = if t[0] == b'w' {
            Severity::Warning
        } else {
            Severity::Fatal
        };
        Some(one(Event::DaemonProblem {
            daemon: "tcpserver",
            severity,
        }))
    } else {
        None
    };
    events.map_or(LineOutcome::Unparsed, LineOutcome::Parsed)
}

/// rblsmtpd turned a client away: `198.51.100.77 pid 19597: 451 text` (some
/// builds name the zone before the colon), or the old rblsmtpd's
/// `relays.ordb.org blocked 193.111.120.47 host -`. The reason says whether
/// the client was told to retry (`dnsbl_temporary`, 4xx, rblsmtpd's
/// default) or not (`dnsbl_permanent`, 5xx).
fn rblsmtpd(t: &[u8]) -> LineOutcome<'_> {
    let reason = if memchr::memmem::find(t, b" pid ").is_some() {
        let Some(colon) = memchr::memmem::find(t, b": ") else {
            return LineOutcome::Unparsed;
        };
        match t.get(colon + 2) {
            Some(b'4') => "dnsbl_temporary",
            Some(b'5') => "dnsbl_permanent",
            _ => "dnsbl",
        }
    } else if memchr::memmem::find(t, b" blocked ").is_some() {
        "dnsbl"
    } else {
        return LineOutcome::Unparsed;
    };
    LineOutcome::Parsed(one(Event::SpamVerdict {
        filter: "rblsmtpd",
        verdict: Verdict::Denied,
        reason,
    }))
}

/// Patched qmail-smtpds log their rejections as `qmail-smtpd: 421 text`
/// (stock qmail-smtpd logs nothing).
fn qmail_smtpd(t: &[u8]) -> Option<Events<'_>> {
    match t {
        [a @ (b'4' | b'5'), b, c, b' ', ..] if b.is_ascii_digit() && c.is_ascii_digit() => {
            let code = u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0');
            Some(one(Event::SmtpReject {
                service: "smtpd",
                stage: RejectStage::Other,
                code,
            }))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::time::LogTime;

    const MULTILOG: &str =
        include_str!("../../tests/fixtures/qmail/real_notqmail_send_multilog.log");
    const SPLOGGER: &str =
        include_str!("../../tests/fixtures/qmail/real_notqmail_send_splogger.log");
    const TCPSERVER: &str =
        include_str!("../../tests/fixtures/qmail/real_notqmail_smtpd_tcpserver.log");

    fn events(line: &str) -> Vec<Event<'_>> {
        crate::parser::test_lines::events(parse(line.as_bytes()), line)
    }

    use crate::parser::test_lines::real;

    fn absolute(line: &str) -> f64 {
        match parse(line.as_bytes()).time {
            Some(LogTime::Absolute(t)) => t,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn new_info_end_msg() {
        let line = real(MULTILOG, "new msg 746539");
        assert_eq!(events(line), vec![Event::NewMessage { queue_id: "746539" }]);
        assert!((absolute(line) - 1_795_292_431.033_023_5).abs() < 1e-6);
        assert_eq!(
            events(real(MULTILOG, "info msg 746539:")),
            vec![Event::MessageEnvelope {
                queue_id: "746539",
                size: 2468,
                recipients: None
            }]
        );
        assert_eq!(
            events(real(MULTILOG, "end msg 746539")),
            vec![Event::MessageRemoved { queue_id: "746539" }]
        );
    }

    #[test]
    fn starting_delivery_local_and_remote() {
        assert_eq!(
            events(real(MULTILOG, "starting delivery 1: msg 746539")),
            vec![Event::DeliveryStarted {
                delivery_id: 1,
                queue_id: "746539",
                transport: "local",
                recipient: "bob@example.test"
            }]
        );
        assert_eq!(
            events(real(MULTILOG, "starting delivery 2: msg 746539")),
            vec![Event::DeliveryStarted {
                delivery_id: 2,
                queue_id: "746539",
                transport: "remote",
                recipient: "fiona@sink.test"
            }]
        );
    }

    #[test]
    fn delivery_results() {
        let cases = [
            ("delivery 1: success: did_1+0+0/", DeliveryStatus::Sent),
            (
                ": success: 127.0.0.1_accepted_message.",
                DeliveryStatus::Sent,
            ),
            (": deferral: Mailbox_locked", DeliveryStatus::Deferred),
            (": deferral: Sorry,_I_wasn't_able", DeliveryStatus::Deferred),
            (": failure: Sorry,_no_mailbox_here", DeliveryStatus::Bounced),
            (
                ": failure: 127.0.0.1_does_not_like_recipient./Remote_host_said:_550",
                DeliveryStatus::Bounced,
            ),
            ("in_the_queue_too_long./", DeliveryStatus::Bounced),
        ];
        for (needle, status) in cases {
            let line = real(MULTILOG, needle);
            match events(line).as_slice() {
                [Event::DeliveryResult { status: s, .. }] => assert_eq!(*s, status, "{line}"),
                other => panic!("{other:?} for {line}"),
            }
        }
        // Results with an empty text, and the mangled report qmail-send
        // defers (wording of qmail-send.c).
        assert_eq!(
            events("@400000006b01fd1902b7cb0c delivery 12: deferral: "),
            vec![Event::DeliveryResult {
                delivery_id: 12,
                status: DeliveryStatus::Deferred
            }]
        );
        assert_eq!(
            events("@400000006b01fd1902b7cb0c delivery 12: report mangled, will defer"),
            vec![Event::DeliveryResult {
                delivery_id: 12,
                status: DeliveryStatus::Deferred
            }]
        );
    }

    #[test]
    fn status_lines() {
        assert_eq!(
            events(real(MULTILOG, "status: local 2/10 remote 2/20")),
            vec![
                Event::QueueConcurrency {
                    transport: "local",
                    active: 2,
                    limit: 10
                },
                Event::QueueConcurrency {
                    transport: "remote",
                    active: 2,
                    limit: 20
                }
            ]
        );
        let stopping = events(real(MULTILOG, " exitasap"));
        assert_eq!(stopping.len(), 2);
        assert_eq!(
            events(real(MULTILOG, "status: exiting")),
            vec![Event::QueueManagerExited]
        );
    }

    #[test]
    fn bounce_and_triple_bounce() {
        assert_eq!(
            events(real(MULTILOG, "bounce msg ")),
            vec![Event::BounceNotification {
                kind: BounceKind::NonDelivery
            }]
        );
        // qmail-send.c's wording; no triple bounce happened in the real run.
        assert_eq!(
            events("@400000006b01fd1902b7cb0c triple bounce: discarding bounce/746540"),
            vec![Event::BounceDiscarded]
        );
    }

    #[test]
    fn warnings_and_alerts() {
        let warning = "@400000006b01fd1902b7cb0c warning: trouble opening remote/16/746540; will try again later";
        assert_eq!(
            events(warning),
            vec![Event::DaemonProblem {
                daemon: "qmail-send",
                severity: Severity::Warning
            }]
        );
        let alert = "@400000006b01fd1902b7cb0c alert: oh no! lost spawn connection! dying...";
        assert_eq!(
            events(alert),
            vec![Event::DaemonProblem {
                daemon: "qmail-send",
                severity: Severity::Alert
            }]
        );
    }

    #[test]
    fn splogger_lines_use_the_splogger_stamp() {
        let line = real(SPLOGGER, "new msg 746539");
        assert_eq!(events(line), vec![Event::NewMessage { queue_id: "746539" }]);
        assert_eq!(absolute(line), 1_795_292_431.033_035);
        let parsed = parse(line.as_bytes());
        assert_eq!(parsed.time_text, b"1795292431.033035");
    }

    #[test]
    fn multilog_and_splogger_copies_give_the_same_events() {
        for (m, s) in MULTILOG.lines().zip(SPLOGGER.lines()) {
            assert_eq!(events(m), events(s), "{m}\n{s}");
            // Both stamps were taken from the same pipe within a millisecond.
            assert!((absolute(m) - absolute(s)).abs() < 0.01, "{m}\n{s}");
        }
        assert_eq!(MULTILOG.lines().count(), 728);
        assert_eq!(SPLOGGER.lines().count(), 728);
    }

    #[test]
    fn tai64nlocal_lines_with_indimail_suffixes() {
        let text = include_str!("../../tests/fixtures/qmail/indimail_readme_slowq_tai64nlocal.log");
        let line = real(text, "starting delivery 4:");
        assert_eq!(
            events(line),
            vec![Event::DeliveryStarted {
                delivery_id: 4,
                queue_id: "932523",
                transport: "local",
                recipient: "mbhangui@argos.indimail.org"
            }]
        );
        match parse(line.as_bytes()).time {
            Some(LogTime::LocalDateTime {
                year: 2021,
                month: 6,
                day: 5,
                second_of_day,
                nanosecond: 803_601_500,
            }) => assert_eq!(second_of_day, 20 * 3600 + 42 * 60 + 52),
            other => panic!("{other:?}"),
        }
        assert_eq!(events(real(text, "delayed jobs=1 slowq")).len(), 2);
        assert_eq!(
            events(real(text, "end msg 932523 slowq")),
            vec![Event::MessageRemoved { queue_id: "932523" }]
        );
        // Every line of the sample is understood.
        for line in text.lines() {
            events(line);
        }
    }

    #[test]
    fn indimail_samples_parse_except_indimail_only_lines() {
        let multilog =
            include_str!("../../tests/fixtures/qmail/indimail_readme_multilog_tai64n.log");
        let docker =
            include_str!("../../tests/fixtures/qmail/mbhangui_docker_readme_deliver_log.log");
        for line in multilog.lines().chain(docker.lines()) {
            // indimail's qmail-smtpd X-Bogosity note and qmail-daemon's
            // multi-queue start-up lines are not qmail's.
            let indimail_only = line.contains("qmail-smtpd: pid") || line.contains("qmail-daemon:");
            let parsed = matches!(parse(line.as_bytes()).outcome, LineOutcome::Parsed(_));
            assert_eq!(parsed, !indimail_only, "{line}");
        }
        assert_eq!(
            events(real(docker, "status: local 1/10 remote 0/20 queue5")).len(),
            2
        );
    }

    #[test]
    fn bare_splogger_output_without_syslog() {
        let text =
            include_str!("../../tests/fixtures/qmail/notqmail_TEST.deliver_splogger_examples.log");
        // `qmail: new msg 53 ` with the trailing space qmail-send writes.
        assert_eq!(
            events(real(text, "new msg 53")),
            vec![Event::NewMessage { queue_id: "53" }]
        );
        assert_eq!(parse(b"qmail: new msg 53 ").time, None);
        for line in text.lines() {
            events(line);
        }
    }

    #[test]
    fn awstats_examples_in_both_envelopes() {
        let text =
            include_str!("../../tests/fixtures/qmail/awstats_maillogconvert_comment_examples.log");
        let line = real(
            text,
            "gandalf qmail: 1063526289.574100 starting delivery 251",
        );
        assert_eq!(absolute(line), 1_063_526_289.574_1);
        for line in text.lines() {
            events(line);
        }
    }

    #[test]
    fn tcpserver_lines() {
        assert_eq!(
            events(real(TCPSERVER, "status: 3/20")),
            vec![Event::SmtpConcurrency {
                service: "smtpd",
                open: 3,
                limit: 20
            }]
        );
        assert_eq!(
            events(real(TCPSERVER, "pid 16189 from")),
            vec![Event::SmtpConnect { service: "smtpd" }]
        );
        assert_eq!(events(real(TCPSERVER, "ok 16189")), vec![]);
        assert_eq!(events(real(TCPSERVER, "end 16210 status 256")), vec![]);
        assert_eq!(
            events(real(TCPSERVER, "deny 16205")),
            vec![Event::SpamVerdict {
                filter: "tcprules",
                verdict: Verdict::Denied,
                reason: "denylisted"
            }]
        );
        for line in TCPSERVER.lines() {
            events(line);
        }
    }

    #[test]
    fn tcpserver_through_syslog_keeps_the_tag_as_service() {
        let text =
            include_str!("../../tests/fixtures/qmail/mail_toaster_6_issue284_tcpserver_syslog.log");
        assert_eq!(
            events(real(text, "tcpserver: pid 40045")),
            vec![Event::SmtpConnect {
                service: "vpopmaild"
            }]
        );
        for line in text.lines() {
            events(line);
        }
    }

    #[test]
    fn rblsmtpd_rejections() {
        let text = include_str!("../../tests/fixtures/qmail/fail2ban_qmail_rblsmtpd.log");
        let verdict = |reason| {
            vec![Event::SpamVerdict {
                filter: "rblsmtpd",
                verdict: Verdict::Denied,
                reason,
            }]
        };
        assert_eq!(events(real(text, "pid 19597")), verdict("dnsbl_temporary"));
        assert_eq!(
            events(real(text, "relays.ordb.org blocked")),
            verdict("dnsbl")
        );
        assert_eq!(
            events(
                "@400000006b01fd1d01ee397c rblsmtpd: 192.0.2.7 pid 301: 553 listed, see http://x/"
            ),
            verdict("dnsbl_permanent")
        );
        assert_eq!(
            events(real(text, "421 badiprbl")),
            vec![Event::SmtpReject {
                service: "smtpd",
                stage: RejectStage::Other,
                code: 421
            }]
        );
    }

    #[test]
    fn seed_example_cleaned() {
        let text = include_str!("../../tests/fixtures/qmail/seed_qmail_multilog_cleaned.log");
        let all: Vec<_> = text.lines().flat_map(events).collect();
        assert_eq!(all.len(), 9);
        assert!(all.contains(&Event::DeliveryResult {
            delivery_id: 2392,
            status: DeliveryStatus::Sent
        }));
        // 2000-03-06, the example's date.
        assert!((absolute(text.lines().next().unwrap_or("")) - 952_364_710.670_309_5).abs() < 1e-6);
    }

    #[test]
    fn other_programs_are_ignored_and_unknown_shapes_unparsed() {
        for line in [
            "Nov 21 10:00:01 mx1 postfix/smtpd[1]: connect from x[1.2.3.4]",
            "Nov 21 10:00:01 mx1 dovecot: imap-login: Login: user=<a>",
        ] {
            assert_eq!(
                parse(line.as_bytes()).outcome,
                LineOutcome::Ignored,
                "{line}"
            );
        }
        for line in [
            "",
            "@",
            "@400000006b01fd1d01ee397c",
            "@400000006b01fd1d01ee397c something new",
            "@400000006b01fd1d01ee397cnew msg 1",
            "@400000006b01fd1d01ee397c new msg x",
            "@400000006b01fd1d01ee397c starting delivery 1: msg 2 to pigeon a@b",
            "@400000006b01fd1d01ee397c status: local 1/10",
            "@400000006b01fd1d01ee397c delivery 3: maybe: x",
            "2026-11-21 20:20:31.5 new msg",
            "Nov 21 10:00:01 mx qmail: 1795292431.033035 hello",
        ] {
            assert_eq!(
                parse(line.as_bytes()).outcome,
                LineOutcome::Unparsed,
                "{line}"
            );
        }
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = parse(&bytes);
            let _ = recognizes(&bytes);
        }

        #[test]
        fn never_panics_on_cut_real_lines(i in 0usize..728, cut in 0usize..200) {
            for text in [MULTILOG, SPLOGGER] {
                if let Some(line) = text.lines().nth(i) {
                    let b = line.as_bytes();
                    let _ = parse(&b[..cut.min(b.len())]);
                    let _ = parse(&b[cut.min(b.len())..]);
                }
            }
        }
    }
}
