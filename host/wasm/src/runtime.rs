//! The process-wide runtime: engine, call watchdog, linker, code cache, kv store.

use std::fs;
use std::io::Read;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, OptLevel, ProfilingStrategy, Strategy};
use weir_store::SubscriberStore;

use crate::bindings::weir::sip::types::{Param as WitParam, ParamValue as WitParamValue};
use crate::bindings::ModulePre;
use crate::cache::CodeCache;
use crate::error::{Error, WasmError};
use crate::host::auth::{AuthState, ConnectionIdentities};
use crate::host::services::{GrantedFile, Grants, ServiceState};
use crate::host::{self, Ctx, ModuleIdent};
use crate::kv::KvStore;
use crate::module::{CacheOutcome, LoadInfo, LoadedModule, ModuleParts, StartFailure};
use crate::services::Services;
use crate::spec::{ModuleSpec, ParamValue, RuntimeConfig};
use crate::watchdog::Watchdog;

/// Largest component file accepted (interpreter-based guests are 12-18 MB).
const MAX_COMPONENT_BYTES: u64 = 256 * 1024 * 1024;
/// Longest module or tenant name.
const MAX_NAME: usize = 64;

/// One per process: the engine every module is compiled for, the thread that ticks
/// its epoch, the linker with the host functions, the code cache and the kv store.
pub struct Runtime {
    engine: Engine,
    linker: Linker<Ctx>,
    kv: Arc<dyn KvStore>,
    auth: Arc<AuthState>,
    services: Arc<ServiceState>,
    cache: Option<CodeCache>,
    watchdog: Arc<Watchdog>,
}

impl Runtime {
    /// Builds the engine (Cranelift, component model, epoch interruption, no
    /// concurrency support), starts the call watchdog and opens the code cache.
    pub fn new(cfg: RuntimeConfig, kv: Arc<dyn KvStore>) -> Result<Runtime, Error> {
        if cfg.epoch_tick < Duration::from_micros(100) || cfg.epoch_tick > Duration::from_secs(1) {
            return Err(Error::Config {
                reason: "epoch_tick must be between 100 µs and 1 s",
            });
        }
        let engine = Engine::new(&engine_config()).map_err(|e| Error::Engine {
            source: WasmError::from(e),
        })?;
        let linker = host::linker(&engine).map_err(|e| Error::Engine {
            source: WasmError::from(e),
        })?;
        let cache = match cfg.cache_dir {
            Some(dir) => Some(
                CodeCache::open(dir.clone(), &engine)
                    .map_err(|source| Error::CacheDir { dir, source })?,
            ),
            None => None,
        };
        let watchdog =
            Watchdog::start(engine.clone(), cfg.epoch_tick).map_err(|e| Error::Engine {
                source: WasmError::from(wasmtime::Error::msg(format!(
                    "cannot start the call watchdog thread: {e}"
                ))),
            })?;
        Ok(Runtime {
            engine,
            linker,
            kv,
            auth: Arc::new(AuthState::new()),
            services: Arc::new(ServiceState::new()),
            cache,
            watchdog,
        })
    }

    /// Use `store` for `weir:sip/subscribers` lookups from now on, in every module
    /// (those already loaded included). Until called, the store is empty: every lookup
    /// finds nobody. Lookups run on the message path: give a store that answers fast
    /// (a cache in front of a slow backend, see `weir_store::Cached`).
    pub fn set_subscribers(&self, store: Arc<dyn SubscriberStore>) {
        self.auth.set_subscribers(store);
    }

    /// Serve the modules' `timers`, `requests`, `transactions`, `location` and `http`
    /// imports with `services` from now on (those already loaded included). Until
    /// called, every such call fails with "not available".
    pub fn set_services(&self, services: Arc<dyn Services>) {
        self.services.set(services);
    }

    /// The identities modules bound to stream connections (`weir:sip/connections`),
    /// keyed by [`CallContext::connection`](crate::CallContext::connection). Bounded
    /// (least recently used entries go first); a caller may
    /// [`forget`](ConnectionIdentities::forget) a connection when it closes.
    pub fn connections(&self) -> &Arc<ConnectionIdentities> {
        &self.auth.connections
    }

    /// The engine, for callers that precompile or inspect components.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles the module (or loads it from the code cache), links it, creates its
    /// first instance and runs `init` with the params to validate them.
    ///
    /// Slow (milliseconds to seconds): call it at startup or reload, not on the
    /// message path.
    pub fn load(&self, spec: &ModuleSpec) -> Result<Arc<LoadedModule>, Error> {
        let ident = Arc::new(ModuleIdent {
            name: spec.name.clone(),
            tenant: spec.tenant.clone(),
            qualified: format!("{}/{}", spec.tenant, spec.name),
        });
        let module = ident.qualified.clone();
        validate(spec).map_err(|reason| Error::InvalidSpec {
            module: module.clone(),
            reason,
        })?;

        let t0 = Instant::now();
        let wasm = read_component(spec, &module)?;
        let component_bytes = u64::try_from(wasm.len()).unwrap_or(u64::MAX);
        let (component, cache) = self.compile(&wasm, &module)?;
        drop(wasm);
        let code_time = t0.elapsed();

        let t1 = Instant::now();
        let mut linker = self.linker.clone();
        let unsupported =
            host::wasi::stub_missing(&mut linker, &self.engine, &component).map_err(|e| {
                Error::Link {
                    module: module.clone(),
                    source: e.into(),
                }
            })?;
        if let Some(import) = unsupported {
            return Err(Error::UnsupportedImport { module, import });
        }
        let pre = linker
            .instantiate_pre(&component)
            .and_then(ModulePre::new)
            .map_err(|e| Error::Link {
                module: module.clone(),
                source: e.into(),
            })?;
        let parts = ModuleParts {
            ident,
            pre,
            params: spec.params.iter().map(to_wit_param).collect(),
            limits: spec.limits.clone(),
            kv: self.kv.clone(),
            auth: self.auth.clone(),
            services: self.services.clone(),
            grants: Arc::new(Grants {
                http_allow: spec.http_allow.clone(),
                files: spec
                    .files
                    .iter()
                    .map(|(n, p)| (n.clone(), GrantedFile::new(p.clone())))
                    .collect(),
            }),
            info: LoadInfo {
                cache,
                code_time,
                start_time: Duration::ZERO,
                component_bytes,
            },
            watchdog: self.watchdog.clone(),
        };
        let mut loaded = LoadedModule::start(parts).map_err(|f| match f {
            StartFailure::Refused(message) => Error::InitRefused {
                module: module.clone(),
                message,
            },
            StartFailure::Failed(failure) => Error::Instantiate {
                module: module.clone(),
                failure,
            },
        })?;
        loaded.set_start_time(t1.elapsed());
        tracing::info!(
            module = %spec.name,
            tenant = %spec.tenant,
            cache = ?cache,
            code_ms = code_time.as_secs_f64() * 1e3,
            start_ms = t1.elapsed().as_secs_f64() * 1e3,
            "module loaded"
        );
        Ok(Arc::new(loaded))
    }

    fn compile(&self, wasm: &[u8], module: &str) -> Result<(Component, CacheOutcome), Error> {
        let compile = || {
            Component::new(&self.engine, wasm).map_err(|e| Error::Compile {
                module: module.to_owned(),
                source: e.into(),
            })
        };
        let Some(cache) = &self.cache else {
            return Ok((compile()?, CacheOutcome::Disabled));
        };
        let key = cache.key(wasm);
        if let Some(component) = cache.load(&self.engine, &key) {
            return Ok((component, CacheOutcome::Hit));
        }
        let component = compile()?;
        cache.store(&key, &component);
        Ok((component, CacheOutcome::Miss))
    }
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("cache", &self.cache.is_some())
            .finish_non_exhaustive()
    }
}

/// The engine configuration. Everything here is part of the code cache key (through
/// wasmtime's compatibility hash).
fn engine_config() -> Config {
    let mut c = Config::new();
    c.wasm_component_model(true)
        .strategy(Strategy::Cranelift)
        .cranelift_opt_level(OptLevel::Speed)
        .epoch_interruption(true)
        // The per-message path is synchronous; without this every call pays for
        // async task bookkeeping (measured: 35-40% of a small call).
        .concurrency_support(false)
        .parallel_compilation(true);
    if perfmap_requested(std::env::var_os(PERFMAP_ENV).as_deref()) {
        // Names the modules' compiled functions for `perf` (docs/plugin-guide.md,
        // "Profiling a module"); off by default: it writes a file per process.
        c.profiler(ProfilingStrategy::PerfMap);
    }
    c
}

/// The environment variable that makes the engine write `/tmp/perf-<pid>.map`.
pub const PERFMAP_ENV: &str = "WEIR_WASM_PERFMAP";

/// Whether the value of [`PERFMAP_ENV`] asks for a perf map: set, and neither empty
/// nor `0`.
fn perfmap_requested(value: Option<&std::ffi::OsStr>) -> bool {
    value.is_some_and(|v| !v.is_empty() && v != "0")
}

fn validate_name(what: &str, name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
        && name != "."
        && name != "..";
    if ok {
        Ok(())
    } else {
        // A `/` would let two (tenant, module) pairs share a kv namespace.
        Err(format!(
            "{what} `{name}` must be 1 to {MAX_NAME} characters of [A-Za-z0-9._-]"
        ))
    }
}

fn validate(spec: &ModuleSpec) -> Result<(), String> {
    validate_name("name", &spec.name)?;
    validate_name("tenant", &spec.tenant)?;
    let l = &spec.limits;
    if l.memory_bytes < 64 * 1024 {
        return Err("limits.memory_bytes must be at least 64 KiB".into());
    }
    if l.timeout.is_zero() || l.timeout > Duration::from_secs(60) {
        return Err("limits.timeout must be between 0 and 60 s".into());
    }
    if l.max_instances == 0 {
        return Err("limits.max_instances must be at least 1".into());
    }
    Ok(())
}

fn read_component(spec: &ModuleSpec, module: &str) -> Result<Vec<u8>, Error> {
    let path = &spec.component;
    let read_err = |source| Error::ReadComponent {
        module: module.to_owned(),
        path: path.clone(),
        source,
    };
    let file = fs::File::open(path).map_err(read_err)?;
    let len = file.metadata().map_err(read_err)?.len();
    if len > MAX_COMPONENT_BYTES {
        return Err(Error::ComponentTooLarge {
            module: module.to_owned(),
            path: path.clone(),
            len,
            max: MAX_COMPONENT_BYTES,
        });
    }
    let mut wasm = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    // The file may grow between the metadata call and the read.
    file.take(MAX_COMPONENT_BYTES + 1)
        .read_to_end(&mut wasm)
        .map_err(read_err)?;
    if u64::try_from(wasm.len()).unwrap_or(u64::MAX) > MAX_COMPONENT_BYTES {
        return Err(Error::ComponentTooLarge {
            module: module.to_owned(),
            path: path.clone(),
            len: u64::try_from(wasm.len()).unwrap_or(u64::MAX),
            max: MAX_COMPONENT_BYTES,
        });
    }
    Ok(wasm)
}

fn to_wit_param(p: &crate::spec::Param) -> WitParam {
    let value = match &p.value {
        ParamValue::Text(s) => WitParamValue::Text(s.clone()),
        ParamValue::Integer(i) => WitParamValue::Integer(*i),
        ParamValue::Float(f) => WitParamValue::Float(*f),
        ParamValue::Boolean(b) => WitParamValue::Boolean(*b),
        ParamValue::TextList(l) => WitParamValue::TextList(l.clone()),
        ParamValue::IntegerList(l) => WitParamValue::IntegerList(l.clone()),
    };
    WitParam {
        key: p.key.clone(),
        value,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cannot_smuggle_a_namespace_separator() {
        assert!(validate_name("tenant", "acme-1.prod_x").is_ok());
        for bad in ["", "a/b", "..", ".", "a b", "é", &"x".repeat(65)] {
            assert!(validate_name("tenant", bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_perf_map_is_written_only_when_asked_for() {
        use std::ffi::OsStr;
        assert!(!perfmap_requested(None));
        assert!(!perfmap_requested(Some(OsStr::new(""))));
        assert!(!perfmap_requested(Some(OsStr::new("0"))));
        assert!(perfmap_requested(Some(OsStr::new("1"))));
    }
}
