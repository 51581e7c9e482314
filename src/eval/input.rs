//! Reading the evaluation files: queries (JSONL), judgements (TREC qrels) and shadow
//! logs (JSONL). A malformed line is an error naming the file and the line.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde_json::Value;

use super::metrics::Judgements;

/// One query to evaluate.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    pub id: String,
    pub text: String,
    /// The Query API body to send (`query`, `using`, `filter`, ...).
    pub search: serde_json::Map<String, Value>,
}

/// Judgements by query id.
pub type Qrels = BTreeMap<String, Judgements>;

/// A point id as text: integers in decimal, UUIDs in lower case.
pub fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::Number(n) => n.as_u64().map(|n| n.to_string()),
        Value::String(s) => Some(s.to_ascii_lowercase()),
        _ => None,
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read: {e}", path.display()))
}

fn at(path: &Path, line: usize, why: impl std::fmt::Display) -> String {
    format!("{}:{line}: {why}", path.display())
}

/// `{"id": 1, "text": "...", "search": {Query API body}}` per line (`body` is accepted
/// for `search`). Blank lines are skipped.
pub fn parse_queries(path: &Path, text: &str) -> Result<Vec<Query>, String> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value =
            serde_json::from_str(line).map_err(|e| at(path, n, format!("not JSON: {e}")))?;
        let id = v
            .get("id")
            .and_then(id_text)
            .ok_or_else(|| at(path, n, "no \"id\" (a non-negative integer or a string)"))?;
        let text = v
            .get("text")
            .and_then(Value::as_str)
            .ok_or_else(|| at(path, n, "no \"text\" string"))?
            .to_string();
        let search = v
            .get("search")
            .or_else(|| v.get("body"))
            .and_then(Value::as_object)
            .ok_or_else(|| {
                at(
                    path,
                    n,
                    "no \"search\" object (the Query API body to run, e.g. {\"query\": {\"text\": ..., \"model\": \"qdrant/bm25\"}, \"using\": \"bm25\"})",
                )
            })?
            .clone();
        if !seen.insert(id.clone()) {
            return Err(at(path, n, format!("query id {id} appears twice")));
        }
        out.push(Query { id, text, search });
    }
    Ok(out)
}

pub fn load_queries(path: &Path) -> Result<Vec<Query>, String> {
    parse_queries(path, &read(path)?)
}

/// TREC qrels: `qid iter docid grade` (also `qid docid grade`), whitespace separated.
/// `#` comments and a header line (first line whose grade is not a number) are
/// skipped. Negative grades count as 0.
pub fn parse_qrels(path: &Path, text: &str) -> Result<Qrels, String> {
    let mut out = Qrels::new();
    let mut first = true;
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let cols: Vec<&str> = line.split_whitespace().collect();
        let (q, d, g) = match cols.as_slice() {
            [q, _, d, g] | [q, d, g] => (*q, *d, *g),
            _ => {
                return Err(at(
                    path,
                    n,
                    format!("expected `qid 0 docid grade`, found {} columns", cols.len()),
                ))
            }
        };
        let grade = match g.parse::<i64>() {
            Ok(g) => u32::try_from(g.max(0)).unwrap_or(u32::MAX),
            Err(_) if first => {
                first = false;
                continue; // a header such as `query_id doc_id gain`
            }
            Err(_) => return Err(at(path, n, format!("grade `{g}` is not an integer"))),
        };
        first = false;
        out.entry(q.to_string())
            .or_default()
            .insert(d.to_ascii_lowercase(), grade);
    }
    Ok(out)
}

pub fn load_qrels(path: &Path) -> Result<Qrels, String> {
    parse_qrels(path, &read(path)?)
}

/// One line of a shadow log: what Qdrant returned and what reranking would have.
#[derive(Debug, Clone, PartialEq)]
pub struct ShadowEntry {
    pub query: String,
    pub qdrant: Vec<String>,
    pub reranked: Vec<String>,
    pub rerank_ms: Option<f64>,
}

pub fn parse_shadow_log(path: &Path, text: &str) -> Result<Vec<ShadowEntry>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let n = n + 1;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value =
            serde_json::from_str(line).map_err(|e| at(path, n, format!("not JSON: {e}")))?;
        let list = |key: &str| -> Result<Vec<String>, String> {
            v.get(key)
                .and_then(Value::as_array)
                .and_then(|a| a.iter().map(id_text).collect::<Option<Vec<_>>>())
                .ok_or_else(|| at(path, n, format!("no \"{key}\" list of point ids")))
        };
        out.push(ShadowEntry {
            query: v
                .get("query")
                .and_then(Value::as_str)
                .ok_or_else(|| at(path, n, "no \"query\" string"))?
                .to_string(),
            qdrant: list("qdrant_ids")?,
            reranked: list("reranked_ids")?,
            rerank_ms: v.get("rerank_ms").and_then(Value::as_f64),
        });
    }
    Ok(out)
}

pub fn load_shadow_log(path: &Path) -> Result<Vec<ShadowEntry>, String> {
    parse_shadow_log(path, &read(path)?)
}

/// Query text to id, for judging a shadow log with a queries file.
pub fn ids_by_text(queries: &[Query]) -> HashMap<String, String> {
    queries
        .iter()
        .map(|q| (q.text.trim().to_string(), q.id.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("q.jsonl")
    }

    #[test]
    fn queries_parse_and_errors_name_the_line() {
        let text = "{\"id\": 1, \"text\": \"a b\", \"search\": {\"using\": \"bm25\"}}\n\n{\"id\": \"x-2\", \"text\": \"c\", \"body\": {}}\n";
        let q = parse_queries(p(), text).unwrap();
        assert_eq!(q.len(), 2);
        assert_eq!(q[0].id, "1");
        assert_eq!(q[1].id, "x-2");
        assert_eq!(q[0].search["using"], "bm25");
        let bad = "{\"id\": 1, \"text\": \"a\", \"search\": {}}\n{\"id\": 2, \"text\": \"b\"\n";
        let e = parse_queries(p(), bad).unwrap_err();
        assert!(e.starts_with("q.jsonl:2: not JSON"), "{e}");
        let e = parse_queries(p(), "{\"id\": 1, \"search\": {}}").unwrap_err();
        assert!(e.contains("q.jsonl:1: no \"text\""), "{e}");
        let e = parse_queries(p(), "{\"id\": 1, \"text\": \"a\"}").unwrap_err();
        assert!(e.contains("no \"search\""), "{e}");
        let dup = "{\"id\": 1, \"text\": \"a\", \"search\": {}}\n{\"id\": 1, \"text\": \"b\", \"search\": {}}";
        assert!(parse_queries(p(), dup)
            .unwrap_err()
            .contains(":2: query id 1 appears twice"));
    }

    #[test]
    fn qrels_trec_and_three_columns() {
        let path = Path::new("r.tsv");
        let text = "query_id\tdoc_id\tgain\n1 0 12 2\n1 0 13 0\n# note\n2\tABCDEF01-0000-0000-0000-000000000000\t3\n3 0 7 -1\n";
        let q = parse_qrels(path, text).unwrap();
        assert_eq!(q["1"]["12"], 2);
        assert_eq!(q["1"]["13"], 0);
        assert_eq!(q["2"]["abcdef01-0000-0000-0000-000000000000"], 3);
        assert_eq!(q["3"]["7"], 0);
        let e = parse_qrels(path, "1 0 12 2\n1 0 13 high\n").unwrap_err();
        assert_eq!(e, "r.tsv:2: grade `high` is not an integer");
        let e = parse_qrels(path, "1 0 12 2\n1 12\n").unwrap_err();
        assert!(e.starts_with("r.tsv:2: expected"), "{e}");
    }

    #[test]
    fn shadow_log_lines() {
        let path = Path::new("s.jsonl");
        let text = "{\"query\": \"q\", \"qdrant_ids\": [1, 2], \"reranked_ids\": [2, 1], \"rerank_ms\": 4.5}\n";
        let s = parse_shadow_log(path, text).unwrap();
        assert_eq!(s[0].qdrant, vec!["1", "2"]);
        assert_eq!(s[0].reranked, vec!["2", "1"]);
        assert_eq!(s[0].rerank_ms, Some(4.5));
        let e = parse_shadow_log(path, "{\"query\": \"q\", \"qdrant_ids\": [1]}").unwrap_err();
        assert!(e.contains("s.jsonl:1: no \"reranked_ids\""), "{e}");
    }
}
