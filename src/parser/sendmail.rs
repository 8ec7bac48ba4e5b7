//! Sendmail: syslog lines of `sendmail`, `sm-mta` and the other `sm-*`
//! daemons (`sm-msp-queue`, a renamed `sm-acceptingconnections`).
//!
//! The envelope is syslog (classic, RFC 3339, FreeBSD `<mail.info>`), or
//! the bare `sm-mta[pid]: …` that alert mails quote. After it comes the
//! queue id (`h6SDtCtg028877: `, or `NOQUEUE: `) and then one of the shapes
//! below, told apart by their first bytes; fields are found by their
//! `key=` names. Nothing is allocated and no regex is run.
//!
//! Sendmail logs no line when a message leaves the queue; a message's
//! state in the correlator ends when it expires (`--state.ttl`).

use crate::event::{
    BounceKind, Delivery, DeliveryStatus, Direction, Event, Events, Lifecycle, RejectStage,
    SessionError, Severity,
};
use crate::line::{as_str, field, parse_u32, parse_u64, split_syslog};
use crate::parser::postfix::sasl_mechanism;
use crate::parser::{LineOutcome, ParsedLine};
use memchr::memmem;
use smallvec::smallvec;

/// The `service` label of Sendmail's SMTP server events.
const SERVICE: &str = "smtpd";

/// Whether `line` is a Sendmail line with one of the shapes below.
pub fn recognizes(line: &[u8]) -> bool {
    matches!(parse(line).outcome, LineOutcome::Parsed(_))
}

fn is_sendmail(program: &[u8]) -> bool {
    program == b"sendmail" || program.starts_with(b"sm-")
}

/// Parses one Sendmail line.
pub fn parse(line: &[u8]) -> ParsedLine<'_> {
    if let Some(env) = split_syslog(line) {
        let outcome = if is_sendmail(env.program) {
            message(env.message)
        } else {
            LineOutcome::Ignored
        };
        return ParsedLine {
            time: Some(env.time),
            time_text: env.time_text,
            outcome,
        };
    }
    // `sm-mta[20900]: …` without stamp and host.
    if let Some(open) = memchr::memchr(b'[', line) {
        if let Some(close) = memmem::find(&line[open..], b"]: ") {
            let program = &line[..open];
            if is_sendmail(program) && parse_u32(&line[open + 1..open + close]).is_some() {
                return ParsedLine {
                    time: None,
                    time_text: &[],
                    outcome: message(&line[open + close + 3..]),
                };
            }
        }
    }
    ParsedLine::unparsed()
}

fn none<'a>() -> Events<'a> {
    Events::new()
}

fn one(event: Event<'_>) -> Events<'_> {
    smallvec![event]
}

/// A queue id: 8 to 20 letters and digits.
fn queue_id(text: &[u8]) -> Option<(&str, &[u8])> {
    let colon = memmem::find(text, b": ")?;
    let id = &text[..colon];
    if !(8..=20).contains(&id.len()) || !id.iter().all(u8::is_ascii_alphanumeric) {
        return None;
    }
    Some((as_str(id)?, &text[colon + 2..]))
}

/// The text after `sendmail[pid]: `.
fn message(text: &[u8]) -> LineOutcome<'_> {
    let (id, t) = match text.strip_prefix(b"NOQUEUE: ") {
        Some(rest) => (None, rest),
        None => match queue_id(text) {
            Some((id, rest)) => (Some(id), rest),
            None => (None, text),
        },
    };
    body(id, t).map_or(LineOutcome::Unparsed, LineOutcome::Parsed)
}

fn body<'a>(id: Option<&'a str>, t: &'a [u8]) -> Option<Events<'a>> {
    if let Some(r) = t.strip_prefix(b"from=") {
        return Some(from(id?, r));
    }
    if let Some(r) = t.strip_prefix(b"to=") {
        return to(id?, r);
    }
    if t.starts_with(b"ruleset=") {
        let stage = match field(t, b"ruleset=", b',')? {
            b"check_relay" => RejectStage::Connect,
            b"check_mail" => RejectStage::Mail,
            b"check_rcpt" => RejectStage::Rcpt,
            b"check_data" => RejectStage::Data,
            b"check_eoh" | b"check_eom" => RejectStage::EndOfMessage,
            _ => RejectStage::Other,
        };
        return Some(match field(t, b"reject=", b' ').and_then(code) {
            Some(code) => reject(stage, code),
            // `discard=`, `quarantine=`: not a reject.
            None => none(),
        });
    }
    if let Some(r) = t.strip_prefix(b"Milter") {
        // `Milter: data, reject=511 …`, `Milter: to=<…>, reject=550 …`;
        // `Milter add: header`, `Milter accept: message` are not rejects.
        let Some(code) = field(r, b"reject=", b' ').and_then(code) else {
            return Some(none());
        };
        let what = r.strip_prefix(b": ").unwrap_or(r);
        let stage = if what.starts_with(b"data") {
            RejectStage::EndOfMessage
        } else if what.starts_with(b"from=") {
            RejectStage::Mail
        } else if what.starts_with(b"to=") {
            RejectStage::Rcpt
        } else if what.starts_with(b"connect") {
            RejectStage::Connect
        } else if what.starts_with(b"helo") {
            RejectStage::Helo
        } else {
            RejectStage::Other
        };
        return Some(reject(stage, code));
    }
    if let Some(r) = t.strip_prefix(b"AUTH failure (") {
        let close = memchr::memchr(b')', r)?;
        return Some(one(Event::AuthFailure {
            service: SERVICE,
            mechanism: sasl_mechanism(&r[..close]),
        }));
    }
    if let Some(r) = t.strip_prefix(b"STARTTLS=") {
        // Only a completed handshake logs the cipher.
        if field(r, b"cipher=", b',').is_none() {
            return Some(none());
        }
        let direction = if r.starts_with(b"server") {
            Direction::Inbound
        } else {
            Direction::Outbound
        };
        return Some(one(Event::TlsConnection {
            service: SERVICE,
            direction,
        }));
    }
    if t.starts_with(b"STARTTLS") {
        return Some(none());
    }
    if let Some(r) = t.strip_prefix(b"lost input channel from ") {
        let after = memmem::find(r, b" after ").map_or(&b""[..], |p| &r[p + 7..]);
        return Some(session_error(SessionError::LostConnection, after));
    }
    if t.starts_with(b"timeout waiting for input from ") {
        return Some(session_error(SessionError::Timeout, b""));
    }
    if t.starts_with(b"rejecting commands from ") {
        // greet_pause: the client talked before the greeting.
        return Some(reject(RejectStage::Connect, 554));
    }
    if t.starts_with(b"SYSERR") {
        return Some(one(Event::DaemonProblem {
            daemon: "sendmail",
            severity: Severity::Error,
        }));
    }
    if t.starts_with(b"starting daemon (") {
        return Some(one(Event::Lifecycle(Lifecycle::Started)));
    }
    if let Some(dsn) = dsn_line(t) {
        return Some(dsn);
    }
    if t.first() == Some(&b'<') {
        // `<user@host>... User unknown`: a recipient refused at RCPT.
        let pos = memmem::find(t, b">... ")?;
        let reason = &t[pos + 5..];
        return Some(
            if reason.starts_with(b"User unknown") || reason.starts_with(b"No such user") {
                reject(RejectStage::Rcpt, 550)
            } else {
                none()
            },
        );
    }
    let quiet = [
        &b" did not issue "[..],
        b": possible SMTP attack: ",
        b" [rejected]",
        b"alias database ",
        b" aliases, longest ",
    ];
    quiet
        .iter()
        .any(|q| memmem::find(t, q).is_some())
        .then(none)
}

/// `PARENT: CHILD: DSN: reason` (the id already split off is the
/// parent's; the notification gets the child id).
fn dsn_line(t: &[u8]) -> Option<Events<'_>> {
    let (_, r) = queue_id(t)?;
    let r = r.strip_prefix(b"DSN: ")?;
    let kind = if r.starts_with(b"Return receipt") {
        BounceKind::Success
    } else if r.starts_with(b"Warning: ") {
        BounceKind::Delay
    } else {
        BounceKind::NonDelivery
    };
    Some(one(Event::BounceNotification { kind }))
}

fn reject<'a>(stage: RejectStage, code: u16) -> Events<'a> {
    one(Event::SmtpReject {
        service: SERVICE,
        stage,
        code,
    })
}

fn session_error<'a>(kind: SessionError, after: &[u8]) -> Events<'a> {
    let mut upper = [0u8; 16];
    let n = after
        .iter()
        .take_while(|b| b.is_ascii_alphabetic())
        .count()
        .min(upper.len());
    for (d, s) in upper.iter_mut().zip(&after[..n]) {
        *d = s.to_ascii_uppercase();
    }
    let after = if n == 0 {
        "other"
    } else {
        crate::event::smtp_command_label(&upper[..n])
    };
    one(Event::SmtpSessionError {
        service: SERVICE,
        kind,
        after,
    })
}

/// A leading three-digit SMTP code (`550`, `421`).
fn code(text: &[u8]) -> Option<u16> {
    let digits = text.get(..3)?;
    let v = parse_u32(digits)?;
    u16::try_from(v).ok().filter(|v| (400..600).contains(v))
}

/// `from=<a@b>, size=2556, class=0, nrcpts=1, msgid=<…>, proto=ESMTP, …`.
/// A message with `nrcpts=0` was not accepted (every recipient was
/// refused) and is not counted as received.
fn from<'a>(id: &'a str, r: &'a [u8]) -> Events<'a> {
    let recipients = field(r, b"nrcpts=", b',').and_then(parse_u32);
    if recipients == Some(0) {
        return none();
    }
    let mut events = one(Event::MessageReceived { queue_id: id });
    if let Some(size) = field(r, b"size=", b',').and_then(parse_u64) {
        events.push(Event::MessageEnvelope {
            queue_id: id,
            size,
            recipients,
        });
    }
    events
}

/// `to=<c@d>, ctladdr=…, delay=00:00:01, xdelay=…, mailer=esmtp, pri=…,
/// relay=…, dsn=2.0.0, stat=Sent (…)`. The status is the `dsn=` class
/// (2 sent, 4 deferred, 5 bounced), else the `stat=` word (`Sent`,
/// `Deferred`, anything else a permanent failure); `stat=queued` (kept for
/// a later queue run, no attempt) is no delivery.
fn to<'a>(id: &'a str, r: &'a [u8]) -> Option<Events<'a>> {
    let recipient_end = memmem::find(r, b", ").unwrap_or(r.len());
    let recipient = as_str(&r[..recipient_end]).unwrap_or("");
    let stat = field(r, b"stat=", b' ')?;
    if stat.starts_with(b"queued") || stat.starts_with(b"Queued") {
        return Some(none());
    }
    let status = match field(r, b"dsn=", b',').and_then(|d| d.first().copied()) {
        Some(b'2') => DeliveryStatus::Sent,
        Some(b'4') => DeliveryStatus::Deferred,
        Some(b'5') => DeliveryStatus::Bounced,
        _ if stat.starts_with(b"Sent") => DeliveryStatus::Sent,
        _ if stat.starts_with(b"Deferred") => DeliveryStatus::Deferred,
        _ => DeliveryStatus::Bounced,
    };
    let transport = field(r, b"mailer=", b',')
        .and_then(as_str)
        .unwrap_or("unknown");
    Some(one(Event::Delivery(Delivery {
        queue_id: id,
        transport,
        recipient,
        status,
        delay: field(r, b"delay=", b',').and_then(delay),
        stage_delays: None,
    })))
}

/// Sendmail's `delay=`: `HH:MM:SS`, with `D+` in front past a day.
fn delay(text: &[u8]) -> Option<f64> {
    let (days, hms) = match memchr::memchr(b'+', text) {
        Some(p) => (parse_u64(&text[..p])?, &text[p + 1..]),
        None => (0, text),
    };
    if hms.len() != 8 || hms[2] != b':' || hms[5] != b':' {
        return None;
    }
    let h = parse_u64(&hms[..2])?;
    let m = parse_u64(&hms[3..5])?;
    let s = parse_u64(&hms[6..])?;
    Some((days * 86_400 + h * 3600 + m * 60 + s) as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FAIL2BAN: &str = include_str!("../../tests/fixtures/sendmail/fail2ban_sendmail.log");
    const FONYLEW: &str = include_str!(
        "../../tests/fixtures/sendmail/fonylew_config_mailgateway_sendmail_shapes.log"
    );
    const INFOH: &str = include_str!(
        "../../tests/fixtures/sendmail/infohtreasure_maillog_dump_sendmail_shapes.log"
    );
    const AWSTATS: &str =
        include_str!("../../tests/fixtures/sendmail/awstats_maillogconvert_comment_examples.log");
    const WAZUH: &str = include_str!("../../tests/fixtures/sendmail/wazuh_ruleset_examples.log");
    const MENSET: &str =
        include_str!("../../tests/fixtures/sendmail/mensetmanus_gomaillex_sendmail_shapes.log");

    fn events(line: &str) -> Vec<Event<'_>> {
        crate::parser::test_lines::events(parse(line.as_bytes()), line)
    }

    use crate::parser::test_lines::real;

    #[test]
    fn from_and_to_lines() {
        assert_eq!(
            events(real(FONYLEW, "t4S4FI7E001499: from=root")),
            vec![
                Event::MessageReceived {
                    queue_id: "t4S4FI7E001499"
                },
                Event::MessageEnvelope {
                    queue_id: "t4S4FI7E001499",
                    size: 613,
                    recipients: Some(1)
                }
            ]
        );
        // nrcpts=0: every recipient refused, nothing queued.
        assert_eq!(events(real(FAIL2BAN, "nrcpts=0, bodytype")), vec![]);
        let status = |line| match events(line).as_slice() {
            [Event::Delivery(d)] => (d.transport, d.status, d.delay),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            status(real(FONYLEW, "t4S4FI7E001499: to=")),
            ("relay", DeliveryStatus::Sent, Some(1.0))
        );
        assert_eq!(
            status(real(FONYLEW, "stat=User unknown")).1,
            DeliveryStatus::Bounced
        );
        assert_eq!(status(real(INFOH, "mailer=local")).0, "local");
        let deferred = "Jun  2 13:35:14 host sendmail[1113]: t526ZEUO001113: to=<a@b>, delay=1+02:00:05, xdelay=00:00:05, mailer=esmtp, pri=1, relay=mx.b. [192.0.2.1], dsn=4.0.0, stat=Deferred: Connection refused by mx.b.";
        assert_eq!(
            status(deferred),
            ("esmtp", DeliveryStatus::Deferred, Some(93_605.0))
        );
        assert_eq!(
            events("Jun  2 13:35:14 host sendmail[1]: t526ZEUO001113: to=<a@b>, delay=00:00:00, mailer=esmtp, pri=1, stat=queued"),
            vec![]
        );
    }

    fn rejected(line: &str) -> (RejectStage, u16) {
        match events(line).as_slice() {
            [Event::SmtpReject { stage, code, .. }] => (*stage, *code),
            other => panic!("{other:?} for {line}"),
        }
    }

    #[test]
    fn rejects_by_ruleset_and_milter() {
        use RejectStage::*;
        assert_eq!(rejected(real(AWSTATS, "ruleset=check_mail")), (Mail, 451));
        assert_eq!(rejected(real(AWSTATS, "ruleset=check_rcpt")), (Rcpt, 550));
        assert_eq!(
            rejected(real(AWSTATS, "ruleset=check_relay")),
            (Connect, 554)
        );
        assert_eq!(
            rejected(real(AWSTATS, "Milter: data, reject=511")),
            (EndOfMessage, 511)
        );
        assert_eq!(
            rejected(real(FAIL2BAN, "Connection rate limit")),
            (Connect, 421)
        );
        assert_eq!(
            rejected(real(FAIL2BAN, "pre-greeting traffic")),
            (Connect, 554)
        );
        assert_eq!(rejected(real(FAIL2BAN, "... User unknown")), (Rcpt, 550));
    }

    #[test]
    fn auth_tls_sessions_dsn() {
        let auth = |line| match events(line).as_slice() {
            [Event::AuthFailure { mechanism, .. }] => *mechanism,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            auth(real(FAIL2BAN, "AUTH failure (DIGEST-MD5)")),
            "DIGEST-MD5"
        );
        assert_eq!(auth(real(FAIL2BAN, "AUTH failure (login)")), "LOGIN");
        assert_eq!(
            events(real(FAIL2BAN, "lost input channel")),
            vec![Event::SmtpSessionError {
                service: SERVICE,
                kind: SessionError::LostConnection,
                after: "RCPT"
            }]
        );
        assert_eq!(events(real(FAIL2BAN, "did not issue MAIL/EXPN")), vec![]);
        assert_eq!(
            events(real(FONYLEW, "DSN: User unknown")),
            vec![Event::BounceNotification {
                kind: BounceKind::NonDelivery
            }]
        );
        let tls = "Feb 26 12:54:45 mx sm-mta[1066]: 21QCF5Nw011754: STARTTLS=server, relay=x [192.0.2.1], version=TLSv1.3, verify=NO, cipher=TLS_AES_256_GCM_SHA384, bits=256/256";
        assert_eq!(
            events(tls),
            vec![Event::TlsConnection {
                service: SERVICE,
                direction: Direction::Inbound
            }]
        );
        let timeout = "Feb 26 12:54:45 mx sm-mta[1066]: 21QCF5Nw011754: timeout waiting for input from x [192.0.2.1] during server cmd read";
        assert_eq!(events(timeout).len(), 1);
        assert_eq!(
            events(real(FONYLEW, "SYSERR")),
            vec![Event::DaemonProblem {
                daemon: "sendmail",
                severity: Severity::Error
            }]
        );
    }

    #[test]
    fn every_real_line_is_understood() {
        for text in [FAIL2BAN, FONYLEW, INFOH, AWSTATS, WAZUH, MENSET] {
            for line in text.lines() {
                events(line);
            }
        }
        assert!(recognizes(real(FONYLEW, "stat=Sent").as_bytes()));
        assert!(!recognizes(
            b"Nov 21 10:00:01 mx1 postfix/smtpd[1]: connect from x[1.2.3.4]"
        ));
        assert_eq!(
            parse(b"Nov 21 10:00:01 mx1 dovecot: imap-login: x").outcome,
            LineOutcome::Ignored
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..200)) {
            let _ = parse(&bytes);
            let _ = recognizes(&bytes);
        }
    }
}
