//! `sdpops`: SDP codec filtering with the semantics of Kamailio's sdpops module:
//! `sdp_keep_codecs_by_name/id`, `sdp_remove_codecs_by_name/id`, `sdp_remove_media`,
//! `sdp_remove_transport` and `sdp_remove_line_by_prefix`, configured once per chain
//! entry instead of called from a script.
//!
//! The module edits only bodies whose Content-Type is `application/sdp` (and, when
//! `multipart = true`, the `application/sdp` parts of a `multipart/*` body). Every line
//! it does not remove is written back byte for byte, line ends included; the host
//! rewrites Content-Length after `set_body`. A body that Kamailio's SDP parser would
//! refuse is left unchanged and logged. The module always returns `Continue`.
//! See README.md for the params, an example and the differences from Kamailio.

use serde::Deserialize;
use weir_sdk::{export_module, log, ApplyTo, Context, Error, Message, Module, Verdict};

pub mod mime;
pub mod sdp;

use mime::Kind;
use sdp::{Malformed, Ops, Sdp};

// === Config ===

/// The module's params (see README.md).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Keep only these codecs, by encoding name (`sdp_keep_codecs_by_name`).
    #[serde(default)]
    pub keep_codecs_by_name: Option<Vec<String>>,
    /// Keep only these payload types (`sdp_keep_codecs_by_id`).
    #[serde(default)]
    pub keep_codecs_by_id: Option<Vec<i64>>,
    /// Remove these codecs, by encoding name (`sdp_remove_codecs_by_name`).
    #[serde(default)]
    pub remove_codecs_by_name: Vec<String>,
    /// Remove these payload types (`sdp_remove_codecs_by_id`).
    #[serde(default)]
    pub remove_codecs_by_id: Vec<i64>,
    /// Restrict the codec edits and `remove_line_prefix` to streams of this media type.
    #[serde(default)]
    pub media_type: Option<String>,
    /// Remove the media sections of these media types (`sdp_remove_media`).
    #[serde(default)]
    pub remove_media: Vec<String>,
    /// Remove the media sections with these transport protocols
    /// (`sdp_remove_transport`).
    #[serde(default)]
    pub remove_transport: Vec<String>,
    /// Remove the lines that start with these prefixes (`sdp_remove_line_by_prefix`).
    #[serde(default)]
    pub remove_line_prefix: Vec<String>,
    /// Which messages to edit (default `both`: offers and answers travel both ways, and the route's `request` and `reply` chains decide which hooks run at all).
    #[serde(default = "both")]
    pub apply_to: ApplyTo,
    /// Also edit the `application/sdp` parts of multipart bodies.
    #[serde(default)]
    pub multipart: bool,
}

// === SdpOps ===

/// The module: the config, validated and normalised.
#[derive(Debug)]
pub struct SdpOps {
    ops: Ops,
    apply_to: ApplyTo,
    multipart: bool,
}

impl Module for SdpOps {
    type Config = Config;

    fn init(config: Config) -> Result<Self, Error> {
        let keep_names = match config.keep_codecs_by_name {
            Some(names) => Some(codec_names("keep_codecs_by_name", names, false)?),
            None => None,
        };
        let keep_ids = match config.keep_codecs_by_id {
            Some(ids) => Some(payload_types("keep_codecs_by_id", &ids, false)?),
            None => None,
        };
        let media_type = match config.media_type {
            Some(t) => Some(token("media_type", t)?),
            None => None,
        };
        let ops = Ops {
            remove_media: tokens("remove_media", config.remove_media)?,
            remove_transport: tokens("remove_transport", config.remove_transport)?,
            remove_ids: payload_types("remove_codecs_by_id", &config.remove_codecs_by_id, true)?,
            remove_names: codec_names("remove_codecs_by_name", config.remove_codecs_by_name, true)?,
            keep_ids,
            keep_names,
            media_type,
            line_prefixes: config
                .remove_line_prefix
                .into_iter()
                .map(line_prefix)
                .collect::<Result<_, _>>()?,
        };
        Ok(Self {
            ops,
            apply_to: config.apply_to,
            multipart: config.multipart,
        })
    }

    fn on_request(&self, msg: &mut Message) -> Result<Verdict, Error> {
        if self.apply_to.requests() {
            self.apply(msg)?;
        }
        Ok(Verdict::Continue)
    }

    fn on_reply(&self, msg: &mut Message) -> Result<Verdict, Error> {
        if self.apply_to.replies() {
            self.apply(msg)?;
        }
        Ok(Verdict::Continue)
    }
}

export_module!(SdpOps);

impl SdpOps {
    /// Edit the message's SDP: one Content-Type read, one body read if the type
    /// qualifies, and one `set_body` if something changed.
    fn apply(&self, msg: &mut Message) -> Result<(), Error> {
        if self.ops.is_empty() {
            return Ok(());
        }
        let Some(content_type) = msg.header("Content-Type") else {
            return Ok(());
        };
        let kind = mime::classify(&content_type);
        let edited = match kind {
            Kind::Other => return Ok(()),
            Kind::Multipart(_) | Kind::MultipartNoBoundary if !self.multipart => return Ok(()),
            Kind::MultipartNoBoundary => {
                warn_unchanged(msg, &mime::BadMultipart::NoBoundary);
                return Ok(());
            }
            Kind::Sdp => {
                let body = msg.body();
                if body.is_empty() {
                    return Ok(());
                }
                match self.edit(&body) {
                    Ok(edited) => edited,
                    Err(e) => {
                        warn_unchanged(msg, &e);
                        return Ok(());
                    }
                }
            }
            Kind::Multipart(boundary) => {
                let body = msg.body();
                if body.is_empty() {
                    return Ok(());
                }
                match mime::edit_sdp_parts(&body, &boundary, |part| self.edit(part)) {
                    Ok(edited) => edited,
                    Err(e) => {
                        warn_unchanged(msg, &e);
                        return Ok(());
                    }
                }
            }
        };
        if let Some(body) = edited {
            msg.set_body(body)
                .context("sdpops: replacing the SDP body")?;
        }
        Ok(())
    }

    /// One SDP body: the new body if an edit changed it.
    fn edit(&self, body: &[u8]) -> Result<Option<Vec<u8>>, Malformed> {
        let mut sdp = Sdp::parse(body)?;
        for skipped in sdp.apply(&self.ops) {
            log::warn!("sdpops: {skipped}");
        }
        Ok(sdp.changed().then(|| sdp.to_bytes()))
    }
}

/// Log why a body was left as it is (never the body itself).
fn warn_unchanged(msg: &Message, why: &dyn std::fmt::Display) {
    let what = if msg.is_request() {
        msg.method()
    } else {
        format!("{} reply to {}", msg.status(), msg.method())
    };
    let call_id = msg.header("Call-ID").unwrap_or_default();
    log::warn!("sdpops: {what} (Call-ID {call_id}): SDP left unchanged: {why}");
}

// === config checks ===

/// Codec names as Kamailio's comma-separated list would hold them: no commas, no
/// whitespace, no `/` (the name is what precedes `/` in `a=rtpmap`).
fn codec_names(param: &str, names: Vec<String>, may_be_empty: bool) -> Result<Vec<String>, Error> {
    if names.is_empty() && !may_be_empty {
        return Err(Error::new(format!(
            "{param}: the list is empty; leave the param out to keep every codec"
        )));
    }
    for name in &names {
        let bad = name.is_empty()
            || name
                .bytes()
                .any(|b| b == b',' || b == b'/' || !b.is_ascii_graphic());
        if bad {
            return Err(Error::new(format!(
                "{param}: `{name}` is not an encoding name (like PCMA or telephone-event)"
            )));
        }
    }
    Ok(names)
}

/// Payload types 0..=127, as the decimal text Kamailio compares.
fn payload_types(param: &str, ids: &[i64], may_be_empty: bool) -> Result<Vec<String>, Error> {
    if ids.is_empty() && !may_be_empty {
        return Err(Error::new(format!(
            "{param}: the list is empty; leave the param out to keep every codec"
        )));
    }
    ids.iter()
        .map(|&id| {
            if (0..=127).contains(&id) {
                Ok(id.to_string())
            } else {
                Err(Error::new(format!(
                    "{param}: {id} is not an RTP payload type (0 to 127)"
                )))
            }
        })
        .collect()
}

/// A media type or transport protocol: non-empty, no whitespace; lower-cased (they
/// are compared case-insensitively).
fn token(param: &str, value: String) -> Result<String, Error> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::new(format!(
            "{param}: `{value}` is not a media type or protocol (like video or RTP/SAVP)"
        )));
    }
    Ok(value.to_ascii_lowercase())
}

fn tokens(param: &str, values: Vec<String>) -> Result<Vec<String>, Error> {
    values.into_iter().map(|v| token(param, v)).collect()
}

/// A line prefix: `<letter>=` and more, without line breaks. Kamailio only compares
/// prefixes against `<letter>=` lines, so anything else could never match.
fn line_prefix(prefix: String) -> Result<String, Error> {
    let b = prefix.as_bytes();
    let ok = b.first().is_some_and(u8::is_ascii_alphabetic)
        && b.get(1) == Some(&b'=')
        && !b.iter().any(|&c| c == b'\r' || c == b'\n');
    if ok {
        Ok(prefix)
    } else {
        Err(Error::new(format!(
            "remove_line_prefix: `{prefix}` cannot match an SDP line; a prefix starts with a letter and `=` (like `a=ice-`)"
        )))
    }
}

// The test harness exists off wasm only. (Two attributes, not `all(test, ..)`:
// clippy's allow-unwrap-in-tests only recognises a plain `cfg(test)`.)
#[cfg(test)]
#[cfg(not(target_arch = "wasm32"))]
mod tests;

fn both() -> ApplyTo {
    ApplyTo::Both
}
