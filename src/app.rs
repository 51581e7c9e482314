//! The top of the house: starts the listeners (REST, gRPC, admin) on an [`AppState`],
//! reloads on SIGHUP and shuts down gracefully. Nothing else imports this module.

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::state::AppState;
use crate::transport::{admin, grpc, rest};

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

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;
    use tokio::time::Instant;

    use super::*;
    use crate::rerank::Registry;

    /// A Qdrant that accepts connections and never answers; counts them.
    async fn stalled_qdrant() -> (SocketAddr, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                count.fetch_add(1, Ordering::SeqCst);
                held.push(socket);
            }
        });
        (addr, accepted)
    }

    async fn poll(deadline: Duration, done: impl Fn() -> bool) {
        let end = Instant::now() + deadline;
        while !done() && Instant::now() < end {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    #[tokio::test]
    async fn a_client_that_goes_away_is_counted_as_cancelled() {
        let (qdrant, accepted) = stalled_qdrant().await;
        let ports = "rest_listen = \"127.0.0.1:0\"\n\
                     grpc_listen = \"127.0.0.1:0\"\n\
                     admin_listen = \"127.0.0.1:0\"";
        let cfg = crate::state::test_config(&qdrant.to_string(), ports);
        let state = AppState::new(cfg, Registry::default()).unwrap();
        let server = Server::start(state).await.unwrap();
        let body = r#"{"vector":[1],"limit":1,"rerank":{"query":"q"}}"#;
        let mut client = tokio::net::TcpStream::connect(server.rest_addr)
            .await
            .unwrap();
        let head = format!(
            "POST /collections/docs/points/search HTTP/1.1\r\nhost: x\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        );
        client.write_all(head.as_bytes()).await.unwrap();
        // The search is on its way to Qdrant (which never answers): hang up.
        poll(Duration::from_secs(3), || {
            accepted.load(Ordering::SeqCst) > 0
        })
        .await;
        assert!(
            accepted.load(Ordering::SeqCst) > 0,
            "the search reached Qdrant"
        );
        drop(client);
        let m = &server.state.metrics;
        let counted = || {
            m.requests
                .with_label_values(&["rest", "search", "docs", "cancelled"])
                .get()
        };
        // Before the upstream timeout (5 s) could end it any other way.
        poll(Duration::from_secs(4), || counted() == 1).await;
        assert_eq!(counted(), 1, "{}", m.render());
        server.shutdown().await;
    }
}
