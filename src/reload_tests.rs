//! Run-time changes, and every collection key set through each of the four ways in:
//! a file, the environment, the admin API and a reload.

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
    let m = change.over(old);
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

/// One value for every collection key, none of them the default (TOML).
const EVERY_KEY: &[(&str, &str)] = &[
    ("enabled", "true"),
    ("mode", "\"shadow\""),
    ("text_field", "\"body\""),
    ("pool", "30"),
    ("max_pool", "300"),
    ("reranker", "\"other\""),
    ("rerankers", r#"["other", "local"]"#),
    ("max_length", "256"),
    ("score_mode", "\"raw\""),
    ("score_threshold", "0.25"),
    ("on_failure", "\"error\""),
    ("timeout_ms", "1234"),
    ("cache", "false"),
    ("max_query_bytes", "999"),
    ("text_template", "\"{title}: {body}\""),
    ("long_documents", "\"chunk\""),
    ("chunk_tokens", "128"),
    ("chunk_overlap", "16"),
    ("max_chunks_per_doc", "8"),
    ("chunk_aggregate", "\"max\""),
    ("hosted_chunks", "\"provider\""),
    (
        "stages",
        r#"[{ reranker = "local", keep = 20 }, { reranker = "other" }]"#,
    ),
    ("allowed_rerankers", r#"["local", "other"]"#),
    ("instruction", "\"Find the passage that answers\""),
];

/// The settings [`EVERY_KEY`] makes (written out: a new setting must be added here).
fn every_key_settings() -> crate::config::CollectionSettings {
    use crate::config::*;
    let stage = |reranker: &str, keep| StageConfig {
        reranker: reranker.into(),
        rerankers: Vec::new(),
        keep,
        max_length: None,
    };
    CollectionSettings {
        enabled: true,
        mode: Mode::Shadow,
        text_field: "body".into(),
        pool: 30,
        max_pool: 300,
        reranker: "other".into(),
        rerankers: vec!["other".into(), "local".into()],
        max_length: Some(256),
        score_mode: ScoreMode::Raw,
        score_threshold: Some(0.25),
        on_failure: OnFailure::Error,
        timeout: std::time::Duration::from_millis(1234),
        cache: false,
        max_query_bytes: 999,
        text_template: Some("{title}: {body}".into()),
        long_documents: LongDocuments::Chunk,
        chunk_tokens: Some(128),
        chunk_overlap: 16,
        max_chunks_per_doc: 8,
        chunk_aggregate: Aggregate::Max,
        hosted_chunks: HostedChunks::Provider,
        stages: vec![stage("local", Some(20)), stage("other", None)],
        allowed_rerankers: vec!["local".into(), "other".into()],
        instruction: Some("Find the passage that answers".into()),
    }
}

/// Two rerankers (never loaded), the admin API on, `docs` as `section` says.
fn config_text(dir: &Path, section: &str) -> String {
    format!(
        r#"
[admin]
token_file = "{}"
[rerankers.local]
kind = "onnx"
model_dir = "/unused"
[rerankers.other]
kind = "onnx"
model_dir = "/unused-too"
[collections.docs]
{section}
"#,
        dir.join("token").display()
    )
}

fn every_key_toml() -> String {
    EVERY_KEY
        .iter()
        .map(|(k, v)| format!("{k} = {v}\n"))
        .collect()
}

struct Dir(std::path::PathBuf);

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn temp_dir() -> Dir {
    let dir = std::env::temp_dir().join(format!(
        "sp-keys-{}",
        crate::transport::request_id::new_id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("token"), "t0ken").unwrap();
    Dir(dir)
}

/// A running state on `file` (reranking off for `docs`), and its admin API.
fn state_on(file: &Path) -> (Arc<AppState>, axum::Router) {
    let cfg = Config::load_with_env(Some(file), Default::default()).unwrap();
    let mut state = AppState::new(cfg, Registry::default()).unwrap();
    state.config_path = Some(file.to_path_buf());
    let state = Arc::new(state);
    let admin = crate::transport::admin::router(state.clone());
    (state, admin)
}

async fn admin_call(admin: &axum::Router, method: &str, path: &str, body: String) -> u16 {
    use tower::ServiceExt;
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", "Bearer t0ken")
        .header("content-type", "application/json")
        .body(axum::body::Body::from(body))
        .unwrap();
    admin.clone().oneshot(req).await.unwrap().status().as_u16()
}

#[test]
fn the_list_of_keys_is_whole() {
    let listed: Vec<&str> = EVERY_KEY.iter().map(|(k, _)| *k).collect();
    assert_eq!(listed, CollectionOverrides::KEYS);
    // And each value differs from the built-in default, so that each way in shows.
    let default = crate::config::CollectionSettings::default();
    let dir = temp_dir();
    for (key, value) in EVERY_KEY {
        let one = Config::from_toml(&config_text(&dir.0, &format!("{key} = {value}")))
            .unwrap_or_else(|e| panic!("{key}: {e}"));
        assert_ne!(
            one.collection("docs"),
            default,
            "{key} = {value} changes nothing"
        );
    }
}

#[tokio::test]
async fn every_key_through_file_environment_admin_api_and_reload() {
    let dir = temp_dir();
    let file = dir.0.join("secondpass.toml");
    let expected = every_key_settings();

    // A file.
    std::fs::write(&file, config_text(&dir.0, &every_key_toml())).unwrap();
    let cfg = Config::load_with_env(Some(&file), Default::default()).unwrap();
    assert_eq!(cfg.collection("docs"), expected, "file");

    // The environment (strings as they are, lists and tables as TOML).
    std::fs::write(&file, config_text(&dir.0, "")).unwrap();
    let env = EVERY_KEY
        .iter()
        .map(|(k, v)| {
            let name = format!("SECONDPASS__COLLECTIONS__DOCS__{}", k.to_uppercase());
            (name, v.trim_matches('"').to_string())
        })
        .collect();
    let cfg = Config::load_with_env(Some(&file), env).unwrap();
    assert_eq!(cfg.collection("docs"), expected, "environment");

    // The admin API.
    let (state, admin) = state_on(&file);
    assert_ne!(state.collection("docs"), expected);
    let overrides: CollectionOverrides = Config::from_toml(&config_text(&dir.0, &every_key_toml()))
        .unwrap()
        .collections["docs"]
        .clone();
    let json = serde_json::to_string(&overrides).unwrap();
    assert_eq!(
        admin_call(&admin, "PUT", "/admin/collections/docs", json).await,
        200
    );
    assert_eq!(state.collection("docs"), expected, "admin API");

    // A reload.
    let (state, admin) = state_on(&file);
    std::fs::write(&file, config_text(&dir.0, &every_key_toml())).unwrap();
    assert_eq!(
        admin_call(&admin, "POST", "/admin/reload", String::new()).await,
        200
    );
    assert_eq!(state.collection("docs"), expected, "reload");
}

/// One HTTP/1.1 call to `addr` on a connection of its own: (status, body).
async fn http_call(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\
         authorization: Bearer t0ken\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    conn.read_to_end(&mut raw).await.unwrap();
    let text = String::from_utf8(raw).unwrap();
    let status = text[9..12].parse().unwrap();
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_string();
    (status, body)
}

/// Many PATCHes at once through the admin listener, each to its own collection:
/// every one is in the final state and in the overrides file.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_admin_changes_are_all_kept() {
    const CHANGES: usize = 64;
    let dir = temp_dir();
    let file = dir.0.join("secondpass.toml");
    let overrides = dir.0.join("overrides.json");
    let text = config_text(&dir.0, "").replace(
        "[admin]\n",
        &format!("[admin]\noverrides_file = \"{}\"\n", overrides.display()),
    );
    std::fs::write(&file, text).unwrap();
    let (state, admin) = state_on(&file);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = tokio::spawn(async move { axum::serve(listener, admin).await });

    let calls = (0..CHANGES).map(|i| {
        tokio::spawn(async move {
            let body = format!(r#"{{"enabled": true, "pool": {}}}"#, 10 + i);
            http_call(addr, "PATCH", &format!("/admin/collections/c{i}"), &body).await
        })
    });
    for call in futures_util::future::join_all(calls).await {
        let (status, body) = call.unwrap();
        assert_eq!(status, 200, "{body}");
    }

    let in_force = state.overrides();
    let stored = read_overrides(&overrides).unwrap();
    for i in 0..CHANGES {
        let name = format!("c{i}");
        assert_eq!(state.collection(&name).pool, 10 + i, "{name} in force");
        assert_eq!(in_force[&name].pool, Some(10 + i), "{name} in force");
        assert_eq!(
            stored.get(&name).and_then(|o| o.pool),
            Some(10 + i),
            "{name} in the file"
        );
    }
    assert_eq!(stored, in_force);
    // No temporary file left behind.
    let left: Vec<_> = std::fs::read_dir(&dir.0)
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    server.abort();
}

async fn admin_as(admin: &axum::Router, token: &str, method: &str, path: &str) -> (u16, String) {
    use http_body_util::BodyExt;
    use tower::ServiceExt;
    let req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("authorization", format!("Bearer {token}"))
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = admin.clone().oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A rotated `admin.token_file` (a Kubernetes Secret updated in place) is in force
/// after a reload: the new token opens the API, the old one no longer does, and the
/// status shows the token's generation and fingerprint, never the token.
#[tokio::test]
async fn a_reload_rereads_the_admin_token_file() {
    let dir = temp_dir();
    let file = dir.0.join("secondpass.toml");
    std::fs::write(&file, config_text(&dir.0, "")).unwrap();
    let (_state, admin) = state_on(&file);
    let (s, v) = admin_as(&admin, "t0ken", "GET", "/admin/status").await;
    assert_eq!(s, 200, "{v}");
    let v: serde_json::Value = serde_json::from_str(&v).unwrap();
    assert_eq!(v["secrets"]["admin.token"]["generation"], 1, "{v}");

    std::fs::write(dir.0.join("token"), "n3w-t0ken-rotated\n").unwrap();
    let (s, v) = admin_as(&admin, "t0ken", "POST", "/admin/reload").await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        admin_as(&admin, "t0ken", "GET", "/admin/status").await.0,
        401
    );
    let (s, text) = admin_as(&admin, "n3w-t0ken-rotated", "GET", "/admin/status").await;
    assert_eq!(s, 200, "{text}");
    assert!(
        !text.contains("n3w-t0ken"),
        "the token is never shown: {text}"
    );
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let live = &v["secrets"]["admin.token"];
    assert_eq!(live["generation"], 2, "{v}");
    assert_eq!(
        live["fingerprint"],
        crate::secrets::fingerprint("n3w-t0ken-rotated"),
        "{v}"
    );

    // An empty token file is refused; the token in force stays.
    std::fs::write(dir.0.join("token"), "\n").unwrap();
    let (s, v) = admin_as(&admin, "n3w-t0ken-rotated", "POST", "/admin/reload").await;
    assert_eq!(s, 422, "{v}");
    assert!(v.contains("admin.token_file"), "{v}");
    assert_eq!(
        admin_as(&admin, "n3w-t0ken-rotated", "GET", "/admin/status")
            .await
            .0,
        200
    );
}

/// Counts its calls; scores every document 0.5.
struct Counting(std::sync::atomic::AtomicUsize);

impl crate::rerank::Reranker for Counting {
    fn model(&self) -> &str {
        "counting"
    }
    fn score_kind(&self) -> crate::rerank::ScoreKind {
        crate::rerank::ScoreKind::Probability
    }
    fn rerank(&self, r: crate::rerank::RerankRequest) -> crate::rerank::RerankFuture {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        Box::pin(async move { Ok(vec![0.5; r.documents.len()]) })
    }
}

/// `[cache]` added by a reload is in force: the second identical rerank is answered
/// from the cache, and the rerankers were not loaded again.
#[tokio::test]
async fn a_reload_applies_cache_changes() {
    let dir = temp_dir();
    let file = dir.0.join("secondpass.toml");
    std::fs::write(&file, config_text(&dir.0, "")).unwrap();
    let cfg = Config::load_with_env(Some(&file), Default::default()).unwrap();
    let counting = Arc::new(Counting(Default::default()));
    let mut registry = Registry::default();
    registry.insert("local", counting.clone());
    registry.insert("other", Arc::new(Counting(Default::default())));
    let mut state = AppState::new(cfg, registry).unwrap();
    state.config_path = Some(file.clone());
    let rerank_twice = || async {
        let before = counting.0.load(std::sync::atomic::Ordering::SeqCst);
        for _ in 0..2 {
            let request = crate::rerank::RerankRequest::new("q", vec!["a".into(), "b".into()]);
            let chain = state.engine.chain();
            chain
                .run(&["local"], request, std::time::Duration::from_secs(5))
                .await
                .unwrap();
        }
        counting.0.load(std::sync::atomic::Ordering::SeqCst) - before
    };
    assert_eq!(rerank_twice().await, 2, "no cache yet");

    let with_cache = config_text(&dir.0, "") + "[cache]\nmax_entries = 100\n";
    std::fs::write(&file, with_cache).unwrap();
    assert_eq!(state.reload().await, Ok(vec![]));
    assert_eq!(rerank_twice().await, 1, "the second from the cache");
    assert_eq!(state.config().cache.max_entries, 100);
}

/// Keys read only at startup are listed, kept at their values in force (the status
/// shows what runs), and the rest of the file is applied.
#[tokio::test]
async fn a_reload_lists_what_needs_a_restart() {
    let dir = temp_dir();
    let file = dir.0.join("secondpass.toml");
    std::fs::write(&file, config_text(&dir.0, "")).unwrap();
    let (state, _admin) = state_on(&file);
    let changed = config_text(&dir.0, "enabled = true\n")
        + "[upstream]\ntimeout_ms = 1234\n[server]\nmax_body_bytes = 4096\n\
           rest_listen = \"127.0.0.1:1\"\n[shadow]\nworkers = 7\n\
           [tracing]\nservice_name = \"renamed\"\n";
    std::fs::write(&file, changed).unwrap();
    let fixed = state.reload().await.unwrap();
    assert_eq!(
        fixed,
        [
            "server.rest_listen",
            "upstream.timeout_ms",
            "tracing.service_name",
            "shadow.workers"
        ]
    );
    let cfg = state.config();
    assert_ne!(cfg.upstream.timeout_ms, 1234);
    assert_ne!(cfg.server.rest_listen, "127.0.0.1:1");
    assert_ne!(cfg.shadow.workers, 7);
    assert_eq!(cfg.tracing.service_name, "secondpass");
    assert_eq!(cfg.server.max_body_bytes, 4096, "read per request: applied");
    assert!(state.collection("docs").enabled, "the rest applied");
}
