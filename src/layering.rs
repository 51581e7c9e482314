//! The house's import rule, checked on the source: nothing imports upward.
//!
//! ```text
//! app            starts the listeners, reloads, shuts down (only main.rs names it)
//! transport      REST, gRPC and admin adapters, and their shared pipeline
//! state          AppState (reload.rs extends it)
//! upstream       the client toward Qdrant
//! engine, plan, rerank, config, metrics, error, ...   the core
//! ```

use std::path::{Path, PathBuf};

/// Every `.rs` file below `dir`, with its path relative to `src/`.
fn sources(dir: &Path, out: &mut Vec<(String, String)>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("layering.rs") {
            let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
            let name = path.strip_prefix(&src).unwrap().display().to_string();
            // Comments may name any module; code may not.
            let text = std::fs::read_to_string(&path).unwrap();
            let code: Vec<&str> = text
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect();
            out.push((name, code.join("\n")));
        }
    }
}

/// Whether `code` names the crate's module `module` (`crate::module::...`,
/// `crate::{module, ...}`, `super::module` from a top-level file).
fn names(code: &str, module: &str) -> bool {
    let word_after = |rest: &str| {
        !rest
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    };
    let direct = ["crate::", "super::"].iter().any(|p| {
        let needle = format!("{p}{module}");
        code.match_indices(&needle)
            .any(|(i, _)| word_after(&code[i + needle.len()..]))
    });
    let grouped = code.match_indices("crate::{").any(|(i, _)| {
        let group = &code[i + 8..];
        let group = &group[..group.find('}').unwrap_or(group.len())];
        group.split([',', ' ', '\n']).any(|w| w == module)
    });
    direct || grouped
}

fn all_sources() -> Vec<(String, String)> {
    let mut out = Vec::new();
    sources(
        &PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut out,
    );
    assert!(out.len() > 50, "found the sources");
    out
}

#[test]
fn only_main_imports_app() {
    let offenders: Vec<String> = all_sources()
        .into_iter()
        .filter(|(f, _)| !["app.rs", "main.rs", "lib.rs"].contains(&f.as_str()))
        .filter(|(_, code)| names(code, "app"))
        .map(|(f, _)| f)
        .collect();
    assert!(offenders.is_empty(), "import crate::app: {offenders:?}");
}

#[test]
fn the_core_imports_no_transport_and_no_state() {
    let core = [
        "config",
        "deadline",
        "doctor",
        "engine",
        "error",
        "http_client",
        "metrics",
        "plan",
        "rerank",
        "secrets",
        "shadow",
        "upstream",
    ];
    let below_transport = |f: &str| {
        f == "state.rs"
            || f == "reload.rs"
            || core
                .iter()
                .any(|m| f == format!("{m}.rs") || f.starts_with(&format!("{m}/")))
    };
    for (f, code) in all_sources() {
        if below_transport(&f) {
            assert!(!names(&code, "transport"), "{f} imports crate::transport");
        }
        let core_file = core
            .iter()
            .any(|m| f == format!("{m}.rs") || f.starts_with(&format!("{m}/")));
        if core_file {
            assert!(!names(&code, "state"), "{f} imports crate::state");
        }
    }
}

#[test]
fn the_rule_sees_imports() {
    assert!(names("use crate::app::AppState;", "app"));
    assert!(names("use crate::{app, config};", "app"));
    assert!(names("fn f() { super::app::run() }", "app"));
    assert!(!names("use crate::application::X;", "app"));
    assert!(!names("use crate::config::{app};", "app"));
}
