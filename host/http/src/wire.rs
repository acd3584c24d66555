//! HTTP/1.1 on the wire: the request head we write and the response we read, generic
//! over the stream so that plain TCP, TLS and in-memory tests share one path.
//!
//! Every read is bounded: the head by [`MAX_HEAD_BYTES`] and [`MAX_HEADERS`], a chunk-size
//! line by [`MAX_LINE_BYTES`], the body by the caller's limit. Nothing here panics on
//! input; slicing is done only at positions found in the same buffer.

use std::io;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::url::Url;
use crate::{HttpError, HttpResponse};

/// Largest response head (status line, headers, and chunked trailers).
pub(crate) const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most header lines in a response head (and in a request).
pub(crate) const MAX_HEADERS: usize = 100;
/// Longest chunk-size line (size plus extensions).
const MAX_LINE_BYTES: usize = 1024;
/// Interim (1xx) responses skipped before the final one.
const MAX_INTERIM: usize = 8;
/// Longest method token.
const MAX_METHOD_LEN: usize = 32;

/// Headers the client writes itself (framing and hop-by-hop); a caller may not set them.
const MANAGED: &[&str] = &[
    "host",
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "upgrade",
    "te",
    "trailer",
];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Framing {
    Empty,
    Length(usize),
    Chunked,
    Close,
}

struct Head {
    status: u16,
    headers: Vec<(String, String)>,
}

/// Buffered reader over the response stream; `buf` holds read but unconsumed bytes.
struct Reader<S> {
    stream: S,
    buf: Vec<u8>,
}

// === request ===

/// The request head: request line, `Host`, `User-Agent`, `Connection: close`,
/// `Content-Length` when there is a body (or the method is one that carries one), then
/// the caller's headers.
pub(crate) fn encode_head(
    method: &str,
    url: &Url,
    headers: &[(String, String)],
    body_len: usize,
) -> Result<Vec<u8>, HttpError> {
    let bad = |why: String| HttpError::InvalidRequest(why);
    if method.is_empty() || method.len() > MAX_METHOD_LEN || !method.bytes().all(is_tchar) {
        return Err(bad(format!("bad method {:?}", shorten(method))));
    }
    if headers.len() > MAX_HEADERS {
        return Err(bad(format!("more than {MAX_HEADERS} headers")));
    }
    let mut user_agent = false;
    for (name, value) in headers {
        if name.is_empty() || !name.bytes().all(is_tchar) {
            return Err(bad(format!("bad header name {:?}", shorten(name))));
        }
        if MANAGED.iter().any(|m| name.eq_ignore_ascii_case(m)) {
            return Err(bad(format!("header {name} is set by the client")));
        }
        // Field values: visible characters, SP, HTAB and non-ASCII; no CR, LF, NUL or
        // other controls, which could end the header or the head.
        if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
            return Err(bad(format!("control character in header {name}")));
        }
        user_agent |= name.eq_ignore_ascii_case("user-agent");
    }
    let mut out = Vec::with_capacity(256);
    let mut line = |s: &str| {
        out.extend_from_slice(s.as_bytes());
        out.extend_from_slice(b"\r\n");
    };
    line(&format!("{method} {} HTTP/1.1", url.target));
    line(&format!("Host: {}", url.authority()));
    if !user_agent {
        line("User-Agent: weir");
    }
    line("Connection: close");
    let carries_body = matches!(method, "POST" | "PUT" | "PATCH");
    if body_len > 0 || carries_body {
        line(&format!("Content-Length: {body_len}"));
    }
    for (name, value) in headers {
        line(&format!("{name}: {}", value.trim_matches([' ', '\t'])));
    }
    line("");
    Ok(out)
}

/// Writes the request and reads the final response.
pub(crate) async fn exchange<S>(
    stream: S,
    head: &[u8],
    body: &[u8],
    is_head_request: bool,
    max_body: usize,
) -> Result<HttpResponse, HttpError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut stream = stream;
    let io_err = |e: io::Error| HttpError::Connect(format!("write: {e}"));
    stream.write_all(head).await.map_err(io_err)?;
    stream.write_all(body).await.map_err(io_err)?;
    stream.flush().await.map_err(io_err)?;
    read_response(stream, is_head_request, max_body).await
}

// === response ===

/// Reads interim responses (skipped) and the final response with its body.
pub(crate) async fn read_response<S>(
    stream: S,
    is_head_request: bool,
    max_body: usize,
) -> Result<HttpResponse, HttpError>
where
    S: AsyncRead + Unpin,
{
    let mut r = Reader {
        stream,
        buf: Vec::with_capacity(4096),
    };
    let mut interim = 0;
    let head = loop {
        let head = parse_head(&r.read_head().await?)?;
        match head.status {
            101 => {
                return Err(HttpError::Protocol(
                    "unexpected 101 Switching Protocols".into(),
                ))
            }
            100..=199 => {
                interim += 1;
                if interim > MAX_INTERIM {
                    return Err(HttpError::Protocol("too many interim responses".into()));
                }
            }
            _ => break head,
        }
    };
    let body = match framing(&head, is_head_request, max_body)? {
        Framing::Empty => Vec::new(),
        Framing::Length(n) => r.read_exact_body(n).await?,
        Framing::Chunked => r.read_chunked(max_body).await?,
        Framing::Close => r.read_to_close(max_body).await?,
    };
    Ok(HttpResponse {
        status: head.status,
        headers: head.headers,
        body,
    })
}

fn parse_head(raw: &[u8]) -> Result<Head, HttpError> {
    let proto = |why: &str| HttpError::Protocol(why.to_string());
    let mut lines = raw
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = lines.next().ok_or_else(|| proto("empty response"))?;
    let status = parse_status_line(status_line)
        .ok_or_else(|| HttpError::Protocol(format!("bad status line {:?}", lossy(status_line))))?;
    let mut headers = Vec::new();
    for line in lines {
        if line.is_empty() {
            break;
        }
        if line.contains(&b'\r') {
            return Err(proto("bare CR in header"));
        }
        if matches!(line.first(), Some(b' ' | b'\t')) {
            return Err(proto("obsolete line folding"));
        }
        let colon = line
            .iter()
            .position(|&b| b == b':')
            .ok_or_else(|| proto("header line without colon"))?;
        let (name, value) = line.split_at(colon);
        if name.is_empty() || !name.iter().copied().all(is_tchar) {
            return Err(HttpError::Protocol(format!(
                "bad header name {:?}",
                lossy(name)
            )));
        }
        let value = value.get(1..).unwrap_or_default();
        let value = trim_ows(value);
        if value.contains(&0) {
            return Err(proto("NUL in header value"));
        }
        if headers.len() >= MAX_HEADERS {
            return Err(HttpError::TooLarge);
        }
        headers.push((lossy(name), lossy(value)));
    }
    Ok(Head { status, headers })
}

/// `HTTP/1.0` or `HTTP/1.1`, SP, three digits 100..=599, then nothing or SP and a reason.
fn parse_status_line(line: &[u8]) -> Option<u16> {
    let rest = line
        .strip_prefix(b"HTTP/1.1 ")
        .or_else(|| line.strip_prefix(b"HTTP/1.0 "))?;
    let (code, reason) = rest.split_at_checked(3)?;
    if !code.iter().all(u8::is_ascii_digit) || !(reason.is_empty() || reason[0] == b' ') {
        return None;
    }
    let status = code
        .iter()
        .fold(0u16, |acc, d| acc * 10 + u16::from(d - b'0'));
    (100..=599).contains(&status).then_some(status)
}

/// RFC 9112 §6.3, for a response.
fn framing(head: &Head, is_head_request: bool, max_body: usize) -> Result<Framing, HttpError> {
    if is_head_request || matches!(head.status, 100..=199 | 204 | 304) {
        return Ok(Framing::Empty);
    }
    let values = |name: &'static str| list_values(&head.headers, name);
    // Transfer-Encoding wins over Content-Length; if chunked is not the final coding the
    // body runs to the close.
    if let Some(last) = values("transfer-encoding").filter(|v| !v.is_empty()).last() {
        return Ok(if last.eq_ignore_ascii_case("chunked") {
            Framing::Chunked
        } else {
            Framing::Close
        });
    }
    let mut length: Option<u64> = None;
    for v in values("content-length") {
        if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
            return Err(HttpError::Protocol(format!("bad Content-Length {v:?}")));
        }
        // All digits: the only way to fail is overflow, which is simply too large.
        let n: u64 = v.parse().map_err(|_| HttpError::TooLarge)?;
        if length.is_some_and(|l| l != n) {
            return Err(HttpError::Protocol(
                "conflicting Content-Length values".into(),
            ));
        }
        length = Some(n);
    }
    match length {
        None => Ok(Framing::Close),
        Some(n) => match usize::try_from(n) {
            Ok(n) if n <= max_body => Ok(Framing::Length(n)),
            _ => Err(HttpError::TooLarge),
        },
    }
}

// === Reader ===

impl<S: AsyncRead + Unpin> Reader<S> {
    /// Reads more bytes into `buf`; 0 at end of stream. A TLS peer that closes without
    /// close_notify is taken as end of stream: the framing checks below still catch a
    /// truncated Content-Length or chunked body.
    async fn fill(&mut self) -> Result<usize, HttpError> {
        // The callers' size checks bound `buf`; each read adds at most 8 KiB to it.
        self.buf.reserve(8192);
        match (&mut self.stream).take(8192).read_buf(&mut self.buf).await {
            Ok(n) => Ok(n),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
            Err(e) => Err(HttpError::Connect(format!("read: {e}"))),
        }
    }

    /// Takes the bytes up to and including the blank line that ends a head.
    async fn read_head(&mut self) -> Result<Vec<u8>, HttpError> {
        let mut scanned = 0;
        loop {
            if let Some(end) = head_end(&self.buf, scanned) {
                if end > MAX_HEAD_BYTES {
                    return Err(HttpError::TooLarge);
                }
                return Ok(self.buf.drain(..end).collect());
            }
            if self.buf.len() > MAX_HEAD_BYTES {
                return Err(HttpError::TooLarge);
            }
            scanned = self.buf.len().saturating_sub(3);
            if self.fill().await? == 0 {
                return Err(HttpError::Protocol(if self.buf.is_empty() {
                    "connection closed without a response".into()
                } else {
                    "connection closed inside the response head".into()
                }));
            }
        }
    }

    /// Takes one line (without its CRLF or LF), at most `limit` bytes.
    async fn read_line(&mut self, limit: usize) -> Result<Vec<u8>, HttpError> {
        let mut scanned = 0;
        loop {
            if let Some(i) = self
                .buf
                .get(scanned..)
                .and_then(|b| b.iter().position(|&c| c == b'\n'))
            {
                let end = scanned + i;
                let mut line: Vec<u8> = self.buf.drain(..=end).collect();
                line.pop();
                if line.last() == Some(&b'\r') {
                    line.pop();
                }
                return Ok(line);
            }
            if self.buf.len() > limit {
                return Err(HttpError::Protocol("line too long in chunked body".into()));
            }
            scanned = self.buf.len();
            if self.fill().await? == 0 {
                return Err(HttpError::Protocol(
                    "connection closed inside chunked body".into(),
                ));
            }
        }
    }

    async fn read_exact_body(&mut self, n: usize) -> Result<Vec<u8>, HttpError> {
        while self.buf.len() < n {
            if self.fill().await? == 0 {
                return Err(HttpError::Protocol(
                    "connection closed before the end of the body".into(),
                ));
            }
        }
        Ok(self.buf.drain(..n).collect())
    }

    async fn read_chunked(&mut self, max_body: usize) -> Result<Vec<u8>, HttpError> {
        let mut body = Vec::new();
        loop {
            let line = self.read_line(MAX_LINE_BYTES).await?;
            let size = parse_chunk_size(&line)?;
            if size == 0 {
                break;
            }
            if size > max_body.saturating_sub(body.len()) {
                return Err(HttpError::TooLarge);
            }
            let data = self.read_exact_body(size).await?;
            body.extend_from_slice(&data);
            if !self.read_line(MAX_LINE_BYTES).await?.is_empty() {
                return Err(HttpError::Protocol(
                    "chunk data not followed by CRLF".into(),
                ));
            }
        }
        // Trailer fields are read and dropped, bounded like a head.
        let mut trailers = 0;
        loop {
            let line = self.read_line(MAX_HEAD_BYTES).await?;
            if line.is_empty() {
                return Ok(body);
            }
            trailers += line.len() + 2;
            if trailers > MAX_HEAD_BYTES {
                return Err(HttpError::TooLarge);
            }
        }
    }

    async fn read_to_close(&mut self, max_body: usize) -> Result<Vec<u8>, HttpError> {
        loop {
            if self.buf.len() > max_body {
                return Err(HttpError::TooLarge);
            }
            if self.fill().await? == 0 {
                return Ok(std::mem::take(&mut self.buf));
            }
        }
    }
}

/// Index just past the blank line ending a head (`\n\n` or `\n\r\n`), searching from
/// `from` (which may be inside a previous, partial, match's reach).
fn head_end(buf: &[u8], from: usize) -> Option<usize> {
    let start = from.min(buf.len());
    let mut i = start;
    while let Some(off) = buf
        .get(i..)
        .and_then(|b| b.iter().position(|&c| c == b'\n'))
    {
        let nl = i + off;
        match (buf.get(nl + 1), buf.get(nl + 2)) {
            (Some(b'\n'), _) => return Some(nl + 2),
            (Some(b'\r'), Some(b'\n')) => return Some(nl + 3),
            _ => i = nl + 1,
        }
    }
    None
}

/// Hex size before any `;extension`, optional whitespace around it.
fn parse_chunk_size(line: &[u8]) -> Result<usize, HttpError> {
    let bad = || HttpError::Protocol(format!("bad chunk size line {:?}", lossy(line)));
    let size = line.split(|&b| b == b';').next().unwrap_or_default();
    let size = trim_ows(size);
    if size.is_empty() || size.len() > 15 || !size.iter().all(u8::is_ascii_hexdigit) {
        return Err(bad());
    }
    // At most 15 hex digits: fits in u64 (and is checked into usize).
    let n = std::str::from_utf8(size)
        .ok()
        .and_then(|s| u64::from_str_radix(s, 16).ok())
        .ok_or_else(bad)?;
    usize::try_from(n).map_err(|_| HttpError::TooLarge)
}

// === helpers ===

/// The elements of every `name` field's comma-separated list, trimmed.
fn list_values<'a>(
    headers: &'a [(String, String)],
    name: &'static str,
) -> impl Iterator<Item = &'a str> + 'a {
    headers
        .iter()
        .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
        .flat_map(|(_, v)| v.split(','))
        .map(|v| v.trim_matches([' ', '\t']))
}

/// RFC 9110 tchar.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn trim_ows(v: &[u8]) -> &[u8] {
    let start = v
        .iter()
        .position(|&b| b != b' ' && b != b'\t')
        .unwrap_or(v.len());
    let end = v
        .iter()
        .rposition(|&b| b != b' ' && b != b'\t')
        .map_or(start, |i| i + 1);
    v.get(start..end).unwrap_or_default()
}

fn lossy(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn shorten(s: &str) -> String {
    s.chars().take(40).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(raw: &[u8], max: usize) -> Result<HttpResponse, HttpError> {
        read_response(raw, false, max).await
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap()
    }

    #[tokio::test]
    async fn lengths_chunks_and_close() {
        let r = read(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabcEXTRA", 10)
            .await
            .unwrap();
        assert_eq!((r.status, r.body.as_slice()), (200, &b"abc"[..]));
        let r = read(
            b"HTTP/1.1 200 OK\nTransfer-Encoding: gzip, chunked\n\n3;x=y\nabc\n0\nT: 1\n\n",
            10,
        )
        .await
        .unwrap();
        assert_eq!(r.body, b"abc");
        let r = read(b"HTTP/1.0 200 OK\r\n\r\nto the end", 10)
            .await
            .unwrap();
        assert_eq!(r.body, b"to the end");
        // TE wins over Content-Length.
        let r = read(b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n", 10)
            .await
            .unwrap();
        assert_eq!(r.body, b"ab");
        let r = read(b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n", 10)
            .await
            .unwrap();
        assert!(r.body.is_empty());
        let r = read_response(
            &b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n"[..],
            true,
            10,
        )
        .await
        .unwrap();
        assert!(r.body.is_empty());
        let r = read(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
            10,
        )
        .await
        .unwrap();
        assert_eq!(r.status, 201);
        // Headers keep case and order; values trimmed.
        let r = read(
            b"HTTP/1.1 200 OK\r\nX-A:  1 \r\nx-b:\t\r\nContent-Length: 0\r\n\r\n",
            10,
        )
        .await
        .unwrap();
        assert_eq!(r.headers[0], ("X-A".to_string(), "1".to_string()));
        assert_eq!(r.header("X-B"), Some(""));
        // Equal repeated Content-Length values are one length.
        let r = read(b"HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\n\r\nab", 10)
            .await
            .unwrap();
        assert_eq!(r.body, b"ab");
    }

    #[tokio::test]
    async fn errors() {
        let protocol = [
            &b"HTTP/2 200 OK\r\n\r\n"[..],
            b"HTTP/1.1 20 OK\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/1.1 099 X\r\n\r\n",
            b"HTTP/1.1 600 X\r\n\r\n",
            b"HTTP/1.1 200OK\r\n\r\n",
            b"SIP/2.0 200 OK\r\n\r\n",
            b"",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nab",
            b"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 0x1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nBad Name: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nNoColon\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nA: 1\r\n folded\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nA: 1\rB: 2\r\n\r\n",
            b"HTTP/1.1 101 Switching Protocols\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nab",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n",
        ];
        for raw in protocol {
            let got = read(raw, 100).await;
            assert!(
                matches!(got, Err(HttpError::Protocol(_))),
                "{:?}: {got:?}",
                String::from_utf8_lossy(raw)
            );
        }
        let too_large = [
            &b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\n\r\n01234567890",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n5\r\nabcde\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffff\r\n",
        ];
        for raw in too_large {
            let got = read(raw, 10).await;
            assert_eq!(
                got,
                Err(HttpError::TooLarge),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        let mut huge = b"HTTP/1.1 200 OK\r\n".to_vec();
        huge.extend(std::iter::repeat_n(b'a', MAX_HEAD_BYTES + 10));
        assert_eq!(read(&huge, 10).await, Err(HttpError::TooLarge));
        let mut many = b"HTTP/1.1 200 OK\r\n".to_vec();
        for _ in 0..=MAX_HEADERS {
            many.extend_from_slice(b"A: b\r\n");
        }
        many.extend_from_slice(b"\r\n");
        assert_eq!(read(&many, 10).await, Err(HttpError::TooLarge));
    }

    /// No input may panic: mutate valid responses with a fixed pseudo-random sequence.
    #[tokio::test]
    async fn arbitrary_input_never_panics() {
        let seeds: [&[u8]; 3] = [
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3;e\r\nabc\r\n0\r\nT: x\r\n\r\n",
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.0 404 Nope\r\nX: \xff\xfe\r\n\r\nbody",
        ];
        let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let seed = seeds[(next() % 3) as usize];
            let mut m = seed.to_vec();
            for _ in 0..(next() % 6) {
                let at = (next() as usize) % (m.len() + 1);
                match next() % 4 {
                    0 if at < m.len() => m[at] = next() as u8,
                    1 if at < m.len() => {
                        m.remove(at);
                    }
                    2 => m.insert(at, b"\r\n:;0 \t"[(next() % 7) as usize]),
                    _ => m.truncate(at),
                }
            }
            let _ = read(&m, 64).await;
        }
    }

    #[test]
    fn request_head() {
        let u = url("http://[::1]:8080/p?q=1");
        let head = encode_head(
            "POST",
            &u,
            &[("Authorization".into(), " Bearer t ".into())],
            2,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "POST /p?q=1 HTTP/1.1\r\nHost: [::1]:8080\r\nUser-Agent: weir\r\nConnection: close\r\n\
             Content-Length: 2\r\nAuthorization: Bearer t\r\n\r\n"
        );
        let head = encode_head(
            "GET",
            &url("https://a.b/"),
            &[("user-agent".into(), "x".into())],
            0,
        )
        .unwrap();
        assert_eq!(
            String::from_utf8(head).unwrap(),
            "GET / HTTP/1.1\r\nHost: a.b\r\nConnection: close\r\nuser-agent: x\r\n\r\n"
        );
    }

    #[test]
    fn request_refusals() {
        let u = url("http://a.b/");
        let h = |n: &str, v: &str| vec![(n.to_string(), v.to_string())];
        for (method, headers) in [
            ("", vec![]),
            ("GET /x", vec![]),
            ("G\r\nET", vec![]),
            ("GET", h("Host", "evil")),
            ("GET", h("content-LENGTH", "1")),
            ("GET", h("Transfer-Encoding", "chunked")),
            ("GET", h("Connection", "keep-alive")),
            ("GET", h("X", "a\r\nEvil: b")),
            ("GET", h("X", "a\nb")),
            ("GET", h("X", "a\0")),
            ("GET", h("X Y", "a")),
            ("GET", h("X:", "a")),
            ("GET", h("", "a")),
        ] {
            assert!(
                matches!(
                    encode_head(method, &u, &headers, 0),
                    Err(HttpError::InvalidRequest(_))
                ),
                "{method:?} {headers:?}"
            );
        }
        let many = vec![("X".to_string(), String::new()); MAX_HEADERS + 1];
        assert!(encode_head("GET", &u, &many, 0).is_err());
    }
}
