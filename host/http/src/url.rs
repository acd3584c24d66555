//! URL parsing and normalisation for the two schemes the client speaks.
//!
//! Deliberately strict: the normalised form is what an [`crate::Allowlist`] matches, so
//! anything a server might read differently from the string we compare (dot segments,
//! encoded slashes, backslashes, userinfo, numeric host spellings such as `127.1`) is
//! refused instead of being interpreted.

use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use crate::HttpError;

/// Longest URL accepted; push-service URLs are far shorter.
const MAX_URL_LEN: usize = 8192;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Scheme {
    Http,
    Https,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Host {
    Ip(IpAddr),
    /// A DNS name, lower-cased.
    Name(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Url {
    pub(crate) scheme: Scheme,
    pub(crate) host: Host,
    pub(crate) port: u16,
    /// `/path?query`, never empty, fragment removed.
    pub(crate) target: String,
}

// === Scheme ===

impl Scheme {
    pub(crate) fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
}

// === Url ===

impl Url {
    pub(crate) fn parse(s: &str) -> Result<Url, HttpError> {
        let bad = |why: &str| HttpError::InvalidUrl(format!("{why}: {}", shorten(s)));
        if s.len() > MAX_URL_LEN {
            return Err(bad("longer than 8192 bytes"));
        }
        // Printable ASCII only: no spaces, CR/LF or other bytes that could split the
        // request line; callers percent-encode.
        if let Some(c) = s.chars().find(|c| !c.is_ascii_graphic()) {
            return Err(bad(&format!("character {c:?} must be percent-encoded")));
        }
        if s.contains('\\') {
            return Err(bad("backslash"));
        }
        let (scheme, rest) = s.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let scheme = if scheme.eq_ignore_ascii_case("http") {
            Scheme::Http
        } else if scheme.eq_ignore_ascii_case("https") {
            Scheme::Https
        } else {
            return Err(bad("scheme is not http or https"));
        };
        let auth_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(auth_end);
        if authority.contains('@') {
            return Err(bad("userinfo is not supported"));
        }
        let (host, port) = parse_authority(authority).map_err(&bad)?;
        let port = match port {
            None => scheme.default_port(),
            Some(p) => p,
        };
        let tail = tail.split_once('#').map_or(tail, |(t, _)| t);
        let target = if tail.starts_with('/') {
            tail.to_string()
        } else {
            format!("/{tail}")
        };
        check_target(&target).map_err(bad)?;
        Ok(Url {
            scheme,
            host,
            port,
            target,
        })
    }

    pub(crate) fn is_https(&self) -> bool {
        self.scheme == Scheme::Https
    }

    /// `host[:port]` as written in `Host` and in the normalised URL: IPv6 in brackets,
    /// the port only when it is not the scheme's default.
    pub(crate) fn authority(&self) -> String {
        let mut out = match &self.host {
            Host::Ip(IpAddr::V6(a)) => format!("[{a}]"),
            Host::Ip(IpAddr::V4(a)) => a.to_string(),
            Host::Name(n) => n.clone(),
        };
        if self.port != self.scheme.default_port() {
            let _ = write!(out, ":{}", self.port);
        }
        out
    }

    /// `scheme://authority/target`: scheme and host lower-cased, default port dropped,
    /// empty path made `/`, fragment removed.
    pub(crate) fn normalised(&self) -> String {
        format!(
            "{}://{}{}",
            self.scheme.as_str(),
            self.authority(),
            self.target
        )
    }
}

fn parse_authority(a: &str) -> Result<(Host, Option<u16>), &'static str> {
    if a.is_empty() {
        return Err("no host");
    }
    let (host, port) = if let Some(v6) = a.strip_prefix('[') {
        let (addr, after) = v6.split_once(']').ok_or("unclosed [")?;
        let addr: Ipv6Addr = addr.parse().map_err(|_| "bad IPv6 literal")?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or("junk after IPv6 literal")?),
        };
        (Host::Ip(IpAddr::V6(addr)), port)
    } else {
        let (name, port) = match a.split_once(':') {
            Some((n, p)) => (n, Some(p)),
            None => (a, None),
        };
        (parse_host(name)?, port)
    };
    let port = match port {
        None => None,
        Some(p) => Some(parse_port(p)?),
    };
    Ok((host, port))
}

fn parse_host(name: &str) -> Result<Host, &'static str> {
    if let Ok(v4) = name.parse::<Ipv4Addr>() {
        return Ok(Host::Ip(IpAddr::V4(v4)));
    }
    if name.is_empty() || name.len() > 253 {
        return Err("bad host name length");
    }
    let mut last = "";
    for label in name.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err("empty or overlong host label");
        }
        if !label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err("bad character in host name");
        }
        last = label;
    }
    // The resolver reads `127.1` or `0x7f.1` as addresses; such names would let one
    // spelling of an address escape another's allowlist entry, so they are refused.
    let numeric = last.bytes().all(|b| b.is_ascii_digit())
        || (last.len() > 2
            && last[..2].eq_ignore_ascii_case("0x")
            && last[2..].bytes().all(|b| b.is_ascii_hexdigit()));
    if numeric {
        return Err("numeric host that is not a dotted-quad IPv4 address");
    }
    Ok(Host::Name(name.to_ascii_lowercase()))
}

fn parse_port(p: &str) -> Result<u16, &'static str> {
    if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err("bad port");
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err("bad port"),
        Ok(n) => Ok(n),
    }
}

/// Refuses path forms a server may resolve to another path than the one compared:
/// `.`/`..` segments (also percent-encoded) and encoded `/` or `\`; checks that every `%`
/// starts a valid escape.
fn check_target(target: &str) -> Result<(), &'static str> {
    let b = target.as_bytes();
    for (i, &c) in b.iter().enumerate() {
        if c == b'%' {
            match (b.get(i + 1), b.get(i + 2)) {
                (Some(h), Some(l)) if h.is_ascii_hexdigit() && l.is_ascii_hexdigit() => {}
                _ => return Err("bad percent escape"),
            }
        }
    }
    let path = target.split_once('?').map_or(target, |(p, _)| p);
    let lower = path.to_ascii_lowercase();
    if lower.contains("%2f") || lower.contains("%5c") {
        return Err("encoded slash in path");
    }
    for seg in lower.split('/') {
        let seg = seg.replace("%2e", ".");
        if seg == "." || seg == ".." {
            return Err("dot segment in path");
        }
    }
    Ok(())
}

fn shorten(s: &str) -> String {
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Url::parse(s).unwrap().normalised()
    }

    #[test]
    fn normalises_scheme_host_port_and_path() {
        assert_eq!(
            norm("HTTPS://Push.Example.COM:443"),
            "https://push.example.com/"
        );
        assert_eq!(norm("http://a.b:80/x?y=1#frag"), "http://a.b/x?y=1");
        assert_eq!(norm("http://a.b:8080?q"), "http://a.b:8080/?q");
        assert_eq!(norm("https://10.0.0.1:8443/p"), "https://10.0.0.1:8443/p");
        assert_eq!(norm("http://[::1]:8080/p"), "http://[::1]:8080/p");
        assert_eq!(norm("http://[0:0::1]/"), "http://[::1]/");
    }

    #[test]
    fn parts() {
        let u = Url::parse("https://[2001:db8::1]:9000/a").unwrap();
        assert!(u.is_https());
        assert_eq!(u.port, 9000);
        assert_eq!(u.authority(), "[2001:db8::1]:9000");
        assert_eq!(u.target, "/a");
        let u = Url::parse("http://example.com").unwrap();
        assert_eq!((u.port, u.target.as_str()), (80, "/"));
    }

    #[test]
    fn refuses_what_could_be_read_two_ways() {
        for bad in [
            "ftp://a.b/",
            "a.b/x",
            "http://",
            "http:///x",
            "http://user@a.b/",
            "http://a.b:/",
            "http://a.b:0/",
            "http://a.b:65536/",
            "http://a.b:+80/",
            "http://[::1/",
            "http://[::1]x/",
            "http://[fe80::1%25eth0]/",
            "http://127.1/",
            "http://0x7f000001/",
            "http://1.2.3.256/",
            "http://a..b/",
            "http://a b/",
            "http://a.b/x y",
            "http://a.b/x\r\nHost: evil",
            "http://a.b/\u{e9}",
            "http://a.b/a/../b",
            "http://a.b/a/%2E%2e/b",
            "http://a.b/a/./b",
            "http://a.b/a%2fb",
            "http://a.b/a\\b",
            "http://a.b/a%zz",
            "http://a.b/a%2",
        ] {
            assert!(
                matches!(Url::parse(bad), Err(HttpError::InvalidUrl(_))),
                "{bad:?} accepted"
            );
        }
        // Dots inside a segment or in the query are fine.
        assert!(Url::parse("http://a.b/v1/x..y/.well-known?p=../x").is_ok());
    }
}
