//! Parsing an `Authorization` / `Proxy-Authorization` header value (RFC 3261 §25.1
//! `credentials`, RFC 7616 §3.4): `Digest` followed by comma-separated `name=value`
//! params, values being tokens or quoted strings (with `\` escapes). Param names are
//! case-insensitive; whitespace around `=` and `,` is allowed.

/// Longest header value parsed; longer ones are malformed.
pub const MAX_CREDENTIALS: usize = 4096;

/// Digest credentials as sent by a client. Values are unquoted and unescaped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestCredentials {
    /// `username`.
    pub username: String,
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `uri` (the digest-uri).
    pub uri: String,
    /// `response`.
    pub response: String,
    /// `algorithm`, if present.
    pub algorithm: Option<String>,
    /// `qop`, if present.
    pub qop: Option<String>,
    /// `nc`, if present.
    pub nc: Option<String>,
    /// `cnonce`, if present.
    pub cnonce: Option<String>,
    /// `opaque`, if present (ignored: our challenges send none).
    pub opaque: Option<String>,
}

/// Why a credentials header is malformed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Malformed {
    /// The scheme is not `Digest` (such credentials are ignored, not refused).
    NotDigest,
    /// The syntax is broken.
    Syntax(&'static str),
    /// A required param is missing.
    Missing(&'static str),
    /// A param appears twice.
    Duplicate(String),
    /// The value is longer than [`MAX_CREDENTIALS`].
    TooLong,
}

impl std::fmt::Display for Malformed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Malformed::NotDigest => f.write_str("not Digest credentials"),
            Malformed::Syntax(why) => write!(f, "syntax: {why}"),
            Malformed::Missing(name) => write!(f, "missing `{name}`"),
            Malformed::Duplicate(name) => write!(f, "`{name}` given twice"),
            Malformed::TooLong => write!(f, "longer than {MAX_CREDENTIALS} bytes"),
        }
    }
}

/// The realm of a credentials value, or `None` if it does not parse as Digest
/// credentials (cheap pre-selection among several headers).
pub fn realm_of(value: &str) -> Option<String> {
    parse_params(value).ok().and_then(|params| {
        params
            .into_iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("realm"))
            .map(|(_, v)| v)
    })
}

/// Parse a credentials header value.
pub fn parse(value: &str) -> Result<DigestCredentials, Malformed> {
    from_params(parse_params(value)?)
}

/// The credentials of `value` if they are for `realm`: `None` when the value is not
/// Digest credentials or names another realm (as [`realm_of`]), else [`parse`]'s result,
/// from one pass over the value.
pub fn parse_for_realm(value: &str, realm: &str) -> Option<Result<DigestCredentials, Malformed>> {
    let params = parse_params(value).ok()?;
    let ours = params
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("realm"))
        .is_some_and(|(_, v)| v == realm);
    ours.then(|| from_params(params))
}

/// Credentials from their parsed params.
fn from_params(params: Vec<(String, String)>) -> Result<DigestCredentials, Malformed> {
    let mut c = DigestCredentials::default();
    let mut seen: Vec<String> = Vec::new();
    let (mut user, mut realm, mut nonce, mut uri, mut resp) = (false, false, false, false, false);
    for (name, v) in params {
        let lower = name.to_ascii_lowercase();
        if seen.contains(&lower) {
            return Err(Malformed::Duplicate(lower));
        }
        seen.push(lower.clone());
        match lower.as_str() {
            "username" => (c.username, user) = (v, true),
            "realm" => (c.realm, realm) = (v, true),
            "nonce" => (c.nonce, nonce) = (v, true),
            "uri" => (c.uri, uri) = (v, true),
            "response" => (c.response, resp) = (v, true),
            "algorithm" => c.algorithm = Some(v),
            "qop" => c.qop = Some(v),
            "nc" => c.nc = Some(v),
            "cnonce" => c.cnonce = Some(v),
            "opaque" => c.opaque = Some(v),
            // auth-param extensions (RFC 7616 `userhash`, ...) are ignored.
            _ => {}
        }
    }
    for (present, name) in [
        (user, "username"),
        (realm, "realm"),
        (nonce, "nonce"),
        (uri, "uri"),
        (resp, "response"),
    ] {
        if !present {
            return Err(Malformed::Missing(name));
        }
    }
    if c.username.is_empty() {
        return Err(Malformed::Missing("username"));
    }
    Ok(c)
}

/// The `name=value` params after the `Digest` scheme, in order. Scans bytes (every
/// delimiter is ASCII) and copies each name and value once.
fn parse_params(value: &str) -> Result<Vec<(String, String)>, Malformed> {
    if value.len() > MAX_CREDENTIALS {
        return Err(Malformed::TooLong);
    }
    let v = value.trim_start();
    let scheme_end = v.find([' ', '\t']).ok_or(Malformed::NotDigest)?;
    if !v
        .get(..scheme_end)
        .is_some_and(|s| s.eq_ignore_ascii_case("Digest"))
    {
        return Err(Malformed::NotDigest);
    }
    let s = v.get(scheme_end..).unwrap_or("");
    let b = s.as_bytes();
    let ws = |mut i: usize| {
        while matches!(b.get(i), Some(b' ' | b'\t')) {
            i += 1;
        }
        i
    };
    let mut out = Vec::with_capacity(10);
    let mut i = 0;
    loop {
        i = ws(i);
        if i >= b.len() {
            if out.is_empty() {
                return Err(Malformed::Syntax("no params"));
            }
            return Ok(out);
        }
        let start = i;
        while b.get(i).is_some_and(|&c| is_token_char(char::from(c))) {
            i += 1;
        }
        if i == start {
            return Err(Malformed::Syntax("expected a param name"));
        }
        let name = s.get(start..i).unwrap_or("").to_string();
        i = ws(i);
        if b.get(i) != Some(&b'=') {
            return Err(Malformed::Syntax("expected `=` after a param name"));
        }
        i = ws(i + 1);
        let val = if b.get(i) == Some(&b'"') {
            i += 1;
            let mut val = String::new();
            let mut from = i;
            loop {
                match b.get(i) {
                    None => return Err(Malformed::Syntax("unterminated quoted string")),
                    Some(b'"') => {
                        val.push_str(s.get(from..i).unwrap_or(""));
                        i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        val.push_str(s.get(from..i).unwrap_or(""));
                        let Some(escaped) = s.get(i + 1..).and_then(|r| r.chars().next()) else {
                            return Err(Malformed::Syntax("dangling `\\`"));
                        };
                        val.push(escaped);
                        i += 1 + escaped.len_utf8();
                        from = i;
                    }
                    Some(b'\r' | b'\n') => return Err(Malformed::Syntax("line break in a value")),
                    Some(_) => i += 1,
                }
            }
            val
        } else {
            let start = i;
            while b
                .get(i)
                .is_some_and(|&c| is_token_char(char::from(c)) || matches!(c, b'/' | b':' | b'@'))
            {
                i += 1;
            }
            if i == start {
                return Err(Malformed::Syntax("expected a param value"));
            }
            s.get(start..i).unwrap_or("").to_string()
        };
        out.push((name, val));
        i = ws(i);
        match b.get(i) {
            None => return Ok(out),
            Some(b',') => i += 1,
            Some(_) => return Err(Malformed::Syntax("expected `,` between params")),
        }
    }
}

/// RFC 3261 `token` characters.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}
