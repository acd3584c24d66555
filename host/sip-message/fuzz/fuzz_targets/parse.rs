//! Fuzz target: `Message::parse` and `frame` on arbitrary bytes; every message that
//! parses must re-serialise into bytes that parse again (to the same start line, headers
//! and body) and frame as exactly one message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use weir_message::{frame, Frame, Limits, Message};

const RELAXED: Limits = Limits {
    max_message_size: 1 << 20,
    max_headers: 1 << 16,
};

fuzz_target!(|data: &[u8]| {
    let limits = Limits::default();
    if let Ok(Frame::Message(n)) = frame(data, &limits) {
        assert!(n <= data.len());
        let _ = Message::parse(&data[..n], &limits);
    }
    match Message::parse(data, &limits) {
        Err(e) => {
            assert!(!e.reason().is_empty());
            if let Some(p) = e.partial() {
                let _ = p
                    .reply(e.status_code(), e.reason(), Some("fuzz"))
                    .to_bytes();
            }
        }
        Ok(m) => {
            let out = m.to_bytes();
            let m2 = Message::parse(&out, &RELAXED).expect("re-serialised message must parse");
            assert_eq!(m2.start, m.start);
            assert_eq!(m2.body, m.body);
            let n = m.headers.len();
            assert!(m2.headers.iter().take(n).eq(m.headers.iter()));
            assert_eq!(frame(&out, &RELAXED), Ok(Frame::Message(out.len())));
            let _ = (m.cseq(), m.top_via(), m.vias(), m.from_tag(), m.to_tag());
            let _ = m.reply(400, "Bad Request", Some("fuzz")).to_bytes();
        }
    }
});
