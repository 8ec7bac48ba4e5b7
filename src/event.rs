//! The typed vocabulary every log format is translated into.
//!
//! A format parser turns one log line into zero or more [`Event`]s. Events
//! borrow from the line (no allocation); the per-message correlator
//! ([`crate::state`]) and the metrics ([`crate::metrics`]) consume them.
//! Every string carried here that ends up in a label is either a bounded
//! `&'static str` chosen by the parser or a name from the MTA's own
//! configuration (a transport or service name); addresses and queue ids are
//! only ever used as keys, never as label values.

use smallvec::SmallVec;

/// What a delivery attempt for one recipient ended with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DeliveryStatus {
    /// Handed over to the next hop or mailbox.
    Sent,
    /// Temporary failure: the recipient stays queued and is retried.
    Deferred,
    /// Permanent failure: the sender gets (or would get) a bounce.
    Bounced,
}

impl DeliveryStatus {
    /// The `status` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Sent => "sent",
            DeliveryStatus::Deferred => "deferred",
            DeliveryStatus::Bounced => "bounced",
        }
    }
}

/// The SMTP stage a rejection happened at (the `stage` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RejectStage {
    Connect,
    Helo,
    Mail,
    Rcpt,
    Data,
    EndOfMessage,
    Other,
}

impl RejectStage {
    pub const ALL: [RejectStage; 7] = [
        RejectStage::Connect,
        RejectStage::Helo,
        RejectStage::Mail,
        RejectStage::Rcpt,
        RejectStage::Data,
        RejectStage::EndOfMessage,
        RejectStage::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RejectStage::Connect => "CONNECT",
            RejectStage::Helo => "HELO",
            RejectStage::Mail => "MAIL",
            RejectStage::Rcpt => "RCPT",
            RejectStage::Data => "DATA",
            RejectStage::EndOfMessage => "END-OF-MESSAGE",
            RejectStage::Other => "other",
        }
    }

    /// Maps the SMTP command word a server logs (`RCPT`, `EHLO`, `BDAT`,
    /// `END-OF-MESSAGE`…) to a stage.
    pub fn from_command(word: &[u8]) -> RejectStage {
        match word {
            b"CONNECT" => RejectStage::Connect,
            b"HELO" | b"EHLO" => RejectStage::Helo,
            b"MAIL" => RejectStage::Mail,
            b"RCPT" => RejectStage::Rcpt,
            b"DATA" | b"BDAT" => RejectStage::Data,
            b"END-OF-MESSAGE" => RejectStage::EndOfMessage,
            _ => RejectStage::Other,
        }
    }
}

/// A bounded label for the SMTP command a session ended after: the
/// commands of RFC 5321 and its extensions, Postfix's pseudo-commands
/// `CONNECT`, `END-OF-MESSAGE` and `UNKNOWN`, and `other` for the rest.
pub fn smtp_command_label(word: &[u8]) -> &'static str {
    const COMMANDS: [&str; 17] = [
        "CONNECT",
        "HELO",
        "EHLO",
        "STARTTLS",
        "AUTH",
        "MAIL",
        "RCPT",
        "DATA",
        "BDAT",
        "END-OF-MESSAGE",
        "RSET",
        "NOOP",
        "VRFY",
        "ETRN",
        "QUIT",
        "XCLIENT",
        "UNKNOWN",
    ];
    let word = word.strip_suffix(b":").unwrap_or(word);
    COMMANDS
        .iter()
        .find(|c| c.as_bytes() == word)
        .copied()
        .unwrap_or("other")
}

/// Direction of a TLS session (the `direction` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    Inbound,
    Outbound,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::Inbound => "inbound",
            Direction::Outbound => "outbound",
        }
    }
}

/// Outcome of an anti-spam test (the `verdict` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Verdict {
    Allowed,
    Denied,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Allowed => "allowed",
            Verdict::Denied => "denied",
        }
    }
}

/// Which notification the MTA generated for a message (the `kind` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BounceKind {
    NonDelivery,
    Delay,
    Success,
}

impl BounceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BounceKind::NonDelivery => "non_delivery",
            BounceKind::Delay => "delay",
            BounceKind::Success => "success",
        }
    }
}

/// Severity of a daemon's own diagnostic line (`warning:`, `fatal:`…).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Severity {
    Warning,
    Error,
    Fatal,
    Panic,
    /// qmail's `alert:`: a serious problem the daemon keeps retrying.
    Alert,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Warning => "warning",
            Severity::Error => "error",
            Severity::Fatal => "fatal",
            Severity::Panic => "panic",
            Severity::Alert => "alert",
        }
    }
}

/// Why an SMTP session ended badly (the `kind` label of session errors).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SessionError {
    /// The client went away mid-session.
    LostConnection,
    /// The client stopped talking.
    Timeout,
    /// The server hung up after too many errors.
    TooManyErrors,
}

impl SessionError {
    pub fn as_str(self) -> &'static str {
        match self {
            SessionError::LostConnection => "lost_connection",
            SessionError::Timeout => "timeout",
            SessionError::TooManyErrors => "too_many_errors",
        }
    }
}

/// Life-cycle of the mail system itself (the `event` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Lifecycle {
    Started,
    Reloaded,
    Stopped,
}

impl Lifecycle {
    pub fn as_str(self) -> &'static str {
        match self {
            Lifecycle::Started => "start",
            Lifecycle::Reloaded => "reload",
            Lifecycle::Stopped => "stop",
        }
    }
}

/// A delivery attempt for one recipient.
#[derive(Clone, Debug, PartialEq)]
pub struct Delivery<'a> {
    pub queue_id: &'a str,
    /// The delivery agent or channel (`smtp`, `lmtp`, `local`…): bounded by
    /// the MTA's configuration.
    pub transport: &'a str,
    /// Recipient address: used only to count attempts per recipient.
    pub recipient: &'a str,
    pub status: DeliveryStatus,
    /// Seconds from arrival to this attempt's end, as the MTA logged it.
    pub delay: Option<f64>,
    /// Postfix `delays=a/b/c/d`: before queue manager, in queue manager,
    /// connection setup, transmission.
    pub stage_delays: Option<[f64; 4]>,
}

/// One fact read from a log line.
#[derive(Clone, Debug, PartialEq)]
pub enum Event<'a> {
    /// A message entered the queue (Postfix cleanup, qmail `new msg`).
    MessageReceived { queue_id: &'a str },
    /// A new message took this queue id (qmail `new msg`). The MTA reuses
    /// ids once a message is gone, so state still held under the id belongs
    /// to an earlier message whose end was not seen, and is retired.
    NewMessage { queue_id: &'a str },
    /// The queue manager saw the message's envelope; it may be logged again
    /// on every retry, the correlator observes size and recipients once.
    /// `recipients` is `None` where the MTA does not log the count (qmail).
    MessageEnvelope {
        queue_id: &'a str,
        size: u64,
        recipients: Option<u32>,
    },
    /// A delivery attempt for one recipient ended.
    Delivery(Delivery<'a>),
    /// A delivery attempt started under a delivery id (qmail `starting
    /// delivery D: msg M to local R`); its result is logged later with only
    /// the delivery id ([`Event::DeliveryResult`]).
    DeliveryStarted {
        delivery_id: u64,
        queue_id: &'a str,
        /// The channel (`local`, `remote`): bounded by the parser.
        transport: &'static str,
        /// Used only to count attempts per recipient.
        recipient: &'a str,
    },
    /// The attempt started under `delivery_id` ended; the correlator knows
    /// its message, transport and recipient.
    DeliveryResult {
        delivery_id: u64,
        status: DeliveryStatus,
    },
    /// Deliveries in progress and the concurrency limit of one transport
    /// (qmail `status: local l/L remote r/R`).
    QueueConcurrency {
        transport: &'static str,
        active: u32,
        limit: u32,
    },
    /// The queue manager exited (qmail `status: exiting`): the delivery ids
    /// it handed out are void (they count from 1 again after a start).
    /// Queued messages keep their ids across the restart.
    QueueManagerExited,
    /// The message was returned after the maximal queue lifetime.
    MessageExpired { queue_id: &'a str },
    /// The message left the queue.
    MessageRemoved { queue_id: &'a str },
    /// The message left the queue after its last delivery (Exim
    /// `Completed`), with the queue time the MTA logged (`QT=` of
    /// `queue_time_overall`), if it did.
    MessageCompleted {
        queue_id: &'a str,
        queue_seconds: Option<f64>,
    },
    /// Delivery of the message was suspended until an administrator or a
    /// timer thaws it (Exim `Frozen`).
    MessageFrozen { queue_id: &'a str },
    /// The MTA generated a notification (bounce, delay warning, DSN success).
    BounceNotification { kind: BounceKind },
    /// The MTA discarded a bounce it could not deliver either (qmail
    /// `triple bounce: discarding …`).
    BounceDiscarded,
    /// An SMTP client connected to a server process.
    SmtpConnect { service: &'a str },
    /// Open SMTP connections and the concurrency limit of a service
    /// (tcpserver `status: 3/20`).
    SmtpConcurrency {
        service: &'a str,
        open: u32,
        limit: u32,
    },
    /// An SMTP session ended badly after the given command.
    SmtpSessionError {
        service: &'a str,
        kind: SessionError,
        /// The last SMTP command, from [`smtp_command_label`].
        after: &'static str,
    },
    /// A TLS session was established.
    TlsConnection {
        service: &'a str,
        direction: Direction,
    },
    /// The server rejected a command.
    SmtpReject {
        service: &'a str,
        stage: RejectStage,
        code: u16,
    },
    /// SMTP AUTH failed. `mechanism` is bounded by the parser.
    AuthFailure {
        service: &'a str,
        mechanism: &'static str,
    },
    /// An outbound connection attempt failed (`connect to …: Connection refused`).
    OutboundConnectError {
        transport: &'a str,
        error: &'static str,
    },
    /// An anti-spam test decided on a client or message.
    SpamVerdict {
        filter: &'static str,
        verdict: Verdict,
        reason: &'static str,
    },
    /// A daemon logged a problem about itself or its configuration.
    DaemonProblem {
        daemon: &'static str,
        severity: Severity,
    },
    /// The mail system started, reloaded or stopped.
    Lifecycle(Lifecycle),
    /// A message was enqueued for one recipient (Messaging Server `E`
    /// record). A message has one such record per recipient (or recipient
    /// group) and channel; `message` keys them together: the correlator
    /// counts the message once and its recipients separately.
    RecipientEnqueued {
        /// The message id, else the queue file's stable part; `None` when
        /// the log carries neither.
        message: Option<&'a str>,
        /// Used only to count attempts per recipient.
        recipient: &'a str,
        /// The size as logged, in the MTA's blocks (the pipeline knows the
        /// source's block size).
        size_blocks: u64,
    },
    /// A delivery attempt of an enqueued recipient ended (Messaging Server
    /// `D`, `Q`, `R`): its delay is measured from the message's first
    /// enqueue, and a final outcome completes the recipient (the message
    /// leaves the queue when all its enqueued recipients are done).
    QueuedDelivery {
        message: Option<&'a str>,
        /// The channel that dequeued it: bounded by the MTA's configuration.
        transport: &'a str,
        recipient: &'a str,
        status: DeliveryStatus,
        /// The attempt number the record itself carries (Messaging Server
        /// queue file names count earlier failures).
        attempt: Option<u32>,
    },
    /// An SMTP connection was opened (Messaging Server `O` record).
    ConnectionOpened {
        service: &'a str,
        direction: Direction,
    },
    /// An SMTP connection was closed (Messaging Server `C` record).
    ConnectionClosed {
        service: &'a str,
        direction: Direction,
    },
    /// An SMTP command whose reply is logged on a later line of the same
    /// source (hosting SMTP log: `from` is `MAIL`, `to` is `RCPT`, `size`
    /// ends the message data). `stage` is where a refusal of it counts;
    /// `size` is the message size for the end of the data. The correlator
    /// keeps the command per source until its [`Event::SmtpReply`].
    SmtpCommand {
        stage: RejectStage,
        size: Option<u64>,
    },
    /// The server's reply to the last [`Event::SmtpCommand`] of the same
    /// source. `queued` when the reply says the message was queued (qmail's
    /// `250 ok <unix-time> qp <pid>`).
    SmtpReply { code: u16, queued: bool },
    /// The server checked a recipient before replying to its `RCPT`
    /// (hosting SMTP log `check`). Both labels are bounded by the parser.
    RecipientCheck {
        result: &'static str,
        detail: &'static str,
    },
    /// A message's deliveries begin (hosting delivery log `init`). The line
    /// has no id: the [`Event::SequentialDeliveryStarted`] lines that follow
    /// in the same source belong to this message.
    DeliveriesInit,
    /// A delivery attempt started under `delivery_id` for the message of
    /// the source's last [`Event::DeliveriesInit`] (hosting `try`); its
    /// result is an [`Event::DeliveryResult`].
    SequentialDeliveryStarted {
        delivery_id: u64,
        /// `local` or `remote`: bounded by the parser.
        transport: &'static str,
    },
    /// The message of the source's last [`Event::DeliveriesInit`] was
    /// submitted by an authenticated SMTP client (hosting: `smtp_auth/` in
    /// a result). Counted once per message by the correlator.
    AuthenticatedSubmission,
    /// How the client an anti-spam filter decided on was connected
    /// (spamdyke's `encryption:` and `auth:` fields); logged with every
    /// decision, next to its [`Event::SpamVerdict`].
    SpamFilterClient {
        filter: &'static str,
        /// `none`, `tls`, `ssl`, `tls_passthrough` or `other`.
        encryption: &'static str,
        authenticated: bool,
    },
}

/// The events of one line. Almost every line yields at most three (an Exim
/// arrival over TLS: received, envelope, TLS session), so they live inline,
/// without allocation.
pub type Events<'a> = SmallVec<[Event<'a>; 3]>;
