//! Outgoing HTTP(S): one way to build clients, for Qdrant (REST and gRPC) and the
//! hosted rerank APIs alike. TLS through rustls with the system's root certificates
//! plus an optional PEM file of extra CAs.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// HTTP versions a client may speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Versions {
    /// HTTP/1.1, or HTTP/2 where TLS negotiates it.
    Any,
    /// HTTP/2 only (h2c over http://), as gRPC needs.
    Http2Only,
}

/// The system's root certificates plus those in `ca_file`.
pub fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(cert); // skip the system's unparsable ones
    }
    if let Some(path) = ca_file {
        let bad = |e: &dyn std::fmt::Display| format!("CA file {}: {e}", path.display());
        for cert in CertificateDer::pem_file_iter(path).map_err(|e| bad(&e))? {
            roots.add(cert.map_err(|e| bad(&e))?).map_err(|e| bad(&e))?;
        }
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup: {e}"))?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// A connector for http:// and https:// URLs.
pub fn https_connector(
    connect_timeout: Duration,
    ca_file: Option<&Path>,
    versions: Versions,
) -> Result<HttpsConnector<HttpConnector>, String> {
    let mut http = HttpConnector::new();
    http.set_connect_timeout(Some(connect_timeout));
    http.set_nodelay(true);
    http.enforce_http(false);
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(ca_file)?)
        .https_or_http();
    Ok(match versions {
        Versions::Any => builder.enable_http1().enable_http2().wrap_connector(http),
        Versions::Http2Only => builder.enable_http2().wrap_connector(http),
    })
}

/// A pooled client for http:// and https:// URLs (the hosted rerank APIs).
pub fn client<B>(
    connect_timeout: Duration,
    ca_file: Option<&Path>,
    versions: Versions,
) -> Result<Client<HttpsConnector<HttpConnector>, B>, String>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    let connector = https_connector(connect_timeout, ca_file, versions)?;
    Ok(Client::builder(TokioExecutor::new())
        .pool_timer(hyper_util::rt::TokioTimer::new())
        .pool_idle_timeout(Duration::from_secs(30))
        .http2_only(versions == Versions::Http2Only)
        .build(connector))
}

/// An error with its chain of causes ("client error (Connect): tcp connect error: ...").
pub fn describe(e: &hyper_util::client::legacy::Error) -> String {
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    msg
}
