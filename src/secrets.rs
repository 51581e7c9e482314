//! The secrets secondpass reads from files or the environment (hosted rerankers' API
//! keys, the admin token, the Redis URL), and which generation of each is in force:
//! a counter that goes up when a reload reads a value that differs from the last,
//! and a short fingerprint. The secret itself is never kept here or shown.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::config::Config;

/// One secret as last read (what `GET /admin/status` shows under `secrets`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Generation {
    /// 1 for the value read at startup (or when the secret first appeared), one
    /// more each time a reload read a different value.
    pub generation: u64,
    /// `sha256:` and the first 8 hex digits of the value's SHA-256: enough to tell
    /// which key is live (`printf %s "$KEY" | sha256sum | cut -c1-8`), too short to
    /// tell the key.
    pub fingerprint: String,
    /// When this generation was read (Unix time, seconds).
    pub since_unix_s: u64,
}

/// The SHA-256 prefix of [`Generation::fingerprint`].
pub fn fingerprint(value: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, value.as_bytes());
    let hex: String = digest.as_ref()[..4]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// Every secret `cfg` names, read now: `admin.token`, `rerankers.<name>.api_key`,
/// `cache.redis.url`, each with its value or why it cannot be read (the error names
/// the variable or file, never the value). Unset secrets are absent.
pub fn read(cfg: &Config) -> Vec<(String, Result<String, String>)> {
    let mut out = Vec::new();
    match cfg.admin.token() {
        Ok(Some(t)) => out.push(("admin.token".to_string(), Ok(t))),
        Ok(None) => {}
        Err(e) => out.push(("admin.token".to_string(), Err(e))),
    }
    for (name, rc) in &cfg.rerankers {
        if let Some((_, h)) = rc.hosted() {
            let key = format!("rerankers.{name}.api_key");
            match Config::api_key(h) {
                Ok(Some(k)) => out.push((key, Ok(k))),
                Ok(None) => {}
                Err(e) => out.push((key.clone(), Err(format!("{key}: {e}")))),
            }
        }
    }
    if let Some(r) = &cfg.cache.redis {
        out.push((
            "cache.redis.url".to_string(),
            r.resolve_url().map_err(|e| e.to_string()),
        ));
    }
    out
}

/// The generations in force.
#[derive(Debug, Default)]
pub struct Generations(Mutex<BTreeMap<String, Generation>>);

impl Generations {
    /// Starts from what is readable in `cfg` (what is not is left out: startup
    /// has already refused or reported it).
    pub fn new(cfg: &Config) -> Generations {
        let readable = read(cfg)
            .into_iter()
            .filter_map(|(name, v)| Some((name, v.ok()?)))
            .collect();
        let g = Generations::default();
        g.set(g.next(&readable));
        g
    }

    /// What the secrets `values` (name → value, read now) make of the generations in
    /// force; nothing changes until [`Generations::set`].
    pub fn next(&self, values: &BTreeMap<String, String>) -> BTreeMap<String, Generation> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let current = self.snapshot();
        values
            .iter()
            .map(|(name, value)| {
                let fingerprint = fingerprint(value);
                let g = match current.get(name) {
                    Some(g) if g.fingerprint == fingerprint => g.clone(),
                    old => Generation {
                        generation: old.map_or(1, |g| g.generation + 1),
                        fingerprint,
                        since_unix_s: now,
                    },
                };
                (name.clone(), g)
            })
            .collect()
    }

    /// Whether `name` differs between the generations in force and `next`.
    pub fn changed(&self, next: &BTreeMap<String, Generation>, name: &str) -> bool {
        self.snapshot().get(name) != next.get(name)
    }

    pub fn set(&self, next: BTreeMap<String, Generation>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = next;
    }

    pub fn snapshot(&self) -> BTreeMap<String, Generation> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_value_is_a_new_generation_and_the_same_value_is_not() {
        let g = Generations::default();
        let values = |v: &str| BTreeMap::from([("k".to_string(), v.to_string())]);
        g.set(g.next(&values("one")));
        assert_eq!(g.snapshot()["k"].generation, 1);
        let same = g.next(&values("one"));
        assert!(!g.changed(&same, "k"));
        let other = g.next(&values("two"));
        assert!(g.changed(&other, "k"));
        assert_eq!(other["k"].generation, 2);
        // Nothing is in force until set.
        assert_eq!(g.snapshot()["k"].generation, 1);
        g.set(other);
        assert_eq!(g.snapshot()["k"].fingerprint, fingerprint("two"));
    }

    #[test]
    fn the_fingerprint_is_short_and_not_the_secret() {
        let f = fingerprint("sk-live-0123456789abcdef");
        assert_eq!(f.len(), "sha256:".len() + 8);
        assert!(!f.contains("0123456789"));
        // The documented shell check: printf %s abc | sha256sum
        assert_eq!(fingerprint("abc"), "sha256:ba7816bf");
    }
}
