//! Replays the 58 REST exchanges recorded from a real Qdrant 1.18.3 against the double, in file
//! order (they build on each other), and checks status, headers and body.
//!
//! Bodies are compared with key order, numbers within 1e-5 (integer vs float kind must match),
//! `time` ignored. Two exchanges are compared without regard to order, because the README of the
//! recordings says a real Qdrant returns their tied fused scores in either order:
//! `query-prefetch-rrf` (ids 7 and 4 tie at 0.5) and `hybrid-query-rrf`. For those the points
//! are sorted by id on both sides and then compared in full (ids, versions, scores, payloads),
//! which is stricter than "status and shape" but still order-insensitive.

mod common;

use common::{client, compare, identical, python_json, send, shared_dir};
use http::Method;
use secondpass_it::qdrant_double::QdrantDouble;
use serde_json::Value;

/// Exchanges whose point order is not deterministic on a real server.
const ORDER_INSENSITIVE: &[&str] = &["query-prefetch-rrf", "hybrid-query-rrf"];

fn load() -> Vec<Value> {
    let path = shared_dir().join("qdrant/recordings-v1.18.3/rest.jsonl");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "cannot read {}: {e} (set SECONDPASS_SHARED_DIR)",
            path.display()
        )
    });
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn sort_points_by_id(v: &mut Value) {
    if let Some(points) = v
        .pointer_mut("/result/points")
        .and_then(Value::as_array_mut)
    {
        points.sort_by_key(|p| p["id"].to_string());
    }
}

#[tokio::test]
async fn replay_all_rest_recordings_in_order() {
    let recs = load();
    assert_eq!(recs.len(), 58, "expected 58 recorded exchanges");
    let qdrant = QdrantDouble::start().await.unwrap();
    let c = client();
    let mut failures: Vec<String> = Vec::new();
    let mut not_identical: Vec<String> = Vec::new();

    for rec in &recs {
        let name = rec["name"].as_str().unwrap();
        let method: Method = rec["method"].as_str().unwrap().parse().unwrap();
        let url = format!("{}{}", qdrant.url(), rec["path"].as_str().unwrap());
        let body = match (
            &rec["request"],
            rec["request_is_raw_text"].as_bool().unwrap(),
        ) {
            (Value::Null, _) => None,
            (Value::String(s), true) => {
                // raw bodies: malformed JSON sent as JSON; the "wrong content type" one as text
                let ct = if name == "err-wrong-content-type" {
                    "text/plain"
                } else {
                    "application/json"
                };
                Some((s.as_bytes().to_vec(), Some(ct)))
            }
            (v, _) => Some((python_json(v), Some("application/json"))),
        };
        let resp = send(&c, method, &url, body, true).await;

        let mut diffs = Vec::new();
        let want_status = rec["status"].as_u64().unwrap() as u16;
        if resp.status.as_u16() != want_status {
            diffs.push(format!(
                "status {} != recorded {want_status}",
                resp.status.as_u16()
            ));
        }
        let headers = &rec["headers"];
        for h in ["content-type", "content-encoding", "vary"] {
            let want = headers.get(h).and_then(Value::as_str);
            if resp.header(h) != want {
                diffs.push(format!(
                    "header {h}: {:?} != recorded {want:?}",
                    resp.header(h)
                ));
            }
        }
        let content_type = headers
            .get("content-type")
            .and_then(Value::as_str)
            .unwrap_or("");
        let want_body = &rec["response"];
        if content_type.starts_with("application/json") {
            let mut got = resp.json();
            let mut want = want_body.clone();
            if ORDER_INSENSITIVE.contains(&name) {
                sort_points_by_id(&mut got);
                sort_points_by_id(&mut want);
            }
            compare("$", &got, &want, &mut diffs);
            if diffs.is_empty() && !identical(&got, &want) {
                not_identical.push(name.to_string());
            }
        } else {
            let got = String::from_utf8_lossy(&resp.body);
            if got != want_body.as_str().unwrap_or("") {
                diffs.push(format!("body {got:?} != recorded {want_body}"));
            }
        }
        if !diffs.is_empty() {
            failures.push(format!("{name}:\n    {}", diffs.join("\n    ")));
        }
    }

    assert!(
        failures.is_empty(),
        "{} of {} exchanges differ:\n{}",
        failures.len(),
        recs.len(),
        failures.join("\n")
    );
    // Everything in the recordings, the double matches to the printed digit (scores are computed
    // in f32 like Qdrant does); this list stays empty unless an f32 computation drifts.
    assert!(
        not_identical.is_empty(),
        "matched within 1e-5 but not digit for digit: {not_identical:?}"
    );

    let log = qdrant.request_log();
    assert_eq!(log.len(), recs.len(), "every request is logged");
}
