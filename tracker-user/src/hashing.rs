//! The hasher of the daemon's in-memory tables.
//!
//! Every hashed table is keyed by what the network chose: flow 5-tuples and socket addresses
//! (clients pick ports, a spoofer picks addresses), `MsvAvTimestamp` values (the server, or
//! whoever forges a Type-2), token digests. A remote party that can predict the hash can
//! make a table degrade to lists, so all of them use a keyed hash: aHash with keys drawn
//! from the OS at start (AES rounds where the CPU has them), a fraction of SipHash's cost on
//! a 40-byte flow key. Tables keyed by our own ids (connections, challenges) are B-trees:
//! ordered for oldest-first eviction, not hashed.

use std::{
    collections::{HashMap, HashSet},
    hash::Hash,
};

/// Keyed, randomly seeded per table.
pub type Keyed = ahash::RandomState;

pub type KeyedMap<K, V> = HashMap<K, V, Keyed>;
pub type KeyedSet<K> = HashSet<K, Keyed>;

pub fn map<K, V>() -> KeyedMap<K, V> {
    HashMap::with_hasher(Keyed::new())
}

pub fn set<K>() -> KeyedSet<K> {
    HashSet::with_hasher(Keyed::new())
}

/// An LRU table with the keyed hasher, unbounded: the bound is applied by [`put_bounded`].
pub type KeyedLru<K, V> = lru::LruCache<K, V, Keyed>;

pub fn lru<K: Hash + Eq, V>() -> KeyedLru<K, V> {
    lru::LruCache::unbounded_with_hasher(Keyed::new())
}

/// Puts `value` under `key`; when the key is new and the table holds `cap` entries, the least
/// recently used goes first. Returns whether one was evicted.
pub fn put_bounded<K: Hash + Eq, V>(t: &mut KeyedLru<K, V>, cap: usize, key: K, value: V) -> bool {
    let mut evicted = false;
    if !t.contains(&key) && t.len() >= cap.max(1) {
        evicted = t.pop_lru().is_some();
    }
    t.put(key, value);
    evicted
}
