//! `gzcompress`: Kamailio's gzcompress for SIP bodies, per next hop. Bodies marked with
//! `Content-Encoding: deflate` are zlib streams (RFC 1950, Kamailio's `compress` /
//! `uncompress`), so a Kamailio node and a Weir node exchange compressed bodies.
//!
//! The module sits in a route's request chain (`on_request`) and reply chain
//! (`on_reply`) and makes each message fit where it goes next:
//!
//! - a plain body at least `min_size` long is **compressed** (and the header set) when
//!   `compress = "always"`, or when `compress = "if-accepted"` and the next hop is known
//!   to accept the coding (listed in `peers_accepting`, or learned from an
//!   `Accept-Encoding` it sent);
//! - a compressed body is **inflated** (and the header removed) when
//!   `decompress = "always"`, or when `decompress = "if-not-accepted"` and the next hop
//!   is not known to accept it.
//!
//! A request whose compressed body does not inflate gets `400 Bad Compressed Body`, one
//! that inflates past `max_inflated_size` gets `413`; a bad reply body is passed on or
//! dropped (`bad_reply`). Nothing here panics on message content. See README.md.

use std::time::Duration;

use serde::Deserialize;
use weir_sdk::{export_module, kv, log, names, EditError, Error, Header, Message, Module, Verdict};

mod codec;
mod encoder;
mod peer;

pub use codec::{deflate, inflate, InflateError};
pub use peer::{next_hop, normalize_peer, Peer};

// === Config ===

/// The module's params (see README.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The header that marks a compressed body (Kamailio `header_name`).
    #[serde(default = "default_header_name")]
    pub header_name: String,
    /// The coding written in it and looked for (Kamailio `header_value`).
    #[serde(default = "default_header_value")]
    pub header_value: String,
    /// Bodies shorter than this (bytes) are never compressed.
    #[serde(default = "default_min_size")]
    pub min_size: u32,
    /// When to compress a plain body.
    #[serde(default)]
    pub compress: Compress,
    /// When to inflate a compressed body.
    #[serde(default)]
    pub decompress: Decompress,
    /// zlib level, 1 (fast) to 9 (small); 6 is zlib's default.
    #[serde(default = "default_level")]
    pub level: u8,
    /// Largest inflated body accepted, bytes (zip-bomb bound).
    #[serde(default = "default_max_inflated")]
    pub max_inflated_size: u32,
    /// Peers (`host[:port]`) known to accept the coding.
    #[serde(default)]
    pub peers_accepting: Vec<String>,
    /// How long a peer that sent `Accept-Encoding` with the coding is remembered, in
    /// seconds; 0 turns learning off.
    #[serde(default = "default_learn_ttl")]
    pub learn_ttl_s: u32,
    /// What to do with a reply whose compressed body cannot be inflated.
    #[serde(default)]
    pub bad_reply: BadReply,
}

/// When a plain body is compressed.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Compress {
    /// Always (the peer is known to take it: Kamailio's `append_hf` of the header).
    Always,
    /// When the next hop accepts the coding (the default).
    #[default]
    IfAccepted,
    /// Never.
    Never,
}

/// When a compressed body is inflated.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decompress {
    /// Always: later modules (and the next hop) see plain text.
    Always,
    /// When the next hop is not known to accept the coding (the default).
    #[default]
    IfNotAccepted,
    /// Never.
    Never,
}

/// What happens to a reply whose compressed body is bad.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BadReply {
    /// Relay it unchanged (the default; a warning is logged).
    #[default]
    Pass,
    /// Drop it (provisional replies only on stateful routes: the host always relays
    /// finals there).
    Drop,
}

fn default_header_name() -> String {
    "Content-Encoding".to_string()
}

fn default_header_value() -> String {
    "deflate".to_string()
}

fn default_min_size() -> u32 {
    256
}

fn default_level() -> u8 {
    6
}

fn default_max_inflated() -> u32 {
    65_536
}

fn default_learn_ttl() -> u32 {
    3600
}

/// The largest `max_inflated_size` accepted (the host's largest message).
pub const MAX_INFLATED_LIMIT: u32 = 16 * 1024 * 1024;

// === GzCompress ===

/// The module: the config, validated.
#[derive(Debug)]
pub struct GzCompress {
    header_name: String,
    header_value: String,
    min_size: usize,
    compress: Compress,
    decompress: Decompress,
    level: u8,
    max_inflated: usize,
    peers: Vec<Peer>,
    learn_ttl: Option<Duration>,
    bad_reply: BadReply,
}

/// What the body's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Coding {
    /// No encoding header: a plain body.
    Plain,
    /// Exactly our coding: a zlib stream.
    Ours,
    /// Some other coding (or ours stacked with others): left alone.
    Other,
}

impl Module for GzCompress {
    type Config = Config;

    fn init(config: Config) -> Result<Self, Error> {
        let header_name = config.header_name.trim().to_string();
        if !names::is_valid(&header_name) || names::is_protected(&header_name) {
            return Err(Error::new(format!(
                "header_name: `{header_name}` is not a header name this module can set"
            )));
        }
        let header_value = config.header_value.trim().to_string();
        if header_value.is_empty()
            || !header_value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._+!~*'%".contains(&b))
        {
            return Err(Error::new(format!(
                "header_value: `{header_value}` is not a content-coding token"
            )));
        }
        if !(1..=9).contains(&config.level) {
            return Err(Error::new(format!(
                "level: {} is not a zlib level (1 to 9)",
                config.level
            )));
        }
        if config.max_inflated_size == 0 || config.max_inflated_size > MAX_INFLATED_LIMIT {
            return Err(Error::new(format!(
                "max_inflated_size: {} is not between 1 and {MAX_INFLATED_LIMIT}",
                config.max_inflated_size
            )));
        }
        if config.compress == Compress::Always && config.decompress == Decompress::Always {
            return Err(Error::new(
                "compress = \"always\" and decompress = \"always\" contradict each other: \
                 use two chain entries",
            ));
        }
        let peers = config
            .peers_accepting
            .iter()
            .map(|p| {
                normalize_peer(p).ok_or_else(|| {
                    Error::new(format!(
                        "peers_accepting: `{p}` is not host[:port] (IPv6 as [addr]:port)"
                    ))
                })
            })
            .collect::<Result<_, Error>>()?;
        let learn_ttl =
            (config.learn_ttl_s > 0).then(|| Duration::from_secs(u64::from(config.learn_ttl_s)));
        Ok(Self {
            header_name,
            header_value,
            min_size: usize::try_from(config.min_size).unwrap_or(usize::MAX),
            compress: config.compress,
            decompress: config.decompress,
            level: config.level,
            max_inflated: usize::try_from(config.max_inflated_size).unwrap_or(usize::MAX),
            peers,
            learn_ttl,
            bad_reply: config.bad_reply,
        })
    }

    fn on_request(&self, msg: &mut Message) -> Result<Verdict, Error> {
        let headers = msg.headers();
        self.learn(msg, &headers);
        match self.normalize(msg, &headers) {
            Ok(()) => Ok(Verdict::Continue),
            Err(Failure::Edit(e)) => Err(Error::from(e).context("gzcompress: setting the body")),
            Err(fail) => {
                log::info!(
                    "gzcompress: refusing {} from {}: {}",
                    msg.method(),
                    msg.source(),
                    fail.reason()
                );
                // An ACK cannot be answered.
                if msg.method() == "ACK" {
                    return Ok(Verdict::Drop);
                }
                Ok(Verdict::reply_with(
                    fail.status(),
                    fail.reason(),
                    std::iter::empty::<Header>(),
                ))
            }
        }
    }

    fn on_reply(&self, msg: &mut Message) -> Result<Verdict, Error> {
        let headers = msg.headers();
        self.learn(msg, &headers);
        match self.normalize(msg, &headers) {
            Ok(()) => Ok(Verdict::Continue),
            Err(Failure::Edit(e)) => Err(Error::from(e).context("gzcompress: setting the body")),
            Err(fail) => {
                log::warn!(
                    "gzcompress: {} {} from {}: {} ({})",
                    msg.status(),
                    msg.reason(),
                    msg.source(),
                    fail.reason(),
                    match self.bad_reply {
                        BadReply::Pass => "relayed unchanged",
                        BadReply::Drop => "dropped",
                    }
                );
                Ok(match self.bad_reply {
                    BadReply::Pass => Verdict::Continue,
                    BadReply::Drop => Verdict::Drop,
                })
            }
        }
    }
}

export_module!(GzCompress);

/// Why a body could not be made to fit the next hop.
#[derive(Debug)]
enum Failure {
    /// The compressed body is not a valid zlib stream.
    Corrupt,
    /// It inflates past `max_inflated_size`.
    TooLarge,
    /// The host refused the edit (the message would grow past its size limit).
    Edit(EditError),
}

impl Failure {
    fn status(&self) -> u16 {
        match self {
            Failure::Corrupt => 400,
            Failure::TooLarge => 413,
            Failure::Edit(_) => 500,
        }
    }

    fn reason(&self) -> &'static str {
        match self {
            Failure::Corrupt => "Bad Compressed Body",
            Failure::TooLarge => "Decompressed Body Too Large",
            Failure::Edit(_) => "Body Edit Refused",
        }
    }
}

impl GzCompress {
    /// Compress or inflate the body for where the message goes next.
    fn normalize(&self, msg: &mut Message, headers: &[Header]) -> Result<(), Failure> {
        let coding = self.coding(headers);
        match coding {
            Coding::Other => Ok(()),
            Coding::Ours => {
                let inflate_it = match self.decompress {
                    Decompress::Always => true,
                    Decompress::Never => false,
                    Decompress::IfNotAccepted => !self.accepts(msg, headers),
                };
                if inflate_it {
                    self.inflate_body(msg)
                } else {
                    Ok(())
                }
            }
            Coding::Plain => {
                let compress_it = match self.compress {
                    Compress::Always => true,
                    Compress::Never => false,
                    Compress::IfAccepted => self.accepts(msg, headers),
                };
                if compress_it {
                    self.compress_body(msg).map_err(Failure::Edit)
                } else {
                    Ok(())
                }
            }
        }
    }

    fn inflate_body(&self, msg: &mut Message) -> Result<(), Failure> {
        let body = msg.body();
        if body.is_empty() {
            // Nothing was compressed: only the header goes.
            msg.remove_header(&self.header_name)
                .map_err(Failure::Edit)?;
            return Ok(());
        }
        let plain = match inflate(&body, self.max_inflated) {
            Ok(plain) => plain,
            Err(InflateError::TooLarge) => return Err(Failure::TooLarge),
            Err(InflateError::Corrupt) => return Err(Failure::Corrupt),
        };
        msg.set_body(&plain).map_err(Failure::Edit)?;
        msg.remove_header(&self.header_name)
            .map_err(Failure::Edit)?;
        Ok(())
    }

    fn compress_body(&self, msg: &mut Message) -> Result<(), EditError> {
        let body = msg.body();
        if body.is_empty() || body.len() < self.min_size {
            return Ok(());
        }
        let packed = deflate(&body, self.level);
        // Compressing never makes a message bigger here: small or random bodies stay plain.
        if packed.len() >= body.len() {
            return Ok(());
        }
        msg.set_body(&packed)?;
        msg.set_header(&self.header_name, &self.header_value)
    }

    /// What the encoding header says. The header may list several codings; only our
    /// coding alone is one this module can undo.
    fn coding(&self, headers: &[Header]) -> Coding {
        let mut lines = headers
            .iter()
            .filter(|h| h.is(&self.header_name))
            .peekable();
        if lines.peek().is_none() {
            return Coding::Plain;
        }
        let codings: Vec<&str> = lines
            .flat_map(|h| h.value.split(','))
            .map(str::trim)
            .filter(|c| !c.is_empty())
            .collect();
        match codings.as_slice() {
            [] => Coding::Plain,
            [one] if one.eq_ignore_ascii_case(&self.header_value) => Coding::Ours,
            _ => Coding::Other,
        }
    }

    /// Whether the message's next hop is known to accept the coding.
    fn accepts(&self, msg: &Message, headers: &[Header]) -> bool {
        let Some(hop) = next_hop(msg, headers) else {
            return false;
        };
        if self.peers.iter().any(|p| p.matches(&hop)) {
            return true;
        }
        if self.learn_ttl.is_none() {
            return false;
        }
        match kv::get(&learn_key(&hop.key())) {
            Ok(found) => found.is_some(),
            Err(e) => {
                log::warn!("gzcompress: kv lookup for {} failed: {e}", hop.key());
                false
            }
        }
    }

    /// Remember (or forget) that the sender accepts the coding, from its
    /// `Accept-Encoding` (any message: requests for their replies, replies such as a
    /// 200 to OPTIONS for later requests).
    fn learn(&self, msg: &Message, headers: &[Header]) {
        let Some(ttl) = self.learn_ttl else {
            return;
        };
        let mut lines = headers
            .iter()
            .filter(|h| h.is("Accept-Encoding"))
            .peekable();
        if lines.peek().is_none() {
            return;
        }
        let accepted = lines.any(|h| accepts_coding(&h.value, &self.header_value));
        let source = msg.source();
        let key = learn_key(&Peer::from_address(&source.ip, source.port).key());
        let result = if accepted {
            kv::set(&key, b"1", Some(ttl))
        } else {
            kv::delete(&key).map(|_| ())
        };
        if let Err(e) = result {
            log::warn!("gzcompress: kv update for {source} failed: {e}");
        }
    }
}

fn learn_key(peer: &str) -> String {
    format!("accepts:{peer}")
}

/// Whether an `Accept-Encoding` value lists `coding` (or `*`) with a non-zero q.
pub fn accepts_coding(value: &str, coding: &str) -> bool {
    value.split(',').any(|item| {
        let mut parts = item.split(';');
        let name = parts.next().unwrap_or("").trim();
        if !(name.eq_ignore_ascii_case(coding) || name == "*") {
            return false;
        }
        let q = parts.find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim().eq_ignore_ascii_case("q").then(|| v.trim())
        });
        // q=0 refuses the coding; an unreadable q is taken as the default 1.
        q.is_none_or(|q| q.parse::<f32>().map_or(true, |q| q > 0.0))
    })
}

// Two attributes rather than `all(test, ..)`: clippy's `allow-unwrap-in-tests` only
// recognises a plain `cfg(test)`. The test harness exists off wasm only.
#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod tests;
