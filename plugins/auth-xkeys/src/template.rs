//! The `data` template: literal text with Kamailio-style pseudo-variables (`$fu`,
//! `$ru`, `$hdr(Name)`, ...) filled in from the message.

use weir_sdk::{names, Error, Header, Message};

// === Var ===

/// A message field the template can refer to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Var {
    /// `$si`: the source IP address (IPv6 without brackets).
    SourceIp,
    /// `$sp`: the source port.
    SourcePort,
    /// `$rm`: the request method.
    Method,
    /// `$ru`: the request URI.
    RequestUri,
    /// `$fu`: the URI of the From header.
    FromUri,
    /// `$ft`: the From tag.
    FromTag,
    /// `$tu`: the URI of the To header.
    ToUri,
    /// `$ci`: the Call-ID.
    CallId,
    /// `$cs`: the CSeq number.
    CSeqNumber,
    /// `$vi` (Weir): the originating address, from the bottom Via (its `received`, else
    /// its host): the same at every hop, unlike `$si`.
    ViaOrigin,
    /// `$hdr(Name)`: the first value of a header (empty when absent).
    Header(String),
}

/// The two-letter variables, as written after `$`.
const SHORT_VARS: &[(&str, Var)] = &[
    ("si", Var::SourceIp),
    ("sp", Var::SourcePort),
    ("rm", Var::Method),
    ("ru", Var::RequestUri),
    ("fu", Var::FromUri),
    ("ft", Var::FromTag),
    ("tu", Var::ToUri),
    ("ci", Var::CallId),
    ("cs", Var::CSeqNumber),
    ("vi", Var::ViaOrigin),
];

impl Var {
    /// Whether rendering it needs the header list.
    fn needs_headers(&self) -> bool {
        !matches!(
            self,
            Var::SourceIp | Var::SourcePort | Var::Method | Var::RequestUri
        )
    }
}

// === Template ===

/// A parsed `data` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    parts: Vec<Part>,
    needs_headers: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Text(String),
    Var(Var),
}

impl Template {
    /// Parse `data`. `$$` is a literal `$`; any other `$` must start a known variable.
    pub fn parse(text: &str) -> Result<Template, Error> {
        let bad = |why: String| Error::new(format!("data: `{text}`: {why}"));
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = text;
        while let Some(at) = rest.find('$') {
            lit.push_str(rest.get(..at).unwrap_or(""));
            let after = rest.get(at + 1..).unwrap_or("");
            if let Some(more) = after.strip_prefix('$') {
                lit.push('$');
                rest = more;
                continue;
            }
            let (var, more) = if let Some(inner) = after.strip_prefix("hdr(") {
                let end = inner
                    .find(')')
                    .ok_or_else(|| bad("`$hdr(` without `)`".to_string()))?;
                let name = inner.get(..end).unwrap_or("").trim();
                if !names::is_valid(name) {
                    return Err(bad(format!("`$hdr({name})`: not a header name")));
                }
                (
                    Var::Header(name.to_string()),
                    inner.get(end + 1..).unwrap_or(""),
                )
            } else {
                let found = SHORT_VARS
                    .iter()
                    .find(|(n, _)| after.starts_with(n))
                    .ok_or_else(|| {
                        let shown: String = after.chars().take(2).collect();
                        bad(format!(
                            "unknown variable `${shown}` (known: $si $sp $rm $ru $fu $ft $tu \
                             $ci $cs $vi $hdr(Name); `$$` for a literal `$`)"
                        ))
                    })?;
                (found.1.clone(), after.get(found.0.len()..).unwrap_or(""))
            };
            if !lit.is_empty() {
                parts.push(Part::Text(std::mem::take(&mut lit)));
            }
            parts.push(Part::Var(var));
            rest = more;
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Text(lit));
        }
        if !parts.iter().any(|p| matches!(p, Part::Var(_))) {
            return Err(bad(
                "no variable: the token would not depend on the message".to_string(),
            ));
        }
        let needs_headers = parts
            .iter()
            .any(|p| matches!(p, Part::Var(v) if v.needs_headers()));
        Ok(Template {
            parts,
            needs_headers,
        })
    }

    /// Whether [`render`](Self::render) reads the header list.
    pub fn needs_headers(&self) -> bool {
        self.needs_headers
    }

    /// The data string for `msg`; `headers` is `msg.headers()` when
    /// [`needs_headers`](Self::needs_headers), else may be empty.
    pub fn render(&self, msg: &Message, headers: &[Header]) -> String {
        let mut out = String::new();
        for part in &self.parts {
            match part {
                Part::Text(t) => out.push_str(t),
                Part::Var(v) => out.push_str(&value(v, msg, headers)),
            }
        }
        out
    }
}

fn value(var: &Var, msg: &Message, headers: &[Header]) -> String {
    let first = |name: &str| headers.iter().find(|h| h.is(name)).map(|h| h.value.trim());
    match var {
        Var::SourceIp => msg.source().ip,
        Var::SourcePort => msg.source().port.to_string(),
        Var::Method => msg.method(),
        Var::RequestUri => msg.request_uri(),
        Var::FromUri => first("From").map(name_addr_uri).unwrap_or_default(),
        Var::FromTag => first("From").and_then(tag_param).unwrap_or_default(),
        Var::ToUri => first("To").map(name_addr_uri).unwrap_or_default(),
        Var::CallId => first("Call-ID").unwrap_or_default().to_string(),
        Var::CSeqNumber => first("CSeq")
            .and_then(|v| v.split_whitespace().next())
            .unwrap_or_default()
            .to_string(),
        Var::ViaOrigin => headers
            .iter()
            .rev()
            .find(|h| h.is("Via"))
            .and_then(|h| split_outside_quotes(&h.value, ',').pop())
            .map(via_origin)
            .unwrap_or_default(),
        Var::Header(name) => first(name).unwrap_or_default().to_string(),
    }
}

// === header grammar, just enough ===

/// The URI of a name-addr or addr-spec header value (From, To): between `<` and `>`
/// when there are brackets, else up to the first `;` (header params).
pub fn name_addr_uri(value: &str) -> String {
    let (uri, _) = split_name_addr(value);
    uri.trim().to_string()
}

/// The `tag` param of a From/To value.
fn tag_param(value: &str) -> Option<String> {
    let (_, params) = split_name_addr(value);
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("tag")
            .then(|| v.trim().to_string())
    })
}

/// (URI, header params) of a name-addr / addr-spec value. A quoted display name may
/// hold `<` and `;`.
fn split_name_addr(value: &str) -> (&str, &str) {
    let mut quoted = false;
    let mut escaped = false;
    for (i, c) in value.char_indices() {
        if quoted {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => quoted = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => quoted = true,
            '<' => {
                let inner = value.get(i + 1..).unwrap_or("");
                return match inner.find('>') {
                    Some(end) => (
                        inner.get(..end).unwrap_or(""),
                        inner.get(end + 1..).unwrap_or(""),
                    ),
                    None => (inner, ""),
                };
            }
            ';' => return (value.get(..i).unwrap_or(""), value.get(i..).unwrap_or("")),
            _ => {}
        }
    }
    (value, "")
}

/// Split on `sep` outside double quotes, trimming each piece.
fn split_outside_quotes(value: &str, sep: char) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, c) in value.char_indices() {
        if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            out.push(value.get(start..i).unwrap_or("").trim());
            start = i + c.len_utf8();
        }
    }
    out.push(value.get(start..).unwrap_or("").trim());
    out
}

/// The originating host of one Via value (`SIP/2.0/UDP host:port;received=..`): its
/// `received` param, else the sent-by host; IPv6 without brackets.
pub fn via_origin(via: &str) -> String {
    let mut pieces = split_outside_quotes(via, ';').into_iter();
    let sent = pieces.next().unwrap_or("");
    let received = pieces.find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("received")
            .then(|| v.trim().to_string())
    });
    if let Some(r) = received.filter(|r| !r.is_empty()) {
        return r;
    }
    // "SIP/2.0/UDP host:port": the sent-by is the last word (LWS may sit inside the
    // protocol, `SIP / 2.0 / UDP`).
    let sent_by = sent.split_whitespace().last().unwrap_or("");
    host_of(sent_by).to_string()
}

/// The host of `host[:port]` / `[v6][:port]`, without brackets.
fn host_of(host_port: &str) -> &str {
    if let Some(v6) = host_port.strip_prefix('[') {
        return v6.split(']').next().unwrap_or("");
    }
    host_port.split(':').next().unwrap_or("")
}
