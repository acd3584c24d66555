//! Corpus tests: every `corpus/valid/*.sip` parses, round-trips and frames; every
//! `corpus/invalid/*.sip` is rejected with the reason and partial() listed in
//! `corpus/invalid/expected.tsv`. Regenerate the corpus with `corpus/gen_corpus.py`.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use weir_message::{frame, Frame, Limits, Message, Method, StartLine};

fn corpus(kind: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(kind);
    let mut out: Vec<(String, Vec<u8>)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "sip"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    out.sort();
    out
}

fn load(kind: &str, name: &str) -> Message {
    let data = corpus(kind)
        .into_iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("no {name}"))
        .1;
    Message::parse(&data, &Limits::default()).unwrap()
}

#[test]
fn valid_corpus_parses_round_trips_and_frames() {
    let limits = Limits::default();
    let files = corpus("valid");
    assert!(files.len() >= 30, "corpus too small: {}", files.len());
    for (name, data) in &files {
        let m = Message::parse(data, &limits)
            .unwrap_or_else(|e| panic!("{name}: {e} ({:?})", e.kind()));
        let out = m.to_bytes();
        let m2 = Message::parse(&out, &limits)
            .unwrap_or_else(|e| panic!("{name} re-parse: {e} ({:?})", e.kind()));
        assert_eq!(m2.start, m.start, "{name}: start line");
        assert_eq!(m2.body, m.body, "{name}: body");
        let had_cl = m.headers.contains("content-length");
        let expected: Vec<_> = m.headers.iter().cloned().collect();
        let got: Vec<_> = m2.headers.iter().cloned().collect();
        if had_cl {
            assert_eq!(got, expected, "{name}: headers");
        } else {
            assert_eq!(got.get(..expected.len()), Some(&expected[..]), "{name}");
            assert_eq!(
                got.len(),
                expected.len() + 1,
                "{name}: appended Content-Length"
            );
            assert_eq!(
                m2.headers.get("content-length"),
                Some(m.body.len().to_string().as_str())
            );
        }
        // Serialisation is a fixed point after one round.
        assert_eq!(m2.to_bytes(), out, "{name}: second serialisation differs");

        // Stream framing of the serialised form, alone, cut, and followed by more data.
        assert_eq!(
            frame(&out, &limits),
            Ok(Frame::Message(out.len())),
            "{name}"
        );
        for cut in [1, out.len() / 3, out.len() / 2, out.len() - 1] {
            assert_eq!(
                frame(&out[..cut], &limits),
                Ok(Frame::Incomplete),
                "{name} cut at {cut}"
            );
        }
        let mut two = out.clone();
        two.extend_from_slice(b"OPTIONS sip:next@example.com SIP/2.0\r\n");
        assert_eq!(
            frame(&two, &limits),
            Ok(Frame::Message(out.len())),
            "{name}"
        );

        // Accessors never panic; a reply to any request other than ACK parses.
        let _ = (m.cseq(), m.top_via(), m.vias(), m.from_tag(), m.to_tag());
        let _ = m.max_forwards();
        assert!(m.call_id().is_some(), "{name}: Call-ID");
        if m.is_request() && m.method() != Some(&Method::Ack) {
            let r = m.reply(404, "", Some("weir-tag"));
            let rb = r.to_bytes();
            let r2 = Message::parse(&rb, &limits)
                .unwrap_or_else(|e| panic!("{name}: reply does not parse: {e}"));
            assert_eq!(r2.status(), Some(404));
            assert_eq!(r2.call_id(), m.call_id());
            assert_eq!(
                r2.headers.get_all("via").count(),
                m.headers.get_all("via").count()
            );
            if m.to_tag().is_none() {
                assert_eq!(r2.to_tag().as_deref(), Some("weir-tag"), "{name}");
            } else {
                assert_eq!(r2.to_tag(), m.to_tag(), "{name}");
            }
        }
    }
}

#[test]
fn invalid_corpus_is_rejected_with_named_reason() {
    let limits = Limits::default();
    let manifest = std::fs::read_to_string(
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus/invalid/expected.tsv"),
    )
    .unwrap();
    let expected: Vec<(&str, &str, bool)> = manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let mut f = l.split('\t');
            let (n, r, p) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
            (n, r, p == "yes")
        })
        .collect();
    let files = corpus("invalid");
    assert_eq!(
        files.len(),
        expected.len(),
        "manifest and files out of sync"
    );
    assert!(files.len() >= 40);
    for (name, data) in &files {
        let &(_, reason, partial) = expected
            .iter()
            .find(|(n, _, _)| n == name)
            .unwrap_or_else(|| panic!("{name} not in expected.tsv"));
        let err = match Message::parse(data, &limits) {
            Ok(m) => panic!("{name}: parsed but must fail: {:?}", m.start),
            Err(e) => e,
        };
        assert_eq!(err.reason(), reason, "{name}: reason ({:?})", err.kind());
        assert_eq!(err.to_string(), reason);
        assert_eq!(
            err.partial().is_some(),
            partial,
            "{name}: partial() for {:?}",
            err.kind()
        );
        if let Some(p) = err.partial() {
            assert!(p.is_request());
            assert!(p.body.is_empty());
            let reply = p.reply(err.status_code(), err.reason(), Some("weir-400"));
            assert_eq!(reply.status(), Some(err.status_code()));
            let via = reply.headers.get("via").unwrap();
            assert_eq!(Some(via), p.headers.get("via"));
            let wire = reply.to_bytes();
            assert!(wire.starts_with(
                format!("SIP/2.0 {} {}\r\n", err.status_code(), err.reason()).as_bytes()
            ));
        }
        // Framing never panics on junk either.
        let _ = frame(data, &limits);
    }
}

#[test]
fn status_codes_for_answerable_errors() {
    for (name, code) in [
        ("oversize.sip", 513),
        ("badvers-sip2-via.sip", 505),
        ("clerr.sip", 400),
    ] {
        let data = corpus("invalid")
            .into_iter()
            .find(|(n, _)| n == name)
            .unwrap()
            .1;
        let e = Message::parse(&data, &Limits::default()).unwrap_err();
        assert_eq!(e.status_code(), code, "{name}");
    }
}

#[test]
fn corpus_details() {
    let m = load("valid", "wsinv.sip");
    assert_eq!(
        m.headers.get("to"),
        Some("sip:vivekg@example.com ;   tag    = 1918181833n")
    );
    assert_eq!(m.to_tag().as_deref(), Some("1918181833n"));
    assert_eq!(m.from_tag().as_deref(), Some("98asjd8"));
    assert_eq!(m.max_forwards().unwrap(), Some(68));
    assert_eq!(m.cseq().unwrap().seq, 9);
    assert_eq!(m.headers.get("subject"), Some(""));
    assert_eq!(
        m.headers.get("NewFangledHeader"),
        Some("newfangled value continued newfangled value")
    );
    let vias = m.vias().unwrap();
    assert_eq!(vias.len(), 3);
    assert_eq!(vias[0].host, "192.0.2.2");
    assert_eq!(vias[2].branch(), Some("z9hG4bK30239"));

    let m = load("valid", "intmeth.sip");
    assert_eq!(
        m.method(),
        Some(&Method::Other(
            "!interesting-Method0123456789_*+`.%indeed'~".into()
        ))
    );

    let m = load("valid", "dblreq.sip");
    assert_eq!(m.method(), Some(&Method::Register));
    assert!(m.body.is_empty());

    let m = load("valid", "mpart01.sip");
    assert!(m.body.len() > 512);
    assert!(m.body.contains(&0u8));

    let m = load("valid", "lf-only.sip");
    assert_eq!(m.headers.get("subject"), Some("bare LF folded with LF"));
    assert_eq!(&m.body[..], b"hello");

    let m = load("valid", "folding.sip");
    assert_eq!(m.max_forwards().unwrap(), Some(70));
    assert_eq!(m.headers.get("x-blank-continuation"), Some("a b"));
    assert_eq!(m.headers.get("content-length"), Some("13"));
    assert_eq!(m.vias().unwrap().len(), 2);

    let m = load("valid", "compact.sip");
    for long in [
        "Via",
        "From",
        "To",
        "Call-ID",
        "Contact",
        "Supported",
        "Event",
        "Allow-Events",
        "Session-Expires",
        "Accept-Contact",
        "Reject-Contact",
        "Request-Disposition",
        "Referred-By",
        "Refer-To",
        "Identity",
        "Subject",
        "Content-Encoding",
        "Content-Type",
        "Content-Length",
    ] {
        assert!(m.headers.contains(long), "compact form of {long}");
    }
    assert_eq!(m.headers.get_all("via").count(), 2);

    let m = load("valid", "unreason.sip");
    assert!(
        matches!(&m.start, StartLine::Response { code: 200, reason } if reason.contains("простое"))
    );
    let m = load("valid", "noreason.sip");
    assert!(matches!(&m.start, StartLine::Response { code: 100, reason } if reason.is_empty()));

    let m = load("valid", "no-content-length.sip");
    assert_eq!(&m.body[..], b"datagram body without Content-Length");

    let m = load("valid", "tel-uri.sip");
    assert_eq!(m.request_uri(), Some("tel:+1-201-555-0123"));

    let m = load("valid", "case-mix.sip");
    assert_eq!(m.method(), Some(&Method::Other("invite".into())));
    assert_eq!(m.from_tag().as_deref(), Some("case1"));
}
