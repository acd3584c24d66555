//! Peers as `host:port`: where a message goes next (first Route, else the request URI;
//! for replies the top Via), and the `peers_accepting` entries matched against it.

use weir_sdk::{Header, Message};

// === Peer ===

/// A host (lower case, IPv6 without brackets) and a port; a configured peer without a
/// port matches every port of its host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Peer {
    host: String,
    port: Option<u16>,
}

impl Peer {
    /// The peer at an address as the host reports it (`Message::source`).
    pub fn from_address(ip: &str, port: u16) -> Peer {
        Peer {
            host: ip.trim_matches(['[', ']']).to_ascii_lowercase(),
            port: Some(port),
        }
    }

    /// `host:port` (`[v6]:port`), or the host alone without a port: the kv key of a
    /// learned peer.
    pub fn key(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        match self.port {
            Some(port) => format!("{host}:{port}"),
            None => host,
        }
    }

    /// Whether this (configured) peer names `hop`.
    pub fn matches(&self, hop: &Peer) -> bool {
        self.host == hop.host && self.port.is_none_or(|p| Some(p) == hop.port)
    }
}

/// A `peers_accepting` entry: `host`, `host:port`, `[v6]`, `[v6]:port`, optionally
/// with a `sip:` prefix. `None` if it is none of those.
pub fn normalize_peer(text: &str) -> Option<Peer> {
    let text = text.trim();
    let text = strip_scheme(text).map_or(text, |(_, rest)| rest);
    let peer = parse_host_port(text, None)?;
    let valid = peer
        .host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"-.:_".contains(&b));
    valid.then_some(peer)
}

// === next hop ===

/// Where the message goes next, as far as the message says: for a request the first
/// Route entry, else the request URI (the host removed its own Route entries before
/// the chain; a route's `next_hop` is not visible to modules); for a reply the top Via
/// (ours is already removed): its `received` and `rport`, else its sent-by.
pub fn next_hop(msg: &Message, headers: &[Header]) -> Option<Peer> {
    if msg.is_request() {
        let route = headers
            .iter()
            .find(|h| h.is("Route"))
            .and_then(|h| h.value.split(',').next().map(str::to_string));
        match route {
            Some(entry) => uri_peer(&entry),
            None => uri_peer(&msg.request_uri()),
        }
    } else {
        let via = headers.iter().find(|h| h.is("Via"))?;
        via_peer(via.value.split(',').next()?)
    }
}

/// The host and port of a SIP URI, bare or in `<...>`; 5060 (5061 for `sips:`) when
/// it has no port.
fn uri_peer(value: &str) -> Option<Peer> {
    let value = value.trim();
    let uri = match value.find('<') {
        Some(open) => {
            let inner = value.get(open + 1..)?;
            inner.get(..inner.find('>')?)?
        }
        None => value,
    };
    let (scheme, rest) = strip_scheme(uri.trim())?;
    let default_port = if scheme.eq_ignore_ascii_case("sips") {
        5061
    } else {
        5060
    };
    let hostport = rest.split([';', '?']).next()?;
    let hostport = hostport.rsplit('@').next()?;
    parse_host_port(hostport, Some(default_port))
}

/// The peer a reply goes to from one Via value.
fn via_peer(via: &str) -> Option<Peer> {
    let mut parts = via.split(';');
    let sent_by = parts.next()?.split_whitespace().last()?;
    let mut peer = parse_host_port(sent_by, Some(5060))?;
    for param in parts {
        let (k, v) = match param.split_once('=') {
            Some((k, v)) => (k.trim(), v.trim()),
            None => continue,
        };
        if k.eq_ignore_ascii_case("received") && !v.is_empty() {
            peer.host = v.trim_matches(['[', ']']).to_ascii_lowercase();
        } else if k.eq_ignore_ascii_case("rport") {
            if let Ok(port) = v.parse() {
                peer.port = Some(port);
            }
        }
    }
    Some(peer)
}

/// `sip:rest` -> ("sip", "rest"), for `sip` and `sips` only.
fn strip_scheme(uri: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = uri.split_once(':')?;
    (scheme.eq_ignore_ascii_case("sip") || scheme.eq_ignore_ascii_case("sips"))
        .then_some((scheme, rest))
}

fn parse_host_port(text: &str, default_port: Option<u16>) -> Option<Peer> {
    let (host, port) = if let Some(v6) = text.strip_prefix('[') {
        let (host, after) = v6.split_once(']')?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':')?)),
        }
    } else {
        match text.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (text, None),
        }
    };
    if host.is_empty() {
        return None;
    }
    let port = match port {
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0)?),
        None => default_port,
    };
    Some(Peer {
        host: host.to_ascii_lowercase(),
        port,
    })
}
