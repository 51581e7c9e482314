//! The real Qdrant server for tests: the one `QDRANT_URL` / `QDRANT_GRPC_URL` name
//! (`scripts/test` starts one and exports them; point them at another server, e.g.
//! Qdrant 1.19, to run the suite against it), else a Qdrant 1.18.3 started here from
//! `scripts/qdrant path` (`../shared/qdrant/bin`) on free loopback ports with
//! throw-away storage, stopped when the handle drops.
//!
//! Only when no binary exists at all (no `../shared`) does [`RealQdrant::start`] give
//! `None`, so that a test can say it was skipped; under `CI=true` that is a panic.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A real Qdrant: either named by the environment or a process owned by this handle.
pub struct RealQdrant {
    /// REST base URL, no trailing slash
    pub url: String,
    /// gRPC URL, no trailing slash
    pub grpc_url: String,
    owned: Option<Owned>,
}

struct Owned {
    /// the wrapper shell; closing its stdin makes it SIGTERM Qdrant (see [`spawn`])
    wrapper: Child,
    stdin: Option<ChildStdin>,
    dir: PathBuf,
}

/// Where the binary comes from, or why there is none.
fn binary() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("SECONDPASS_QDRANT_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/qdrant");
    let out = Command::new("bash")
        .arg(&script)
        .arg("path")
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        if stderr.contains("no Qdrant binary") {
            return Err(stderr.trim().to_string());
        }
        panic!("`scripts/qdrant path` failed: {}", stderr.trim());
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free loopback port")
        .port()
}

fn env_url(name: &str) -> Option<String> {
    std::env::var(name)
        .ok()
        .filter(|u| !u.is_empty())
        .map(|u| u.trim_end_matches('/').to_string())
}

impl RealQdrant {
    /// The server named by `QDRANT_URL` (and `QDRANT_GRPC_URL`), else a fresh one.
    /// `None` only when no binary exists (the caller prints SKIPPED); panics under CI.
    pub async fn start() -> Option<RealQdrant> {
        if let Some(url) = env_url("QDRANT_URL") {
            let grpc_url = env_url("QDRANT_GRPC_URL")
                .expect("QDRANT_URL is set without QDRANT_GRPC_URL: set both (or neither)");
            return Some(RealQdrant {
                url,
                grpc_url,
                owned: None,
            });
        }
        let bin = match binary() {
            Ok(bin) => bin,
            Err(why) => {
                if std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false") {
                    panic!("a real Qdrant is required under CI: {why}");
                }
                eprintln!("no real Qdrant: {why}");
                return None;
            }
        };
        Some(Self::spawn(&bin).await)
    }

    /// Like [`RealQdrant::start`], printing `SKIPPED <test>: ...` when it gives `None`.
    pub async fn for_test(test: &str) -> Option<RealQdrant> {
        let q = Self::start().await;
        if q.is_none() {
            eprintln!(
                "SKIPPED {test}: no real Qdrant binary (../shared/qdrant/bin) and no QDRANT_URL"
            );
        }
        q
    }

    /// Whether this handle started (and will stop) the server.
    pub fn is_owned(&self) -> bool {
        self.owned.is_some()
    }

    async fn spawn(bin: &Path) -> RealQdrant {
        static N: AtomicUsize = AtomicUsize::new(0);
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let dir = std::env::temp_dir().join(format!(
                "secondpass-it-qdrant-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).expect("temp dir for Qdrant");
            let (http, grpc) = (free_port(), free_port());
            // The wrapper runs Qdrant in the background and SIGTERMs it when its stdin
            // closes: on drop, and also when this test process dies without unwinding.
            let mut wrapper = Command::new("bash")
                .arg("-c")
                .arg(
                    r#"exec 3<&0; "$0" >qdrant.log 2>&1 & pid=$!
                       (read -r _ <&3; kill -TERM $pid 2>/dev/null) & wait $pid"#,
                )
                .arg(bin)
                .current_dir(&dir)
                .env("QDRANT__SERVICE__HOST", "127.0.0.1")
                .env("QDRANT__SERVICE__HTTP_PORT", http.to_string())
                .env("QDRANT__SERVICE__GRPC_PORT", grpc.to_string())
                .env("QDRANT__STORAGE__STORAGE_PATH", dir.join("storage"))
                .env("QDRANT__STORAGE__SNAPSHOTS_PATH", dir.join("snapshots"))
                .env("QDRANT__TELEMETRY_DISABLED", "true")
                .env("QDRANT__LOG_LEVEL", "WARN")
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start the Qdrant wrapper (bash)");
            let stdin = wrapper.stdin.take();
            let owned = Owned {
                wrapper,
                stdin,
                dir: dir.clone(),
            };
            let mut q = RealQdrant {
                url: format!("http://127.0.0.1:{http}"),
                grpc_url: format!("http://127.0.0.1:{grpc}"),
                owned: Some(owned),
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                if ready(http) {
                    return q;
                }
                let o = q.owned.as_mut().unwrap();
                if o.wrapper.try_wait().ok().flatten().is_some() {
                    break; // exited: a port taken in between, most likely
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            last_log = std::fs::read_to_string(dir.join("qdrant.log")).unwrap_or_default();
            drop(q);
        }
        panic!(
            "Qdrant ({}) did not become ready; its log:\n{last_log}",
            bin.display()
        );
    }
}

/// `GET /readyz` answers 200.
fn ready(port: u16) -> bool {
    let Ok(mut s) =
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200))
    else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(1)));
    if s.write_all(b"GET /readyz HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut head = [0u8; 12];
    s.read_exact(&mut head).is_ok() && head.starts_with(b"HTTP/1.") && &head[9..12] == b"200"
}

impl Drop for RealQdrant {
    fn drop(&mut self) {
        let Some(mut o) = self.owned.take() else {
            return;
        };
        drop(o.stdin.take()); // SIGTERM to Qdrant, which stops cleanly
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if o.wrapper.try_wait().ok().flatten().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = o.wrapper.kill();
        let _ = o.wrapper.wait();
        let _ = std::fs::remove_dir_all(&o.dir);
    }
}
