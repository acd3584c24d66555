//! What modules and failures leave in the logs.

// A failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use weir_wasm::{ModuleFailure, Verdict};

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Capture {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// Runs `f` with a subscriber capturing everything logged on this thread.
fn captured(f: impl FnOnce()) -> String {
    let capture = Capture::default();
    let writer = capture.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    tracing::subscriber::with_default(subscriber, f);
    capture.text()
}

#[test]
fn guest_stdout_stderr_and_panics_reach_tracing_with_module_and_tenant() {
    let (rt, _) = runtime();
    let m = load(&rt, "talker", "wasi", Duration::from_millis(100));
    let logs = captured(|| {
        let mut msg = invite();
        assert_eq!(m.on_request(&mut msg, &ctx()), Ok(Verdict::Continue));
        let mut msg = invite_with_mode("panic");
        assert!(matches!(
            m.on_request(&mut msg, &ctx()),
            Err(ModuleFailure::Trap(_))
        ));
    });
    println!("{logs}");
    let line = |needle: &str| {
        logs.lines()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no log line with {needle:?}"))
            .to_owned()
    };
    let out = line("misbehave: stdout line");
    assert!(
        out.contains("INFO") && out.contains("module=talker") && out.contains("tenant=test"),
        "{out}"
    );
    assert!(line("misbehave: stderr line").contains("WARN"));
    assert!(line("misbehave asked to panic").contains("module=talker"));
    let discarded = line("instance discarded");
    assert!(
        discarded.contains("module=talker")
            && discarded.contains("tenant=test")
            && discarded.contains("reason=trap"),
        "{discarded}"
    );
}
