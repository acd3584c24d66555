//! Shared helpers of the integration tests: building the `misbehave` fixture guest,
//! runtimes, messages.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use weir_message::{Limits, Message};
use weir_wasm::{
    CallContext, KvLimits, LoadedModule, MemoryKv, ModuleSpec, ParamValue, Runtime, RuntimeConfig,
    Transport,
};

/// Root of the repository.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds `tests/guests/misbehave` for wasm32-wasip2 once per test binary and returns
/// the component's path.
pub fn misbehave_wasm() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let root = repo_root();
            let target_dir = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target"));
            let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
            let status = Command::new(cargo)
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
                .status()
                .expect("run cargo to build the misbehave guest");
            assert!(status.success(), "building the misbehave guest failed");
            let wasm = target_dir.join("wasm32-wasip2/release/weir_test_misbehave.wasm");
            assert!(wasm.exists(), "{} missing", wasm.display());
            wasm
        })
        .clone()
}

/// A runtime with its own kv store (returned for direct inspection).
pub fn runtime_with(cache_dir: Option<PathBuf>) -> (Runtime, Arc<MemoryKv>) {
    let kv = MemoryKv::new(KvLimits::default());
    let cfg = RuntimeConfig {
        cache_dir,
        ..RuntimeConfig::default()
    };
    let runtime = Runtime::new(cfg, kv.clone()).expect("runtime");
    (runtime, kv)
}

/// A runtime sharing one code cache per test binary (so only the first load compiles).
pub fn runtime() -> (Runtime, Arc<MemoryKv>) {
    runtime_with(Some(shared_cache_dir()))
}

pub fn shared_cache_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("weir-wasm-shared-cache")
}

/// A spec for the fixture in `mode`.
pub fn spec(name: &str, tenant: &str, mode: &str) -> ModuleSpec {
    ModuleSpec::new(name, tenant, misbehave_wasm()).param("mode", ParamValue::Text(mode.into()))
}

/// Loads the fixture in `mode` with a call timeout.
pub fn load(runtime: &Runtime, name: &str, mode: &str, timeout: Duration) -> Arc<LoadedModule> {
    let mut spec = spec(name, "test", mode);
    spec.limits.timeout = timeout;
    runtime.load(&spec).expect("load misbehave")
}

pub const INVITE: &str = "INVITE sip:bob@example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776asdhds\r\n\
Max-Forwards: 70\r\n\
To: Bob <sip:bob@example.com>\r\n\
From: Alice <sip:alice@example.com>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710@pc33.example.com\r\n\
CSeq: 314159 INVITE\r\n\
Contact: <sip:alice@192.0.2.1>\r\n\
Content-Type: application/sdp\r\n\
Content-Length: 4\r\n\
\r\n\
test";

pub fn invite() -> Message {
    Message::parse(INVITE.as_bytes(), &Limits::default()).expect("parse INVITE")
}

/// The INVITE with an `X-Mode` header that overrides the module's mode for one call.
pub fn invite_with_mode(mode: &str) -> Message {
    let mut m = invite();
    m.headers.push("X-Mode", mode);
    m
}

pub fn ctx() -> CallContext<'static> {
    CallContext::new(
        "192.0.2.1:5060".parse().expect("addr"),
        Transport::Udp,
        "udp0",
    )
}
