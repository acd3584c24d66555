//! Differential check against rsip 0.4.0 over the test corpus: prints a Markdown table of
//! which messages each parser accepts or rejects (used in
//! `docs/adr/0001-sip-message-parser.md`).
//!
//! ```text
//! cargo run -p weir-message --example rsip_compare
//! ```
//!
//! Columns: the corpus verdict (valid/invalid), Weir's `Message::parse` (ok, or the reason
//! phrase), rsip's `SipMessage::try_from` (ok, or the start of its error), and whether
//! rsip's typed accessors for the headers a proxy needs (Via, From, To, Call-ID, CSeq)
//! all succeed on what it parsed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::path::PathBuf;

use rsip::prelude::*;
use weir_message::{Limits, Message};

fn rsip_typed_ok(m: &rsip::SipMessage) -> Result<(), String> {
    fn check<T: HeadersExt>(r: &T) -> Result<(), rsip::Error> {
        r.via_header()?.typed()?;
        r.from_header()?.typed()?;
        r.to_header()?.typed()?;
        r.call_id_header()?;
        r.cseq_header()?.typed()?;
        Ok(())
    }
    match m {
        rsip::SipMessage::Request(r) => check(r),
        rsip::SipMessage::Response(r) => check(r),
    }
    .map_err(|e| short(&e.to_string()))
}

fn short(s: &str) -> String {
    let s = s
        .replace("Tokenizer error: ", "")
        .replace("rsip error: ", "")
        .replace("could not parse part: ", "")
        .replace("failed to tokenize ", "tokenize ")
        .replace(['\r', '\n', '|', '`'], " ");
    let s: String = s.chars().take(40).collect();
    s.trim().to_string()
}

fn main() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let limits = Limits::default();
    let mut rows = Vec::new();
    let (mut w_ok_valid, mut r_ok_valid, mut rt_ok_valid, mut n_valid) = (0, 0, 0, 0);
    let (mut w_rej_invalid, mut r_rej_invalid, mut rt_rej_invalid, mut n_invalid) = (0, 0, 0, 0);
    for kind in ["valid", "invalid"] {
        let mut files: Vec<_> = std::fs::read_dir(root.join(kind))
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "sip"))
            .collect();
        files.sort();
        for f in files {
            let data = std::fs::read(&f).unwrap();
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            let weir = match Message::parse(&data, &limits) {
                Ok(_) => "ok".to_string(),
                Err(e) => format!("✗ {}", e.reason()),
            };
            let (rsip, typed) = match rsip::SipMessage::try_from(data.as_slice()) {
                Ok(m) => (
                    "ok".to_string(),
                    match rsip_typed_ok(&m) {
                        Ok(()) => "ok".to_string(),
                        Err(e) => format!("✗ {e}"),
                    },
                ),
                Err(e) => (format!("✗ {}", short(&e.to_string())), "–".to_string()),
            };
            if kind == "valid" {
                n_valid += 1;
                w_ok_valid += usize::from(weir == "ok");
                r_ok_valid += usize::from(rsip == "ok");
                rt_ok_valid += usize::from(rsip == "ok" && typed == "ok");
            } else {
                n_invalid += 1;
                w_rej_invalid += usize::from(weir != "ok");
                r_rej_invalid += usize::from(rsip != "ok");
                rt_rej_invalid += usize::from(rsip != "ok" || typed != "ok");
            }
            rows.push((kind, name, weir, rsip, typed));
        }
    }
    println!("| corpus | file | weir | rsip 0.4.0 parse | rsip typed Via/From/To/Call-ID/CSeq |");
    println!("|---|---|---|---|---|");
    for (kind, name, weir, rsip, typed) in &rows {
        println!("| {kind} | {name} | {weir} | {rsip} | {typed} |");
    }
    println!();
    println!("valid accepted:   weir {w_ok_valid}/{n_valid}, rsip {r_ok_valid}/{n_valid} (with typed core headers: {rt_ok_valid}/{n_valid})");
    println!("invalid rejected: weir {w_rej_invalid}/{n_invalid}, rsip {r_rej_invalid}/{n_invalid} (counting typed core-header failures too: {rt_rej_invalid}/{n_invalid})");
}
