//! Where a search's query text and per-request rerank options come from:
//! header `x-rerank-query`, then the body's `"rerank"` object, then a Document query.

use serde::Deserialize;
use serde_json::{Map, Value};

/// The `"rerank"` object a client may add to a search body (removed before forwarding).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Directive {
    pub query: Option<String>,
    pub enabled: Option<bool>,
    pub pool: Option<usize>,
    pub score_threshold: Option<f32>,
    /// A reranker the collection allows (`allowed_rerankers`) instead of its own.
    pub reranker: Option<String>,
    /// Report each returned point's Qdrant rank and score next to its rerank score.
    pub explain: Option<bool>,
    /// Decoder rerankers: the task instruction for this search (instead of the
    /// collection's or the reranker's).
    pub instruction: Option<String>,
}

pub const EXPLAIN_HEADER: &str = "x-rerank-explain";
pub const ENABLED_HEADER: &str = "x-rerank-enabled";
pub const POOL_HEADER: &str = "x-rerank-pool";
pub const THRESHOLD_HEADER: &str = "x-rerank-score-threshold";
pub const RERANKER_HEADER: &str = "x-rerank-reranker";
/// Percent-encoded UTF-8, like `x-rerank-query`.
pub const INSTRUCTION_HEADER: &str = "x-rerank-instruction";

impl Directive {
    /// Options sent as headers / gRPC metadata (`x-rerank-enabled`, `x-rerank-pool`,
    /// `x-rerank-score-threshold`); `get` looks a header up by name.
    pub fn from_headers<'a>(
        get: impl Fn(&str) -> Option<&'a [u8]>,
    ) -> Result<Option<Directive>, String> {
        fn parse<T: std::str::FromStr>(
            name: &str,
            raw: Option<&[u8]>,
        ) -> Result<Option<T>, String> {
            raw.map(|v| {
                std::str::from_utf8(v)
                    .ok()
                    .and_then(|s| s.trim().parse().ok())
                    .ok_or_else(|| format!("invalid value for {name}"))
            })
            .transpose()
        }
        let d = Directive {
            query: None,
            enabled: parse(ENABLED_HEADER, get(ENABLED_HEADER))?,
            pool: parse(POOL_HEADER, get(POOL_HEADER))?,
            score_threshold: parse(THRESHOLD_HEADER, get(THRESHOLD_HEADER))?,
            reranker: parse(RERANKER_HEADER, get(RERANKER_HEADER))?,
            explain: parse(EXPLAIN_HEADER, get(EXPLAIN_HEADER))?,
            instruction: get(INSTRUCTION_HEADER)
                .map(|v| {
                    percent_encoding::percent_decode(v)
                        .decode_utf8()
                        .map(|s| s.into_owned())
                        .map_err(|_| {
                            format!(
                                "header {INSTRUCTION_HEADER} is not valid percent-encoded UTF-8"
                            )
                        })
                })
                .transpose()?,
        };
        Ok((d != Directive::default()).then_some(d))
    }

    /// `specific` (a search's own options) over `general` (the request's headers).
    pub fn merge(general: Option<&Directive>, specific: Option<Directive>) -> Option<Directive> {
        match (general, specific) {
            (None, s) => s,
            (Some(g), None) => Some(g.clone()),
            (Some(g), Some(s)) => Some(Directive {
                query: s.query.or_else(|| g.query.clone()),
                enabled: s.enabled.or(g.enabled),
                pool: s.pool.or(g.pool),
                score_threshold: s.score_threshold.or(g.score_threshold),
                reranker: s.reranker.or_else(|| g.reranker.clone()),
                explain: s.explain.or(g.explain),
                instruction: s.instruction.or_else(|| g.instruction.clone()),
            }),
        }
    }
}

/// Removes and parses the `"rerank"` object of a search. An invalid one is the
/// client's error, reported in Qdrant's wording style.
pub fn take_directive(search: &mut Map<String, Value>) -> Result<Option<Directive>, String> {
    match search.remove("rerank") {
        None | Some(Value::Null) => Ok(None),
        Some(v) => serde_json::from_value::<Directive>(v)
            .map(Some)
            .map_err(|e| format!("Format error in JSON body: invalid `rerank` object: {e}")),
    }
}

/// The text of a Document query: `"query": {"text": ...}` or
/// `"query": {"nearest": {"text": ...}}`.
pub fn document_text(search: &Map<String, Value>) -> Option<String> {
    let q = search.get("query")?;
    let doc = match q.get("nearest") {
        Some(n) => n,
        None => q,
    };
    let text = doc.get("text")?.as_str()?;
    (!text.trim().is_empty()).then(|| text.to_string())
}

/// Where a search's rerank query text came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuerySource {
    /// `x-rerank-query` (gRPC: its metadata) or `"rerank": {"query": ...}`.
    Request,
    /// The search's own Document query.
    Document,
    /// The one distinct Document text in the search's prefetch tree (a hybrid query
    /// whose top-level query is a fusion or a vector).
    Prefetch,
}

impl QuerySource {
    pub fn as_str(self) -> &'static str {
        match self {
            QuerySource::Request => "request",
            QuerySource::Document => "document",
            QuerySource::Prefetch => "prefetch",
        }
    }

    /// The `rerank.query_source` value (REST) / `x-rerank-query-source` (gRPC); only
    /// [`QuerySource::Prefetch`] is reported, the other sources are where the client
    /// put the text itself.
    pub fn reported(self) -> Option<&'static str> {
        (self == QuerySource::Prefetch).then(|| self.as_str())
    }
}

/// The query text of one search, picked the same way for REST and gRPC.
#[derive(Debug, Clone, PartialEq)]
pub enum Picked {
    Text(String, QuerySource),
    /// No text named by the request or the top-level query, and this many different
    /// Document texts in the prefetch: which one is the user's question is a guess.
    Several(usize),
    Missing,
}

impl Picked {
    /// Named by the request (header or `rerank.query`), else the top-level Document
    /// text, else the one distinct Document text of the prefetch tree (`prefetch` is
    /// only walked when needed).
    pub fn resolve(
        named: Option<String>,
        document: Option<String>,
        prefetch: impl FnOnce() -> Vec<String>,
    ) -> Picked {
        let nonblank = |s: String| (!s.trim().is_empty()).then_some(s);
        if let Some(q) = named.and_then(nonblank) {
            return Picked::Text(q, QuerySource::Request);
        }
        if let Some(q) = document.and_then(nonblank) {
            return Picked::Text(q, QuerySource::Document);
        }
        let mut texts: Vec<String> = prefetch().into_iter().filter_map(nonblank).collect();
        texts.sort_unstable();
        texts.dedup();
        match texts.len() {
            0 => Picked::Missing,
            1 => Picked::Text(texts.remove(0), QuerySource::Prefetch),
            n => Picked::Several(n),
        }
    }

    pub fn text(&self) -> Option<&str> {
        match self {
            Picked::Text(t, _) => Some(t),
            _ => None,
        }
    }
}

/// The Document texts of a REST search's prefetch tree (`prefetch`: one object or a
/// list, each with a `query` and maybe its own `prefetch`), in the order they appear.
pub fn prefetch_texts(search: &Map<String, Value>) -> Vec<String> {
    fn walk(prefetch: Option<&Value>, out: &mut Vec<String>) {
        let list = match prefetch {
            Some(Value::Array(a)) => a.iter().collect(),
            Some(v @ Value::Object(_)) => vec![v],
            _ => Vec::new(),
        };
        for p in list.into_iter().filter_map(Value::as_object) {
            out.extend(document_text(p));
            walk(p.get("prefetch"), out);
        }
    }
    let mut out = Vec::new();
    walk(search.get("prefetch"), &mut out);
    out
}

/// A query text the client sent for reranking may be at most `max` bytes (a 10 MB query
/// would hold an inference worker for most of a minute).
pub fn check_len(query: &str, max: usize) -> Result<(), String> {
    if query.len() > max {
        return Err(format!(
            "rerank query is {} bytes, more than max_query_bytes ({max})",
            query.len()
        ));
    }
    Ok(())
}

/// Decodes a header value: percent-encoded UTF-8 (plain ASCII passes through).
pub fn decode_header(raw: &[u8]) -> Result<String, String> {
    let decoded = percent_encoding::percent_decode(raw)
        .decode_utf8()
        .map_err(|_| "header x-rerank-query is not valid percent-encoded UTF-8".to_string())?;
    Ok(decoded.into_owned())
}

/// Picks the query text: header first, then the directive, then the Document, then
/// the prefetch's one Document text.
pub fn pick(
    header: Option<&str>,
    directive: Option<&Directive>,
    search: &Map<String, Value>,
) -> Picked {
    let named = header
        .filter(|h| !h.trim().is_empty())
        .or_else(|| directive.and_then(|d| d.query.as_deref()));
    Picked::resolve(named.map(str::to_string), document_text(search), || {
        prefetch_texts(search)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn directive_is_removed_and_parsed() {
        let mut s = obj(
            json!({"vector": [1], "rerank": {"query": "q", "pool": 5, "enabled": true, "score_threshold": 0.5}}),
        );
        let d = take_directive(&mut s).unwrap().unwrap();
        assert_eq!(d.query.as_deref(), Some("q"));
        assert_eq!(d.pool, Some(5));
        assert_eq!(d.score_threshold, Some(0.5));
        assert!(!s.contains_key("rerank"));
    }

    #[test]
    fn bad_directive_is_an_error() {
        let mut s = obj(json!({"rerank": {"pool": "many"}}));
        assert!(take_directive(&mut s).unwrap_err().contains("rerank"));
        let mut s = obj(json!({"rerank": {"qurey": "x"}}));
        assert!(take_directive(&mut s).unwrap_err().contains("qurey"));
        let mut s = obj(json!({"rerank": "text"}));
        assert!(take_directive(&mut s).is_err());
    }

    #[test]
    fn document_forms() {
        let s = obj(json!({"query": {"text": "a b", "model": "m"}}));
        assert_eq!(document_text(&s).as_deref(), Some("a b"));
        let s = obj(json!({"query": {"nearest": {"text": "c", "model": "m"}}}));
        assert_eq!(document_text(&s).as_deref(), Some("c"));
        let s = obj(json!({"query": [0.1, 0.2]}));
        assert_eq!(document_text(&s), None);
        let s = obj(json!({"query": {"nearest": [0.1]}}));
        assert_eq!(document_text(&s), None);
    }

    #[test]
    fn precedence_header_body_document() {
        let s = obj(json!({"query": {"text": "doc"}}));
        let d = Directive {
            query: Some("body".into()),
            ..Default::default()
        };
        assert_eq!(pick(Some("hdr"), Some(&d), &s).text(), Some("hdr"));
        assert_eq!(pick(None, Some(&d), &s).text(), Some("body"));
        assert_eq!(
            pick(Some("  "), None, &s),
            Picked::Text("doc".into(), QuerySource::Document)
        );
        assert_eq!(pick(None, None, &obj(json!({}))), Picked::Missing);
    }

    fn hybrid(dense_prefetch_text: Option<&str>) -> Map<String, Value> {
        let dense = match dense_prefetch_text {
            Some(t) => json!({"query": {"text": t, "model": "m"}, "using": "dense", "limit": 20}),
            None => json!({"query": [0.1, 0.2], "using": "dense", "limit": 20}),
        };
        obj(json!({
            "prefetch": [
                dense,
                {"query": {"nearest": {"text": "wing flutter", "model": "qdrant/bm25"}},
                 "using": "bm25", "limit": 20}
            ],
            "query": {"fusion": "rrf"},
            "limit": 5
        }))
    }

    #[test]
    fn hybrid_takes_the_one_prefetch_text() {
        assert_eq!(
            pick(None, None, &hybrid(None)),
            Picked::Text("wing flutter".into(), QuerySource::Prefetch)
        );
        // The same text in both branches (a dense Document and the BM25 one) is one text.
        assert_eq!(
            pick(None, None, &hybrid(Some("wing flutter"))),
            Picked::Text("wing flutter".into(), QuerySource::Prefetch)
        );
        // Nested prefetches and a single-object prefetch are walked too.
        let nested = obj(json!({
            "prefetch": {"prefetch": {"query": {"text": "deep", "model": "m"}}, "query": [0.1]},
            "query": {"fusion": "dbsf"}
        }));
        assert_eq!(
            pick(None, None, &nested),
            Picked::Text("deep".into(), QuerySource::Prefetch)
        );
        assert_eq!(QuerySource::Prefetch.reported(), Some("prefetch"));
        assert_eq!(QuerySource::Document.reported(), None);
    }

    #[test]
    fn hybrid_with_different_texts_is_several() {
        assert_eq!(pick(None, None, &hybrid(Some("other"))), Picked::Several(2));
        // Blank texts do not count.
        assert_eq!(
            pick(None, None, &hybrid(Some("  "))),
            Picked::Text("wing flutter".into(), QuerySource::Prefetch)
        );
    }

    #[test]
    fn request_and_top_level_document_win_over_the_prefetch() {
        let mut s = hybrid(Some("other"));
        assert_eq!(
            pick(Some("hdr"), None, &s),
            Picked::Text("hdr".into(), QuerySource::Request)
        );
        s.insert("query".into(), json!({"text": "top", "model": "m"}));
        assert_eq!(
            pick(None, None, &s),
            Picked::Text("top".into(), QuerySource::Document)
        );
        // The prefetch is only walked when nothing else named a text.
        let walked = std::cell::Cell::new(false);
        let p = Picked::resolve(Some("q".into()), None, || {
            walked.set(true);
            Vec::new()
        });
        assert_eq!(p, Picked::Text("q".into(), QuerySource::Request));
        assert!(!walked.get());
    }

    #[test]
    fn header_directives_parse_and_merge() {
        let headers = [
            ("x-rerank-enabled", "false"),
            ("x-rerank-pool", "40"),
            ("x-rerank-explain", "true"),
            ("x-rerank-instruction", "Find%20laws%20%C2%A7"),
        ];
        let get = |n: &str| {
            headers
                .iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.as_bytes())
        };
        let h = Directive::from_headers(get).unwrap().unwrap();
        assert_eq!(h.enabled, Some(false));
        assert_eq!(h.pool, Some(40));
        assert_eq!(h.explain, Some(true));
        assert_eq!(h.instruction.as_deref(), Some("Find laws §"));
        let body = Directive {
            enabled: Some(true),
            instruction: Some("body's".into()),
            ..Default::default()
        };
        let m = Directive::merge(Some(&h), Some(body)).unwrap();
        assert_eq!((m.enabled, m.pool), (Some(true), Some(40)));
        assert_eq!(m.instruction.as_deref(), Some("body's"), "the body wins");
        let bad = |n: &str| (n == "x-rerank-instruction").then_some(&b"%FF"[..]);
        assert!(Directive::from_headers(bad)
            .unwrap_err()
            .contains("x-rerank-instruction"));
        assert_eq!(Directive::from_headers(|_| None).unwrap(), None);
        let bad = |n: &str| (n == "x-rerank-pool").then_some(&b"lots"[..]);
        assert!(Directive::from_headers(bad)
            .unwrap_err()
            .contains("x-rerank-pool"));
    }

    #[test]
    fn query_length_cap() {
        assert!(check_len("abcd", 4).is_ok());
        let e = check_len("abcde", 4).unwrap_err();
        assert!(
            e.contains("5 bytes") && e.contains("max_query_bytes (4)"),
            "{e}"
        );
    }

    #[test]
    fn header_percent_decoding() {
        assert_eq!(
            decode_header(b"caf%C3%A9%20au%20lait").unwrap(),
            "café au lait"
        );
        assert_eq!(decode_header(b"plain words").unwrap(), "plain words");
        assert!(decode_header(b"%FF%FE").is_err());
    }
}
