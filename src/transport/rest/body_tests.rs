//! Tests of the REST body rewrite and cut-back.

use super::*;
use crate::plan::{GroupWindow, Window};

fn on() -> CollectionSettings {
    CollectionSettings {
        enabled: true,
        pool: 50,
        ..Default::default()
    }
}

#[test]
fn search_is_widened_and_offset_dropped() {
    let body = json!({"vector": [1.0], "limit": 3, "offset": 2, "with_payload": ["title"],
                      "rerank": {"query": "q"}});
    let p = prepare(body, Endpoint::Search, &on(), None, None).unwrap();
    assert!(p.changed);
    assert_eq!(
        p.body,
        json!({"vector": [1.0], "limit": 50, "with_payload": ["title", "text"]})
    );
    let Decision::Rerank(plan) = &p.searches[0].decision else {
        panic!()
    };
    assert_eq!(
        plan.cut,
        Cut::Page(Window {
            offset: 2,
            limit: 3,
            fetch: 50
        })
    );
    assert_eq!(
        p.searches[0].restore,
        Restore::RemovePaths(vec!["text".into()])
    );
}

#[test]
fn query_api_defaults_limit_to_ten() {
    let body = json!({"query": {"text": "capital", "model": "m"}});
    let p = prepare(body, Endpoint::Query, &on(), None, None).unwrap();
    let Decision::Rerank(plan) = &p.searches[0].decision else {
        panic!()
    };
    assert_eq!(
        plan.cut,
        Cut::Page(Window {
            offset: 0,
            limit: 10,
            fetch: 50
        })
    );
    assert_eq!(&*plan.query, "capital");
    assert_eq!(p.body["query"], json!({"text": "capital", "model": "m"}));
}

#[test]
fn no_text_leaves_body_unchanged() {
    let body = json!({"vector": [1.0], "limit": 3});
    let p = prepare(body.clone(), Endpoint::Search, &on(), None, None).unwrap();
    assert!(!p.changed);
    assert_eq!(p.body, body);
    assert!(matches!(p.searches[0].decision, Decision::Skip(_)));
}

#[test]
fn hybrid_query_takes_the_prefetch_text_and_keeps_the_prefetch() {
    use crate::plan::query_text::QuerySource;
    let doc = |t: &str| json!({"query": {"text": t, "model": "qdrant/bm25"}, "using": "bm25"});
    let body = |second: Value| {
        json!({"searches": [{"prefetch": [{"query": [0.1], "using": "dense"}, second],
                             "query": {"fusion": "rrf"}, "limit": 3}]})
    };
    let p = prepare(body(doc("wing")), Endpoint::QueryBatch, &on(), None, None).unwrap();
    let Decision::Rerank(plan) = &p.searches[0].decision else {
        panic!("{:?}", p.searches[0].decision)
    };
    assert_eq!(
        (&*plan.query, plan.query_source),
        ("wing", QuerySource::Prefetch)
    );
    // Only the limit and the payload change: the prefetch reaches Qdrant as sent.
    assert_eq!(p.body["searches"][0]["prefetch"][1], doc("wing"));
    assert_eq!(p.body["searches"][0]["limit"], json!(50));
    let mut two = body(doc("wing"));
    two["searches"][0]["prefetch"][0] = doc("flutter");
    let p = prepare(two.clone(), Endpoint::QueryBatch, &on(), None, None).unwrap();
    assert!(!p.changed);
    assert_eq!(p.body, two);
    assert!(
        matches!(&p.searches[0].decision, Decision::Skip(r) if r.contains("2 different Document texts"))
    );
}

#[test]
fn disabled_directive_is_stripped_only() {
    let body = json!({"vector": [1.0], "limit": 3, "rerank": {"enabled": false}});
    let p = prepare(body, Endpoint::Search, &on(), Some("q"), None).unwrap();
    assert!(p.changed);
    assert_eq!(p.body, json!({"vector": [1.0], "limit": 3}));
    assert_eq!(p.searches[0].decision, Decision::Disabled);
}

#[test]
fn batch_plans_each_search_and_header_applies_to_all() {
    let body = json!({"searches": [
        {"vector": [1.0], "limit": 2},
        {"vector": [1.0], "limit": 2, "rerank": {"enabled": false}},
        {"vector": [1.0], "limit": 2, "with_payload": "bogus"}
    ]});
    let p = prepare(body, Endpoint::SearchBatch, &on(), Some("hdr"), None).unwrap();
    assert!(matches!(&p.searches[0].decision, Decision::Rerank(r) if &*r.query == "hdr"));
    assert_eq!(p.searches[1].decision, Decision::Disabled);
    assert!(matches!(&p.searches[2].decision, Decision::Skip(r) if r.contains("with_payload")));
    assert_eq!(p.body["searches"][0]["limit"], 50);
    assert_eq!(
        p.body["searches"][2],
        json!({"vector": [1.0], "limit": 2, "with_payload": "bogus"})
    );
}

#[test]
fn invalid_limit_is_left_to_qdrant() {
    let body = json!({"query": [1.0], "limit": -1});
    let p = prepare(body.clone(), Endpoint::Query, &on(), Some("q"), None).unwrap();
    assert!(matches!(p.searches[0].decision, Decision::Skip(_)));
    assert_eq!(p.body, body);
}

#[test]
fn bodies_we_do_not_understand() {
    assert_eq!(
        prepare(json!([1]), Endpoint::Search, &on(), None, None).unwrap_err(),
        PrepareError::NotOurs
    );
    assert_eq!(
        prepare(
            json!({"searches": 3}),
            Endpoint::QueryBatch,
            &on(),
            None,
            None
        )
        .unwrap_err(),
        PrepareError::NotOurs
    );
    assert!(matches!(
        prepare(
            json!({"rerank": {"pool": -3}}),
            Endpoint::Search,
            &on(),
            None,
            None
        )
        .unwrap_err(),
        PrepareError::BadRequest(_)
    ));
}

#[test]
fn points_in_every_shape() {
    let mut r = json!([{"id": 1}]);
    assert_eq!(answer_mut(&mut r, Endpoint::Search, 0).unwrap().len(), 1);
    assert!(answer_mut(&mut r, Endpoint::Search, 1).is_none());
    let mut r = json!({"points": [{"id": 1}, {"id": 2}]});
    assert_eq!(answer_mut(&mut r, Endpoint::Query, 0).unwrap().len(), 2);
    let mut r = json!([[{"id": 1}], [{"id": 2}, {"id": 3}]]);
    assert_eq!(
        answer_mut(&mut r, Endpoint::SearchBatch, 1).unwrap().len(),
        2
    );
    let mut r = json!([{"points": []}, {"points": [{"id": 3}]}]);
    assert_eq!(
        answer_mut(&mut r, Endpoint::QueryBatch, 1).unwrap().len(),
        1
    );
}

fn plan(cut: Cut) -> RerankPlan {
    RerankPlan {
        query: "q".into(),
        cut,
        threshold: None,
        reranker: None,
        instruction: None,
        query_source: crate::plan::query_text::QuerySource::Request,
    }
}

#[test]
fn apply_orders_scores_and_restores() {
    let mut result = json!([
        {"id": 1, "version": 1, "score": 0.9, "payload": {"text": "a"}},
        {"id": 2, "version": 1, "score": 0.8, "payload": {"text": "b"}},
        {"id": 3, "version": 1, "score": 0.7}
    ]);
    let outcome = Outcome {
        scores: Some(vec![Some(0.5), Some(0.99), None]),
        ..Outcome::not_applied(RerankStatus::Applied, None)
    };
    let p = plan(Cut::Page(Window {
        offset: 0,
        limit: 2,
        fetch: 3,
    }));
    apply(
        &mut result,
        Endpoint::Search,
        0,
        &p,
        &outcome,
        &Restore::DropPayload,
        &[],
    )
    .unwrap();
    assert_eq!(
        result,
        json!([{"id": 2, "version": 1, "score": 0.99}, {"id": 1, "version": 1, "score": 0.5}])
    );
}

#[test]
fn groups_are_reranked_inside_and_reordered() {
    let mut result = json!({"groups": [
        {"hits": [{"id": 1, "score": 0.9, "payload": {"text": "a"}}, {"id": 2, "score": 0.8, "payload": {"text": "b"}}], "id": "x"},
        {"hits": [{"id": 3, "score": 0.7, "payload": {"text": "c"}}], "id": "y", "lookup": {"id": "y"}}
    ]});
    let (texts, sizes) = candidates(
        &mut result,
        Endpoint::SearchGroups,
        0,
        &crate::plan::template::TextSource::Field("text".into()),
    )
    .unwrap();
    assert_eq!(
        texts,
        vec![Some("a".into()), Some("b".into()), Some("c".into())]
    );
    assert_eq!(sizes, vec![2, 1]);
    let outcome = Outcome {
        scores: Some(vec![Some(0.1), Some(0.3), Some(0.6)]),
        ..Outcome::not_applied(RerankStatus::Applied, None)
    };
    let p = plan(Cut::Groups(GroupWindow {
        limit: 2,
        group_size: 1,
        fetch: 2,
    }));
    apply(
        &mut result,
        Endpoint::SearchGroups,
        0,
        &p,
        &outcome,
        &Restore::DropPayload,
        &sizes,
    );
    assert_eq!(
        result,
        json!({"groups": [
            {"hits": [{"id": 3, "score": 0.6}], "id": "y", "lookup": {"id": "y"}},
            {"hits": [{"id": 2, "score": 0.3}], "id": "x"}
        ]})
    );
}

#[test]
fn group_requests_are_widened_in_groups() {
    let body = json!({"vector": [1.0], "group_by": "g", "limit": 2, "group_size": 2, "rerank": {"query": "q"}});
    let p = prepare(body, Endpoint::SearchGroups, &on(), None, None).unwrap();
    assert_eq!(p.body["limit"], 25);
    assert_eq!(p.body["group_size"], 2);
    // the Query API defaults: limit 10 groups of 3
    let p = prepare(
        json!({"group_by": "g"}),
        Endpoint::QueryGroups,
        &on(),
        Some("q"),
        None,
    )
    .unwrap();
    let Decision::Rerank(plan) = &p.searches[0].decision else {
        panic!()
    };
    assert_eq!(
        plan.cut,
        Cut::Groups(GroupWindow {
            limit: 10,
            group_size: 3,
            fetch: 16
        })
    );
    // the legacy search needs its group_size
    let p = prepare(
        json!({"limit": 2}),
        Endpoint::SearchGroups,
        &on(),
        Some("q"),
        None,
    )
    .unwrap();
    assert!(matches!(&p.searches[0].decision, Decision::Skip(r) if r.contains("group_size")));
}

#[test]
fn header_directive_applies_unless_the_body_says_otherwise() {
    let h = Directive {
        pool: Some(7),
        enabled: Some(false),
        ..Default::default()
    };
    let body = json!({"searches": [
        {"vector": [1.0], "limit": 2},
        {"vector": [1.0], "limit": 2, "rerank": {"enabled": true}}
    ]});
    let p = prepare(body, Endpoint::RecommendBatch, &on(), Some("q"), Some(&h)).unwrap();
    assert_eq!(p.searches[0].decision, Decision::Disabled);
    let Decision::Rerank(plan) = &p.searches[1].decision else {
        panic!()
    };
    assert_eq!(plan.cut.fetch(), 7);
}

#[test]
fn f32_scores_print_short() {
    assert_eq!(f32_json(0.99).to_string(), "0.99");
    assert_eq!(f32_json(0.99248314).to_string(), "0.99248314");
    // never null (qdrant-client refuses a null score): clamped, NaN lowest
    assert_eq!(f32_json(f32::NAN), f32_json(f32::MIN));
    assert_eq!(f32_json(f32::INFINITY), f32_json(f32::MAX));
    assert_eq!(f32_json(f32::NEG_INFINITY), f32_json(f32::MIN));
    assert!(f32_json(f32::MAX).is_number());
    assert!(f32_json(f32::MIN).as_f64().unwrap() < -3.0e38);
}

#[test]
fn marker_single_and_batch() {
    let a = Outcome {
        model: Some("m".into()),
        candidates: 4,
        ..Outcome::not_applied(RerankStatus::Applied, None)
    };
    let s = Outcome::not_applied(RerankStatus::Skipped, Some("why".into()));
    let m = marker(std::slice::from_ref(&a), Endpoint::Query, 0.1);
    assert_eq!(m["status"], "applied");
    assert_eq!(m["model"], "m");
    assert!(m.get("reason").is_none());
    let m = marker(&[a, s], Endpoint::QueryBatch, 0.1);
    assert_eq!(m["status"], "applied");
    assert_eq!(m["searches"][1]["reason"], "why");
    assert_eq!(m["candidates"], 4);
}
