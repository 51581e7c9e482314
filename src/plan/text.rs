//! Reading the document text out of a payload.

use serde_json::Value;

/// The text at a dotted `path`. Strings are taken as they are; lists (also lists of
/// objects along the path) are flattened and their strings joined with a newline.
/// Numbers, booleans and empty strings are not text: `None`.
pub fn text_at(payload: &Value, path: &str) -> Option<String> {
    let mut parts = Vec::new();
    collect(payload, path, &mut parts);
    let parts: Vec<&str> = parts.into_iter().filter(|s| !s.trim().is_empty()).collect();
    if parts.is_empty() {
        None
    } else {
        Some(parts.join("\n"))
    }
}

fn collect<'a>(v: &'a Value, path: &str, out: &mut Vec<&'a str>) {
    match v {
        Value::Array(items) => items.iter().for_each(|i| collect(i, path, out)),
        Value::Object(o) if !path.is_empty() => {
            // A key may itself contain dots; prefer the longest literal key match.
            if let Some(child) = o.get(path) {
                return collect(child, "", out);
            }
            let mut split = path.len();
            while let Some(dot) = path[..split].rfind('.') {
                if let Some(child) = o.get(&path[..dot]) {
                    return collect(child, &path[dot + 1..], out);
                }
                split = dot;
            }
        }
        Value::String(s) if path.is_empty() => out.push(s),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn plain_nested_and_lists() {
        let p = json!({"text": "a", "meta": {"body": "b"}, "list": ["x", "y"],
                       "chunks": [{"t": "c1"}, {"t": "c2"}], "n": 42, "empty": " "});
        assert_eq!(text_at(&p, "text").as_deref(), Some("a"));
        assert_eq!(text_at(&p, "meta.body").as_deref(), Some("b"));
        assert_eq!(text_at(&p, "list").as_deref(), Some("x\ny"));
        assert_eq!(text_at(&p, "chunks.t").as_deref(), Some("c1\nc2"));
        assert_eq!(text_at(&p, "n"), None);
        assert_eq!(text_at(&p, "empty"), None);
        assert_eq!(text_at(&p, "missing"), None);
        assert_eq!(text_at(&p, "meta"), None);
        assert_eq!(text_at(&p, "text.deeper"), None);
    }

    #[test]
    fn keys_with_dots_match_literally() {
        let p = json!({"a.b": "literal", "a": {"b": "nested"}});
        assert_eq!(text_at(&p, "a.b").as_deref(), Some("literal"));
    }

    #[test]
    fn mixed_lists_keep_only_strings() {
        let p = json!({"t": ["x", 1, null, "y"]});
        assert_eq!(text_at(&p, "t").as_deref(), Some("x\ny"));
    }
}
