//! Exim: mainlog, rejectlog and paniclog lines.
//!
//! Envelopes, all read by the same function:
//!
//! * Exim's own log files: `2020-02-22 01:02:05 1j5IF1-0006A7-Ub Completed`,
//!   with `+millisec` (`01:02:05.123`), a `log_timezone` offset
//!   (`2003-04-25 11:17:07 +0100 …`) and the `pid` selector (`[25213] `
//!   after the stamp). Without an offset the stamp is local time, converted
//!   with the source's zone;
//! * syslog (`log_file_path = syslog`): `Nov 21 10:00:00 mx exim[1234]: …`,
//!   the text then has no stamp of its own; other programs' lines are
//!   [`LineOutcome::Ignored`];
//! * relays that put the stamp first and a tag after it, or the tag first
//!   and Exim's stamp after it (`2019-10-22 03:39:17 mx1 exim[29786]: …`,
//!   `mail.example.com exim[3751842]: 2021-07-17 23:20:49 …`);
//! * no stamp at all: the text alone is read if it has one of the shapes
//!   below, without a time.
//!
//! The text after the envelope is dispatched on a message id
//! (`1j5IF1-0006A7-Ub`, or the longer ids of Exim 4.97+,
//! `1rl7wP-00000005vi-0000`) and its flag (`<=`, `=>`, `->`, `>>`, `*>`,
//! `==`, `**`), or on a few fixed prefixes for lines about connections;
//! reject lines are recognised by their `rejected …` wording wherever the
//! host and sender fields put it. Fields are found by their ` K=` keys; no
//! regex is run and nothing is allocated.
//!
//! Exim writes several lines whose continuation starts with white space
//! (the header dump after each rejectlog record, multi-line error texts):
//! such lines, and the `Envelope-from:`/`Envelope-to:`/`X Header:` lines of a
//! rejectlog record, are parsed as part of the record, without events.
//! Lines about one message that carry none of the flags (`SA:`, `DKIM:`,
//! transport notes) are parsed without events too: they are Exim's, and
//! understood to carry no metric.

use crate::event::{
    Delivery, DeliveryStatus, Direction, Event, Events, Lifecycle, RejectStage, SessionError,
    Severity,
};
use crate::line::{as_str, parse_u32, split_syslog};
use crate::parser::time::{parse_local_datetime, parse_rfc3339, LogTime};
use crate::parser::{LineOutcome, ParsedLine};
use memchr::memmem;
use smallvec::smallvec;

/// The `service` label of Exim's SMTP server events (Exim has one daemon).
const SERVICE: &str = "smtpd";

/// The `transport` label of an address that no transport handled: routed
/// to `:blackhole:`, failed or deferred by a router.
const NO_TRANSPORT: &str = "router";

/// Whether `line` is unmistakably Exim's: a stamp or an `exim` tag, and a
/// message-id line with a flag or a known connection or reject line.
pub fn recognizes(line: &[u8]) -> bool {
    let (parsed, strong) = parse_inner(line);
    strong && matches!(parsed.outcome, LineOutcome::Parsed(_))
}

/// Parses one Exim log line.
pub fn parse(line: &[u8]) -> ParsedLine<'_> {
    parse_inner(line).0
}

/// The parsed line and whether it is a distinctive Exim shape (used for
/// detection; continuation lines and id notes are not).
fn parse_inner(line: &[u8]) -> (ParsedLine<'_>, bool) {
    let Some(env) = envelope(line) else {
        return (ParsedLine::unparsed(), false);
    };
    let Some(text) = env.text else {
        return (
            ParsedLine {
                time: env.time,
                time_text: env.time_text,
                outcome: LineOutcome::Ignored,
            },
            false,
        );
    };
    let (outcome, strong) = match body(text) {
        Some((events, strong)) => (LineOutcome::Parsed(events), strong),
        None if env.time.is_none() && !env.tagged && continuation(text) => {
            (LineOutcome::Parsed(Events::new()), false)
        }
        None => (LineOutcome::Unparsed, false),
    };
    let strong = strong && (env.time.is_some() || env.tagged);
    (
        ParsedLine {
            time: env.time,
            time_text: env.time_text,
            outcome,
        },
        strong,
    )
}

struct Envelope<'a> {
    time: Option<LogTime>,
    time_text: &'a [u8],
    /// Came with an `exim[pid]:` tag.
    tagged: bool,
    /// The text after stamp, tag and pid; `None` for another program's line.
    text: Option<&'a [u8]>,
}

/// Splits off the stamp, the syslog tag and the `[pid]` selector.
fn envelope(line: &[u8]) -> Option<Envelope<'_>> {
    let mut time = None;
    let mut time_text: &[u8] = &[];
    let mut tagged = false;
    let mut rest = line;
    if let Some((t, len)) = stamp(line) {
        time = Some(t);
        time_text = &line[..len];
        rest = line.get(len + 1..).unwrap_or(&[]);
        if let Some(after) = strip_host_tag(rest) {
            tagged = true;
            rest = after;
        }
    } else if let Some(after) = strip_host_tag(line) {
        // `host exim[pid]: 2021-07-17 23:20:49 …`
        tagged = true;
        rest = after;
        if let Some((t, len)) = stamp(rest) {
            time = Some(t);
            time_text = &rest[..len];
            rest = rest.get(len + 1..).unwrap_or(&[]);
        }
    } else if !line.first().is_some_and(|b| b.is_ascii_whitespace()) {
        if let Some(env) = split_syslog(line) {
            if !is_exim_tag(env.program) {
                return Some(Envelope {
                    time: Some(env.time),
                    time_text: env.time_text,
                    tagged: false,
                    text: None,
                });
            }
            tagged = true;
            time = Some(env.time);
            time_text = env.time_text;
            rest = env.message;
            if let Some((t, len)) = stamp(rest) {
                time = Some(t);
                time_text = &rest[..len];
                rest = rest.get(len + 1..).unwrap_or(&[]);
            }
        }
    }
    if time.is_some() || tagged {
        rest = strip_pid(rest);
    }
    Some(Envelope {
        time,
        time_text,
        tagged,
        text: Some(rest),
    })
}

fn is_exim_tag(program: &[u8]) -> bool {
    matches!(program, b"exim" | b"exim4")
}

/// `host exim[pid]: rest` → `rest` (also `exim:` without pid).
fn strip_host_tag(text: &[u8]) -> Option<&[u8]> {
    let space = memchr::memchr(b' ', text)?;
    let tag = &text[space + 1..];
    let end = memchr::memchr(b' ', tag)?;
    let program = tag[..end].strip_suffix(b":")?;
    let program = match program.split_last() {
        Some((b']', head)) => &head[..memchr::memrchr(b'[', head)?],
        _ => program,
    };
    is_exim_tag(program).then(|| &tag[end + 1..])
}

/// `[12345] rest` → `rest`.
fn strip_pid(text: &[u8]) -> &[u8] {
    if let Some(inner) = text.strip_prefix(b"[") {
        if let Some(close) = memchr::memchr(b']', inner) {
            if close > 0 && inner[..close].iter().all(u8::is_ascii_alphanumeric) {
                if let Some(rest) = inner[close + 1..].strip_prefix(b" ") {
                    return rest;
                }
            }
        }
    }
    text
}

/// Exim's stamp at the start of `s`: `YYYY-MM-DD HH:MM:SS`, an optional
/// `.mmm` (`+millisec`) and an optional ` +hhmm` (`log_timezone`).
/// Returns the time and the stamp's length.
fn stamp(s: &[u8]) -> Option<(LogTime, usize)> {
    if s.len() < 19 || s[4] != b'-' || s[10] != b' ' || s[13] != b':' {
        return None;
    }
    let mut end = 19;
    if s.get(19) == Some(&b'.') {
        end = 20 + s[20..].iter().take_while(|b| b.is_ascii_digit()).count();
    }
    if !matches!(s.get(end), None | Some(b' ')) {
        return None;
    }
    // ` +0100` / ` -0500`, followed by a space or the end.
    if let Some(zone) = s.get(end + 1..end + 6) {
        if matches!(zone[0], b'+' | b'-')
            && zone[1..].iter().all(u8::is_ascii_digit)
            && matches!(s.get(end + 6), None | Some(b' '))
        {
            let mut buf = [0u8; 48];
            let n = end + 5;
            if n > buf.len() {
                return None;
            }
            buf[..end].copy_from_slice(&s[..end]);
            buf[end..n].copy_from_slice(zone);
            return Some((parse_rfc3339(&buf[..n])?, end + 6));
        }
    }
    Some((parse_local_datetime(&s[..end])?, end))
}

/// Lines that continue a record begun on an earlier line: the header dump
/// of a rejectlog record and wrapped texts.
fn continuation(text: &[u8]) -> bool {
    match text {
        [] => false,
        [b' ' | b'\t', ..] => true,
        _ if text.starts_with(b"Envelope-from: ") || text.starts_with(b"Envelope-to: ") => true,
        // `P Received: …`, `I Message-Id: …`, `* X-Deleted: …`: a header
        // with Exim's one-letter flag.
        [flag, b' ', name @ ..] if flag.is_ascii_uppercase() || *flag == b'*' => {
            let n = name
                .iter()
                .take_while(|b| b.is_ascii_graphic() && **b != b':')
                .count();
            n > 0 && name.get(n) == Some(&b':')
        }
        _ => false,
    }
}

fn none<'a>() -> Events<'a> {
    Events::new()
}

fn one(event: Event<'_>) -> Events<'_> {
    smallvec![event]
}

/// The events of the text after the envelope, and whether the shape is
/// distinctive. `None`: not a shape this parser knows.
fn body(t: &[u8]) -> Option<(Events<'_>, bool)> {
    if let Some((id, rest)) = message_id(t) {
        return Some(message_line(id, rest));
    }
    connection_line(t).map(|e| (e, true))
}

/// A message id at the start of `t`: 6 base-62 characters, `-`, 6 or 11,
/// `-`, 2 or 4; and the text after it and its space.
fn message_id(t: &[u8]) -> Option<(&str, &[u8])> {
    let space = memchr::memchr(b' ', t).unwrap_or(t.len());
    let id = &t[..space];
    let ok = match id.len() {
        16 => id[6] == b'-' && id[13] == b'-',
        23 => id[6] == b'-' && id[18] == b'-',
        _ => false,
    };
    if !ok || !id.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'-') {
        return None;
    }
    Some((as_str(id)?, t.get(space + 1..).unwrap_or(&[])))
}

/// The lines about one message.
fn message_line<'a>(id: &'a str, t: &'a [u8]) -> (Events<'a>, bool) {
    let flag = t.get(..3);
    let events = match flag {
        Some(b"<= ") => arrival(id, &t[3..]),
        Some(b"=> " | b"-> " | b">> ") => delivery(id, &t[3..], DeliveryStatus::Sent),
        // Suppressed by -N: nothing was delivered.
        Some(b"*> ") => none(),
        Some(b"== ") => delivery(id, &t[3..], DeliveryStatus::Deferred),
        Some(b"** ") => delivery(id, &t[3..], DeliveryStatus::Bounced),
        _ => {
            if let Some(rest) = t.strip_prefix(b"Completed") {
                if rest.is_empty() || rest[0] == b' ' {
                    return (
                        one(Event::MessageCompleted {
                            queue_id: id,
                            queue_seconds: key(rest, b"QT=").and_then(duration),
                        }),
                        true,
                    );
                }
            }
            if t == b"Frozen" || t.starts_with(b"Frozen (") || t.starts_with(b"frozen by ") {
                return (one(Event::MessageFrozen { queue_id: id }), true);
            }
            if t == b"Message is frozen" {
                // A queue runner skipped the frozen message.
                return (none(), true);
            }
            if let Some(events) = connection_line(t) {
                return (events, true);
            }
            // SA:, DKIM:, transport notes, "Unfrozen by …", "removed by …".
            return (none(), false);
        }
    };
    (events, true)
}

/// The value of ` K=` in `t` (at its start or after a space), up to the
/// next space.
fn key<'a>(t: &'a [u8], k: &[u8]) -> Option<&'a [u8]> {
    for pos in memmem::find_iter(t, k) {
        if pos == 0 || t[pos - 1] == b' ' {
            let v = &t[pos + k.len()..];
            let end = memchr::memchr(b' ', v).unwrap_or(v.len());
            return Some(&v[..end]);
        }
    }
    None
}

/// `<= sender [R=parent] [U=user] P=proto [X=tls] S=size [id=…]`
fn arrival<'a>(id: &'a str, t: &'a [u8]) -> Events<'a> {
    let mut events = one(Event::MessageReceived { queue_id: id });
    let sender_end = memchr::memchr(b' ', t).unwrap_or(t.len());
    let (sender, fields) = t.split_at(sender_end);
    if let Some(size) = key(fields, b"S=").and_then(crate::line::parse_u64) {
        events.push(Event::MessageEnvelope {
            queue_id: id,
            size,
            recipients: None,
        });
    }
    if key(fields, b"H=").is_some() && key(fields, b"X=").is_some() {
        events.push(Event::TlsConnection {
            service: SERVICE,
            direction: Direction::Inbound,
        });
    }
    if sender == b"<>" && key(fields, b"R=").is_some() {
        // A bounce (or delay warning) Exim generated for message R=.
        events.push(Event::BounceNotification {
            kind: crate::event::BounceKind::NonDelivery,
        });
    }
    events
}

/// `=> addr [<orig>] [F=<sender>] R=router T=transport [H=host] [X=tls]
/// [QT=…] [DT=…] [C="…"]`, and the same for `->`, `>>`, `==` (`… defer
/// (errno): reason`) and `**` (`… T=transport: reason`).
fn delivery<'a>(id: &'a str, t: &'a [u8], status: DeliveryStatus) -> Events<'a> {
    if status == DeliveryStatus::Deferred && memmem::find(t, b"etry time not ").is_some() {
        // `retry time not reached` / `Retry time not yet reached`: the
        // address was skipped by the retry rules, no attempt was made.
        return none();
    }
    if status == DeliveryStatus::Bounced && memmem::find(t, b"retry timeout exceeded").is_some() {
        // Logged after the last deferral once the retry rule gives up: no
        // attempt of its own; the message expired (as Postfix's
        // `status=expired`).
        return one(Event::MessageExpired { queue_id: id });
    }
    let recipient_end = memchr::memchr(b' ', t).unwrap_or(t.len());
    let recipient = t[..recipient_end]
        .strip_suffix(b":")
        .unwrap_or(&t[..recipient_end]);
    // Fields end where the reason starts (`: ` or ` defer (`), so that
    // words of a remote server's reply are never read as fields.
    let fields_end = [memmem::find(t, b": "), memmem::find(t, b" defer (")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(t.len());
    let fields = &t[recipient_end..fields_end.max(recipient_end)];
    let transport = key(fields, b"T=")
        .map(|v| v.strip_suffix(b":").unwrap_or(v))
        .and_then(as_str)
        .filter(|v| !v.is_empty())
        .unwrap_or(NO_TRANSPORT);
    let mut events = one(Event::Delivery(Delivery {
        queue_id: id,
        transport,
        recipient: as_str(recipient).unwrap_or(""),
        status,
        delay: key(t, b"QT=").and_then(duration),
        stage_delays: None,
    }));
    if status == DeliveryStatus::Sent && key(fields, b"X=").is_some() {
        events.push(Event::TlsConnection {
            service: transport,
            direction: Direction::Outbound,
        });
    }
    events
}

/// Exim's durations (`QT=`, `DT=`): `2s`, `1m2s`, `1d3h`, `3w`, with
/// `+millisec` `0.123s` or `1m2.345s`.
pub fn duration(text: &[u8]) -> Option<f64> {
    let mut total = 0.0;
    let mut rest = text;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .iter()
            .take_while(|b| b.is_ascii_digit() || **b == b'.')
            .count();
        let value = crate::line::parse_decimal(&rest[..n])?;
        let unit = match rest.get(n)? {
            b'w' => 604_800.0,
            b'd' => 86_400.0,
            b'h' => 3600.0,
            b'm' => 60.0,
            b's' => 1.0,
            _ => return None,
        };
        total += value * unit;
        rest = &rest[n + 1..];
    }
    Some(total)
}

/// Lines about SMTP connections and rejections, with or without a message
/// id in front.
fn connection_line(t: &[u8]) -> Option<Events<'_>> {
    let first = *t.first()?;
    match first {
        b'S' => {
            if let Some(r) = t.strip_prefix(b"SMTP connection from ") {
                return Some(smtp_connection(r));
            }
            if t.starts_with(b"SMTP command timeout on connection from ") {
                return Some(session_error(SessionError::Timeout, "other"));
            }
            if t.starts_with(b"SMTP data timeout (message abandoned) on connection from ") {
                return Some(session_error(SessionError::Timeout, "DATA"));
            }
            if t.starts_with(b"SMTP call from ") {
                if memmem::find(t, b" dropped: too many ").is_some() {
                    return Some(session_error(SessionError::TooManyErrors, "other"));
                }
                return Some(none());
            }
            if let Some(r) = t.strip_prefix(b"SMTP protocol synchronization error (") {
                let stage = if memmem::find(r, b"): rejected connection from ").is_some() {
                    RejectStage::Connect
                } else {
                    // `rejected "RSET"` (or any command): not a stage of
                    // the transaction.
                    RejectStage::Other
                };
                return Some(reject(stage, 554));
            }
            if t.starts_with(b"SMTP protocol error in ")
                || t.starts_with(b"SMTP syntax error in ")
                || t.starts_with(b"Start ") && memmem::find(t, b"queue run: pid=").is_some()
                || t.starts_with(b"SIGHUP received")
            {
                return Some(none());
            }
        }
        b'E' if t.starts_with(b"End ") && memmem::find(t, b"queue run: pid=").is_some()
            || t.starts_with(b"ETRN ") =>
        {
            return Some(none());
        }
        b'E' if t.starts_with(b"Exim configuration error") => {
            return Some(panic_line());
        }
        b'n' if t.starts_with(b"no IP address found for host ")
            || t.starts_with(b"no host name found for IP address ")
            || t.starts_with(b"no MAIL in SMTP connection from ") =>
        {
            return Some(none());
        }
        b'u' if t.starts_with(b"unexpected disconnection while reading SMTP command from ") => {
            return Some(session_error(SessionError::LostConnection, "other"));
        }
        b'e' => {
            if let Some(r) = t.strip_prefix(b"exim ") {
                // `exim 4.96 daemon started: pid=…`
                let space = memchr::memchr(b' ', r)?;
                if r[space..].starts_with(b" daemon started: ") {
                    return Some(one(Event::Lifecycle(Lifecycle::Started)));
                }
            }
            if t.starts_with(b"exim user lost privilege for using -C option") {
                return Some(panic_line());
            }
        }
        b'p' if t.starts_with(b"pid ") => {
            // `pid 123: SIGHUP received: re-exec daemon`
            let colon = memmem::find(t, b": ")?;
            let r = &t[colon + 2..];
            if r.starts_with(b"SIGHUP received") {
                return Some(one(Event::Lifecycle(Lifecycle::Reloaded)));
            }
            if r.starts_with(b"SIGTERM received") {
                return Some(one(Event::Lifecycle(Lifecycle::Stopped)));
            }
        }
        b'C' | b'T' | b'A' | b'V'
            if t.starts_with(b"Connections=")
                || t.starts_with(b"TLS error on connection from ")
                || t.starts_with(b"ATRN ")
                || t.starts_with(b"VRFY failed for ") =>
        {
            return Some(none());
        }
        b'W' if t.starts_with(b"Warning: ") => {
            return Some(one(Event::DaemonProblem {
                daemon: "exim",
                severity: Severity::Warning,
            }));
        }
        b'r' if t.starts_with(b"refused connection from ") => {
            // host_reject_connection: 554 before the greeting.
            return Some(reject(RejectStage::Connect, 554));
        }
        _ => {}
    }
    if let Some(events) = auth_failure(t) {
        return Some(events);
    }
    reject_line(t)
}

/// The rest of `SMTP connection from …`: a connect (`(TCP/IP connection
/// count = N)`), a lost session, or its close.
fn smtp_connection(r: &[u8]) -> Events<'_> {
    if memmem::find(r, b"(TCP/IP connection count = ").is_some() {
        return one(Event::SmtpConnect { service: SERVICE });
    }
    if let Some(pos) = memmem::find(r, b" lost") {
        let after = &r[pos + 5..];
        if after.is_empty() || after[0] == b' ' {
            let stage = if after.starts_with(b" while reading message data") {
                "DATA"
            } else {
                "other"
            };
            return session_error(SessionError::LostConnection, stage);
        }
    }
    // `closed by QUIT`, `closed by DROP in ACL`, `D=…`.
    none()
}

fn session_error<'a>(kind: SessionError, after: &'static str) -> Events<'a> {
    one(Event::SmtpSessionError {
        service: SERVICE,
        kind,
        after,
    })
}

fn reject<'a>(stage: RejectStage, code: u16) -> Events<'a> {
    one(Event::SmtpReject {
        service: SERVICE,
        stage,
        code,
    })
}

fn panic_line<'a>() -> Events<'a> {
    one(Event::DaemonProblem {
        daemon: "exim",
        severity: Severity::Panic,
    })
}

/// `NAME authenticator failed for H: 535 …`: the mechanism is guessed from
/// the authenticator's configured name (`dovecot_login`, `plain_server`).
fn auth_failure(t: &[u8]) -> Option<Events<'_>> {
    let pos = memmem::find(t, b" authenticator failed for ")?;
    let name = &t[..pos];
    if name.is_empty() || name.contains(&b' ') {
        return None;
    }
    Some(one(Event::AuthFailure {
        service: SERVICE,
        mechanism: mechanism(name),
    }))
}

fn mechanism(name: &[u8]) -> &'static str {
    const BY_PART: [(&str, &str); 9] = [
        ("cram", "CRAM-MD5"),
        ("digest", "DIGEST-MD5"),
        ("scram", "SCRAM-SHA-1"),
        ("plain", "PLAIN"),
        ("login", "LOGIN"),
        ("spa", "NTLM"),
        ("ntlm", "NTLM"),
        ("gssapi", "GSSAPI"),
        ("external", "EXTERNAL"),
    ];
    let mut lower = [0u8; 64];
    let n = name.len().min(lower.len());
    for (d, s) in lower.iter_mut().zip(&name[..n]) {
        *d = s.to_ascii_lowercase();
    }
    let lower = &lower[..n];
    BY_PART
        .iter()
        .find(|(part, _)| memmem::find(lower, part.as_bytes()).is_some())
        .map_or("other", |(_, m)| m)
}

/// The reject lines: `[H=…] [U=…] [F=<…>] [temporarily ]rejected WHAT…`,
/// `rejected EHLO from …`, `rejected MAIL FROM:<…> …`, `rejected from <…>:
/// message too big`, `rejected by local_scan()`, and `dropped by 'connect'
/// ACL`. The code is the one the reason starts with, else Exim's default:
/// 550 (451 when temporarily rejected; 552 for a message too big).
fn reject_line(t: &[u8]) -> Option<Events<'_>> {
    let pos = if t.starts_with(b"rejected ") {
        0
    } else if t.starts_with(b"too many recipients: excess temporarily rejected") {
        return Some(reject(RejectStage::Rcpt, 452));
    } else if let Some(p) = memmem::find(t, b" rejected ") {
        p + 1
    } else if let Some(p) = memmem::find(t, b" dropped by '") {
        // The `drop` verb: 550 and the connection is closed.
        let stage = if t[p..].starts_with(b" dropped by 'connect' ACL") {
            RejectStage::Connect
        } else {
            RejectStage::Other
        };
        return Some(reject(stage, 550));
    } else if t.starts_with(b"H=") || t.starts_with(b"U=") || t.starts_with(b"F=") {
        // `H=… sender verify fail for <…>`, `H=… Warning: …`: notes about
        // a session that carry no metric (the reject follows on its line).
        return Some(none());
    } else {
        return None;
    };
    let temporary = t[..pos].ends_with(b"temporarily ");
    let what = &t[pos + b"rejected ".len()..];
    let (stage, default) = if what.starts_with(b"RCPT") {
        (RejectStage::Rcpt, 550)
    } else if what.starts_with(b"MAIL") {
        let big = memmem::find(what, b"message too big").is_some();
        (RejectStage::Mail, if big { 552 } else { 550 })
    } else if what.starts_with(b"after DATA") || what.starts_with(b"by local_scan()") {
        (RejectStage::EndOfMessage, 550)
    } else if what.starts_with(b"DATA") {
        (RejectStage::Data, 550)
    } else if what.starts_with(b"from <") {
        (RejectStage::EndOfMessage, 552)
    } else if what.starts_with(b"EHLO") || what.starts_with(b"HELO") {
        (RejectStage::Helo, 550)
    } else if what.starts_with(b"connection in ") {
        (RejectStage::Connect, 550)
    } else if what.starts_with(b"by non-SMTP ACL") {
        // A local submission: not an SMTP reject.
        return Some(none());
    } else {
        (RejectStage::Other, 550)
    };
    let default = if temporary { 451 } else { default };
    // The reason follows the first `: ` after the command; a leading code
    // there is the one the client got.
    let code = memmem::find(what, b": ")
        .and_then(|c| reply_code(&what[c + 2..]))
        .unwrap_or(default);
    Some(reject(stage, code))
}

/// A leading `4xx `/`5xx ` SMTP code.
fn reply_code(t: &[u8]) -> Option<u16> {
    match t {
        [b'4' | b'5', b, c, rest @ ..]
            if b.is_ascii_digit()
                && c.is_ascii_digit()
                && matches!(rest.first(), None | Some(b' ' | b'-')) =>
        {
            parse_u32(&t[..3]).and_then(|v| u16::try_from(v).ok())
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DDGREY: &str = include_str!("../../tests/fixtures/exim/ddgrey_mainlog_shapes.log");
    const FAIL2BAN: &str = include_str!("../../tests/fixtures/exim/fail2ban_exim.log");
    const SUITE: &str = include_str!("../../tests/fixtures/exim/exim_testsuite_mainlog_shapes.log");
    const REJECTLOG: &str =
        include_str!("../../tests/fixtures/exim/exim_testsuite_rejectlog_0021_0027.log");
    const SPEC: &str =
        include_str!("../../tests/fixtures/exim/exim_spec_log_examples_unwrapped.log");
    const WAZUH: &str = include_str!("../../tests/fixtures/exim/wazuh_ruleset_tests.log");
    const LAB: &str = include_str!("../../tests/fixtures/exim/real_exim496_lab_mainlog.log");

    fn events(line: &str) -> Vec<Event<'_>> {
        crate::parser::test_lines::events(parse(line.as_bytes()), line)
    }

    use crate::parser::test_lines::real;

    fn delivery(e: &Event<'_>) -> (String, DeliveryStatus, Option<f64>) {
        match e {
            Event::Delivery(d) => (d.transport.to_string(), d.status, d.delay),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn arrival_with_size_and_bounce_arrival() {
        let e = events(real(DDGREY, "1j5IhX-0006pK-Rt <= plusgirot"));
        assert_eq!(
            e,
            vec![
                Event::MessageReceived {
                    queue_id: "1j5IhX-0006pK-Rt"
                },
                Event::MessageEnvelope {
                    queue_id: "1j5IhX-0006pK-Rt",
                    size: 4502,
                    recipients: None
                }
            ]
        );
        let bounce = events(real(DDGREY, "<= <> R=1j5NyY-0004Xp-NZ"));
        assert_eq!(
            bounce.last(),
            Some(&Event::BounceNotification {
                kind: crate::event::BounceKind::NonDelivery
            })
        );
        // Test-suite lines have `S=sss`: no envelope.
        assert_eq!(events(SUITE.lines().next().unwrap_or("")).len(), 1);
    }

    #[test]
    fn deliveries_by_flag_with_transport_and_queue_time() {
        let sent = events(real(LAB, "=> ok1@remote.test"));
        assert_eq!(
            delivery(&sent[0]),
            ("remote_smtp".into(), DeliveryStatus::Sent, Some(0.024))
        );
        let more = events(real(LAB, "-> ok3@remote.test"));
        assert_eq!(delivery(&more[0]).1, DeliveryStatus::Sent);
        let deferred = events(real(LAB, "== deferonce1@remote.test"));
        assert_eq!(
            delivery(&deferred[0]),
            ("remote_smtp".into(), DeliveryStatus::Deferred, None)
        );
        let bounced = events(real(LAB, "** reject1@remote.test"));
        assert_eq!(
            delivery(&bounced[0]),
            ("remote_smtp".into(), DeliveryStatus::Bounced, None)
        );
        // `T=remote_smtp:` before the reason, and no T= at all.
        let d = events(real(DDGREY, "** ronnienorcross@yahoo.com"));
        assert_eq!(delivery(&d[0]).0, "remote_smtp");
        let d = events(real(DDGREY, "** noreply@pilgrimbrevet.se: Unrouteable"));
        assert_eq!(delivery(&d[0]).0, NO_TRANSPORT);
        // Cutthrough and suppressed deliveries.
        assert_eq!(
            delivery(&events(real(SUITE, " >> "))[0]).1,
            DeliveryStatus::Sent
        );
        assert_eq!(events(real(SUITE, " *> ")), vec![]);
        // Outbound TLS on a delivery.
        let tls = events(real(DDGREY, "=> anders.warnqvist@gmail.com"));
        assert_eq!(
            tls[1],
            Event::TlsConnection {
                service: "remote_smtp",
                direction: Direction::Outbound
            }
        );
    }

    #[test]
    fn retry_lines_are_no_attempts_and_timeout_expires() {
        assert_eq!(
            events(real(SUITE, "routing defer (-52): retry time not reached")),
            vec![]
        );
        assert_eq!(events(real(SUITE, "Retry time not yet reached")), vec![]);
        assert_eq!(
            events(real(LAB, "retry timeout exceeded")),
            vec![Event::MessageExpired {
                queue_id: "1xUsPp-0004ZD-11"
            }]
        );
    }

    #[test]
    fn completed_frozen_and_queue_time() {
        assert_eq!(
            events(real(LAB, "1xUsPp-0004Y9-0H Completed")),
            vec![Event::MessageCompleted {
                queue_id: "1xUsPp-0004Y9-0H",
                queue_seconds: Some(9.0)
            }]
        );
        assert_eq!(
            events(real(DDGREY, "1j5IF1-0006A7-Ub Completed")),
            vec![Event::MessageCompleted {
                queue_id: "1j5IF1-0006A7-Ub",
                queue_seconds: None
            }]
        );
        assert_eq!(
            events(real(DDGREY, "Frozen (delivery error message)")),
            vec![Event::MessageFrozen {
                queue_id: "1j5Nye-0004Xw-5I"
            }]
        );
        assert_eq!(events(real(DDGREY, "Message is frozen")), vec![]);
        assert_eq!(duration(b"1m2s"), Some(62.0));
        assert_eq!(duration(b"1d3h"), Some(97_200.0));
        assert_eq!(duration(b"0.024s"), Some(0.024));
        assert_eq!(duration(b"2x"), None);
        assert_eq!(duration(b""), None);
    }

    fn rejected(line: &str) -> (RejectStage, u16) {
        match events(line).as_slice() {
            [Event::SmtpReject { stage, code, .. }] => (*stage, *code),
            other => panic!("{other:?} for {line}"),
        }
    }

    #[test]
    fn rejects_by_stage_and_code() {
        use RejectStage::*;
        let cases = [
            (real(LAB, "rejected RCPT <norelay1"), (Rcpt, 550)),
            (real(LAB, "rejected MAIL <spam@"), (Mail, 550)),
            (real(LAB, "rejected after DATA"), (EndOfMessage, 550)),
            (
                real(DDGREY, "rejected by local_scan()"),
                (EndOfMessage, 550),
            ),
            (
                real(FAIL2BAN, "temporarily rejected by local_scan()"),
                (EndOfMessage, 451),
            ),
            (real(SUITE, "rejected HELO from CALLER"), (Helo, 550)),
            (
                real(SUITE, "rejected connection in \"connect\" ACL: 550 client"),
                (Connect, 550),
            ),
            (
                real(
                    SUITE,
                    "rejected MAIL FROM:<userx@test.ex> U=CALLER: message too big",
                ),
                (Mail, 552),
            ),
            (
                real(SUITE, "too many recipients: excess temporarily rejected"),
                (Rcpt, 452),
            ),
            (
                real(FAIL2BAN, "(input sent without waiting for greeting)"),
                (Connect, 554),
            ),
            (real(FAIL2BAN, "(next input sent too soon"), (Other, 554)),
            (real(FAIL2BAN, "dropped by 'connect' ACL"), (Connect, 550)),
        ];
        for (line, want) in cases {
            assert_eq!(rejected(line), want, "{line}");
        }
        assert_eq!(events(real(SUITE, "rejected by non-SMTP ACL")), vec![]);
    }

    #[test]
    fn auth_failures_connections_and_session_errors() {
        let auth = |line| match events(line).as_slice() {
            [Event::AuthFailure { mechanism, .. }] => *mechanism,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            auth(real(FAIL2BAN, "login authenticator failed for rrcs")),
            "LOGIN"
        );
        assert_eq!(auth(real(FAIL2BAN, "plain authenticator failed")), "PLAIN");
        assert_eq!(auth(real(FAIL2BAN, "dovecot_login authenticator")), "LOGIN");
        assert_eq!(auth(real(SUITE, "spa authenticator failed for")), "NTLM");
        assert_eq!(
            events(real(LAB, "(TCP/IP connection count = 1)")),
            vec![Event::SmtpConnect { service: SERVICE }]
        );
        assert_eq!(events(real(LAB, "closed by QUIT")), vec![]);
        let session = |line| match events(line).as_slice() {
            [Event::SmtpSessionError { kind, after, .. }] => (*kind, *after),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            session(real(WAZUH, "(hydra) [10.101.1.10]:53682 lost")),
            (SessionError::LostConnection, "other")
        );
        assert_eq!(
            session(real(SUITE, "lost while reading message data")),
            (SessionError::LostConnection, "DATA")
        );
        assert_eq!(
            session(real(SUITE, "SMTP command timeout on connection")),
            (SessionError::Timeout, "other")
        );
        assert_eq!(
            session(real(FAIL2BAN, "dropped: too many syntax")),
            (SessionError::TooManyErrors, "other")
        );
        assert_eq!(
            events(real(FAIL2BAN, "no IP address found for host")),
            vec![]
        );
    }

    #[test]
    fn envelopes_stamps_zones_pids_and_syslog() {
        use crate::parser::time::LogTime;
        let p = parse(real(SPEC, "+0100 Start queue run").as_bytes());
        assert_eq!(p.time, Some(LogTime::Absolute(1_051_265_827.0)));
        assert_eq!(p.time_text, b"2003-04-25 11:17:07 +0100");
        let p = parse(real(LAB, "=> ok1@remote.test").as_bytes());
        assert!(matches!(
            p.time,
            Some(LogTime::LocalDateTime {
                nanosecond: 427_000_000,
                ..
            })
        ));
        // `[pid]`, `host exim[pid]:` after and before the stamp.
        assert_eq!(events(real(FAIL2BAN, "[10099] H=(yakult")).len(), 1);
        assert_eq!(
            events(real(FAIL2BAN, "mx1.fqdn.local exim[29786]")).len(),
            1
        );
        let tagged = real(FAIL2BAN, "mail.example.com exim[3751842]: 2021-07-17");
        assert_eq!(events(tagged).len(), 1);
        assert!(parse(tagged.as_bytes()).time.is_some());
        // Syslog envelope; other programs are ignored.
        let line = "Nov 21 10:00:00 mx exim[123]: 1j5IF1-0006A7-Ub Completed";
        assert_eq!(events(line).len(), 1);
        assert!(recognizes(line.as_bytes()));
        assert_eq!(
            parse(b"Nov 21 10:00:00 mx dovecot: imap-login: x").outcome,
            LineOutcome::Ignored
        );
        // Without a stamp: known shapes only.
        assert_eq!(events("1j5IF1-0006A7-Ub Completed").len(), 1);
        assert_eq!(parse(b"hello world").outcome, LineOutcome::Unparsed);
    }

    #[test]
    fn rejectlog_header_dumps_are_part_of_their_record() {
        for line in REJECTLOG.lines() {
            let parsed = matches!(parse(line.as_bytes()).outcome, LineOutcome::Parsed(_));
            // The three `mail accepted …` lines are the test configuration's
            // own logwrite, not Exim's.
            assert_eq!(parsed, !line.contains("mail accepted"), "{line}");
        }
        assert!(!recognizes(b"Envelope-from: <userx@test1>"));
        assert!(!recognizes(b"P Received: from CALLER by myhost.test.ex"));
    }

    #[test]
    fn real_logs_parse_and_detect() {
        for text in [DDGREY, FAIL2BAN, SPEC, LAB, WAZUH] {
            for line in text.lines() {
                events(line);
            }
        }
        assert!(recognizes(real(DDGREY, " <= ").as_bytes()));
        assert!(!recognizes(
            b"Nov 21 10:00:01 mx1 postfix/smtpd[1]: connect from x[1.2.3.4]"
        ));
        // The test-suite lines include its configurations' own logwrite
        // output; Exim's lines are understood.
        let unparsed = SUITE
            .lines()
            .filter(|l| !matches!(parse(l.as_bytes()).outcome, LineOutcome::Parsed(_)))
            .count();
        assert!(unparsed < 260, "{unparsed}");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = parse(&bytes);
            let _ = recognizes(&bytes);
        }

        #[test]
        fn never_panics_on_cut_real_lines(i in 0usize..870, cut in 0usize..200) {
            if let Some(line) = SUITE.lines().nth(i) {
                let b = line.as_bytes();
                let _ = parse(&b[..cut.min(b.len())]);
                let _ = parse(&b[cut.min(b.len())..]);
            }
        }
    }
}
