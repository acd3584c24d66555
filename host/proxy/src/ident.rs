//! Who "we" are (listener addresses and aliases), and the Via branches we generate.

use std::hash::{BuildHasher, Hash, Hasher};

use weir_message::{push_dec, push_hex, Message, Uri, Via, ViaRef};
use weir_transport::{ListenerInfo, Transport};

/// RFC 3261 magic cookie.
const COOKIE: &str = "z9hG4bK";
/// Marks a branch Weir generated: `z9hG4bKw<route>x<txn hash><loop hash>`.
pub(crate) const MARK: &str = "z9hG4bKw";

/// The hasher of the branch and tag hashes: the same in every run of a build (a
/// stateless retransmission after a restart keeps its branch), and foldhash rather than
/// SipHash for speed (ADR 0008). Nothing is looked up by these hashes.
fn fixed_hasher() -> foldhash::fast::FoldHasher<'static> {
    foldhash::fast::FixedState::with_seed(0x5765_6972_2d62_7268).build_hasher()
}

/// The addresses and names that mean this proxy.
#[derive(Debug, Clone)]
pub struct Identity {
    /// (host as advertised, port, transport) for each listener.
    addrs: Vec<(String, u16, Transport)>,
    aliases: Vec<String>,
}

impl Identity {
    /// Build from the bound listeners and the configured aliases.
    pub fn new(listeners: &[ListenerInfo], aliases: &[String]) -> Identity {
        Identity {
            addrs: listeners
                .iter()
                .flat_map(|l| {
                    // Both the advertised and the bound address mean us.
                    let bound = weir_transport::host_of(&l.local);
                    [
                        (l.host.to_ascii_lowercase(), l.port, l.transport),
                        (bound, l.local.port(), l.transport),
                    ]
                })
                .collect(),
            aliases: aliases.to_vec(),
        }
    }

    fn port_is_ours(&self, port: u16) -> bool {
        self.addrs.iter().any(|(_, p, _)| *p == port)
    }

    /// Whether `host[:port]` names this proxy. A missing port means the default 5060
    /// (5061 for `sips`), which must be one of ours.
    pub fn is_me(&self, host: &str, port: Option<u16>, secure: bool) -> bool {
        let port = port.unwrap_or(if secure { 5061 } else { 5060 });
        // `name` equals `host` lowercased (compared without making the lowercase copy).
        let is_host = |name: &str| {
            name.len() == host.len()
                && name
                    .bytes()
                    .zip(host.bytes())
                    .all(|(n, h)| n == h.to_ascii_lowercase())
        };
        let named = self.aliases.iter().any(|a| is_host(a));
        if named {
            return self.port_is_ours(port);
        }
        self.addrs.iter().any(|(h, p, _)| *p == port && is_host(h))
    }

    /// Whether a URI points at this proxy.
    pub fn is_my_uri(&self, uri: &Uri) -> bool {
        self.is_me(
            &uri.host,
            uri.port,
            matches!(uri.scheme, weir_message::Scheme::Sips),
        )
    }

    /// Whether a Via's sent-by is one of ours.
    pub fn is_my_via(&self, via: &Via) -> bool {
        self.is_me(
            &via.host,
            via.port,
            via.transport.eq_ignore_ascii_case("TLS"),
        )
    }
}

/// Hash of what identifies the transaction upstream: the incoming top Via branch when it
/// carries the RFC 3261 cookie, so that retransmissions, the CANCEL and the ACK of a
/// non-2xx reply get the same branch downstream (§16.11); otherwise the RFC 2543 fields.
fn txn_hash(req: &Message, top: &ViaRef<'_>) -> u64 {
    let mut h = fixed_hasher();
    match top.branch() {
        Some(b) if b.starts_with(COOKIE) => {
            b.hash(&mut h);
            // The host lowercased (a copy only when it has capitals).
            if top.host.bytes().any(|c| c.is_ascii_uppercase()) {
                top.host.to_ascii_lowercase().hash(&mut h);
            } else {
                top.host.hash(&mut h);
            }
            top.port.hash(&mut h);
        }
        _ => {
            req.request_uri().hash(&mut h);
            req.from_tag_ref().hash(&mut h);
            req.call_id().hash(&mut h);
            req.cseq().ok().map(|c| c.seq).hash(&mut h);
            // The whole via-parm, as re-serialised (rare: RFC 2543 peers only).
            req.top_via()
                .map(|v| v.to_string())
                .unwrap_or_default()
                .hash(&mut h);
        }
    }
    h.finish()
}

/// Hash of the fields §16.3 step 4 uses to tell a loop from a spiral. The To tag is left
/// out so the ACK of a non-2xx reply keeps the INVITE's branch.
pub(crate) fn loop_hash(req: &Message) -> u32 {
    let mut h = fixed_hasher();
    req.request_uri().hash(&mut h);
    req.from_tag_ref().hash(&mut h);
    req.call_id().hash(&mut h);
    req.cseq().ok().map(|c| c.seq).hash(&mut h);
    // Neither name has a compact form, so a line of another length is neither: most
    // requests carry neither, and one look at each line's length says so.
    let maybe = |h: &weir_message::Header| matches!(h.name.len(), 13 | 19);
    if req.headers.iter().any(maybe) {
        for v in req.headers.get_all("Proxy-Require") {
            v.hash(&mut h);
        }
        for v in req.headers.get_all("Proxy-Authorization") {
            v.hash(&mut h);
        }
    }
    // Truncation is intended: 32 bits are plenty to tell a loop from a spiral.
    (h.finish() & 0xffff_ffff) as u32
}

/// The branch for a request leaving by `route` (index into the route table).
#[cfg(test)]
pub(crate) fn branch(req: &Message, top: &ViaRef<'_>, route: usize, loop_hash: u32) -> String {
    let mut b = String::with_capacity(MARK.len() + 20 + 1 + 24);
    push_branch(&mut b, req, top, route, loop_hash);
    b
}

/// [`branch`], appended to `out` (as `format!` would write it, without `core::fmt`).
pub(crate) fn push_branch(
    out: &mut String,
    req: &Message,
    top: &ViaRef<'_>,
    route: usize,
    loop_hash: u32,
) {
    out.push_str(MARK);
    push_dec(out, route as u64);
    out.push('x');
    push_hex(out, txn_hash(req, top), 16);
    push_hex(out, u64::from(loop_hash), 8);
}

/// The route index and loop hash from a branch Weir generated.
pub(crate) fn parse_branch(branch: &str) -> Option<(usize, u32)> {
    let rest = branch.strip_prefix(MARK)?;
    let (route, hashes) = rest.split_once('x')?;
    let route = route.parse().ok()?;
    let loop_part = hashes.get(16..24)?;
    let lh = u32::from_str_radix(loop_part, 16).ok()?;
    Some((route, lh))
}

/// The route index in the top Via's branch, when that Via is ours.
pub(crate) fn route_of(msg: &Message) -> Option<usize> {
    let top = msg.top_via_ref().ok()?;
    top.branch().and_then(parse_branch).map(|(r, _)| r)
}

/// A To tag for stateless replies: stable for retransmissions of the same request.
pub(crate) fn to_tag(req: &Message) -> String {
    to_tag_with(req, req.top_via_ref().ok().as_ref())
}

/// [`to_tag`] with the request's top Via already parsed (`None` if it does not parse).
pub(crate) fn to_tag_with(req: &Message, top: Option<&ViaRef<'_>>) -> String {
    let mut h = fixed_hasher();
    req.call_id().hash(&mut h);
    req.from_tag_ref().hash(&mut h);
    if let Some(v) = top {
        v.branch().hash(&mut h);
    }
    // `w` and 16 lowercase hex digits (as `format!("w{:016x}")`, without core::fmt).
    let mut tag = String::with_capacity(17);
    tag.push('w');
    push_hex(&mut tag, h.finish(), 16);
    tag
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn to_tag_is_w_and_16_hex_digits() {
        let req = Message::parse(
            b"REGISTER sip:example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKabc\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:a@example.com>\r\nCall-ID: c\r\nCSeq: 1 REGISTER\r\n\r\n",
            &weir_message::Limits::default(),
        )
        .unwrap();
        let tag = to_tag(&req);
        let mut h = fixed_hasher();
        req.call_id().hash(&mut h);
        req.from_tag_ref().hash(&mut h);
        req.top_via_ref().unwrap().branch().hash(&mut h);
        assert_eq!(tag, format!("w{:016x}", h.finish()));
        assert_eq!(tag, to_tag_with(&req, req.top_via_ref().ok().as_ref()));
    }

    /// Proxy-Require and Proxy-Authorization count, in that order, wherever they are.
    #[test]
    fn loop_hash_covers_proxy_require_and_proxy_authorization() {
        let parse = |extra: &str| {
            Message::parse(
                format!("INVITE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKabc\r\nFrom: <sip:a@example.com>;tag=1\r\n{extra}To: <sip:b@example.com>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n").as_bytes(),
                &weir_message::Limits::default(),
            )
            .unwrap()
        };
        let reference = |req: &Message| {
            let mut h = fixed_hasher();
            req.request_uri().hash(&mut h);
            req.from_tag_ref().hash(&mut h);
            req.call_id().hash(&mut h);
            req.cseq().ok().map(|c| c.seq).hash(&mut h);
            for v in req.headers.get_all("Proxy-Require") {
                v.hash(&mut h);
            }
            for v in req.headers.get_all("Proxy-Authorization") {
                v.hash(&mut h);
            }
            (h.finish() & 0xffff_ffff) as u32
        };
        let plain = parse("");
        let both = parse("Proxy-Authorization: Digest a=1\r\nproxy-require: x\r\n");
        let one = parse("Proxy-Require: x\r\n");
        let other = parse("X-Thirteen-ch: x\r\n");
        for req in [&plain, &both, &one, &other] {
            assert_eq!(loop_hash(req), reference(req));
        }
        assert_ne!(loop_hash(&plain), loop_hash(&both));
        assert_ne!(loop_hash(&plain), loop_hash(&one));
        assert_eq!(loop_hash(&plain), loop_hash(&other));
    }

    #[test]
    fn branch_round_trip() {
        let req = Message::parse(
            b"INVITE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKabc\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n",
            &weir_message::Limits::default(),
        )
        .unwrap();
        let top = req.top_via_ref().unwrap();
        let lh = loop_hash(&req);
        let b = branch(&req, &top, 3, lh);
        assert!(b.starts_with("z9hG4bKw3x"));
        assert_eq!(
            b,
            format!("{MARK}3x{:016x}{lh:08x}", txn_hash(&req, &top)),
            "written as format! would"
        );
        assert_eq!(parse_branch(&b), Some((3, lh)));
        assert_eq!(b, branch(&req, &top, 3, lh), "stable for retransmissions");
        // The hash is the one of the owned Via's lowercased host and owned From tag.
        let mut h = fixed_hasher();
        "z9hG4bKabc".hash(&mut h);
        "192.0.2.1".to_string().hash(&mut h);
        None::<u16>.hash(&mut h);
        assert!(b.contains(&format!("x{:016x}", h.finish())));
        let upper = Message::parse(
            b"INVITE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP Host.Example.COM;branch=z9hG4bKabc\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n",
            &weir_message::Limits::default(),
        )
        .unwrap();
        let lower = Message::parse(
            b"INVITE sip:b@example.com SIP/2.0\r\nVia: SIP/2.0/UDP host.example.com;branch=z9hG4bKabc\r\nFrom: <sip:a@example.com>;tag=1\r\nTo: <sip:b@example.com>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\n\r\n",
            &weir_message::Limits::default(),
        )
        .unwrap();
        assert_eq!(
            branch(&upper, &upper.top_via_ref().unwrap(), 3, lh),
            branch(&lower, &lower.top_via_ref().unwrap(), 3, lh),
            "sent-by host compared case-insensitively"
        );
        assert_eq!(parse_branch("z9hG4bKother"), None);
        assert_eq!(parse_branch("z9hG4bKw1xshort"), None);
    }

    fn udp_listener() -> ListenerInfo {
        ListenerInfo {
            name: "u".into(),
            transport: Transport::Udp,
            local: "127.0.0.1:5060".parse().unwrap(),
            host: "127.0.0.1".into(),
            port: 5060,
        }
    }

    #[test]
    fn identity_matches_ports_and_aliases() {
        let l = udp_listener();
        let id = Identity::new(&[l], &["proxy.example.com".into()]);
        assert!(id.is_me("127.0.0.1", Some(5060), false));
        assert!(id.is_me("127.0.0.1", None, false));
        assert!(!id.is_me("127.0.0.1", Some(5070), false));
        assert!(id.is_me("PROXY.example.com", None, false));
        assert!(!id.is_me("proxy.example.com", None, true));
        assert!(!id.is_me("192.0.2.1", Some(5060), false));
        assert!(!id.is_me("proxy.example.co", None, false));
        // Aliases are compared as configured with the host lowercased.
        let l = udp_listener();
        let id = Identity::new(&[l], &["Proxy.example.com".into()]);
        assert!(!id.is_me("Proxy.example.com", None, false));
    }
}
