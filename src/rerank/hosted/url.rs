//! The endpoint URL: `base_url` (with any gateway prefix, or the version segment the
//! SDKs write) followed by the endpoint path.

use http::Uri;

/// `base` (which may end in a path prefix, with or without a slash) followed by `path`.
/// A base that already ends in the version segment `path` starts with (`.../v1` and
/// `/v1/rerank`, as the official SDKs write their base URLs) does not get it twice.
pub(super) fn join_url(base: &str, path: &str) -> Result<Uri, String> {
    let base_trimmed = base.trim_end_matches('/');
    // The base's path (not its host: `http://v1` is a host).
    let base_path = base_trimmed
        .parse::<Uri>()
        .map(|u| u.path().trim_end_matches('/').to_string())
        .unwrap_or_default();
    let path = match path.get(1..).and_then(|p| p.split_once('/')) {
        Some((version, _))
            if is_version(version) && base_path.ends_with(&format!("/{version}")) =>
        {
            &path[version.len() + 1..]
        }
        _ => path,
    };
    let joined = format!("{base_trimmed}{path}");
    let uri: Uri = joined
        .parse()
        .map_err(|e| format!("base_url `{base}` is not a URL: {e}"))?;
    if !matches!(uri.scheme_str(), Some("http" | "https")) || uri.host().is_none() {
        return Err(format!(
            "base_url `{base}` must be an http:// or https:// URL"
        ));
    }
    Ok(uri)
}

/// `v1`, `v2`, ...
fn is_version(segment: &str) -> bool {
    segment
        .strip_prefix('v')
        .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
}

/// The URL without any `user:password@` (which a gateway URL might carry).
pub(super) fn without_userinfo(uri: &Uri) -> String {
    let s = uri.to_string();
    match (uri.scheme_str(), uri.authority()) {
        (Some(scheme), Some(a)) if a.as_str().contains('@') => {
            let host = a.as_str().rsplit('@').next().unwrap_or_default();
            let path = uri.path_and_query().map_or("", |p| p.as_str());
            format!("{scheme}://{host}{path}")
        }
        _ => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_keep_path_prefixes() {
        assert_eq!(
            join_url("https://api.cohere.com", "/v2/rerank").unwrap(),
            "https://api.cohere.com/v2/rerank"
        );
        assert_eq!(
            join_url("https://gw.example.com/cohere/", "/v2/rerank").unwrap(),
            "https://gw.example.com/cohere/v2/rerank"
        );
        assert_eq!(
            join_url("http://tei:8080/a/b", "/rerank").unwrap(),
            "http://tei:8080/a/b/rerank"
        );
        assert!(join_url("tei:8080", "/rerank").is_err());
        let with_user = join_url("https://me:pw@gw.example.com/x", "/rerank").unwrap();
        assert_eq!(
            without_userinfo(&with_user),
            "https://gw.example.com/x/rerank"
        );
        assert!(join_url("ftp://x", "/rerank").is_err());
    }

    #[test]
    fn sdk_base_urls_with_the_version_are_not_doubled() {
        for (base, path, want) in [
            (
                "https://api.voyageai.com/v1",
                "/v1/rerank",
                "https://api.voyageai.com/v1/rerank",
            ),
            (
                "https://api.voyageai.com/v1/",
                "/v1/rerank",
                "https://api.voyageai.com/v1/rerank",
            ),
            (
                "https://ai.mongodb.com/v1",
                "/v1/rerank",
                "https://ai.mongodb.com/v1/rerank",
            ),
            (
                "https://api.zeroentropy.dev/v1",
                "/v1/models/rerank",
                "https://api.zeroentropy.dev/v1/models/rerank",
            ),
            (
                "https://api.cohere.com/v2",
                "/v2/rerank",
                "https://api.cohere.com/v2/rerank",
            ),
            (
                "https://api.mixedbread.com/v1",
                "/v1/reranking",
                "https://api.mixedbread.com/v1/reranking",
            ),
            (
                "https://gw.example.com/jina/v1",
                "/v1/rerank",
                "https://gw.example.com/jina/v1/rerank",
            ),
            // without it, as before
            (
                "https://api.voyageai.com",
                "/v1/rerank",
                "https://api.voyageai.com/v1/rerank",
            ),
            // another version is not ours to drop; a host named v1 is not a path
            (
                "https://api.cohere.com/v1",
                "/v2/rerank",
                "https://api.cohere.com/v1/v2/rerank",
            ),
            ("http://v1", "/v1/rerank", "http://v1/v1/rerank"),
            ("http://tei/v1", "/rerank", "http://tei/v1/rerank"),
            (
                "https://x/api/v10",
                "/v1/rerank",
                "https://x/api/v10/v1/rerank",
            ),
        ] {
            assert_eq!(join_url(base, path).unwrap(), want, "{base} + {path}");
        }
    }
}
