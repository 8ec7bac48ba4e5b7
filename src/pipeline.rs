//! The pipeline: lines in, metrics out.
//!
//! One [`Pipeline`] owns the per-source parsing context (format, year
//! inference), the [`Correlator`] and cached metric handles. It is driven
//! by exactly one task: the live daemon feeds it [`LineBatch`]es from the
//! reader threads, `replay` feeds it whole files. Per line it: detects the
//! source's format if not yet known (buffering the first lines until one is
//! recognised), parses, counts the line's result, resolves its time, and
//! applies its events to the correlator and the metrics. Nothing here can
//! fail: a line that cannot be understood is counted and skipped.
//!
//! Formats whose records may be folded over several lines
//! ([`Format::joins_lines`]: Messaging Server) go through a per-source
//! [`RecordJoiner`] first: a record is parsed (and counted once in
//! `maillog_lines_total`) when the line starting the next one arrives, at
//! the end of each batch ([`Pipeline::process_batch`]: the live daemon
//! reads to the end of the file before a batch ends, and real logs write
//! one record per line, so nothing can continue it) and at the end of a
//! replay ([`Pipeline::flush_records`]).

use crate::event::{DeliveryStatus, Direction, Event, Lifecycle, RejectStage};
use crate::metrics::{ConnectionHandles, DeliveryHandles, Metrics, SmtpSourceHandles};
use crate::parser::messaging_server::RecordJoiner;
use crate::parser::time::{Clock, TimeResolver, Zone};
use crate::parser::{Format, LineOutcome};
use crate::source::{LineBatch, SourceId, SourceObserver};
use crate::state::{Correlator, SmtpReplyOutcome, StateSettings};
use prometheus::{Gauge, Histogram, IntCounter, IntGauge};
use std::collections::VecDeque;
use std::io::{self, Read};
use std::path::Path;
use std::sync::Arc;

/// Lines kept while a source's format is still unknown; beyond this the
/// oldest is counted as unparsed with format `unknown`.
const DETECTION_BUFFER_LINES: usize = 1000;

/// A source as the pipeline sees it.
#[derive(Clone, Debug)]
pub struct SourceSpec {
    /// The `source` label.
    pub name: String,
    /// The format, or `None` to detect it from the content.
    pub format: Option<Format>,
    /// Settings that only some formats use.
    pub settings: FormatSettings,
}

/// Per-source settings of particular formats; a format ignores the ones
/// of the others.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FormatSettings {
    /// The port the SMTP server that wrote this log listens on (hosting
    /// SMTP logs are split by port): the `service` label, see
    /// [`smtp_service`]. `None`: unknown.
    pub port: Option<u16>,
    /// Bytes per block of the sizes the MTA logs in blocks (Messaging
    /// Server's `BLOCK_SIZE` option). `None`: [`DEFAULT_BLOCK_SIZE`].
    pub block_size: Option<u64>,
}

/// Messaging Server's default `BLOCK_SIZE`: sizes are logged in kilobytes.
pub const DEFAULT_BLOCK_SIZE: u64 = 1024;

impl SourceSpec {
    /// A source with default [`FormatSettings`].
    pub fn new(name: impl Into<String>, format: Option<Format>) -> SourceSpec {
        SourceSpec {
            name: name.into(),
            format,
            settings: FormatSettings::default(),
        }
    }
}

/// The `service` label of an SMTP log written for one listening port: the
/// IANA service name of the mail ports (`smtp` for 25, `smtps` for 465,
/// `submission` for 587), else the port number; `unknown` when the port is
/// not known.
pub fn smtp_service(port: Option<u16>) -> String {
    match port {
        Some(25) => "smtp".into(),
        Some(465) => "smtps".into(),
        Some(587) => "submission".into(),
        Some(n) => n.to_string(),
        None => "unknown".into(),
    }
}

struct SourceRuntime {
    name: String,
    format: Option<Format>,
    /// maillog_lines_total handles: parsed, ignored, unparsed.
    lines: [IntCounter; 3],
    invalid_utf8: IntCounter,
    last_line_timestamp: Gauge,
    resolver: TimeResolver,
    last_time_text: Vec<u8>,
    last_time: Option<f64>,
    pending: VecDeque<Vec<u8>>,
    /// Assembles folded records (formats that [`Format::joins_lines`]).
    joiner: RecordJoiner,
    /// Bytes per logged block (Messaging Server sizes), at least 1.
    block_size: u64,
    /// The `service` label of SMTP-log events (from the configured port).
    service: Box<str>,
    /// Handles of an SMTP-log source, created when its format is known.
    smtp: Option<SmtpSourceHandles>,
}

/// Metric handles of one MTA, looked up once.
struct MtaHandles {
    mta: &'static str,
    received: IntCounter,
    /// Removal, expiry and queue time exist from the start for formats
    /// that log the queue ([`Format::logs_queue`]); for the others (Sendmail
    /// logs arrivals but no removal) they are created on first use.
    removed: Option<IntCounter>,
    expired: Option<IntCounter>,
    size: Histogram,
    queue_time: Option<Histogram>,
    queue_messages: IntGauge,
    /// Created on first use: only some MTAs log recipient counts and
    /// per-stage delays, and a series that can never move is noise.
    recipients: Option<Histogram>,
    stage_delays: Option<[Histogram; 4]>,
}

impl MtaHandles {
    fn new(metrics: &Metrics, mta: &'static str, logs_queue: bool) -> MtaHandles {
        MtaHandles {
            mta,
            received: metrics.received(mta),
            removed: logs_queue.then(|| metrics.removed(mta)),
            expired: logs_queue.then(|| metrics.expired(mta)),
            size: metrics.message_size(mta),
            recipients: None,
            queue_time: logs_queue.then(|| metrics.queue_time(mta)),
            queue_messages: metrics.queue_messages(mta),
            stage_delays: None,
        }
    }

    fn removed(&mut self, metrics: &Metrics) -> &IntCounter {
        let mta = self.mta;
        self.removed.get_or_insert_with(|| metrics.removed(mta))
    }

    fn expired(&mut self, metrics: &Metrics) -> &IntCounter {
        let mta = self.mta;
        self.expired.get_or_insert_with(|| metrics.expired(mta))
    }

    fn queue_time(&mut self, metrics: &Metrics) -> &Histogram {
        let mta = self.mta;
        self.queue_time
            .get_or_insert_with(|| metrics.queue_time(mta))
    }
}

/// Creates the series a source of `format` has at zero that are not per
/// MTA; returns the SMTP-log handles of a hosting SMTP source.
fn init_format(metrics: &Metrics, format: Format, service: &str) -> Option<SmtpSourceHandles> {
    match format {
        Format::HostingSmtp => return Some(metrics.smtp_source_handles(format.mta(), service)),
        Format::HostingDelivery => metrics.init_sequential_deliveries(format.mta()),
        Format::Spamdyke => metrics.init_spam_filter(crate::parser::spamdyke::FILTER, "ALLOWED"),
        Format::Postfix
        | Format::Qmail
        | Format::Exim
        | Format::Sendmail
        | Format::MessagingServer => {}
    }
    None
}

/// Turns lines into metrics. See the module docs.
pub struct Pipeline {
    metrics: Arc<Metrics>,
    sources: Vec<SourceRuntime>,
    /// Per format (by index in [`Format::ALL`]), created when a source of
    /// that format is configured or detected, so a Postfix-only exporter
    /// shows no qmail series and the other way round.
    mtas: Vec<Option<MtaHandles>>,
    deliveries: Vec<(u8, Box<str>, DeliveryStatus, DeliveryHandles)>,
    /// Gauges (active, limit) per (group, transport) and (group, service).
    queue_concurrency: Vec<(u8, Box<str>, [IntGauge; 2])>,
    smtp_concurrency: Vec<(u8, Box<str>, [IntGauge; 2])>,
    /// Counted connections per (group, service, direction).
    connections: Vec<(u8, Box<str>, Direction, ConnectionHandles)>,
    correlator: Correlator,
    clock: Box<dyn Clock>,
}

fn format_index(format: Format) -> u8 {
    Format::ALL.iter().position(|f| *f == format).unwrap_or(0) as u8
}

impl Pipeline {
    pub fn new(
        metrics: Arc<Metrics>,
        specs: &[SourceSpec],
        state: StateSettings,
        zone: Zone,
        clock: Box<dyn Clock>,
    ) -> Pipeline {
        let sources = specs
            .iter()
            .map(|spec| {
                let format_label = spec.format.map_or("unknown", Format::name);
                metrics.init_source(
                    &spec.name,
                    format_label,
                    spec.format.filter(|f| f.logs_queue()).map(Format::mta),
                );
                let service: Box<str> = smtp_service(spec.settings.port).into();
                SourceRuntime {
                    name: spec.name.clone(),
                    format: spec.format,
                    lines: metrics.line_counters(&spec.name, format_label),
                    invalid_utf8: metrics.invalid_utf8(&spec.name),
                    last_line_timestamp: metrics.last_line_timestamp(&spec.name),
                    resolver: TimeResolver::new(zone),
                    last_time_text: Vec::new(),
                    last_time: None,
                    pending: VecDeque::new(),
                    joiner: RecordJoiner::default(),
                    block_size: spec
                        .settings
                        .block_size
                        .unwrap_or(DEFAULT_BLOCK_SIZE)
                        .max(1),
                    smtp: spec.format.and_then(|f| init_format(&metrics, f, &service)),
                    service,
                }
            })
            .collect();
        let mtas = Format::ALL
            .iter()
            .map(|f| {
                (f.logs_queue() && specs.iter().any(|s| s.format == Some(*f)))
                    .then(|| MtaHandles::new(&metrics, f.mta(), true))
            })
            .collect();
        Pipeline {
            metrics,
            sources,
            mtas,
            deliveries: Vec::new(),
            queue_concurrency: Vec::new(),
            smtp_concurrency: Vec::new(),
            connections: Vec::new(),
            correlator: Correlator::new(state),
            clock,
        }
    }

    /// Processes every line of a batch, then refreshes the gauges.
    pub fn process_batch(&mut self, batch: &LineBatch) {
        for line in batch.data.split_inclusive(|&b| b == b'\n') {
            self.process_line(batch.source, line);
        }
        self.flush_records();
        self.finish_batch();
    }

    /// Processes one line (a trailing `\n` or `\r\n` is ignored).
    pub fn process_line(&mut self, source: SourceId, line: &[u8]) {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(src) = self.sources.get_mut(source.0) else {
            return;
        };
        if std::str::from_utf8(line).is_err() {
            src.invalid_utf8.inc();
        }
        match src.format {
            Some(format) => self.process_formatted(source.0, format, line),
            None => self.detect(source.0, line),
        }
    }

    /// Parses `line` as `format`, through the source's record joiner if
    /// the format folds records.
    fn process_formatted(&mut self, idx: usize, format: Format, line: &[u8]) {
        if !format.joins_lines() {
            self.parse_and_apply(idx, format, line);
            return;
        }
        let mut joiner = std::mem::take(&mut self.sources[idx].joiner);
        if let Some(record) = joiner.push(line) {
            self.parse_and_apply(idx, format, record);
        }
        self.sources[idx].joiner = joiner;
    }

    /// Parses the record each source's joiner is still assembling: call at
    /// the end of input (replay does) or when no continuation can follow.
    pub fn flush_records(&mut self) {
        for idx in 0..self.sources.len() {
            let Some(format) = self.sources[idx].format else {
                continue;
            };
            if self.sources[idx].joiner.is_empty() {
                continue;
            }
            let mut joiner = std::mem::take(&mut self.sources[idx].joiner);
            if let Some(record) = joiner.flush() {
                self.parse_and_apply(idx, format, record);
            }
            self.sources[idx].joiner = joiner;
        }
    }

    fn detect(&mut self, idx: usize, line: &[u8]) {
        let Some(format) = Format::detect(line) else {
            let src = &mut self.sources[idx];
            src.pending.push_back(line.to_vec());
            if src.pending.len() > DETECTION_BUFFER_LINES {
                src.pending.pop_front();
                src.lines[2].inc();
            }
            return;
        };
        let src = &mut self.sources[idx];
        tracing::info!(source = %src.name, format = format.name(), "detected log format");
        src.format = Some(format);
        src.lines = self.metrics.line_counters(&src.name, format.name());
        self.metrics.forget_undetected(&src.name);
        if format.logs_queue() {
            self.metrics.init_mta(format.mta());
        }
        src.smtp = init_format(&self.metrics, format, &src.service);
        let pending = std::mem::take(&mut src.pending);
        for old in &pending {
            self.process_formatted(idx, format, old);
        }
        self.process_formatted(idx, format, line);
    }

    fn parse_and_apply(&mut self, idx: usize, format: Format, line: &[u8]) {
        let parsed = format.parse(line);
        let src = &mut self.sources[idx];
        let events = match parsed.outcome {
            LineOutcome::Parsed(events) => {
                src.lines[0].inc();
                events
            }
            LineOutcome::Ignored => {
                src.lines[1].inc();
                return;
            }
            LineOutcome::Unparsed => {
                src.lines[2].inc();
                return;
            }
        };
        let time = match parsed.time {
            Some(t) if src.last_time.is_some() && src.last_time_text == parsed.time_text => {
                let _ = t;
                src.last_time.unwrap_or(0.0)
            }
            Some(t) => {
                let resolved = src.resolver.resolve(t, self.clock.as_ref());
                src.last_time_text.clear();
                src.last_time_text.extend_from_slice(parsed.time_text);
                src.last_time = Some(resolved);
                resolved
            }
            None => src.last_time.unwrap_or_else(|| self.clock.now()),
        };
        let group = format_index(format);
        for event in events {
            self.apply(idx as u32, group, time, event);
        }
    }

    /// The metric handles of the format with index `group`, created on
    /// first use.
    fn mta_handles(&mut self, group: u8) -> &MtaHandles {
        self.mta_handles_mut(group)
    }

    fn mta_handles_mut(&mut self, group: u8) -> &mut MtaHandles {
        let g = usize::from(group);
        if self.mtas.len() <= g {
            self.mtas.resize_with(g + 1, || None);
        }
        let format = Format::ALL.get(g);
        let mta = format.map_or("other", |f| f.mta());
        let logs_queue = format.is_some_and(|f| f.logs_queue());
        let metrics = &self.metrics;
        self.mtas[g].get_or_insert_with(|| MtaHandles::new(metrics, mta, logs_queue))
    }

    fn delivery_handles(
        &mut self,
        group: u8,
        transport: &str,
        status: DeliveryStatus,
    ) -> &DeliveryHandles {
        let find = |cache: &[(u8, Box<str>, DeliveryStatus, DeliveryHandles)], name: &str| {
            cache
                .iter()
                .position(|(g, t, s, _)| *g == group && &**t == name && *s == status)
        };
        // Past the label cap a new transport is counted as `other`: cache
        // it under that name, so the cache stays as bounded as the labels.
        let pos = match find(&self.deliveries, transport) {
            Some(p) => Some(p),
            None => {
                let label = self.metrics.bounded_label("transport", transport);
                find(&self.deliveries, label)
            }
        };
        let pos = match pos {
            Some(p) => p,
            None => {
                let transport = self.metrics.bounded_label("transport", transport);
                let format = Format::ALL.get(usize::from(group)).copied();
                let mta = format.map_or("other", Format::mta);
                // Attempts are counted per message and recipient: only
                // formats whose deliveries name them have them.
                // A deferral is never a final outcome: no attempts series.
                let with_attempts = format.is_some_and(Format::counts_attempts)
                    && status != DeliveryStatus::Deferred;
                let handles = self
                    .metrics
                    .delivery_handles(mta, transport, status, with_attempts);
                self.deliveries
                    .push((group, transport.into(), status, handles));
                self.deliveries.len() - 1
            }
        };
        &self.deliveries[pos].3
    }

    /// Cached gauge pair of `(group, name)` in `cache`, created by `make`
    /// with the bounded label value (`kind` as in [`Metrics::bounded_label`]),
    /// so the cache never holds more names than the label cap allows.
    fn gauge_pair<'c>(
        cache: &'c mut Vec<(u8, Box<str>, [IntGauge; 2])>,
        metrics: &Metrics,
        kind: &'static str,
        group: u8,
        name: &str,
        make: impl FnOnce(&str) -> [IntGauge; 2],
    ) -> &'c [IntGauge; 2] {
        let find = |cache: &[(u8, Box<str>, [IntGauge; 2])], name: &str| {
            cache
                .iter()
                .position(|(g, n, _)| *g == group && &**n == name)
        };
        let pos = match find(cache, name) {
            Some(p) => p,
            None => {
                let label = metrics.bounded_label(kind, name);
                match find(cache, label) {
                    Some(p) => p,
                    None => {
                        cache.push((group, label.into(), make(label)));
                        cache.len() - 1
                    }
                }
            }
        };
        &cache[pos].2
    }

    fn apply(&mut self, source: u32, group: u8, time: f64, event: Event<'_>) {
        let format = Format::ALL.get(usize::from(group)).copied();
        let mta = match format {
            Some(f) if !f.logs_queue() => f.mta(),
            _ => self.mta_handles(group).mta,
        };
        match event {
            Event::MessageReceived { queue_id } => {
                if self.correlator.received(source, queue_id, group, time) {
                    self.mta_handles(group).received.inc();
                }
            }
            Event::NewMessage { queue_id } => {
                self.correlator.new_message(source, queue_id, group, time);
                self.mta_handles(group).received.inc();
            }
            Event::MessageEnvelope {
                queue_id,
                size,
                recipients,
            } => {
                if self.correlator.envelope(source, queue_id, group, time) {
                    self.mta_handles(group).size.observe(size as f64);
                    if let Some(n) = recipients {
                        let metrics = self.metrics.clone();
                        let h = self.mta_handles_mut(group);
                        let mta = h.mta;
                        h.recipients
                            .get_or_insert_with(|| metrics.message_recipients(mta))
                            .observe(f64::from(n));
                    }
                }
            }
            Event::DeliveryStarted {
                delivery_id,
                queue_id,
                transport,
                recipient,
            } => self.correlator.delivery_started(
                source,
                delivery_id,
                queue_id,
                group,
                transport,
                recipient,
                time,
            ),
            Event::DeliveryResult {
                delivery_id,
                status,
            } => {
                let finished = self
                    .correlator
                    .delivery_finished(source, delivery_id, status, time);
                // A result whose start was not seen (the exporter started
                // mid-delivery) still counts, under transport `unknown`.
                let transport = finished.map_or("unknown", |f| f.transport);
                let handles = self.delivery_handles(group, transport, status);
                handles.count.inc();
                if let Some(f) = finished {
                    if let Some(delay) = f.delay {
                        handles.delay.observe(delay);
                    }
                    if let (Some(n), Some(h)) = (f.attempts, &handles.attempts) {
                        h.observe(f64::from(n));
                    }
                }
            }
            Event::QueueConcurrency {
                transport,
                active,
                limit,
            } => {
                let metrics = &self.metrics;
                let [a, l] = Self::gauge_pair(
                    &mut self.queue_concurrency,
                    metrics,
                    "transport",
                    group,
                    transport,
                    |t| metrics.queue_concurrency_handles(mta, t),
                );
                a.set(i64::from(active));
                l.set(i64::from(limit));
            }
            Event::QueueManagerExited => {
                self.correlator.queue_manager_exited(source);
                self.metrics.lifecycle(mta, Lifecycle::Stopped);
            }
            Event::SmtpConcurrency {
                service,
                open,
                limit,
            } => {
                let metrics = &self.metrics;
                let [o, l] = Self::gauge_pair(
                    &mut self.smtp_concurrency,
                    metrics,
                    "service",
                    group,
                    service,
                    |s| metrics.smtp_concurrency_handles(mta, s),
                );
                o.set(i64::from(open));
                l.set(i64::from(limit));
            }
            Event::BounceDiscarded => self.metrics.bounce_discarded(mta),
            Event::Delivery(d) => {
                let attempts = self.correlator.delivery(
                    source,
                    d.queue_id,
                    group,
                    d.recipient,
                    d.status == DeliveryStatus::Deferred,
                    time,
                );
                if d.status == DeliveryStatus::Sent {
                    if let Some(stages) = d.stage_delays {
                        let metrics = self.metrics.clone();
                        let h = self.mta_handles_mut(group);
                        let mta = h.mta;
                        let histograms = h
                            .stage_delays
                            .get_or_insert_with(|| metrics.stage_delays(mta));
                        for (h, v) in histograms.iter().zip(stages) {
                            h.observe(v);
                        }
                    }
                }
                // Where the MTA logs no delay (Exim without `QT=`), it is
                // the time since the message's arrival, if that was seen.
                let delay = d
                    .delay
                    .or_else(|| self.correlator.since_arrival(source, d.queue_id, time));
                let handles = self.delivery_handles(group, d.transport, d.status);
                handles.count.inc();
                if let Some(delay) = delay {
                    handles.delay.observe(delay);
                }
                if let (Some(n), Some(h)) = (attempts, &handles.attempts) {
                    h.observe(f64::from(n));
                }
            }
            Event::MessageExpired { queue_id } => {
                if self.correlator.expired(source, queue_id) {
                    let metrics = self.metrics.clone();
                    self.mta_handles_mut(group).expired(&metrics).inc();
                }
            }
            Event::MessageCompleted {
                queue_id,
                queue_seconds,
            } => {
                let metrics = self.metrics.clone();
                self.mta_handles_mut(group).removed(&metrics).inc();
                let departure = self.correlator.removed(source, queue_id, time);
                let seconds = queue_seconds.or(departure.and_then(|d| d.queue_seconds));
                if let Some(seconds) = seconds {
                    self.mta_handles_mut(group)
                        .queue_time(&metrics)
                        .observe(seconds);
                }
            }
            Event::MessageFrozen { .. } => self.metrics.message_frozen(mta),
            Event::MessageRemoved { queue_id } => {
                let metrics = self.metrics.clone();
                self.mta_handles_mut(group).removed(&metrics).inc();
                if let Some(departure) = self.correlator.removed(source, queue_id, time) {
                    if let Some(seconds) = departure.queue_seconds {
                        self.mta_handles_mut(group)
                            .queue_time(&metrics)
                            .observe(seconds);
                    }
                }
            }
            Event::BounceNotification { kind } => self.metrics.bounce_notification(mta, kind),
            Event::SmtpConnect { service } => self.metrics.smtp_connection(mta, service),
            Event::SmtpSessionError {
                service,
                kind,
                after,
            } => self.metrics.smtp_session_error(mta, service, kind, after),
            Event::TlsConnection { service, direction } => {
                self.metrics.tls_connection(mta, service, direction)
            }
            Event::SmtpReject {
                service,
                stage,
                code,
            } => self.metrics.smtp_reject(mta, service, stage, code),
            Event::AuthFailure { service, mechanism } => {
                self.metrics.auth_failure(mta, service, mechanism)
            }
            Event::OutboundConnectError { transport, error } => {
                self.metrics.outbound_connect_error(mta, transport, error)
            }
            Event::SpamVerdict {
                filter,
                verdict,
                reason,
            } => self.metrics.spam_verdict(filter, verdict, reason),
            Event::DaemonProblem { daemon, severity } => {
                self.metrics.daemon_problem(mta, daemon, severity)
            }
            Event::Lifecycle(event) => self.metrics.lifecycle(mta, event),
            Event::RecipientEnqueued {
                message,
                recipient: _,
                size_blocks,
            } => {
                let first = match message {
                    Some(key) => self.correlator.enqueued(source, key, group, time),
                    None => true,
                };
                if first {
                    let block = self
                        .sources
                        .get(source as usize)
                        .map_or(1, |s| s.block_size);
                    let h = self.mta_handles(group);
                    h.received.inc();
                    h.size.observe(size_blocks.saturating_mul(block) as f64);
                }
            }
            Event::QueuedDelivery {
                message,
                transport,
                recipient,
                status,
                attempt,
            } => {
                let known = message.map(|key| {
                    self.correlator
                        .dequeued(source, key, group, recipient, status, time)
                });
                let final_outcome = status != DeliveryStatus::Deferred;
                // The correlator counts the deferrals it saw; the queue
                // file name counts them without earlier lines: the larger
                // is the better lower bound.
                let attempts = final_outcome.then(|| {
                    let seen = known.and_then(|k| k.attempts).unwrap_or(1);
                    seen.max(attempt.unwrap_or(1))
                });
                let handles = self.delivery_handles(group, transport, status);
                handles.count.inc();
                if let Some(delay) = known.and_then(|k| k.delay) {
                    handles.delay.observe(delay);
                }
                if let (Some(n), Some(h)) = (attempts, &handles.attempts) {
                    h.observe(f64::from(n));
                }
                if let Some(d) = known.and_then(|k| k.departure) {
                    let metrics = self.metrics.clone();
                    let h = self.mta_handles_mut(group);
                    h.removed(&metrics).inc();
                    h.queue_time(&metrics).observe(d.queue_seconds);
                    let mta = h.mta;
                    h.recipients
                        .get_or_insert_with(|| metrics.message_recipients(mta))
                        .observe(f64::from(d.recipients));
                }
            }
            Event::ConnectionOpened { service, direction } => {
                if direction == Direction::Inbound {
                    self.metrics.smtp_connection(mta, service);
                }
                let h = self.connection_handles(group, mta, service, direction);
                h.opened.inc();
                h.current.inc();
            }
            Event::ConnectionClosed { service, direction } => {
                let h = self.connection_handles(group, mta, service, direction);
                h.closed.inc();
                // A connection opened before the exporter started.
                if h.current.get() > 0 {
                    h.current.dec();
                }
            }
            Event::SmtpCommand { stage, size } => {
                if self.correlator.smtp_command(source, stage, size) {
                    self.smtp_handles(source, mta).transactions.inc();
                }
            }
            Event::RecipientCheck { result, detail } => {
                self.correlator.recipient_checked(source);
                let service = self.source_service(source);
                self.metrics.recipient_check(mta, service, result, detail);
            }
            Event::SmtpReply { code, queued } => {
                match self.correlator.smtp_reply(source, code, queued) {
                    SmtpReplyOutcome::Nothing => {}
                    SmtpReplyOutcome::RecipientAccepted => {
                        self.smtp_handles(source, mta).recipients_accepted.inc();
                    }
                    SmtpReplyOutcome::RecipientRejected => {
                        self.smtp_handles(source, mta).recipients_rejected.inc();
                        let service = self.source_service(source);
                        self.metrics
                            .smtp_reject(mta, service, RejectStage::Rcpt, code);
                    }
                    SmtpReplyOutcome::Rejected(stage) => {
                        let service = self.source_service(source);
                        self.metrics.smtp_reject(mta, service, stage, code);
                    }
                    SmtpReplyOutcome::MessageQueued { size } => {
                        let h = self.smtp_handles(source, mta);
                        h.messages_accepted.inc();
                        h.received.inc();
                        if let Some(size) = size {
                            h.size.observe(size as f64);
                        }
                    }
                }
            }
            Event::DeliveriesInit => self.correlator.deliveries_init(source, time),
            Event::SequentialDeliveryStarted {
                delivery_id,
                transport,
            } => self.correlator.sequential_delivery_started(
                source,
                delivery_id,
                group,
                transport,
                time,
            ),
            Event::AuthenticatedSubmission => {
                if self.correlator.authenticated_submission(source) {
                    self.metrics.authenticated_submission(mta);
                }
            }
            Event::SpamFilterClient {
                filter,
                encryption,
                authenticated,
            } => self
                .metrics
                .spam_filter_client(filter, encryption, authenticated),
        }
    }

    fn connection_handles(
        &mut self,
        group: u8,
        mta: &'static str,
        service: &str,
        direction: Direction,
    ) -> &ConnectionHandles {
        let pos = match self
            .connections
            .iter()
            .position(|(g, s, d, _)| *g == group && &**s == service && *d == direction)
        {
            Some(p) => p,
            None => {
                let handles = self.metrics.connection_handles(mta, service, direction);
                self.connections
                    .push((group, service.into(), direction, handles));
                self.connections.len() - 1
            }
        };
        &self.connections[pos].3
    }

    /// The `service` label of a source's SMTP-log events.
    fn source_service(&self, source: u32) -> &str {
        self.sources
            .get(source as usize)
            .map_or("unknown", |s| &*s.service)
    }

    /// The SMTP-log handles of a source, created on first use.
    fn smtp_handles(&mut self, source: u32, mta: &'static str) -> &SmtpSourceHandles {
        let metrics = &self.metrics;
        let src = &mut self.sources[source as usize];
        let service = &src.service;
        src.smtp
            .get_or_insert_with(|| metrics.smtp_source_handles(mta, service))
    }

    /// Refreshes gauges and eviction counters; call after a batch.
    pub fn finish_batch(&mut self) {
        for src in &self.sources {
            if let Some(t) = src.last_time {
                src.last_line_timestamp.set(t);
            }
        }
        for (group, h) in self
            .mtas
            .iter()
            .enumerate()
            .filter_map(|(g, h)| Some((g, h.as_ref()?)))
        {
            let n = self.correlator.count_in_group(group as u8);
            h.queue_messages.set(i64::try_from(n).unwrap_or(i64::MAX));
        }
        self.metrics.tracked_messages(self.correlator.len());
        self.metrics
            .tracked_deliveries(self.correlator.deliveries_len());
        for (reason, n) in self.correlator.take_evictions() {
            self.metrics.evicted(reason, n);
        }
        for (reason, n) in self.correlator.take_delivery_evictions() {
            self.metrics.evicted_deliveries(reason, n);
        }
    }

    /// Lines still waiting for format detection are counted as unparsed
    /// (format `unknown`); call at the end of a replay.
    pub fn flush_undetected(&mut self) {
        for src in &mut self.sources {
            let n = src.pending.len() as u64;
            if n > 0 {
                tracing::warn!(source = %src.name, lines = n, "could not detect the log format; pass --log.format");
                src.lines[2].inc_by(n);
                src.pending.clear();
            }
        }
    }

    /// Reads `reader` to its end as `source`, line by line, skipping lines
    /// longer than `max_line_bytes` (reported to `observer`).
    pub fn replay_reader(
        &mut self,
        source: SourceId,
        path: &Path,
        mut reader: impl Read,
        max_line_bytes: usize,
        observer: &dyn SourceObserver,
    ) -> io::Result<()> {
        let mut buf = vec![0u8; 1 << 20];
        // Bytes of an incomplete line carried from the previous read.
        let mut carry: Vec<u8> = Vec::new();
        let mut skipping = false;
        let mut skipped_len = 0usize;
        let mut lines_since_finish = 0usize;
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            observer.bytes_read(source, n as u64);
            let mut chunk = &buf[..n];
            while let Some(nl) = memchr::memchr(b'\n', chunk) {
                let piece = &chunk[..nl];
                chunk = &chunk[nl + 1..];
                if skipping {
                    skipping = false;
                    observer.line_too_long(source, path, skipped_len + piece.len());
                    continue;
                }
                if carry.is_empty() {
                    if piece.len() > max_line_bytes {
                        observer.line_too_long(source, path, piece.len());
                    } else {
                        self.process_line(source, piece);
                    }
                } else {
                    carry.extend_from_slice(piece);
                    if carry.len() > max_line_bytes {
                        observer.line_too_long(source, path, carry.len());
                    } else {
                        let line = std::mem::take(&mut carry);
                        self.process_line(source, &line);
                        carry = line;
                    }
                    carry.clear();
                }
                lines_since_finish += 1;
                if lines_since_finish >= 65_536 {
                    lines_since_finish = 0;
                    self.finish_batch();
                }
            }
            if skipping {
                skipped_len += chunk.len();
            } else {
                carry.extend_from_slice(chunk);
                if carry.len() > max_line_bytes {
                    skipping = true;
                    skipped_len = carry.len();
                    carry.clear();
                }
            }
        }
        if skipping {
            observer.line_too_long(source, path, skipped_len);
        } else if !carry.is_empty() {
            // A last line without newline: complete at end of input.
            self.process_line(source, &carry);
        }
        self.flush_records();
        self.finish_batch();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::BuildInfo;
    use crate::parser::time::FixedClock;

    fn auto_pipeline() -> (Arc<Metrics>, Pipeline) {
        let metrics = Arc::new(Metrics::new(&BuildInfo::CURRENT));
        let spec = [SourceSpec::new("s", None)];
        let p = Pipeline::new(
            metrics.clone(),
            &spec,
            StateSettings::default(),
            Zone::Fixed(0),
            Box::new(FixedClock(1_795_000_000.0)),
        );
        (metrics, p)
    }

    fn lines_total(metrics: &Metrics, format: &str, result: &str) -> Option<u64> {
        metrics
            .registry()
            .gather()
            .iter()
            .find(|f| f.name() == "maillog_lines_total")?
            .get_metric()
            .iter()
            .find(|m| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == "format" && l.value() == format)
                    && m.get_label()
                        .iter()
                        .any(|l| l.name() == "result" && l.value() == result)
            })
            .map(|m| m.get_counter().get_value() as u64)
    }

    #[test]
    fn lines_before_detection_are_counted_under_the_detected_format() {
        let (metrics, mut p) = auto_pipeline();
        for _ in 0..3 {
            p.process_line(
                SourceId(0),
                b"Nov 21 10:00:00 mx dovecot: imap-login: Login: user=<a>\n",
            );
        }
        assert_eq!(lines_total(&metrics, "unknown", "ignored"), Some(0));
        p.process_line(
            SourceId(0),
            b"Nov 21 10:00:01 mx postfix/qmgr[1]: ABCDEF1234: removed\n",
        );
        assert_eq!(lines_total(&metrics, "postfix", "ignored"), Some(3));
        assert_eq!(lines_total(&metrics, "postfix", "parsed"), Some(1));
        // The placeholder series of the undetected format are gone.
        assert_eq!(lines_total(&metrics, "unknown", "ignored"), None);
    }

    #[test]
    fn undetectable_lines_overflow_as_unparsed_and_flush_at_the_end() {
        let (metrics, mut p) = auto_pipeline();
        for _ in 0..DETECTION_BUFFER_LINES + 5 {
            p.process_line(SourceId(0), b"no format knows this line\n");
        }
        assert_eq!(lines_total(&metrics, "unknown", "unparsed"), Some(5));
        p.flush_undetected();
        assert_eq!(
            lines_total(&metrics, "unknown", "unparsed"),
            Some(DETECTION_BUFFER_LINES as u64 + 5)
        );
    }
}

#[cfg(test)]
mod label_cap_tests {
    use super::*;
    use crate::metrics::{BuildInfo, MAX_FREE_LABEL_VALUES};
    use crate::parser::time::FixedClock;

    /// A log naming hundreds of transports keeps the handle cache and the
    /// label set bounded; the surplus is counted as `other`.
    #[test]
    fn transport_cache_stays_bounded_by_the_label_cap() {
        let metrics = Arc::new(Metrics::new(&BuildInfo::CURRENT));
        let mut p = Pipeline::new(
            metrics.clone(),
            &[SourceSpec::new("s", Some(Format::Postfix))],
            StateSettings::default(),
            Zone::Fixed(0),
            Box::new(FixedClock(1_795_000_000.0)),
        );
        let n = MAX_FREE_LABEL_VALUES + 100;
        for i in 0..n {
            let transport = format!("channel{i}");
            let queue_id = format!("Q{i}");
            let delivery = crate::event::Delivery {
                queue_id: &queue_id,
                transport: &transport,
                recipient: "a@b",
                status: DeliveryStatus::Sent,
                delay: Some(1.0),
                stage_delays: None,
            };
            p.apply(
                0,
                format_index(Format::Postfix),
                1.0,
                Event::Delivery(delivery),
            );
        }
        assert!(
            p.deliveries.len() <= MAX_FREE_LABEL_VALUES + 1,
            "{}",
            p.deliveries.len()
        );
        let families = metrics.registry().gather();
        let deliveries = families
            .iter()
            .find(|f| f.name() == "mail_deliveries_total")
            .unwrap();
        let other = deliveries
            .get_metric()
            .iter()
            .find(|m| {
                m.get_label()
                    .iter()
                    .any(|l| l.name() == "transport" && l.value() == "other")
            })
            .unwrap();
        assert_eq!(other.get_counter().get_value() as usize, 100);
        assert_eq!(deliveries.get_metric().len(), MAX_FREE_LABEL_VALUES + 1);
    }
}
