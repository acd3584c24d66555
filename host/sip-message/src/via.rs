//! Via header (RFC 3261 §20.42, §25.1 `via-parm`).

use std::fmt;

use crate::chars::{
    find_param, fmt_params, for_each_param_until, is_token_byte, own_param, skip_ws, split_list,
    take_while, ParamStyle,
};
use crate::error::HeaderError;
use crate::span::Span;
use crate::text::Text;
use crate::uri::valid_host;

/// One `via-parm`: `SIP/2.0/<transport> <host>[:<port>] *(;param)`.
///
/// ```
/// use weir_message::Via;
/// let v = Via::parse("SIP/2.0/udp 192.0.2.1:5060;rport;branch=z9hG4bK776asdhds").unwrap();
/// assert_eq!(v.transport, "UDP");
/// assert_eq!(v.branch(), Some("z9hG4bK776asdhds"));
/// assert_eq!(v.rport(), Some(None));
/// assert_eq!(v.to_string(), "SIP/2.0/UDP 192.0.2.1:5060;rport;branch=z9hG4bK776asdhds");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Via {
    /// Transport, uppercased ("UDP", "TCP", "TLS", "SCTP", "WS", "WSS", or any token).
    pub transport: String,
    /// Host as written (IPv6 with brackets).
    pub host: String,
    /// Port.
    pub port: Option<u16>,
    /// Parameters in order, as written (quoted values keep their quotes).
    pub params: Vec<(String, Option<String>)>,
}

/// Borrowed pieces of one via-parm.
pub(crate) struct ViaParts<'a> {
    pub(crate) transport: &'a str,
    pub(crate) host: &'a str,
    pub(crate) port: Option<u16>,
}

fn err(detail: &'static str) -> HeaderError {
    HeaderError::invalid("Via", detail)
}

/// Parse one via-parm (no commas), reporting params through `on_param`.
pub(crate) fn parse_parts<'a>(
    s: &'a str,
    on_param: impl FnMut(&'a str, Option<&'a str>),
) -> Result<ViaParts<'a>, HeaderError> {
    let (parts, end) = parse_parts_until(s, false, on_param)?;
    if end == s.len() {
        Ok(parts)
    } else {
        Err(err("trailing characters"))
    }
}

/// Parse the via-parm at the start of `s`; with `in_list`, stop at a top-level comma.
/// Returns the parts and the index where parsing stopped.
fn parse_parts_until<'a>(
    s: &'a str,
    in_list: bool,
    on_param: impl FnMut(&'a str, Option<&'a str>),
) -> Result<(ViaParts<'a>, usize), HeaderError> {
    let b = s.as_bytes();
    let mut i = skip_ws(b, 0);
    // protocol-name SLASH protocol-version SLASH transport, SWS around slashes.
    let mut fields: [&str; 3] = [""; 3];
    for (n, field) in fields.iter_mut().enumerate() {
        if n > 0 {
            if b.get(i) != Some(&b'/') {
                return Err(err("bad sent-protocol"));
            }
            i = skip_ws(b, i + 1);
        }
        let end = take_while(b, i, is_token_byte);
        if end == i {
            return Err(err("bad sent-protocol"));
        }
        *field = s.get(i..end).unwrap_or("");
        i = skip_ws(b, end);
    }
    let [proto, version, transport] = fields;
    if !proto.eq_ignore_ascii_case("SIP") || version != "2.0" {
        return Err(err("unsupported sent-protocol"));
    }
    // LWS was consumed above; sent-by must follow.
    let host_start = i;
    let host_end = if b.get(i) == Some(&b'[') {
        match b.get(i..).and_then(|r| r.iter().position(|&c| c == b']')) {
            Some(p) => i + p + 1,
            None => return Err(err("unterminated IPv6 reference")),
        }
    } else {
        take_while(b, i, |c| {
            c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_')
        })
    };
    let host = s.get(host_start..host_end).unwrap_or("");
    if !valid_host(host) {
        return Err(err("bad sent-by host"));
    }
    i = skip_ws(b, host_end);
    let mut port = None;
    if b.get(i) == Some(&b':') {
        i = skip_ws(b, i + 1);
        let end = take_while(b, i, |c| c.is_ascii_digit());
        port = Some(
            crate::chars::parse_port(s.get(i..end).unwrap_or("")).ok_or_else(|| err("bad port"))?,
        );
        i = end;
    }
    let rest = s.get(i..).unwrap_or("");
    let used = for_each_param_until(rest, ParamStyle::Header, in_list, on_param).map_err(err)?;
    Ok((
        ViaParts {
            transport,
            host,
            port,
        },
        i.saturating_add(used),
    ))
}

/// Validate the first via-parm of a header value without allocating (and without
/// looking at the following via-parms).
pub(crate) fn validate_first(value: &str) -> Result<(), HeaderError> {
    parse_parts_until(value, true, |_, _| {}).map(|_| ())
}

/// The first via-parm of a header value, borrowed from it: what a proxy reads on every
/// message (sent-by, `branch`, `rport`, `received`) without the allocations of [`Via`].
/// It accepts exactly what [`Via::parse`] accepts, and its fields and parameters read the
/// same, except that `transport` is as written (compare it case-insensitively).
///
/// ```
/// use weir_message::ViaRef;
/// let v = ViaRef::parse("SIP/2.0/udp 192.0.2.1:5060;rport;branch=z9hG4bK77, SIP/2.0/UDP b").unwrap();
/// assert_eq!((v.transport, v.host, v.port), ("udp", "192.0.2.1", Some(5060)));
/// assert_eq!(v.branch(), Some("z9hG4bK77"));
/// assert_eq!(v.rport(), Some(None));
/// assert!(v.more);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ViaRef<'a> {
    /// Transport as written.
    pub transport: &'a str,
    /// Host as written (IPv6 with brackets).
    pub host: &'a str,
    /// Port.
    pub port: Option<u16>,
    /// Whether more via-parms follow on the same line (after a comma).
    pub more: bool,
    /// The parameters' text (`;name=value...`), already validated.
    params: &'a str,
    /// The first `branch`, `received` and `rport`, noted while parsing.
    branch: Option<Option<&'a str>>,
    received: Option<Option<&'a str>>,
    rport: Option<Option<&'a str>>,
}

impl<'a> ViaRef<'a> {
    /// Parse the first via-parm of a header value.
    pub fn parse(value: &'a str) -> Result<ViaRef<'a>, HeaderError> {
        let mut first_param = None;
        let (mut branch, mut received, mut rport) = (None, None, None);
        let (p, end) = parse_parts_until(value, true, |n: &'a str, v| {
            if first_param.is_none() {
                first_param = Some(n);
            }
            let slot = if n.eq_ignore_ascii_case("branch") {
                &mut branch
            } else if n.eq_ignore_ascii_case("received") {
                &mut received
            } else if n.eq_ignore_ascii_case("rport") {
                &mut rport
            } else {
                return;
            };
            if slot.is_none() {
                *slot = Some(v);
            }
        })?;
        // The parameters start at the `;` before the first name.
        let params = match first_param {
            Some(n) => {
                let at = (n.as_ptr() as usize).saturating_sub(value.as_ptr() as usize);
                let semi = value.get(..at).and_then(|s| s.rfind(';')).unwrap_or(at);
                value.get(semi..end).unwrap_or("")
            }
            None => "",
        };
        Ok(ViaRef {
            transport: p.transport,
            host: p.host,
            port: p.port,
            more: end < value.len(),
            params,
            branch,
            received,
            rport,
        })
    }

    /// `None`: absent; `Some(None)`: flag without value.
    pub fn param(&self, name: &str) -> Option<Option<&'a str>> {
        let mut found = None;
        // Validated by `parse`, so this cannot fail.
        let _ = for_each_param_until(self.params, ParamStyle::Header, true, |n, v| {
            if found.is_none() && n.eq_ignore_ascii_case(name) {
                found = Some(v);
            }
        });
        found
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&'a str> {
        self.branch.flatten()
    }

    /// The `received` parameter.
    pub fn received(&self) -> Option<&'a str> {
        self.received.flatten()
    }

    /// As [`Via::rport`].
    pub fn rport(&self) -> Option<Option<u16>> {
        self.rport.map(|v| v.and_then(crate::chars::parse_port))
    }
}

/// A [`ViaRef`] as byte ranges of the header value it was parsed from, so a parsed
/// message can keep its top Via without a lifetime and hand it out again without parsing
/// ([`ViaSpans::of`], [`ViaSpans::get`]). Values past 64 KiB are not kept. 28 bytes: a
/// message is moved by value many times.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ViaSpans {
    transport: Span,
    host: Span,
    params: Span,
    branch: Span,
    received: Span,
    rport: Span,
    port: u16,
    /// [`ViaSpans::HAS_PORT`], [`ViaSpans::MORE`].
    flags: u8,
}

impl ViaSpans {
    const HAS_PORT: u8 = 1;
    const MORE: u8 = 2;

    /// The spans of `via`, parsed from `value`; `None` if a part lies outside it or
    /// beyond 64 KiB.
    pub(crate) fn of(value: &str, via: &ViaRef<'_>) -> Option<ViaSpans> {
        let mut flags = 0;
        if via.port.is_some() {
            flags |= ViaSpans::HAS_PORT;
        }
        if via.more {
            flags |= ViaSpans::MORE;
        }
        Some(ViaSpans {
            transport: Span::of(value, via.transport)?,
            host: Span::of(value, via.host)?,
            params: Span::of(value, via.params)?,
            branch: Span::of_param(value, via.branch)?,
            received: Span::of_param(value, via.received)?,
            rport: Span::of_param(value, via.rport)?,
            port: via.port.unwrap_or(0),
            flags,
        })
    }

    /// The [`ViaRef`] these spans describe in `value` (the same value they were taken
    /// from).
    pub(crate) fn get<'a>(&self, value: &'a str) -> Option<ViaRef<'a>> {
        Some(ViaRef {
            transport: self.transport.get(value)?,
            host: self.host.get(value)?,
            port: (self.flags & ViaSpans::HAS_PORT != 0).then_some(self.port),
            more: self.flags & ViaSpans::MORE != 0,
            params: self.params.get(value)?,
            branch: self.branch.get_param(value)?,
            received: self.received.get_param(value)?,
            rport: self.rport.get_param(value)?,
        })
    }
}

impl Via {
    /// Parse the first via-parm of a header value.
    pub fn parse(value: &str) -> Result<Via, HeaderError> {
        let mut params = Vec::new();
        let (p, _) = parse_parts_until(value, true, |n, v| params.push(own_param(n, v)))?;
        Ok(Via {
            transport: p.transport.to_ascii_uppercase(),
            host: p.host.to_string(),
            port: p.port,
            params,
        })
    }

    fn parse_one(s: &str) -> Result<Via, HeaderError> {
        let mut params = Vec::new();
        let p = parse_parts(s, |n, v| params.push(own_param(n, v)))?;
        Ok(Via {
            transport: p.transport.to_ascii_uppercase(),
            host: p.host.to_string(),
            port: p.port,
            params,
        })
    }

    /// Parse every via-parm of a header value (split on commas outside quoted strings).
    pub fn parse_list(value: &str) -> Result<Vec<Via>, HeaderError> {
        split_list(value).map(Self::parse_one).collect()
    }

    /// What is left of a Via line when its first via-parm goes (RFC 3261 §16.7 step 9):
    /// the other via-parms as written, sharing `value`'s storage. `None` when the line
    /// holds only one, or when it does not parse as [`Via::parse_list`] would (then the
    /// whole line goes). The via-parms are checked without being built.
    ///
    /// ```
    /// use weir_message::{Text, Via};
    /// let line = Text::from("SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/udp  b ;x=1");
    /// assert_eq!(Via::rest_of_line(&line).unwrap(), "SIP/2.0/udp  b ;x=1");
    /// assert!(Via::rest_of_line(&Text::from("SIP/2.0/UDP a")).is_none());
    /// assert!(Via::rest_of_line(&Text::from("SIP/2.0/UDP a, junk")).is_none());
    /// ```
    pub fn rest_of_line(value: &Text) -> Option<Text> {
        let (_, rest) = split_first(value)?;
        Via::is_valid_list(value).then(|| value.slice_ref(rest.trim_matches([' ', '\t'])))
    }

    /// [`Via::rest_of_line`] for a line whose first via-parm the caller has already
    /// parsed (a response matched by its top Via's branch, read with
    /// [`ViaRef::parse`]): only the others are checked, and the first is not parsed
    /// again.
    ///
    /// ```
    /// use weir_message::{Text, Via};
    /// let line = Text::from("SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/udp  b ;x=1");
    /// assert_eq!(Via::rest_after_parsed_first(&line), Via::rest_of_line(&line));
    /// assert!(Via::rest_after_parsed_first(&Text::from("SIP/2.0/UDP a, junk")).is_none());
    /// ```
    pub fn rest_after_parsed_first(value: &Text) -> Option<Text> {
        let (_, rest) = split_first(value)?;
        Via::is_valid_list(rest).then(|| value.slice_ref(rest.trim_matches([' ', '\t'])))
    }

    /// Whether [`Via::parse_list`] would parse `value` into at least one via-parm
    /// (checked without building them).
    pub fn is_valid_list(value: &str) -> bool {
        let mut n = 0usize;
        for item in split_list(value) {
            if parse_parts(item, |_, _| {}).is_err() {
                return false;
            }
            n += 1;
        }
        n > 0
    }

    /// `None`: absent; `Some(None)`: flag without value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }

    /// The `branch` parameter.
    pub fn branch(&self) -> Option<&str> {
        self.param("branch").flatten()
    }

    /// The `received` parameter.
    pub fn received(&self) -> Option<&str> {
        self.param("received").flatten()
    }

    /// `None`: no `rport`; `Some(None)`: `rport` flag (or unparseable value);
    /// `Some(Some(p))`: `rport=p`.
    pub fn rport(&self) -> Option<Option<u16>> {
        self.param("rport")
            .map(|v| v.and_then(crate::chars::parse_port))
    }

    /// Replace the first parameter named `name` or append it.
    pub fn set_param(&mut self, name: &str, value: Option<String>) {
        crate::chars::set_param(&mut self.params, name, value);
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        fmt_params(f, &self.params)
    }
}

/// A list header value cut at its first comma outside quoted strings and `<...>`, as
/// [`Via::parse_list`] splits it: the first item (trimmed of SP/HT) and the text after
/// the comma. `None` without such a comma.
fn split_first(value: &str) -> Option<(&str, &str)> {
    let mut items = split_list(value);
    let first = items.next()?;
    Some((first, items.rest()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple() {
        let v = Via::parse("SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9;received=192.0.2.9")
            .unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "192.0.2.1");
        assert_eq!(v.port, Some(5060));
        assert_eq!(v.branch(), Some("z9hG4bK74bf9"));
        assert_eq!(v.received(), Some("192.0.2.9"));
        assert_eq!(v.rport(), None);
    }

    #[test]
    fn whitespace_everywhere() {
        // From RFC 4475 wsinv (after unfolding).
        let v = Via::parse("SIP  /   2.0 /UDP 192.0.2.2;rport;branch=390skdjuw").unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.host, "192.0.2.2");
        assert_eq!(v.rport(), Some(None));
        let list = Via::parse_list(
            "SIP  / 2.0  / TCP     spindle.example.com   ; branch  =   z9hG4bK9ikj8  , SIP  /    2.0   / UDP  192.168.255.111   ; branch= z9hG4bK30239",
        )
        .unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[0].host, "spindle.example.com");
        assert_eq!(list[0].branch(), Some("z9hG4bK9ikj8"));
        assert_eq!(list[1].transport, "UDP");
        assert_eq!(list[1].branch(), Some("z9hG4bK30239"));
        let v = Via::parse("SIP/2.0/TCP example.com : 5061 ;branch=x").unwrap();
        assert_eq!(v.port, Some(5061));
    }

    #[test]
    fn ipv6_rport_quoted_and_unknown_transport() {
        let v = Via::parse(
            "SIP/2.0/TLS [2001:db8::9]:5061;rport=5070;received=2001:db8::9;x=\"a;b,c\";branch=z9hG4bK1",
        )
        .unwrap();
        assert_eq!(v.host, "[2001:db8::9]");
        assert_eq!(v.rport(), Some(Some(5070)));
        assert_eq!(v.received(), Some("2001:db8::9"));
        assert_eq!(v.param("X"), Some(Some("\"a;b,c\"")));
        assert_eq!(v.branch(), Some("z9hG4bK1"));
        let list = Via::parse_list(
            "SIP/2.0/UDP a.example.com;x=\"1,2\", SIP/2.0/NEWTRANSPORT b.example.com",
        )
        .unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].transport, "NEWTRANSPORT");
    }

    #[test]
    fn display_and_set_param() {
        let mut v = Via::parse("SIP/2.0/udp host.example.com;branch=z9hG4bKx;rport").unwrap();
        v.set_param("rport", Some("5062".into()));
        v.set_param("received", Some("192.0.2.7".into()));
        assert_eq!(
            v.to_string(),
            "SIP/2.0/UDP host.example.com;branch=z9hG4bKx;rport=5062;received=192.0.2.7"
        );
        assert_eq!(Via::parse(&v.to_string()).unwrap(), v);
    }

    #[test]
    fn via_ref_reads_as_via() {
        for v in [
            "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK74bf9;received=192.0.2.9",
            "SIP  /   2.0 /udp 192.0.2.2 ; rport ;branch=390skdjuw",
            "SIP/2.0/TLS [2001:db8::9]:5061;rport=5070;received=2001:db8::9;x=\"a;b,c\";branch=z9hG4bK1",
            "SIP/2.0/UDP a.example.com;x=\"1,2\", SIP/2.0/NEWTRANSPORT b.example.com",
            "SIP/2.0/TCP example.com : 5061 ;branch=x , SIP/2.0/UDP b;branch=y",
            "SIP/2.0/UDP host",
            "SIP/2.0/UDP host;RPORT=5;Branch=b;branch=c",
        ] {
            let full = Via::parse(v).unwrap();
            let r = ViaRef::parse(v).unwrap();
            assert_eq!(r.transport.to_ascii_uppercase(), full.transport, "{v}");
            assert_eq!((r.host, r.port), (full.host.as_str(), full.port), "{v}");
            for name in ["branch", "rport", "received", "x", "absent"] {
                assert_eq!(r.param(name), full.param(name), "{v} {name}");
            }
            assert_eq!(r.branch(), full.branch());
            assert_eq!(r.rport(), full.rport());
            assert_eq!(r.received(), full.received());
            assert_eq!(r.more, Via::parse_list(v).unwrap().len() > 1, "{v}");
        }
        for bad in [
            "",
            "SIP/2.0/UDP",
            "SIP/2.0/UDP 192.0.2.1 garbage",
            "SIP/2.0/UDP h;x=\"u",
        ] {
            assert!(ViaRef::parse(bad).is_err(), "{bad:?}");
            assert!(Via::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "SIP/2.0/UDP",
            "SIP/2.0/UDP ",
            "SIP/2.0 192.0.2.1",
            "SIP/3.0/UDP 192.0.2.1",
            "HTTP/2.0/UDP 192.0.2.1",
            "SIP/2.0/UDP 192.0.2.1:",
            "SIP/2.0/UDP 192.0.2.1:70000",
            "SIP/2.0/UDP [2001:db8::1",
            "SIP/2.0/UDP 192.0.2.15;;,;,,",
            "SIP/2.0/UDP 192.0.2.1;branch=",
            "SIP/2.0/UDP 192.0.2.1 garbage",
            "SIP/2.0/UDP 192.0.2.1;x=\"unterminated",
        ] {
            assert!(Via::parse_list(bad).is_err(), "{bad:?} should fail");
        }
    }
}
