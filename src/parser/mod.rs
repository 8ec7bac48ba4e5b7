//! Format parsers: one pure function per log format from a line to events.
//!
//! A parser takes one line (bytes, without the newline) and returns a
//! [`ParsedLine`]: the line's timestamp if it has one, and either the
//! [`Event`](crate::event::Event)s it carries, or the verdict that it belongs
//! to another program ([`LineOutcome::Ignored`]) or has a shape the parser
//! does not know ([`LineOutcome::Unparsed`]). Parsers do no I/O, keep no
//! state and touch no metrics; they never panic on any input.
//!
//! [`Format`] names the formats, detects them from content and dispatches.

pub mod exim;
pub mod hosting;
pub mod messaging_server;
pub mod postfix;
pub mod qmail;
pub mod sendmail;
pub mod spamdyke;
pub mod time;

use crate::event::Events;
use time::LogTime;

/// What a line turned out to be.
// Boxing the events would cost an allocation per line; the outcome lives on
// the stack for one line only.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug, PartialEq)]
pub enum LineOutcome<'a> {
    /// The format's own line, understood; it may carry no events.
    Parsed(Events<'a>),
    /// A line of another program in the same file (dovecot, amavis, cron).
    Ignored,
    /// A line of this format (or of no known shape) that was not understood.
    Unparsed,
}

/// One parsed line.
#[derive(Clone, Debug, PartialEq)]
pub struct ParsedLine<'a> {
    pub time: Option<LogTime>,
    /// The timestamp's text, so callers can cache its conversion.
    pub time_text: &'a [u8],
    pub outcome: LineOutcome<'a>,
}

impl<'a> ParsedLine<'a> {
    /// A line with no recognisable shape at all.
    pub fn unparsed() -> ParsedLine<'a> {
        ParsedLine {
            time: None,
            time_text: &[],
            outcome: LineOutcome::Unparsed,
        }
    }
}

/// The log formats maillog_exporter reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Postfix via syslog or `maillog_file`.
    Postfix,
    /// qmail-send, tcpserver and rblsmtpd via multilog, splogger or
    /// `tai64nlocal`.
    Qmail,
    /// Exim's mainlog, rejectlog and paniclog, in its own files or syslog.
    Exim,
    /// Sendmail (`sendmail`, `sm-mta`) via syslog.
    Sendmail,
    /// Sun Java System / Oracle Messaging Server MTA transaction log;
    /// folded records are joined by [`messaging_server::RecordJoiner`].
    MessagingServer,
    /// A hosting provider's per-port SMTP log (`date, from|to|check|size|resp, …`).
    HostingSmtp,
    /// A hosting provider's delivery log (`date, init|try|result, …`).
    HostingDelivery,
    /// spamdyke's decision lines via syslog or multilog.
    Spamdyke,
}

impl Format {
    /// Every format, in detection order.
    pub const ALL: [Format; 8] = [
        Format::Postfix,
        Format::Qmail,
        Format::Exim,
        Format::Sendmail,
        Format::MessagingServer,
        Format::HostingSmtp,
        Format::HostingDelivery,
        Format::Spamdyke,
    ];

    /// The name used by `--log.format` and the `format` label.
    pub fn name(self) -> &'static str {
        match self {
            Format::Postfix => "postfix",
            Format::Qmail => "qmail",
            Format::Exim => "exim",
            Format::Sendmail => "sendmail",
            Format::MessagingServer => "messaging_server",
            Format::HostingSmtp => "hosting_smtp",
            Format::HostingDelivery => "hosting_delivery",
            Format::Spamdyke => "spamdyke",
        }
    }

    /// The `mta` label value of this format's metrics. Both hosting logs
    /// are one platform (`hosting`); spamdyke only runs in front of
    /// qmail-smtpd, so its own problems count under `qmail`.
    pub fn mta(self) -> &'static str {
        match self {
            Format::Postfix => "postfix",
            Format::Qmail | Format::Spamdyke => "qmail",
            Format::Exim => "exim",
            Format::Sendmail => "sendmail",
            Format::MessagingServer => "messaging_server",
            Format::HostingSmtp | Format::HostingDelivery => "hosting",
        }
    }

    /// Whether the format logs the queue itself (arrival, removal,
    /// expiry, notifications), so the per-MTA queue series
    /// (`mail_messages_received_total`, `mail_queue_messages`…) exist at
    /// zero for it. Exim logs arrivals and `Completed`; Sendmail logs no
    /// removal, and the hosting logs and spamdyke log no queue: a series
    /// that can never move is not created for them.
    pub fn logs_queue(self) -> bool {
        matches!(
            self,
            Format::Postfix | Format::Qmail | Format::Exim | Format::MessagingServer
        )
    }

    /// Whether the format's deliveries name the message and recipient they
    /// belong to, so deferrals can be counted per recipient and
    /// `mail_delivery_attempts` observed at the final outcome. Sendmail
    /// does (its `to=` lines carry the queue id) although it logs no
    /// removal; the hosting delivery log has no message id.
    pub fn counts_attempts(self) -> bool {
        self.logs_queue() || self == Format::Sendmail
    }

    /// The format called `name` (case-insensitive).
    pub fn from_name(name: &str) -> Option<Format> {
        Format::ALL
            .into_iter()
            .find(|f| f.name().eq_ignore_ascii_case(name))
    }

    /// Comma-separated list of format names, for help and error messages.
    pub fn names() -> String {
        Format::ALL.map(Format::name).join(", ")
    }

    /// Parses one line of this format (for [`Format::MessagingServer`],
    /// one record: see [`Format::joins_lines`]).
    pub fn parse(self, line: &[u8]) -> ParsedLine<'_> {
        match self {
            Format::Postfix => postfix::parse(line),
            Format::Qmail => qmail::parse(line),
            Format::Exim => exim::parse(line),
            Format::Sendmail => sendmail::parse(line),
            Format::MessagingServer => messaging_server::parse(line),
            Format::HostingSmtp => hosting::parse_smtp(line),
            Format::HostingDelivery => hosting::parse_delivery(line),
            Format::Spamdyke => spamdyke::parse(line),
        }
    }

    /// Whether the format's records may be folded over several lines, so
    /// lines must be joined into records before [`Format::parse`].
    pub fn joins_lines(self) -> bool {
        self == Format::MessagingServer
    }

    /// Whether `line` is unmistakably a line of this format (used to detect
    /// a source's format from its first lines).
    pub fn recognizes(self, line: &[u8]) -> bool {
        match self {
            Format::Postfix => postfix::recognizes(line),
            Format::Qmail => qmail::recognizes(line),
            Format::Exim => exim::recognizes(line),
            Format::Sendmail => sendmail::recognizes(line),
            Format::MessagingServer => messaging_server::recognizes(line),
            Format::HostingSmtp => hosting::recognizes_smtp(line),
            Format::HostingDelivery => hosting::recognizes_delivery(line),
            Format::Spamdyke => spamdyke::recognizes(line),
        }
    }

    /// The first format that recognises `line`.
    pub fn detect(line: &[u8]) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.recognizes(line))
    }
}

/// Helpers of the parsers' unit tests.
#[cfg(test)]
pub(crate) mod test_lines {
    use super::{LineOutcome, ParsedLine};
    use crate::event::Event;

    /// The events of a line that must parse; panics naming the line otherwise.
    pub fn events<'a>(parsed: ParsedLine<'a>, line: &str) -> Vec<Event<'a>> {
        match parsed.outcome {
            LineOutcome::Parsed(e) => e.into_vec(),
            other => panic!("{other:?} for {line}"),
        }
    }

    /// The first line of `text` containing `needle` (so tests use real lines).
    pub fn real<'a>(text: &'a str, needle: &str) -> &'a str {
        text.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle}"))
    }
}
