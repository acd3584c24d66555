//! SIP transports: UDP and TCP listeners on IPv4 and IPv6, stream framing, and a
//! bounded table of TCP connections reused in both directions.
//!
//! This crate owns sockets and bytes. It hands every complete message to a [`Handler`]
//! as an [`Inbound`] and sends what it is given to a [`Destination`]; it never parses
//! beyond framing and never decides where a message should go. Every buffer, queue and
//! connection count is bounded, and what cannot be delivered is counted in [`Stats`].
//!
//! UDP listeners are served by dedicated OS threads doing blocking `recv_from` on the
//! listener's one socket (the cheapest path per datagram); TCP runs on the tokio runtime given to [`Transports::start`].
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod tcp;
mod udp;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use weir_config::{Limits, Listener};
use weir_metrics::Counter;

pub use tcp::FailHook;
pub use weir_config::Transport;

// === Types ===

/// Index of a listener in the order the config lists them.
pub type ListenerId = usize;

/// A complete message received from the network.
#[derive(Debug, Clone)]
pub struct Inbound {
    /// The message bytes (one datagram, or one framed message from a stream).
    pub data: Bytes,
    /// Where it came from.
    pub src: SocketAddr,
    /// The listener it belongs to.
    pub listener: ListenerId,
    /// The transport it arrived on.
    pub transport: Transport,
    /// The stream connection it arrived on (unique for the process's lifetime, never
    /// reused); 0 for UDP.
    pub conn: u64,
}

/// Receives every inbound message. Called synchronously on a transport thread or task:
/// implementations must not block.
pub trait Handler: Send + Sync + 'static {
    /// One message arrived.
    fn on_message(&self, msg: Inbound);
}

/// A listener as bound, with the address to advertise in Via and Record-Route.
#[derive(Debug, Clone)]
pub struct ListenerInfo {
    /// Config name.
    pub name: String,
    /// Transport.
    pub transport: Transport,
    /// The bound address (port 0 in the config is replaced by the real port).
    pub local: SocketAddr,
    /// Host to advertise (`127.0.0.1`, `[::1]`, or a configured name).
    pub host: String,
    /// Port to advertise.
    pub port: u16,
}

/// Where to send a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination {
    /// Transport to use.
    pub transport: Transport,
    /// Remote address.
    pub addr: SocketAddr,
}

/// Why a message could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No listener of that transport and address family exists.
    #[error("no {transport} listener for {family} destinations")]
    NoListener {
        /// Transport asked for.
        transport: Transport,
        /// "IPv4" or "IPv6".
        family: &'static str,
    },
    /// The connection's send queue is full, or the connection table is full.
    #[error("send queue to {0} is full")]
    QueueFull(SocketAddr),
    /// The socket refused the datagram.
    #[error("send to {addr} failed: {source}")]
    Io {
        /// Destination.
        addr: SocketAddr,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The transports are shutting down.
    #[error("transports are stopped")]
    Stopped,
}

/// Counters for everything the transports did or refused to do ([`Counter`]: each
/// thread counts in its own cache line).
#[derive(Debug, Default)]
pub struct Stats {
    /// Datagrams received.
    pub udp_received: Counter,
    /// Datagrams sent.
    pub udp_sent: Counter,
    /// Messages framed from TCP streams.
    pub tcp_received: Counter,
    /// Messages queued to TCP connections.
    pub tcp_sent: Counter,
    /// Messages over the size limit, dropped.
    pub oversize_dropped: Counter,
    /// Keep-alive pings (CRLF) seen.
    pub keepalives: Counter,
    /// Sends that failed (queue full, socket error, connect failure).
    pub send_failures: Counter,
    /// TCP connections open now.
    pub tcp_open: Counter,
    /// TCP connections refused because the table was full.
    pub tcp_refused: Counter,
    /// TCP streams closed because of a framing error.
    pub tcp_framing_errors: Counter,
    /// Outbound TCP connects that failed or timed out.
    pub tcp_connect_failures: Counter,
}

/// Bump a counter.
pub(crate) fn inc(c: &Counter) {
    c.inc();
}

/// The set of bound listeners and the TCP connection table.
pub struct Transports {
    listeners: Vec<ListenerInfo>,
    udp: Vec<Option<Arc<std::net::UdpSocket>>>,
    tcp: tcp::TcpSide,
    stats: Arc<Stats>,
    stopping: Arc<AtomicBool>,
    max_message_size: usize,
}

impl std::fmt::Debug for Transports {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transports")
            .field("listeners", &self.listeners)
            .finish_non_exhaustive()
    }
}

/// Binding failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot bind {transport} {addr}: {source}")]
pub struct BindError {
    /// Transport.
    pub transport: Transport,
    /// Address.
    pub addr: SocketAddr,
    /// The IO error.
    #[source]
    pub source: std::io::Error,
}

impl Transports {
    /// Bind every listener. Nothing is received until [`Transports::start`].
    /// Must be called within a tokio runtime (TCP listeners are tokio sockets).
    pub fn bind(
        listeners: &[Listener],
        limits: &Limits,
        max_message_size: usize,
    ) -> Result<Arc<Transports>, BindError> {
        let mut infos = Vec::with_capacity(listeners.len());
        let mut udp_socks = Vec::with_capacity(listeners.len());
        let mut tcp_socks = Vec::with_capacity(listeners.len());
        for l in listeners {
            let err = |source| BindError {
                transport: l.transport,
                addr: l.address,
                source,
            };
            let (local, udp_sock, tcp_sock) = match l.transport {
                Transport::Udp => {
                    let s = udp::bind(l.address).map_err(err)?;
                    (s.local_addr().map_err(err)?, Some(Arc::new(s)), None)
                }
                Transport::Tcp => {
                    let s = tcp::bind(l.address).map_err(err)?;
                    (s.local_addr().map_err(err)?, None, Some(s))
                }
            };
            let (host, port) = match &l.advertise {
                Some((h, p)) => (h.clone(), p.unwrap_or(local.port())),
                None => (host_of(&local), local.port()),
            };
            infos.push(ListenerInfo {
                name: l.name.clone(),
                transport: l.transport,
                local,
                host,
                port,
            });
            udp_socks.push(udp_sock);
            tcp_socks.push(tcp_sock);
        }
        let stats = Arc::new(Stats::default());
        Ok(Arc::new(Transports {
            tcp: tcp::TcpSide::new(tcp_socks, limits.clone(), max_message_size, stats.clone()),
            listeners: infos,
            udp: udp_socks,
            stats,
            stopping: Arc::new(AtomicBool::new(false)),
            max_message_size,
        }))
    }

    /// Start receiving: `udp_workers` threads per UDP listener, all blocking in
    /// `recv_from` on the listener's one socket (the kernel gives each datagram to one
    /// of them, whatever its source), and accept loops for TCP on the current tokio
    /// runtime.
    pub fn start(self: &Arc<Self>, handler: Arc<dyn Handler>, udp_workers: usize) {
        for (id, sock) in self.udp.iter().enumerate() {
            let Some(sock) = sock else { continue };
            for n in 0..udp_workers.max(1) {
                udp::spawn_worker(self.clone(), handler.clone(), id, sock.clone(), n);
            }
        }
        self.tcp.start(handler);
    }

    /// Stop receiving (UDP threads exit within their poll interval; TCP tasks end).
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        self.tcp.stop();
    }

    /// The listeners, in config order.
    pub fn listeners(&self) -> &[ListenerInfo] {
        &self.listeners
    }

    /// Counters.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Largest message accepted.
    pub fn max_message_size(&self) -> usize {
        self.max_message_size
    }

    /// The listener a message to `dest` by `transport` leaves from: `hint` when it
    /// fits (same transport and address family), else the first that fits.
    pub fn pick_listener(
        &self,
        transport: Transport,
        dest: SocketAddr,
        hint: Option<ListenerId>,
    ) -> Option<ListenerId> {
        let fits = |i: &ListenerId| {
            self.listeners
                .get(*i)
                .is_some_and(|l| l.transport == transport && l.local.is_ipv4() == dest.is_ipv4())
        };
        if let Some(h) = hint.filter(fits) {
            return Some(h);
        }
        (0..self.listeners.len()).find(fits)
    }

    /// Whether a listener of this transport and family exists.
    pub fn has_listener(&self, transport: Transport, ipv4: bool) -> bool {
        self.listeners
            .iter()
            .any(|l| l.transport == transport && l.local.is_ipv4() == ipv4)
    }

    /// Send one message. UDP goes out at once from `listener` (see
    /// [`Transports::pick_listener`]); TCP reuses a connection to `dest.addr` or opens one
    /// (the message waits in the connection's bounded queue meanwhile).
    pub fn send(
        &self,
        dest: Destination,
        listener: ListenerId,
        data: Bytes,
    ) -> Result<(), SendError> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err(SendError::Stopped);
        }
        let result = match dest.transport {
            Transport::Udp => self.send_udp(dest.addr, listener, &data),
            Transport::Tcp => self.tcp.send(dest.addr, listener, data, None, None),
        };
        if result.is_err() {
            inc(&self.stats.send_failures);
        }
        result
    }

    /// [`Transports::send`], and if the message is queued for a TCP connection that
    /// then cannot be opened, `on_fail` runs (on the runtime, later). A failure known
    /// at once is returned as `Err` instead, and `on_fail` is dropped unrun.
    pub fn send_notify(
        &self,
        dest: Destination,
        listener: ListenerId,
        data: Bytes,
        on_fail: FailHook,
    ) -> Result<(), SendError> {
        if dest.transport == Transport::Udp || self.stopping.load(Ordering::Relaxed) {
            return self.send(dest, listener, data);
        }
        let result = self
            .tcp
            .send(dest.addr, listener, data, None, Some(on_fail));
        if result.is_err() {
            inc(&self.stats.send_failures);
        }
        result
    }

    /// Send a request that RFC 3261 §18.1.1 moves from UDP to TCP for its size:
    /// `tcp_data` over TCP from `tcp_listener`; if no connection to `addr` can be opened,
    /// `udp_data` (the same request with a UDP Via) over UDP from `udp_listener`.
    pub fn send_upgraded(
        &self,
        addr: SocketAddr,
        tcp_listener: ListenerId,
        tcp_data: Bytes,
        udp_listener: ListenerId,
        udp_data: Bytes,
    ) -> Result<(), SendError> {
        if self.stopping.load(Ordering::Relaxed) {
            return Err(SendError::Stopped);
        }
        let fallback = self
            .udp
            .get(udp_listener)
            .and_then(Option::clone)
            .map(|socket| tcp::Fallback {
                socket,
                data: udp_data,
            });
        let result = self.tcp.send(addr, tcp_listener, tcp_data, fallback, None);
        if result.is_err() {
            inc(&self.stats.send_failures);
        }
        result
    }

    fn send_udp(
        &self,
        addr: SocketAddr,
        listener: ListenerId,
        data: &[u8],
    ) -> Result<(), SendError> {
        // The family comes from the bound address we keep: no getsockname per datagram.
        let same_family = self
            .listeners
            .get(listener)
            .is_some_and(|l| l.local.is_ipv4() == addr.is_ipv4());
        let sock = self
            .udp
            .get(listener)
            .and_then(Option::as_ref)
            .filter(|_| same_family)
            .ok_or(SendError::NoListener {
                transport: Transport::Udp,
                family: family(addr),
            })?;
        sock.send_to(data, addr)
            .map_err(|source| SendError::Io { addr, source })?;
        inc(&self.stats.udp_sent);
        Ok(())
    }
}

/// "IPv4" or "IPv6".
pub fn family(addr: SocketAddr) -> &'static str {
    if addr.is_ipv4() {
        "IPv4"
    } else {
        "IPv6"
    }
}

/// How a socket address is written as a SIP host: IPv6 in brackets.
pub fn host_of(addr: &SocketAddr) -> String {
    match addr {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    }
}

/// True when `data` holds only CR and LF (a keep-alive on a datagram transport).
pub fn is_keepalive(data: &[u8]) -> bool {
    !data.is_empty() && data.iter().all(|&b| b == b'\r' || b == b'\n')
}

#[cfg(test)]
mod tests;
