use super::*;
use crate::transport::grpc::wire::put_field;
use qdrant_client::qdrant::value::Kind;
use qdrant_client::qdrant::{
    BatchResult, GroupId, GroupsResult, PointGroup, PointId, QueryBatchResponse,
    QueryGroupsResponse, QueryResponse, Usage,
};

/// Field 999 (in no Qdrant message), a string.
fn unknown() -> Vec<u8> {
    let mut b = Vec::new();
    put_field(&mut b, 999, &Value::Bytes(b"newer".to_vec()));
    b
}

fn has_unknown(msg: &[u8]) -> bool {
    parse(msg)
        .unwrap()
        .iter()
        .any(|f| f.number == 999 && f.value == b"newer")
}

fn text(s: &str) -> qdrant_client::qdrant::Value {
    qdrant_client::qdrant::Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

fn point(id: u64) -> ScoredPoint {
    ScoredPoint {
        id: Some(PointId::from(id)),
        score: 1.0 / id as f32,
        version: 3,
        payload: [
            ("text".to_string(), text(&format!("doc {id}"))),
            ("title".to_string(), text("t")),
        ]
        .into(),
        ..Default::default()
    }
}

/// The encoded points, each with the unknown field inside.
fn raw_points(ids: &[u64]) -> Vec<u8> {
    let mut b = Vec::new();
    for id in ids {
        let mut p = point(*id).encode_to_vec();
        p.extend(unknown());
        put_field(&mut b, 1, &Value::Bytes(p));
    }
    b
}

fn ranked(order: &[(usize, Option<f32>)]) -> Vec<Ranked> {
    order
        .iter()
        .map(|&(index, score)| Ranked { index, score })
        .collect()
}

fn id(p: &ScoredPoint) -> Option<PointId> {
    p.id.clone()
}

#[test]
fn points_are_reordered_rescored_and_keep_unknown_fields() {
    let mut msg = raw_points(&[1, 2, 3]);
    msg.extend(
        QueryResponse {
            time: 0.5,
            usage: Some(Usage::default()),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    msg.extend(unknown());
    let orders = [Order::Page(
        ranked(&[(2, Some(0.9)), (0, None)]),
        &Restore::DropPayload,
    )];
    let out = rewrite(&msg, Layout::Points, &orders, 1.25).unwrap();
    let back = QueryResponse::decode(&out[..]).unwrap();
    let ids: Vec<_> = back.result.iter().map(id).collect();
    assert_eq!(ids, [Some(PointId::from(3)), Some(PointId::from(1))]);
    assert_eq!(back.result[0].score, 0.9);
    assert_eq!(
        back.result[1].score, 1.0,
        "unscored hits keep Qdrant's score"
    );
    assert!(back.result.iter().all(|p| p.payload.is_empty()));
    assert!(back.result.iter().all(|p| p.version == 3));
    assert_eq!(back.time, 1.25);
    assert!(back.usage.is_some());
    assert!(has_unknown(&out), "the response's own unknown field");
    for p in occurrences(&out, RESULT).unwrap() {
        assert!(has_unknown(p), "each point's unknown field");
    }
}

#[test]
fn kept_searches_are_untouched_but_for_time() {
    let mut msg = raw_points(&[1, 2]);
    msg.extend(unknown());
    let out = rewrite(&msg, Layout::Points, &[Order::Keep], 2.0).unwrap();
    assert!(out.starts_with(&msg));
    assert_eq!(QueryResponse::decode(&out[..]).unwrap().time, 2.0);
}

#[test]
fn a_batch_rewrites_only_reranked_searches() {
    let mut msg = Vec::new();
    for _ in 0..2 {
        let mut r = raw_points(&[1, 2, 3]);
        r.extend(unknown());
        put_field(&mut msg, 1, &Value::Bytes(r));
    }
    let restore = Restore::RemovePaths(vec!["text".into()]);
    let orders = [
        Order::Keep,
        Order::Page(ranked(&[(1, Some(0.7))]), &restore),
    ];
    let out = rewrite(&msg, Layout::Batch, &orders, 0.1).unwrap();
    let back = QueryBatchResponse::decode(&out[..]).unwrap();
    assert_eq!(back.result[0].result.len(), 3);
    assert_eq!(back.result[0].result[0].payload.len(), 2);
    let second = &back.result[1].result;
    assert_eq!(second.len(), 1);
    assert_eq!(id(&second[0]), Some(PointId::from(2)));
    assert_eq!(second[0].score, 0.7);
    assert_eq!(
        second[0].payload.keys().collect::<Vec<_>>(),
        ["title"],
        "the text field asked for by secondpass is gone"
    );
    let results = occurrences(&out, RESULT).unwrap();
    assert!(results.iter().all(|r| has_unknown(r)));
    assert!(has_unknown(
        occurrences(results[1], BATCH_POINTS).unwrap()[0]
    ));
    // One order per batch result.
    assert!(rewrite(&msg, Layout::Batch, &[Order::Keep], 0.1).is_err());
}

#[test]
fn groups_are_reordered_with_their_hits() {
    let group = |gid: u64, ids: &[u64]| PointGroup {
        id: Some(GroupId {
            kind: Some(qdrant_client::qdrant::group_id::Kind::UnsignedValue(gid)),
        }),
        hits: ids.iter().map(|i| point(*i)).collect(),
        ..Default::default()
    };
    let mut g1 = group(10, &[1, 2]).encode_to_vec();
    g1.extend(unknown());
    let g2 = group(20, &[3]).encode_to_vec();
    let mut result = Vec::new();
    put_field(&mut result, 1, &Value::Bytes(g1));
    put_field(&mut result, 1, &Value::Bytes(g2));
    let mut msg = Vec::new();
    put_field(&mut msg, 1, &Value::Bytes(result));
    let orders = [Order::Groups(
        vec![
            RankedGroup {
                index: 1,
                hits: ranked(&[(0, Some(0.8))]),
            },
            RankedGroup {
                index: 0,
                hits: ranked(&[(1, Some(0.6)), (0, Some(0.1))]),
            },
        ],
        &Restore::Keep,
    )];
    let out = rewrite(&msg, Layout::Groups, &orders, 0.3).unwrap();
    let back = QueryGroupsResponse::decode(&out[..]).unwrap();
    let groups = back.result.unwrap().groups;
    let hits: Vec<Vec<_>> = groups
        .iter()
        .map(|g| g.hits.iter().map(|h| (id(h), h.score)).collect())
        .collect();
    let p = |n: u64| Some(PointId::from(n));
    assert_eq!(hits, [vec![(p(3), 0.8)], vec![(p(2), 0.6), (p(1), 0.1)]]);
    let result = occurrences(&out, RESULT).unwrap()[0];
    assert!(has_unknown(occurrences(result, GROUPS).unwrap()[1]));
    // No groups at all: only time changes.
    let empty = rewrite(&[], Layout::Groups, &orders, 0.3).unwrap();
    assert_eq!(QueryGroupsResponse::decode(&empty[..]).unwrap().time, 0.3);
    // A groups result in two parts is left to the decoded path.
    let mut twice = msg.clone();
    twice.extend_from_slice(&msg);
    assert!(rewrite(&twice, Layout::Groups, &orders, 0.3).is_err());
}

#[test]
fn field_numbers_match_the_stubs() {
    let r = QueryResponse {
        result: vec![ScoredPoint {
            score: 0.5,
            payload: [("a".to_string(), text("b"))].into(),
            ..Default::default()
        }],
        time: 1.0,
        ..Default::default()
    }
    .encode_to_vec();
    let numbers: Vec<u32> = parse(&r).unwrap().iter().map(|f| f.number).collect();
    assert_eq!(numbers, [RESULT, TIME]);
    let p = parse(occurrences(&r, RESULT).unwrap()[0]).unwrap();
    assert!(p.iter().any(|f| f.number == PAYLOAD));
    assert!(p
        .iter()
        .any(|f| f.number == SCORE && f.value == 0.5f32.to_le_bytes()));
    let b = BatchResult {
        result: vec![ScoredPoint::default()],
    }
    .encode_to_vec();
    assert_eq!(parse(&b).unwrap()[0].number, BATCH_POINTS);
    let g = GroupsResult {
        groups: vec![PointGroup {
            hits: vec![ScoredPoint::default()],
            ..Default::default()
        }],
    }
    .encode_to_vec();
    let groups = occurrences(&g, GROUPS).unwrap();
    assert_eq!(occurrences(groups[0], GROUP_HITS).unwrap().len(), 1);
}
