//! Score cache keys. Every input that changes a score goes into a SHA-256 digest as its
//! own named, length-prefixed field, so that no value can stand in for another
//! combination: a query holding NUL bytes or text that looks like a setting is still
//! only a query. The digest is the same in every process, so the shared tier (Redis)
//! keys on it; only digests leave the process, never a query or a document.
//!
//! To make something new part of the key (an instruction, a prompt template...): add
//! a field to [`Scope`] and one line to [`Scope::keyer`].

use std::io::Read;
use std::path::Path;

use ring::digest::{Context, SHA256};

use crate::rerank::chunk::{Chunking, HostedChunks};

/// Changed whenever the encoding changes, so that a shared tier never serves an
/// entry written under another encoding (old entries just expire).
const ENCODING: u64 = 1;

/// One document's key under one [`Scope`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Key(pub(crate) [u8; 32]);

impl Key {
    /// Lower-case hex, as the shared tier names its entries.
    pub fn hex(&self) -> String {
        hex(&self.0)
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A SHA-256 digest over named fields, in the order written. Each field is the name's
/// length, the name, the value's length and the value: no two sequences of fields
/// encode alike.
pub struct Fields(Context);

impl Fields {
    /// A digest of fields for one purpose (`scope`, `onnx`, `hosted`...).
    pub fn new(purpose: &str) -> Fields {
        let mut f = Fields(Context::new(&SHA256));
        f.num("encoding", Some(ENCODING)).str("purpose", purpose);
        f
    }

    pub fn bytes(&mut self, name: &str, value: &[u8]) -> &mut Fields {
        for part in [name.as_bytes(), value] {
            self.0.update(&(part.len() as u64).to_le_bytes());
            self.0.update(part);
        }
        self
    }

    pub fn str(&mut self, name: &str, value: &str) -> &mut Fields {
        self.bytes(name, value.as_bytes())
    }

    /// `None` is an empty value, a number always eight bytes: the two never meet.
    pub fn num(&mut self, name: &str, value: Option<u64>) -> &mut Fields {
        match value {
            Some(v) => self.bytes(name, &v.to_le_bytes()),
            None => self.bytes(name, &[]),
        }
    }

    fn finish(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.0.finish().as_ref());
        out
    }
}

/// What a reranker is, as far as its scores go: for a local model, the content of
/// its files and the settings that change what it sees; for a hosted API, the
/// provider, endpoint and model name. Two processes with the same model files and
/// settings have the same identity, whatever the files' paths.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Identity([u8; 32]);

impl Identity {
    pub fn new(fields: Fields) -> Identity {
        Identity(fields.finish())
    }

    /// An identity that is just a name (test rerankers, the trait's default).
    pub fn named(model: &str) -> Identity {
        let mut f = Fields::new("named");
        f.str("model", model);
        Identity::new(f)
    }

    /// The first 16 hex digits, for logs and status pages.
    pub fn short(&self) -> String {
        hex(&self.0[..8])
    }
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Identity({})", self.short())
    }
}

/// SHA-256 of a file's content (read in 1 MiB pieces).
pub fn file_digest(path: &Path) -> std::io::Result<[u8; 32]> {
    let mut file = std::fs::File::open(path)?;
    let mut ctx = Context::new(&SHA256);
    let mut buf = vec![0u8; 1 << 20];
    loop {
        match file.read(&mut buf)? {
            0 => break,
            n => ctx.update(&buf[..n]),
        }
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    Ok(out)
}

/// Everything besides the document that changes a score.
#[derive(Debug, Clone, Copy)]
pub struct Scope<'a> {
    /// The reranker's configured name.
    pub reranker: &'a str,
    /// The reranker's model and settings ([`crate::rerank::Reranker::identity`]).
    pub identity: Identity,
    /// The request's max length override (it changes what the model sees).
    pub max_length: Option<usize>,
    /// Long documents split into passages (`None`: truncated).
    pub chunking: Option<&'a Chunking>,
    pub query: &'a str,
    /// Decoder rerankers: the prompt template ([`crate::rerank::Reranker::prompt_key`])
    /// and the request's instruction; `None` for rerankers that read neither.
    pub template: Option<&'a str>,
    pub instruction: Option<&'a str>,
}

impl Scope<'_> {
    /// The digest of this scope, from which each document's key follows.
    pub fn keyer(&self) -> Keyer {
        let mut f = Fields::new("scope");
        f.str("reranker", self.reranker)
            .bytes("identity", &self.identity.0)
            .num("max_length", self.max_length.map(|n| n as u64));
        match self.chunking {
            None => {
                f.str("chunking", "truncate");
            }
            Some(c) => {
                f.str("chunking", "passages")
                    .num("chunk_tokens", c.tokens.map(|n| n as u64))
                    .num("chunk_overlap", Some(c.overlap as u64))
                    .num("max_chunks", Some(c.max_chunks as u64))
                    .str("chunk_aggregate", &c.aggregate.to_string())
                    .str(
                        "hosted_chunks",
                        match c.hosted {
                            HostedChunks::Passages => "passages",
                            HostedChunks::Provider => "provider",
                        },
                    );
            }
        }
        // Present only for decoder rerankers; named, so never confused with the query.
        if let Some(t) = self.template {
            f.str("template", t);
        }
        if let Some(i) = self.instruction {
            f.str("instruction", i);
        }
        f.str("query", self.query);
        Keyer(f.finish())
    }
}

/// A scope's digest: each document's key is SHA-256 over it and the document's text
/// (the digest has a fixed length, so the text is all the rest).
#[derive(Debug, Clone, Copy)]
pub struct Keyer([u8; 32]);

impl Keyer {
    pub fn key(&self, document: &str) -> Key {
        let mut ctx = Context::new(&SHA256);
        ctx.update(&self.0);
        ctx.update(document.as_bytes());
        let mut out = [0u8; 32];
        out.copy_from_slice(ctx.finish().as_ref());
        Key(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rerank::chunk::Aggregate;

    fn scope<'a>(query: &'a str, chunking: Option<&'a Chunking>) -> Scope<'a> {
        Scope {
            reranker: "local",
            identity: Identity::named("m"),
            max_length: None,
            chunking,
            query,
            template: None,
            instruction: None,
        }
    }

    fn chunking() -> Chunking {
        Chunking {
            tokens: Some(64),
            overlap: 16,
            max_chunks: 8,
            aggregate: Aggregate::Max,
            hosted: HostedChunks::Passages,
        }
    }

    #[test]
    fn keys_are_stable_across_processes() {
        // A fixed value: every replica must compute the same key for the same inputs
        // (worked out by hand from the encoding in the module's documentation).
        let k = scope("q", None).keyer().key("d");
        assert_eq!(k, scope("q", None).keyer().key("d"));
        assert_eq!(k.hex().len(), 64);
        assert_eq!(
            k.hex(),
            "c568fdbe907caaba1593509a84bfaee37623be3d96aef035c858bf42275affae"
        );
    }

    #[test]
    fn a_query_cannot_forge_the_chunking_field() {
        // The old key joined the chunking settings to the query with a NUL and their
        // Debug text: this query without chunking wrote the entry a chunked search read.
        let c = chunking();
        let forged = format!("q\u{0}{c:?}");
        let chunked = scope("q", Some(&c)).keyer().key("d");
        assert_ne!(scope(&forged, None).keyer().key("d"), chunked);
        assert_ne!(scope("q", None).keyer().key("d"), chunked);
    }

    #[test]
    fn every_field_changes_the_key() {
        let c = chunking();
        let base = scope("q", Some(&c));
        let key = |s: Scope<'_>, d: &str| s.keyer().key(d);
        let k = key(base, "d");
        let other_chunkings = [
            Chunking {
                tokens: None,
                ..chunking()
            },
            Chunking {
                overlap: 0,
                ..chunking()
            },
            Chunking {
                max_chunks: 2,
                ..chunking()
            },
            Chunking {
                aggregate: Aggregate::Blend(0.7),
                ..chunking()
            },
            Chunking {
                hosted: HostedChunks::Provider,
                ..chunking()
            },
        ];
        for o in &other_chunkings {
            assert_ne!(
                key(
                    Scope {
                        chunking: Some(o),
                        ..base
                    },
                    "d"
                ),
                k,
                "{o:?}"
            );
        }
        let others = [
            Scope {
                reranker: "other",
                ..base
            },
            Scope {
                identity: Identity::named("m2"),
                ..base
            },
            Scope {
                max_length: Some(64),
                ..base
            },
            Scope {
                chunking: None,
                ..base
            },
            Scope {
                query: "q2",
                ..base
            },
        ];
        for s in others {
            assert_ne!(key(s, "d"), k, "{s:?}");
        }
        assert_ne!(key(base, "d2"), k);
        // No boundary to move between the query and the document.
        assert_ne!(key(scope("ab", None), "c"), key(scope("a", None), "bc"));
        // A max length of 0 is not "no max length".
        let zero = Scope {
            max_length: Some(0),
            ..base
        };
        assert_ne!(key(zero, "d"), k);
    }

    #[test]
    fn identities_of_files_follow_their_content() {
        let dir = std::env::temp_dir().join(format!("secondpass-key-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let (a, b) = (dir.join("a"), dir.join("b"));
        std::fs::write(&a, b"model bytes").unwrap();
        std::fs::write(&b, b"model bytes").unwrap();
        assert_eq!(file_digest(&a).unwrap(), file_digest(&b).unwrap());
        std::fs::write(&b, b"other bytes").unwrap();
        assert_ne!(file_digest(&a).unwrap(), file_digest(&b).unwrap());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
