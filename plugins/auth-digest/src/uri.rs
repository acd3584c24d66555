//! The user and host of a SIP URI, alone or in a From/To header value (name-addr or
//! addr-spec with params). Just enough for realm selection and identity checks.

/// The user part (empty if none) and host (lowercased, without port) of a SIP or SIPS
/// URI, or of the URI inside a From/To value. `None` if no `sip:`/`sips:` URI is found.
pub fn user_host(value: &str) -> Option<(String, String)> {
    uri_user_host(uri_of(value))
}

/// The user part (empty if none) and host (lowercased, without port) of a bare SIP or
/// SIPS URI such as a request URI.
pub fn uri_user_host(uri: &str) -> Option<(String, String)> {
    let uri = uri.trim();
    let lower_scheme = uri.get(..5).map(str::to_ascii_lowercase);
    let rest = match lower_scheme.as_deref() {
        Some("sips:") => &uri[5..],
        Some(s) if s.starts_with("sip:") => &uri[4..],
        _ => return None,
    };
    // The host part ends at the first of `;` (uri params), `?` (headers) or `>`.
    // A user part cannot hold an unescaped `@`: the first one ends it.
    let (userinfo, hostport) = match rest.find('@') {
        Some(at) => (&rest[..at], &rest[at + 1..]),
        None => ("", rest),
    };
    let user = userinfo.split(':').next().unwrap_or_default();
    let hostport = hostport
        .split([';', '?', '>'])
        .next()
        .unwrap_or_default()
        .trim();
    let host = if let Some(v6) = hostport.strip_prefix('[') {
        // IPv6 reference: keep the brackets, drop the port.
        match v6.find(']') {
            Some(end) => &hostport[..end + 2],
            None => hostport,
        }
    } else {
        hostport.split(':').next().unwrap_or_default()
    };
    if host.is_empty() {
        return None;
    }
    Some((user.to_string(), host.to_ascii_lowercase()))
}

/// The URI of a From/To value: inside `<...>` if present, else up to the first `;`
/// (header params) — the value may also be a bare URI.
fn uri_of(value: &str) -> &str {
    let v = value.trim();
    if let Some(start) = v.find('<') {
        let inner = &v[start + 1..];
        return inner.split('>').next().unwrap_or_default().trim();
    }
    // addr-spec: a URI holding `;` must be inside `<...>` (RFC 3261 §20.10), so the
    // first `;` starts the header params.
    v.split(';').next().unwrap_or_default().trim()
}
