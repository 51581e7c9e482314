//! The admin API (auth, run-time toggles kept across restarts) and configuration
//! reload, with secondpass in front of the real Qdrant (through a relay where a test
//! checks what Qdrant was sent).

mod support;

use http::Method;
use serde_json::{json, Value};
use support::{config, config_text, proxy, qdrant, query_vector, relayed, request, Proxy};

struct Files {
    dir: std::path::PathBuf,
}

impl Files {
    fn new(tag: &str) -> Files {
        let dir = std::env::temp_dir().join(format!("sp-admin-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("token"), "t0ken-123\n").unwrap();
        Files { dir }
    }
    fn path(&self, f: &str) -> std::path::PathBuf {
        self.dir.join(f)
    }
    fn admin_section(&self) -> String {
        format!(
            "[admin]\ntoken_file = \"{}\"\noverrides_file = \"{}\"\n",
            self.path("token").display(),
            self.path("overrides.json").display()
        )
    }
}

impl Drop for Files {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn admin(
    p: &Proxy,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<&Value>,
) -> (u16, Value) {
    let auth = token.map(|t| format!("Bearer {t}"));
    let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
    let r = request(&p.client, method, &p.admin(path), &headers, body).await;
    (
        r.status.as_u16(),
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

async fn rerank_status(p: &Proxy, docs: &str) -> String {
    p.post(
        &format!("/collections/{docs}/points/search"),
        &[("x-rerank-query", "capital of Germany")],
        &json!({"vector": query_vector(), "limit": 2}),
    )
    .await
    .header("x-rerank-status")
    .unwrap_or_default()
    .to_string()
}

#[tokio::test]
async fn admin_api_needs_the_token_and_is_absent_without_one() {
    let plain = proxy(&[], "").await;
    let (s, _) = admin(&plain, Method::GET, "/admin/status", None, None).await;
    assert_eq!(s, 404, "no token configured: no admin API");

    let files = Files::new("auth");
    let p = Proxy::start(config(&qdrant().url, &[], &files.admin_section())).await;
    assert_eq!(
        admin(&p, Method::GET, "/admin/status", None, None).await.0,
        401
    );
    assert_eq!(
        admin(&p, Method::GET, "/admin/status", Some("wrong"), None)
            .await
            .0,
        401
    );
    assert_eq!(
        admin(&p, Method::POST, "/admin/reload", None, None).await.0,
        401
    );
    let (s, status) = admin(&p, Method::GET, "/admin/status", Some("t0ken-123"), None).await;
    assert_eq!(s, 200);
    assert_eq!(status["rerankers"][0]["name"], "local");
    assert_eq!(status["rerankers"][0]["breaker"], "closed");
    // where the model runs, as loaded (not as configured)
    let x = &status["rerankers"][0]["execution"];
    assert_eq!(x["provider"], "CPUExecutionProvider", "{x}");
    assert_eq!(x["device"], "cpu");
    assert_eq!(x["inputs_on"]["input_ids"], "Cpu");
    assert_eq!(status["config"]["upstream"]["url"], qdrant().url);
    // the token itself is never shown
    assert!(!status.to_string().contains("t0ken-123"));
    // metrics and health stay open
    assert_eq!(p.get_admin("/metrics").await.status, 200);
}

#[tokio::test]
async fn toggles_take_effect_on_the_next_request_and_survive_a_restart() {
    let files = Files::new("toggle");
    let docs = qdrant().collection("docs");
    let (relay, p) = relayed(&[], &files.admin_section()).await;
    p.seed(&docs, false).await;
    assert_eq!(rerank_status(&p, &docs).await, "disabled");

    let (s, v) = admin(
        &p,
        Method::PATCH,
        &format!("/admin/collections/{docs}"),
        Some("t0ken-123"),
        Some(&json!({"enabled": true, "pool": 5})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["settings"]["enabled"], true);
    assert_eq!(rerank_status(&p, &docs).await, "applied");
    relay.forget();
    rerank_status(&p, &docs).await;
    assert_eq!(relay.seen()[0].json()["limit"], 5);

    // invalid changes are refused and change nothing
    for bad in [
        json!({"pool": 0}),
        json!({"reranker": "ghost"}),
        json!({"pool": 500}),
        json!({"bogus": 1}),
    ] {
        let (s, v) = admin(
            &p,
            Method::PATCH,
            &format!("/admin/collections/{docs}"),
            Some("t0ken-123"),
            Some(&bad),
        )
        .await;
        assert_eq!(s, 400, "{bad}: {v}");
        assert!(v["error"].is_string());
    }
    assert_eq!(rerank_status(&p, &docs).await, "applied");

    // kept in the overrides file, and restored by a new process
    let stored: Value =
        serde_json::from_str(&std::fs::read_to_string(files.path("overrides.json")).unwrap())
            .unwrap();
    assert_eq!(stored[&*docs]["enabled"], true);
    let again = Proxy::start(config(&qdrant().url, &[], &files.admin_section())).await;
    assert_eq!(
        rerank_status(&again, &docs).await,
        "disabled",
        "Proxy::start does not restore"
    );
    let cfg_file = files.path("secondpass.toml");
    std::fs::write(
        &cfg_file,
        config_text(&qdrant().url, &files.admin_section()),
    )
    .unwrap();
    let restored = Proxy::start_from_file(&cfg_file).await;
    assert_eq!(rerank_status(&restored, &docs).await, "applied");

    // DELETE drops the change
    let (s, _) = admin(
        &p,
        Method::DELETE,
        &format!("/admin/collections/{docs}"),
        Some("t0ken-123"),
        None,
    )
    .await;
    assert_eq!(s, 200);
    assert_eq!(rerank_status(&p, &docs).await, "disabled");
    let (s, _) = admin(
        &p,
        Method::DELETE,
        &format!("/admin/collections/{docs}"),
        Some("t0ken-123"),
        None,
    )
    .await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn reload_applies_a_good_file_and_refuses_a_bad_one() {
    let files = Files::new("reload");
    let docs = qdrant().collection("docs");
    let url = &qdrant().url;
    let cfg_file = files.path("secondpass.toml");
    std::fs::write(&cfg_file, config_text(url, &files.admin_section())).unwrap();
    let p = Proxy::start_from_file(&cfg_file).await;
    p.seed(&docs, false).await;
    assert_eq!(rerank_status(&p, &docs).await, "disabled");

    // a valid new file: reranking on for docs; a shadow queue size (restart-only)
    // is listed as needing a restart, not refused
    let good = config_text(
        url,
        &format!(
            "{}[shadow]\nqueue = 8\nsample_rate = 0.5\n[collections.{docs}]\nenabled = true\n",
            files.admin_section()
        ),
    );
    std::fs::write(&cfg_file, good).unwrap();
    let (s, v) = admin(&p, Method::POST, "/admin/reload", Some("t0ken-123"), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["restart_needed"], json!(["shadow.queue"]), "{v}");
    assert_eq!(rerank_status(&p, &docs).await, "applied");

    // an invalid one is refused, and the old configuration stays
    let bad = config_text(
        url,
        &format!(
            "{}[collections.{docs}]\nenabled = true\npool = 0\n",
            files.admin_section()
        ),
    );
    std::fs::write(&cfg_file, bad).unwrap();
    let (s, v) = admin(&p, Method::POST, "/admin/reload", Some("t0ken-123"), None).await;
    assert_eq!(s, 422);
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains(&format!("collections.{docs}.pool")),
        "{v}"
    );
    assert_eq!(rerank_status(&p, &docs).await, "applied");
    let metrics = String::from_utf8(p.get_admin("/metrics").await.body.to_vec()).unwrap();
    assert!(
        metrics.contains("secondpass_config_reloads_total{result=\"ok\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("secondpass_config_reloads_total{result=\"invalid\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn request_ids_are_kept_or_made_and_returned() {
    let docs = qdrant().collection("docs");
    let (relay, p) = relayed(&[&docs], "").await;
    p.seed(&docs, false).await;
    relay.forget();
    let r = p
        .post(
            &format!("/collections/{docs}/points/search"),
            &[("x-request-id", "abc-123"), ("x-rerank-query", "q")],
            &json!({"vector": query_vector(), "limit": 2}),
        )
        .await;
    assert_eq!(r.header("x-request-id"), Some("abc-123"));
    assert_eq!(relay.seen()[0].header("x-request-id"), Some("abc-123"));
    let r = request(&p.client, Method::GET, &p.url("/collections"), &[], None).await;
    assert_eq!(r.header("x-request-id").map(str::len), Some(36));
}

/// A hosted reranker's `api_key_file` rotated in place (a Kubernetes Secret) is in
/// force after a reload: the provider receives the new key, the status shows its
/// generation and fingerprint (never the key); an unreadable key file refuses the
/// reload and the key in force stays.
#[tokio::test]
async fn reload_rereads_a_rotated_api_key_file() {
    use secondpass_it::provider_stubs::{Api, ProviderStub, StubOptions};
    let files = Files::new("rotate");
    let docs = qdrant().collection("docs");
    let stub = ProviderStub::start(Api::Cohere, StubOptions::default()).await;
    let key_file = files.path("cohere-key");
    std::fs::write(&key_file, "sk-first-0123456789\n").unwrap();
    let cfg_file = files.path("secondpass.toml");
    let text = config_text(
        &qdrant().url,
        &format!(
            "{}[rerankers.co]\nkind = \"cohere\"\nmodel = \"rerank-v3.5\"\nbase_url = \"{}\"\n\
             api_key_file = \"{}\"\n[collections.{docs}]\nenabled = true\nreranker = \"co\"\n",
            files.admin_section(),
            stub.url(),
            key_file.display()
        ),
    );
    std::fs::write(&cfg_file, text).unwrap();
    let p = Proxy::start_from_file(&cfg_file).await;
    p.seed(&docs, false).await;
    let last_key = || {
        stub.request_log()
            .last()
            .and_then(|r| r.header("authorization").map(str::to_string))
    };
    let key_status = |v: &Value| v["secrets"]["rerankers.co.api_key"].clone();

    assert_eq!(rerank_status(&p, &docs).await, "applied");
    assert_eq!(last_key().as_deref(), Some("Bearer sk-first-0123456789"));
    let (_, v) = admin(&p, Method::GET, "/admin/status", Some("t0ken-123"), None).await;
    assert_eq!(key_status(&v)["generation"], 1, "{v}");

    std::fs::write(&key_file, "sk-second-9876543210\n").unwrap();
    let (s, v) = admin(&p, Method::POST, "/admin/reload", Some("t0ken-123"), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(rerank_status(&p, &docs).await, "applied");
    assert_eq!(last_key().as_deref(), Some("Bearer sk-second-9876543210"));
    let (_, v) = admin(&p, Method::GET, "/admin/status", Some("t0ken-123"), None).await;
    assert_eq!(key_status(&v)["generation"], 2, "{v}");
    assert_eq!(
        key_status(&v)["fingerprint"],
        secondpass::secrets::fingerprint("sk-second-9876543210")
    );
    assert!(!v.to_string().contains("sk-second"), "never the key: {v}");

    // The Secret gone: refused, nothing applied, the second key still in force.
    std::fs::remove_file(&key_file).unwrap();
    let (s, v) = admin(&p, Method::POST, "/admin/reload", Some("t0ken-123"), None).await;
    assert_eq!(s, 422, "{v}");
    assert!(
        v["error"]
            .as_str()
            .unwrap()
            .contains("rerankers.co.api_key"),
        "{v}"
    );
    assert_eq!(rerank_status(&p, &docs).await, "applied");
    assert_eq!(last_key().as_deref(), Some("Bearer sk-second-9876543210"));
}
