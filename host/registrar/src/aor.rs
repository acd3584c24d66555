//! Address-of-record normalisation (Kamailio `extract_aor`).

use weir_message::{Scheme, UriRef};

use crate::config::Config;

/// A normalised AOR.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Aor {
    /// The store key: `sip:<user>@<domain>` with `use_domain`, else `sip:<user>`.
    /// The scheme is always `sip:` (a `sips:` or `tel:` URI names the same AOR).
    pub key: String,
    /// The unescaped (and, unless `case_sensitive`, lowercased) user part.
    pub user: String,
    /// The lowercased domain with `realm_prefix` stripped (empty for `tel:`).
    pub domain: String,
}

/// Why no AOR could be extracted.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AorError {
    /// The URI does not parse.
    #[error("Error while parsing AOR")]
    Parse,
    /// `%HH` escapes in the user part are invalid or not UTF-8.
    #[error("Error while unescaping username")]
    Unescape,
    /// Neither a user part nor (with `use_domain`) a domain.
    #[error("No username in To URI")]
    NoUser,
    /// Longer than Kamailio's limits (user 64, domain 128 chars... we allow 256 total).
    #[error("Address Of Record too long")]
    TooLong,
}

/// Longest AOR key accepted.
pub const MAX_AOR_LEN: usize = 256;

fn unescape(s: &str) -> Result<String, AorError> {
    if !s.contains('%') {
        return Ok(s.to_string());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = |j: usize| b.get(j).and_then(|h| (*h as char).to_digit(16));
            match (hex(i + 1), hex(i + 2)) {
                (Some(h), Some(l)) => {
                    out.push(u8::try_from(h * 16 + l).map_err(|_| AorError::Unescape)?);
                    i += 3;
                }
                _ => return Err(AorError::Unescape),
            }
        } else {
            out.push(c);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| AorError::Unescape)
}

/// The AOR of a URI string under `cfg`.
pub fn aor_of(uri: &str, cfg: &Config) -> Result<Aor, AorError> {
    let u = UriRef::parse(uri.trim()).map_err(|_| AorError::Parse)?;
    aor_of_uri(u, cfg)
}

/// The AOR of a parsed URI under `cfg` (a [`weir_message::Uri`] converts with `.into()`).
pub fn aor_of_uri(u: UriRef<'_>, cfg: &Config) -> Result<Aor, AorError> {
    let raw_user = u.user.unwrap_or("");
    let mut user = unescape(raw_user)?;
    if !cfg.case_sensitive {
        if user.is_ascii() {
            user.make_ascii_lowercase();
        } else {
            user = user.to_lowercase();
        }
    }
    let mut domain = if u.scheme == Scheme::Tel {
        String::new()
    } else {
        u.host.to_ascii_lowercase()
    };
    if let Some(p) = cfg.realm_prefix.as_deref() {
        let p = p.to_ascii_lowercase();
        if domain.len() > p.len() && domain.starts_with(&p) {
            domain = domain.split_off(p.len());
        }
    }
    let key = if cfg.use_domain {
        match (user.is_empty(), domain.is_empty()) {
            (true, false) => ["sip:", &domain].concat(),
            (false, true) => ["sip:", &user].concat(),
            (false, false) => ["sip:", &user, "@", &domain].concat(),
            (true, true) => return Err(AorError::NoUser),
        }
    } else {
        if user.is_empty() {
            return Err(AorError::NoUser);
        }
        ["sip:", &user].concat()
    };
    if key.len() > MAX_AOR_LEN {
        return Err(AorError::TooLong);
    }
    Ok(Aor { key, user, domain })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn cfg() -> Config {
        Config::default()
    }

    #[test]
    fn normalisation() {
        let c = cfg();
        assert_eq!(
            aor_of("sip:Alice@EXAMPLE.com:5060;transport=tcp", &c)
                .unwrap()
                .key,
            "sip:alice@example.com"
        );
        assert_eq!(
            aor_of("sips:alice@example.com", &c).unwrap().key,
            "sip:alice@example.com"
        );
        assert_eq!(
            aor_of("sip:%41lice@example.com", &c).unwrap().key,
            "sip:alice@example.com"
        );
        assert_eq!(
            aor_of("sip:example.com", &c).unwrap().key,
            "sip:example.com"
        );
        assert_eq!(aor_of("tel:+1-555", &c).unwrap().key, "sip:+1-555");
        assert_eq!(aor_of("sip:a%zz@x", &c), Err(AorError::Parse));
        assert_eq!(aor_of("sip:a%ff@x", &c), Err(AorError::Unescape));
        assert_eq!(aor_of("not a uri", &c), Err(AorError::Parse));
        let long = format!("sip:{}@x", "a".repeat(300));
        assert_eq!(aor_of(&long, &c), Err(AorError::TooLong));
    }

    #[test]
    fn case_sensitive_keeps_user_only() {
        let c = Config {
            case_sensitive: true,
            ..cfg()
        };
        assert_eq!(
            aor_of("sip:Alice@EXAMPLE.com", &c).unwrap().key,
            "sip:Alice@example.com"
        );
    }

    #[test]
    fn without_domain_and_realm_prefix() {
        let c = Config {
            use_domain: false,
            ..cfg()
        };
        assert_eq!(aor_of("sip:Alice@a.example", &c).unwrap().key, "sip:alice");
        assert_eq!(aor_of("sip:a.example", &c), Err(AorError::NoUser));
        let c = Config {
            realm_prefix: Some("sip.".into()),
            ..cfg()
        };
        assert_eq!(
            aor_of("sip:bob@SIP.example.com", &c).unwrap().key,
            "sip:bob@example.com"
        );
        assert_eq!(aor_of("sip:bob@sip.", &c).unwrap().key, "sip:bob@sip.");
    }
}
