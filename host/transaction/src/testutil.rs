//! Message builders shared by the unit tests.

use weir_message::{Limits, Message};

/// A request from 192.0.2.1 with `branch` in its only Via and `extra` header lines
/// (CRLF-terminated) before Content-Length.
pub(crate) fn req(method: &str, branch: &str, extra: &str) -> Message {
    let text = format!(
        "{method} sip:bob@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.0.2.1:5060;branch={branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.com>;tag=a1\r\n\
         To: <sip:bob@example.com>\r\n\
         Call-ID: call-1@192.0.2.1\r\n\
         CSeq: 1 {method}\r\n\
         {extra}Content-Length: 0\r\n\r\n"
    );
    Message::parse(text.as_bytes(), &Limits::default()).expect("test request parses")
}
