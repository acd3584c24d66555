//! Robustness: the parser, framer and value grammars over pseudo-random mutations of the
//! corpus (deterministic xorshift, no extra crates). Every input must be handled without
//! panicking, and every message that parses must re-serialise into one that parses to the
//! same start line, headers and body.
//!
//! Iterations: 300 000 in release builds, 20 000 in debug builds (to keep `cargo test`
//! fast); override with `WEIR_MUTATIONS=<n>`, and the seed with `WEIR_SEED=<n>`:
//!
//! ```text
//! cargo test --release -p weir-message --test no_panic -- --nocapture
//! ```
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::PathBuf;

use weir_message::{frame, CSeq, Frame, Limits, Message, NameAddr, Uri, Via};

struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: &[u8] = b"\r\n\t :;,<>\"@?=%\\\x00\xff\xc3/-[]0123456789lvV";
const TOKENS: &[&[u8]] = &[
    b"\r\n",
    b"\r\n ",
    b"\n",
    b"\r\n\r\n",
    b"Content-Length: ",
    b"l: 99999999999999999999",
    b"-1",
    b"SIP/2.0",
    b"SIP/7.0",
    b";branch=",
    b"<sip:",
    b"tel:+1",
    b"\"",
    b"%",
    b"%0",
    b"[2001:db8::1]",
    b"v: SIP/2.0/UDP 192.0.2.1\r\n",
    b"CSeq: 4294967296 INVITE\r\n",
    b"\xe2\x82",
    b"65536",
];

fn corpus() -> Vec<Vec<u8>> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut out = Vec::new();
    for kind in ["valid", "invalid"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(kind))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "sip"))
            .collect();
        files.sort();
        for f in files {
            let data = std::fs::read(f).unwrap();
            if data.len() <= 16 * 1024 {
                out.push(data);
            }
        }
    }
    out
}

fn mutate(rng: &mut XorShift, seeds: &[Vec<u8>], v: &mut Vec<u8>) {
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        let at = rng.below(len + 1);
        match rng.below(11) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = INTERESTING[rng.below(INTERESTING.len())];
            }
            2 => v.insert(at, INTERESTING[rng.below(INTERESTING.len())]),
            3 => {
                let end = (at + 1 + rng.below(16)).min(len);
                v.drain(at.min(end)..end);
            }
            4 => {
                let end = (at + 1 + rng.below(64)).min(len);
                let chunk = v[at.min(end)..end].to_vec();
                let to = rng.below(v.len() + 1);
                v.splice(to..to, chunk);
            }
            5 => v.truncate(at),
            6 => {
                let t = TOKENS[rng.below(TOKENS.len())];
                v.splice(at..at, t.iter().copied());
            }
            7 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len() + 1);
                v.truncate(at);
                v.extend_from_slice(&other[from..]);
            }
            8 => {
                // Replace a digit run with a random (possibly huge) number.
                if let Some(start) = (at..len).find(|&i| v[i].is_ascii_digit()) {
                    let end = (start..len)
                        .find(|&i| !v[i].is_ascii_digit())
                        .unwrap_or(len);
                    let n = match rng.below(3) {
                        0 => rng.next().to_string(),
                        1 => format!("{}{}", rng.next(), rng.next()),
                        _ => rng.below(300).to_string(),
                    };
                    v.splice(start..end, n.into_bytes());
                }
            }
            9 => {
                // Swap two lines.
                let lines: Vec<usize> = v
                    .iter()
                    .enumerate()
                    .filter(|(_, &b)| b == b'\n')
                    .map(|(i, _)| i + 1)
                    .collect();
                if lines.len() > 3 {
                    let a = lines[rng.below(lines.len() - 1)];
                    let b = lines[rng.below(lines.len() - 1)];
                    let (a, b) = (a.min(b), a.max(b));
                    let a_end = lines.iter().copied().find(|&e| e > a).unwrap_or(len);
                    let b_end = lines.iter().copied().find(|&e| e > b).unwrap_or(len);
                    if a_end <= b {
                        let la = v[a..a_end].to_vec();
                        let lb = v[b..b_end].to_vec();
                        v.splice(b..b_end, la);
                        v.splice(a..a_end, lb);
                    }
                }
            }
            _ => {
                // Change letter case of a run.
                let end = (at + rng.below(32)).min(len);
                for b in &mut v[at.min(end)..end] {
                    *b = if b.is_ascii_lowercase() {
                        b.to_ascii_uppercase()
                    } else {
                        b.to_ascii_lowercase()
                    };
                }
            }
        }
    }
    v.truncate(70_000);
}

const RELAXED: Limits = Limits {
    max_message_size: 1 << 20,
    max_headers: 1 << 16,
};

/// Everything that must hold for any input. Returns whether it parsed.
fn check(input: &[u8], deep: bool) -> bool {
    let limits = Limits::default();
    if let Ok(Frame::Message(n)) = frame(input, &limits) {
        assert!(n <= input.len());
        let _ = Message::parse(&input[..n], &limits);
    }
    match Message::parse(input, &limits) {
        Err(e) => {
            assert!(!e.reason().is_empty());
            if let Some(p) = e.partial() {
                assert!(p.is_request());
                let r = p.reply(e.status_code(), e.reason(), Some("t"));
                let _ = r.to_bytes();
            }
            false
        }
        Ok(m) => {
            let out = m.to_bytes();
            let m2 = Message::parse(&out, &RELAXED).unwrap_or_else(|e| {
                panic!(
                    "round trip failed: {e} ({:?})\ninput: {:?}\noutput: {:?}",
                    e.kind(),
                    String::from_utf8_lossy(input),
                    String::from_utf8_lossy(&out)
                )
            });
            assert_eq!(m2.start, m.start);
            assert_eq!(m2.body, m.body);
            let a: Vec<_> = m.headers.iter().collect();
            let b: Vec<_> = m2.headers.iter().collect();
            if m.headers.contains("content-length") {
                assert_eq!(a, b, "{:?}", String::from_utf8_lossy(input));
            } else {
                assert_eq!(&b[..a.len()], &a[..]);
                assert_eq!(b.len(), a.len() + 1);
            }
            assert_eq!(frame(&out, &RELAXED), Ok(Frame::Message(out.len())));
            let _ = (m.cseq(), m.top_via(), m.vias(), m.from_tag(), m.to_tag());
            let _ = (
                m.max_forwards(),
                m.validate_request(),
                m.validate_response(),
            );
            let r = m.reply(400, "Bad Request", Some("t"));
            let _ = r.to_bytes();
            if deep {
                for h in m.headers.iter() {
                    if let Ok(v) = Via::parse_list(&h.value) {
                        for via in v {
                            let s = via.to_string();
                            assert_eq!(Via::parse(&s).unwrap(), via, "{s}");
                        }
                    }
                    if let Ok(l) = NameAddr::parse_list(&h.value) {
                        for na in l {
                            let s = na.to_string();
                            let mut back = NameAddr::parse(&s).unwrap();
                            // Display adds <> when there are parameters.
                            back.bracketed = na.bracketed;
                            assert_eq!(back, na, "{s}");
                        }
                    }
                    if let Ok(u) = Uri::parse(&h.value) {
                        assert_eq!(Uri::parse(&u.to_string()).unwrap(), u);
                    }
                    let _ = CSeq::parse(&h.value);
                }
                if let Some(u) = m.request_uri() {
                    if let Ok(u2) = Uri::parse(u) {
                        assert_eq!(Uri::parse(&u2.to_string()).unwrap(), u2);
                    }
                }
            }
            true
        }
    }
}

#[test]
fn mutated_corpus_never_panics_and_round_trips() {
    let default = if cfg!(debug_assertions) {
        20_000
    } else {
        300_000
    };
    let iters: usize = std::env::var("WEIR_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    let seed: u64 = std::env::var("WEIR_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x9E37_79B9_7F4A_7C15);
    let seeds = corpus();
    assert!(seeds.len() > 50);
    let mut rng = XorShift(seed | 1);
    let mut ok = 0usize;
    let start = std::time::Instant::now();
    let mut buf = Vec::new();
    for i in 0..iters {
        buf.clear();
        buf.extend_from_slice(&seeds[rng.below(seeds.len())]);
        mutate(&mut rng, &seeds, &mut buf);
        if check(&buf, i % 8 == 0) {
            ok += 1;
        }
    }
    // Unmutated seeds too.
    for s in &seeds {
        check(s, true);
    }
    println!(
        "{iters} mutated inputs in {:.2?}: {ok} parsed, {} rejected",
        start.elapsed(),
        iters - ok
    );
    assert!(ok > iters / 20, "mutations too destructive: {ok}/{iters}");
    assert!(ok < iters, "no mutation was rejected");
}

#[test]
fn pathological_inputs() {
    let limits = Limits::default();
    let mut many_lines = b"OPTIONS sip:a@example.com SIP/2.0\r\n".to_vec();
    many_lines.extend(std::iter::repeat_n(b'\n', 60_000));
    let _ = Message::parse(&many_lines, &limits);
    let mut bad_utf8 = b"OPTIONS sip:a@example.com SIP/2.0\r\n".to_vec();
    for _ in 0..20_000 {
        bad_utf8.extend_from_slice(b"\xff\n");
    }
    let _ = Message::parse(&bad_utf8, &limits);
    let folds = [
        b"OPTIONS sip:a@example.com SIP/2.0\r\nX: a\r\n".as_slice(),
        &b" b\r\n".repeat(15_000),
    ]
    .concat();
    let _ = Message::parse(&folds, &limits);
    let _ = frame(&folds, &limits);
    let commas = format!("Via: {}\r\n", ",".repeat(60_000));
    let _ = Via::parse_list(&commas);
    let _ = NameAddr::parse_list(&commas);
    let quotes = "\"".repeat(60_000);
    let _ = NameAddr::parse(&quotes);
    let _ = Via::parse(&format!("SIP/2.0/UDP a;x={quotes}"));
    let _ = Uri::parse(&format!("sip:{}", "%".repeat(60_000)));
    for b in 0u8..=255 {
        let _ = Message::parse(&[b], &limits);
        let _ = frame(&[b], &limits);
        let _ = Message::parse(&[b; 3], &limits);
    }
}
