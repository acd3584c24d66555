//! Messages: parsing, accessors, serialisation, replies and validation.

use std::fmt;

use bytes::Bytes;
use bytestring::ByteString;

use crate::chars::{
    is_token, is_token_byte, is_ws, parse_content_length, parse_digits_u64, skip_ws, split_byte,
    split_ws, take_while, trim_ws, words,
};
use crate::error::{HeaderError, Malformed, ParseError, ParseErrorKind};
use crate::headers::{names_equal, First, Header, Headers};
use crate::method::Method;
use crate::scan::Lines;
use crate::span::Span;
use crate::text::Text;
use crate::via::ViaSpans;
use crate::{nameaddr, reason_phrase, uri, via, Via, ViaRef};

/// Parse limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Largest accepted message (start line, headers and body), in bytes. Default 65536.
    pub max_message_size: usize,
    /// Most header lines accepted (after unfolding). Default 256.
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message_size: 65536,
            max_headers: 256,
        }
    }
}

/// Request-Line or Status-Line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StartLine {
    /// `METHOD SP Request-URI SP SIP/2.0`
    Request {
        /// Method.
        method: Method,
        /// Request-URI as written (validated as sip/sips/tel, or as an absoluteURI for
        /// other schemes).
        uri: Text,
    },
    /// `SIP/2.0 SP code SP reason`
    Response {
        /// Status code, 100-699.
        code: u16,
        /// Reason phrase (may be empty).
        reason: Text,
    },
}

impl fmt::Display for StartLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartLine::Request { method, uri } => write!(f, "{method} {uri} SIP/2.0"),
            StartLine::Response { code, reason } => write!(f, "SIP/2.0 {code} {reason}"),
        }
    }
}

/// CSeq header value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CSeq {
    /// Sequence number (< 2^31, RFC 3261 §8.1.1.5).
    pub seq: u32,
    /// Method.
    pub method: Method,
}

fn cseq_parts(value: &str) -> Result<(u32, &str), HeaderError> {
    let e = |d| HeaderError::invalid("CSeq", d);
    let v = trim_ws(value);
    let (num, rest) = split_ws(v).ok_or_else(|| e("missing method"))?;
    let seq = parse_digits_u64(num.as_bytes())
        .filter(|n| *n < (1u64 << 31))
        .and_then(|n| u32::try_from(n).ok())
        .ok_or_else(|| e("sequence number not below 2^31"))?;
    let method = trim_ws(rest);
    if !is_token(method) {
        return Err(e("bad method"));
    }
    Ok((seq, method))
}

impl CSeq {
    /// Parse `1*DIGIT LWS Method`.
    pub fn parse(value: &str) -> Result<CSeq, HeaderError> {
        let (seq, m) = cseq_parts(value)?;
        Ok(CSeq {
            seq,
            method: Method::parse(m)?,
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

/// A parsed SIP message (request or response), kept close to the wire for proxying.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    /// Request-Line or Status-Line.
    pub start: StartLine,
    /// Headers in wire order.
    pub headers: Headers,
    /// Body bytes (exactly Content-Length bytes when that header is present).
    pub body: Bytes,
}

/// Headers a proxy checks on every message: those whose first line a parsed message
/// remembers, and Content-Length.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Known {
    Line(First),
    ContentLength,
    Other,
}

/// The [`First`] kind a header name is one of, if any.
pub(crate) fn first_kind(name: &str) -> Option<First> {
    match classify(name) {
        Known::Line(which) => Some(which),
        _ => None,
    }
}

/// Classify a header name (case-insensitive, compact forms included) without allocating.
#[inline]
fn classify(name: &str) -> Known {
    let eq = |long: &str| name.eq_ignore_ascii_case(long);
    match name.len() {
        1 => match name.as_bytes().first().map(u8::to_ascii_lowercase) {
            Some(b'v') => Known::Line(First::Via),
            Some(b'f') => Known::Line(First::From),
            Some(b't') => Known::Line(First::To),
            Some(b'i') => Known::Line(First::CallId),
            Some(b'l') => Known::ContentLength,
            _ => Known::Other,
        },
        2 if eq("to") => Known::Line(First::To),
        3 if eq("via") => Known::Line(First::Via),
        4 if eq("from") => Known::Line(First::From),
        4 if eq("cseq") => Known::Line(First::CSeq),
        7 if eq("call-id") => Known::Line(First::CallId),
        12 if eq("max-forwards") => Known::Line(First::MaxForwards),
        14 if eq("content-length") => Known::ContentLength,
        _ => Known::Other,
    }
}

/// `name` as static text when it is written the usual way for a common header: such a
/// name then holds no reference to the message's buffer (no reference count to take
/// and drop for each line).
fn usual_spelling(name: &str) -> Option<&'static str> {
    // Literal arms: each comparison is a length check and one or two integer loads, no
    // call (a table of names compared in a loop cost as much as it saved).
    Some(match name {
        "v" => "v",
        "f" => "f",
        "t" => "t",
        "i" => "i",
        "m" => "m",
        "l" => "l",
        "k" => "k",
        "c" => "c",
        "s" => "s",
        "e" => "e",
        "o" => "o",
        "u" => "u",
        "To" => "To",
        "Via" => "Via",
        "From" => "From",
        "CSeq" => "CSeq",
        "Path" => "Path",
        "Date" => "Date",
        "Allow" => "Allow",
        "Route" => "Route",
        "Event" => "Event",
        "Accept" => "Accept",
        "Server" => "Server",
        "Call-ID" => "Call-ID",
        "Call-Id" => "Call-Id",
        "Contact" => "Contact",
        "Expires" => "Expires",
        "Require" => "Require",
        "Warning" => "Warning",
        "Supported" => "Supported",
        "User-Agent" => "User-Agent",
        "Min-Expires" => "Min-Expires",
        "Max-Forwards" => "Max-Forwards",
        "Content-Type" => "Content-Type",
        "Record-Route" => "Record-Route",
        "Authorization" => "Authorization",
        "Proxy-Require" => "Proxy-Require",
        "Content-Length" => "Content-Length",
        "WWW-Authenticate" => "WWW-Authenticate",
        "Content-Encoding" => "Content-Encoding",
        "Proxy-Authenticate" => "Proxy-Authenticate",
        "Subscription-State" => "Subscription-State",
        "Proxy-Authorization" => "Proxy-Authorization",
        "Content-Disposition" => "Content-Disposition",
        _ => return None,
    })
}

/// Index of the first line of each checked header, found in one pass.
#[derive(Default)]
struct Found {
    via: Option<usize>,
    from: Option<usize>,
    to: Option<usize>,
    call_id: Option<usize>,
    cseq: Option<usize>,
    max_forwards: Option<usize>,
    content_length: [Option<usize>; 4],
    content_length_overflow: bool,
}

impl Found {
    #[inline]
    fn note(&mut self, k: Known, i: usize) {
        let slot = match k {
            Known::Line(First::Via) => &mut self.via,
            Known::Line(First::From) => &mut self.from,
            Known::Line(First::To) => &mut self.to,
            Known::Line(First::CallId) => &mut self.call_id,
            Known::Line(First::CSeq) => &mut self.cseq,
            Known::Line(First::MaxForwards) => &mut self.max_forwards,
            Known::ContentLength => {
                match self.content_length.iter_mut().find(|s| s.is_none()) {
                    Some(s) => *s = Some(i),
                    None => self.content_length_overflow = true,
                }
                return;
            }
            Known::Other => return,
        };
        if slot.is_none() {
            *slot = Some(i);
        }
    }

    /// Index of the first line of `which`.
    fn line(&self, which: First) -> Option<usize> {
        match which {
            First::Via => self.via,
            First::From => self.from,
            First::To => self.to,
            First::CallId => self.call_id,
            First::CSeq => self.cseq,
            First::MaxForwards => self.max_forwards,
        }
    }

    fn of(headers: &Headers) -> Found {
        let mut f = Found::default();
        for (i, h) in headers.iter().enumerate() {
            f.note(classify(&h.name), i);
        }
        f
    }
}

struct StartErr {
    kind: ParseErrorKind,
    reason: &'static str,
    recovered: Option<StartLine>,
}

fn start_err(kind: ParseErrorKind, reason: &'static str, recovered: Option<StartLine>) -> StartErr {
    StartErr {
        kind,
        reason,
        recovered,
    }
}

fn has_sip_prefix(s: &str) -> bool {
    s.get(..4).is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
}

fn validate_request_uri(u: &str) -> Result<(), HeaderError> {
    let scheme = split_byte(u, b':').map(|(s, _)| s).unwrap_or("");
    if scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips") {
        let parts = uri::parse_parts(u, |_, _| {})?;
        if parts.headers.is_some() {
            // RFC 3261 §19.1.1 table 1: headers are not allowed in a Request-URI.
            return Err(HeaderError::invalid("URI", "headers in Request-URI"));
        }
        Ok(())
    } else {
        uri::validate_any(u)
    }
}

/// The start line; its strings share `whole`'s storage (`bytes` is a slice of it).
fn parse_start_line(bytes: &[u8], whole: &ByteString) -> Result<StartLine, StartErr> {
    use ParseErrorKind as K;
    if bytes.iter().any(|&b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        return Err(start_err(K::StartLine, "Malformed Start Line", None));
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Err(start_err(K::StartLine, "Malformed Start Line", None));
    };
    if has_sip_prefix(text) {
        let (version, rest) = split_ws(text).unwrap_or((text, ""));
        if !version.eq_ignore_ascii_case("SIP/2.0") {
            return Err(start_err(
                K::VersionNotSupported,
                "Unsupported SIP Version",
                None,
            ));
        }
        let rest = trim_ws(rest);
        let (code, reason) = split_ws(rest).unwrap_or((rest, ""));
        let code = match code.as_bytes() {
            [a @ b'1'..=b'6', b @ b'0'..=b'9', c @ b'0'..=b'9'] => {
                u16::from(a - b'0') * 100 + u16::from(b - b'0') * 10 + u16::from(c - b'0')
            }
            _ => return Err(start_err(K::StartLine, "Malformed Status-Line", None)),
        };
        return Ok(StartLine::Response {
            code,
            reason: Text::share(whole, trim_ws(reason)),
        });
    }
    let mut toks = words(text);
    let (Some(m), Some(u), Some(v)) = (toks.next(), toks.next(), toks.next()) else {
        return Err(start_err(K::StartLine, "Malformed Request-Line", None));
    };
    let extra = toks.next().is_some();
    let Ok(method) = Method::parse(m) else {
        return Err(start_err(K::StartLine, "Malformed Request-Line", None));
    };
    if extra {
        // Whitespace inside the Request-URI (RFC 4475 lwsruri). Answerable if the line
        // still ends with a SIP version.
        let all: Vec<&str> = words(text).collect();
        let last = all.last().copied().unwrap_or("");
        if !has_sip_prefix(last) {
            return Err(start_err(K::StartLine, "Malformed Request-Line", None));
        }
        let uri = all
            .get(1..all.len().saturating_sub(1))
            .unwrap_or(&[])
            .join(" ");
        return Err(start_err(
            K::RequestUri,
            "Malformed Request-URI",
            Some(StartLine::Request {
                method,
                uri: Text::from(uri),
            }),
        ));
    }
    if !has_sip_prefix(v) {
        return Err(start_err(K::StartLine, "Malformed Request-Line", None));
    }
    let req = StartLine::Request {
        method,
        uri: Text::share(whole, u),
    };
    if !v.eq_ignore_ascii_case("SIP/2.0") {
        return Err(start_err(
            K::VersionNotSupported,
            "Unsupported SIP Version",
            Some(req),
        ));
    }
    if validate_request_uri(u).is_err() {
        return Err(start_err(K::RequestUri, "Malformed Request-URI", Some(req)));
    }
    Ok(req)
}

/// The message as text: its longest valid UTF-8 prefix, checked once, shared by every
/// header and the start line (no copies). A line past that prefix (a message with an
/// invalid byte) is checked on its own and copied.
struct Source<'a> {
    buf: &'a [u8],
    text: ByteString,
}

impl<'a> Source<'a> {
    fn new(all: &'a Bytes, scan_len: usize) -> Self {
        let buf = all.get(..scan_len).unwrap_or(&[]);
        let prefix = |len: usize| all.slice(0..len.min(all.len()));
        let text = match ByteString::try_from(prefix(scan_len)) {
            Ok(t) => t,
            Err(e) => ByteString::try_from(prefix(e.valid_up_to())).unwrap_or_default(),
        };
        Source { buf, text }
    }

    /// The line `buf[start..end]` as text, `None` if it is not valid UTF-8.
    #[inline]
    fn line(&self, start: usize, end: usize) -> Option<&str> {
        match self.text.get(start..end) {
            Some(t) => Some(t),
            None => std::str::from_utf8(self.buf.get(start..end)?).ok(),
        }
    }

    /// `part` (a slice of a line) as [`Text`].
    #[inline]
    fn text(&self, part: &str) -> Text {
        Text::share(&self.text, part)
    }
}

/// The partial message for an error, when a reply can be routed.
fn partial_of(msg: Message) -> Option<Box<Message>> {
    match &msg.start {
        StartLine::Request { method, .. } if *method != Method::Ack => {}
        _ => return None,
    }
    via::validate_first(msg.headers.get("via")?).ok()?;
    for name in ["from", "to", "call-id", "cseq"] {
        if msg.headers.get(name).is_none_or(str::is_empty) {
            return None;
        }
    }
    Some(Box::new(msg))
}

fn map_malformed(m: &Malformed) -> ParseError {
    let kind = match m {
        Malformed::Missing { .. } => ParseErrorKind::MissingHeader,
        Malformed::CSeqMismatch { .. } => ParseErrorKind::CSeqMismatch,
        Malformed::Invalid { .. } | Malformed::WrongKind { .. } => ParseErrorKind::InvalidHeader,
    };
    ParseError::new(kind, m.reason_static())
}

#[inline]
fn set_err(
    err: &mut Option<(ParseErrorKind, &'static str)>,
    kind: ParseErrorKind,
    reason: &'static str,
) {
    if err.is_none() {
        *err = Some((kind, reason));
    }
}

fn parse_impl(all: &Bytes, limits: &Limits) -> Result<Message, ParseError> {
    use ParseErrorKind as K;
    let buf: &[u8] = all;
    let max = limits.max_message_size;
    let too_large = buf.len() > max;
    let scan = if too_large {
        buf.get(..max).unwrap_or(buf)
    } else {
        buf
    };
    let mut err: Option<(ParseErrorKind, &'static str)> = None;
    if too_large {
        set_err(&mut err, K::TooLarge, "Message Too Large");
    }
    let Some(first_pos) = scan.iter().position(|&b| b != b'\r' && b != b'\n') else {
        return Err(if too_large {
            ParseError::new(K::TooLarge, "Message Too Large")
        } else {
            ParseError::new(K::Empty, "Empty Message")
        });
    };
    let mut lines = Lines::new(scan, first_pos);
    let Some(first) = lines.next() else {
        return Err(ParseError::new(K::Empty, "Empty Message"));
    };
    if !first.terminated {
        return Err(if too_large {
            ParseError::new(K::TooLarge, "Message Too Large")
        } else {
            ParseError::new(K::Truncated, "Truncated Message")
        });
    }
    let source = Source::new(all, scan.len());
    let start = match parse_start_line(first.bytes, &source.text) {
        Ok(s) => s,
        Err(StartErr {
            kind,
            reason,
            recovered: Some(s),
        }) => {
            set_err(&mut err, kind, reason);
            s
        }
        Err(StartErr { kind, reason, .. }) => {
            let (kind, reason) = if too_large {
                (K::TooLarge, "Message Too Large")
            } else {
                (kind, reason)
            };
            return Err(ParseError::new(kind, reason));
        }
    };

    // 15 lines cover a typical message. 15 * 64 bytes stays below 1 KiB, glibc's
    // smallest "large" request: when its per-thread cache has no block of the size,
    // a large request first consolidates the fast bins (seen in profiles), a small one
    // does not; 1 KiB or more also leaves the per-thread cache (~1k instructions).
    let mut headers = Headers::with_capacity(15);
    let mut found = Found::default();
    let mut body_start = None;
    let mut cl: Option<usize> = None;
    let mut cl_bad = false;
    // After a rejected line, its continuation lines are skipped too.
    let mut skipping = false;
    while let Some(line) = lines.next() {
        if !line.terminated {
            break;
        }
        let bytes = line.bytes;
        let Some(&b0) = bytes.first() else {
            body_start = Some(lines.pos);
            break;
        };
        if line.bad {
            set_err(&mut err, K::Header, "Malformed Header");
            skipping = true;
            continue;
        }
        let Some(text) = source.line(line.start, line.start.saturating_add(bytes.len())) else {
            set_err(&mut err, K::Header, "Malformed Header");
            skipping = true;
            continue;
        };
        if is_ws(b0) {
            // Folded continuation line: joined with a single SP.
            if skipping {
                continue;
            }
            match headers.last_mut() {
                Some(h) => {
                    let piece = trim_ws(text);
                    if !piece.is_empty() {
                        let mut joined = String::with_capacity(h.value.len() + piece.len() + 1);
                        joined.push_str(&h.value);
                        if !joined.is_empty() {
                            joined.push(' ');
                        }
                        joined.push_str(piece);
                        h.value = Text::from(joined);
                    }
                }
                None => {
                    set_err(&mut err, K::Header, "Malformed Header");
                    skipping = true;
                }
            }
            continue;
        }
        let name_end = take_while(bytes, 0, is_token_byte);
        let colon = skip_ws(bytes, name_end);
        let (Some(name), Some(b':'), Some(value)) = (
            text.get(..name_end),
            bytes.get(colon).copied(),
            text.get(colon.saturating_add(1)..),
        ) else {
            set_err(&mut err, K::Header, "Malformed Header");
            skipping = true;
            continue;
        };
        if name.is_empty() {
            set_err(&mut err, K::Header, "Malformed Header");
            skipping = true;
            continue;
        }
        if headers.len() >= limits.max_headers {
            set_err(&mut err, K::TooManyHeaders, "Too Many Headers");
            break;
        }
        skipping = false;
        found.note(classify(name), headers.len());
        headers.push_header(Header {
            name: match usual_spelling(name) {
                Some(n) => Text::from_static(n),
                None => source.text(name),
            },
            value: source.text(trim_ws(value)),
        });
    }
    headers.remember_first(|which| found.line(which));
    // Content-Length values are checked once folding is resolved.
    for i in found.content_length.iter().flatten() {
        let v = headers
            .get_at(*i)
            .map(|h| h.value.as_bytes())
            .unwrap_or(&[]);
        match parse_content_length(v) {
            Some(n) if cl.is_none_or(|c| c == n) => cl = Some(n),
            _ => cl_bad = true,
        }
    }
    if found.content_length_overflow {
        // More Content-Length lines than tracked: check them all the slow way.
        for v in headers.get_all("content-length") {
            match parse_content_length(v.as_bytes()) {
                Some(n) if cl.is_none_or(|c| c == n) => cl = Some(n),
                _ => cl_bad = true,
            }
        }
    }

    let mut body = Bytes::new();
    match body_start {
        None => set_err(&mut err, K::Truncated, "Truncated Message"),
        Some(bs) if err.is_none() => {
            let avail = buf.len().saturating_sub(bs);
            match cl {
                _ if cl_bad => set_err(&mut err, K::ContentLength, "Bad Content-Length"),
                Some(n) if n > avail => set_err(&mut err, K::ContentLength, "Bad Content-Length"),
                // Extra octets after Content-Length in a datagram are discarded (RFC 3261
                // §18.3, RFC 4475 dblreq).
                Some(n) => body = body_of(all, bs, bs.saturating_add(n)),
                None => body = body_of(all, bs, buf.len()),
            }
        }
        Some(_) => {}
    }

    let mut msg = Message {
        start,
        headers,
        body,
    };
    if let Some((kind, reason)) = err {
        return Err(ParseError::new(kind, reason).with_partial(partial_of(msg)));
    }
    let check = if msg.is_request() {
        msg.check_request(&found)
    } else {
        msg.check_response(&found)
    };
    match check {
        Ok(seen) => {
            // What the checks parsed is then read without parsing it again.
            msg.headers.remember_from_tag(seen.from_tag);
            msg.headers.remember_to_tag(seen.to_tag);
            msg.headers.remember_top_via(seen.top_via);
            Ok(msg)
        }
        Err(m) => Err(map_malformed(&m).with_partial(partial_of(Message {
            body: Bytes::new(),
            ..msg
        }))),
    }
}

/// The param span of a tag found in `value` ([`Span::UNKNOWN`] if it cannot be kept).
fn tag_span(value: &str, tag: Option<&str>) -> Span {
    Span::of_param(value, tag.map(Some)).unwrap_or(Span::UNKNOWN)
}

/// What the sanity checks of a parsed message parsed on the way, kept in its headers.
struct Checked {
    from_tag: Span,
    to_tag: Span,
    top_via: Option<ViaSpans>,
}

/// `all[a..b]` sharing its storage (empty when out of range).
fn body_of(all: &Bytes, a: usize, b: usize) -> Bytes {
    if a <= b && b <= all.len() {
        all.slice(a..b)
    } else {
        Bytes::new()
    }
}

/// Append `s`, replacing CR, LF and NUL with SP so a value can never split a line.
#[inline]
fn push_clean(out: &mut Vec<u8>, s: &str) {
    // Eight bytes at a time (values almost never need cleaning).
    if crate::scan::find_special(s.as_bytes(), 0) < s.len() {
        out.extend(s.bytes().map(|b| match b {
            b'\r' | b'\n' | 0 => b' ',
            b => b,
        }));
    } else {
        out.extend_from_slice(s.as_bytes());
    }
}

/// `name: value` CRLF as [`Message::write_to`] writes a line (CR, LF and NUL in the
/// value as SP), with `;tag=<tag>` after the value when given; nothing when the name is
/// not a token.
fn push_line(out: &mut Vec<u8>, name: &str, value: &str, tag: Option<&str>) {
    if !is_token(name) {
        return;
    }
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    push_clean(out, value);
    if let Some(tag) = tag {
        out.extend_from_slice(b";tag=");
        push_clean(out, tag);
    }
    out.extend_from_slice(b"\r\n");
}

/// Number of decimal digits of `n`.
#[inline]
fn digits(mut n: usize) -> usize {
    let mut d = 1;
    while n >= 10 {
        n /= 10;
        d += 1;
    }
    d
}

/// Append the decimal form of `n`.
#[inline]
fn push_usize(out: &mut Vec<u8>, mut n: usize) {
    let mut tmp = [0u8; 20];
    let mut i = tmp.len();
    loop {
        i = i.saturating_sub(1);
        if let Some(slot) = tmp.get_mut(i) {
            // n % 10 < 10, fits in u8.
            *slot = b'0' + (n % 10) as u8;
        }
        n /= 10;
        if n == 0 || i == 0 {
            break;
        }
    }
    out.extend_from_slice(tmp.get(i..).unwrap_or(&[]));
}

impl Message {
    /// Parse one complete message from a datagram (or a frame cut by [`crate::frame`]).
    ///
    /// On success the message is known to be well-formed enough to proxy: the start line,
    /// every header line and Content-Length parse, and for requests Via, From, To,
    /// Call-ID, CSeq (matching the method) and Max-Forwards pass
    /// [`Message::validate_request`] (responses: [`Message::validate_response`]).
    pub fn parse(buf: &[u8], limits: &Limits) -> Result<Message, ParseError> {
        parse_impl(&Bytes::copy_from_slice(buf), limits)
    }

    /// As [`Message::parse`], but the message shares `buf`'s storage (its header names
    /// and values, start line and body are views of `buf`) instead of copying it.
    pub fn parse_bytes(buf: &Bytes, limits: &Limits) -> Result<Message, ParseError> {
        parse_impl(buf, limits)
    }

    /// A request with no headers and no body.
    pub fn new_request(method: Method, uri: impl Into<Text>) -> Message {
        Message {
            start: StartLine::Request {
                method,
                uri: uri.into(),
            },
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// A response with no headers and no body.
    pub fn new_response(code: u16, reason: impl Into<Text>) -> Message {
        Message {
            start: StartLine::Response {
                code,
                reason: reason.into(),
            },
            headers: Headers::new(),
            body: Bytes::new(),
        }
    }

    /// Whether this is a request.
    pub fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    /// Request method (`None` for responses).
    pub fn method(&self) -> Option<&Method> {
        match &self.start {
            StartLine::Request { method, .. } => Some(method),
            StartLine::Response { .. } => None,
        }
    }

    /// Status code (`None` for requests).
    pub fn status(&self) -> Option<u16> {
        match &self.start {
            StartLine::Response { code, .. } => Some(*code),
            StartLine::Request { .. } => None,
        }
    }

    /// Request-URI as written (`None` for responses).
    pub fn request_uri(&self) -> Option<&str> {
        match &self.start {
            StartLine::Request { uri, .. } => Some(uri),
            StartLine::Response { .. } => None,
        }
    }

    /// Replace the Request-URI; no-op on responses.
    pub fn set_request_uri(&mut self, new: impl Into<Text>) {
        if let StartLine::Request { uri, .. } = &mut self.start {
            *uri = new.into();
        }
    }

    /// The CSeq header.
    pub fn cseq(&self) -> Result<CSeq, HeaderError> {
        CSeq::parse(
            self.headers
                .first(First::CSeq)
                .ok_or(HeaderError::Missing { name: "CSeq" })?,
        )
    }

    /// The Call-ID header value.
    pub fn call_id(&self) -> Option<&str> {
        self.headers.first(First::CallId)
    }

    /// Max-Forwards (0-255, RFC 3261 §20.22); `Ok(None)` when absent.
    pub fn max_forwards(&self) -> Result<Option<u32>, HeaderError> {
        self.headers
            .first(First::MaxForwards)
            .map(parse_max_forwards)
            .transpose()
    }

    /// First via-parm of the first Via line.
    pub fn top_via(&self) -> Result<Via, HeaderError> {
        Via::parse(
            self.headers
                .first(First::Via)
                .ok_or(HeaderError::Missing { name: "Via" })?,
        )
    }

    /// Every via-parm of every Via line, top first.
    pub fn vias(&self) -> Result<Vec<Via>, HeaderError> {
        let mut out = Vec::new();
        for v in self.headers.get_all("via") {
            out.extend(Via::parse_list(v)?);
        }
        Ok(out)
    }

    /// The first via-parm of the first Via line, borrowed (see [`ViaRef`]).
    pub fn top_via_ref(&self) -> Result<ViaRef<'_>, HeaderError> {
        if let Some(top) = self.headers.remembered_top_via() {
            return Ok(top);
        }
        ViaRef::parse(
            self.headers
                .first(First::Via)
                .ok_or(HeaderError::Missing { name: "Via" })?,
        )
    }

    /// `tag` parameter of From, borrowed.
    pub fn from_tag_ref(&self) -> Option<&str> {
        if let Some(tag) = self.headers.remembered_from_tag() {
            return tag;
        }
        self.headers.first(First::From).and_then(nameaddr::tag_of)
    }

    /// `tag` parameter of To, borrowed.
    pub fn to_tag_ref(&self) -> Option<&str> {
        if let Some(tag) = self.headers.remembered_to_tag() {
            return tag;
        }
        self.headers.first(First::To).and_then(nameaddr::tag_of)
    }

    /// `tag` parameter of From.
    pub fn from_tag(&self) -> Option<String> {
        self.from_tag_ref().map(str::to_string)
    }

    /// `tag` parameter of To.
    pub fn to_tag(&self) -> Option<String> {
        self.to_tag_ref().map(str::to_string)
    }

    /// Serialise to wire form: start line, headers in order (names spelled as stored), a
    /// Content-Length header that matches the body (updated in place if present, appended
    /// if absent), blank line, body.
    ///
    /// CR, LF and NUL inside stored text are written as SP, and lines whose name is not a
    /// valid token are skipped, so the output always has the structure of one message.
    pub fn write_to(&self, out: &mut Vec<u8>) {
        let blen = self.body.len();
        out.reserve(
            self.headers
                .iter()
                .map(|h| h.name.len().saturating_add(h.value.len()).saturating_add(4))
                .fold(blen.saturating_add(128), usize::saturating_add),
        );
        #[cfg(debug_assertions)]
        let before = out.len();
        match &self.start {
            StartLine::Request { method, uri } => {
                push_clean(out, method.as_str());
                out.push(b' ');
                push_clean(out, uri);
                out.extend_from_slice(b" SIP/2.0\r\n");
            }
            StartLine::Response { code, reason } => {
                out.extend_from_slice(b"SIP/2.0 ");
                push_usize(out, usize::from(*code));
                out.push(b' ');
                push_clean(out, reason);
                out.extend_from_slice(b"\r\n");
            }
        }
        let mut has_cl = false;
        for h in &self.headers {
            if !is_token(&h.name) {
                continue;
            }
            out.extend_from_slice(h.name.as_bytes());
            out.extend_from_slice(b": ");
            if names_equal(&h.name, "content-length") {
                has_cl = true;
                if parse_content_length(h.value.as_bytes()) == Some(blen) {
                    push_clean(out, &h.value);
                } else {
                    push_usize(out, blen);
                }
            } else {
                push_clean(out, &h.value);
            }
            out.extend_from_slice(b"\r\n");
        }
        if !has_cl {
            out.extend_from_slice(b"Content-Length: ");
            push_usize(out, blen);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(&self.body);
        #[cfg(debug_assertions)]
        debug_assert_eq!(out.len() - before, self.wire_len(), "wire_len disagrees");
    }

    /// The exact number of bytes [`Message::write_to`] writes (one pass over the headers;
    /// cheaper than writing, but not free: `write_to` reserves an estimate instead).
    pub fn wire_len(&self) -> usize {
        let blen = self.body.len();
        let start = match &self.start {
            // "METHOD SP uri SP SIP/2.0 CRLF"
            StartLine::Request { method, uri } => method.as_str().len() + uri.len() + 11,
            // "SIP/2.0 SP code SP reason CRLF"
            StartLine::Response { code, reason } => {
                9 + digits(usize::from(*code)) + reason.len() + 2
            }
        };
        let mut n = start;
        let mut has_cl = false;
        for h in &self.headers {
            if !is_token(&h.name) {
                continue;
            }
            n += h.name.len() + 4;
            if names_equal(&h.name, "content-length") {
                has_cl = true;
                if parse_content_length(h.value.as_bytes()) == Some(blen) {
                    n += h.value.len();
                } else {
                    n += digits(blen);
                }
            } else {
                n += h.value.len();
            }
        }
        if !has_cl {
            // "Content-Length: " digits CRLF
            n += 18 + digits(blen);
        }
        n + 2 + blen
    }

    /// [`Message::write_to`] into a new vector.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_to(&mut out);
        out
    }

    /// RFC 3261 §8.2.6 reply to a request: copies all Via lines, From, To (adds
    /// `;tag=<to_tag>` when the To has no tag and `code > 100`), Call-ID and CSeq;
    /// Content-Length 0. An empty `reason` is replaced by [`reason_phrase`]`(code)`.
    ///
    /// ```
    /// use weir_message::{Limits, Message};
    /// let req = Message::parse(
    ///     b"OPTIONS sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
    ///       From: <sip:a@example.com>;tag=1\r\nTo: <sip:example.com>\r\nCall-ID: c1\r\n\
    ///       CSeq: 7 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
    ///     &Limits::default(),
    /// ).unwrap();
    /// let resp = req.reply(200, "", Some("srv1"));
    /// assert_eq!(resp.status(), Some(200));
    /// assert_eq!(resp.to_tag().as_deref(), Some("srv1"));
    /// assert_eq!(resp.headers.get("cseq"), Some("7 OPTIONS"));
    /// ```
    pub fn reply(&self, code: u16, reason: &str, to_tag: Option<&str>) -> Message {
        let reason = if reason.is_empty() {
            Text::from_static(reason_phrase(code))
        } else {
            Text::from(reason)
        };
        // Room for what callers add (Server, a challenge...) without growing.
        let mut headers = Headers::with_capacity(12);
        let tag = self.reply_to_tag(code, to_tag);
        self.for_each_reply_line(|h, is_to| match tag.filter(|_| is_to) {
            Some(tag) => {
                let mut v = String::with_capacity(h.value.len() + 5 + tag.len());
                v.push_str(&h.value);
                v.push_str(";tag=");
                v.push_str(tag);
                headers.push_header(Header {
                    name: h.name.clone(),
                    value: Text::from(v),
                });
            }
            None => headers.push_header(h.clone()),
        });
        headers.push("Content-Length", "0");
        Message {
            start: StartLine::Response { code, reason },
            headers,
            body: Bytes::new(),
        }
    }

    /// [`Message::reply`] followed by `extra` header lines, written straight to wire
    /// form (as [`Message::write_to`] would write that reply) without building it: the
    /// bytes of a reply the host sends once and forgets (a stateless local reply).
    /// Lines of `extra` whose name is not a token are left out, as `write_to` does;
    /// CR, LF and NUL in values become SP.
    ///
    /// ```
    /// use weir_message::{Limits, Message};
    /// let req = Message::parse(
    ///     b"OPTIONS sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
    ///       From: <sip:a@example.com>;tag=1\r\nTo: <sip:example.com>\r\nCall-ID: c1\r\n\
    ///       CSeq: 7 OPTIONS\r\nContent-Length: 0\r\n\r\n",
    ///     &Limits::default(),
    /// ).unwrap();
    /// let mut out = Vec::new();
    /// req.write_reply(200, "", Some("srv1"), [("Server", "weir")], &mut out);
    /// let mut resp = req.reply(200, "", Some("srv1"));
    /// resp.headers.push("Server", "weir");
    /// assert_eq!(out, resp.to_bytes());
    /// ```
    pub fn write_reply<'a>(
        &self,
        code: u16,
        reason: &str,
        to_tag: Option<&str>,
        extra: impl IntoIterator<Item = (&'a str, &'a str)>,
        out: &mut Vec<u8>,
    ) {
        let reason = if reason.is_empty() {
            reason_phrase(code)
        } else {
            reason
        };
        // Most replies fit; a larger one grows once.
        out.reserve(512);
        out.extend_from_slice(b"SIP/2.0 ");
        push_usize(out, usize::from(code));
        out.push(b' ');
        push_clean(out, reason);
        out.extend_from_slice(b"\r\n");
        let tag = self.reply_to_tag(code, to_tag);
        self.for_each_reply_line(|h, is_to| {
            push_line(out, &h.name, &h.value, tag.filter(|_| is_to));
        });
        out.extend_from_slice(b"Content-Length: 0\r\n");
        for (name, value) in extra {
            push_line(out, name, value, None);
        }
        out.extend_from_slice(b"\r\n");
    }

    /// The tag a reply adds to the To: `to_tag` for a final or provisional reply above
    /// 100 whose request's To has none.
    fn reply_to_tag<'a>(&self, code: u16, to_tag: Option<&'a str>) -> Option<&'a str> {
        to_tag.filter(|t| code > 100 && !t.is_empty() && self.to_tag_ref().is_none())
    }

    /// The lines a reply copies (RFC 3261 §8.2.6.2), in reply order: every Via line in
    /// order, then the first From, To, Call-ID and CSeq; `f` is told which is the To.
    fn for_each_reply_line(&self, mut f: impl FnMut(&Header, bool)) {
        let mut found = Found::default();
        for (i, h) in self.headers.iter().enumerate() {
            match classify(&h.name) {
                Known::Line(First::Via) => f(h, false),
                k @ Known::Line(First::From | First::To | First::CallId | First::CSeq) => {
                    found.note(k, i)
                }
                _ => {}
            }
        }
        for i in [found.from, found.to, found.call_id, found.cseq] {
            if let Some(h) = i.and_then(|i| self.headers.get_at(i)) {
                f(h, i == found.to);
            }
        }
    }

    /// Sanity checks a proxy needs on a request (RFC 3261 §8.2, §16.3): Via (top via-parm
    /// parses), From and To (name-addr / addr-spec structure and parameters parse; the URI
    /// is checked as `scheme ":" 1*uric`), Call-ID (non-empty, visible ASCII), CSeq
    /// (parses, method equals the request method), Max-Forwards (0-255 if present).
    pub fn validate_request(&self) -> Result<(), Malformed> {
        self.check_request(&Found::of(&self.headers)).map(|_| ())
    }

    /// Sanity checks on a response: Via (top via-parm parses), CSeq (parses), Call-ID,
    /// From and To present.
    pub fn validate_response(&self) -> Result<(), Malformed> {
        self.check_response(&Found::of(&self.headers)).map(|_| ())
    }

    fn value_at(&self, i: Option<usize>, header: &'static str) -> Result<&str, Malformed> {
        i.and_then(|i| self.headers.get_at(i))
            .map(|h| h.value.as_str())
            .ok_or(Malformed::Missing { header })
    }

    /// The checks of [`Message::validate_request`], with what they parsed.
    fn check_request(&self, f: &Found) -> Result<Checked, Malformed> {
        let StartLine::Request { method, .. } = &self.start else {
            return Err(Malformed::WrongKind {
                expected: "request",
            });
        };
        let top_via = self.check_via(f)?;
        let from = self.value_at(f.from, "From")?;
        let from_tag = nameaddr::validate_tag(from).map_err(|source| Malformed::Invalid {
            header: "From",
            source,
        })?;
        let to = self.value_at(f.to, "To")?;
        let to_tag = nameaddr::validate_tag(to).map_err(|source| Malformed::Invalid {
            header: "To",
            source,
        })?;
        self.check_call_id(f)?;
        let (_, cm) = self.check_cseq(f)?;
        if cm != method.as_str() {
            return Err(Malformed::CSeqMismatch {
                method: method.clone(),
                cseq: Method::parse(cm).unwrap_or_else(|_| Method::Other(cm.to_string())),
            });
        }
        if f.max_forwards.is_some() {
            let v = self.value_at(f.max_forwards, "Max-Forwards")?;
            parse_max_forwards(v).map_err(|source| Malformed::Invalid {
                header: "Max-Forwards",
                source,
            })?;
        }
        Ok(Checked {
            from_tag: tag_span(from, from_tag),
            to_tag: tag_span(to, to_tag),
            top_via,
        })
    }

    /// The checks of [`Message::validate_response`], with what they parsed.
    fn check_response(&self, f: &Found) -> Result<Checked, Malformed> {
        if self.is_request() {
            return Err(Malformed::WrongKind {
                expected: "response",
            });
        }
        let top_via = self.check_via(f)?;
        self.check_cseq(f)?;
        self.check_call_id(f)?;
        self.value_at(f.from, "From")?;
        self.value_at(f.to, "To")?;
        Ok(Checked {
            from_tag: Span::UNKNOWN,
            to_tag: Span::UNKNOWN,
            top_via,
        })
    }

    /// The top via-parm must parse; it is kept (as spans) for [`Message::top_via_ref`].
    fn check_via(&self, f: &Found) -> Result<Option<ViaSpans>, Malformed> {
        let v = self.value_at(f.via, "Via")?;
        let top = ViaRef::parse(v).map_err(|source| Malformed::Invalid {
            header: "Via",
            source,
        })?;
        Ok(ViaSpans::of(v, &top))
    }

    fn check_call_id(&self, f: &Found) -> Result<(), Malformed> {
        let v = self.value_at(f.call_id, "Call-ID")?;
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(Malformed::Invalid {
                header: "Call-ID",
                source: HeaderError::invalid("Call-ID", "empty or not visible ASCII"),
            });
        }
        Ok(())
    }

    fn check_cseq(&self, f: &Found) -> Result<(u32, &str), Malformed> {
        let v = self.value_at(f.cseq, "CSeq")?;
        cseq_parts(v).map_err(|source| Malformed::Invalid {
            header: "CSeq",
            source,
        })
    }
}

fn parse_max_forwards(v: &str) -> Result<u32, HeaderError> {
    parse_digits_u64(trim_ws(v).as_bytes())
        .filter(|n| *n <= 255)
        .and_then(|n| u32::try_from(n).ok())
        .ok_or(HeaderError::invalid("Max-Forwards", "not a number 0-255"))
}

#[cfg(test)]
mod tests {
    use super::*;

    const L: Limits = Limits {
        max_message_size: 65536,
        max_headers: 256,
    };

    /// A minimal valid OPTIONS with `extra` header lines (using `\n`, converted to CRLF)
    /// and `body` after `Content-Length`.
    fn options(extra: &str, cl: &str, body: &str) -> Vec<u8> {
        let text = format!(
            "OPTIONS sip:user@example.com SIP/2.0\n\
             Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\n\
             Max-Forwards: 70\n\
             From: <sip:a@example.com>;tag=f1\n\
             To: <sip:user@example.com>\n\
             Call-ID: call-1@192.0.2.1\n\
             CSeq: 1 OPTIONS\n\
             {extra}{cl}\n"
        );
        let mut v = text.replace('\n', "\r\n").into_bytes();
        v.extend_from_slice(body.as_bytes());
        v
    }

    fn parse(b: &[u8]) -> Result<Message, ParseError> {
        Message::parse(b, &L)
    }

    /// The remembered lines and what was parsed from them must read as a fresh scan and
    /// parse after any sequence of the edits that keep them (insert, remove_at, push,
    /// set_value_at).
    #[test]
    fn remembered_lines_survive_edits_exactly() {
        let names = [
            "Via",
            "v",
            "From",
            "To",
            "t",
            "Call-ID",
            "CSeq",
            "Max-Forwards",
            "Route",
            "X-Y",
        ];
        let values = [
            "SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKn;rport",
            "<sip:x@example.com>;tag=T9",
            "<sip:y@example.com>",
            "7",
        ];
        let mut seed: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = |n: usize| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed % n as u64) as usize
        };
        for round in 0..300 {
            let text = String::from_utf8(options("", "", "")).unwrap().replace(
                "To: <sip:user@example.com>",
                "To: <sip:user@example.com>;tag=to1",
            );
            let mut m = parse(text.as_bytes()).unwrap();
            for step in 0..12 {
                let len = m.headers.len();
                match next(4) {
                    0 => m.headers.insert(
                        next(len + 1),
                        names[next(names.len())],
                        values[next(values.len())],
                    ),
                    1 if len > 0 => {
                        m.headers.remove_at(next(len));
                    }
                    2 => m
                        .headers
                        .push(names[next(names.len())], values[next(values.len())]),
                    _ if len > 0 => {
                        m.headers
                            .set_value_at(next(len), values[next(values.len())]);
                    }
                    _ => {}
                }
                let ctx = format!("round {round} step {step}: {:?}", m.headers);
                for which in First::ALL {
                    assert_eq!(m.headers.first(which), m.headers.get(which.name()), "{ctx}");
                }
                if let Some(tag) = m.headers.remembered_from_tag() {
                    assert_eq!(
                        tag,
                        m.headers.get("From").and_then(nameaddr::tag_of),
                        "{ctx}"
                    );
                }
                if let Some(tag) = m.headers.remembered_to_tag() {
                    assert_eq!(tag, m.headers.get("To").and_then(nameaddr::tag_of), "{ctx}");
                }
                if let Some(via) = m.headers.remembered_top_via() {
                    let fresh = ViaRef::parse(m.headers.get("Via").unwrap()).unwrap();
                    assert_eq!(via, fresh, "{ctx}");
                }
            }
        }
        // The edits the proxy makes keep them: a Via on top is remembered parsed.
        let mut m = parse(&options("", "", "")).unwrap();
        m.headers
            .insert(0, "Via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKours");
        let pos = m.headers.position("Max-Forwards").unwrap();
        assert!(m.headers.set_value_at(pos, "69"));
        assert_eq!(
            m.headers.remembered_top_via().unwrap().branch(),
            Some("z9hG4bKours")
        );
        assert_eq!(m.headers.remembered_from_tag(), Some(Some("f1")));
        assert_eq!(m.max_forwards().unwrap(), Some(69));
        m.headers.remove_at(0);
        assert_eq!(m.top_via_ref().unwrap().branch(), Some("z9hG4bK1"));
        assert!(!m.headers.set_value_at(99, "x"));
    }

    #[test]
    fn serialised_values_never_carry_line_breaks_or_nul() {
        let mut m = parse(&options("", "", "")).unwrap();
        m.headers.push("X-A", "0123456789abcdef\r\nInjected: 1");
        m.headers.push("X-B", "tab\tand\0nul");
        let text = String::from_utf8(m.to_bytes()).unwrap();
        assert!(
            text.contains("X-A: 0123456789abcdef  Injected: 1\r\n"),
            "{text}"
        );
        assert!(text.contains("X-B: tab\tand nul\r\n"), "{text}");
    }

    #[test]
    fn top_via_is_remembered_from_the_check_and_reads_as_parsed() {
        for via in [
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1",
            "SIP/2.0/UDP 192.0.2.1",
            "SIP/2.0/tcp [2001:db8::1]:5070 ; rport ; received=192.0.2.9;BRANCH=z9hG4bKx;x",
            "SIP/2.0/UDP a.example;rport=5062;branch=z9hG4bK2, SIP/2.0/UDP b.example;branch=z9hG4bK3",
            "SIP/2.0/UDP h;maddr=x;received",
        ] {
            let text = String::from_utf8(options("", "", ""))
                .unwrap()
                .replace("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1", via);
            let m = parse(text.as_bytes()).unwrap();
            let remembered = m.headers.remembered_top_via();
            assert!(remembered.is_some(), "{via}");
            let fresh = ViaRef::parse(m.headers.get("Via").unwrap()).unwrap();
            assert_eq!(remembered, Some(fresh), "{via}");
            assert_eq!(m.top_via_ref().unwrap(), fresh, "{via}");
            assert_eq!(
                m.top_via_ref().unwrap().param("x"),
                fresh.param("x"),
                "{via}"
            );
        }
        // An edit forgets it; the accessor parses the new value.
        let mut m = parse(&options("", "", "")).unwrap();
        m.headers
            .set("Via", "SIP/2.0/UDP 192.0.2.7;branch=z9hG4bK7");
        assert_eq!(m.headers.remembered_top_via(), None);
        assert_eq!(m.top_via_ref().unwrap().host, "192.0.2.7");
        // Replies keep theirs too.
        let r = parse(&options("", "", ""))
            .unwrap()
            .reply(200, "OK", Some("t"));
        let r = parse(&r.to_bytes()).unwrap();
        assert_eq!(
            r.headers.remembered_top_via().unwrap().branch(),
            Some("z9hG4bK1")
        );
    }

    #[test]
    fn from_tag_is_remembered_from_the_check_and_forgotten_at_an_edit() {
        let m = parse(&options("", "", "")).unwrap();
        assert_eq!(m.headers.remembered_from_tag(), Some(Some("f1")));
        assert_eq!(m.from_tag_ref(), Some("f1"));
        // A tag further in, after other params and a quoted display name.
        let text = String::from_utf8(options("", "", "")).unwrap().replace(
            "From: <sip:a@example.com>;tag=f1",
            "f: \"A;tag=no\" <sip:a@example.com;tag=uri>;x=1;TAG=zz9",
        );
        let mut m = parse(text.as_bytes()).unwrap();
        assert_eq!(m.from_tag_ref(), Some("zz9"));
        assert_eq!(m.from_tag(), Some("zz9".to_string()));
        m.headers.set("From", "<sip:b@example.com>;tag=new");
        assert_eq!(m.headers.remembered_from_tag(), None);
        assert_eq!(m.from_tag_ref(), Some("new"));
        // No tag: remembered as none.
        let text = String::from_utf8(options("", "", ""))
            .unwrap()
            .replace(";tag=f1", "");
        let m = parse(text.as_bytes()).unwrap();
        assert_eq!(m.headers.remembered_from_tag(), Some(None));
        assert_eq!(m.from_tag_ref(), None);
        // A reply is not checked that way: its tag is parsed when asked for.
        let r = m.reply(200, "OK", Some("t"));
        assert_eq!(r.from_tag_ref(), None);
    }

    #[test]
    fn parses_request_and_accessors() {
        let m = parse(&options("", "Content-Length: 5\n", "hello")).unwrap();
        assert!(m.is_request());
        assert_eq!(m.method(), Some(&Method::Options));
        assert_eq!(m.request_uri(), Some("sip:user@example.com"));
        assert_eq!(m.status(), None);
        assert_eq!(m.call_id(), Some("call-1@192.0.2.1"));
        assert_eq!(
            m.cseq().unwrap(),
            CSeq {
                seq: 1,
                method: Method::Options
            }
        );
        assert_eq!(m.max_forwards().unwrap(), Some(70));
        assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bK1"));
        assert_eq!(m.from_tag().as_deref(), Some("f1"));
        assert_eq!(m.to_tag(), None);
        assert_eq!(&m.body[..], b"hello");
        assert_eq!(m.headers.len(), 7);
    }

    #[test]
    fn parses_response() {
        let raw = b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
                    From: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>;tag=2\r\n\
                    Call-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n";
        let m = parse(raw).unwrap();
        assert_eq!(m.status(), Some(180));
        assert_eq!(m.method(), None);
        assert_eq!(m.request_uri(), None);
        assert_eq!(
            m.start,
            StartLine::Response {
                code: 180,
                reason: "Ringing".into()
            }
        );
        let mut m2 = m.clone();
        m2.set_request_uri("sip:x@example.com");
        assert_eq!(m2, m);
        assert!(m.validate_response().is_ok());
        assert!(matches!(
            m.validate_request(),
            Err(Malformed::WrongKind { .. })
        ));
    }

    #[test]
    fn start_line_rules() {
        // Lowercase version, extra SP, trailing SP: accepted.
        let raw = options("", "Content-Length: 0\n", "");
        let s = String::from_utf8(raw).unwrap();
        for line in [
            "OPTIONS sip:user@example.com sip/2.0",
            "OPTIONS  sip:user@example.com \tSIP/2.0",
            "OPTIONS sip:user@example.com SIP/2.0   ",
        ] {
            let t = s.replacen("OPTIONS sip:user@example.com SIP/2.0", line, 1);
            let m = parse(t.as_bytes()).unwrap_or_else(|e| panic!("{line}: {e}"));
            assert_eq!(m.request_uri(), Some("sip:user@example.com"));
        }
        for (line, reason, kind, partial) in [
            (
                "OPTIONS sip:user@example.com SIP/3.0",
                "Unsupported SIP Version",
                ParseErrorKind::VersionNotSupported,
                true,
            ),
            (
                "OPTIONS <sip:user@example.com> SIP/2.0",
                "Malformed Request-URI",
                ParseErrorKind::RequestUri,
                true,
            ),
            (
                "OPTIONS sip:user@example.com; lr SIP/2.0",
                "Malformed Request-URI",
                ParseErrorKind::RequestUri,
                true,
            ),
            (
                "OPTIONS sip:user@example.com",
                "Malformed Request-Line",
                ParseErrorKind::StartLine,
                false,
            ),
            (
                "OPTIONS sip:user@example.com HTTP/1.1",
                "Malformed Request-Line",
                ParseErrorKind::StartLine,
                false,
            ),
            (
                "OPT(ONS sip:user@example.com SIP/2.0",
                "Malformed Request-Line",
                ParseErrorKind::StartLine,
                false,
            ),
        ] {
            let t = s.replacen("OPTIONS sip:user@example.com SIP/2.0", line, 1);
            let e = parse(t.as_bytes()).unwrap_err();
            assert_eq!(e.reason(), reason, "{line}");
            assert_eq!(e.kind(), kind, "{line}");
            assert_eq!(e.partial().is_some(), partial, "{line}");
        }
        for status in [
            "SIP/2.0 20 OK",
            "SIP/2.0 2000 OK",
            "SIP/2.0 700 Nope",
            "SIP/2.0 099 Low",
            "SIP/2.0 -20 OK",
            "SIP/2.0",
        ] {
            let t = format!("{status}\r\nVia: SIP/2.0/UDP 192.0.2.1\r\n\r\n");
            let e = parse(t.as_bytes()).unwrap_err();
            assert_eq!(e.reason(), "Malformed Status-Line", "{status}");
            assert!(e.partial().is_none());
        }
    }

    #[test]
    fn the_first_lines_the_parser_found_read_as_a_scan_would() {
        // Compact forms, odd case, a second Via and To, no Max-Forwards.
        let raw = b"BYE sip:bob@example.com SIP/2.0\r\n\
            v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa\r\n\
            VIA: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bKb\r\n\
            f: <sip:a@example.com>;tag=x\r\n\
            t: <sip:bob@example.com>;tag=y\r\n\
            To: <sip:other@example.com>;tag=z\r\n\
            i: id@192.0.2.1\r\n\
            cSeQ: 2 BYE\r\n\
            Content-Length: 0\r\n\r\n";
        let mut m = parse(raw).unwrap();
        for which in First::ALL {
            assert_eq!(
                m.headers.first(which),
                m.headers.get(which.name()),
                "{which:?}"
            );
        }
        assert_eq!(m.to_tag_ref(), Some("y"));
        assert_eq!(m.max_forwards().unwrap(), None);
        // An edit forgets the remembered lines: a Via pushed on top is the top one.
        m.headers
            .insert(0, "Via", "SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKtop");
        assert_eq!(m.top_via_ref().unwrap().branch(), Some("z9hG4bKtop"));
        m.headers.push("Max-Forwards", "7");
        assert_eq!(m.max_forwards().unwrap(), Some(7));
        m.headers.remove("to");
        assert_eq!(m.to_tag_ref(), None);
        // Lines beyond what is remembered are found by the scan.
        let mut many = String::from("OPTIONS sip:bob@example.com SIP/2.0\r\n");
        for n in 0..300 {
            many.push_str(&format!("X-Pad-{n}: {n}\r\n"));
        }
        many.push_str(
            "Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKlate\r\n\
             From: <sip:a@example.com>;tag=late\r\nTo: <sip:b@example.com>\r\n\
             Call-ID: late@192.0.2.1\r\nCSeq: 1 OPTIONS\r\n\r\n",
        );
        let limits = Limits {
            max_headers: 400,
            ..L
        };
        let late = Message::parse(many.as_bytes(), &limits).unwrap();
        assert_eq!(late.call_id(), Some("late@192.0.2.1"));
        assert_eq!(late.from_tag_ref(), Some("late"));
        assert_eq!(late.top_via_ref().unwrap().branch(), Some("z9hG4bKlate"));
        // Equality is about the lines, not what the parser remembered.
        let parsed = parse(raw).unwrap();
        let by_hand: Headers = parsed.headers.iter().cloned().collect();
        assert_eq!(parsed.headers, by_hand);
    }

    #[test]
    fn folding_case_and_compact_forms() {
        let raw = b"INVITE sip:bob@example.com SIP/2.0\r\n\
            v: SIP/2.0/UDP 192.0.2.1\r\n ;branch=z9hG4bKf\r\n\
            MAX-FORWARDS:\t 10 \r\n\
            f: <sip:a@example.com>\r\n\t;tag=x\r\n\
            T: <sip:bob@example.com>\r\n\
            I: id@192.0.2.1\r\n\
            cseq: 2\r\n    INVITE\r\n\
            subject :   \r\n\
            X-Unknown-Header :  keep  this  spacing \r\n\
            L: 0\r\n\r\n";
        let m = parse(raw).unwrap();
        assert_eq!(
            m.headers.get("via"),
            Some("SIP/2.0/UDP 192.0.2.1 ;branch=z9hG4bKf")
        );
        assert_eq!(m.top_via().unwrap().branch(), Some("z9hG4bKf"));
        assert_eq!(m.max_forwards().unwrap(), Some(10));
        assert_eq!(m.from_tag().as_deref(), Some("x"));
        assert_eq!(m.call_id(), Some("id@192.0.2.1"));
        assert_eq!(m.cseq().unwrap().seq, 2);
        assert_eq!(m.headers.get("Subject"), Some(""));
        assert_eq!(
            m.headers.get("x-unknown-header"),
            Some("keep  this  spacing")
        );
        // Names are kept as written.
        let names: Vec<&str> = m.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "v",
                "MAX-FORWARDS",
                "f",
                "T",
                "I",
                "cseq",
                "subject",
                "X-Unknown-Header",
                "L"
            ]
        );
    }

    #[test]
    fn bare_lf_and_leading_crlf() {
        let raw = b"\r\n\r\nOPTIONS sip:user@example.com SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\nFrom: <sip:a@example.com>;tag=1\nTo: <sip:user@example.com>\nCall-ID: c\nCSeq: 1 OPTIONS\nContent-Length: 2\n\nhi";
        let m = parse(raw).unwrap();
        assert_eq!(&m.body[..], b"hi");
    }

    #[test]
    fn content_length_rules() {
        // Smaller than the rest of the datagram: truncated to Content-Length.
        let m = parse(&options("", "Content-Length: 3\n", "abcdef")).unwrap();
        assert_eq!(&m.body[..], b"abc");
        // Absent: rest of the datagram.
        let m = parse(&options("", "", "abcdef")).unwrap();
        assert_eq!(&m.body[..], b"abcdef");
        // Compact form, leading zeros, same value twice.
        let m = parse(&options("l: 0004\n", "Content-Length: 4\n", "abcd")).unwrap();
        assert_eq!(&m.body[..], b"abcd");
        for cl in [
            "Content-Length: 7\n",
            "Content-Length: -1\n",
            "Content-Length: 1e3\n",
            "Content-Length: 0x10\n",
            "Content-Length:\n",
            "Content-Length: 4, 4\n",
            "Content-Length: 18446744073709551616\n",
            "Content-Length: 99999999999999999999999999999999\n",
            "l: 4\nContent-Length: 3\n",
        ] {
            let e = parse(&options("", cl, "abcd")).unwrap_err();
            assert_eq!(e.reason(), "Bad Content-Length", "{cl:?}");
            assert_eq!(e.kind(), ParseErrorKind::ContentLength);
            let p = e.partial().expect("answerable");
            assert!(p.body.is_empty());
        }
    }

    #[test]
    fn header_line_errors() {
        for (extra, reason) in [
            ("No colon here\n", "Malformed Header"),
            ("Bad Name: x\n", "Malformed Header"),
            (": no name\n", "Malformed Header"),
            ("X-Ctl: a\rb\n", "Malformed Header"),
            ("X-Nul: a\0b\n", "Malformed Header"),
        ] {
            let e = parse(&options(extra, "Content-Length: 0\n", "")).unwrap_err();
            assert_eq!(e.reason(), reason, "{extra:?}");
            assert_eq!(e.kind(), ParseErrorKind::Header);
            assert!(e.partial().is_some(), "{extra:?}");
        }
        let mut raw = options("X-Bin: caf\n", "Content-Length: 0\n", "");
        let pos = raw.windows(3).position(|w| w == b"caf").unwrap() + 3;
        raw.insert(pos, 0xe9);
        let e = parse(&raw).unwrap_err();
        assert_eq!(e.reason(), "Malformed Header");
        // Valid UTF-8 in values is fine.
        let m = parse(&options("Subject: café ☕\n", "Content-Length: 0\n", "")).unwrap();
        assert_eq!(m.headers.get("subject"), Some("café ☕"));
    }

    #[test]
    fn truncated_empty_and_limits() {
        let full = options("", "Content-Length: 0\n", "");
        let e = parse(&full[..full.len() - 2]).unwrap_err();
        assert_eq!(e.kind(), ParseErrorKind::Truncated);
        assert!(e.partial().is_some());
        let e = parse(&full[..20]).unwrap_err();
        assert_eq!(e.kind(), ParseErrorKind::Truncated);
        assert!(e.partial().is_none());
        for empty in [&b""[..], b"\r\n", b"\r\n\r\n\n\n"] {
            assert_eq!(parse(empty).unwrap_err().kind(), ParseErrorKind::Empty);
        }
        // Size limit, configurable.
        let small = Limits {
            max_message_size: 100,
            ..Limits::default()
        };
        let e = Message::parse(&full, &small).unwrap_err();
        assert_eq!(e.kind(), ParseErrorKind::TooLarge);
        assert_eq!(e.reason(), "Message Too Large");
        assert_eq!(e.status_code(), 513);
        assert!(e.partial().is_none(), "headers do not fit in the limit");
        let body = "x".repeat(70_000);
        let big = options("", &format!("Content-Length: {}\n", body.len()), &body);
        let e = parse(&big).unwrap_err();
        assert_eq!(e.kind(), ParseErrorKind::TooLarge);
        assert!(e.partial().is_some(), "headers fit: answer 513");
        // Header count limit.
        let few = Limits {
            max_headers: 5,
            ..Limits::default()
        };
        let e = Message::parse(&full, &few).unwrap_err();
        assert_eq!(e.kind(), ParseErrorKind::TooManyHeaders);
        assert_eq!(e.reason(), "Too Many Headers");
        assert_eq!(Limits::default(), L);
    }

    #[test]
    fn mandatory_headers_and_partial() {
        let base = String::from_utf8(options("", "Content-Length: 0\n", "")).unwrap();
        for (needle, replacement, reason, partial) in [
            (
                "Call-ID: call-1@192.0.2.1\r\n",
                "",
                "Missing Call-ID",
                false,
            ),
            ("CSeq: 1 OPTIONS\r\n", "", "Missing CSeq", false),
            ("To: <sip:user@example.com>\r\n", "", "Missing To", false),
            (
                "From: <sip:a@example.com>;tag=f1\r\n",
                "",
                "Missing From",
                false,
            ),
            (
                "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1\r\n",
                "",
                "Missing Via",
                false,
            ),
            (
                "CSeq: 1 OPTIONS",
                "CSeq: 1 INVITE",
                "CSeq Method Mismatch",
                true,
            ),
            (
                "CSeq: 1 OPTIONS",
                "CSeq: 2147483648 OPTIONS",
                "Malformed CSeq",
                true,
            ),
            ("CSeq: 1 OPTIONS", "CSeq: OPTIONS", "Malformed CSeq", true),
            (
                "Max-Forwards: 70",
                "Max-Forwards: 256",
                "Malformed Max-Forwards",
                true,
            ),
            (
                "Max-Forwards: 70",
                "Max-Forwards: -1",
                "Malformed Max-Forwards",
                true,
            ),
            (
                "Call-ID: call-1@192.0.2.1",
                "Call-ID: a b",
                "Malformed Call-ID",
                true,
            ),
            (
                "To: <sip:user@example.com>",
                "To: <sip:user@example.com",
                "Malformed To",
                true,
            ),
            (
                "From: <sip:a@example.com>;tag=f1",
                "From: \"x <sip:a@example.com>",
                "Malformed From",
                true,
            ),
            (
                "SIP/2.0/UDP 192.0.2.1:5060",
                "SIP/2.0/UDP 192.0.2.1:0x50",
                "Malformed Via",
                false,
            ),
        ] {
            let t = base.replacen(needle, replacement, 1);
            assert_ne!(t, base, "{needle}");
            let e = parse(t.as_bytes()).unwrap_err();
            assert_eq!(e.reason(), reason, "{needle} -> {replacement}");
            assert_eq!(e.partial().is_some(), partial, "{reason}");
            // validate_request agrees on the partial message.
            if let Some(p) = e.partial() {
                assert_eq!(p.validate_request().unwrap_err().reason(), reason);
            }
        }
        // Never a partial for ACK.
        let ack = base
            .replace("OPTIONS sip", "ACK sip")
            .replace("1 OPTIONS", "1 ACK")
            .replace("Content-Length: 0", "Content-Length: -1");
        let e = parse(ack.as_bytes()).unwrap_err();
        assert_eq!(e.reason(), "Bad Content-Length");
        assert!(e.partial().is_none());
        // Max-Forwards is optional.
        let t = base.replacen("Max-Forwards: 70\r\n", "", 1);
        assert_eq!(parse(t.as_bytes()).unwrap().max_forwards().unwrap(), None);
    }

    #[test]
    fn wire_len_is_exact() {
        let mut m = parse(&options("X-A: 1\n", "l: 5\n", "hello")).unwrap();
        let check = |m: &Message| {
            let out = m.to_bytes();
            assert_eq!(out.len(), m.wire_len());
            let mut v = b"prefix".to_vec();
            m.write_to(&mut v);
            assert_eq!(v.get(6..), Some(out.as_slice()));
        };
        check(&m);
        m.body = Bytes::from_static(b"a body of more than nine bytes");
        check(&m);
        m.headers.remove("content-length");
        m.headers.push("X-Evil", "a\r\nb\0");
        m.headers.push("Bad Name", "skipped");
        check(&m);
        m.headers.push("Content-Length", " 99 ");
        check(&m);
        for (code, reason) in [(100, "Trying"), (200, ""), (487, "Request Terminated")] {
            check(&Message::new_response(code, reason));
        }
    }

    #[test]
    fn write_to_round_trip_and_content_length() {
        let mut m = parse(&options("X-A: 1\n", "l: 5\n", "hello")).unwrap();
        let wire = m.to_bytes();
        assert!(wire.ends_with(b"l: 5\r\n\r\nhello"));
        assert_eq!(parse(&wire).unwrap(), m);
        // Body changed: Content-Length updated in place.
        m.body = Bytes::from_static(b"hi");
        let wire = String::from_utf8(m.to_bytes()).unwrap();
        assert!(wire.contains("\r\nl: 2\r\n\r\nhi"), "{wire}");
        // Absent: appended.
        m.headers.remove("content-length");
        let wire = String::from_utf8(m.to_bytes()).unwrap();
        assert!(
            wire.ends_with("X-A: 1\r\nContent-Length: 2\r\n\r\nhi"),
            "{wire}"
        );
        // Values with CR/LF cannot inject headers; invalid names are skipped.
        m.headers.push("X-Evil", "a\r\nVia: SIP/2.0/UDP 192.0.2.66");
        m.headers.push("Bad Name", "x");
        let again = parse(&m.to_bytes()).unwrap();
        assert_eq!(again.headers.get_all("via").count(), 1);
        assert_eq!(
            again.headers.get("x-evil"),
            Some("a  Via: SIP/2.0/UDP 192.0.2.66")
        );
        assert!(!again.headers.contains("Bad Name"));
        // Responses.
        let r = Message::new_response(200, "OK");
        assert_eq!(r.to_bytes(), b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n");
        let q = Message::new_request(Method::Other("FOO".into()), "sip:example.com");
        assert_eq!(
            q.to_bytes(),
            b"FOO sip:example.com SIP/2.0\r\nContent-Length: 0\r\n\r\n"
        );
    }

    #[test]
    fn reply_building() {
        let raw = b"INVITE sip:bob@example.com SIP/2.0\r\n\
            Via: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bKp\r\n\
            v: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa, SIP/2.0/UDP 192.0.2.0;branch=z9hG4bK0\r\n\
            Max-Forwards: 69\r\nf: Alice <sip:alice@example.com>;tag=a1\r\n\
            To: sip:bob@example.com\r\nCall-ID: r1@192.0.2.1\r\nCSeq: 4 INVITE\r\n\
            Contact: <sip:alice@192.0.2.1>\r\nContent-Type: application/sdp\r\n\
            Content-Length: 3\r\n\r\nv=0";
        let m = parse(raw).unwrap();
        let r = m.reply(486, "Busy Here", Some("srv"));
        assert_eq!(r.status(), Some(486));
        let names: Vec<&str> = r.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            ["Via", "v", "f", "To", "Call-ID", "CSeq", "Content-Length"]
        );
        assert_eq!(r.headers.get("to"), Some("sip:bob@example.com;tag=srv"));
        assert_eq!(r.to_tag().as_deref(), Some("srv"));
        assert_eq!(r.from_tag().as_deref(), Some("a1"));
        assert_eq!(r.headers.get("content-length"), Some("0"));
        assert!(r.body.is_empty());
        let wire = r.to_bytes();
        assert!(wire.starts_with(b"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP 192.0.2.2"));
        let back = parse(&wire).unwrap();
        assert_eq!(back.vias().unwrap().len(), 3);
        // 100 never gets a To tag; an existing tag is kept; empty reason -> standard.
        let r = m.reply(100, "", Some("srv"));
        assert_eq!(r.to_tag(), None);
        assert_eq!(
            r.start,
            StartLine::Response {
                code: 100,
                reason: "Trying".into()
            }
        );
        let r = m.reply(200, "OK", None);
        assert_eq!(r.to_tag(), None);
        // Only the first From, To, Call-ID and CSeq are copied, compact forms included;
        // Vias all, in order, wherever they are.
        let mut twice = m.clone();
        twice.headers.push("t", "<sip:carol@example.com>");
        twice.headers.push("i", "other@192.0.2.9");
        twice
            .headers
            .push("Via", "SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKlast");
        let r = twice.reply(480, "", Some("srv"));
        let names: Vec<&str> = r.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "Via",
                "v",
                "Via",
                "f",
                "To",
                "Call-ID",
                "CSeq",
                "Content-Length"
            ]
        );
        assert_eq!(r.headers.get("to"), Some("sip:bob@example.com;tag=srv"));
        assert_eq!(r.headers.get("call-id"), Some("r1@192.0.2.1"));
        let mut tagged = m.clone();
        tagged
            .headers
            .set("To", "<sip:bob@example.com>;tag=existing");
        assert_eq!(
            tagged.reply(404, "", Some("new")).to_tag().as_deref(),
            Some("existing")
        );
    }

    #[test]
    fn unknown_method_and_escapes() {
        let base = String::from_utf8(options("", "Content-Length: 0\n", "")).unwrap();
        let t = base
            .replace(
                "OPTIONS sip:user@example.com",
                "NEWMETHOD sip:us%20er;x=y@example.com",
            )
            .replace("1 OPTIONS", "1 NEWMETHOD");
        let m = parse(t.as_bytes()).unwrap();
        assert_eq!(m.method(), Some(&Method::Other("NEWMETHOD".into())));
        assert_eq!(m.cseq().unwrap().method, Method::Other("NEWMETHOD".into()));
        // Other URI schemes in the Request-URI are kept when absoluteURI-like.
        let t = base.replace("sip:user@example.com SIP", "urn:service:sos SIP");
        assert_eq!(
            parse(t.as_bytes()).unwrap().request_uri(),
            Some("urn:service:sos")
        );
    }

    #[test]
    fn parse_bytes_shares_storage() {
        let raw = Bytes::from(options("", "Content-Length: 4\n", "body+trailing"));
        let m = Message::parse_bytes(&raw, &L).unwrap();
        assert_eq!(&m.body[..], b"body");
        assert_eq!(m, Message::parse(&raw, &L).unwrap());
        // header values, names not written the usual way and the Request-URI are views
        // of `raw`, not copies (usual names are static text)
        let inside = |s: &str| {
            let (a, p) = (raw.as_ptr() as usize, s.as_ptr() as usize);
            p >= a && p + s.len() <= a + raw.len()
        };
        assert!(m.headers.iter().all(|h| inside(&h.value)
            && (inside(&h.name) || usual_spelling(&h.name) == Some(h.name.as_str()))));
        assert!(inside(m.request_uri().unwrap()));
        // a folded value is joined into a string of its own
        let folded = Bytes::from(options("Subject: a\n b\n", "Content-Length: 0\n", ""));
        let m = Message::parse_bytes(&folded, &L).unwrap();
        assert_eq!(m.headers.get("subject"), Some("a b"));
    }

    #[test]
    fn invalid_utf8_after_the_headers_keeps_them_shared() {
        // a binary body: the headers are still views of the buffer, the body intact
        let mut raw = options("", "Content-Length: 3\n", "");
        raw.extend_from_slice(&[0xff, 0xfe, 0x00]);
        let raw = Bytes::from(raw);
        let m = Message::parse_bytes(&raw, &L).unwrap();
        assert_eq!(&m.body[..], &[0xff, 0xfe, 0x00]);
        assert_eq!(m.headers.get("content-length"), Some("3"));
        // an invalid byte in a header line is still a Malformed Header
        let mut bad = options("X-Bad: \u{0}\n", "Content-Length: 0\n", "");
        if let Some(p) = bad.iter().position(|&b| b == 0) {
            bad[p] = 0xff;
        }
        let err = Message::parse_bytes(&Bytes::from(bad), &L).unwrap_err();
        assert_eq!(err.reason(), "Malformed Header");
    }

    #[test]
    fn usual_spellings_are_found_and_others_not() {
        for n in [
            "v",
            "f",
            "t",
            "i",
            "m",
            "l",
            "k",
            "c",
            "s",
            "e",
            "o",
            "u",
            "To",
            "Via",
            "From",
            "CSeq",
            "Path",
            "Date",
            "Allow",
            "Route",
            "Event",
            "Accept",
            "Server",
            "Call-ID",
            "Contact",
            "Expires",
            "Require",
            "Warning",
            "Call-Id",
            "Supported",
            "User-Agent",
            "Min-Expires",
            "Max-Forwards",
            "Content-Type",
            "Record-Route",
            "Authorization",
            "Proxy-Require",
            "Content-Length",
            "WWW-Authenticate",
            "Content-Encoding",
            "Proxy-Authenticate",
            "Subscription-State",
            "Proxy-Authorization",
            "Content-Disposition",
        ] {
            assert_eq!(usual_spelling(n), Some(n), "{n}");
        }
        for n in ["via", "VIA", "X-Via", "Contacts", "", "x", "content-length"] {
            assert_eq!(usual_spelling(n), None, "{n}");
        }
        // Parsed names read the same either way.
        let m = Message::parse(
            b"OPTIONS sip:a@b SIP/2.0\r\nvia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nFrom: <sip:a@b>;tag=1\r\nt: <sip:a@b>\r\nCall-ID: c\r\nCSeq: 1 OPTIONS\r\nX-Odd: 1\r\n\r\n",
            &Limits::default(),
        )
        .unwrap();
        let names: Vec<&str> = m.headers.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["via", "From", "t", "Call-ID", "CSeq", "X-Odd"]);
    }

    /// `write_reply` writes what `reply` + the extra lines + `write_to` would, for
    /// every shape of request a local reply answers.
    #[test]
    fn write_reply_is_reply_written() {
        let reqs: [&[u8]; 4] = [
            // To without tag, two Via lines, one of them with two via-parms.
            b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nMax-Forwards: 70\r\nVia: SIP/2.0/UDP 192.0.2.2;branch=z9hG4bK2, SIP/2.0/TCP h;branch=z9hG4bK3\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: c1\r\nCSeq: 7 REGISTER\r\nContact: <sip:a@192.0.2.1>\r\nContent-Length: 0\r\n\r\n",
            // Already tagged To (in dialog), compact names, a body.
            b"INFO sip:b@example.com SIP/2.0\r\nv: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nf: <sip:a@example.com>;tag=1\r\nt: <sip:b@example.com>;tag=2\r\ni: c2\r\nCSeq: 3 INFO\r\nl: 4\r\n\r\nabcd",
            // Two From lines (the first counts), To as addr-spec.
            b"OPTIONS sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nFrom: sip:a@example.com;tag=1\r\nFrom: sip:x@example.com;tag=9\r\nTo: sip:example.com\r\nCall-ID: c3\r\nCSeq: 1 OPTIONS\r\n\r\n",
            // Header order other than usual: CSeq and Call-ID before From and To.
            b"MESSAGE sip:b@example.com SIP/2.0\r\nCSeq: 1 MESSAGE\r\nCall-ID: c4\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nTo: <sip:b@example.com>\r\nFrom: <sip:a@example.com>;tag=1\r\nContent-Length: 0\r\n\r\n",
        ];
        let extra = [
            ("Server", "weir"),
            ("WWW-Authenticate", "Digest realm=\"r\", nonce=\"n\""),
            ("Bad Name", "left out"),
            ("X-Value", "cr\rlf\nnul\0"),
        ];
        for raw in reqs {
            let req = Message::parse(raw, &Limits::default()).unwrap();
            for (code, reason, tag) in [
                (100, "", Some("t1")),
                (200, "", Some("t1")),
                (401, "Unauthorized", Some("t1")),
                (404, "", None),
                (500, "Server Error", Some("")),
            ] {
                let mut expected = req.reply(code, reason, tag);
                for (n, v) in extra {
                    expected.headers.push(n, v);
                }
                let mut out = b"prefix".to_vec();
                req.write_reply(code, reason, tag, extra, &mut out);
                assert_eq!(
                    String::from_utf8_lossy(&out[6..]),
                    String::from_utf8_lossy(&expected.to_bytes()),
                    "{code} to {}",
                    String::from_utf8_lossy(raw)
                );
            }
        }
    }

    #[test]
    fn push_usize_digits() {
        for n in [0usize, 7, 10, 99, 100, 65535, usize::MAX] {
            let mut v = Vec::new();
            push_usize(&mut v, n);
            assert_eq!(String::from_utf8(v).unwrap(), n.to_string());
        }
    }
}
