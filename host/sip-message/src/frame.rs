//! Stream framing (TCP/TLS/WebSocket-less streams), RFC 3261 §18.3 and RFC 5626 §4.4.1.

use crate::chars::{is_ws, parse_digits_u64, trim_ws_bytes};
use crate::error::FrameError;
use crate::message::Limits;
use crate::scan::Lines;

/// Result of looking for the next message in a stream buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Frame {
    /// More bytes are needed.
    Incomplete,
    /// The buffer starts with this many CR/LF bytes (RFC 5626 keep-alive: a double CRLF
    /// "ping" or a single CRLF "pong"); consume them and call again.
    KeepAlive(usize),
    /// The buffer starts with one complete message of this many bytes (headers and
    /// exactly Content-Length body bytes); pass that slice to [`crate::Message::parse`].
    Message(usize),
}

/// Parses a (possibly folded) Content-Length value without allocating, with the same
/// result as unfolding it and applying the datagram parser's rule.
struct ClValue {
    /// Non-empty pieces seen (lines of a folded value).
    pieces: u8,
    value: Option<u64>,
}

impl ClValue {
    fn new() -> Self {
        ClValue {
            pieces: 0,
            value: None,
        }
    }

    fn push(&mut self, piece: &[u8]) {
        let piece = trim_ws_bytes(piece);
        if piece.is_empty() {
            return;
        }
        self.pieces = self.pieces.saturating_add(1);
        // Unfolding joins pieces with SP, which is not a digit: only one piece is valid.
        self.value = if self.pieces == 1 {
            parse_digits_u64(piece)
        } else {
            None
        };
    }

    fn finish(&self, cl: &mut Option<usize>) -> Result<(), FrameError> {
        let bad = |detail| FrameError::BadContentLength { detail };
        let v = self
            .value
            .and_then(|v| usize::try_from(v).ok())
            .ok_or_else(|| bad("not a non-negative decimal number"))?;
        match *cl {
            Some(prev) if prev != v => Err(bad("conflicting values")),
            _ => {
                *cl = Some(v);
                Ok(())
            }
        }
    }
}

fn is_content_length_name(name: &[u8]) -> bool {
    let name = trim_ws_bytes(name);
    name.eq_ignore_ascii_case(b"content-length") || name.eq_ignore_ascii_case(b"l")
}

/// Find where the next message ends in a stream buffer.
///
/// Errors (all fatal for the connection): missing Content-Length (mandatory on streams),
/// negative / garbage / conflicting Content-Length, header block or total size above
/// `limits.max_message_size`. Only the header block is scanned; a Content-Length is
/// checked against the limit before any body byte is awaited.
///
/// ```
/// use weir_message::{frame, Frame, Limits};
/// let l = Limits::default();
/// let msg = b"OPTIONS sip:example.com SIP/2.0\r\nContent-Length: 2\r\n\r\nhi";
/// assert_eq!(frame(&msg[..20], &l).unwrap(), Frame::Incomplete);
/// assert_eq!(frame(msg, &l).unwrap(), Frame::Message(msg.len()));
/// assert_eq!(frame(b"\r\n\r\n", &l).unwrap(), Frame::KeepAlive(4));
/// ```
pub fn frame(buf: &[u8], limits: &Limits) -> Result<Frame, FrameError> {
    let max = limits.max_message_size;
    let lead = buf
        .iter()
        .take_while(|&&b| b == b'\r' || b == b'\n')
        .count();
    if lead > 0 {
        // A lone trailing CR may be the first half of a CRLF: wait for its LF.
        if lead == buf.len() && buf.last() == Some(&b'\r') {
            let n = lead.saturating_sub(1);
            return Ok(if n == 0 {
                Frame::Incomplete
            } else {
                Frame::KeepAlive(n)
            });
        }
        return Ok(Frame::KeepAlive(lead));
    }
    let mut lines = Lines::new(buf, 0);
    let mut header_end = None;
    let mut first = true;
    let mut cur: Option<ClValue> = None;
    let mut cl: Option<usize> = None;
    while let Some(line) = lines.next() {
        if !line.terminated || lines.pos > max.saturating_add(2) {
            break;
        }
        let bytes = line.bytes;
        if first {
            first = false;
            continue;
        }
        let Some(&b0) = bytes.first() else {
            if let Some(v) = cur.take() {
                v.finish(&mut cl)?;
            }
            header_end = Some(lines.pos);
            break;
        };
        if is_ws(b0) {
            if let Some(v) = cur.as_mut() {
                v.push(bytes);
            }
            continue;
        }
        if let Some(v) = cur.take() {
            v.finish(&mut cl)?;
        }
        if let Some(colon) = bytes.iter().position(|&b| b == b':') {
            let (name, value) = bytes.split_at(colon);
            if is_content_length_name(name) {
                let mut v = ClValue::new();
                v.push(value.get(1..).unwrap_or(&[]));
                cur = Some(v);
            }
        }
    }
    let Some(end) = header_end else {
        return if buf.len() > max {
            Err(FrameError::TooLarge {
                size: buf.len(),
                limit: max,
            })
        } else {
            Ok(Frame::Incomplete)
        };
    };
    if end > max {
        return Err(FrameError::TooLarge {
            size: end,
            limit: max,
        });
    }
    let cl = cl.ok_or(FrameError::MissingContentLength)?;
    let total = end.checked_add(cl).ok_or(FrameError::TooLarge {
        size: usize::MAX,
        limit: max,
    })?;
    if total > max {
        return Err(FrameError::TooLarge {
            size: total,
            limit: max,
        });
    }
    Ok(if buf.len() < total {
        Frame::Incomplete
    } else {
        Frame::Message(total)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        max_message_size: 65536,
        max_headers: 256,
    };

    #[test]
    fn keepalives() {
        assert_eq!(frame(b"", &L), Ok(Frame::Incomplete));
        assert_eq!(frame(b"\r", &L), Ok(Frame::Incomplete));
        assert_eq!(frame(b"\r\n", &L), Ok(Frame::KeepAlive(2)));
        assert_eq!(frame(b"\r\n\r", &L), Ok(Frame::KeepAlive(2)));
        assert_eq!(frame(b"\r\n\r\n", &L), Ok(Frame::KeepAlive(4)));
        assert_eq!(frame(b"\r\n\r\nINVITE", &L), Ok(Frame::KeepAlive(4)));
        assert_eq!(frame(b"\nOPTIONS", &L), Ok(Frame::KeepAlive(1)));
    }

    #[test]
    fn frames_by_content_length() {
        let m = b"OPTIONS sip:a@example.com SIP/2.0\r\nVia: x\r\nl: 3\r\n\r\nabcNEXT";
        assert_eq!(frame(m, &L), Ok(Frame::Message(m.len() - 4)));
        for cut in 0..m.len() - 4 {
            assert_eq!(frame(&m[..cut], &L), Ok(Frame::Incomplete), "cut {cut}");
        }
        // Folded value, odd spacing and letter case, bare LF.
        let m = b"OPTIONS sip:a@example.com SIP/2.0\nCONTENT-length  :\n   2\n\nhi";
        assert_eq!(frame(m, &L), Ok(Frame::Message(m.len())));
        // Leading zeros of any length, as the datagram parser accepts them.
        let m = b"X sip:a SIP/2.0\r\nl: 000000000000000000000000000000001\r\n\r\nz";
        assert_eq!(frame(m, &L), Ok(Frame::Message(m.len())));
        // Same value twice is fine.
        let m = b"X sip:a SIP/2.0\r\nl: 1\r\nContent-Length: 1\r\n\r\nz";
        assert_eq!(frame(m, &L), Ok(Frame::Message(m.len())));
        // Body bytes that look like headers are not scanned.
        let m = b"X sip:a SIP/2.0\r\nContent-Length: 21\r\n\r\nContent-Length: 9\r\n\r\n";
        assert_eq!(frame(m, &L), Ok(Frame::Message(m.len())));
    }

    #[test]
    fn errors() {
        assert_eq!(
            frame(b"X sip:a SIP/2.0\r\nVia: x\r\n\r\n", &L),
            Err(FrameError::MissingContentLength)
        );
        for bad in [
            &b"X sip:a SIP/2.0\r\nContent-Length: -1\r\n\r\n"[..],
            b"X sip:a SIP/2.0\r\nContent-Length: abc\r\n\r\n",
            b"X sip:a SIP/2.0\r\nContent-Length:\r\n\r\n",
            b"X sip:a SIP/2.0\r\nContent-Length: 1 2\r\n\r\n",
            b"X sip:a SIP/2.0\r\nl: 1\r\nContent-Length: 2\r\n\r\n",
            b"X sip:a SIP/2.0\r\nContent-Length: 1\r\n 0\r\n\r\n",
        ] {
            assert!(
                matches!(frame(bad, &L), Err(FrameError::BadContentLength { .. })),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        // Announced size over the limit: refused before the body arrives.
        let m = b"X sip:a SIP/2.0\r\nContent-Length: 99999999999\r\n\r\n";
        assert!(matches!(frame(m, &L), Err(FrameError::TooLarge { .. })));
        let m = b"X sip:a SIP/2.0\r\nContent-Length: 18446744073709551615\r\n\r\n";
        assert!(matches!(frame(m, &L), Err(FrameError::TooLarge { .. })));
        // Header block that never ends.
        let mut junk = b"X sip:a SIP/2.0\r\n".to_vec();
        junk.extend(std::iter::repeat_n(b'a', 70_000));
        assert!(matches!(frame(&junk, &L), Err(FrameError::TooLarge { .. })));
        assert_eq!(frame(&junk[..60_000], &L), Ok(Frame::Incomplete));
        let small = Limits {
            max_message_size: 40,
            ..L
        };
        let m = b"X sip:a SIP/2.0\r\nContent-Length: 30\r\n\r\n";
        assert!(matches!(frame(m, &small), Err(FrameError::TooLarge { .. })));
    }
}
