//! What each rerank API accepts and answers, written from the providers' documentation
//! (independently of secondpass's client): request fields and types, authentication, the
//! response shape, and the error body style.

use serde_json::{json, Map, Value};

use super::Api;

/// JSON types of request fields.
#[derive(Debug, Clone, Copy)]
pub(super) enum Ty {
    Str,
    Int,
    Bool,
    Object,
    StrList,
    /// `[{"text": "..."}, ...]` (Pinecone's documents; other keys allowed, `text` required)
    TextObjects,
    /// `["...", ...]` or `[{"text": "..."}, ...]` (Cohere v1)
    StrOrTextObjects,
    OneOf(&'static [&'static str]),
}

#[derive(Debug, Clone, Copy)]
pub(super) struct Field {
    pub name: &'static str,
    pub ty: Ty,
    pub required: bool,
}

const fn req(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        required: true,
    }
}

const fn opt(name: &'static str, ty: Ty) -> Field {
    Field {
        name,
        ty,
        required: false,
    }
}

/// How a request authenticates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AuthStyle {
    /// `Authorization: Bearer <key>`
    Bearer,
    /// `Api-Key: <key>` and `X-Pinecone-Api-Version: 2026-07`
    Pinecone,
}

/// One endpoint of one API.
#[derive(Debug, Clone, Copy)]
pub(super) struct Endpoint {
    pub path: &'static str,
    pub fields: &'static [Field],
    /// the field holding the documents
    pub documents: &'static str,
    /// `top_n` or `top_k`
    pub top: &'static str,
    /// the flag asking for the documents back (`return_documents`, `return_input`, ...)
    pub echo: Option<&'static str>,
    /// the flag asking for raw scores (TEI, Infinity); absent or false: sigmoid applied
    pub raw_flag: Option<&'static str>,
    pub shape: Shape,
}

/// The documented response shapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Shape {
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

const COHERE_V2: &[Field] = &[
    req("model", Ty::Str),
    req("query", Ty::Str),
    req("documents", Ty::StrList),
    opt("top_n", Ty::Int),
    opt("max_tokens_per_doc", Ty::Int),
];
const COHERE_V1: &[Field] = &[
    opt("model", Ty::Str),
    req("query", Ty::Str),
    req("documents", Ty::StrOrTextObjects),
    opt("top_n", Ty::Int),
    opt("rank_fields", Ty::StrList),
    opt("return_documents", Ty::Bool),
    opt("max_chunks_per_doc", Ty::Int),
];
const VOYAGE: &[Field] = &[
    req("query", Ty::Str),
    req("documents", Ty::StrList),
    req("model", Ty::Str),
    opt("top_k", Ty::Int),
    opt("return_documents", Ty::Bool),
    opt("truncation", Ty::Bool),
];
const JINA: &[Field] = &[
    req("model", Ty::Str),
    req("query", Ty::Str),
    req("documents", Ty::StrList),
    opt("top_n", Ty::Int),
    opt("return_documents", Ty::Bool),
];
const PINECONE: &[Field] = &[
    req("model", Ty::Str),
    req("query", Ty::Str),
    req("documents", Ty::TextObjects),
    opt("top_n", Ty::Int),
    opt("return_documents", Ty::Bool),
    opt("rank_fields", Ty::StrList),
    opt("parameters", Ty::Object),
];
const MIXEDBREAD: &[Field] = &[
    req("model", Ty::Str),
    req("query", Ty::Str),
    req("input", Ty::StrList),
    opt("rank_fields", Ty::StrList),
    opt("top_k", Ty::Int),
    opt("return_input", Ty::Bool),
];
const ZEROENTROPY: &[Field] = &[
    req("model", Ty::Str),
    req("query", Ty::Str),
    req("documents", Ty::StrList),
    opt("top_n", Ty::Int),
    opt("latency", Ty::OneOf(&["fast", "slow"])),
];
const TEI: &[Field] = &[
    req("query", Ty::Str),
    req("texts", Ty::StrList),
    opt("truncate", Ty::Bool),
    opt(
        "truncation_direction",
        Ty::OneOf(&["Left", "Right", "left", "right"]),
    ),
    opt("raw_scores", Ty::Bool),
    opt("return_text", Ty::Bool),
];
const LLAMACPP: &[Field] = &[
    opt("model", Ty::Str),
    req("query", Ty::Str),
    req("documents", Ty::StrList),
    opt("top_n", Ty::Int),
];
const INFINITY: &[Field] = &[
    req("query", Ty::Str),
    req("documents", Ty::StrList),
    opt("return_documents", Ty::Bool),
    opt("raw_scores", Ty::Bool),
    opt("model", Ty::Str),
    opt("top_n", Ty::Int),
];

const fn ep(
    path: &'static str,
    fields: &'static [Field],
    documents: &'static str,
    top: &'static str,
    echo: Option<&'static str>,
    raw_flag: Option<&'static str>,
    shape: Shape,
) -> Endpoint {
    Endpoint {
        path,
        fields,
        documents,
        top,
        echo,
        raw_flag,
        shape,
    }
}

impl Api {
    /// The endpoints the API serves (Cohere: v2 and v1).
    pub(super) fn endpoints(self) -> &'static [Endpoint] {
        const COHERE: &[Endpoint] = &[
            ep(
                "/v2/rerank",
                COHERE_V2,
                "documents",
                "top_n",
                None,
                None,
                Shape::CohereV2,
            ),
            ep(
                "/v1/rerank",
                COHERE_V1,
                "documents",
                "top_n",
                Some("return_documents"),
                None,
                Shape::CohereV1,
            ),
        ];
        const VOYAGE_EP: &[Endpoint] = &[ep(
            "/v1/rerank",
            VOYAGE,
            "documents",
            "top_k",
            Some("return_documents"),
            None,
            Shape::Voyage,
        )];
        const JINA_EP: &[Endpoint] = &[ep(
            "/v1/rerank",
            JINA,
            "documents",
            "top_n",
            Some("return_documents"),
            None,
            Shape::Jina,
        )];
        const PINECONE_EP: &[Endpoint] = &[ep(
            "/rerank",
            PINECONE,
            "documents",
            "top_n",
            Some("return_documents"),
            None,
            Shape::Pinecone,
        )];
        const MIXEDBREAD_EP: &[Endpoint] = &[ep(
            "/v1/reranking",
            MIXEDBREAD,
            "input",
            "top_k",
            Some("return_input"),
            None,
            Shape::Mixedbread,
        )];
        const ZEROENTROPY_EP: &[Endpoint] = &[ep(
            "/v1/models/rerank",
            ZEROENTROPY,
            "documents",
            "top_n",
            None,
            None,
            Shape::ZeroEntropy,
        )];
        const TEI_EP: &[Endpoint] = &[ep(
            "/rerank",
            TEI,
            "texts",
            "",
            Some("return_text"),
            Some("raw_scores"),
            Shape::Tei,
        )];
        const LLAMACPP_EP: &[Endpoint] = &[ep(
            "/v1/rerank",
            LLAMACPP,
            "documents",
            "top_n",
            None,
            None,
            Shape::LlamaCpp,
        )];
        const INFINITY_EP: &[Endpoint] = &[ep(
            "/rerank",
            INFINITY,
            "documents",
            "top_n",
            Some("return_documents"),
            Some("raw_scores"),
            Shape::Infinity,
        )];
        match self {
            Api::Cohere => COHERE,
            Api::Voyage => VOYAGE_EP,
            Api::Jina => JINA_EP,
            Api::Pinecone => PINECONE_EP,
            Api::Mixedbread => MIXEDBREAD_EP,
            Api::ZeroEntropy => ZEROENTROPY_EP,
            Api::Tei => TEI_EP,
            Api::LlamaCpp => LLAMACPP_EP,
            Api::Infinity => INFINITY_EP,
        }
    }

    pub(super) fn auth_style(self) -> AuthStyle {
        match self {
            Api::Pinecone => AuthStyle::Pinecone,
            _ => AuthStyle::Bearer,
        }
    }

    /// The status the API gives a request body it cannot accept.
    pub fn validation_status(self) -> u16 {
        match self {
            Api::Cohere | Api::Pinecone | Api::LlamaCpp => 400,
            _ => 422,
        }
    }
}

/// Checks a request body against the endpoint's fields: an object, no unknown fields,
/// required ones present, each of its documented type. `Err((field, message))`.
pub(super) fn validate(ep: &Endpoint, body: &Value) -> Result<(), (String, String)> {
    let obj = body.as_object().ok_or_else(|| {
        (
            "body".to_string(),
            "the body must be a JSON object".to_string(),
        )
    })?;
    for key in obj.keys() {
        if !ep.fields.iter().any(|f| f.name == key) {
            return Err((key.clone(), format!("unknown field `{key}`")));
        }
    }
    for f in ep.fields {
        match obj.get(f.name) {
            None if f.required => {
                return Err((f.name.into(), format!("field `{}` is required", f.name)))
            }
            Some(v) if !type_ok(f.ty, v) => {
                return Err((
                    f.name.into(),
                    format!("field `{}` has the wrong type: {v}", f.name),
                ))
            }
            _ => {}
        }
    }
    let docs = obj[ep.documents].as_array().map_or(0, Vec::len);
    if docs == 0 {
        return Err((
            ep.documents.into(),
            format!("`{}` must not be empty", ep.documents),
        ));
    }
    if let Some(top) = obj.get(ep.top).and_then(Value::as_i64) {
        if top < 1 {
            return Err((ep.top.into(), format!("`{}` must be at least 1", ep.top)));
        }
    }
    Ok(())
}

fn type_ok(ty: Ty, v: &Value) -> bool {
    let text_object = |d: &Value| d.get("text").is_some_and(Value::is_string);
    match ty {
        Ty::Str => v.is_string(),
        Ty::Int => v.is_u64() || v.is_i64(),
        Ty::Bool => v.is_boolean(),
        Ty::Object => v.is_object(),
        Ty::StrList => v.as_array().is_some_and(|a| a.iter().all(Value::is_string)),
        Ty::TextObjects => v.as_array().is_some_and(|a| a.iter().all(text_object)),
        Ty::StrOrTextObjects => v
            .as_array()
            .is_some_and(|a| a.iter().all(|d| d.is_string() || text_object(d))),
        Ty::OneOf(allowed) => v.as_str().is_some_and(|s| allowed.contains(&s)),
    }
}

/// The documents' texts (strings, or the `text` of objects).
pub(super) fn document_texts(ep: &Endpoint, body: &Value) -> Vec<String> {
    body[ep.documents]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|d| {
                    d.as_str()
                        .or_else(|| d.get("text").and_then(Value::as_str))
                        .unwrap_or_default()
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One ranked result: input index, score, text.
pub(super) struct Ranked {
    pub index: usize,
    pub score: f64,
    pub text: String,
}

/// The success body, results in `ranked` order (best first).
pub(super) fn success_body(
    shape: Shape,
    model: &str,
    ranked: &[Ranked],
    echo: bool,
    tokens: usize,
) -> Value {
    let result = |r: &Ranked, score_key: &str, doc: Option<Value>| {
        let mut m = Map::new();
        m.insert("index".into(), json!(r.index));
        m.insert(score_key.into(), json!(r.score));
        if let Some(d) = doc {
            m.insert("document".into(), d);
        }
        Value::Object(m)
    };
    let doc_obj = |r: &Ranked| echo.then(|| json!({ "text": r.text }));
    let doc_str = |r: &Ranked| echo.then(|| json!(r.text));
    match shape {
        Shape::CohereV2 | Shape::CohereV1 => {
            let version = if shape == Shape::CohereV2 { "2" } else { "1" };
            json!({
                "id": "07734bd2-2473-4f07-94e1-0d9f0e6843cf",
                "results": ranked.iter().map(|r| result(r, "relevance_score", doc_obj(r))).collect::<Vec<_>>(),
                "meta": {"api_version": {"version": version}, "billed_units": {"search_units": 1}}
            })
        }
        Shape::Voyage => json!({
            "object": "list",
            "data": ranked.iter().map(|r| result(r, "relevance_score", doc_str(r))).collect::<Vec<_>>(),
            "model": model,
            "usage": {"total_tokens": tokens}
        }),
        Shape::Jina => json!({
            "model": model,
            "usage": {"total_tokens": tokens},
            "results": ranked.iter().map(|r| result(r, "relevance_score", doc_obj(r))).collect::<Vec<_>>()
        }),
        Shape::Pinecone => json!({
            "model": model,
            "data": ranked.iter().map(|r| result(r, "score", doc_obj(r))).collect::<Vec<_>>(),
            "usage": {"rerank_units": 1}
        }),
        Shape::Mixedbread => json!({
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "model": model,
            "data": ranked.iter().map(|r| {
                let mut v = json!({"index": r.index, "score": r.score, "object": "rank_result"});
                if echo {
                    v["input"] = json!(r.text);
                }
                v
            }).collect::<Vec<_>>(),
            "object": "list",
            "top_k": ranked.len(),
            "return_input": echo
        }),
        Shape::ZeroEntropy => json!({
            "results": ranked.iter().map(|r| result(r, "relevance_score", None)).collect::<Vec<_>>(),
            "actual_latency_mode": "fast",
            "e2e_latency": 0.012,
            "inference_latency": 0.01,
            "total_bytes": tokens * 4,
            "total_tokens": tokens
        }),
        Shape::Tei => Value::Array(
            ranked
                .iter()
                .map(|r| {
                    let mut v = json!({"index": r.index, "score": r.score});
                    if echo {
                        v["text"] = json!(r.text);
                    }
                    v
                })
                .collect(),
        ),
        Shape::LlamaCpp => json!({
            "model": model,
            "object": "list",
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "results": ranked.iter().map(|r| result(r, "relevance_score", None)).collect::<Vec<_>>()
        }),
        Shape::Infinity => json!({
            "object": "rerank",
            "results": ranked.iter().map(|r| result(r, "relevance_score", doc_str(r))).collect::<Vec<_>>(),
            "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            "id": "infinity-2c9a5e0f-6b8e-4f43-a7c4-5a8e3f0e0d11",
            "created": 1_767_225_600
        }),
    }
}

/// Why an error body is sent (picks codes and types in the API's vocabulary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Failure {
    Unauthorized,
    Invalid,
    RateLimited,
    Internal,
    NotFound,
}

/// An error body in the API's style; `None`: an empty body (TEI's 401). `field` names the
/// offending request field for validation errors.
pub(super) fn error_body(
    api: Api,
    failure: Failure,
    message: &str,
    field: Option<&str>,
) -> Option<Value> {
    let status = failure_status(api, failure);
    Some(match api {
        Api::Cohere => json!({"id": "5f0ae4a2-8d3e-4e4f-9a35-0e7d2a4b1c77", "message": message}),
        Api::Pinecone => {
            let code = match failure {
                Failure::Unauthorized => "UNAUTHENTICATED",
                Failure::Invalid => "INVALID_ARGUMENT",
                Failure::RateLimited => "RESOURCE_EXHAUSTED",
                Failure::Internal => "UNKNOWN",
                Failure::NotFound => "NOT_FOUND",
            };
            json!({"error": {"code": code, "message": message}, "status": status})
        }
        Api::Tei => {
            let kind = match failure {
                Failure::Unauthorized => return None,
                Failure::Invalid => "Validation",
                Failure::RateLimited => "Overloaded",
                Failure::Internal => "Backend",
                Failure::NotFound => "Empty",
            };
            json!({"error": message, "error_type": kind})
        }
        Api::LlamaCpp => {
            let kind = match failure {
                Failure::Unauthorized => "authentication_error",
                Failure::Invalid => "invalid_request_error",
                Failure::RateLimited => "unavailable_error",
                Failure::Internal => "server_error",
                Failure::NotFound => "not_found_error",
            };
            json!({"error": {"code": status, "message": message, "type": kind}})
        }
        // FastAPI-style services: validation errors are a `detail` list
        Api::Voyage | Api::Jina | Api::Mixedbread | Api::ZeroEntropy | Api::Infinity => {
            match (failure, field) {
                (Failure::Invalid, Some(field)) => json!({"detail": [{
                    "loc": ["body", field],
                    "msg": message,
                    "type": "value_error"
                }]}),
                _ => json!({"detail": message}),
            }
        }
    })
}

pub(super) fn failure_status(api: Api, failure: Failure) -> u16 {
    match failure {
        Failure::Unauthorized => 401,
        Failure::Invalid => api.validation_status(),
        Failure::RateLimited => 429,
        Failure::Internal => 500,
        Failure::NotFound => 404,
    }
}
