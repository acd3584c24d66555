//! TCP: accept loops, outbound connects, and the connection table shared by both, so a
//! connection opened by either side carries messages both ways (RFC 3261 §18).

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use bytes::{Buf, Bytes, BytesMut};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, Notify};
use tokio::time::timeout;
use weir_config::Limits;
use weir_message::{frame, Frame};

use crate::{inc, Handler, Inbound, ListenerId, SendError, Stats, Transport};

/// Bytes read from a stream at a time.
const READ_CHUNK: usize = 16 * 1024;
/// Pending accepts the kernel holds for each listener.
const BACKLOG: i32 = 1024;

pub(crate) fn bind(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let domain = if addr.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP))?;
    if addr.is_ipv6() {
        s.set_only_v6(true)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(BACKLOG)?;
    Ok(s.into())
}

/// Called if the message it was given with never leaves because the connection
/// could not be opened (RFC 3261 §18.4: the transaction layer takes that as a 503).
pub type FailHook = Box<dyn FnOnce() + Send>;

/// One entry of the connection table.
struct Conn {
    id: u64,
    tx: mpsc::Sender<Bytes>,
    /// While the outbound connect is under way: the hooks of the messages queued for
    /// it. `None` once connected (or for accepted connections).
    pending: Option<Vec<FailHook>>,
}

struct Shared {
    conns: Mutex<HashMap<SocketAddr, Conn>>,
    limits: Limits,
    max_message_size: usize,
    stats: Arc<Stats>,
    handler: OnceLock<Arc<dyn Handler>>,
    runtime: OnceLock<tokio::runtime::Handle>,
    shutdown: Notify,
    next_id: AtomicU64,
}

impl Shared {
    fn table(&self) -> MutexGuard<'_, HashMap<SocketAddr, Conn>> {
        // A panic while holding the lock cannot leave the map inconsistent (every
        // critical section is a single insert/remove), so poisoning is ignored.
        self.conns.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Add a connection under `remote`, replacing an older one to the same address.
    fn register(
        &self,
        remote: SocketAddr,
        pending: Option<Vec<FailHook>>,
    ) -> Option<(u64, mpsc::Receiver<Bytes>)> {
        let mut table = self.table();
        if table.len() >= self.limits.max_tcp_connections && !table.contains_key(&remote) {
            inc(&self.stats.tcp_refused);
            return None;
        }
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(self.limits.tcp_send_queue);
        if table.insert(remote, Conn { id, tx, pending }).is_none() {
            self.stats.tcp_open.inc();
        }
        Some((id, rx))
    }

    /// Remove `remote` from the table if it still refers to connection `id`; returns
    /// the failure hooks of messages still waiting for its connect.
    fn unregister(&self, remote: SocketAddr, id: u64) -> Vec<FailHook> {
        let mut table = self.table();
        if table.get(&remote).is_some_and(|c| c.id == id) {
            self.stats.tcp_open.sub(1);
            return table
                .remove(&remote)
                .and_then(|c| c.pending)
                .unwrap_or_default();
        }
        Vec::new()
    }

    /// Connection `id` to `remote` is open: its queued messages no longer need hooks.
    fn connected(&self, remote: SocketAddr, id: u64) {
        if let Some(c) = self.table().get_mut(&remote).filter(|c| c.id == id) {
            c.pending = None;
        }
    }
}

/// The TCP half of [`crate::Transports`].
pub(crate) struct TcpSide {
    listeners: Mutex<Vec<Option<std::net::TcpListener>>>,
    shared: Arc<Shared>,
}

impl TcpSide {
    pub(crate) fn new(
        listeners: Vec<Option<std::net::TcpListener>>,
        limits: Limits,
        max_message_size: usize,
        stats: Arc<Stats>,
    ) -> TcpSide {
        TcpSide {
            listeners: Mutex::new(listeners),
            shared: Arc::new(Shared {
                conns: Mutex::new(HashMap::new()),
                limits,
                max_message_size,
                stats,
                handler: OnceLock::new(),
                runtime: OnceLock::new(),
                shutdown: Notify::new(),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// Start accept loops on the current runtime.
    pub(crate) fn start(&self, handler: Arc<dyn Handler>) {
        let rt = tokio::runtime::Handle::current();
        let _ = self.shared.runtime.set(rt.clone());
        let _ = self.shared.handler.set(handler);
        let taken: Vec<_> =
            std::mem::take(&mut *self.listeners.lock().unwrap_or_else(|p| p.into_inner()));
        for (id, l) in taken.into_iter().enumerate() {
            let Some(l) = l else { continue };
            let listener = match tokio::net::TcpListener::from_std(l) {
                Ok(l) => l,
                Err(e) => {
                    tracing::error!(error = %e, "cannot register TCP listener");
                    continue;
                }
            };
            rt.spawn(accept_loop(self.shared.clone(), listener, id));
        }
    }

    pub(crate) fn stop(&self) {
        self.shared.shutdown.notify_waiters();
        self.shared.table().clear();
    }

    /// Queue `data` on the connection to `remote`, opening one if there is none.
    /// `on_fail` runs if that connection cannot be opened (not when `Err` is returned:
    /// then the caller knows at once).
    pub(crate) fn send(
        &self,
        remote: SocketAddr,
        listener: ListenerId,
        data: Bytes,
        fallback: Option<Fallback>,
        on_fail: Option<FailHook>,
    ) -> Result<(), SendError> {
        let s = &self.shared;
        let on_fail = {
            let mut table = s.table();
            if let Some(c) = table.get_mut(&remote) {
                return match c.tx.try_send(data) {
                    Ok(()) => {
                        if let (Some(hooks), Some(f)) = (c.pending.as_mut(), on_fail) {
                            hooks.push(f);
                        }
                        inc(&s.stats.tcp_sent);
                        Ok(())
                    }
                    Err(_) => Err(SendError::QueueFull(remote)),
                };
            }
            on_fail
        };
        let Some(rt) = s.runtime.get() else {
            return Err(SendError::Stopped);
        };
        let (id, rx) = s
            .register(remote, Some(on_fail.into_iter().collect()))
            .ok_or(SendError::QueueFull(remote))?;
        {
            let table = s.table();
            if let Some(c) = table.get(&remote) {
                c.tx.try_send(data)
                    .map_err(|_| SendError::QueueFull(remote))?;
                inc(&s.stats.tcp_sent);
            }
        }
        rt.spawn(connect(s.clone(), remote, listener, id, rx, fallback));
        Ok(())
    }
}

async fn accept_loop(s: Arc<Shared>, listener: tokio::net::TcpListener, id: ListenerId) {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = s.shutdown.notified() => return,
        };
        let (stream, remote) = match accepted {
            Ok(x) => x,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(error = %e, "TCP accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some((cid, rx)) = s.register(remote, None) else {
            tracing::debug!(%remote, "TCP connection refused: table full");
            continue;
        };
        let _ = stream.set_nodelay(true);
        tokio::spawn(serve(s.clone(), stream, remote, id, cid, rx));
    }
}

/// The same message prepared for UDP, sent if the TCP connection cannot be opened
/// (RFC 3261 §18.1.1: a request moved to TCP for its size is retried over UDP).
pub(crate) struct Fallback {
    pub(crate) socket: Arc<std::net::UdpSocket>,
    pub(crate) data: Bytes,
}

async fn connect(
    s: Arc<Shared>,
    remote: SocketAddr,
    listener: ListenerId,
    id: u64,
    rx: mpsc::Receiver<Bytes>,
    fallback: Option<Fallback>,
) {
    let failure = match timeout(s.limits.tcp_connect_timeout, TcpStream::connect(remote)).await {
        Ok(Ok(stream)) => {
            let _ = stream.set_nodelay(true);
            s.connected(remote, id);
            serve(s, stream, remote, listener, id, rx).await;
            return;
        }
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timed out".to_string(),
    };
    inc(&s.stats.tcp_connect_failures);
    tracing::debug!(%remote, error = %failure, "TCP connect failed");
    let hooks = s.unregister(remote, id);
    if let Some(f) = fallback {
        match f.socket.send_to(&f.data, remote) {
            Ok(_) => inc(&s.stats.udp_sent),
            Err(e) => {
                inc(&s.stats.send_failures);
                tracing::debug!(%remote, error = %e, "UDP fallback send failed");
                hooks.into_iter().for_each(|f| f());
            }
        }
    } else {
        hooks.into_iter().for_each(|f| f());
    }
}

/// Run one connection until either side ends it, the idle timer fires, or the stream
/// breaks framing.
async fn serve(
    s: Arc<Shared>,
    stream: TcpStream,
    remote: SocketAddr,
    listener: ListenerId,
    id: u64,
    rx: mpsc::Receiver<Bytes>,
) {
    let (rd, wr) = stream.into_split();
    let writer = tokio::spawn(write_loop(s.clone(), wr, rx, remote));
    tokio::select! {
        _ = read_loop(&s, rd, remote, listener, id) => {}
        _ = s.shutdown.notified() => {}
    }
    s.unregister(remote, id);
    writer.abort();
}

async fn write_loop(
    s: Arc<Shared>,
    mut wr: OwnedWriteHalf,
    mut rx: mpsc::Receiver<Bytes>,
    remote: SocketAddr,
) {
    while let Some(data) = rx.recv().await {
        match timeout(s.limits.tcp_idle_timeout, wr.write_all(&data)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::debug!(%remote, error = %e, "TCP write failed");
                inc(&s.stats.send_failures);
                break;
            }
            Err(_) => {
                tracing::debug!(%remote, "TCP write timed out");
                inc(&s.stats.send_failures);
                break;
            }
        }
    }
    let _ = wr.shutdown().await;
}

async fn read_loop(
    s: &Shared,
    mut rd: OwnedReadHalf,
    remote: SocketAddr,
    listener: ListenerId,
    conn: u64,
) {
    let limits = weir_message::Limits {
        max_message_size: s.max_message_size,
        ..weir_message::Limits::default()
    };
    let mut buf = BytesMut::with_capacity(READ_CHUNK);
    loop {
        // Hand over every complete message already buffered.
        loop {
            match frame(&buf, &limits) {
                Ok(Frame::Incomplete) => break,
                Ok(Frame::KeepAlive(n)) => {
                    // RFC 5626 §4.4.1: answer a CRLFCRLF ping with a CRLF pong.
                    if n >= 4 {
                        inc(&s.stats.keepalives);
                        if let Some(c) = s.table().get(&remote) {
                            let _ = c.tx.try_send(Bytes::from_static(b"\r\n"));
                        }
                    }
                    let _ = buf.split_to(n.min(buf.len()));
                }
                Ok(Frame::Message(n)) => {
                    // Copied out (as a UDP datagram is): the parsed message's strings
                    // are views of `data`, and a view of `buf` would keep the whole read
                    // buffer alive for as long as a transaction keeps the message.
                    let n = n.min(buf.len());
                    let data = Bytes::copy_from_slice(buf.get(..n).unwrap_or(&[]));
                    buf.advance(n);
                    inc(&s.stats.tcp_received);
                    if let Some(h) = s.handler.get() {
                        h.on_message(Inbound {
                            data,
                            src: remote,
                            listener,
                            transport: Transport::Tcp,
                            conn,
                        });
                    }
                }
                Err(e) => {
                    inc(&s.stats.tcp_framing_errors);
                    tracing::debug!(%remote, error = %e, "closing TCP stream: framing error");
                    return;
                }
            }
        }
        buf.reserve(READ_CHUNK);
        match timeout(s.limits.tcp_idle_timeout, rd.read_buf(&mut buf)).await {
            Ok(Ok(0)) => return,
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::debug!(%remote, error = %e, "TCP read failed");
                return;
            }
            Err(_) => {
                tracing::debug!(%remote, "closing idle TCP connection");
                return;
            }
        }
    }
}
