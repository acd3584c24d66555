//! The Weir module: params, the request chain (`ds_select_dst` / `ds_select_domain`),
//! the failure chain (`ds_next_dst` + `ds_mark_dst`) and OPTIONS probing
//! (`ds_ping_interval`).
//!
//! Shared state lives in the host's kv store, so every instance sees the same:
//! * `h:<uri>`: the state of a destination ([`DestHealth::encode`]); absent means the
//!   list file's flags;
//! * `hgen`: bumped (atomic `incr`) after every write of an `h:` key, so that an
//!   instance reads one key per request, and the states only when some changed;
//! * `rr:<set>` / `rw:<set>`: the round-robin cursor resp. the weight-table position of
//!   a set (atomic `incr`);
//! * `list` / `list_version`: the last list text that parsed (when it fits a kv value),
//!   so that an instance started while the file is being rewritten still has a list;
//! * `lc:<call-id>`, `ld:<duid>:<bucket>`, `li:<duid>:<bucket>`: the call loads of
//!   algorithm 10 ([`crate::load`]).
//!
//! Per instance: the parsed list and the file version it came from, and the states of
//! the selection set as of a `hgen` value.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use serde::Deserialize;
use weir_sdk::{
    clock, files, kv, log, requests, Error, Event, Hook, Message, Module, SipResponse, Verdict,
};

use crate::algo::{self, HashInputs, Latency, SeededRng, SelectParams, Selection};
use crate::health::{self, DestHealth, ProbeConfig, ReplyCodes};
use crate::list::{is_usable, Dest, DestList, DestSet, FLAG_DISABLED};
use crate::load::Loads;

/// The per-transaction variable holding the failover list: the URI in use first, then
/// the alternatives, separated by spaces (Kamailio's `_dsdst_` XAVP).
pub const VAR: &str = "ds";
/// The timer that drives the probes.
pub const PING_TIMER: &str = "ping";
/// Longest list text mirrored into the kv store (the store's default value bound is
/// 64 KiB).
const KV_LIST_MAX: usize = 60_000;
/// The kv key bumped after every destination state write (see the module doc).
pub const HEALTH_GEN: &str = "hgen";

// === Config ===

/// How the chosen destination is used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DispatchMode {
    /// `ds_select_dst`: send the request to the destination, R-URI unchanged (`$du`).
    #[default]
    Dst,
    /// `ds_select_domain`: rewrite the R-URI's host:port to the destination's, then
    /// send it there.
    Domain,
}

/// The module's params (see README.md for each one).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Grant name of the list file (`files = { list = "dispatcher.list" }`).
    #[serde(default = "default_list")]
    pub list: String,
    /// The destination set used for selection.
    #[serde(default = "default_set")]
    pub set: u32,
    /// Selection algorithm, Kamailio's numbers (default 4, round robin).
    #[serde(default = "default_alg")]
    pub alg: u32,
    /// Most destinations in the failover list (0: all).
    #[serde(default)]
    pub limit: u32,
    /// Kamailio's `flags` modparam: 1 hash the URI user only, 2 failover list.
    #[serde(default = "default_flags")]
    pub flags: u32,
    /// The last destination of the set is only a fallback (`ds_use_default`).
    #[serde(default)]
    pub use_default: bool,
    /// Algorithm 7: the header whose value is hashed (Kamailio's `hash_pvar`).
    #[serde(default)]
    pub hash_header: String,
    /// Seconds between probe rounds (`ds_ping_interval`); 0 = no probing.
    #[serde(default)]
    pub ping_interval: u64,
    /// Probe method (`ds_ping_method`).
    #[serde(default = "default_ping_method")]
    pub ping_method: String,
    /// Probe From URI (`ds_ping_from`).
    #[serde(default = "default_ping_from")]
    pub ping_from: String,
    /// A probe without a final reply after this long counts as 408.
    #[serde(default = "default_ping_timeout")]
    pub ping_timeout_ms: u64,
    /// Failed probes before a destination goes inactive (`ds_probing_threshold`).
    #[serde(default = "default_one")]
    pub probing_threshold: u32,
    /// Successful probes before an inactive destination comes back
    /// (`ds_inactive_threshold`).
    #[serde(default = "default_one")]
    pub inactive_threshold: u32,
    /// Extra probe replies counting as success (`ds_ping_reply_codes`,
    /// `code=404;class=4`); 2xx always does.
    #[serde(default)]
    pub ping_reply_codes: String,
    /// `ds_probing_mode` (0..=3).
    #[serde(default)]
    pub probing_mode: u8,
    /// Failure statuses that fail over to the next destination: codes ("408") and
    /// classes ("5xx").
    #[serde(default = "default_failover_on")]
    pub failover_on: Vec<String>,
    /// Mark a destination inactive+probing at once when its leg failed with 408 or 5xx.
    #[serde(default = "default_true")]
    pub mark_on_failure: bool,
    /// Reply when no destination is usable at selection.
    #[serde(default = "default_no_destination")]
    pub no_destination_code: u16,
    /// Reply when failover has no destination left.
    #[serde(default = "default_exhausted")]
    pub exhausted_code: u16,
    /// `"dst"` (keep the R-URI) or `"domain"` (rewrite its host:port).
    #[serde(default)]
    pub mode: DispatchMode,
    /// Algorithm 10: seconds a call counts at most (`ds_hash_expire`).
    #[serde(default = "default_hash_expire")]
    pub hash_expire: u64,
    /// Algorithm 10: seconds a call not confirmed by a 2xx counts at most
    /// (`ds_hash_initexpire`).
    #[serde(default = "default_hash_expire")]
    pub hash_initexpire: u64,
}

fn default_list() -> String {
    "list".into()
}
fn default_set() -> u32 {
    1
}
fn default_alg() -> u32 {
    algo::ALG_ROUND_ROBIN
}
fn default_flags() -> u32 {
    algo::FLAG_FAILOVER
}
fn default_ping_method() -> String {
    "OPTIONS".into()
}
fn default_ping_from() -> String {
    "sip:dispatcher@localhost".into()
}
fn default_ping_timeout() -> u64 {
    2000
}
fn default_one() -> u32 {
    1
}
fn default_failover_on() -> Vec<String> {
    vec!["5xx".into(), "408".into()]
}
fn default_true() -> bool {
    true
}
fn default_no_destination() -> u16 {
    404
}
fn default_exhausted() -> u16 {
    503
}
fn default_hash_expire() -> u64 {
    7200
}

/// A code (`408`) or a class (`5xx`) of `failover_on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusMatch {
    Code(u16),
    Class(u16),
}

impl StatusMatch {
    fn parse(s: &str) -> Option<StatusMatch> {
        let s = s.trim();
        let b = s.as_bytes();
        if b.len() != 3 {
            return None;
        }
        if b[1..].eq_ignore_ascii_case(b"xx") {
            let c = u16::from(b[0].wrapping_sub(b'0'));
            return (1..=6).contains(&c).then_some(StatusMatch::Class(c));
        }
        let code: u16 = s.parse().ok()?;
        (100..=699)
            .contains(&code)
            .then_some(StatusMatch::Code(code))
    }

    fn matches(self, status: u16) -> bool {
        match self {
            StatusMatch::Code(c) => c == status,
            StatusMatch::Class(c) => status / 100 == c,
        }
    }
}

/// Algorithms this module runs.
const SUPPORTED_ALGS: &[u32] = &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 64];
/// Longest `hash_expire` / `hash_initexpire` (30 days).
const MAX_HASH_EXPIRE: u64 = 30 * 86_400;

// === Module ===

/// The list as this instance last loaded it.
#[derive(Debug, Default)]
struct Loaded {
    /// File version of `list` (0: from the kv mirror or nothing yet).
    version: u64,
    list: Rc<DestList>,
    /// A version that failed to parse (not retried until the file changes again).
    failed: Option<u64>,
}

/// The states of the selection set's destinations, as read when `hgen` was `gen`.
#[derive(Debug)]
struct StateCache {
    gen: i64,
    /// The list they were read for (a reload starts over).
    list: Rc<DestList>,
    states: Rc<[u32]>,
}

/// The dispatcher module.
#[derive(Debug)]
pub struct Dispatcher {
    grant: String,
    set: u32,
    alg: u32,
    limit: u32,
    ds_flags: u32,
    use_default: bool,
    hash_header: String,
    ping_method: String,
    ping_from: String,
    ping_timeout: Duration,
    probe: ProbeConfig,
    failover_on: Vec<StatusMatch>,
    mark_on_failure: bool,
    no_destination_code: u16,
    exhausted_code: u16,
    mode: DispatchMode,
    /// Algorithm 10's call loads.
    loads: Option<Loads>,
    /// The shared cursor of the algorithm: `rr:<set>` (round robin position) or
    /// `rw:<set>` (weight-table position); `None` when it has none.
    counter: Option<String>,
    loaded: RefCell<Loaded>,
    /// The selection set's states, valid while `hgen` does not move.
    states: RefCell<Option<StateCache>>,
}

fn check_code(name: &str, code: u16) -> Result<(), Error> {
    if (300..=699).contains(&code) {
        Ok(())
    } else {
        Err(Error::new(format!("{name} must be 300 to 699, not {code}")))
    }
}

impl Module for Dispatcher {
    type Config = Config;

    fn init(cfg: Config) -> Result<Self, Error> {
        if !SUPPORTED_ALGS.contains(&cfg.alg) {
            return Err(Error::new(format!(
                "alg {} is not supported (supported: 0-15, 64)",
                cfg.alg
            )));
        }
        if cfg.alg == algo::ALG_HASH_PV && cfg.hash_header.trim().is_empty() {
            return Err(Error::new("alg 7 needs hash_header (the header to hash)"));
        }
        if cfg.probing_mode > health::PROBE_ONLY_FLAGGED {
            return Err(Error::new(format!(
                "probing_mode must be 0 to 3, not {}",
                cfg.probing_mode
            )));
        }
        if cfg.probing_threshold == 0 || cfg.inactive_threshold == 0 {
            return Err(Error::new(
                "probing_threshold and inactive_threshold must be at least 1",
            ));
        }
        if !(100..=32_000).contains(&cfg.ping_timeout_ms) {
            return Err(Error::new(format!(
                "ping_timeout_ms must be 100 to 32000, not {}",
                cfg.ping_timeout_ms
            )));
        }
        if cfg.ping_interval > 86_400 {
            return Err(Error::new("ping_interval must be at most 86400 (s)"));
        }
        let method = cfg.ping_method.trim().to_string();
        if method.is_empty()
            || !method
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
            || ["INVITE", "ACK", "CANCEL"].contains(&method.as_str())
        {
            return Err(Error::new(format!(
                "ping_method {:?} cannot be sent (a method token other than INVITE, ACK, CANCEL)",
                cfg.ping_method
            )));
        }
        if crate::hash::SipUri::parse(&cfg.ping_from).is_none() {
            return Err(Error::new(format!(
                "ping_from {:?} is not a sip:/sips: URI",
                cfg.ping_from
            )));
        }
        let mut failover_on = Vec::with_capacity(cfg.failover_on.len());
        for s in &cfg.failover_on {
            failover_on.push(StatusMatch::parse(s).ok_or_else(|| {
                Error::new(format!(
                    "failover_on: {s:?} is neither a status code (\"408\") nor a class (\"5xx\")"
                ))
            })?);
        }
        check_code("no_destination_code", cfg.no_destination_code)?;
        check_code("exhausted_code", cfg.exhausted_code)?;
        for (name, v) in [
            ("hash_expire", cfg.hash_expire),
            ("hash_initexpire", cfg.hash_initexpire),
        ] {
            if !(1..=MAX_HASH_EXPIRE).contains(&v) {
                return Err(Error::new(format!(
                    "{name} must be 1 to {MAX_HASH_EXPIRE} (s), not {v}"
                )));
            }
        }

        let module = Dispatcher {
            grant: cfg.list,
            set: cfg.set,
            alg: cfg.alg,
            limit: cfg.limit,
            ds_flags: cfg.flags,
            use_default: cfg.use_default,
            hash_header: cfg.hash_header.trim().to_string(),
            ping_method: method,
            ping_from: cfg.ping_from,
            ping_timeout: Duration::from_millis(cfg.ping_timeout_ms),
            probe: ProbeConfig {
                probing_threshold: cfg.probing_threshold,
                inactive_threshold: cfg.inactive_threshold,
                mode: cfg.probing_mode,
                reply_codes: ReplyCodes::parse(&cfg.ping_reply_codes),
            },
            failover_on,
            mark_on_failure: cfg.mark_on_failure,
            no_destination_code: cfg.no_destination_code,
            exhausted_code: cfg.exhausted_code,
            mode: cfg.mode,
            loads: (cfg.alg == algo::ALG_CALL_LOAD)
                .then(|| Loads::new(cfg.hash_expire, cfg.hash_initexpire)),
            counter: match cfg.alg {
                algo::ALG_ROUND_ROBIN
                | algo::ALG_HASH_AUTH_USER
                | algo::ALG_LATENCY
                | algo::ALG_RR_SERIAL
                | algo::ALG_OVERLOAD => Some(format!("rr:{}", cfg.set)),
                algo::ALG_WEIGHT | algo::ALG_REL_WEIGHT | algo::ALG_PRIORITY_WEIGHT => {
                    Some(format!("rw:{}", cfg.set))
                }
                _ => None,
            },
            loaded: RefCell::new(Loaded::default()),
            states: RefCell::new(None),
        };
        module.initial_load()?;
        if module.loads.is_some() {
            let list = module.list();
            if let Some(set) = list.set(module.set) {
                for d in set.dests.iter().filter(|d| duid(d).is_none()) {
                    log::warn!(
                        "dispatcher: {} has no duid attribute: alg 10 cannot count its calls",
                        d.uri
                    );
                }
            }
        }
        if cfg.ping_interval > 0 {
            weir_sdk::timers::every(PING_TIMER, Duration::from_secs(cfg.ping_interval))?;
        }
        Ok(module)
    }

    fn on_request(&self, msg: &mut Message) -> Result<Verdict, Error> {
        match msg.hook() {
            Hook::Request => self.select(msg),
            Hook::Failure => self.next(msg),
            _ => Ok(Verdict::Continue),
        }
    }

    fn on_reply(&self, msg: &mut Message) -> Result<Verdict, Error> {
        // ds_load_update on a reply: a 2xx to the INVITE confirms the call.
        if let Some(loads) = self.loads.filter(Loads::needs_confirm) {
            if (200..300).contains(&msg.status()) && cseq_method(msg).as_deref() == Some("INVITE") {
                let call_id = msg.header("Call-ID").unwrap_or_default();
                if let Err(e) = loads.confirm(&call_id, clock::now_ms()) {
                    log::warn!("dispatcher: cannot confirm the load of {call_id}: {e}");
                }
            }
        }
        Ok(Verdict::Continue)
    }

    fn on_event(&self, event: &Event) -> Result<(), Error> {
        match event {
            Event::Timer(name) if name == PING_TIMER => self.ping(),
            Event::Response(r) => {
                self.probe_result(r);
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

// === List ===

impl Dispatcher {
    /// The first load, in `init`: the file must parse (so `weir check` reports a bad
    /// list), unless an earlier instance mirrored a good list into kv (then this
    /// instance starts with that one and logs the error).
    fn initial_load(&self) -> Result<(), Error> {
        let file = files::read(&self.grant).map_err(|e| {
            Error::new(format!(
                "list file {:?}: {e} (grant it in the module's `files` table)",
                self.grant
            ))
        })?;
        let text = String::from_utf8_lossy(&file.content);
        match DestList::parse(&text) {
            Ok(list) => {
                if list.set(self.set).is_none() {
                    return Err(Error::new(format!(
                        "set {} is not in the list file {:?}",
                        self.set, self.grant
                    )));
                }
                self.mirror(&text, file.version);
                *self.loaded.borrow_mut() = Loaded {
                    version: file.version,
                    list: Rc::new(list),
                    failed: None,
                };
                Ok(())
            }
            Err(e) => {
                let mirrored = kv::get_string("list")
                    .ok()
                    .flatten()
                    .and_then(|t| DestList::parse(&t).ok());
                let Some(list) = mirrored else {
                    return Err(Error::new(e.to_string()));
                };
                log::error!(
                    "dispatcher: {} (version {}): {e}; using the last good list",
                    self.grant,
                    file.version
                );
                *self.loaded.borrow_mut() = Loaded {
                    version: 0,
                    list: Rc::new(list),
                    failed: Some(file.version),
                };
                Ok(())
            }
        }
    }

    /// Keep the last good list text in kv for instances started later.
    fn mirror(&self, text: &str, version: u64) {
        if text.len() > KV_LIST_MAX {
            return;
        }
        let v = version.to_string();
        if kv::get_string("list_version").ok().flatten().as_deref() == Some(v.as_str()) {
            return;
        }
        if kv::set("list", text, None).is_ok() {
            let _ = kv::set("list_version", v, None);
        }
    }

    /// The current list: reloaded when the file's version changed; a list that does
    /// not parse is logged and the previous one kept.
    fn list(&self) -> Rc<DestList> {
        let version = files::version(&self.grant);
        {
            let l = self.loaded.borrow();
            if version.is_none() || version == Some(l.version) || version == l.failed {
                return Rc::clone(&l.list);
            }
        }
        let file = match files::read(&self.grant) {
            Ok(f) => f,
            Err(e) => {
                log::error!("dispatcher: cannot read {}: {e}", self.grant);
                return Rc::clone(&self.loaded.borrow().list);
            }
        };
        let text = String::from_utf8_lossy(&file.content);
        let mut l = self.loaded.borrow_mut();
        match DestList::parse(&text) {
            Ok(list) => {
                if list.set(self.set).is_none() {
                    log::warn!(
                        "dispatcher: {} (version {}) has no set {}",
                        self.grant,
                        file.version,
                        self.set
                    );
                }
                log::debug!(
                    "dispatcher: loaded {} version {} ({} destinations)",
                    self.grant,
                    file.version,
                    list.len()
                );
                l.version = file.version;
                l.list = Rc::new(list);
                l.failed = None;
                drop(l);
                self.mirror(&text, file.version);
                Rc::clone(&self.loaded.borrow().list)
            }
            Err(e) => {
                log::error!(
                    "dispatcher: {} (version {}): {e}; keeping the previous list",
                    self.grant,
                    file.version
                );
                l.failed = Some(file.version);
                Rc::clone(&l.list)
            }
        }
    }
}

/// Every destination of every set, each URI once (case-insensitive), in list order.
fn unique_dests(list: &DestList) -> Vec<&Dest> {
    let mut out: Vec<&Dest> = Vec::new();
    for d in list.sets.iter().flat_map(|s| s.dests.iter()) {
        if !out.iter().any(|o| o.uri.eq_ignore_ascii_case(&d.uri)) {
            out.push(d);
        }
    }
    out
}

fn find_dest<'a>(list: &'a DestList, uri: &str) -> Option<&'a Dest> {
    list.sets
        .iter()
        .flat_map(|s| s.dests.iter())
        .find(|d| d.uri.eq_ignore_ascii_case(uri))
}

// === Health ===

fn health_key(uri: &str) -> String {
    format!("h:{uri}")
}

/// The shared state of `d`; the file's flags when none was stored (or the store
/// fails). A destination disabled in the file stays disabled.
fn health_of(d: &Dest) -> DestHealth {
    if d.flags & FLAG_DISABLED != 0 {
        return DestHealth::new(d.flags);
    }
    match kv::get_string(&health_key(&d.uri)) {
        Ok(Some(s)) => DestHealth::decode(&s).unwrap_or(DestHealth::new(d.flags)),
        Ok(None) => DestHealth::new(d.flags),
        Err(e) => {
            log::debug!("dispatcher: state of {}: {e}", d.uri);
            DestHealth::new(d.flags)
        }
    }
}

/// Store the state of `uri`, then bump `hgen` so that every instance reads the states
/// again (in this order: an instance that reads `hgen` before the bump reads the states
/// again on its next request).
fn store_health(uri: &str, h: &DestHealth) {
    if let Err(e) = kv::set(&health_key(uri), h.encode(), None) {
        log::warn!("dispatcher: cannot store the state of {uri}: {e}");
    }
    if let Err(e) = kv::incr(HEALTH_GEN, 1, None) {
        log::warn!("dispatcher: cannot bump {HEALTH_GEN}: {e}");
    }
}

/// The current `hgen` (0 when absent); `None` when it cannot be read. Read with an
/// `incr` by 0: an integer comes back, where a `get` copies bytes into the guest to
/// be parsed (about half the instructions of the host call).
fn health_gen() -> Option<i64> {
    match kv::incr(HEALTH_GEN, 0, None) {
        Ok(g) => Some(g),
        Err(e) => {
            log::debug!("dispatcher: {HEALTH_GEN}: {e}");
            None
        }
    }
}

fn state_words(flags: u32) -> &'static str {
    if flags & FLAG_DISABLED != 0 {
        "disabled"
    } else if flags & crate::list::FLAG_INACTIVE != 0 {
        "inactive"
    } else if flags & crate::list::FLAG_TRYING != 0 {
        "trying"
    } else {
        "active"
    }
}

fn log_update(uri: &str, u: &health::Update, why: &str) {
    match u.event() {
        Some(health::Event::Down) => {
            log::info!("dispatcher: {uri} down ({}{why})", state_words(u.new_flags));
        }
        Some(health::Event::Up) => {
            log::info!("dispatcher: {uri} up ({}{why})", state_words(u.new_flags));
        }
        None if u.changed() => {
            log::debug!(
                "dispatcher: {uri} now {}{why}",
                DestHealth::new(u.new_flags).letters()
            );
        }
        None => {}
    }
}

// === Request chain ===

/// The URI of a From/To/Contact-style header value: inside `<>`, else up to the first
/// `;`.
fn addr_uri(value: &str) -> &str {
    let v = value.trim();
    if let Some(start) = v.find('<') {
        let rest = &v[start + 1..];
        return rest.split('>').next().unwrap_or(rest).trim();
    }
    v.split(';').next().unwrap_or(v).trim()
}

/// The `username` parameter of Digest credentials.
fn digest_username(value: &str) -> Option<String> {
    let v = value.trim();
    let (scheme, params) = v.split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("digest") {
        return None;
    }
    let mut rest = params;
    while !rest.trim().is_empty() {
        let r = rest.trim_start_matches([' ', '\t', ',']);
        let (name, after) = r.split_once('=')?;
        let after = after.trim_start();
        let (val, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim(), &after[end..])
        };
        if name.trim().eq_ignore_ascii_case("username") {
            return Some(val.to_string());
        }
        rest = next;
    }
    None
}

/// The `duid` attribute of `d`, when set.
fn duid(d: &Dest) -> Option<&str> {
    d.attrs.duid.as_deref().filter(|s| !s.is_empty())
}

/// The method of the CSeq header.
fn cseq_method(msg: &Message) -> Option<String> {
    msg.header("CSeq").and_then(|v| {
        v.split_ascii_whitespace()
            .nth(1)
            .map(str::to_ascii_uppercase)
    })
}

fn has_to_tag(msg: &Message) -> bool {
    msg.header("To").is_some_and(|to| {
        // The tag is a param after the URI (a `;tag` inside `<>` is a URI param).
        let after = match to.rfind('>') {
            Some(i) => &to[i + 1..],
            None => to.as_str(),
        };
        after.split(';').skip(1).any(|p| {
            p.trim()
                .get(..4)
                .is_some_and(|n| n.eq_ignore_ascii_case("tag="))
        })
    })
}

/// `host[:port]` of `dest` put into `ruri` (Kamailio's `rewrite_hostport`).
fn rewrite_hostport(ruri: &str, dest: &str) -> Option<String> {
    let d = crate::hash::SipUri::parse(dest)?;
    let hostport = match d.port {
        Some(p) => format!("{}:{p}", d.host),
        None => d.host.to_string(),
    };
    let colon = ruri.find(':')?;
    let (scheme, rest) = (&ruri[..colon], &ruri[colon + 1..]);
    let head_end = rest.find(['?']).unwrap_or(rest.len());
    let host_start = rest[..head_end].find('@').map_or(0, |i| i + 1);
    let after_host = &rest[host_start..];
    let host_len = if after_host.starts_with('[') {
        let close = after_host.find(']')? + 1;
        close
            + after_host[close..]
                .find([';', '?'])
                .unwrap_or(after_host.len() - close)
    } else {
        after_host.find([';', '?']).unwrap_or(after_host.len())
    };
    Some(format!(
        "{scheme}:{}{hostport}{}",
        &rest[..host_start],
        &after_host[host_len..]
    ))
}

impl Dispatcher {
    fn select(&self, msg: &mut Message) -> Result<Verdict, Error> {
        let method = msg.method();
        if method == "BYE" || method == "CANCEL" {
            // ds_load_update: the call ends.
            self.unset_load(msg);
        }
        if method == "ACK" || method == "CANCEL" || has_to_tag(msg) {
            return Ok(Verdict::Continue);
        }
        let list = self.list();
        let Some(set) = list.set(self.set) else {
            log::debug!("dispatcher: set {} is not in the list", self.set);
            return Ok(Verdict::reply(self.no_destination_code));
        };
        let states = self.set_states(&list, set);
        let sel = match self.run_select(msg, set, &states, &method, list_seed(&self.loaded)) {
            Ok(s) => s,
            Err(e) => {
                log::debug!("dispatcher: no selection in set {}: {e}", self.set);
                return Ok(Verdict::reply(self.no_destination_code));
            }
        };
        let Some(chosen) = sel.chosen else {
            log::debug!("dispatcher: no usable destination in set {}", self.set);
            return Ok(Verdict::reply(self.no_destination_code));
        };
        if let (Some(loads), Some(i)) = (&self.loads, sel.load_dest) {
            // ds_load_add; when it fails Kamailio goes on without counting the call.
            let call_id = msg.header("Call-ID").unwrap_or_default();
            if let Some(duid) = duid(&set.dests[i]) {
                if let Err(e) = loads.add(&call_id, duid, clock::now_ms()) {
                    log::warn!("dispatcher: cannot count call {call_id} on {duid}: {e}");
                }
            }
        }
        let uris: Vec<&str> = if sel.targets.is_empty() {
            vec![set.dests[chosen].uri.as_str()]
        } else {
            sel.targets
                .iter()
                .map(|&i| set.dests[i].uri.as_str())
                .collect()
        };
        if sel.parallel {
            // Algorithm 12 forks to all at once; nothing is left to fail over to.
            msg.set_var(VAR, "");
            return Ok(Verdict::forward(uris));
        }
        msg.set_var(VAR, &fit_var(&uris));
        self.forward_to(msg, uris[0])
    }

    /// The states of `set` (of `list`, the current list): the cached ones while `hgen`
    /// has not moved since they were read, else read again (and cached).
    fn set_states(&self, list: &Rc<DestList>, set: &DestSet) -> Rc<[u32]> {
        let gen = health_gen();
        if let (Some(gen), Some(c)) = (gen, self.states.borrow().as_ref()) {
            if c.gen == gen && Rc::ptr_eq(&c.list, list) {
                return Rc::clone(&c.states);
            }
        }
        let states: Rc<[u32]> = set.dests.iter().map(|d| health_of(d).flags).collect();
        *self.states.borrow_mut() = gen.map(|gen| StateCache {
            gen,
            list: Rc::clone(list),
            states: Rc::clone(&states),
        });
        states
    }

    /// Hash inputs, the cursor and the selection itself.
    fn run_select(
        &self,
        msg: &Message,
        set: &DestSet,
        states: &[u32],
        method: &str,
        seed: u64,
    ) -> Result<Selection, algo::SelectError> {
        // Only what the algorithm hashes is read (each read is a host call).
        let read = |algs: &[u32], f: &dyn Fn() -> String| {
            if algs.contains(&self.alg) {
                f()
            } else {
                String::new()
            }
        };
        let call_id = read(&[algo::ALG_HASH_CALLID, algo::ALG_RANDOM], &|| {
            msg.header("Call-ID").unwrap_or_default()
        });
        let from = read(&[algo::ALG_HASH_FROM_URI], &|| {
            msg.header("From").unwrap_or_default()
        });
        let to = read(&[algo::ALG_HASH_TO_URI], &|| {
            msg.header("To").unwrap_or_default()
        });
        let ruri = read(&[algo::ALG_HASH_RURI], &|| msg.request_uri());
        let auth_user = if self.alg == algo::ALG_HASH_AUTH_USER {
            msg.header("Proxy-Authorization")
                .or_else(|| msg.header("Authorization"))
                .and_then(|v| digest_username(&v))
        } else {
            None
        };
        let pvar = if self.alg == algo::ALG_HASH_PV {
            msg.header(&self.hash_header)
        } else {
            None
        };
        let keys = HashInputs {
            call_id: &call_id,
            from_uri: addr_uri(&from),
            to_uri: addr_uri(&to),
            ruri: &ruri,
            auth_user: auth_user.as_deref(),
            hash_pvar: pvar.as_deref(),
        };
        let n = set.dests.len() as u64;
        let counter = self.counter.as_deref();
        let cursor = match counter {
            Some(key) => match kv::incr(key, 1, None) {
                Ok(v) => v.saturating_sub(1).unsigned_abs(),
                Err(e) => {
                    log::debug!("dispatcher: cursor {key}: {e}");
                    clock::monotonic_ns()
                }
            },
            None => 0,
        };
        let random = if self.alg == algo::ALG_RANDOM {
            SeededRng::new(clock::monotonic_ns() ^ u64::from(crate::hash::hash_callid(&call_id)))
                .next_u32()
        } else {
            0
        };
        let latency: Vec<Latency> = if self.alg == algo::ALG_LATENCY {
            set.dests
                .iter()
                .map(|d| Latency {
                    estimate: d.attrs.latency.unwrap_or(0),
                    average: d.attrs.latency.unwrap_or(0),
                })
                .collect()
        } else {
            Vec::new()
        };
        let loads: Vec<i32> = match &self.loads {
            Some(loads) if method == "INVITE" => {
                let now = clock::now_ms();
                set.dests
                    .iter()
                    .zip(states)
                    .map(|(d, &f)| match duid(d) {
                        Some(id) if is_usable(f) => loads.load(id, now).unwrap_or_else(|e| {
                            log::debug!("dispatcher: load of {id}: {e}");
                            0
                        }),
                        _ => 0,
                    })
                    .collect()
            }
            _ => Vec::new(),
        };
        let params = SelectParams {
            alg: self.alg,
            ds_flags: self.ds_flags,
            use_default: self.use_default,
            limit: self.limit,
            cursor,
            random,
            table_seed: seed,
            is_invite: method == "INVITE",
            loads: &loads,
            latency: &latency,
        };
        let sel = algo::select(set, states, &keys, &params)?;
        // Kamailio moves its cursor past the entry used when it skipped inactive ones:
        // add the skipped count to the shared counter.
        if let (Some(key), Some(next)) = (counter.filter(|k| k.starts_with("rr:")), sel.next_cursor)
        {
            if n > 0 {
                let expected = (cursor + 1) % n;
                let skip = (next % n + n - expected) % n;
                if skip > 0 {
                    let _ = kv::incr(key, i64::try_from(skip).unwrap_or(0), None);
                }
            }
        }
        Ok(sel)
    }

    /// Send the request to `uri` (rewriting the R-URI first in domain mode).
    fn forward_to(&self, msg: &mut Message, uri: &str) -> Result<Verdict, Error> {
        if self.mode == DispatchMode::Domain {
            let ruri = msg.request_uri();
            match rewrite_hostport(&ruri, uri) {
                Some(new) => msg.set_request_uri(&new)?,
                None => {
                    log::debug!("dispatcher: cannot rewrite {ruri} to {uri}");
                }
            }
        }
        Ok(Verdict::forward([uri]))
    }

    // === Failure chain ===

    fn next(&self, msg: &mut Message) -> Result<Verdict, Error> {
        let status = msg.failure_status();
        let var = msg.var(VAR);
        if msg.is_cancelled() || !self.failover_on.iter().any(|m| m.matches(status)) {
            // The call failed for good: ds_load_unset.
            self.unset_load(msg);
            return Ok(Verdict::Continue);
        }
        let Some(var) = var else {
            self.unset_load(msg);
            return Ok(Verdict::Continue);
        };
        let mut uris: Vec<&str> = var.split_ascii_whitespace().collect();
        if uris.is_empty() {
            self.unset_load(msg);
            return Ok(Verdict::reply(self.exhausted_code));
        }
        let failed = uris.remove(0);
        let list = self.list();
        if self.mark_on_failure && (status == 408 || (500..600).contains(&status)) {
            if let Some(d) = find_dest(&list, failed) {
                let mut h = health_of(d);
                if h.flags & FLAG_DISABLED == 0 {
                    let state = health::parse_state("ip").unwrap_or(0);
                    let u = h.mark(state, &self.probe);
                    store_health(&d.uri, &h);
                    log_update(&d.uri, &u, &format!(", leg failed with {status}"));
                }
            }
        }
        // ds_next_dst: the next alternative that is still in the list and usable
        // (with algorithm 10, one the call's load can move to: ds_load_replace).
        let call_id = msg.header("Call-ID").unwrap_or_default();
        while !uris.is_empty() {
            let dest = list
                .set(self.set)
                .and_then(|s| s.position(uris[0]).map(|i| &s.dests[i]))
                .filter(|d| health_of(d).is_usable());
            let usable = match (dest, &self.loads) {
                (None, _) => false,
                (Some(_), None) => true,
                (Some(d), Some(loads)) => match duid(d) {
                    None => false,
                    Some(id) => {
                        if let Err(e) = loads.replace(&call_id, id, clock::now_ms()) {
                            log::warn!("dispatcher: cannot move call {call_id} to {id}: {e}");
                        }
                        true
                    }
                },
            };
            if usable {
                break;
            }
            uris.remove(0);
        }
        let Some(&next) = uris.first() else {
            msg.set_var(VAR, "");
            self.unset_load(msg);
            log::debug!("dispatcher: set {} exhausted after {status}", self.set);
            return Ok(Verdict::reply(self.exhausted_code));
        };
        msg.set_var(VAR, &uris.join(" "));
        self.forward_to(msg, next)
    }

    /// `ds_load_unset`: the call of `msg` no longer counts (algorithm 10).
    fn unset_load(&self, msg: &Message) {
        let Some(loads) = &self.loads else {
            return;
        };
        let Some(call_id) = msg.header("Call-ID") else {
            return;
        };
        match loads.remove(&call_id, clock::now_ms()) {
            Ok(Some(call)) => {
                log::debug!("dispatcher: call {call_id} off {}", call.duid);
            }
            Ok(None) => {}
            Err(e) => log::warn!("dispatcher: cannot uncount call {call_id}: {e}"),
        }
    }

    // === Probing ===

    fn ping(&self) -> Result<(), Error> {
        let list = self.list();
        for d in unique_dests(&list) {
            if !health_of(d).should_probe(self.probe.mode) {
                continue;
            }
            if d.uri.len() > requests::MAX_TAG {
                log::warn!("dispatcher: {} is too long to probe", d.uri);
                continue;
            }
            let from = d.attrs.ping_from.as_deref().unwrap_or(&self.ping_from);
            let req = requests::Request::new(self.ping_method.as_str(), d.uri.as_str())
                .header("From", name_addr(from))
                .header("To", name_addr(&d.uri))
                .destination(d.uri.as_str())
                .timeout(self.ping_timeout);
            if let Err(e) = requests::send(&req, &d.uri) {
                // Kamailio counts a probe that cannot be sent as a failed one.
                log::debug!("dispatcher: probe to {} not sent: {e}", d.uri);
                self.apply_probe(d, 477);
            }
        }
        Ok(())
    }

    fn probe_result(&self, r: &SipResponse) {
        let list = self.list();
        let Some(d) = find_dest(&list, &r.tag) else {
            // Dropped from the list since the probe went out.
            return;
        };
        self.apply_probe(d, r.status);
    }

    fn apply_probe(&self, d: &Dest, status: u16) {
        let mut h = health_of(d);
        let before = h;
        let u = if status == 477 {
            h.on_probe_send_failed(&self.probe)
        } else {
            h.on_probe_result(status, &self.probe)
        };
        if h != before {
            store_health(&d.uri, &h);
        }
        let why = if status == 408 {
            ", probe timed out".to_string()
        } else if self.probe.is_success(status) {
            String::new()
        } else {
            format!(", probe answered {status}")
        };
        log_update(&d.uri, &u, &why);
    }
}

/// `<uri>` unless the value is a name-addr already.
fn name_addr(uri: &str) -> String {
    if uri.contains('<') {
        uri.to_string()
    } else {
        format!("<{uri}>")
    }
}

/// The failover list as a var value, cut to the var size bound.
fn fit_var(uris: &[&str]) -> String {
    let mut out = String::new();
    for u in uris {
        if out.len() + u.len() + 1 > Message::MAX_VAR_VALUE {
            break;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(u);
    }
    out
}

/// The seed of the weight tables: the list version, the same in every instance.
fn list_seed(loaded: &RefCell<Loaded>) -> u64 {
    loaded.borrow().version
}

#[cfg(test)]
mod unit {
    use super::*;

    #[test]
    fn status_matches() {
        assert_eq!(StatusMatch::parse("5xx"), Some(StatusMatch::Class(5)));
        assert_eq!(StatusMatch::parse("5XX"), Some(StatusMatch::Class(5)));
        assert_eq!(StatusMatch::parse("408"), Some(StatusMatch::Code(408)));
        assert_eq!(StatusMatch::parse("7xx"), None);
        assert_eq!(StatusMatch::parse("99"), None);
        assert_eq!(StatusMatch::parse("abc"), None);
        assert!(StatusMatch::Class(5).matches(503));
        assert!(!StatusMatch::Class(5).matches(408));
    }

    #[test]
    fn header_helpers() {
        assert_eq!(addr_uri("\"A\" <sip:a@x;lr>;tag=1"), "sip:a@x;lr");
        assert_eq!(addr_uri("sip:a@x;tag=1"), "sip:a@x");
        assert_eq!(
            digest_username("Digest realm=\"x\", username=\"alice@x\", nonce=\"n\""),
            Some("alice@x".into())
        );
        assert_eq!(
            digest_username("Digest username=bob,realm=x"),
            Some("bob".into())
        );
        assert_eq!(digest_username("Basic abc"), None);
    }

    #[test]
    fn rewrites_hostport() {
        let r = |a, b| rewrite_hostport(a, b).unwrap();
        assert_eq!(
            r(
                "sip:bob@example.com;user=phone",
                "sip:10.0.0.1:5071;transport=tcp"
            ),
            "sip:bob@10.0.0.1:5071;user=phone"
        );
        assert_eq!(r("sip:example.com:5060", "sip:gw"), "sip:gw");
        assert_eq!(
            r("sips:bob@[::1]:5061?x=y", "sip:[2001:db8::1]:5080"),
            "sips:bob@[2001:db8::1]:5080?x=y"
        );
    }

    #[test]
    fn var_is_bounded() {
        let long = "x".repeat(3000);
        let v = fit_var(&[long.as_str(), long.as_str()]);
        assert_eq!(v.len(), 3000);
    }
}
