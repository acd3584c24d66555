//! Kamailio's dispatcher hash (`ds_get_hash`) and the hash keys of algorithms 0, 1, 2, 3,
//! 5 and 7.
//!
//! The hash works on u32 with wrapping arithmetic; every byte is read as a *signed* char
//! sign-extended to 32 bits, so bytes >= 0x80 contribute `0xFFFFFFxx`. That is what the
//! x86-64 builds of Kamailio compute (plain `char` is signed there), which the reference
//! vectors come from.

/// Kamailio's flag `1` (`DS_HASH_USER_ONLY`): hash only the URI user.
pub const HASH_USER_ONLY: u32 = 1;

#[inline]
fn sbyte(b: u8) -> u32 {
    // signed char sign-extended to 32 bits
    b as i8 as i32 as u32
}

fn mix(mut h: u32, key: &[u8]) -> u32 {
    let mut chunks = key.chunks_exact(4);
    for c in &mut chunks {
        let v = (sbyte(c[0]) << 24)
            .wrapping_add(sbyte(c[1]) << 16)
            .wrapping_add(sbyte(c[2]) << 8)
            .wrapping_add(sbyte(c[3]));
        h = h.wrapping_add(v ^ (v >> 3));
    }
    let mut v: u32 = 0;
    for &b in chunks.remainder() {
        v = (v << 8).wrapping_add(sbyte(b));
    }
    h.wrapping_add(v ^ (v >> 3))
}

/// `ds_get_hash(x, y)`: the second key (if any) continues with the same state.
/// Never returns 0 (0 becomes 1).
pub fn ds_hash(x: &[u8], y: Option<&[u8]>) -> u32 {
    let mut h = mix(0, x);
    if let Some(y) = y {
        h = mix(h, y);
    }
    h = h
        .wrapping_add(h >> 11)
        .wrapping_add((h >> 13).wrapping_add(h >> 23));
    if h == 0 {
        1
    } else {
        h
    }
}

/// Kamailio's `trim()`: spaces, tabs, CR and LF on both ends.
pub fn trim(s: &str) -> &str {
    s.trim_matches([' ', '\t', '\r', '\n'])
}

/// The parts of a SIP URI the dispatcher needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SipUri<'a> {
    pub secure: bool,
    /// User part without password; empty when none.
    pub user: &'a str,
    /// Host as written (IPv6 references keep their brackets).
    pub host: &'a str,
    /// Port text as written, when a port is given.
    pub port: Option<&'a str>,
    /// Numeric port (0 when not given or unparsable).
    pub port_no: u16,
}

impl<'a> SipUri<'a> {
    /// Parses `sip:`/`sips:` (any case) URIs; `<...>` around the URI is stripped.
    pub fn parse(uri: &'a str) -> Option<SipUri<'a>> {
        let uri = trim(uri);
        let uri = uri
            .strip_prefix('<')
            .and_then(|u| u.strip_suffix('>'))
            .unwrap_or(uri);
        let (secure, rest) = if uri.len() >= 5 && uri[..5].eq_ignore_ascii_case("sips:") {
            (true, &uri[5..])
        } else if uri.len() >= 4 && uri[..4].eq_ignore_ascii_case("sip:") {
            (false, &uri[4..])
        } else {
            return None;
        };
        // Headers ('?') may contain '@'; the user part ends at the first '@' before them.
        let head_end = rest.find('?').unwrap_or(rest.len());
        let (userinfo, hostport) = match rest[..head_end].find('@') {
            Some(at) => (&rest[..at], &rest[at + 1..]),
            None => ("", rest),
        };
        let user = userinfo.split(':').next().unwrap_or("");
        let hp_end = hostport.find([';', '?']).unwrap_or(hostport.len());
        let hostport = &hostport[..hp_end];
        let (host, port) = if hostport.starts_with('[') {
            let close = hostport.find(']')?;
            let host = &hostport[..=close];
            match &hostport[close + 1..] {
                "" => (host, None),
                p => (host, Some(p.strip_prefix(':')?)),
            }
        } else {
            match hostport.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            }
        };
        let port = port.filter(|p| !p.is_empty());
        if let Some(p) = port {
            if !p.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
        }
        let port_no = port.and_then(|p| p.parse::<u16>().ok()).unwrap_or(0);
        Some(SipUri {
            secure,
            user,
            host,
            port,
            port_no,
        })
    }
}

/// `get_uri_hash_keys`: (user, host[:port]) where the port is kept unless it is 5060
/// (5061 for sips); with [`HASH_USER_ONLY`] in `ds_flags` the second key is empty.
/// Returns `None` for URIs that do not parse or have no host.
pub fn uri_hash_keys(uri: &str, ds_flags: u32) -> Option<(String, String)> {
    let u = SipUri::parse(uri)?;
    if u.host.is_empty() {
        return None;
    }
    let key2 = if ds_flags & HASH_USER_ONLY != 0 {
        String::new()
    } else {
        let default_port = if u.secure { 5061 } else { 5060 };
        match u.port {
            Some(p) if u.port_no != default_port => format!("{}:{}", u.host, p),
            _ => u.host.to_string(),
        }
    };
    Some((u.user.to_string(), key2))
}

/// Hash of a URI (algorithms 1, 2, 3).
pub fn hash_uri(uri: &str, ds_flags: u32) -> Option<u32> {
    let (k1, k2) = uri_hash_keys(uri, ds_flags)?;
    Some(ds_hash(k1.as_bytes(), Some(k2.as_bytes())))
}

/// Hash of the Call-ID body, trimmed (algorithm 0).
pub fn hash_callid(call_id: &str) -> u32 {
    ds_hash(trim(call_id).as_bytes(), None)
}

/// The user part of a digest username (`user@domain` -> `user`), trimmed.
pub fn auth_user_key(username: &str) -> &str {
    let u = username.split('@').next().unwrap_or("");
    trim(u)
}

/// Hash of the digest username (algorithm 5). `None` when the user part is empty (the
/// caller then falls back to round robin, as Kamailio does).
pub fn hash_auth_user(username: &str) -> Option<u32> {
    let k = auth_user_key(username);
    if k.is_empty() {
        return None;
    }
    Some(ds_hash(k.as_bytes(), None))
}

/// Hash of the `hash_pvar` value, trimmed (algorithm 7). `None` when empty (Kamailio
/// fails the selection).
pub fn hash_pvar(value: &str) -> Option<u32> {
    let v = trim(value);
    if v.is_empty() {
        return None;
    }
    Some(ds_hash(v.as_bytes(), None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_vectors() {
        assert_eq!(ds_hash(b"abc@x", None), 1834960047);
        assert_eq!(ds_hash(b"alice", Some(b"example.com")), 1442294598);
        assert_eq!(ds_hash(b"callid-12345@host", None), 1346185339);
        assert_eq!(ds_hash(&[0xe9, 0xff, 0x80, 0x7a], None), 4127702420);
        // Two keys, high bytes in full words and in the tails (checked against the C
        // function compiled with gcc on x86-64).
        assert_eq!(
            ds_hash(b"h\xe9llo-\xff\x80z", Some(b"w\xc3\xa9b:5080")),
            2206253142
        );
    }

    #[test]
    fn high_bytes_are_signed() {
        // Sign extension must differ from an unsigned reading.
        fn unsigned_hash(x: &[u8]) -> u32 {
            let mut h: u32 = 0;
            let mut c = x.chunks_exact(4);
            for b in &mut c {
                let v = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                h = h.wrapping_add(v ^ (v >> 3));
            }
            let mut v = 0u32;
            for &b in c.remainder() {
                v = (v << 8).wrapping_add(b as u32);
            }
            h = h.wrapping_add(v ^ (v >> 3));
            h.wrapping_add(h >> 11)
                .wrapping_add((h >> 13).wrapping_add(h >> 23))
        }
        assert_eq!(ds_hash(b"abc@x", None), unsigned_hash(b"abc@x"));
        assert_ne!(
            ds_hash(&[0xe9, 0xff, 0x80, 0x7a], None),
            unsigned_hash(&[0xe9, 0xff, 0x80, 0x7a])
        );
        // tail bytes >= 0x80 too
        assert_ne!(ds_hash("é".as_bytes(), None), unsigned_hash("é".as_bytes()));
    }

    #[test]
    fn empty_keys_give_one() {
        assert_eq!(ds_hash(b"", None), 1);
        assert_eq!(ds_hash(b"", Some(b"")), 1);
    }

    #[test]
    fn second_key_continues_state() {
        // Splitting the same bytes differently changes the result (tail flush per key).
        assert_ne!(
            ds_hash(b"alice", Some(b"example.com")),
            ds_hash(b"aliceexample.com", None)
        );
        // An empty second key adds nothing.
        assert_eq!(ds_hash(b"abc@x", Some(b"")), ds_hash(b"abc@x", None));
    }

    #[test]
    fn uri_keys() {
        let k = |u: &str, f: u32| uri_hash_keys(u, f);
        assert_eq!(
            k("sip:alice@example.com", 0),
            Some(("alice".into(), "example.com".into()))
        );
        assert_eq!(
            k("sip:alice@example.com:5060;transport=udp", 0),
            Some(("alice".into(), "example.com".into()))
        );
        assert_eq!(
            k("sip:alice:secret@example.com:5080?X=a@b", 0),
            Some(("alice".into(), "example.com:5080".into()))
        );
        assert_eq!(
            k("sips:bob@example.com:5061", 0),
            Some(("bob".into(), "example.com".into()))
        );
        assert_eq!(
            k("sips:bob@example.com:5060", 0),
            Some(("bob".into(), "example.com:5060".into()))
        );
        assert_eq!(
            k("sip:example.com:5061", 0),
            Some(("".into(), "example.com:5061".into()))
        );
        assert_eq!(
            k("<sip:carol@[2001:db8::1]:5070>", 0),
            Some(("carol".into(), "[2001:db8::1]:5070".into()))
        );
        assert_eq!(
            k("SIP:dave@h:5080", HASH_USER_ONLY),
            Some(("dave".into(), "".into()))
        );
        assert_eq!(k("tel:+123", 0), None);
        assert_eq!(k("sip:", 0), None);
        assert_eq!(k("sip:a@h:x", 0), None);
    }

    #[test]
    fn key_hashes() {
        assert_eq!(hash_uri("sip:alice@example.com:5060", 0), Some(1442294598));
        assert_eq!(
            hash_uri("sip:alice@example.com", HASH_USER_ONLY),
            Some(ds_hash(b"alice", Some(b"")))
        );
        assert_eq!(hash_callid("  callid-12345@host\r\n"), 1346185339);
        assert_eq!(hash_auth_user("abc@x.org"), Some(ds_hash(b"abc", None)));
        assert_eq!(hash_auth_user("@x.org"), None);
        assert_eq!(hash_pvar(" abc@x "), Some(1834960047));
        assert_eq!(hash_pvar("  "), None);
    }
}
