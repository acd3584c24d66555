//! Registrar configuration: Kamailio `registrar` / `usrloc` parameter names and defaults.

use serde::Deserialize;

/// Registrar settings. Every key is optional; defaults are Kamailio's unless noted.
/// Unknown keys are rejected. Integer "flag" keys (`min_expires_mode`, `case_sensitive`,
/// ...) accept `0`/`1` (Kamailio style) as well as `false`/`true`.
///
/// See the crate documentation for the meaning of each key.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Expiry (s) when the Contact has no `expires` param and there is no Expires
    /// header. Default 3600.
    pub default_expires: u32,
    /// Percent (0..=100) by which a `default_expires` value is randomly shortened:
    /// the result lies in `[e * (1 - r/100), e]`. Default 0.
    pub default_expires_range: u8,
    /// Percent (0..=100) by which a client-supplied expiry is randomly shortened
    /// (spreads re-registrations to avoid storms). Default 0.
    pub expires_range: u8,
    /// Lowest accepted non-zero expiry (s); 0 disables. Lower values are raised to it,
    /// or answered with 423 + Min-Expires when `min_expires_mode` is set. Default 60.
    pub min_expires: u32,
    /// Answer expiries below `min_expires` with 423 Interval Too Brief instead of
    /// raising them. Default 0 (off).
    #[serde(deserialize_with = "flag")]
    pub min_expires_mode: bool,
    /// Highest accepted expiry (s); 0 disables. Higher values are lowered. Default 0.
    pub max_expires: u32,
    /// q-value times 1000 (0..=1000) given to contacts without `q`; unset = no q
    /// (such contacts sort below every explicit q). Default unset.
    pub default_q: Option<u16>,
    /// Most bindings per AOR; 0 = unlimited. Exceeding it gives 503. Default 0.
    pub max_contacts: u32,
    /// `Retry-After` added to every 5xx the registrar produces: `0` (off), `N`
    /// seconds, or `[min, max]` for a random value in that range. Default 0.
    pub retry_after: RetryAfter,
    /// Keep the AOR user part's letter case (the domain is always lowercased).
    /// Default 0.
    #[serde(deserialize_with = "flag")]
    pub case_sensitive: bool,
    /// AOR is `sip:user@domain` (true) or `sip:user` (false). Default **1**
    /// (Kamailio: 0): a multi-domain proxy must not merge alice@a with alice@b.
    #[serde(deserialize_with = "flag")]
    pub use_domain: bool,
    /// Prefix stripped from the AOR domain (e.g. `"sip."`). Default unset.
    pub realm_prefix: Option<String>,
    /// Store the REGISTER's Path (RFC 3327) and route through it on lookup.
    /// Default 0.
    #[serde(deserialize_with = "flag")]
    pub use_path: bool,
    /// With `use_path`: 0 `off` (stored, never echoed), 1 `lazy` (echoed when the UA
    /// sent `Supported: path`), 2 `strict` (echoed when supported, else 420 Bad
    /// Extension + `Unsupported: path`). Default 2.
    pub path_mode: PathMode,
    /// Add `pub-gruu` / `temp-gruu` to the 200 OK Contacts that carry
    /// `+sip.instance` when the REGISTER has `Supported: gruu`. Default 1.
    #[serde(deserialize_with = "flag")]
    pub gruu_enabled: bool,
    /// RFC 5626 outbound: 0 `none`, 1 `supported`, 2 `required`. Default 0.
    pub outbound_mode: OutboundMode,
    /// 0 `always`: honour `reg-id` whenever `+sip.instance` is present; 1 `outbound`:
    /// ignore `reg-id` (or 439) when the first hop did not do outbound. Default 0.
    pub regid_mode: RegIdMode,
    /// `Flow-Timer` value (s, 0..=999) sent with outbound; 0 = none. Default 0.
    pub flow_timer: u32,
    /// Window (s) in which a REGISTER with the same Call-ID and CSeq as the stored
    /// binding is a retransmission (200, no change); after it, 400. Default 20.
    pub cseq_delay: u32,
    /// Longest accepted Contact URI (bytes); longer gives 400. Default 512.
    pub contact_max_size: usize,
    /// Longest accepted Call-ID (bytes); longer gives 400. Default 255.
    pub callid_max_size: usize,
    /// Contact param carrying the stored source address in the 200 OK
    /// (`;received="sip:..."`); empty = not echoed. Default `"received"`.
    pub received_param: String,
    /// When to store the REGISTER's source address as the binding's `received`
    /// (used as next hop on lookup): `never`, `nat` (when the Contact host/port differ
    /// from the source, or on connection-oriented transports) or `always`.
    /// Default `nat` (Kamailio: set by nathelper's fix_nated_register in the script).
    pub save_received: SaveReceived,
    /// Lookup returns every contact (parallel/serial forking); 0 = only the first.
    /// Default 1.
    #[serde(deserialize_with = "flag")]
    pub append_branches: bool,
    /// Reply for a lookup that found no binding of a known subscriber (404 or 480).
    /// Unknown users always get 404. Weir extension; default 404.
    pub no_binding_reply: u16,
    /// Branch failures that remove the binding that was tried (the "unregister when
    /// not replying" policy for mobiles): status codes such as 477 (send failed) and
    /// 408 (408 counts only when the branch got no reply at all). Weir extension;
    /// default empty (never).
    pub unregister_on: Vec<u16>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            default_expires: 3600,
            default_expires_range: 0,
            expires_range: 0,
            min_expires: 60,
            min_expires_mode: false,
            max_expires: 0,
            default_q: None,
            max_contacts: 0,
            retry_after: RetryAfter::Off,
            case_sensitive: false,
            use_domain: true,
            realm_prefix: None,
            use_path: false,
            path_mode: PathMode::Strict,
            gruu_enabled: true,
            outbound_mode: OutboundMode::None,
            regid_mode: RegIdMode::Always,
            flow_timer: 0,
            cseq_delay: 20,
            contact_max_size: 512,
            callid_max_size: 255,
            received_param: "received".to_string(),
            save_received: SaveReceived::Nat,
            append_branches: true,
            no_binding_reply: 404,
            unregister_on: Vec::new(),
        }
    }
}

/// A configuration value out of range.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("registrar config: {0}")]
pub struct ConfigError(pub String);

impl Config {
    /// Checks ranges and combinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |s: &str| Err(ConfigError(s.to_string()));
        if self.default_expires_range > 100 || self.expires_range > 100 {
            return bad("default_expires_range and expires_range are percentages (0..=100)");
        }
        if self.default_q.is_some_and(|q| q > 1000) {
            return bad("default_q is q*1000 and must be 0..=1000");
        }
        if self.max_expires != 0 && self.min_expires > self.max_expires {
            return bad("min_expires is above max_expires");
        }
        if let RetryAfter::Range { min, max } = self.retry_after {
            if min > max {
                return bad("retry_after range has min > max");
            }
        }
        if self.flow_timer > 999 {
            return bad("flow_timer must be 0..=999");
        }
        if !matches!(self.no_binding_reply, 404 | 480) {
            return bad("no_binding_reply must be 404 or 480");
        }
        if let Some(c) = self
            .unregister_on
            .iter()
            .find(|c| !(300..=699).contains(*c))
        {
            return Err(ConfigError(format!(
                "unregister_on: {c} is not a failure status (300..=699)"
            )));
        }
        if let Some(p) = &self.realm_prefix {
            if p.is_empty() {
                return bad("realm_prefix is empty (leave it unset)");
            }
        }
        if !self
            .received_param
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.!%*+`'~".contains(&b))
        {
            return bad("received_param must be a token");
        }
        Ok(())
    }
}

/// `retry_after`: off, fixed, or a random value in a range (seconds).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "RetryAfterRepr")]
pub enum RetryAfter {
    /// No Retry-After (config value 0).
    #[default]
    Off,
    /// Always this many seconds.
    Fixed(u32),
    /// Uniformly random in `min..=max` seconds.
    Range {
        /// Lower bound.
        min: u32,
        /// Upper bound.
        max: u32,
    },
}

#[derive(Deserialize)]
#[serde(untagged)]
enum RetryAfterRepr {
    Fixed(u32),
    Range(Vec<u32>),
}

impl TryFrom<RetryAfterRepr> for RetryAfter {
    type Error = String;
    fn try_from(r: RetryAfterRepr) -> Result<Self, String> {
        match r {
            RetryAfterRepr::Fixed(0) => Ok(RetryAfter::Off),
            RetryAfterRepr::Fixed(n) => Ok(RetryAfter::Fixed(n)),
            RetryAfterRepr::Range(v) => match v.as_slice() {
                [min, max] if min <= max => Ok(RetryAfter::Range {
                    min: *min,
                    max: *max,
                }),
                _ => Err("retry_after must be N or [min, max] with min <= max".to_string()),
            },
        }
    }
}

/// Path handling (`path_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "IntOrName")]
pub enum PathMode {
    /// 0: stored, never echoed.
    Off,
    /// 1: echoed when the UA supports `path`.
    Lazy,
    /// 2: echoed when supported, else 420.
    Strict,
}

/// RFC 5626 outbound support (`outbound_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "IntOrName")]
pub enum OutboundMode {
    /// 0: no outbound (`Require: outbound` gives 420).
    None,
    /// 1: outbound supported.
    Supported,
    /// 2: outbound required (UAs without `Supported: outbound` get 421).
    Required,
}

/// When `reg-id` is honoured (`regid_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "IntOrName")]
pub enum RegIdMode {
    /// 0: whenever `+sip.instance` is present.
    Always,
    /// 1: only when the first hop supports outbound.
    Outbound,
}

/// When the source address is stored as `received` (`save_received`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(try_from = "IntOrName")]
pub enum SaveReceived {
    /// Never.
    Never,
    /// When the Contact does not match the source address, or on TCP/TLS/WS/WSS.
    Nat,
    /// Always.
    Always,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum IntOrName {
    Int(i64),
    Name(String),
}

fn pick<T: Copy>(r: IntOrName, table: &[(i64, &str, T)], what: &str) -> Result<T, String> {
    let found = match &r {
        IntOrName::Int(n) => table.iter().find(|e| e.0 == *n),
        IntOrName::Name(s) => table.iter().find(|e| e.1.eq_ignore_ascii_case(s)),
    };
    found.map(|e| e.2).ok_or_else(|| {
        let names: Vec<String> = table.iter().map(|e| format!("{}/{}", e.0, e.1)).collect();
        format!("{what} must be one of {}", names.join(", "))
    })
}

impl TryFrom<IntOrName> for PathMode {
    type Error = String;
    fn try_from(r: IntOrName) -> Result<Self, String> {
        pick(
            r,
            &[
                (0, "off", PathMode::Off),
                (1, "lazy", PathMode::Lazy),
                (2, "strict", PathMode::Strict),
            ],
            "path_mode",
        )
    }
}

impl TryFrom<IntOrName> for OutboundMode {
    type Error = String;
    fn try_from(r: IntOrName) -> Result<Self, String> {
        pick(
            r,
            &[
                (0, "none", OutboundMode::None),
                (1, "supported", OutboundMode::Supported),
                (2, "required", OutboundMode::Required),
            ],
            "outbound_mode",
        )
    }
}

impl TryFrom<IntOrName> for RegIdMode {
    type Error = String;
    fn try_from(r: IntOrName) -> Result<Self, String> {
        pick(
            r,
            &[
                (0, "always", RegIdMode::Always),
                (1, "outbound", RegIdMode::Outbound),
            ],
            "regid_mode",
        )
    }
}

impl TryFrom<IntOrName> for SaveReceived {
    type Error = String;
    fn try_from(r: IntOrName) -> Result<Self, String> {
        pick(
            r,
            &[
                (0, "never", SaveReceived::Never),
                (1, "nat", SaveReceived::Nat),
                (2, "always", SaveReceived::Always),
            ],
            "save_received",
        )
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Flag {
    Bool(bool),
    Int(i64),
}

fn flag<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match Flag::deserialize(d)? {
        Flag::Bool(b) => Ok(b),
        Flag::Int(0) => Ok(false),
        Flag::Int(1) => Ok(true),
        Flag::Int(n) => Err(serde::de::Error::custom(format!(
            "expected 0, 1, true or false, got {n}"
        ))),
    }
}
