//! Configuration tests: defaults, inheritance, validation messages.

use super::*;

const BASE: &str = r#"
[rerankers.local]
kind = "onnx"
model_dir = "/models/x"
"#;

#[test]
fn defaults_without_file() {
    let c = Config::from_toml("").unwrap();
    assert_eq!(c.upstream.url, "http://localhost:6333");
    assert_eq!(c.server.rest_listen, "0.0.0.0:7333");
    let s = c.collection("anything");
    assert!(!s.enabled);
    assert_eq!(s.pool, 100);
    assert_eq!(s.on_failure, OnFailure::FailOpen);
}

#[test]
fn collections_inherit_from_default() {
    let c = Config::from_toml(&format!(
        "{BASE}\n[collections.default]\npool = 40\ntext_field = \"body\"\n[collections.docs]\nenabled = true\nmax_pool = 80\n"
    ))
    .unwrap();
    let d = c.collection("docs");
    assert!(d.enabled);
    assert_eq!(d.pool, 40);
    assert_eq!(d.max_pool, 80);
    assert_eq!(d.text_field, "body");
    let other = c.collection("other");
    assert!(!other.enabled);
    assert_eq!(other.pool, 40);
}

#[test]
fn unknown_key_is_refused_by_name() {
    let e = Config::from_toml("[collections.docs]\nenabeld = true\n").unwrap_err();
    assert!(e.to_string().contains("enabeld"), "{e}");
}

#[test]
fn missing_reranker_is_named() {
    let e =
        Config::from_toml("[collections.docs]\nenabled = true\nreranker = \"nope\"\n").unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("collections.docs.reranker"), "{msg}");
    assert!(msg.contains("nope"), "{msg}");
}

#[test]
fn pool_above_max_pool_is_refused() {
    let e = Config::from_toml(&format!("{BASE}\n[collections.docs]\npool = 300\n")).unwrap_err();
    assert!(e.to_string().contains("collections.docs.pool"), "{e}");
}

#[test]
fn max_rewrite_bytes_defaults_and_refuses_zero() {
    assert_eq!(
        Config::from_toml("").unwrap().upstream.max_rewrite_bytes,
        64 << 20
    );
    let c = Config::from_toml("[upstream]\nmax_rewrite_bytes = 1024\n").unwrap();
    assert_eq!(c.upstream.max_rewrite_bytes, 1024);
    let e = Config::from_toml("[upstream]\nmax_rewrite_bytes = 0\n").unwrap_err();
    assert!(e.to_string().contains("upstream.max_rewrite_bytes"), "{e}");
}

#[test]
fn bad_listen_address_and_url() {
    let e = Config::from_toml("[server]\nrest_listen = \"nowhere\"\n").unwrap_err();
    assert!(e.to_string().contains("server.rest_listen"), "{e}");
    let e = Config::from_toml("[upstream]\nurl = \"ftp://x\"\n").unwrap_err();
    assert!(e.to_string().contains("upstream.url"), "{e}");
}

#[test]
fn bad_enum_value_is_refused() {
    let e = Config::from_toml("[collections.docs]\nscore_mode = \"softmax\"\n").unwrap_err();
    assert!(e.to_string().contains("softmax"), "{e}");
}

#[test]
fn hosted_rerankers_are_validated() {
    let ok = Config::from_toml(
        "[rerankers.co]\nkind = \"cohere\"\nmodel = \"rerank-v3.5\"\napi_key_env = \"CO_KEY\"\n\
         [rerankers.tei]\nkind = \"tei\"\nbase_url = \"http://tei:8080\"\n\
         [collections.docs]\nenabled = true\nrerankers = [\"tei\", \"co\"]\n",
    )
    .unwrap();
    assert_eq!(ok.collection("docs").chain(), vec!["tei", "co"]);
    let e = Config::from_toml("[rerankers.co]\nkind = \"cohere\"\nmodel = \"m\"\n").unwrap_err();
    assert!(e.to_string().contains("rerankers.co.api_key_env"), "{e}");
    let e = Config::from_toml("[rerankers.t]\nkind = \"tei\"\n").unwrap_err();
    assert!(e.to_string().contains("rerankers.t.base_url"), "{e}");
    let e = Config::from_toml("[rerankers.x]\nkind = \"nope\"\n").unwrap_err();
    assert!(e.to_string().contains("nope"), "{e}");
    // the key itself is never a config key
    let e = Config::from_toml(
        "[rerankers.co]\nkind = \"cohere\"\nmodel = \"m\"\napi_key = \"sk-123\"\n",
    )
    .unwrap_err();
    assert!(e.to_string().contains("api_key"), "{e}");
    assert!(
        !e.to_string().contains("sk-123"),
        "a secret must not be echoed: {e}"
    );
    let e = Config::from_toml(
        "[rerankers.t]\nkind = \"tei\"\nbase_url = \"http://t\"\n[collections.docs]\nenabled = true\nrerankers = [\"t\", \"ghost\"]\n",
    )
    .unwrap_err();
    assert!(
        e.to_string().contains("collections.docs.rerankers") && e.to_string().contains("ghost"),
        "{e}"
    );
}

#[test]
fn example_config_is_valid() {
    let text = include_str!("../../config/secondpass.toml");
    let c = Config::from_toml(text).unwrap();
    assert!(c.rerankers.contains_key("local"));
}

#[test]
fn https_upstreams_and_ca_file() {
    let c =
        Config::from_toml("[upstream]\nurl = \"https://q:6333\"\ngrpc_url = \"https://q:6334\"\n")
            .unwrap();
    assert_eq!(c.upstream.grpc_url, "https://q:6334");
    let e = Config::from_toml("[upstream]\ngrpc_url = \"q:6334\"\n").unwrap_err();
    assert!(e.to_string().contains("upstream.grpc_url"), "{e}");
    let e = Config::from_toml("[upstream]\nca_file = \"/nonexistent/ca.pem\"\n").unwrap_err();
    assert!(e.to_string().contains("upstream.ca_file"), "{e}");
}

#[test]
fn long_document_and_stage_keys_parse() {
    let c = Config::from_toml(&format!(
        "{BASE}\n[rerankers.fast]\nkind = \"onnx\"\nmodel_dir = \"/m\"\n\
         [collections.docs]\nenabled = true\ntext_template = \"{{title}}\\n{{body}}\"\n\
         long_documents = \"chunk\"\nchunk_tokens = 64\nchunk_overlap = 16\nmax_chunks_per_doc = 3\n\
         chunk_aggregate = \"decay:0.5\"\nhosted_chunks = \"provider\"\n\
         stages = [{{ reranker = \"fast\", keep = 20, max_length = 96 }}, {{ reranker = \"local\" }}]\n\
         allowed_rerankers = [\"fast\"]\n"
    ))
    .unwrap();
    let d = c.collection("docs");
    assert_eq!(d.text_source().paths(), vec!["title", "body"]);
    let ch = d.chunking().unwrap();
    assert_eq!((ch.tokens, ch.overlap, ch.max_chunks), (Some(64), 16, 3));
    assert_eq!(ch.aggregate, Aggregate::Decay(0.5));
    assert_eq!(ch.hosted, HostedChunks::Provider);
    let st = d.stages_with(None);
    assert_eq!(st.len(), 2);
    assert_eq!((st[0].reranker.as_str(), st[0].keep), ("fast", Some(20)));
    assert_eq!((st[0].max_length, st[1].max_length), (Some(96), None));
    // a picked reranker replaces the last stage
    assert_eq!(d.stages_with(Some("fast"))[1].reranker, "fast");
    // defaults: truncation, one stage of the collection's reranker
    let other = c.collection("other");
    assert!(other.chunking().is_none());
    assert_eq!(other.stages_with(None).len(), 1);
    assert_eq!(other.stages_with(Some("x"))[0].chain(), vec!["x"]);
}

#[test]
fn bad_long_document_and_stage_keys_are_named() {
    for (extra, key) in [
        ("text_template = \"{title\"", "text_template"),
        ("chunk_tokens = 4", "chunk_tokens"),
        ("chunk_tokens = 32\nchunk_overlap = 32", "chunk_overlap"),
        ("max_chunks_per_doc = 0", "max_chunks_per_doc"),
        (
            "stages = [{ reranker = \"local\", keep = 0 }]",
            "stages[0].keep",
        ),
        (
            "stages = [{ reranker = \"local\", max_length = 4 }]",
            "stages[0].max_length",
        ),
        ("stages = [{ reranker = \"ghost\" }]", "stages"),
        ("allowed_rerankers = [\"ghost\"]", "allowed_rerankers"),
    ] {
        let e = Config::from_toml(&format!(
            "{BASE}\n[collections.docs]\nenabled = true\n{extra}\n"
        ))
        .unwrap_err();
        assert!(e.to_string().contains(key), "{extra}: {e}");
    }
    let e = Config::from_toml(&format!(
        "{BASE}\n[collections.docs]\nchunk_aggregate = \"median\"\n"
    ))
    .unwrap_err();
    assert!(e.to_string().contains("median"), "{e}");
}

#[test]
fn batching_defaults_follow_the_device() {
    let cpu = |extra: &str| {
        let c = Config::from_toml(&format!("{BASE}{extra}")).unwrap();
        match c.rerankers["local"].clone() {
            RerankerConfig::Onnx(o) => o,
            _ => unreachable!(),
        }
    };
    let o = cpu("");
    assert_eq!(
        (o.batch_size(), o.max_batch_tokens(), o.io_binding()),
        (32, 8192, false)
    );
    let o = cpu("device = \"cuda:1\"\n");
    assert_eq!(
        (o.batch_size(), o.max_batch_tokens(), o.io_binding()),
        (CUDA_BATCH_SIZE, CUDA_MAX_BATCH_TOKENS, true)
    );
    // What the user sets wins on every device.
    let o = cpu("device = \"cuda\"\nbatch_size = 8\nmax_batch_tokens = 1024\nio_binding = false\n");
    assert_eq!(
        (o.batch_size(), o.max_batch_tokens(), o.io_binding()),
        (8, 1024, false)
    );
    // The default budget always holds one pair of max_length tokens.
    let o = cpu("max_length = 16384\n");
    assert_eq!(o.max_batch_tokens(), 16384);
    assert_eq!(cpu("").tokenizer_threads(), 0);
    assert_eq!(cpu("device = \"cuda\"\n").tokenizer_threads(), 1);
    assert_eq!(cpu("tokenizer_threads = 3\n").tokenizer_threads(), 3);
    for (bad, key) in [
        ("batch_size = 0", "batch_size"),
        ("max_batch_tokens = 100", "max_batch_tokens"),
    ] {
        let e = Config::from_toml(&format!("{BASE}{bad}\n")).unwrap_err();
        assert!(
            e.to_string().contains(&format!("rerankers.local.{key}")),
            "{e}"
        );
    }
}

/// The rerank API is compute on the port Qdrant clients use: off by default, and
/// when on, refused without a token unless the REST listener is loopback only.
#[test]
fn rerank_api_is_opt_in_and_needs_a_token_off_loopback() {
    assert!(!Config::from_toml(BASE).unwrap().rerank_api.enabled);
    let on = "[rerank_api]\nenabled = true\n";
    let e = Config::from_toml(&format!("{BASE}{on}")).unwrap_err();
    let msg = e.to_string();
    assert!(msg.contains("rerank_api.enabled"), "{msg}");
    assert!(msg.contains("0.0.0.0:7333"), "{msg}");
    for listen in ["127.0.0.1:7333", "[::1]:7333"] {
        let text = format!("[server]\nrest_listen = \"{listen}\"\n{BASE}{on}");
        assert!(
            Config::from_toml(&text).unwrap().rerank_api.enabled,
            "{listen}"
        );
    }
    std::env::set_var("SP_CONFIG_TEST_RERANK_TOKEN", "t");
    Config::from_toml(&format!(
        "{BASE}{on}token_env = \"SP_CONFIG_TEST_RERANK_TOKEN\"\n"
    ))
    .unwrap();
    let e = Config::from_toml(&format!(
        "{BASE}{on}token_env = \"SP_CONFIG_TEST_RERANK_TOKEN_UNSET\"\n"
    ))
    .unwrap_err();
    assert!(e.to_string().contains("rerank_api.token_env"), "{e}");
    let e = Config::from_toml(&format!(
        "{BASE}{on}token_file = \"/nonexistent/secondpass-token\"\n"
    ))
    .unwrap_err();
    assert!(e.to_string().contains("rerank_api.token_file"), "{e}");
}
