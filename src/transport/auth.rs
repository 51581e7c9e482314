//! Bearer tokens: the one comparison that the admin API and the rerank API share.

use axum::http::{header, HeaderMap};

/// Whether `headers` carry `Authorization: Bearer <token>`.
pub fn bearer_matches(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| same(t.trim().as_bytes(), token.as_bytes()))
}

/// Constant-time comparison, so the token cannot be guessed byte by byte.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_comparison() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }

    #[test]
    fn bearer_header() {
        let mut h = HeaderMap::new();
        assert!(!bearer_matches(&h, "abc"));
        h.insert(header::AUTHORIZATION, "Bearer abc".parse().unwrap());
        assert!(bearer_matches(&h, "abc"));
        assert!(!bearer_matches(&h, "abd"));
        h.insert(header::AUTHORIZATION, "Basic abc".parse().unwrap());
        assert!(!bearer_matches(&h, "abc"));
    }
}
