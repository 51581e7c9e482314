//! The decoder ("LLM") keys of an `onnx` reranker: `family`, `instruction`, `prompt`
//! and `padding`. Without `family` the model is a cross-encoder and these keys are
//! refused; with it the model reads a prompt and is scored from the logits of two
//! answer tokens (see `rerank::onnx::decoder`).

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError, OnnxConfig};

/// Which published prompt and scoring a decoder reranker uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Family {
    /// Qwen3-Reranker (0.6B, 4B, 8B): chat prompt, `yes`/`no`, softmax.
    Qwen3Reranker,
    /// mxbai-rerank-base-v2 / large-v2: Qwen2 chat prompt, `1`/`0`, logit difference.
    MxbaiRerankV2,
    /// Nothing preset: `prompt` says everything (at least `positive` and `negative`).
    Custom,
}

impl Family {
    pub fn as_str(self) -> &'static str {
        match self {
            Family::Qwen3Reranker => "qwen3-reranker",
            Family::MxbaiRerankV2 => "mxbai-rerank-v2",
            Family::Custom => "custom",
        }
    }
}

/// How the logits of the positive and negative answer tokens make a score.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreFunction {
    /// The positive token's probability in a softmax over the two:
    /// sigmoid(positive − negative), 0..1 (Qwen3-Reranker).
    Softmax,
    /// positive − negative, unbounded (mxbai-rerank-v2).
    Difference,
    /// The positive token's logit alone (e.g. bge-reranker-v2-gemma).
    Positive,
}

/// Which part of a prompt is cut when it is longer than `max_length`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Truncation {
    /// Instruction, query and document lines are tokenized as one text and cut at its
    /// end (Qwen3-Reranker's `process_inputs`).
    Body,
    /// The query part and the document part are tokenized apart; the query keeps at
    /// most 3/4 of the room and the document is cut to the rest (mxbai-rerank-v2).
    Document,
}

/// Where padding goes in a batch; both give the same scores (each row's last real
/// token is read), so this is only about what the graph computes fastest.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Padding {
    #[default]
    Left,
    Right,
}

/// `[rerankers.<name>.prompt]`: overrides of the family's prompt, every key optional.
/// The prompt is `prefix`, then the body — `instruction_line` (only when there is an
/// instruction), `query_line`, `document_line` and `task_line` (when not empty),
/// joined by `separator` — then `suffix`. `{instruction}`, `{query}` and `{document}`
/// are replaced once (text inside the values is never read as a placeholder).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PromptConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instruction_line: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_line: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document_line: Option<String>,
    /// A fixed line after the document, never cut.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task_line: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub separator: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suffix: Option<String>,
    /// The answer token whose logit means "relevant" (must be one token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positive: Option<String>,
    /// The answer token whose logit means "not relevant" (must be one token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub negative: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub score: Option<ScoreFunction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncate: Option<Truncation>,
}

/// The decoder keys of one `onnx` reranker, checked before anything is loaded.
pub(super) fn validate(o: &OnnxConfig, key: &dyn Fn(&str) -> String) -> Result<(), ConfigError> {
    let Some(family) = o.family else {
        for (name, set) in [
            ("instruction", o.instruction.is_some()),
            ("prompt", o.prompt.is_some()),
            ("padding", o.padding.is_some()),
        ] {
            if set {
                return Err(invalid(
                    key(name),
                    "applies to decoder rerankers only: set family (qwen3-reranker, \
                     mxbai-rerank-v2 or custom)",
                ));
            }
        }
        return Ok(());
    };
    crate::rerank::onnx::decoder::Template::resolve(
        family,
        o.prompt.as_deref(),
        o.instruction.as_deref(),
    )
    .map(drop)
    .map_err(|(k, why)| invalid(key(k), why))
}

#[cfg(test)]
mod tests {
    use crate::config::{Config, Family, Padding, ScoreFunction};

    fn load(extra: &str) -> Result<Config, String> {
        Config::from_toml(&format!(
            "[rerankers.llm]\nkind = \"onnx\"\nmodel_dir = \"/models/q\"\n{extra}"
        ))
        .map_err(|e| e.to_string())
    }

    #[test]
    fn decoder_keys_parse() {
        let c = load(
            "family = \"mxbai-rerank-v2\"\ninstruction = \"be strict\"\npadding = \"right\"\n\
             [rerankers.llm.prompt]\nseparator = \"\\n\\n\"\nscore = \"softmax\"\n",
        )
        .unwrap();
        let crate::config::RerankerConfig::Onnx(o) = &c.rerankers["llm"] else {
            panic!("onnx")
        };
        assert_eq!(o.family, Some(Family::MxbaiRerankV2));
        assert_eq!(o.padding, Some(Padding::Right));
        let p = o.prompt.as_ref().unwrap();
        assert_eq!(p.separator.as_deref(), Some("\n\n"));
        assert_eq!(p.score, Some(ScoreFunction::Softmax));
    }

    #[test]
    fn decoder_keys_without_family_and_bad_prompts_name_the_key() {
        let e = load("instruction = \"x\"\n").unwrap_err();
        assert!(
            e.contains("rerankers.llm.instruction") && e.contains("family"),
            "{e}"
        );
        let e = load("family = \"custom\"\n").unwrap_err();
        assert!(e.contains("rerankers.llm.prompt.positive"), "{e}");
        let e = load("family = \"qwen3-reranker\"\n[rerankers.llm.prompt]\nquery_line = \"Q:\"\n")
            .unwrap_err();
        assert!(
            e.contains("rerankers.llm.prompt.query_line") && e.contains("{query}"),
            "{e}"
        );
        let e = load("family = \"qwen4\"\n").unwrap_err();
        assert!(e.contains("qwen4"), "{e}");
        let e = load("family = \"qwen3-reranker\"\n[rerankers.llm.prompt]\npositiv = \"y\"\n")
            .unwrap_err();
        assert!(e.contains("positiv"), "{e}");
    }

    #[test]
    fn collections_take_an_instruction() {
        let c = load(
            "family = \"qwen3-reranker\"\n[collections.default]\ninstruction = \"general\"\n\
             [collections.docs]\nenabled = true\nreranker = \"llm\"\ninstruction = \"laws\"\n",
        )
        .unwrap();
        assert_eq!(c.collection("docs").instruction.as_deref(), Some("laws"));
        assert_eq!(
            c.collection("other").instruction.as_deref(),
            Some("general")
        );
    }
}
