//! The real Qdrant server for tests: the one `QDRANT_URL` / `QDRANT_GRPC_URL` name
//! (`scripts/test` starts one and exports them; point them at another server, e.g.
//! Qdrant 1.19, to run the suite against it), else a Qdrant started here from
//! `scripts/qdrant path` (`../shared/qdrant/bin`; 1.18.3, or `SECONDPASS_QDRANT_VERSION`)
//! on free loopback ports with throw-away storage.
//!
//! [`RealQdrant::shared`] is the one every test of a test binary uses (started once,
//! stopped when the binary exits); tests share it through unique collection names
//! ([`RealQdrant::collection`]). [`RealQdrant::own`] starts a private one with extra settings (TLS).
//! No binary at all is a failure, never a skip: the binary ships in `../shared`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
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
    /// the wrapper shell; closing its stdin makes it SIGTERM Qdrant and remove its
    /// folder (see [`RealQdrant::spawn`])
    wrapper: Child,
    stdin: Option<ChildStdin>,
    dir: PathBuf,
}

/// A collection name no other test (of any binary sharing the server) uses:
/// `{base}_{pid}_{n}`.
pub fn unique(base: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{base}_{}_{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Where the binary comes from (`version`: that one from `../shared`, else
/// `SECONDPASS_QDRANT_BIN`, else `SECONDPASS_QDRANT_VERSION`'s, default 1.18.3);
/// panics when there is none.
fn binary(version: Option<&str>) -> PathBuf {
    if let (None, Some(bin)) = (version, std::env::var_os("SECONDPASS_QDRANT_BIN")) {
        return PathBuf::from(bin);
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/qdrant");
    let mut cmd = Command::new("bash");
    cmd.arg(&script);
    if let Some(v) = version {
        cmd.args(["--version", v])
            .env_remove("SECONDPASS_QDRANT_BIN");
    }
    let out = cmd
        .arg("path")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", script.display()));
    assert!(
        out.status.success(),
        "a real Qdrant is needed (set QDRANT_URL, or SECONDPASS_SHARED_DIR to a folder with \
         qdrant/bin): `scripts/qdrant path` failed: {}",
        String::from_utf8_lossy(&out.stderr).trim()
    );
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
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
    /// The server of this test binary: the one `QDRANT_URL` (and `QDRANT_GRPC_URL`)
    /// name, else one started on first use, stopped when the binary exits.
    pub fn shared() -> &'static RealQdrant {
        static SHARED: OnceLock<RealQdrant> = OnceLock::new();
        SHARED.get_or_init(|| match env_url("QDRANT_URL") {
            Some(url) => RealQdrant {
                url,
                grpc_url: env_url("QDRANT_GRPC_URL")
                    .expect("QDRANT_URL is set without QDRANT_GRPC_URL: set both (or neither)"),
                owned: None,
            },
            None => Self::spawn(None, &[]),
        })
    }

    /// A private server with extra `QDRANT__...` settings, stopped when the handle
    /// drops. With `QDRANT__SERVICE__ENABLE_TLS=true` its URLs are
    /// `https://localhost:PORT` and it counts as ready once it accepts connections
    /// (the caller checks the rest with its CA).
    pub fn own(settings: &[(&str, &str)]) -> RealQdrant {
        Self::spawn(None, settings)
    }

    /// [`RealQdrant::own`] of a given version from `../shared/qdrant/bin` (`1.19.0`),
    /// whatever the shared server runs: for what only that version does.
    pub fn own_version(version: &str, settings: &[(&str, &str)]) -> RealQdrant {
        Self::spawn(Some(version), settings)
    }

    /// The server's version, as `GET /` reports it (`"1.19.0"`).
    pub fn version(&self) -> String {
        let addr = self
            .url
            .strip_prefix("http://")
            .expect("a plain-HTTP Qdrant");
        let mut s = TcpStream::connect(addr).expect("connect to Qdrant");
        let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
        let key = std::env::var("QDRANT_API_KEY")
            .map(|k| format!("api-key: {k}\r\n"))
            .unwrap_or_default();
        let req = format!("GET / HTTP/1.0\r\nHost: {addr}\r\n{key}\r\n");
        s.write_all(req.as_bytes()).expect("GET /");
        let mut raw = Vec::new();
        let _ = s.read_to_end(&mut raw);
        let text = String::from_utf8_lossy(&raw);
        let body = text.split("\r\n\r\n").nth(1).unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(body)
            .unwrap_or_else(|e| panic!("GET / is not JSON ({e}): {text}"));
        v["version"]
            .as_str()
            .expect("a version in GET /")
            .to_string()
    }

    /// The server is Qdrant 1.19 or later (what the 1.19 tests check differs).
    pub fn is_1_19(&self) -> bool {
        let v = self.version();
        let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0)) >= (1, 19)
    }

    fn spawn(version: Option<&str>, settings: &[(&str, &str)]) -> RealQdrant {
        static N: AtomicUsize = AtomicUsize::new(0);
        let bin = binary(version);
        let tls = settings
            .iter()
            .any(|(k, v)| *k == "QDRANT__SERVICE__ENABLE_TLS" && *v == "true");
        let (scheme, host) = if tls {
            ("https", "localhost")
        } else {
            ("http", "127.0.0.1")
        };
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
            // The wrapper runs Qdrant in the background; when its stdin closes (on drop,
            // or when the test binary exits, which is how the shared one ends) it
            // SIGTERMs Qdrant, SIGKILLs it after 2 s (the storage is thrown away; a
            // graceful stop can wait up to 30 s on clients' kept-alive connections)
            // and removes the folder.
            let mut wrapper = Command::new("bash")
                .arg("-c")
                .arg(
                    r#"exec 3<&0; "$0" >qdrant.log 2>&1 & pid=$!
                       (read -r _ <&3; kill -TERM $pid 2>/dev/null
                        for _ in $(seq 40); do kill -0 $pid 2>/dev/null || break; sleep 0.05; done
                        kill -KILL $pid 2>/dev/null; cd / && rm -rf "$1") &
                       wait $pid"#,
                )
                .arg(&bin)
                .arg(&dir)
                .current_dir(&dir)
                .env("QDRANT__SERVICE__HOST", "127.0.0.1")
                .env("QDRANT__SERVICE__HTTP_PORT", http.to_string())
                .env("QDRANT__SERVICE__GRPC_PORT", grpc.to_string())
                .env("QDRANT__STORAGE__STORAGE_PATH", dir.join("storage"))
                .env("QDRANT__STORAGE__SNAPSHOTS_PATH", dir.join("snapshots"))
                .env("QDRANT__TELEMETRY_DISABLED", "true")
                .env("QDRANT__LOG_LEVEL", "WARN")
                .envs(settings.iter().copied())
                .stdin(Stdio::piped())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("start the Qdrant wrapper (bash)");
            let stdin = wrapper.stdin.take();
            let mut q = RealQdrant {
                url: format!("{scheme}://{host}:{http}"),
                grpc_url: format!("{scheme}://{host}:{grpc}"),
                owned: Some(Owned {
                    wrapper,
                    stdin,
                    dir: dir.clone(),
                }),
            };
            let deadline = Instant::now() + Duration::from_secs(30);
            while Instant::now() < deadline {
                // gRPC is bound after REST: an open gRPC port means both are up.
                let up = if tls { accepts(grpc) } else { ready(http) };
                if up {
                    return q;
                }
                let o = q.owned.as_mut().unwrap();
                if o.wrapper.try_wait().ok().flatten().is_some() {
                    break; // exited: a port taken in between, most likely
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            last_log = std::fs::read_to_string(dir.join("qdrant.log")).unwrap_or_default();
            drop(q);
        }
        panic!(
            "Qdrant ({}) did not become ready; its log:\n{last_log}",
            bin.display()
        );
    }

    /// A collection name for one test ([`unique`]), deleted from this server when the
    /// handle drops (however the test ends).
    pub fn collection(&self, base: &str) -> Collection<'_> {
        Collection {
            name: unique(base),
            qdrant: self,
        }
    }

    /// `DELETE /collections/{name}` straight to Qdrant, blocking (usable in `Drop`);
    /// a missing collection is fine.
    pub fn delete_collection(&self, name: &str) {
        let Some(addr) = self.url.strip_prefix("http://") else {
            return; // TLS servers are private and go with their storage
        };
        let Ok(mut s) = TcpStream::connect(addr) else {
            return;
        };
        let key = std::env::var("QDRANT_API_KEY")
            .map(|k| format!("api-key: {k}\r\n"))
            .unwrap_or_default();
        let _ = s.set_read_timeout(Some(Duration::from_secs(30)));
        let req = format!("DELETE /collections/{name} HTTP/1.0\r\nHost: {addr}\r\n{key}\r\n");
        if s.write_all(req.as_bytes()).is_ok() {
            let _ = s.read_to_end(&mut Vec::new());
        }
    }
}

/// A unique collection name that deletes its collection when dropped; it reads as
/// the name (`&docs` is a `&str`, `{docs}` formats as the name).
pub struct Collection<'q> {
    name: String,
    qdrant: &'q RealQdrant,
}

impl std::ops::Deref for Collection<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        &self.name
    }
}

impl std::fmt::Display for Collection<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

impl Drop for Collection<'_> {
    fn drop(&mut self) {
        self.qdrant.delete_collection(&self.name);
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

/// The port accepts a TCP connection.
fn accepts(port: u16) -> bool {
    TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(200)).is_ok()
}

impl Drop for RealQdrant {
    fn drop(&mut self) {
        let Some(mut o) = self.owned.take() else {
            return;
        };
        drop(o.stdin.take()); // SIGTERM to Qdrant (SIGKILL after 2 s)
        let deadline = Instant::now() + Duration::from_secs(5);
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
