//! SIP, SIPS and TEL URIs (RFC 3261 §19.1, RFC 3966).

use std::fmt;

use crate::chars::{
    all, class, escapes_valid, find_param, for_each_param, is, own_param, ParamStyle,
};
use crate::chars::{find_byte, split_byte};
use crate::error::HeaderError;

/// URI scheme.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `sip:`
    Sip,
    /// `sips:`
    Sips,
    /// `tel:` (RFC 3966)
    Tel,
}

impl Scheme {
    /// Lowercase scheme name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Sip => "sip",
            Scheme::Sips => "sips",
            Scheme::Tel => "tel",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A SIP, SIPS or TEL URI. Components are kept as written (escapes are not decoded).
///
/// For `tel:` URIs `user` holds the number (up to the first `;`), `host` is empty and the
/// number's parameters (`phone-context`, `ext`, ...) are in `params`.
///
/// ```
/// use weir_message::{Uri, Scheme};
/// let u = Uri::parse("sip:alice;day=tue@example.com:5060;transport=tcp;lr").unwrap();
/// assert_eq!(u.scheme, Scheme::Sip);
/// assert_eq!(u.user.as_deref(), Some("alice;day=tue"));
/// assert_eq!(u.port, Some(5060));
/// assert_eq!(u.transport(), Some("tcp"));
/// assert!(u.has_lr());
/// assert_eq!(u.to_string(), "sip:alice;day=tue@example.com:5060;transport=tcp;lr");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uri {
    /// Scheme.
    pub scheme: Scheme,
    /// User part (may contain `;`), or the telephone number of a `tel:` URI.
    pub user: Option<String>,
    /// Password (deprecated but legal).
    pub password: Option<String>,
    /// Host: hostname, IPv4 address or bracketed IPv6 reference as written; empty for `tel:`.
    pub host: String,
    /// Port.
    pub port: Option<u16>,
    /// URI parameters in order; names and values as written.
    pub params: Vec<(String, Option<String>)>,
    /// Raw header component after `?` (without the `?`).
    pub headers: Option<String>,
}

/// Borrowed parse result shared by [`Uri::parse`] and validation-only paths.
pub(crate) struct UriParts<'a> {
    pub(crate) scheme: Scheme,
    pub(crate) user: Option<&'a str>,
    pub(crate) password: Option<&'a str>,
    pub(crate) host: &'a str,
    pub(crate) port: Option<u16>,
    pub(crate) headers: Option<&'a str>,
}

/// The addressing pieces of a `sip:`, `sips:` or `tel:` URI, borrowed from the text they
/// were parsed from: what [`Uri::parse`] would give, validated the same way, without
/// allocating. For hot paths that only need to know whom a URI names (a registrar's
/// address of record, a location lookup).
///
/// ```
/// use weir_message::{NameAddr, Scheme, Uri, UriRef};
/// let v = "\"Bob\" <sip:Bob@Example.com:5070;transport=tcp>;tag=1";
/// let r = UriRef::of_name_addr(v).unwrap();
/// assert_eq!((r.scheme, r.user, r.host, r.port), (Scheme::Sip, Some("Bob"), "Example.com", Some(5070)));
/// let u = NameAddr::parse(v).unwrap().uri;
/// assert_eq!(r, UriRef::parse("sip:Bob@Example.com:5070;lr").unwrap());
/// assert_eq!((r.user, r.host), (u.user.as_deref(), u.host.as_str()));
/// assert!(UriRef::parse("http://example.com").is_err());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UriRef<'a> {
    /// Scheme.
    pub scheme: Scheme,
    /// User part as written, or the telephone number of a `tel:` URI.
    pub user: Option<&'a str>,
    /// Host as written (hostname, IPv4 address or bracketed IPv6 reference); empty for
    /// `tel:`.
    pub host: &'a str,
    /// Port.
    pub port: Option<u16>,
}

impl<'a> UriRef<'a> {
    /// Parse a URI as [`Uri::parse`] does (the same errors), keeping only its address.
    pub fn parse(s: &'a str) -> Result<UriRef<'a>, HeaderError> {
        parse_parts(s, |_, _| {}).map(UriRef::of_parts)
    }

    /// The URI of a name-addr or addr-spec (To, From, Contact): `NameAddr::parse(s)?.uri`
    /// with the same validation of the whole value, without allocating.
    pub fn of_name_addr(s: &'a str) -> Result<UriRef<'a>, HeaderError> {
        let p = crate::nameaddr::parse_parts(s, |_, _| {})?;
        UriRef::parse(p.uri)
    }

    fn of_parts(p: UriParts<'a>) -> UriRef<'a> {
        UriRef {
            scheme: p.scheme,
            user: p.user,
            host: p.host,
            port: p.port,
        }
    }
}

impl<'a> From<&'a Uri> for UriRef<'a> {
    fn from(u: &'a Uri) -> UriRef<'a> {
        UriRef {
            scheme: u.scheme,
            user: u.user.as_deref(),
            host: &u.host,
            port: u.port,
        }
    }
}

const WHAT: &str = "URI";

fn err(detail: &'static str) -> HeaderError {
    HeaderError::invalid(WHAT, detail)
}

#[inline(always)]
fn is_user_byte(b: u8) -> bool {
    is(b, class::USER)
}

#[inline(always)]
fn is_password_byte(b: u8) -> bool {
    is(b, class::PASSWORD)
}

#[inline(always)]
fn is_uric_byte(b: u8) -> bool {
    is(b, class::URIC)
}

/// Validate a host (hostname / IPv4 / `[IPv6]`).
pub(crate) fn valid_host(h: &str) -> bool {
    match h.as_bytes() {
        [] => false,
        [b'[', inner @ .., b']'] => {
            !inner.is_empty()
                && inner.contains(&b':')
                && inner
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
        }
        b => all(b, class::HOST),
    }
}

/// Split `host[:port]` where host may be a bracketed IPv6 reference.
pub(crate) fn split_hostport(s: &str) -> Result<(&str, Option<u16>), &'static str> {
    let (host, port) = if s.starts_with('[') {
        match find_byte(s, b']') {
            Some(close) => {
                let host = s.get(..=close).ok_or("bad host")?;
                let rest = s.get(close + 1..).unwrap_or("");
                if rest.is_empty() {
                    (host, None)
                } else {
                    (host, Some(rest.strip_prefix(':').ok_or("bad host")?))
                }
            }
            None => return Err("unterminated IPv6 reference"),
        }
    } else {
        match split_byte(s, b':') {
            Some((h, p)) => (h, Some(p)),
            None => (s, None),
        }
    };
    if !valid_host(host) {
        return Err("bad host");
    }
    let port = match port {
        Some(p) => Some(crate::chars::parse_port(p).ok_or("bad port")?),
        None => None,
    };
    Ok((host, port))
}

fn parse_scheme(s: &str) -> Result<(Scheme, &str), HeaderError> {
    let (scheme, rest) = split_byte(s, b':').ok_or_else(|| err("missing scheme"))?;
    let scheme = if scheme.eq_ignore_ascii_case("sip") {
        Scheme::Sip
    } else if scheme.eq_ignore_ascii_case("sips") {
        Scheme::Sips
    } else if scheme.eq_ignore_ascii_case("tel") {
        Scheme::Tel
    } else {
        return Err(err("unsupported scheme"));
    };
    Ok((scheme, rest))
}

fn valid_tel_number(n: &str) -> bool {
    let digits = n.strip_prefix('+').unwrap_or(n);
    !digits.is_empty()
        && digits
            .bytes()
            .any(|b| b.is_ascii_hexdigit() || b == b'*' || b == b'#')
        && digits
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || matches!(b, b'*' | b'#' | b'-' | b'.' | b'(' | b')'))
}

/// Parse the pieces of a sip/sips/tel URI, reporting parameters through `on_param`.
pub(crate) fn parse_parts<'a>(
    s: &'a str,
    mut on_param: impl FnMut(&'a str, Option<&'a str>),
) -> Result<UriParts<'a>, HeaderError> {
    // Every byte below is checked against a character class, which excludes whitespace,
    // controls and non-ASCII.
    let (scheme, rest) = parse_scheme(s)?;
    if scheme == Scheme::Tel {
        let (number, params) = match find_byte(rest, b';') {
            Some(i) => (rest.get(..i).unwrap_or(""), rest.get(i..).unwrap_or("")),
            None => (rest, ""),
        };
        if !valid_tel_number(number) {
            return Err(err("bad telephone number"));
        }
        for_each_param(params, ParamStyle::Uri, &mut on_param).map_err(err)?;
        return Ok(UriParts {
            scheme,
            user: Some(number),
            password: None,
            host: "",
            port: None,
            headers: None,
        });
    }
    // userinfo may contain '?' and ';' (user-unreserved) but never an unescaped '@', so
    // split it off first; then headers ('?'), then parameters (';').
    let (userinfo, hostpart) = match split_byte(rest, b'@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let (hostpart, headers) = match split_byte(hostpart, b'?') {
        Some((m, h)) => {
            if h.is_empty() || !escapes_valid(h.as_bytes()) || !h.bytes().all(is_uric_byte) {
                return Err(err("bad headers component"));
            }
            (m, Some(h))
        }
        None => (hostpart, None),
    };
    let (user, password) = match userinfo {
        Some(ui) => {
            let (u, p) = match split_byte(ui, b':') {
                Some((u, p)) => (u, Some(p)),
                None => (ui, None),
            };
            if u.is_empty() || !u.bytes().all(is_user_byte) || !escapes_valid(u.as_bytes()) {
                return Err(err("bad user part"));
            }
            if let Some(p) = p {
                if !p.bytes().all(is_password_byte) || !escapes_valid(p.as_bytes()) {
                    return Err(err("bad password"));
                }
            }
            (Some(u), p)
        }
        None => (None, None),
    };
    let (hostport, params) = match find_byte(hostpart, b';') {
        Some(i) => (
            hostpart.get(..i).unwrap_or(""),
            hostpart.get(i..).unwrap_or(""),
        ),
        None => (hostpart, ""),
    };
    let (host, port) = split_hostport(hostport).map_err(err)?;
    for_each_param(params, ParamStyle::Uri, &mut on_param).map_err(err)?;
    Ok(UriParts {
        scheme,
        user,
        password,
        host,
        port,
        headers,
    })
}

/// Validate any URI a header or Request-URI may carry: sip/sips/tel strictly, any other
/// scheme as an `absoluteURI` (scheme ":" 1*uric).
pub(crate) fn validate_any(s: &str) -> Result<(), HeaderError> {
    let Some((scheme, rest)) = split_byte(s, b':') else {
        return Err(err("missing scheme"));
    };
    let is_sip_like = ["sip", "sips", "tel"]
        .iter()
        .any(|k| scheme.eq_ignore_ascii_case(k));
    if is_sip_like {
        return parse_parts(s, |_, _| {}).map(|_| ());
    }
    let sb = scheme.as_bytes();
    let scheme_ok = matches!(sb.first(), Some(c) if c.is_ascii_alphabetic())
        && sb
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return Err(err("bad scheme"));
    }
    if rest.is_empty() || !rest.bytes().all(is_uric_byte) || !escapes_valid(rest.as_bytes()) {
        return Err(err("bad absolute URI"));
    }
    Ok(())
}

/// Cheap structural check used on From/To at parse time: `scheme ":" 1*uric` with valid
/// escapes. Every valid sip/sips/tel URI passes; the proxy does not interpret these URIs,
/// so their finer grammar is not enforced on the hot path.
pub(crate) fn validate_light(s: &str) -> Result<(), HeaderError> {
    let b = s.as_bytes();
    let colon = crate::chars::take_while(b, 0, |c| {
        c.is_ascii_alphanumeric() || matches!(c, b'+' | b'-' | b'.')
    });
    let scheme_ok = colon > 0 && b.first().is_some_and(u8::is_ascii_alphabetic);
    let rest = b.get(colon.saturating_add(1)..).unwrap_or(&[]);
    if !scheme_ok || b.get(colon) != Some(&b':') {
        return Err(err("bad scheme"));
    }
    if rest.is_empty() || !all(rest, class::URIC) || !escapes_valid(rest) {
        return Err(err("bad URI characters"));
    }
    Ok(())
}

impl Uri {
    /// Parse a `sip:`, `sips:` or `tel:` URI (scheme case-insensitive).
    pub fn parse(s: &str) -> Result<Uri, HeaderError> {
        let mut params = Vec::new();
        let p = parse_parts(s, |n, v| params.push(own_param(n, v)))?;
        Ok(Uri {
            scheme: p.scheme,
            user: p.user.map(str::to_string),
            password: p.password.map(str::to_string),
            host: p.host.to_string(),
            port: p.port,
            params,
            headers: p.headers.map(str::to_string),
        })
    }

    /// `None`: parameter absent; `Some(None)`: present without value.
    pub fn param(&self, n: &str) -> Option<Option<&str>> {
        find_param(&self.params, n)
    }

    /// Whether the `lr` parameter is present (loose routing).
    pub fn has_lr(&self) -> bool {
        self.param("lr").is_some()
    }

    /// Value of the `transport` parameter.
    pub fn transport(&self) -> Option<&str> {
        self.param("transport").flatten()
    }

    /// Value of the `maddr` parameter.
    pub fn maddr(&self) -> Option<&str> {
        self.param("maddr").flatten()
    }

    /// Remove every parameter named `n` (case-insensitive).
    pub fn remove_param(&mut self, n: &str) {
        self.params.retain(|(k, _)| !k.eq_ignore_ascii_case(n));
    }

    /// Replace the first parameter named `n` or append it.
    pub fn set_param(&mut self, n: &str, v: Option<String>) {
        crate::chars::set_param(&mut self.params, n, v);
    }
}

impl fmt::Display for Uri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut s = String::with_capacity(self.host.len() + 32);
        self.push_to(&mut s);
        f.write_str(&s)
    }
}

impl Uri {
    /// Append the URI as [`Display`](fmt::Display) prints it (scheme lowercase, port
    /// in decimal, everything else as written), without `core::fmt`: the registrar
    /// prints every Contact URI it saves.
    ///
    /// ```
    /// use weir_message::Uri;
    /// let u = Uri::parse("SIP:alice:pw@Example.com:05060;transport=tcp;lr?h=v").unwrap();
    /// let mut s = String::from("<");
    /// u.push_to(&mut s);
    /// assert_eq!(s, "<sip:alice:pw@Example.com:5060;transport=tcp;lr?h=v");
    /// assert_eq!(s[1..], u.to_string());
    /// ```
    pub fn push_to(&self, out: &mut String) {
        out.push_str(self.scheme.as_str());
        out.push(':');
        if let Some(u) = &self.user {
            out.push_str(u);
            if self.scheme != Scheme::Tel {
                if let Some(p) = &self.password {
                    out.push(':');
                    out.push_str(p);
                }
                out.push('@');
            }
        }
        if self.scheme != Scheme::Tel {
            out.push_str(&self.host);
            if let Some(p) = self.port {
                out.push(':');
                crate::digits::push_dec(out, u64::from(p));
            }
        }
        for (n, v) in &self.params {
            out.push(';');
            out.push_str(n);
            if let Some(v) = v {
                out.push('=');
                out.push_str(v);
            }
        }
        if self.scheme != Scheme::Tel {
            if let Some(h) = &self.headers {
                out.push('?');
                out.push_str(h);
            }
        }
    }
}

impl std::str::FromStr for Uri {
    type Err = HeaderError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uri::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt(s: &str) -> Uri {
        let u = Uri::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
        assert_eq!(u.to_string(), s, "round trip");
        u
    }

    #[test]
    fn basic_sip() {
        let u = rt("sip:alice@example.com");
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.host, "example.com");
        assert_eq!(u.port, None);
        assert!(u.params.is_empty());
        let u = rt("sips:example.com:5061");
        assert_eq!(u.scheme, Scheme::Sips);
        assert_eq!(u.user, None);
        assert_eq!(u.port, Some(5061));
        let u = Uri::parse("SIP:bob@EXAMPLE.com").unwrap();
        assert_eq!(u.scheme, Scheme::Sip);
        assert_eq!(u.host, "EXAMPLE.com");
    }

    #[test]
    fn params_headers_password() {
        let u = rt("sip:bob:secret@192.0.2.4:5070;transport=udp;lr;maddr=192.0.2.9?subject=x&priority=urgent");
        assert_eq!(u.password.as_deref(), Some("secret"));
        assert_eq!(u.transport(), Some("udp"));
        assert_eq!(u.maddr(), Some("192.0.2.9"));
        assert!(u.has_lr());
        assert_eq!(u.param("LR"), Some(None));
        assert_eq!(u.param("nope"), None);
        assert_eq!(u.headers.as_deref(), Some("subject=x&priority=urgent"));
        let mut u = u;
        u.remove_param("lr");
        assert!(!u.has_lr());
        u.set_param("transport", Some("tcp".into()));
        u.set_param("x", None);
        assert_eq!(
            u.to_string(),
            "sip:bob:secret@192.0.2.4:5070;transport=tcp;maddr=192.0.2.9;x?subject=x&priority=urgent"
        );
    }

    #[test]
    fn semicolon_in_user_and_escapes() {
        let u = rt("sip:user;par=u%40example.net@example.com");
        assert_eq!(u.user.as_deref(), Some("user;par=u%40example.net"));
        assert_eq!(u.host, "example.com");
        let u = rt("sip:null-%00-null@example.com");
        assert_eq!(u.user.as_deref(), Some("null-%00-null"));
        assert!(Uri::parse("sip:bad%zzescape@example.com").is_err());
        assert!(Uri::parse("sip:bad%4@example.com").is_err());
    }

    #[test]
    fn odd_but_legal_userinfo() {
        // RFC 4475 intmeth Request-URI: '?', ';', ',' and '/' are legal in the user part.
        let s = "sip:1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*:&it+has=1,weird!*pas$wo~d_too.(doesn't-it)@example.com";
        let u = rt(s);
        assert_eq!(
            u.user.as_deref(),
            Some("1_unusual.URI~(to-be!sure)&isn't+it$/crazy?,/;;*")
        );
        assert_eq!(
            u.password.as_deref(),
            Some("&it+has=1,weird!*pas$wo~d_too.(doesn't-it)")
        );
        assert_eq!(u.host, "example.com");
        assert_eq!(u.headers, None);
        let u = rt("sip:sips%3Auser%40example.com@example.net");
        assert_eq!(u.host, "example.net");
        let u = rt("sip:cal%6Cer@host5.example.net;%6C%72;n%61me=v%61lue%25%31");
        assert_eq!(u.param("%6C%72"), Some(None));
    }

    #[test]
    fn ipv6() {
        let u = rt("sip:[2001:db8::10]:5060;lr");
        assert_eq!(u.host, "[2001:db8::10]");
        assert_eq!(u.port, Some(5060));
        let u = rt("sip:alice@[2001:db8::10]");
        assert_eq!(u.port, None);
        assert!(Uri::parse("sip:[2001:db8::10").is_err());
        assert!(Uri::parse("sip:[2001:db8::10]x").is_err());
        assert!(Uri::parse("sip:[zz]").is_err());
    }

    #[test]
    fn tel() {
        let u = rt("tel:+1-201-555-0123");
        assert_eq!(u.scheme, Scheme::Tel);
        assert_eq!(u.user.as_deref(), Some("+1-201-555-0123"));
        assert_eq!(u.host, "");
        let u = rt("tel:7042;phone-context=example.com");
        assert_eq!(u.param("phone-context"), Some(Some("example.com")));
        assert!(Uri::parse("tel:").is_err());
        assert!(Uri::parse("tel:abc-xyz").is_err());
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "sip:",
            "sip:@example.com",
            "example.com",
            "http://example.com/",
            "sip:example.com:",
            "sip:example.com:99999",
            "sip:example.com:5060x",
            "sip:user@exa mple.com",
            "sip:user@<example.com>",
            "sip:example.com;",
            "sip:example.com;=x",
            "sip:example.com;a=",
            "sip:example.com?",
            "sip:us\"er@example.com",
            "sip:example.com;lr\r\n",
        ] {
            assert!(Uri::parse(bad).is_err(), "{bad:?} should fail");
        }
    }

    #[test]
    fn validate_any_scheme() {
        assert!(validate_any("soap.beep://192.0.2.103:3002").is_ok());
        assert!(validate_any("urn:service:sos").is_ok());
        assert!(validate_any("sip:example.com").is_ok());
        assert!(validate_any("sip:exa mple.com").is_err());
        assert!(validate_any("1abc:x").is_err());
        assert!(validate_any("abc:").is_err());
        assert!(validate_any("<sip:example.com>").is_err());
        assert!(validate_any("noscheme").is_err());
    }
}
