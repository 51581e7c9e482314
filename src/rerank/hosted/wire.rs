//! The request and response bodies of each rerank API, and reading their error bodies.

use serde_json::{json, Map, Value};

use crate::config::Provider;
use crate::rerank::{RerankError, ScoreKind};

/// One rerank API's wire format (Cohere has two).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    CohereV2,
    CohereV1,
    Voyage,
    Jina,
    Pinecone,
    Mixedbread,
    ZeroEntropy,
    Tei,
    LlamaCpp,
    Infinity,
}

/// How the API key travels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Auth {
    /// `Authorization: Bearer <key>` (sent only when a key is configured).
    Bearer,
    /// `Api-Key: <key>` plus `X-Pinecone-Api-Version`.
    PineconeApiKey,
}

/// The Pinecone API version sent: the one the official SDK (pinecone 10.2.0) sends; its
/// rerank request and response fields are those implemented here.
pub const PINECONE_API_VERSION: &str = "2026-07";

/// Where a response keeps its results and each result's score.
struct ResultShape {
    /// Keys tried in turn for the results array; empty: the body is the array (TEI).
    array: &'static [&'static str],
    score: &'static str,
}

impl Dialect {
    pub fn of(provider: Provider, api_version: Option<&str>) -> Dialect {
        match provider {
            Provider::Cohere if api_version == Some("v1") => Dialect::CohereV1,
            Provider::Cohere => Dialect::CohereV2,
            Provider::Voyage => Dialect::Voyage,
            Provider::Jina => Dialect::Jina,
            Provider::Pinecone => Dialect::Pinecone,
            Provider::Mixedbread => Dialect::Mixedbread,
            Provider::ZeroEntropy => Dialect::ZeroEntropy,
            Provider::Tei => Dialect::Tei,
            Provider::LlamaCpp => Dialect::LlamaCpp,
            Provider::Infinity => Dialect::Infinity,
        }
    }

    /// Path appended to the base URL (after any path prefix of the base URL).
    pub fn path(self) -> &'static str {
        match self {
            Dialect::CohereV2 => "/v2/rerank",
            Dialect::CohereV1 | Dialect::Voyage | Dialect::Jina | Dialect::LlamaCpp => "/v1/rerank",
            Dialect::Pinecone | Dialect::Tei | Dialect::Infinity => "/rerank",
            Dialect::Mixedbread => "/v1/reranking",
            Dialect::ZeroEntropy => "/v1/models/rerank",
        }
    }

    pub fn auth(self) -> Auth {
        match self {
            Dialect::Pinecone => Auth::PineconeApiKey,
            _ => Auth::Bearer,
        }
    }

    /// The scale of the scores as requested by [`Dialect::request_body`].
    pub fn score_kind(self) -> ScoreKind {
        match self {
            // TEI and Infinity are asked for `raw_scores`; llama.cpp always returns the
            // classifier's raw output.
            Dialect::Tei | Dialect::LlamaCpp | Dialect::Infinity => ScoreKind::Logit,
            _ => ScoreKind::Probability,
        }
    }

    /// The JSON body asking for one score per document (`top_n`/`top_k` = all of them,
    /// documents not echoed back). `model` is `None` only for the self-hosted servers
    /// when none is configured; it is then left out.
    pub fn request_body(self, model: Option<&str>, query: &str, documents: &[String]) -> Value {
        let n = documents.len();
        let mut body = Map::new();
        let mut put = |k: &str, v: Value| {
            body.insert(k.to_string(), v);
        };
        let model_value = || Value::String(model.unwrap_or_default().to_string());
        match self {
            Dialect::CohereV2 => {
                put("model", model_value());
                put("query", json!(query));
                put("documents", json!(documents));
                put("top_n", json!(n));
            }
            Dialect::CohereV1 | Dialect::Jina => {
                put("model", model_value());
                put("query", json!(query));
                put("documents", json!(documents));
                put("top_n", json!(n));
                put("return_documents", json!(false));
            }
            Dialect::Voyage => {
                put("query", json!(query));
                put("documents", json!(documents));
                put("model", model_value());
                put("top_k", json!(n));
            }
            Dialect::Pinecone => {
                put("model", model_value());
                put("query", json!(query));
                let docs: Vec<Value> = documents.iter().map(|d| json!({ "text": d })).collect();
                put("documents", Value::Array(docs));
                put("top_n", json!(n));
                put("return_documents", json!(false));
            }
            Dialect::Mixedbread => {
                put("model", model_value());
                put("query", json!(query));
                put("input", json!(documents));
                put("top_k", json!(n));
                put("return_input", json!(false));
            }
            Dialect::ZeroEntropy => {
                put("model", model_value());
                put("query", json!(query));
                put("documents", json!(documents));
                put("top_n", json!(n));
            }
            Dialect::Tei => {
                put("query", json!(query));
                put("texts", json!(documents));
                put("truncate", json!(true));
                put("raw_scores", json!(true));
                put("return_text", json!(false));
            }
            Dialect::LlamaCpp => {
                if model.is_some() {
                    put("model", model_value());
                }
                put("query", json!(query));
                put("documents", json!(documents));
                put("top_n", json!(n));
            }
            Dialect::Infinity => {
                put("query", json!(query));
                put("documents", json!(documents));
                if model.is_some() {
                    put("model", model_value());
                }
                put("top_n", json!(n));
                put("raw_scores", json!(true));
                put("return_documents", json!(false));
            }
        }
        Value::Object(body)
    }

    fn result_shape(self) -> ResultShape {
        match self {
            Dialect::CohereV2
            | Dialect::CohereV1
            | Dialect::Jina
            | Dialect::ZeroEntropy
            | Dialect::LlamaCpp => ResultShape {
                array: &["results"],
                score: "relevance_score",
            },
            // Infinity answered `data` before it took Cohere's `results`; accept both.
            Dialect::Infinity => ResultShape {
                array: &["results", "data"],
                score: "relevance_score",
            },
            Dialect::Voyage => ResultShape {
                array: &["data"],
                score: "relevance_score",
            },
            Dialect::Pinecone | Dialect::Mixedbread => ResultShape {
                array: &["data"],
                score: "score",
            },
            Dialect::Tei => ResultShape {
                array: &[],
                score: "score",
            },
        }
    }

    /// Reads a 2xx body into one score per document, in input order, whatever order the
    /// API listed them in. Every index `0..expected` must appear exactly once.
    pub fn parse_scores(self, body: &[u8], expected: usize) -> Result<Vec<f32>, RerankError> {
        let bad = RerankError::BadResponse;
        let v: Value = serde_json::from_slice(body)
            .map_err(|e| bad(format!("not JSON ({e}): {}", snippet(body))))?;
        let shape = self.result_shape();
        let items = if shape.array.is_empty() {
            v.as_array()
        } else {
            shape
                .array
                .iter()
                .find_map(|k| v.get(*k).and_then(Value::as_array))
        }
        .ok_or_else(|| {
            let want = if shape.array.is_empty() {
                "a JSON array".to_string()
            } else {
                format!("an object with a `{}` array", shape.array[0])
            };
            bad(format!("expected {want}: {}", snippet(body)))
        })?;
        if items.len() != expected {
            return Err(RerankError::WrongCount {
                expected,
                got: items.len(),
            });
        }
        let mut scores: Vec<Option<f32>> = vec![None; expected];
        for item in items {
            let index = item
                .get("index")
                .and_then(Value::as_u64)
                .ok_or_else(|| bad(format!("a result without an integer `index`: {item}")))?;
            let score = item
                .get(shape.score)
                .and_then(Value::as_f64)
                .ok_or_else(|| {
                    bad(format!(
                        "a result without a numeric `{}`: {item}",
                        shape.score
                    ))
                })?;
            let slot = usize::try_from(index)
                .ok()
                .and_then(|i| scores.get_mut(i))
                .ok_or_else(|| {
                    bad(format!(
                        "result index {index} is out of range for {expected} documents"
                    ))
                })?;
            if slot.replace(score as f32).is_some() {
                return Err(bad(format!("result index {index} appears twice")));
            }
        }
        // Same count, no duplicates, all in range: every slot is filled.
        Ok(scores.into_iter().map(Option::unwrap_or_default).collect())
    }
}

/// A one-line description of an API's endpoint and authentication, for docs and logs.
pub fn wire(provider: Provider) -> &'static str {
    match provider {
        Provider::Cohere => {
            "POST /v2/rerank (api_version = \"v1\": POST /v1/rerank), Authorization: Bearer"
        }
        Provider::Voyage | Provider::Jina => "POST /v1/rerank, Authorization: Bearer",
        Provider::Pinecone => "POST /rerank, Api-Key, X-Pinecone-Api-Version: 2026-07",
        Provider::Mixedbread => "POST /v1/reranking, Authorization: Bearer",
        Provider::ZeroEntropy => "POST /v1/models/rerank, Authorization: Bearer",
        Provider::Tei => "POST /rerank (raw_scores), Authorization: Bearer when a key is set",
        Provider::LlamaCpp => "POST /v1/rerank, Authorization: Bearer when a key is set",
        Provider::Infinity => "POST /rerank (raw_scores), Authorization: Bearer when a key is set",
    }
}

/// Whether an error answer says the request had too many documents (so that smaller
/// batches would go through): any 413, or a 400/422 whose message says so, such as TEI's
/// `batch size 100 > maximum allowed batch size 32` or `too many documents`.
pub fn batch_too_large(status: u16, message: &str) -> bool {
    if status == 413 {
        return true;
    }
    if !matches!(status, 400 | 422) {
        return false;
    }
    let m = message.to_ascii_lowercase();
    let items = ["document", "text", "input", "passage", "item"];
    m.contains("batch size")
        || m.contains("batch too large")
        || (m.contains("too many") && items.iter().any(|i| m.contains(&format!("too many {i}"))))
        || (items.iter().any(|i| m.contains(&format!("number of {i}")))
            && ["exceed", "maximum", "at most", "more than", "too many"]
                .iter()
                .any(|w| m.contains(w)))
}

/// Longest provider message kept in an error, in characters.
pub const MAX_MESSAGE_CHARS: usize = 300;

/// The human-readable part of an error body: its `message`, `detail` or `error` field
/// (nested objects and FastAPI's `detail` lists included), else the raw text; with every
/// occurrence of `secret` replaced and cut to [`MAX_MESSAGE_CHARS`]. Empty bodies give
/// `fallback` (the status's reason phrase).
pub fn error_message(body: &[u8], secret: Option<&str>, fallback: &str) -> String {
    let text = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| message_of(&v))
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_string());
    let text = if text.is_empty() {
        fallback.to_string()
    } else {
        text
    };
    truncate(&redact(&text, secret), MAX_MESSAGE_CHARS)
}

fn message_of(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_string()),
        Value::Object(o) => ["message", "detail", "error", "msg", "title"]
            .iter()
            .find_map(|k| o.get(*k).and_then(message_of)),
        Value::Array(items) => {
            let parts: Vec<String> = items
                .iter()
                .filter_map(|item| {
                    let msg = message_of(item)?;
                    // FastAPI validation errors: {"loc": ["body", "top_n"], "msg": "..."}
                    match item.get("loc").and_then(Value::as_array) {
                        Some(loc) if !loc.is_empty() => {
                            let loc: Vec<String> = loc
                                .iter()
                                .map(|p| p.as_str().map_or_else(|| p.to_string(), str::to_string))
                                .collect();
                            Some(format!("{}: {msg}", loc.join(".")))
                        }
                        _ => Some(msg),
                    }
                })
                .collect();
            (!parts.is_empty()).then(|| parts.join("; "))
        }
        _ => None,
    }
}

/// Replaces every occurrence of `secret` (when there is one) in `text`.
pub fn redact(text: &str, secret: Option<&str>) -> String {
    match secret {
        Some(s) if !s.is_empty() => text.replace(s, "[redacted]"),
        _ => text.to_string(),
    }
}

fn truncate(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_string(),
    }
}

fn snippet(body: &[u8]) -> String {
    truncate(String::from_utf8_lossy(body).trim(), 200)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Dialect; 10] = [
        Dialect::CohereV2,
        Dialect::CohereV1,
        Dialect::Voyage,
        Dialect::Jina,
        Dialect::Pinecone,
        Dialect::Mixedbread,
        Dialect::ZeroEntropy,
        Dialect::Tei,
        Dialect::LlamaCpp,
        Dialect::Infinity,
    ];

    fn docs() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    #[test]
    fn request_bodies_match_the_documented_fields() {
        let d = docs();
        let body = |dialect: Dialect, model: Option<&str>| dialect.request_body(model, "q", &d);
        assert_eq!(
            body(Dialect::CohereV2, Some("rerank-v3.5")),
            json!({"model": "rerank-v3.5", "query": "q", "documents": ["a", "b"], "top_n": 2})
        );
        assert_eq!(
            body(Dialect::CohereV1, Some("m")),
            json!({"model": "m", "query": "q", "documents": ["a", "b"], "top_n": 2, "return_documents": false})
        );
        assert_eq!(
            body(Dialect::Voyage, Some("rerank-2")),
            json!({"query": "q", "documents": ["a", "b"], "model": "rerank-2", "top_k": 2})
        );
        assert_eq!(
            body(Dialect::Jina, Some("m")),
            json!({"model": "m", "query": "q", "documents": ["a", "b"], "top_n": 2, "return_documents": false})
        );
        assert_eq!(
            body(Dialect::Pinecone, Some("bge-reranker-v2-m3")),
            json!({"model": "bge-reranker-v2-m3", "query": "q",
                   "documents": [{"text": "a"}, {"text": "b"}], "top_n": 2, "return_documents": false})
        );
        assert_eq!(
            body(Dialect::Mixedbread, Some("m")),
            json!({"model": "m", "query": "q", "input": ["a", "b"], "top_k": 2, "return_input": false})
        );
        assert_eq!(
            body(Dialect::ZeroEntropy, Some("zerank-2")),
            json!({"model": "zerank-2", "query": "q", "documents": ["a", "b"], "top_n": 2})
        );
        assert_eq!(
            body(Dialect::Tei, None),
            json!({"query": "q", "texts": ["a", "b"], "truncate": true, "raw_scores": true, "return_text": false})
        );
        assert_eq!(
            body(Dialect::LlamaCpp, None),
            json!({"query": "q", "documents": ["a", "b"], "top_n": 2})
        );
        assert_eq!(body(Dialect::LlamaCpp, Some("m"))["model"], json!("m"));
        assert_eq!(
            body(Dialect::Infinity, None),
            json!({"query": "q", "documents": ["a", "b"], "top_n": 2, "raw_scores": true, "return_documents": false})
        );
    }

    #[test]
    fn responses_are_mapped_back_by_index() {
        let cases = [
            (
                Dialect::CohereV2,
                json!({"id": "x", "results": [{"index": 1, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.1}], "meta": {}}),
            ),
            (
                Dialect::CohereV1,
                json!({"id": "x", "results": [{"index": 1, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.1}], "meta": {}}),
            ),
            (
                Dialect::Voyage,
                json!({"object": "list", "data": [{"index": 1, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.1}], "model": "m", "usage": {}}),
            ),
            (
                Dialect::Jina,
                json!({"model": "m", "usage": {}, "results": [{"index": 1, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.1}]}),
            ),
            (
                Dialect::Pinecone,
                json!({"model": "m", "data": [{"index": 1, "score": 0.9}, {"index": 0, "score": 0.1}], "usage": {}}),
            ),
            (
                Dialect::Mixedbread,
                json!({"object": "list", "data": [{"index": 1, "score": 0.9}, {"index": 0, "score": 0.1}], "usage": {}}),
            ),
            (
                Dialect::ZeroEntropy,
                json!({"results": [{"index": 1, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.1}]}),
            ),
            (
                Dialect::Tei,
                json!([{"index": 1, "score": 0.9}, {"index": 0, "score": 0.1}]),
            ),
            (
                Dialect::LlamaCpp,
                json!({"results": [{"index": 1, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.1}]}),
            ),
            (
                Dialect::Infinity,
                json!({"object": "rerank", "results": [{"index": 1, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.1}]}),
            ),
            (
                Dialect::Infinity,
                json!({"object": "rerank", "data": [{"index": 1, "relevance_score": 0.9}, {"index": 0, "relevance_score": 0.1}]}),
            ),
        ];
        for (dialect, body) in cases {
            let got = dialect
                .parse_scores(body.to_string().as_bytes(), 2)
                .unwrap_or_else(|e| panic!("{dialect:?}: {e}"));
            assert_eq!(got, vec![0.1, 0.9], "{dialect:?}");
        }
    }

    #[test]
    fn every_index_exactly_once() {
        let d = Dialect::CohereV2;
        let parse = |v: Value, n| d.parse_scores(v.to_string().as_bytes(), n);
        let r = |i: i64| json!({"index": i, "relevance_score": 0.5});
        assert!(matches!(
            parse(json!({"results": [r(0)]}), 2),
            Err(RerankError::WrongCount {
                expected: 2,
                got: 1
            })
        ));
        assert!(
            matches!(parse(json!({"results": [r(0), r(0)]}), 2), Err(RerankError::BadResponse(m)) if m.contains("twice"))
        );
        assert!(
            matches!(parse(json!({"results": [r(0), r(2)]}), 2), Err(RerankError::BadResponse(m)) if m.contains("out of range"))
        );
        assert!(matches!(
            parse(json!({"results": [r(0), r(-1)]}), 2),
            Err(RerankError::BadResponse(_))
        ));
        assert!(
            matches!(parse(json!({"results": [{"index": 0}]}), 1), Err(RerankError::BadResponse(m)) if m.contains("relevance_score"))
        );
        assert!(
            matches!(parse(json!({"data": [r(0)]}), 1), Err(RerankError::BadResponse(m)) if m.contains("`results`"))
        );
        assert!(
            matches!(d.parse_scores(b"<html>", 1), Err(RerankError::BadResponse(m)) if m.contains("not JSON"))
        );
        assert_eq!(parse(json!({"results": []}), 0).unwrap(), Vec::<f32>::new());
    }

    #[test]
    fn paths_auth_and_scales() {
        for d in ALL {
            assert!(d.path().starts_with('/'));
            assert_eq!(d.auth() == Auth::PineconeApiKey, d == Dialect::Pinecone);
            let logit = matches!(d, Dialect::Tei | Dialect::LlamaCpp | Dialect::Infinity);
            assert_eq!(d.score_kind() == ScoreKind::Logit, logit, "{d:?}");
        }
        assert_eq!(Dialect::of(Provider::Cohere, None), Dialect::CohereV2);
        assert_eq!(Dialect::of(Provider::Cohere, Some("v2")), Dialect::CohereV2);
        assert_eq!(Dialect::of(Provider::Cohere, Some("v1")), Dialect::CohereV1);
        assert!(wire(Provider::Pinecone).contains(PINECONE_API_VERSION));
    }

    #[test]
    fn batch_too_large_answers() {
        for (status, message) in [
            (422, "batch size 100 > maximum allowed batch size 32"),
            (413, "Payload Too Large"),
            (
                400,
                "invalid request: too many documents, got 1001, max is 1000",
            ),
            (
                400,
                "The number of documents (120) exceeds the maximum allowed (100)",
            ),
            (422, "body.documents: too many texts in one request"),
        ] {
            assert!(batch_too_large(status, message), "{status} {message}");
        }
        for (status, message) in [
            (422, "the stub rejects this request"),
            (400, "query is too long"),
            (400, "document 3 exceeds the maximum number of tokens"),
            (500, "batch size 100 > maximum allowed batch size 32"),
            (401, "too many documents"),
            (429, "too many requests"),
        ] {
            assert!(!batch_too_large(status, message), "{status} {message}");
        }
    }

    #[test]
    fn error_messages_from_every_style() {
        let m = |v: Value| error_message(v.to_string().as_bytes(), None, "Bad Request");
        assert_eq!(
            m(json!({"message": "invalid api token"})),
            "invalid api token"
        );
        assert_eq!(
            m(json!({"detail": "Provided API key is invalid."})),
            "Provided API key is invalid."
        );
        assert_eq!(
            m(
                json!({"error": {"code": "UNAUTHENTICATED", "message": "Invalid API key."}, "status": 401})
            ),
            "Invalid API key."
        );
        assert_eq!(
            m(json!({"error": "Input validation error", "error_type": "Validation"})),
            "Input validation error"
        );
        assert_eq!(
            m(
                json!({"detail": [{"loc": ["body", "top_n"], "msg": "value is not a valid integer", "type": "x"}]})
            ),
            "body.top_n: value is not a valid integer"
        );
        assert_eq!(
            error_message(b"  upstream exploded ", None, "x"),
            "upstream exploded"
        );
        assert_eq!(error_message(b"", None, "Unauthorized"), "Unauthorized");
        assert_eq!(error_message(b"{}", None, "Unauthorized"), "{}");
    }

    #[test]
    fn error_messages_are_redacted_then_truncated() {
        let key = "sk-live-0123456789";
        let body = json!({"message": format!("invalid api token {key} (was {key})")}).to_string();
        let got = error_message(body.as_bytes(), Some(key), "x");
        assert_eq!(got, "invalid api token [redacted] (was [redacted])");
        // a key straddling the cut is redacted before cutting
        let long = format!("{}{key}", "é".repeat(MAX_MESSAGE_CHARS - 3));
        let got = error_message(long.as_bytes(), Some(key), "x");
        assert!(!got.contains("sk-"), "{got}");
        assert_eq!(got.chars().count(), MAX_MESSAGE_CHARS + 1);
        assert!(got.ends_with('…'));
    }
}
