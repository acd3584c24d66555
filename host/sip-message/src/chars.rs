//! Byte classes and small scanning helpers shared by the parsers (RFC 3261 §25).

/// Byte classes (bit flags) of RFC 3261 §25, looked up in one table.
pub(crate) mod class {
    /// `token` characters.
    pub(crate) const TOKEN: u8 = 1;
    /// `user` characters: unreserved / escaped / user-unreserved.
    pub(crate) const USER: u8 = 2;
    /// `password` characters: unreserved / escaped / `& = + $ ,`.
    pub(crate) const PASSWORD: u8 = 4;
    /// hostname characters (`_` accepted leniently).
    pub(crate) const HOST: u8 = 8;
    /// `uric`: reserved / unreserved / escaped (plus `#`, `[`, `]`).
    pub(crate) const URIC: u8 = 16;
    /// URI `paramchar`: param-unreserved / unreserved / escaped.
    pub(crate) const UPARAM: u8 = 32;
    /// header `gen-value` unquoted characters: token plus `:` `[` `]`.
    pub(crate) const GENVAL: u8 = 64;
    /// SP / HTAB.
    pub(crate) const WS: u8 = 128;
}

// Evaluated at compile time: an out-of-range index would fail the build, not panic.
#[allow(clippy::indexing_slicing)]
const fn build_classes() -> [u8; 256] {
    use class::*;
    let mut t = [0u8; 256];
    let mut i = 0;
    while i < 256 {
        let b = i as u8;
        if b.is_ascii_alphanumeric() {
            t[i] = TOKEN | USER | PASSWORD | HOST | URIC | UPARAM | GENVAL;
        }
        i += 1;
    }
    const fn add(mut t: [u8; 256], chars: &[u8], flag: u8) -> [u8; 256] {
        let mut i = 0;
        while i < chars.len() {
            t[chars[i] as usize] |= flag;
            i += 1;
        }
        t
    }
    let mark: &[u8] = b"-_.!~*'()";
    t = add(t, b"-.!%*_+`'~", TOKEN | GENVAL);
    t = add(t, mark, USER | PASSWORD | URIC | UPARAM);
    t = add(t, b"%&=+$,;?/", USER);
    t = add(t, b"%&=+$,", PASSWORD);
    t = add(t, b"-._", HOST);
    t = add(t, b";/?:@&=+$,%#[]", URIC);
    t = add(t, b"[]/:&+$%", UPARAM);
    t = add(t, b":[]", GENVAL);
    t = add(t, b" \t", WS);
    t
}

static CLASSES: [u8; 256] = build_classes();

/// Whether `b` has any of the class bits in `flags`.
#[inline(always)]
pub(crate) fn is(b: u8, flags: u8) -> bool {
    CLASSES.get(usize::from(b)).is_some_and(|c| c & flags != 0)
}

/// Whether every byte of `s` is in class `flags`.
#[inline]
pub(crate) fn all(s: &[u8], flags: u8) -> bool {
    s.iter().all(|&b| is(b, flags))
}

/// `token` characters: alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~".
#[inline(always)]
pub(crate) fn is_token_byte(b: u8) -> bool {
    is(b, class::TOKEN)
}

/// A non-empty RFC 3261 token.
#[inline]
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_byte)
}

/// SP or HTAB.
#[inline(always)]
pub(crate) fn is_ws(b: u8) -> bool {
    b == b' ' || b == b'\t'
}

/// Trim SP/HTAB (only those; Unicode whitespace is content).
#[inline]
pub(crate) fn trim_ws(s: &str) -> &str {
    let b = s.as_bytes();
    let start = skip_ws(b, 0);
    let mut end = b.len();
    while end > start && b.get(end - 1).copied().is_some_and(is_ws) {
        end -= 1;
    }
    // SP/HT are ASCII, so both ends are char boundaries.
    s.get(start..end).unwrap_or("")
}

/// Trim SP/HTAB from a byte slice.
#[inline]
pub(crate) fn trim_ws_bytes(mut b: &[u8]) -> &[u8] {
    while let [first, rest @ ..] = b {
        if is_ws(*first) {
            b = rest;
        } else {
            break;
        }
    }
    while let [rest @ .., last] = b {
        if is_ws(*last) {
            b = rest;
        } else {
            break;
        }
    }
    b
}

/// Index of the first occurrence of the ASCII byte `c` (a plain loop: the strings here
/// are short, where `memchr` set-up costs more than it saves).
#[inline]
pub(crate) fn find_byte(s: &str, c: u8) -> Option<usize> {
    s.bytes().position(|b| b == c)
}

/// Split around the first occurrence of the ASCII byte `c`.
#[inline]
pub(crate) fn split_byte(s: &str, c: u8) -> Option<(&str, &str)> {
    let i = find_byte(s, c)?;
    Some((s.get(..i)?, s.get(i + 1..)?))
}

/// Split around the first SP/HTAB.
#[inline]
pub(crate) fn split_ws(s: &str) -> Option<(&str, &str)> {
    let i = s.bytes().position(is_ws)?;
    Some((s.get(..i)?, s.get(i + 1..)?))
}

/// Iterator over the SP/HTAB-separated non-empty words of `s`.
pub(crate) fn words(s: &str) -> Words<'_> {
    Words { s, pos: 0 }
}

/// See [`words`].
pub(crate) struct Words<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Iterator for Words<'a> {
    type Item = &'a str;
    #[inline]
    fn next(&mut self) -> Option<&'a str> {
        let b = self.s.as_bytes();
        let start = skip_ws(b, self.pos);
        if start >= b.len() {
            self.pos = start;
            return None;
        }
        let end = take_while(b, start, |c| !is_ws(c));
        self.pos = end;
        self.s.get(start..end)
    }
}

/// Index of the first byte at or after `i` that is not SP/HTAB (or `b.len()`).
#[inline]
pub(crate) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    while let Some(&c) = b.get(i) {
        if !is_ws(c) {
            break;
        }
        i += 1;
    }
    i
}

/// Index of the first byte at or after `i` for which `pred` is false (or `b.len()`).
#[inline]
pub(crate) fn take_while(b: &[u8], mut i: usize, pred: impl Fn(u8) -> bool) -> usize {
    while let Some(&c) = b.get(i) {
        if !pred(c) {
            break;
        }
        i += 1;
    }
    i
}

/// Given `b[open] == b'"'`, the index of the closing quote, honouring quoted-pairs.
pub(crate) fn quoted_end(b: &[u8], open: usize) -> Option<usize> {
    let mut i = open.checked_add(1)?;
    let mut escaped = false;
    while let Some(&c) = b.get(i) {
        if escaped {
            escaped = false;
        } else if c == b'\\' {
            escaped = true;
        } else if c == b'"' {
            return Some(i);
        }
        i += 1;
    }
    None
}

/// Parse a non-empty run of ASCII decimal digits into a `u64`, `None` on overflow or any
/// non-digit.
pub(crate) fn parse_digits_u64(b: &[u8]) -> Option<u64> {
    if b.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in b {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add(u64::from(c - b'0'))?;
    }
    Some(v)
}

/// A port: 1 to 5 digits, value <= 65535.
pub(crate) fn parse_port(s: &str) -> Option<u16> {
    if s.len() > 5 {
        return None;
    }
    parse_digits_u64(s.as_bytes()).and_then(|v| u16::try_from(v).ok())
}

/// Content-Length value: digits only (surrounding SP/HT allowed).
pub(crate) fn parse_content_length(v: &[u8]) -> Option<usize> {
    parse_digits_u64(trim_ws_bytes(v)).and_then(|n| usize::try_from(n).ok())
}

/// Split a header value on commas that are outside quoted strings and `<...>`.
/// Pieces are trimmed of SP/HT.
pub(crate) fn split_list(s: &str) -> ListSplit<'_> {
    ListSplit {
        s,
        pos: 0,
        done: false,
    }
}

/// Iterator returned by [`split_list`].
pub(crate) struct ListSplit<'a> {
    s: &'a str,
    pos: usize,
    done: bool,
}

impl<'a> ListSplit<'a> {
    /// The text after the comma that ended the last item; `None` once the last item
    /// was returned.
    pub(crate) fn rest(&self) -> Option<&'a str> {
        if self.done {
            None
        } else {
            self.s.get(self.pos..)
        }
    }
}

impl<'a> Iterator for ListSplit<'a> {
    type Item = &'a str;
    fn next(&mut self) -> Option<&'a str> {
        if self.done {
            return None;
        }
        let b = self.s.as_bytes();
        let start = self.pos;
        let mut i = start;
        let mut in_quote = false;
        let mut escaped = false;
        let mut angle = false;
        while let Some(&c) = b.get(i) {
            if in_quote {
                if escaped {
                    escaped = false;
                } else if c == b'\\' {
                    escaped = true;
                } else if c == b'"' {
                    in_quote = false;
                }
            } else {
                match c {
                    b'"' => in_quote = true,
                    b'<' => angle = true,
                    b'>' => angle = false,
                    b',' if !angle => {
                        self.pos = i + 1;
                        return Some(trim_ws(self.s.get(start..i).unwrap_or("")));
                    }
                    _ => {}
                }
            }
            i += 1;
        }
        self.done = true;
        Some(trim_ws(self.s.get(start..).unwrap_or("")))
    }
}

/// Which parameter grammar to apply in [`for_each_param`].
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParamStyle {
    /// URI parameters: no whitespace, `paramchar` names and values.
    Uri,
    /// Header parameters (`generic-param`): SWS around `;` and `=`, values token / host /
    /// quoted-string.
    Header,
}

#[inline(always)]
fn is_uri_param_byte(b: u8) -> bool {
    is(b, class::UPARAM)
}

#[inline(always)]
fn is_gen_value_byte(b: u8) -> bool {
    is(b, class::GENVAL)
}

/// Check `%HH` escapes in `s`.
#[inline]
pub(crate) fn escapes_valid(s: &[u8]) -> bool {
    if !s.contains(&b'%') {
        return true;
    }
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        if c == b'%' {
            match (s.get(i + 1), s.get(i + 2)) {
                (Some(a), Some(b)) if a.is_ascii_hexdigit() && b.is_ascii_hexdigit() => i += 3,
                _ => return false,
            }
        } else {
            i += 1;
        }
    }
    true
}

/// Parse `*( ";" name [ "=" value ] )`, calling `f` for each parameter. `s` must start with
/// `;` (header style: after optional whitespace) or be empty / whitespace.
pub(crate) fn for_each_param<'a>(
    s: &'a str,
    style: ParamStyle,
    f: impl FnMut(&'a str, Option<&'a str>),
) -> Result<(), &'static str> {
    let end = for_each_param_until(s, style, false, f)?;
    if end == s.len() {
        Ok(())
    } else {
        Err("unexpected character before parameter")
    }
}

/// As [`for_each_param`], but with `stop_at_comma` (header style) parsing stops at a
/// top-level `,` (the next list element); returns the index where parsing stopped.
pub(crate) fn for_each_param_until<'a>(
    s: &'a str,
    style: ParamStyle,
    stop_at_comma: bool,
    mut f: impl FnMut(&'a str, Option<&'a str>),
) -> Result<usize, &'static str> {
    let b = s.as_bytes();
    let hdr = style == ParamStyle::Header;
    let sk = |i: usize| if hdr { skip_ws(b, i) } else { i };
    let mut i = sk(0);
    while i < b.len() {
        if stop_at_comma && b.get(i) == Some(&b',') {
            return Ok(i);
        }
        if b.get(i) != Some(&b';') {
            return Err("unexpected character before parameter");
        }
        i = sk(i + 1);
        let name_end = if hdr {
            take_while(b, i, is_token_byte)
        } else {
            take_while(b, i, is_uri_param_byte)
        };
        if name_end == i {
            return Err("empty parameter name");
        }
        let name = s.get(i..name_end).ok_or("bad parameter")?;
        i = sk(name_end);
        let mut value = None;
        if b.get(i) == Some(&b'=') {
            i = sk(i + 1);
            if hdr && b.get(i) == Some(&b'"') {
                let q = quoted_end(b, i).ok_or("unterminated quoted parameter")?;
                value = Some(s.get(i..=q).ok_or("bad parameter")?);
                i = q + 1;
            } else {
                let end = if hdr {
                    take_while(b, i, is_gen_value_byte)
                } else {
                    take_while(b, i, is_uri_param_byte)
                };
                if end == i {
                    return Err("empty parameter value");
                }
                let v = s.get(i..end).ok_or("bad parameter")?;
                if !hdr && !escapes_valid(v.as_bytes()) {
                    return Err("bad escape in parameter");
                }
                value = Some(v);
                i = end;
            }
        }
        if !hdr && !escapes_valid(name.as_bytes()) {
            return Err("bad escape in parameter");
        }
        i = sk(i);
        f(name, value);
    }
    Ok(i)
}

/// Find a parameter by case-insensitive name.
pub(crate) fn find_param<'a>(
    params: &'a [(String, Option<String>)],
    name: &str,
) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_deref())
}

/// Replace the first parameter named `name` (case-insensitive) or append it.
pub(crate) fn set_param(
    params: &mut Vec<(String, Option<String>)>,
    name: &str,
    value: Option<String>,
) {
    if let Some(slot) = params
        .iter_mut()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
    {
        slot.1 = value;
    } else {
        params.push((name.to_string(), value));
    }
}

/// Write `;name[=value]` for each parameter.
pub(crate) fn fmt_params(
    f: &mut std::fmt::Formatter<'_>,
    params: &[(String, Option<String>)],
) -> std::fmt::Result {
    for (n, v) in params {
        match v {
            Some(v) => write!(f, ";{n}={v}")?,
            None => write!(f, ";{n}")?,
        }
    }
    Ok(())
}

/// Owned copy of a parsed parameter.
pub(crate) fn own_param(n: &str, v: Option<&str>) -> (String, Option<String>) {
    (n.to_string(), v.map(str::to_string))
}
