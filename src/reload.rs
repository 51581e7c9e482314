//! Run-time changes: configuration reload (SIGHUP, `POST /admin/reload`) and
//! collection settings changed through the admin API (kept in memory, or in
//! `admin.overrides_file` across restarts).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;

use crate::config::{CollectionOverrides, Config, ServerConfig};
use crate::rerank::chain::Chain;
use crate::rerank::Registry;
use crate::state::AppState;

/// Reads the overrides file; a missing file is an empty set.
pub fn read_overrides(path: &Path) -> Result<BTreeMap<String, CollectionOverrides>, String> {
    match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a valid overrides file: {e}", path.display())),
    }
}

/// Writes the overrides file atomically: a temporary file of its own beside it (no
/// two writers share one, in this process or another), then a rename over the old.
fn write_overrides(path: &Path, all: &BTreeMap<String, CollectionOverrides>) -> Result<(), String> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(format!(
        ".{}.{}.tmp",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let tmp = path.with_file_name(name);
    let text = serde_json::to_string_pretty(all).expect("overrides serialize");
    let written = std::fs::write(&tmp, text).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    written.map_err(|e| format!("cannot write {}: {e}", path.display()))
}

impl AppState {
    /// Loads `admin.overrides_file` at startup (an unreadable or invalid file stops
    /// startup: silently dropping stored changes would surprise).
    pub fn restore_overrides(&self) -> Result<(), String> {
        let cfg = self.config();
        let Some(path) = &cfg.admin.overrides_file else {
            return Ok(());
        };
        let all = read_overrides(path)?;
        self.set_overrides(&cfg, all)
    }

    /// Changes one collection's settings at run time (merging into earlier changes
    /// unless `replace`); effective on the next request. Changes are serialized, so
    /// that none is lost between reading the set and writing it back.
    pub fn update_collection(
        &self,
        name: &str,
        change: CollectionOverrides,
        replace: bool,
    ) -> Result<(), String> {
        let _one_at_a_time = self.changing();
        let cfg = self.config();
        let mut all = self.overrides();
        let merged = match (all.remove(name), replace) {
            (Some(old), false) => change.over(old),
            _ => change,
        };
        all.insert(name.to_string(), merged);
        self.set_overrides(&cfg, all.clone())?;
        self.persist(&cfg, &all)
    }

    /// Drops a collection's run-time changes.
    pub fn reset_collection(&self, name: &str) -> Result<bool, String> {
        let _one_at_a_time = self.changing();
        let cfg = self.config();
        let mut all = self.overrides();
        let existed = all.remove(name).is_some();
        self.set_overrides(&cfg, all.clone())?;
        self.persist(&cfg, &all)?;
        Ok(existed)
    }

    fn persist(
        &self,
        cfg: &Config,
        all: &BTreeMap<String, CollectionOverrides>,
    ) -> Result<(), String> {
        match &cfg.admin.overrides_file {
            Some(path) => write_overrides(path, all),
            None => Ok(()),
        }
    }

    /// Re-reads the configuration file, the environment and every secret file. A
    /// valid configuration replaces the old one whole, except the keys that need a
    /// restart (returned, and kept at their values in force); an invalid one, or a
    /// secret that cannot be read, is refused, logged and counted, and nothing of it
    /// is applied.
    pub async fn reload(&self) -> Result<Vec<String>, String> {
        let _one_reload = self.reloading.lock().await;
        let result = self.try_reload().await;
        let label = if result.is_ok() { "ok" } else { "invalid" };
        self.metrics
            .config_reloads
            .with_label_values(&[label])
            .inc();
        match &result {
            Ok(fixed) if fixed.is_empty() => tracing::info!("configuration reloaded"),
            Ok(fixed) => tracing::warn!(
                restart_needed = ?fixed,
                "configuration reloaded; these keys change only on restart"
            ),
            Err(e) => {
                tracing::error!(error = %e, "configuration reload refused; keeping the old one")
            }
        }
        result
    }

    /// Everything that can fail first (loading, validating, reading secrets, building
    /// rerankers and the score cache); then, under the change lock, the swap.
    async fn try_reload(&self) -> Result<Vec<String>, String> {
        let mut new = Config::load(self.config_path.as_deref()).map_err(|e| e.to_string())?;
        let old = self.config();
        let restart_needed = keep_restart_only(&old, &mut new);
        self.check_overrides(&new)?;
        let mut values = BTreeMap::new();
        for (name, value) in crate::secrets::read(&new) {
            values.insert(name, value?);
        }
        let secrets = self.secrets.next(&values);
        let rotated = |name: &str| self.secrets.changed(&secrets, name);
        // A reranker is built again when its settings or its API key changed; the
        // others (a local model above all) are taken over as they are.
        let rebuild: Vec<String> = new
            .rerankers
            .iter()
            .filter(|(name, rc)| {
                old.rerankers.get(*name) != Some(*rc)
                    || rotated(&format!("rerankers.{name}.api_key"))
            })
            .map(|(name, _)| name.clone())
            .collect();
        let cache_changed = new.cache != old.cache || rotated("cache.redis.url");
        let chain = if new.rerankers != old.rerankers || !rebuild.is_empty() || cache_changed {
            let cfg = new.clone();
            let metrics = self.metrics.clone();
            let current = self.engine.chain();
            let registry = tokio::task::spawn_blocking(move || {
                Registry::load_keeping(&cfg, &metrics, &current.registry, |n| {
                    !rebuild.iter().any(|r| r == n)
                })
            })
            .await
            .map_err(|e| format!("reranker loading panicked: {e}"))?
            .map_err(|e| e.to_string())?;
            Some(Chain::new(registry, &new, Arc::clone(&self.metrics)))
        } else {
            None
        };

        let _one_at_a_time = self.changing();
        // A run-time change made meanwhile was validated against the old file.
        self.check_overrides(&new)?;
        if let Some(chain) = chain {
            self.engine.set_chain(chain);
        }
        self.shadow.reconfigure(&new.shadow);
        self.set_admin_token(values.remove("admin.token"));
        self.secrets.set(secrets);
        self.set_config(new);
        Ok(restart_needed)
    }

    /// Run-time changes must still make sense under a new file.
    fn check_overrides(&self, new: &Config) -> Result<(), String> {
        for (name, o) in &self.overrides() {
            new.collection_with(name, o)
                .map_err(|e| format!("runtime change of collection {name}: {e}"))?;
        }
        Ok(())
    }
}

/// The keys read only at startup (listeners, the clients toward Qdrant, logging, the
/// shadow queue and workers) that differ in `new`, put back to their values in
/// force, so that the configuration shown is the one that runs.
fn keep_restart_only(old: &Config, new: &mut Config) -> Vec<String> {
    let mut changed = changed_keys("server", &old.server, &new.server);
    // Read per request: applied.
    changed.retain(|k| k != "server.max_body_bytes");
    new.server = ServerConfig {
        max_body_bytes: new.server.max_body_bytes,
        ..old.server.clone()
    };
    changed.extend(changed_keys("upstream", &old.upstream, &new.upstream));
    new.upstream = old.upstream.clone();
    changed.extend(changed_keys("log", &old.log, &new.log));
    new.log = old.log.clone();
    // The exporter and the span layer are built once, before the listeners.
    changed.extend(changed_keys("tracing", &old.tracing, &new.tracing));
    new.tracing = old.tracing.clone();
    for (key, was, now) in [
        ("shadow.queue", old.shadow.queue, &mut new.shadow.queue),
        (
            "shadow.workers",
            old.shadow.workers,
            &mut new.shadow.workers,
        ),
    ] {
        if was != *now {
            changed.push(key.to_string());
            *now = was;
        }
    }
    changed
}

/// `section.key` for each key whose value differs between `old` and `new`.
fn changed_keys<T: Serialize>(section: &str, old: &T, new: &T) -> Vec<String> {
    let as_map = |v: &T| match serde_json::to_value(v) {
        Ok(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    };
    let (old, new) = (as_map(old), as_map(new));
    let keys: BTreeSet<&String> = old.keys().chain(new.keys()).collect();
    keys.into_iter()
        .filter(|k| old.get(*k) != new.get(*k))
        .map(|k| format!("{section}.{k}"))
        .collect()
}

#[cfg(test)]
#[path = "reload_tests.rs"]
mod tests;
