//! `name-addr` / `addr-spec` with header parameters (From, To, Contact, Route,
//! Record-Route, Refer-To, ...), RFC 3261 §20.10 and §25.1.

use std::fmt;

use crate::chars::{find_byte, split_byte};
use crate::chars::{
    find_param, fmt_params, for_each_param, is_token_byte, is_ws, own_param, quoted_end,
    split_list, trim_ws, ParamStyle,
};
use crate::error::HeaderError;
use crate::uri::Uri;

/// A name-addr (`"Display" <uri>;params`) or addr-spec (`uri;params`).
///
/// ```
/// use weir_message::NameAddr;
/// let a = NameAddr::parse("\"Alice\" <sip:alice@example.com>;tag=1928301774").unwrap();
/// assert_eq!(a.display.as_deref(), Some("\"Alice\""));
/// assert_eq!(a.tag(), Some("1928301774"));
/// assert_eq!(a.uri.host, "example.com");
/// // Unbracketed: the parameters belong to the header, not the URI.
/// let b = NameAddr::parse("sip:bob@example.com;tag=xyz").unwrap();
/// assert!(!b.bracketed);
/// assert_eq!(b.tag(), Some("xyz"));
/// assert_eq!(b.to_string(), "<sip:bob@example.com>;tag=xyz");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NameAddr {
    /// Display name as written: a quoted-string keeps its quotes, a token sequence is
    /// trimmed. `None` when absent or empty.
    pub display: Option<String>,
    /// The URI (sip, sips or tel).
    pub uri: Uri,
    /// Header parameters in order (quoted values keep their quotes).
    pub params: Vec<(String, Option<String>)>,
    /// Whether the URI was enclosed in `<>`.
    pub bracketed: bool,
}

pub(crate) struct NameAddrParts<'a> {
    pub(crate) display: Option<&'a str>,
    pub(crate) uri: &'a str,
    pub(crate) bracketed: bool,
}

fn err(detail: &'static str) -> HeaderError {
    HeaderError::invalid("name-addr", detail)
}

/// Split a name-addr / addr-spec into its pieces; parameters go to `on_param`. The URI is
/// not validated here.
pub(crate) fn parse_parts<'a>(
    s: &'a str,
    on_param: impl FnMut(&'a str, Option<&'a str>),
) -> Result<NameAddrParts<'a>, HeaderError> {
    let s = trim_ws(s);
    let b = s.as_bytes();
    if b.is_empty() {
        return Err(err("empty"));
    }
    let (display, uri, rest, bracketed) = if b.first() == Some(&b'"') {
        let q = quoted_end(b, 0).ok_or_else(|| err("unterminated quoted display name"))?;
        let display = s.get(..=q).unwrap_or("");
        let after = trim_ws(s.get(q + 1..).unwrap_or(""));
        let inner = after
            .strip_prefix('<')
            .ok_or_else(|| err("display name not followed by <"))?;
        let (uri, rest) = split_byte(inner, b'>').ok_or_else(|| err("missing >"))?;
        (Some(display), uri, rest, true)
    } else if let Some(lt) = find_byte(s, b'<') {
        let display = trim_ws(s.get(..lt).unwrap_or(""));
        if !display.bytes().all(|c| is_token_byte(c) || is_ws(c)) {
            return Err(err("display name is not tokens"));
        }
        let inner = s.get(lt + 1..).unwrap_or("");
        let (uri, rest) = split_byte(inner, b'>').ok_or_else(|| err("missing >"))?;
        let display = if display.is_empty() {
            None
        } else {
            Some(display)
        };
        (display, uri, rest, true)
    } else {
        // addr-spec: parameters after the first ';' belong to the header.
        let (uri, rest) = match find_byte(s, b';') {
            Some(i) => (s.get(..i).unwrap_or(""), s.get(i..).unwrap_or("")),
            None => (s, ""),
        };
        if uri.contains('?') || uri.contains(',') {
            return Err(err("addr-spec with ? or , must be enclosed in <>"));
        }
        if uri.contains('>') {
            return Err(err("stray >"));
        }
        (None, uri, rest, false)
    };
    // Spaces inside <> are tolerated (RFC 4475 badaspec), but not inside the URI.
    let uri = trim_ws(uri);
    if uri.is_empty() || uri.bytes().any(|c| is_ws(c) || c == b'<' || c == b'>') {
        return Err(err("bad URI"));
    }
    for_each_param(rest, ParamStyle::Header, on_param).map_err(err)?;
    Ok(NameAddrParts {
        display,
        uri,
        bracketed,
    })
}

/// Validate a From/To-like value: name-addr / addr-spec structure and parameters, URI
/// checked structurally (`scheme ":" 1*uric`); its `tag` param (as [`tag_of`] finds
/// it) from the same pass.
pub(crate) fn validate_tag(value: &str) -> Result<Option<&str>, HeaderError> {
    let (p, tag) = parts_and_tag(value)?;
    crate::uri::validate_light(p.uri)?;
    Ok(tag)
}

/// The `tag` parameter of a From/To-like value, without validating the URI.
pub(crate) fn tag_of(value: &str) -> Option<&str> {
    parts_and_tag(value).ok()?.1
}

/// The parts of a From/To-like value and its first `tag` param with a value.
fn parts_and_tag(value: &str) -> Result<(NameAddrParts<'_>, Option<&str>), HeaderError> {
    let mut tag = None;
    let p = parse_parts(value, |n, v| {
        if tag.is_none() && n.eq_ignore_ascii_case("tag") {
            tag = v;
        }
    })?;
    Ok((p, tag))
}

impl NameAddr {
    /// Parse one name-addr or addr-spec.
    pub fn parse(s: &str) -> Result<NameAddr, HeaderError> {
        let mut params = Vec::new();
        let p = parse_parts(s, |n, v| params.push(own_param(n, v)))?;
        Ok(NameAddr {
            display: p.display.map(str::to_string),
            uri: Uri::parse(p.uri)?,
            params,
            bracketed: p.bracketed,
        })
    }

    /// Parse a comma-separated list (commas inside quotes and `<>` respected). Empty
    /// elements are errors.
    pub fn parse_list(value: &str) -> Result<Vec<NameAddr>, HeaderError> {
        split_list(value).map(NameAddr::parse).collect()
    }

    /// `None`: absent; `Some(None)`: flag without value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        find_param(&self.params, name)
    }

    /// The `tag` parameter.
    pub fn tag(&self) -> Option<&str> {
        self.param("tag").flatten()
    }

    /// Replace the first parameter named `name` or append it.
    pub fn set_param(&mut self, name: &str, value: Option<String>) {
        crate::chars::set_param(&mut self.params, name, value);
    }
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.display.is_none() && self.params.is_empty() && !self.bracketed {
            return write!(f, "{}", self.uri);
        }
        if let Some(d) = &self.display {
            write!(f, "{d} ")?;
        }
        write!(f, "<{}>", self.uri)?;
        fmt_params(f, &self.params)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms() {
        let a = NameAddr::parse("<sip:carol@example.com>").unwrap();
        assert!(a.bracketed);
        assert_eq!(a.display, None);
        assert_eq!(a.to_string(), "<sip:carol@example.com>");

        let a =
            NameAddr::parse("Bob Smith <sip:bob@example.com;transport=tcp>;tag=a6c85cf").unwrap();
        assert_eq!(a.display.as_deref(), Some("Bob Smith"));
        assert_eq!(a.uri.transport(), Some("tcp"));
        assert_eq!(a.tag(), Some("a6c85cf"));
        assert_eq!(
            a.to_string(),
            "Bob Smith <sip:bob@example.com;transport=tcp>;tag=a6c85cf"
        );

        // lwsdisp: no LWS between display name and <
        let a = NameAddr::parse("caller<sip:caller@example.com>;tag=323").unwrap();
        assert_eq!(a.display.as_deref(), Some("caller"));
        assert_eq!(a.tag(), Some("323"));
        let a = NameAddr::parse("\"caller\"<sip:caller@example.com>").unwrap();
        assert_eq!(a.display.as_deref(), Some("\"caller\""));

        // quoted display with escapes and specials
        let a = NameAddr::parse(r#""J \"Rosenberg\", <x>" <sip:jdrosen@example.com>"#).unwrap();
        assert_eq!(a.display.as_deref(), Some(r#""J \"Rosenberg\", <x>""#));

        // addr-spec: params are header params
        let a = NameAddr::parse("sip:user@example.com;tag=1;expires=60").unwrap();
        assert!(!a.bracketed);
        assert!(a.uri.params.is_empty());
        assert_eq!(a.param("expires"), Some(Some("60")));

        // tel URI and semicolon user part inside brackets
        let a = NameAddr::parse("<tel:+1-201-555-0123>").unwrap();
        assert_eq!(a.uri.user.as_deref(), Some("+1-201-555-0123"));
        let a = NameAddr::parse("<sip:user;par=u%40example.net@example.com>;tag=9").unwrap();
        assert_eq!(a.uri.user.as_deref(), Some("user;par=u%40example.net"));
        assert_eq!(a.tag(), Some("9"));

        // badaspec leniency: spaces inside <>
        let a = NameAddr::parse("\"Watson, Thomas\" < sip:t.watson@example.org >").unwrap();
        assert_eq!(a.uri.host, "example.org");
    }

    #[test]
    fn lists() {
        let l = NameAddr::parse_list(
            "\"A, B\" <sip:a@example.com>, <sip:b@example.com;lr>,sip:c@example.com",
        )
        .unwrap();
        assert_eq!(l.len(), 3);
        assert_eq!(l[0].display.as_deref(), Some("\"A, B\""));
        assert!(l[1].uri.has_lr());
        assert_eq!(l[2].uri.user.as_deref(), Some("c"));
        assert!(NameAddr::parse_list("<sip:a@example.com>,").is_err());
        assert!(NameAddr::parse_list("<sip:a@example.com>;;,;;,;").is_err());
    }

    #[test]
    fn rejects() {
        for bad in [
            "",
            "\"unterminated <sip:a@example.com>",
            "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            "<sip:a@example.com",
            "sip:a@example.com>",
            "sip:user@example.com?Route=%3Csip:example.com%3E",
            "<sip:exa mple.com>",
            "<>",
            "<sip:a@example.com>;tag",
            "<sip:a@example.com> junk",
            "\"x\" sip:a@example.com",
        ] {
            let r = NameAddr::parse(bad);
            // "<...>;tag" (flag) is legal, so only check those that must fail.
            if bad.ends_with(";tag") {
                assert!(r.is_ok());
                continue;
            }
            assert!(r.is_err(), "{bad:?} should fail");
        }
    }

    /// `UriRef::of_name_addr` and `UriRef::parse` agree with the owning parsers: the same
    /// values accepted (and the same error), the same address.
    #[test]
    fn uri_ref_matches_the_owning_parse() {
        use crate::UriRef;
        let values = [
            "<sip:carol@example.com>",
            "Bob Smith <sip:bob@example.com;transport=tcp>;tag=a6c85cf",
            "caller<sip:caller@example.com>;tag=323",
            r#""J \"Rosenberg\", <x>" <sip:jdrosen@example.com>"#,
            "sip:user@example.com;tag=1;expires=60",
            "<tel:+1-201-555-0123>",
            "<sip:user;par=u%40example.net@example.com>;tag=9",
            "\"Watson, Thomas\" < sip:t.watson@example.org >",
            "<SIPS:Alice:pw@[2001:db8::1]:05061;lr?subject=x>",
            "<sip:127.0.0.1:5160>",
            "<sip:a@example.com>;tag",
            "",
            "\"unterminated <sip:a@example.com>",
            "Bell, Alexander <sip:a.g.bell@example.com>;tag=43",
            "<sip:a@example.com",
            "sip:user@example.com?Route=%3Csip:example.com%3E",
            "<sip:exa mple.com>",
            "<>",
            "<sip:a@example.com> junk",
            "<http://example.com>",
            "<sip:a@example.com:99999>",
            "<sip:a@[::1>",
            "<sip:%zz@example.com>",
            "<tel:abc>",
        ];
        for v in values {
            let owned = NameAddr::parse(v).map(|n| n.uri);
            let borrowed = UriRef::of_name_addr(v);
            match (&owned, &borrowed) {
                (Ok(u), Ok(r)) => assert_eq!(UriRef::from(u), *r, "{v:?}"),
                (Err(a), Err(b)) => assert_eq!(a, b, "{v:?}"),
                _ => panic!("{v:?}: {owned:?} against {borrowed:?}"),
            }
            if let Ok(u) = &owned {
                let text = u.to_string();
                assert_eq!(UriRef::parse(&text), Ok(UriRef::from(u)), "{text:?}");
            }
        }
    }

    #[test]
    fn tag_helpers() {
        assert_eq!(tag_of("<urn:service:sos>;tag=5"), Some("5"));
        assert_eq!(tag_of("<sip:a@example.com>"), None);
        assert!(validate_tag("<urn:service:sos>;tag=5") == Ok(Some("5")));
        assert!(validate_tag("Bell, Alexander <sip:a@example.com>").is_err());
    }
}
