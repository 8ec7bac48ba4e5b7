//! Metrics: the one struct that owns the Prometheus registry.
//!
//! Every metric of the schema (docs/metrics.md) is a field here; its doc
//! comment is its help text. The pipeline task updates them through small
//! typed methods; reader threads update the source-health metrics through
//! [`SourceObserver`]; the HTTP server only calls
//! [`Metrics::registry`]`.gather()`. Label values are bounded: `mta`,
//! `status`, `stage`, `verdict`… come from fixed sets in the code;
//! `transport` and `service` come from the MTA's configuration and are
//! capped per metric ([`MAX_FREE_LABEL_VALUES`]), with any further value
//! counted as `other`.

use crate::event::{
    BounceKind, DeliveryStatus, Direction, Lifecycle, RejectStage, SessionError, Severity, Verdict,
};
use crate::source::{Rotation, SourceId, SourceObserver};
use crate::state::Eviction;
use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use std::path::Path;
use std::sync::Mutex;

/// Most distinct values of a configuration-derived label (`transport`,
/// `service`) per metric; further values are counted as `other`.
pub const MAX_FREE_LABEL_VALUES: usize = 64;

/// Delivery and queue delays: 10 ms (a local delivery) to 5 days (Postfix's
/// default maximal_queue_lifetime), dense around the seconds-to-minutes
/// range where remote SMTP deliveries sit and around retry back-offs.
pub const DELAY_BUCKETS: [f64; 20] = [
    0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0,
    7200.0, 14_400.0, 43_200.0, 86_400.0, 432_000.0,
];

/// Message sizes: 1 KiB (a bare text mail) to 64 MiB (above the usual
/// message_size_limit), powers of four.
pub const SIZE_BUCKETS: [f64; 9] = [
    1024.0,
    4096.0,
    16_384.0,
    65_536.0,
    262_144.0,
    1_048_576.0,
    4_194_304.0,
    16_777_216.0,
    67_108_864.0,
];

/// Recipients per message: mostly 1, mailing lists in the hundreds.
pub const RECIPIENT_BUCKETS: [f64; 9] = [1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0, 100.0, 500.0];

/// Attempts per recipient: 1 is the norm; Postfix retries with back-off up
/// to 5 days, which is a few dozen attempts.
pub const ATTEMPT_BUCKETS: [f64; 9] = [1.0, 2.0, 3.0, 4.0, 5.0, 7.0, 10.0, 20.0, 50.0];

/// MTAs that log discarded bounces: their `mail_bounces_discarded_total`
/// exists at zero (for the others it would be a counter that never moves).
const MTAS_DISCARDING_BOUNCES: [&str; 1] = ["qmail"];

/// MTAs that freeze messages: their `mail_messages_frozen_total` exists at
/// zero.
const MTAS_FREEZING: [&str; 1] = ["exim"];

/// All metrics of the exporter.
pub struct Metrics {
    registry: Registry,
    /// Messages that entered the queue (counted once per queue id).
    messages_received: IntCounterVec,
    /// Size of messages entering the queue, in bytes.
    message_size: HistogramVec,
    /// Number of recipients of messages entering the queue.
    message_recipients: HistogramVec,
    /// Delivery attempts by delivery agent and outcome (one per status line).
    deliveries: IntCounterVec,
    /// Messages returned to the sender after the maximal queue lifetime.
    messages_expired: IntCounterVec,
    /// Time from arrival to the end of a delivery attempt, as logged by the MTA.
    delivery_delay: HistogramVec,
    /// Postfix delays=a/b/c/d: before_queue_manager, in_queue_manager, connection_setup, transmission.
    stage_delay: HistogramVec,
    /// Messages that left the queue.
    messages_removed: IntCounterVec,
    /// Time a message stayed in the queue, first seen to removed.
    message_queue_time: HistogramVec,
    /// Messages seen entering the queue and not yet removed.
    queue_messages: IntGaugeVec,
    /// Deliveries in progress, by transport, as the queue manager logged it.
    queue_active_deliveries: IntGaugeVec,
    /// Most deliveries the queue manager runs at once, by transport.
    queue_concurrency_limit: IntGaugeVec,
    /// Delivery attempts per recipient at its final outcome.
    delivery_attempts: HistogramVec,
    /// SMTP connections accepted by a server process.
    smtp_connections: IntCounterVec,
    /// SMTP connections open now, as the connection server logged it.
    smtp_connections_open: IntGaugeVec,
    /// Most SMTP connections the connection server accepts at once.
    smtp_connection_limit: IntGaugeVec,
    /// SMTP connections opened, by direction (inbound: server, outbound: client).
    smtp_connections_opened: IntCounterVec,
    /// SMTP connections closed, by direction.
    smtp_connections_closed: IntCounterVec,
    /// SMTP connections open now by direction, counted from open and close records.
    smtp_connections_current: IntGaugeVec,
    /// SMTP sessions that ended abnormally, by kind and the last command.
    smtp_session_errors: IntCounterVec,
    /// Commands rejected by the SMTP server, by stage and SMTP reply code.
    smtp_rejects: IntCounterVec,
    /// Failed SMTP AUTH attempts.
    auth_failures: IntCounterVec,
    /// TLS sessions established, inbound (server) and outbound (client).
    tls_connections: IntCounterVec,
    /// Outbound connection attempts that failed, by error.
    outbound_connect_errors: IntCounterVec,
    /// Anti-spam decisions by filter, verdict and reason.
    spam_verdicts: IntCounterVec,
    /// Anti-spam decisions by how the client was connected: encryption and whether it authenticated.
    spam_filter_clients: IntCounterVec,
    /// SMTP transactions (MAIL commands) logged, by service.
    smtp_transactions: IntCounterVec,
    /// Recipients (RCPT commands) the SMTP server accepted or rejected, by service.
    smtp_recipients: IntCounterVec,
    /// Messages the SMTP server accepted and queued, by service.
    smtp_messages_accepted: IntCounterVec,
    /// Recipient checks the SMTP server logged, by result and detail.
    smtp_recipient_checks: IntCounterVec,
    /// Messages submitted by an authenticated SMTP client, once per message.
    authenticated_submissions: IntCounterVec,
    /// Notifications generated for senders or the postmaster, by kind.
    bounce_notifications: IntCounterVec,
    /// Bounces discarded because they could not be delivered either.
    bounces_discarded: IntCounterVec,
    /// Messages whose delivery was suspended (Exim frozen messages).
    messages_frozen: IntCounterVec,
    /// Warning, error, fatal and panic lines logged by the MTA's daemons.
    daemon_problems: IntCounterVec,
    /// Start, reload and stop of the mail system.
    lifecycle: IntCounterVec,
    /// Log lines read, by source, format and result (parsed, ignored, unparsed).
    lines: IntCounterVec,
    /// Bytes read from each source.
    bytes_read: IntCounterVec,
    /// Lines that were not valid UTF-8 (parsed byte-wise anyway).
    invalid_utf8_lines: IntCounterVec,
    /// Lines longer than the line size limit, skipped.
    lines_too_long: IntCounterVec,
    /// Whether the source's file is open and readable (1) or not (0).
    source_up: IntGaugeVec,
    /// Rotations and truncations of followed files.
    source_rotations: IntCounterVec,
    /// Errors opening or reading a source.
    source_errors: IntCounterVec,
    /// Timestamp of the last line read from a source, in Unix seconds.
    last_line_timestamp: prometheus::GaugeVec,
    /// Messages tracked by the per-message correlator.
    tracked_messages: IntGauge,
    /// Tracked messages dropped before they left the queue, by reason.
    tracked_evicted: IntCounterVec,
    /// Saves of the positions file, by result (ok, error).
    positions_writes: IntCounterVec,
    /// Delivery attempts tracked by the correlator (started, result not yet seen).
    tracked_deliveries: IntGauge,
    /// Tracked delivery attempts dropped before their result was seen, by reason.
    tracked_deliveries_evicted: IntCounterVec,
    /// Build information of maillog_exporter.
    _build_info: IntGaugeVec,
    labels: Mutex<LabelCaps>,
}

#[derive(Default)]
struct LabelCaps {
    seen: Vec<(&'static str, Vec<Box<str>>)>,
}

impl LabelCaps {
    /// `value` if the metric has fewer than the cap of distinct values or
    /// already has this one, else `other`.
    fn bounded<'v>(&mut self, metric: &'static str, value: &'v str) -> &'v str {
        let idx = match self.seen.iter().position(|(m, _)| *m == metric) {
            Some(i) => i,
            None => {
                self.seen.push((metric, Vec::new()));
                self.seen.len() - 1
            }
        };
        let values = &mut self.seen[idx].1;
        if values.iter().any(|v| &**v == value) {
            return value;
        }
        if values.len() < MAX_FREE_LABEL_VALUES {
            values.push(value.into());
            value
        } else {
            "other"
        }
    }
}

fn counter(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("invalid metric {name}: {e}"));
    r.register(Box::new(c.clone()))
        .unwrap_or_else(|e| unreachable!("duplicate metric {name}: {e}"));
    c
}

fn gauge(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels)
        .unwrap_or_else(|e| unreachable!("invalid metric {name}: {e}"));
    r.register(Box::new(g.clone()))
        .unwrap_or_else(|e| unreachable!("duplicate metric {name}: {e}"));
    g
}

fn histogram(
    r: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let h = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .unwrap_or_else(|e| unreachable!("invalid metric {name}: {e}"));
    r.register(Box::new(h.clone()))
        .unwrap_or_else(|e| unreachable!("duplicate metric {name}: {e}"));
    h
}

/// Version, git revision and compiler of this build.
pub struct BuildInfo {
    pub version: &'static str,
    pub revision: &'static str,
    pub rustc_version: &'static str,
}

impl BuildInfo {
    pub const CURRENT: BuildInfo = BuildInfo {
        version: env!("CARGO_PKG_VERSION"),
        revision: env!("MAILLOG_EXPORTER_REVISION"),
        rustc_version: env!("MAILLOG_EXPORTER_RUSTC_VERSION"),
    };
}

impl Metrics {
    /// Registers every metric in a new registry.
    pub fn new(build: &BuildInfo) -> Metrics {
        let r = Registry::new();
        let stage_help = "Postfix delays=a/b/c/d per stage: before_queue_manager, in_queue_manager, connection_setup, transmission.";
        let m = Metrics {
            messages_received: counter(&r, "mail_messages_received_total", "Messages that entered the queue (counted once per queue id).", &["mta"]),
            message_size: histogram(&r, "mail_message_size_bytes", "Size of messages entering the queue, in bytes.", &["mta"], &SIZE_BUCKETS),
            message_recipients: histogram(&r, "mail_message_recipients", "Number of recipients of messages entering the queue.", &["mta"], &RECIPIENT_BUCKETS),
            deliveries: counter(&r, "mail_deliveries_total", "Delivery attempts by delivery agent (transport) and outcome (sent, deferred, bounced); one per delivery status line.", &["mta", "transport", "status"]),
            messages_expired: counter(&r, "mail_messages_expired_total", "Messages returned to the sender after the maximal queue lifetime.", &["mta"]),
            delivery_delay: histogram(&r, "mail_delivery_delay_seconds", "Time from a message's arrival to the end of a delivery attempt, as logged by the MTA.", &["mta", "transport", "status"], &DELAY_BUCKETS),
            stage_delay: histogram(&r, "mail_delivery_stage_delay_seconds", stage_help, &["mta", "stage"], &DELAY_BUCKETS),
            messages_removed: counter(&r, "mail_messages_removed_total", "Messages that left the queue.", &["mta"]),
            message_queue_time: histogram(&r, "mail_message_queue_seconds", "Time a message stayed in the queue, from arrival to removal (messages whose arrival was seen).", &["mta"], &DELAY_BUCKETS),
            queue_messages: gauge(&r, "mail_queue_messages", "Messages seen in the queue and not yet removed (tracked by the exporter).", &["mta"]),
            queue_active_deliveries: gauge(&r, "mail_queue_active_deliveries", "Deliveries in progress, by transport, as last logged by the queue manager.", &["mta", "transport"]),
            queue_concurrency_limit: gauge(&r, "mail_queue_concurrency_limit", "Most deliveries the queue manager runs at once, by transport, as last logged.", &["mta", "transport"]),
            delivery_attempts: histogram(&r, "mail_delivery_attempts", "Delivery attempts per recipient at its final outcome (sent or bounced).", &["mta", "transport", "status"], &ATTEMPT_BUCKETS),
            smtp_connections: counter(&r, "mail_smtp_connections_total", "SMTP connections accepted by a server process, by service.", &["mta", "service"]),
            smtp_connections_open: gauge(&r, "mail_smtp_connections_open", "SMTP connections open now, as last logged by the connection server.", &["mta", "service"]),
            smtp_connection_limit: gauge(&r, "mail_smtp_connection_limit", "Most SMTP connections the connection server accepts at once, as last logged.", &["mta", "service"]),
            smtp_connections_opened: counter(&r, "mail_smtp_connections_opened_total", "SMTP connections opened, by direction (inbound: to the server, outbound: by the client), as logged by the MTA.", &["mta", "service", "direction"]),
            smtp_connections_closed: counter(&r, "mail_smtp_connections_closed_total", "SMTP connections closed, by direction, as logged by the MTA.", &["mta", "service", "direction"]),
            smtp_connections_current: gauge(&r, "mail_smtp_connections_current", "SMTP connections open now, by direction: opened minus closed as the exporter saw them (never below 0).", &["mta", "service", "direction"]),
            smtp_session_errors: counter(&r, "mail_smtp_session_errors_total", "SMTP sessions that ended abnormally (lost_connection, timeout, too_many_errors), by the last command.", &["mta", "service", "kind", "after"]),
            smtp_rejects: counter(&r, "mail_smtp_rejects_total", "Commands or messages rejected by the SMTP server, by stage and SMTP reply code.", &["mta", "service", "stage", "code"]),
            auth_failures: counter(&r, "mail_auth_failures_total", "Failed SMTP AUTH attempts, by SASL mechanism.", &["mta", "service", "mechanism"]),
            tls_connections: counter(&r, "mail_smtp_tls_connections_total", "TLS sessions established, inbound (server) and outbound (client).", &["mta", "service", "direction"]),
            outbound_connect_errors: counter(&r, "mail_smtp_outbound_connect_errors_total", "Outbound connection attempts that failed, by error (timeout, refused, unreachable, other).", &["mta", "transport", "error"]),
            spam_verdicts: counter(&r, "mail_spam_verdicts_total", "Anti-spam decisions by filter, verdict (allowed, denied) and reason.", &["filter", "verdict", "reason"]),
            spam_filter_clients: counter(&r, "mail_spam_filter_clients_total", "Anti-spam decisions by the client's encryption (none, tls, ssl, tls_passthrough, other) and whether it authenticated (true, false).", &["filter", "encryption", "authenticated"]),
            smtp_transactions: counter(&r, "mail_smtp_transactions_total", "SMTP transactions (MAIL commands) logged by the SMTP server, by service.", &["mta", "service"]),
            smtp_recipients: counter(&r, "mail_smtp_recipients_total", "Recipients (RCPT commands) the SMTP server accepted or rejected, by service.", &["mta", "service", "result"]),
            smtp_messages_accepted: counter(&r, "mail_smtp_messages_accepted_total", "Messages the SMTP server accepted and queued, by service.", &["mta", "service"]),
            smtp_recipient_checks: counter(&r, "mail_smtp_recipient_checks_total", "Recipient checks logged by the SMTP server, by result (accepted, rejected, other) and detail (existing_recipient, other).", &["mta", "service", "result", "detail"]),
            authenticated_submissions: counter(&r, "mail_authenticated_submissions_total", "Messages submitted by an authenticated SMTP client, counted once per message.", &["mta"]),
            bounce_notifications: counter(&r, "mail_bounce_notifications_total", "Notifications the MTA generated (non_delivery, delay, success).", &["mta", "kind"]),
            bounces_discarded: counter(&r, "mail_bounces_discarded_total", "Bounces the MTA discarded because they could not be delivered either (qmail triple bounce).", &["mta"]),
            messages_frozen: counter(&r, "mail_messages_frozen_total", "Messages whose delivery the MTA suspended until an administrator or a timer thaws them (Exim: Frozen).", &["mta"]),
            daemon_problems: counter(&r, "mail_daemon_log_messages_total", "Warning, error, fatal and panic lines logged by the MTA's daemons.", &["mta", "daemon", "severity"]),
            lifecycle: counter(&r, "mail_system_lifecycle_events_total", "Start, reload and stop of the mail system.", &["mta", "event"]),
            lines: counter(&r, "maillog_lines_total", "Log lines read, by source, format and result (parsed, ignored: another program's line, unparsed: not understood).", &["source", "format", "result"]),
            bytes_read: counter(&r, "maillog_bytes_read_total", "Bytes read from each source.", &["source"]),
            invalid_utf8_lines: counter(&r, "maillog_invalid_utf8_lines_total", "Lines that were not valid UTF-8 (parsed byte-wise anyway).", &["source"]),
            lines_too_long: counter(&r, "maillog_lines_too_long_total", "Lines longer than --log.max-line-bytes, skipped.", &["source"]),
            source_up: gauge(&r, "maillog_source_up", "Whether the source's file is open and readable (1) or not (0).", &["source"]),
            source_rotations: counter(&r, "maillog_source_rotations_total", "Rotations (replaced) and truncations (truncated) of followed files.", &["source", "kind"]),
            source_errors: counter(&r, "maillog_source_errors_total", "Errors opening or reading a source.", &["source"]),
            last_line_timestamp: {
                let g = prometheus::GaugeVec::new(Opts::new("maillog_last_line_timestamp_seconds", "Timestamp written in the last line read from a source, in Unix seconds."), &["source"])
                    .unwrap_or_else(|e| unreachable!("invalid metric: {e}"));
                r.register(Box::new(g.clone())).unwrap_or_else(|e| unreachable!("duplicate metric: {e}"));
                g
            },
            tracked_messages: {
                let g = IntGauge::new("maillog_tracked_messages", "Messages tracked by the per-message correlator.")
                    .unwrap_or_else(|e| unreachable!("invalid metric: {e}"));
                r.register(Box::new(g.clone())).unwrap_or_else(|e| unreachable!("duplicate metric: {e}"));
                g
            },
            tracked_evicted: counter(&r, "maillog_tracked_messages_evicted_total", "Tracked messages dropped before they were seen leaving the queue, by reason (capacity, expired, id_reused).", &["reason"]),
            tracked_deliveries: {
                let g = IntGauge::new("maillog_tracked_deliveries", "Delivery attempts tracked by the correlator (started, result not yet seen).")
                    .unwrap_or_else(|e| unreachable!("invalid metric: {e}"));
                r.register(Box::new(g.clone())).unwrap_or_else(|e| unreachable!("duplicate metric: {e}"));
                g
            },
            tracked_deliveries_evicted: counter(&r, "maillog_tracked_deliveries_evicted_total", "Tracked delivery attempts dropped before their result was seen, by reason (capacity, expired, id_reused, restart).", &["reason"]),
            positions_writes: counter(&r, "maillog_positions_writes_total", "Saves of the positions file (--tail.positions-file), by result (ok, error).", &["result"]),
            _build_info: {
                let g = gauge(&r, "maillog_exporter_build_info", "A metric with a constant '1' value labelled by version, revision and rustc_version of maillog_exporter.", &["version", "revision", "rustc_version"]);
                g.with_label_values(&[build.version, build.revision, build.rustc_version]).set(1);
                g
            },
            labels: Mutex::new(LabelCaps::default()),
            registry: r,
        };
        for reason in [Eviction::Capacity, Eviction::Expired, Eviction::IdReused] {
            m.tracked_evicted.with_label_values(&[reason.as_str()]);
        }
        for reason in [
            Eviction::Capacity,
            Eviction::Expired,
            Eviction::IdReused,
            Eviction::Restart,
        ] {
            m.tracked_deliveries_evicted
                .with_label_values(&[reason.as_str()]);
        }
        for result in ["ok", "error"] {
            m.positions_writes.with_label_values(&[result]);
        }
        m
    }

    /// Counts a save of the positions file.
    pub fn positions_written(&self, ok: bool) {
        self.positions_writes
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
    }

    /// The registry to gather from.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// `value` as a label value of `kind` (`transport`, `service`): itself
    /// while fewer than [`MAX_FREE_LABEL_VALUES`] distinct values were seen
    /// or if already seen, else `other`.
    pub fn bounded_label<'v>(&self, kind: &'static str, value: &'v str) -> &'v str {
        self.bounded(kind, value)
    }

    fn bounded<'v>(&self, metric: &'static str, value: &'v str) -> &'v str {
        match self.labels.lock() {
            Ok(mut caps) => caps.bounded(metric, value),
            Err(_) => "other",
        }
    }

    /// Creates the series a source and its MTA always have, so they exist at
    /// zero before the first line (dashboards and `rate()` need that).
    pub fn init_source(&self, source: &str, format: &str, mta: Option<&str>) {
        for result in ["parsed", "ignored", "unparsed"] {
            self.lines.with_label_values(&[source, format, result]);
        }
        self.bytes_read.with_label_values(&[source]);
        self.invalid_utf8_lines.with_label_values(&[source]);
        self.lines_too_long.with_label_values(&[source]);
        self.source_errors.with_label_values(&[source]);
        for kind in [Rotation::Replaced, Rotation::Truncated] {
            self.source_rotations
                .with_label_values(&[source, kind.as_str()]);
        }
        if let Some(mta) = mta {
            self.init_mta(mta);
        }
    }

    /// Creates the per-MTA series that exist at zero before the first event.
    pub fn init_mta(&self, mta: &str) {
        self.messages_received.with_label_values(&[mta]);
        self.messages_expired.with_label_values(&[mta]);
        self.messages_removed.with_label_values(&[mta]);
        self.queue_messages.with_label_values(&[mta]);
        for kind in [
            BounceKind::NonDelivery,
            BounceKind::Delay,
            BounceKind::Success,
        ] {
            self.bounce_notifications
                .with_label_values(&[mta, kind.as_str()]);
        }
        if MTAS_DISCARDING_BOUNCES.contains(&mta) {
            self.bounces_discarded.with_label_values(&[mta]);
        }
        if MTAS_FREEZING.contains(&mta) {
            self.messages_frozen.with_label_values(&[mta]);
        }
    }

    /// Drops a source's `format="unknown"` line series once its format is
    /// known, unless lines were already counted there.
    pub fn forget_undetected(&self, source: &str) {
        let counts: Vec<u64> = ["parsed", "ignored", "unparsed"]
            .iter()
            .map(|r| self.lines.with_label_values(&[source, "unknown", r]).get())
            .collect();
        if counts.iter().all(|&n| n == 0) {
            for r in ["parsed", "ignored", "unparsed"] {
                let _ = self.lines.remove_label_values(&[source, "unknown", r]);
            }
        }
    }

    /// Counter handles of `maillog_lines_total` for one source and format:
    /// (parsed, ignored, unparsed), looked up once.
    pub fn line_counters(&self, source: &str, format: &str) -> [IntCounter; 3] {
        ["parsed", "ignored", "unparsed"]
            .map(|r| self.lines.with_label_values(&[source, format, r]))
    }

    pub fn last_line_timestamp(&self, source: &str) -> prometheus::Gauge {
        self.last_line_timestamp.with_label_values(&[source])
    }

    pub fn invalid_utf8(&self, source: &str) -> IntCounter {
        self.invalid_utf8_lines.with_label_values(&[source])
    }

    pub fn received(&self, mta: &str) -> IntCounter {
        self.messages_received.with_label_values(&[mta])
    }

    pub fn removed(&self, mta: &str) -> IntCounter {
        self.messages_removed.with_label_values(&[mta])
    }

    pub fn expired(&self, mta: &str) -> IntCounter {
        self.messages_expired.with_label_values(&[mta])
    }

    pub fn message_size(&self, mta: &str) -> Histogram {
        self.message_size.with_label_values(&[mta])
    }

    pub fn message_recipients(&self, mta: &str) -> Histogram {
        self.message_recipients.with_label_values(&[mta])
    }

    pub fn queue_time(&self, mta: &str) -> Histogram {
        self.message_queue_time.with_label_values(&[mta])
    }

    pub fn queue_messages(&self, mta: &str) -> IntGauge {
        self.queue_messages.with_label_values(&[mta])
    }

    /// Handles for one (mta, transport, status): the delivery counter, its
    /// delay histogram and (for final outcomes) the attempts histogram.
    /// `with_attempts` is false for formats that cannot count attempts (no
    /// queue id to count them under), so no series is created that could
    /// never move.
    pub fn delivery_handles(
        &self,
        mta: &str,
        transport: &str,
        status: DeliveryStatus,
        with_attempts: bool,
    ) -> DeliveryHandles {
        let transport = self.bounded("transport", transport);
        let labels = [mta, transport, status.as_str()];
        DeliveryHandles {
            count: self.deliveries.with_label_values(&labels),
            delay: self.delivery_delay.with_label_values(&labels),
            attempts: with_attempts.then(|| self.delivery_attempts.with_label_values(&labels)),
        }
    }

    /// Stage histograms of `delays=a/b/c/d`, in that order.
    pub fn stage_delays(&self, mta: &str) -> [Histogram; 4] {
        [
            "before_queue_manager",
            "in_queue_manager",
            "connection_setup",
            "transmission",
        ]
        .map(|stage| self.stage_delay.with_label_values(&[mta, stage]))
    }

    pub fn smtp_connection(&self, mta: &str, service: &str) {
        let service = self.bounded("service", service);
        self.smtp_connections
            .with_label_values(&[mta, service])
            .inc();
    }

    /// Handles of one (mta, service, direction): connections opened,
    /// closed, and open now.
    pub fn connection_handles(
        &self,
        mta: &str,
        service: &str,
        direction: Direction,
    ) -> ConnectionHandles {
        let service = self.bounded("connection_service", service);
        let labels = [mta, service, direction.as_str()];
        ConnectionHandles {
            opened: self.smtp_connections_opened.with_label_values(&labels),
            closed: self.smtp_connections_closed.with_label_values(&labels),
            current: self.smtp_connections_current.with_label_values(&labels),
        }
    }

    pub fn smtp_session_error(&self, mta: &str, service: &str, kind: SessionError, after: &str) {
        let service = self.bounded("service", service);
        self.smtp_session_errors
            .with_label_values(&[mta, service, kind.as_str(), after])
            .inc();
    }

    pub fn smtp_reject(&self, mta: &str, service: &str, stage: RejectStage, code: u16) {
        let service = self.bounded("service", service);
        let mut buf = [0; 3];
        let code = reply_code_label(code, &mut buf);
        self.smtp_rejects
            .with_label_values(&[mta, service, stage.as_str(), code])
            .inc();
    }

    pub fn auth_failure(&self, mta: &str, service: &str, mechanism: &str) {
        let service = self.bounded("service", service);
        self.auth_failures
            .with_label_values(&[mta, service, mechanism])
            .inc();
    }

    pub fn tls_connection(&self, mta: &str, service: &str, direction: Direction) {
        let service = self.bounded("service", service);
        self.tls_connections
            .with_label_values(&[mta, service, direction.as_str()])
            .inc();
    }

    pub fn outbound_connect_error(&self, mta: &str, transport: &str, error: &str) {
        let transport = self.bounded("transport", transport);
        self.outbound_connect_errors
            .with_label_values(&[mta, transport, error])
            .inc();
    }

    /// Creates the series of a hosting-style SMTP log source at zero and
    /// returns its handles, looked up once.
    pub fn smtp_source_handles(&self, mta: &str, service: &str) -> SmtpSourceHandles {
        let service = self.bounded("service", service);
        SmtpSourceHandles {
            transactions: self.smtp_transactions.with_label_values(&[mta, service]),
            recipients_accepted: self
                .smtp_recipients
                .with_label_values(&[mta, service, "accepted"]),
            recipients_rejected: self
                .smtp_recipients
                .with_label_values(&[mta, service, "rejected"]),
            messages_accepted: self
                .smtp_messages_accepted
                .with_label_values(&[mta, service]),
            received: self.messages_received.with_label_values(&[mta]),
            size: self.message_size.with_label_values(&[mta]),
        }
    }

    pub fn recipient_check(&self, mta: &str, service: &str, result: &str, detail: &str) {
        let service = self.bounded("service", service);
        self.smtp_recipient_checks
            .with_label_values(&[mta, service, result, detail])
            .inc();
    }

    /// Creates the delivery-log series that exist at zero: deliveries by
    /// channel and status, and authenticated submissions.
    pub fn init_sequential_deliveries(&self, mta: &str) {
        for transport in ["local", "remote"] {
            for status in [
                DeliveryStatus::Sent,
                DeliveryStatus::Deferred,
                DeliveryStatus::Bounced,
            ] {
                self.deliveries
                    .with_label_values(&[mta, transport, status.as_str()]);
            }
        }
        self.authenticated_submissions.with_label_values(&[mta]);
    }

    pub fn authenticated_submission(&self, mta: &str) {
        self.authenticated_submissions
            .with_label_values(&[mta])
            .inc();
    }

    /// Creates the series of an anti-spam filter that exist at zero: its
    /// `allowed_reason` verdict and unencrypted, unauthenticated clients.
    pub fn init_spam_filter(&self, filter: &str, allowed_reason: &str) {
        self.spam_verdicts
            .with_label_values(&[filter, Verdict::Allowed.as_str(), allowed_reason]);
        self.spam_filter_clients
            .with_label_values(&[filter, "none", "false"]);
    }

    pub fn spam_filter_client(&self, filter: &str, encryption: &str, authenticated: bool) {
        self.spam_filter_clients
            .with_label_values(&[
                filter,
                encryption,
                if authenticated { "true" } else { "false" },
            ])
            .inc();
    }

    pub fn spam_verdict(&self, filter: &str, verdict: Verdict, reason: &str) {
        self.spam_verdicts
            .with_label_values(&[filter, verdict.as_str(), reason])
            .inc();
    }

    pub fn bounce_notification(&self, mta: &str, kind: BounceKind) {
        self.bounce_notifications
            .with_label_values(&[mta, kind.as_str()])
            .inc();
    }

    pub fn daemon_problem(&self, mta: &str, daemon: &str, severity: Severity) {
        self.daemon_problems
            .with_label_values(&[mta, daemon, severity.as_str()])
            .inc();
    }

    pub fn lifecycle(&self, mta: &str, event: Lifecycle) {
        self.lifecycle
            .with_label_values(&[mta, event.as_str()])
            .inc();
    }

    pub fn tracked_messages(&self, n: usize) {
        self.tracked_messages
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn evicted(&self, reason: Eviction, n: u64) {
        self.tracked_evicted
            .with_label_values(&[reason.as_str()])
            .inc_by(n);
    }

    pub fn tracked_deliveries(&self, n: usize) {
        self.tracked_deliveries
            .set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    pub fn evicted_deliveries(&self, reason: Eviction, n: u64) {
        self.tracked_deliveries_evicted
            .with_label_values(&[reason.as_str()])
            .inc_by(n);
    }

    pub fn bounce_discarded(&self, mta: &str) {
        self.bounces_discarded.with_label_values(&[mta]).inc();
    }

    pub fn message_frozen(&self, mta: &str) {
        self.messages_frozen.with_label_values(&[mta]).inc();
    }

    /// Gauge handles (active deliveries, concurrency limit) of one
    /// transport, looked up once.
    pub fn queue_concurrency_handles(&self, mta: &str, transport: &str) -> [IntGauge; 2] {
        let transport = self.bounded("transport", transport);
        [
            self.queue_active_deliveries
                .with_label_values(&[mta, transport]),
            self.queue_concurrency_limit
                .with_label_values(&[mta, transport]),
        ]
    }

    /// Gauge handles (open connections, connection limit) of one SMTP
    /// service, looked up once.
    pub fn smtp_concurrency_handles(&self, mta: &str, service: &str) -> [IntGauge; 2] {
        let service = self.bounded("service", service);
        [
            self.smtp_connections_open
                .with_label_values(&[mta, service]),
            self.smtp_connection_limit
                .with_label_values(&[mta, service]),
        ]
    }
}

/// SMTP reply codes are three digits 200–599; anything else is `other`.
fn reply_code_label(code: u16, buf: &mut [u8; 3]) -> &str {
    if !(200..600).contains(&code) {
        return "other";
    }
    buf[0] = b'0' + (code / 100) as u8;
    buf[1] = b'0' + (code / 10 % 10) as u8;
    buf[2] = b'0' + (code % 10) as u8;
    std::str::from_utf8(buf).unwrap_or("other")
}

/// Handles for one (mta, service, direction) of counted connections.
#[derive(Clone)]
pub struct ConnectionHandles {
    pub opened: IntCounter,
    pub closed: IntCounter,
    pub current: IntGauge,
}

/// Handles for one (mta, transport, status) delivery series.
#[derive(Clone)]
pub struct DeliveryHandles {
    pub count: IntCounter,
    pub delay: Histogram,
    pub attempts: Option<Histogram>,
}

/// Handles of one SMTP-log source (hosting SMTP log), for its service.
#[derive(Clone)]
pub struct SmtpSourceHandles {
    pub transactions: IntCounter,
    pub recipients_accepted: IntCounter,
    pub recipients_rejected: IntCounter,
    pub messages_accepted: IntCounter,
    /// `mail_messages_received_total` of the MTA.
    pub received: IntCounter,
    /// `mail_message_size_bytes` of the MTA.
    pub size: Histogram,
}

/// Reports source events as logs and metrics, naming each source by its
/// `source` label.
pub struct SourceMetrics {
    metrics: std::sync::Arc<Metrics>,
    names: Vec<String>,
}

impl SourceMetrics {
    pub fn new(metrics: std::sync::Arc<Metrics>, names: Vec<String>) -> SourceMetrics {
        SourceMetrics { metrics, names }
    }

    fn name(&self, source: SourceId) -> &str {
        self.names.get(source.0).map_or("unknown", String::as_str)
    }
}

impl SourceObserver for SourceMetrics {
    fn source_up(&self, source: SourceId, up: bool) {
        let name = self.name(source);
        if up {
            tracing::info!(source = name, "source is readable");
        } else {
            tracing::warn!(source = name, "source is not readable; retrying");
        }
        self.metrics
            .source_up
            .with_label_values(&[name])
            .set(i64::from(up));
    }

    fn bytes_read(&self, source: SourceId, n: u64) {
        self.metrics
            .bytes_read
            .with_label_values(&[self.name(source)])
            .inc_by(n);
    }

    fn rotated(&self, source: SourceId, path: &Path, rotation: Rotation) {
        let name = self.name(source);
        tracing::info!(source = name, path = %path.display(), kind = rotation.as_str(), "log file rotated");
        self.metrics
            .source_rotations
            .with_label_values(&[name, rotation.as_str()])
            .inc();
    }

    fn line_too_long(&self, source: SourceId, path: &Path, len: usize) {
        let name = self.name(source);
        tracing::warn!(source = name, path = %path.display(), bytes = len, "skipped a line longer than --log.max-line-bytes");
        self.metrics.lines_too_long.with_label_values(&[name]).inc();
    }

    fn read_error(&self, source: SourceId, path: &Path, error: &std::io::Error) {
        let name = self.name(source);
        tracing::warn!(source = name, path = %path.display(), %error, "cannot read log file");
        self.metrics.source_errors.with_label_values(&[name]).inc();
    }
}
