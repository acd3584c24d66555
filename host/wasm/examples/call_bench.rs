//! Per-call cost of `LoadedModule::on_request` with the `misbehave` fixture in mode
//! `ok` (reads nothing, adds one header) over a parsed INVITE, on one thread with a
//! warm instance.
//!
//! ```text
//! cargo run --release -p weir-wasm --example call_bench [-- CALLS [COMPONENT.wasm]]
//! ```
//!
//! Without a component path it builds `tests/guests/misbehave` first. Each call gets
//! a fresh clone of the parsed INVITE (cloned outside the timed region).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use weir_message::{Limits, Message};
use weir_wasm::{
    CallContext, KvLimits, MemoryKv, ModuleSpec, ParamValue, Runtime, RuntimeConfig, Transport,
    Verdict,
};

const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: Alice <sip:alice@example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@192.0.2.1>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 0\r\n\
\r\n";

fn build_fixture() -> Result<PathBuf, Box<dyn std::error::Error>> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
        .current_dir(&root)
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--manifest-path",
        ])
        .arg("tests/guests/misbehave/Cargo.toml")
        .arg("--target-dir")
        .arg(&target_dir)
        .status()?;
    if !status.success() {
        return Err("building the misbehave fixture failed".into());
    }
    Ok(target_dir.join("wasm32-wasip2/release/weir_test_misbehave.wasm"))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn bench(
    runtime: &Runtime,
    component: &Path,
    mode: &str,
    calls: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let spec =
        ModuleSpec::new("bench", "bench", component).param("mode", ParamValue::Text(mode.into()));
    let module = runtime.load(&spec)?;
    let ctx = CallContext::new("192.0.2.1:5060".parse()?, Transport::Udp, "udp0");
    let parsed = Message::parse(INVITE.as_bytes(), &Limits::default())?;

    // Warm up the instance, caches and branch predictors.
    for _ in 0..calls / 10 {
        let mut msg = parsed.clone();
        module.on_request(&mut msg, &ctx)?;
    }
    let mut samples = Vec::with_capacity(calls);
    let total = Instant::now();
    let mut timed = Duration::ZERO;
    for _ in 0..calls {
        let mut msg = parsed.clone();
        let t = Instant::now();
        let verdict = module.on_request(&mut msg, &ctx);
        let dt = t.elapsed();
        timed += dt;
        samples.push(dt);
        if !matches!(verdict, Ok(Verdict::Continue) | Ok(Verdict::Reply { .. })) {
            return Err(format!("unexpected verdict {verdict:?}").into());
        }
    }
    let wall = total.elapsed();
    samples.sort_unstable();
    let stats = module.stats();
    println!(
        "mode {mode:<8} calls {calls}: median {:?}  p90 {:?}  p99 {:?}  mean {:?}  \
         (instances created {}, wall incl. clone {:?}/call)",
        percentile(&samples, 0.5),
        percentile(&samples, 0.9),
        percentile(&samples, 0.99),
        timed / u32::try_from(calls)?,
        stats.instances_created,
        wall / u32::try_from(calls)?,
    );
    Ok(())
}

/// Cost of a call that finds the pool empty (the previous call trapped and its
/// instance was dropped): instantiation from `InstancePre`, `init`, then the call.
fn fresh_instance(
    runtime: &Runtime,
    component: &Path,
    rounds: usize,
) -> Result<(), Box<dyn std::error::Error>> {
    let spec =
        ModuleSpec::new("churn", "bench", component).param("mode", ParamValue::Text("ok".into()));
    let module = runtime.load(&spec)?;
    let ctx = CallContext::new("192.0.2.1:5060".parse()?, Transport::Udp, "udp0");
    let parsed = Message::parse(INVITE.as_bytes(), &Limits::default())?;
    let mut trapping = parsed.clone();
    trapping.headers.push("X-Mode", "trap");
    let (mut fresh, mut traps) = (Vec::with_capacity(rounds), Vec::with_capacity(rounds));
    for _ in 0..rounds {
        let mut msg = trapping.clone();
        let t = Instant::now();
        let failed = module.on_request(&mut msg, &ctx);
        traps.push(t.elapsed());
        if failed.is_ok() {
            return Err("the trap mode did not trap".into());
        }
        let mut msg = parsed.clone();
        let t = Instant::now();
        module.on_request(&mut msg, &ctx)?;
        fresh.push(t.elapsed());
    }
    fresh.sort_unstable();
    traps.sort_unstable();
    println!(
        "fresh instance + init + call: median {:?} p99 {:?}; trapping call incl. discard: median {:?} \
         (instances created {})",
        percentile(&fresh, 0.5),
        percentile(&fresh, 0.99),
        percentile(&traps, 0.5),
        module.stats().instances_created
    );
    Ok(())
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let calls: usize = args
        .next()
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(200_000);
    let component = match args.next() {
        Some(path) => PathBuf::from(path),
        None => build_fixture()?,
    };
    let runtime = Runtime::new(RuntimeConfig::default(), MemoryKv::new(KvLimits::default()))?;
    // `ok`: one host call (add-header) and the first-edit snapshot of the message.
    bench(&runtime, &component, "ok", calls)?;
    // `reply`: no host call, a verdict with strings to lift.
    bench(&runtime, &component, "reply", calls)?;
    fresh_instance(&runtime, &component, 2000)?;
    Ok(())
}
