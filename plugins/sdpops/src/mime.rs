//! Content-Type classification and multipart bodies (RFC 2046 §5.1), byte for byte.
//!
//! Only the content of `application/sdp` parts is handed to the editor; the preamble,
//! every delimiter line, every part's headers, the other parts and the epilogue are
//! copied unchanged, so the boundary structure survives any edit.

use std::fmt;

use crate::sdp::Malformed;

/// What a message body is, from its Content-Type value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// `application/sdp` (any case, any parameters).
    Sdp,
    /// `multipart/*` with its `boundary` parameter (unquoted).
    Multipart(String),
    /// `multipart/*` without a usable boundary.
    MultipartNoBoundary,
    /// Anything else.
    Other,
}

/// Classify a Content-Type header value.
pub fn classify(content_type: &str) -> Kind {
    let mut parts = content_type.split(';');
    let mime = parts.next().unwrap_or_default().trim();
    if mime.eq_ignore_ascii_case("application/sdp") {
        return Kind::Sdp;
    }
    let is_multipart = mime
        .get(..10)
        .is_some_and(|t| t.eq_ignore_ascii_case("multipart/"));
    if !is_multipart {
        return Kind::Other;
    }
    let boundary = parts.find_map(|p| {
        let (name, value) = p.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("boundary")
            .then(|| unquote(value.trim()))
    });
    match boundary {
        // RFC 2046: 1 to 70 characters.
        Some(b) if !b.is_empty() && b.len() <= 70 => Kind::Multipart(b.to_string()),
        _ => Kind::MultipartNoBoundary,
    }
}

/// Why a multipart body was left alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BadMultipart {
    /// The Content-Type has no boundary parameter.
    NoBoundary,
    /// No delimiter line `--<boundary>` in the body.
    NoDelimiter,
    /// No close delimiter `--<boundary>--` after the first delimiter.
    NotClosed,
    /// An `application/sdp` part (1-based) is not SDP the module edits.
    Part(usize, Malformed),
}

impl fmt::Display for BadMultipart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BadMultipart::NoBoundary => write!(f, "multipart body without a boundary"),
            BadMultipart::NoDelimiter => write!(f, "multipart body without a delimiter line"),
            BadMultipart::NotClosed => write!(f, "multipart body without a close delimiter"),
            BadMultipart::Part(n, e) => write!(f, "multipart part {n}: {e}"),
        }
    }
}

/// Run `edit` on the content of each `application/sdp` part. Returns the new body if
/// some part changed, `None` if none did, or why the body was not edited (the first
/// SDP part that `edit` refuses leaves the whole body unchanged).
pub fn edit_sdp_parts<F>(
    body: &[u8],
    boundary: &str,
    mut edit: F,
) -> Result<Option<Vec<u8>>, BadMultipart>
where
    F: FnMut(&[u8]) -> Result<Option<Vec<u8>>, Malformed>,
{
    let delimiter = [b"--", boundary.as_bytes()].concat();
    let lines = delimiter_lines(body, &delimiter);
    let Some(first) = lines.first() else {
        return Err(BadMultipart::NoDelimiter);
    };
    let Some(close) = lines.iter().position(|d| d.close) else {
        return Err(BadMultipart::NotClosed);
    };
    let mut out: Vec<u8> = Vec::with_capacity(body.len());
    let mut copied = 0;
    let mut changed = false;
    let mut part_no = 0;
    let mut prev_end = first.line_end;
    for d in lines.get(1..=close).unwrap_or_default() {
        part_no += 1;
        // The line break before a delimiter belongs to the delimiter.
        let part_end = d.start - line_break_before(body, d.start);
        let Some(part) = body.get(prev_end..part_end) else {
            prev_end = d.line_end;
            continue;
        };
        if let Some(content_at) = sdp_content_offset(part) {
            let content = part.get(content_at..).unwrap_or_default();
            match edit(content) {
                Ok(Some(new)) => {
                    let at = prev_end + content_at;
                    out.extend_from_slice(body.get(copied..at).unwrap_or_default());
                    out.extend_from_slice(&new);
                    copied = part_end;
                    changed = true;
                }
                Ok(None) => {}
                Err(e) => return Err(BadMultipart::Part(part_no, e)),
            }
        }
        prev_end = d.line_end;
    }
    if !changed {
        return Ok(None);
    }
    out.extend_from_slice(body.get(copied..).unwrap_or_default());
    Ok(Some(out))
}

/// A delimiter line: where it starts, where it ends (after its line break), and
/// whether it is the close delimiter.
#[derive(Debug)]
struct Delimiter {
    start: usize,
    line_end: usize,
    close: bool,
}

/// Every line that starts with `delimiter` (followed by `--`, or only transport
/// padding, up to the line end), up to and including the close delimiter.
fn delimiter_lines(body: &[u8], delimiter: &[u8]) -> Vec<Delimiter> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < body.len() {
        let line_len = body
            .get(at..)
            .and_then(|r| r.iter().position(|&b| b == b'\n'))
            .map_or(body.len() - at, |i| i + 1);
        let line = body.get(at..at + line_len).unwrap_or_default();
        if let Some(rest) = line.strip_prefix(delimiter) {
            let close = rest.starts_with(b"--");
            let tail = if close {
                rest.get(2..).unwrap_or_default()
            } else {
                rest
            };
            if tail
                .iter()
                .all(|b| matches!(b, b' ' | b'\t' | b'\r' | b'\n'))
            {
                out.push(Delimiter {
                    start: at,
                    line_end: at + line_len,
                    close,
                });
                if close {
                    break;
                }
            }
        }
        at += line_len;
    }
    out
}

/// 2 for CRLF, 1 for LF, 0 for none, just before `at`.
fn line_break_before(body: &[u8], at: usize) -> usize {
    match (
        at.checked_sub(2).and_then(|i| body.get(i)),
        at.checked_sub(1).and_then(|i| body.get(i)),
    ) {
        (Some(b'\r'), Some(b'\n')) => 2,
        (_, Some(b'\n')) => 1,
        _ => 0,
    }
}

/// If the part's headers say `Content-Type: application/sdp`, where its content starts.
fn sdp_content_offset(part: &[u8]) -> Option<usize> {
    let mut at = 0;
    let mut is_sdp = false;
    loop {
        let rest = part.get(at..)?;
        let len = rest.iter().position(|&b| b == b'\n').map(|i| i + 1)?;
        let line = rest.get(..len)?;
        at += len;
        let text = line.strip_suffix(b"\n").unwrap_or(line);
        let text = text.strip_suffix(b"\r").unwrap_or(text);
        if text.is_empty() {
            return is_sdp.then_some(at);
        }
        if let Some(colon) = text.iter().position(|&b| b == b':') {
            let name = text.get(..colon).unwrap_or_default();
            if name.trim_ascii().eq_ignore_ascii_case(b"content-type") {
                let value = String::from_utf8_lossy(text.get(colon + 1..).unwrap_or_default());
                is_sdp = classify(&value) == Kind::Sdp;
            }
        }
    }
}

/// A parameter value without surrounding double quotes.
fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v)
}
