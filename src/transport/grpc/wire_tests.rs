use super::*;
use prost::Message;
use qdrant_client::qdrant::with_payload_selector::SelectorOptions;
use qdrant_client::qdrant::{
    PayloadIncludeSelector, SearchBatchPoints, SearchPoints, WithPayloadSelector,
};

fn varint(v: u64) -> Vec<u8> {
    let mut b = Vec::new();
    put_varint(&mut b, v);
    b
}

/// Field 999 (unknown to every stub) as a string, and field 1000 as a varint.
fn unknown_fields() -> Vec<u8> {
    let mut b = Vec::new();
    put_field(&mut b, 999, &Value::Bytes(b"from the future".to_vec()));
    put_field(&mut b, 1000, &Value::Varint(7));
    b
}

#[test]
fn varints_round_trip_and_reject_bad_input() {
    for v in [0, 1, 127, 128, 300, u32::MAX as u64, u64::MAX] {
        let b = varint(v);
        assert_eq!(read_varint(&b).unwrap(), (v, b.len()));
    }
    assert_eq!(varint(300), vec![0xac, 0x02]);
    assert_eq!(read_varint(&[0x80, 0x80]), Err(WireError::Truncated));
    assert_eq!(read_varint(&[0xff; 11]), Err(WireError::VarintTooLong));
    assert_eq!(read_varint(&[]), Err(WireError::Truncated));
}

#[test]
fn parse_reads_every_wire_type_in_order() {
    let mut m = Vec::new();
    put_field(&mut m, 3, &Value::Varint(150));
    put_field(&mut m, 1, &Value::Fixed64(u64::MAX));
    put_field(&mut m, 2, &Value::Bytes(b"abc".to_vec()));
    put_field(&mut m, 5, &Value::Fixed32(42));
    // a group 4 { field 1 = 1 }
    m.extend_from_slice(&[(4 << 3) | 3, 1 << 3, 1, (4 << 3) | 4]);
    put_field(&mut m, 3, &Value::Varint(2));
    let f = parse(&m).unwrap();
    let numbers: Vec<u32> = f.iter().map(|f| f.number).collect();
    assert_eq!(numbers, [3, 1, 2, 5, 4, 3]);
    assert_eq!(f[0].as_u64(), Some(150));
    assert_eq!(f[2].value, b"abc");
    assert_eq!(f[3].value, &42u32.to_le_bytes());
    assert_eq!(f[4].wire_type, WireType::StartGroup);
    assert_eq!(f[4].value, &[1 << 3, 1]);
    assert_eq!(f[1].as_u64(), None, "not a varint");
    let joined: Vec<u8> = f.iter().flat_map(|f| f.raw.iter().copied()).collect();
    assert_eq!(joined, m, "raw slices cover the message exactly");
}

#[test]
fn parse_rejects_malformed_messages() {
    assert_eq!(parse(&[0x0a, 5, b'a']), Err(WireError::Truncated));
    assert_eq!(parse(&[0x0f]), Err(WireError::WireType(7)));
    assert_eq!(parse(&[0x00]), Err(WireError::FieldNumber));
    assert_eq!(parse(&[0x0c]), Err(WireError::Group), "stray group end");
    assert_eq!(parse(&[0x0b, 0x08, 1]), Err(WireError::Truncated));
    assert_eq!(parse(&[0x0b, 0x14]), Err(WireError::Group), "wrong end");
    assert_eq!(parse(&[0x09, 1, 2]), Err(WireError::Truncated));
    let deep: Vec<u8> = std::iter::repeat_n(0x0b, 200).collect();
    assert_eq!(parse(&deep), Err(WireError::Group));
    assert_eq!(parse(&[]).unwrap(), vec![]);
}

#[test]
fn untouched_message_is_copied_byte_for_byte() {
    let mut m = SearchPoints {
        collection_name: "docs".into(),
        vector: vec![0.5, 0.25],
        limit: 3,
        ..Default::default()
    }
    .encode_to_vec();
    m.extend(unknown_fields());
    assert_eq!(Edit::new().apply(&m).unwrap(), m);
    assert_eq!(Edit::new().remove(77).apply(&m).unwrap(), m);
}

#[test]
fn set_and_remove_keep_unknown_fields_and_others_in_place() {
    let mut m = unknown_fields();
    m.extend(
        SearchPoints {
            collection_name: "docs".into(),
            vector: vec![0.5, 0.25, 1.0],
            limit: 3,
            offset: Some(4),
            with_payload: Some(WithPayloadSelector {
                selector_options: Some(SelectorOptions::Enable(false)),
            }),
            ..Default::default()
        }
        .encode_to_vec(),
    );
    let selector = WithPayloadSelector {
        selector_options: Some(SelectorOptions::Include(PayloadIncludeSelector {
            fields: vec!["text".into()],
        })),
    };
    let out = Edit::new()
        .set(4, Value::Varint(100))
        .remove(9)
        .set(6, Value::Bytes(selector.encode_to_vec()))
        .apply(&m)
        .unwrap();
    let back = SearchPoints::decode(&out[..]).unwrap();
    assert_eq!((back.limit, back.offset), (100, None));
    assert_eq!(back.with_payload, Some(selector));
    assert_eq!(back.vector, vec![0.5, 0.25, 1.0], "packed floats intact");
    assert_eq!(back.collection_name, "docs");
    // The unknown fields come first, exactly as sent.
    assert!(out.starts_with(&unknown_fields()));
    let f = parse(&out).unwrap();
    assert_eq!(f.iter().filter(|f| f.number == 4).count(), 1);
    assert_eq!(f.iter().filter(|f| f.number == 9).count(), 0);
}

#[test]
fn a_field_set_twice_ends_up_once_with_the_new_value() {
    // limit = 3 then limit = 5 (proto3: 5 wins), with_payload sent in two parts
    // (messages merge): after the edit both hold only our value.
    let mut m = Vec::new();
    put_field(&mut m, 4, &Value::Varint(3));
    put_field(&mut m, 1, &Value::Bytes(b"docs".to_vec()));
    put_field(&mut m, 4, &Value::Varint(5));
    let incl = WithPayloadSelector {
        selector_options: Some(SelectorOptions::Include(PayloadIncludeSelector {
            fields: vec!["title".into()],
        })),
    };
    put_field(&mut m, 6, &Value::Bytes(incl.encode_to_vec()));
    put_field(&mut m, 6, &Value::Bytes(incl.encode_to_vec()));
    assert_eq!(SearchPoints::decode(&m[..]).unwrap().limit, 5);
    let enable = WithPayloadSelector {
        selector_options: Some(SelectorOptions::Enable(true)),
    };
    let out = Edit::new()
        .set(4, Value::Varint(50))
        .set(6, Value::Bytes(enable.encode_to_vec()))
        .apply(&m)
        .unwrap();
    let back = SearchPoints::decode(&out[..]).unwrap();
    assert_eq!(back.limit, 50);
    assert_eq!(back.with_payload, Some(enable));
}

#[test]
fn each_edits_every_element_of_a_repeated_message() {
    let search = |limit, tail: bool| {
        let mut s = SearchPoints {
            collection_name: "docs".into(),
            limit,
            offset: Some(1),
            ..Default::default()
        }
        .encode_to_vec();
        if tail {
            s.extend(unknown_fields());
        }
        s
    };
    let mut m = Vec::new();
    put_field(&mut m, 1, &Value::Bytes(b"docs".to_vec()));
    put_field(&mut m, 2, &Value::Bytes(search(3, true)));
    put_field(&mut m, 999, &Value::Varint(1));
    put_field(&mut m, 2, &Value::Bytes(search(4, false)));
    put_field(&mut m, 2, &Value::Bytes(search(5, true)));
    let edit = Edit::new().each(
        2,
        vec![
            Some(Edit::new().set(4, Value::Varint(30)).remove(9)),
            None,
            Some(Edit::new().set(4, Value::Varint(50)).remove(9)),
        ],
    );
    let out = edit.apply(&m).unwrap();
    let back = SearchBatchPoints::decode(&out[..]).unwrap();
    let got: Vec<(u64, Option<u64>)> = back
        .search_points
        .iter()
        .map(|s| (s.limit, s.offset))
        .collect();
    assert_eq!(got, [(30, None), (4, Some(1)), (50, None)]);
    let f = parse(&out).unwrap();
    let numbers: Vec<u32> = f.iter().map(|f| f.number).collect();
    assert_eq!(numbers, [1, 2, 999, 2, 2], "elements stay where they were");
    for i in [1, 4] {
        let inner = parse(f[i].value).unwrap();
        assert!(inner
            .iter()
            .any(|x| x.number == 999 && x.value == b"from the future"));
        assert!(inner
            .iter()
            .any(|x| x.number == 1000 && x.as_u64() == Some(7)));
    }
    // The untouched element is the same bytes.
    assert_eq!(f[3].value, &search(4, false)[..]);
}

#[test]
fn each_must_match_the_number_of_elements() {
    let mut m = Vec::new();
    put_field(&mut m, 2, &Value::Bytes(vec![]));
    put_field(&mut m, 2, &Value::Bytes(vec![]));
    let one = Edit::new().each(2, vec![None]);
    assert!(matches!(one.apply(&m), Err(WireError::Mismatch(_))));
    let three = Edit::new().each(2, vec![None, None, None]);
    assert!(matches!(three.apply(&m), Err(WireError::Mismatch(_))));
    let mut v = Vec::new();
    put_field(&mut v, 2, &Value::Varint(1));
    let nested = Edit::new().each(2, vec![Some(Edit::new())]);
    assert!(matches!(nested.apply(&v), Err(WireError::Mismatch(_))));
}

#[test]
fn replace_rewrites_a_repeated_field_in_a_new_order() {
    let mut m = Vec::new();
    put_field(&mut m, 1, &Value::Bytes(b"a".to_vec()));
    put_field(&mut m, 2, &Value::Fixed64(1.5f64.to_bits()));
    put_field(&mut m, 1, &Value::Bytes(b"b".to_vec()));
    put_field(&mut m, 1, &Value::Bytes(b"c".to_vec()));
    put_field(&mut m, 999, &Value::Varint(9));
    let out = Edit::new()
        .replace(1, vec![b"c".to_vec(), b"a".to_vec()])
        .set(2, Value::Fixed64(0.25f64.to_bits()))
        .apply(&m)
        .unwrap();
    let f = parse(&out).unwrap();
    let seen: Vec<(u32, &[u8])> = f.iter().map(|f| (f.number, f.value)).collect();
    let quarter = 0.25f64.to_bits().to_le_bytes();
    assert_eq!(
        seen,
        vec![
            (999, &[9u8][..]),
            (1, &b"c"[..]),
            (1, &b"a"[..]),
            (2, &quarter[..])
        ]
    );
}
