//! Where a URI or a Via points: transport and socket address. IP literals resolve at
//! once on the message path; host names go through the system resolver off that path.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

#[cfg(test)]
use weir_message::Via;
use weir_message::{host_ip, Scheme, Uri, ViaRef};
use weir_transport::{Destination, Transport};

use crate::stats::inc;
use crate::Core;

/// How long a name lookup may take before the message is dropped.
pub(crate) const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

/// A destination, or a name to look up first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    /// Known address.
    Ready(Destination),
    /// Needs a name lookup.
    Lookup {
        /// Host name.
        host: String,
        /// Port.
        port: u16,
        /// Transport.
        transport: Transport,
    },
}

impl Target {
    /// The same destination over another transport.
    pub(crate) fn with_transport(self, t: Transport) -> Target {
        match self {
            Target::Ready(d) => Target::Ready(Destination { transport: t, ..d }),
            Target::Lookup { host, port, .. } => Target::Lookup {
                host,
                port,
                transport: t,
            },
        }
    }
}

/// Why a destination cannot be used; the reply a request gets for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Unusable {
    pub code: u16,
    pub reason: &'static str,
}

fn transport_named(name: &str) -> Result<Transport, Unusable> {
    if name.eq_ignore_ascii_case("udp") {
        Ok(Transport::Udp)
    } else if name.eq_ignore_ascii_case("tcp") {
        Ok(Transport::Tcp)
    } else {
        Err(Unusable {
            code: 503,
            reason: "Transport Not Available",
        })
    }
}

fn target(host: &str, port: u16, transport: Transport) -> Target {
    if let Some(ip) = host_ip(host) {
        return Target::Ready(Destination {
            transport,
            addr: SocketAddr::new(ip, port),
        });
    }
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if bare.eq_ignore_ascii_case("localhost") {
        return Target::Ready(Destination {
            transport,
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port),
        });
    }
    Target::Lookup {
        host: bare.to_string(),
        port,
        transport,
    }
}

/// Where a request addressed to `uri` goes (RFC 3263 without NAPTR/SRV: the transport
/// param or UDP, the maddr or host, the port or 5060).
pub(crate) fn of_uri(uri: &Uri) -> Result<Target, Unusable> {
    if matches!(uri.scheme, Scheme::Sips) {
        return Err(Unusable {
            code: 503,
            reason: "Transport Not Available",
        });
    }
    if uri.host.is_empty() {
        return Err(Unusable {
            code: 416,
            reason: "Unsupported URI Scheme",
        });
    }
    let transport = match uri.transport() {
        Some(t) => transport_named(t)?,
        None => Transport::Udp,
    };
    let host = uri.maddr().unwrap_or(&uri.host);
    Ok(target(host, uri.port.unwrap_or(5060), transport))
}

/// Where a response goes by its (new) top Via (RFC 3261 §18.2.2, RFC 3581), from a
/// parsed Via: the tests' reference for [`of_via_ref`], which the proxy uses.
#[cfg(test)]
fn of_via(via: &Via) -> Option<Target> {
    sent_to(
        &via.transport,
        via.received(),
        &via.host,
        via.rport(),
        via.port,
    )
}

/// Where a response goes by its (new) top Via (RFC 3261 §18.2.2, RFC 3581), read
/// borrowed.
pub(crate) fn of_via_ref(via: &ViaRef<'_>) -> Option<Target> {
    sent_to(
        via.transport,
        via.received(),
        via.host,
        via.rport(),
        via.port,
    )
}

fn sent_to(
    transport: &str,
    received: Option<&str>,
    host: &str,
    rport: Option<Option<u16>>,
    port: Option<u16>,
) -> Option<Target> {
    let transport = transport_named(transport).ok()?;
    let host = received.unwrap_or(host);
    let port = match rport {
        Some(Some(p)) => p,
        _ => port.unwrap_or(5060),
    };
    Some(target(host, port, transport))
}

impl Core {
    /// Run `then` with the resolved destination: now for an address, after a lookup for
    /// a name. A failed lookup is counted and the message dropped.
    pub(crate) fn resolve_then<F>(&self, target: Target, then: F)
    where
        F: FnOnce(&Core, Destination) + Send + 'static,
    {
        match target {
            Target::Ready(d) => then(self, d),
            Target::Lookup {
                host,
                port,
                transport,
            } => {
                let Some(core) = self.me.upgrade() else {
                    return;
                };
                self.runtime.spawn(async move {
                    let found = tokio::time::timeout(
                        LOOKUP_TIMEOUT,
                        tokio::net::lookup_host((host.as_str(), port)),
                    )
                    .await;
                    let addr = match found {
                        Ok(Ok(mut addrs)) => addrs.next(),
                        _ => None,
                    };
                    match addr {
                        Some(addr) => then(&core, Destination { transport, addr }),
                        None => {
                            inc(&core.stats.unresolvable);
                            tracing::debug!(%host, "cannot resolve destination");
                        }
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uri_targets() {
        let u = Uri::parse("sip:bob@127.0.0.1:5070;transport=TCP").unwrap();
        assert_eq!(
            of_uri(&u).unwrap(),
            Target::Ready(Destination {
                transport: Transport::Tcp,
                addr: "127.0.0.1:5070".parse().unwrap()
            })
        );
        let u = Uri::parse("sip:[::1]").unwrap();
        assert_eq!(
            of_uri(&u).unwrap(),
            Target::Ready(Destination {
                transport: Transport::Udp,
                addr: "[::1]:5060".parse().unwrap()
            })
        );
        let u = Uri::parse("sip:example.com;maddr=127.0.0.2").unwrap();
        assert!(
            matches!(of_uri(&u).unwrap(), Target::Ready(d) if d.addr.ip().to_string() == "127.0.0.2")
        );
        let u = Uri::parse("sip:x.example.com:5080").unwrap();
        assert!(matches!(
            of_uri(&u).unwrap(),
            Target::Lookup { port: 5080, .. }
        ));
        let u = Uri::parse("sip:a@127.0.0.1;transport=sctp").unwrap();
        assert_eq!(of_uri(&u).unwrap_err().code, 503);
        let u = Uri::parse("tel:+15551234").unwrap();
        assert_eq!(of_uri(&u).unwrap_err().code, 416);
    }

    #[test]
    fn via_targets_honour_received_and_rport() {
        let v =
            Via::parse("SIP/2.0/UDP 192.0.2.1:5062;received=127.0.0.3;rport=4000;branch=z9hG4bK1")
                .unwrap();
        assert_eq!(
            of_via(&v).unwrap(),
            Target::Ready(Destination {
                transport: Transport::Udp,
                addr: "127.0.0.3:4000".parse().unwrap()
            })
        );
        for text in [
            "SIP/2.0/UDP 192.0.2.1:5062;received=127.0.0.3;rport=4000;branch=z9hG4bK1",
            "SIP/2.0/udp host.example.com;rport;branch=z9hG4bK1",
            "SIP/2.0/tcp [::1]:5070;branch=z9hG4bK1, SIP/2.0/UDP 192.0.2.2",
            "SIP/2.0/SCTP 192.0.2.1;branch=z9hG4bK1",
        ] {
            let owned = of_via(&Via::parse(text).unwrap());
            let borrowed = of_via_ref(&ViaRef::parse(text).unwrap());
            assert_eq!(owned, borrowed, "{text}");
        }
        let v = Via::parse("SIP/2.0/TCP 127.0.0.1;branch=z9hG4bK1").unwrap();
        assert_eq!(
            of_via(&v).unwrap(),
            Target::Ready(Destination {
                transport: Transport::Tcp,
                addr: "127.0.0.1:5060".parse().unwrap()
            })
        );
    }
}
