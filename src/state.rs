//! What every request shares: the configuration in force (with run-time changes),
//! the clients toward Qdrant, the rerank engine, metrics and shadow mode. Below the
//! transports and [`crate::app`]; they get it as an `Arc<AppState>`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use crate::config::{CollectionOverrides, CollectionSettings, Config};
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::rerank::{Registry, RerankError};
use crate::upstream::{Protocol, Upstream};

/// Shared by every request. The configuration and the rerankers can be swapped at
/// run time (SIGHUP, admin API); each request works on the snapshot it started with.
pub struct AppState {
    config: RwLock<Arc<Config>>,
    /// The file the configuration came from (reloaded on SIGHUP).
    pub config_path: Option<PathBuf>,
    /// Collection settings changed through the admin API, on top of the file's.
    overrides: RwLock<BTreeMap<String, CollectionOverrides>>,
    /// Held by whoever changes the configuration or the run-time changes (read,
    /// change, validate, write back), so that concurrent changes never overwrite
    /// each other.
    changes: Mutex<()>,
    /// One reload at a time (SIGHUP and `POST /admin/reload` may meet), so that each
    /// prepares against what the one before it put in force.
    pub(crate) reloading: tokio::sync::Mutex<()>,
    pub upstream: Upstream,
    pub grpc_upstream: Upstream,
    pub engine: Engine,
    pub metrics: Arc<Metrics>,
    /// Set once shutdown begins: `/readyz` answers 503.
    pub draining: AtomicBool,
    /// Background reranking of collections in shadow mode.
    pub shadow: crate::shadow::Shadow,
    /// The admin API's token in force (re-read on reload); `None`: no admin API.
    admin_token: RwLock<Option<Arc<str>>>,
    /// Which generation of each secret (API keys, admin token, Redis URL) is live.
    pub secrets: crate::secrets::Generations,
}

impl AppState {
    /// Builds the state with the given rerankers (already loaded).
    pub fn new(config: Config, registry: Registry) -> Result<AppState, crate::error::Error> {
        let metrics = Arc::new(Metrics::new(&config.named_collections()));
        Self::with_metrics(config, registry, metrics)
    }

    /// [`AppState::new`] with metrics the rerankers already report to.
    pub fn with_metrics(
        config: Config,
        registry: Registry,
        metrics: Arc<Metrics>,
    ) -> Result<AppState, crate::error::Error> {
        metrics.model_loaded.set(1);
        Ok(AppState {
            upstream: Upstream::new(&config.upstream, Protocol::Rest, metrics.clone())?,
            grpc_upstream: Upstream::new(&config.upstream, Protocol::Grpc, metrics.clone())?,
            engine: Engine::new(
                crate::rerank::chain::Chain::new(registry, &config, metrics.clone()),
                metrics.clone(),
            ),
            shadow: crate::shadow::Shadow::new(&config.shadow, &metrics),
            admin_token: RwLock::new(config.admin.token().ok().flatten().map(Arc::from)),
            secrets: crate::secrets::Generations::new(&config),
            metrics,
            config: RwLock::new(Arc::new(config)),
            config_path: None,
            overrides: RwLock::new(BTreeMap::new()),
            changes: Mutex::new(()),
            reloading: tokio::sync::Mutex::new(()),
            draining: AtomicBool::new(false),
        })
    }

    /// The client toward Qdrant's API of that protocol.
    pub fn upstream_for(&self, protocol: Protocol) -> &Upstream {
        match protocol {
            Protocol::Rest => &self.upstream,
            Protocol::Grpc => &self.grpc_upstream,
        }
    }

    /// The configuration now in force.
    pub fn config(&self) -> Arc<Config> {
        self.config
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// A collection's effective settings: the file's, then runtime changes.
    pub fn collection(&self, name: &str) -> CollectionSettings {
        let cfg = self.config();
        let overrides = self.overrides.read().unwrap_or_else(|e| e.into_inner());
        match overrides.get(name) {
            // Validated when set (and again on reload); fall back to the file's if not.
            Some(o) => cfg
                .collection_with(name, o)
                .unwrap_or_else(|_| cfg.collection(name)),
            None => cfg.collection(name),
        }
    }

    /// The admin API's token now; `None`: the admin API is off.
    pub fn admin_token(&self) -> Option<Arc<str>> {
        self.admin_token
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    pub(crate) fn set_admin_token(&self, token: Option<String>) {
        *self.admin_token.write().unwrap_or_else(|e| e.into_inner()) = token.map(Arc::from);
    }

    /// The right to change the configuration or the run-time changes, one change at
    /// a time (a panic in another change leaves nothing half-written: take it anyway).
    pub(crate) fn changing(&self) -> MutexGuard<'_, ()> {
        self.changes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Runtime changes by collection.
    pub fn overrides(&self) -> BTreeMap<String, CollectionOverrides> {
        self.overrides
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Replaces all runtime changes after validating each one against `cfg`.
    pub(crate) fn set_overrides(
        &self,
        cfg: &Config,
        all: BTreeMap<String, CollectionOverrides>,
    ) -> Result<(), String> {
        for (name, o) in &all {
            cfg.collection_with(name, o).map_err(|e| e.to_string())?;
        }
        *self.overrides.write().unwrap_or_else(|e| e.into_inner()) = all;
        self.metrics.set_known(&self.label_names(cfg));
        Ok(())
    }

    /// Collections that may appear as metric labels: the file's and the runtime ones.
    fn label_names(&self, cfg: &Config) -> Vec<String> {
        let mut names = cfg.named_collections();
        names.extend(self.overrides().into_keys());
        names
    }

    /// Swaps in a new configuration (already validated).
    pub(crate) fn set_config(&self, cfg: Config) {
        self.metrics.set_known(&self.label_names(&cfg));
        *self.config.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(cfg);
    }

    /// Loads every configured reranker (blocking work off the runtime) and builds the state.
    pub async fn load(config: Config) -> Result<AppState, crate::error::Error> {
        let cfg = config.clone();
        let metrics = Arc::new(Metrics::new(&config.named_collections()));
        let m = metrics.clone();
        let registry = tokio::task::spawn_blocking(move || Registry::load(&cfg, &m))
            .await
            .map_err(|e| RerankError::Unavailable(format!("model loading panicked: {e}")))??;
        AppState::with_metrics(config, registry, metrics)
    }
}

/// For router, pipeline and server tests: reranking on for `docs`, the `local`
/// reranker never loaded, Qdrant (REST and gRPC) at `qdrant` (`host:port`); `server`
/// adds keys to the `[server]` section.
#[cfg(test)]
pub(crate) fn test_state(qdrant: &str, server: &str) -> Arc<AppState> {
    let cfg = test_config(qdrant, server);
    Arc::new(AppState::new(cfg, Registry::default()).unwrap())
}

/// The configuration of [`test_state`].
#[cfg(test)]
pub(crate) fn test_config(qdrant: &str, server: &str) -> Config {
    Config::from_toml(&format!(
        r#"
[server]
{server}
[upstream]
url = "http://{qdrant}"
grpc_url = "http://{qdrant}"
connect_timeout_ms = 500
timeout_ms = 5000
[rerankers.local]
kind = "onnx"
model_dir = "/unused"
[collections.docs]
enabled = true
"#
    ))
    .unwrap()
}
