//! The in-memory message behind [`Message`](crate::Message) off wasm. It implements the
//! WIT `message` resource's methods with the generated WIT types, so the SDK code on top
//! is the same on both targets, and it follows the host's rules: case-insensitive names,
//! compact forms, protected headers, a size limit.

use std::fmt;

use crate::__private::bindings::weir::sip::types::{
    Address as WitAddress, EditError as WitEditError, Header as WitHeader, Hook as WitHook,
    Transport as WitTransport,
};
use crate::names;

/// Default size limit for edits, in bytes of the serialized message (the host's).
pub(crate) const DEFAULT_MAX_SIZE: usize = 64 * 1024;

/// Why a text could not be turned into a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError {
    /// 1-based line of the message text where the problem is.
    pub line: usize,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

#[derive(Debug, Clone, PartialEq, Eq)]
enum StartLine {
    Request { method: String, uri: String },
    Reply { code: u16, reason: String },
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Line {
    name: String,
    value: String,
}

#[derive(Debug, Clone)]
pub(crate) struct MemMessage {
    start: StartLine,
    headers: Vec<Line>,
    body: Vec<u8>,
    pub(crate) source: WitAddress,
    pub(crate) transport: WitTransport,
    pub(crate) listener: String,
    pub(crate) hook: WitHook,
    pub(crate) failure_status: u16,
    pub(crate) cancelled: bool,
    pub(crate) connection: u64,
    pub(crate) transaction: u64,
    /// Variables (`get-var` / `set-var`), in the order first set.
    pub(crate) vars: Vec<(String, String)>,
    pub(crate) max_size: usize,
}

type EditResult<T> = Result<T, WitEditError>;

impl MemMessage {
    /// Parse a message. Lines may end in CRLF or LF; the head ends at the first empty
    /// line and everything after it is the body. Folded lines are joined with one space.
    pub(crate) fn parse(text: &str) -> Result<Self, ParseError> {
        let (head, body) = split_head(text);
        let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let first = lines.next().unwrap_or_default();
        let start = parse_start(first).map_err(|message| ParseError { line: 1, message })?;
        let mut headers: Vec<Line> = Vec::new();
        for (i, line) in lines.enumerate() {
            let err = |message: String| ParseError {
                line: i + 2,
                message,
            };
            if line.starts_with([' ', '\t']) {
                let last = headers
                    .last_mut()
                    .ok_or_else(|| err("continuation line before any header".into()))?;
                if !last.value.is_empty() {
                    last.value.push(' ');
                }
                last.value.push_str(line.trim());
                continue;
            }
            let (name, value) = line
                .split_once(':')
                .ok_or_else(|| err(format!("not a header line: {line:?}")))?;
            let name = name.trim_end();
            if !names::is_valid(name) {
                return Err(err(format!("invalid header name {name:?}")));
            }
            headers.push(Line {
                name: name.to_string(),
                value: value.trim().to_string(),
            });
        }
        Ok(Self {
            start,
            headers,
            body: body.as_bytes().to_vec(),
            source: WitAddress {
                ip: "192.0.2.1".into(),
                port: 5060,
            },
            transport: WitTransport::Udp,
            listener: "default".into(),
            hook: WitHook::Request,
            failure_status: 0,
            cancelled: false,
            connection: 0,
            transaction: 0,
            vars: Vec::new(),
            max_size: DEFAULT_MAX_SIZE,
        })
    }

    /// The message as the host writes it: CRLF line ends, and a Content-Length that
    /// matches the body (fixed in place if present, appended if absent). A non-UTF-8
    /// body is shown lossily.
    pub(crate) fn serialize(&self) -> String {
        let mut out = String::with_capacity(self.size() + 24);
        match &self.start {
            StartLine::Request { method, uri } => {
                out.push_str(&format!("{method} {uri} SIP/2.0\r\n"));
            }
            StartLine::Reply { code, reason } => {
                out.push_str(&format!("SIP/2.0 {code} {reason}\r\n"));
            }
        }
        let body_len = self.body.len();
        let mut has_length = false;
        for h in &self.headers {
            if h.is("Content-Length") {
                has_length = true;
                if h.value.trim().parse::<usize>().ok() != Some(body_len) {
                    out.push_str(&format!("{}: {body_len}\r\n", h.name));
                    continue;
                }
            }
            out.push_str(&format!("{}: {}\r\n", h.name, h.value));
        }
        if !has_length {
            out.push_str(&format!("Content-Length: {body_len}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(&String::from_utf8_lossy(&self.body));
        out
    }

    /// Serialized size in bytes.
    fn size(&self) -> usize {
        let start = match &self.start {
            StartLine::Request { method, uri } => method.len() + uri.len() + 11,
            StartLine::Reply { reason, .. } => reason.len() + 14,
        };
        let headers: usize = self
            .headers
            .iter()
            .map(|h| h.name.len() + h.value.len() + 4)
            .sum();
        start + headers + 2 + self.body.len()
    }

    /// Apply an edit, undoing it if it grows the message past the size limit.
    fn edit<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> EditResult<T> {
        let before = self.clone();
        let out = f(self);
        let size = self.size();
        if size > self.max_size && size > before.size() {
            *self = before;
            return Err(WitEditError::TooLarge);
        }
        Ok(out)
    }

    // === the WIT `message` resource ===

    pub(crate) fn is_request(&self) -> bool {
        matches!(self.start, StartLine::Request { .. })
    }

    pub(crate) fn method(&self) -> String {
        match &self.start {
            StartLine::Request { method, .. } => method.clone(),
            StartLine::Reply { .. } => self
                .header("CSeq")
                .and_then(|cseq| cseq.split_whitespace().nth(1).map(str::to_string))
                .unwrap_or_default(),
        }
    }

    pub(crate) fn status(&self) -> u16 {
        match &self.start {
            StartLine::Reply { code, .. } => *code,
            StartLine::Request { .. } => 0,
        }
    }

    pub(crate) fn reason(&self) -> String {
        match &self.start {
            StartLine::Reply { reason, .. } => reason.clone(),
            StartLine::Request { .. } => String::new(),
        }
    }

    pub(crate) fn request_uri(&self) -> String {
        match &self.start {
            StartLine::Request { uri, .. } => uri.clone(),
            StartLine::Reply { .. } => String::new(),
        }
    }

    pub(crate) fn set_request_uri(&mut self, new_uri: &str) -> EditResult<()> {
        if !is_uri(new_uri) {
            return Err(WitEditError::Invalid(format!("not a URI: {new_uri:?}")));
        }
        if !self.is_request() {
            return Err(WitEditError::Invalid("a reply has no request URI".into()));
        }
        self.edit(|m| {
            if let StartLine::Request { uri, .. } = &mut m.start {
                *uri = new_uri.to_string();
            }
        })
    }

    pub(crate) fn header(&self, name: &str) -> Option<String> {
        self.lines(name).next().map(|h| h.value.clone())
    }

    pub(crate) fn header_values(&self, name: &str) -> Vec<String> {
        self.lines(name).map(|h| h.value.clone()).collect()
    }

    /// As the host answers `header-values-joined`.
    pub(crate) fn header_values_joined(&self, names: &str) -> String {
        let mut out = String::new();
        for (k, name) in names.split(',').enumerate() {
            let max = crate::HeaderSet::MAX_NAMES;
            assert!(k < max, "header-values-joined: more than {max} names");
            for h in self.lines(name.trim_ascii()) {
                out.push_str(&h.value.len().to_string());
                out.push(':');
                out.push_str(&h.value);
            }
            out.push('\n');
        }
        out
    }

    pub(crate) fn header_names(&self) -> Vec<String> {
        self.headers.iter().map(|h| h.name.clone()).collect()
    }

    pub(crate) fn headers(&self) -> Vec<WitHeader> {
        self.headers
            .iter()
            .map(|h| WitHeader {
                name: h.name.clone(),
                value: h.value.clone(),
            })
            .collect()
    }

    pub(crate) fn add_header(&mut self, name: &str, value: &str) -> EditResult<()> {
        check_editable(name)?;
        check_value(name, value)?;
        self.edit(|m| {
            m.headers.push(Line {
                name: name.to_string(),
                value: value.to_string(),
            })
        })
    }

    pub(crate) fn set_header(&mut self, name: &str, value: &str) -> EditResult<()> {
        check_editable(name)?;
        check_value(name, value)?;
        self.edit(|m| {
            let line = Line {
                name: name.to_string(),
                value: value.to_string(),
            };
            match m
                .headers
                .iter()
                .position(|h| names::equivalent(&h.name, name))
            {
                Some(first) => {
                    m.headers.retain(|h| !names::equivalent(&h.name, name));
                    m.headers.insert(first, line);
                }
                None => m.headers.push(line),
            }
        })
    }

    pub(crate) fn remove_header(&mut self, name: &str) -> EditResult<u32> {
        check_editable(name)?;
        let before = self.headers.len();
        self.headers.retain(|h| !names::equivalent(&h.name, name));
        Ok(count(before - self.headers.len()))
    }

    pub(crate) fn remove_headers_by_prefix(&mut self, prefix: &str) -> EditResult<u32> {
        if !names::is_valid(prefix) {
            return Err(WitEditError::Invalid(format!(
                "invalid header name {prefix:?}"
            )));
        }
        let starts = |n: &str| {
            n.len() >= prefix.len()
                && n.bytes()
                    .zip(prefix.bytes())
                    .all(|(a, b)| a.eq_ignore_ascii_case(&b))
        };
        let hit =
            |n: &str| starts(names::canonical(n)) || names::compact_form(n).is_some_and(starts);
        if let Some(h) = self
            .headers
            .iter()
            .find(|h| hit(&h.name) && names::is_protected(&h.name))
        {
            return Err(WitEditError::ProtectedHeader(h.name.clone()));
        }
        let before = self.headers.len();
        self.headers.retain(|h| !hit(&h.name));
        Ok(count(before - self.headers.len()))
    }

    pub(crate) fn rename_header(&mut self, name: &str, new_name: &str) -> EditResult<u32> {
        for n in [name, new_name] {
            if !names::is_valid(n) {
                return Err(WitEditError::Invalid(format!("invalid header name {n:?}")));
            }
        }
        // Renaming keeps the meaning only within one header: turning another header into
        // (or out of) a host-owned one would be an add or a remove in disguise.
        if !names::equivalent(name, new_name) {
            if let Some(p) = [name, new_name]
                .into_iter()
                .find(|n| names::is_protected(n))
            {
                return Err(WitEditError::ProtectedHeader(p.to_string()));
            }
        }
        self.edit(|m| {
            let mut n = 0;
            for h in m
                .headers
                .iter_mut()
                .filter(|h| names::equivalent(&h.name, name))
            {
                h.name = new_name.to_string();
                n += 1;
            }
            count(n)
        })
    }

    pub(crate) fn body(&self) -> Vec<u8> {
        self.body.clone()
    }

    /// Like the host, only the body changes here: the Content-Length header is made to
    /// match when the message is written ([`serialize`](Self::serialize)).
    pub(crate) fn set_body(&mut self, body: &[u8]) -> EditResult<()> {
        self.edit(|m| m.body = body.to_vec())
    }

    pub(crate) fn source(&self) -> WitAddress {
        self.source.clone()
    }

    pub(crate) fn transport(&self) -> WitTransport {
        self.transport
    }

    pub(crate) fn listener(&self) -> String {
        self.listener.clone()
    }

    pub(crate) fn hook(&self) -> WitHook {
        if self.hook == WitHook::Request && !self.is_request() {
            WitHook::Reply
        } else {
            self.hook
        }
    }

    pub(crate) fn failure_status(&self) -> u16 {
        self.failure_status
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled
    }

    pub(crate) fn connection_id(&self) -> u64 {
        self.connection
    }

    pub(crate) fn transaction_id(&self) -> u64 {
        self.transaction
    }

    pub(crate) fn get_var(&self, name: &str) -> Option<String> {
        self.vars
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.clone())
    }

    /// As the host: name 1 to 64 bytes, value up to 4 KiB, at most 32 variables.
    pub(crate) fn set_var(&mut self, name: &str, value: &str) -> bool {
        if name.is_empty()
            || name.len() > crate::Message::MAX_VAR_NAME
            || value.len() > crate::Message::MAX_VAR_VALUE
        {
            return false;
        }
        if let Some(slot) = self.vars.iter_mut().find(|(n, _)| n == name) {
            slot.1 = value.to_string();
            return true;
        }
        if self.vars.len() >= crate::Message::MAX_VARS {
            return false;
        }
        self.vars.push((name.to_string(), value.to_string()));
        true
    }

    fn lines<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s Line> + 's {
        self.headers.iter().filter(move |h| h.is(name))
    }
}

impl Line {
    fn is(&self, name: &str) -> bool {
        names::equivalent(&self.name, name)
    }
}

fn check_editable(name: &str) -> EditResult<()> {
    if names::is_protected(name) {
        return Err(WitEditError::ProtectedHeader(name.to_string()));
    }
    if !names::is_valid(name) {
        return Err(WitEditError::Invalid(format!(
            "invalid header name {name:?}"
        )));
    }
    Ok(())
}

fn check_value(name: &str, value: &str) -> EditResult<()> {
    if names::is_valid_value(value) {
        Ok(())
    } else {
        Err(WitEditError::Invalid(format!(
            "invalid value for header {name}: {value:?}"
        )))
    }
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// Split at the first empty line (CRLF CRLF or LF LF).
fn split_head(text: &str) -> (&str, &str) {
    let crlf = text.find("\r\n\r\n").map(|i| (i, 4));
    let lf = text.find("\n\n").map(|i| (i, 2));
    match (crlf, lf) {
        (Some(a), Some(b)) => {
            let (i, n) = if a.0 <= b.0 { a } else { b };
            (&text[..i], &text[i + n..])
        }
        (Some((i, n)), None) | (None, Some((i, n))) => (&text[..i], &text[i + n..]),
        (None, None) => (text.trim_end_matches(['\r', '\n']), ""),
    }
}

fn parse_start(line: &str) -> Result<StartLine, String> {
    let mut parts = line.splitn(3, ' ');
    let (a, b, c) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    if a.eq_ignore_ascii_case("SIP/2.0") {
        let code = b
            .parse::<u16>()
            .ok()
            .filter(|code| (100..=699).contains(code) && b.len() == 3)
            .ok_or_else(|| format!("bad status code in {line:?}"))?;
        Ok(StartLine::Reply {
            code,
            reason: c.to_string(),
        })
    } else if c.eq_ignore_ascii_case("SIP/2.0") && names::is_valid(a) && is_uri(b) {
        Ok(StartLine::Request {
            method: a.to_string(),
            uri: b.to_string(),
        })
    } else {
        Err(format!("not a SIP/2.0 request or status line: {line:?}"))
    }
}

/// `scheme ":" rest`, RFC 3986 scheme, no whitespace or controls.
pub(crate) fn is_uri(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    let mut scheme_chars = scheme.chars();
    scheme_chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && scheme_chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && !uri.chars().any(|c| c.is_whitespace() || c.is_control())
}
