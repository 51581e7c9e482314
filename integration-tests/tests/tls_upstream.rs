//! TLS to the upstream: secondpass talks https:// (REST) and TLS gRPC to a real Qdrant
//! serving TLS itself (`service.enable_tls`) with a certificate signed by a private CA
//! given as `upstream.ca_file`; without the CA the connection is refused.

mod support;

use std::time::{Duration, Instant};

use qdrant_client::qdrant::points_client::PointsClient;
use qdrant_client::qdrant::CountPoints;
use secondpass_it::real_qdrant::RealQdrant;
use serde_json::json;
use support::{config_with_grpc, query_vector, Proxy};

/// A private CA, and a certificate for `localhost` it signed, as PEM.
struct Pki {
    ca: String,
    cert: String,
    key: String,
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
        ca: ca.pem(),
        cert: cert.pem(),
        key: key.serialize_pem(),
    }
}

#[tokio::test]
async fn https_and_tls_grpc_upstreams_with_a_private_ca() {
    let pki = pki();
    let dir = std::env::temp_dir().join(format!("sp-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str, pem: &str| {
        let path = dir.join(name);
        std::fs::write(&path, pem).unwrap();
        path.display().to_string()
    };
    let (ca, cert, key) = (
        file("ca.pem", &pki.ca),
        file("cert.pem", &pki.cert),
        file("key.pem", &pki.key),
    );
    let qdrant = RealQdrant::own(&[
        ("QDRANT__SERVICE__ENABLE_TLS", "true"),
        ("QDRANT__TLS__CERT", &cert),
        ("QDRANT__TLS__KEY", &key),
    ]);
    assert!(
        qdrant.url.starts_with("https://localhost:"),
        "{}",
        qdrant.url
    );
    let mut cfg = config_with_grpc(&qdrant.url, &qdrant.grpc_url, &["docs"], "");
    cfg.upstream.ca_file = Some(ca.into());
    let proxy = Proxy::start(cfg).await;
    // Ready once secondpass reaches it over TLS (bounded).
    let deadline = Instant::now() + Duration::from_secs(30);
    while proxy.get_admin("/readyz").await.status != 200 {
        assert!(Instant::now() < deadline, "Qdrant over TLS never got ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
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
    let untrusting = Proxy::start(config_with_grpc(
        &qdrant.url,
        &qdrant.grpc_url,
        &["docs"],
        "",
    ))
    .await;
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
