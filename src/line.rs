//! The syslog envelope of a line: timestamp, host, program, pid, message.
//!
//! Input: one log line without its trailing newline. Output: borrowed
//! slices of it, no allocation. Two timestamp styles are recognised:
//!
//! * classic BSD syslog and Postfix `maillog_file`: `Nov 21 10:00:00` or
//!   `Nov  1 10:00:00` or `Nov 01 10:00:00` (no year; see
//!   [`crate::parser::time`] for how the year is inferred);
//! * RFC 3339 as written by rsyslog's high-precision template or journald
//!   exports: `2021-03-13T12:04:09.755361+01:00`, `2022-04-14T00:36:03.150Z`.
//!
//! After the timestamp come the host (one token), then `program[pid]: ` or
//! `program: `, then the message. A line that does not have this shape gives
//! `None`; the caller counts it as unparsed.

use crate::parser::time::{parse_rfc3339, parse_syslog_stamp, LogTime};

/// The parts of a syslog line, borrowed from it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Envelope<'a> {
    pub time: LogTime,
    /// The raw timestamp text, used to cache its conversion.
    pub time_text: &'a [u8],
    pub host: &'a [u8],
    /// The program tag without pid, e.g. `postfix/submission/smtpd`.
    pub program: &'a [u8],
    pub pid: Option<u32>,
    /// Everything after `program[pid]: `.
    pub message: &'a [u8],
}

/// Splits a syslog line into its envelope. `None` if the line has no
/// recognisable timestamp, host and program tag.
pub fn split_syslog(line: &[u8]) -> Option<Envelope<'_>> {
    let (time, stamp_len) = if line.first().is_some_and(u8::is_ascii_digit) {
        let end = memchr::memchr(b' ', line)?;
        (parse_rfc3339(&line[..end])?, end)
    } else if let Some(t) = line.get(..15).and_then(parse_syslog_stamp) {
        (t, 15)
    } else {
        (parse_unpadded_stamp(line.get(..14)?)?, 14)
    };
    let time_text = &line[..stamp_len];
    let mut rest = line.get(stamp_len..)?.strip_prefix(b" ")?;
    // FreeBSD syslogd -v writes the facility and level before the host:
    // `Jul  1 20:08:06 <mail.info> mailhost postfix/smtpd[4379]: …`.
    if rest.first() == Some(&b'<') {
        let end = memchr::memchr(b' ', rest)?;
        if rest[end - 1] == b'>' {
            rest = &rest[end + 1..];
        }
    }
    let host_end = memchr::memchr(b' ', rest)?;
    let host = &rest[..host_end];
    if host.is_empty() {
        return None;
    }
    let rest = &rest[host_end + 1..];
    // The tag ends at the first ": " (pid in brackets just before it, or none).
    let colon = memchr::memmem::find(rest, b": ")
        .or_else(|| (rest.last() == Some(&b':')).then(|| rest.len() - 1))?;
    let tag = &rest[..colon];
    if tag.is_empty() || tag.contains(&b' ') {
        return None;
    }
    let mut message = rest.get(colon + 2..).unwrap_or(&[]);
    // Solaris syslogd puts a message id before the text:
    // `postfix/cleanup[14194]: [ID 197553 mail.info] EC2B339E5: …`.
    if let Some(tail) = message.strip_prefix(b"[ID ") {
        if let Some(close) = memchr::memchr(b']', tail) {
            message = tail
                .get(close + 1..)
                .map_or(&[][..], |m| m.strip_prefix(b" ").unwrap_or(m));
        }
    }
    let (program, pid) = match tag.split_last() {
        Some((b']', head)) => {
            let open = memchr::memrchr(b'[', head)?;
            let pid = parse_u32(&head[open + 1..])?;
            (&head[..open], Some(pid))
        }
        _ => (tag, None),
    };
    if program.is_empty() {
        return None;
    }
    Some(Envelope {
        time,
        time_text,
        host,
        program,
        pid,
        message,
    })
}

/// `Mmm d hh:mm:ss` with a one-digit day and a single space, as some
/// relays and copies that collapse runs of spaces write it: 14 bytes.
fn parse_unpadded_stamp(s: &[u8]) -> Option<LogTime> {
    if s.len() != 14 || s[3] != b' ' || !s[4].is_ascii_digit() || s[5] != b' ' {
        return None;
    }
    let mut padded = [b' '; 15];
    padded[..4].copy_from_slice(&s[..4]);
    padded[5..].copy_from_slice(&s[4..]);
    parse_syslog_stamp(&padded)
}

/// Parses a run of ASCII digits as `u32`; `None` if empty, not all digits
/// or too large.
pub fn parse_u32(digits: &[u8]) -> Option<u32> {
    parse_u64(digits).and_then(|v| u32::try_from(v).ok())
}

/// Parses a run of ASCII digits as `u64`; `None` if empty, not all digits
/// or too large.
pub fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() || digits.len() > 19 {
        return None;
    }
    let mut v: u64 = 0;
    for &b in digits {
        if !b.is_ascii_digit() {
            return None;
        }
        v = v * 10 + u64::from(b - b'0');
    }
    Some(v)
}

/// Parses a decimal number such as `0.04`, `12`, `1.2e-3` is not accepted:
/// Postfix writes plain fixed-point numbers.
pub fn parse_decimal(text: &[u8]) -> Option<f64> {
    let (int, frac) = match memchr::memchr(b'.', text) {
        Some(dot) => (&text[..dot], &text[dot + 1..]),
        None => (text, &[][..]),
    };
    if int.is_empty() && frac.is_empty() {
        return None;
    }
    let whole = if int.is_empty() { 0 } else { parse_u64(int)? };
    let mut value = whole as f64;
    if !frac.is_empty() {
        if frac.len() > 9 {
            return None;
        }
        let f = parse_u64(frac)? as f64;
        value += f / 10f64.powi(frac.len() as i32);
    }
    Some(value)
}

/// Returns the slice after `prefix` if `text` starts with it.
#[inline]
pub fn after<'a>(text: &'a [u8], prefix: &[u8]) -> Option<&'a [u8]> {
    text.strip_prefix(prefix)
}

/// The value of `key` in a `key=value, key=value` list: the text after the
/// first `key` that starts the text or follows `, `/` `, up to `terminator`.
pub fn field<'a>(text: &'a [u8], key: &[u8], terminator: u8) -> Option<&'a [u8]> {
    let finder = memchr::memmem::find_iter(text, key);
    for pos in finder {
        if pos == 0 || matches!(text[pos - 1], b' ' | b',') {
            let value = &text[pos + key.len()..];
            let end = memchr::memchr(terminator, value).unwrap_or(value.len());
            return Some(&value[..end]);
        }
    }
    None
}

/// `text` as `&str` if it is valid UTF-8 (labels and keys must be).
#[inline]
pub fn as_str(text: &[u8]) -> Option<&str> {
    std::str::from_utf8(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classic_syslog_with_pid() {
        let e = split_syslog(b"Nov 21 10:00:00 mx1 postfix/smtpd[54046]: connect from x[1.2.3.4]")
            .unwrap();
        assert_eq!(e.host, b"mx1");
        assert_eq!(e.program, b"postfix/smtpd");
        assert_eq!(e.pid, Some(54046));
        assert_eq!(e.message, b"connect from x[1.2.3.4]");
        assert_eq!(e.time_text, b"Nov 21 10:00:00");
    }

    #[test]
    fn space_padded_day_and_no_pid() {
        let e = split_syslog(
            b"Feb  3 01:02:03 host postfix/postfix-script: starting the Postfix mail system",
        )
        .unwrap();
        assert_eq!(e.program, b"postfix/postfix-script");
        assert_eq!(e.pid, None);
        assert_eq!(e.message, b"starting the Postfix mail system");
        assert!(matches!(
            e.time,
            LogTime::Syslog {
                month: 2,
                day: 3,
                ..
            }
        ));
    }

    #[test]
    fn rfc3339_with_offset() {
        let e = split_syslog(
            b"2020-03-19T09:29:04.507835+00:00 0e3f0b6b8f3b postfix/qmgr[3035]: 6D0EB2E3F6: removed",
        )
        .unwrap();
        assert_eq!(e.host, b"0e3f0b6b8f3b");
        assert_eq!(e.message, b"6D0EB2E3F6: removed");
        match e.time {
            LogTime::Absolute(t) => assert!((t - 1_584_610_144.507_835).abs() < 1e-6),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn unpadded_one_digit_day() {
        let e =
            split_syslog(b"Mar 7 02:09:33 server postfix/smtpd[27246]: connect from x[1.2.3.4]")
                .unwrap();
        assert_eq!(e.time_text, b"Mar 7 02:09:33");
        assert_eq!(e.host, b"server");
        assert!(matches!(
            e.time,
            LogTime::Syslog {
                month: 3,
                day: 7,
                second_of_day: 7773
            }
        ));
        assert!(split_syslog(b"Mar 77 02:09:33 server p: m").is_none());
    }

    #[test]
    fn freebsd_facility_and_solaris_message_id() {
        let e = split_syslog(
            b"Jul  1 20:08:06 <mail.info> mailhost postfix/smtpd[4379]: connect from unknown[10.0.0.1]",
        )
        .unwrap();
        assert_eq!(e.host, b"mailhost");
        assert_eq!(e.program, b"postfix/smtpd");
        let e = split_syslog(
            b"Aug 17 15:16:12 mailhost postfix/cleanup[14194]: [ID 197553 mail.info] EC2B339E5: message-id=<a@b>",
        )
        .unwrap();
        assert_eq!(e.message, b"EC2B339E5: message-id=<a@b>");
    }

    #[test]
    fn rejects_non_syslog() {
        assert!(split_syslog(b"").is_none());
        assert!(split_syslog(b"hello world").is_none());
        assert!(split_syslog(b"Nov 21 10:00:00").is_none());
        assert!(split_syslog(b"Nov 21 10:00:00 host").is_none());
        assert!(split_syslog(b"Nov 21 10:00:00 host message without tag").is_none());
        assert!(split_syslog(b"Xyz 21 10:00:00 host prog: m").is_none());
    }

    #[test]
    fn decimals() {
        assert_eq!(parse_decimal(b"0.04"), Some(0.04));
        assert_eq!(parse_decimal(b"12"), Some(12.0));
        assert_eq!(parse_decimal(b".5"), Some(0.5));
        assert_eq!(parse_decimal(b"1.x"), None);
        assert_eq!(parse_decimal(b""), None);
    }

    #[test]
    fn fields() {
        let t = b"to=<a@b>, relay=local, delay=0.1, delays=0/0/0/0.1, dsn=2.0.0, status=sent (ok)";
        assert_eq!(field(t, b"relay=", b','), Some(&b"local"[..]));
        assert_eq!(field(t, b"delay=", b','), Some(&b"0.1"[..]));
        assert_eq!(field(t, b"status=", b' '), Some(&b"sent"[..]));
        assert_eq!(field(t, b"nope=", b','), None);
    }
}
