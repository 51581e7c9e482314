//! Run-time changes: configuration reload (SIGHUP, `POST /admin/reload`) and
//! collection settings changed through the admin API (kept in memory, or in
//! `admin.overrides_file` across restarts).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use crate::config::{CollectionOverrides, Config};
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

    /// Re-reads the configuration file and environment. A valid configuration
    /// replaces the old one whole (rerankers reloaded when their settings changed);
    /// an invalid one is refused, logged and counted, and the old one stays.
    pub async fn reload(&self) -> Result<(), String> {
        let result = self.try_reload().await;
        let label = if result.is_ok() { "ok" } else { "invalid" };
        self.metrics
            .config_reloads
            .with_label_values(&[label])
            .inc();
        match &result {
            Ok(()) => tracing::info!("configuration reloaded"),
            Err(e) => {
                tracing::error!(error = %e, "configuration reload refused; keeping the old one")
            }
        }
        result
    }

    async fn try_reload(&self) -> Result<(), String> {
        let new = Config::load(self.config_path.as_deref()).map_err(|e| e.to_string())?;
        let old = self.config();
        if new.server != old.server || new.upstream != old.upstream || new.log != old.log {
            tracing::warn!(
                "server, upstream and log settings change only on restart; the rest is reloaded"
            );
        }
        // Runtime changes must still make sense under the new file.
        for (name, o) in &self.overrides() {
            new.collection_with(name, o)
                .map_err(|e| format!("runtime change of collection {name}: {e}"))?;
        }
        if new.rerankers != old.rerankers {
            let cfg = new.clone();
            let metrics = self.metrics.clone();
            let registry = tokio::task::spawn_blocking(move || Registry::load(&cfg, &metrics))
                .await
                .map_err(|e| format!("reranker loading panicked: {e}"))?
                .map_err(|e| e.to_string())?;
            self.engine
                .set_chain(Chain::new(registry, &new, Arc::clone(&self.metrics)));
        }
        let fixed = self.shadow.reconfigure(&new.shadow);
        if !fixed.is_empty() {
            tracing::warn!(keys = ?fixed, "these shadow settings change only on restart");
        }
        // Under the change lock: a run-time change made meanwhile was validated
        // against the old file, so check the set again before the new file takes over.
        let _one_at_a_time = self.changing();
        for (name, o) in &self.overrides() {
            new.collection_with(name, o)
                .map_err(|e| format!("runtime change of collection {name}: {e}"))?;
        }
        self.set_config(new);
        Ok(())
    }
}

#[cfg(test)]
#[path = "reload_tests.rs"]
mod tests;
