//! Parse throughput: Weir's parser vs rsip 0.4.0 on a typical INVITE with SDP and a
//! typical 200 OK with SDP (from `tests/corpus/valid/`).
//!
//! ```text
//! cargo run --release -p weir-message --example parse_bench [iterations]
//! ```
//!
//! Default 200 000 iterations per case after a warm-up; an optional second argument keeps
//! only the cases whose label contains it (e.g. `weir`). Reports ns per message and
//! messages per second (one thread).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stdout)]

use std::hint::black_box;
use std::time::Instant;

use rsip::prelude::*;
use weir_message::{Limits, Message};

const INVITE: &[u8] = include_bytes!("../tests/corpus/valid/invite-sdp.sip");
const OK200: &[u8] = include_bytes!("../tests/corpus/valid/ok200-sdp.sip");

fn bench(label: &str, iters: u32, mut f: impl FnMut()) -> f64 {
    let filter = std::env::args().nth(2).unwrap_or_default();
    if !label.contains(&filter) {
        return 0.0;
    }
    for _ in 0..iters / 10 {
        f();
    }
    let t = Instant::now();
    for _ in 0..iters {
        f();
    }
    let ns = t.elapsed().as_nanos() as f64 / f64::from(iters);
    println!("| {label:<46} | {ns:>9.0} ns | {:>11.0} msg/s |", 1e9 / ns);
    ns
}

fn rsip_typed(m: &rsip::SipMessage) {
    match m {
        rsip::SipMessage::Request(r) => {
            black_box(r.via_header().unwrap().typed().unwrap());
            black_box(r.cseq_header().unwrap().typed().unwrap());
            black_box(r.from_header().unwrap().typed().unwrap());
            black_box(r.to_header().unwrap().typed().unwrap());
            black_box(r.call_id_header().unwrap());
        }
        rsip::SipMessage::Response(r) => {
            black_box(r.via_header().unwrap().typed().unwrap());
            black_box(r.cseq_header().unwrap().typed().unwrap());
            black_box(r.from_header().unwrap().typed().unwrap());
            black_box(r.to_header().unwrap().typed().unwrap());
            black_box(r.call_id_header().unwrap());
        }
    }
}

fn main() {
    let iters: u32 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let limits = Limits::default();
    println!("iterations per case: {iters}");
    println!(
        "INVITE: {} bytes, 200 OK: {} bytes\n",
        INVITE.len(),
        OK200.len()
    );
    println!(
        "| case                                           |   per msg    |   throughput      |"
    );
    println!(
        "|------------------------------------------------|--------------|-------------------|"
    );
    for (name, msg) in [("INVITE+SDP", INVITE), ("200 OK+SDP", OK200)] {
        // Sanity: both parsers accept the message.
        Message::parse(msg, &limits).unwrap();
        let r = rsip::SipMessage::try_from(msg).unwrap();
        rsip_typed(&r);

        bench(
            &format!("weir  Message::parse          {name}"),
            iters,
            || {
                black_box(Message::parse(black_box(msg), &limits).unwrap());
            },
        );
        bench(
            &format!("weir  parse+top_via+cseq+tags {name}"),
            iters,
            || {
                let m = Message::parse(black_box(msg), &limits).unwrap();
                black_box(m.top_via().unwrap());
                black_box(m.cseq().unwrap());
                black_box(m.from_tag());
                black_box(m.to_tag());
            },
        );
        bench(
            &format!("rsip  SipMessage::try_from    {name}"),
            iters,
            || {
                black_box(rsip::SipMessage::try_from(black_box(msg)).unwrap());
            },
        );
        bench(
            &format!("rsip  try_from+typed headers  {name}"),
            iters,
            || {
                let m = rsip::SipMessage::try_from(black_box(msg)).unwrap();
                rsip_typed(&m);
            },
        );
        let parsed = Message::parse(msg, &limits).unwrap();
        let mut out = Vec::with_capacity(2048);
        bench(
            &format!("weir  write_to (serialise)    {name}"),
            iters,
            || {
                out.clear();
                parsed.write_to(&mut out);
                black_box(&out);
            },
        );
        bench(
            &format!("rsip  to_string (serialise)   {name}"),
            iters,
            || {
                black_box(r.to_string());
            },
        );
    }
}
