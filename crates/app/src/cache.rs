//! Streams recently decided on, kept folded in memory with their version, so that a command
//! does not load and fold its stream again.
//!
//! A cached state is only ever a guess: the append checks the version it was decided on
//! (and, for the streams a decision only read, that they are still at the version read), so
//! a state gone stale because another process appended fails the append, is dropped here,
//! and the command is decided again on fresh state. What a command reports without
//! appending (a refusal, "nothing changed") is always decided on fresh state.
//!
//! Bounded by entries and by an estimate of bytes: two generations, a young one that takes
//! every insert and hit, and an old one that is dropped whole when the young one is full
//! (an approximation of least-recently-used without per-hit bookkeeping).

use std::{
    any::Any,
    collections::HashMap,
    sync::{Arc, Mutex},
};

use kefu_domain::Aggregate;
use uuid::Uuid;

/// A stream folded at a version.
#[derive(Debug)]
pub struct Loaded<A> {
    /// The state after the stream's events.
    pub state: Arc<A>,
    /// The stream's version (0: no events).
    pub version: i64,
    /// Global position of its last event.
    pub position: Option<i64>,
    /// Estimated size in memory.
    pub(crate) bytes: usize,
}

impl<A> Clone for Loaded<A> {
    fn clone(&self) -> Self {
        Loaded { state: self.state.clone(), version: self.version, position: self.position, bytes: self.bytes }
    }
}

struct Entry {
    stream_type: &'static str,
    version: i64,
    position: Option<i64>,
    bytes: usize,
    state: Arc<dyn Any + Send + Sync>,
}

#[derive(Default)]
struct Generations {
    young: HashMap<Uuid, Entry>,
    young_bytes: usize,
    old: HashMap<Uuid, Entry>,
}

/// The cache. Cheap to share behind an `Arc`.
pub struct StreamCache {
    inner: Mutex<Generations>,
    max_entries: usize,
    max_bytes: usize,
}

impl std::fmt::Debug for StreamCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamCache")
            .field("max_entries", &self.max_entries)
            .field("max_bytes", &self.max_bytes)
            .finish()
    }
}

impl StreamCache {
    /// At most about `max_entries` streams and `max_bytes` of state (0 disables the cache).
    pub fn new(max_entries: usize, max_bytes: usize) -> Self {
        StreamCache { inner: Mutex::new(Generations::default()), max_entries, max_bytes }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Generations> {
        self.inner.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The cached state of a stream of type `A`, if any.
    pub fn get<A: Aggregate>(&self, stream_id: Uuid) -> Option<Loaded<A>> {
        let mut g = self.lock();
        if !g.young.contains_key(&stream_id) {
            let e = g.old.remove(&stream_id)?;
            g.young_bytes += e.bytes;
            g.young.insert(stream_id, e);
        }
        let entry = g.young.get(&stream_id)?;
        if entry.stream_type != A::STREAM_TYPE {
            return None;
        }
        let state = entry.state.clone().downcast::<A>().ok()?;
        let loaded = Loaded { state, version: entry.version, position: entry.position, bytes: entry.bytes };
        drop(g);
        self.rotate_if_full();
        Some(loaded)
    }

    /// Takes a stream's state out of the cache (to change it in place; put it back after).
    pub fn take<A: Aggregate>(&self, stream_id: Uuid) -> Option<Loaded<A>> {
        let hit = self.get::<A>(stream_id)?;
        self.remove(stream_id);
        Some(hit)
    }

    /// Keeps a stream's state.
    pub fn put<A: Aggregate>(&self, stream_id: Uuid, loaded: &Loaded<A>) {
        if self.max_entries == 0 || loaded.bytes > self.max_bytes / 4 {
            self.remove(stream_id);
            return;
        }
        let entry = Entry {
            stream_type: A::STREAM_TYPE,
            version: loaded.version,
            position: loaded.position,
            bytes: loaded.bytes,
            state: loaded.state.clone(),
        };
        {
            let mut g = self.lock();
            g.old.remove(&stream_id);
            g.young_bytes += entry.bytes;
            if let Some(previous) = g.young.insert(stream_id, entry) {
                g.young_bytes -= previous.bytes;
            }
        }
        self.rotate_if_full();
    }

    /// Forgets a stream (another writer moved it on).
    pub fn remove(&self, stream_id: Uuid) {
        let mut g = self.lock();
        if let Some(e) = g.young.remove(&stream_id) {
            g.young_bytes -= e.bytes;
        }
        g.old.remove(&stream_id);
    }

    /// Streams held.
    pub fn len(&self) -> usize {
        let g = self.lock();
        g.young.len() + g.old.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn rotate_if_full(&self) {
        let mut g = self.lock();
        if g.young.len() > self.max_entries / 2 || g.young_bytes > self.max_bytes / 2 {
            let young = std::mem::take(&mut g.young);
            g.old = young;
            g.young_bytes = 0;
        }
    }
}

/// A rough size in memory of a JSON value: what a folded state built from it may hold.
pub(crate) fn json_weight(v: &serde_json::Value) -> usize {
    use serde_json::Value;
    match v {
        Value::String(s) => 24 + s.len(),
        Value::Array(a) => 24 + a.iter().map(json_weight).sum::<usize>(),
        Value::Object(m) => 48 + m.iter().map(|(k, v)| 24 + k.len() + json_weight(v)).sum::<usize>(),
        _ => 16,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kefu_domain::{customer::Customer, interaction::Interaction};

    fn loaded<A: Aggregate>(version: i64, bytes: usize) -> Loaded<A> {
        Loaded { state: Arc::new(A::default()), version, position: Some(version), bytes }
    }

    #[test]
    fn a_state_is_found_by_stream_and_type() {
        let cache = StreamCache::new(100, 1 << 20);
        let id = Uuid::from_u128(1);
        cache.put::<Customer>(id, &loaded(3, 100));
        assert_eq!(cache.get::<Customer>(id).map(|l| l.version), Some(3));
        assert!(cache.get::<Interaction>(id).is_none(), "another stream type is a miss");
        cache.remove(id);
        assert!(cache.get::<Customer>(id).is_none());
    }

    #[test]
    fn entries_and_bytes_are_bounded_and_recent_ones_survive() {
        let cache = StreamCache::new(100, 1 << 20);
        let hot = Uuid::from_u128(0);
        cache.put::<Customer>(hot, &loaded(1, 10));
        for i in 1..1000u128 {
            cache.put::<Customer>(Uuid::from_u128(i), &loaded(1, 10));
            assert!(cache.get::<Customer>(hot).is_some(), "a stream in use is kept");
            assert!(cache.len() <= 102, "{} entries", cache.len());
        }
        let small = StreamCache::new(1_000_000, 10_000);
        for i in 0..1000u128 {
            small.put::<Customer>(Uuid::from_u128(i), &loaded(1, 1000));
        }
        assert!(small.len() <= 12, "{} entries of 1000 bytes in a 10,000-byte cache", small.len());
        small.put::<Customer>(Uuid::from_u128(5000), &loaded(1, 5000));
        assert!(small.get::<Customer>(Uuid::from_u128(5000)).is_none(), "a state too big for the cache is not kept");
    }
}
