//! Free loopback ports. Candidates come from a range below the kernel's ephemeral range
//! (so port-0 binds elsewhere on the machine never race with ours), start at a random
//! offset per process and are handed out once per process; each is checked free for
//! both UDP and TCP by binding it before it is returned. A port can still be taken
//! between the check and its use, so starters retry on "address in use".

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, TcpListener, UdpSocket};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::OnceLock;

const LOW: u32 = 20_000;

fn range() -> (u32, u32) {
    // Stay below the ephemeral range (usually 32768-60999).
    let high = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u32>().ok())
        .filter(|lo| *lo > LOW + 2_000)
        .unwrap_or(32_768);
    (LOW, high)
}

fn next_candidate() -> u16 {
    static START: OnceLock<u32> = OnceLock::new();
    static N: AtomicU32 = AtomicU32::new(0);
    let (lo, hi) = range();
    let span = hi - lo;
    let start = *START.get_or_init(|| {
        let t = u32::from_str_radix(&crate::token()[..8], 16).unwrap_or(0);
        t % span
    });
    let n = N.fetch_add(1, Ordering::Relaxed);
    u16::try_from(lo + (start + n) % span).unwrap_or(0)
}

fn free_on(ips: &[IpAddr]) -> u16 {
    for _ in 0..5_000 {
        let p = next_candidate();
        let ok = ips
            .iter()
            .all(|ip| UdpSocket::bind((*ip, p)).is_ok() && TcpListener::bind((*ip, p)).is_ok());
        if ok {
            return p;
        }
    }
    panic!("no free port found on {ips:?}");
}

/// A port free for UDP and TCP on 127.0.0.1.
pub fn free_port() -> u16 {
    free_on(&[IpAddr::V4(Ipv4Addr::LOCALHOST)])
}

/// A port free for UDP and TCP on both 127.0.0.1 and ::1.
pub fn free_port_dual() -> u16 {
    free_on(&[
        IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ])
}

/// Whether something is bound to `ip:port` for UDP (a bind of ours fails).
pub fn udp_in_use(ip: IpAddr, port: u16) -> bool {
    UdpSocket::bind((ip, port)).is_err()
}

/// Whether something listens on `ip:port` for TCP (a bind of ours fails).
pub fn tcp_in_use(ip: IpAddr, port: u16) -> bool {
    TcpListener::bind((ip, port)).is_err()
}
