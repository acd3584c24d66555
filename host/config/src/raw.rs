//! The on-disk schema (serde types that mirror the TOML) and its conversion into the
//! validated domain types, with key paths and line numbers on every error.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::{
    ChainEntry, Config, Error, Events, Limits, Listener, Mode, ModuleDef, OnError, ProxySettings,
    Result, Route, RuntimeSettings, TransactionSettings, Transport,
};

// === Raw schema ===

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    version: Spanned<i64>,
    #[serde(default)]
    proxy: RawProxy,
    #[serde(default)]
    runtime: RawRuntime,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    transaction: RawTransaction,
    #[serde(default)]
    listen: Vec<Spanned<RawListener>>,
    #[serde(default)]
    modules: BTreeMap<String, Spanned<RawModule>>,
    #[serde(default)]
    route: Vec<Spanned<RawRoute>>,
    registrar: Option<Spanned<weir_registrar::Config>>,
    #[serde(default)]
    events: RawEvents,
    // Not Spanned: `[store.subscribers]` alone makes `[store]` an implicit table,
    // which has no span to give.
    store: Option<weir_store::Config>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawProxy {
    #[serde(default)]
    aliases: Vec<String>,
    max_message_size: Option<Spanned<i64>>,
    server_header: Option<String>,
    udp_workers: Option<Spanned<i64>>,
    udp_mtu: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawRuntime {
    cache_dir: Option<String>,
    cache: Option<bool>,
    epoch_tick_ms: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_tcp_connections: Option<Spanned<i64>>,
    tcp_idle_timeout_s: Option<Spanned<i64>>,
    tcp_send_queue: Option<Spanned<i64>>,
    tcp_connect_timeout_ms: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTransaction {
    t1_ms: Option<Spanned<i64>>,
    t2_ms: Option<Spanned<i64>>,
    t4_ms: Option<Spanned<i64>>,
    fr_timer_ms: Option<Spanned<i64>>,
    fr_inv_timer_ms: Option<Spanned<i64>>,
    max_inv_lifetime_ms: Option<Spanned<i64>>,
    max_noninv_lifetime_ms: Option<Spanned<i64>>,
    wt_timer_ms: Option<Spanned<i64>>,
    timer_resolution_ms: Option<Spanned<i64>>,
    capacity: Option<Spanned<i64>>,
    auto_inv_100: Option<bool>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    name: Option<String>,
    transport: Spanned<String>,
    address: Spanned<String>,
    advertise: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModule {
    component: String,
    tenant: Option<String>,
    memory_mb: Option<Spanned<i64>>,
    timeout_ms: Option<Spanned<i64>>,
    max_instances: Option<Spanned<i64>>,
    #[serde(default)]
    http_allow: Vec<Spanned<String>>,
    #[serde(default)]
    files: BTreeMap<String, String>,
    #[serde(default)]
    params: toml::Table,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    name: String,
    tenant: Option<String>,
    mode: Option<Spanned<String>>,
    #[serde(default)]
    methods: Vec<String>,
    #[serde(default)]
    domains: Vec<String>,
    #[serde(default)]
    listeners: Vec<Spanned<String>>,
    in_dialog: Option<bool>,
    next_hop: Option<Spanned<toml::Value>>,
    record_route: Option<bool>,
    #[serde(default)]
    request: Vec<Spanned<RawChainEntry>>,
    #[serde(default)]
    reply: Vec<Spanned<RawChainEntry>>,
    #[serde(default)]
    failure: Vec<Spanned<RawChainEntry>>,
    #[serde(default)]
    branch_failure: Vec<Spanned<RawChainEntry>>,
    registrar: Option<Spanned<bool>>,
    lookup: Option<Spanned<bool>>,
    fr_timer_ms: Option<Spanned<i64>>,
    fr_inv_timer_ms: Option<Spanned<i64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawEvents {
    #[serde(default)]
    binding: Vec<Spanned<RawChainEntry>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChainEntry {
    module: String,
    on_error: Option<Spanned<String>>,
}

/// A module param value, as passed to the module's `init`.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    /// A string.
    Text(String),
    /// An integer.
    Integer(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Boolean(bool),
    /// An array of strings.
    TextList(Vec<String>),
    /// An array of integers.
    IntegerList(Vec<i64>),
}

// === Conversion ===

/// Default module memory limit, MiB.
const DEFAULT_MEMORY_MB: i64 = 16;
/// Default epoch tick, ms. The ticker thread wakes this often for as long as Weir runs:
/// at 1 ms it cost 1–2% of a core on an idle proxy (measured with bench/run), at 5 ms a
/// fifth of that, while a 10 ms module deadline still fires within 10–15 ms.
const DEFAULT_EPOCH_TICK_MS: i64 = 1_000;
/// Default module call deadline, ms.
/// A wall-clock budget: it must cover a thread descheduled on a loaded machine, not only
/// the module's own work (a normal call takes a few µs), or busy hosts turn into 500s.
const DEFAULT_TIMEOUT_MS: i64 = 50;
/// Default most instances per module.
const DEFAULT_MAX_INSTANCES: i64 = 64;
/// The tenant of routes and modules that name none.
pub(crate) const DEFAULT_TENANT: &str = "default";

struct Ctx<'a> {
    text: &'a str,
    file: &'a str,
}

impl Ctx<'_> {
    fn line_of(&self, span: &Range<usize>) -> usize {
        let end = span.start.min(self.text.len());
        self.text
            .as_bytes()
            .get(..end)
            .map_or(0, |b| b.iter().filter(|&&c| c == b'\n').count() + 1)
    }

    fn err(
        &self,
        span: &Range<usize>,
        key: impl Into<String>,
        message: impl Into<String>,
    ) -> Error {
        Error::Invalid {
            path: self.file.to_string(),
            line: self.line_of(span),
            key: key.into(),
            message: message.into(),
        }
    }

    /// An integer within `min..=max`.
    fn int(&self, v: &Spanned<i64>, key: &str, min: i64, max: i64) -> Result<i64> {
        let n = *v.get_ref();
        if n < min || n > max {
            return Err(self.err(
                &v.span(),
                key,
                format!("must be between {min} and {max}, got {n}"),
            ));
        }
        Ok(n)
    }

    fn opt_int(
        &self,
        v: &Option<Spanned<i64>>,
        key: &str,
        default: i64,
        min: i64,
        max: i64,
    ) -> Result<i64> {
        match v {
            Some(v) => self.int(v, key, min, max),
            None => Ok(default),
        }
    }
}

fn usize_of(n: i64) -> usize {
    usize::try_from(n).unwrap_or(0)
}

fn u64_of(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

pub(crate) fn parse(text: &str, base_dir: &Path, file: &str) -> Result<Config> {
    let ctx = Ctx { text, file };
    let de = toml::Deserializer::new(text);
    let raw: RawConfig = serde_path_to_error::deserialize(de).map_err(|e| {
        // Spanned<T> adds private path segments (`$__serde_spanned_private_value`).
        let key = e
            .path()
            .to_string()
            .split('.')
            .filter(|seg| !seg.starts_with("$__"))
            .collect::<Vec<_>>()
            .join(".");
        let inner = e.into_inner();
        let line = inner.span().map_or(0, |s| ctx.line_of(&s));
        Error::Invalid {
            path: file.to_string(),
            line,
            key: if key == "." {
                "(top level)".into()
            } else {
                key
            },
            message: inner.message().trim().to_string(),
        }
    })?;

    if *raw.version.get_ref() != 1 {
        return Err(ctx.err(
            &raw.version.span(),
            "version",
            format!(
                "unsupported config version {}; this Weir reads version 1",
                raw.version.get_ref()
            ),
        ));
    }

    let proxy = ProxySettings {
        aliases: raw
            .proxy
            .aliases
            .iter()
            .map(|a| a.to_ascii_lowercase())
            .collect(),
        max_message_size: usize_of(ctx.opt_int(
            &raw.proxy.max_message_size,
            "proxy.max_message_size",
            65_536,
            1_024,
            16 * 1024 * 1024,
        )?),
        server_header: raw
            .proxy
            .server_header
            .clone()
            .unwrap_or_else(|| format!("Weir {}", env!("CARGO_PKG_VERSION"))),
        udp_workers: usize_of(ctx.opt_int(
            &raw.proxy.udp_workers,
            "proxy.udp_workers",
            default_workers(),
            1,
            256,
        )?),
        udp_mtu: usize_of(ctx.opt_int(&raw.proxy.udp_mtu, "proxy.udp_mtu", 1_300, 0, 65_000)?),
    };

    let registrar = match &raw.registrar {
        Some(r) => {
            r.get_ref()
                .validate()
                .map_err(|e| ctx.err(&r.span(), "registrar", e.0))?;
            Some(r.get_ref().clone())
        }
        None => None,
    };
    let mut store = raw.store.clone().unwrap_or_default();
    if let Some(p) = &store.path {
        store.path = Some(resolve(base_dir, &p.to_string_lossy()));
    }
    if let Some(p) = &store.subscribers.file {
        store.subscribers.file = Some(resolve(base_dir, &p.to_string_lossy()));
    }

    let runtime = RuntimeSettings {
        cache_dir: match (raw.runtime.cache, &raw.runtime.cache_dir) {
            (Some(false), _) => None,
            (_, Some(dir)) => Some(resolve(base_dir, dir)),
            (_, None) => default_cache_dir(),
        },
        epoch_tick: Duration::from_millis(u64_of(ctx.opt_int(
            &raw.runtime.epoch_tick_ms,
            "runtime.epoch_tick_ms",
            DEFAULT_EPOCH_TICK_MS,
            1,
            1_000,
        )?)),
    };

    let limits = Limits {
        max_tcp_connections: usize_of(ctx.opt_int(
            &raw.limits.max_tcp_connections,
            "limits.max_tcp_connections",
            4_096,
            1,
            1_000_000,
        )?),
        tcp_idle_timeout: Duration::from_secs(u64_of(ctx.opt_int(
            &raw.limits.tcp_idle_timeout_s,
            "limits.tcp_idle_timeout_s",
            600,
            1,
            86_400,
        )?)),
        tcp_send_queue: usize_of(ctx.opt_int(
            &raw.limits.tcp_send_queue,
            "limits.tcp_send_queue",
            1_024,
            1,
            1_000_000,
        )?),
        tcp_connect_timeout: Duration::from_millis(u64_of(ctx.opt_int(
            &raw.limits.tcp_connect_timeout_ms,
            "limits.tcp_connect_timeout_ms",
            3_000,
            1,
            600_000,
        )?)),
    };

    let transaction = transaction(&ctx, &raw.transaction)?;
    let listeners = listeners(&ctx, &raw.listen)?;
    let modules = modules(&ctx, base_dir, &raw.modules)?;
    let routes = routes(&ctx, &raw.route, &listeners, &modules)?;
    // Bindings of every tenant's users: only the operator's (default tenant) modules.
    let events = Events {
        binding: chain(
            &ctx,
            "events.binding",
            &raw.events.binding,
            DEFAULT_TENANT,
            &modules,
        )?,
    };
    if let Some(first) = raw.events.binding.first() {
        if registrar.is_none() {
            return Err(ctx.err(
                &first.span(),
                "events.binding",
                "needs a [registrar] section",
            ));
        }
    }
    for (i, r) in raw.route.iter().enumerate() {
        for (name, flag) in [
            ("registrar", &r.get_ref().registrar),
            ("lookup", &r.get_ref().lookup),
        ] {
            if let Some(f) = flag.as_ref().filter(|f| *f.get_ref()) {
                if registrar.is_none() {
                    return Err(ctx.err(
                        &f.span(),
                        format!("route[{i}].{name}"),
                        "needs a [registrar] section",
                    ));
                }
            }
        }
    }

    Ok(Config {
        base_dir: base_dir.to_path_buf(),
        proxy,
        runtime,
        limits,
        transaction,
        listeners,
        modules,
        routes,
        registrar,
        store,
        events,
    })
}

/// Longest timer accepted, ms (one day).
const MAX_TIMER_MS: i64 = 86_400_000;

fn ms(v: i64) -> Duration {
    Duration::from_millis(u64_of(v))
}

fn transaction(ctx: &Ctx<'_>, t: &RawTransaction) -> Result<TransactionSettings> {
    let timer = |v: &Option<Spanned<i64>>, key: &str, default: i64| {
        ctx.opt_int(v, &format!("transaction.{key}"), default, 1, MAX_TIMER_MS)
            .map(ms)
    };
    let s = TransactionSettings {
        t1: timer(&t.t1_ms, "t1_ms", 500)?,
        t2: timer(&t.t2_ms, "t2_ms", 4_000)?,
        t4: timer(&t.t4_ms, "t4_ms", 5_000)?,
        fr_timer: timer(&t.fr_timer_ms, "fr_timer_ms", 30_000)?,
        fr_inv_timer: timer(&t.fr_inv_timer_ms, "fr_inv_timer_ms", 120_000)?,
        max_inv_lifetime: timer(&t.max_inv_lifetime_ms, "max_inv_lifetime_ms", 180_000)?,
        max_noninv_lifetime: timer(&t.max_noninv_lifetime_ms, "max_noninv_lifetime_ms", 32_000)?,
        wt_timer: timer(&t.wt_timer_ms, "wt_timer_ms", 5_000)?,
        timer_resolution: ms(ctx.opt_int(
            &t.timer_resolution_ms,
            "transaction.timer_resolution_ms",
            60,
            0,
            1_000,
        )?),
        capacity: usize_of(ctx.opt_int(
            &t.capacity,
            "transaction.capacity",
            200_000,
            1,
            10_000_000,
        )?),
        auto_inv_100: t.auto_inv_100.unwrap_or(true),
    };
    if s.t2 < s.t1 {
        let span = t.t2_ms.as_ref().map_or(0..0, Spanned::span);
        return Err(ctx.err(&span, "transaction.t2_ms", "must not be below t1_ms"));
    }
    Ok(s)
}

fn default_workers() -> i64 {
    std::thread::available_parallelism().map_or(2, |n| i64::try_from(n.get()).unwrap_or(2))
}

fn default_cache_dir() -> Option<PathBuf> {
    if let Some(x) = std::env::var_os("XDG_CACHE_HOME").filter(|x| !x.is_empty()) {
        return Some(PathBuf::from(x).join("weir"));
    }
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(|h| PathBuf::from(h).join(".cache").join("weir"))
}

fn resolve(base_dir: &Path, p: &str) -> PathBuf {
    let p = Path::new(p);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base_dir.join(p)
    }
}

fn listeners(ctx: &Ctx<'_>, raw: &[Spanned<RawListener>]) -> Result<Vec<Listener>> {
    let mut out: Vec<Listener> = Vec::with_capacity(raw.len());
    for (i, l) in raw.iter().enumerate() {
        let key = format!("listen[{i}]");
        let span = l.span();
        let l = l.get_ref();
        let transport = match l.transport.get_ref().to_ascii_lowercase().as_str() {
            "udp" => Transport::Udp,
            "tcp" => Transport::Tcp,
            other => {
                return Err(ctx.err(
                    &l.transport.span(),
                    format!("{key}.transport"),
                    format!("unknown transport {other:?}; expected \"udp\" or \"tcp\""),
                ))
            }
        };
        let address: SocketAddr = l.address.get_ref().parse().map_err(|_| {
            ctx.err(
                &l.address.span(),
                format!("{key}.address"),
                format!(
                    "{:?} is not an IP address with port (e.g. \"127.0.0.1:5060\" or \"[::1]:5060\")",
                    l.address.get_ref()
                ),
            )
        })?;
        let advertise = match &l.advertise {
            None => None,
            Some(a) => Some(parse_host_port(a.get_ref()).ok_or_else(|| {
                ctx.err(
                    &a.span(),
                    format!("{key}.advertise"),
                    "expected host or host:port",
                )
            })?),
        };
        let name = l
            .name
            .clone()
            .unwrap_or_else(|| format!("{transport}-{address}"));
        if out.iter().any(|o| o.name == name) {
            return Err(ctx.err(
                &span,
                format!("{key}.name"),
                format!("duplicate listener name {name:?}"),
            ));
        }
        if out
            .iter()
            .any(|o| o.address == address && o.transport == transport)
        {
            return Err(ctx.err(
                &span,
                format!("{key}.address"),
                format!("{transport} {address} is listed twice"),
            ));
        }
        out.push(Listener {
            name,
            transport,
            address,
            advertise,
        });
    }
    if out.is_empty() {
        return Err(Error::Invalid {
            path: ctx.file.to_string(),
            line: 0,
            key: "listen".into(),
            message: "at least one [[listen]] entry is required".into(),
        });
    }
    Ok(out)
}

fn parse_host_port(s: &str) -> Option<(String, Option<u16>)> {
    let s = s.trim();
    if s.is_empty() {
        return None;
    }
    if let Some(rest) = s.strip_prefix('[') {
        let (host, tail) = rest.split_once(']')?;
        let port = match tail.strip_prefix(':') {
            Some(p) => Some(p.parse().ok()?),
            None if tail.is_empty() => None,
            None => return None,
        };
        return Some((format!("[{host}]"), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => Some((h.to_string(), Some(p.parse().ok()?))),
        Some(_) => Some((format!("[{s}]"), None)),
        None => Some((s.to_string(), None)),
    }
}

fn modules(
    ctx: &Ctx<'_>,
    base_dir: &Path,
    raw: &BTreeMap<String, Spanned<RawModule>>,
) -> Result<BTreeMap<String, ModuleDef>> {
    let mut out = BTreeMap::new();
    for (name, m) in raw {
        let key = format!("modules.{name}");
        let span = m.span();
        let m = m.get_ref();
        if !valid_name(name) {
            return Err(ctx.err(&span, &key, "module names use letters, digits, '-' and '_'"));
        }
        let mut params = Vec::new();
        flatten_params(
            ctx,
            &span,
            &format!("{key}.params"),
            "",
            &m.params,
            &mut params,
        )?;
        let memory_mb = ctx.opt_int(
            &m.memory_mb,
            &format!("{key}.memory_mb"),
            DEFAULT_MEMORY_MB,
            1,
            4_096,
        )?;
        let timeout_ms = ctx.opt_int(
            &m.timeout_ms,
            &format!("{key}.timeout_ms"),
            DEFAULT_TIMEOUT_MS,
            1,
            60_000,
        )?;
        let max_instances = ctx.opt_int(
            &m.max_instances,
            &format!("{key}.max_instances"),
            DEFAULT_MAX_INSTANCES,
            1,
            4_096,
        )?;
        let mut http_allow = Vec::with_capacity(m.http_allow.len());
        for (i, p) in m.http_allow.iter().enumerate() {
            let prefix = p.get_ref();
            let ok = (prefix.starts_with("http://") || prefix.starts_with("https://"))
                && prefix.len() > "https://".len()
                && !prefix.chars().any(|c| c.is_whitespace() || c.is_control());
            if !ok {
                return Err(ctx.err(
                    &p.span(),
                    format!("{key}.http_allow[{i}]"),
                    "must be an http:// or https:// URL prefix (e.g. \"http://127.0.0.1:8080/push/\")",
                ));
            }
            http_allow.push(prefix.clone());
        }
        let mut files = Vec::with_capacity(m.files.len());
        for (grant, path) in &m.files {
            if !valid_name(grant) || path.is_empty() {
                return Err(ctx.err(
                    &span,
                    format!("{key}.files.{grant}"),
                    "file grants are name = \"path\" with a name of letters, digits, '-' and '_'",
                ));
            }
            files.push((grant.clone(), resolve(base_dir, path)));
        }
        out.insert(
            name.clone(),
            ModuleDef {
                name: name.clone(),
                http_allow,
                files,
                tenant: m
                    .tenant
                    .clone()
                    .unwrap_or_else(|| DEFAULT_TENANT.to_string()),
                component: resolve(base_dir, &m.component),
                params,
                memory_bytes: usize_of(memory_mb) * 1024 * 1024,
                timeout: Duration::from_millis(u64_of(timeout_ms)),
                max_instances: usize_of(max_instances),
            },
        );
    }
    Ok(out)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Nested tables become dotted keys; arrays must hold only strings or only integers.
fn flatten_params(
    ctx: &Ctx<'_>,
    span: &Range<usize>,
    key: &str,
    prefix: &str,
    table: &toml::Table,
    out: &mut Vec<(String, crate::ParamValue)>,
) -> Result<()> {
    use crate::ParamValue as P;
    for (k, v) in table {
        let full = if prefix.is_empty() {
            k.clone()
        } else {
            format!("{prefix}.{k}")
        };
        let value = match v {
            toml::Value::String(s) => P::Text(s.clone()),
            toml::Value::Integer(i) => P::Integer(*i),
            toml::Value::Float(f) => P::Float(*f),
            toml::Value::Boolean(b) => P::Boolean(*b),
            toml::Value::Datetime(d) => P::Text(d.to_string()),
            toml::Value::Table(t) => {
                flatten_params(ctx, span, key, &full, t, out)?;
                continue;
            }
            toml::Value::Array(items) => {
                if items.iter().all(toml::Value::is_str) {
                    P::TextList(
                        items
                            .iter()
                            .filter_map(|i| i.as_str().map(str::to_string))
                            .collect(),
                    )
                } else if items.iter().all(toml::Value::is_integer) {
                    P::IntegerList(items.iter().filter_map(toml::Value::as_integer).collect())
                } else {
                    return Err(ctx.err(
                        span,
                        format!("{key}.{full}"),
                        "arrays in module params must hold only strings or only integers",
                    ));
                }
            }
        };
        out.push((full, value));
    }
    Ok(())
}

fn routes(
    ctx: &Ctx<'_>,
    raw: &[Spanned<RawRoute>],
    listeners: &[Listener],
    modules: &BTreeMap<String, ModuleDef>,
) -> Result<Vec<Route>> {
    let mut out: Vec<Route> = Vec::with_capacity(raw.len());
    let mut names = BTreeSet::new();
    for (i, r) in raw.iter().enumerate() {
        let key = format!("route[{i}]");
        let span = r.span();
        let r = r.get_ref();
        if !names.insert(r.name.clone()) {
            return Err(ctx.err(
                &span,
                format!("{key}.name"),
                format!("duplicate route name {:?}", r.name),
            ));
        }
        let tenant = r
            .tenant
            .clone()
            .unwrap_or_else(|| DEFAULT_TENANT.to_string());
        let mode = match &r.mode {
            None => Mode::Stateless,
            Some(m) => match m.get_ref().as_str() {
                "stateless" => Mode::Stateless,
                "stateful" => Mode::Stateful,
                other => {
                    return Err(ctx.err(
                        &m.span(),
                        format!("{key}.mode"),
                        format!("unknown mode {other:?}; expected \"stateless\" or \"stateful\""),
                    ))
                }
            },
        };
        for l in &r.listeners {
            if !listeners.iter().any(|x| &x.name == l.get_ref()) {
                return Err(ctx.err(
                    &l.span(),
                    format!("{key}.listeners"),
                    format!("no listener is named {:?}", l.get_ref()),
                ));
            }
        }
        let next_hops = match &r.next_hop {
            None => Vec::new(),
            Some(h) => next_hop_groups(ctx, &format!("{key}.next_hop"), h)?,
        };
        if mode == Mode::Stateless && next_hops.iter().flatten().count() > 1 {
            let span = r.next_hop.as_ref().map_or(span.clone(), Spanned::span);
            return Err(ctx.err(
                &span,
                format!("{key}.next_hop"),
                "forking to several next hops needs mode = \"stateful\"",
            ));
        }
        let request = chain(ctx, &format!("{key}.request"), &r.request, &tenant, modules)?;
        let reply = chain(ctx, &format!("{key}.reply"), &r.reply, &tenant, modules)?;
        let failure = chain(ctx, &format!("{key}.failure"), &r.failure, &tenant, modules)?;
        let branch_failure = chain(
            ctx,
            &format!("{key}.branch_failure"),
            &r.branch_failure,
            &tenant,
            modules,
        )?;
        if mode == Mode::Stateless {
            for (name, entries) in [
                ("failure", &r.failure),
                ("branch_failure", &r.branch_failure),
            ] {
                if let Some(f) = entries.first() {
                    return Err(ctx.err(
                        &f.span(),
                        format!("{key}.{name}"),
                        format!("a {name} chain needs mode = \"stateful\""),
                    ));
                }
            }
        }
        let route_timer = |v: &Option<Spanned<i64>>, k: &str| -> Result<Option<Duration>> {
            v.as_ref()
                .map(|v| ctx.int(v, &format!("{key}.{k}"), 1, MAX_TIMER_MS).map(ms))
                .transpose()
        };
        let fr_timer = route_timer(&r.fr_timer_ms, "fr_timer_ms")?;
        let fr_inv_timer = route_timer(&r.fr_inv_timer_ms, "fr_inv_timer_ms")?;
        out.push(Route {
            name: r.name.clone(),
            tenant,
            mode,
            methods: r.methods.clone(),
            domains: r.domains.iter().map(|d| d.to_ascii_lowercase()).collect(),
            listeners: r.listeners.iter().map(|l| l.get_ref().clone()).collect(),
            in_dialog: r.in_dialog,
            next_hops,
            record_route: r.record_route.unwrap_or(true),
            request,
            reply,
            failure,
            branch_failure,
            registrar: r.registrar.as_ref().is_some_and(|f| *f.get_ref()),
            lookup: r.lookup.as_ref().is_some_and(|f| *f.get_ref()),
            fr_timer,
            fr_inv_timer,
        });
    }
    Ok(out)
}

/// `next_hop`: a URI, an array of URIs (one parallel group), or an array of arrays
/// (serial groups of parallel targets).
fn next_hop_groups(ctx: &Ctx<'_>, key: &str, v: &Spanned<toml::Value>) -> Result<Vec<Vec<String>>> {
    let span = v.span();
    let bad = |msg: String| ctx.err(&span, key, msg);
    let uri = |x: &toml::Value| -> Result<String> {
        let Some(s) = x.as_str() else {
            return Err(bad(format!("expected a SIP URI string, got {x}")));
        };
        let ok = weir_message::Uri::parse(s)
            .is_ok_and(|u| !matches!(u.scheme, weir_message::Scheme::Tel));
        if !ok {
            return Err(bad(format!(
                "{s:?} is not a SIP URI (e.g. \"sip:127.0.0.1:5070\")"
            )));
        }
        Ok(s.to_string())
    };
    let groups = match v.get_ref() {
        toml::Value::String(_) => vec![vec![uri(v.get_ref())?]],
        toml::Value::Array(items) if items.iter().all(toml::Value::is_str) => {
            vec![items.iter().map(uri).collect::<Result<Vec<_>>>()?]
        }
        toml::Value::Array(items) => items
            .iter()
            .map(|g| match g.as_array() {
                Some(g) if !g.is_empty() => g.iter().map(uri).collect::<Result<Vec<_>>>(),
                _ => Err(bad(
                    "expected a URI, an array of URIs, or an array of non-empty arrays of URIs"
                        .into(),
                )),
            })
            .collect::<Result<Vec<_>>>()?,
        other => return Err(bad(format!("expected a SIP URI or an array, got {other}"))),
    };
    if groups.iter().all(Vec::is_empty) {
        return Err(bad("no next hop given".into()));
    }
    Ok(groups)
}

/// Longest module chain a route may have.
const MAX_CHAIN: usize = 32;

fn chain(
    ctx: &Ctx<'_>,
    key: &str,
    raw: &[Spanned<RawChainEntry>],
    tenant: &str,
    modules: &BTreeMap<String, ModuleDef>,
) -> Result<Vec<ChainEntry>> {
    if raw.len() > MAX_CHAIN {
        let span = raw.first().map(Spanned::span).unwrap_or(0..0);
        return Err(ctx.err(
            &span,
            key,
            format!("a chain holds at most {MAX_CHAIN} modules"),
        ));
    }
    let mut out = Vec::with_capacity(raw.len());
    for (j, e) in raw.iter().enumerate() {
        let ekey = format!("{key}[{j}]");
        let span = e.span();
        let e = e.get_ref();
        let Some(def) = modules.get(&e.module) else {
            return Err(ctx.err(
                &span,
                format!("{ekey}.module"),
                format!(
                    "no module is named {:?} (define it under [modules.{}])",
                    e.module, e.module
                ),
            ));
        };
        if def.tenant != tenant {
            return Err(ctx.err(
                &span,
                format!("{ekey}.module"),
                format!(
                    "module {:?} belongs to tenant {:?}, not to this route's tenant {:?}",
                    e.module, def.tenant, tenant
                ),
            ));
        }
        let on_error = match &e.on_error {
            None => OnError::Reply(500),
            Some(s) => parse_on_error(s.get_ref()).ok_or_else(|| {
                ctx.err(
                    &s.span(),
                    format!("{ekey}.on_error"),
                    format!(
                        "unknown policy {:?}; expected \"reply-<code>\" (e.g. \"reply-500\"), \"skip\" or \"drop\"",
                        s.get_ref()
                    ),
                )
            })?,
        };
        out.push(ChainEntry {
            module: e.module.clone(),
            on_error,
        });
    }
    Ok(out)
}

fn parse_on_error(s: &str) -> Option<OnError> {
    match s {
        "skip" => Some(OnError::Skip),
        "drop" => Some(OnError::Drop),
        _ => {
            let code: u16 = s.strip_prefix("reply-")?.parse().ok()?;
            (300..=699).contains(&code).then_some(OnError::Reply(code))
        }
    }
}
