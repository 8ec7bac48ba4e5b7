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

impl From<&KeyRef<'_>> for MessageKey {
    fn from(key: &KeyRef<'_>) -> MessageKey {
        MessageKey {
            source: key.source,
            queue_id: key.queue_id.into(),
        }
    }
}

impl Equivalent<MessageKey> for KeyRef<'_> {
    fn equivalent(&self, key: &MessageKey) -> bool {
        self.source == key.source && self.queue_id == &*key.queue_id
    }
}

/// Why a message's state was dropped without the message leaving the queue.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Eviction {
    /// `--state.max-messages` was reached; the oldest message made room.
    Capacity,
    /// Not seen to leave the queue within the TTL.
    Expired,
}

/// Limits of the correlator.
#[derive(Clone, Copy, Debug)]
pub struct StateSettings {
    /// Most messages tracked at once.
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
    /// Insertion number: matches exactly one entry of `order`.
    seq: u64,
    /// Index of the metric group (the source's `mta`) for the queue gauge.
    group: u8,
    first_seen: f64,
    /// Seen entering the queue (so `first_seen` is its arrival).
    received: bool,
    envelope_seen: bool,
    /// Deferred attempts so far, per recipient (by address hash).
    deferrals: Vec<(u64, u32)>,
}

/// What happened when a message left the queue.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Departure {
    /// Seconds from arrival to removal, if the arrival was seen.
    pub queue_seconds: Option<f64>,
}

/// Joins lines of one message by queue id. See the module docs.
#[derive(Debug)]
pub struct Correlator {
    settings: StateSettings,
    messages: HashMap<MessageKey, MessageState>,
    /// Insertion order (seq, first_seen, key) for oldest-first eviction;
    /// entries whose message is gone are skipped lazily and compacted.
    order: VecDeque<(u64, f64, MessageKey)>,
    next_seq: u64,
    now: f64,
    group_counts: Vec<usize>,
    evicted: Vec<(Eviction, u64)>,
}

impl Correlator {
    pub fn new(settings: StateSettings) -> Correlator {
        Correlator {
            settings: StateSettings {
                max_messages: settings.max_messages.max(1),
                ..settings
            },
            messages: HashMap::new(),
            order: VecDeque::new(),
            next_seq: 0,
            now: f64::MIN,
            group_counts: Vec::new(),
            evicted: Vec::new(),
        }
    }

    /// Messages tracked now.
    pub fn len(&self) -> usize {
        self.messages.len()
    }

    pub fn is_empty(&self) -> bool {
        self.messages.is_empty()
    }

    /// Messages tracked now in `group`.
    pub fn count_in_group(&self, group: u8) -> usize {
        self.group_counts
            .get(usize::from(group))
            .copied()
            .unwrap_or(0)
    }

    /// Evictions since the last call, by reason.
    pub fn take_evictions(&mut self) -> Vec<(Eviction, u64)> {
        std::mem::take(&mut self.evicted)
    }

    /// Advances log time to `time` and expires messages older than the TTL.
    pub fn advance(&mut self, time: f64) {
        if time <= self.now {
            return;
        }
        self.now = time;
        let horizon = time - self.settings.ttl_seconds;
        while let Some((seq, first_seen, _)) = self.order.front() {
            let (seq, first_seen) = (*seq, *first_seen);
            if !self.is_live(seq) {
                self.order.pop_front();
                continue;
            }
            if first_seen >= horizon {
                break;
            }
            self.evict_front(Eviction::Expired);
        }
    }

    fn is_live(&self, seq: u64) -> bool {
        self.order
            .front()
            .and_then(|(_, _, key)| self.messages.get(key))
            .is_some_and(|m| m.seq == seq)
    }

    fn evict_front(&mut self, reason: Eviction) {
        if let Some((_, _, key)) = self.order.pop_front() {
            if let Some(state) = self.messages.remove(&key) {
                self.uncount(state.group);
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

    /// The state of a message, created (at `time`) if unknown.
    fn entry(&mut self, source: u32, queue_id: &str, group: u8, time: f64) -> &mut MessageState {
        self.advance(time);
        let probe = KeyRef { source, queue_id };
        if !self.messages.contains_key(&probe) {
            self.make_room();
        }
        let order = &mut self.order;
        let next_seq = &mut self.next_seq;
        let group_counts = &mut self.group_counts;
        self.messages.entry_ref(&probe).or_insert_with(|| {
            let seq = *next_seq;
            *next_seq += 1;
            order.push_back((seq, time, MessageKey::from(&probe)));
            let g = usize::from(group);
            if group_counts.len() <= g {
                group_counts.resize(g + 1, 0);
            }
            group_counts[g] += 1;
            MessageState {
                seq,
                group,
                first_seen: time,
                received: false,
                envelope_seen: false,
                deferrals: Vec::new(),
            }
        })
    }

    /// Evicts the oldest messages until one more fits.
    fn make_room(&mut self) {
        while self.messages.len() >= self.settings.max_messages {
            let Some((seq, _, _)) = self.order.front() else {
                break;
            };
            let seq = *seq;
            if self.is_live(seq) {
                self.evict_front(Eviction::Capacity);
            } else {
                self.order.pop_front();
            }
        }
        self.compact_order();
    }

    /// Drops queue entries of messages already gone once they outnumber
    /// live ones, so the queue stays proportional to the tracked messages.
    fn compact_order(&mut self) {
        if self.order.len() > 2 * self.messages.len() + 1024 {
            let messages = &self.messages;
            self.order
                .retain(|(seq, _, key)| messages.get(key).is_some_and(|m| m.seq == *seq));
        }
    }

    /// A message entered the queue. True the first time for this queue id.
    pub fn received(&mut self, source: u32, queue_id: &str, group: u8, time: f64) -> bool {
        let state = self.entry(source, queue_id, group, time);
        if state.received {
            return false;
        }
        state.received = true;
        state.first_seen = state.first_seen.min(time);
        true
    }

    /// The queue manager logged the envelope. True the first time, so size
    /// and recipient count are observed once per message.
    pub fn envelope(&mut self, source: u32, queue_id: &str, group: u8, time: f64) -> bool {
        let state = self.entry(source, queue_id, group, time);
        !std::mem::replace(&mut state.envelope_seen, true)
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
        let state = self.entry(source, queue_id, group, time);
        let slot = state.deferrals.iter().position(|(h, _)| *h == hash);
        if deferred {
            match slot {
                Some(i) => state.deferrals[i].1 += 1,
                None => state.deferrals.push((hash, 1)),
            }
            None
        } else {
            let previous = slot.map_or(0, |i| state.deferrals.swap_remove(i).1);
            Some(previous + 1)
        }
    }

    /// The message left the queue; its state is dropped. `None` if the
    /// message was not tracked.
    pub fn removed(&mut self, source: u32, queue_id: &str, time: f64) -> Option<Departure> {
        self.advance(time);
        let state = self.messages.remove(&KeyRef { source, queue_id })?;
        self.uncount(state.group);
        Some(Departure {
            queue_seconds: state.received.then(|| (time - state.first_seen).max(0.0)),
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
        assert!(c.order.len() <= 2 * c.len() + 1025, "{}", c.order.len());
        assert_eq!(c.len(), 1);
    }
}
