//! `auth-xkeys`: Kamailio's auth_xkeys shared-key header tokens, so that the nodes of a
//! trusted chain can tell each other's requests from anyone else's.
//!
//! In `mode = "add"` the module computes a keyed hash of a `data` string built from the
//! request (`$fu:$ru:$ci:$cs`, ...) with the newest key of a group and writes it in a
//! header (Kamailio `auth_xkeys_add`). In `mode = "check"` it recomputes the hash with
//! each key of the group, newest first, and answers 403 when none matches (Kamailio
//! `auth_xkeys_check` plus the script's `sl_send_reply`); on a match it removes the
//! header and the request goes on. Tokens are byte for byte Kamailio's: lowercase hex of
//! SHA-2 over `<value>:<data>`, or HMAC-SHA256 in base64url, so a Kamailio node and a
//! Weir node interoperate.
//!
//! The module never edits anything but its own header, and never panics on message
//! content: missing fields render as empty text. See README.md for params and examples.

use serde::Deserialize;
use weir_sdk::{clock, export_module, log, names, Error, Header, Message, Module, Verdict};

mod keys;
mod template;
mod token;

pub use keys::{Key, KeyGroup};
pub use template::{Template, Var};
pub use token::{verify, Algorithm, Refusal};

/// The header used when `header` is not set (the name in Kamailio's examples).
pub const DEFAULT_HEADER: &str = "X-AuthXKeys-Token";

// === Config ===

/// The module's params (see README.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// `add` (sign) or `check` (verify).
    pub mode: Mode,
    /// The token header's name.
    #[serde(default = "default_header")]
    pub header: String,
    /// The key group (Kamailio `kid`).
    pub key_id: String,
    /// The token algorithm.
    #[serde(default)]
    pub algorithm: Algorithm,
    /// The data template (Kamailio `data`, with the variables already in it).
    pub data: String,
    /// The keys, each as Kamailio's `xkey` modparam: `id=..;name=..;value=..[;expires=..]`.
    pub keys: Vec<String>,
    /// Check mode: remove the header after a match.
    #[serde(default = "default_true")]
    pub remove_header: bool,
    /// Check mode: the reply code for a request that fails the check.
    #[serde(default = "default_reply_code")]
    pub reply_code: u16,
    /// Check mode: its reason phrase.
    #[serde(default = "default_reply_reason")]
    pub reply_reason: String,
    /// Methods the module acts on; empty means all.
    #[serde(default)]
    pub methods: Vec<String>,
}

/// What the module does with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Compute the token and write the header.
    Add,
    /// Verify the header: 403 on mismatch, remove it on match.
    Check,
}

fn default_header() -> String {
    DEFAULT_HEADER.to_string()
}

fn default_true() -> bool {
    true
}

fn default_reply_code() -> u16 {
    403
}

fn default_reply_reason() -> String {
    "Forbidden".to_string()
}

// === AuthXkeys ===

/// The module: config validated, keys of the group parsed, template compiled.
#[derive(Debug)]
pub struct AuthXkeys {
    mode: Mode,
    header: String,
    algorithm: Algorithm,
    data: Template,
    keys: KeyGroup,
    remove_header: bool,
    reply_code: u16,
    reply_reason: String,
    methods: Vec<String>,
}

impl Module for AuthXkeys {
    type Config = Config;

    fn init(config: Config) -> Result<Self, Error> {
        let header = config.header.trim().to_string();
        if !names::is_valid(&header) {
            return Err(Error::new(format!(
                "header: `{header}` is not a valid header name"
            )));
        }
        if names::is_protected(&header) {
            return Err(Error::new(format!(
                "header: `{header}` is owned by the host"
            )));
        }
        if config.key_id.trim().is_empty() {
            return Err(Error::new("key_id: must not be empty"));
        }
        if !(400..=699).contains(&config.reply_code) {
            return Err(Error::new(format!(
                "reply_code: {} is not a failure code (400 to 699)",
                config.reply_code
            )));
        }
        if !names::is_valid_value(&config.reply_reason) {
            return Err(Error::new("reply_reason: must not hold CR or LF"));
        }
        for m in &config.methods {
            if !names::is_valid(m) {
                return Err(Error::new(format!("methods: `{m}` is not a method name")));
            }
        }
        let data = Template::parse(&config.data)?;
        let keys = KeyGroup::select(&config.keys, config.key_id.trim())?;
        Ok(Self {
            mode: config.mode,
            header,
            algorithm: config.algorithm,
            data,
            keys,
            remove_header: config.remove_header,
            reply_code: config.reply_code,
            reply_reason: config.reply_reason,
            methods: config.methods,
        })
    }

    fn on_request(&self, msg: &mut Message) -> Result<Verdict, Error> {
        let method = msg.method();
        if !self.methods.is_empty() && !self.methods.contains(&method) {
            return Ok(Verdict::Continue);
        }
        // One `headers` call serves both the template and the check.
        let headers = if self.data.needs_headers() || self.mode == Mode::Check {
            msg.headers()
        } else {
            Vec::new()
        };
        let data = self.data.render(msg, &headers);
        let now_s = if self.keys.is_timed() {
            clock::now_ms() / 1000
        } else {
            0
        };
        match self.mode {
            Mode::Add => self.add(msg, &data, now_s),
            Mode::Check => self.check(msg, &method, &headers, &data, now_s),
        }
    }
}

export_module!(AuthXkeys);

impl AuthXkeys {
    /// Kamailio `auth_xkeys_add`, with the newest usable key. The header replaces any
    /// copy the request already carries (Kamailio appends one more line; the checker
    /// looks at the first, which a sender could have forged).
    fn add(&self, msg: &mut Message, data: &str, now_s: u64) -> Result<Verdict, Error> {
        let Some(key) = self.keys.usable(now_s).next() else {
            log::error!(
                "auth-xkeys: every key of the group is past its `until`: cannot sign {}",
                msg.method()
            );
            return Err(Error::new("auth-xkeys: no usable key to sign with"));
        };
        let token = self.algorithm.token(&key.value, data);
        msg.set_header(&self.header, &token)
            .map_err(|e| Error::from(e).context(format!("auth-xkeys: adding {}", self.header)))?;
        Ok(Verdict::Continue)
    }

    /// Kamailio `auth_xkeys_check` on the first line of the header, then the reply (or,
    /// on a match, the header's removal).
    fn check(
        &self,
        msg: &mut Message,
        method: &str,
        headers: &[Header],
        data: &str,
        now_s: u64,
    ) -> Result<Verdict, Error> {
        let received = headers
            .iter()
            .find(|h| h.is(&self.header))
            .map(|h| h.value.trim());
        let outcome = match received {
            None => Err(Refusal::Missing),
            Some(token) => verify(
                self.algorithm,
                token,
                self.keys.usable(now_s).map(|k| k.value.as_str()),
                data,
            ),
        };
        match outcome {
            Ok(_) => {
                if self.remove_header {
                    msg.remove_header(&self.header).map_err(|e| {
                        Error::from(e).context(format!("auth-xkeys: removing {}", self.header))
                    })?;
                }
                Ok(Verdict::Continue)
            }
            Err(why) => {
                log::debug!(
                    "auth-xkeys: refusing {method} from {}: {}",
                    msg.source(),
                    why.as_str()
                );
                // An ACK cannot be answered: it is dropped instead.
                if method == "ACK" {
                    return Ok(Verdict::Drop);
                }
                Ok(Verdict::reply_with(
                    self.reply_code,
                    self.reply_reason.as_str(),
                    std::iter::empty::<Header>(),
                ))
            }
        }
    }
}

// Two attributes rather than `all(test, ..)`: clippy's `allow-unwrap-in-tests` only
// recognises a plain `cfg(test)`. The test harness exists off wasm only.
#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod tests;
