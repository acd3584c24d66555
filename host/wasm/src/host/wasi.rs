//! A minimal WASI 0.2 shim for what Rust std (and wasi-libc) guests import.
//!
//! wasmtime-wasi is not linked: its synchronous p2 bindings run several functions
//! (every `output-stream` drop, `blocking-write-and-flush`, `blocking-flush`, polls)
//! through `in_tokio`, which calls `Handle::block_on` when a tokio runtime is current
//! and so panics on a tokio worker thread, which is where Weir calls modules (see
//! docs/adr/0002-wasm-runtime.md). Everything here is synchronous and never blocks:
//!
//! - `wasi:random/*`: OS randomness, and a per-instance PRNG for the insecure ones;
//! - `wasi:clocks/wall-clock` and `monotonic-clock` (`now`, `resolution`);
//! - `wasi:cli/environment`: no variables, no arguments, no working directory;
//! - `wasi:cli/stdout` and `stderr`: line-buffered into `tracing`, budgeted per call;
//!   their pollables (`wasi:io/poll`) are always ready, so nothing ever waits;
//! - `wasi:filesystem/preopens`: no directories (file access fails as "not found");
//! - `wasi:cli/exit`: traps.
//!
//! Every other function of a `wasi:` interface a component imports is defined, at
//! load, as a function that traps (sockets, files, stdin, terminals, timers).

use rand::rngs::{OsRng, StdRng};
use rand::{RngCore, SeedableRng};
use wasmtime::component::{
    types::ComponentItem, Component, ComponentType, Linker, Lower, Resource, ResourceType, WasmList,
};
use wasmtime::{bail, format_err, AsContext, Engine, StoreContextMut};

use super::imports::{cut, emit, monotonic_ns, since_unix_epoch, take_log_budget, MAX_LOG_LINE};
use super::{Ctx, ModuleIdent};
use crate::bindings::weir::sip::types::Level;

/// Version the shim is defined at; the linker matches any `0.2.x` import to it.
const VERSION: &str = "0.2.6";

/// Largest `get-random-bytes` request served; larger ones trap.
const MAX_RANDOM_BYTES: u64 = 1024 * 1024;

/// What the shim defines, per interface; everything else of a `wasi:` import is
/// stubbed to trap at load.
const PROVIDED: &[(&str, &[&str])] = &[
    (
        "wasi:random/random",
        &["get-random-bytes", "get-random-u64"],
    ),
    (
        "wasi:random/insecure",
        &["get-insecure-random-bytes", "get-insecure-random-u64"],
    ),
    ("wasi:random/insecure-seed", &["insecure-seed"]),
    ("wasi:clocks/wall-clock", &["now", "resolution"]),
    ("wasi:clocks/monotonic-clock", &["now", "resolution"]),
    (
        "wasi:cli/environment",
        &["get-environment", "get-arguments", "initial-cwd"],
    ),
    ("wasi:cli/exit", &["exit"]),
    ("wasi:cli/stdout", &["get-stdout"]),
    ("wasi:cli/stderr", &["get-stderr"]),
    ("wasi:io/error", &["error"]),
    (
        "wasi:io/streams",
        &[
            "output-stream",
            "[method]output-stream.check-write",
            "[method]output-stream.write",
            "[method]output-stream.blocking-write-and-flush",
            "[method]output-stream.flush",
            "[method]output-stream.blocking-flush",
            "[method]output-stream.subscribe",
        ],
    ),
    (
        "wasi:io/poll",
        &[
            "pollable",
            "[method]pollable.ready",
            "[method]pollable.block",
            "poll",
        ],
    ),
    ("wasi:filesystem/types", &["descriptor"]),
    ("wasi:filesystem/preopens", &["get-directories"]),
];

const STDOUT_REP: u32 = 1;
const STDERR_REP: u32 = 2;

/// How much one `check-write` lets the guest write.
const WRITE_PERMIT: u64 = 4096;

struct OutputStreamRep;
/// Always ready: the only pollables handed out are those of stdout and stderr,
/// which never make a guest wait.
struct PollableRep;
struct IoErrorRep;
struct DescriptorRep;
/// Resources of interfaces the shim does not implement.
struct Unavailable;

/// `wasi:io/streams.stream-error`.
#[derive(ComponentType, Lower)]
#[component(variant)]
// The shim never fails a write, but the type must match the WIT.
#[allow(dead_code)]
enum StreamError {
    #[component(name = "last-operation-failed")]
    LastOperationFailed(Resource<IoErrorRep>),
    #[component(name = "closed")]
    Closed,
}

/// `wasi:clocks/wall-clock.datetime`.
#[derive(ComponentType, Lower, Clone, Copy)]
#[component(record)]
struct Datetime {
    seconds: u64,
    nanoseconds: u32,
}

/// Per-instance WASI state.
pub(crate) struct WasiState {
    rng: StdRng,
    seed: (u64, u64),
    stdout: Vec<u8>,
    stderr: Vec<u8>,
}

impl WasiState {
    pub(crate) fn new() -> wasmtime::Result<WasiState> {
        let mut seed = [0u8; 32];
        OsRng
            .try_fill_bytes(&mut seed)
            .map_err(|e| format_err!("no OS randomness: {e}"))?;
        let mut rng = StdRng::from_seed(seed);
        let insecure_seed = (rng.next_u64(), rng.next_u64());
        Ok(WasiState {
            rng,
            seed: insecure_seed,
            stdout: Vec::new(),
            stderr: Vec::new(),
        })
    }

    fn buffer(&mut self, rep: u32) -> &mut Vec<u8> {
        if rep == STDERR_REP {
            &mut self.stderr
        } else {
            &mut self.stdout
        }
    }

    /// Emits whatever is buffered (at the end of a call, or on a stream drop).
    pub(crate) fn flush_all(&mut self, id: &ModuleIdent) {
        for rep in [STDOUT_REP, STDERR_REP] {
            let buf = self.buffer(rep);
            if !buf.is_empty() {
                emit_line(id, rep, buf);
                buf.clear();
            }
        }
    }
}

fn emit_line(id: &ModuleIdent, rep: u32, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    if text.trim().is_empty() {
        return;
    }
    let level = if rep == STDERR_REP {
        Level::Warn
    } else {
        Level::Info
    };
    emit(id, level, cut(text.trim_end(), MAX_LOG_LINE));
}

/// Appends guest output to a stream's line buffer and emits complete lines, within
/// the call's log budget. At most one line's worth of bytes per line is copied out
/// of guest memory, and nothing once the budget is spent.
fn write(s: &mut StoreContextMut<'_, Ctx>, rep: u32, contents: &WasmList<u8>) {
    let budget = usize::try_from(s.data().call.log_budget).unwrap_or(usize::MAX);
    let mut partial = std::mem::take(s.data_mut().wasi.buffer(rep));
    let mut lines: Vec<Vec<u8>> = Vec::new();
    {
        let bytes = contents.as_le_slice(s.as_context());
        for chunk in bytes.split_inclusive(|b| *b == b'\n') {
            if lines.len() >= budget {
                partial.clear();
                break;
            }
            let room = MAX_LOG_LINE.saturating_sub(partial.len());
            partial.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if chunk.ends_with(b"\n") {
                lines.push(std::mem::take(&mut partial));
            }
        }
    }
    *s.data_mut().wasi.buffer(rep) = partial;
    for line in lines {
        if take_log_budget(s.data_mut()) {
            emit_line(&s.data().ident, rep, &line);
        }
    }
}

fn flush(s: &mut StoreContextMut<'_, Ctx>, rep: u32) {
    let ctx = s.data_mut();
    let line = std::mem::take(ctx.wasi.buffer(rep));
    if !line.is_empty() && take_log_budget(ctx) {
        emit_line(&ctx.ident, rep, &line);
    }
}

fn stream_rep(this: &Resource<OutputStreamRep>) -> wasmtime::Result<u32> {
    match this.rep() {
        rep @ (STDOUT_REP | STDERR_REP) => Ok(rep),
        other => bail!("unknown output stream {other}"),
    }
}

fn datetime(d: std::time::Duration) -> Datetime {
    Datetime {
        seconds: d.as_secs(),
        nanoseconds: d.subsec_nanos(),
    }
}

/// The host type of a WASI resource: the shim's own for those it implements, one
/// opaque type for all others (so their aliases match each other too).
fn resource_type(name: &str) -> ResourceType {
    match name {
        "error" => ResourceType::host::<IoErrorRep>(),
        "output-stream" => ResourceType::host::<OutputStreamRep>(),
        "descriptor" => ResourceType::host::<DescriptorRep>(),
        "pollable" => ResourceType::host::<PollableRep>(),
        _ => ResourceType::host::<Unavailable>(),
    }
}

fn versioned(interface: &str) -> String {
    format!("{interface}@{VERSION}")
}

pub(crate) fn add_to_linker(linker: &mut Linker<Ctx>) -> wasmtime::Result<()> {
    let mut i = linker.instance(&versioned("wasi:random/random"))?;
    i.func_wrap(
        "get-random-bytes",
        |_: StoreContextMut<'_, Ctx>, (len,): (u64,)| {
            if len > MAX_RANDOM_BYTES {
                bail!("get-random-bytes of {len} bytes refused (at most {MAX_RANDOM_BYTES})");
            }
            let mut bytes = vec![0u8; usize::try_from(len)?];
            OsRng
                .try_fill_bytes(&mut bytes)
                .map_err(|e| format_err!("no OS randomness: {e}"))?;
            Ok((bytes,))
        },
    )?;
    i.func_wrap("get-random-u64", |_: StoreContextMut<'_, Ctx>, (): ()| {
        let mut bytes = [0u8; 8];
        OsRng
            .try_fill_bytes(&mut bytes)
            .map_err(|e| format_err!("no OS randomness: {e}"))?;
        Ok((u64::from_le_bytes(bytes),))
    })?;

    let mut i = linker.instance(&versioned("wasi:random/insecure"))?;
    i.func_wrap(
        "get-insecure-random-bytes",
        |mut s: StoreContextMut<'_, Ctx>, (len,): (u64,)| {
            if len > MAX_RANDOM_BYTES {
                bail!("get-insecure-random-bytes of {len} bytes refused");
            }
            let mut bytes = vec![0u8; usize::try_from(len)?];
            s.data_mut().wasi.rng.fill_bytes(&mut bytes);
            Ok((bytes,))
        },
    )?;
    i.func_wrap(
        "get-insecure-random-u64",
        |mut s: StoreContextMut<'_, Ctx>, (): ()| Ok((s.data_mut().wasi.rng.next_u64(),)),
    )?;

    let mut i = linker.instance(&versioned("wasi:random/insecure-seed"))?;
    i.func_wrap("insecure-seed", |s: StoreContextMut<'_, Ctx>, (): ()| {
        Ok((s.data().wasi.seed,))
    })?;

    let mut i = linker.instance(&versioned("wasi:clocks/wall-clock"))?;
    i.func_wrap("now", |_: StoreContextMut<'_, Ctx>, (): ()| {
        Ok((datetime(since_unix_epoch()),))
    })?;
    i.func_wrap("resolution", |_: StoreContextMut<'_, Ctx>, (): ()| {
        Ok((Datetime {
            seconds: 0,
            nanoseconds: 1,
        },))
    })?;

    let mut i = linker.instance(&versioned("wasi:clocks/monotonic-clock"))?;
    i.func_wrap("now", |_: StoreContextMut<'_, Ctx>, (): ()| {
        Ok((monotonic_ns(),))
    })?;
    i.func_wrap("resolution", |_: StoreContextMut<'_, Ctx>, (): ()| {
        Ok((1u64,))
    })?;

    let mut i = linker.instance(&versioned("wasi:cli/environment"))?;
    i.func_wrap("get-environment", |_: StoreContextMut<'_, Ctx>, (): ()| {
        Ok((Vec::<(String, String)>::new(),))
    })?;
    i.func_wrap("get-arguments", |_: StoreContextMut<'_, Ctx>, (): ()| {
        Ok((Vec::<String>::new(),))
    })?;
    i.func_wrap("initial-cwd", |_: StoreContextMut<'_, Ctx>, (): ()| {
        Ok((None::<String>,))
    })?;

    let mut i = linker.instance(&versioned("wasi:cli/exit"))?;
    i.func_wrap(
        "exit",
        |_: StoreContextMut<'_, Ctx>, (status,): (Result<(), ()>,)| -> wasmtime::Result<()> {
            bail!(
                "module called wasi:cli/exit ({})",
                if status.is_ok() { "ok" } else { "error" }
            )
        },
    )?;

    let mut i = linker.instance(&versioned("wasi:io/error"))?;
    i.resource("error", ResourceType::host::<IoErrorRep>(), |_, _| Ok(()))?;

    let mut i = linker.instance(&versioned("wasi:io/streams"))?;
    i.resource(
        "output-stream",
        ResourceType::host::<OutputStreamRep>(),
        |mut s, rep| {
            flush(&mut s, rep);
            Ok(())
        },
    )?;
    i.func_wrap(
        "[method]output-stream.check-write",
        |_: StoreContextMut<'_, Ctx>, (this,): (Resource<OutputStreamRep>,)| {
            stream_rep(&this)?;
            Ok((Ok::<u64, StreamError>(WRITE_PERMIT),))
        },
    )?;
    i.func_wrap(
        "[method]output-stream.write",
        |mut s: StoreContextMut<'_, Ctx>,
         (this, contents): (Resource<OutputStreamRep>, WasmList<u8>)| {
            let rep = stream_rep(&this)?;
            write(&mut s, rep, &contents);
            Ok((Ok::<(), StreamError>(()),))
        },
    )?;
    i.func_wrap(
        "[method]output-stream.blocking-write-and-flush",
        |mut s: StoreContextMut<'_, Ctx>,
         (this, contents): (Resource<OutputStreamRep>, WasmList<u8>)| {
            let rep = stream_rep(&this)?;
            write(&mut s, rep, &contents);
            Ok((Ok::<(), StreamError>(()),))
        },
    )?;
    for name in [
        "[method]output-stream.flush",
        "[method]output-stream.blocking-flush",
    ] {
        i.func_wrap(
            name,
            |_: StoreContextMut<'_, Ctx>, (this,): (Resource<OutputStreamRep>,)| {
                // Lines are emitted as they complete; a partial line waits for its
                // newline, the stream's drop or the end of the call.
                stream_rep(&this)?;
                Ok((Ok::<(), StreamError>(()),))
            },
        )?;
    }

    i.func_wrap(
        "[method]output-stream.subscribe",
        |_: StoreContextMut<'_, Ctx>, (this,): (Resource<OutputStreamRep>,)| {
            let rep = stream_rep(&this)?;
            Ok((Resource::<PollableRep>::new_own(rep),))
        },
    )?;

    let mut i = linker.instance(&versioned("wasi:io/poll"))?;
    i.resource("pollable", ResourceType::host::<PollableRep>(), |_, _| {
        Ok(())
    })?;
    i.func_wrap(
        "[method]pollable.ready",
        |_: StoreContextMut<'_, Ctx>, (_this,): (Resource<PollableRep>,)| Ok((true,)),
    )?;
    i.func_wrap(
        "[method]pollable.block",
        |_: StoreContextMut<'_, Ctx>, (_this,): (Resource<PollableRep>,)| Ok(()),
    )?;
    i.func_wrap(
        "poll",
        |_: StoreContextMut<'_, Ctx>, (pollables,): (WasmList<Resource<PollableRep>>,)| {
            // Every pollable is ready; the list is never read, only its length.
            let n = u32::try_from(pollables.len())?;
            if n > 4096 {
                bail!("poll on {n} pollables refused");
            }
            Ok(((0..n).collect::<Vec<u32>>(),))
        },
    )?;

    let mut i = linker.instance(&versioned("wasi:cli/stdout"))?;
    i.func_wrap("get-stdout", |_: StoreContextMut<'_, Ctx>, (): ()| {
        Ok((Resource::<OutputStreamRep>::new_own(STDOUT_REP),))
    })?;
    let mut i = linker.instance(&versioned("wasi:cli/stderr"))?;
    i.func_wrap("get-stderr", |_: StoreContextMut<'_, Ctx>, (): ()| {
        Ok((Resource::<OutputStreamRep>::new_own(STDERR_REP),))
    })?;

    let mut i = linker.instance(&versioned("wasi:filesystem/types"))?;
    i.resource(
        "descriptor",
        ResourceType::host::<DescriptorRep>(),
        |_, _| Ok(()),
    )?;
    let mut i = linker.instance(&versioned("wasi:filesystem/preopens"))?;
    i.func_wrap("get-directories", |_: StoreContextMut<'_, Ctx>, (): ()| {
        Ok((Vec::<(Resource<DescriptorRep>, String)>::new(),))
    })?;
    Ok(())
}

/// What a module load must do about one import.
#[derive(Debug, PartialEq)]
pub(crate) enum ImportCheck {
    /// Defined by the shared linker (`weir:sip/*`).
    Weir,
    /// A WASI interface: the shim or a trapping stub covers it.
    Wasi,
    /// Nothing provides it: the module cannot load.
    Unsupported,
}

pub(crate) fn classify_import(name: &str) -> ImportCheck {
    if name.starts_with("weir:sip/") {
        ImportCheck::Weir
    } else if name.starts_with("wasi:") {
        ImportCheck::Wasi
    } else {
        ImportCheck::Unsupported
    }
}

/// Defines, in `linker` (a per-module copy), a trapping function or an opaque
/// resource for every item of the component's `wasi:` imports the shim does not
/// provide. Returns the first import nothing can provide, if any.
pub(crate) fn stub_missing(
    linker: &mut Linker<Ctx>,
    engine: &Engine,
    component: &Component,
) -> wasmtime::Result<Option<String>> {
    linker.allow_shadowing(true);
    let ty = component.component_type();
    for (name, import) in ty.imports(engine) {
        match classify_import(name) {
            ImportCheck::Weir => continue,
            ImportCheck::Unsupported => return Ok(Some(name.to_owned())),
            ImportCheck::Wasi => {}
        }
        let ComponentItem::ComponentInstance(instance) = import.ty else {
            return Ok(Some(name.to_owned()));
        };
        let (interface, version) = name.split_once('@').unwrap_or((name, ""));
        // 0.2.x imports resolve to the shim's version (semver-compatible), so the
        // stubs go into that instance, next to what the shim defines.
        let (target, provided): (String, &[&str]) = if version.starts_with("0.2.") {
            let provided = PROVIDED
                .iter()
                .find(|(i, _)| *i == interface)
                .map(|(_, items)| *items)
                .unwrap_or(&[]);
            (versioned(interface), provided)
        } else {
            (name.to_owned(), &[])
        };
        let mut li = linker.instance(&target)?;
        for (item, export) in instance.exports(engine) {
            if provided.contains(&item) {
                continue;
            }
            match export.ty {
                ComponentItem::ComponentFunc(_) => {
                    let what = format!("{interface}#{item}");
                    li.func_new(item, move |_, _, _, _| {
                        bail!("`{what}` is not available to Weir modules")
                    })?;
                }
                // Also reached for resources an interface re-exports with `use`
                // (`output-stream` in `wasi:cli/stdout`): those must be the type
                // the shim gave the resource where it is defined.
                ComponentItem::Resource(_) => {
                    li.resource(item, resource_type(item), |_, _| Ok(()))?;
                }
                _ => {}
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_weir_and_wasi_imports_can_load() {
        assert_eq!(classify_import("weir:sip/kv@0.1.0"), ImportCheck::Weir);
        assert_eq!(classify_import("wasi:sockets/tcp@0.2.6"), ImportCheck::Wasi);
        assert_eq!(
            classify_import("acme:evil/host@1.0.0"),
            ImportCheck::Unsupported
        );
    }

    #[test]
    fn every_shim_resource_keeps_its_type_where_reexported() {
        for resource in ["error", "output-stream", "pollable", "descriptor"] {
            assert!(
                PROVIDED.iter().any(|(_, items)| items.contains(&resource)),
                "{resource} is defined by the shim"
            );
            assert!(
                resource_type(resource) != ResourceType::host::<Unavailable>(),
                "{resource}"
            );
        }
        assert!(resource_type("tcp-socket") == ResourceType::host::<Unavailable>());
    }
}
