//! The message field a pipe is keyed by (`key = "$si"`, `"$fU"`, `"$au"`, a constant),
//! and the small parsers it needs: the URI of a name-addr, its user and host parts, and
//! the `username`/`realm` of Digest credentials.

use weir_sdk::{Error, Message};

/// Longest key value used in a kv key; longer values are cut (on a char boundary).
pub(crate) const MAX_KEY_VALUE: usize = 256;

/// What a pipe is keyed by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum KeySpec {
    /// The same key for every request: one pipe over all traffic.
    Constant(String),
    /// `$si`: the source IP address.
    SourceIp,
    /// `$fU`: the user part of the From URI.
    FromUser,
    /// `$fd`: the host part of the From URI.
    FromDomain,
    /// `$tU`: the user part of the To URI.
    ToUser,
    /// `$rU`: the user part of the Request-URI.
    RuriUser,
    /// `$rd`: the host part of the Request-URI.
    RuriDomain,
    /// `$au`: the `username` of the Authorization (else Proxy-Authorization) credentials.
    AuthUser,
    /// `$ar`: the `realm` of those credentials.
    AuthRealm,
}

impl KeySpec {
    /// Parse the `key` param.
    pub(crate) fn parse(pipe: &str, spec: &str) -> Result<KeySpec, Error> {
        let key = match spec {
            "$si" => KeySpec::SourceIp,
            "$fU" => KeySpec::FromUser,
            "$fd" => KeySpec::FromDomain,
            "$tU" => KeySpec::ToUser,
            "$rU" => KeySpec::RuriUser,
            "$rd" => KeySpec::RuriDomain,
            "$au" => KeySpec::AuthUser,
            "$ar" => KeySpec::AuthRealm,
            s if s.starts_with('$') => {
                return Err(Error::new(format!(
                "pipes.{pipe}.key: unknown field `{s}` (one of $si $fU $fd $tU $rU $rd $au $ar, \
                     or a constant)"
            )))
            }
            "" => {
                return Err(Error::new(format!(
                    "pipes.{pipe}.key: must not be empty (use a constant such as \"all\")"
                )))
            }
            s if s.len() > MAX_KEY_VALUE || s.chars().any(char::is_control) => {
                return Err(Error::new(format!(
                    "pipes.{pipe}.key: a constant must be 1 to {MAX_KEY_VALUE} printable characters"
                )))
            }
            s => KeySpec::Constant(s.to_string()),
        };
        Ok(key)
    }

    /// The key value of `msg`, or `None` when the message has no such field (no From
    /// user, no credentials, ...).
    pub(crate) fn extract(&self, msg: &Message<'_>) -> Option<String> {
        let value = match self {
            KeySpec::Constant(c) => return Some(c.clone()),
            KeySpec::SourceIp => Some(msg.source().ip),
            KeySpec::FromUser => msg.header("From").and_then(|v| uri_user(name_addr_uri(&v))),
            KeySpec::FromDomain => msg.header("From").and_then(|v| uri_host(name_addr_uri(&v))),
            KeySpec::ToUser => msg.header("To").and_then(|v| uri_user(name_addr_uri(&v))),
            KeySpec::RuriUser => uri_user(&msg.request_uri()),
            KeySpec::RuriDomain => uri_host(&msg.request_uri()),
            KeySpec::AuthUser => credentials(msg).and_then(|c| digest_param(&c, "username")),
            KeySpec::AuthRealm => credentials(msg).and_then(|c| digest_param(&c, "realm")),
        }?;
        if value.is_empty() {
            return None;
        }
        Some(cut(value, MAX_KEY_VALUE))
    }
}

fn credentials(msg: &Message<'_>) -> Option<String> {
    msg.header("Authorization")
        .or_else(|| msg.header("Proxy-Authorization"))
}

/// `s` cut to at most `max` bytes on a char boundary.
fn cut(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

/// The URI of a From/To/Contact value: between `<` and `>` if present, else up to the
/// first header parameter (`;`).
pub(crate) fn name_addr_uri(value: &str) -> &str {
    if let Some(start) = value.find('<') {
        let rest = &value[start + 1..];
        return rest.split('>').next().unwrap_or(rest).trim();
    }
    value.split(';').next().unwrap_or(value).trim()
}

/// `(scheme, rest)` of a SIP URI, without the scheme's colon.
fn split_scheme(uri: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = uri.split_once(':')?;
    let ok = scheme.eq_ignore_ascii_case("sip")
        || scheme.eq_ignore_ascii_case("sips")
        || scheme.eq_ignore_ascii_case("tel");
    ok.then_some((scheme, rest))
}

/// The user part of a SIP URI (`sip:alice@example.com` -> `alice`); `None` without one.
pub(crate) fn uri_user(uri: &str) -> Option<String> {
    let (scheme, rest) = split_scheme(uri)?;
    if scheme.eq_ignore_ascii_case("tel") {
        let number = rest.split(';').next().unwrap_or(rest);
        return Some(number.to_string());
    }
    let (userinfo, _) = rest.split_once('@')?;
    // `user:password` is deprecated but legal; the password is not part of the key.
    let user = userinfo.split(':').next().unwrap_or(userinfo);
    Some(user.to_string())
}

/// The host part of a SIP URI (`sip:alice@[2001:db8::1]:5060;x` -> `[2001:db8::1]`).
pub(crate) fn uri_host(uri: &str) -> Option<String> {
    let (scheme, rest) = split_scheme(uri)?;
    if scheme.eq_ignore_ascii_case("tel") {
        return None;
    }
    let hostport = match rest.rsplit_once('@') {
        Some((_, h)) => h,
        None => rest,
    };
    let hostport = hostport.split([';', '?', '>']).next().unwrap_or(hostport);
    let host = if hostport.starts_with('[') {
        match hostport.find(']') {
            Some(end) => &hostport[..=end],
            None => hostport,
        }
    } else {
        hostport.split(':').next().unwrap_or(hostport)
    };
    Some(host.to_ascii_lowercase())
}

/// A parameter of Digest credentials (`Digest username="alice", realm="x"`), unquoted.
/// Commas inside quoted values are skipped over correctly.
pub(crate) fn digest_param(credentials: &str, name: &str) -> Option<String> {
    let (scheme, params) = credentials.trim_start().split_once(char::is_whitespace)?;
    if !scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let mut rest = params;
    loop {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().trim_start_matches(',').trim();
        let after = after.trim_start();
        let (value, next) = if let Some(quoted) = after.strip_prefix('"') {
            let end = closing_quote(quoted)?;
            (unescape(&quoted[..end]), &quoted[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim().to_string(), &after[end..])
        };
        if key.eq_ignore_ascii_case(name) {
            return Some(value);
        }
        rest = next.trim_start().strip_prefix(',')?;
    }
}

/// Index of the `"` that closes a quoted string (after its opening quote).
fn closing_quote(s: &str) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => return Some(i),
            _ => {}
        }
    }
    None
}

fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut escaped = false;
    for c in s.chars() {
        if c == '\\' && !escaped {
            escaped = true;
            continue;
        }
        escaped = false;
        out.push(c);
    }
    out
}

/// Whether a To value carries a `tag` parameter (the request is inside a dialog).
pub(crate) fn has_tag(to: &str) -> bool {
    // Header params follow the name-addr's `>`; without brackets, the URI has no
    // params of its own (RFC 3261 20.10), so every `;` starts a header param.
    let params = match to.rfind('>') {
        Some(end) => &to[end + 1..],
        None => to,
    };
    params.split(';').skip(1).any(|p| {
        let name = p.split('=').next().unwrap_or(p).trim();
        name.eq_ignore_ascii_case("tag")
    })
}
