//! Calls under load: sipp's UAC places INVITE/200/ACK/BYE calls through Weir (with the
//! header-ops module in the request chain) to sipp's UAS, over UDP, TCP and IPv6 UDP.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use weir_system_tests::conf;
use weir_system_tests::sipp::{Transport, Uac, Uas};
use weir_system_tests::Proxy;

const CALLS: u32 = 200;
const RATE: u32 = 100;

/// Place `CALLS` calls over `transport` through `proxy` and check every one succeeded
/// and went through Weir.
fn calls_succeed(proxy: Proxy, uas: &Uas, remote: std::net::SocketAddr, transport: Transport) {
    calls_succeed_with(proxy, uas, Uac::new(remote, transport, CALLS, RATE));
}

fn calls_succeed_with(proxy: Proxy, uas: &Uas, uac: Uac) {
    let run = uac.run();
    let verdict = format!("{}\n--- uas ---\n{}", run.report, uas.log());
    assert_eq!(
        run.exit_code,
        Some(0),
        "sipp reports failed calls:\n{verdict}"
    );
    assert_eq!(run.successful, Some(u64::from(CALLS)), "{verdict}");
    assert_eq!(run.failed, Some(0), "{verdict}");
    proxy.assert_running();
    let stats = proxy.stop();
    // INVITE, ACK and BYE of every call were forwarded; 180, 200 and 200 relayed back.
    let min = 3 * u64::from(CALLS);
    assert!(stats.get("forwarded") >= min, "{stats:?}");
    assert!(stats.get("responses_relayed") >= min, "{stats:?}");
    assert_eq!(stats.get("module_failures"), 0, "{stats:?}");
    assert_eq!(stats.get("local_replies"), 0, "{stats:?}");
}

#[test]
fn udp_calls_all_succeed() {
    let uas = Uas::start(IpAddr::V4(Ipv4Addr::LOCALHOST), Transport::Udp);
    let hop = uas.uri();
    let proxy = Proxy::start_with(|port| conf::standard(port, &hop));
    let remote = proxy.addr();
    calls_succeed(proxy, &uas, remote, Transport::Udp);
}

#[test]
fn tcp_calls_all_succeed() {
    let uas = Uas::start(IpAddr::V4(Ipv4Addr::LOCALHOST), Transport::Tcp);
    let hop = uas.uri();
    let proxy = Proxy::start_with(|port| conf::standard(port, &hop));
    let remote = proxy.addr();
    calls_succeed(proxy, &uas, remote, Transport::Tcp);
}

#[test]
fn ipv6_udp_calls_all_succeed() {
    let uas = Uas::start(IpAddr::V6(Ipv6Addr::LOCALHOST), Transport::Udp);
    let hop = uas.uri();
    let proxy = Proxy::start_with(|port| {
        format!(
            "{}{}{}{}",
            conf::header(),
            conf::listeners_v6(port),
            conf::header_ops(),
            conf::route_via_headers("default", &hop)
        )
    });
    let remote = proxy.addr6();
    calls_succeed(proxy, &uas, remote, Transport::Udp);
}

#[test]
fn udp_calls_with_several_receive_threads_all_succeed() {
    // Four threads reading one socket, as Kamailio's children do: every call completes.
    // Two datagrams of one source may be handled at once and leave swapped (the UAS's
    // back-to-back 180 and 200), which a stateless proxy may do over UDP, so the UAC
    // tolerates a late 180 (`udp_workers = 1` keeps strict arrival order).
    let uas = Uas::start(IpAddr::V4(Ipv4Addr::LOCALHOST), Transport::Udp);
    let hop = uas.uri();
    let proxy = Proxy::start_with(|port| {
        conf::standard(port, &hop).replace("udp_workers = 1", "udp_workers = 4")
    });
    let mut uac = Uac::new(proxy.addr(), Transport::Udp, CALLS, RATE);
    uac.tolerate_reordering = true;
    calls_succeed_with(proxy, &uas, uac);
}
