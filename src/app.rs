//! Builds the application from a [`Config`] and runs its listeners.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use axum::response::Response;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{CollectionOverrides, CollectionSettings, Config};
use crate::engine::Engine;
use crate::metrics::Metrics;
use crate::rerank::{Registry, RerankError};
use crate::transport::upstream::{Protocol, Upstream};
use crate::transport::{admin, grpc, rest};

/// Shared by every request. The configuration and the rerankers can be swapped at
/// run time (SIGHUP, admin API); each request works on the snapshot it started with.
pub struct AppState {
    config: RwLock<Arc<Config>>,
    /// The file the configuration came from (reloaded on SIGHUP).
    pub config_path: Option<PathBuf>,
    /// Collection settings changed through the admin API, on top of the file's.
    overrides: RwLock<BTreeMap<String, CollectionOverrides>>,
    pub upstream: Upstream,
    pub grpc_upstream: Upstream,
    pub engine: Engine,
    pub metrics: Arc<Metrics>,
    /// Set once shutdown begins: `/readyz` answers 503.
    pub draining: AtomicBool,
    /// Background reranking of collections in shadow mode.
    pub shadow: crate::shadow::Shadow,
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
            metrics,
            config: RwLock::new(Arc::new(config)),
            config_path: None,
            overrides: RwLock::new(BTreeMap::new()),
            draining: AtomicBool::new(false),
        })
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

    /// Counts one finished request.
    pub fn record(
        &self,
        route: &str,
        collection: &str,
        status: &str,
        resp: &Response,
        started: Instant,
    ) {
        let m = &self.metrics;
        let transport = if route.starts_with("grpc_") {
            "grpc"
        } else {
            "rest"
        };
        m.requests
            .with_label_values(&[transport, route, collection, status])
            .inc();
        m.request_duration
            .with_label_values(&[route])
            .observe(started.elapsed().as_secs_f64());
        m.responses
            .with_label_values(&[Metrics::class(resp.status().as_u16())])
            .inc();
    }
}

/// A running server: its bound addresses and a handle to stop it.
pub struct Server {
    pub rest_addr: SocketAddr,
    pub grpc_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub state: Arc<AppState>,
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Server {
    /// Binds both listeners (addresses from the config; port 0 picks a free one) and
    /// starts serving.
    pub async fn start(state: AppState) -> std::io::Result<Server> {
        let state = Arc::new(state);
        let cfg = state.config();
        let rest_listener = TcpListener::bind(cfg.rest_addr()).await?;
        let grpc_listener = TcpListener::bind(cfg.grpc_addr()).await?;
        let admin_listener = TcpListener::bind(cfg.admin_addr()).await?;
        let rest_addr = rest_listener.local_addr()?;
        let grpc_addr = grpc_listener.local_addr()?;
        let admin_addr = admin_listener.local_addr()?;
        let (stop, stopped) = watch::channel(false);
        // The admin listener outlives the traffic listeners, so that probes see
        // `/readyz` answer 503 "draining" while in-flight requests finish.
        let (stop_admin, admin_stopped) = watch::channel(false);
        let grace = Duration::from_millis(cfg.server.shutdown_grace_ms);
        let wait = |mut rx: watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let rest = axum::serve(no_delay(rest_listener), rest::router(state.clone()))
            .with_graceful_shutdown(wait(stopped.clone()));
        let grpc = axum::serve(no_delay(grpc_listener), grpc::router(state.clone()))
            .with_graceful_shutdown(wait(stopped.clone()));
        let admin = axum::serve(no_delay(admin_listener), admin::router(state.clone()))
            .with_graceful_shutdown(wait(admin_stopped));
        let task = tokio::spawn(async move {
            let admin = tokio::spawn(async move {
                if let Err(e) = admin.await {
                    tracing::error!(error = %e, "admin listener failed");
                }
            });
            let traffic = async {
                let (r, g) = tokio::join!(rest, grpc);
                if let Err(e) = r.and(g) {
                    tracing::error!(error = %e, "listener failed");
                }
            };
            tokio::pin!(traffic);
            // Serve until stopped; then give in-flight requests `grace` to finish.
            let stopped_early = tokio::select! {
                _ = &mut traffic => true,
                _ = wait(stopped) => false,
            };
            if !stopped_early && tokio::time::timeout(grace, traffic).await.is_err() {
                tracing::warn!(
                    grace_ms = grace.as_millis() as u64,
                    "grace period over; dropping in-flight requests"
                );
            }
            let _ = stop_admin.send(true);
            let _ = admin.await;
        });
        tracing::info!(%rest_addr, %grpc_addr, %admin_addr, upstream = state.upstream.base(),
            grpc_upstream = state.grpc_upstream.base(), "secondpass listening");
        Ok(Server {
            rest_addr,
            grpc_addr,
            admin_addr,
            state,
            stop,
            task,
        })
    }

    /// Stops accepting, drains in-flight requests within the grace period, and returns.
    pub async fn shutdown(self) {
        self.state.draining.store(true, Ordering::Relaxed);
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// A listener whose accepted sockets have `TCP_NODELAY` set. Without it, an answer
/// forwarded in several writes (Qdrant's compressed bodies, gRPC trailers) waits for
/// the client's delayed ACK under Nagle's algorithm: about 40 ms on every call.
fn no_delay(
    listener: TcpListener,
) -> impl axum::serve::Listener<Io = tokio::net::TcpStream, Addr = SocketAddr> {
    use axum::serve::ListenerExt;
    listener.tap_io(|tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY on an accepted socket");
        }
    })
}

/// Reloads the configuration on every SIGHUP (a no-op where there are no signals).
pub fn reload_on_sighup(state: Arc<AppState>) {
    #[cfg(unix)]
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            tracing::warn!("cannot listen for SIGHUP; reload through POST /admin/reload");
            return;
        };
        while hup.recv().await.is_some() {
            tracing::info!("SIGHUP: reloading the configuration");
            let _ = state.reload().await;
        }
    });
    #[cfg(not(unix))]
    let _ = state;
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
}
