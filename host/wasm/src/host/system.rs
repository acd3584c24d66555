//! `weir:sip/system`: load figures of the machine and of this process, for modules that
//! adapt to load (pipelimit's NETWORK and FEEDBACK algorithms).
//!
//! A guest call never touches the system: it reads two atomics. The figures come from
//! one background thread (`weir-wasm-load`), started by the first `get-load` call of any
//! module (a proxy whose modules never ask pays nothing), which samples every
//! [`PERIOD`]:
//!
//! - `cpu`: the busy share of all CPUs between two samples, from the first (`cpu`) line
//!   of `/proc/stat`: busy = user + nice + system + irq + softirq + steal, total = busy +
//!   idle + iowait (guest time is already inside user and nice);
//! - `rx-queue-bytes`: the `rx_queue` column of `/proc/self/net/udp` and `udp6`, summed
//!   over the sockets this process holds (their inodes, from the `socket:[N]` links in
//!   `/proc/self/fd`). The runtime does not need to know the listening ports: every UDP
//!   socket of the proxy counts, which is what "bytes the proxy has not read yet" means.
//!
//! Until the first period has passed `cpu` is 0; `rx-queue-bytes` is first sampled as the
//! thread starts.
//! Off Linux, or when `/proc` cannot be read, the figures stay 0.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Once;
use std::time::Duration;

use wasmtime::component::Linker;
use wasmtime::StoreContextMut;

use super::Ctx;
use crate::bindings::weir::sip::system::Load;

/// How often the background thread samples.
pub(crate) const PERIOD: Duration = Duration::from_secs(1);

/// The latest sample, shared by every store: `f32::to_bits` of the CPU busy share.
static CPU_BITS: AtomicU32 = AtomicU32::new(0);
/// The latest sample of the receive queues.
static RX_QUEUE_BYTES: AtomicU64 = AtomicU64::new(0);
static SAMPLER: Once = Once::new();

/// The latest figures; starts the sampling thread on first use.
fn latest() -> Load {
    SAMPLER.call_once(start_sampler);
    Load {
        cpu: f32::from_bits(CPU_BITS.load(Ordering::Relaxed)),
        rx_queue_bytes: RX_QUEUE_BYTES.load(Ordering::Relaxed),
    }
}

pub(crate) fn add_to_linker(linker: &mut Linker<Ctx>) -> wasmtime::Result<()> {
    let mut i = linker.instance("weir:sip/system@0.1.0")?;
    i.func_wrap("get-load", |_: StoreContextMut<'_, Ctx>, (): ()| {
        Ok((latest(),))
    })?;
    Ok(())
}

#[cfg(target_os = "linux")]
fn start_sampler() {
    let spawned = std::thread::Builder::new()
        .name("weir-wasm-load".into())
        .spawn(|| {
            let mut prev = linux::cpu_times();
            loop {
                RX_QUEUE_BYTES.store(linux::rx_queue_bytes(), Ordering::Relaxed);
                std::thread::sleep(PERIOD);
                let now = linux::cpu_times();
                if let (Some(a), Some(b)) = (prev, now) {
                    CPU_BITS.store(busy_share(a, b).to_bits(), Ordering::Relaxed);
                }
                prev = now;
            }
        });
    if let Err(e) = spawned {
        tracing::warn!("cannot start the load sampler, weir:sip/system reports zeros: {e}");
    }
}

#[cfg(not(target_os = "linux"))]
fn start_sampler() {}

// === parsing ===

/// Cumulative CPU time (in `/proc/stat` ticks) of all CPUs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CpuTimes {
    pub(crate) busy: u64,
    pub(crate) total: u64,
}

/// The aggregate `cpu` line of `/proc/stat` text.
pub(crate) fn parse_cpu_times(stat: &str) -> Option<CpuTimes> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let mut f = line
        .split_ascii_whitespace()
        .skip(1)
        .map(|v| v.parse::<u64>().unwrap_or(0));
    // user nice system idle iowait irq softirq steal [guest guest_nice]
    let mut next = || f.next().unwrap_or(0);
    let (user, nice, system, idle) = (next(), next(), next(), next());
    let (iowait, irq, softirq, steal) = (next(), next(), next(), next());
    let busy = user
        .saturating_add(nice)
        .saturating_add(system)
        .saturating_add(irq)
        .saturating_add(softirq)
        .saturating_add(steal);
    Some(CpuTimes {
        busy,
        total: busy.saturating_add(idle).saturating_add(iowait),
    })
}

/// Busy share between two samples, 0.0..=1.0 (0 when no time passed).
pub(crate) fn busy_share(a: CpuTimes, b: CpuTimes) -> f32 {
    let total = b.total.saturating_sub(a.total);
    if total == 0 {
        return 0.0;
    }
    let busy = b.busy.saturating_sub(a.busy).min(total);
    // Tick counts between two samples are far below f64's exact range.
    let share = busy as f64 / total as f64;
    (share as f32).clamp(0.0, 1.0)
}

/// Sum of the `rx_queue` column of `/proc/net/udp` (or `udp6`) text over the sockets
/// whose inode `owned` accepts.
pub(crate) fn parse_udp_rx_queue(table: &str, owned: impl Fn(u64) -> bool) -> u64 {
    table
        .lines()
        .skip(1) // the column titles
        .filter_map(|line| {
            let cols: Vec<&str> = line.split_ascii_whitespace().collect();
            // sl local rem st tx_queue:rx_queue tr:tm->when retrnsmt uid timeout inode ...
            let (_, rx) = cols.get(4)?.split_once(':')?;
            let inode = cols.get(9)?.parse::<u64>().ok()?;
            if !owned(inode) {
                return None;
            }
            u64::from_str_radix(rx, 16).ok()
        })
        .fold(0, u64::saturating_add)
}

/// The inode of a `/proc/<pid>/fd/<n>` link target `socket:[N]`.
pub(crate) fn socket_inode(link: &str) -> Option<u64> {
    link.strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::HashSet;
    use std::fs;

    use super::{parse_cpu_times, parse_udp_rx_queue, socket_inode, CpuTimes};

    pub(super) fn cpu_times() -> Option<CpuTimes> {
        parse_cpu_times(&fs::read_to_string("/proc/stat").ok()?)
    }

    /// Inodes of the sockets this process holds.
    fn socket_inodes() -> HashSet<u64> {
        let Ok(dir) = fs::read_dir("/proc/self/fd") else {
            return HashSet::new();
        };
        dir.filter_map(|e| {
            let link = fs::read_link(e.ok()?.path()).ok()?;
            socket_inode(link.to_str()?)
        })
        .collect()
    }

    /// Bytes queued on this process's UDP sockets (IPv4 and IPv6).
    pub(crate) fn rx_queue_bytes() -> u64 {
        let inodes = socket_inodes();
        if inodes.is_empty() {
            return 0;
        }
        ["/proc/self/net/udp", "/proc/self/net/udp6"]
            .iter()
            .filter_map(|p| fs::read_to_string(p).ok())
            .map(|t| parse_udp_rx_queue(&t, |i| inodes.contains(&i)))
            .fold(0, u64::saturating_add)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STAT: &str = "cpu  4705 150 1120 16250 520 10 30 5 7 0\n\
                        cpu0 2352 75 560 8125 260 5 15 2 3 0\n\
                        intr 1234 0 0\n\
                        ctxt 5678\n";

    const UDP: &str = "   sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode ref pointer drops\n\
  283: 0100007F:13C4 00000000:0000 07 00000000:00000200 00:00000000 00000000  1000        0 40001 2 0000000000000000 0\n\
  284: 00000000:0044 00000000:0000 07 00000000:00001000 00:00000000 00000000     0        0 17000 2 0000000000000000 0\n\
  512: 0100007F:13C5 00000000:0000 07 00000000:00000064 00:00000000 00000000  1000        0 40002 2 0000000000000000 0\n\
  bad line\n";

    #[test]
    fn cpu_line_is_split_into_busy_and_total() {
        let t = parse_cpu_times(STAT).unwrap();
        // busy: user nice system irq softirq steal; guest (7) is inside user already.
        assert_eq!(t.busy, 4705 + 150 + 1120 + 10 + 30 + 5);
        assert_eq!(t.total, t.busy + 16250 + 520);
        assert_eq!(parse_cpu_times("intr 1\n"), None);
        // Short or odd lines count missing fields as 0 rather than failing.
        assert_eq!(
            parse_cpu_times("cpu 1 x 2\n"),
            Some(CpuTimes { busy: 3, total: 3 })
        );
    }

    #[test]
    fn busy_share_is_the_delta_ratio() {
        let a = CpuTimes {
            busy: 100,
            total: 1000,
        };
        let b = CpuTimes {
            busy: 175,
            total: 1100,
        };
        assert!((busy_share(a, b) - 0.75).abs() < 1e-6);
        assert_eq!(busy_share(a, a), 0.0);
        // A counter going backwards (CPU hot-unplug) never gives a share outside 0..1.
        assert_eq!(busy_share(b, a), 0.0);
        let c = CpuTimes {
            busy: 10_000,
            total: 1100,
        };
        assert_eq!(busy_share(a, c), 1.0);
    }

    #[test]
    fn rx_queue_sums_owned_sockets_only() {
        assert_eq!(
            parse_udp_rx_queue(UDP, |i| i == 40001 || i == 40002),
            0x200 + 0x64
        );
        assert_eq!(parse_udp_rx_queue(UDP, |_| true), 0x200 + 0x1000 + 0x64);
        assert_eq!(parse_udp_rx_queue(UDP, |_| false), 0);
        assert_eq!(parse_udp_rx_queue("", |_| true), 0);
    }

    #[test]
    fn socket_links_give_inodes() {
        assert_eq!(socket_inode("socket:[40001]"), Some(40001));
        assert_eq!(socket_inode("pipe:[40001]"), None);
        assert_eq!(socket_inode("/dev/null"), None);
        assert_eq!(socket_inode("socket:[x]"), None);
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn queued_datagrams_of_this_process_are_seen() {
        let rx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let before = linux::rx_queue_bytes();
        for _ in 0..4 {
            tx.send_to(&[0u8; 500], rx.local_addr().unwrap()).unwrap();
        }
        // The kernel counts its own overhead per datagram (skb truesize), so at least
        // the payload is queued.
        let end = std::time::Instant::now() + Duration::from_secs(2);
        loop {
            let queued = linux::rx_queue_bytes().saturating_sub(before);
            if queued >= 2000 {
                break;
            }
            assert!(std::time::Instant::now() < end, "queued {queued}");
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(rx);
        assert!(linux::cpu_times().is_some_and(|t| t.total > 0));
    }
}
