//! A reranked gRPC answer written on Qdrant's own bytes: hits reordered, cut,
//! rescored and their payloads restored, `time` set; every other field (also those
//! newer than our stubs) as Qdrant sent it.

use prost::Message;
use qdrant_client::qdrant::ScoredPoint;

use super::convert;
use super::wire::{parse, Edit, Value, WireError};
use crate::plan::payload::Restore;
use crate::plan::{Ranked, RankedGroup};

// Field numbers shared by every reranked response (checked in the tests).
/// `result` of every response: the points, the batch results or the groups result.
const RESULT: u32 = 1;
/// `time` (double) of every response.
const TIME: u32 = 2;
/// `BatchResult.result`.
const BATCH_POINTS: u32 = 1;
/// `GroupsResult.groups`.
const GROUPS: u32 = 1;
/// `PointGroup.hits`.
const GROUP_HITS: u32 = 2;
/// `ScoredPoint.payload` (map entries).
const PAYLOAD: u32 = 2;
/// `ScoredPoint.score` (float).
const SCORE: u32 = 3;

/// Where a response keeps its hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `result`: the points of one search.
    Points,
    /// `result[i].result`: the points of search `i`.
    Batch,
    /// `result.groups[j].hits`: one search's groups.
    Groups,
}

/// What becomes of one search's hits.
pub enum Order<'a> {
    /// As Qdrant sent them (not reranked).
    Keep,
    Page(Vec<Ranked>, &'a Restore),
    Groups(Vec<RankedGroup>, &'a Restore),
}

/// The contents of every occurrence of the length-delimited field `n`.
fn occurrences(msg: &[u8], n: u32) -> Result<Vec<&[u8]>, WireError> {
    Ok(parse(msg)?
        .into_iter()
        .filter(|f| f.number == n)
        .map(|f| f.value)
        .collect())
}

fn point(raw: &[u8], r: &Ranked, restore: &Restore) -> Result<Vec<u8>, WireError> {
    let mut edit = Edit::new();
    if let Some(s) = r.score {
        edit = edit.set(SCORE, Value::Fixed32(s.to_bits()));
    }
    match restore {
        Restore::Keep => {}
        Restore::DropPayload => edit = edit.remove(PAYLOAD),
        Restore::RemovePaths(_) | Restore::ReExclude(_) => {
            let bad = |e: prost::DecodeError| WireError::Mismatch(e.to_string());
            let mut payload = ScoredPoint::decode(raw).map_err(bad)?.payload;
            convert::restore_payload(&mut payload, restore);
            let only = ScoredPoint {
                payload,
                ..Default::default()
            }
            .encode_to_vec();
            edit = edit.replace(
                PAYLOAD,
                occurrences(&only, PAYLOAD)?
                    .into_iter()
                    .map(<[u8]>::to_vec)
                    .collect(),
            );
        }
    }
    edit.apply(raw)
}

/// The points of `list` (occurrences of `field` in it) in the new order.
fn points(
    list: &[u8],
    field: u32,
    ranked: &[Ranked],
    restore: &Restore,
) -> Result<Vec<Vec<u8>>, WireError> {
    let raw = occurrences(list, field)?;
    ranked
        .iter()
        .map(|r| {
            let p = raw
                .get(r.index)
                .ok_or_else(|| WireError::Mismatch(format!("no hit {}", r.index)))?;
            point(p, r, restore)
        })
        .collect()
}

fn mismatch(what: &str) -> WireError {
    WireError::Mismatch(what.into())
}

/// Qdrant's answer `msg` with `orders` (one per search) applied and `time` set.
pub fn rewrite(
    msg: &[u8],
    layout: Layout,
    orders: &[Order<'_>],
    time: f64,
) -> Result<Vec<u8>, WireError> {
    let top = match layout {
        Layout::Points => match orders {
            [Order::Keep] => Edit::new(),
            [Order::Page(ranked, restore)] => {
                Edit::new().replace(RESULT, points(msg, RESULT, ranked, restore)?)
            }
            _ => return Err(mismatch("one page search expected")),
        },
        Layout::Batch => {
            let results = occurrences(msg, RESULT)?;
            if results.len() != orders.len() {
                return Err(mismatch("one batch result per search expected"));
            }
            let mut edits = Vec::with_capacity(orders.len());
            for (raw, order) in results.iter().zip(orders) {
                edits.push(match order {
                    Order::Keep => None,
                    Order::Page(ranked, restore) => Some(
                        Edit::new()
                            .replace(BATCH_POINTS, points(raw, BATCH_POINTS, ranked, restore)?),
                    ),
                    Order::Groups(..) => return Err(mismatch("groups in a batch")),
                });
            }
            Edit::new().each(RESULT, edits)
        }
        Layout::Groups => match orders {
            [Order::Keep] => Edit::new(),
            [Order::Groups(ranked, restore)] => match occurrences(msg, RESULT)?[..] {
                // No groups result: nothing to order.
                [] => Edit::new(),
                [result] => {
                    let groups = occurrences(result, GROUPS)?;
                    let mut kept = Vec::with_capacity(ranked.len());
                    for g in ranked {
                        let raw = groups
                            .get(g.index)
                            .ok_or_else(|| mismatch("group index out of range"))?;
                        let hits = points(raw, GROUP_HITS, &g.hits, restore)?;
                        kept.push(Edit::new().replace(GROUP_HITS, hits).apply(raw)?);
                    }
                    Edit::new().each(RESULT, vec![Some(Edit::new().replace(GROUPS, kept))])
                }
                // A result split in parts merges in protobuf: left to the typed path.
                _ => return Err(mismatch("groups result in several parts")),
            },
            _ => return Err(mismatch("one groups search expected")),
        },
    };
    top.set(TIME, Value::Fixed64(time.to_bits())).apply(msg)
}

#[cfg(test)]
#[path = "answer_tests.rs"]
mod tests;
