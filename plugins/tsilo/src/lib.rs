//! `tsilo`: Kamailio's tsilo (transaction silo) for Weir, with RFC 8599 push.
//!
//! An initial INVITE on a stateful route is stored under its callee (the request URI's
//! user, or `user@domain` with `use_domain`) for as long as its transaction lives. When
//! that user registers a contact meanwhile (a registrar binding event), the pending
//! transaction is forked to the new contact too (`ts_append_by_contact`): late parallel
//! forking across devices. Entries go when the transaction ends.
//!
//! Two extras turn the silo into a mobile call path:
//! - `wait_ms`: a callee with no registered contact keeps the INVITE pending that long
//!   (host verdict `wait`) instead of 404/480, so a device that registers in time rings.
//! - `[push]`: a callee whose bindings carry RFC 8599 push parameters (`pn-provider`,
//!   `pn-prid`, `pn-param`) gets a push request (HTTP POST with a JSON body to the
//!   configured gateway, through the host's granted `http` capability) and the INVITE
//!   waits `push.wait_ms` for the woken device to re-register; then it rings, or the
//!   caller gets `wait_code` (480). Contacts without push parameters ring at once.
//!
//! State lives in the host kv (shared by every instance): `n:<key>` counts the
//! transactions stored for a key, `s:<key>:<n>` holds one transaction id, `x:<id>`
//! points back to its slot for removal. At most the last [`SLOTS`] transactions per
//! callee are looked at. See README.md.

use std::time::Duration;

use serde::Deserialize;
use weir_sdk::{
    export_module, http, kv, location, log, transactions, BindingChange, BindingEvent,
    BranchTarget, Error, Event, Hook, Message, Module, Verdict,
};

/// Transactions per callee the module keeps track of.
pub const SLOTS: i64 = 32;
/// Longest wait (the host's bound of a `wait` verdict).
const MAX_WAIT_MS: u64 = 300_000;

// === Config ===

/// The module's params.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Key by `user@domain` instead of the user alone (Kamailio's `use_domain`).
    #[serde(default)]
    pub use_domain: bool,
    /// Keep an INVITE to a callee with no contact pending this long, in ms, waiting for
    /// a registration; 0 leaves it to the route's lookup (404/480 at once).
    #[serde(default)]
    pub wait_ms: u64,
    /// The reply when a wait ends with no device reached.
    #[serde(default = "default_wait_code")]
    pub wait_code: u16,
    /// Push notifications for devices that registered RFC 8599 parameters.
    #[serde(default)]
    pub push: Option<PushConfig>,
}

/// `[push]`: where push requests go.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushConfig {
    /// The push gateway's URL; the module's `http_allow` must grant it.
    pub url: String,
    /// HTTP timeout, ms.
    #[serde(default = "default_push_timeout")]
    pub timeout_ms: u64,
    /// How long the INVITE waits for a pushed device to register, ms.
    #[serde(default = "default_push_wait")]
    pub wait_ms: u64,
}

fn default_wait_code() -> u16 {
    480
}
fn default_push_timeout() -> u64 {
    3000
}
fn default_push_wait() -> u64 {
    30_000
}

// === Module ===

/// The module.
#[derive(Debug)]
pub struct Tsilo {
    cfg: Config,
}

impl Module for Tsilo {
    type Config = Config;

    fn init(cfg: Config) -> Result<Self, Error> {
        if cfg.wait_ms > MAX_WAIT_MS {
            return Err(Error::new(format!("wait_ms is at most {MAX_WAIT_MS}")));
        }
        if !(400..=699).contains(&cfg.wait_code) {
            return Err(Error::new("wait_code must be 400 to 699"));
        }
        if let Some(p) = &cfg.push {
            if !(p.url.starts_with("http://") || p.url.starts_with("https://")) {
                return Err(Error::new("push.url must be an http:// or https:// URL"));
            }
            if !(100..=60_000).contains(&p.timeout_ms) {
                return Err(Error::new("push.timeout_ms must be 100 to 60000"));
            }
            if p.wait_ms == 0 || p.wait_ms > MAX_WAIT_MS {
                return Err(Error::new(format!(
                    "push.wait_ms must be 1 to {MAX_WAIT_MS}"
                )));
            }
        }
        Ok(Tsilo { cfg })
    }

    fn on_request(&self, msg: &mut Message) -> Result<Verdict, Error> {
        if msg.hook() != Hook::Request
            || msg.method() != "INVITE"
            || has_to_tag(msg.header("To").as_deref().unwrap_or(""))
        {
            return Ok(Verdict::Continue);
        }
        let tx = msg.transaction_id();
        if tx == 0 {
            log::debug!("tsilo: stateless route, nothing to store");
            return Ok(Verdict::Continue);
        }
        let ruri = msg.request_uri();
        let Some(key) = key_of(&ruri, self.cfg.use_domain) else {
            return Ok(Verdict::Continue);
        };
        let bindings = location::lookup(&ruri).unwrap_or_else(|e| {
            log::warn!("tsilo: location lookup of {ruri} failed: {e}");
            Vec::new()
        });
        let push_wait = self.cfg.push.as_ref().map(|p| p.wait_ms).unwrap_or(0);
        let wait_ms = self.cfg.wait_ms.max(push_wait);
        store(&key, tx, wait_ms)?;
        if !transactions::watch(tx) {
            log::warn!("tsilo: transaction {tx} is already gone");
        }
        let (pushable, direct): (Vec<_>, Vec<_>) = bindings
            .into_iter()
            .partition(|b| b.param("pn-provider").is_some());
        if let Some(push) = &self.cfg.push {
            if !pushable.is_empty() {
                for b in &pushable {
                    send_push(push, b, msg, tx);
                }
                let branches: Vec<BranchTarget> = direct.iter().map(|b| b.to_branch()).collect();
                return Ok(Verdict::wait(
                    branches,
                    Duration::from_millis(push.wait_ms),
                    self.cfg.wait_code,
                ));
            }
        }
        if direct.is_empty() && pushable.is_empty() && self.cfg.wait_ms > 0 {
            return Ok(Verdict::wait(
                Vec::new(),
                Duration::from_millis(self.cfg.wait_ms),
                self.cfg.wait_code,
            ));
        }
        // The route's lookup forks to the registered contacts (ts_store + t_relay).
        Ok(Verdict::Continue)
    }

    fn on_binding(&self, event: &BindingEvent) -> Result<(), Error> {
        if !matches!(
            event.change,
            BindingChange::Added | BindingChange::Refreshed
        ) {
            return Ok(());
        }
        let Some(key) = key_of(&event.aor, self.cfg.use_domain) else {
            return Ok(());
        };
        for (slot, tx) in stored(&key)? {
            match transactions::state(tx) {
                transactions::State::Pending => {
                    match transactions::append_contacts(tx, &event.aor, Some(&event.contact)) {
                        Ok(n) => log::info!(
                            "tsilo: {} registered {}: {n} branch(es) added to transaction {tx}",
                            event.aor,
                            event.contact
                        ),
                        Err(e) => log::warn!(
                            "tsilo: cannot add {} to transaction {tx}: {e}",
                            event.contact
                        ),
                    }
                }
                _ => remove_slot(&key, slot, tx)?,
            }
        }
        Ok(())
    }

    fn on_event(&self, event: &Event) -> Result<(), Error> {
        match event {
            Event::TransactionDone(tx) => forget(*tx),
            Event::Http(outcome) => {
                match &outcome.response {
                    Ok(r) if (200..300).contains(&r.status) => {
                        log::debug!("tsilo: push {} accepted", outcome.tag)
                    }
                    Ok(r) => {
                        log::warn!("tsilo: push {} refused with HTTP {}", outcome.tag, r.status)
                    }
                    Err(e) => log::warn!("tsilo: push {} failed: {e}", outcome.tag),
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }
}

export_module!(Tsilo);

// === The silo in kv ===

fn ttl(wait_ms: u64) -> Option<Duration> {
    // An entry outlives the longest transaction it can belong to.
    Some(Duration::from_millis(wait_ms.max(MAX_WAIT_MS) + 60_000))
}

/// `ts_store`: remember `tx` under `key`.
fn store(key: &str, tx: u64, wait_ms: u64) -> Result<(), Error> {
    let n = kv::incr(&format!("n:{key}"), 1, ttl(wait_ms))?;
    kv::set(
        &format!("s:{key}:{n}"),
        tx.to_string().as_bytes(),
        ttl(wait_ms),
    )?;
    kv::set(
        &format!("x:{tx}"),
        format!("{n} {key}").as_bytes(),
        ttl(wait_ms),
    )?;
    Ok(())
}

/// The transactions stored under `key` (the last [`SLOTS`]), as (slot, id).
fn stored(key: &str) -> Result<Vec<(i64, u64)>, Error> {
    let Some(n) = kv::get(&format!("n:{key}"))?
        .and_then(|v| String::from_utf8(v).ok())
        .and_then(|v| v.trim().parse::<i64>().ok())
    else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for slot in (n - SLOTS + 1).max(1)..=n {
        let tx = kv::get(&format!("s:{key}:{slot}"))?
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let Some(tx) = tx {
            out.push((slot, tx));
        }
    }
    Ok(out)
}

fn remove_slot(key: &str, slot: i64, tx: u64) -> Result<(), Error> {
    kv::delete(&format!("s:{key}:{slot}"))?;
    kv::delete(&format!("x:{tx}"))?;
    Ok(())
}

/// The transaction ended: its entry goes.
fn forget(tx: u64) -> Result<(), Error> {
    let Some(back) = kv::get(&format!("x:{tx}"))?.and_then(|v| String::from_utf8(v).ok()) else {
        return Ok(());
    };
    if let Some((slot, key)) = back.split_once(' ') {
        if let Ok(slot) = slot.parse::<i64>() {
            return remove_slot(key, slot, tx);
        }
    }
    kv::delete(&format!("x:{tx}"))?;
    Ok(())
}

// === Push ===

fn send_push(push: &PushConfig, b: &location::Binding, msg: &Message, tx: u64) {
    let body = format!(
        "{{\"type\":\"call\",\"pn-provider\":{},\"pn-prid\":{},\"pn-param\":{},\"contact\":{},\"call-id\":{},\"from\":{},\"to\":{}}}",
        json_str(b.param("pn-provider").unwrap_or("")),
        json_str(b.param("pn-prid").unwrap_or("")),
        json_str(b.param("pn-param").unwrap_or("")),
        json_str(&b.contact),
        json_str(&msg.header("Call-ID").unwrap_or_default()),
        json_str(&msg.header("From").unwrap_or_default()),
        json_str(&msg.header("To").unwrap_or_default()),
    );
    let req = http::Request::post(&push.url, "application/json", body.into_bytes())
        .timeout(Duration::from_millis(push.timeout_ms));
    let tag = format!("tx{tx}:{}", b.contact);
    if let Err(e) = http::send(&req, &tag) {
        log::warn!("tsilo: cannot push to {}: {e}", push.url);
    }
}

/// `s` as a JSON string literal.
pub fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

// === Keys ===

/// The silo key of a SIP URI (a request URI or an AOR, with or without `<>`): the
/// user, or `user@host` with `use_domain` (host lower-cased, port dropped).
pub fn key_of(uri: &str, use_domain: bool) -> Option<String> {
    let u = uri.trim();
    let u = u
        .strip_prefix('<')
        .map(|r| r.split('>').next().unwrap_or(r))
        .unwrap_or(u);
    let lower = u.to_ascii_lowercase();
    let rest = if lower.starts_with("sips:") {
        &u[5..]
    } else if lower.starts_with("sip:") {
        &u[4..]
    } else {
        return None;
    };
    let (user, host) = rest.split_once('@')?;
    let user = user.split(';').next().unwrap_or(user);
    if user.is_empty() {
        return None;
    }
    if !use_domain {
        return Some(user.to_string());
    }
    let host = host.split([';', '?', '>']).next().unwrap_or(host);
    let host = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host.split(':').next().unwrap_or(host),
    };
    Some(format!("{user}@{}", host.to_ascii_lowercase()))
}

fn has_to_tag(to: &str) -> bool {
    let params = to.rsplit_once('>').map_or(to, |(_, p)| p);
    params
        .split(';')
        .any(|p| p.trim().to_ascii_lowercase().starts_with("tag="))
}

#[cfg(test)]
mod tests;
