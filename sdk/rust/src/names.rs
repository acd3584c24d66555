//! SIP header-name rules, the same ones the host applies.
//!
//! Names are case-insensitive, and a compact form (`v`, `i`, `m`, ...) is the same header
//! as its long form (`Via`, `Call-ID`, `Contact`, ...). [`Message`](crate::Message) already
//! applies these rules to every lookup and edit; this module is for a module's own
//! bookkeeping (config validation, sets of names, choosing a spelling).
//!
//! ```
//! use weir_sdk::names;
//!
//! assert!(names::equivalent("contact", "M"));
//! assert_eq!(names::canonical("v"), "Via");
//! assert_eq!(names::compact_form("Content-Type"), Some("c"));
//! assert!(names::is_protected("l"));
//! ```

/// Every compact form with its long form: RFC 3261 §7.3.3 (`i m e l c f s k t v`), RFC 6665
/// (`o u`), RFC 3515 (`r`), RFC 3892 (`b`), RFC 4028 (`x`), RFC 8224 (`y`) and RFC 3841
/// (`a j d`). `n` (Identity-Info, RFC 4474) is obsolete and, as in Kamailio, not a compact
/// form here.
pub const COMPACT_FORMS: &[(&str, &str)] = &[
    ("i", "Call-ID"),
    ("m", "Contact"),
    ("e", "Content-Encoding"),
    ("l", "Content-Length"),
    ("c", "Content-Type"),
    ("f", "From"),
    ("s", "Subject"),
    ("k", "Supported"),
    ("t", "To"),
    ("v", "Via"),
    ("o", "Event"),
    ("u", "Allow-Events"),
    ("r", "Refer-To"),
    ("b", "Referred-By"),
    ("x", "Session-Expires"),
    ("y", "Identity"),
    ("a", "Accept-Contact"),
    ("j", "Reject-Contact"),
    ("d", "Request-Disposition"),
];

/// The headers owned by the host: adding, setting or removing them is refused with
/// [`EditError::ProtectedHeader`](crate::EditError::ProtectedHeader); renaming is allowed.
pub const PROTECTED: &[&str] = &["Via", "Content-Length", "CSeq", "Call-ID"];

/// The long-form spelling for a header with a compact form (given either way, any case):
/// `"v"` and `"VIA"` give `"Via"`. Any other name is returned unchanged.
pub fn canonical(name: &str) -> &str {
    match entry(name) {
        Some((_, long)) => long,
        None => name,
    }
}

/// The compact form of a header, given in either form and any case: `"Via"` and `"V"`
/// give `Some("v")`; a header without a compact form gives `None`.
pub fn compact_form(name: &str) -> Option<&'static str> {
    entry(name).map(|(compact, _)| compact)
}

/// The long form of a header, given in either form and any case: `"v"` gives
/// `Some("Via")`; a header without a compact form gives `None`.
pub fn long_form(name: &str) -> Option<&'static str> {
    entry(name).map(|(_, long)| long)
}

/// True if `a` and `b` name the same header: equal ignoring ASCII case, after expanding
/// compact forms.
pub fn equivalent(a: &str, b: &str) -> bool {
    canonical(a).eq_ignore_ascii_case(canonical(b))
}

/// True if the header is owned by the host (`Via`, `Content-Length`, `CSeq`, `Call-ID`,
/// compact forms included).
pub fn is_protected(name: &str) -> bool {
    PROTECTED.iter().any(|p| equivalent(p, name))
}

/// True if `name` is a valid header name: a non-empty RFC 3261 `token`.
pub fn is_valid(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(is_token_byte)
}

/// True if `value` can be a header value: no CR, LF or NUL (folding is not accepted in
/// edits; the host writes each header on one line).
pub fn is_valid_value(value: &str) -> bool {
    let special = |c: &[u8]| c.iter().any(|&b| matches!(b, b'\r' | b'\n' | 0));
    // Eight bytes at a time: a word none of whose bytes is below 14 holds none of them.
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let mut words = value.as_bytes().chunks_exact(8);
    for c in &mut words {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let w = u64::from_le_bytes(w);
        if w.wrapping_sub(LO * 14) & !w & HI != 0 && special(c) {
            return false;
        }
    }
    !special(words.remainder())
}

/// A key for sets and maps of header names: the lower-cased long form, so that every
/// spelling of one header gives the same key (`"M"`, `"contact"` -> `"contact"`).
pub fn key(name: &str) -> String {
    canonical(name).to_ascii_lowercase()
}

fn entry(name: &str) -> Option<(&'static str, &'static str)> {
    COMPACT_FORMS.iter().copied().find(|(compact, long)| {
        name.eq_ignore_ascii_case(compact) || name.eq_ignore_ascii_case(long)
    })
}

// RFC 3261 §25.1: token = 1*(alphanum / "-" / "." / "!" / "%" / "*" / "_" / "+" / "`" / "'" / "~")
#[inline]
fn is_token_byte(b: u8) -> bool {
    TOKEN[usize::from(b)]
}

/// [`is_token_byte`] by byte value: one load per byte of a name checked (reply headers
/// are checked on every reply a module builds).
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_compact_form_is_equivalent_to_its_long_form() {
        for (compact, long) in COMPACT_FORMS {
            assert!(equivalent(compact, long), "{compact} / {long}");
            assert!(equivalent(&compact.to_uppercase(), &long.to_lowercase()));
            assert_eq!(compact_form(long), Some(*compact));
            assert_eq!(long_form(compact), Some(*long));
            assert_eq!(canonical(compact), *long);
        }
        assert_eq!(COMPACT_FORMS.len(), 19);
    }

    #[test]
    fn unknown_names_compare_case_insensitively() {
        assert!(equivalent("X-Foo", "x-foo"));
        assert!(!equivalent("X-Foo", "X-Bar"));
        assert!(!equivalent("n", "Identity-Info"));
        assert_eq!(canonical("User-Agent"), "User-Agent");
        assert_eq!(compact_form("User-Agent"), None);
        assert_eq!(key("M"), "contact");
    }

    #[test]
    fn protected_set_includes_compact_forms() {
        for name in [
            "Via",
            "v",
            "V",
            "content-length",
            "l",
            "CSeq",
            "cseq",
            "Call-ID",
            "i",
        ] {
            assert!(is_protected(name), "{name}");
        }
        for name in ["Contact", "m", "From", "Route", "Max-Forwards"] {
            assert!(!is_protected(name), "{name}");
        }
    }

    #[test]
    fn token_rules() {
        assert!(is_valid("X-Foo.bar!%*_+`'~"));
        assert!(!is_valid(""));
        assert!(!is_valid("X Foo"));
        assert!(!is_valid("X-Foo:"));
        assert!(is_valid_value("a, b ;c"));
        assert!(is_valid_value(""));
        assert!(!is_valid_value("a\r\nVia: x"));
        // In a later word, in the last partial one, and controls that are allowed.
        assert!(!is_valid_value("0123456789abcdef\n"));
        assert!(!is_valid_value("01234567\0"));
        assert!(!is_valid_value("0123456789\r"));
        assert!(is_valid_value("tab\there\x0b\x0c\x0e and more text"));
    }
}
