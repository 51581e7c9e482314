//! Documents built from several payload fields: `text_template = "{title}\n{body}"`.

use serde_json::Value;

use super::text::text_at;

/// A parsed template: literal text and `{path}` placeholders (`{{` and `}}` are
/// literal braces).
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    parts: Vec<Part>,
}

#[derive(Debug, Clone, PartialEq)]
enum Part {
    Literal(String),
    Field(String),
}

impl Template {
    pub fn parse(s: &str) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut chars = s.chars().peekable();
        while let Some(c) = chars.next() {
            match c {
                '{' if chars.peek() == Some(&'{') => {
                    chars.next();
                    literal.push('{');
                }
                '}' if chars.peek() == Some(&'}') => {
                    chars.next();
                    literal.push('}');
                }
                '{' => {
                    let mut path = String::new();
                    loop {
                        match chars.next() {
                            Some('}') => break,
                            Some('{') | None => {
                                return Err(format!(
                                    "`{s}`: unclosed `{{` (write `{{{{` for a brace)"
                                ))
                            }
                            Some(c) => path.push(c),
                        }
                    }
                    let path = path.trim();
                    if path.is_empty() {
                        return Err(format!("`{s}`: empty placeholder `{{}}`"));
                    }
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Field(path.to_string()));
                }
                '}' => return Err(format!("`{s}`: unmatched `}}` (write `}}}}` for a brace)")),
                c => literal.push(c),
            }
        }
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        if !parts.iter().any(|p| matches!(p, Part::Field(_))) {
            return Err(format!(
                "`{s}` names no field (e.g. \"{{title}}\\n{{body}}\")"
            ));
        }
        Ok(Template { parts })
    }

    /// The payload paths the template reads, each once, in order.
    pub fn fields(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for p in &self.parts {
            if let Part::Field(f) = p {
                if !out.contains(f) {
                    out.push(f.clone());
                }
            }
        }
        out
    }

    /// The document text of `payload`: each placeholder replaced by the text at its
    /// path (lists joined with a newline, a missing field empty). `None` when no field
    /// of the template has text (the point counts as "without text").
    pub fn render(&self, payload: &Value) -> Option<String> {
        let mut out = String::new();
        let mut any = false;
        for p in &self.parts {
            match p {
                Part::Literal(l) => out.push_str(l),
                Part::Field(f) => {
                    if let Some(t) = text_at(payload, f) {
                        any = true;
                        out.push_str(&t);
                    }
                }
            }
        }
        any.then(|| out.trim().to_string())
    }
}

/// Where a collection's document text comes from: one field or a template.
#[derive(Debug, Clone, PartialEq)]
pub enum TextSource {
    Field(String),
    Template(Template),
}

impl TextSource {
    /// The payload paths to fetch for reranking.
    pub fn paths(&self) -> Vec<String> {
        match self {
            TextSource::Field(f) => vec![f.clone()],
            TextSource::Template(t) => t.fields(),
        }
    }

    /// The document text of `payload`, `None` when it has none.
    pub fn text(&self, payload: &Value) -> Option<String> {
        match self {
            TextSource::Field(f) => text_at(payload, f),
            TextSource::Template(t) => t.render(payload),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(s: &str) -> Template {
        Template::parse(s).unwrap()
    }

    #[test]
    fn renders_fields_paths_and_lists() {
        let p = json!({"title": "Wings", "meta": {"body": "Lift."}, "tags": ["a", "b"]});
        assert_eq!(
            t("{title}\n{meta.body}").render(&p).as_deref(),
            Some("Wings\nLift.")
        );
        assert_eq!(
            t("Title: {title} Tags: {tags}").render(&p).as_deref(),
            Some("Title: Wings Tags: a\nb")
        );
        // placeholders may have spaces around the path
        assert_eq!(t("{ title }").render(&p).as_deref(), Some("Wings"));
    }

    #[test]
    fn missing_fields_are_empty_and_none_at_all_is_no_text() {
        let tpl = t("{title}\n{body}");
        assert_eq!(
            tpl.render(&json!({"body": "only body"})).as_deref(),
            Some("only body")
        );
        assert_eq!(tpl.render(&json!({"other": "x"})), None);
        // numbers and empty strings are not text
        assert_eq!(tpl.render(&json!({"title": 3, "body": " "})), None);
    }

    #[test]
    fn fields_are_listed_once_and_braces_escape() {
        let tpl = t("{{{title}}} {body} {title}");
        assert_eq!(tpl.fields(), vec!["title", "body"]);
        assert_eq!(
            tpl.render(&json!({"title": "T", "body": "B"})).as_deref(),
            Some("{T} B T")
        );
    }

    #[test]
    fn bad_templates_are_refused() {
        for bad in ["{title", "title}", "{}", "no fields", "{a{b}}", ""] {
            assert!(Template::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn source_paths_and_text() {
        let field = TextSource::Field("text".into());
        assert_eq!(field.paths(), vec!["text"]);
        assert_eq!(field.text(&json!({"text": "x"})).as_deref(), Some("x"));
        let tpl = TextSource::Template(t("{a}-{b.c}"));
        assert_eq!(tpl.paths(), vec!["a", "b.c"]);
        assert_eq!(
            tpl.text(&json!({"a": "1", "b": {"c": "2"}})).as_deref(),
            Some("1-2")
        );
    }
}
