//! `pipelimit`: Kamailio's pipelimit for Weir: rate limits ("pipes") keyed by a message
//! field (source IP, From user, authenticated user, or one pipe over all traffic), with
//! the TAILDROP, RED, NETWORK, FEEDBACK and NOP algorithms, counted in fixed windows of
//! `timer_interval` seconds.
//!
//! Counters live in the host's kv store, so every instance, worker and (on a shared
//! backend) node counts into the same pipe: key `<pipe>:<window>:<key value>`, where the
//! window is the wall-clock time divided by the interval. A counted request costs one
//! `kv::incr` per pipe; RED adds one `kv::get` of the previous window per key and window
//! and instance, FEEDBACK one controller update per window. NETWORK and NOP pipes never
//! touch the store. Over a limit the module answers 503 with a random `Retry-After`,
//! redirects with 302, or drops, as configured. See README.md.

use std::cell::{Cell, RefCell};
use std::collections::hash_map::RandomState;
use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::time::Duration;

use serde::Deserialize;
use weir_sdk::{
    clock, export_module, kv, log, system, Error, Hook, KvError, Message, Module, Status, Verdict,
};

mod algo;
mod fields;

pub use algo::{Algorithm, PidGains, PidState};
use fields::KeySpec;

/// Longest pipe name.
const MAX_PIPE_NAME: usize = 64;
/// Longest timer interval, in seconds.
const MAX_INTERVAL_S: u64 = 3600;
/// Longest Retry-After, in seconds (a day).
const MAX_RETRY_AFTER: u32 = 86_400;
/// Keys a RED pipe remembers the previous window's load of, per instance and window.
const RED_CACHE_KEYS: usize = 1024;

// === Config ===

/// The module's params (see README.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Window length in seconds; limits are per window (Kamailio's `timer_interval`).
    #[serde(default = "default_timer_interval")]
    pub timer_interval: u64,
    /// The pipes, by name; every counted request is checked against each, in name order.
    #[serde(default)]
    pub pipes: BTreeMap<String, PipeConfig>,
    /// Methods that count; empty: every method except ACK and CANCEL.
    #[serde(default)]
    pub methods: Vec<String>,
    /// Count only initial requests (no To tag); in-dialog requests always pass.
    #[serde(default = "yes")]
    pub initial_only: bool,
    /// What happens to a request over a limit.
    #[serde(default)]
    pub action: Action,
    /// Status code of the `reply` action.
    #[serde(default = "default_reply_code")]
    pub reply_code: u16,
    /// Reason phrase of the `reply` action; empty: the standard phrase of the code.
    #[serde(default = "default_reply_reason")]
    pub reply_reason: String,
    /// Smallest Retry-After of the `reply` action, in seconds.
    #[serde(default = "default_retry_after_min")]
    pub retry_after_min: u32,
    /// Largest Retry-After; both 0: no Retry-After header.
    #[serde(default = "default_retry_after_max")]
    pub retry_after_max: u32,
    /// Where the `redirect` action sends the caller (a `sip:`/`sips:` URI).
    #[serde(default)]
    pub redirect_uri: Option<String>,
    /// Put the Request-URI's user into the redirect Contact when `redirect_uri` has none.
    #[serde(default = "yes")]
    pub redirect_keep_user: bool,
    /// What happens to a request when the store fails.
    #[serde(default)]
    pub on_store_error: OnStoreError,
    /// The gains of FEEDBACK's PID controller.
    #[serde(default)]
    pub pid: PidGains,
}

/// One pipe of the config.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipeConfig {
    /// The algorithm (`TAILDROP`, `RED`, `NETWORK`, `FEEDBACK`, `NOP`).
    pub algorithm: Algorithm,
    /// Requests per window (TAILDROP, RED), queued bytes (NETWORK) or the CPU setpoint
    /// in percent (FEEDBACK). Not used by NOP.
    #[serde(default)]
    pub limit: Option<i64>,
    /// What the pipe is keyed by: `$si`, `$fU`, `$fd`, `$tU`, `$rU`, `$rd`, `$au`, `$ar`
    /// or a constant (one pipe over all traffic).
    #[serde(default = "default_key")]
    pub key: String,
    /// What happens to a request without the key's field.
    #[serde(default)]
    pub missing: Missing,
}

/// What happens to a request over a limit.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Answer `reply_code` `reply_reason`, with a Retry-After (Kamailio's `pl_drop`).
    #[default]
    Reply,
    /// Answer 302 with a Contact of `redirect_uri`.
    Redirect,
    /// Discard the request silently.
    Drop,
}

/// What happens to a request when the store fails.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OnStoreError {
    /// Fail open: the request passes (logged once per window and instance).
    #[default]
    Pass,
    /// Fail closed: the request gets the over-limit action.
    Limit,
    /// The hook fails, and the chain entry's `on_error` policy applies.
    Error,
}

/// What a pipe does with a request that lacks its key's field.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Missing {
    /// The pipe does not count or limit the request.
    #[default]
    Skip,
    /// The request counts in one shared pipe, key value `-`.
    Shared,
}

fn default_timer_interval() -> u64 {
    10
}
fn yes() -> bool {
    true
}
fn default_reply_code() -> u16 {
    Status::SERVICE_UNAVAILABLE
}
fn default_reply_reason() -> String {
    "Server Unavailable".to_string()
}
fn default_retry_after_min() -> u32 {
    10
}
fn default_retry_after_max() -> u32 {
    309
}
fn default_key() -> String {
    "all".to_string()
}

// === PipeLimit ===

/// The module: the validated config and per-instance caches.
#[derive(Debug)]
pub struct PipeLimit {
    interval_ms: u64,
    pipes: Vec<Pipe>,
    /// Upper-case methods that count; empty: all but ACK and CANCEL.
    methods: Vec<String>,
    initial_only: bool,
    over: OverLimit,
    on_store_error: OnStoreError,
    pid: PidGains,
    /// xorshift64* state for Retry-After.
    rng: Cell<u64>,
    /// The window in which a store failure was last logged (+1; 0: never).
    store_error_logged: Cell<u64>,
}

/// What the module answers over a limit.
#[derive(Debug)]
enum OverLimit {
    Reply {
        code: u16,
        reason: String,
        /// Inclusive range; `None`: no header.
        retry_after: Option<(u32, u32)>,
    },
    Redirect {
        uri: String,
        keep_user: bool,
    },
    Drop,
}

#[derive(Debug)]
struct Pipe {
    name: String,
    algorithm: Algorithm,
    limit: i64,
    key: KeySpec,
    missing: Missing,
    /// The window in which this instance last logged the pipe over its limit (+1).
    logged: Cell<u64>,
    /// RED: the previous window's load per key value, for the current window.
    red: RefCell<RedCache>,
    /// FEEDBACK: the drop rate of a window, once this instance has read it.
    feedback: Cell<Option<(u64, i64)>>,
}

#[derive(Debug, Default)]
struct RedCache {
    window: u64,
    loads: HashMap<String, i64>,
}

/// How one pipe judged a request.
enum Judgement {
    Pass,
    Over,
}

impl Module for PipeLimit {
    type Config = Config;

    fn init(config: Config) -> Result<Self, Error> {
        if config.timer_interval == 0 || config.timer_interval > MAX_INTERVAL_S {
            return Err(Error::new(format!(
                "timer_interval must be 1 to {MAX_INTERVAL_S} seconds"
            )));
        }
        if config.pipes.is_empty() {
            return Err(Error::new(
                "pipes: at least one pipe is needed ([params.pipes.<name>] with an algorithm)",
            ));
        }
        let pipes = config
            .pipes
            .into_iter()
            .map(|(name, pipe)| Pipe::new(name, pipe))
            .collect::<Result<Vec<_>, Error>>()?;
        let methods = config
            .methods
            .iter()
            .map(|m| {
                if m.is_empty() || !m.bytes().all(|b| b.is_ascii_alphabetic() || b == b'-') {
                    return Err(Error::new(format!("methods: `{m}` is not a SIP method")));
                }
                Ok(m.to_ascii_uppercase())
            })
            .collect::<Result<Vec<_>, Error>>()?;
        let over = match config.action {
            Action::Reply => {
                if !(400..=699).contains(&config.reply_code) {
                    return Err(Error::new("reply_code must be 400 to 699"));
                }
                if config.reply_reason.chars().any(char::is_control) {
                    return Err(Error::new("reply_reason must not hold control characters"));
                }
                let (min, max) = (config.retry_after_min, config.retry_after_max);
                if min > max || max > MAX_RETRY_AFTER {
                    return Err(Error::new(format!(
                        "retry_after_min ({min}) must be at most retry_after_max ({max}), \
                         which must be at most {MAX_RETRY_AFTER}"
                    )));
                }
                OverLimit::Reply {
                    code: config.reply_code,
                    reason: config.reply_reason,
                    retry_after: (max > 0).then_some((min, max)),
                }
            }
            Action::Redirect => {
                let Some(uri) = config.redirect_uri else {
                    return Err(Error::new("action = \"redirect\" needs redirect_uri"));
                };
                check_redirect_uri(&uri)?;
                OverLimit::Redirect {
                    uri,
                    keep_user: config.redirect_keep_user,
                }
            }
            Action::Drop => OverLimit::Drop,
        };
        let pid = config.pid;
        if ![pid.kp, pid.ki, pid.kd].iter().all(|g| g.is_finite()) {
            return Err(Error::new("pid: kp, ki and kd must be finite numbers"));
        }
        // std's hasher keys come from the host's random source; the clock makes two
        // instances started together differ even if it did not.
        let seed = RandomState::new().hash_one(clock::monotonic_ns()) | 1;
        Ok(PipeLimit {
            interval_ms: config.timer_interval * 1000,
            pipes,
            methods,
            initial_only: config.initial_only,
            over,
            on_store_error: config.on_store_error,
            pid,
            rng: Cell::new(seed),
            store_error_logged: Cell::new(0),
        })
    }

    fn on_request(&self, msg: &mut Message) -> Result<Verdict, Error> {
        if msg.hook() != Hook::Request || !self.counts(&msg.method()) {
            return Ok(Verdict::Continue);
        }
        if self.initial_only && msg.header("To").is_some_and(|to| fields::has_tag(&to)) {
            return Ok(Verdict::Continue);
        }
        let window = clock::now_ms() / self.interval_ms;
        for pipe in &self.pipes {
            let key = match (pipe.key.extract(msg), pipe.missing) {
                (Some(key), _) => key,
                (None, Missing::Shared) => "-".to_string(),
                (None, Missing::Skip) => continue,
            };
            let judgement = match pipe.judge(self, window, &key) {
                Ok(j) => j,
                Err(e) => match self.on_store_error {
                    OnStoreError::Pass => {
                        self.log_store_error(window, pipe, &e);
                        Judgement::Pass
                    }
                    OnStoreError::Limit => {
                        self.log_store_error(window, pipe, &e);
                        Judgement::Over
                    }
                    OnStoreError::Error => {
                        return Err(Error::from(e).context(format!("pipe `{}`", pipe.name)))
                    }
                },
            };
            if let Judgement::Over = judgement {
                pipe.log_over(window, &key, self.interval_ms);
                return Ok(self.over_verdict(msg));
            }
        }
        Ok(Verdict::Continue)
    }
}

impl PipeLimit {
    /// Whether requests of `method` count.
    fn counts(&self, method: &str) -> bool {
        if self.methods.is_empty() {
            return method != "ACK" && method != "CANCEL";
        }
        self.methods.iter().any(|m| m.eq_ignore_ascii_case(method))
    }

    /// TTL of a window counter: to the end of the next window (RED reads it then), from
    /// any point of its own window, plus a second for clocks of other nodes.
    fn counter_ttl(&self) -> Duration {
        Duration::from_millis(2 * self.interval_ms + 1000)
    }

    fn over_verdict(&self, msg: &Message<'_>) -> Verdict {
        match &self.over {
            OverLimit::Reply {
                code,
                reason,
                retry_after,
            } => match retry_after {
                Some((min, max)) => {
                    let secs = self.random_in(*min, *max);
                    Verdict::reply_with(*code, reason.as_str(), [("Retry-After", secs.to_string())])
                }
                None => Verdict::reply_with(*code, reason.as_str(), Vec::<(&str, &str)>::new()),
            },
            OverLimit::Redirect { uri, keep_user } => {
                let target = if *keep_user {
                    with_user(uri, &msg.request_uri())
                } else {
                    uri.clone()
                };
                Verdict::reply_with(
                    Status::MOVED_TEMPORARILY,
                    "",
                    [("Contact", format!("<{target}>"))],
                )
            }
            OverLimit::Drop => Verdict::Drop,
        }
    }

    /// Uniform in `min..=max` (xorshift64*; the modulo bias over a range of at most a
    /// day is below 1e-14).
    fn random_in(&self, min: u32, max: u32) -> u32 {
        let mut x = self.rng.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.rng.set(x);
        let r = x.wrapping_mul(0x2545_f491_4f6c_dd1d);
        let span = u64::from(max - min) + 1;
        // `r % span` < span <= u32::MAX + 1, so the sum fits in u32.
        min + u32::try_from(r % span).unwrap_or(0)
    }

    fn log_store_error(&self, window: u64, pipe: &Pipe, e: &KvError) {
        if self.store_error_logged.replace(window + 1) != window + 1 {
            let what = match self.on_store_error {
                OnStoreError::Limit => "treating requests as over the limit",
                _ => "letting requests pass",
            };
            log::warn!(
                "pipelimit: pipe `{}`: store failed ({e}); {what}",
                pipe.name
            );
        }
    }
}

impl Pipe {
    fn new(name: String, config: PipeConfig) -> Result<Pipe, Error> {
        let valid_name = !name.is_empty()
            && name.len() <= MAX_PIPE_NAME
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
        if !valid_name {
            return Err(Error::new(format!(
                "pipes: name `{name}` must be 1 to {MAX_PIPE_NAME} characters of [A-Za-z0-9_.-]"
            )));
        }
        let limit = match (config.algorithm, config.limit) {
            (Algorithm::Nop, limit) => limit.unwrap_or(0),
            (Algorithm::Feedback, Some(l)) if (0..=100).contains(&l) => l,
            (Algorithm::Feedback, _) => {
                return Err(Error::new(format!(
                    "pipes.{name}.limit: FEEDBACK needs the CPU setpoint in percent, 0 to 100"
                )))
            }
            (_, Some(l)) if l >= 1 => l,
            (alg, _) => {
                let unit = match alg {
                    Algorithm::Network => "queued bytes",
                    _ => "requests per timer_interval",
                };
                return Err(Error::new(format!(
                    "pipes.{name}.limit: {} needs a limit of at least 1 ({unit})",
                    alg.name()
                )));
            }
        };
        let key = KeySpec::parse(&name, &config.key)?;
        Ok(Pipe {
            name,
            algorithm: config.algorithm,
            limit,
            key,
            missing: config.missing,
            logged: Cell::new(0),
            red: RefCell::new(RedCache::default()),
            feedback: Cell::new(None),
        })
    }

    fn counter_key(&self, window: u64, key: &str) -> String {
        format!("{}:{window}:{key}", self.name)
    }

    /// Count the request (TAILDROP, RED, FEEDBACK) and judge it.
    fn judge(&self, m: &PipeLimit, window: u64, key: &str) -> Result<Judgement, KvError> {
        let pass = match self.algorithm {
            Algorithm::Nop => true,
            Algorithm::Network => algo::network_passes(system::load().rx_queue_bytes, self.limit),
            Algorithm::TailDrop => {
                let count = kv::incr(&self.counter_key(window, key), 1, Some(m.counter_ttl()))?;
                algo::taildrop_passes(count, self.limit)
            }
            Algorithm::Red => {
                let count = kv::incr(&self.counter_key(window, key), 1, Some(m.counter_ttl()))?;
                algo::red_passes(count, self.red_load(window, key)?)
            }
            Algorithm::Feedback => {
                let count = kv::incr(&self.counter_key(window, key), 1, Some(m.counter_ttl()))?;
                algo::feedback_passes(count, self.drop_rate(m, window)?)
            }
        };
        Ok(if pass {
            Judgement::Pass
        } else {
            Judgement::Over
        })
    }

    /// RED's load for `key`: the previous window's counter over the limit, read once per
    /// window by this instance (the previous window is closed, so it no longer moves).
    fn red_load(&self, window: u64, key: &str) -> Result<i64, KvError> {
        {
            let mut cache = self.red.borrow_mut();
            if cache.window != window {
                cache.window = window;
                cache.loads.clear();
            }
            if let Some(load) = cache.loads.get(key) {
                return Ok(*load);
            }
        }
        let previous = match window.checked_sub(1) {
            Some(w) => kv::get_string(&self.counter_key(w, key))?
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0),
            None => 0,
        };
        let load = algo::red_load(previous, self.limit);
        let mut cache = self.red.borrow_mut();
        if cache.loads.len() < RED_CACHE_KEYS {
            cache.loads.insert(key.to_string(), load);
        }
        Ok(load)
    }

    /// FEEDBACK's drop rate for `window`. The first instance to ask in a window (the
    /// winner of a `kv::incr` on a turn key) runs one controller step with the CPU load
    /// and stores the state; the others read it. The controller is per pipe, not per key.
    fn drop_rate(&self, m: &PipeLimit, window: u64) -> Result<i64, KvError> {
        if let Some((w, rate)) = self.feedback.get() {
            if w == window {
                return Ok(rate);
            }
        }
        let state_key = format!("{}:pid", self.name);
        let turn = kv::incr(
            &format!("{}:pid-turn:{window}", self.name),
            1,
            Some(m.counter_ttl()),
        )?;
        let stored = kv::get_string(&state_key)?
            .and_then(|t| PidState::decode(&t))
            .unwrap_or_default();
        if turn == 1 && stored.window < window {
            let setpoint = self.limit as f64 / 100.0;
            let cpu = f64::from(system::load().cpu);
            let next = stored.step(m.pid, setpoint, cpu, window);
            // The state outlives many windows; it expires after an idle hour or so.
            let ttl = Duration::from_millis(m.interval_ms.saturating_mul(360).max(3_600_000));
            kv::set(&state_key, next.encode(), Some(ttl))?;
            self.feedback.set(Some((window, next.drop_rate)));
            return Ok(next.drop_rate);
        }
        // Another instance has the turn: use its result once it is stored, and the
        // previous window's rate until then.
        if stored.window == window {
            self.feedback.set(Some((window, stored.drop_rate)));
        }
        Ok(stored.drop_rate)
    }

    fn log_over(&self, window: u64, key: &str, interval_ms: u64) {
        if self.logged.replace(window + 1) == window + 1 {
            return;
        }
        let unit = match self.algorithm {
            Algorithm::Network => format!("{} queued bytes", self.limit),
            Algorithm::Feedback => format!("CPU setpoint {}%", self.limit),
            _ => format!("{} per {} s", self.limit, interval_ms / 1000),
        };
        log::warn!(
            "pipelimit: pipe `{}` over its limit for `{key}` ({}, {unit}); \
             not logged again this window",
            self.name,
            self.algorithm.name()
        );
    }
}

/// Refuse a redirect target the Contact header could not carry.
fn check_redirect_uri(uri: &str) -> Result<(), Error> {
    let scheme_ok = uri.split_once(':').is_some_and(|(s, rest)| {
        (s.eq_ignore_ascii_case("sip") || s.eq_ignore_ascii_case("sips")) && !rest.is_empty()
    });
    if !scheme_ok
        || uri
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '<' || c == '>')
    {
        return Err(Error::new(format!(
            "redirect_uri: `{uri}` must be a sip: or sips: URI without spaces or <>"
        )));
    }
    Ok(())
}

/// `uri` with the user of `ruri` put in, if `uri` has no user and `ruri` has one:
/// `sip:node2.example.com` and `sip:bob@example.com` give `sip:bob@node2.example.com`.
fn with_user(uri: &str, ruri: &str) -> String {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return uri.to_string();
    };
    let host_part = rest.split([';', '?']).next().unwrap_or(rest);
    if host_part.contains('@') {
        return uri.to_string();
    }
    match fields::uri_user(ruri) {
        Some(user) if !user.is_empty() => format!("{scheme}:{user}@{rest}"),
        _ => uri.to_string(),
    }
}

export_module!(PipeLimit);

// The test harness exists off wasm only. (Two attributes, not `all(test, ..)`:
// clippy's allow-unwrap-in-tests only recognises a plain `cfg(test)`.)
#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod tests;
