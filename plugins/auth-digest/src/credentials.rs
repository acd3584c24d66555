//! Parsing an `Authorization` / `Proxy-Authorization` header value (RFC 3261 §25.1
//! `credentials`, RFC 7616 §3.4): `Digest` followed by comma-separated `name=value`
//! params, values being tokens or quoted strings (with `\` escapes). Param names are
//! case-insensitive; whitespace around `=` and `,` is allowed.
//!
//! One pass over the value, without copies: values borrow from it unless they hold a
//! `\` escape.

use std::borrow::Cow;

/// Longest header value parsed; longer ones are malformed.
pub const MAX_CREDENTIALS: usize = 4096;

/// Digest credentials as sent by a client. Values are unquoted and unescaped, borrowed
/// from the header value unless they held an escape.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestCredentials<'a> {
    /// `username`.
    pub username: Cow<'a, str>,
    /// `realm`.
    pub realm: Cow<'a, str>,
    /// `nonce`.
    pub nonce: Cow<'a, str>,
    /// `uri` (the digest-uri).
    pub uri: Cow<'a, str>,
    /// `response`.
    pub response: Cow<'a, str>,
    /// `algorithm`, if present.
    pub algorithm: Option<Cow<'a, str>>,
    /// `qop`, if present.
    pub qop: Option<Cow<'a, str>>,
    /// `nc`, if present.
    pub nc: Option<Cow<'a, str>>,
    /// `cnonce`, if present.
    pub cnonce: Option<Cow<'a, str>>,
    /// `opaque`, if present (ignored: our challenges send none).
    pub opaque: Option<Cow<'a, str>>,
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
pub fn realm_of(value: &str) -> Option<Cow<'_, str>> {
    let scan = scan(value).ok()?;
    scan.creds.realm_seen.then_some(scan.creds.c.realm)
}

/// Parse a credentials header value.
pub fn parse(value: &str) -> Result<DigestCredentials<'_>, Malformed> {
    scan(value)?.finish()
}

/// The credentials of `value` if they are for `realm`: `None` when the value is not
/// Digest credentials or names another realm (as [`realm_of`]), else [`parse`]'s result,
/// from one pass over the value.
pub fn parse_for_realm<'a>(
    value: &'a str,
    realm: &str,
) -> Option<Result<DigestCredentials<'a>, Malformed>> {
    let scan = scan(value).ok()?;
    let ours = scan.creds.realm_seen && scan.creds.c.realm == realm;
    ours.then(|| scan.finish())
}

/// The known params, one bit each (for duplicate and presence checks).
const USERNAME: u16 = 1;
const REALM: u16 = 1 << 1;
const NONCE: u16 = 1 << 2;
const URI: u16 = 1 << 3;
const RESPONSE: u16 = 1 << 4;
const ALGORITHM: u16 = 1 << 5;
const QOP: u16 = 1 << 6;
const NC: u16 = 1 << 7;
const CNONCE: u16 = 1 << 8;
const OPAQUE: u16 = 1 << 9;

/// The bit of a known param name (ASCII case ignored), 0 for others.
fn known(name: &str) -> u16 {
    const NAMES: [(&str, u16); 10] = [
        ("username", USERNAME),
        ("realm", REALM),
        ("nonce", NONCE),
        ("uri", URI),
        ("response", RESPONSE),
        ("algorithm", ALGORITHM),
        ("qop", QOP),
        ("nc", NC),
        ("cnonce", CNONCE),
        ("opaque", OPAQUE),
    ];
    NAMES
        .iter()
        .find(|(n, _)| n.len() == name.len() && n.eq_ignore_ascii_case(name))
        .map_or(0, |&(_, bit)| bit)
}

/// Credentials being collected from the params, in order.
#[derive(Default)]
struct Collect<'a> {
    c: DigestCredentials<'a>,
    /// Known params seen so far.
    seen: u16,
    /// Names of the other params seen so far (auth-param extensions), for duplicates.
    others: Vec<&'a str>,
    /// The first duplicate, lowercased.
    duplicate: Option<String>,
    /// The first `realm` param was seen (the one [`realm_of`] names).
    realm_seen: bool,
}

impl<'a> Collect<'a> {
    fn param(&mut self, name: &'a str, v: Cow<'a, str>) {
        let bit = known(name);
        let dup = if bit != 0 {
            self.seen & bit != 0
        } else {
            let dup = self.others.iter().any(|o| o.eq_ignore_ascii_case(name));
            if !dup {
                self.others.push(name);
            }
            dup
        };
        if dup {
            if self.duplicate.is_none() {
                self.duplicate = Some(name.to_ascii_lowercase());
            }
            // The first value stays (a duplicate makes the credentials malformed).
            return;
        }
        self.seen |= bit;
        let c = &mut self.c;
        match bit {
            USERNAME => c.username = v,
            REALM => {
                c.realm = v;
                self.realm_seen = true;
            }
            NONCE => c.nonce = v,
            URI => c.uri = v,
            RESPONSE => c.response = v,
            ALGORITHM => c.algorithm = Some(v),
            QOP => c.qop = Some(v),
            NC => c.nc = Some(v),
            CNONCE => c.cnonce = Some(v),
            OPAQUE => c.opaque = Some(v),
            // auth-param extensions (RFC 7616 `userhash`, ...) are ignored.
            _ => {}
        }
    }
}

/// A value that parsed as Digest params.
struct Scan<'a> {
    creds: Collect<'a>,
}

impl<'a> Scan<'a> {
    /// The credentials, if no param is duplicated or missing.
    fn finish(self) -> Result<DigestCredentials<'a>, Malformed> {
        let Collect {
            c, seen, duplicate, ..
        } = self.creds;
        if let Some(name) = duplicate {
            return Err(Malformed::Duplicate(name));
        }
        for (bit, name) in [
            (USERNAME, "username"),
            (REALM, "realm"),
            (NONCE, "nonce"),
            (URI, "uri"),
            (RESPONSE, "response"),
        ] {
            if seen & bit == 0 {
                return Err(Malformed::Missing(name));
            }
        }
        if c.username.is_empty() {
            return Err(Malformed::Missing("username"));
        }
        Ok(c)
    }
}

/// The `name=value` params after the `Digest` scheme, collected in order. Scans bytes
/// (every delimiter is ASCII) and copies nothing but values holding escapes.
fn scan(value: &str) -> Result<Scan<'_>, Malformed> {
    if value.len() > MAX_CREDENTIALS {
        return Err(Malformed::TooLong);
    }
    let v = value.trim_ascii_start();
    let scheme_end = v
        .bytes()
        .position(|b| b == b' ' || b == b'\t')
        .ok_or(Malformed::NotDigest)?;
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
    let mut out = Collect::default();
    let mut any = false;
    let mut i = 0;
    loop {
        i = ws(i);
        if i >= b.len() {
            if !any {
                return Err(Malformed::Syntax("no params"));
            }
            return Ok(Scan { creds: out });
        }
        let start = i;
        i = run(b, i, is_token_byte);
        if i == start {
            return Err(Malformed::Syntax("expected a param name"));
        }
        let name = s.get(start..i).unwrap_or("");
        i = ws(i);
        if b.get(i) != Some(&b'=') {
            return Err(Malformed::Syntax("expected `=` after a param name"));
        }
        i = ws(i + 1);
        let val = if b.get(i) == Some(&b'"') {
            i += 1;
            let (val, end) = quoted(s, i)?;
            i = end;
            val
        } else {
            let start = i;
            i = run(b, i, |c| {
                is_token_byte(c) || matches!(c, b'/' | b':' | b'@')
            });
            if i == start {
                return Err(Malformed::Syntax("expected a param value"));
            }
            Cow::Borrowed(s.get(start..i).unwrap_or(""))
        };
        out.param(name, val);
        any = true;
        i = ws(i);
        match b.get(i) {
            None => return Ok(Scan { creds: out }),
            Some(b',') => i += 1,
            Some(_) => return Err(Malformed::Syntax("expected `,` between params")),
        }
    }
}

/// The quoted string of `s` starting at `i` (just after the opening `"`), unescaped,
/// and the index just after its closing `"`. Borrowed unless it holds an escape.
fn quoted(s: &str, mut i: usize) -> Result<(Cow<'_, str>, usize), Malformed> {
    let b = s.as_bytes();
    let start = i;
    // Fast path: up to the closing quote without an escape.
    let special = |c: &u8| matches!(c, b'"' | b'\\' | b'\r' | b'\n');
    let rest = b.get(i..).unwrap_or_default();
    i += rest.iter().position(special).unwrap_or(rest.len());
    match b.get(i) {
        None => return Err(Malformed::Syntax("unterminated quoted string")),
        Some(b'"') => return Ok((Cow::Borrowed(s.get(start..i).unwrap_or("")), i + 1)),
        Some(b'\r' | b'\n') => return Err(Malformed::Syntax("line break in a value")),
        Some(_) => {}
    }
    let mut val = String::with_capacity(i - start + 16);
    let mut from = start;
    loop {
        match b.get(i) {
            None => return Err(Malformed::Syntax("unterminated quoted string")),
            Some(b'"') => {
                val.push_str(s.get(from..i).unwrap_or(""));
                return Ok((Cow::Owned(val), i + 1));
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
}

/// The end of the run of bytes of `b` from `i` that `ok` accepts.
fn run(b: &[u8], i: usize, ok: impl Fn(u8) -> bool) -> usize {
    let rest = b.get(i..).unwrap_or_default();
    i + rest.iter().position(|&c| !ok(c)).unwrap_or(rest.len())
}

/// RFC 3261 `token` characters.
fn is_token_byte(c: u8) -> bool {
    TOKEN[usize::from(c)]
}

/// [`is_token_byte`] by byte value.
static TOKEN: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        t[c] = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        c += 1;
    }
    t
};
