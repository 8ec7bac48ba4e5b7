//! Sun Java System / Oracle Communications Messaging Server: the MTA
//! transaction log (`mail.log_current`, `mail.log`, and `connection.log`
//! when `separate_connection_log` is set).
//!
//! A record is
//!
//! ```text
//! dd-Mon-yyyy hh:mm:ss.cc [process.thread] source-channel dest-channel entry-code
//!     [size] from original-to active-to [queue-file] [message-id] [diagnostics…]
//! ```
//!
//! fields separated by runs of spaces. Real logs write one record per line;
//! the documentation folds records over indented continuation lines for
//! print. [`parse`] takes one whole record: [`RecordJoiner`] turns lines
//! into records (a record starts at a line that starts with the date,
//! [`starts_record`]; other lines are its continuation), and the pipeline
//! feeds it.
//!
//! The entry code is an action letter and modifier letters (`EEC`:
//! enqueued over ESMTP with CHUNKING). Actions read: `E` enqueue, `D`
//! dequeue (delivered), `Q` temporary failure (requeued), `R` permanent
//! failure, `J` rejected submission, `B` bad SMTP command, `O`/`C`
//! connection opened/closed (`LOG_CONNECTION`; the destination channel
//! field is `+` inbound or `-` outbound). Modifiers read: `A` (SASL), `C`
//! (chunking), `E` (ESMTP), `L` (LMTP), `S` (TLS). Any other action or
//! modifier makes the record [`LineOutcome::Unparsed`]: never guessed.
//!
//! The envelope from is blank for notifications, so it is recognised by
//! position: the original recipient is the first field with a `type;`
//! prefix (`rfc822;bob@x`, or `rfc822;` then the address as its own field).
//! The queue file (`LOG_FILENAME=1`) and the message id (`LOG_MESSAGE_ID=1`)
//! are optional. A message is identified by its message id, else by its
//! queue file name without the attempt letters and the `.NN` suffix. The
//! first two letters of a queue file name count the message's earlier
//! failed attempts in complemented base 36 (`ZZ` none, `ZY` one, `ZX`
//! two…), so a record carries its attempt number itself ([`attempt`]).
//!
//! Byte-level slicing, no regex, no allocation; never panics.

use crate::event::{DeliveryStatus, Direction, Event, Events, RejectStage};
use crate::line::{as_str, parse_u64};
use crate::parser::time::{month_number, LogTime};
use crate::parser::{LineOutcome, ParsedLine};
use smallvec::smallvec;

/// Longest record the [`RecordJoiner`] assembles; further continuation
/// lines are dropped (real records are one line).
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// Whether `line` starts a record: it begins with `d[d]-Mon-yyyy hh:mm:ss`.
pub fn starts_record(line: &[u8]) -> bool {
    stamp(line).is_some()
}

/// Whether `line` is the first line of a record of this format (date,
/// channels and a known entry code), for format detection.
pub fn recognizes(line: &[u8]) -> bool {
    stamp(line).is_some_and(|(_, n)| header(&line[n..]).is_some())
}

/// `d[d]-Mon-yyyy hh:mm:ss[.cc]` (month in any case, as VMS-era versions
/// wrote `20-JAN-1998`) followed by a space or the end: local time, and
/// the stamp's length.
fn stamp(line: &[u8]) -> Option<(LogTime, usize)> {
    let dash = line.iter().take(3).position(|&b| b == b'-')?;
    let day = match &line[..dash] {
        [d] if d.is_ascii_digit() => u32::from(d - b'0'),
        [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => {
            u32::from(a - b'0') * 10 + u32::from(b - b'0')
        }
        _ => return None,
    };
    let rest = line.get(dash + 1..)?;
    let (mon, rest) = (rest.get(..3)?, rest.get(3..)?);
    let month = month_number(&[
        mon[0].to_ascii_uppercase(),
        mon[1].to_ascii_lowercase(),
        mon[2].to_ascii_lowercase(),
    ])?;
    let rest = rest.strip_prefix(b"-")?;
    let s = rest.get(..13)?;
    let digit = |i: usize| s[i].is_ascii_digit().then(|| u32::from(s[i] - b'0'));
    if s[4] != b' ' || s[7] != b':' || s[10] != b':' {
        return None;
    }
    let year = digit(0)? * 1000 + digit(1)? * 100 + digit(2)? * 10 + digit(3)?;
    let h = digit(5)? * 10 + digit(6)?;
    let m = digit(8)? * 10 + digit(9)?;
    let sec = digit(11)? * 10 + digit(12)?;
    if !(1..=31).contains(&day) || h > 23 || m > 59 || sec > 60 {
        return None;
    }
    let mut len = dash + 5 + 13;
    let mut nanosecond = 0;
    if let Some(frac) = rest[13..].strip_prefix(b".") {
        let n = frac.iter().take_while(|b| b.is_ascii_digit()).count();
        if n == 0 || n > 9 {
            return None;
        }
        let v = parse_u64(&frac[..n])?;
        nanosecond = (v * 10u64.pow(9 - n as u32)) as u32;
        len += 1 + n;
    }
    if !matches!(line.get(len), None | Some(b' ' | b'\t')) {
        return None;
    }
    Some((
        LogTime::LocalDateTime {
            year: year as i32,
            month,
            day: day as u8,
            second_of_day: h * 3600 + m * 60 + sec,
            nanosecond,
        },
        len,
    ))
}

/// Whitespace-separated fields of a record, with access to the rest.
struct Fields<'a> {
    rest: &'a [u8],
}

impl<'a> Fields<'a> {
    fn new(text: &'a [u8]) -> Fields<'a> {
        Fields { rest: text }
    }

    /// What follows the fields taken so far, without leading blanks.
    fn rest(&self) -> &'a [u8] {
        let n = self
            .rest
            .iter()
            .take_while(|b| matches!(b, b' ' | b'\t'))
            .count();
        &self.rest[n..]
    }

    /// The next field without taking it.
    fn peek(&self) -> Option<&'a [u8]> {
        let rest = self.rest();
        let end = rest
            .iter()
            .position(|b| matches!(b, b' ' | b'\t'))
            .unwrap_or(rest.len());
        (end > 0).then(|| &rest[..end])
    }
}

impl<'a> Iterator for Fields<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        let rest = self.rest();
        let end = rest
            .iter()
            .position(|b| matches!(b, b' ' | b'\t'))
            .unwrap_or(rest.len());
        self.rest = &rest[end..];
        (end > 0).then(|| &rest[..end])
    }
}

/// A process/thread id as LOG_PROCESS writes it: hex digits and dots,
/// with at least one dot (`1e488.0`, `1f625.2.0`).
fn is_process_id(field: &[u8]) -> bool {
    field.first().is_some_and(u8::is_ascii_hexdigit)
        && field.contains(&b'.')
        && field.iter().all(|b| b.is_ascii_hexdigit() || *b == b'.')
}

/// An entry code's shape: one to six capital letters.
fn is_code_shape(field: &[u8]) -> bool {
    (1..=6).contains(&field.len()) && field.iter().all(u8::is_ascii_uppercase)
}

/// A channel name: letters, digits, `_`, `-`, `$` (not a code).
fn is_channel(field: &[u8]) -> bool {
    !field.is_empty()
        && !is_code_shape(field)
        && field
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'$'))
}

/// The action of an entry code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Enqueue,
    Dequeue,
    Requeue,
    Reject,
    Rejected,
    BadCommand,
    Open,
    Close,
}

/// The action of `code`, if its letter and every modifier are known.
fn action(code: &[u8]) -> Option<Action> {
    let (first, modifiers) = code.split_first()?;
    if !modifiers
        .iter()
        .all(|m| matches!(m, b'A' | b'C' | b'E' | b'L' | b'S'))
    {
        return None;
    }
    Some(match first {
        b'E' => Action::Enqueue,
        b'D' => Action::Dequeue,
        b'Q' => Action::Requeue,
        b'R' => Action::Reject,
        b'J' => Action::Rejected,
        b'B' => Action::BadCommand,
        b'O' => Action::Open,
        b'C' => Action::Close,
        _ => return None,
    })
}

/// The fields before the size: channels and the entry code's action.
struct Header<'a> {
    channel: &'a [u8],
    /// The destination channel, `+`/`-` for connection records, or
    /// `None` where the field is blank (dequeue records).
    second: Option<&'a [u8]>,
    action: Action,
    fields: Fields<'a>,
}

fn header(text: &[u8]) -> Option<Header<'_>> {
    let mut fields = Fields::new(text);
    let mut first = fields.next()?;
    if is_process_id(first) {
        first = fields.next()?;
    }
    if !is_channel(first) {
        return None;
    }
    let f = fields.next()?;
    let (second, code) = if is_code_shape(f) {
        (None, f)
    } else if f == b"+" || f == b"-" || is_channel(f) {
        (Some(f), fields.next()?)
    } else {
        return None;
    };
    Some(Header {
        channel: first,
        second,
        action: action(code)?,
        fields,
    })
}

/// Parses one record (one line, or folded lines joined by
/// [`RecordJoiner`]).
pub fn parse(record: &[u8]) -> ParsedLine<'_> {
    let Some((time, n)) = stamp(record) else {
        return ParsedLine::unparsed();
    };
    let events = header(&record[n..]).and_then(entry);
    ParsedLine {
        time: Some(time),
        time_text: &record[..n],
        outcome: events.map_or(LineOutcome::Unparsed, LineOutcome::Parsed),
    }
}

fn entry(h: Header<'_>) -> Option<Events<'_>> {
    let channel = as_str(h.channel)?;
    let mut fields = h.fields;
    match h.action {
        Action::Open | Action::Close => {
            let direction = match h.second? {
                b"+" => Direction::Inbound,
                b"-" => Direction::Outbound,
                _ => return None,
            };
            let event = if h.action == Action::Open {
                Event::ConnectionOpened {
                    service: channel,
                    direction,
                }
            } else {
                Event::ConnectionClosed {
                    service: channel,
                    direction,
                }
            };
            Some(smallvec![event])
        }
        Action::BadCommand => Some(Events::new()),
        Action::Rejected => {
            parse_u64(fields.next()?)?;
            let code = fields.find_map(reply_code)?;
            Some(smallvec![Event::SmtpReject {
                service: channel,
                stage: RejectStage::Other,
                code,
            }])
        }
        Action::Enqueue | Action::Dequeue | Action::Requeue | Action::Reject => {
            let size_blocks = parse_u64(fields.next()?)?;
            let env = envelope(fields)?;
            let event = match h.action {
                Action::Enqueue => Event::RecipientEnqueued {
                    message: env.message,
                    recipient: env.recipient,
                    size_blocks,
                },
                action => Event::QueuedDelivery {
                    message: env.message,
                    transport: channel,
                    recipient: env.recipient,
                    status: match action {
                        Action::Dequeue => DeliveryStatus::Sent,
                        Action::Requeue => DeliveryStatus::Deferred,
                        _ => DeliveryStatus::Bounced,
                    },
                    attempt: env.attempt,
                },
            };
            Some(smallvec![event])
        }
    }
}

/// An SMTP reply code in the diagnostics: `550`, `smtp;550`.
fn reply_code(field: &[u8]) -> Option<u16> {
    let field = field.strip_prefix(b"smtp;").unwrap_or(field);
    match field {
        [a @ (b'4' | b'5'), b, c] if b.is_ascii_digit() && c.is_ascii_digit() => {
            Some(u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0'))
        }
        _ => None,
    }
}

/// What a message record says about its message and recipient.
struct Envelope<'a> {
    /// The message id, else the queue file's stable part, else `None`.
    message: Option<&'a str>,
    recipient: &'a str,
    attempt: Option<u32>,
}

/// `type;address` (the original recipient), or `type;` alone when the
/// address follows as its own field.
fn is_typed_address(field: &[u8]) -> bool {
    memchr::memchr(b';', field).is_some_and(|i| {
        i > 0
            && field[..i]
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || *b == b'-')
    })
}

/// `from original-to active-to [queue-file] [message-id]`.
fn envelope(mut fields: Fields<'_>) -> Option<Envelope<'_>> {
    let mut original = fields.next()?;
    if !is_typed_address(original) {
        // The envelope from; blank for notifications, then the field is
        // already the original recipient.
        original = fields.next()?;
        if !is_typed_address(original) {
            return None;
        }
    }
    if original.ends_with(b";") {
        // `rfc822; bob@x`: the address is the next field.
        original = fields.next()?;
    }
    let original = original
        .iter()
        .position(|&b| b == b';')
        .map_or(original, |i| &original[i + 1..]);
    let recipient = match fields.peek() {
        Some(f) if !is_queue_file(f) && !f.starts_with(b"<") && !f.starts_with(b"(") => {
            fields.next();
            f
        }
        _ => original,
    };
    let file = fields.peek().filter(|f| is_queue_file(f));
    if file.is_some() {
        fields.next();
    }
    let message_id = fields
        .peek()
        .filter(|f| f.len() > 2 && f.starts_with(b"<") && f.ends_with(b">"));
    let message = match (message_id, file) {
        (Some(id), _) => Some(as_str(id)?),
        (None, Some(file)) => Some(as_str(queue_file_stem(file))?),
        (None, None) => None,
    };
    Some(Envelope {
        message,
        recipient: as_str(recipient)?,
        attempt: file.and_then(attempt),
    })
}

/// The file name part of a queue file path.
fn base_name(path: &[u8]) -> &[u8] {
    memchr::memrchr(b'/', path).map_or(path, |i| &path[i + 1..])
}

/// `imta/queue/tcp_local/ZZ01ITRF7BO388000FCN.00`,
/// `/opt/SUNWmsgsr/data/queue/tcp_local/001/ZZf0s690kN_y0.00`: two attempt
/// letters, a name, `.` and two digits.
fn is_queue_file(field: &[u8]) -> bool {
    let name = base_name(field);
    name.len() >= 6
        && name[..2]
            .iter()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase())
        && matches!(name[name.len() - 3..], [b'.', a, b] if a.is_ascii_digit() && b.is_ascii_digit())
        && name[2..name.len() - 3]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'_' || *b == b'-')
}

/// The part of a queue file name that stays the same across retries:
/// without directory, attempt letters and `.NN` suffix.
fn queue_file_stem(path: &[u8]) -> &[u8] {
    let name = base_name(path);
    name.get(2..name.len().saturating_sub(3)).unwrap_or(name)
}

/// The attempt a queue file name stands for: 1 + the earlier failed
/// attempts its first two letters count in complemented base 36 (`ZZ` → 1,
/// `ZY` → 2, `ZX` → 3, `YZ` → 37).
pub fn attempt(queue_file: &[u8]) -> Option<u32> {
    let name = base_name(queue_file);
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(u32::from(b - b'0')),
        b'A'..=b'Z' => Some(u32::from(b - b'A') + 10),
        _ => None,
    };
    let (a, b) = (digit(*name.first()?)?, digit(*name.get(1)?)?);
    Some((35 - a) * 36 + (35 - b) + 1)
}

/// Assembles records from lines: a line that [`starts_record`] begins a
/// new record and completes the one before; other lines continue it
/// (joined with one space, their indentation dropped); blank lines are
/// skipped; a continuation with no record before it is a record of its
/// own (it will not parse). The last record is complete only at
/// [`RecordJoiner::flush`] (end of input, or end of a batch in the live
/// daemon: real logs write one record per line, so nothing continues it).
/// Two buffers, reused: no allocation once warm.
#[derive(Debug, Default)]
pub struct RecordJoiner {
    current: Vec<u8>,
    ready: Vec<u8>,
}

impl RecordJoiner {
    /// Feeds one line (without newline); returns the record it completed.
    pub fn push(&mut self, line: &[u8]) -> Option<&[u8]> {
        if starts_record(line) {
            std::mem::swap(&mut self.current, &mut self.ready);
            self.current.clear();
            self.current.extend_from_slice(line);
            return (!self.ready.is_empty()).then_some(&self.ready[..]);
        }
        let start = line
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(line.len());
        let text = &line[start..];
        if text.is_empty() {
            return None;
        }
        if self.current.is_empty() {
            self.ready.clear();
            self.ready.extend_from_slice(line);
            return Some(&self.ready[..]);
        }
        if self.current.len() + 1 + text.len() <= MAX_RECORD_BYTES {
            self.current.push(b' ');
            self.current.extend_from_slice(text);
        }
        None
    }

    /// Completes the record being assembled, if any.
    pub fn flush(&mut self) -> Option<&[u8]> {
        std::mem::swap(&mut self.current, &mut self.ready);
        self.current.clear();
        (!self.ready.is_empty()).then_some(&self.ready[..])
    }

    /// Whether a record is being assembled.
    pub fn is_empty(&self) -> bool {
        self.current.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(record: &str) -> Events<'_> {
        match parse(record.as_bytes()).outcome {
            LineOutcome::Parsed(e) => e,
            other => panic!("{record}: {other:?}"),
        }
    }

    fn unparsed(record: &str) -> bool {
        parse(record.as_bytes()).outcome == LineOutcome::Unparsed
    }

    // Records below are the documentation's, unfolded (see
    // tests/fixtures/messaging_server/README.md).

    #[test]
    fn enqueue_with_process_id_queue_file_and_message_id() {
        let r = "19-Feb-1998 10:52:05.41 1e488.0 l            tcp_local    E 1 adam@sesta.com rfc822;bobby@hosta.sesta.com bobby@hosta.sesta.com imta/queue/tcp_local/ZZ01ITRF7BO388000FCN.00 <01ITRF7BDHS6000FCN@SESTA.COM>";
        assert_eq!(
            events(r).to_vec(),
            vec![Event::RecipientEnqueued {
                message: Some("<01ITRF7BDHS6000FCN@SESTA.COM>"),
                recipient: "bobby@hosta.sesta.com",
                size_blocks: 1,
            }]
        );
        let p = parse(r.as_bytes());
        assert_eq!(p.time_text, b"19-Feb-1998 10:52:05.41");
        assert_eq!(
            p.time,
            Some(LogTime::LocalDateTime {
                year: 1998,
                month: 2,
                day: 19,
                second_of_day: 39_125,
                nanosecond: 410_000_000
            })
        );
    }

    #[test]
    fn enqueue_with_blank_from_and_without_file_or_id() {
        let r = "20-JAN-1998 13:11:08 tcp_local    process      E 1 rfc822;adam@sesta.com adam@sesta.com imta/queue/process/ZZ01ISLNBB1JOE94DSGB.00 <01ISLNBFKIDS94DUJ8@sesta.com>,<01ISLNBAWV3094DUWH@sesta.com>";
        assert_eq!(
            events(r).to_vec(),
            vec![Event::RecipientEnqueued {
                message: Some("<01ISLNBFKIDS94DUJ8@sesta.com>,<01ISLNBAWV3094DUWH@sesta.com>"),
                recipient: "adam@sesta.com",
                size_blocks: 1,
            }]
        );
        let r = "16-Feb-2007 14:54:13.72 tcp_local ims-ms EE 1 adam@sesta.com rfc822;marlowe@siroe.com marlowe@ims-ms-daemon";
        assert_eq!(
            events(r).to_vec(),
            vec![Event::RecipientEnqueued {
                message: None,
                recipient: "marlowe@ims-ms-daemon",
                size_blocks: 1,
            }]
        );
    }

    #[test]
    fn dequeue_requeue_and_reject_by_channel_with_attempts() {
        let d = "15-Jan-1998 20:45:51.55 tcp_local                  D 3 adam@hosta.sesta.com rfc822;user@some.org user@some.org imta/queue/tcp_local/ZX01IS67NY4RRK9UN7GP.00 <01IRUD7SVA3Q9UN2D4@sesta.com> dns;host.some.org (TCP|206.184.139.12|2788|192.1.1.1|25) (All set, fire away) smtp; 250 Ok";
        assert_eq!(
            events(d).to_vec(),
            vec![Event::QueuedDelivery {
                message: Some("<01IRUD7SVA3Q9UN2D4@sesta.com>"),
                transport: "tcp_local",
                recipient: "user@some.org",
                status: DeliveryStatus::Sent,
                attempt: Some(3),
            }]
        );
        // Without a message id, the queue file's stable part is the key.
        let q = "26-Feb-2007 16:58:11.20 tcp_local                 Q 1 adam@sesta.com rfc822;user@some.org user@some.org /opt/SUNWmsgsr/data/queue/tcp_local/001/ZYf0s690kN_y0.01 TCP active open: Failed connect() 192.1.1.1:25    Error: no route to host";
        assert_eq!(
            events(q).to_vec(),
            vec![Event::QueuedDelivery {
                message: Some("f0s690kN_y0"),
                transport: "tcp_local",
                recipient: "user@some.org",
                status: DeliveryStatus::Deferred,
                attempt: Some(2),
            }]
        );
        let r = "20-JAN-1998 13:11:11 tcp_local                  R 1 adam@sesta.com rfc822;nonesuch@siroe.com nonesuch@siroe.com imta/queue/tcp_local/ZZ01ISLNBB1JOE94DUWH.00 <01ISLNBAWV3094DUWH@sesta.com> dns;thor.siroe.com (TCP|206.184.139.12|2788|192.160.253.66|25) (THOR.SIROE.COM -- Server ESMTP [iMS V5.0 #8694]) smtp; 553 unknown or illegal user: nonesuch@siroe.com";
        assert!(matches!(
            events(r)[0],
            Event::QueuedDelivery {
                status: DeliveryStatus::Bounced,
                attempt: Some(1),
                ..
            }
        ));
        let local = "28-Feb-2007 11:51:15.32 ims-ms                  D 1 service@siroe.com rfc822;adam@sesta.com adam@ims-ms-daemon";
        assert!(matches!(
            events(local)[0],
            Event::QueuedDelivery {
                transport: "ims-ms",
                message: None,
                attempt: None,
                ..
            }
        ));
    }

    #[test]
    fn rejected_submission_with_its_reply_code() {
        for (r, code) in [
            ("28-May-1998 12:02:23 tcp_local            J 0 harold@varrius.com rfc822; alan@very.bogus.com 550 5.7.1 Relaying not permitted: alan@very.bogus.com", 550),
            ("26-Feb-2007 14:10:06.89 tcp_local                 JE 0 harold@varrius.com rfc822; alan@very.bogus.com 530 5.7.1 Relaying not allowed: alan@very.bogus.com", 530),
        ] {
            assert_eq!(
                events(r).to_vec(),
                vec![Event::SmtpReject {
                    service: "tcp_local",
                    stage: RejectStage::Other,
                    code
                }]
            );
        }
        assert!(unparsed(
            "28-May-1998 12:02:23 tcp_local J 0 harold@varrius.com rfc822;alan@x no code here"
        ));
    }

    #[test]
    fn connections_by_direction() {
        let o = "19-Feb-1998 10:52:10.79 1f625.2.0 tcp_local    -            O TCP|206.184.139.12|5900|206.184.139.66|25 SMTP/hostb.sesta.com/mailhub.sesta.com";
        assert_eq!(
            events(o).to_vec(),
            vec![Event::ConnectionOpened {
                service: "tcp_local",
                direction: Direction::Outbound
            }]
        );
        let c =
            "28-Feb-2007 11:51:15.66 tcp_local + C TCP|206.184.139.12|25|192.160.253.66|1244 SMTP";
        assert_eq!(
            events(c).to_vec(),
            vec![Event::ConnectionClosed {
                service: "tcp_local",
                direction: Direction::Inbound
            }]
        );
        assert!(unparsed(
            "28-Feb-2007 11:51:15.66 tcp_local C TCP|1|2|3|4 SMTP"
        ));
    }

    #[test]
    fn entry_codes_known_and_unknown() {
        for code in ["E", "EE", "EEC", "EL", "ES", "EA", "EESA"] {
            assert!(action(code.as_bytes()).is_some(), "{code}");
        }
        assert_eq!(action(b"BA"), Some(Action::BadCommand));
        assert_eq!(action(b"BSA"), Some(Action::BadCommand));
        for code in ["K", "EX", "Z", "DQ", "V"] {
            assert!(action(code.as_bytes()).is_none(), "{code}");
        }
        assert!(unparsed(
            "28-Feb-2007 11:51:15.32 ims-ms K 1 a@b rfc822;c@d c@d"
        ));
        assert!(unparsed(
            "28-Feb-2007 11:51:15.32 ims-ms DX 1 a@b rfc822;c@d c@d"
        ));
        assert!(events("28-Feb-2007 11:51:15.32 tcp_local + BSA 0 a@b rfc822;c@d c@d").is_empty());
    }

    #[test]
    fn attempt_letters_are_complemented_base_36() {
        assert_eq!(
            attempt(b"imta/queue/tcp_local/ZZ01ITRF7BO388000FCN.00"),
            Some(1)
        );
        assert_eq!(attempt(b"ZY01IS3D2ZP7FQ9UN54R.00"), Some(2));
        assert_eq!(attempt(b"ZXf0s690kN_y0.00"), Some(3));
        assert_eq!(attempt(b"Z0x.00"), Some(36));
        assert_eq!(attempt(b"YZx.00"), Some(37));
        assert_eq!(attempt(b"00x.00"), Some(1296));
        assert_eq!(attempt(b"zzx.00"), None);
        assert_eq!(attempt(b""), None);
    }

    #[test]
    fn record_starts_and_stamps() {
        assert!(starts_record(
            b"19-Feb-1998 10:52:05.41 1e488.0 l tcp_local E 1"
        ));
        assert!(starts_record(b"20-JAN-1998 13:11:05 l tcp_local E 1"));
        assert!(starts_record(b"5-Feb-2007 01:02:03.5"));
        assert!(!starts_record(b" 19-Feb-1998 10:52:05.41 l tcp_local E 1"));
        assert!(!starts_record(b"19-Feb-1998 10:52:05.41x"));
        assert!(!starts_record(b"19-Foo-1998 10:52:05.41"));
        assert!(!starts_record(b"19-Feb-1998 25:52:05.41"));
        assert!(!starts_record(b"19-Feb-1998 10:52"));
        assert!(!starts_record(
            b"Nov 21 10:00:00 mx postfix/smtpd[1]: connect"
        ));
        assert!(!starts_record(b"2026-11-21 20:20:31.033023500 new msg 1"));
    }

    #[test]
    fn recognizes_first_lines_only_of_this_format() {
        assert!(recognizes(
            b"19-Feb-1998 10:52:05.41 1e488.0 l            tcp_local    E 1"
        ));
        assert!(recognizes(b"28-Feb-2007 11:50:59.10 tcp_local + O"));
        assert!(!recognizes(b"19-Feb-1998 10:52:05.41 hello world"));
        assert!(!recognizes(
            b" adam@sesta.com rfc822;bobby@hosta.sesta.com bobby@hosta.sesta.com"
        ));
        assert!(!recognizes(b"@400000006b01fd1901f7e60c new msg 746539"));
    }

    #[test]
    fn joiner_assembles_folded_records() {
        let folded = "19-Feb-1998 10:52:10.79 1f625.2.0 tcp_local    -            O\n TCP|206.184.139.12|5900|206.184.139.66|25\n SMTP/hostb.sesta.com/mailhub.sesta.com\n\n   \n28-Feb-2007 11:50:59.10 tcp_local + O\norphan\n";
        let mut j = RecordJoiner::default();
        let mut out = Vec::new();
        for line in folded.lines() {
            if let Some(r) = j.push(line.as_bytes()) {
                out.push(String::from_utf8_lossy(r).into_owned());
            }
        }
        assert!(!j.is_empty());
        if let Some(r) = j.flush() {
            out.push(String::from_utf8_lossy(r).into_owned());
        }
        assert!(j.is_empty());
        assert_eq!(j.flush(), None);
        assert_eq!(
            out,
            [
                "19-Feb-1998 10:52:10.79 1f625.2.0 tcp_local    -            O TCP|206.184.139.12|5900|206.184.139.66|25 SMTP/hostb.sesta.com/mailhub.sesta.com",
                "28-Feb-2007 11:50:59.10 tcp_local + O orphan",
            ]
        );
        // A continuation with no record before it stands alone.
        let mut j = RecordJoiner::default();
        assert_eq!(j.push(b" stray"), Some(&b" stray"[..]));
        assert_eq!(j.push(b""), None);
        assert!(j.is_empty());
    }

    #[test]
    fn joiner_caps_record_size() {
        let mut j = RecordJoiner::default();
        assert_eq!(j.push(b"19-Feb-1998 10:52:10.79 tcp_local - O"), None);
        let long = vec![b'x'; 4096];
        for _ in 0..(2 * MAX_RECORD_BYTES / long.len()) {
            let mut line = vec![b' '];
            line.extend_from_slice(&long);
            assert_eq!(j.push(&line), None);
        }
        assert!(j.flush().is_some_and(|r| r.len() <= MAX_RECORD_BYTES));
    }

    #[test]
    fn never_panics_on_truncations() {
        let r = "19-Feb-1998 10:52:12.28 1f625.3.1 tcp_local                  D 1 adam@sesta.com rfc822;bobby@hosta.sesta.com bobby@hosta.sesta.com imta/queue/tcp_local/ZZ01ITRF7BO388000FCN.00 <01ITRF7BDHS6000FCN@SESTA.COM> hosta.sesta.com dns;hosta.sesta.com";
        for end in 0..=r.len() {
            let _ = parse(&r.as_bytes()[..end]);
        }
        for end in 0..=r.len() {
            let _ = parse(&r.as_bytes()[r.len() - end..]);
        }
    }
}
