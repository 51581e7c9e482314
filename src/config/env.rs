//! List and table keys from the environment. The `config` crate reads every
//! `SECONDPASS__...` value as a scalar; a value written as a TOML array or inline table
//! (`SECONDPASS__COLLECTIONS__DOCS__RERANKERS='["a", "b"]'`) is read as that instead.

const PREFIX: &str = "secondpass__";

/// A TOML document with every structured variable of `env` at its key (empty: none).
pub(super) fn structured(env: &config::Map<String, String>) -> String {
    let mut doc = String::new();
    let mut vars: Vec<(&String, &String)> = env.iter().collect();
    vars.sort();
    for (name, value) in vars {
        let lower = name.to_lowercase();
        let Some(key) = lower.strip_prefix(PREFIX) else {
            continue;
        };
        let v = value.trim();
        let is_toml = |v: &str| {
            config::Config::builder()
                .add_source(config::File::from_str(
                    &format!("v = {v}"),
                    config::FileFormat::Toml,
                ))
                .build()
                .is_ok()
        };
        if (v.starts_with('[') || v.starts_with('{')) && is_toml(v) {
            doc.push_str(&format!("{} = {v}\n", key.replace("__", ".")));
        }
    }
    doc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_and_tables_only() {
        let env: config::Map<String, String> = [
            ("SECONDPASS__COLLECTIONS__DOCS__RERANKERS", r#"["a", "b"]"#),
            ("SECONDPASS__COLLECTIONS__DOCS__POOL", "40"),
            (
                "SECONDPASS__COLLECTIONS__DOCS__TEXT_TEMPLATE",
                "[{title}] {body}",
            ),
            ("OTHER__X", "[1]"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(
            structured(&env),
            "collections.docs.rerankers = [\"a\", \"b\"]\n"
        );
    }
}
