//! Per-message state: the correlator that joins a message's lines by queue id.
//!
//! The pipeline feeds it message events with the line's time; it answers
//! what only a join can tell: whether this is the first time a message is
//! seen received, how many attempts a recipient took at its final outcome,
//! how long a message stayed queued. Logs are lossy (the exporter may start
//! mid-flight, lines may be missing), so state is deleted when the message
//! leaves the queue *and* expired after a TTL anyway, and the number of
//! tracked messages is capped: when full, the oldest message is evicted
//! first. Evictions are counted by reason.
//!
//! Time is the log's time (the largest line time seen), so replaying an old
//! log behaves exactly as following it live did; tests drive it directly.
//!
//! Where the MTA logs a delivery's result under a delivery id only (qmail:
//! `starting delivery 7: msg 746539 to local bob@…` … `delivery 7:
//! success: …`), the correlator also keeps per-delivery state keyed by
//! (source, delivery id): the message, transport and recipient, so the
//! result becomes a complete delivery with its delay (result time minus the
//! message's arrival, as qmailanalog's matchup computes it) and attempt
//! count. Deliveries are held in a second table with the same cap, TTL and
//! eviction accounting. Ids that the MTA reuses retire the old state: a new
//! message under a tracked queue id ([`Correlator::new_message`]), a new
//! delivery under a tracked delivery id, and every delivery of a source
//! when its queue manager exits ([`Correlator::queue_manager_exited`]).
//!
//! Some logs join lines by position, not by id (the hosting provider
//! logs): the SMTP log writes each command (`from`, `to`, `size`) and then
//! the server's reply (`resp`) on the next line, without a session id, and
//! the delivery log writes `init` for a message and then its `try` lines
//! without the message's id. For these the correlator keeps a small
//! context per source ([`SequentialState`]: the command awaiting its reply,
//! the size of the message data, the time of the last `init`), so a reply
//! becomes an accepted or refused recipient, a refusal at the right stage
//! or a queued message with its size, and a delivery result gets its delay
//! from `init`. There is one context per configured source, so this state
//! is bounded by the configuration; it is overwritten as the log goes on
//! and needs no expiry.

use crate::event::{DeliveryStatus, RejectStage};
use hashbrown::{Equivalent, HashMap};
use std::collections::VecDeque;
use std::hash::{Hash, Hasher};

/// Identifies a message: the source it was logged in (queue ids are only
/// unique within one MTA instance) and its queue id.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MessageKey {
    pub source: u32,
    pub queue_id: Box<str>,
}

/// A borrowed [`MessageKey`], hashing identically, for lookups that do not
/// allocate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct KeyRef<'a> {
    source: u32,
    queue_id: &'a str,
}

impl Equivalent<MessageKey> for KeyRef<'_> {
    fn equivalent(&self, key: &MessageKey) -> bool {
        self.source == key.source && self.queue_id == &*key.queue_id
    }
}

/// Why a tracked message or delivery was dropped before its end was seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    /// `--state.max-messages` was reached; the oldest entry made room.
    Capacity,
    /// Not seen to end within the TTL.
    Expired,
    /// The MTA gave its id to a new message or delivery (qmail reuses
    /// both): the old one's end was not seen.
    IdReused,
    /// The queue manager exited; deliveries it had not reported are void.
    Restart,
}

impl Eviction {
    /// The `reason` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Eviction::Capacity => "capacity",
            Eviction::Expired => "expired",
            Eviction::IdReused => "id_reused",
            Eviction::Restart => "restart",
        }
    }
}

/// Limits of the correlator.
#[derive(Clone, Copy, Debug)]
pub struct StateSettings {
    /// Most messages tracked at once (and, separately, most deliveries).
    pub max_messages: usize,
    /// Seconds (of log time) after which a message is forgotten anyway.
    pub ttl_seconds: f64,
}

impl Default for StateSettings {
    fn default() -> Self {
        StateSettings {
            max_messages: 100_000,
            // Postfix keeps a message up to maximal_queue_lifetime (5 days
            // by default); one more day covers bounce_queue_lifetime slack.
            ttl_seconds: 6.0 * 86_400.0,
        }
    }
}

#[derive(Debug)]
struct MessageState {
    /// Seen entering the queue (so the entry's creation time is its arrival).
    received: bool,
    envelope_seen: bool,
    /// Its expiry was counted (Exim logs one per recipient).
    expired_seen: bool,
    /// Deferred attempts so far, per recipient (by address hash).
    deferrals: Vec<(u64, u32)>,
    /// Recipients enqueued (Messaging Server `E` records) and those of
    /// them still waiting for a final outcome.
    enqueued: u32,
    pending: u32,
}

impl MessageState {
    fn new() -> MessageState {
        MessageState {
            received: false,
            envelope_seen: false,
            expired_seen: false,
            deferrals: Vec::new(),
            enqueued: 0,
            pending: 0,
        }
    }

    /// Records an attempt for the recipient with address hash `hash`; for a
    /// final outcome returns the number of attempts it took.
    fn attempt(&mut self, hash: u64, deferred: bool) -> Option<u32> {
        let slot = self.deferrals.iter().position(|(h, _)| *h == hash);
        if deferred {
            match slot {
                Some(i) => self.deferrals[i].1 += 1,
                None => self.deferrals.push((hash, 1)),
            }
            None
        } else {
            let previous = slot.map_or(0, |i| self.deferrals.swap_remove(i).1);
            Some(previous + 1)
        }
    }
}

/// Identifies a delivery: the source and the MTA's delivery id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
struct DeliveryKey {
    source: u32,
    delivery_id: u64,
}

#[derive(Debug)]
struct DeliveryState {
    owner: DeliveryOwner,
    transport: &'static str,
}

/// What a tracked delivery belongs to.
#[derive(Debug)]
enum DeliveryOwner {
    /// A message tracked by queue id (qmail `starting delivery D: msg M`).
    Message {
        queue_id: Box<str>,
        recipient_hash: u64,
    },
    /// The message of the source's last `init` (hosting delivery log),
    /// which has no id: only the time of that `init`, if it was seen.
    Sequential { init_time: Option<f64> },
}

/// Per-source context of the logs that join lines by position.
#[derive(Debug, Default)]
struct SequentialState {
    /// Stage of the SMTP command whose reply is awaited.
    awaiting_reply: Option<RejectStage>,
    /// Size of the message data, from the `size` line before its reply.
    data_size: Option<u64>,
    /// Time of the last delivery-log `init`.
    init_time: Option<f64>,
    /// Whether that message was already counted as an authenticated
    /// submission.
    init_authenticated: bool,
}

/// What a reply on a position-joined SMTP log means, given the command it
/// answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SmtpReplyOutcome {
    /// Nothing to count (a positive reply to `MAIL`, an intermediate reply).
    Nothing,
    /// A positive reply to `RCPT`.
    RecipientAccepted,
    /// A 4xx/5xx reply to `RCPT`: a refused recipient and a reject at RCPT.
    RecipientRejected,
    /// A 4xx/5xx reply to the command of this stage (`other` when no
    /// command was awaiting a reply).
    Rejected(RejectStage),
    /// The message was queued; its size if the `size` line came before.
    MessageQueued { size: Option<u64> },
}

/// What happened when a message left the queue.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Departure {
    /// Seconds from arrival to removal, if the arrival was seen.
    pub queue_seconds: Option<f64>,
}

/// What the correlator knows about a delivery attempt of an enqueued
/// recipient ([`Correlator::dequeued`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Dequeued {
    /// Seconds from the message's first enqueue, if it was seen.
    pub delay: Option<f64>,
    /// For a final outcome: 1 + the deferrals seen for this recipient.
    pub attempts: Option<u32>,
    /// The message's last enqueued recipient is done: it left the queue.
    pub departure: Option<EnqueuedDeparture>,
}

/// A message whose enqueued recipients are all done.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct EnqueuedDeparture {
    /// Seconds from its first enqueue to its last final outcome.
    pub queue_seconds: f64,
    /// Recipients enqueued (records seen).
    pub recipients: u32,
}

/// A delivery whose result was logged under its delivery id, completed
/// from the state kept at its start.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FinishedDelivery {
    pub transport: &'static str,
    /// Seconds from the message's arrival to this result, if the arrival
    /// was seen.
    pub delay: Option<f64>,
    /// For a final outcome (sent, bounced): attempts for this recipient.
    pub attempts: Option<u32>,
}

/// One tracked entry: its insertion number (matches exactly one entry of
/// the order queue), its creation time, its metric group and its state.
#[derive(Debug)]
struct Entry<V> {
    seq: u64,
    created: f64,
    group: u8,
    value: V,
}

/// A capped, expiring map in insertion order: the storage of both messages
/// and deliveries.
#[derive(Debug)]
struct Table<K, V> {
    map: HashMap<K, Entry<V>>,
    /// Insertion order (seq, created, key) for oldest-first eviction;
    /// entries whose key is gone are skipped lazily and compacted.
    order: VecDeque<(u64, f64, K)>,
    next_seq: u64,
    group_counts: Vec<usize>,
    evicted: Vec<(Eviction, u64)>,
}

impl<K: Hash + Eq + Clone, V> Table<K, V> {
    fn new() -> Table<K, V> {
        Table {
            map: HashMap::new(),
            order: VecDeque::new(),
            next_seq: 0,
            group_counts: Vec::new(),
            evicted: Vec::new(),
        }
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn is_front_live(&self) -> bool {
        self.order
            .front()
            .is_some_and(|(seq, _, key)| self.map.get(key).is_some_and(|e| e.seq == *seq))
    }

    /// Evicts entries created before `horizon`, oldest first.
    fn expire(&mut self, horizon: f64) {
        while let Some((_, created, _)) = self.order.front() {
            let created = *created;
            if !self.is_front_live() {
                self.order.pop_front();
                continue;
            }
            if created >= horizon {
                break;
            }
            self.evict_front(Eviction::Expired);
        }
    }

    fn evict_front(&mut self, reason: Eviction) {
        if let Some((_, _, key)) = self.order.pop_front() {
            if let Some(entry) = self.map.remove(&key) {
                self.uncount(entry.group);
                self.record_eviction(reason);
            }
        }
    }

    fn record_eviction(&mut self, reason: Eviction) {
        match self.evicted.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, n)) => *n += 1,
            None => self.evicted.push((reason, 1)),
        }
    }

    fn uncount(&mut self, group: u8) {
        if let Some(n) = self.group_counts.get_mut(usize::from(group)) {
            *n = n.saturating_sub(1);
        }
    }

    fn count_in_group(&self, group: u8) -> usize {
        self.group_counts
            .get(usize::from(group))
            .copied()
            .unwrap_or(0)
    }

    fn get_mut<Q: Hash + Equivalent<K> + ?Sized>(&mut self, key: &Q) -> Option<&mut Entry<V>> {
        self.map.get_mut(key)
    }

    fn contains<Q: Hash + Equivalent<K> + ?Sized>(&self, key: &Q) -> bool {
        self.map.contains_key(key)
    }

    /// Inserts a new entry (the key must not be present), evicting the
    /// oldest entries while the table is at `cap`.
    fn insert(&mut self, key: K, group: u8, time: f64, value: V, cap: usize) -> &mut Entry<V> {
        while self.map.len() >= cap {
            if self.order.is_empty() {
                break;
            }
            if self.is_front_live() {
                self.evict_front(Eviction::Capacity);
            } else {
                self.order.pop_front();
            }
        }
        self.compact_order();
        let seq = self.next_seq;
        self.next_seq += 1;
        self.order.push_back((seq, time, key.clone()));
        let g = usize::from(group);
        if self.group_counts.len() <= g {
            self.group_counts.resize(g + 1, 0);
        }
        self.group_counts[g] += 1;
        self.map
            .entry(key)
            .insert(Entry {
                seq,
                created: time,
                group,
                value,
            })
            .into_mut()
    }

    /// Removes an entry that ended normally.
    fn remove<Q: Hash + Equivalent<K> + ?Sized>(&mut self, key: &Q) -> Option<Entry<V>> {
        let entry = self.map.remove(key)?;
        self.uncount(entry.group);
        Some(entry)
    }

    /// Drops an entry whose end was not seen, counting it under `reason`.
    fn retire<Q: Hash + Equivalent<K> + ?Sized>(&mut self, key: &Q, reason: Eviction) {
        if self.remove(key).is_some() {
            self.record_eviction(reason);
        }
    }

    /// Drops every entry whose key matches, counting them under `reason`.
    fn retire_where(&mut self, mut matches: impl FnMut(&K) -> bool, reason: Eviction) {
        let mut dropped: Vec<u8> = Vec::new();
        self.map.retain(|k, e| {
            if matches(k) {
                dropped.push(e.group);
                false
            } else {
                true
            }
        });
        for group in dropped {
            self.uncount(group);
            self.record_eviction(reason);
        }
    }

    /// Drops order entries of keys already gone once they outnumber live
    /// ones, so the queue stays proportional to the tracked entries.
    fn compact_order(&mut self) {
        if self.order.len() > 2 * self.map.len() + 1024 {
            let map = &self.map;
            self.order
                .retain(|(seq, _, key)| map.get(key).is_some_and(|e| e.seq == *seq));
        }
    }
}

/// Joins lines of one message by queue id. See the module docs.
#[derive(Debug)]
pub struct Correlator {
    settings: StateSettings,
    messages: Table<MessageKey, MessageState>,
    deliveries: Table<DeliveryKey, DeliveryState>,
    sequential: Vec<SequentialState>,
    now: f64,
}

impl Correlator {
    pub fn new(settings: StateSettings) -> Correlator {
        Correlator {
            settings: StateSettings {
                max_messages: settings.max_messages.max(1),
                ..settings
            },
            messages: Table::new(),
            deliveries: Table::new(),
            sequential: Vec::new(),
            now: f64::MIN,
        }
    }

    /// Messages tracked now.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.len() == 0
    }

    /// Deliveries tracked now (started, result not yet seen).
    pub fn deliveries_len(&self) -> usize {
        self.deliveries.len()
    }

    /// Messages tracked now in `group`.
    pub fn count_in_group(&self, group: u8) -> usize {
        self.messages.count_in_group(group)
    }

    /// Message evictions since the last call, by reason.
    pub fn take_evictions(&mut self) -> Vec<(Eviction, u64)> {
        std::mem::take(&mut self.messages.evicted)
    }

    /// Delivery evictions since the last call, by reason.
    pub fn take_delivery_evictions(&mut self) -> Vec<(Eviction, u64)> {
        std::mem::take(&mut self.deliveries.evicted)
    }

    /// Advances log time to `time` and expires entries older than the TTL.
    pub fn advance(&mut self, time: f64) {
        if time <= self.now {
            return;
        }
        self.now = time;
        let horizon = time - self.settings.ttl_seconds;
        self.messages.expire(horizon);
        self.deliveries.expire(horizon);
    }

    /// The state of a message, created (at `time`) if unknown.
    fn entry(
        &mut self,
        source: u32,
        queue_id: &str,
        group: u8,
        time: f64,
    ) -> &mut Entry<MessageState> {
        self.advance(time);
        let probe = KeyRef { source, queue_id };
        if !self.messages.contains(&probe) {
            let key = MessageKey {
                source,
                queue_id: queue_id.into(),
            };
            return self.messages.insert(
                key,
                group,
                time,
                MessageState::new(),
                self.settings.max_messages,
            );
        }
        // The key is present.
        self.messages
            .get_mut(&probe)
            .unwrap_or_else(|| unreachable!("message state present after check"))
    }

    /// A message entered the queue. True the first time for this queue id.
    pub fn received(&mut self, source: u32, queue_id: &str, group: u8, time: f64) -> bool {
        let entry = self.entry(source, queue_id, group, time);
        if entry.value.received {
            return false;
        }
        entry.value.received = true;
        entry.created = entry.created.min(time);
        true
    }

    /// A new message took `queue_id`: state still held under it belonged to
    /// an earlier message (its end was not seen) and is retired; the new
    /// message's arrival is `time`.
    pub fn new_message(&mut self, source: u32, queue_id: &str, group: u8, time: f64) {
        self.advance(time);
        self.messages
            .retire(&KeyRef { source, queue_id }, Eviction::IdReused);
        self.entry(source, queue_id, group, time).value.received = true;
    }

    /// The queue manager logged the envelope. True the first time, so size
    /// and recipient count are observed once per message.
    pub fn envelope(&mut self, source: u32, queue_id: &str, group: u8, time: f64) -> bool {
        let entry = self.entry(source, queue_id, group, time);
        !std::mem::replace(&mut entry.value.envelope_seen, true)
    }

    /// A delivery attempt for `recipient` ended. For a final outcome
    /// (`deferred == false`) returns the number of attempts it took.
    pub fn delivery(
        &mut self,
        source: u32,
        queue_id: &str,
        group: u8,
        recipient: &str,
        deferred: bool,
        time: f64,
    ) -> Option<u32> {
        let hash = address_hash(recipient);
        self.entry(source, queue_id, group, time)
            .value
            .attempt(hash, deferred)
    }

    /// Seconds from the arrival of a tracked message to `time`; `None` if
    /// its arrival was not seen. Creates nothing.
    pub fn since_arrival(&self, source: u32, queue_id: &str, time: f64) -> Option<f64> {
        let entry = self.messages.map.get(&KeyRef { source, queue_id })?;
        entry
            .value
            .received
            .then(|| (time - entry.created).max(0.0))
    }

    /// The message expired. True unless its expiry was already counted,
    /// so a message is counted once however many recipients expired (an
    /// untracked message is counted each time: nothing remembers it).
    pub fn expired(&mut self, source: u32, queue_id: &str) -> bool {
        match self.messages.get_mut(&KeyRef { source, queue_id }) {
            Some(entry) => !std::mem::replace(&mut entry.value.expired_seen, true),
            None => true,
        }
    }

    /// A delivery attempt started under `delivery_id`. A delivery still
    /// tracked under that id (its result was not seen) is retired.
    #[allow(clippy::too_many_arguments)] // one plain value per fact of the line
    pub fn delivery_started(
        &mut self,
        source: u32,
        delivery_id: u64,
        queue_id: &str,
        group: u8,
        transport: &'static str,
        recipient: &str,
        time: f64,
    ) {
        self.advance(time);
        let key = DeliveryKey {
            source,
            delivery_id,
        };
        self.deliveries.retire(&key, Eviction::IdReused);
        let state = DeliveryState {
            owner: DeliveryOwner::Message {
                queue_id: queue_id.into(),
                recipient_hash: address_hash(recipient),
            },
            transport,
        };
        self.deliveries
            .insert(key, group, time, state, self.settings.max_messages);
    }

    /// The attempt started under `delivery_id` ended with `status`. `None`
    /// if its start was not seen (or was evicted).
    pub fn delivery_finished(
        &mut self,
        source: u32,
        delivery_id: u64,
        status: DeliveryStatus,
        time: f64,
    ) -> Option<FinishedDelivery> {
        self.advance(time);
        let Entry {
            group,
            value: delivery,
            ..
        } = self.deliveries.remove(&DeliveryKey {
            source,
            delivery_id,
        })?;
        let (queue_id, recipient_hash) = match delivery.owner {
            DeliveryOwner::Message {
                queue_id,
                recipient_hash,
            } => (queue_id, recipient_hash),
            DeliveryOwner::Sequential { init_time } => {
                return Some(FinishedDelivery {
                    transport: delivery.transport,
                    delay: init_time.map(|t| (time - t).max(0.0)),
                    attempts: None,
                });
            }
        };
        let message = self.entry(source, &queue_id, group, time);
        let delay = message
            .value
            .received
            .then(|| (time - message.created).max(0.0));
        let attempts = message
            .value
            .attempt(recipient_hash, status == DeliveryStatus::Deferred);
        Some(FinishedDelivery {
            transport: delivery.transport,
            delay,
            attempts,
        })
    }

    /// The position-joined context of `source`.
    fn sequential(&mut self, source: u32) -> &mut SequentialState {
        let i = source as usize;
        if self.sequential.len() <= i {
            self.sequential.resize_with(i + 1, SequentialState::default);
        }
        &mut self.sequential[i]
    }

    /// An SMTP command was logged; its reply comes later. True when it
    /// starts a transaction (`MAIL`).
    pub fn smtp_command(&mut self, source: u32, stage: RejectStage, size: Option<u64>) -> bool {
        let ctx = self.sequential(source);
        ctx.awaiting_reply = Some(stage);
        if stage == RejectStage::Mail {
            ctx.data_size = None;
        }
        if size.is_some() {
            ctx.data_size = size;
        }
        stage == RejectStage::Mail
    }

    /// The server checked a recipient: the reply that follows answers its
    /// `RCPT`.
    pub fn recipient_checked(&mut self, source: u32) {
        self.sequential(source).awaiting_reply = Some(RejectStage::Rcpt);
    }

    /// The server replied `code` to the source's last command.
    pub fn smtp_reply(&mut self, source: u32, code: u16, queued: bool) -> SmtpReplyOutcome {
        let ctx = self.sequential(source);
        let awaiting = ctx.awaiting_reply.take();
        if queued {
            let size = ctx.data_size.take();
            return SmtpReplyOutcome::MessageQueued {
                size: size.filter(|_| awaiting == Some(RejectStage::EndOfMessage)),
            };
        }
        let refused = matches!(code / 100, 4 | 5);
        if refused && awaiting == Some(RejectStage::EndOfMessage) {
            ctx.data_size = None;
        }
        match (awaiting, refused) {
            (Some(RejectStage::Rcpt), false) if code / 100 == 2 => {
                SmtpReplyOutcome::RecipientAccepted
            }
            (Some(RejectStage::Rcpt), true) => SmtpReplyOutcome::RecipientRejected,
            (Some(stage), true) => SmtpReplyOutcome::Rejected(stage),
            (None, true) => SmtpReplyOutcome::Rejected(RejectStage::Other),
            _ => SmtpReplyOutcome::Nothing,
        }
    }

    /// A message's deliveries begin (delivery-log `init`).
    pub fn deliveries_init(&mut self, source: u32, time: f64) {
        self.advance(time);
        let ctx = self.sequential(source);
        ctx.init_time = Some(time);
        ctx.init_authenticated = false;
    }

    /// A delivery attempt started under `delivery_id` for the message of
    /// the source's last `init`. A delivery still tracked under that id is
    /// retired.
    pub fn sequential_delivery_started(
        &mut self,
        source: u32,
        delivery_id: u64,
        group: u8,
        transport: &'static str,
        time: f64,
    ) {
        self.advance(time);
        let horizon = time - self.settings.ttl_seconds;
        let init_time = self.sequential(source).init_time.filter(|t| *t >= horizon);
        let key = DeliveryKey {
            source,
            delivery_id,
        };
        self.deliveries.retire(&key, Eviction::IdReused);
        let state = DeliveryState {
            owner: DeliveryOwner::Sequential { init_time },
            transport,
        };
        self.deliveries
            .insert(key, group, time, state, self.settings.max_messages);
    }

    /// The message of the source's last `init` was submitted by an
    /// authenticated client. True the first time for that message (or
    /// every time when no `init` was seen).
    pub fn authenticated_submission(&mut self, source: u32) -> bool {
        let ctx = self.sequential(source);
        if ctx.init_time.is_none() {
            return true;
        }
        !std::mem::replace(&mut ctx.init_authenticated, true)
    }

    /// The queue manager of `source` exited: every delivery it had not
    /// reported is void (delivery ids start again at 1).
    pub fn queue_manager_exited(&mut self, source: u32) {
        self.deliveries
            .retire_where(|k| k.source == source, Eviction::Restart);
    }

    /// A recipient of a message was enqueued (Messaging Server `E`). True
    /// the first time for this message: count it received once however
    /// many recipients and queue files it has.
    pub fn enqueued(&mut self, source: u32, message: &str, group: u8, time: f64) -> bool {
        let entry = self.entry(source, message, group, time);
        let state = &mut entry.value;
        state.enqueued = state.enqueued.saturating_add(1);
        state.pending = state.pending.saturating_add(1);
        if state.received {
            return false;
        }
        state.received = true;
        entry.created = entry.created.min(time);
        true
    }

    /// A delivery attempt of an enqueued recipient ended. A final outcome
    /// completes the recipient; when it was the message's last one, the
    /// message leaves the queue and its state is dropped. A final outcome
    /// of a message never seen creates no state.
    #[allow(clippy::too_many_arguments)] // one plain value per fact of the record
    pub fn dequeued(
        &mut self,
        source: u32,
        message: &str,
        group: u8,
        recipient: &str,
        status: DeliveryStatus,
        time: f64,
    ) -> Dequeued {
        self.advance(time);
        let deferred = status == DeliveryStatus::Deferred;
        let probe = KeyRef {
            source,
            queue_id: message,
        };
        if !deferred && !self.messages.contains(&probe) {
            return Dequeued {
                delay: None,
                attempts: Some(1),
                departure: None,
            };
        }
        let entry = self.entry(source, message, group, time);
        let delay = entry
            .value
            .received
            .then(|| (time - entry.created).max(0.0));
        let attempts = entry.value.attempt(address_hash(recipient), deferred);
        let state = &mut entry.value;
        let done = if deferred {
            false
        } else if state.received {
            state.pending = state.pending.saturating_sub(1);
            state.pending == 0
        } else {
            state.deferrals.is_empty()
        };
        let mut departure = None;
        if done {
            if let Some(e) = self.messages.remove(&probe) {
                departure = e.value.received.then(|| EnqueuedDeparture {
                    queue_seconds: (time - e.created).max(0.0),
                    recipients: e.value.enqueued,
                });
            }
        }
        Dequeued {
            delay,
            attempts,
            departure,
        }
    }

    /// The message left the queue; its state is dropped. `None` if the
    /// message was not tracked.
    pub fn removed(&mut self, source: u32, queue_id: &str, time: f64) -> Option<Departure> {
        self.advance(time);
        let entry = self.messages.remove(&KeyRef { source, queue_id })?;
        Some(Departure {
            queue_seconds: entry
                .value
                .received
                .then(|| (time - entry.created).max(0.0)),
        })
    }
}

fn address_hash(address: &str) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    address.hash(&mut h);
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(max: usize, ttl: f64) -> Correlator {
        Correlator::new(StateSettings {
            max_messages: max,
            ttl_seconds: ttl,
        })
    }

    #[test]
    fn lifecycle_counts_received_once_and_measures_queue_time() {
        let mut c = small(10, 1000.0);
        assert!(c.received(0, "A1", 0, 100.0));
        assert!(!c.received(0, "A1", 0, 101.0));
        assert!(c.envelope(0, "A1", 0, 101.0));
        assert!(!c.envelope(0, "A1", 0, 400.0));
        assert_eq!(c.count_in_group(0), 1);
        assert_eq!(
            c.removed(0, "A1", 130.5),
            Some(Departure {
                queue_seconds: Some(30.5)
            })
        );
        assert_eq!(c.count_in_group(0), 0);
        assert_eq!(c.removed(0, "A1", 131.0), None);
    }

    #[test]
    fn enqueued_recipients_complete_the_message() {
        let mut c = small(10, 1000.0);
        assert!(c.enqueued(0, "<m@x>", 2, 10.0));
        assert!(!c.enqueued(0, "<m@x>", 2, 10.0));
        let d = c.dequeued(0, "<m@x>", 2, "a@x", DeliveryStatus::Deferred, 12.0);
        assert_eq!(d.delay, Some(2.0));
        assert_eq!(d.attempts, None);
        let d = c.dequeued(0, "<m@x>", 2, "a@x", DeliveryStatus::Sent, 15.0);
        assert_eq!(
            (d.delay, d.attempts, d.departure),
            (Some(5.0), Some(2), None)
        );
        let d = c.dequeued(0, "<m@x>", 2, "b@x", DeliveryStatus::Bounced, 20.0);
        assert_eq!(
            d.departure,
            Some(EnqueuedDeparture {
                queue_seconds: 10.0,
                recipients: 2
            })
        );
        assert!(c.is_empty());
        // The outcome of a message never seen leaves nothing behind.
        let d = c.dequeued(0, "<n@x>", 2, "a@x", DeliveryStatus::Sent, 21.0);
        assert_eq!((d.delay, d.attempts, d.departure), (None, Some(1), None));
        assert!(c.is_empty());
        c.dequeued(0, "<n@x>", 2, "a@x", DeliveryStatus::Deferred, 22.0);
        let d = c.dequeued(0, "<n@x>", 2, "a@x", DeliveryStatus::Sent, 23.0);
        assert_eq!((d.delay, d.attempts), (None, Some(2)));
        assert!(c.is_empty());
    }

    #[test]
    fn smtp_replies_are_read_against_the_source_command() {
        let mut c = small(10, 1000.0);
        assert!(c.smtp_command(0, RejectStage::Mail, None));
        assert_eq!(c.smtp_reply(0, 250, false), SmtpReplyOutcome::Nothing);
        assert!(!c.smtp_command(0, RejectStage::Rcpt, None));
        // Another source's lines in between do not disturb this one.
        assert!(c.smtp_command(1, RejectStage::Mail, None));
        c.recipient_checked(0);
        assert_eq!(
            c.smtp_reply(0, 250, false),
            SmtpReplyOutcome::RecipientAccepted
        );
        assert_eq!(
            c.smtp_reply(1, 553, false),
            SmtpReplyOutcome::Rejected(RejectStage::Mail)
        );
        c.smtp_command(0, RejectStage::Rcpt, None);
        assert_eq!(
            c.smtp_reply(0, 554, false),
            SmtpReplyOutcome::RecipientRejected
        );
        // A second reply to one command has no command left.
        assert_eq!(
            c.smtp_reply(0, 421, false),
            SmtpReplyOutcome::Rejected(RejectStage::Other)
        );
        c.smtp_command(0, RejectStage::EndOfMessage, Some(620));
        assert_eq!(
            c.smtp_reply(0, 250, true),
            SmtpReplyOutcome::MessageQueued { size: Some(620) }
        );
        // A queued reply without a `size` line has no size.
        assert_eq!(
            c.smtp_reply(0, 250, true),
            SmtpReplyOutcome::MessageQueued { size: None }
        );
        // A new transaction forgets an unanswered size.
        c.smtp_command(0, RejectStage::EndOfMessage, Some(1));
        c.smtp_command(0, RejectStage::Mail, None);
        assert_eq!(
            c.smtp_reply(0, 250, true),
            SmtpReplyOutcome::MessageQueued { size: None }
        );
    }

    #[test]
    fn sequential_deliveries_take_their_delay_from_init() {
        let mut c = small(10, 1000.0);
        c.sequential_delivery_started(0, 1, 3, "local", 5.0);
        assert_eq!(
            c.delivery_finished(0, 1, DeliveryStatus::Sent, 6.0),
            Some(FinishedDelivery {
                transport: "local",
                delay: None,
                attempts: None
            })
        );
        c.deliveries_init(0, 10.0);
        c.sequential_delivery_started(0, 2, 3, "remote", 11.0);
        assert_eq!(
            c.delivery_finished(0, 2, DeliveryStatus::Deferred, 14.5),
            Some(FinishedDelivery {
                transport: "remote",
                delay: Some(4.5),
                attempts: None
            })
        );
        assert!(c.authenticated_submission(0));
        assert!(!c.authenticated_submission(0));
        c.deliveries_init(0, 20.0);
        assert!(c.authenticated_submission(0));
        // An `init` older than the TTL gives no delay.
        c.sequential_delivery_started(0, 3, 3, "local", 2000.0);
        assert_eq!(
            c.delivery_finished(0, 3, DeliveryStatus::Sent, 2001.0)
                .and_then(|f| f.delay),
            None
        );
        assert_eq!(c.len(), 0);
        assert_eq!(c.deliveries_len(), 0);
    }

    #[test]
    fn attempts_per_recipient() {
        let mut c = small(10, 1000.0);
        assert_eq!(c.delivery(0, "Q", 0, "a@x", true, 1.0), None);
        assert_eq!(c.delivery(0, "Q", 0, "b@x", false, 1.0), Some(1));
        assert_eq!(c.delivery(0, "Q", 0, "a@x", true, 2.0), None);
        assert_eq!(c.delivery(0, "Q", 0, "a@x", false, 3.0), Some(3));
        // Same queue id in another source is another message.
        assert_eq!(c.delivery(1, "Q", 0, "a@x", false, 3.0), Some(1));
    }

    #[test]
    fn capacity_evicts_oldest_first() {
        let mut c = small(3, 1e9);
        for (i, id) in ["A", "B", "C", "D", "E"].iter().enumerate() {
            c.received(0, id, 0, i as f64);
        }
        assert_eq!(c.len(), 3);
        assert_eq!(c.take_evictions(), vec![(Eviction::Capacity, 2)]);
        // A and B were evicted; C, D, E remain.
        assert_eq!(c.removed(0, "A", 10.0), None);
        assert!(c.removed(0, "C", 10.0).is_some());
        assert!(c.removed(0, "E", 10.0).is_some());
    }

    #[test]
    fn ttl_expires_messages_by_log_time() {
        let mut c = small(100, 60.0);
        c.received(0, "OLD", 0, 0.0);
        c.received(0, "NEW", 0, 50.0);
        c.advance(70.0);
        assert_eq!(c.take_evictions(), vec![(Eviction::Expired, 1)]);
        assert_eq!(c.len(), 1);
        assert!(c.removed(0, "NEW", 71.0).is_some());
    }

    #[test]
    fn order_queue_stays_bounded_under_churn() {
        let mut c = small(10, 1e9);
        c.received(0, "LONGLIVED", 0, 0.0);
        for i in 0..100_000u32 {
            let id = format!("M{i}");
            c.received(0, &id, 0, f64::from(i));
            c.removed(0, &id, f64::from(i));
        }
        assert!(
            c.messages.order.len() <= 2 * c.len() + 1025,
            "{}",
            c.messages.order.len()
        );
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn delivery_ids_join_result_to_message_with_delay_and_attempts() {
        let mut c = small(10, 1000.0);
        c.new_message(0, "746539", 1, 100.0);
        c.delivery_started(0, 1, "746539", 1, "local", "bob@x", 100.5);
        c.delivery_started(0, 2, "746539", 1, "remote", "fiona@y", 100.5);
        assert_eq!(c.deliveries_len(), 2);
        assert_eq!(
            c.delivery_finished(0, 2, DeliveryStatus::Deferred, 103.0),
            Some(FinishedDelivery {
                transport: "remote",
                delay: Some(3.0),
                attempts: None
            })
        );
        assert_eq!(
            c.delivery_finished(0, 1, DeliveryStatus::Sent, 101.0),
            Some(FinishedDelivery {
                transport: "local",
                delay: Some(1.0),
                attempts: Some(1)
            })
        );
        // The result of an unknown delivery id.
        assert_eq!(c.delivery_finished(0, 1, DeliveryStatus::Sent, 101.0), None);
        c.delivery_started(0, 3, "746539", 1, "remote", "fiona@y", 200.0);
        let f = c.delivery_finished(0, 3, DeliveryStatus::Bounced, 210.0);
        assert_eq!(f.and_then(|f| f.attempts), Some(2));
        assert_eq!(c.count_in_group(1), 1);
        assert_eq!(
            c.removed(0, "746539", 211.0),
            Some(Departure {
                queue_seconds: Some(111.0)
            })
        );
        assert_eq!(c.deliveries_len(), 0);
    }

    #[test]
    fn reused_message_id_never_inherits_old_state() {
        let mut c = small(10, 1000.0);
        c.new_message(0, "53", 0, 10.0);
        c.delivery_started(0, 1, "53", 0, "local", "me@d", 10.0);
        c.delivery_finished(0, 1, DeliveryStatus::Deferred, 11.0);
        // `end msg 53` was lost; the inode is reused by a new message.
        c.new_message(0, "53", 0, 50.0);
        assert_eq!(c.take_evictions(), vec![(Eviction::IdReused, 1)]);
        c.delivery_started(0, 2, "53", 0, "local", "me@d", 51.0);
        let f = c.delivery_finished(0, 2, DeliveryStatus::Sent, 52.0);
        assert_eq!(
            f,
            Some(FinishedDelivery {
                transport: "local",
                delay: Some(2.0),
                attempts: Some(1)
            })
        );
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn restart_voids_deliveries_of_that_source_only_and_keeps_messages() {
        let mut c = small(10, 1000.0);
        c.new_message(0, "7", 0, 0.0);
        c.new_message(1, "7", 0, 0.0);
        c.delivery_started(0, 1, "7", 0, "remote", "a@x", 1.0);
        c.delivery_finished(0, 1, DeliveryStatus::Deferred, 2.0);
        c.delivery_started(0, 2, "7", 0, "remote", "b@x", 3.0);
        c.delivery_started(1, 2, "7", 0, "remote", "b@x", 3.0);
        c.queue_manager_exited(0);
        assert_eq!(c.take_delivery_evictions(), vec![(Eviction::Restart, 1)]);
        assert_eq!(c.delivery_finished(0, 2, DeliveryStatus::Sent, 4.0), None);
        assert!(c
            .delivery_finished(1, 2, DeliveryStatus::Sent, 4.0)
            .is_some());
        // After the restart, delivery 1 is a new delivery of the same
        // queued message: its earlier deferral still counts.
        c.delivery_started(0, 1, "7", 0, "remote", "a@x", 5.0);
        let f = c.delivery_finished(0, 1, DeliveryStatus::Bounced, 6.0);
        assert_eq!(f.and_then(|f| f.attempts), Some(2));
        assert_eq!(f.and_then(|f| f.delay), Some(6.0));
    }

    #[test]
    fn reused_delivery_id_retires_the_unfinished_one() {
        let mut c = small(10, 1000.0);
        c.delivery_started(0, 5, "1", 0, "local", "a@x", 1.0);
        c.delivery_started(0, 5, "2", 0, "remote", "b@x", 2.0);
        assert_eq!(c.take_delivery_evictions(), vec![(Eviction::IdReused, 1)]);
        let f = c.delivery_finished(0, 5, DeliveryStatus::Sent, 3.0);
        assert_eq!(f.map(|f| f.transport), Some("remote"));
    }

    #[test]
    fn deliveries_are_capped_and_expire() {
        let mut c = small(2, 60.0);
        for id in 1..=3 {
            c.delivery_started(0, id, "1", 0, "local", "a@x", id as f64);
        }
        assert_eq!(c.deliveries_len(), 2);
        assert_eq!(c.take_delivery_evictions(), vec![(Eviction::Capacity, 1)]);
        c.advance(100.0);
        assert_eq!(c.deliveries_len(), 0);
        assert_eq!(c.take_delivery_evictions(), vec![(Eviction::Expired, 2)]);
    }
}
