#![allow(clippy::unwrap_used, clippy::expect_used)]
use std::time::Duration;
use weir_system_tests::conf;
use weir_system_tests::peer::UdpPeer;
use weir_system_tests::Proxy;

#[test]
fn probe_received() {
    let uas = UdpPeer::bind();
    let proxy = Proxy::start_with(|port| conf::standard(port, &uas.uri()));
    let ua = UdpPeer::bind();
    let other = UdpPeer::bind_at(format!("127.0.0.2:{}", ua.addr().port()).parse().unwrap());
    let req = ua.request("INVITE", "sip:bob@example.com").set_header("Via", &format!("SIP/2.0/UDP {};branch=z9hG4bKx1;received=127.0.0.2", ua.host_port())).set_header("Max-Forwards", "0");
    ua.send(&req, proxy.addr());
    eprintln!("ua: {:?}", ua.recv(Duration::from_millis(500)).map(|m| m.0.start));
    eprintln!("other: {:?}", other.recv(Duration::from_millis(500)).map(|m| m.0.start));
    // ACK with MF 0
    let ack = ua.request("ACK", "sip:bob@example.com").set_header("Max-Forwards", "0");
    ua.send(&ack, proxy.addr());
    eprintln!("ack ua: {:?}", ua.recv(Duration::from_millis(500)).map(|m| m.0.start));
    eprintln!("ack uas: {:?}", uas.recv(Duration::from_millis(500)).map(|m| m.0.start));
}
