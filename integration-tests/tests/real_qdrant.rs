//! The end-to-end REST scenario against a real Qdrant: the one `QDRANT_URL` names
//! (`scripts/test` starts Qdrant 1.18.3 and exports it), else one started here from
//! `../shared/qdrant/bin` (see `secondpass_it::real_qdrant`). QDRANT_API_KEY is sent
//! as `api-key` when set. The same scenario runs against the double in rerank_rest.rs.

mod support;

use secondpass_it::real_qdrant::RealQdrant;
use support::{config, scenario, Proxy};

#[tokio::test]
async fn scenario_against_a_real_qdrant() {
    let Some(qdrant) = RealQdrant::for_test("scenario_against_a_real_qdrant").await else {
        return;
    };
    // unique: several test binaries may share one server
    let coll = format!("secondpass_it_{}", std::process::id());
    let proxy = Proxy::start(config(&qdrant.url, &[&coll], "")).await;
    scenario::run(&proxy, &coll).await;
    proxy.drop_collection(&coll).await;
}
