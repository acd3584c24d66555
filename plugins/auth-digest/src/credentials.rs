//! Parsing an `Authorization` / `Proxy-Authorization` header value (RFC 3261 §25.1
//! `credentials`, RFC 7616 §3.4): `Digest` followed by comma-separated `name=value`
//! params, values being tokens or quoted strings (with `\` escapes). Param names are
//! case-insensitive; whitespace around `=` and `,` is allowed.
//!
//! One pass over the value, without copies: values borrow from it unless they hold a
//! `\` escape.

use std::borrow::Cow;

use crate::bytes::{self, Classes};

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

/// The bit of a known param name (ASCII case ignored), 0 for others: [`known_at`] on
/// the whole name.
#[cfg(test)]
fn known(name: &str) -> u16 {
    match known_at(name.as_bytes(), 0) {
        Some((bit, end)) if end == name.len() => bit,
        _ => 0,
    }
}

/// The bit and end of the known param name at `i` of `b`, if one is there as a whole
/// token (the next byte is not a token byte): the common case, found with a comparison
/// or two of fixed length instead of a loop over the name. `None` for other names.
#[inline(always)]
fn known_at(b: &[u8], i: usize) -> Option<(u16, usize)> {
    let found = match b.get(i)? | 0x20 {
        b'u' => name_at(b, i, b"username", USERNAME).or_else(|| name_at(b, i, b"uri", URI)),
        b'r' => name_at(b, i, b"response", RESPONSE).or_else(|| name_at(b, i, b"realm", REALM)),
        b'n' => name_at(b, i, b"nonce", NONCE).or_else(|| name_at(b, i, b"nc", NC)),
        b'c' => name_at(b, i, b"cnonce", CNONCE),
        b'q' => name_at(b, i, b"qop", QOP),
        b'a' => name_at(b, i, b"algorithm", ALGORITHM),
        b'o' => name_at(b, i, b"opaque", OPAQUE),
        _ => None,
    }?;
    let end = i + found.1;
    let ends_token = b
        .get(end)
        .is_none_or(|&c| CLASS[usize::from(c)] & TOKEN == 0);
    ends_token.then_some((found.0, end))
}

/// `(bit, N)` if `b` holds the lowercase letters `name` at `i`, ASCII case ignored
/// (`c | 0x20` is a lowercase letter only for that letter and its capital). A fixed
/// length: the comparison is unrolled, with no loop.
#[inline(always)]
fn name_at<const N: usize>(b: &[u8], i: usize, name: &[u8; N], bit: u16) -> Option<(u16, usize)> {
    let at = b.get(i..i + N)?;
    let mut diff = 0;
    for (c, n) in at.iter().zip(name) {
        diff |= (c | 0x20) ^ n;
    }
    (diff == 0).then_some((bit, N))
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
    #[cfg(test)]
    fn param(&mut self, name: &'a str, v: Cow<'a, str>) {
        self.param_bit(known(name), name, v);
    }

    /// [`param`](Collect::param) when the bit of `name` is known already.
    fn param_bit(&mut self, bit: u16, name: &'a str, v: Cow<'a, str>) {
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
    // The scheme is the text up to the first SP or HTAB: `Digest` (any case) followed
    // by one of them.
    let vb = v.as_bytes();
    if !(vb
        .get(..6)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"Digest"))
        && matches!(vb.get(6), Some(b' ' | b'\t')))
    {
        return Err(Malformed::NotDigest);
    }
    let s = v.get(6..).unwrap_or("");
    let b = s.as_bytes();
    let mut out = Collect::default();
    let mut any = false;
    let mut i = 0;
    loop {
        i = ws(b, i);
        if i >= b.len() {
            if !any {
                return Err(Malformed::Syntax("no params"));
            }
            return Ok(Scan { creds: out });
        }
        let start = i;
        let bit = match known_at(b, i) {
            Some((bit, end)) => {
                i = end;
                bit
            }
            // Not a known name as a whole token (any case): another param.
            None => {
                i = skip(b, i, TOKEN);
                if i == start {
                    return Err(Malformed::Syntax("expected a param name"));
                }
                0
            }
        };
        let name = s.get(start..i).unwrap_or("");
        i = ws(b, i);
        if b.get(i) != Some(&b'=') {
            return Err(Malformed::Syntax("expected `=` after a param name"));
        }
        i = ws(b, i + 1);
        let val = if b.get(i) == Some(&b'"') {
            let (val, end) = quoted(s, i + 1)?;
            i = end;
            val
        } else {
            let start = i;
            i = skip(b, i, VALUE);
            if i == start {
                return Err(Malformed::Syntax("expected a param value"));
            }
            Cow::Borrowed(s.get(start..i).unwrap_or(""))
        };
        out.param_bit(bit, name, val);
        any = true;
        i = ws(b, i);
        match b.get(i) {
            None => return Ok(Scan { creds: out }),
            Some(b',') => i += 1,
            Some(_) => return Err(Malformed::Syntax("expected `,` between params")),
        }
    }
}

/// The quoted string of `s` starting at `i` (just after the opening `"`), unescaped,
/// and the index just after its closing `"`. Borrowed unless it holds an escape.
fn quoted(s: &str, i: usize) -> Result<(Cow<'_, str>, usize), Malformed> {
    let b = s.as_bytes();
    // Fast path: up to the closing quote without an escape.
    let end = bytes::skip_plain(b, i);
    match b.get(end) {
        None => Err(Malformed::Syntax("unterminated quoted string")),
        Some(b'"') => Ok((Cow::Borrowed(s.get(i..end).unwrap_or("")), end + 1)),
        Some(b'\\') => unescape(s, i, end),
        // CR or LF.
        Some(_) => Err(Malformed::Syntax("line break in a value")),
    }
}

/// [`quoted`] from `start` when an escape is at `i`: a copy without the `\`s. Not
/// inlined: rare, and it keeps [`scan`] small.
#[inline(never)]
fn unescape(s: &str, start: usize, mut i: usize) -> Result<(Cow<'_, str>, usize), Malformed> {
    let b = s.as_bytes();
    let mut val = String::with_capacity(i - start + 16);
    let mut from = start;
    loop {
        i = bytes::skip_plain(b, i);
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
            // CR or LF.
            Some(_) => return Err(Malformed::Syntax("line break in a value")),
        }
    }
}

/// The end of the run of bytes of `b` from `i` whose [`CLASS`] has a bit of `class`.
fn skip(b: &[u8], i: usize, class: u8) -> usize {
    bytes::skip(b, i, &CLASS, class)
}

/// `i` past the SP and HTAB of `b` there (usually none or one: a loop in line).
#[inline(always)]
fn ws(b: &[u8], mut i: usize) -> usize {
    while matches!(b.get(i), Some(b' ' | b'\t')) {
        i += 1;
    }
    i
}

/// [`CLASS`] bit: an RFC 3261 `token` character (a param name).
const TOKEN: u8 = 1;
/// [`CLASS`] bit: a character of an unquoted param value (`token`, `/`, `:`, `@`).
const VALUE: u8 = 1 << 1;

/// The classes of each byte value, one bit each.
static CLASS: Classes = {
    let mut t = [0u8; 256];
    let mut c = 0;
    while c < 256 {
        let b = c as u8;
        let token = b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
            );
        let mut class = 0;
        if token {
            class |= TOKEN | VALUE;
        }
        if matches!(b, b'/' | b':' | b'@') {
            class |= VALUE;
        }
        t[c] = class;
        c += 1;
    }
    t
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fuzz::Rng;

    /// The previous scanner (closures per byte class, a linear search of the known
    /// names), the reference the table-driven one above must agree with.
    mod previous {
        use super::super::{Collect, Malformed, Scan, MAX_CREDENTIALS};
        use std::borrow::Cow;

        pub fn known(name: &str) -> u16 {
            const NAMES: [(&str, u16); 10] = [
                ("username", super::super::USERNAME),
                ("realm", super::super::REALM),
                ("nonce", super::super::NONCE),
                ("uri", super::super::URI),
                ("response", super::super::RESPONSE),
                ("algorithm", super::super::ALGORITHM),
                ("qop", super::super::QOP),
                ("nc", super::super::NC),
                ("cnonce", super::super::CNONCE),
                ("opaque", super::super::OPAQUE),
            ];
            NAMES
                .iter()
                .find(|(n, _)| n.len() == name.len() && n.eq_ignore_ascii_case(name))
                .map_or(0, |&(_, bit)| bit)
        }

        pub fn scan(value: &str) -> Result<Scan<'_>, Malformed> {
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

        fn quoted(s: &str, mut i: usize) -> Result<(Cow<'_, str>, usize), Malformed> {
            let b = s.as_bytes();
            let start = i;
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

        fn run(b: &[u8], i: usize, ok: impl Fn(u8) -> bool) -> usize {
            let rest = b.get(i..).unwrap_or_default();
            i + rest.iter().position(|&c| !ok(c)).unwrap_or(rest.len())
        }

        fn is_token_byte(c: u8) -> bool {
            c.is_ascii_alphanumeric()
                || matches!(
                    c,
                    b'-' | b'.' | b'!' | b'%' | b'*' | b'_' | b'+' | b'`' | b'\'' | b'~'
                )
        }
    }

    /// What a scan gives, comparable: the credentials (or why not) and the realm seen.
    fn outcome(
        scan: Result<Scan<'_>, Malformed>,
    ) -> Result<(Option<String>, Result<DigestCredentials<'_>, Malformed>), Malformed> {
        scan.map(|s| {
            let realm = s
                .creds
                .realm_seen
                .then(|| s.creds.c.realm.clone().into_owned());
            (realm, s.finish())
        })
    }

    #[test]
    fn known_names_in_any_case_only() {
        for name in [
            "username",
            "REALM",
            "Nonce",
            "uRi",
            "response",
            "algorithm",
            "qop",
            "NC",
            "cnonce",
            "opaque",
            "usernamE",
        ] {
            assert_ne!(known(name), 0, "{name}");
            assert_eq!(known(name), previous::known(name), "{name}");
        }
        for name in [
            "",
            "u",
            "user",
            "usernames",
            "realn",
            "nc1",
            "x",
            "uni",
            "qoq",
        ] {
            assert_eq!(known(name), 0, "{name}");
        }
        // Bytes that `| 0x20` maps to a letter (`@` -> `` ` ``, `U` -> `u`) but no
        // other: only letters of the names match.
        assert_eq!(known("Uri"), URI);
        assert_eq!(known("\u{55}RI"), URI);
        assert_eq!(known("@ri"), 0);
    }

    #[test]
    fn scheme_and_params_edge_cases() {
        // The scheme is followed by SP or HTAB; leading whitespace is skipped.
        assert!(parse("\r\n\t DIGEST\tusername=a,realm=r,nonce=n,uri=u,response=x").is_ok());
        assert_eq!(parse("Digest,username=a"), Err(Malformed::NotDigest));
        assert_eq!(parse("Digestx username=a"), Err(Malformed::NotDigest));
        assert_eq!(parse("Diges username=a"), Err(Malformed::NotDigest));
        assert_eq!(parse("Digest "), Err(Malformed::Syntax("no params")));
        // Params in any order, whitespace around `=` and `,`, a trailing comma.
        let c = parse(
            "Digest response = x ,uri=\"sip:[::1]\",\tnonce=n, realm =\"r\", username=\"u\",",
        )
        .unwrap();
        assert_eq!(
            (&*c.username, &*c.realm, &*c.nonce, &*c.uri, &*c.response),
            ("u", "r", "n", "sip:[::1]", "x")
        );
        // An escaped CR is a character, an unescaped one is refused.
        let c = parse("Digest username=\"a\\\rb\", realm=r, nonce=n, uri=u, response=x").unwrap();
        assert_eq!(c.username, "a\rb");
        assert_eq!(
            parse("Digest username=\"a\\b\rc\""),
            Err(Malformed::Syntax("line break in a value"))
        );
        assert_eq!(
            parse("Digest username=\"a\\b"),
            Err(Malformed::Syntax("unterminated quoted string"))
        );
    }

    #[test]
    fn agrees_with_the_previous_scanner() {
        const PIECES: &[&str] = &[
            " ",
            "\t",
            ",",
            "=",
            "\"",
            "\\",
            "\r",
            "\n",
            "username",
            "Realm",
            "nonce",
            "URI",
            "response",
            "algorithm",
            "qop",
            "nc",
            "cnonce",
            "opaque",
            "userhash",
            "x",
            "a",
            "sip:u@h",
            "/",
            ":",
            "@",
            "ü",
            "é",
            "(",
            "0",
            "MD5",
            "auth",
            "r",
            "=\"",
            "\", ",
            "=a, ",
            "Digest ",
        ];
        const SCHEMES: &[&str] = &["Digest ", "digest\t", " DIGEST  ", "Digest", "Basic ", ""];
        let mut rng = Rng::new(0x5eed_0002);
        for _ in 0..200_000 {
            let v = format!(
                "{}{}",
                SCHEMES[rng.below(SCHEMES.len())],
                rng.text(PIECES, 24)
            );
            assert_eq!(outcome(scan(&v)), outcome(previous::scan(&v)), "{v:?}");
        }
        // Well-formed credentials with random values, in random order.
        let names = [
            "username", "realm", "nonce", "uri", "response", "qop", "nc", "x",
        ];
        let values = [
            "\"a\"",
            "\"\\\"\"",
            "b",
            "\"\"",
            "\"é\\ü\"",
            "sip:u@h:5060",
            "\"a, b\"",
        ];
        for _ in 0..50_000 {
            let mut v = String::from("Digest ");
            for i in 0..rng.below(10) {
                if i > 0 {
                    v.push_str([",", ", ", " ,"][rng.below(3)]);
                }
                v.push_str(names[rng.below(names.len())]);
                v.push_str(["=", " = "][rng.below(2)]);
                v.push_str(values[rng.below(values.len())]);
            }
            assert_eq!(outcome(scan(&v)), outcome(previous::scan(&v)), "{v:?}");
        }
        for name in ["a", "username", "NONCE", "nc", "opaque", "cnonce"] {
            assert_eq!(known(name), previous::known(name));
        }
    }
}
