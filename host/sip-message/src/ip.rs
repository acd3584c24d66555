//! IP literals in host text (Via sent-by, URI hosts).

use std::net::{IpAddr, Ipv4Addr};

/// The IP address a host names, if it is an IP literal: an IPv4 dotted quad, or an IPv6
/// address with or without brackets (`[::1]`, as a URI or Via writes it). Exactly what
/// `str::parse::<IpAddr>` accepts once the brackets are off, with a fast path for IPv4,
/// which is what most hosts a proxy meets are (std's general parser costs several times
/// as much).
///
/// ```
/// use std::net::IpAddr;
/// use weir_message::host_ip;
/// assert_eq!(host_ip("192.0.2.1"), "192.0.2.1".parse::<IpAddr>().ok());
/// assert_eq!(host_ip("[2001:db8::1]"), "2001:db8::1".parse::<IpAddr>().ok());
/// assert_eq!(host_ip("example.com"), None);
/// assert_eq!(host_ip("01.2.3.4"), None);
/// ```
pub fn host_ip(host: &str) -> Option<IpAddr> {
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if let Some(v4) = dotted_quad(bare.as_bytes()) {
        return Some(IpAddr::V4(v4));
    }
    bare.parse().ok()
}

/// An IPv4 dotted quad as std reads one: four decimal octets of 1 to 3 digits, each at
/// most 255, no leading zero (but `0` itself), nothing else. `None` for anything else,
/// which the caller hands to the general parser.
fn dotted_quad(b: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut i = 0;
    for (k, slot) in octets.iter_mut().enumerate() {
        if k > 0 {
            if b.get(i) != Some(&b'.') {
                return None;
            }
            i += 1;
        }
        let start = i;
        let mut v: u16 = 0;
        while let Some(d) = b.get(i).filter(|d| d.is_ascii_digit()) {
            if i - start == 3 {
                return None;
            }
            v = v * 10 + u16::from(d - b'0');
            i += 1;
        }
        let len = i - start;
        if len == 0 || (len > 1 && b.get(start) == Some(&b'0')) {
            return None;
        }
        *slot = u8::try_from(v).ok()?;
    }
    (i == b.len()).then_some(Ipv4Addr::from(octets))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fast path never disagrees with std, on dotted quads and near misses.
    #[test]
    fn agrees_with_std() {
        let pieces = [
            "0", "1", "9", "10", "00", "01", "099", "255", "256", "999", "1000", "", ".", "a", " ",
            "-1", "+1", "1 ",
        ];
        let mut n = 0;
        for a in pieces {
            for b in pieces {
                for c in ["0", "255", "07", ""] {
                    for d in pieces {
                        for s in [
                            format!("{a}.{b}.{c}.{d}"),
                            format!("{a}.{b}.{c}"),
                            format!("{a}.{b}.{c}.{d}.1"),
                            format!("{a}{b}.{c}.{d}.{a}"),
                        ] {
                            let std = s.parse::<IpAddr>().ok();
                            assert_eq!(host_ip(&s), std, "{s:?}");
                            assert_eq!(host_ip(&format!("[{s}]")), std, "[{s:?}]");
                            n += 1;
                        }
                    }
                }
            }
        }
        assert!(n > 10_000);
        for s in [
            "::1",
            "[::1]",
            "::ffff:1.2.3.4",
            "[::1",
            "::1]",
            "[]",
            "",
            "localhost",
        ] {
            let bare = s
                .strip_prefix('[')
                .and_then(|h| h.strip_suffix(']'))
                .unwrap_or(s);
            assert_eq!(host_ip(s), bare.parse::<IpAddr>().ok(), "{s:?}");
        }
    }
}
