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
    assert_eq!(
        decode(Coding::Zstd, &encode(Coding::Zstd, b""), 0).unwrap(),
        b""
    );
}

/// More than one 128 KiB zstd block of a repeated answer.
fn repeated_body() -> Vec<u8> {
    br#"{"result":{"points":[]},"status":"ok","time":0.1}"#.repeat(3000)
}

/// An answer with varied text (Huffman-coded literals, not only repeats).
fn varied_body() -> Vec<u8> {
    let points: Vec<String> = (0..150)
        .map(|i| {
            format!(
                r#"{{"id":{i},"version":{},"score":0.{:05},"payload":{{"text":"w{} w{} w{}"}}}}"#,
                i % 7,
                (i * 7919) % 100000,
                (i * 31) % 97,
                (i * 17) % 89,
                (i * 13) % 83
            )
        })
        .collect();
    format!(
        r#"{{"result":{{"points":[{}]}},"status":"ok","time":0.002}}"#,
        points.join(",")
    )
    .into_bytes()
}

macro_rules! fixture {
    ($name:literal) => {
        (
            $name,
            include_bytes!(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/encoding/",
                $name
            ))
            .as_slice(),
        )
    };
}

#[test]
fn frames_from_the_reference_tools_decode() {
    // Made by the zstd and gzip CLIs and Python's zlib (tests/fixtures/encoding/make.sh):
    // what real clients send, not what our own encoder happens to produce.
    let cases = [
        (Coding::Gzip, fixture!("varied.json.gz"), varied_body()),
        (Coding::Gzip, fixture!("repeated.json.gz"), repeated_body()),
        (Coding::Deflate, fixture!("varied.json.zlib"), varied_body()),
        (
            Coding::Deflate,
            fixture!("repeated.json.zlib"),
            repeated_body(),
        ),
        (Coding::Zstd, fixture!("varied.json.zst"), varied_body()),
        (Coding::Zstd, fixture!("varied.json.19.zst"), varied_body()),
        (Coding::Zstd, fixture!("repeated.json.zst"), repeated_body()),
        (Coding::Zstd, fixture!("empty.zst"), Vec::new()),
    ];
    for (c, (name, frame), body) in cases {
        match decode(c, frame, body.len()) {
            Ok(got) => assert!(got == body, "{name}: {} bytes, not the body", got.len()),
            Err(e) => panic!("{name}: {e:?}"),
        }
        if !body.is_empty() {
            assert_eq!(
                decode(c, frame, body.len() - 1),
                Err(DecodeError::TooLarge),
                "{name}"
            );
        }
        // a frame cut short is corrupt, never a shorter body
        let cut = &frame[..frame.len() - 4];
        assert!(
            matches!(decode(c, cut, body.len()), Err(DecodeError::Corrupt(_))),
            "{name} cut short: {:?}",
            decode(c, cut, body.len()).map(|b| b.len())
        );
    }
}

/// A reference tool on PATH; `None` (the caller skips) outside CI, a failure under CI,
/// where `scripts/setup --test-tools` installs them.
fn reference_tool(name: &str) -> Option<std::path::PathBuf> {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(name))
            .find(|p| p.is_file())
    });
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
    if found.is_none() {
        assert!(
            !ci,
            "{name} is required under CI (scripts/setup --test-tools)"
        );
        eprintln!("SKIPPED: {name} not on PATH (scripts/setup --test-tools installs it)");
    }
    found
}

/// `input` piped through `cmd args`; its stdout.
fn pipe(cmd: &std::path::Path, args: &[&str], input: &[u8]) -> Vec<u8> {
    use std::process::{Command, Stdio};
    let mut child = Command::new(cmd)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    // (a tool that refuses the input may close its stdin early: judged by its status)
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output().unwrap();
    let _ = writer.join();
    assert!(
        out.status.success(),
        "{cmd:?} {args:?}: {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim()
    );
    out.stdout
}

#[test]
fn the_reference_tools_decode_what_we_encode() {
    let deflate =
        "import sys, zlib; sys.stdout.buffer.write(zlib.decompress(sys.stdin.buffer.read()))";
    for body in [varied_body(), repeated_body(), Vec::new()] {
        for (c, tool, args) in [
            (Coding::Gzip, "gzip", vec!["-d", "-c"]),
            (Coding::Zstd, "zstd", vec!["-d", "-q", "-c"]),
            (Coding::Deflate, "python3", vec!["-c", deflate]),
        ] {
            let Some(tool) = reference_tool(tool) else {
                continue;
            };
            let got = pipe(&tool, &args, &encode(c, &body));
            assert!(got == body, "{c:?}: {tool:?} decoded {} bytes", got.len());
        }
    }
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
