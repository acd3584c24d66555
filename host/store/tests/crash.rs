//! Kill -9 durability of the embedded store: a child process (this test binary,
//! re-executed) writes and reports every acknowledged write on stdout; the parent
//! kills it with SIGKILL mid-stream, reopens the directory and checks that nothing
//! acknowledged was lost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use weir_store::{Binding, Embedded, EmbeddedOptions, KvStore, LocationStore};

const DIR_ENV: &str = "WEIR_STORE_CRASH_DIR";
const FSYNC_ENV: &str = "WEIR_STORE_CRASH_FSYNC";
const AORS: usize = 50;

fn binding(n: usize) -> Binding {
    Binding {
        contact: format!("sip:dev{n}@10.0.0.1:5060"),
        expires_at_ms: weir_store::now_ms() + 3_600_000,
        q: None,
        call_id: format!("call-{n}"),
        cseq: 1,
        instance: None,
        reg_id: None,
        path: vec![],
        received: None,
        listener: None,
        user_agent: Some("crash-test".into()),
        params: vec![],
        ruid: format!("ruid-{n}"),
        updated_ms: 0,
    }
}

fn open(dir: &Path, fsync: bool) -> Arc<Embedded> {
    Embedded::open(EmbeddedOptions {
        path: Some(dir.to_owned()),
        fsync,
        ..EmbeddedOptions::default()
    })
    .unwrap()
}

/// The child: writes forever, printing `ack <n>` after each acknowledged round. Does
/// nothing when not started by `kill_9_loses_nothing_acknowledged`.
#[test]
fn crash_child_writer() {
    let Ok(dir) = std::env::var(DIR_ENV) else {
        return;
    };
    let fsync = std::env::var(FSYNC_ENV).is_ok_and(|v| v == "1");
    let store = open(Path::new(&dir), fsync);
    let now = weir_store::now_ms();
    for n in 0.. {
        let b = binding(n);
        store
            .update(
                &format!("sip:user{}@example.com", n % AORS),
                now,
                &mut |bs| {
                    bs.push(b.clone());
                    true
                },
            )
            .unwrap();
        store
            .set(
                "tenant/module",
                &format!("k{n}"),
                n.to_string().as_bytes(),
                None,
            )
            .unwrap();
        store.incr("tenant/module", "counter", 1, None).unwrap();
        println!("ack {n}");
    }
}

fn crash_and_check(fsync: bool) {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    let mut child = Command::new(exe)
        .args([
            "crash_child_writer",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(DIR_ENV, dir.path())
        .env(FSYNC_ENV, if fsync { "1" } else { "0" })
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let target = if fsync { 150 } else { 1500 };
    let mut last = None;
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Some(n) = line.strip_prefix("ack ") {
            last = Some(n.parse::<usize>().unwrap());
            if last >= Some(target) {
                break;
            }
        }
    }
    // SIGKILL while the child is in the middle of further writes.
    child.kill().unwrap();
    // Acks already in the pipe count too.
    for line in lines.map_while(Result::ok) {
        if let Some(n) = line.strip_prefix("ack ") {
            last = n.parse().ok().max(last);
        }
    }
    child.wait().unwrap();
    let last = last.expect("the child acknowledged nothing");

    let store = open(dir.path(), fsync);
    let now = weir_store::now_ms();
    let mut bindings = 0;
    for a in 0..AORS {
        let got = store
            .lookup(&format!("sip:user{a}@example.com"), now)
            .unwrap();
        for b in &got {
            assert_eq!(b.user_agent.as_deref(), Some("crash-test"));
        }
        bindings += got.len();
    }
    assert!(
        bindings > last,
        "{bindings} bindings, {} acknowledged",
        last + 1
    );
    for n in 0..=last {
        let aor = format!("sip:user{}@example.com", n % AORS);
        let contacts = store.lookup(&aor, now).unwrap();
        assert!(
            contacts.iter().any(|b| b.ruid == format!("ruid-{n}")),
            "binding {n} acknowledged but lost"
        );
        assert_eq!(
            store.get("tenant/module", &format!("k{n}")).unwrap(),
            Some(n.to_string().into_bytes()),
            "kv k{n} acknowledged but lost"
        );
    }
    let counter: usize = String::from_utf8(store.get("tenant/module", "counter").unwrap().unwrap())
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        counter > last,
        "counter {counter}, {} acknowledged",
        last + 1
    );
    eprintln!(
        "fsync={fsync}: {} rounds acknowledged before SIGKILL, {bindings} bindings and counter {counter} after reopen",
        last + 1
    );
    // The reopened store keeps working.
    store
        .set("tenant/module", "after", b"1", Some(Duration::from_secs(5)))
        .unwrap();
}

#[test]
fn kill_9_loses_nothing_acknowledged() {
    crash_and_check(false);
}

#[test]
fn kill_9_loses_nothing_acknowledged_with_fsync() {
    crash_and_check(true);
}
