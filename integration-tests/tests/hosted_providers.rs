//! `HostedReranker` against local stubs of every rerank API it speaks: scores in input
//! order, authentication, retries (429 with Retry-After, 5xx), errors that are not retried,
//! deadlines, and splitting large requests. Each test runs all providers concurrently.

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use futures_util::future::join_all;
use serde_json::{json, Value};

use secondpass::config::{HostedConfig, Provider};
use secondpass::rerank::hosted::{parse_http_date, HostedReranker};
use secondpass::rerank::{RerankError, RerankRequest, Reranker, ScoreKind};
use secondpass_it::provider_stubs::{
    expected_score, http_date, Api, Behaviour, ProviderStub, RetryAfter, StubOptions,
};

/// A provider and API version secondpass can be configured with.
#[derive(Debug, Clone, Copy)]
struct Case {
    provider: Provider,
    cohere_v1: bool,
}

impl Case {
    fn api(self) -> Api {
        Api::from_name(self.provider.name()).expect("a stub for every provider")
    }

    fn label(self) -> String {
        if self.cohere_v1 {
            "cohere-v1".into()
        } else {
            self.provider.name().into()
        }
    }

    fn path(self) -> &'static str {
        match (self.provider, self.cohere_v1) {
            (Provider::Cohere, false) => "/v2/rerank",
            (Provider::Cohere, true)
            | (Provider::Voyage, _)
            | (Provider::Jina, _)
            | (Provider::LlamaCpp, _) => "/v1/rerank",
            (Provider::Pinecone, _) | (Provider::Tei, _) | (Provider::Infinity, _) => "/rerank",
            (Provider::Mixedbread, _) => "/v1/reranking",
            (Provider::ZeroEntropy, _) => "/v1/models/rerank",
        }
    }
}

fn cases() -> Vec<Case> {
    let mut v: Vec<Case> = [
        Provider::Cohere,
        Provider::Voyage,
        Provider::Jina,
        Provider::Pinecone,
        Provider::Mixedbread,
        Provider::ZeroEntropy,
        Provider::Tei,
        Provider::LlamaCpp,
        Provider::Infinity,
    ]
    .into_iter()
    .map(|provider| Case {
        provider,
        cohere_v1: false,
    })
    .collect();
    v.insert(
        1,
        Case {
            provider: Provider::Cohere,
            cohere_v1: true,
        },
    );
    v
}

const QUERY: &str = "capital city of Germany";

/// Overlaps 0.5, 1.0, 0.0, 0.25: the best-first order differs from the input order.
fn documents() -> Vec<String> {
    [
        "Paris is the capital of France",
        "Berlin is the capital city of Germany",
        "Bananas are yellow",
        "Germany borders nine countries",
    ]
    .map(String::from)
    .to_vec()
}

fn key_for(label: &str) -> String {
    format!("sk-test-{label}-0123456789abcdef")
}

/// A key file unique to this test and case (no shared environment variables).
fn key_file(test: &str, label: &str, key: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!(
        "secondpass-hosted-{}-{test}-{label}.key",
        std::process::id()
    ));
    std::fs::write(&p, format!("{key}\n")).unwrap();
    p
}

/// The reranker config for a case pointing at `url`, with `extra` settings on top.
fn config(case: Case, url: &str, key_path: Option<&PathBuf>, extra: Value) -> HostedConfig {
    let mut c = json!({
        "base_url": url,
        "timeout_ms": 5000,
        "max_retries": 2,
    });
    if case.provider.needs_key() {
        c["model"] = json!(format!("{}-rerank-model", case.provider.name()));
    }
    if let Some(p) = key_path {
        c["api_key_file"] = json!(p);
    }
    if case.cohere_v1 {
        c["api_version"] = json!("v1");
    }
    for (k, v) in extra.as_object().unwrap() {
        c[k] = v.clone();
    }
    serde_json::from_value(c).expect("a valid hosted reranker config")
}

struct Setup {
    stub: ProviderStub,
    reranker: HostedReranker,
    key: String,
    key_path: PathBuf,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.key_path);
    }
}

/// A stub with `behaviour` and a reranker pointed at it, sharing a key.
async fn setup(test: &str, case: Case, behaviour: Behaviour, extra: Value) -> Setup {
    let label = case.label();
    let key = key_for(&label);
    let stub = ProviderStub::start(
        case.api(),
        StubOptions {
            api_key: Some(key.clone()),
            behaviour,
            ..Default::default()
        },
    )
    .await;
    let key_path = key_file(test, &label, &key);
    let cfg = config(case, &stub.url(), Some(&key_path), extra);
    let reranker = HostedReranker::new(&label, case.provider, &cfg).expect("reranker");
    Setup {
        stub,
        reranker,
        key,
        key_path,
    }
}

fn request(documents: Vec<String>, deadline: Option<Instant>) -> RerankRequest {
    RerankRequest {
        deadline,
        ..RerankRequest::new(QUERY, documents)
    }
}

fn expected(case: Case, documents: &[String]) -> Vec<f32> {
    documents
        .iter()
        .map(|d| expected_score(case.api(), QUERY, d))
        .collect()
}

fn assert_scores(label: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{label}: {got:?} vs {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert!((g - w).abs() < 1e-5, "{label}: got {got:?}, want {want:?}");
    }
}

#[tokio::test]
async fn scores_come_back_in_input_order_with_the_documented_request() {
    let runs = cases().into_iter().map(|case| async move {
        let s = setup("order", case, Behaviour::Normal, json!({})).await;
        let label = case.label();
        let docs = documents();
        let got = s.reranker.rerank(request(docs.clone(), None)).await;
        let got = got.unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_scores(&label, &got, &expected(case, &docs));
        let want_kind = if case.api().logits() {
            ScoreKind::Logit
        } else {
            ScoreKind::Probability
        };
        assert_eq!(s.reranker.score_kind(), want_kind, "{label}");

        let log = s.stub.request_log();
        assert_eq!(log.len(), 1, "{label}");
        let r = &log[0];
        assert_eq!(
            (r.method.as_str(), r.path.as_str()),
            ("POST", case.path()),
            "{label}"
        );
        assert_eq!(r.status, 200, "{label}");
        assert_eq!(r.document_count(), 4, "{label}");
        let body = r.body.as_ref().unwrap();
        match case.provider {
            Provider::Pinecone => {
                assert_eq!(r.header("api-key"), Some(s.key.as_str()), "{label}");
                assert_eq!(r.header("x-pinecone-api-version"), Some("2026-07"));
                assert_eq!(r.header("authorization"), None, "{label}");
            }
            _ => {
                let bearer = format!("Bearer {}", s.key);
                assert_eq!(r.header("authorization"), Some(bearer.as_str()), "{label}");
            }
        }
        // every score asked for, documents not echoed, raw scores where there is a choice
        let top = match case.provider {
            Provider::Voyage | Provider::Mixedbread => Some(&body["top_k"]),
            Provider::Tei => None,
            _ => Some(&body["top_n"]),
        };
        if let Some(top) = top {
            assert_eq!(top, &json!(4), "{label}: {body}");
        }
        for flag in ["return_documents", "return_input", "return_text"] {
            if let Some(v) = body.get(flag) {
                assert_eq!(v, &json!(false), "{label}: {flag}");
            }
        }
        if matches!(case.provider, Provider::Tei | Provider::Infinity) {
            assert_eq!(body["raw_scores"], json!(true), "{label}");
        }
        if case.provider == Provider::Tei {
            assert_eq!(body["truncate"], json!(true), "{label}");
        }
    });
    join_all(runs).await;
}

#[tokio::test]
async fn unauthorized_is_not_retried_and_never_shows_the_key() {
    let runs = cases().into_iter().map(|case| async move {
        let label = case.label();
        let stub = ProviderStub::start(
            case.api(),
            StubOptions {
                api_key: Some("the-right-key".into()),
                ..Default::default()
            },
        )
        .await;
        // the stub quotes the credential it got in its 401 message
        let wrong = format!("sk-wrong-{label}-9876543210");
        let path = key_file("unauth", &label, &wrong);
        let cfg = config(case, &stub.url(), Some(&path), json!({"max_retries": 3}));
        let r = HostedReranker::new(&label, case.provider, &cfg).unwrap();
        let err = r.rerank(request(documents(), None)).await.unwrap_err();
        std::fs::remove_file(&path).unwrap();
        match &err {
            RerankError::Provider {
                status: 401,
                message,
            } => {
                assert!(!message.trim().is_empty(), "{label}: empty message");
            }
            other => panic!("{label}: expected a 401, got {other:?}"),
        }
        assert_eq!(err.kind(), "http_4xx");
        let shown = format!("{err} {err:?} {r:?}");
        assert!(!shown.contains(&wrong), "{label}: key leaked: {shown}");
        if case.provider != Provider::Tei {
            // TEI's 401 has no body; the others quoted the key, which must be blanked out
            assert!(shown.contains("[redacted]"), "{label}: {shown}");
        }
        assert_eq!(stub.calls(), 1, "{label}: a 401 is not retried");
    });
    join_all(runs).await;
}

#[tokio::test]
async fn unprocessable_is_not_retried() {
    let runs = cases().into_iter().map(|case| async move {
        let label = case.label();
        let s = setup("422", case, Behaviour::Reject422, json!({"max_retries": 3})).await;
        let err = s
            .reranker
            .rerank(request(documents(), None))
            .await
            .unwrap_err();
        match &err {
            RerankError::Provider {
                status: 422,
                message,
            } => {
                assert!(
                    message.contains("the stub rejects this request"),
                    "{label}: {message}"
                );
            }
            other => panic!("{label}: expected a 422, got {other:?}"),
        }
        assert_eq!(err.kind(), "http_4xx");
        assert_eq!(s.stub.calls(), 1, "{label}");
    });
    join_all(runs).await;
}

/// The gap between the first (429) and second request.
fn retry_gap(stub: &ProviderStub) -> Duration {
    let log = stub.request_log();
    assert_eq!(log.len(), 2, "{:?}", stub.api);
    assert_eq!((log[0].status, log[1].status), (429, 200));
    log[1].at.duration_since(log[0].at)
}

#[tokio::test]
async fn rate_limited_waits_for_retry_after_seconds() {
    let runs = cases().into_iter().map(|case| async move {
        let label = case.label();
        let b = Behaviour::RateLimitedThenOk(RetryAfter::Seconds(1));
        let s = setup("429s", case, b, json!({})).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        let docs = documents();
        let got = s
            .reranker
            .rerank(request(docs.clone(), Some(deadline)))
            .await;
        let got = got.unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_scores(&label, &got, &expected(case, &docs));
        let gap = retry_gap(&s.stub);
        assert!(
            gap >= Duration::from_millis(950) && gap < Duration::from_millis(1800),
            "{label}: waited {gap:?} for Retry-After: 1"
        );
    });
    join_all(runs).await;
}

#[tokio::test]
async fn rate_limited_waits_for_retry_after_http_date() {
    let runs = cases().into_iter().map(|case| async move {
        let label = case.label();
        let b = Behaviour::RateLimitedThenOk(RetryAfter::HttpDate { secs_from_now: 2 });
        let s = setup("429d", case, b, json!({})).await;
        let deadline = Instant::now() + Duration::from_secs(10);
        let got = s
            .reranker
            .rerank(request(documents(), Some(deadline)))
            .await;
        assert!(got.is_ok(), "{label}: {got:?}");
        // a date two seconds ahead, written in whole seconds: a wait of 1 to 2 s
        let gap = retry_gap(&s.stub);
        assert!(
            gap >= Duration::from_millis(900) && gap < Duration::from_millis(2800),
            "{label}: waited {gap:?} for a date 2 s ahead"
        );
    });
    join_all(runs).await;
}

#[tokio::test]
async fn rate_limit_waits_past_the_deadline_fail_at_once() {
    let runs = cases().into_iter().map(|case| async move {
        let label = case.label();
        let b = Behaviour::RateLimitedThenOk(RetryAfter::Seconds(30));
        let s = setup("429late", case, b, json!({})).await;
        let started = Instant::now();
        let deadline = started + Duration::from_secs(2);
        let err = s
            .reranker
            .rerank(request(documents(), Some(deadline)))
            .await
            .unwrap_err();
        assert!(
            matches!(err, RerankError::RateLimited(_)),
            "{label}: {err:?}"
        );
        assert_eq!(err.kind(), "rate_limited");
        assert!(
            started.elapsed() < Duration::from_millis(1000),
            "{label}: it waited"
        );
        assert_eq!(s.stub.calls(), 1, "{label}");
    });
    join_all(runs).await;
}

#[tokio::test]
async fn server_error_then_ok_is_retried() {
    let runs = cases().into_iter().map(|case| async move {
        let label = case.label();
        let s = setup("500ok", case, Behaviour::ServerErrorThenOk, json!({})).await;
        let docs = documents();
        let got = s.reranker.rerank(request(docs.clone(), None)).await;
        let got = got.unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_scores(&label, &got, &expected(case, &docs));
        let statuses: Vec<u16> = s.stub.request_log().iter().map(|r| r.status).collect();
        assert_eq!(statuses, [500, 200], "{label}");
    });
    join_all(runs).await;
}

#[tokio::test]
async fn always_server_error_gives_up_after_max_retries() {
    let runs = cases().into_iter().map(|case| async move {
        let label = case.label();
        let s = setup(
            "500",
            case,
            Behaviour::AlwaysServerError,
            json!({"max_retries": 2}),
        )
        .await;
        let started = Instant::now();
        let err = s
            .reranker
            .rerank(request(documents(), None))
            .await
            .unwrap_err();
        match &err {
            RerankError::Provider {
                status: 500,
                message,
            } => {
                assert!(
                    message.contains("internal server error"),
                    "{label}: {message}"
                );
            }
            other => panic!("{label}: expected a 500, got {other:?}"),
        }
        assert_eq!(err.kind(), "http_5xx");
        assert_eq!(s.stub.calls(), 3, "{label}: 1 attempt + 2 retries");
        // backoff 100 ms and 200 ms, ±50%
        let e = started.elapsed();
        assert!(
            e >= Duration::from_millis(150) && e < Duration::from_millis(2000),
            "{label}: {e:?}"
        );

        let s = setup(
            "500none",
            case,
            Behaviour::AlwaysServerError,
            json!({"max_retries": 0}),
        )
        .await;
        assert!(s.reranker.rerank(request(documents(), None)).await.is_err());
        assert_eq!(s.stub.calls(), 1, "{label}: max_retries = 0");
    });
    join_all(runs).await;
}

#[tokio::test]
async fn slow_answers_time_out_within_the_deadline() {
    let runs = cases().into_iter().map(|case| async move {
        let label = case.label();
        let slow = Behaviour::Slow(Duration::from_secs(5));
        // the deadline is shorter than the per-call timeout
        let s = setup(
            "slow-deadline",
            case,
            slow.clone(),
            json!({"timeout_ms": 10_000}),
        )
        .await;
        let started = Instant::now();
        let deadline = started + Duration::from_millis(400);
        let err = s
            .reranker
            .rerank(request(documents(), Some(deadline)))
            .await
            .unwrap_err();
        let e = started.elapsed();
        assert!(matches!(err, RerankError::Timeout(_)), "{label}: {err:?}");
        assert_eq!(err.kind(), "timeout");
        // Ignoring the deadline would wait for the stub (5 s) or the timeout (10 s):
        // 3 s tells them apart with room for ten cases at once on 2 busy cores.
        assert!(
            e >= Duration::from_millis(350) && e < Duration::from_secs(3),
            "{label}: {e:?}"
        );
        assert_eq!(s.stub.calls(), 1, "{label}: timeouts are not retried");

        // the per-call timeout is shorter than the deadline
        let s = setup("slow-timeout", case, slow, json!({"timeout_ms": 300})).await;
        let started = Instant::now();
        let deadline = started + Duration::from_millis(4500);
        let err = s
            .reranker
            .rerank(request(documents(), Some(deadline)))
            .await
            .unwrap_err();
        let e = started.elapsed();
        assert!(matches!(err, RerankError::Timeout(300)), "{label}: {err:?}");
        // Ignoring the timeout would wait for the deadline (4.5 s) or the stub (5 s).
        assert!(
            e >= Duration::from_millis(250) && e < Duration::from_secs(3),
            "{label}: {e:?}"
        );
    });
    join_all(runs).await;
}

#[tokio::test]
async fn large_requests_are_split_and_merged_in_order() {
    let runs = cases().into_iter().map(|case| async move {
        let label = case.label();
        let s = setup(
            "split",
            case,
            Behaviour::Normal,
            json!({"max_documents": 3}),
        )
        .await;
        let docs: Vec<String> = [
            "Germany",
            "capital",
            "nothing here",
            "capital city of Germany",
            "the city",
            "of Germany",
            "capital of Germany and its city",
        ]
        .map(String::from)
        .to_vec();
        let got = s.reranker.rerank(request(docs.clone(), None)).await;
        let got = got.unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_scores(&label, &got, &expected(case, &docs));
        let log = s.stub.request_log();
        assert_eq!(log.len(), 3, "{label}");
        let mut sizes: Vec<usize> = log.iter().map(|r| r.document_count()).collect();
        sizes.sort();
        assert_eq!(sizes, [1, 3, 3], "{label}");
    });
    join_all(runs).await;
}

#[tokio::test]
async fn huge_retry_after_fails_at_once_and_never_panics() {
    let runs = cases().into_iter().map(|case| async move {
        let label = case.label();
        for value in [
            "18446744073709551615",
            "99999999999999",
            "Fri, 31 Dec 9999 23:59:59 GMT",
        ] {
            for deadline in [Some(Duration::from_secs(2)), None] {
                let b = Behaviour::RateLimitedThenOk(RetryAfter::Raw(value));
                let s = setup("429huge", case, b, json!({})).await;
                let started = Instant::now();
                let err = s
                    .reranker
                    .rerank(request(documents(), deadline.map(|d| started + d)))
                    .await
                    .unwrap_err();
                assert!(
                    matches!(err, RerankError::RateLimited(_)),
                    "{label} {value}: {err:?}"
                );
                assert!(
                    started.elapsed() < Duration::from_millis(1000),
                    "{label} {value}: it waited"
                );
                assert_eq!(s.stub.calls(), 1, "{label} {value}");
            }
        }
    });
    join_all(runs).await;
}

/// `n` documents, all different, some matching the query.
fn many_documents(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| match i % 3 {
            0 => format!("capital city {i}"),
            1 => format!("Germany {i} and its capital city"),
            _ => format!("nothing {i}"),
        })
        .collect()
}

#[tokio::test]
async fn default_batch_sizes_are_what_each_server_accepts() {
    let runs = cases().into_iter().map(|case| async move {
        let label = case.label();
        // no max_documents: the provider's default
        let s = setup("defaults", case, Behaviour::Normal, json!({})).await;
        let docs = many_documents(120);
        let got = s.reranker.rerank(request(docs.clone(), None)).await;
        let got = got.unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_scores(&label, &got, &expected(case, &docs));
        let log = s.stub.request_log();
        assert!(log.iter().all(|r| r.status == 200), "{label}: refused");
        let biggest = log.iter().map(|r| r.document_count()).max().unwrap();
        let want = case.provider.default_max_documents().min(120);
        assert_eq!(biggest, want, "{label}");
        if let Some(max) = case.api().max_documents() {
            assert!(biggest <= max, "{label}");
        }
        assert_eq!(
            s.reranker.max_documents(),
            case.provider.default_max_documents()
        );
    });
    join_all(runs).await;
    assert_eq!(Provider::Tei.default_max_documents(), 32);
}

#[tokio::test]
async fn batches_refused_as_too_large_are_halved_and_the_size_remembered() {
    let runs = cases().into_iter().map(|case| async move {
        let label = case.label();
        let stub = ProviderStub::start(
            case.api(),
            StubOptions {
                api_key: Some(key_for(&label)),
                max_documents: Some(25),
                ..Default::default()
            },
        )
        .await;
        let path = key_file("halves", &label, &key_for(&label));
        // TEI's old default: 100 documents a call, where the server takes 25
        let cfg = config(
            case,
            &stub.url(),
            Some(&path),
            json!({"max_documents": 100}),
        );
        let r = HostedReranker::new(&label, case.provider, &cfg).unwrap();
        std::fs::remove_file(&path).unwrap();
        let docs = many_documents(100);
        let got = r.rerank(request(docs.clone(), None)).await;
        let got = got.unwrap_or_else(|e| panic!("{label}: {e}"));
        assert_scores(&label, &got, &expected(case, &docs));
        let log = stub.request_log();
        // 100 refused, 2 × 50 refused, 4 × 25 answered
        let mut statuses: Vec<(usize, u16)> =
            log.iter().map(|r| (r.document_count(), r.status)).collect();
        statuses.sort();
        let refused = case.api().validation_status();
        assert_eq!(
            statuses,
            [
                (25, 200),
                (25, 200),
                (25, 200),
                (25, 200),
                (50, refused),
                (50, refused),
                (100, refused)
            ],
            "{label}"
        );
        assert_eq!(r.max_documents(), 25, "{label}: the smaller size is kept");
        // the next request goes out in batches the server takes
        let got = r.rerank(request(docs.clone(), None)).await.unwrap();
        assert_scores(&label, &got, &expected(case, &docs));
        let later: Vec<(usize, u16)> = stub.request_log()[log.len()..]
            .iter()
            .map(|r| (r.document_count(), r.status))
            .collect();
        assert_eq!(later, [(25, 200); 4], "{label}");
    });
    join_all(runs).await;
}

#[tokio::test]
async fn base_urls_written_as_the_sdks_write_them_do_not_double_the_version() {
    let runs = cases().into_iter().map(|case| async move {
        let label = case.label();
        let Some(version) = case
            .path()
            .strip_prefix('/')
            .and_then(|p| p.split_once('/'))
            .map(|(v, _)| v)
            .filter(|v| v.starts_with('v'))
        else {
            return; // /rerank: no version segment
        };
        let stub = ProviderStub::start(
            case.api(),
            StubOptions {
                api_key: Some(key_for(&label)),
                ..Default::default()
            },
        )
        .await;
        let path = key_file("sdkbase", &label, &key_for(&label));
        // e.g. https://api.voyageai.com/v1, as the Voyage and ZeroEntropy SDKs write it
        for base in [
            format!("{}/{version}", stub.url()),
            format!("{}/{version}/", stub.url()),
        ] {
            let cfg = config(case, &base, Some(&path), json!({}));
            let r = HostedReranker::new(&label, case.provider, &cfg).unwrap();
            let got = r.rerank(request(documents(), None)).await;
            assert!(got.is_ok(), "{label} {base}: {got:?}");
        }
        std::fs::remove_file(&path).unwrap();
        for r in stub.request_log() {
            assert_eq!(r.path, case.path(), "{label}");
        }
    });
    join_all(runs).await;
}

#[tokio::test]
async fn base_url_path_prefixes_are_kept() {
    let runs = cases().into_iter().map(|case| async move {
        let label = case.label();
        let stub = ProviderStub::start(
            case.api(),
            StubOptions {
                api_key: Some(key_for(&label)),
                path_prefix: format!("/gateway/{label}"),
                ..Default::default()
            },
        )
        .await;
        let path = key_file("prefix", &label, &key_for(&label));
        // with a trailing slash on the base URL
        let cfg = config(case, &format!("{}/", stub.url()), Some(&path), json!({}));
        let r = HostedReranker::new(&label, case.provider, &cfg).unwrap();
        let got = r.rerank(request(documents(), None)).await;
        std::fs::remove_file(&path).unwrap();
        assert!(got.is_ok(), "{label}: {got:?}");
        assert_eq!(stub.request_log()[0].path, case.path());
    });
    join_all(runs).await;
}

#[tokio::test]
async fn self_hosted_servers_without_a_key_send_no_authorization() {
    let runs = [Provider::Tei, Provider::LlamaCpp, Provider::Infinity]
        .into_iter()
        .map(|provider| async move {
            let case = Case {
                provider,
                cohere_v1: false,
            };
            let stub = ProviderStub::start(case.api(), StubOptions::default()).await;
            let cfg = config(case, &stub.url(), None, json!({}));
            let r = HostedReranker::new("local", provider, &cfg).unwrap();
            assert_eq!(r.model(), provider.name());
            let got = r.rerank(request(documents(), None)).await.unwrap();
            assert_scores(provider.name(), &got, &expected(case, &documents()));
            let log = stub.request_log();
            assert_eq!(log[0].header("authorization"), None);
            assert!(log[0].body.as_ref().unwrap().get("model").is_none());

            // a model, when configured, is sent
            let cfg = config(
                case,
                &stub.url(),
                None,
                json!({"model": "bge-reranker-v2-m3"}),
            );
            let r = HostedReranker::new("local", provider, &cfg).unwrap();
            r.rerank(request(documents(), None)).await.unwrap();
            let log = stub.request_log();
            let body = log[1].body.as_ref().unwrap();
            if provider == Provider::Tei {
                assert!(body.get("model").is_none(), "TEI takes no model");
            } else {
                assert_eq!(body["model"], json!("bge-reranker-v2-m3"));
            }
        });
    join_all(runs).await;
}

#[tokio::test]
async fn unreachable_servers_are_transport_errors() {
    // a port that was just free: connection refused, retried, then reported
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let case = Case {
        provider: Provider::Tei,
        cohere_v1: false,
    };
    let cfg = config(
        case,
        &format!("http://{addr}"),
        None,
        json!({"max_retries": 1}),
    );
    let r = HostedReranker::new("down", Provider::Tei, &cfg).unwrap();
    let err = r.rerank(request(documents(), None)).await.unwrap_err();
    assert!(matches!(err, RerankError::Transport(_)), "{err:?}");
    assert_eq!(err.kind(), "connect");
}

#[tokio::test]
async fn missing_key_sources_are_named() {
    let case = Case {
        provider: Provider::Voyage,
        cohere_v1: false,
    };
    let cfg = config(
        case,
        "http://127.0.0.1:1",
        None,
        json!({"api_key_env": "SECONDPASS_HOSTED_TEST_UNSET_VARIABLE"}),
    );
    let err = HostedReranker::new("v", Provider::Voyage, &cfg).unwrap_err();
    assert!(
        err.contains("SECONDPASS_HOSTED_TEST_UNSET_VARIABLE"),
        "{err}"
    );
}

/// Sends raw requests to a stub, bypassing secondpass's client.
async fn raw_post(url: &str, headers: &[(&str, &str)], body: &str) -> (u16, Value) {
    use http_body_util::{BodyExt, Full};
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<bytes::Bytes>>();
    let mut req = http::Request::post(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = client
        .request(
            req.body(Full::new(bytes::Bytes::from(body.to_string())))
                .unwrap(),
        )
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

#[tokio::test]
async fn stubs_enforce_the_documented_request() {
    let key = "k1";
    let opts = || StubOptions {
        api_key: Some(key.into()),
        ..Default::default()
    };
    let json_ct = ("content-type", "application/json");
    let bearer = ("authorization", "Bearer k1");

    // Cohere v2: an undocumented field (v1's return_documents) is a 400 with `message`
    let stub = ProviderStub::start(Api::Cohere, opts()).await;
    let url = format!("{}/v2/rerank", stub.url());
    let good = json!({"model": "m", "query": "q", "documents": ["a"], "top_n": 1});
    assert_eq!(
        raw_post(&url, &[json_ct, bearer], &good.to_string())
            .await
            .0,
        200
    );
    let mut extra = good.clone();
    extra["return_documents"] = json!(false);
    let (status, body) = raw_post(&url, &[json_ct, bearer], &extra.to_string()).await;
    assert_eq!(status, 400);
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("return_documents"),
        "{body}"
    );
    // wrong key, missing key, wrong path, missing content type
    assert_eq!(
        raw_post(
            &url,
            &[json_ct, ("authorization", "Bearer k2")],
            &good.to_string()
        )
        .await
        .0,
        401
    );
    assert_eq!(raw_post(&url, &[json_ct], &good.to_string()).await.0, 401);
    let v3 = format!("{}/v3/rerank", stub.url());
    assert_eq!(
        raw_post(&v3, &[json_ct, bearer], &good.to_string()).await.0,
        404
    );
    assert_eq!(raw_post(&url, &[bearer], &good.to_string()).await.0, 415);

    // Pinecone: Api-Key, not Bearer; the version header; documents as {text} objects
    let stub = ProviderStub::start(Api::Pinecone, opts()).await;
    let url = format!("{}/rerank", stub.url());
    let good = json!({"model": "m", "query": "q", "documents": [{"text": "a"}], "return_documents": false});
    let version = ("x-pinecone-api-version", "2026-07");
    let api_key = ("api-key", "k1");
    assert_eq!(
        raw_post(&url, &[json_ct, api_key, version], &good.to_string())
            .await
            .0,
        200
    );
    let (status, body) = raw_post(&url, &[json_ct, bearer, version], &good.to_string()).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], json!("UNAUTHENTICATED"));
    assert_eq!(
        raw_post(&url, &[json_ct, api_key], &good.to_string())
            .await
            .0,
        400
    );
    let strings = json!({"model": "m", "query": "q", "documents": ["a"]});
    assert_eq!(
        raw_post(&url, &[json_ct, api_key, version], &strings.to_string())
            .await
            .0,
        400
    );

    // Mixedbread: `input`, not `documents`; FastAPI-style 422
    let stub = ProviderStub::start(Api::Mixedbread, opts()).await;
    let url = format!("{}/v1/reranking", stub.url());
    let wrong = json!({"model": "m", "query": "q", "documents": ["a"]});
    let (status, body) = raw_post(&url, &[json_ct, bearer], &wrong.to_string()).await;
    assert_eq!(status, 422);
    assert_eq!(body["detail"][0]["loc"], json!(["body", "documents"]));

    // TEI: sigmoid unless raw_scores; results best first, never input order
    let stub = ProviderStub::start(Api::Tei, StubOptions::default()).await;
    let url = format!("{}/rerank", stub.url());
    let req = json!({"query": "a b", "texts": ["x", "a b", "a"]});
    let (status, body) = raw_post(&url, &[json_ct], &req.to_string()).await;
    assert_eq!(status, 200);
    let order: Vec<u64> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(order, [1, 2, 0]);
    let top = body[0]["score"].as_f64().unwrap();
    assert!(top > 0.0 && top < 1.0, "sigmoid applied: {top}");
    let mut raw = req.clone();
    raw["raw_scores"] = json!(true);
    let (_, body) = raw_post(&url, &[json_ct], &raw.to_string()).await;
    assert_eq!(body[0]["score"].as_f64().unwrap(), 4.0);
    let mut unknown = req;
    unknown["top_n"] = json!(3);
    assert_eq!(
        raw_post(&url, &[json_ct], &unknown.to_string()).await.0,
        422
    );
}

#[test]
fn stub_http_dates_parse_back() {
    for secs in [0u64, 784_111_777, 951_782_400, 1_835_481_599, 4_102_444_800] {
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(secs);
        let s = http_date(t);
        assert_eq!(parse_http_date(&s), Some(t), "{s}");
    }
    assert_eq!(
        http_date(SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777)),
        "Sun, 06 Nov 1994 08:49:37 GMT"
    );
}
