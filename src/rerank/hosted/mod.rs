//! Hosted rerank APIs (Cohere, Voyage, Jina, Pinecone, Mixedbread, ZeroEntropy, TEI,
//! llama.cpp, Infinity). Placeholder until the wire formats land.

use crate::config::{HostedConfig, Provider};

use super::{RerankError, RerankFuture, RerankRequest, Reranker, ScoreKind};

pub struct HostedReranker {
    model: String,
}

impl HostedReranker {
    pub fn new(_name: &str, provider: Provider, cfg: &HostedConfig) -> Result<HostedReranker, String> {
        Ok(HostedReranker {
            model: cfg.model.clone().unwrap_or_else(|| provider.name().into()),
        })
    }
}

impl Reranker for HostedReranker {
    fn model(&self) -> &str {
        &self.model
    }
    fn score_kind(&self) -> ScoreKind {
        ScoreKind::Probability
    }
    fn rerank(&self, _request: RerankRequest) -> RerankFuture {
        Box::pin(async { Err(RerankError::Unavailable("not implemented yet".into())) })
    }
}
