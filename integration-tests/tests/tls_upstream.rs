//! TLS to the upstream: secondpass talks https:// (REST) and TLS gRPC to a Qdrant
//! behind a TLS terminator whose certificate is signed by a private CA given as
//! `upstream.ca_file`; without the CA the connection is refused.

mod support;

use std::sync::Arc;

use qdrant_client::qdrant::points_client::PointsClient;
use qdrant_client::qdrant::CountPoints;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use secondpass_it::grpc_double::start_pair;
use serde_json::json;
use support::{config_with_grpc, query_vector, Proxy};
use tokio::net::{TcpListener, TcpStream};

/// Accepts TLS on 127.0.0.1:0 (ALPN h2 and http/1.1) and pipes the bytes to `target`.
async fn tls_terminator(
    target: std::net::SocketAddr,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
) -> std::net::SocketAddr {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .unwrap();
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(target).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            });
        }
    });
    addr
}

struct Pki {
    ca_pem: String,
    cert: CertificateDer<'static>,
    key: PrivateKeyDer<'static>,
}

fn pki() -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "secondpass test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let cert = params.signed_by(&key, &issuer).unwrap();
    Pki {
        ca_pem: ca.pem(),
        cert: cert.der().clone(),
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

#[tokio::test]
async fn https_and_tls_grpc_upstreams_with_a_private_ca() {
    let pki = pki();
    let (rest, grpc) = start_pair().await.unwrap();
    let rest_tls = tls_terminator(rest.addr, pki.cert.clone(), pki.key.clone_key()).await;
    let grpc_tls = tls_terminator(grpc.addr, pki.cert.clone(), pki.key.clone_key()).await;
    let dir = std::env::temp_dir().join(format!("sp-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let ca = dir.join("ca.pem");
    std::fs::write(&ca, &pki.ca_pem).unwrap();

    let rest_url = format!("https://localhost:{}", rest_tls.port());
    let grpc_url = format!("https://localhost:{}", grpc_tls.port());
    let mut cfg = config_with_grpc(&rest_url, &grpc_url, &["docs"], "");
    cfg.upstream.ca_file = Some(ca.clone());
    let proxy = Proxy::start(cfg).await;
    proxy.seed("docs", false).await;
    let r = proxy
        .post(
            "/collections/docs/points/search",
            &[("x-rerank-query", "capital of Germany")],
            &json!({"vector": query_vector(), "limit": 2}),
        )
        .await;
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.json()["rerank"]["status"], "applied");
    let mut points = PointsClient::connect(format!("http://{}", proxy.server.grpc_addr))
        .await
        .unwrap();
    let count = points
        .count(CountPoints {
            collection_name: "docs".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(count.into_inner().result.unwrap().count, 8);

    // Without the private CA the upstream certificate is not trusted: 502 / UNAVAILABLE.
    let untrusting = Proxy::start(config_with_grpc(&rest_url, &grpc_url, &["docs"], "")).await;
    let r = untrusting
        .post(
            "/collections/docs/points/search",
            &[],
            &json!({"vector": query_vector(), "limit": 2}),
        )
        .await;
    assert_eq!(r.status, 502);
    let mut points = PointsClient::connect(format!("http://{}", untrusting.server.grpc_addr))
        .await
        .unwrap();
    let err = points
        .count(CountPoints {
            collection_name: "docs".into(),
            ..Default::default()
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::Unavailable);
    std::fs::remove_dir_all(dir).unwrap();
}
