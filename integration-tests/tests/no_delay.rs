//! No Nagle stall on kept-alive connections (against the real Qdrant).
//!
//! Without `TCP_NODELAY` on accepted sockets, an answer forwarded in several writes
//! (Qdrant's gzip bodies, gRPC's headers/data/trailers) waits for the client's delayed
//! ACK: about 40 ms on every call of a kept-alive client that accepts gzip, which is
//! what Python `requests`/`httpx` and Node's `fetch` send by default. Each call below
//! is made directly and through secondpass on one kept-alive connection each, 30
//! times, and no call through secondpass may take 40 ms more than the same call made
//! directly. The bound is generous so that a loaded machine does not flake it; the
//! exact overhead is measured in BENCHMARKS.md.

mod support;

use std::time::{Duration, Instant};

use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use qdrant_client::qdrant::collections_client::CollectionsClient;
use qdrant_client::qdrant::points_client::PointsClient;
use qdrant_client::qdrant::{
    query, vector_input, DenseVector, GetCollectionInfoRequest, Query, QueryPoints, VectorInput,
};
use secondpass_it::real_qdrant::RealQdrant;
use serde_json::json;
use support::{config_with_grpc, Proxy};
use tonic::codec::CompressionEncoding;
use tonic::transport::Channel;

/// Extra time a call through secondpass may take over the same call made directly.
const BOUND: Duration = Duration::from_millis(40);
const CALLS: usize = 30;
const QUERY: &str = "capital of Germany";

/// One REST call with `Accept-Encoding: gzip` on the client's kept-alive connection;
/// returns how long the whole answer took.
async fn rest_call(c: &support::HttpClient, method: Method, url: &str, body: &[u8]) -> Duration {
    let mut req = Request::builder()
        .method(method)
        .uri(url)
        .header("accept-encoding", "gzip")
        .header("x-rerank-query", QUERY.replace(' ', "%20"));
    if !body.is_empty() {
        req = req.header("content-type", "application/json");
    }
    let started = Instant::now();
    let resp = c
        .request(req.body(Full::from(body.to_vec())).unwrap())
        .await
        .expect("request");
    let status = resp.status();
    let raw = resp.into_body().collect().await.expect("body").to_bytes();
    let took = started.elapsed();
    assert_eq!(status, StatusCode::OK, "{url}: {raw:?}");
    took
}

fn vector_query(collection: &str) -> QueryPoints {
    QueryPoints {
        collection_name: collection.into(),
        query: Some(Query {
            variant: Some(query::Variant::Nearest(VectorInput {
                variant: Some(vector_input::Variant::Dense(DenseVector {
                    data: vec![0.2, 0.1, 0.9, 0.7],
                })),
            })),
        }),
        limit: Some(3),
        with_payload: Some(true.into()),
        ..Default::default()
    }
}

/// Both ends of one kind of call, each on its own kept-alive connection.
#[derive(Clone, Copy)]
enum Call<'a> {
    Rest {
        method: &'a Method,
        path: &'a str,
        body: &'a [u8],
    },
    GrpcQuery {
        collection: &'a str,
    },
    GrpcCollection {
        collection: &'a str,
    },
}

struct Ends {
    rest: (support::HttpClient, support::HttpClient),
    rest_base: (String, String),
    points: (PointsClient<Channel>, PointsClient<Channel>),
    collections: (CollectionsClient<Channel>, CollectionsClient<Channel>),
}

async fn grpc_channel(url: &str) -> Channel {
    Channel::from_shared(url.to_string())
        .unwrap()
        .connect()
        .await
        .expect("connect")
}

impl Ends {
    async fn new(proxy: &Proxy, qdrant: &RealQdrant) -> Ends {
        let direct = grpc_channel(&qdrant.grpc_url).await;
        let through = grpc_channel(&format!("http://{}", proxy.server.grpc_addr)).await;
        let points = |ch: Channel| {
            PointsClient::new(ch)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
        };
        let collections = |ch: Channel| {
            CollectionsClient::new(ch)
                .accept_compressed(CompressionEncoding::Gzip)
                .send_compressed(CompressionEncoding::Gzip)
        };
        Ends {
            rest: (support::client(), support::client()),
            rest_base: (qdrant.url.clone(), proxy.url("")),
            points: (points(direct.clone()), points(through.clone())),
            collections: (collections(direct), collections(through)),
        }
    }

    /// The time of `call` made directly (`through == false`) or through secondpass.
    async fn time(&mut self, call: Call<'_>, through: bool) -> Duration {
        match call {
            Call::Rest { method, path, body } => {
                let (c, base) = if through {
                    (&self.rest.1, &self.rest_base.1)
                } else {
                    (&self.rest.0, &self.rest_base.0)
                };
                rest_call(c, method.clone(), &format!("{base}{path}"), body).await
            }
            Call::GrpcQuery { collection } => {
                let c = if through {
                    &mut self.points.1
                } else {
                    &mut self.points.0
                };
                let mut req = tonic::Request::new(vector_query(collection));
                req.metadata_mut()
                    .insert("x-rerank-query", QUERY.replace(' ', "%20").parse().unwrap());
                let started = Instant::now();
                let answer = c.query(req).await.expect("gRPC query");
                let took = started.elapsed();
                assert_eq!(answer.into_inner().result.len(), 3);
                took
            }
            Call::GrpcCollection { collection } => {
                let c = if through {
                    &mut self.collections.1
                } else {
                    &mut self.collections.0
                };
                let started = Instant::now();
                c.get(GetCollectionInfoRequest {
                    collection_name: collection.into(),
                })
                .await
                .expect("gRPC collection info");
                started.elapsed()
            }
        }
    }

    /// Makes `call` 30 times, alternating direct and through secondpass, and returns
    /// the calls through secondpass that took more than [`BOUND`] over the direct one.
    /// A slow pair is measured once more before it counts: a Nagle stall repeats on
    /// every call, a scheduling hiccup on a loaded machine does not.
    async fn slow_calls(&mut self, call: Call<'_>) -> Vec<(Duration, Duration)> {
        // Warm both connections (and the score cache, for the reranked calls).
        self.time(call, false).await;
        self.time(call, true).await;
        let mut slow = Vec::new();
        for _ in 0..CALLS {
            let mut pair = (self.time(call, false).await, self.time(call, true).await);
            if pair.1 > pair.0 + BOUND {
                pair = (self.time(call, false).await, self.time(call, true).await);
            }
            if pair.1 > pair.0 + BOUND {
                slow.push(pair);
            }
        }
        slow
    }
}

#[tokio::test]
async fn kept_alive_gzip_clients_see_no_nagle_stall() {
    let qdrant = RealQdrant::shared();
    let reranked = format!("nodelay_rr_{}", std::process::id());
    let plain = format!("nodelay_fwd_{}", std::process::id());
    // The score cache makes the repeated reranked calls cost the proxy, not the model.
    let extra = "[cache]\nmax_entries = 1000\n";
    let proxy = Proxy::start(config_with_grpc(
        &qdrant.url,
        &qdrant.grpc_url,
        &[&reranked],
        extra,
    ))
    .await;
    proxy.seed(&reranked, false).await;
    proxy.seed(&plain, false).await;
    let search = serde_json::to_vec(&json!({
        "query": [0.2, 0.1, 0.9, 0.7], "limit": 3, "with_payload": true
    }))
    .unwrap();
    let info = |c: &str| format!("/collections/{c}");
    let query = |c: &str| format!("/collections/{c}/points/query");
    let (info_plain, query_plain, query_reranked) = (info(&plain), query(&plain), query(&reranked));
    let calls = [
        (
            "REST GET collection (forwarded)",
            Call::Rest {
                method: &Method::GET,
                path: &info_plain,
                body: b"",
            },
        ),
        (
            "REST POST query (forwarded)",
            Call::Rest {
                method: &Method::POST,
                path: &query_plain,
                body: &search,
            },
        ),
        (
            "REST POST query (reranked)",
            Call::Rest {
                method: &Method::POST,
                path: &query_reranked,
                body: &search,
            },
        ),
        (
            "gRPC Collections/Get (forwarded)",
            Call::GrpcCollection { collection: &plain },
        ),
        (
            "gRPC Points/Query (forwarded)",
            Call::GrpcQuery { collection: &plain },
        ),
        (
            "gRPC Points/Query (reranked)",
            Call::GrpcQuery {
                collection: &reranked,
            },
        ),
    ];
    let mut ends = Ends::new(&proxy, qdrant).await;
    let mut failures = Vec::new();
    for (name, call) in calls {
        let slow = ends.slow_calls(call).await;
        if !slow.is_empty() {
            failures.push(format!(
                "{name}: {} of {CALLS} calls over direct + {BOUND:?} (direct, through): {slow:?}",
                slow.len()
            ));
        }
    }
    proxy.drop_collection(&reranked).await;
    proxy.drop_collection(&plain).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
