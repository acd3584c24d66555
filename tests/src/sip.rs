//! Just enough SIP text handling for tests, written independently of `weir-message`:
//! split a message into start line, header lines and body; look headers up by long or
//! compact name; split list headers; build requests and replies.

use std::fmt::Write as _;

/// Compact header forms (RFC 3261 §7.3.3 and extensions) and their long names.
const COMPACT: &[(&str, &str)] = &[
    ("i", "call-id"),
    ("m", "contact"),
    ("e", "content-encoding"),
    ("l", "content-length"),
    ("c", "content-type"),
    ("f", "from"),
    ("s", "subject"),
    ("k", "supported"),
    ("t", "to"),
    ("v", "via"),
    ("o", "event"),
    ("u", "allow-events"),
    ("r", "refer-to"),
    ("b", "referred-by"),
    ("x", "session-expires"),
];

/// The long, lower-case form of a header name.
pub fn long_name(name: &str) -> String {
    let lower = name.trim().to_ascii_lowercase();
    COMPACT
        .iter()
        .find(|(c, _)| *c == lower)
        .map_or(lower, |(_, l)| (*l).to_string())
}

/// Whether two header names mean the same header.
pub fn same_name(a: &str, b: &str) -> bool {
    long_name(a) == long_name(b)
}

/// A SIP message as lines of text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipMsg {
    /// Request-Line or Status-Line, without CRLF.
    pub start: String,
    /// Header lines in order, as (name, value) with surrounding whitespace trimmed.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl SipMsg {
    /// Parse one complete message (lenient: folded lines are joined, LF-only accepted).
    pub fn parse(data: &[u8]) -> Option<SipMsg> {
        let (head, body) = split_head(data)?;
        let head = std::str::from_utf8(head).ok()?;
        let mut lines = head.split('\n').map(|l| l.strip_suffix('\r').unwrap_or(l));
        let start = lines.next()?.to_string();
        let mut headers: Vec<(String, String)> = Vec::new();
        for l in lines {
            if l.starts_with([' ', '\t']) {
                let (_, v) = headers.last_mut()?;
                v.push(' ');
                v.push_str(l.trim());
                continue;
            }
            let (n, v) = l.split_once(':')?;
            headers.push((n.trim().to_string(), v.trim().to_string()));
        }
        Some(SipMsg {
            start,
            headers,
            body: body.to_vec(),
        })
    }

    /// Parse, panicking with the bytes shown when they are not a message.
    pub fn must_parse(data: &[u8]) -> SipMsg {
        SipMsg::parse(data)
            .unwrap_or_else(|| panic!("not a SIP message: {:?}", String::from_utf8_lossy(data)))
    }

    /// A request with the usual headers: one Via (`via`, e.g.
    /// `"SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1;rport"`), Max-Forwards 70, From with
    /// a tag, To, a fresh Call-ID, CSeq 1, Content-Length 0.
    pub fn request(method: &str, ruri: &str, via: &str) -> SipMsg {
        let t = crate::token();
        SipMsg {
            start: format!("{method} {ruri} SIP/2.0"),
            headers: vec![
                ("Via".into(), via.to_string()),
                ("Max-Forwards".into(), "70".into()),
                ("From".into(), format!("<sip:alice@example.com>;tag=f{t}")),
                ("To".into(), "<sip:bob@example.com>".into()),
                ("Call-ID".into(), format!("{t}@127.0.0.1")),
                ("CSeq".into(), format!("1 {method}")),
                ("Content-Length".into(), "0".into()),
            ],
            body: Vec::new(),
        }
    }

    /// A reply to this request: Via lines, From, To (with `to_tag` added when it has
    /// none), Call-ID, CSeq and Record-Route copied (RFC 3261 §8.2.6.2).
    pub fn reply(&self, code: u16, reason: &str, to_tag: Option<&str>) -> SipMsg {
        let mut headers = Vec::new();
        for (n, v) in &self.headers {
            let ln = long_name(n);
            match ln.as_str() {
                "via" | "from" | "call-id" | "cseq" | "record-route" => {
                    headers.push((n.clone(), v.clone()));
                }
                "to" => {
                    let mut v = v.clone();
                    if let Some(t) = to_tag {
                        if param(&v, "tag").is_none() {
                            v.push_str(";tag=");
                            v.push_str(t);
                        }
                    }
                    headers.push((n.clone(), v));
                }
                _ => {}
            }
        }
        headers.push(("Content-Length".into(), "0".into()));
        SipMsg {
            start: format!("SIP/2.0 {code} {reason}"),
            headers,
            body: Vec::new(),
        }
    }

    /// Serialise (header lines as they are; keep Content-Length right yourself, or use
    /// [`with_body`](Self::with_body)).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut s = String::new();
        let _ = write!(s, "{}\r\n", self.start);
        for (n, v) in &self.headers {
            let _ = write!(s, "{n}: {v}\r\n");
        }
        s.push_str("\r\n");
        let mut out = s.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }

    /// The message as text, for assertion messages.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.to_bytes()).into_owned()
    }

    // --- start line ---

    /// Whether this is a response.
    pub fn is_response(&self) -> bool {
        self.start.starts_with("SIP/")
    }

    /// The status code of a response.
    pub fn status(&self) -> Option<u16> {
        if !self.is_response() {
            return None;
        }
        self.start.split_whitespace().nth(1)?.parse().ok()
    }

    /// The reason phrase of a response.
    pub fn reason(&self) -> Option<&str> {
        if !self.is_response() {
            return None;
        }
        let rest = self.start.split_once(' ')?.1;
        Some(rest.split_once(' ').map_or("", |(_, r)| r))
    }

    /// The method of a request.
    pub fn method(&self) -> Option<&str> {
        if self.is_response() {
            return None;
        }
        self.start.split_whitespace().next()
    }

    /// The Request-URI of a request.
    pub fn ruri(&self) -> Option<&str> {
        if self.is_response() {
            return None;
        }
        self.start.split_whitespace().nth(1)
    }

    /// "INVITE sip:..." or "200 OK", for messages.
    pub fn summary(&self) -> String {
        format!(
            "{} (Call-ID {})",
            self.start,
            self.header("Call-ID").unwrap_or("-")
        )
    }

    // --- headers ---

    /// The value of the first line of header `name` (long or compact form).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| same_name(n, name))
            .map(|(_, v)| v.as_str())
    }

    /// The values of every line of header `name`.
    pub fn header_lines(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| same_name(n, name))
            .map(|(_, v)| v.as_str())
            .collect()
    }

    /// Every entry of a list header (Via, Route, Record-Route), across lines and commas.
    pub fn list(&self, name: &str) -> Vec<String> {
        self.header_lines(name)
            .into_iter()
            .flat_map(split_list)
            .collect()
    }

    /// Whether any line of header `name` exists.
    pub fn has(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    /// Whether a header whose name starts with `prefix` (case-insensitive) exists.
    pub fn has_prefix(&self, prefix: &str) -> bool {
        let p = prefix.to_ascii_lowercase();
        self.headers
            .iter()
            .any(|(n, _)| n.to_ascii_lowercase().starts_with(&p))
    }

    /// The top Via entry.
    pub fn top_via(&self) -> Option<String> {
        self.list("Via").into_iter().next()
    }

    /// The top Via's branch.
    pub fn branch(&self) -> Option<String> {
        param(&self.top_via()?, "branch").flatten()
    }

    /// Replace every line of `name` by one line with `value` (in the first line's
    /// place, or at the end).
    pub fn set_header(mut self, name: &str, value: &str) -> SipMsg {
        let pos = self.headers.iter().position(|(n, _)| same_name(n, name));
        self.headers.retain(|(n, _)| !same_name(n, name));
        let at = pos.unwrap_or(self.headers.len()).min(self.headers.len());
        self.headers
            .insert(at, (name.to_string(), value.to_string()));
        self
    }

    /// Add a header line before Content-Length (or at the end).
    pub fn add_header(mut self, name: &str, value: &str) -> SipMsg {
        let at = self
            .headers
            .iter()
            .position(|(n, _)| same_name(n, "Content-Length"))
            .unwrap_or(self.headers.len());
        self.headers
            .insert(at, (name.to_string(), value.to_string()));
        self
    }

    /// Add a header line first of all.
    pub fn push_front(mut self, name: &str, value: &str) -> SipMsg {
        self.headers
            .insert(0, (name.to_string(), value.to_string()));
        self
    }

    /// Remove every line of `name`.
    pub fn without(mut self, name: &str) -> SipMsg {
        self.headers.retain(|(n, _)| !same_name(n, name));
        self
    }

    /// Set the body, Content-Type and Content-Length.
    pub fn with_body(self, content_type: &str, body: &[u8]) -> SipMsg {
        let mut m = self
            .set_header("Content-Type", content_type)
            .set_header("Content-Length", &body.len().to_string());
        m.body = body.to_vec();
        m
    }
}

/// Split header text from body at the first empty line.
fn split_head(data: &[u8]) -> Option<(&[u8], &[u8])> {
    if let Some(i) = find(data, b"\r\n\r\n") {
        return Some((data.get(..i)?, data.get(i + 4..)?));
    }
    let i = find(data, b"\n\n")?;
    Some((data.get(..i)?, data.get(i + 2..)?))
}

/// Position of `needle` in `hay`.
pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Split a list header value at commas outside `<...>` and quotes.
pub fn split_list(v: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let (mut angle, mut quote) = (false, false);
    for c in v.chars() {
        match c {
            '"' if !angle => quote = !quote,
            '<' if !quote => angle = true,
            '>' if !quote => angle = false,
            ',' if !angle && !quote => {
                out.push(cur.trim().to_string());
                cur.clear();
                continue;
            }
            _ => {}
        }
        cur.push(c);
    }
    if !cur.trim().is_empty() {
        out.push(cur.trim().to_string());
    }
    out
}

/// A `;name[=value]` parameter of a header entry (Via, name-addr with params outside
/// the `<>`): `None` when absent, `Some(None)` when present without a value.
pub fn param(entry: &str, name: &str) -> Option<Option<String>> {
    // Parameters of a name-addr follow the closing '>'.
    let tail = match entry.rfind('>') {
        Some(i) => entry.get(i + 1..).unwrap_or(""),
        None => entry,
    };
    tail.split(';').skip(1).find_map(|p| {
        let (k, v) = match p.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim().to_string())),
            None => (p.trim(), None),
        };
        k.eq_ignore_ascii_case(name).then_some(v)
    })
}

/// The sent-by (`host[:port]`) of a Via entry.
pub fn via_sent_by(via: &str) -> Option<&str> {
    let rest = via.split_whitespace().nth(1)?;
    Some(rest.split(';').next().unwrap_or(rest))
}

/// The URI inside a name-addr (`<sip:...>` or a bare URI).
pub fn uri_of(entry: &str) -> &str {
    match (entry.find('<'), entry.find('>')) {
        (Some(a), Some(b)) if a < b => entry.get(a + 1..b).unwrap_or(entry),
        _ => entry.split(';').next().unwrap_or(entry).trim(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_compact_folded_and_lists() {
        let m = SipMsg::must_parse(
            b"SIP/2.0 180 Ringing\r\nv: SIP/2.0/UDP a:1;branch=z9hG4bK1, SIP/2.0/UDP b;rport=5\r\n\
              Via: SIP/2.0/TCP c;branch=x\r\nRecord-Route: <sip:p;lr>,\r\n <sip:\"q,r\"@s;lr>\r\n\
              To: <sip:b@example.com>;tag=t1\r\nl: 2\r\n\r\nhi",
        );
        assert_eq!(m.status(), Some(180));
        assert_eq!(m.reason(), Some("Ringing"));
        assert_eq!(m.list("Via").len(), 3);
        assert_eq!(m.branch().as_deref(), Some("z9hG4bK1"));
        assert_eq!(via_sent_by(&m.list("via")[1]), Some("b"));
        assert_eq!(param(&m.list("Via")[1], "rport"), Some(Some("5".into())));
        assert_eq!(m.list("Record-Route").len(), 2);
        assert_eq!(uri_of(&m.list("Record-Route")[0]), "sip:p;lr");
        assert_eq!(
            param(m.header("to").unwrap(), "tag"),
            Some(Some("t1".into()))
        );
        assert_eq!(m.header("Content-Length"), Some("2"));
        assert_eq!(m.body, b"hi");
    }

    #[test]
    fn reply_copies_the_transaction_headers() {
        let req = SipMsg::request(
            "INVITE",
            "sip:b@example.com",
            "SIP/2.0/UDP 127.0.0.1:5;branch=z9hG4bKq",
        )
        .add_header("X-Other", "1");
        let r = SipMsg::must_parse(&req.reply(200, "OK", Some("u")).to_bytes());
        assert_eq!(r.start, "SIP/2.0 200 OK");
        assert_eq!(r.branch(), req.branch());
        assert_eq!(r.header("Call-ID"), req.header("Call-ID"));
        assert!(r.header("To").unwrap().ends_with(";tag=u"));
        assert!(!r.has("X-Other"));
        assert!(!r.has("Max-Forwards"));
    }
}
