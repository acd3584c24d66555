//! UDP: one blocking socket per listener, served by dedicated receive threads.
//!
//! Every receive thread of a listener blocks in `recv_from` on the listener's one
//! socket, as Kamailio's receiver processes share theirs: the kernel hands each datagram
//! to one waiting thread, so the load of even a single peer (a trunk, an SBC, a
//! benchmark's one SIPp) spreads over all of them. The price is the one UDP always
//! has: two datagrams from one source may be handled by two threads at once, and leave
//! in the other order (the transaction layer absorbs that on stateful routes).
//! (Each thread had its own `SO_REUSEPORT` socket before; the kernel then hashed a
//! source to one socket, which capped a single peer at one thread.)
//!
//! Sends use the same socket, so replies and forwarded requests leave from the
//! listener's address.

use std::io;
use std::net::{SocketAddr, UdpSocket};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use socket2::{Domain, Protocol, Socket, Type};

use crate::{inc, is_keepalive, Handler, Inbound, ListenerId, Transport, Transports};

/// Kernel buffer size asked for on each UDP socket, so bursts are not lost.
const SOCKET_BUFFER: usize = 4 * 1024 * 1024;
/// How often a receive thread wakes up to notice shutdown.
const POLL: Duration = Duration::from_millis(200);

pub(crate) fn bind(addr: SocketAddr) -> io::Result<UdpSocket> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
    if addr.is_ipv6() {
        // Let [::]:5060 and 0.0.0.0:5060 be separate listeners.
        s.set_only_v6(true)?;
    }
    // Best effort: the kernel caps these at its configured maximum.
    let _ = s.set_recv_buffer_size(SOCKET_BUFFER);
    let _ = s.set_send_buffer_size(SOCKET_BUFFER);
    // No SO_REUSEPORT: the listener owns its port, and a second process binding it
    // fails instead of silently taking a share of the traffic.
    s.bind(&addr.into())?;
    let s: UdpSocket = s.into();
    s.set_read_timeout(Some(POLL))?;
    Ok(s)
}

pub(crate) fn spawn_worker(
    transports: Arc<Transports>,
    handler: Arc<dyn Handler>,
    listener: ListenerId,
    sock: Arc<UdpSocket>,
    n: usize,
) {
    let name = format!("weir-udp-{listener}-{n}");
    let spawned = std::thread::Builder::new()
        .name(name.clone())
        .spawn(move || worker(&transports, handler.as_ref(), listener, &sock));
    if let Err(e) = spawned {
        tracing::error!(thread = %name, error = %e, "cannot start UDP receive thread");
    }
}

fn worker(t: &Transports, handler: &dyn Handler, listener: ListenerId, sock: &UdpSocket) {
    // One byte more than the limit tells an oversized datagram from one at the limit.
    let mut buf = vec![0u8; t.max_message_size + 1];
    while !t.stopping.load(Ordering::Relaxed) {
        let (n, src) = match sock.recv_from(&mut buf) {
            Ok(r) => r,
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                continue
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // ICMP errors from earlier sends surface here on some systems; keep serving.
                tracing::debug!(error = %e, "UDP receive error");
                continue;
            }
        };
        inc(&t.stats.udp_received);
        let Some(data) = buf.get(..n) else { continue };
        if n > t.max_message_size {
            inc(&t.stats.oversize_dropped);
            tracing::debug!(%src, size = n, "oversized datagram dropped");
            continue;
        }
        if is_keepalive(data) {
            inc(&t.stats.keepalives);
            continue;
        }
        handler.on_message(Inbound {
            data: Bytes::copy_from_slice(data),
            src,
            listener,
            transport: Transport::Udp,
            conn: 0,
        });
    }
}
