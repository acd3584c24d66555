//! The user and host of a SIP URI, alone or in a From/To header value (name-addr or
//! addr-spec with params). Just enough for realm selection and identity checks.

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
    // The host part ends at the first of `;` (uri params), `?` (headers) or `>`.
    // A user part cannot hold an unescaped `@`: the first one ends it.
    let (userinfo, hostport) = match rest.bytes().position(|b| b == b'@') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => ("", rest),
    };
    let user = until(userinfo, |b| b == b':');
    let hostport = until(hostport, |b| matches!(b, b';' | b'?' | b'>')).trim_ascii();
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        // IPv6 reference: keep the brackets, drop the port.
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

/// The URI of a From/To value: inside `<...>` if present, else up to the first `;`
/// (header params) — the value may also be a bare URI.
fn uri_of(value: &str) -> &str {
    let v = value.trim_ascii();
    if let Some(start) = v.bytes().position(|b| b == b'<') {
        return until(&v[start + 1..], |b| b == b'>').trim_ascii();
    }
    // addr-spec: a URI holding `;` must be inside `<...>` (RFC 3261 §20.10), so the
    // first `;` starts the header params.
    until(v, |b| b == b';').trim_ascii()
}

/// `s` up to its first byte that `stop` accepts (all of `s` if none). `stop` accepts
/// ASCII bytes only, so the cut is on a character boundary.
fn until(s: &str, stop: impl Fn(u8) -> bool) -> &str {
    let end = s.bytes().position(stop).unwrap_or(s.len());
    s.get(..end).unwrap_or(s)
}
