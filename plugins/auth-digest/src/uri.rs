//! The user and host of a SIP URI, alone or in a From/To header value (name-addr or
//! addr-spec with params). Just enough for realm selection and identity checks.
//!
//! Byte loops over the value (every delimiter is ASCII, so every cut is on a character
//! boundary), as few passes as possible: this runs on the From and To of every
//! authenticated request.

use std::borrow::Cow;

/// The user part (empty if none) and host (lowercased, without port) of a SIP or SIPS
/// URI, or of the URI inside a From/To value. `None` if no `sip:`/`sips:` URI is found.
/// Both borrow from `value` (the host unless it has capital letters).
pub fn user_host(value: &str) -> Option<(&str, Cow<'_, str>)> {
    uri_user_host(uri_of(value))
}

/// The user part (empty if none) and host (lowercased, without port) of a bare SIP or
/// SIPS URI such as a request URI.
pub fn uri_user_host(uri: &str) -> Option<(&str, Cow<'_, str>)> {
    let uri = uri.trim_ascii();
    // The scheme, ASCII case ignored (`c | 0x20` lowercases a letter; only `S` and `s`
    // give `s`, and so on).
    let start = match uri.as_bytes() {
        [s, i, p, b':', ..] if lower_is(*s, b's') && lower_is(*i, b'i') && lower_is(*p, b'p') => 4,
        [s, i, p, s2, b':', ..]
            if lower_is(*s, b's')
                && lower_is(*i, b'i')
                && lower_is(*p, b'p')
                && lower_is(*s2, b's') =>
        {
            5
        }
        _ => return None,
    };
    let rest = uri.get(start..)?;
    // A user part cannot hold an unescaped `@`: the first one ends it (wherever it is).
    let (user, hostport) = match find(rest.as_bytes(), |b| b == b'@') {
        Some(at) => {
            let userinfo = rest.get(..at).unwrap_or("");
            (
                cut(userinfo, find(userinfo.as_bytes(), |b| b == b':')),
                rest.get(at + 1..).unwrap_or(""),
            )
        }
        None => ("", rest),
    };
    // The host part ends at the first of `;` (uri params), `?` (headers) or `>`, and is
    // then trimmed; the host is that without the port (up to the first `:`). One loop
    // finds the first of the four, noting capital letters on the way.
    let hostport = hostport.trim_ascii_start();
    let hb = hostport.as_bytes();
    let mut end = 0;
    let mut upper = false;
    while let Some(&b) = hb.get(end) {
        if matches!(b, b';' | b'?' | b'>' | b':') {
            break;
        }
        upper |= b.is_ascii_uppercase();
        end += 1;
    }
    let host = if hb.first() == Some(&b'[') {
        // IPv6 reference: keep the brackets, drop the port (its `:`s are not a port's).
        let hostport = cut(hostport, find(hb, |b| matches!(b, b';' | b'?' | b'>'))).trim_ascii();
        let host = match find(hostport.as_bytes(), |b| b == b']') {
            Some(close) => hostport.get(..close + 1).unwrap_or(hostport),
            None => hostport,
        };
        upper = host.bytes().any(|b| b.is_ascii_uppercase());
        host
    } else if hb.get(end) == Some(&b':') {
        // A port: the host is what precedes it, untrimmed (as the cut at `:` of the
        // trimmed host part).
        hostport.get(..end).unwrap_or("")
    } else {
        // No port: the host part, trimmed at its end too.
        hostport.get(..end).unwrap_or("").trim_ascii_end()
    };
    if host.is_empty() {
        return None;
    }
    let host = if upper {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    };
    Some((user, host))
}

/// The URI of a From/To value: inside `<...>` if present, else up to the first `;`
/// (header params) — the value may also be a bare URI.
fn uri_of(value: &str) -> &str {
    let v = value.trim_ascii();
    let b = v.as_bytes();
    // addr-spec: a URI holding `;` must be inside `<...>` (RFC 3261 §20.10), so the
    // first `;` starts the header params. One loop finds the first `<` or `;`: a `;`
    // before any `<` ends an addr-spec, unless a `<` follows (the `;` was in the
    // display name).
    let lt = match find(b, |c| c == b'<' || c == b';') {
        None => return v,
        Some(i) if b.get(i) == Some(&b'<') => i,
        Some(semi) => match find(b.get(semi..).unwrap_or_default(), |c| c == b'<') {
            Some(lt) => semi + lt,
            None => return v.get(..semi).unwrap_or(v).trim_ascii(),
        },
    };
    let inner = v.get(lt + 1..).unwrap_or("");
    cut(inner, find(inner.as_bytes(), |c| c == b'>')).trim_ascii()
}

/// The index of the first byte of `b` that `stop` accepts.
#[inline(always)]
fn find(b: &[u8], stop: impl Fn(u8) -> bool) -> Option<usize> {
    b.iter().position(|&c| stop(c))
}

/// `s` up to `end` (all of it for `None`). `end` comes from [`find`] with an ASCII
/// delimiter, so the cut is on a character boundary.
fn cut(s: &str, end: Option<usize>) -> &str {
    match end {
        Some(end) => s.get(..end).unwrap_or(s),
        None => s,
    }
}

/// True if the ASCII letter `lower` is `c`, ASCII case ignored.
#[inline(always)]
fn lower_is(c: u8, lower: u8) -> bool {
    c | 0x20 == lower
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::Rng;

    /// The previous implementation (one pass per delimiter), the reference the byte
    /// loops above must agree with.
    mod previous {
        use std::borrow::Cow;

        pub fn user_host(value: &str) -> Option<(&str, Cow<'_, str>)> {
            uri_user_host(uri_of(value))
        }

        pub fn uri_user_host(uri: &str) -> Option<(&str, Cow<'_, str>)> {
            let uri = uri.trim_ascii();
            let scheme = |s: &str| {
                uri.get(..s.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(s))
            };
            let rest = if scheme("sips:") {
                &uri[5..]
            } else if scheme("sip:") {
                &uri[4..]
            } else {
                return None;
            };
            let (userinfo, hostport) = match rest.bytes().position(|b| b == b'@') {
                Some(at) => (&rest[..at], &rest[at + 1..]),
                None => ("", rest),
            };
            let user = until(userinfo, |b| b == b':');
            let hostport = until(hostport, |b| matches!(b, b';' | b'?' | b'>')).trim_ascii();
            let host = if let Some(v6) = hostport.strip_prefix('[') {
                match v6.bytes().position(|b| b == b']') {
                    Some(end) => &hostport[..end + 2],
                    None => hostport,
                }
            } else {
                until(hostport, |b| b == b':')
            };
            if host.is_empty() {
                return None;
            }
            let host = if host.bytes().any(|b| b.is_ascii_uppercase()) {
                Cow::Owned(host.to_ascii_lowercase())
            } else {
                Cow::Borrowed(host)
            };
            Some((user, host))
        }

        fn uri_of(value: &str) -> &str {
            let v = value.trim_ascii();
            if let Some(start) = v.bytes().position(|b| b == b'<') {
                return until(&v[start + 1..], |b| b == b'>').trim_ascii();
            }
            until(v, |b| b == b';').trim_ascii()
        }

        fn until(s: &str, stop: impl Fn(u8) -> bool) -> &str {
            let end = s.bytes().position(stop).unwrap_or(s.len());
            s.get(..end).unwrap_or(s)
        }
    }

    #[test]
    fn edge_cases() {
        let uh = |v: &str| user_host(v).map(|(u, h)| format!("{u}|{h}"));
        // Schemes in any case; a scheme alone or another scheme is no URI.
        assert_eq!(uh("SiPs:U@H").as_deref(), Some("U|h"));
        assert_eq!(uh("sIp:h").as_deref(), Some("|h"));
        assert_eq!(uh("sip"), None);
        assert_eq!(uh("sips"), None);
        assert_eq!(uh("sipx:a@h"), None);
        assert_eq!(uh("<sip:a@>"), None);
        assert_eq!(uh("<sip:a@:5060>"), None);
        // The first `@` ends the user part, wherever it is.
        assert_eq!(uh("<sip:a;x=1@h;y=2>").as_deref(), Some("a;x=1|h"));
        assert_eq!(
            uri_user_host("sip:h;x=a@b")
                .map(|(u, h)| format!("{u}|{h}"))
                .as_deref(),
            Some("h;x=a|b")
        );
        // (In a From/To value, the first `;` of an addr-spec starts the header params.)
        assert_eq!(uh("sip:h;x=a@b").as_deref(), Some("|h"));
        // Whitespace around the host part, with and without a port.
        assert_eq!(uh("< sip:a@ Host :5060 >").as_deref(), Some("a|host "));
        assert_eq!(uh("<sip:a@ Host ;x>").as_deref(), Some("a|host"));
        // IPv6 references keep their brackets and lose the port; capitals are lowered.
        assert_eq!(
            uh("<sip:[2001:DB8::1]:5060>").as_deref(),
            Some("|[2001:db8::1]")
        );
        assert_eq!(uh("<sip:u@[::1>").as_deref(), Some("u|[::1"));
        assert_eq!(uh("sip:u@[::1];transport=tcp").as_deref(), Some("u|[::1]"));
        // A display name holding `;` or `<`-less addr-specs with header params.
        assert_eq!(uh("\"a;b\" <sip:u@h>").as_deref(), Some("u|h"));
        assert_eq!(uh("sip:u@h;tag=x<y"), None);
        assert_eq!(uh(" sip:u@h:1 ;tag=1").as_deref(), Some("u|h"));
        // Non-ASCII text stays whole.
        assert_eq!(uh("\"é\" <sip:ü@hé>").as_deref(), Some("ü|hé"));
    }

    #[test]
    fn agrees_with_the_previous_implementation() {
        const PIECES: &[&str] = &[
            "sip:",
            "sips:",
            "SIP:",
            "SiPs:",
            "tel:",
            "sip",
            "<",
            ">",
            ";",
            "?",
            ":",
            "@",
            "[",
            "]",
            " ",
            "\t",
            "\r\n",
            "a",
            "B",
            "host",
            "Example.COM",
            "2001:db8::1",
            "\"A\"",
            "tag=1",
            "ü",
            "é",
            "5060",
            "user",
            "x=y",
            ",",
        ];
        let mut rng = Rng::new(0x5eed_0001);
        for _ in 0..200_000 {
            let v = rng.text(PIECES, 12);
            assert_eq!(user_host(&v), previous::user_host(&v), "{v:?}");
            assert_eq!(uri_user_host(&v), previous::uri_user_host(&v), "{v:?}");
        }
    }
}
