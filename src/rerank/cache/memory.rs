//! The in-process tier: raw scores by [`Key`], kept for `ttl` and bounded to
//! `max_entries` (least recently used go first). Keys are digests (see [`super::key`]),
//! so no text is kept. The cache is split into shards, each an O(1) LRU list behind
//! its own mutex, so concurrent requests rarely wait on each other.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::key::Key;

/// Where "now" comes from; tests pass a clock they move by hand.
pub type Clock = Arc<dyn Fn() -> Instant + Send + Sync>;

pub struct Memory {
    shards: Vec<Mutex<Lru>>,
    ttl: Duration,
    clock: Clock,
}

/// Shards for a cache of `max_entries` (one for small caches, so the LRU order is
/// exact where it is easy to observe).
fn shard_count(max_entries: usize) -> usize {
    if max_entries < 1024 {
        1
    } else {
        16
    }
}

impl Memory {
    /// `None` when `max_entries` is 0 (the cache is off).
    pub fn new(max_entries: usize, ttl: Duration) -> Option<Memory> {
        Self::with_clock(max_entries, ttl, Arc::new(Instant::now))
    }

    pub fn with_clock(max_entries: usize, ttl: Duration, clock: Clock) -> Option<Memory> {
        if max_entries == 0 {
            return None;
        }
        let shards = shard_count(max_entries);
        let per_shard = max_entries.div_ceil(shards);
        Some(Memory {
            shards: (0..shards)
                .map(|_| Mutex::new(Lru::new(per_shard)))
                .collect(),
            ttl,
            clock,
        })
    }

    fn shard(&self, key: Key) -> &Mutex<Lru> {
        let n = u64::from_le_bytes(key.0[24..].try_into().expect("8 bytes"));
        &self.shards[(n % self.shards.len() as u64) as usize]
    }

    /// The cached score, when present and not expired (a hit refreshes its place in
    /// the LRU order, not its expiry).
    pub fn get(&self, key: Key) -> Option<f32> {
        let now = (self.clock)();
        self.shard(key).lock().expect("cache lock").get(key, now)
    }

    pub fn insert(&self, key: Key, score: f32) {
        let expires = crate::deadline::after((self.clock)(), self.ttl);
        self.shard(key)
            .lock()
            .expect("cache lock")
            .insert(key, score, expires);
    }

    /// Entries held (expired ones included until they are looked up or evicted).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().expect("cache lock").map.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The key is already a digest: its first eight bytes are the hash.
#[derive(Default)]
struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as its bytes in one call (a length prefix first, maybe).
        for chunk in bytes.chunks(8) {
            let mut n = [0u8; 8];
            n[..chunk.len()].copy_from_slice(chunk);
            self.0 = self.0.rotate_left(5) ^ u64::from_le_bytes(n);
        }
    }
}

const NIL: usize = usize::MAX;

struct Node {
    key: Key,
    score: f32,
    expires: Instant,
    prev: usize,
    next: usize,
}

/// A doubly linked list over a slab, most recent at `head`; every operation O(1).
struct Lru {
    map: HashMap<Key, usize, BuildHasherDefault<KeyHasher>>,
    nodes: Vec<Node>,
    free: Vec<usize>,
    head: usize,
    tail: usize,
    capacity: usize,
}

impl Lru {
    fn new(capacity: usize) -> Lru {
        Lru {
            map: HashMap::default(),
            nodes: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            capacity: capacity.max(1),
        }
    }

    fn get(&mut self, key: Key, now: Instant) -> Option<f32> {
        let i = *self.map.get(&key)?;
        if now >= self.nodes[i].expires {
            self.remove(i);
            return None;
        }
        self.unlink(i);
        self.push_front(i);
        Some(self.nodes[i].score)
    }

    fn insert(&mut self, key: Key, score: f32, expires: Instant) {
        if let Some(&i) = self.map.get(&key) {
            self.nodes[i].score = score;
            self.nodes[i].expires = expires;
            self.unlink(i);
            self.push_front(i);
            return;
        }
        if self.map.len() >= self.capacity {
            self.remove(self.tail);
        }
        let node = Node {
            key,
            score,
            expires,
            prev: NIL,
            next: NIL,
        };
        let i = match self.free.pop() {
            Some(i) => {
                self.nodes[i] = node;
                i
            }
            None => {
                self.nodes.push(node);
                self.nodes.len() - 1
            }
        };
        self.map.insert(key, i);
        self.push_front(i);
    }

    fn remove(&mut self, i: usize) {
        self.unlink(i);
        self.map.remove(&self.nodes[i].key);
        self.free.push(i);
    }

    fn unlink(&mut self, i: usize) {
        let (prev, next) = (self.nodes[i].prev, self.nodes[i].next);
        match prev {
            NIL => self.head = next,
            p => self.nodes[p].next = next,
        }
        match next {
            NIL => self.tail = prev,
            n => self.nodes[n].prev = prev,
        }
        self.nodes[i].prev = NIL;
        self.nodes[i].next = NIL;
    }

    fn push_front(&mut self, i: usize) {
        self.nodes[i].prev = NIL;
        self.nodes[i].next = self.head;
        match self.head {
            NIL => self.tail = i,
            h => self.nodes[h].prev = i,
        }
        self.head = i;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A clock the test moves by hand.
    fn manual() -> (Clock, Arc<Mutex<Instant>>) {
        let now = Arc::new(Mutex::new(Instant::now()));
        let n = now.clone();
        (Arc::new(move || *n.lock().unwrap()), now)
    }

    /// A distinct key per name.
    fn key(name: &str) -> Key {
        use super::super::key::{Identity, Scope};
        let scope = Scope {
            reranker: "local",
            identity: Identity::named("m"),
            max_length: None,
            chunking: None,
            query: "q",
            template: None,
            instruction: None,
        };
        scope.keyer().key(name)
    }

    #[test]
    fn zero_entries_is_off() {
        assert!(Memory::new(0, Duration::from_secs(1)).is_none());
    }

    #[test]
    fn hits_and_misses() {
        let c = Memory::new(10, Duration::from_secs(60)).unwrap();
        let (a, b) = (key("doc a"), key("doc b"));
        assert_ne!(a, b);
        assert_eq!(c.get(a), None);
        c.insert(a, 1.5);
        assert_eq!(c.get(a), Some(1.5));
        assert_eq!(c.get(b), None);
        c.insert(a, 2.5); // an update replaces
        assert_eq!(c.get(a), Some(2.5));
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn entries_expire_after_ttl() {
        let (clock, now) = manual();
        let c = Memory::with_clock(10, Duration::from_millis(100), clock).unwrap();
        let k = key("d");
        c.insert(k, 0.5);
        *now.lock().unwrap() += Duration::from_millis(99);
        assert_eq!(c.get(k), Some(0.5), "a hit does not extend the expiry");
        *now.lock().unwrap() += Duration::from_millis(1);
        assert_eq!(c.get(k), None);
        assert!(c.is_empty(), "an expired entry is dropped when seen");
        c.insert(k, 0.7);
        assert_eq!(c.get(k), Some(0.7));
    }

    #[test]
    fn least_recently_used_goes_first() {
        let c = Memory::new(3, Duration::from_secs(60)).unwrap();
        let k: Vec<Key> = (0..5).map(|i| key(&format!("doc {i}"))).collect();
        for (i, &key) in k.iter().take(3).enumerate() {
            c.insert(key, i as f32);
        }
        assert_eq!(c.get(k[0]), Some(0.0)); // 0 is now the most recent: 1 is oldest
        c.insert(k[3], 3.0);
        assert_eq!(c.get(k[1]), None, "1 was least recently used");
        assert_eq!(c.len(), 3);
        c.insert(k[4], 4.0); // evicts 2
        assert_eq!(c.get(k[2]), None);
        for (i, want) in [(0, 0.0), (3, 3.0), (4, 4.0)] {
            assert_eq!(c.get(k[i]), Some(want));
        }
    }

    #[test]
    fn large_caches_shard_and_stay_bounded() {
        let c = Memory::new(2048, Duration::from_secs(60)).unwrap();
        assert_eq!(c.shards.len(), 16);
        for i in 0..10_000 {
            c.insert(key(&i.to_string()), i as f32);
        }
        assert!(c.len() <= 2048, "{}", c.len());
        assert_eq!(c.get(key("9999")), Some(9999.0));
    }
}
