//! `with_payload` rewrite (so the text field comes back) and restore (so the client
//! sees exactly the payload it asked for).
//!
//! Qdrant's forms: absent/`false`, `true`, `["a", "b.c"]`, `{"include": [...]}`,
//! `{"exclude": [...]}`. Anything else is not ours to judge: the caller forwards the
//! search unchanged and lets Qdrant answer with its own error.

use serde_json::{Map, Value};

/// How to turn the widened payload back into what the client asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Restore {
    /// The client's selection already returns the text field.
    Keep,
    /// The client asked for no payload: drop the `payload` key.
    DropPayload,
    /// Remove these paths (and objects left empty by the removal).
    RemovePaths(Vec<String>),
    /// Remove these paths the client had excluded (objects left as they are).
    ReExclude(Vec<String>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Rewrite {
    /// The `with_payload` value to send to Qdrant.
    pub selector: Value,
    pub restore: Restore,
}

/// Does the client path `p` return the field at `field`?
fn covers(p: &str, field: &str) -> bool {
    field == p || field.starts_with(p) && field[p.len()..].starts_with(['.', '['])
}

fn string_list(v: &Value) -> Option<Vec<String>> {
    v.as_array()?
        .iter()
        .map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// Rewrites the client's selector so that `field` is returned. `None` when the form is
/// not one Qdrant accepts.
pub fn rewrite(with_payload: Option<&Value>, field: &str) -> Option<Rewrite> {
    rewrite_all(with_payload, &[field.to_string()])
}

/// [`rewrite`] for several fields (a `text_template`): each field the client's
/// selection does not return is added, and removed again from the answer.
pub fn rewrite_all(with_payload: Option<&Value>, fields: &[String]) -> Option<Rewrite> {
    // The fields the client's list does not return already.
    let missing = |list: &[String]| -> Vec<String> {
        fields
            .iter()
            .filter(|f| !list.iter().any(|p| covers(p, f)))
            .cloned()
            .collect()
    };
    match with_payload {
        None | Some(Value::Null) | Some(Value::Bool(false)) => Some(Rewrite {
            selector: Value::from(fields.to_vec()),
            restore: Restore::DropPayload,
        }),
        Some(Value::Bool(true)) => Some(Rewrite {
            selector: Value::Bool(true),
            restore: Restore::Keep,
        }),
        Some(v @ Value::Array(_)) => {
            let mut list = string_list(v)?;
            let add = missing(&list);
            if add.is_empty() {
                return Some(Rewrite {
                    selector: v.clone(),
                    restore: Restore::Keep,
                });
            }
            list.extend(add.iter().cloned());
            Some(Rewrite {
                selector: Value::from(list),
                restore: Restore::RemovePaths(add),
            })
        }
        Some(Value::Object(o)) if o.len() == 1 => {
            if let Some(inc) = o.get("include") {
                let mut list = string_list(inc)?;
                let add = missing(&list);
                if add.is_empty() {
                    return Some(Rewrite {
                        selector: Value::Object(o.clone()),
                        restore: Restore::Keep,
                    });
                }
                list.extend(add.iter().cloned());
                let mut m = Map::new();
                m.insert("include".into(), Value::from(list));
                return Some(Rewrite {
                    selector: Value::Object(m),
                    restore: Restore::RemovePaths(add),
                });
            }
            let list = string_list(o.get("exclude")?)?;
            let (dropped, kept): (Vec<String>, Vec<String>) = list
                .into_iter()
                .partition(|p| fields.iter().any(|f| covers(p, f)));
            let mut m = Map::new();
            m.insert("exclude".into(), Value::from(kept));
            let restore = if dropped.is_empty() {
                Restore::Keep
            } else {
                Restore::ReExclude(dropped)
            };
            Some(Rewrite {
                selector: Value::Object(m),
                restore,
            })
        }
        Some(_) => None,
    }
}

/// Applies `restore` to one point object (`{"id", "version", "score", "payload"?, ...}`).
pub fn restore_point(point: &mut Map<String, Value>, restore: &Restore) {
    match restore {
        Restore::Keep => {}
        Restore::DropPayload => {
            point.remove("payload");
        }
        Restore::RemovePaths(paths) => {
            if let Some(Value::Object(p)) = point.get_mut("payload") {
                for path in paths {
                    remove_path(p, path, true);
                }
            }
        }
        Restore::ReExclude(paths) => {
            if let Some(Value::Object(p)) = point.get_mut("payload") {
                for path in paths {
                    remove_path(p, path, false);
                }
            }
        }
    }
}

/// Removes the value at a dotted `path`. With `prune`, objects that the removal
/// leaves empty are removed too (they were only there because of the removed field).
fn remove_path(obj: &mut Map<String, Value>, path: &str, prune: bool) {
    match path.split_once('.') {
        None => {
            obj.remove(path);
        }
        Some((head, rest)) => {
            let emptied = match obj.get_mut(head) {
                Some(Value::Object(child)) => {
                    remove_path(child, rest, prune);
                    child.is_empty()
                }
                _ => false,
            };
            if prune && emptied {
                obj.remove(head);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn point(payload: Value) -> Map<String, Value> {
        json!({"id": 1, "version": 1, "score": 0.5, "payload": payload})
            .as_object()
            .unwrap()
            .clone()
    }

    #[test]
    fn absent_and_false_ask_for_field_and_drop_payload() {
        for v in [None, Some(json!(false)), Some(Value::Null)] {
            let r = rewrite(v.as_ref(), "text").unwrap();
            assert_eq!(r.selector, json!(["text"]));
            assert_eq!(r.restore, Restore::DropPayload);
        }
        let mut p = point(json!({"text": "a"}));
        restore_point(&mut p, &Restore::DropPayload);
        assert!(!p.contains_key("payload"));
    }

    #[test]
    fn true_is_kept() {
        let r = rewrite(Some(&json!(true)), "text").unwrap();
        assert_eq!(r.selector, json!(true));
        assert_eq!(r.restore, Restore::Keep);
    }

    #[test]
    fn list_gets_field_appended_and_removed_after() {
        let r = rewrite(Some(&json!(["title"])), "text").unwrap();
        assert_eq!(r.selector, json!(["title", "text"]));
        let mut p = point(json!({"title": "t", "text": "a"}));
        restore_point(&mut p, &r.restore);
        assert_eq!(p["payload"], json!({"title": "t"}));
    }

    #[test]
    fn list_that_covers_field_is_untouched() {
        for sel in [json!(["text"]), json!(["meta"])] {
            let field = if sel == json!(["text"]) {
                "text"
            } else {
                "meta.body"
            };
            let r = rewrite(Some(&sel), field).unwrap();
            assert_eq!(r.selector, sel);
            assert_eq!(r.restore, Restore::Keep);
        }
        // a sibling with a common prefix does not cover it
        let r = rewrite(Some(&json!(["tex"])), "text").unwrap();
        assert_eq!(r.selector, json!(["tex", "text"]));
    }

    #[test]
    fn include_form_is_kept_as_include() {
        let r = rewrite(Some(&json!({"include": ["title"]})), "meta.body").unwrap();
        assert_eq!(r.selector, json!({"include": ["title", "meta.body"]}));
        let mut p = point(json!({"title": "t", "meta": {"body": "b"}}));
        restore_point(&mut p, &r.restore);
        // `meta` existed only because of the added field: pruned
        assert_eq!(p["payload"], json!({"title": "t"}));
    }

    #[test]
    fn nested_removal_keeps_siblings_the_client_asked_for() {
        let r = rewrite(Some(&json!(["meta.other"])), "meta.body").unwrap();
        let mut p = point(json!({"meta": {"other": 1, "body": "b"}}));
        restore_point(&mut p, &r.restore);
        assert_eq!(p["payload"], json!({"meta": {"other": 1}}));
    }

    #[test]
    fn point_without_field_keeps_empty_payload() {
        let r = rewrite(Some(&json!({"include": ["title"]})), "text").unwrap();
        let mut p = point(json!({}));
        restore_point(&mut p, &r.restore);
        assert_eq!(p["payload"], json!({}));
    }

    #[test]
    fn exclude_of_field_is_lifted_then_reapplied() {
        let r = rewrite(Some(&json!({"exclude": ["text", "title"]})), "text").unwrap();
        assert_eq!(r.selector, json!({"exclude": ["title"]}));
        assert_eq!(r.restore, Restore::ReExclude(vec!["text".into()]));
        let mut p = point(json!({"text": "a", "group": "g"}));
        restore_point(&mut p, &r.restore);
        assert_eq!(p["payload"], json!({"group": "g"}));
    }

    #[test]
    fn exclude_of_parent_is_lifted() {
        let r = rewrite(Some(&json!({"exclude": ["meta"]})), "meta.body").unwrap();
        assert_eq!(r.selector, json!({"exclude": []}));
        let mut p = point(json!({"meta": {"body": "b"}, "x": 1}));
        restore_point(&mut p, &r.restore);
        assert_eq!(p["payload"], json!({"x": 1}));
    }

    #[test]
    fn exclude_of_other_fields_is_kept() {
        let r = rewrite(Some(&json!({"exclude": ["title"]})), "text").unwrap();
        assert_eq!(r.selector, json!({"exclude": ["title"]}));
        assert_eq!(r.restore, Restore::Keep);
    }

    #[test]
    fn several_fields_are_added_and_removed_where_missing() {
        let fields = vec!["title".to_string(), "meta.body".to_string()];
        let r = rewrite_all(None, &fields).unwrap();
        assert_eq!(r.selector, json!(["title", "meta.body"]));
        assert_eq!(r.restore, Restore::DropPayload);
        // the client asked for `title` itself: only `meta.body` is added and removed
        let r = rewrite_all(Some(&json!(["title", "n"])), &fields).unwrap();
        assert_eq!(r.selector, json!(["title", "n", "meta.body"]));
        let mut p = point(json!({"title": "t", "n": 1, "meta": {"body": "b"}}));
        restore_point(&mut p, &r.restore);
        assert_eq!(p["payload"], json!({"title": "t", "n": 1}));
        let r = rewrite_all(Some(&json!({"include": ["meta"]})), &fields).unwrap();
        assert_eq!(r.selector, json!({"include": ["meta", "title"]}));
        assert_eq!(r.restore, Restore::RemovePaths(vec!["title".into()]));
        let r = rewrite_all(Some(&json!({"exclude": ["title", "x"]})), &fields).unwrap();
        assert_eq!(r.selector, json!({"exclude": ["x"]}));
        assert_eq!(r.restore, Restore::ReExclude(vec!["title".into()]));
        let r = rewrite_all(Some(&json!(["title", "meta.body"])), &fields).unwrap();
        assert_eq!(r.restore, Restore::Keep);
    }

    #[test]
    fn unknown_forms_are_left_to_qdrant() {
        for v in [
            json!("text"),
            json!(1),
            json!({"include": ["a"], "bogus": 1}),
            json!({"bogus": 1}),
            json!([1, 2]),
            json!({"include": "text"}),
        ] {
            assert!(rewrite(Some(&v), "text").is_none(), "{v}");
        }
    }
}
