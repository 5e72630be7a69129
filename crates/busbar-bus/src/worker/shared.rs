//! What the subscriptions of a topic share when they read it: one read, one decode and one
//! JSON parse per event, and one evaluation of all their patterns together (the indexed
//! [`RuleSet`] of busbar-rules), however many subscriptions read the topic.
//!
//! **Chunks.** A worker that needs the events of a partition from offset `o` asks for the chunk
//! holding `o`: what one read of [`READ_BYTES`] from some offset `<= o` returned, decoded
//! (events and undecodable batches), covering `[start, end)`. Chunks live in a cache keyed by
//! (topic, topic id, partition) and start offset, so a recreated topic (another id) never sees
//! its old incarnation's events. Every read is pinned to the incarnation its key names: the
//! topic's id is checked before and after the read (ids are never reused), so a worker still on a
//! deleted topic never reads (nor caches under the old id) the events of the topic created again
//! under its name before its next sources check; it gets `UnknownTopic` and starts over. When no
//! cached chunk holds `o`, the worker reads one itself under the partition's fill lock (workers
//! waiting on the same lock find it cached when they get it): workers near the head share the
//! chunks of new events, and a lagging worker fills the cache at its own position.
//!
//! **No blocking read on an async thread.** The read itself runs on tokio's blocking pool
//! (`spawn_blocking`), and the fill lock is an async lock: a slow or stuck disk read holds only
//! a fill task, never an executor thread nor a worker: every worker of the partition, the one
//! that started the read included, waits for it at most [`FILL_WAIT`], then treats the partition
//! as having nothing new for now (it serves its in-flight deliveries, retries and other
//! partitions, and finds the chunk cached on a later pass). At most one blocking read per
//! partition is in flight for the shared cache; with sharing off each worker waits for its own. The cache is bounded by `bus.read_cache_bytes` (the decoded size of
//! its events); past it, the chunks inserted first are dropped (a worker still reading one keeps
//! it alive until done). `0` turns sharing off: each subscription reads, decodes and matches on its
//! own, as busbar did before (kept for comparison, `benches/fanout.rs`).
//!
//! **Rules.** Each running worker registers its subscription under every source topic with a
//! fresh registration id (a restart or an update registers again: the id names one compiled
//! pattern for good). A topic's [`TopicRules`] are rebuilt on the next read after any
//! registration changes, with a new generation number. A chunk keeps the match result of the
//! rules it was last evaluated with; a worker uses that result only when its own registration id
//! is in those rules (so it was computed with exactly its pattern), else it evaluates the chunk
//! again with the topic's current rules (one more parse of each event, shared by all). A stale
//! result, from before an update of a subscription, is therefore never used.
//!
//! **Decoding.** With a [`Decoder`] installed (`Bus::set_decoder`), a schema-framed value is
//! decoded while its document is built, in the same single evaluation: once per event for all
//! the subscriptions of the topic. The decoded value is not kept (only the match result is), so
//! the cache's bound is unchanged.
//!
//! [`ReadStats`] counts reads, decoded events and parsed documents (tests show N subscriptions
//! cost one parse per event, not N).

use crate::decode::Decoder;
use crate::envelope::Envelope;
use crate::request;
use crate::spec::Compiled;
use busbar_broker::event::Decoded;
use busbar_broker::{Broker, BrokerError};
use busbar_rules::RuleSet;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

/// Bytes read from a partition at a time (one chunk at most this much stored data).
pub const READ_BYTES: usize = 1 << 20;
/// What a decoded event costs in the cache beyond its key, value and headers.
const EVENT_OVERHEAD: usize = 96;
/// Longest a worker waits for another worker's read of the same partition before it moves on
/// (and asks again on its next pass): a slow disk read delays only the reader.
pub const FILL_WAIT: std::time::Duration = std::time::Duration::from_millis(50);

/// (topic, topic id, partition): one incarnation of a partition.
pub type PartKey = (String, String, u32);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// How much reading and matching the bus did (since it was opened).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReadStats {
    /// Reads of source partitions by workers.
    pub reads: u64,
    /// Events decoded from those reads.
    pub events_decoded: u64,
    /// Events read as CloudEvents and parsed into the JSON document patterns match.
    pub documents_parsed: u64,
    /// Chunks a worker found in the cache instead of reading, and events (a retry, a key
    /// lane's next) taken from a cached chunk.
    pub cache_hits: u64,
}

/// How a registered subscription is matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    /// No pattern: every event.
    All,
    /// Rule `i` of the rule set.
    At(u32),
}

/// The patterns of every subscription reading a topic, indexed together.
pub struct TopicRules {
    generation: u64,
    set: RuleSet<u32>,
    rules: HashMap<u64, Rule>,
}

impl TopicRules {
    fn build<'a>(generation: u64, regs: impl Iterator<Item = (u64, &'a Compiled)>) -> Self {
        let mut set = RuleSet::new();
        let mut rules = HashMap::new();
        for (id, c) in regs {
            let rule = match &c.pattern {
                None => Rule::All,
                Some(p) => {
                    let i = set.len() as u32;
                    set.add(i, p.clone());
                    Rule::At(i)
                }
            };
            rules.insert(id, rule);
        }
        TopicRules {
            generation,
            set,
            rules,
        }
    }
}

/// A chunk's match result: per rule, the indexes of its matching events.
struct Matches {
    rules: Arc<TopicRules>,
    /// Rule → the indexes of the events it matches (rules without a match are left out).
    by_rule: HashMap<u32, Vec<u32>>,
}

impl Matches {
    /// About what this result holds in memory: it grows with subscriptions × events, so the
    /// cache counts it against `bus.read_cache_bytes` like the events themselves.
    fn bytes(&self) -> usize {
        64 + (self.by_rule.values())
            .map(|v| 48 + 4 * v.capacity())
            .sum::<usize>()
    }
}

/// One read of a partition, decoded.
pub struct Chunk {
    pub start: u64,
    /// The offset after the last stored batch read.
    pub end: u64,
    pub items: Vec<Decoded>,
    /// Indexes of the undecodable batches in `items` (every subscription sets them aside).
    bad: Vec<u32>,
    bytes: usize,
    matches: Mutex<Option<Arc<Matches>>>,
    /// The bytes of the match result kept in `matches` that the cache counts (changed only
    /// under the cache's lock).
    match_bytes: AtomicUsize,
}

impl Chunk {
    /// What the cache counts for this chunk: its events and its kept match result.
    fn held(&self) -> usize {
        self.bytes + self.match_bytes.load(Relaxed)
    }

    /// The item holding offset `o` (an event at it, or an undecodable batch spanning it).
    pub fn item_at(&self, o: u64) -> Option<&Decoded> {
        let j = self.items.partition_point(|d| match d {
            Decoded::Event(e) => e.offset < o,
            Decoded::Undecodable { last, .. } => *last < o,
        });
        self.items.get(j).filter(|d| holds(d, o))
    }

    /// The last offset item `j` covers.
    pub fn last_of(&self, j: u32) -> u64 {
        match &self.items[j as usize] {
            Decoded::Event(e) => e.offset,
            Decoded::Undecodable { last, .. } => *last,
        }
    }
}

#[derive(Default)]
struct TopicRegs {
    regs: BTreeMap<u64, Arc<Compiled>>,
    built: Option<Arc<TopicRules>>,
}

#[derive(Default)]
struct Cache {
    parts: HashMap<PartKey, BTreeMap<u64, Arc<Chunk>>>,
    fills: HashMap<PartKey, Arc<tokio::sync::Mutex<()>>>,
    /// Chunks in the order they were inserted (evicted first to last).
    order: VecDeque<(PartKey, u64)>,
    bytes: usize,
}

impl Cache {
    fn lookup(&self, key: &PartKey, at: u64) -> Option<Arc<Chunk>> {
        let (_, c) = self.parts.get(key)?.range(..=at).next_back()?;
        (c.end > at).then(|| c.clone())
    }

    fn insert(&mut self, key: &PartKey, chunk: Arc<Chunk>, cap: usize) {
        self.bytes += chunk.held();
        let start = chunk.start;
        let old = (self.parts.entry(key.clone()).or_default()).insert(start, chunk);
        if let Some(old) = old {
            self.bytes -= old.held();
        }
        self.order.push_back((key.clone(), start));
        self.shrink(cap);
        self.tidy_order();
    }

    /// Counts a new match result of `chunk` (`size` bytes, replacing the one it held) if the
    /// chunk is still cached, then drops the oldest chunks past `cap`.
    fn count_matches(&mut self, chunk: &Chunk, size: usize, cap: usize) {
        let cached = (self.parts.values())
            .filter_map(|m| m.get(&chunk.start))
            .any(|c| std::ptr::eq(Arc::as_ptr(c), chunk));
        if !cached {
            return;
        }
        self.bytes -= chunk.match_bytes.swap(size, Relaxed);
        self.bytes += size;
        self.shrink(cap);
    }

    fn shrink(&mut self, cap: usize) {
        while self.bytes > cap {
            let Some((k, s)) = self.order.pop_front() else {
                break;
            };
            self.evict(&k, s);
        }
    }

    /// Drops the entries of `order` whose chunk is gone (a topic forgotten, a chunk replaced),
    /// once they are as many as the chunks: the queue stays bounded by the chunks cached.
    fn tidy_order(&mut self) {
        let chunks: usize = self.parts.values().map(BTreeMap::len).sum();
        if self.order.len() <= 2 * chunks + 64 {
            return;
        }
        let mut seen = std::collections::HashSet::new();
        let parts = &self.parts;
        self.order.retain(|(k, s)| {
            parts.get(k).is_some_and(|m| m.contains_key(s)) && seen.insert((k.clone(), *s))
        });
    }

    fn forget_topic(&mut self, topic: &str) {
        let keys: Vec<PartKey> = (self.parts.keys())
            .filter(|k| k.0 == topic)
            .cloned()
            .collect();
        for k in keys {
            let starts: Vec<u64> = self.parts[&k].keys().copied().collect();
            for s in starts {
                self.evict(&k, s);
            }
        }
    }

    fn evict(&mut self, key: &PartKey, start: u64) {
        let Some(chunks) = self.parts.get_mut(key) else {
            return;
        };
        if let Some(c) = chunks.remove(&start) {
            self.bytes -= c.held();
        }
        if chunks.is_empty() {
            self.parts.remove(key);
            if self
                .fills
                .get(key)
                .is_some_and(|f| Arc::strong_count(f) == 1)
            {
                self.fills.remove(key);
            }
        }
    }
}

/// The read cache and the topics' rules, shared by every worker of a bus.
pub struct Shared {
    cap: usize,
    next_id: AtomicU64,
    generation: AtomicU64,
    topics: Mutex<HashMap<String, TopicRegs>>,
    cache: Mutex<Cache>,
    decoder: Mutex<Option<Decoder>>,
    reads: AtomicU64,
    events_decoded: AtomicU64,
    documents_parsed: AtomicU64,
    cache_hits: AtomicU64,
}

/// A worker's subscription registered under its source topics; dropping it unregisters.
pub struct Registration {
    shared: Arc<Shared>,
    id: u64,
    sub: Arc<Compiled>,
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.shared.unregister(self.id, &self.sub.spec.sources);
    }
}

impl Shared {
    /// A cache of at most `cap` bytes of decoded events (`0`: no sharing).
    pub fn new(cap: usize) -> Arc<Shared> {
        Arc::new(Shared {
            cap,
            next_id: AtomicU64::new(1),
            generation: AtomicU64::new(1),
            topics: Mutex::default(),
            cache: Mutex::default(),
            decoder: Mutex::default(),
            reads: AtomicU64::new(0),
            events_decoded: AtomicU64::new(0),
            documents_parsed: AtomicU64::new(0),
            cache_hits: AtomicU64::new(0),
        })
    }

    /// The counters so far.
    pub fn stats(&self) -> ReadStats {
        ReadStats {
            reads: self.reads.load(Relaxed),
            events_decoded: self.events_decoded.load(Relaxed),
            documents_parsed: self.documents_parsed.load(Relaxed),
            cache_hits: self.cache_hits.load(Relaxed),
        }
    }

    /// Installs the hook that decodes schema-framed values for matching. Match results kept
    /// from before are dropped with the cached chunks (they were computed without it).
    pub fn set_decoder(&self, decoder: Option<Decoder>) {
        *lock(&self.decoder) = decoder;
        let mut cache = lock(&self.cache);
        let keys: Vec<(PartKey, u64)> = (cache.parts.iter())
            .flat_map(|(k, m)| m.keys().map(move |s| (k.clone(), *s)))
            .collect();
        for (k, s) in keys {
            cache.evict(&k, s);
        }
    }

    /// The decode hook installed, if any.
    pub fn decoder(&self) -> Option<Decoder> {
        lock(&self.decoder).clone()
    }

    /// Registers `sub` under each of its sources, with a new id.
    pub fn register(self: &Arc<Self>, sub: Arc<Compiled>) -> Registration {
        let id = self.next_id.fetch_add(1, Relaxed);
        let mut topics = lock(&self.topics);
        for t in &sub.spec.sources {
            let regs = topics.entry(t.clone()).or_default();
            regs.regs.insert(id, sub.clone());
            regs.built = None;
        }
        Registration {
            shared: self.clone(),
            id,
            sub,
        }
    }

    fn unregister(&self, id: u64, sources: &[String]) {
        let mut topics = lock(&self.topics);
        for t in sources {
            if let Some(regs) = topics.get_mut(t) {
                regs.regs.remove(&id);
                regs.built = None;
                if regs.regs.is_empty() {
                    // No subscription reads it any more: its chunks go now, not when evicted.
                    topics.remove(t);
                    lock(&self.cache).forget_topic(t);
                }
            }
        }
    }

    /// The current rules of `topic` (built again after a registration changed).
    fn rules_of(&self, topic: &str) -> Arc<TopicRules> {
        let mut topics = lock(&self.topics);
        let regs = topics.entry(topic.to_string()).or_default();
        if let Some(b) = &regs.built {
            return b.clone();
        }
        let generation = self.generation.fetch_add(1, Relaxed);
        let it = regs.regs.iter().map(|(id, c)| (*id, c.as_ref()));
        let built = Arc::new(TopicRules::build(generation, it));
        regs.built = Some(built.clone());
        built
    }

    /// The item at offset `at` of `key` when a cached chunk holds it (counted as a cache hit)
    /// and the log still does: not once the topic is another incarnation or its log start has
    /// passed `at` (retention, DeleteRecords), as a read would not find it either.
    pub fn cached_item(&self, broker: &Broker, key: &PartKey, at: u64) -> Option<Decoded> {
        let (topic, id, partition) = key;
        same_incarnation(broker, topic, id).ok()?;
        let (start, _) = broker.offsets_of(topic, i64::from(*partition)).ok()?;
        if at < start {
            return None;
        }
        let c = lock(&self.cache).lookup(key, at)?;
        let item = c.item_at(at).cloned();
        if item.is_some() {
            self.cache_hits.fetch_add(1, Relaxed);
        }
        item
    }

    /// The chunk of `key` holding offset `at`: cached, or read (and cached) now. `None` when
    /// the partition has nothing at `at`, or its read (this worker's or another's) takes longer
    /// than [`FILL_WAIT`] (ask again later: it is cached when done). `UnknownTopic` when `key`'s incarnation is gone.
    pub async fn chunk_at(
        self: &Arc<Self>,
        broker: &Arc<Broker>,
        key: &PartKey,
        at: u64,
    ) -> Result<Option<Arc<Chunk>>, BrokerError> {
        if self.cap == 0 {
            return self.read(broker, key, at).await;
        }
        if let Some(c) = lock(&self.cache).lookup(key, at) {
            self.cache_hits.fetch_add(1, Relaxed);
            return Ok(Some(c));
        }
        let fill = lock(&self.cache)
            .fills
            .entry(key.clone())
            .or_default()
            .clone();
        let Ok(filling) = tokio::time::timeout(FILL_WAIT, fill.lock_owned()).await else {
            return Ok(None);
        };
        if let Some(c) = lock(&self.cache).lookup(key, at) {
            self.cache_hits.fetch_add(1, Relaxed);
            return Ok(Some(c));
        }
        // The fill runs on its own, holding the partition's fill lock until its chunk is cached:
        // a read that takes longer than `FILL_WAIT` (a slow or stuck disk) holds back no worker,
        // not even this one, which finds the chunk cached on a later pass.
        let (me, b, k) = (self.clone(), broker.clone(), key.clone());
        let mut fill = tokio::spawn(async move {
            let _filling = filling;
            let chunk = me.read(&b, &k, at).await?;
            if let Some(c) = chunk.as_ref().filter(|c| c.end > c.start) {
                lock(&me.cache).insert(&k, c.clone(), me.cap);
            }
            Ok(chunk)
        });
        match tokio::time::timeout(FILL_WAIT, &mut fill).await {
            Ok(done) => done.map_err(|e| BrokerError::Storage(format!("read task failed: {e}")))?,
            Err(_) => Ok(None),
        }
    }

    async fn read(
        &self,
        broker: &Arc<Broker>,
        key: &PartKey,
        at: u64,
    ) -> Result<Option<Arc<Chunk>>, BrokerError> {
        let (topic, _, partition) = key;
        let data = read_pinned(broker, key, at, READ_BYTES).await?;
        self.reads.fetch_add(1, Relaxed);
        if data.is_empty() {
            return Ok(None);
        }
        let items = broker.decode_committed(topic, *partition, &data, at)?;
        let end = busbar_broker::last_offset(&data)
            .map_or(at, |o| o + 1)
            .max(at);
        let mut bytes = EVENT_OVERHEAD;
        let mut bad = Vec::new();
        for (j, item) in items.iter().enumerate() {
            bytes += EVENT_OVERHEAD;
            match item {
                Decoded::Event(e) => {
                    self.events_decoded.fetch_add(1, Relaxed);
                    bytes += e.key.as_ref().map_or(0, Vec::len)
                        + e.value.as_ref().map_or(0, Vec::len)
                        + e.headers
                            .iter()
                            .map(|(k, v)| k.len() + v.len())
                            .sum::<usize>();
                }
                Decoded::Undecodable { error, .. } => {
                    bytes += error.len();
                    bad.push(j as u32);
                }
            }
        }
        Ok(Some(Arc::new(Chunk {
            start: at,
            end,
            items,
            bad,
            bytes,
            matches: Mutex::default(),
            match_bytes: AtomicUsize::new(0),
        })))
    }

    /// The items of `chunk` at or past offset `from` that `reg`'s subscription must handle: the
    /// events its pattern matches and every undecodable batch, in offset order.
    pub fn wanted(&self, chunk: &Chunk, topic: &str, reg: &Registration, from: u64) -> Vec<u32> {
        let m = self.matches(chunk, topic, reg);
        let mut out: Vec<u32> = match m.rules.rules.get(&reg.id) {
            Some(Rule::At(i)) => {
                let hits = m.by_rule.get(i).map_or(&[][..], Vec::as_slice);
                let mut v: Vec<u32> = hits.iter().chain(&chunk.bad).copied().collect();
                v.sort_unstable();
                v
            }
            Some(Rule::All) | None => (0..chunk.items.len() as u32).collect(),
        };
        out.retain(|j| chunk.last_of(*j) >= from);
        out
    }

    /// The match result of `chunk` that holds `reg`'s pattern: kept from an earlier evaluation
    /// that included it, else evaluated now with the topic's current rules.
    fn matches(&self, chunk: &Chunk, topic: &str, reg: &Registration) -> Arc<Matches> {
        let mut slot = lock(&chunk.matches);
        if let Some(m) = slot
            .as_ref()
            .filter(|m| m.rules.rules.contains_key(&reg.id))
        {
            return m.clone();
        }
        let m = Arc::new(if self.cap == 0 {
            self.evaluate_alone(chunk, reg)
        } else {
            self.evaluate(chunk, self.rules_of(topic))
        });
        if !m.rules.rules.contains_key(&reg.id) {
            // Not registered under this topic (never so: a worker registers all its sources).
            return Arc::new(self.evaluate_alone(chunk, reg));
        }
        // Kept for the workers after this one unless a newer generation's result is there.
        if slot
            .as_ref()
            .is_none_or(|old| old.rules.generation <= m.rules.generation)
        {
            *slot = Some(m.clone());
            if self.cap > 0 {
                // Lock order: a chunk's `matches`, then the cache.
                lock(&self.cache).count_matches(chunk, m.bytes(), self.cap);
            }
        }
        m
    }

    /// Every event of `chunk` parsed once and matched against all of `rules` at once.
    fn evaluate(&self, chunk: &Chunk, rules: Arc<TopicRules>) -> Matches {
        let mut by_rule: HashMap<u32, Vec<u32>> = HashMap::new();
        if !rules.set.is_empty() {
            let decoder = self.decoder();
            for (j, item) in chunk.items.iter().enumerate() {
                let Decoded::Event(e) = item else { continue };
                let doc = Envelope::document_with(e, decoder.as_ref());
                self.documents_parsed.fetch_add(1, Relaxed);
                for i in rules.set.matching(&doc) {
                    by_rule.entry(*i).or_default().push(j as u32);
                }
            }
        }
        Matches { rules, by_rule }
    }

    /// Sharing off: `reg`'s pattern alone, as each subscription matched before sharing.
    fn evaluate_alone(&self, chunk: &Chunk, reg: &Registration) -> Matches {
        let rule = if reg.sub.pattern.is_some() {
            Rule::At(0)
        } else {
            Rule::All
        };
        let mut hits = Vec::new();
        if rule != Rule::All {
            let decoder = self.decoder();
            for (j, item) in chunk.items.iter().enumerate() {
                let Decoded::Event(e) = item else { continue };
                self.documents_parsed.fetch_add(1, Relaxed);
                if request::matches(&reg.sub, e, decoder.as_ref()) {
                    hits.push(j as u32);
                }
            }
        }
        let rules = Arc::new(TopicRules {
            generation: 0,
            set: RuleSet::new(),
            rules: HashMap::from([(reg.id, rule)]),
        });
        Matches {
            rules,
            by_rule: HashMap::from([(0, hits)]),
        }
    }
}

/// `UnknownTopic` unless `topic` is the incarnation `id` (after anything read of it by name, this
/// says the read was of that incarnation: ids are never reused).
/// Whether item `d` holds offset `o` (an event at it, or an undecodable batch spanning it).
pub(crate) fn holds(d: &Decoded, o: u64) -> bool {
    match d {
        Decoded::Event(e) => e.offset == o,
        Decoded::Undecodable { first, last, .. } => (*first..=*last).contains(&o),
    }
}

pub(crate) fn same_incarnation(broker: &Broker, topic: &str, id: &str) -> Result<(), BrokerError> {
    if broker.describe_topic(topic)?.id != id {
        return Err(BrokerError::UnknownTopic(topic.to_string()));
    }
    Ok(())
}

/// Stored batches of `key`'s partition from `at` (up to `max` bytes, at least one batch), read on
/// the blocking pool, from the incarnation `key` names only: `UnknownTopic` when the topic is
/// gone or is another incarnation (another id) before or after the read.
pub(crate) async fn read_pinned(
    broker: &Arc<Broker>,
    key: &PartKey,
    at: u64,
    max: usize,
) -> Result<Vec<u8>, BrokerError> {
    let (broker, key) = (broker.clone(), key.clone());
    tokio::task::spawn_blocking(move || {
        let (topic, id, partition) = &key;
        same_incarnation(&broker, topic, id)?;
        let data = broker.read_now(topic, *partition as i64, at, max)?;
        same_incarnation(&broker, topic, id)?;
        Ok(data)
    })
    .await
    .map_err(|e| BrokerError::Storage(format!("read task failed: {e}")))?
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::SubscriptionSpec;

    fn compiled(name: &str, pattern: serde_json::Value) -> Arc<Compiled> {
        let spec: SubscriptionSpec = serde_json::from_value(serde_json::json!({
            "name": name, "sources": ["t"], "pattern": pattern,
            "target": {"topic": "out"},
        }))
        .unwrap();
        Arc::new(spec.compile().unwrap())
    }

    #[test]
    fn rules_are_rebuilt_with_a_new_generation_when_registrations_change() {
        let shared = Shared::new(1 << 20);
        let a = shared.register(compiled("a", serde_json::json!({"type": ["x"]})));
        let g1 = shared.rules_of("t");
        assert!(Arc::ptr_eq(&g1, &shared.rules_of("t")), "built once");
        let b = shared.register(compiled("b", serde_json::json!({"type": ["y"]})));
        let g2 = shared.rules_of("t");
        assert!(g2.generation > g1.generation);
        assert_eq!(g2.rules.len(), 2);
        drop(a);
        let g3 = shared.rules_of("t");
        assert!(g3.generation > g2.generation);
        assert_eq!(g3.rules.keys().copied().collect::<Vec<_>>(), vec![b.id]);
        let key: PartKey = ("t".into(), "id".into(), 0);
        let chunk = Arc::new(Chunk {
            start: 0,
            end: 1,
            items: Vec::new(),
            bad: Vec::new(),
            bytes: 10,
            matches: Mutex::default(),
            match_bytes: AtomicUsize::new(0),
        });
        lock(&shared.cache).insert(&key, chunk, 100);
        drop(b);
        assert!(lock(&shared.topics).is_empty(), "nothing left registered");
        let cache = lock(&shared.cache);
        assert!(cache.lookup(&key, 0).is_none(), "its chunks are gone");
        assert_eq!(cache.bytes, 0);
    }

    #[test]
    fn the_cache_drops_its_oldest_chunks_past_its_bytes() {
        let chunk = |start: u64| {
            Arc::new(Chunk {
                start,
                end: start + 10,
                items: Vec::new(),
                bad: Vec::new(),
                bytes: 100,
                matches: Mutex::default(),
                match_bytes: AtomicUsize::new(0),
            })
        };
        let key: PartKey = ("t".into(), "id".into(), 0);
        let mut cache = Cache::default();
        for s in [0, 10, 20] {
            cache.insert(&key, chunk(s), 250);
        }
        assert_eq!(cache.bytes, 200);
        assert!(
            cache.lookup(&key, 5).is_none(),
            "the first chunk went first"
        );
        assert_eq!(cache.lookup(&key, 15).map(|c| c.start), Some(10));
        assert_eq!(cache.lookup(&key, 29).map(|c| c.start), Some(20));
        assert!(cache.lookup(&key, 30).is_none());
        let other: PartKey = ("t".into(), "new-id".into(), 0);
        assert!(cache.lookup(&other, 15).is_none(), "another incarnation");
    }

    /// What a chunk keeps is what the cache counts: its match result (per rule, the indexes of
    /// the events it matches) grows with subscriptions x events and must be within the bound.
    #[tokio::test]
    async fn a_chunks_match_result_counts_against_the_cache_bound() {
        use busbar_broker::datadir::MemDataDir;
        use busbar_broker::{BrokerConfig, Event};
        use busbar_log::disk::MemFs;
        let b = Arc::new(
            Broker::open(BrokerConfig {
                data: Some(Arc::new(MemDataDir::new(MemFs::new()))),
                ..Default::default()
            })
            .unwrap(),
        );
        b.create_topic("t", Some(1), Default::default())
            .await
            .unwrap();
        let events: Vec<Event> = (0..5000).map(|_| Event::value("{}")).collect();
        b.publish("t", events).await.unwrap();
        let shared = Shared::new(64 << 20);
        let regs: Vec<Registration> = (0..500)
            .map(|i| {
                shared.register(compiled(
                    &format!("s{i}"),
                    serde_json::json!({"type": ["busbar.event"]}),
                ))
            })
            .collect();
        let id = crate::positions::topic_layout(&b, "t").unwrap().0;
        let key: PartKey = ("t".into(), id, 0);
        let chunk = shared.chunk_at(&b, &key, 0).await.unwrap().unwrap();
        let n = chunk.items.len();
        assert_eq!(shared.wanted(&chunk, "t", &regs[0], 0).len(), n);
        let kept: usize = lock(&chunk.matches)
            .as_ref()
            .unwrap()
            .by_rule
            .values()
            .map(|v| v.len() * 4)
            .sum();
        let counted = lock(&shared.cache).bytes;
        assert!(
            kept <= counted,
            "{n} events: match result {kept} bytes, the cache counts {counted}"
        );
    }

    fn mem_broker(data: Arc<dyn busbar_broker::datadir::DataDir>) -> Arc<Broker> {
        let config = busbar_broker::BrokerConfig {
            data: Some(data),
            ..Default::default()
        };
        Arc::new(Broker::open(config).unwrap())
    }

    fn values(chunk: &Chunk) -> Vec<String> {
        (chunk.items.iter())
            .map(|d| match d {
                Decoded::Event(e) => {
                    String::from_utf8_lossy(e.value.as_deref().unwrap_or_default()).into_owned()
                }
                Decoded::Undecodable { .. } => "undecodable".into(),
            })
            .collect()
    }

    /// Suspected S1: a topic deleted and created again within a worker's sources-check interval.
    /// The cache key has the topic id, so the new incarnation's workers never see the old
    /// chunks; but the read itself went by name, so a lagging worker of the old incarnation read
    /// the new topic's events (and cached them under the old id) as if they were the old ones.
    #[tokio::test]
    async fn a_read_never_crosses_topic_incarnations() {
        use busbar_broker::datadir::MemDataDir;
        use busbar_broker::Event;
        use busbar_log::disk::MemFs;
        let b = mem_broker(Arc::new(MemDataDir::new(MemFs::new())));
        let publish = |vals: &'static [&'static str]| {
            let b = b.clone();
            async move {
                let evs = vals.iter().map(|v| Event::value(*v)).collect();
                b.publish("t", evs).await.unwrap();
            }
        };
        b.create_topic("t", Some(1), Default::default())
            .await
            .unwrap();
        publish(&["old0", "old1"]).await;
        let shared = Shared::new(64 << 20);
        let _reg = shared.register(compiled("a", serde_json::json!(null)));
        let old_id = crate::positions::topic_layout(&b, "t").unwrap().0;
        let old: PartKey = ("t".into(), old_id, 0);
        let first = shared.chunk_at(&b, &old, 0).await.unwrap().unwrap();
        assert_eq!(values(&first), ["old0", "old1"]);
        b.delete_topic("t").await.unwrap();
        b.create_topic("t", Some(1), Default::default())
            .await
            .unwrap();
        publish(&["new0", "new1", "new2", "new3"]).await;
        let new_id = crate::positions::topic_layout(&b, "t").unwrap().0;
        let new: PartKey = ("t".into(), new_id, 0);
        let fresh = shared.chunk_at(&b, &new, 0).await.unwrap().unwrap();
        assert_eq!(
            values(&fresh),
            ["new0", "new1", "new2", "new3"],
            "no old chunk"
        );
        // The old incarnation's worker, past its cached chunk: nothing of the new topic.
        match shared.chunk_at(&b, &old, 2).await {
            Err(BrokerError::UnknownTopic(t)) => assert_eq!(t, "t"),
            Ok(c) => panic!("read {:?} for the old incarnation", c.map(|c| values(&c))),
            Err(e) => panic!("{e}"),
        }
        assert!(
            lock(&shared.cache).lookup(&old, 2).is_none(),
            "nothing cached"
        );
        let off = Shared::new(0);
        let _r = off.register(compiled("b", serde_json::json!(null)));
        assert!(matches!(
            off.chunk_at(&b, &old, 0).await,
            Err(BrokerError::UnknownTopic(_))
        ));
    }

    /// A data directory whose partition reads take `delay` while `slow` is set (a slow disk).
    struct SlowDir {
        mem: busbar_broker::datadir::MemDataDir,
        slow: Arc<std::sync::atomic::AtomicBool>,
    }

    struct SlowStorage(
        Arc<dyn busbar_log::disk::Storage>,
        Arc<std::sync::atomic::AtomicBool>,
    );

    struct SlowFile(
        Arc<dyn busbar_log::disk::File>,
        Arc<std::sync::atomic::AtomicBool>,
    );

    const DELAY: std::time::Duration = std::time::Duration::from_millis(1500);

    impl busbar_log::disk::File for SlowFile {
        fn read_at(&self, pos: u64, buf: &mut [u8]) -> std::io::Result<usize> {
            if self.1.load(Relaxed) {
                std::thread::sleep(DELAY);
            }
            self.0.read_at(pos, buf)
        }
        fn append(&self, data: &[u8]) -> std::io::Result<()> {
            self.0.append(data)
        }
        fn len(&self) -> u64 {
            self.0.len()
        }
        fn sync(&self) -> std::io::Result<()> {
            self.0.sync()
        }
        fn truncate(&self, len: u64) -> std::io::Result<()> {
            self.0.truncate(len)
        }
    }

    impl busbar_log::disk::Storage for SlowStorage {
        fn open(&self, name: &str) -> std::io::Result<Arc<dyn busbar_log::disk::File>> {
            Ok(Arc::new(SlowFile(self.0.open(name)?, self.1.clone())))
        }
        fn create(&self, name: &str) -> std::io::Result<Arc<dyn busbar_log::disk::File>> {
            Ok(Arc::new(SlowFile(self.0.create(name)?, self.1.clone())))
        }
        fn list(&self) -> std::io::Result<Vec<String>> {
            self.0.list()
        }
        fn remove(&self, name: &str) -> std::io::Result<()> {
            self.0.remove(name)
        }
        fn rename(&self, from: &str, to: &str) -> std::io::Result<()> {
            self.0.rename(from, to)
        }
        fn sync_dir(&self) -> std::io::Result<()> {
            self.0.sync_dir()
        }
        fn describe(&self, name: &str) -> String {
            self.0.describe(name)
        }
    }

    impl busbar_broker::datadir::DataDir for SlowDir {
        fn storage(&self, rel: &str) -> std::io::Result<Arc<dyn busbar_log::disk::Storage>> {
            let inner = self.mem.storage(rel)?;
            if !rel.starts_with("topics") {
                return Ok(inner);
            }
            Ok(Arc::new(SlowStorage(inner, self.slow.clone())))
        }
        fn subdirs(&self, rel: &str) -> std::io::Result<Vec<String>> {
            self.mem.subdirs(rel)
        }
        fn remove_dir(&self, rel: &str) -> std::io::Result<()> {
            self.mem.remove_dir(rel)
        }
        fn describe(&self, rel: &str) -> String {
            self.mem.describe(rel)
        }
    }

    /// Suspected S3: the fill lock was a std mutex held across a synchronous read of the log,
    /// on the async thread. With one executor thread, a slow read stalled every task (a timer
    /// of 20 ms fired only after the read), and every worker of the partition waited for the
    /// whole read. Now the read runs on the blocking pool in a fill task, and each worker (the
    /// one that started it too) waits at most `FILL_WAIT`, finding the chunk cached later.
    #[tokio::test(flavor = "current_thread")]
    async fn a_slow_read_blocks_neither_the_executor_nor_the_other_readers() {
        use busbar_broker::Event;
        use std::time::Instant;
        let slow = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let dir = SlowDir {
            mem: busbar_broker::datadir::MemDataDir::new(busbar_log::disk::MemFs::new()),
            slow: slow.clone(),
        };
        let b = mem_broker(Arc::new(dir));
        b.create_topic("t", Some(1), Default::default())
            .await
            .unwrap();
        b.publish("t", vec![Event::value("a"), Event::value("b")])
            .await
            .unwrap();
        let shared = Shared::new(64 << 20);
        let _reg = shared.register(compiled("a", serde_json::json!(null)));
        let key: PartKey = (
            "t".into(),
            crate::positions::topic_layout(&b, "t").unwrap().0,
            0,
        );
        slow.store(true, Relaxed);
        let started = Instant::now();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            started.elapsed()
        });
        let first = shared.chunk_at(&b, &key, 0).await;
        assert!(matches!(first, Ok(None)), "still reading: ask again later");
        let second = shared.chunk_at(&b, &key, 0).await;
        let waited = started.elapsed();
        let fired = timer.await.unwrap();
        assert!(fired < DELAY / 2, "a 20 ms timer fired after {fired:?}");
        assert!(waited < DELAY / 2, "the two readers waited {waited:?}");
        assert!(matches!(second, Ok(None)), "nothing yet: ask again later");
        let end = Instant::now() + 4 * DELAY;
        let chunk = loop {
            if let Some(c) = shared.chunk_at(&b, &key, 0).await.unwrap() {
                break c;
            }
            assert!(Instant::now() < end, "the read never landed");
        };
        assert_eq!(values(&chunk), ["a", "b"]);
        assert_eq!(shared.stats().reads, 1, "one read for all");
        slow.store(false, Relaxed);
        let cached = shared.chunk_at(&b, &key, 1).await.unwrap().unwrap();
        assert!(Arc::ptr_eq(&chunk, &cached), "the first read is shared");
    }

    /// Issue 14 item 18: listing (and redriving) dead letters scans the dead-letter topic with
    /// synchronous log reads. On one executor thread a slow read there stalled every task; the
    /// scan runs on the blocking pool, so a 20 ms timer fires while it reads.
    #[tokio::test(flavor = "current_thread")]
    async fn a_slow_dead_letter_scan_does_not_block_the_executor() {
        use busbar_broker::Event;
        use std::time::Instant;
        let slow = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let dir = SlowDir {
            mem: busbar_broker::datadir::MemDataDir::new(busbar_log::disk::MemFs::new()),
            slow: slow.clone(),
        };
        let b = mem_broker(Arc::new(dir));
        for t in ["in", "dlq"] {
            b.create_topic(t, Some(1), Default::default())
                .await
                .unwrap();
        }
        b.publish("dlq", vec![Event::value("a")]).await.unwrap();
        let bus = crate::Bus::open(b.clone()).unwrap();
        // A redrive reads only a subscription's own dead-letter topic.
        let spec = serde_json::json!({"name": "s", "sources": ["in"],
            "target": {"url": "http://127.0.0.1:9/"}, "dead_letter_topic": "dlq"});
        bus.create(crate::spec::from_json(&spec).unwrap())
            .await
            .unwrap();
        slow.store(true, Relaxed);
        let started = Instant::now();
        let timer = tokio::spawn(async move {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            started.elapsed()
        });
        let filter = crate::Filter::default();
        let (listed, redriven) = tokio::join!(
            bus.dead_letters("dlq", &filter, 10),
            bus.redrive("dlq", &filter, 10, false)
        );
        let scanned = started.elapsed();
        slow.store(false, Relaxed);
        let fired = timer.await.unwrap();
        assert!(scanned >= DELAY, "the scans read slowly: {scanned:?}");
        assert!(fired < DELAY / 2, "a 20 ms timer fired after {fired:?}");
        assert!(listed.unwrap().is_empty(), "not a dead letter");
        redriven.unwrap();
    }
}
