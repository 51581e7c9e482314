//! The score cache: a reranker's raw score of a document, by everything that changes
//! it ([`key`]). Two tiers: in this process ([`memory`], `[cache] max_entries`) and,
//! optionally, on Redis shared by every replica ([`shared`], `[cache.redis]`). A
//! lookup reads the in-process tier, then asks Redis once for what it lacked; scores
//! computed afterwards go into both.

pub mod key;
pub mod memory;
pub mod shared;

use std::sync::Arc;
use std::time::{Duration, Instant};

pub use key::{file_digest, Fields, Identity, Key, Scope};
use memory::Memory;
use shared::Shared;

use crate::config::CacheConfig;
use crate::metrics::Metrics;

pub struct ScoreCache {
    memory: Option<Memory>,
    shared: Option<Arc<Shared>>,
    metrics: Arc<Metrics>,
}

/// What a lookup found: each document's key, and its score where one was cached.
pub struct Lookup {
    pub keys: Vec<Key>,
    pub scores: Vec<Option<f32>>,
}

impl ScoreCache {
    /// `None` when neither tier is configured.
    pub fn new(cfg: &CacheConfig, metrics: Arc<Metrics>) -> Option<ScoreCache> {
        let memory = Memory::new(cfg.max_entries, Duration::from_millis(cfg.ttl_ms));
        let shared = Shared::new(cfg, metrics.clone());
        if memory.is_none() && shared.is_none() {
            return None;
        }
        Some(ScoreCache {
            memory,
            shared,
            metrics,
        })
    }

    /// The cached scores of `documents` under `scope`. Redis is asked once, for what
    /// the in-process tier lacks, and never past `deadline`.
    pub async fn lookup(
        &self,
        scope: &Scope<'_>,
        documents: &[String],
        deadline: Instant,
    ) -> Lookup {
        let keyer = scope.keyer();
        let keys: Vec<Key> = documents.iter().map(|d| keyer.key(d)).collect();
        let mut scores: Vec<Option<f32>> = vec![None; keys.len()];
        if let Some(m) = &self.memory {
            for (slot, &k) in scores.iter_mut().zip(&keys) {
                *slot = m.get(k);
            }
            let hits = scores.iter().filter(|s| s.is_some()).count();
            self.count("memory", "hit", hits);
            self.count("memory", "miss", keys.len() - hits);
        }
        if let Some(shared) = &self.shared {
            let missing: Vec<usize> = (0..keys.len()).filter(|&i| scores[i].is_none()).collect();
            let asked: Vec<Key> = missing.iter().map(|&i| keys[i]).collect();
            if let Some(found) = shared.get(&asked, deadline).await {
                for (&i, score) in missing.iter().zip(found) {
                    if let (Some(s), Some(m)) = (score, &self.memory) {
                        m.insert(keys[i], s);
                    }
                    scores[i] = score;
                }
            }
        }
        Lookup { keys, scores }
    }

    /// Keeps scores just computed in every tier (Redis in the background).
    pub fn store(&self, entries: Vec<(Key, f32)>) {
        if let Some(m) = &self.memory {
            for &(k, s) in &entries {
                m.insert(k, s);
            }
        }
        if let Some(shared) = &self.shared {
            shared.put(entries);
        }
    }

    fn count(&self, tier: &str, result: &str, n: usize) {
        self.metrics
            .cache_lookups
            .with_label_values(&[tier, result])
            .inc_by(n as u64);
    }
}
