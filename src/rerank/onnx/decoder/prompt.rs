//! The prompts of the decoder reranker families, as their authors publish them, and
//! the `custom` family's overrides.
//!
//! - Qwen3-Reranker (QwenLM/Qwen3-Embedding, README "Transformers Usage"): the body
//!   `<Instruct>: {instruction}\n<Query>: {query}\n<Document>: {doc}` between a fixed
//!   system/user prefix and an assistant suffix with an empty think block; scored by
//!   the softmax over the logits of `no` and `yes`. The evaluation code
//!   (`evaluation/qwen3_reranker_model.py`) joins the lines with `\n\n`: set
//!   `prompt.separator` for that.
//! - mxbai-rerank-v2 (mixedbread-ai/mxbai-rerank, `mxbai_rerank_v2.py`): Qwen2's chat
//!   prefix, `instruction: ...` (only when given), `query: ...`, `document: ...` and a
//!   task line, joined by `\n`; scored by logit("1") − logit("0").

use serde::Serialize;

use crate::config::{Family, PromptConfig, ScoreFunction, Truncation};

const QWEN3_PREFIX: &str = "<|im_start|>system\nJudge whether the Document meets the requirements based on the Query and the Instruct provided. Note that the answer can only be \"yes\" or \"no\".<|im_end|>\n<|im_start|>user\n";
const QWEN3_SUFFIX: &str = "<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n";
const QWEN3_INSTRUCTION: &str =
    "Given a web search query, retrieve relevant passages that answer the query";
const MXBAI_PREFIX: &str = "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n<|im_start|>user\n";
const MXBAI_SUFFIX: &str = "<|im_end|>\n<|im_start|>assistant\n";
const MXBAI_TASK: &str = "You are a search relevance expert who evaluates how well documents match search queries. For each query-document pair, carefully analyze the semantic relationship between them, then provide your binary relevance judgment (0 for not relevant, 1 for relevant).\nRelevance:";

/// A resolved prompt and scoring: the family's, with the configured overrides.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Template {
    pub family: Family,
    pub prefix: String,
    pub instruction_line: String,
    pub query_line: String,
    pub document_line: String,
    pub task_line: String,
    pub separator: String,
    pub suffix: String,
    /// Used when neither the request, the collection nor the reranker gives one.
    pub default_instruction: Option<String>,
    pub positive: String,
    pub negative: String,
    pub score: ScoreFunction,
    pub truncate: Truncation,
}

impl Template {
    /// The family's published prompt.
    pub fn family(family: Family) -> Template {
        let base = Template {
            family,
            prefix: String::new(),
            instruction_line: "{instruction}".into(),
            query_line: "{query}".into(),
            document_line: "{document}".into(),
            task_line: String::new(),
            separator: "\n".into(),
            suffix: String::new(),
            default_instruction: None,
            positive: String::new(),
            negative: String::new(),
            score: ScoreFunction::Softmax,
            truncate: Truncation::Body,
        };
        match family {
            Family::Qwen3Reranker => Template {
                prefix: QWEN3_PREFIX.into(),
                instruction_line: "<Instruct>: {instruction}".into(),
                query_line: "<Query>: {query}".into(),
                document_line: "<Document>: {document}".into(),
                suffix: QWEN3_SUFFIX.into(),
                default_instruction: Some(QWEN3_INSTRUCTION.into()),
                positive: "yes".into(),
                negative: "no".into(),
                ..base
            },
            Family::MxbaiRerankV2 => Template {
                prefix: MXBAI_PREFIX.into(),
                instruction_line: "instruction: {instruction}".into(),
                query_line: "query: {query}".into(),
                document_line: "document: {document}".into(),
                task_line: MXBAI_TASK.into(),
                suffix: MXBAI_SUFFIX.into(),
                positive: "1".into(),
                negative: "0".into(),
                score: ScoreFunction::Difference,
                truncate: Truncation::Document,
                ..base
            },
            Family::Custom => base,
        }
    }

    /// The family's prompt with `prompt`'s overrides and the reranker's
    /// `instruction`; `Err((key, why))` names the offending key under the reranker.
    pub fn resolve(
        family: Family,
        prompt: Option<&PromptConfig>,
        instruction: Option<&str>,
    ) -> Result<Template, (&'static str, String)> {
        let mut t = Template::family(family);
        if let Some(p) = prompt {
            let PromptConfig {
                prefix,
                instruction_line,
                query_line,
                document_line,
                task_line,
                separator,
                suffix,
                positive,
                negative,
                score,
                truncate,
            } = p;
            macro_rules! take {
                ($($f:ident),*) => { $( if let Some(v) = $f { t.$f = v.clone(); } )* };
            }
            take!(
                prefix,
                instruction_line,
                query_line,
                document_line,
                task_line,
                separator,
                suffix,
                positive,
                negative,
                score,
                truncate
            );
        }
        if let Some(i) = instruction.filter(|i| !i.trim().is_empty()) {
            t.default_instruction = Some(i.to_string());
        }
        for (key, line, placeholder) in [
            ("prompt.query_line", &t.query_line, "{query}"),
            ("prompt.document_line", &t.document_line, "{document}"),
            (
                "prompt.instruction_line",
                &t.instruction_line,
                "{instruction}",
            ),
        ] {
            if !line.contains(placeholder) {
                return Err((key, format!("must contain {placeholder}")));
            }
        }
        for (key, token) in [
            ("prompt.positive", &t.positive),
            ("prompt.negative", &t.negative),
        ] {
            if token.is_empty() {
                return Err((
                    key,
                    format!(
                        "the {} family needs prompt.positive and prompt.negative (the answer \
                         tokens scored)",
                        family.as_str()
                    ),
                ));
            }
        }
        if t.positive == t.negative {
            return Err(("prompt.negative", "must differ from prompt.positive".into()));
        }
        Ok(t)
    }

    /// The template as one canonical text: what makes two templates score alike,
    /// kept in the score cache's key as its own field.
    pub fn cache_key(&self) -> String {
        serde_json::to_string(self).expect("a template serializes")
    }

    /// `query_line` (after `instruction_line` when there is an instruction), joined
    /// by the separator: the query part of the body.
    pub fn query_part(&self, instruction: Option<&str>, query: &str) -> String {
        let q = fill(&self.query_line, "{query}", query);
        match instruction {
            Some(i) => {
                let mut s = fill(&self.instruction_line, "{instruction}", i);
                s.push_str(&self.separator);
                s.push_str(&q);
                s
            }
            None => q,
        }
    }

    pub fn document_part(&self, document: &str) -> String {
        fill(&self.document_line, "{document}", document)
    }

    /// The whole body as one text: query part, separator, document part.
    pub fn body(&self, instruction: Option<&str>, query: &str, document: &str) -> String {
        let mut s = self.query_part(instruction, query);
        s.push_str(&self.separator);
        s.push_str(&self.document_part(document));
        s
    }

    /// What follows the body and is never cut, in pieces tokenized apart (as
    /// mxbai-rerank-v2 splices them): separator and task line when there is one, then
    /// the suffix.
    pub fn tail(&self) -> Vec<&str> {
        let mut pieces = Vec::with_capacity(3);
        if !self.task_line.is_empty() {
            pieces.extend([self.separator.as_str(), self.task_line.as_str()]);
        }
        pieces.push(&self.suffix);
        pieces
    }

    /// The instruction a request gets: its own (not blank), else the default.
    pub fn instruction<'a>(&'a self, requested: Option<&'a str>) -> Option<&'a str> {
        requested
            .filter(|i| !i.trim().is_empty())
            .or(self.default_instruction.as_deref())
    }
}

/// `line` with every `placeholder` replaced by `value`, in one pass (a value that
/// contains a placeholder is not read again).
fn fill(line: &str, placeholder: &str, value: &str) -> String {
    line.split(placeholder).collect::<Vec<_>>().join(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qwen3_prompt_is_the_model_cards() {
        let t = Template::resolve(Family::Qwen3Reranker, None, None).unwrap();
        assert_eq!(
            t.body(t.instruction(None), "What is the capital of China?", "Beijing."),
            "<Instruct>: Given a web search query, retrieve relevant passages that answer the query\n<Query>: What is the capital of China?\n<Document>: Beijing."
        );
        assert_eq!(t.tail(), vec![QWEN3_SUFFIX]);
        assert_eq!((t.positive.as_str(), t.negative.as_str()), ("yes", "no"));
        assert_eq!(t.score, ScoreFunction::Softmax);
        // A request's instruction wins; a blank one does not count.
        assert_eq!(t.instruction(Some("Find code")), Some("Find code"));
        assert_eq!(t.instruction(Some("  ")), Some(QWEN3_INSTRUCTION));
    }

    #[test]
    fn mxbai_prompt_has_an_instruction_line_only_when_given() {
        let t = Template::resolve(Family::MxbaiRerankV2, None, None).unwrap();
        assert_eq!(t.instruction(None), None);
        assert_eq!(t.query_part(None, "q"), "query: q");
        assert_eq!(
            t.query_part(Some("be strict"), "q"),
            "instruction: be strict\nquery: q"
        );
        assert_eq!(t.document_part("d"), "document: d");
        assert_eq!(t.tail(), vec!["\n", MXBAI_TASK, MXBAI_SUFFIX]);
        assert_eq!(t.score, ScoreFunction::Difference);
        assert_eq!(t.truncate, Truncation::Document);
    }

    #[test]
    fn overrides_and_errors_name_the_key() {
        let p = PromptConfig {
            separator: Some("\n\n".into()),
            ..Default::default()
        };
        let t = Template::resolve(Family::Qwen3Reranker, Some(&p), Some("Find laws")).unwrap();
        assert!(t
            .body(t.instruction(None), "q", "d")
            .contains("Find laws\n\n<Query>: q\n\n<Document>: d"));
        assert_ne!(
            t.cache_key(),
            Template::family(Family::Qwen3Reranker).cache_key()
        );
        let e = Template::resolve(Family::Custom, None, None).unwrap_err();
        assert_eq!(e.0, "prompt.positive");
        let p = PromptConfig {
            positive: Some("Yes".into()),
            negative: Some("No".into()),
            document_line: Some("B: {doc}".into()),
            ..Default::default()
        };
        let e = Template::resolve(Family::Custom, Some(&p), None).unwrap_err();
        assert_eq!(e.0, "prompt.document_line");
        assert!(e.1.contains("{document}"), "{}", e.1);
    }

    #[test]
    fn placeholders_are_filled_once() {
        let t = Template::family(Family::MxbaiRerankV2);
        assert_eq!(t.query_part(None, "{document}"), "query: {document}");
        assert_eq!(fill("{x}-{x}", "{x}", "a"), "a-a");
    }
}
