//! `weir`: the command line. Loads a config, loads its modules, binds its listeners and
//! proxies until told to stop; or only validates (`weir check`).
#![deny(unsafe_code)]

mod alloc;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use weir_config::Config;
use weir_proxy::{Core, ModuleServices};
use weir_transport::Transports;
use weir_wasm::{KvLimits, MemoryKv, ModuleRegistry, Runtime, RuntimeConfig};

const USAGE: &str = "\
weir: SIP proxy with WebAssembly routing modules

USAGE:
    weir run   --config FILE    run the proxy
    weir check --config FILE    validate the config and load its modules, then exit
    weir version                print the version

Logging follows RUST_LOG (default: info), e.g. RUST_LOG=weir=debug,info.
";

/// How often counters are written to the log while running.
const STATS_EVERY: Duration = Duration::from_secs(60);
/// How often expired registrar bindings are purged.
const PURGE_EVERY: Duration = Duration::from_secs(5);

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("weir: error: {}", describe(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, leaving out a cause whose text the message
/// before it already carries (many errors print their source themselves).
fn describe(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if !out.contains(&text) {
            if !out.is_empty() {
                out.push_str(": ");
            }
            out.push_str(&text);
        }
    }
    out
}

fn dispatch(args: &[String]) -> Result<()> {
    let cmd = args.first().map(String::as_str);
    match cmd {
        Some("run") => run(&config_arg(args)?),
        Some("check") => check(&config_arg(args)?),
        Some("version" | "--version" | "-V") => {
            println!("weir {}", env!("CARGO_PKG_VERSION"));
            Ok(())
        }
        Some("help" | "--help" | "-h") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command {other:?}\n\n{USAGE}"),
    }
}

fn config_arg(args: &[String]) -> Result<PathBuf> {
    let mut it = args.iter().skip(1);
    let mut path = None;
    while let Some(a) = it.next() {
        match a.as_str() {
            "--config" | "-c" => path = it.next().map(PathBuf::from),
            s if s.starts_with("--config=") => {
                path = s.strip_prefix("--config=").map(PathBuf::from);
            }
            other => bail!("unexpected argument {other:?}\n\n{USAGE}"),
        }
    }
    path.context("--config FILE is required")
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
}

/// Load every module of the config into a fresh registry.
fn load_modules(
    cfg: &Config,
    kv: Arc<dyn weir_wasm::KvStore>,
    services: Arc<ModuleServices>,
) -> Result<(Runtime, Arc<ModuleRegistry>)> {
    if let Some(dir) = &cfg.runtime.cache_dir {
        // A cache that cannot be created only costs compile time.
        if let Err(e) = std::fs::create_dir_all(dir) {
            tracing::warn!(dir = %dir.display(), error = %e, "module cache disabled");
        }
    }
    let runtime = Runtime::new(
        RuntimeConfig {
            cache_dir: cfg.runtime.cache_dir.clone().filter(|d| d.is_dir()),
            epoch_tick: cfg.runtime.epoch_tick,
        },
        kv,
    )
    .context("cannot start the wasm runtime")?;
    // Before any module loads: `init` may start timers.
    runtime.set_services(services);
    let registry = Arc::new(ModuleRegistry::new());
    for def in cfg.modules.values() {
        let spec = weir_wasm::ModuleSpec {
            name: def.name.clone(),
            tenant: def.tenant.clone(),
            component: def.component.clone(),
            params: def
                .params
                .iter()
                .map(|(k, v)| weir_wasm::Param {
                    key: k.clone(),
                    value: param_value(v),
                })
                .collect(),
            limits: weir_wasm::ModuleLimits {
                memory_bytes: def.memory_bytes,
                timeout: def.timeout,
                max_instances: def.max_instances,
            },
            http_allow: def.http_allow.clone(),
            files: def.files.clone(),
        };
        let module = runtime
            .load(&spec)
            .with_context(|| format!("module {:?} ({})", def.name, def.component.display()))?;
        registry.replace(&def.name, module);
    }
    Ok((runtime, registry))
}

fn param_value(v: &weir_config::ParamValue) -> weir_wasm::ParamValue {
    use weir_config::ParamValue as C;
    use weir_wasm::ParamValue as W;
    match v {
        C::Text(s) => W::Text(s.clone()),
        C::Integer(i) => W::Integer(*i),
        C::Float(f) => W::Float(*f),
        C::Boolean(b) => W::Boolean(*b),
        C::TextList(l) => W::TextList(l.clone()),
        C::IntegerList(l) => W::IntegerList(l.clone()),
    }
}

fn check(path: &Path) -> Result<()> {
    init_logging();
    let cfg = Config::load(path)?;
    // The stores are not opened: a running Weir may hold them. The credentials file
    // is only read, so it is checked.
    if let Some(file) = &cfg.store.subscribers.file {
        let users = weir_store::subscribers::load_subscribers(file)
            .with_context(|| format!("store.subscribers.file {}", file.display()))?;
        tracing::info!(file = %file.display(), users = users.len(), "subscribers file ok");
    }
    // Services never attached: timers are only recorded, nothing is sent.
    let (_runtime, registry) = load_modules(
        &cfg,
        MemoryKv::new(KvLimits::default()),
        ModuleServices::new(),
    )?;
    println!(
        "{}: ok ({} listeners, {} modules loaded, {} routes)",
        path.display(),
        cfg.listeners.len(),
        registry.len(),
        cfg.routes.len()
    );
    Ok(())
}

fn run(path: &Path) -> Result<()> {
    init_logging();
    let cfg = Config::load(path)?;
    let workers = cfg.proxy.udp_workers.max(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("weir-worker")
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(serve(cfg))
}

async fn serve(cfg: Config) -> Result<()> {
    // Signal handlers first: once "weir is running" is logged, a SIGTERM must lead to a
    // clean stop with final stats, not the default disposition.
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
    let stores = weir_store::open(&cfg.store).context("cannot open the state store")?;
    let services = ModuleServices::new();
    let (runtime, registry) = load_modules(&cfg, stores.kv.clone(), services.clone())?;
    runtime.set_subscribers(stores.subscribers.clone());
    let registrar = match &cfg.registrar {
        Some(rc) => Some(Arc::new(
            weir_registrar::Registrar::new(rc.clone(), stores.location.clone())
                .context("registrar")?
                .with_subscribers(stores.subscribers.clone()),
        )),
        None => None,
    };
    let transports = Transports::bind(&cfg.listeners, &cfg.limits, cfg.proxy.max_message_size)?;
    let core = Core::new(
        &cfg,
        transports.clone(),
        registry.clone(),
        registrar.clone(),
    );
    services.attach(&core);
    if registrar.is_some() {
        tokio::spawn(purge_bindings(Arc::downgrade(&core)));
    }
    transports.start(core.clone(), cfg.proxy.udp_workers);
    for l in transports.listeners() {
        tracing::info!(name = %l.name, transport = %l.transport, address = %l.local, "listening");
    }
    tracing::info!(routes = cfg.routes.len(), "weir is running");

    let mut ticker = tokio::time::interval(STATS_EVERY);
    ticker.tick().await;
    loop {
        tokio::select! {
            _ = ticker.tick() => log_stats(&core, &registry),
            _ = int.recv() => break,
            _ = term.recv() => break,
        }
    }
    tracing::info!("stopping");
    transports.stop();
    log_stats(&core, &registry);
    Ok(())
}

/// Expired bindings leave the location store (lookups never return them meanwhile),
/// and the `[events] binding` modules hear of them.
async fn purge_bindings(core: std::sync::Weak<Core>) {
    let mut every = tokio::time::interval(PURGE_EVERY);
    loop {
        every.tick().await;
        let Some(c) = core.upgrade() else {
            return;
        };
        // The store may be remote (Redis): off the async workers.
        let _ = tokio::task::spawn_blocking(move || c.purge_bindings()).await;
    }
}

fn log_stats(core: &Core, registry: &ModuleRegistry) {
    let mut modules: Vec<_> = registry.snapshot().values().cloned().collect();
    modules.sort_by(|a, b| a.name().cmp(b.name()));
    for m in modules {
        let s = m.stats();
        tracing::info!(
            module = %m.name(),
            tenant = %m.tenant(),
            calls = s.calls,
            errors = s.errors,
            bad_verdicts = s.bad_verdicts,
            traps = s.traps,
            timeouts = s.timeouts,
            oom = s.oom,
            busy = s.busy,
            instances_created = s.instances_created,
            instances_replaced = s.instances_replaced,
            live_instances = s.live_instances,
            "module stats"
        );
    }
    let s = core.stats().snapshot();
    let line: Vec<String> = s
        .pairs()
        .into_iter()
        .filter(|(_, v)| *v > 0)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    tracing::info!(
        transactions = core.transactions(),
        "stats: {}",
        line.join(" ")
    );
}
