use super::*;

fn headers(name: header::HeaderName, values: &[&str]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for v in values {
        h.append(name.clone(), HeaderValue::from_str(v).unwrap());
    }
    h
}

fn accept(values: &[&str]) -> Option<Coding> {
    negotiate(&headers(header::ACCEPT_ENCODING, values))
}

#[test]
fn negotiation_matches_qdrant() {
    // Each line: what Qdrant 1.18.3 answered to this Accept-Encoding (br aside).
    assert_eq!(accept(&[]), None);
    assert_eq!(accept(&["gzip"]), Some(Coding::Gzip));
    assert_eq!(accept(&["GZIP"]), Some(Coding::Gzip));
    assert_eq!(accept(&["deflate"]), Some(Coding::Deflate));
    assert_eq!(accept(&["zstd"]), Some(Coding::Zstd));
    assert_eq!(accept(&["deflate, gzip"]), Some(Coding::Gzip));
    assert_eq!(accept(&["zstd, gzip"]), Some(Coding::Zstd));
    assert_eq!(accept(&["gzip;q=0, deflate"]), Some(Coding::Deflate));
    assert_eq!(accept(&["gzip;q=0"]), None);
    assert_eq!(accept(&["identity"]), None);
    assert_eq!(accept(&["*"]), None);
    assert_eq!(accept(&["x-gzip"]), None);
    assert_eq!(accept(&["x-foo"]), None);
    assert_eq!(accept(&["gzip;q=0.5, identity"]), None);
    assert_eq!(
        accept(&["identity;q=0.1", "deflate"]),
        Some(Coding::Deflate)
    );
    // Qdrant would pick br; gzip is the best we do.
    assert_eq!(accept(&["gzip, br"]), Some(Coding::Gzip));
    assert_eq!(accept(&["br"]), None);
}

#[test]
fn q_values_rank_codings() {
    assert_eq!(
        accept(&["gzip;q=0.4, deflate;q=0.9"]),
        Some(Coding::Deflate)
    );
    assert_eq!(accept(&["gzip ; q=1.0 , zstd;q=0.999"]), Some(Coding::Gzip));
    assert_eq!(
        accept(&["zstd;q=2, gzip;q=0.1"]),
        Some(Coding::Gzip),
        "q > 1 is invalid"
    );
    assert_eq!(accept(&["zstd;q=abc, deflate"]), Some(Coding::Deflate));
    assert_eq!(accept(&["gzip;q=0.3, identity;q=0.2"]), Some(Coding::Gzip));
}

#[test]
fn request_codings() {
    let ce = |v: &[&str]| request_coding(&headers(header::CONTENT_ENCODING, v));
    assert_eq!(ce(&[]), BodyCoding::Identity);
    assert_eq!(ce(&["identity"]), BodyCoding::Identity);
    assert_eq!(
        ce(&["foo"]),
        BodyCoding::Identity,
        "Qdrant reads it as plain"
    );
    assert_eq!(ce(&["gzip"]), BodyCoding::Known(Coding::Gzip));
    assert_eq!(ce(&[" GZip "]), BodyCoding::Known(Coding::Gzip));
    assert_eq!(ce(&["deflate"]), BodyCoding::Known(Coding::Deflate));
    assert_eq!(ce(&["zstd"]), BodyCoding::Known(Coding::Zstd));
    assert_eq!(ce(&["br"]), BodyCoding::Other);
    assert_eq!(ce(&["gzip, gzip"]), BodyCoding::Other);
    assert_eq!(ce(&["gzip", "gzip"]), BodyCoding::Other);
}

#[test]
fn every_coding_round_trips() {
    let body = br#"{"result":{"points":[]},"status":"ok","time":0.1}"#.repeat(50);
    for c in Coding::PREFERENCE {
        let z = encode(c, &body);
        assert!(z.len() < body.len(), "{c:?} compresses");
        assert_eq!(decode(c, &z, body.len()).unwrap(), body, "{c:?}");
        assert_eq!(decode(c, &z, body.len() - 1), Err(DecodeError::TooLarge));
    }
    // zstd frames from ruzstd are standard frames: the same bytes a zstd CLI makes
    // of an empty input decode too.
    assert_eq!(
        decode(Coding::Zstd, &encode(Coding::Zstd, b""), 0).unwrap(),
        b""
    );
}

#[test]
fn a_bomb_stops_at_the_limit() {
    // 64 MiB of spaces compress to ~64 KiB; decoding stops just past 1 MiB.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    let chunk = vec![b' '; 1 << 20];
    for _ in 0..64 {
        gz.write_all(&chunk).unwrap();
    }
    let bomb = gz.finish().unwrap();
    assert!(bomb.len() < 1 << 20);
    assert_eq!(
        decode(Coding::Gzip, &bomb, 1 << 20),
        Err(DecodeError::TooLarge)
    );
}

#[test]
fn corrupt_bodies_say_so() {
    for c in Coding::PREFERENCE {
        assert!(
            matches!(
                decode(c, b"not compressed", 100),
                Err(DecodeError::Corrupt(_))
            ),
            "{c:?}"
        );
    }
}

#[test]
fn finish_sets_coding_vary_and_drops_the_old_length() {
    let mut h = headers(header::VARY, &["Origin, Access-Control-Request-Method"]);
    h.insert(header::CONTENT_LENGTH, HeaderValue::from_static("6001"));
    let out = finish(&mut h, b"{}".repeat(100), Some(Coding::Gzip));
    assert_eq!(h[header::CONTENT_ENCODING], "gzip");
    assert_eq!(
        h[header::VARY],
        "accept-encoding, Origin, Access-Control-Request-Method"
    );
    assert!(!h.contains_key(header::CONTENT_LENGTH));
    assert_eq!(decode(Coding::Gzip, &out, 1000).unwrap(), b"{}".repeat(100));
    // Already varying on it: left alone.
    let mut h = headers(header::VARY, &["Accept-Encoding"]);
    finish(&mut h, vec![], Some(Coding::Deflate));
    assert_eq!(h[header::VARY], "Accept-Encoding");
    // No coding: the body as it is, Qdrant's headers but the stale length.
    let mut h = headers(header::VARY, &["Origin"]);
    h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    assert_eq!(finish(&mut h, b"x".to_vec(), None), b"x");
    assert_eq!(h[header::VARY], "Origin");
    assert!(!h.contains_key(header::CONTENT_ENCODING));
    let mut h = HeaderMap::new();
    finish(&mut h, vec![], Some(Coding::Zstd));
    assert_eq!(h[header::VARY], "accept-encoding");
}
