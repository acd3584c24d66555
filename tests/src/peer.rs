//! Raw-socket SIP peers for exact checks: a UDP endpoint (test UA or fake UAS), a TCP
//! connection with stream framing, and a TCP listener. Only loopback addresses are used.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use crate::sip::{find, SipMsg};

/// How long `expect` waits for a message.
pub const EXPECT_TIMEOUT: Duration = Duration::from_secs(5);

fn loopback(v6: bool) -> IpAddr {
    if v6 {
        IpAddr::V6(Ipv6Addr::LOCALHOST)
    } else {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }
}

fn host_port(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

fn assert_loopback(to: SocketAddr) {
    assert!(
        to.ip().is_loopback(),
        "test peers only talk to loopback, not {to}"
    );
}

// === UdpPeer ===

/// A UDP socket on loopback that sends and receives SIP.
#[derive(Debug)]
pub struct UdpPeer {
    sock: UdpSocket,
    addr: SocketAddr,
}

impl UdpPeer {
    /// Bind an ephemeral port on 127.0.0.1.
    pub fn bind() -> UdpPeer {
        UdpPeer::bind_at(SocketAddr::new(loopback(false), 0))
    }

    /// Bind an ephemeral port on ::1.
    pub fn bind_v6() -> UdpPeer {
        UdpPeer::bind_at(SocketAddr::new(loopback(true), 0))
    }

    /// Bind a given loopback address.
    pub fn bind_at(at: SocketAddr) -> UdpPeer {
        assert_loopback(at);
        let sock = UdpSocket::bind(at).unwrap_or_else(|e| panic!("bind UDP {at}: {e}"));
        let addr = sock.local_addr().unwrap_or(at);
        UdpPeer { sock, addr }
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `host:port` of the bound address (IPv6 in brackets), for URIs and Vias.
    pub fn host_port(&self) -> String {
        host_port(self.addr)
    }

    /// `sip:host:port` of this peer.
    pub fn uri(&self) -> String {
        format!("sip:{}", self.host_port())
    }

    /// A Via for requests from this peer, with a fresh branch and `rport`.
    pub fn via(&self) -> String {
        format!(
            "SIP/2.0/UDP {};branch=z9hG4bK{};rport",
            self.host_port(),
            crate::token()
        )
    }

    /// A request from this peer (see [`SipMsg::request`]) with a Contact.
    pub fn request(&self, method: &str, ruri: &str) -> SipMsg {
        SipMsg::request(method, ruri, &self.via())
            .add_header("Contact", &format!("<sip:alice@{}>", self.host_port()))
    }

    /// Send a message.
    pub fn send(&self, msg: &SipMsg, to: SocketAddr) {
        self.send_raw(&msg.to_bytes(), to);
    }

    /// Send bytes as one datagram.
    pub fn send_raw(&self, data: &[u8], to: SocketAddr) {
        assert_loopback(to);
        self.sock
            .send_to(data, to)
            .unwrap_or_else(|e| panic!("send {} bytes to {to}: {e}", data.len()));
    }

    /// The next datagram that is not a CRLF keep-alive, within `limit`.
    pub fn recv_raw(&self, limit: Duration) -> Option<(Vec<u8>, SocketAddr)> {
        let end = Instant::now() + limit;
        let mut buf = vec![0u8; 70_000];
        loop {
            let left = crate::wait::left(end);
            if left.is_zero() {
                return None;
            }
            let _ = self.sock.set_read_timeout(Some(left));
            match self.sock.recv_from(&mut buf) {
                Ok((n, from)) => {
                    let data = buf.get(..n).unwrap_or(&[]);
                    if data.iter().all(|b| *b == b'\r' || *b == b'\n') {
                        continue;
                    }
                    return Some((data.to_vec(), from));
                }
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return None
                }
                // ICMP port unreachable from an earlier send surfaces here on Linux.
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => continue,
                Err(e) => panic!("UDP receive on {}: {e}", self.addr),
            }
        }
    }

    /// The next SIP message within `limit`.
    pub fn recv(&self, limit: Duration) -> Option<(SipMsg, SocketAddr)> {
        self.recv_raw(limit)
            .map(|(d, from)| (SipMsg::must_parse(&d), from))
    }

    /// The next SIP message; panics naming `what` if none comes within
    /// [`EXPECT_TIMEOUT`].
    pub fn expect(&self, what: &str) -> (SipMsg, SocketAddr) {
        self.recv(EXPECT_TIMEOUT)
            .unwrap_or_else(|| panic!("{} got no {what} within {EXPECT_TIMEOUT:?}", self.addr))
    }

    /// Send `req` and wait for its final response, skipping provisional ones; panics
    /// naming `what` when none comes.
    pub fn transact(&self, req: &SipMsg, to: SocketAddr, what: &str) -> SipMsg {
        self.send(req, to);
        loop {
            let (m, _) = self.expect(what);
            if m.status().is_some_and(|s| s >= 200) {
                return m;
            }
        }
    }
}

// === TcpPeer ===

/// What a TCP read produced.
#[derive(Debug)]
pub enum TcpRecv {
    /// One complete message.
    Msg(SipMsg),
    /// The peer closed (or reset) the connection.
    Closed,
    /// Nothing complete within the time limit.
    Timeout,
}

/// One TCP connection, framed by Content-Length.
#[derive(Debug)]
pub struct TcpPeer {
    stream: TcpStream,
    buf: Vec<u8>,
    local: SocketAddr,
    remote: SocketAddr,
}

impl TcpPeer {
    /// Connect to a loopback address.
    pub fn connect(to: SocketAddr) -> TcpPeer {
        assert_loopback(to);
        let stream = TcpStream::connect_timeout(&to, EXPECT_TIMEOUT)
            .unwrap_or_else(|e| panic!("connect to {to}: {e}"));
        TcpPeer::from_stream(stream)
    }

    fn from_stream(stream: TcpStream) -> TcpPeer {
        let _ = stream.set_nodelay(true);
        let local = stream
            .local_addr()
            .unwrap_or_else(|_| SocketAddr::new(loopback(false), 0));
        let remote = stream.peer_addr().unwrap_or(local);
        TcpPeer {
            stream,
            buf: Vec::new(),
            local,
            remote,
        }
    }

    /// This end's address.
    pub fn local(&self) -> SocketAddr {
        self.local
    }

    /// The other end's address.
    pub fn remote(&self) -> SocketAddr {
        self.remote
    }

    /// A Via for requests sent on this connection, with a fresh branch and `rport`.
    pub fn via(&self) -> String {
        format!(
            "SIP/2.0/TCP {};branch=z9hG4bK{};rport",
            host_port(self.local),
            crate::token()
        )
    }

    /// A request from this end (see [`SipMsg::request`]) with a Contact.
    pub fn request(&self, method: &str, ruri: &str) -> SipMsg {
        SipMsg::request(method, ruri, &self.via()).add_header(
            "Contact",
            &format!("<sip:alice@{};transport=tcp>", host_port(self.local)),
        )
    }

    /// Send a message.
    pub fn send(&mut self, msg: &SipMsg) {
        self.send_raw(&msg.to_bytes());
    }

    /// Send bytes; false if the connection is already broken.
    pub fn try_send_raw(&mut self, data: &[u8]) -> bool {
        self.stream.write_all(data).is_ok()
    }

    /// Send bytes.
    pub fn send_raw(&mut self, data: &[u8]) {
        let remote = self.remote;
        self.stream
            .write_all(data)
            .unwrap_or_else(|e| panic!("TCP send to {remote}: {e}"));
    }

    /// The next message (CRLF keep-alives skipped), the end of the connection, or a
    /// timeout.
    pub fn recv(&mut self, limit: Duration) -> TcpRecv {
        let end = Instant::now() + limit;
        loop {
            if let Some(m) = self.take_message() {
                return TcpRecv::Msg(m);
            }
            let left = crate::wait::left(end);
            if left.is_zero() {
                return TcpRecv::Timeout;
            }
            let _ = self.stream.set_read_timeout(Some(left));
            let mut chunk = [0u8; 16 * 1024];
            match self.stream.read(&mut chunk) {
                Ok(0) => return TcpRecv::Closed,
                Ok(n) => self.buf.extend_from_slice(chunk.get(..n).unwrap_or(&[])),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                    return TcpRecv::Timeout
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return TcpRecv::Closed,
            }
        }
    }

    /// The next message; panics naming `what` when the connection closes or nothing
    /// comes within [`EXPECT_TIMEOUT`].
    pub fn expect(&mut self, what: &str) -> SipMsg {
        match self.recv(EXPECT_TIMEOUT) {
            TcpRecv::Msg(m) => m,
            other => panic!(
                "{} (TCP from {}) got no {what}: {other:?}",
                self.local, self.remote
            ),
        }
    }

    fn take_message(&mut self) -> Option<SipMsg> {
        let skip = self
            .buf
            .iter()
            .take_while(|b| **b == b'\r' || **b == b'\n')
            .count();
        self.buf.drain(..skip);
        let head_end = find(&self.buf, b"\r\n\r\n")? + 4;
        let head = SipMsg::parse(self.buf.get(..head_end)?)?;
        let cl: usize = head
            .header("Content-Length")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0);
        let total = head_end + cl;
        if self.buf.len() < total {
            return None;
        }
        let data: Vec<u8> = self.buf.drain(..total).collect();
        SipMsg::parse(&data)
    }
}

// === TcpServer ===

/// A TCP listener on loopback (a fake UAS reached over TCP).
#[derive(Debug)]
pub struct TcpServer {
    listener: TcpListener,
    addr: SocketAddr,
}

impl TcpServer {
    /// Listen on an ephemeral port of 127.0.0.1.
    pub fn bind() -> TcpServer {
        TcpServer::bind_at(SocketAddr::new(loopback(false), 0))
    }

    /// Listen on a given loopback address.
    pub fn bind_at(at: SocketAddr) -> TcpServer {
        assert_loopback(at);
        let listener = TcpListener::bind(at).unwrap_or_else(|e| panic!("listen on {at}: {e}"));
        let _ = listener.set_nonblocking(true);
        let addr = listener.local_addr().unwrap_or(at);
        TcpServer { listener, addr }
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `host:port`, for URIs.
    pub fn host_port(&self) -> String {
        host_port(self.addr)
    }

    /// The next inbound connection within `limit`.
    pub fn accept(&self, limit: Duration) -> Option<TcpPeer> {
        crate::wait::until(limit, || match self.listener.accept() {
            Ok((s, _)) => {
                let _ = s.set_nonblocking(false);
                Some(TcpPeer::from_stream(s))
            }
            Err(_) => None,
        })
    }

    /// The next inbound connection; panics naming `what` when none comes.
    pub fn expect_conn(&self, what: &str) -> TcpPeer {
        self.accept(EXPECT_TIMEOUT)
            .unwrap_or_else(|| panic!("{} got no connection for {what}", self.addr))
    }
}
