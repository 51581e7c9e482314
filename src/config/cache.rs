//! `[cache]`: the in-process score cache and `[cache.redis]`, the tier shared by
//! replicas.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError, MAX_TIMEOUT_MS};

/// Scores already computed: (reranker, model, settings, query, document) → score.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct CacheConfig {
    /// Entries kept in this process (least recently used go first); 0: no in-process tier.
    pub max_entries: usize,
    /// How long a score stays valid.
    pub ttl_ms: u64,
    /// A tier on Redis behind the in-process one, shared by every replica.
    pub redis: Option<RedisConfig>,
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            max_entries: 0,
            ttl_ms: 3_600_000,
            redis: None,
        }
    }
}

/// `[cache.redis]`. The URL comes from exactly one of `url`, `url_env` and `url_file`
/// (a URL with a password belongs in the environment or a mounted Secret file).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// `redis://[user:password@]host:port[/db]`, or `rediss://...` for TLS.
    #[serde(default)]
    pub url: Option<String>,
    /// Environment variable holding the URL.
    #[serde(default)]
    pub url_env: Option<String>,
    /// File holding the URL (e.g. a mounted Kubernetes Secret).
    #[serde(default)]
    pub url_file: Option<PathBuf>,
    /// Put before every key (several deployments can share one Redis).
    #[serde(default = "default_prefix")]
    pub key_prefix: String,
    /// How long a score lives in Redis; unset: `cache.ttl_ms`.
    #[serde(default)]
    pub ttl_ms: Option<u64>,
    /// Most time one round trip (the lookup of a rerank batch, or its writes) may
    /// take; past it the lookup counts as misses and Redis is skipped for `retry_ms`.
    #[serde(default = "default_timeout")]
    pub timeout_ms: u64,
    /// Most time one connection attempt may take (attempts run in the background).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_ms: u64,
    /// After an error or a timeout, searches leave Redis alone this long while the
    /// connection is rebuilt.
    #[serde(default = "default_retry")]
    pub retry_ms: u64,
    /// Batches of writes in flight at most; more are dropped (and counted) rather
    /// than queued.
    #[serde(default = "default_pending_writes")]
    pub max_pending_writes: usize,
}

fn default_prefix() -> String {
    "secondpass:".into()
}
fn default_timeout() -> u64 {
    50
}
fn default_connect_timeout() -> u64 {
    1_000
}
fn default_retry() -> u64 {
    1_000
}
fn default_pending_writes() -> usize {
    64
}

impl RedisConfig {
    /// A tier at `url` with every other setting at its default.
    pub fn at(url: impl Into<String>) -> RedisConfig {
        RedisConfig {
            url: Some(url.into()),
            url_env: None,
            url_file: None,
            key_prefix: default_prefix(),
            ttl_ms: None,
            timeout_ms: default_timeout(),
            connect_timeout_ms: default_connect_timeout(),
            retry_ms: default_retry(),
            max_pending_writes: default_pending_writes(),
        }
    }

    /// Which of `url`, `url_env` and `url_file` is set (an error unless exactly one).
    fn source(&self) -> Result<&'static str, ConfigError> {
        match (&self.url, &self.url_env, &self.url_file) {
            (Some(_), None, None) => Ok("url"),
            (None, Some(_), None) => Ok("url_env"),
            (None, None, Some(_)) => Ok("url_file"),
            (None, None, None) => Err(invalid(
                "cache.redis.url",
                "set one of url, url_env and url_file",
            )),
            _ => Err(invalid(
                "cache.redis.url",
                "set only one of url, url_env and url_file",
            )),
        }
    }

    /// The URL from wherever it is configured, checked to be a Redis URL (without
    /// connecting). It may hold a password: never log it; errors never show it.
    pub fn resolve_url(&self) -> Result<String, ConfigError> {
        let key = format!("cache.redis.{}", self.source()?);
        let url = match (&self.url, &self.url_env, &self.url_file) {
            (Some(u), _, _) => u.clone(),
            (_, Some(var), _) => std::env::var(var)
                .map_err(|_| invalid(&key, format!("environment variable {var} is not set")))?,
            (_, _, Some(path)) => std::fs::read_to_string(path)
                .map_err(|e| invalid(&key, format!("cannot read {}: {e}", path.display())))?,
            (None, None, None) => unreachable!("source() found one"),
        };
        let url = url.trim().to_string();
        if let Err(e) = redis::Client::open(url.as_str()) {
            return Err(invalid(
                key,
                format!(
                    "not a Redis URL (redis://host:port/db or rediss://... for TLS): {}",
                    e.category()
                ),
            ));
        }
        Ok(url)
    }

    /// How long an entry lives in Redis.
    pub fn ttl_ms(&self, cache: &CacheConfig) -> u64 {
        self.ttl_ms.unwrap_or(cache.ttl_ms)
    }
}

impl CacheConfig {
    /// Checks the section. A Redis URL in the file is parsed here; one in a variable
    /// or a file is read when the server starts ([`RedisConfig::resolve_url`]), so
    /// that the configuration can be checked where that secret is not present.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let Some(r) = &self.redis else {
            return Ok(());
        };
        if r.source()? == "url" {
            r.resolve_url()?;
        }
        if r.ttl_ms(self) == 0 {
            return Err(invalid("cache.redis.ttl_ms", "must be greater than 0"));
        }
        for (key, ms) in [
            ("cache.redis.timeout_ms", r.timeout_ms),
            ("cache.redis.connect_timeout_ms", r.connect_timeout_ms),
            ("cache.redis.retry_ms", r.retry_ms),
        ] {
            if ms == 0 || ms > MAX_TIMEOUT_MS {
                return Err(invalid(
                    key,
                    format!("must be between 1 and {MAX_TIMEOUT_MS} (ms)"),
                ));
            }
        }
        if r.max_pending_writes == 0 {
            return Err(invalid(
                "cache.redis.max_pending_writes",
                "must be greater than 0",
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    fn error(toml: &str) -> String {
        Config::from_toml(toml).unwrap_err().to_string()
    }

    #[test]
    fn redis_tier_from_a_url() {
        let c = Config::from_toml(
            "[cache]\nmax_entries = 10\n[cache.redis]\nurl = \"redis://127.0.0.1:6379/2\"\ntimeout_ms = 20",
        )
        .unwrap();
        let r = c.cache.redis.as_ref().unwrap();
        assert_eq!(r.resolve_url().unwrap(), "redis://127.0.0.1:6379/2");
        assert_eq!(r.timeout_ms, 20);
        assert_eq!(r.key_prefix, "secondpass:");
        assert_eq!(r.ttl_ms(&c.cache), 3_600_000);
        assert!(Config::from_toml("").unwrap().cache.redis.is_none());
    }

    #[test]
    fn redis_url_from_a_file_is_trimmed_and_never_shown() {
        let path = std::env::temp_dir().join(format!("secondpass-redis-{}", std::process::id()));
        std::fs::write(&path, "redis://:s3cret@127.0.0.1:6379\n").unwrap();
        let toml = format!("[cache.redis]\nurl_file = {:?}", path.display().to_string());
        let c = Config::from_toml(&toml).unwrap();
        let url = c.cache.redis.as_ref().unwrap().resolve_url().unwrap();
        assert_eq!(url, "redis://:s3cret@127.0.0.1:6379");
        std::fs::write(&path, "http://:s3cret@host").unwrap();
        let e = c
            .cache
            .redis
            .as_ref()
            .unwrap()
            .resolve_url()
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cache.redis.url_file") && !e.contains("s3cret"),
            "{e}"
        );
        let e = error("[cache.redis]\nurl = \"http://:s3cret@host\"");
        assert!(
            e.contains("cache.redis.url") && !e.contains("s3cret"),
            "{e}"
        );
        std::fs::remove_file(&path).unwrap();
    }

    #[test]
    fn a_url_from_the_environment_or_a_file_is_read_at_start() {
        // Valid without the secret (check-config where the Secret is not mounted) ...
        for toml in [
            "[cache.redis]\nurl_env = \"SECONDPASS_TEST_UNSET_REDIS_URL\"",
            "[cache.redis]\nurl_file = \"/nonexistent/redis-url\"",
        ] {
            let c = Config::from_toml(toml).unwrap();
            // ... but not startable: the error names the key.
            let e = c
                .cache
                .redis
                .unwrap()
                .resolve_url()
                .unwrap_err()
                .to_string();
            let key = toml.split('\n').nth(1).unwrap().split(' ').next().unwrap();
            assert!(e.contains(&format!("cache.redis.{key}")), "{e}");
        }
    }

    #[test]
    fn bad_redis_sections_name_their_key() {
        for (toml, key) in [
            ("[cache.redis]\ntimeout_ms = 5", "cache.redis.url"),
            (
                "[cache.redis]\nurl = \"redis://h\"\nurl_env = \"X\"",
                "cache.redis.url",
            ),
            (
                "[cache.redis]\nurl = \"redis://h\"\ntimeout_ms = 0",
                "cache.redis.timeout_ms",
            ),
            (
                "[cache.redis]\nurl = \"redis://h\"\nmax_pending_writes = 0",
                "cache.redis.max_pending_writes",
            ),
            (
                "[cache]\nttl_ms = 0\n[cache.redis]\nurl = \"redis://h\"",
                "cache.redis.ttl_ms",
            ),
            (
                "[cache.redis]\nurl = \"redis://h\"\nhost = \"h\"",
                "unknown field",
            ),
        ] {
            let e = error(toml);
            assert!(e.contains(key), "{toml}: {e}");
        }
    }
}
