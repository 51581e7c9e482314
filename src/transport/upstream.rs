//! The HTTP client to Qdrant: streaming pass-through and buffered JSON calls.

use std::time::{Duration, Instant};

use axum::body::Body;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName};
use http::{Request, Response, Uri};
use http_body_util::BodyExt;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;

use crate::config::UpstreamConfig;
use crate::error::Error;
use crate::http_client::{self, describe, Versions};
use crate::metrics::Metrics;

/// Headers that describe one connection, not the message: never forwarded.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Removes hop-by-hop headers, including those named in `Connection`.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok())
        .collect();
    for n in named {
        headers.remove(n);
    }
    for h in HOP_BY_HOP {
        headers.remove(*h);
    }
}

/// Which protocol an upstream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    /// Qdrant's REST API: HTTP/1.1 (or HTTP/2 over TLS when offered).
    Rest,
    /// Qdrant's gRPC API: HTTP/2 only (h2c over http://).
    Grpc,
}

#[derive(Clone)]
pub struct Upstream {
    client: Client<HttpsConnector<HttpConnector>, Body>,
    protocol: Protocol,
    /// `scheme://authority` plus any path prefix, without a trailing slash.
    base: String,
    timeout: Duration,
    metrics: std::sync::Arc<Metrics>,
}

/// A buffered upstream answer.
pub struct Buffered {
    pub status: http::StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// HTTP trailers (gRPC's `grpc-status` lives here).
    pub trailers: Option<HeaderMap>,
    pub elapsed: Duration,
}

impl Upstream {
    /// A client for Qdrant's REST (`cfg.url`) or gRPC (`cfg.grpc_url`) endpoint.
    pub fn new(
        cfg: &UpstreamConfig,
        protocol: Protocol,
        metrics: std::sync::Arc<Metrics>,
    ) -> Result<Upstream, Error> {
        let versions = match protocol {
            Protocol::Rest => Versions::Any,
            Protocol::Grpc => Versions::Http2Only,
        };
        let client = http_client::client(
            Duration::from_millis(cfg.connect_timeout_ms),
            cfg.ca_file.as_deref(),
            versions,
        )
        .map_err(Error::Internal)?;
        let url = match protocol {
            Protocol::Rest => &cfg.url,
            Protocol::Grpc => &cfg.grpc_url,
        };
        Ok(Upstream {
            client,
            protocol,
            base: url.trim_end_matches('/').to_string(),
            timeout: Duration::from_millis(cfg.timeout_ms),
            metrics,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn uri(&self, path_and_query: &str) -> Result<Uri, Error> {
        format!("{}{}", self.base, path_and_query)
            .parse()
            .map_err(|e| Error::Internal(format!("cannot build upstream URI: {e}")))
    }

    /// Sends `req` to Qdrant unchanged (but for hop-by-hop headers and `Host`) and
    /// streams the answer back.
    pub async fn forward(&self, req: Request<Body>) -> Result<Response<Body>, Error> {
        let (mut parts, body) = req.into_parts();
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_string();
        parts.uri = self.uri(&pq)?;
        self.prepare_headers(&mut parts.headers);
        let (resp, _) = self.send(Request::from_parts(parts, body)).await?;
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        Ok(Response::from_parts(parts, Body::new(body)))
    }

    /// Sends a request and reads the whole answer (for responses we rewrite).
    pub async fn call(&self, req: Request<Body>) -> Result<Buffered, Error> {
        let started = Instant::now();
        let (mut parts, body) = req.into_parts();
        let pq = parts
            .uri
            .path_and_query()
            .map(|p| p.as_str())
            .unwrap_or("/")
            .to_string();
        parts.uri = self.uri(&pq)?;
        self.prepare_headers(&mut parts.headers);
        let (resp, deadline) = self.send(Request::from_parts(parts, body)).await?;
        let (mut parts, body) = resp.into_parts();
        let collected = tokio::time::timeout_at(deadline, body.collect())
            .await
            .map_err(|_| Error::UpstreamTimeout(self.timeout.as_millis() as u64))?
            .map_err(|e| Error::UpstreamUnreachable(format!("reading the response: {e}")))?;
        let trailers = collected.trailers().cloned();
        strip_hop_by_hop(&mut parts.headers);
        Ok(Buffered {
            status: parts.status,
            headers: parts.headers,
            body: collected.to_bytes(),
            trailers,
            elapsed: started.elapsed(),
        })
    }

    /// Connection-level headers go; gRPC keeps `te: trailers`, which it requires.
    fn prepare_headers(&self, headers: &mut HeaderMap) {
        let te = headers.get(header::TE).cloned();
        strip_hop_by_hop(headers);
        headers.remove(header::HOST);
        if self.protocol == Protocol::Grpc {
            if let Some(te) = te.filter(|v| v.as_bytes() == b"trailers") {
                headers.insert(header::TE, te);
            }
        }
    }

    async fn send(
        &self,
        req: Request<Body>,
    ) -> Result<(Response<hyper::body::Incoming>, tokio::time::Instant), Error> {
        let deadline = crate::deadline::tokio_in(self.timeout);
        let count_error = |kind: &str| {
            self.metrics
                .upstream_errors
                .with_label_values(&[kind])
                .inc()
        };
        match tokio::time::timeout_at(deadline, self.client.request(req)).await {
            Err(_) => {
                count_error("timeout");
                Err(Error::UpstreamTimeout(self.timeout.as_millis() as u64))
            }
            Ok(Err(e)) => {
                count_error(if e.is_connect() { "connect" } else { "other" });
                Err(Error::UpstreamUnreachable(describe(&e)))
            }
            Ok(Ok(resp)) => {
                self.metrics
                    .upstream_responses
                    .with_label_values(&[Metrics::class(resp.status().as_u16())])
                    .inc();
                Ok((resp, deadline))
            }
        }
    }

    /// Whether Qdrant answers at all (any HTTP status counts).
    pub async fn probe(&self) -> bool {
        let path = match self.protocol {
            Protocol::Rest => "/readyz",
            Protocol::Grpc => "/qdrant.Qdrant/HealthCheck",
        };
        let Ok(uri) = self.uri(path) else {
            return false;
        };
        let req = Request::get(uri)
            .body(Body::empty())
            .expect("static request");
        let probe = self.client.request(req);
        matches!(
            tokio::time::timeout(self.timeout.min(Duration::from_secs(2)), probe).await,
            Ok(Ok(_))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_are_removed() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-custom".parse().unwrap());
        h.insert("x-custom", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("api-key", "secret".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("api-key"));
    }
}
