//! Hosting-provider mail logs: the per-customer SMTP log and delivery log
//! that shared-hosting platforms built on qmail publish (ICDSoft and the
//! brands that share its control panel).
//!
//! Both are comma-separated: a local time stamp, a key, then the values:
//!
//! ```text
//! 2021-03-09 12:43:51, from, correspondent@elsewhere.example.net
//! 2021-03-09 12:43:51, resp, 250 ok 1615286631 qp 15309
//! 2021-03-09 12:43:51, try, 114878, local, recipient@example.com
//! 2021-03-09 12:43:51, result, 114878, success, did_0+0+1/
//! ```
//!
//! SMTP log ([`parse_smtp`]) keys: `from` (MAIL), `to` (RCPT), `check` (the
//! server's recipient check, between a `to` and its reply), `size` (the
//! message data was received), `resp` (the server's reply to the command
//! before it). The log has no session id: a transaction is the run of lines
//! from a `from` to its last `resp`, so the parser emits one event per line
//! ([`Event::SmtpCommand`], [`Event::SmtpReply`], [`Event::RecipientCheck`])
//! and the correlator pairs each reply with the source's last command (see
//! [`crate::state`]). The listening port is not in the log (there is one
//! log per port): it comes from the source's configuration.
//!
//! Delivery log ([`parse_delivery`]) keys: `init` (a message's deliveries
//! begin; no id), `try` (a delivery starts under an id, `local` or
//! `remote`), `result` (its outcome: qmail-send's `success`, `deferral`,
//! `failure` and result text). `init` is joined to the `try` lines after it
//! by position, `try` to `result` by id, in the correlator.
//!
//! Pure functions: byte-level dispatch on the key, no allocation, no regex,
//! no panic on any input. A line with an unknown key, or a known key whose
//! values do not have the documented shape, is [`LineOutcome::Unparsed`].

use crate::event::{DeliveryStatus, Event, Events, RejectStage};
use crate::line::parse_u64;
use crate::parser::time::parse_local_datetime;
use crate::parser::{LineOutcome, ParsedLine};
use smallvec::smallvec;

/// `YYYY-MM-DD HH:MM:SS, key[, values]` split into the stamp's parse, its
/// text, the key and the values (empty when the key ends the line).
fn split(line: &[u8]) -> Option<(ParsedLineTime<'_>, &[u8], &[u8])> {
    let stamp = line.get(..19)?;
    let time = parse_local_datetime(stamp)?;
    let rest = line.get(19..)?.strip_prefix(b", ")?;
    let (key, values) = match memchr::memchr(b',', rest) {
        Some(comma) => (&rest[..comma], rest[comma + 1..].strip_prefix(b" ")?),
        None => (rest, &[][..]),
    };
    Some(((time, stamp), key, values))
}

type ParsedLineTime<'a> = (crate::parser::time::LogTime, &'a [u8]);

fn outcome<'a>((time, stamp): ParsedLineTime<'a>, events: Option<Events<'a>>) -> ParsedLine<'a> {
    ParsedLine {
        time: Some(time),
        time_text: stamp,
        outcome: events.map_or(LineOutcome::Unparsed, LineOutcome::Parsed),
    }
}

/// Whether `line` is a line of the hosting SMTP log.
pub fn recognizes_smtp(line: &[u8]) -> bool {
    matches!(parse_smtp(line).outcome, LineOutcome::Parsed(_))
}

/// Parses one line of the hosting SMTP log.
pub fn parse_smtp(line: &[u8]) -> ParsedLine<'_> {
    let Some((time, key, values)) = split(line) else {
        return ParsedLine::unparsed();
    };
    let events = match key {
        b"from" => Some(command(RejectStage::Mail, None)),
        b"to" => Some(command(RejectStage::Rcpt, None)),
        b"size" => parse_u64(values).map(|n| command(RejectStage::EndOfMessage, Some(n))),
        b"resp" => reply(values),
        b"check" => check(values),
        _ => None,
    };
    outcome(time, events)
}

fn command<'a>(stage: RejectStage, size: Option<u64>) -> Events<'a> {
    smallvec![Event::SmtpCommand { stage, size }]
}

/// `250 ok`, `554 "Refused. …"`, `250 ok 1615286631 qp 15309`.
fn reply(values: &[u8]) -> Option<Events<'_>> {
    let digits = values.get(..3)?;
    if !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let text = match values.get(3) {
        None => &[][..],
        Some(b' ') => &values[4..],
        Some(_) => return None,
    };
    let code = digits
        .iter()
        .fold(0u16, |v, d| v * 10 + u16::from(d - b'0'));
    Some(smallvec![Event::SmtpReply {
        code,
        queued: code == 250 && is_queued(text),
    }])
}

/// qmail-smtpd's answer after the message was queued: `ok <unix-time> qp
/// <pid>` (trailing words tolerated).
fn is_queued(text: &[u8]) -> bool {
    let Some(rest) = text.strip_prefix(b"ok ") else {
        return false;
    };
    let Some((_, rest)) = leading_digits(rest) else {
        return false;
    };
    let Some(rest) = rest.strip_prefix(b" qp ") else {
        return false;
    };
    leading_digits(rest).is_some_and(|(_, tail)| tail.is_empty() || tail[0] == b' ')
}

fn leading_digits(text: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = text.iter().take_while(|b| b.is_ascii_digit()).count();
    (n > 0).then(|| text.split_at(n))
}

/// `accepted rcpt, h:198.51.100.25, recipient@example.com, found existing
/// recipient`: the check's result (first field) and its detail (last
/// field), each mapped to a fixed set.
fn check(values: &[u8]) -> Option<Events<'_>> {
    let first_end = memchr::memmem::find(values, b", ")?;
    let last_start = memchr::memmem::rfind(values, b", ")? + 2;
    let first = &values[..first_end];
    let last = &values[last_start..];
    let word = first.split(|&b| b == b' ').next().unwrap_or(first);
    let result = match word {
        b"accepted" => "accepted",
        b"rejected" | b"refused" | b"denied" => "rejected",
        _ => "other",
    };
    let detail = match last {
        b"found existing recipient" => "existing_recipient",
        _ => "other",
    };
    Some(smallvec![Event::RecipientCheck { result, detail }])
}

/// Whether `line` is a line of the hosting delivery log.
pub fn recognizes_delivery(line: &[u8]) -> bool {
    matches!(parse_delivery(line).outcome, LineOutcome::Parsed(_))
}

/// Parses one line of the hosting delivery log.
pub fn parse_delivery(line: &[u8]) -> ParsedLine<'_> {
    let Some((time, key, values)) = split(line) else {
        return ParsedLine::unparsed();
    };
    let events = match key {
        b"init" => (!values.is_empty()).then(|| smallvec![Event::DeliveriesInit]),
        b"try" => try_delivery(values),
        b"result" => result(values),
        _ => None,
    };
    outcome(time, events)
}

/// The next `, `-separated field and the rest after it.
fn field(values: &[u8]) -> Option<(&[u8], &[u8])> {
    let end = memchr::memmem::find(values, b", ")?;
    Some((&values[..end], &values[end + 2..]))
}

/// `114878, local, recipient@example.com`
fn try_delivery(values: &[u8]) -> Option<Events<'_>> {
    let (id, rest) = field(values)?;
    let (channel, recipient) = field(rest)?;
    if recipient.is_empty() {
        return None;
    }
    let transport = match channel {
        b"local" => "local",
        b"remote" => "remote",
        _ => return None,
    };
    Some(smallvec![Event::SequentialDeliveryStarted {
        delivery_id: parse_u64(id)?,
        transport,
    }])
}

/// `114878, success, did_0+0+1/`, `90352, success, smtp_auth/did_0+0+1/`.
fn result(values: &[u8]) -> Option<Events<'_>> {
    let (id, rest) = field(values)?;
    let (word, text) = match field(rest) {
        Some(split) => split,
        // qmail-send may report an empty text.
        None => (rest.strip_suffix(b",").unwrap_or(rest), &[][..]),
    };
    let status = match word {
        b"success" => DeliveryStatus::Sent,
        b"deferral" => DeliveryStatus::Deferred,
        b"failure" => DeliveryStatus::Bounced,
        _ => return None,
    };
    let mut events: Events<'_> = smallvec![Event::DeliveryResult {
        delivery_id: parse_u64(id)?,
        status,
    }];
    if text.starts_with(b"smtp_auth/") {
        events.push(Event::AuthenticatedSubmission);
    }
    Some(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parser::time::LogTime;

    const SMTP: &str = include_str!("../../tests/fixtures/hosting/icdsoft_smtp.log");
    const DELIVERY: &str = include_str!("../../tests/fixtures/hosting/icdsoft_delivery.log");

    fn smtp_events(line: &str) -> Vec<Event<'_>> {
        match parse_smtp(line.as_bytes()).outcome {
            LineOutcome::Parsed(e) => e.into_vec(),
            other => panic!("{other:?} for {line}"),
        }
    }

    fn delivery_events(line: &str) -> Vec<Event<'_>> {
        match parse_delivery(line.as_bytes()).outcome {
            LineOutcome::Parsed(e) => e.into_vec(),
            other => panic!("{other:?} for {line}"),
        }
    }

    #[test]
    fn every_seed_smtp_line_parses_with_its_local_time() {
        for line in SMTP.lines() {
            let parsed = parse_smtp(line.as_bytes());
            assert!(
                matches!(parsed.outcome, LineOutcome::Parsed(ref e) if e.len() == 1),
                "{line}"
            );
            assert!(matches!(
                parsed.time,
                Some(LogTime::LocalDateTime {
                    year: 2021,
                    month: 3,
                    ..
                })
            ));
        }
        let first = SMTP.lines().next().unwrap_or_default();
        assert_eq!(
            parse_smtp(first.as_bytes()).time,
            Some(LogTime::LocalDateTime {
                year: 2021,
                month: 3,
                day: 9,
                second_of_day: 11 * 3600 + 10 * 60 + 37,
                nanosecond: 0
            })
        );
    }

    #[test]
    fn smtp_keys() {
        let line = |needle: &str| {
            SMTP.lines()
                .find(|l| l.contains(needle))
                .unwrap_or_else(|| panic!("no line with {needle}"))
        };
        assert_eq!(
            smtp_events(line("from, spam@")),
            vec![Event::SmtpCommand {
                stage: RejectStage::Mail,
                size: None
            }]
        );
        assert_eq!(
            smtp_events(line("to, <recipient")),
            vec![Event::SmtpCommand {
                stage: RejectStage::Rcpt,
                size: None
            }]
        );
        assert_eq!(
            smtp_events(line("size, 23533")),
            vec![Event::SmtpCommand {
                stage: RejectStage::EndOfMessage,
                size: Some(23533)
            }]
        );
        assert_eq!(
            smtp_events(line("resp, 554 \"Refused")),
            vec![Event::SmtpReply {
                code: 554,
                queued: false
            }]
        );
        assert_eq!(
            smtp_events(line("qp 15309")),
            vec![Event::SmtpReply {
                code: 250,
                queued: true
            }]
        );
        assert_eq!(
            smtp_events("2021-03-09 11:10:37, resp, 250 ok"),
            vec![Event::SmtpReply {
                code: 250,
                queued: false
            }]
        );
        assert_eq!(
            smtp_events(line("h:198.51.100.25")),
            vec![Event::RecipientCheck {
                result: "accepted",
                detail: "existing_recipient"
            }]
        );
        assert_eq!(
            smtp_events(line("unknown:127.0.0.1")),
            vec![Event::RecipientCheck {
                result: "accepted",
                detail: "existing_recipient"
            }]
        );
    }

    #[test]
    fn delivery_keys() {
        let lines: Vec<&str> = DELIVERY.lines().collect();
        assert_eq!(delivery_events(lines[0]), vec![Event::DeliveriesInit]);
        assert_eq!(
            delivery_events(lines[1]),
            vec![Event::SequentialDeliveryStarted {
                delivery_id: 114_878,
                transport: "local"
            }]
        );
        assert_eq!(
            delivery_events(lines[2]),
            vec![Event::DeliveryResult {
                delivery_id: 114_878,
                status: DeliveryStatus::Sent
            }]
        );
        assert_eq!(
            delivery_events(lines[5]),
            vec![
                Event::DeliveryResult {
                    delivery_id: 90352,
                    status: DeliveryStatus::Sent
                },
                Event::AuthenticatedSubmission
            ]
        );
        assert_eq!(
            delivery_events("2021-03-09 12:43:51, result, 7, deferral, Mailbox_locked/"),
            vec![Event::DeliveryResult {
                delivery_id: 7,
                status: DeliveryStatus::Deferred
            }]
        );
        assert_eq!(
            delivery_events("2021-03-09 12:43:51, result, 8, failure, Sorry,_no_mailbox_here_by_that_name._(#5.1.1)/"),
            vec![Event::DeliveryResult {
                delivery_id: 8,
                status: DeliveryStatus::Bounced
            }]
        );
        assert_eq!(
            delivery_events("2021-03-09 12:43:51, try, 9, remote, a@example.net"),
            vec![Event::SequentialDeliveryStarted {
                delivery_id: 9,
                transport: "remote"
            }]
        );
    }

    #[test]
    fn formats_do_not_recognize_each_other() {
        for line in SMTP.lines() {
            assert!(recognizes_smtp(line.as_bytes()), "{line}");
            assert!(!recognizes_delivery(line.as_bytes()), "{line}");
        }
        for line in DELIVERY.lines() {
            assert!(recognizes_delivery(line.as_bytes()), "{line}");
            assert!(!recognizes_smtp(line.as_bytes()), "{line}");
        }
    }

    #[test]
    fn garbage_is_unparsed() {
        for line in [
            "",
            "2021-03-09 11:10:37",
            "2021-03-09 11:10:37,",
            "2021-03-09 11:10:37, ",
            "2021-03-09 11:10:37, helo, mail.example.net",
            "2021-03-09 11:10:37, resp, 25",
            "2021-03-09 11:10:37, resp, 2500 ok",
            "2021-03-09 11:10:37, resp, abc",
            "2021-03-09 11:10:37, size, many",
            "2021-03-09 11:10:37, check, accepted rcpt",
            "2021-03-09 11:10:37,from, x",
            "2021-13-09 11:10:37, from, x",
            "Mar  9 11:10:37 host qmail: 1615286631.0 new msg 1",
        ] {
            assert_eq!(
                parse_smtp(line.as_bytes()).outcome,
                LineOutcome::Unparsed,
                "{line}"
            );
        }
        for line in [
            "2021-03-09 11:10:37, init",
            "2021-03-09 11:10:37, try, 1, pigeon, a@b",
            "2021-03-09 11:10:37, try, x, local, a@b",
            "2021-03-09 11:10:37, try, 1, local",
            "2021-03-09 11:10:37, result, 1, maybe, x",
            "2021-03-09 11:10:37, result, 1",
            "2021-03-09 11:10:37, from, a@b",
        ] {
            assert_eq!(
                parse_delivery(line.as_bytes()).outcome,
                LineOutcome::Unparsed,
                "{line}"
            );
        }
    }

    #[test]
    fn queued_reply_shapes() {
        assert!(is_queued(b"ok 1615286631 qp 15309"));
        assert!(is_queued(b"ok 1615286631 qp 15309 extra"));
        assert!(!is_queued(b"ok"));
        assert!(!is_queued(b"ok 1615286631"));
        assert!(!is_queued(b"ok 1615286631 qp "));
        assert!(!is_queued(b"ok 1615286631 qp 1x"));
    }

    proptest::proptest! {
        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = parse_smtp(&bytes);
            let _ = parse_delivery(&bytes);
        }

        #[test]
        fn never_panics_on_cut_real_lines(i in 0usize..18, cut in 0usize..200) {
            for text in [SMTP, DELIVERY] {
                if let Some(line) = text.lines().nth(i) {
                    let b = line.as_bytes();
                    let _ = parse_smtp(&b[..cut.min(b.len())]);
                    let _ = parse_delivery(&b[..cut.min(b.len())]);
                    let _ = parse_smtp(&b[cut.min(b.len())..]);
                }
            }
        }
    }
}
