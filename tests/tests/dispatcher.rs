//! The dispatcher module (`plugins/dispatcher`) behind a stateful route: three sipp
//! UAS destinations on 127.0.0.1 (`dispatcher_uas.xml`: answers OPTIONS keepalives and
//! calls, and logs each INVITE's Call-ID to a file so that the test counts the calls
//! each destination got), sipp UAC calls (`dispatcher_uac.xml`) through Weir.
//!
//! What is checked: round robin spreads calls evenly; a destination stopped mid-run
//! costs no call (its calls fail over through the failure chain), gets no INVITE once
//! it is detected, and gets traffic again after it is restarted on the same port and
//! answers the next probes; rewriting the list file under load drops a destination
//! with no failed call; nothing usable gives 503 after failover and then 404.
//!
//! Nothing here asserts on timing: every wait is for a condition, with a generous
//! deadline, so a loaded machine only makes the tests slower.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use weir_system_tests::paths::{self, TempDir};
use weir_system_tests::peer::UdpPeer;
use weir_system_tests::sipp::{self, Transport, Uac, UacResult};
use weir_system_tests::{conf, ports, wait, Proxy};

const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
/// How long a condition may take on a loaded machine.
const PATIENCE: Duration = Duration::from_secs(60);

// === Destinations ===

/// A sipp UAS running `dispatcher_uas.xml` on a fixed port (so that it can be
/// restarted there), killed on drop.
struct Dest {
    port: u16,
    dir: TempDir,
    child: Option<Child>,
}

impl Dest {
    fn start(port: u16) -> Dest {
        let mut d = Dest {
            port,
            dir: TempDir::new("dispatcher-uas"),
            child: None,
        };
        d.spawn();
        d
    }

    fn uri(&self) -> String {
        format!("sip:127.0.0.1:{}", self.port)
    }

    fn invites_file(&self) -> PathBuf {
        self.dir.path().join("invites.log")
    }

    /// Start sipp on the port; a sipp that exits at once (its port taken for a moment
    /// by another test's socket) is started again, twice at most, and a failure shows
    /// what sipp said.
    fn spawn(&mut self) {
        assert!(self.child.is_none());
        for _ in 0..3 {
            self.spawn_once();
            let up = wait::until(Duration::from_secs(20), || {
                if ports::udp_in_use(LOCAL, self.port) {
                    return Some(true);
                }
                let exited = self
                    .child
                    .as_mut()
                    .is_none_or(|c| c.try_wait().ok().flatten().is_some());
                exited.then_some(false)
            });
            if up == Some(true) {
                return;
            }
            self.stop();
            std::thread::sleep(Duration::from_millis(500));
        }
        let said = std::fs::read_to_string(self.dir.path().join("uas.out")).unwrap_or_default();
        panic!("sipp UAS on {} did not start:\n{said}", self.port);
    }

    fn spawn_once(&mut self) {
        let out = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("uas.out"))
            .unwrap();
        let err = out.try_clone().unwrap();
        let child = Command::new(paths::sipp_bin())
            .current_dir(self.dir.path())
            .arg("-sf")
            .arg(sipp::scenario("dispatcher_uas.xml"))
            .arg("-key")
            .arg("invites")
            .arg(self.invites_file())
            .args(["-nostdin", "-i", "127.0.0.1", "-t", "u1"])
            .args(["-p", &self.port.to_string()])
            .args(["-trace_err", "-error_file"])
            .arg(self.dir.path().join("errors.log"))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run sipp (is it installed?): {e}"));
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// INVITEs received so far.
    fn invites(&self) -> usize {
        std::fs::read_to_string(self.invites_file())
            .map(|s| s.lines().filter(|l| !l.trim().is_empty()).count())
            .unwrap_or(0)
    }

    fn log(&self) -> String {
        let read = |n: &str| std::fs::read_to_string(self.dir.path().join(n)).unwrap_or_default();
        let out = read("uas.out");
        let tail: Vec<&str> = out.lines().rev().take(30).collect();
        format!(
            "--- uas {} ---\n{}\n--- errors ---\n{}",
            self.port,
            tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            read("errors.log")
        )
    }
}

impl Drop for Dest {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!("{}", self.log());
        }
    }
}

/// Three free ports, distinct.
fn three_ports() -> [u16; 3] {
    let mut out: Vec<u16> = Vec::new();
    while out.len() < 3 {
        let p = ports::free_port();
        if !out.contains(&p) {
            out.push(p);
        }
    }
    [out[0], out[1], out[2]]
}

/// Wait until the destinations logged `total` INVITEs together (the UAS appends its
/// line from a forked shell, a little after the INVITE).
fn wait_for_invites(dests: &[&Dest], total: usize) -> Vec<usize> {
    let got = wait::until(PATIENCE, || {
        let n: Vec<usize> = dests.iter().map(|d| d.invites()).collect();
        (n.iter().sum::<usize>() >= total).then_some(n)
    });
    got.unwrap_or_else(|| {
        panic!(
            "destinations never logged {total} INVITEs: {:?}",
            dests.iter().map(|d| d.invites()).collect::<Vec<_>>()
        )
    })
}

// === Proxy ===

/// The list file: set 1 with these URIs.
fn write_list(path: &Path, uris: &[String]) {
    let mut text = String::from("# dispatcher system test\n");
    for u in uris {
        text += &format!("1 {u}\n");
    }
    // Atomically, as an operator should: a reader never sees half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

fn toml_path(p: &Path) -> String {
    p.display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
}

/// A stateful dispatcher on `port` (in-dialog requests on a route of their own):
/// round robin over the list file, probing every
/// `ping_interval` s (0: none), fr_timer 1 s so that a silent destination fails over
/// quickly. The probe timeout is long (4 s): a live sipp UAS that answers late on a
/// loaded machine must not be taken for dead, and a dead one is found by its failed
/// calls anyway.
fn config(port: u16, list: &Path, ping_interval: u32) -> String {
    let wasm = toml_path(&paths::plugin_wasm("dispatcher"));
    let list = toml_path(list);
    let mut c = conf::header();
    c += &conf::transaction("fr_timer_ms = 1000\nfr_inv_timer_ms = 10000");
    c += &conf::listeners(port);
    // A generous deadline: these tests run beside sipp load on few cores.
    c += &format!(
        "[modules.dispatcher]\ncomponent = \"{wasm}\"\ntimeout_ms = 1000\n\
         files = {{ list = \"{list}\" }}\n\
         [modules.dispatcher.params]\nset = 1\nalg = 4\nping_interval = {ping_interval}\n\
         probing_mode = 1\nping_timeout_ms = 4000\n\n"
    );
    // In-dialog requests around the module, as config/dispatcher.toml.
    c += &conf::stateful_route("in-dialog", "", "in_dialog = true");
    c += &conf::stateful_route(
        "dispatch",
        "",
        "request = [{ module = \"dispatcher\" }]\nfailure = [{ module = \"dispatcher\" }]",
    );
    c
}

fn start_proxy(list: &Path, ping_interval: u32) -> Proxy {
    Proxy::start_with(|port| config(port, list, ping_interval))
}

// === Calls ===

fn uac(proxy: &Proxy, calls: u32, rate: u32) -> Uac {
    let mut u = Uac::new(proxy.addr(), Transport::Udp, calls, rate);
    u.scenario = Some(sipp::scenario("dispatcher_uac.xml"));
    u.timeout = Duration::from_secs(u64::from(calls / rate.max(1)) + 120);
    u.tolerate_reordering = true;
    u
}

fn assert_all_passed(r: &UacResult, calls: u32, what: &str, proxy: &Proxy) {
    assert!(
        r.exit_code == Some(0) && r.failed == Some(0) && r.successful == Some(u64::from(calls)),
        "{what}: {calls} calls, {:?} successful, {:?} failed\n{}\n--- proxy ---\n{}",
        r.successful,
        r.failed,
        r.report,
        proxy.log()
    );
}

/// The log line the module writes when `uri` changes state (`down` / `up`).
fn transition(uri: &str, what: &str) -> String {
    format!("dispatcher: {uri} {what}")
}

/// What a black hole receives during the next `limit`: (INVITEs, others).
fn drain(hole: &UdpPeer, limit: Duration) -> (usize, usize) {
    let (mut invites, mut other) = (0, 0);
    // For `limit` in all: probes keep coming, so "until quiet" would never end.
    let end = Instant::now() + limit;
    while let Some((m, _)) = hole.recv(wait::left(end)) {
        if m.method() == Some("INVITE") {
            invites += 1;
        } else {
            other += 1;
        }
    }
    (invites, other)
}

// === Tests ===

#[test]
fn calls_spread_round_robin_over_three_destinations() {
    let dir = TempDir::new("dispatcher-rr");
    let list = dir.path().join("dispatcher.list");
    let ports = three_ports();
    let dests: Vec<Dest> = ports.iter().map(|&p| Dest::start(p)).collect();
    write_list(&list, &dests.iter().map(Dest::uri).collect::<Vec<_>>());
    let proxy = start_proxy(&list, 1);

    const CALLS: u32 = 90;
    let r = uac(&proxy, CALLS, 20).run();
    assert_all_passed(&r, CALLS, "round robin", &proxy);
    let refs: Vec<&Dest> = dests.iter().collect();
    let got = wait_for_invites(&refs, CALLS as usize);
    for (d, n) in dests.iter().zip(&got) {
        assert!(
            n.abs_diff(CALLS as usize / 3) <= 1,
            "{} got {n} of {CALLS} calls: {got:?}",
            d.uri()
        );
    }
    proxy.assert_running();
}

#[test]
fn a_stopped_destination_fails_over_is_skipped_and_comes_back() {
    let dir = TempDir::new("dispatcher-failover");
    let list = dir.path().join("dispatcher.list");
    let ports = three_ports();
    let mut dests: Vec<Dest> = ports.iter().map(|&p| Dest::start(p)).collect();
    write_list(&list, &dests.iter().map(Dest::uri).collect::<Vec<_>>());
    let proxy = start_proxy(&list, 1);
    let victim = dests[0].uri();

    // Phase 1: calls running while the first destination dies.
    const CALLS: u32 = 150;
    let runner = uac(&proxy, CALLS, 15);
    let phase1 = std::thread::spawn(move || runner.run());
    let hit = wait::until(PATIENCE, || (dests[0].invites() >= 10).then_some(()));
    assert!(hit.is_some(), "the first destination got no calls");
    dests[0].stop();
    // A black hole on its port: takes what is sent there, never answers.
    // The port frees once the last process holding it is gone (sipp's `exec` children
    // inherit its socket for a moment after sipp is killed).
    let freed = wait::until(PATIENCE, || {
        (!ports::udp_in_use(LOCAL, ports[0])).then_some(())
    });
    assert!(freed.is_some(), "port {} stays in use", ports[0]);
    let hole = UdpPeer::bind_at(SocketAddr::new(LOCAL, ports[0]));
    let r = phase1.join().unwrap();
    assert_all_passed(&r, CALLS, "calls while a destination dies", &proxy);
    assert!(
        proxy.wait_for_log(&transition(&victim, "down"), PATIENCE),
        "no down transition for {victim}\n{}",
        proxy.log()
    );

    // Phase 2: detected: no INVITE goes there any more.
    drain(&hole, Duration::from_millis(1500));
    const MORE: u32 = 60;
    let before: Vec<usize> = dests[1..].iter().map(Dest::invites).collect();
    let r = uac(&proxy, MORE, 20).run();
    assert_all_passed(&r, MORE, "calls after detection", &proxy);
    let (invites, probes) = drain(&hole, Duration::from_millis(1500));
    assert_eq!(
        invites, 0,
        "INVITEs reached the dead destination after detection"
    );
    assert!(probes > 0, "the dead destination is no longer probed");
    let refs: Vec<&Dest> = dests[1..].iter().collect();
    let after = wait_for_invites(&refs, before.iter().sum::<usize>() + MORE as usize);
    for (b, a) in before.iter().zip(&after) {
        assert!(
            a > b,
            "the live destinations share the calls: {before:?} -> {after:?}"
        );
    }

    // Phase 3: restarted on the same port, it answers the next probes and gets calls.
    drop(hole);
    dests[0].spawn();
    assert!(
        proxy.wait_for_log(&transition(&victim, "up"), PATIENCE),
        "{victim} never came back up\n{}",
        proxy.log()
    );
    let back = dests[0].invites();
    let r = uac(&proxy, MORE, 20).run();
    assert_all_passed(&r, MORE, "calls after the restart", &proxy);
    let got = wait::until(PATIENCE, || (dests[0].invites() > back).then_some(()));
    assert!(
        got.is_some(),
        "the restarted destination got no calls\n{}",
        proxy.log()
    );
    proxy.assert_running();
}

#[test]
fn the_list_reloads_under_load_without_failed_calls() {
    let dir = TempDir::new("dispatcher-reload");
    let list = dir.path().join("dispatcher.list");
    let ports = three_ports();
    let dests: Vec<Dest> = ports.iter().map(|&p| Dest::start(p)).collect();
    let uris: Vec<String> = dests.iter().map(Dest::uri).collect();
    write_list(&list, &uris);
    let proxy = start_proxy(&list, 1);

    const CALLS: u32 = 200;
    let runner = uac(&proxy, CALLS, 20);
    let load = std::thread::spawn(move || runner.run());
    let refs: Vec<&Dest> = dests.iter().collect();
    wait_for_invites(&refs, 40);
    // Drop the third destination while calls run.
    write_list(&list, &uris[..2]);
    let r = load.join().unwrap();
    assert_all_passed(&r, CALLS, "calls across the reload", &proxy);
    let dropped = wait_for_invites(&refs, CALLS as usize)[2];

    // From now on the dropped destination gets nothing.
    const MORE: u32 = 40;
    let r = uac(&proxy, MORE, 20).run();
    assert_all_passed(&r, MORE, "calls after the reload", &proxy);
    let got = wait_for_invites(&refs, (CALLS + MORE) as usize);
    assert_eq!(
        got[2], dropped,
        "the dropped destination got calls: {got:?}"
    );
    assert!(
        got[0].abs_diff(got[1]) <= (CALLS / 3) as usize,
        "the remaining two share the calls: {got:?}"
    );
    proxy.assert_running();
}

#[test]
fn nothing_usable_fails_over_to_503_then_answers_404() {
    let dir = TempDir::new("dispatcher-none");
    let list = dir.path().join("dispatcher.list");
    // Three destinations that never answer; no probing, so only failed legs mark them.
    let holes: Vec<UdpPeer> = (0..3).map(|_| UdpPeer::bind()).collect();
    write_list(&list, &holes.iter().map(UdpPeer::uri).collect::<Vec<_>>());
    let proxy = start_proxy(&list, 0);
    let ua = UdpPeer::bind();

    // The final reply to a new INVITE (retransmitted finals of earlier calls, which
    // are not ACKed, are skipped by Call-ID).
    let final_of = || {
        let req = ua.request("INVITE", "sip:bob@example.com");
        let call = req.header("Call-ID").unwrap().to_string();
        ua.send(&req, proxy.addr());
        loop {
            let (m, _) = ua
                .recv(PATIENCE)
                .unwrap_or_else(|| panic!("no final reply\n{}", proxy.log()));
            if m.header("Call-ID") == Some(call.as_str()) && m.status().is_some_and(|s| s >= 200) {
                return m.status();
            }
        }
    };
    // Each leg times out (408): the call fails over through all three, then 503.
    assert_eq!(final_of(), Some(503), "{}", proxy.log());
    for h in &holes {
        let (invites, _) = drain(h, Duration::from_millis(200));
        assert!(invites > 0, "{} was not tried", h.uri());
    }
    // All three are marked inactive now: the next call gets 404 at once.
    assert_eq!(final_of(), Some(404), "{}", proxy.log());
    for h in &holes {
        let (invites, _) = drain(h, Duration::from_millis(200));
        assert_eq!(invites, 0, "{} was tried again", h.uri());
    }
    proxy.assert_running();
}
