//! `weir:sip/log`, `weir:sip/clock` and `weir:sip/kv`.

use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use wasmtime::component::{Linker, WasmList, WasmStr};
use wasmtime::{AsContext, StoreContextMut};

use super::{Ctx, ModuleIdent};
use crate::bindings::weir::sip::kv::KvError as WitKvError;
use crate::bindings::weir::sip::types::Level;
use crate::kv::KvError;

/// Longest log line kept; longer ones are cut.
pub(crate) const MAX_LOG_LINE: usize = 2048;
/// Longest kv key the host passes to the store, whatever the store allows.
const MAX_KV_KEY: usize = 1024;
/// Longest kv value the host passes to the store, whatever the store allows.
const MAX_KV_VALUE: usize = 1024 * 1024;

pub(crate) fn add_to_linker(linker: &mut Linker<Ctx>) -> wasmtime::Result<()> {
    add_log(linker)?;
    add_clock(linker)?;
    add_kv(linker)
}

// === log ===

fn add_log(linker: &mut Linker<Ctx>) -> wasmtime::Result<()> {
    let mut i = linker.instance("weir:sip/log@0.1.0")?;
    i.func_wrap(
        "log",
        |mut s: StoreContextMut<'_, Ctx>, (level, message): (Level, WasmStr)| {
            if !take_log_budget(s.data_mut()) {
                return Ok(());
            }
            let message = message.to_str(s.as_context())?;
            emit(&s.data().ident, level, cut(&message, MAX_LOG_LINE));
            Ok(())
        },
    )?;
    Ok(())
}

/// True if the call may log one more line.
pub(crate) fn take_log_budget(ctx: &mut Ctx) -> bool {
    if ctx.call.log_budget == 0 {
        return false;
    }
    ctx.call.log_budget -= 1;
    true
}

/// `s` cut to at most `max` bytes on a char boundary.
pub(crate) fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

pub(crate) fn emit(id: &ModuleIdent, level: Level, line: &str) {
    let (module, tenant) = (id.name.as_str(), id.tenant.as_str());
    match level {
        Level::Trace => {
            tracing::trace!(target: "weir::module", module = %module, tenant = %tenant, "{line}")
        }
        Level::Debug => {
            tracing::debug!(target: "weir::module", module = %module, tenant = %tenant, "{line}")
        }
        Level::Info => {
            tracing::info!(target: "weir::module", module = %module, tenant = %tenant, "{line}")
        }
        Level::Warn => {
            tracing::warn!(target: "weir::module", module = %module, tenant = %tenant, "{line}")
        }
        Level::Error => {
            tracing::error!(target: "weir::module", module = %module, tenant = %tenant, "{line}")
        }
    }
}

// === clock ===

/// Origin of the monotonic clocks handed to guests (the first time one is read).
pub(crate) fn monotonic_ns() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    u64::try_from(origin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

pub(crate) fn since_unix_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
}

fn add_clock(linker: &mut Linker<Ctx>) -> wasmtime::Result<()> {
    let mut i = linker.instance("weir:sip/clock@0.1.0")?;
    i.func_wrap("now-ms", |_: StoreContextMut<'_, Ctx>, (): ()| {
        Ok((u64::try_from(since_unix_epoch().as_millis()).unwrap_or(u64::MAX),))
    })?;
    i.func_wrap("monotonic-ns", |_: StoreContextMut<'_, Ctx>, (): ()| {
        Ok((monotonic_ns(),))
    })?;
    Ok(())
}

// === kv ===

fn to_wit(e: KvError) -> WitKvError {
    match e {
        KvError::NotANumber => WitKvError::NotANumber,
        KvError::Backend(why) => WitKvError::Backend(why),
        other => WitKvError::Limit(other.to_string()),
    }
}

fn check_key(key: &str) -> Result<(), WitKvError> {
    if key.len() > MAX_KV_KEY {
        return Err(WitKvError::Limit(format!(
            "key of {} bytes is longer than {MAX_KV_KEY}",
            key.len()
        )));
    }
    Ok(())
}

fn ttl(ms: Option<u64>) -> Option<Duration> {
    ms.map(Duration::from_millis)
}

fn add_kv(linker: &mut Linker<Ctx>) -> wasmtime::Result<()> {
    // The namespace comes from the store, never from the guest.
    let mut i = linker.instance("weir:sip/kv@0.1.0")?;
    i.func_wrap("get", |s: StoreContextMut<'_, Ctx>, (key,): (WasmStr,)| {
        let key = key.to_str(s.as_context())?;
        let ctx = s.data();
        let got =
            check_key(&key).and_then(|()| ctx.kv.get(&ctx.ident.qualified, &key).map_err(to_wit));
        Ok((got,))
    })?;
    i.func_wrap(
        "set",
        |s: StoreContextMut<'_, Ctx>,
         (key, value, ttl_ms): (WasmStr, WasmList<u8>, Option<u64>)| {
            let key = key.to_str(s.as_context())?;
            let ctx = s.data();
            let done = check_key(&key).and_then(|()| {
                if value.len() > MAX_KV_VALUE {
                    return Err(WitKvError::Limit(format!(
                        "value of {} bytes is longer than {MAX_KV_VALUE}",
                        value.len()
                    )));
                }
                let value = value.as_le_slice(s.as_context());
                ctx.kv
                    .set(&ctx.ident.qualified, &key, value, ttl(ttl_ms))
                    .map_err(to_wit)
            });
            Ok((done,))
        },
    )?;
    i.func_wrap(
        "incr",
        |s: StoreContextMut<'_, Ctx>, (key, delta, ttl_ms): (WasmStr, i64, Option<u64>)| {
            let key = key.to_str(s.as_context())?;
            let ctx = s.data();
            let n = check_key(&key).and_then(|()| {
                ctx.kv
                    .incr(&ctx.ident.qualified, &key, delta, ttl(ttl_ms))
                    .map_err(to_wit)
            });
            Ok((n,))
        },
    )?;
    i.func_wrap(
        "delete",
        |s: StoreContextMut<'_, Ctx>, (key,): (WasmStr,)| {
            let key = key.to_str(s.as_context())?;
            let ctx = s.data();
            let existed = check_key(&key)
                .and_then(|()| ctx.kv.delete(&ctx.ident.qualified, &key).map_err(to_wit));
            Ok((existed,))
        },
    )?;
    Ok(())
}
