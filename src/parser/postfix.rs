//! Postfix: syslog lines and `maillog_file` lines of every Postfix daemon.
//!
//! Dispatch is by cheap byte tests: the program tag names the daemon (its
//! last path element: `postfix/submission/smtpd` is daemon `smtpd`, service
//! `submission`; `postfix-out/smtp` is daemon `smtp` of instance
//! `postfix-out`), then the message's first bytes select the line shape.
//! Fields are sliced out of the line; nothing is allocated and no regex is
//! run. Programs whose first path element does not start with `postfix` are
//! another program's lines ([`LineOutcome::Ignored`]).
//!
//! Queue ids are recognised exactly: short ids are 5 or more uppercase hex
//! digits; long ids (`enable_long_queue_ids`) are 10 or more characters of
//! Postfix's vowel-free base-52 alphabet with a `z` separator, so words like
//! `statistics` or `warning` are never mistaken for one.

use crate::event::{
    smtp_command_label, BounceKind, Delivery, DeliveryStatus, Direction, Event, Events, Lifecycle,
    RejectStage, SessionError, Severity, Verdict,
};
use crate::line::{as_str, field, parse_decimal, parse_u32, parse_u64, split_syslog};
use crate::parser::{LineOutcome, ParsedLine};
use memchr::memmem;
use smallvec::smallvec;

/// Whether `line` is a Postfix syslog line.
pub fn recognizes(line: &[u8]) -> bool {
    split_syslog(line).is_some_and(|e| is_postfix_program(e.program))
}

fn is_postfix_program(program: &[u8]) -> bool {
    program.starts_with(b"postfix")
}

/// Parses one Postfix log line.
pub fn parse(line: &[u8]) -> ParsedLine<'_> {
    let Some(env) = split_syslog(line) else {
        return ParsedLine::unparsed();
    };
    let outcome = if is_postfix_program(env.program) {
        parse_message(env.program, env.message)
    } else {
        LineOutcome::Ignored
    };
    ParsedLine {
        time: Some(env.time),
        time_text: env.time_text,
        outcome,
    }
}

/// Parses the message part of a line logged by `program` (e.g.
/// `postfix/smtpd`). Public so tests can feed message-only samples.
pub fn parse_message<'a>(program: &'a [u8], message: &'a [u8]) -> LineOutcome<'a> {
    let (daemon, service) = daemon_and_service(program);
    let Some(service) = as_str(service) else {
        return LineOutcome::Unparsed;
    };
    let Some(daemon_str) = as_str(daemon) else {
        return LineOutcome::Unparsed;
    };
    let line = Msg {
        daemon: daemon_str,
        service,
        text: message,
    };
    if let Some(outcome) = severity_line(&line) {
        return outcome;
    }
    let result = match daemon {
        b"smtpd" => smtpd(&line),
        b"postscreen" => postscreen(&line),
        b"cleanup" => cleanup(&line),
        b"qmgr" | b"oqmgr" => qmgr(&line),
        b"smtp" | b"lmtp" | b"local" | b"virtual" | b"pipe" | b"error" | b"discard" | b"retry" => {
            delivery_agent(&line)
        }
        b"bounce" | b"defer" | b"trace" => bounce(&line),
        b"pickup" => with_queue_id(&line, |_, rest| rest.starts_with(b"uid=").then(none)),
        b"anvil" | b"scache" => message.starts_with(b"statistics: ").then(none),
        b"master" => master(&line),
        b"postfix-script" | b"postfix" => script(&line),
        b"postsuper" => postsuper(&line),
        b"dnsblog" => message.starts_with(b"addr ").then(none),
        b"tlsproxy" => tlsproxy(message),
        b"verify" => verify(message),
        b"tlsmgr" | b"proxymap" | b"trivial-rewrite" | b"postlog" | b"postlogd" | b"sendmail"
        | b"postdrop" | b"postmap" | b"postalias" | b"flush" | b"showq" | b"spawn"
        | b"postqueue" | b"postmulti" | b"postconf" | b"local-tls" => None,
        _ => None,
    };
    match result.or_else(|| any_daemon(message)) {
        Some(events) => LineOutcome::Parsed(events),
        None => LineOutcome::Unparsed,
    }
}

/// Informational lines any Postfix daemon may log, tried after the
/// daemon's own shapes failed.
fn any_daemon<'a>(t: &[u8]) -> Option<Events<'a>> {
    // multi_server.c and friends: a lookup table file changed, the process
    // exits so that master starts a fresh one.
    if t.starts_with(b"table ") && t.ends_with(b" has changed -- restarting") {
        return Some(none());
    }
    // TLS library setup (tls_misc.c, tls_certkey.c): logged at info level
    // after the `warning:` lines that explain it, which are counted.
    if t.starts_with(b"cannot load Certificate Authority data") {
        return Some(none());
    }
    None
}

/// tlsproxy(8): the server side for postscreen and, since Postfix 3.4, the
/// client side for smtp(8) with connection reuse. Its TLS lines are not
/// counted: smtpd (after postscreen hands over) and smtp (which logs the
/// session summary it receives from tlsproxy, `tls_log_summary` with
/// `TLS_USAGE_NEW` in smtp_proto.c) log the same session again.
fn tlsproxy<'a>(t: &[u8]) -> Option<Events<'a>> {
    (t.starts_with(b"CONNECT from ")
        || t.starts_with(b"CONNECT to ")
        || t.starts_with(b"DISCONNECT ")
        || tls_established(t, b"from ")
        || tls_established(t, b"to "))
    .then(none)
}

/// verify(8): its address cache cleanup report (dict_cache.c).
fn verify<'a>(t: &[u8]) -> Option<Events<'a>> {
    let cleanup = t.starts_with(b"cache ")
        && (t.contains_str(b" full cleanup: ") || t.contains_str(b" partial cleanup: "));
    cleanup.then(none)
}

/// The message of one Postfix line with its daemon and service.
struct Msg<'a> {
    daemon: &'a str,
    service: &'a str,
    text: &'a [u8],
}

fn none<'a>() -> Events<'a> {
    Events::new()
}

fn one(event: Event<'_>) -> Events<'_> {
    smallvec![event]
}

trait ContainsStr {
    fn contains_str(&self, needle: &[u8]) -> bool;
}

impl ContainsStr for [u8] {
    fn contains_str(&self, needle: &[u8]) -> bool {
        memmem::find(self, needle).is_some()
    }
}

/// `postfix/submission/smtpd` → (`smtpd`, `submission`);
/// `postfix-out/smtp` → (`smtp`, `smtp`); `postfix` → (`postfix`, `postfix`).
fn daemon_and_service(program: &[u8]) -> (&[u8], &[u8]) {
    let mut parts = program.rsplit(|&b| b == b'/');
    let daemon = parts.next().unwrap_or(program);
    let middle = parts.next();
    let has_instance = parts.next().is_some();
    let service = match middle {
        Some(s) if has_instance => s,
        _ => daemon,
    };
    (daemon, service)
}

/// Whether `text` is a Postfix queue id (short or long form).
pub fn is_queue_id(text: &[u8]) -> bool {
    let short = text.len() >= 5 && text.iter().all(|b| matches!(b, b'0'..=b'9' | b'A'..=b'F'));
    short || is_long_queue_id(text)
}

fn is_long_queue_id(text: &[u8]) -> bool {
    text.len() >= 10
        && text.len() <= 32
        && text.contains(&b'z')
        && text.iter().all(|&b| {
            b.is_ascii_digit()
                || (b.is_ascii_alphabetic()
                    && !matches!(
                        b,
                        b'A' | b'E' | b'I' | b'O' | b'U' | b'a' | b'e' | b'i' | b'o' | b'u'
                    ))
        })
}

/// Splits `QUEUEID: rest` into the queue id and the rest.
fn queue_id_prefix(text: &[u8]) -> Option<(&str, &[u8])> {
    let colon = memchr::memchr(b':', text.get(..33.min(text.len()))?)?;
    let id = &text[..colon];
    let rest = text.get(colon + 1..)?.strip_prefix(b" ").unwrap_or(&[]);
    if !is_queue_id(id) {
        return None;
    }
    Some((as_str(id)?, rest))
}

fn with_queue_id<'a>(
    line: &Msg<'a>,
    f: impl FnOnce(&'a str, &'a [u8]) -> Option<Events<'a>>,
) -> Option<Events<'a>> {
    let (id, rest) = queue_id_prefix(line.text)?;
    f(id, rest)
}

/// Bounded daemon label values.
fn daemon_label(daemon: &str) -> &'static str {
    const KNOWN: [&str; 36] = [
        "smtpd",
        "postscreen",
        "cleanup",
        "qmgr",
        "oqmgr",
        "smtp",
        "lmtp",
        "local",
        "virtual",
        "pipe",
        "error",
        "discard",
        "retry",
        "bounce",
        "defer",
        "trace",
        "pickup",
        "anvil",
        "scache",
        "master",
        "postfix-script",
        "postsuper",
        "dnsblog",
        "tlsproxy",
        "tlsmgr",
        "verify",
        "proxymap",
        "trivial-rewrite",
        "postlog",
        "postlogd",
        "sendmail",
        "postdrop",
        "postmap",
        "postalias",
        "flush",
        "postqueue",
    ];
    KNOWN
        .iter()
        .find(|k| **k == daemon)
        .copied()
        .unwrap_or("other")
}

/// `warning: `, `error: `, `fatal: `, `panic: ` lines (with or without a
/// queue id in front for cleanup's header/body `warning:` actions).
fn severity_line<'a>(line: &Msg<'a>) -> Option<LineOutcome<'a>> {
    let t = line.text;
    let (severity, rest) = match t.first()? {
        b'w' => (Severity::Warning, t.strip_prefix(b"warning: ")?),
        b'e' => (Severity::Error, t.strip_prefix(b"error: ")?),
        b'f' => (Severity::Fatal, t.strip_prefix(b"fatal: ")?),
        b'p' => (Severity::Panic, t.strip_prefix(b"panic: ")?),
        _ => return None,
    };
    if severity == Severity::Warning && matches!(line.daemon, "smtpd" | "postscreen") {
        if let Some(mechanism) = sasl_failure(rest) {
            return Some(LineOutcome::Parsed(one(Event::AuthFailure {
                service: line.service,
                mechanism,
            })));
        }
        if rest.starts_with(b"SASL authentication failure: ") {
            // Cyrus SASL's own detail line; the failure is counted on the
            // `SASL <mech> authentication failed` line that follows.
            return Some(LineOutcome::Parsed(none()));
        }
    }
    Some(LineOutcome::Parsed(one(Event::DaemonProblem {
        daemon: daemon_label(line.daemon),
        severity,
    })))
}

/// `host[ip]: SASL LOGIN authentication failed: …` → the mechanism.
fn sasl_failure(rest: &[u8]) -> Option<&'static str> {
    let pos = memmem::find(rest, b": SASL ")?;
    let after = &rest[pos + 7..];
    let space = memchr::memchr(b' ', after)?;
    if !after[space..].starts_with(b" authentication failed") {
        return None;
    }
    Some(sasl_mechanism(&after[..space]))
}

pub(crate) fn sasl_mechanism(name: &[u8]) -> &'static str {
    const KNOWN: [&str; 11] = [
        "PLAIN",
        "LOGIN",
        "CRAM-MD5",
        "DIGEST-MD5",
        "NTLM",
        "GSSAPI",
        "XOAUTH2",
        "OAUTHBEARER",
        "SCRAM-SHA-1",
        "SCRAM-SHA-256",
        "EXTERNAL",
    ];
    KNOWN
        .iter()
        .find(|k| k.as_bytes().eq_ignore_ascii_case(name))
        .copied()
        .unwrap_or("other")
}

/// The SMTP reply code of a reject line: the first `NNN ` after `: `, or,
/// where only an enhanced status code is logged (milter and header/body
/// rejects: `5.7.1 …`), the code Postfix replies with for that class
/// (550 or 451).
fn reply_code(text: &[u8]) -> Option<u16> {
    for pos in memmem::find_iter(text, b": ") {
        let tail = &text[pos + 2..];
        match tail {
            [a, b, c, b' ' | b'-', ..]
                if a.is_ascii_digit() && b.is_ascii_digit() && c.is_ascii_digit() =>
            {
                return parse_u32(&tail[..3]).and_then(|v| u16::try_from(v).ok());
            }
            [class @ (b'4' | b'5'), b'.', d, ..] if d.is_ascii_digit() => {
                return Some(if *class == b'5' { 550 } else { 451 });
            }
            _ => {}
        }
    }
    None
}

/// `reject: RCPT from …: 554 …` (after the queue id or `NOQUEUE: `).
fn reject_event<'a>(service: &'a str, rest: &'a [u8]) -> Option<Events<'a>> {
    let stage = stage_word(rest)?;
    let code = reply_code(rest)?;
    Some(one(Event::SmtpReject {
        service,
        stage,
        code,
    }))
}

/// The stage of `CMD from …` or `CMD: …` (proxy actions).
fn stage_word(rest: &[u8]) -> Option<RejectStage> {
    let space = memchr::memchr(b' ', rest)?;
    let word = &rest[..space];
    Some(RejectStage::from_command(
        word.strip_suffix(b":").unwrap_or(word),
    ))
}

/// `proxy-reject: END-OF-MESSAGE: 554 5.7.0 …; from=<…> …`: the
/// before-queue content filter refused the message; Postfix passes the
/// filter's reply on. An empty reply (`END-OF-MESSAGE: ;`) is still a
/// reject, with an unknown code (0, the `other` code label).
fn proxy_reject<'a>(service: &'a str, rest: &'a [u8]) -> Option<Events<'a>> {
    let stage = stage_word(rest)?;
    Some(one(Event::SmtpReject {
        service,
        stage,
        code: reply_code(rest).unwrap_or(0),
    }))
}

/// The actions smtpd and cleanup log for access/header/body/milter rules.
fn policy_action<'a>(service: &'a str, rest: &'a [u8]) -> Option<Events<'a>> {
    if let Some(r) = rest.strip_prefix(b"proxy-reject: ") {
        return proxy_reject(service, r);
    }
    if let Some(r) = rest
        .strip_prefix(b"reject: ")
        .or_else(|| rest.strip_prefix(b"milter-reject: "))
    {
        if r.starts_with(b"header ") || r.starts_with(b"body ") {
            let code = reply_code(r)?;
            return Some(one(Event::SmtpReject {
                service,
                stage: RejectStage::EndOfMessage,
                code,
            }));
        }
        return reject_event(service, r);
    }
    const BENIGN: [&[u8]; 16] = [
        b"reject_warning: ",
        b"filter: ",
        b"hold: ",
        b"discard: ",
        b"redirect: ",
        b"prepend: ",
        b"replace: ",
        b"info: ",
        b"warning: ",
        b"bcc: ",
        b"milter-hold: ",
        b"milter-discard: ",
        b"milter-header-",
        b"milter-body-",
        b"proxy-accept: ",
        b"dunno: ",
    ];
    BENIGN.iter().any(|p| rest.starts_with(p)).then(none)
}

fn smtpd<'a>(line: &Msg<'a>) -> Option<Events<'a>> {
    let t = line.text;
    let service = line.service;
    match t.first()? {
        b'c' if t.starts_with(b"connect from ") => {
            return Some(one(Event::SmtpConnect { service }));
        }
        b'd' if t.starts_with(b"disconnect from ")
            || t.starts_with(b"discarding EHLO keywords") =>
        {
            return Some(none());
        }
        b'l' if t.starts_with(b"lost connection after ") => {
            return Some(session_error(
                service,
                SessionError::LostConnection,
                &t[22..],
            ));
        }
        b't' if t.starts_with(b"timeout after ") => {
            return Some(session_error(service, SessionError::Timeout, &t[14..]));
        }
        b't' if t.starts_with(b"too many errors after ") => {
            return Some(session_error(
                service,
                SessionError::TooManyErrors,
                &t[22..],
            ));
        }
        b'N' if t.starts_with(b"NOQUEUE: ") => {
            let rest = &t[9..];
            if let Some(after) = rest.strip_prefix(b"lost connection after ") {
                return Some(session_error(service, SessionError::LostConnection, after));
            }
            if rest.starts_with(b"client=") {
                return Some(none());
            }
            return policy_action(service, rest);
        }
        b'A' | b'T' | b'U' | b'V' if tls_established(t, b"from ") => {
            return Some(one(Event::TlsConnection {
                service,
                direction: Direction::Inbound,
            }));
        }
        b'i' if t.starts_with(b"improper command pipelining after ") => return Some(none()),
        // Before Postfix 2.3 rejects carried neither a queue id nor NOQUEUE.
        b'r' if t.starts_with(b"reject: ") || t.starts_with(b"reject_warning: ") => {
            return policy_action(service, t);
        }
        // Before-queue content filter (smtpd_proxy_filter) results, logged
        // without a queue id: `proxy-accept: END-OF-MESSAGE: 250 …`.
        b'p' if t.starts_with(b"proxy-accept: ") => return Some(none()),
        b'p' if t.starts_with(b"proxy-reject: ") => return proxy_reject(service, &t[14..]),
        // smtpd_forbid_bare_newline (Postfix 3.9, 3.8.4…): informational.
        b'b' if t.starts_with(b"bare <") => return Some(none()),
        b'S' if t.starts_with(b"SSL_accept error from ") => return Some(none()),
        b'r' if t.starts_with(b"replacing command ") => return Some(none()),
        b's' if t.starts_with(b"setting up TLS connection from ") => return Some(none()),
        b'x' if t.starts_with(b"xclient:") => return Some(none()),
        _ => {}
    }
    // smtpd_command_filter: `host[addr]: replacing command "…" with "…"`.
    if memmem::find(t, b"]: replacing command \"").is_some() {
        return Some(none());
    }
    with_queue_id(line, |_, rest| {
        if rest.starts_with(b"client=") {
            return Some(none());
        }
        policy_action(service, rest)
    })
}

/// `after CMD from host[ip]` → the stage.
fn session_error<'a>(service: &'a str, kind: SessionError, after: &[u8]) -> Events<'a> {
    let end = memchr::memchr(b' ', after).unwrap_or(after.len());
    one(Event::SmtpSessionError {
        service,
        kind,
        after: smtp_command_label(&after[..end]),
    })
}

/// `Anonymous TLS connection established from …` (and Trusted, Untrusted,
/// Verified); `word` is `from ` (server side) or `to ` (client side).
fn tls_established(text: &[u8], word: &[u8]) -> bool {
    let Some(space) = memchr::memchr(b' ', text) else {
        return false;
    };
    let kind = &text[..space];
    if !matches!(kind, b"Anonymous" | b"Trusted" | b"Untrusted" | b"Verified") {
        return false;
    }
    text[space + 1..]
        .strip_prefix(b"TLS connection established ")
        .is_some_and(|r| r.starts_with(word))
}

/// `Verified TLS connection reused to …` (smtp with connection reuse): an
/// existing TLS session carries another delivery, no new handshake.
fn tls_reused(text: &[u8]) -> bool {
    let Some(space) = memchr::memchr(b' ', text) else {
        return false;
    };
    matches!(
        &text[..space],
        b"Anonymous" | b"Trusted" | b"Untrusted" | b"Verified"
    ) && text[space + 1..].starts_with(b"TLS connection reused to ")
}

fn postscreen<'a>(line: &Msg<'a>) -> Option<Events<'a>> {
    let t = line.text;
    let service = line.service;
    let verdict = |verdict, reason| {
        Some(one(Event::SpamVerdict {
            filter: "postscreen",
            verdict,
            reason,
        }))
    };
    match t.first()? {
        b'C' if t.starts_with(b"CONNECT from ") => Some(one(Event::SmtpConnect { service })),
        b'C' if t.starts_with(b"COMMAND PIPELINING ") => {
            verdict(Verdict::Denied, "command_pipelining")
        }
        b'C' if t.starts_with(b"COMMAND COUNT LIMIT ") => {
            verdict(Verdict::Denied, "command_count_limit")
        }
        b'C' if t.starts_with(b"COMMAND TIME LIMIT ") => {
            verdict(Verdict::Denied, "command_time_limit")
        }
        b'C' if t.starts_with(b"COMMAND LENGTH LIMIT ") => {
            verdict(Verdict::Denied, "command_length_limit")
        }
        b'D' if t.starts_with(b"DISCONNECT ") => Some(none()),
        b'D' if t.starts_with(b"DNSBL rank ") => verdict(Verdict::Denied, "dnsbl"),
        b'D' if t.starts_with(b"DENYLISTED ") => verdict(Verdict::Denied, "denylisted"),
        b'B' if t.starts_with(b"BLACKLISTED ") => verdict(Verdict::Denied, "denylisted"),
        b'B' if t.starts_with(b"BARE NEWLINE ") => verdict(Verdict::Denied, "bare_newline"),
        b'P' if t.starts_with(b"PASS NEW ") => verdict(Verdict::Allowed, "pass_new"),
        b'P' if t.starts_with(b"PASS OLD ") => verdict(Verdict::Allowed, "pass_old"),
        b'P' if t.starts_with(b"PREGREET ") => verdict(Verdict::Denied, "pregreet"),
        b'H' if t.starts_with(b"HANGUP ") => verdict(Verdict::Denied, "hangup"),
        b'N' if t.starts_with(b"NON-SMTP COMMAND ") => verdict(Verdict::Denied, "non_smtp_command"),
        b'N' if t.starts_with(b"NOQUEUE: ") => {
            let rest = &t[9..];
            postscreen_busy(service, rest).or_else(|| policy_action(service, rest))
        }
        b'r' => postscreen_busy(service, t),
        b'D' | b'B'
            if t.starts_with(b"DATA without valid RCPT from ")
                || t.starts_with(b"BDAT without valid RCPT from ") =>
        {
            // The fake SMTP engine already rejected every RCPT (logged as
            // `NOQUEUE: reject: RCPT`); the client then tried DATA anyway.
            Some(none())
        }
        b'A' if t.starts_with(b"ALLOWLISTED ") => verdict(Verdict::Allowed, "allowlisted"),
        b'A' if t.starts_with(b"ALLOWLIST VETO ") => verdict(Verdict::Denied, "allowlist_veto"),
        b'W' if t.starts_with(b"WHITELISTED ") => verdict(Verdict::Allowed, "allowlisted"),
        b'W' if t.starts_with(b"WHITELIST VETO ") => verdict(Verdict::Denied, "allowlist_veto"),
        b'c' if t.starts_with(b"cache ") => Some(none()),
        b'a' if t.starts_with(b"all screening ports busy") => Some(none()),
        _ => None,
    }
}

/// postscreen turning a client away before any test because it is out of
/// capacity: `reject: CONNECT from [a]:p: too many connections` (also
/// `all screening ports busy`, `all server ports busy`; older versions
/// write `connect`). postscreen replies `421` to all of them
/// (postscreen.c, postscreen_early.c).
fn postscreen_busy<'a>(service: &'a str, text: &[u8]) -> Option<Events<'a>> {
    let rest = text
        .strip_prefix(b"reject: CONNECT from ")
        .or_else(|| text.strip_prefix(b"reject: connect from "))?;
    let busy = rest.ends_with(b": too many connections")
        || rest.ends_with(b": all screening ports busy")
        || rest.ends_with(b": all server ports busy");
    busy.then(|| {
        one(Event::SmtpReject {
            service,
            stage: RejectStage::Connect,
            code: 421,
        })
    })
}

fn cleanup<'a>(line: &Msg<'a>) -> Option<Events<'a>> {
    with_queue_id(line, |queue_id, rest| {
        if rest.starts_with(b"message-id=") {
            return Some(one(Event::MessageReceived { queue_id }));
        }
        if rest.starts_with(b"resent-message-id=") {
            return Some(none());
        }
        policy_action(line.service, rest)
    })
}

fn qmgr<'a>(line: &Msg<'a>) -> Option<Events<'a>> {
    with_queue_id(line, |queue_id, rest| {
        if rest == b"removed" {
            return Some(one(Event::MessageRemoved { queue_id }));
        }
        if rest.starts_with(b"from=<") {
            if rest.contains_str(b", status=expired, returned to sender")
                || rest.contains_str(b", status=force-expired, returned to sender")
            {
                return Some(one(Event::MessageExpired { queue_id }));
            }
            let Some(nrcpt) = field(rest, b"nrcpt=", b' ') else {
                // Old Postfix (before 2.1) logged no recipient count:
                // `from=<…>, size=1141 (queue active)`. Understood, but
                // without a count there is no envelope to observe.
                return rest.ends_with(b" (queue active)").then(none);
            };
            let size = field(rest, b"size=", b',').and_then(parse_u64)?;
            let recipients = parse_u32(nrcpt)?;
            return Some(one(Event::MessageEnvelope {
                queue_id,
                size,
                recipients: Some(recipients),
            }));
        }
        if rest.starts_with(b"to=") {
            return status_line(line.daemon, queue_id, rest);
        }
        if rest.starts_with(b"skipped, still being delivered") {
            return Some(none());
        }
        None
    })
}

/// `to=<…>, [orig_to=<…>,] relay=…, delay=…, delays=a/b/c/d, dsn=…, status=… (…)`
fn status_line<'a>(transport: &'a str, queue_id: &'a str, rest: &'a [u8]) -> Option<Events<'a>> {
    let to = rest.strip_prefix(b"to=")?;
    // Old Postfix and some `local` lines write the address without angle
    // brackets: `to=user@host, orig_to=…`.
    let recipient = match to.strip_prefix(b"<") {
        Some(addr) => &addr[..memchr::memchr(b'>', addr)?],
        None => &to[..memchr::memchr(b',', to)?],
    };
    let recipient = as_str(recipient).unwrap_or("");
    let status_pos = memmem::rfind(rest, b", status=")?;
    let status_text = &rest[status_pos + 9..];
    let status_end = memchr::memchr(b' ', status_text).unwrap_or(status_text.len());
    let status = match &status_text[..status_end] {
        b"sent" => DeliveryStatus::Sent,
        b"deferred" => DeliveryStatus::Deferred,
        b"bounced" => DeliveryStatus::Bounced,
        // Address verification probes (`sendmail -bv`, verify(8)) and
        // trace/expand results deliver nothing.
        b"deliverable" | b"undeliverable" | b"undeliverable-but-not-cached" | b"expandable" => {
            return Some(none())
        }
        _ => return None,
    };
    let head = &rest[..status_pos];
    let delay = field(head, b"delay=", b',').and_then(parse_decimal);
    let stage_delays = field(head, b"delays=", b',').and_then(parse_stage_delays);
    Some(one(Event::Delivery(Delivery {
        queue_id,
        transport,
        recipient,
        status,
        delay,
        stage_delays,
    })))
}

fn parse_stage_delays(text: &[u8]) -> Option<[f64; 4]> {
    let mut out = [0.0; 4];
    let mut parts = text.split(|&b| b == b'/');
    for slot in &mut out {
        *slot = parse_decimal(parts.next()?)?;
    }
    parts.next().is_none().then_some(out)
}

fn delivery_agent<'a>(line: &Msg<'a>) -> Option<Events<'a>> {
    let t = line.text;
    if let Some(r) = t.strip_prefix(b"connect to ") {
        // Linux says `Connection timed out`, the BSDs `Operation timed out`.
        let error = if r.ends_with(b"Connection timed out") || r.ends_with(b"Operation timed out") {
            "timeout"
        } else if r.ends_with(b"Connection refused") {
            "refused"
        } else if r.ends_with(b"No route to host") || r.ends_with(b"Network is unreachable") {
            "unreachable"
        } else {
            "other"
        };
        return Some(one(Event::OutboundConnectError {
            transport: line.daemon,
            error,
        }));
    }
    if tls_established(t, b"to ") {
        return Some(one(Event::TlsConnection {
            service: line.service,
            direction: Direction::Outbound,
        }));
    }
    if t.starts_with(b"Host offered STARTTLS")
        || t.starts_with(b"SSL_connect error")
        || t.starts_with(b"certificate verification failed for ")
        || tls_reused(t)
    {
        return Some(none());
    }
    with_queue_id(line, |queue_id, rest| {
        if rest.starts_with(b"to=") {
            return status_line(line.daemon, queue_id, rest);
        }
        const NOTES: [&[u8]; 11] = [
            b"host ",
            b"lost connection with ",
            b"conversation with ",
            b"enabling PIX workarounds",
            b"Cannot start TLS",
            b"SASL authentication failed",
            b"breaking line",
            b"TLS is required",
            b"server certificate verification failed",
            b"sender non-delivery notification",
            b"Server certificate not",
        ];
        NOTES.iter().any(|p| rest.starts_with(p)).then(none)
    })
}

fn bounce<'a>(line: &Msg<'a>) -> Option<Events<'a>> {
    with_queue_id(line, |_, rest| {
        let rest = rest
            .strip_prefix(b"sender ")
            .or_else(|| rest.strip_prefix(b"postmaster "))?;
        let kind = if rest.starts_with(b"non-delivery notification: ") {
            BounceKind::NonDelivery
        } else if rest.starts_with(b"delay notification: ") {
            BounceKind::Delay
        } else if rest.starts_with(b"delivery status notification: ") {
            BounceKind::Success
        } else {
            return None;
        };
        Some(one(Event::BounceNotification { kind }))
    })
}

fn master<'a>(line: &Msg<'a>) -> Option<Events<'a>> {
    let t = line.text;
    if t.starts_with(b"daemon started -- ") {
        Some(one(Event::Lifecycle(Lifecycle::Started)))
    } else if t.starts_with(b"reload -- ") {
        Some(one(Event::Lifecycle(Lifecycle::Reloaded)))
    } else if t.starts_with(b"terminating on signal ") {
        Some(one(Event::Lifecycle(Lifecycle::Stopped)))
    } else {
        None
    }
}

fn script<'a>(line: &Msg<'a>) -> Option<Events<'a>> {
    const KNOWN: [&[u8]; 8] = [
        b"starting the Postfix mail system",
        b"stopping the Postfix mail system",
        b"refreshing the Postfix mail system",
        b"waiting for the Postfix mail system to terminate",
        b"the Postfix mail system is",
        // postfix(1) with compatibility_level below the built-in default.
        b"Postfix is running with backwards-compatible default settings",
        b"See http://www.postfix.org/COMPATIBILITY_README.html for details",
        b"To disable backwards compatibility use ",
    ];
    KNOWN.iter().any(|p| line.text.starts_with(p)).then(none)
}

fn postsuper<'a>(line: &Msg<'a>) -> Option<Events<'a>> {
    let t = line.text;
    if t.starts_with(b"Deleted: ")
        || t.starts_with(b"Requeued: ")
        || t.starts_with(b"Placed on hold: ")
        || t.starts_with(b"Released from hold: ")
    {
        return Some(none());
    }
    with_queue_id(line, |queue_id, rest| match rest {
        b"removed" => Some(one(Event::MessageRemoved { queue_id })),
        b"requeued" | b"placed on hold" | b"released from hold" | b"expired" => Some(none()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(line: &str) -> Vec<Event<'_>> {
        crate::parser::test_lines::events(parse(line.as_bytes()), line)
    }

    #[test]
    fn queue_ids() {
        assert!(is_queue_id(b"33839BA243A"));
        assert!(is_queue_id(b"6D0EB2E3F6"));
        assert!(is_queue_id(b"4Lv3Zt1v8Tz9sFm"));
        assert!(is_queue_id(b"3W5mKP0yGcz1Gb4"));
        assert!(!is_queue_id(b"statistics"));
        assert!(!is_queue_id(b"warning"));
        assert!(!is_queue_id(b"NOQUEUE"));
        assert!(!is_queue_id(b"ABC"));
    }

    #[test]
    fn daemon_and_service_split() {
        assert_eq!(
            daemon_and_service(b"postfix/submission/smtpd"),
            (&b"smtpd"[..], &b"submission"[..])
        );
        assert_eq!(
            daemon_and_service(b"postfix/smtpd"),
            (&b"smtpd"[..], &b"smtpd"[..])
        );
        assert_eq!(
            daemon_and_service(b"postfix-out/smtp"),
            (&b"smtp"[..], &b"smtp"[..])
        );
        assert_eq!(
            daemon_and_service(b"postfix"),
            (&b"postfix"[..], &b"postfix"[..])
        );
    }

    #[test]
    fn delivery_line_with_stage_delays() {
        let e = events("Nov 21 10:00:01 mx1 postfix/local[18496]: 33839BA243A: to=<root@mx1.example.com>, orig_to=<sybil@example.com>, relay=local, delay=2.1, delays=2.1/0/0/0.03, dsn=2.0.0, status=sent (delivered to command: /usr/bin/procmail -a \"$EXTENSION\")");
        assert_eq!(
            e,
            vec![Event::Delivery(Delivery {
                queue_id: "33839BA243A",
                transport: "local",
                recipient: "root@mx1.example.com",
                status: DeliveryStatus::Sent,
                delay: Some(2.1),
                stage_delays: Some([2.1, 0.0, 0.0, 0.03]),
            })]
        );
    }

    #[test]
    fn submission_reject_keeps_service() {
        let e = events("Jan  1 00:00:00 host postfix/submission/smtpd[1]: NOQUEUE: reject: RCPT from unknown[1.2.3.4]:5678: 554 5.7.1 <a@b>: Relay access denied; from=<x@y> to=<a@b> proto=ESMTP helo=<h>");
        assert_eq!(
            e,
            vec![Event::SmtpReject {
                service: "submission",
                stage: RejectStage::Rcpt,
                code: 554
            }]
        );
    }

    #[test]
    fn milter_reject_code_from_enhanced_status() {
        let e = events("Nov 21 10:00:01 mx postfix/cleanup[1]: 4C2A51E0B: milter-reject: END-OF-MESSAGE from x[1.2.3.4]: 5.7.1 Command rejected; from=<a@b> to=<c@d> proto=ESMTP helo=<x>");
        assert_eq!(
            e,
            vec![Event::SmtpReject {
                service: "cleanup",
                stage: RejectStage::EndOfMessage,
                code: 550
            }]
        );
    }

    #[test]
    fn sasl_failure_is_auth_failure_not_warning() {
        let e = events("Nov 21 10:00:01 mx postfix/smtpd[1]: warning: unknown[1.2.3.4]: SASL LOGIN authentication failed: UGFzc3dvcmQ6");
        assert_eq!(
            e,
            vec![Event::AuthFailure {
                service: "smtpd",
                mechanism: "LOGIN"
            }]
        );
    }

    fn no_events(line: &str) {
        assert_eq!(events(line), vec![], "{line}");
    }

    fn reject(service: &str, stage: RejectStage, code: u16) -> Vec<Event<'_>> {
        vec![Event::SmtpReject {
            service,
            stage,
            code,
        }]
    }

    #[test]
    fn postscreen_capacity_rejects_are_421_at_connect() {
        for line in [
            "Feb 24 16:18:40 letterman postfix/postscreen[1234]: NOQUEUE: reject: CONNECT from [1.2.3.4]:5678: all screening ports busy",
            "Feb 24 16:18:40 letterman postfix/postscreen[1234]: NOQUEUE: reject: CONNECT from [1.2.3.4]:5678: all server ports busy",
            "Feb 24 16:18:40 letterman postfix/postscreen[1234]: NOQUEUE: reject: CONNECT from [1.2.3.4]:5678: too many connections",
        ] {
            assert_eq!(
                events(line),
                reject("postscreen", RejectStage::Connect, 421),
                "{line}"
            );
        }
        assert_eq!(
            parse_message(
                b"postfix/postscreen",
                b"reject: connect from [1.2.3.4]:5678: all screening ports busy"
            ),
            LineOutcome::Parsed(one(Event::SmtpReject {
                service: "postscreen",
                stage: RejectStage::Connect,
                code: 421
            }))
        );
    }

    #[test]
    fn postscreen_data_without_valid_rcpt_is_understood() {
        no_events("Jan 1 00:00:00 hostname postfix/postscreen[12345]: DATA without valid RCPT from [123.45.67.89]:12345");
        no_events("Jan 1 00:00:00 hostname postfix/postscreen[12345]: BDAT without valid RCPT from [123.45.67.89]:12345");
    }

    #[test]
    fn proxy_filter_results() {
        no_events("Feb 10 17:44:35 hostname postfix/smtpd[9535]: proxy-accept: END-OF-MESSAGE: 250 2.0.0 Ok: queued as 7A19580147C; from=<securitycheck@emailsecuritycheck.net> to=<mail@domain.xy> proto=ESMTP helo=<byteplant.com>");
        let r = parse_message(b"postfix/smtpd", b"proxy-reject: END-OF-MESSAGE: 554 5.7.0 Reject, contact postmaster@example.com, id=31619-02 - spam; from=<> to=<user2@example2.com> proto=SMTP helo=<17.33.12.53>");
        assert_eq!(
            r,
            LineOutcome::Parsed(one(Event::SmtpReject {
                service: "smtpd",
                stage: RejectStage::EndOfMessage,
                code: 554
            }))
        );
        // An empty filter reply is still a reject; its code is unknown.
        let r = parse_message(b"postfix/smtpd", b"proxy-reject: END-OF-MESSAGE: ; from=<user1@test.example.com> to=<user2@example2.com> proto=ESMTP helo=<[192.168.0.16]>");
        assert_eq!(
            r,
            LineOutcome::Parsed(one(Event::SmtpReject {
                service: "smtpd",
                stage: RejectStage::EndOfMessage,
                code: 0
            }))
        );
    }

    #[test]
    fn old_reject_without_queue_id() {
        assert_eq!(
            events("Jan 01 12:00:00 halley postfix/smtpd[9245]: reject: RCPT from unknown[203.156.32.33]: 554 <userx@yahoo.com>: Recipient address rejected: Relay access denied; from=<sender@aol.com> to=<userx@yahoo.com>"),
            reject("smtpd", RejectStage::Rcpt, 554)
        );
    }

    #[test]
    fn reject_warning_is_not_a_reject() {
        no_events("Jan 01 12:00:00 mx postfix/smtpd[1]: NOQUEUE: reject_warning: RCPT from unknown[1.2.3.4]: 450 4.7.1 Client host rejected: cannot find your hostname; from=<a@b> to=<c@d> proto=ESMTP helo=<x>");
    }

    #[test]
    fn smtpd_informational_lines() {
        no_events("Sep  6 12:17:24 smailer postfix/smtpd[31817]: unknown[10.13.37.100]: replacing command \"RCPT TO: <recipient_user@fmi.fr>\" with \"RCPT TO: <recipient_user@fmi.fr> NOTIFY=SUCCESS,FAILURE,DELAY\"");
        no_events("Jan 01 12:00:00 mx postfix/smtpd[1]: bare <LF> received after CONNECT from example.net[1.2.3.4]");
        no_events("Feb 14 19:05:25 123-mail postfix/smtpd[1517]: table hash:/etc/postfix/virtual_mailbox_maps(0,lock|fold_fix) has changed -- restarting");
        no_events("Jun  3 14:46:20 host postfix/smtpd[1563]: cannot load Certificate Authority data: disabling TLS support");
    }

    #[test]
    fn rsyslog_repeat_lines_are_not_postfix_lines() {
        assert_eq!(
            parse(b"Sep 30 17:10:43 svcenmta01 postfix/smtpd[11557]: message repeated 2 times: [ connect from pccenofi35.ldomain.local[192.168.0.135]]").outcome,
            LineOutcome::Unparsed
        );
    }

    #[test]
    fn tlsproxy_client_side_is_not_counted_twice() {
        no_events("2020-03-19T16:16:47.986953+00:00 638fbdd7968d postfix/tlsproxy[26371]: CONNECT to [173.194.222.27]:25");
        no_events("2020-03-19T16:16:48.000693+00:00 638fbdd7968d postfix/tlsproxy[26371]: Trusted TLS connection established to gmail-smtp-in.l.google.com[173.194.222.27]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits) key-exchange X25519 server-signature RSA-PSS (2048 bits)");
        no_events("Jan 01 12:00:00 mx postfix/smtp[1]: Verified TLS connection reused to mx.example.com[1.2.3.4]:25: TLSv1.3 with cipher TLS_AES_256_GCM_SHA384 (256/256 bits)");
    }

    #[test]
    fn smtp_certificate_verification_note() {
        assert_eq!(
            parse_message(
                b"postfix/smtp",
                b"certificate verification failed for mail.example.com[113.169.17.115]:25: self-signed certificate."
            ),
            LineOutcome::Parsed(none())
        );
    }

    #[test]
    fn verify_probe_results_and_cache_cleanup() {
        assert_eq!(
            parse_message(b"postfix/error", b"3E29030F8637E: to=<user@yahoo.com>, relay=none, delay=0.01, delays=0.01/0/0/0, dsn=5.1.1, status=undeliverable-but-not-cached (User unknown in virtual alias table)"),
            LineOutcome::Parsed(none())
        );
        no_events("Aug 27 21:57:11 mail1 postfix/verify[32135]: cache lmdb:/var/lib/postfix/verify_cache full cleanup: retained=724 dropped=6 entries");
    }

    #[test]
    fn recipient_without_angle_brackets() {
        let r = parse_message(b"postfix/local", b"892A0205B6: to=ghdsgfhdslfh@localhost, relay=local, delay=0.05, delays=0.02/0/0/0.02, dsn=5.1.1, status=bounced (unknown user: \"ghdsgfhdslfh\")");
        let LineOutcome::Parsed(e) = r else {
            panic!("{r:?}")
        };
        assert_eq!(
            e.into_vec(),
            vec![Event::Delivery(Delivery {
                queue_id: "892A0205B6",
                transport: "local",
                recipient: "ghdsgfhdslfh@localhost",
                status: DeliveryStatus::Bounced,
                delay: Some(0.05),
                stage_delays: Some([0.02, 0.0, 0.0, 0.02]),
            })]
        );
    }

    #[test]
    fn old_qmgr_envelope_without_nrcpt_is_understood() {
        no_events("Sep 24 14:45:15 wideboy postfix/qmgr[22331]: 7E0E6196: from=<xxx@hotmail.com>, size=1141 (queue active)");
    }

    #[test]
    fn qmgr_expired_is_per_message() {
        assert_eq!(
            events("Jan 1 00:00:00 hostname postfix/qmgr[12345]: 123456789AB: from=<user@example.com>>, status=expired, returned to sender"),
            vec![Event::MessageExpired { queue_id: "123456789AB" }]
        );
    }

    #[test]
    fn compatibility_notes_of_the_postfix_command() {
        no_events("Oct  2 18:37:35 telaviv1 postfix[1086537]: Postfix is running with backwards-compatible default settings");
        no_events("Oct  2 18:37:35 telaviv1 postfix[1086537]: See http://www.postfix.org/COMPATIBILITY_README.html for details");
        no_events("Oct  2 18:37:35 telaviv1 postfix[1086537]: To disable backwards compatibility use \"postconf compatibility_level=2\" and \"postfix reload\"");
    }

    #[test]
    fn unpadded_day_sasl_failure() {
        assert_eq!(
            events("Aug 3 15:30:49 ksusha postfix/smtpd[17041]: warning: mail.foldsandwalker.com[98.191.84.74]: SASL Plain authentication failed:"),
            vec![Event::AuthFailure {
                service: "smtpd",
                mechanism: "PLAIN"
            }]
        );
    }

    #[test]
    fn noqueue_lost_connection_is_a_session_error() {
        assert_eq!(
            events("Sep 17 18:19:20 mxhost postfix/smtpd[12345]: NOQUEUE: lost connection after CONNECT from unknown[192.0.2.25]"),
            vec![Event::SmtpSessionError {
                service: "smtpd",
                kind: SessionError::LostConnection,
                after: "CONNECT"
            }]
        );
    }

    #[test]
    fn bsd_connect_timeout_is_a_timeout() {
        assert_eq!(
            events("Aug 30 13:56:20 mail1 postfix/smtp[34352]: connect to mx.impressivevalue.com[52.8.227.207]:25: Operation timed out"),
            vec![Event::OutboundConnectError {
                transport: "smtp",
                error: "timeout"
            }]
        );
    }

    #[test]
    fn other_programs_are_ignored() {
        for line in [
            "Nov 21 10:00:01 mx1 dovecot: imap-login: Login: user=<a>",
            "Nov 21 10:00:01 mx1 amavis[42943]: (42943-01) Passed CLEAN",
            "Nov 21 10:00:01 mx1 CRON[1]: (root) CMD (true)",
        ] {
            assert_eq!(
                parse(line.as_bytes()).outcome,
                LineOutcome::Ignored,
                "{line}"
            );
        }
    }

    #[test]
    fn unknown_postfix_shapes_are_unparsed() {
        for line in [
            "Nov 21 10:00:01 mx1 postfix/smtpd[1]: something new",
            "Nov 21 10:00:01 mx1 postfix/qmgr[1]: 33839BA243A: something new",
            "garbage",
        ] {
            assert_eq!(
                parse(line.as_bytes()).outcome,
                LineOutcome::Unparsed,
                "{line}"
            );
        }
    }
}
