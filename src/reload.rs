//! Run-time changes: configuration reload (SIGHUP, `POST /admin/reload`) and
//! collection settings changed through the admin API (kept in memory, or in
//! `admin.overrides_file` across restarts).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::app::AppState;
use crate::config::{CollectionOverrides, Config};
use crate::rerank::chain::Chain;
use crate::rerank::Registry;

/// Reads the overrides file; a missing file is an empty set.
pub fn read_overrides(path: &Path) -> Result<BTreeMap<String, CollectionOverrides>, String> {
    match std::fs::read_to_string(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        Ok(text) => serde_json::from_str(&text)
            .map_err(|e| format!("{} is not a valid overrides file: {e}", path.display())),
    }
}

/// Writes the overrides file atomically (temporary file, then rename).
fn write_overrides(path: &Path, all: &BTreeMap<String, CollectionOverrides>) -> Result<(), String> {
    let tmp = path.with_extension("tmp");
    let text = serde_json::to_string_pretty(all).expect("overrides serialize");
    std::fs::write(&tmp, text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
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
    /// unless `replace`); effective on the next request.
    pub fn update_collection(
        &self,
        name: &str,
        change: CollectionOverrides,
        replace: bool,
    ) -> Result<(), String> {
        let cfg = self.config();
        let mut all = self.overrides();
        let merged = match (all.remove(name), replace) {
            (Some(old), false) => merge(old, change),
            _ => change,
        };
        all.insert(name.to_string(), merged);
        self.set_overrides(&cfg, all.clone())?;
        self.persist(&cfg, &all)
    }

    /// Drops a collection's run-time changes.
    pub fn reset_collection(&self, name: &str) -> Result<bool, String> {
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
        self.set_config(new);
        Ok(())
    }
}

/// `change` over `old`, key by key.
fn merge(old: CollectionOverrides, change: CollectionOverrides) -> CollectionOverrides {
    macro_rules! pick {
        ($($f:ident),*) => { CollectionOverrides { $( $f: change.$f.or(old.$f), )* } };
    }
    pick!(
        enabled,
        mode,
        text_field,
        pool,
        max_pool,
        reranker,
        rerankers,
        max_length,
        score_mode,
        score_threshold,
        on_failure,
        timeout_ms,
        cache,
        max_query_bytes,
        text_template,
        long_documents,
        chunk_tokens,
        chunk_overlap,
        max_chunks_per_doc,
        chunk_aggregate,
        hosted_chunks,
        stages,
        allowed_rerankers,
        instruction
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_keeps_earlier_keys() {
        let old = CollectionOverrides {
            enabled: Some(true),
            pool: Some(10),
            ..Default::default()
        };
        let change = CollectionOverrides {
            pool: Some(20),
            ..Default::default()
        };
        let m = merge(old, change);
        assert_eq!((m.enabled, m.pool), (Some(true), Some(20)));
    }

    #[test]
    fn overrides_file_round_trip_and_errors() {
        let dir = std::env::temp_dir().join(format!("sp-ovr-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("overrides.json");
        assert!(read_overrides(&path).unwrap().is_empty());
        let mut all = BTreeMap::new();
        all.insert(
            "docs".to_string(),
            CollectionOverrides {
                enabled: Some(true),
                ..Default::default()
            },
        );
        write_overrides(&path, &all).unwrap();
        assert_eq!(read_overrides(&path).unwrap(), all);
        std::fs::write(&path, "{not json").unwrap();
        assert!(read_overrides(&path)
            .unwrap_err()
            .contains("not a valid overrides file"));
        std::fs::remove_dir_all(dir).unwrap();
    }
}
