use std::sync::Mutex;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

struct Collect(Mutex<Vec<Inbound>>);

impl Handler for Collect {
    fn on_message(&self, msg: Inbound) {
        self.0.lock().unwrap().push(msg);
    }
}

fn listener(name: &str, transport: Transport, addr: &str) -> Listener {
    Listener {
        name: name.into(),
        transport,
        address: addr.parse().unwrap(),
        advertise: None,
    }
}

fn limits() -> Limits {
    Limits {
        max_tcp_connections: 2,
        tcp_idle_timeout: Duration::from_secs(5),
        tcp_send_queue: 8,
        tcp_connect_timeout: Duration::from_secs(1),
    }
}

const MSG: &[u8] = b"OPTIONS sip:a@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.0.1:1;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n";

async fn wait_for(c: &Collect, n: usize) -> Vec<Inbound> {
    for _ in 0..200 {
        if c.0.lock().unwrap().len() >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    c.0.lock().unwrap().clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_receive_send_and_oversize() {
    let t = Transports::bind(
        &[
            listener("u4", Transport::Udp, "127.0.0.1:0"),
            listener("u6", Transport::Udp, "[::1]:0"),
        ],
        &limits(),
        2048,
    )
    .unwrap();
    let c = Arc::new(Collect(Mutex::new(Vec::new())));
    t.start(c.clone(), 1);
    let local = t.listeners()[0].local;
    assert_eq!(t.listeners()[1].host, "[::1]");
    let peer = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    peer.send_to(MSG, local).unwrap();
    peer.send_to(b"\r\n\r\n", local).unwrap();
    peer.send_to(&vec![b'x'; 4000], local).unwrap();
    let got = wait_for(&c, 1).await;
    assert_eq!(got.len(), 1);
    assert_eq!(&got[0].data[..], MSG);
    assert_eq!(got[0].src, peer.local_addr().unwrap());
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(t.stats().oversize_dropped.get(), 1);
    assert_eq!(t.stats().keepalives.get(), 1);

    let dest = Destination {
        transport: Transport::Udp,
        addr: peer.local_addr().unwrap(),
    };
    let l = t.pick_listener(Transport::Udp, dest.addr, None).unwrap();
    assert_eq!(l, 0);
    t.send(dest, l, Bytes::from_static(b"hello")).unwrap();
    let mut buf = [0u8; 16];
    peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let (n, from) = peer.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"hello");
    assert_eq!(from, local);
    t.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_framing_reuse_and_limits() {
    let t = Transports::bind(
        &[listener("t", Transport::Tcp, "127.0.0.1:0")],
        &limits(),
        2048,
    )
    .unwrap();
    let c = Arc::new(Collect(Mutex::new(Vec::new())));
    t.start(c.clone(), 1);
    let local = t.listeners()[0].local;

    // Two messages in one write, split across another write, plus a keep-alive ping.
    let mut s = tokio::net::TcpStream::connect(local).await.unwrap();
    let mut two = MSG.to_vec();
    two.extend_from_slice(b"\r\n\r\n");
    two.extend_from_slice(&MSG[..20]);
    s.write_all(&two).await.unwrap();
    s.write_all(&MSG[20..]).await.unwrap();
    let got = wait_for(&c, 2).await;
    assert_eq!(got.len(), 2);
    assert!(got.iter().all(|m| &m.data[..] == MSG));
    // The pong comes back on the same connection.
    let mut pong = [0u8; 2];
    s.read_exact(&mut pong).await.unwrap();
    assert_eq!(&pong, b"\r\n");

    // A reply to the client's address reuses its connection.
    let client = s.local_addr().unwrap();
    let dest = Destination {
        transport: Transport::Tcp,
        addr: client,
    };
    t.send(dest, 0, Bytes::from_static(b"SIP/2.0 200 OK\r\n"))
        .unwrap();
    let mut back = [0u8; 16];
    s.read_exact(&mut back).await.unwrap();
    assert_eq!(&back, b"SIP/2.0 200 OK\r\n");
    assert_eq!(t.stats().tcp_open.get(), 1);

    // The table holds at most two connections: the third is refused.
    let _s2 = tokio::net::TcpStream::connect(local).await.unwrap();
    let mut s3 = tokio::net::TcpStream::connect(local).await.unwrap();
    let mut b = [0u8; 1];
    let r = tokio::time::timeout(Duration::from_secs(2), s3.read(&mut b)).await;
    assert!(
        matches!(r, Ok(Ok(0)) | Ok(Err(_))),
        "third connection should be closed"
    );
    assert_eq!(t.stats().tcp_refused.get(), 1);

    // A framing error (negative Content-Length) closes the stream.
    drop(s);
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut bad = tokio::net::TcpStream::connect(local).await.unwrap();
    bad.write_all(b"OPTIONS sip:a SIP/2.0\r\nContent-Length: -5\r\n\r\n")
        .await
        .unwrap();
    let r = tokio::time::timeout(Duration::from_secs(2), bad.read(&mut b)).await;
    assert!(matches!(r, Ok(Ok(0)) | Ok(Err(_))));
    assert_eq!(t.stats().tcp_framing_errors.get(), 1);
    t.stop();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_outbound_connects_and_receives_replies() {
    let t = Transports::bind(
        &[listener("t", Transport::Tcp, "127.0.0.1:0")],
        &limits(),
        2048,
    )
    .unwrap();
    let c = Arc::new(Collect(Mutex::new(Vec::new())));
    t.start(c.clone(), 1);
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = server.local_addr().unwrap();
    let dest = Destination {
        transport: Transport::Tcp,
        addr,
    };
    t.send(dest, 0, Bytes::from_static(MSG)).unwrap();
    t.send(dest, 0, Bytes::from_static(MSG)).unwrap();
    let (mut peer, _) = server.accept().await.unwrap();
    let mut buf = vec![0u8; MSG.len() * 2];
    peer.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf[..MSG.len()], MSG);
    // Replies on that connection reach the handler, attributed to the listener.
    peer.write_all(MSG).await.unwrap();
    let got = wait_for(&c, 1).await;
    assert_eq!(got[0].src, addr);
    assert_eq!(got[0].listener, 0);
    // Connect failure is counted, not fatal.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dead = Destination {
        transport: Transport::Tcp,
        addr: closed,
    };
    t.send(dead, 0, Bytes::from_static(MSG)).unwrap();
    for _ in 0..100 {
        if t.stats().tcp_connect_failures.get() == 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(t.stats().tcp_connect_failures.get(), 1);
    t.stop();
}

/// Records which receive thread handled each message, holding it a while so that a
/// second datagram arrives while the first thread is busy.
struct Slow(Mutex<Vec<(String, Inbound)>>);

impl Handler for Slow {
    fn on_message(&self, msg: Inbound) {
        let thread = std::thread::current().name().unwrap_or("?").to_string();
        std::thread::sleep(Duration::from_millis(20));
        self.0.lock().unwrap().push((thread, msg));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_threads_share_the_listener_socket() {
    let t = Transports::bind(
        &[
            listener("u4", Transport::Udp, "127.0.0.1:0"),
            listener("u6", Transport::Udp, "[::1]:0"),
        ],
        &limits(),
        2048,
    )
    .unwrap();
    let c = Arc::new(Slow(Mutex::new(Vec::new())));
    t.start(c.clone(), 3);
    for (id, peer_addr) in [(0, "127.0.0.1:0"), (1, "[::1]:0")] {
        let local = t.listeners()[id].local;
        // One socket per listener: the port is not shared with anyone else.
        assert_eq!(
            std::net::UdpSocket::bind(local).unwrap_err().kind(),
            std::io::ErrorKind::AddrInUse
        );
        // One source: its datagrams still reach several threads of the listener.
        let peer = std::net::UdpSocket::bind(peer_addr).unwrap();
        for _ in 0..6 {
            peer.send_to(MSG, local).unwrap();
        }
        let mut got = Vec::new();
        for _ in 0..300 {
            got = c.0.lock().unwrap().clone();
            if got.iter().filter(|(_, m)| m.listener == id).count() >= 6 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let mine: Vec<_> = got.iter().filter(|(_, m)| m.listener == id).collect();
        assert_eq!(mine.len(), 6);
        assert!(mine
            .iter()
            .all(|(_, m)| m.src == peer.local_addr().unwrap()));
        let threads: std::collections::HashSet<_> = mine.iter().map(|(n, _)| n).collect();
        assert!(
            threads.len() > 1,
            "one source served by one thread: {threads:?}"
        );
        assert!(threads
            .iter()
            .all(|n| n.starts_with(&format!("weir-udp-{id}-"))));
        // Sends leave from the listener's address.
        let dest = Destination {
            transport: Transport::Udp,
            addr: peer.local_addr().unwrap(),
        };
        assert_eq!(t.pick_listener(Transport::Udp, dest.addr, None), Some(id));
        t.send(dest, id, Bytes::from_static(b"hello")).unwrap();
        let mut buf = [0u8; 16];
        peer.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let (n, from) = peer.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"hello");
        assert_eq!(from, local);
    }
    // A destination of the other family is refused, not sent from the wrong socket.
    let v6 = Destination {
        transport: Transport::Udp,
        addr: "[::1]:9".parse().unwrap(),
    };
    assert!(matches!(
        t.send(v6, 0, Bytes::from_static(b"x")),
        Err(SendError::NoListener { .. })
    ));
    t.stop();
}
