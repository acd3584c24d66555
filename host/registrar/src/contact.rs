//! Contact-list, q-value, option-tag and Path parsing for REGISTER.
//!
//! weir-message parses one name-addr ([`NameAddr::parse`]); this module splits the
//! comma-separated lists itself (quotes with escapes and `<...>` respected) so that the
//! `*` wildcard can be recognised among ordinary contacts.

use weir_message::{NameAddr, Uri};

/// The Contact headers of a REGISTER.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Contacts {
    /// No Contact header: the REGISTER only fetches the bindings.
    None,
    /// `Contact: *` alone (removes every binding; needs `Expires: 0`).
    Star,
    /// Ordinary contacts in header order (all lines, each split on commas).
    List(Vec<ContactSpec>),
}

/// One parsed contact.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactSpec {
    /// The URI as written inside `<>` (or the addr-spec without header params).
    pub uri: String,
    /// The `expires` param, raw.
    pub expires: Option<String>,
    /// The `q` param, raw.
    pub q: Option<String>,
    /// `+sip.instance`, outer quotes removed (angle brackets kept, as Kamailio).
    pub instance: Option<String>,
    /// `reg-id`, raw.
    pub reg_id: Option<String>,
    /// Every other header param, `(name, value)`; flags have an empty value, quoted
    /// values keep their quotes.
    pub params: Vec<(String, String)>,
}

/// Why the Contact headers are unacceptable.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ContactError {
    /// An element does not parse as a name-addr / addr-spec.
    #[error("Contact parse error: {0}")]
    Parse(String),
    /// `*` together with other contacts (or twice).
    #[error("* used in contact and more than 1 contact")]
    StarWithOthers,
}

/// Splits a header value on top-level commas: commas inside quoted strings (with `\`
/// escapes) and inside `<...>` do not split. Elements are trimmed; empty elements are
/// returned as empty strings so the caller can reject them.
pub fn split_list(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0usize;
    let mut in_quote = false;
    let mut escaped = false;
    let mut angle = false;
    for (i, c) in s.char_indices() {
        if in_quote {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quote = false;
            }
            continue;
        }
        match c {
            '"' => in_quote = true,
            '<' => angle = true,
            '>' => angle = false,
            ',' if !angle => {
                out.push(s.get(start..i).unwrap_or("").trim());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(s.get(start..).unwrap_or("").trim());
    out
}

fn unquote(v: &str) -> &str {
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}

/// Parses every Contact header value (already collected from all lines, compact `m`
/// included) into [`Contacts`].
pub fn parse_contacts<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Result<Contacts, ContactError> {
    parse_contacts_with_uris(values).map(|(c, _)| c)
}

/// [`parse_contacts`], and the parsed URI of each contact of a [`Contacts::List`]
/// (in the same order).
pub(crate) fn parse_contacts_with_uris<'a>(
    values: impl IntoIterator<Item = &'a str>,
) -> Result<(Contacts, Vec<Uri>), ContactError> {
    let mut star = 0usize;
    let mut list = Vec::new();
    let mut uris = Vec::new();
    let mut any = false;
    let mut add = |elem: &str| {
        if elem == "*" {
            star += 1;
            return Ok(());
        }
        if elem.is_empty() {
            return Err(ContactError::Parse("empty element".into()));
        }
        let (spec, uri) = parse_one(elem)?;
        list.push(spec);
        uris.push(uri);
        Ok(())
    };
    for value in values {
        any = true;
        if value.contains(',') {
            for elem in split_list(value) {
                add(elem)?;
            }
        } else {
            // One element (what `split_list` returns without a comma).
            add(value.trim())?;
        }
    }
    match (any, star, list.is_empty()) {
        (false, _, _) => Ok((Contacts::None, uris)),
        (true, 0, _) => Ok((Contacts::List(list), uris)),
        (true, 1, true) => Ok((Contacts::Star, uris)),
        _ => Err(ContactError::StarWithOthers),
    }
}

fn parse_one(elem: &str) -> Result<(ContactSpec, Uri), ContactError> {
    let na = NameAddr::parse(elem).map_err(|e| ContactError::Parse(e.to_string()))?;
    // The URI as printed is about as long as written.
    let mut uri = String::with_capacity(elem.len());
    na.uri.push_to(&mut uri);
    let mut spec = ContactSpec {
        uri,
        expires: None,
        q: None,
        instance: None,
        reg_id: None,
        params: Vec::new(),
    };
    for (name, value) in na.params {
        let v = value.unwrap_or_default();
        if name.eq_ignore_ascii_case("expires") {
            spec.expires.get_or_insert(v);
        } else if name.eq_ignore_ascii_case("q") {
            spec.q.get_or_insert(v);
        } else if name.eq_ignore_ascii_case("+sip.instance") {
            let inst = unquote(&v).to_string();
            if !inst.is_empty() {
                spec.instance.get_or_insert(inst);
            }
        } else if name.eq_ignore_ascii_case("reg-id") {
            spec.reg_id.get_or_insert(v);
        } else {
            spec.params.push((name, v));
        }
    }
    Ok((spec, na.uri))
}

/// Parses an RFC 3261 qvalue (`0[.ddd]` / `1[.000]`) into q*1000.
pub fn parse_q(s: &str) -> Option<u16> {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, f),
        None => (s, ""),
    };
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut milli: u16 = 0;
    let mut scale = 100u16;
    for b in frac.bytes() {
        milli += u16::from(b - b'0') * scale;
        scale /= 10;
    }
    match int {
        "0" => Some(milli),
        "1" if milli == 0 => Some(1000),
        _ => None,
    }
}

/// Prints q*1000 the way Kamailio's `q2str` does: `1`, `0`, `0.5`, `0.25`, `0.125`.
pub fn format_q(q: u16) -> String {
    if q >= 1000 {
        return "1".into();
    }
    if q == 0 {
        return "0".into();
    }
    let s = format!("0.{q:03}");
    s.trim_end_matches('0').to_string()
}

/// Parses a delta-seconds value (digits only); values above `u32::MAX` saturate.
pub fn parse_delta(s: &str) -> Option<u32> {
    let s = s.trim();
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut n: u64 = 0;
    for b in s.bytes() {
        n = n.saturating_mul(10).saturating_add(u64::from(b - b'0'));
    }
    Some(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Whether the option tag `tag` is listed in any of `values` (Supported / Require
/// lines; case-insensitive).
pub fn has_option_tag<'a>(values: impl IntoIterator<Item = &'a str>, tag: &str) -> bool {
    values
        .into_iter()
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(tag))
}

/// One Path entry: the name-addr as written and its URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PathEntry {
    /// The element as written (e.g. `<sip:edge.example.com;lr>`).
    pub raw: String,
    /// Its URI (e.g. `sip:edge.example.com;lr`).
    pub uri: String,
    /// Whether the URI carries `;ob` (RFC 5626).
    pub ob: bool,
}

/// Parses every Path header value, in order.
pub fn parse_path<'a>(values: impl IntoIterator<Item = &'a str>) -> Result<Vec<PathEntry>, String> {
    let mut out = Vec::new();
    for v in values {
        for elem in split_list(v) {
            if elem.is_empty() {
                return Err("empty Path element".into());
            }
            let na = NameAddr::parse(elem).map_err(|e| e.to_string())?;
            out.push(PathEntry {
                raw: elem.to_string(),
                ob: na.uri.param("ob").is_some(),
                uri: na.uri.to_string(),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn list(vals: &[&str]) -> Vec<ContactSpec> {
        match parse_contacts(vals.iter().copied()).unwrap() {
            Contacts::List(l) => l,
            other => panic!("not a list: {other:?}"),
        }
    }

    #[test]
    fn split_respects_quotes_and_brackets() {
        assert_eq!(
            split_list(r#""A, \"B\" <c>" <sip:a@x>;p="1,2", <sip:b@x;u=1,2>,sip:c@x"#),
            vec![
                r#""A, \"B\" <c>" <sip:a@x>;p="1,2""#,
                "<sip:b@x;u=1,2>",
                "sip:c@x"
            ]
        );
        assert_eq!(split_list("a,,b"), vec!["a", "", "b"]);
        assert_eq!(split_list(""), vec![""]);
    }

    #[test]
    fn contacts_with_params() {
        let l = list(&[
            r#""Alice, at home" <sip:alice@192.0.2.1:5060;transport=tcp>;q=0.5;expires=300;+sip.instance="<urn:uuid:00000000-0000-1000-8000-000A95A0E128>";reg-id=1;pn-provider=apns;pn-prid="00fc13adff78512";pn-param=ABCD1234.com.example.voip;+sip.ice"#,
            "sip:bob@example.com;expires=60, <sip:carol@example.com>",
        ]);
        assert_eq!(l.len(), 3);
        let a = &l[0];
        assert_eq!(a.uri, "sip:alice@192.0.2.1:5060;transport=tcp");
        assert_eq!(a.q.as_deref(), Some("0.5"));
        assert_eq!(a.expires.as_deref(), Some("300"));
        assert_eq!(
            a.instance.as_deref(),
            Some("<urn:uuid:00000000-0000-1000-8000-000A95A0E128>")
        );
        assert_eq!(a.reg_id.as_deref(), Some("1"));
        assert_eq!(
            a.params,
            vec![
                ("pn-provider".to_string(), "apns".to_string()),
                ("pn-prid".to_string(), "\"00fc13adff78512\"".to_string()),
                (
                    "pn-param".to_string(),
                    "ABCD1234.com.example.voip".to_string()
                ),
                ("+sip.ice".to_string(), String::new()),
            ]
        );
        // addr-spec: the params after the URI are header params
        assert_eq!(l[1].uri, "sip:bob@example.com");
        assert_eq!(l[1].expires.as_deref(), Some("60"));
        assert_eq!(l[2].uri, "sip:carol@example.com");
        assert_eq!(l[2].expires, None);
    }

    #[test]
    fn uri_params_stay_in_the_uri() {
        let l = list(&["<sip:a@x;expires=5;q=1>;expires=7"]);
        assert_eq!(l[0].uri, "sip:a@x;expires=5;q=1");
        assert_eq!(l[0].expires.as_deref(), Some("7"));
        assert_eq!(l[0].q, None);
    }

    #[test]
    fn star_rules() {
        assert_eq!(parse_contacts(["*"]).unwrap(), Contacts::Star);
        assert_eq!(parse_contacts([" * "]).unwrap(), Contacts::Star);
        assert_eq!(parse_contacts(Vec::<&str>::new()).unwrap(), Contacts::None);
        assert_eq!(
            parse_contacts(["*, <sip:a@x>"]),
            Err(ContactError::StarWithOthers)
        );
        assert_eq!(
            parse_contacts(["<sip:a@x>", "*"]),
            Err(ContactError::StarWithOthers)
        );
        assert_eq!(
            parse_contacts(["*", "*"]),
            Err(ContactError::StarWithOthers)
        );
        // a star inside quotes or brackets is not a star
        assert!(parse_contacts([r#""*" <sip:a@x>"#]).is_ok());
    }

    #[test]
    fn bad_contacts() {
        for bad in [
            "",
            "<sip:a@x>,",
            ",<sip:a@x>",
            "<sip:a@x",
            "\"unterminated <sip:a@x>",
            "Bell, Alexander <sip:a@x>",
            "<sip:a@x> junk",
            "<>",
            "<sip:a@x>;+sip.instance=\"<urn:x>",
        ] {
            assert!(
                matches!(parse_contacts([bad]), Err(ContactError::Parse(_))),
                "{bad:?} should fail"
            );
        }
    }

    #[test]
    fn q_values() {
        assert_eq!(parse_q("0"), Some(0));
        assert_eq!(parse_q("0."), Some(0));
        assert_eq!(parse_q("0.5"), Some(500));
        assert_eq!(parse_q("0.25"), Some(250));
        assert_eq!(parse_q("0.125"), Some(125));
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("1.000"), Some(1000));
        for bad in ["", "1.5", "2", "0.1234", "-0.5", ".5", "0,5", "abc", "01"] {
            assert_eq!(parse_q(bad), None, "{bad}");
        }
        assert_eq!(format_q(1000), "1");
        assert_eq!(format_q(0), "0");
        assert_eq!(format_q(500), "0.5");
        assert_eq!(format_q(250), "0.25");
        assert_eq!(format_q(125), "0.125");
        assert_eq!(format_q(100), "0.1");
        assert_eq!(format_q(7), "0.007");
    }

    #[test]
    fn deltas_and_tags() {
        assert_eq!(parse_delta("0"), Some(0));
        assert_eq!(parse_delta(" 3600 "), Some(3600));
        assert_eq!(parse_delta("99999999999999999999"), Some(u32::MAX));
        assert_eq!(parse_delta("12a"), None);
        assert_eq!(parse_delta("-1"), None);
        assert_eq!(parse_delta(""), None);
        assert!(has_option_tag(["timer, Path", "gruu"], "path"));
        assert!(has_option_tag(["timer", " GRUU "], "gruu"));
        assert!(!has_option_tag(["pathx"], "path"));
    }

    #[test]
    fn paths() {
        let p = parse_path([
            "<sip:p1.example.com;lr>, <sip:p2.example.com;lr;ob>",
            "<sip:p3@x;lr>",
        ])
        .unwrap();
        assert_eq!(p.len(), 3);
        assert_eq!(p[0].raw, "<sip:p1.example.com;lr>");
        assert_eq!(p[0].uri, "sip:p1.example.com;lr");
        assert!(!p[0].ob);
        assert!(p[1].ob);
        assert!(parse_path(["<sip:a@x>,"]).is_err());
        assert!(parse_path(["junk junk"]).is_err());
    }
}
