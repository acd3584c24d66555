//! `auth-digest`: SIP digest authentication (RFC 2617, RFC 7616/8760: MD5 and SHA-256,
//! `qop=auth`), the way Kamailio's `auth` + `auth_db` modules and the `route[AUTH]` of
//! its default config do it:
//!
//! - `REGISTER` is authenticated against `Authorization` and challenged with
//!   `401 Unauthorized` + `WWW-Authenticate`; other requests against
//!   `Proxy-Authorization`, challenged with `407 Proxy Authentication Required` +
//!   `Proxy-Authenticate` (Kamailio `auth_check` / `auth_challenge`).
//! - Credentials come from the host's subscriber store (`weir_sdk::subscribers`):
//!   plain password or stored HA1 (MD5 and SHA-256).
//! - Nonces are Kamailio's (`base64(expire|since|MD5(expire|since|secret))`), usable
//!   again until they expire; an expired nonce of ours gets a `stale=true` challenge.
//! - After success the used credentials are removed (`consume_credentials`) except for
//!   REGISTER and PUBLISH, and optionally the identity is bound to the stream connection
//!   so later requests on it from the same user pass unchallenged.
//!
//! The module never panics on message content and never tells a client whether a user
//! exists. See README.md for params, the SIP exchange and the Kamailio mapping.

use std::cell::RefCell;

use serde::Deserialize;
use weir_sdk::subscribers::{self, Ha1Lookup};
use weir_sdk::{
    clock, connections, export_module, kv, log, names, Error, HeaderSet, Message, Module, Status,
    Verdict,
};

mod bytes;
pub mod credentials;
pub mod digest;
#[cfg(test)]
mod fuzz;
pub mod nonce;
pub mod uri;

pub use credentials::{DigestCredentials, Malformed};
pub use digest::{Algorithm, Ha2Cache, HexHash};
pub use nonce::{NonceCheck, NonceKey};

/// Positions in the [`HeaderSet`] a request is read with.
const FROM: usize = 0;
const TO: usize = 1;
/// `Authorization` for REGISTER, `Proxy-Authorization` for other requests.
const CREDENTIALS: usize = 2;

/// kv key of the generated secret shared by every instance of the module.
pub const SECRET_KEY: &str = "nonce-secret";
/// Methods that always pass (Kamailio: ACK, CANCEL and PRACK are never challenged).
pub const NEVER_CHALLENGED: [&str; 3] = ["ACK", "CANCEL", "PRACK"];

// === Config ===

/// The module's params (see README.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The realm; absent: the From domain of each request (Kamailio `"$fd"`).
    #[serde(default)]
    pub realm: Option<String>,
    /// The nonce key; absent: generated once and kept in kv for every instance.
    #[serde(default)]
    pub secret: Option<String>,
    /// Nonce lifetime in seconds.
    #[serde(default = "default_nonce_expire")]
    pub nonce_expire: u64,
    /// Tolerance, in seconds, for a nonce created in the future (clock skew).
    #[serde(default = "default_max_drift")]
    pub nonce_auth_max_drift: u64,
    /// Algorithms offered (one challenge header each, in this order); absent: MD5
    /// without an `algorithm=` param (Kamailio's default).
    #[serde(default)]
    pub algorithm: Option<Vec<String>>,
    /// `"auth"` or `""` (no qop).
    #[serde(default = "default_qop")]
    pub qop: String,
    /// Methods authenticated; empty: all (ACK, CANCEL, PRACK always pass).
    #[serde(default)]
    pub methods: Vec<String>,
    /// Auth user must equal the From user (and To for REGISTER).
    #[serde(default = "default_true")]
    pub check_identity: bool,
    /// Remove the used credentials except for REGISTER and PUBLISH.
    #[serde(default = "default_true")]
    pub consume_credentials: bool,
    /// Connection-id trust (see README.md).
    #[serde(default)]
    pub trust_connection: bool,
    /// From domains whose non-REGISTER requests are authenticated; empty: all.
    #[serde(default)]
    pub local_domains: Vec<String>,
    /// Authenticate in-dialog requests (To tag present) too.
    #[serde(default)]
    pub authenticate_in_dialog: bool,
    /// What a wrong password (or unknown user) gets: `"challenge"` or `"forbidden"`.
    #[serde(default = "default_on_failure")]
    pub on_failure: String,
    /// Reason phrase of the 401.
    #[serde(default = "default_reason_401")]
    pub reason_401: String,
    /// Reason phrase of the 407.
    #[serde(default = "default_reason_407")]
    pub reason_407: String,
    /// Reason phrase of the 403 for an identity mismatch (and `on_failure = "forbidden"`).
    #[serde(default = "default_reason_403")]
    pub reason_403: String,
}

fn default_nonce_expire() -> u64 {
    300
}
fn default_max_drift() -> u64 {
    3
}
fn default_qop() -> String {
    "auth".to_string()
}
fn default_true() -> bool {
    true
}
fn default_on_failure() -> String {
    "challenge".to_string()
}
fn default_reason_401() -> String {
    "Unauthorized".to_string()
}
fn default_reason_407() -> String {
    "Proxy Authentication Required".to_string()
}
fn default_reason_403() -> String {
    "Forbidden auth ID".to_string()
}

// === AuthDigest ===

/// The module: config validated, nonce key ready.
#[derive(Debug)]
pub struct AuthDigest {
    realm: Option<String>,
    key: NonceKey,
    nonce_expire: u64,
    max_drift: u64,
    /// Offered algorithms, in order.
    algorithms: Vec<Algorithm>,
    /// Print `algorithm=` in challenges (false only for the implicit default).
    print_algorithm: bool,
    qop_auth: bool,
    methods: Vec<String>,
    check_identity: bool,
    consume: bool,
    trust_connection: bool,
    local_domains: Vec<String>,
    in_dialog: bool,
    forbid_on_failure: bool,
    reason_401: String,
    reason_407: String,
    reason_403: String,
    /// HA2 of the last request checked (the same for every REGISTER).
    ha2: RefCell<Ha2Cache>,
}

/// The outcome of checking one request's credentials (Kamailio's return codes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Authenticated as `username` in the realm (1).
    Authenticated {
        /// The auth username.
        username: String,
    },
    /// No credentials for the realm (-5): challenge.
    NoCredentials,
    /// The nonce is ours but expired (-4): challenge with `stale=true`.
    Stale,
    /// Nonce not ours (-1), wrong password (-2) or unknown user (-3): challenge (or
    /// 403 with `on_failure = "forbidden"`).
    Failed,
    /// Auth user differs from the From (To) user (-8): 403.
    IdentityMismatch,
    /// Credentials that do not parse: 400.
    Malformed(String),
    /// The subscriber store failed: 500.
    StoreFailed(String),
}

impl Module for AuthDigest {
    type Config = Config;

    fn init(config: Config) -> Result<Self, Error> {
        let realm = match config.realm {
            Some(r) => {
                let r = r.trim().to_string();
                if r.is_empty() || !quotable(&r) {
                    return Err(Error::new(
                        "realm: must not be empty nor hold `\"`, `\\`, CR or LF",
                    ));
                }
                Some(r)
            }
            None => None,
        };
        if config.nonce_expire == 0 || config.nonce_expire > 7 * 24 * 3600 {
            return Err(Error::new("nonce_expire: must be 1 to 604800 seconds"));
        }
        if config.nonce_auth_max_drift > 3600 {
            return Err(Error::new(
                "nonce_auth_max_drift: must be at most 3600 seconds",
            ));
        }
        let (algorithms, print_algorithm) = match &config.algorithm {
            None => (vec![Algorithm::Md5], false),
            Some(list) => {
                if list.is_empty() {
                    return Err(Error::new("algorithm: list at least one algorithm"));
                }
                let mut algs = Vec::new();
                for a in list {
                    let alg = Algorithm::parse(a.trim()).ok_or_else(|| {
                        Error::new(format!("algorithm: `{a}` is not supported (MD5, SHA-256)"))
                    })?;
                    if algs.contains(&alg) {
                        return Err(Error::new(format!("algorithm: `{a}` listed twice")));
                    }
                    algs.push(alg);
                }
                (algs, true)
            }
        };
        let qop_auth = match config.qop.trim() {
            "auth" => true,
            "" => false,
            other => {
                return Err(Error::new(format!(
                    "qop: `{other}` is not supported (\"auth\" or \"\")"
                )))
            }
        };
        for m in &config.methods {
            if !names::is_valid(m) {
                return Err(Error::new(format!("methods: `{m}` is not a method name")));
            }
        }
        let forbid_on_failure = match config.on_failure.as_str() {
            "challenge" => false,
            "forbidden" => true,
            other => {
                return Err(Error::new(format!(
                    "on_failure: `{other}` is not \"challenge\" or \"forbidden\""
                )))
            }
        };
        for (name, reason) in [
            ("reason_401", &config.reason_401),
            ("reason_407", &config.reason_407),
            ("reason_403", &config.reason_403),
        ] {
            if !names::is_valid_value(reason) {
                return Err(Error::new(format!("{name}: must not hold CR or LF")));
            }
        }
        let mut local_domains = Vec::new();
        for d in &config.local_domains {
            let d = d.trim().to_ascii_lowercase();
            if d.is_empty() {
                return Err(Error::new("local_domains: empty domain"));
            }
            local_domains.push(d);
        }
        let key = NonceKey::new(secret(config.secret.as_deref())?.as_bytes());
        Ok(Self {
            realm,
            key,
            nonce_expire: config.nonce_expire,
            max_drift: config.nonce_auth_max_drift,
            algorithms,
            print_algorithm,
            qop_auth,
            methods: config.methods,
            check_identity: config.check_identity,
            consume: config.consume_credentials,
            trust_connection: config.trust_connection,
            local_domains,
            in_dialog: config.authenticate_in_dialog,
            forbid_on_failure,
            reason_401: config.reason_401,
            reason_407: config.reason_407,
            reason_403: config.reason_403,
            ha2: RefCell::new(Ha2Cache::default()),
        })
    }

    fn on_request(&self, msg: &mut Message) -> Result<Verdict, Error> {
        let method = msg.method();
        if NEVER_CHALLENGED.contains(&method.as_str())
            || (!self.methods.is_empty() && !self.methods.contains(&method))
        {
            return Ok(Verdict::Continue);
        }
        let register = method == "REGISTER";
        let (header, names) = if register {
            ("Authorization", "From,To,Authorization")
        } else {
            ("Proxy-Authorization", "From,To,Proxy-Authorization")
        };
        // Everything read from the headers, in one host call.
        let set = msg.header_set(names);
        if !self.in_dialog && !register && has_to_tag(set.first(TO)) {
            return Ok(Verdict::Continue);
        }
        let Some((from_user, from_domain)) = set.first(FROM).and_then(uri::user_host) else {
            return Ok(Verdict::reply_with(
                Status::BAD_REQUEST,
                "Bad From header",
                Vec::<(String, String)>::new(),
            ));
        };
        // Kamailio's default config: `if (is_method("REGISTER") || from_uri==myself)`.
        if !register
            && !self.local_domains.is_empty()
            && !self.local_domains.iter().any(|d| *d == *from_domain)
        {
            return Ok(Verdict::Continue);
        }
        let realm: &str = self.realm.as_deref().unwrap_or(&from_domain);

        if self.trusted(msg, from_user, &from_domain) {
            self.consume_if(msg, &method, header, realm)?;
            return Ok(Verdict::Continue);
        }

        match self.check(msg, &set, &method, realm, from_user, &from_domain) {
            Outcome::Authenticated { username } => {
                if self.trust_connection {
                    let id = msg.connection_id();
                    if id != 0 {
                        connections::bind(id, &format!("{username}@{realm}"));
                    }
                }
                self.consume_if(msg, &method, header, realm)?;
                Ok(Verdict::Continue)
            }
            Outcome::NoCredentials => Ok(self.challenge(register, realm, false)),
            Outcome::Stale => Ok(self.challenge(register, realm, true)),
            Outcome::Failed if self.forbid_on_failure => Ok(self.forbidden()),
            Outcome::Failed => Ok(self.challenge(register, realm, false)),
            Outcome::IdentityMismatch => Ok(self.forbidden()),
            Outcome::Malformed(why) => {
                log::info!("auth-digest: malformed {header} in {method}: {why}");
                Ok(Verdict::reply_with(
                    Status::BAD_REQUEST,
                    "Bad Credentials",
                    Vec::<(String, String)>::new(),
                ))
            }
            Outcome::StoreFailed(why) => {
                log::error!("auth-digest: subscriber store failed: {why}");
                // Answered here rather than with an error: an `on_error = "skip"` policy
                // must never let an unauthenticated request through.
                Ok(Verdict::reply(Status::SERVER_INTERNAL_ERROR))
            }
        }
    }
}

export_module!(AuthDigest);

impl AuthDigest {
    /// Check the request's credentials for `realm` (Kamailio `auth_check`). `set` holds
    /// the request's From, To and credentials header, as [`on_request`] reads them.
    ///
    /// [`on_request`]: Module::on_request
    pub fn check(
        &self,
        msg: &Message,
        set: &HeaderSet,
        method: &str,
        realm: &str,
        from_user: &str,
        from_domain: &str,
    ) -> Outcome {
        // Several credentials may travel (one per proxy realm): ours is the first whose
        // realm matches (Kamailio find_credentials).
        let Some(parsed) = set
            .values(CREDENTIALS)
            .find_map(|v| credentials::parse_for_realm(v, realm))
        else {
            // A header that is not even Digest credentials for any realm is malformed.
            if let Some(v) = set.first(CREDENTIALS) {
                if let Err(e) = credentials::parse(v) {
                    if e != Malformed::NotDigest {
                        return Outcome::Malformed(e.to_string());
                    }
                }
            }
            return Outcome::NoCredentials;
        };
        let c = match parsed {
            Ok(c) => c,
            Err(e) => return Outcome::Malformed(e.to_string()),
        };
        let alg = match c.algorithm.as_deref() {
            None => Algorithm::Md5,
            Some(a) => match Algorithm::parse(a) {
                Some(alg) => alg,
                None => return Outcome::Malformed(format!("algorithm `{a}` not supported")),
            },
        };
        if !self.algorithms.contains(&alg) {
            // Not offered: answer with the offer.
            return Outcome::NoCredentials;
        }
        let qop = match c.qop.as_deref() {
            None => None,
            Some(q) if q.eq_ignore_ascii_case("auth") => {
                let (Some(nc), Some(cnonce)) = (c.nc.as_deref(), c.cnonce.as_deref()) else {
                    return Outcome::Malformed("qop without nc or cnonce".into());
                };
                if nc.len() != 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Outcome::Malformed("nc is not 8 hex digits".into());
                }
                Some((nc, cnonce))
            }
            Some(q) => return Outcome::Malformed(format!("qop `{q}` not supported")),
        };
        if c.response.len() != alg.hex_len() {
            return Outcome::Malformed(format!("response is not {} hex digits", alg.hex_len()));
        }
        let now_s = clock::now_ms() / 1000;
        match self.key.check(&c.nonce, now_s, self.max_drift) {
            NonceCheck::Valid => {}
            NonceCheck::Stale => return Outcome::Stale,
            NonceCheck::Invalid => return Outcome::Failed,
        }
        // The HA1 alone: a fixed-size answer, no password or string crossing over.
        let ha1 = match subscribers::ha1(&c.username, realm, alg.hash_algorithm()) {
            Ok(Ha1Lookup::Found(ha1)) => ha1,
            // Unknown user: the same answer as a wrong password.
            Ok(Ha1Lookup::Unknown) => return Outcome::Failed,
            Ok(Ha1Lookup::NoHa1) => {
                log::warn!(
                    "auth-digest: {}@{realm} has no password or {} HA1",
                    c.username,
                    alg.name()
                );
                return Outcome::Failed;
            }
            Err(e) => return Outcome::StoreFailed(e.to_string()),
        };
        let ha1 = HexHash::new(ha1.as_bytes());
        let ha2 = self.ha2.borrow_mut().get(alg, method, &c.uri);
        let expected = alg.response_with_ha2(ha1, &c.nonce, &ha2, qop);
        if !digest::ct_eq_lowercase(expected.as_bytes(), c.response.as_bytes()) {
            log::info!("auth-digest: wrong response from {}@{realm}", c.username);
            return Outcome::Failed;
        }
        if self.check_identity
            && !self.identity_ok(msg, set, method, &c.username, realm, from_user, from_domain)
        {
            log::info!(
                "auth-digest: {}@{realm} authenticated but From is {from_user}@{from_domain}",
                c.username
            );
            return Outcome::IdentityMismatch;
        }
        Outcome::Authenticated {
            username: c.username.into_owned(),
        }
    }

    /// Kamailio `auth_check` flag 1: the auth user is the From user (and To user for
    /// REGISTER, R-URI user too for PUBLISH), and those URIs' domains are the realm.
    #[allow(clippy::too_many_arguments)]
    fn identity_ok(
        &self,
        msg: &Message,
        set: &HeaderSet,
        method: &str,
        username: &str,
        realm: &str,
        from_user: &str,
        from_domain: &str,
    ) -> bool {
        // The domains are usually equal as they are (the realm is the From domain by
        // default, hosts come lowercased): a plain comparison first.
        let same = |user: &str, domain: &str| {
            user == username && (domain == realm || domain.eq_ignore_ascii_case(realm))
        };
        if !same(from_user, from_domain) {
            return false;
        }
        if (method == "REGISTER" || method == "PUBLISH")
            && !set
                .first(TO)
                .and_then(uri::user_host)
                .is_some_and(|(u, d)| same(u, &d))
        {
            return false;
        }
        if method == "PUBLISH" {
            let ruri = msg.request_uri();
            if !uri::uri_user_host(&ruri).is_some_and(|(u, d)| same(u, &d)) {
                return false;
            }
        }
        true
    }

    /// Connection-id trust: the request came on a stream connection bound to its From
    /// identity by an earlier successful authentication.
    fn trusted(&self, msg: &Message, from_user: &str, from_domain: &str) -> bool {
        if !self.trust_connection {
            return false;
        }
        let id = msg.connection_id();
        if id == 0 {
            return false;
        }
        connections::identity(id).is_some_and(|bound| {
            bound
                .rsplit_once('@')
                .is_some_and(|(u, d)| u == from_user && d.eq_ignore_ascii_case(from_domain))
        })
    }

    /// Kamailio `consume_credentials` (not for REGISTER and PUBLISH, as in its default
    /// config): remove our credentials, keep other realms'.
    fn consume_if(
        &self,
        msg: &mut Message,
        method: &str,
        header: &str,
        realm: &str,
    ) -> Result<(), Error> {
        if !self.consume || method == "REGISTER" || method == "PUBLISH" {
            return Ok(());
        }
        let values = msg.header_values(header);
        if values.is_empty() {
            return Ok(());
        }
        let mut removed = false;
        let keep: Vec<&String> = values
            .iter()
            .filter(|v| {
                let ours = !removed && credentials::realm_of(v).as_deref() == Some(realm);
                removed |= ours;
                !ours
            })
            .collect();
        if !removed {
            return Ok(());
        }
        msg.remove_header(header)?;
        for v in keep {
            msg.add_header(header, v)?;
        }
        Ok(())
    }

    /// The challenge: one header per offered algorithm, same nonce (Kamailio
    /// `auth_challenge`).
    pub fn challenge(&self, register: bool, realm: &str, stale: bool) -> Verdict {
        let nonce = self.key.create(clock::now_ms() / 1000, self.nonce_expire);
        let (code, reason, name) = if register {
            (Status::UNAUTHORIZED, &self.reason_401, "WWW-Authenticate")
        } else {
            (
                Status::PROXY_AUTHENTICATION_REQUIRED,
                &self.reason_407,
                "Proxy-Authenticate",
            )
        };
        let headers = self
            .algorithms
            .iter()
            .map(|alg| (name, self.challenge_value(realm, &nonce, stale, *alg)));
        Verdict::reply_with(code, reason.as_str(), headers)
    }

    /// `Digest realm="<r>", nonce="<n>"[, qop="auth"][, stale=true][, algorithm=<A>]`.
    pub fn challenge_value(&self, realm: &str, nonce: &str, stale: bool, alg: Algorithm) -> String {
        let mut v = String::with_capacity(96 + realm.len() + nonce.len());
        v.push_str("Digest realm=\"");
        v.push_str(realm);
        v.push_str("\", nonce=\"");
        v.push_str(nonce);
        v.push('"');
        if self.qop_auth {
            v.push_str(", qop=\"auth\"");
        }
        if stale {
            v.push_str(", stale=true");
        }
        if self.print_algorithm {
            v.push_str(", algorithm=");
            v.push_str(alg.name());
        }
        v
    }

    fn forbidden(&self) -> Verdict {
        Verdict::reply_with(
            Status::FORBIDDEN,
            self.reason_403.as_str(),
            Vec::<(String, String)>::new(),
        )
    }
}

/// True if the To header value carries a tag (an in-dialog request).
fn has_to_tag(to: Option<&str>) -> bool {
    to.is_some_and(|to| {
        // Params after the URI (after `>` when there is one).
        let params = match to.rfind('>') {
            Some(i) => &to[i + 1..],
            None => to,
        };
        params.split(';').skip(1).any(|p| {
            p.trim_ascii()
                .get(..4)
                .is_some_and(|t| t.eq_ignore_ascii_case("tag="))
        })
    })
}

/// True if `s` can go inside a quoted string unescaped.
fn quotable(s: &str) -> bool {
    !s.contains(['"', '\\', '\r', '\n'])
}

/// The nonce secret: the param, or the one kept in kv (generated by the first instance
/// that found none).
fn secret(param: Option<&str>) -> Result<String, Error> {
    if let Some(s) = param {
        if s.is_empty() {
            return Err(Error::new("secret: must not be empty"));
        }
        if s.len() < 16 {
            log::warn!("auth-digest: a secret shorter than 16 bytes is easy to guess");
        }
        return Ok(s.to_string());
    }
    let read = || {
        kv::get_string(SECRET_KEY)
            .map_err(|e| Error::from(e).context("secret: reading the shared secret from kv"))
    };
    if let Some(s) = read()?.filter(|s| !s.is_empty()) {
        return Ok(s);
    }
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| Error::new(format!("secret: no randomness to generate one: {e}")))?;
    let generated = digest::hex(&bytes);
    kv::set(SECRET_KEY, &generated, None)
        .map_err(|e| Error::from(e).context("secret: storing the generated secret in kv"))?;
    // Read back: if another instance stored one at the same time, both use the winner.
    Ok(read()?.unwrap_or(generated))
}

// The test harness exists off wasm only. (Two attributes, not `all(test, ..)`:
// clippy's allow-unwrap-in-tests only recognises a plain `cfg(test)`.)
#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod tests;
