//! Weir's configuration: TOML text in, validated domain types out.
//!
//! This crate owns the config file format (`version = 1`): listeners, modules (component
//! path, params, limits), and routes (match, mode, request and reply chains). Unknown keys
//! are errors, and every error names the key path and the line it was found on. It never
//! opens sockets, loads components or touches the network; callers turn the validated
//! [`Config`] into running parts.
//!
//! ```
//! let text = r#"
//! version = 1
//! [[listen]]
//! transport = "udp"
//! address = "127.0.0.1:5060"
//! [[route]]
//! name = "all"
//! next_hop = "sip:127.0.0.1:5070"
//! "#;
//! let cfg = weir_config::Config::parse(text, std::path::Path::new("/etc/weir")).unwrap();
//! assert_eq!(cfg.routes[0].name, "all");
//! assert_eq!(cfg.listeners[0].name, "udp-127.0.0.1:5060");
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod raw;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use raw::ParamValue;

// === Errors ===

/// A config error: what is wrong, at which key path, on which line.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The IO error.
        #[source]
        source: std::io::Error,
    },
    /// The text is not valid TOML or does not fit the schema.
    #[error("{path}: line {line}: {key}: {message}")]
    Invalid {
        /// The file (or `<text>`).
        path: String,
        /// 1-based line number (0 when unknown).
        line: usize,
        /// Dotted key path, e.g. `route[0].request[1].module`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

// === Domain types ===

/// A validated Weir configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Directory the config was loaded from; relative paths are resolved against it.
    pub base_dir: PathBuf,
    /// Proxy-wide settings.
    pub proxy: ProxySettings,
    /// Wasm runtime settings.
    pub runtime: RuntimeSettings,
    /// Resource bounds.
    pub limits: Limits,
    /// Transaction layer settings (stateful routes).
    pub transaction: TransactionSettings,
    /// Sockets to listen on, in file order.
    pub listeners: Vec<Listener>,
    /// Modules by name.
    pub modules: BTreeMap<String, ModuleDef>,
    /// Routes in file order; the first that matches a request handles it.
    pub routes: Vec<Route>,
    /// The registrar and location service (`[registrar]`), if enabled.
    pub registrar: Option<weir_registrar::Config>,
    /// The state stores (`[store]`; default: embedded, in memory only), with paths
    /// resolved against `base_dir`.
    pub store: weir_store::Config,
    /// Modules that hear of events (`[events]`).
    pub events: Events,
}

/// Modules that hear of events (`[events]`).
#[derive(Debug, Clone, Default)]
pub struct Events {
    /// Called (`on-binding`) for each registrar binding added, refreshed, removed or
    /// expired. Modules of the default tenant only.
    pub binding: Vec<ChainEntry>,
}

/// Proxy-wide settings (`[proxy]`).
#[derive(Debug, Clone)]
pub struct ProxySettings {
    /// Extra host names that mean "this proxy" (besides listener addresses).
    pub aliases: Vec<String>,
    /// Largest message accepted, in bytes.
    pub max_message_size: usize,
    /// Value of the Server/User-Agent header on locally generated replies.
    pub server_header: String,
    /// Threads receiving on each UDP listener.
    pub udp_workers: usize,
    /// Requests larger than this that would leave by UDP go by TCP when a TCP listener
    /// of the same address family exists (RFC 3261 §18.1.1).
    pub udp_mtu: usize,
}

/// Wasm runtime settings (`[runtime]`).
#[derive(Debug, Clone)]
pub struct RuntimeSettings {
    /// Where compiled modules are cached; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    /// Granularity of module call deadlines.
    pub epoch_tick: Duration,
}

/// Resource bounds (`[limits]`).
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most TCP connections open at once (inbound and outbound together).
    pub max_tcp_connections: usize,
    /// A TCP connection with no traffic for this long is closed.
    pub tcp_idle_timeout: Duration,
    /// Messages queued for sending on one TCP connection before new ones are dropped.
    pub tcp_send_queue: usize,
    /// Time allowed to establish an outbound TCP connection.
    pub tcp_connect_timeout: Duration,
}

/// Transaction layer settings (`[transaction]`), Kamailio `tm` defaults.
#[derive(Debug, Clone)]
pub struct TransactionSettings {
    /// RFC 3261 T1: first retransmission interval.
    pub t1: Duration,
    /// RFC 3261 T2: retransmission interval cap.
    pub t2: Duration,
    /// RFC 3261 T4: how long a message may stay in the network.
    pub t4: Duration,
    /// Kamailio `fr_timer`: a branch's wait for its first reply (non-INVITE: its final).
    pub fr_timer: Duration,
    /// Kamailio `fr_inv_timer`: an INVITE branch's wait for a final once it rang.
    pub fr_inv_timer: Duration,
    /// Longest life of an INVITE transaction.
    pub max_inv_lifetime: Duration,
    /// Longest life of a non-INVITE transaction.
    pub max_noninv_lifetime: Duration,
    /// Kamailio `wt_timer`: how long a completed transaction absorbs late messages.
    pub wt_timer: Duration,
    /// Step of the timer grid: timers fire up to this late, in batches (0: exact).
    pub timer_resolution: Duration,
    /// Most transactions alive at once; beyond, new requests get 503.
    pub capacity: usize,
    /// Send `100 Trying` upstream when relaying an INVITE.
    pub auto_inv_100: bool,
}

/// A transport protocol a listener speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// SIP over UDP.
    Udp,
    /// SIP over TCP.
    Tcp,
}

impl Transport {
    /// The lowercase name, as in configs and Via parameters (`udp`, `tcp`).
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
        }
    }
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One listening socket (`[[listen]]`).
#[derive(Debug, Clone)]
pub struct Listener {
    /// Name routes use to refer to it (default `<transport>-<address>`).
    pub name: String,
    /// Protocol.
    pub transport: Transport,
    /// Address to bind.
    pub address: SocketAddr,
    /// Host (and optional port) to put in Via and Record-Route instead of the bound address.
    pub advertise: Option<(String, Option<u16>)>,
}

/// A module (`[modules.<name>]`).
#[derive(Debug, Clone)]
pub struct ModuleDef {
    /// Its name.
    pub name: String,
    /// Tenant it belongs to; only routes of the same tenant may use it.
    pub tenant: String,
    /// Path of the component (`.wasm`), resolved against the config's directory.
    pub component: PathBuf,
    /// Params passed to the module's `init`, flattened to dotted keys.
    pub params: Vec<(String, ParamValue)>,
    /// Linear memory limit per instance, bytes.
    pub memory_bytes: usize,
    /// Deadline for one call.
    pub timeout: Duration,
    /// Most instances alive at once.
    pub max_instances: usize,
    /// URL prefixes the module may reach with the `http` capability (`http_allow`);
    /// empty: none.
    pub http_allow: Vec<String>,
    /// Files the module may read (`files = { name = "path" }`), paths resolved against
    /// the config's directory.
    pub files: Vec<(String, PathBuf)>,
}

/// How a route handles requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// RFC 3261 §16.11 stateless forwarding.
    Stateless,
    /// Transaction-stateful proxying (RFC 3261 §16, §17; Kamailio `tm`).
    Stateful,
}

/// A route (`[[route]]`).
#[derive(Debug, Clone)]
pub struct Route {
    /// Its name.
    pub name: String,
    /// Tenant the route belongs to.
    pub tenant: String,
    /// Stateless (only mode so far).
    pub mode: Mode,
    /// Methods it matches (empty: all). Compared case-sensitively, as SIP methods are.
    pub methods: Vec<String>,
    /// Request-URI hosts it matches, lowercase (empty: all).
    pub domains: Vec<String>,
    /// Listener names it matches (empty: all).
    pub listeners: Vec<String>,
    /// `Some(true)`: only requests with a To tag (in-dialog, Kamailio's `has_totag()`);
    /// `Some(false)`: only requests without one (initial); `None`: both.
    pub in_dialog: Option<bool>,
    /// Where requests go when the chain continues and no Route header says otherwise:
    /// groups tried in order (serial forking), the targets of a group in parallel.
    /// Empty: by the request URI. A stateless route has at most one target.
    pub next_hops: Vec<Vec<String>>,
    /// Insert Record-Route on dialog-forming requests.
    pub record_route: bool,
    /// Modules run on each request, in order.
    pub request: Vec<ChainEntry>,
    /// Modules run on each reply, in order.
    pub reply: Vec<ChainEntry>,
    /// Modules run (stateful routes) when every branch failed: they may reply, forward
    /// to new targets (serial forking, failover) or `continue` to relay the best reply.
    pub failure: Vec<ChainEntry>,
    /// Modules run (stateful routes) for each branch that ended without success, on
    /// the request as sent on that branch (Kamailio's `tm:branch-failure`).
    pub branch_failure: Vec<ChainEntry>,
    /// REGISTER requests the request chain lets through are saved by the registrar
    /// and answered here (Kamailio `save("location")`).
    pub registrar: bool,
    /// Initial requests the request chain lets through go to the request URI's
    /// registered contacts (Kamailio `lookup("location")`); 404/480 when there are none.
    pub lookup: bool,
    /// Per-route `fr_timer` override (stateful routes).
    pub fr_timer: Option<Duration>,
    /// Per-route `fr_inv_timer` override (stateful routes).
    pub fr_inv_timer: Option<Duration>,
}

/// One module in a chain.
#[derive(Debug, Clone)]
pub struct ChainEntry {
    /// Module name.
    pub module: String,
    /// What happens when the module fails (trap, timeout, memory, error).
    pub on_error: OnError,
}

/// Failure policy of a chain entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    /// Answer the request with this status (500 by default); replies are dropped.
    Reply(u16),
    /// Carry on with the next module as if this one said `continue`.
    Skip,
    /// Discard the message.
    Drop,
}

// === Loading ===

impl Config {
    /// Read and validate a config file.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|source| Error::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        raw::parse(&text, &base, &path.display().to_string())
    }

    /// Validate config text; relative paths resolve against `base_dir`.
    pub fn parse(text: &str, base_dir: &Path) -> Result<Config> {
        raw::parse(text, base_dir, "<text>")
    }

    /// Route by name.
    pub fn route(&self, name: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.name == name)
    }
}

#[cfg(test)]
mod tests;
