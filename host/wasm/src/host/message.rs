//! The `message` resource: host functions over the [`Message`] moved into the store
//! for the call.
//!
//! The message is the only resource of the world, so its handle is a fixed rep
//! ([`MESSAGE_REP`]) and no resource table is involved: every method reads the
//! store's current message. Reads copy only what is asked for. Edits are checked
//! (protected headers, RFC 3261 syntax, total size) on the guest's own memory before
//! anything is copied, and each edit records its inverse (`undo`) so a failing call
//! can be rolled back.

use bytes::Bytes;
use wasmtime::component::{Linker, Resource, ResourceType, WasmList, WasmStr};
use wasmtime::{bail, format_err, AsContext, StoreContextMut};
use weir_message::{
    canonical_name, compact_form, is_valid_header_name, is_valid_header_value, names_equal,
    push_dec, Message, Method, StartLine, Uri,
};

use super::undo::{self, Undo};
use super::{CallState, Ctx};
use crate::bindings::weir::sip::message::MethodKind;
use crate::bindings::weir::sip::types::{
    Address, EditError, Header as WitHeader, Hook as WitHook, Transport as WitTransport,
};
use crate::call::Transport;
use crate::MAX_MESSAGE_BYTES;

/// Marker type of the `message` resource (named by `bindgen!`'s `with`).
pub struct MessageRep;

/// The rep of the one message handle a call hands out.
pub(crate) const MESSAGE_REP: u32 = 0;

const INTERFACE: &str = "weir:sip/message@0.1.0";

/// Most names one `header-values-joined` call may ask for.
const MAX_JOINED_NAMES: usize = 32;

/// Headers the host owns: edits through add/set/remove are refused.
const PROTECTED: [&str; 4] = ["via", "content-length", "cseq", "call-id"];

type Msg = Resource<MessageRep>;
type EditResult<T> = Result<T, EditError>;

// === Reading ===

fn current<'a>(ctx: &'a Ctx, this: &Msg) -> wasmtime::Result<&'a Message> {
    if this.rep() != MESSAGE_REP {
        bail!("unknown message handle {}", this.rep());
    }
    ctx.call
        .msg
        .as_ref()
        .ok_or_else(|| format_err!("the message is only available during a call"))
}

/// The message and the call's undo log, for an edit that passed its checks.
fn begin_edit<'a>(
    ctx: &'a mut Ctx,
    this: &Msg,
) -> wasmtime::Result<(&'a mut Message, &'a mut Vec<Undo>)> {
    if this.rep() != MESSAGE_REP {
        bail!("unknown message handle {}", this.rep());
    }
    let CallState { msg, undo, .. } = &mut ctx.call;
    let msg = msg
        .as_mut()
        .ok_or_else(|| format_err!("the message is only available during a call"))?;
    Ok((msg, undo))
}

/// Bytes of the message on the wire (without a Content-Length the host may add).
pub(crate) fn wire_size(m: &Message) -> usize {
    let start = match &m.start {
        // METHOD SP URI SP SIP/2.0 CRLF
        StartLine::Request { method, uri } => method.as_str().len() + uri.len() + 11,
        // SIP/2.0 SP 3DIGIT SP reason CRLF
        StartLine::Response { reason, .. } => reason.len() + 15,
    };
    let headers: usize = m.headers.iter().map(|h| line_size(&h.name, &h.value)).sum();
    start + headers + 2 + m.body.len()
}

/// `name: value CRLF`.
fn line_size(name: &str, value: &str) -> usize {
    name.len() + value.len() + 4
}

fn is_protected(name: &str) -> bool {
    // `names_equal` compares the long forms in place: no lowercase copy of `name`.
    PROTECTED.iter().any(|p| names_equal(name, p))
}

/// Refuses an edit that takes the message from `before` to `after` bytes if it
/// grows the message past the limit (shrinking an oversized message is allowed).
fn check_growth(before: usize, after: usize) -> EditResult<()> {
    if after > MAX_MESSAGE_BYTES && after > before {
        return Err(EditError::TooLarge);
    }
    Ok(())
}

fn check_name(name: &str) -> EditResult<()> {
    if name.len() > MAX_MESSAGE_BYTES {
        return Err(EditError::TooLarge);
    }
    if !is_valid_header_name(name) {
        return Err(EditError::Invalid(format!(
            "`{}` is not a valid header name",
            excerpt(name)
        )));
    }
    Ok(())
}

fn check_value(name: &str, value: &str) -> EditResult<()> {
    if value.len() > MAX_MESSAGE_BYTES {
        return Err(EditError::TooLarge);
    }
    if !is_valid_header_value(value) {
        return Err(EditError::Invalid(format!(
            "value of `{}` contains CR, LF or NUL",
            excerpt(name)
        )));
    }
    Ok(())
}

/// Lines whose name, long or compact form, starts with `prefix` (case ignored); an
/// error if one of them is host-owned.
fn prefix_positions(m: &Message, prefix: &str) -> EditResult<Vec<usize>> {
    let starts = |name: &str| {
        name.len() >= prefix.len()
            && name
                .as_bytes()
                .iter()
                .zip(prefix.as_bytes())
                .all(|(a, b)| a.eq_ignore_ascii_case(b))
    };
    // Only a one-letter name can be a compact form, and only a one-letter prefix can
    // match one: the long form of any other name is the name itself, compared in
    // place (no lowercase copy per line).
    let one_letter = prefix.len() == 1;
    let mut at = Vec::new();
    for (i, h) in m.headers.iter().enumerate() {
        let name: &str = &h.name;
        let hit = if name.len() == 1 {
            starts(&canonical_name(name))
        } else {
            starts(name)
        } || (one_letter && compact_form(name).is_some_and(starts));
        if hit {
            check_unprotected(&h.name)?;
            at.push(i);
        }
    }
    Ok(at)
}

fn check_unprotected(name: &str) -> EditResult<()> {
    if is_protected(name) {
        return Err(EditError::ProtectedHeader(name.to_owned()));
    }
    Ok(())
}

/// At most 64 bytes of guest text for an error message, cut on a char boundary.
fn excerpt(s: &str) -> &str {
    let mut end = s.len().min(64);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn check_request_uri(m: &Message, uri: &str) -> EditResult<()> {
    let StartLine::Request { uri: old, .. } = &m.start else {
        return Err(EditError::Invalid("a reply has no request URI".into()));
    };
    if uri.len() > MAX_MESSAGE_BYTES {
        return Err(EditError::TooLarge);
    }
    if uri.is_empty()
        || uri
            .bytes()
            .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
    {
        return Err(EditError::Invalid(
            "a request URI cannot be empty or contain whitespace".into(),
        ));
    }
    let scheme = uri.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("sip" | "sips" | "tel") => {
            if let Err(e) = Uri::parse(uri) {
                return Err(EditError::Invalid(format!(
                    "request URI `{}` does not parse: {e}",
                    excerpt(uri)
                )));
            }
        }
        // RFC 3261 absoluteURI: scheme ":" something.
        Some(s)
            if !s.is_empty()
                && s.starts_with(|c: char| c.is_ascii_alphabetic())
                && s.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
                && uri.len() > s.len() + 1 => {}
        _ => {
            return Err(EditError::Invalid(format!(
                "`{}` is not a URI",
                excerpt(uri)
            )));
        }
    }
    let size = wire_size(m);
    check_growth(size, size - old.len() + uri.len())
}

fn to_wit_transport(t: Transport) -> WitTransport {
    match t {
        Transport::Udp => WitTransport::Udp,
        Transport::Tcp => WitTransport::Tcp,
        Transport::Tls => WitTransport::Tls,
        Transport::Ws => WitTransport::Ws,
        Transport::Wss => WitTransport::Wss,
    }
}

// === Linker ===

/// The WIT name of a method that has one.
fn method_kind(m: &Method) -> Option<MethodKind> {
    Some(match m {
        Method::Invite => MethodKind::Invite,
        Method::Ack => MethodKind::Ack,
        Method::Bye => MethodKind::Bye,
        Method::Cancel => MethodKind::Cancel,
        Method::Register => MethodKind::Register,
        Method::Options => MethodKind::Options,
        Method::Info => MethodKind::Info,
        Method::Update => MethodKind::Update,
        Method::Prack => MethodKind::Prack,
        Method::Subscribe => MethodKind::Subscribe,
        Method::Notify => MethodKind::Notify,
        Method::Refer => MethodKind::Refer,
        Method::Message => MethodKind::Message,
        Method::Publish => MethodKind::Publish,
        Method::Other(_) => return None,
    })
}

pub(crate) fn add_to_linker(linker: &mut Linker<Ctx>) -> wasmtime::Result<()> {
    let mut i = linker.instance(INTERFACE)?;
    // Borrowed handles only: the host never hands out an owned message, so there
    // is nothing to free.
    i.resource("message", ResourceType::host::<MessageRep>(), |_, _| Ok(()))?;

    i.func_wrap(
        "[method]message.is-request",
        |s: StoreContextMut<'_, Ctx>, (this,): (Msg,)| {
            Ok((current(s.data(), &this)?.is_request(),))
        },
    )?;
    i.func_wrap(
        "[method]message.method",
        |s: StoreContextMut<'_, Ctx>, (this,): (Msg,)| {
            let m = current(s.data(), &this)?;
            let method = match &m.start {
                StartLine::Request { method, .. } => method.as_str().to_owned(),
                StartLine::Response { .. } => m
                    .cseq()
                    .map(|c| c.method.as_str().to_owned())
                    .unwrap_or_default(),
            };
            Ok((method,))
        },
    )?;
    i.func_wrap(
        "[method]message.known-method",
        |s: StoreContextMut<'_, Ctx>, (this,): (Msg,)| {
            let m = current(s.data(), &this)?;
            let kind = match &m.start {
                StartLine::Request { method, .. } => method_kind(method),
                StartLine::Response { .. } => m.cseq().ok().and_then(|c| method_kind(&c.method)),
            };
            Ok((kind,))
        },
    )?;
    i.func_wrap(
        "[method]message.status",
        |s: StoreContextMut<'_, Ctx>, (this,): (Msg,)| {
            Ok((current(s.data(), &this)?.status().unwrap_or(0),))
        },
    )?;
    i.func_wrap(
        "[method]message.reason",
        |s: StoreContextMut<'_, Ctx>, (this,): (Msg,)| {
            let reason = match &current(s.data(), &this)?.start {
                StartLine::Response { reason, .. } => reason.to_string(),
                StartLine::Request { .. } => String::new(),
            };
            Ok((reason,))
        },
    )?;
    i.func_wrap(
        "[method]message.request-uri",
        |s: StoreContextMut<'_, Ctx>, (this,): (Msg,)| {
            let m = current(s.data(), &this)?;
            Ok((m.request_uri().unwrap_or_default().to_owned(),))
        },
    )?;
    i.func_wrap(
        "[method]message.set-request-uri",
        |mut s: StoreContextMut<'_, Ctx>, (this, uri): (Msg, WasmStr)| {
            let checked = {
                let uri = uri.to_str(s.as_context())?;
                check_request_uri(current(s.data(), &this)?, &uri).map(|()| uri.into_owned())
            };
            Ok((match checked {
                Ok(uri) => {
                    let (m, log) = begin_edit(s.data_mut(), &this)?;
                    undo::set_request_uri(m, log, uri);
                    Ok(())
                }
                Err(e) => Err(e),
            },))
        },
    )?;
    i.func_wrap(
        "[method]message.header",
        |s: StoreContextMut<'_, Ctx>, (this, name): (Msg, WasmStr)| {
            let name = name.to_str(s.as_context())?;
            let m = current(s.data(), &this)?;
            Ok((m.headers.get(&name).map(str::to_owned),))
        },
    )?;
    i.func_wrap(
        "[method]message.header-values",
        |s: StoreContextMut<'_, Ctx>, (this, name): (Msg, WasmStr)| {
            let name = name.to_str(s.as_context())?;
            let m = current(s.data(), &this)?;
            let values: Vec<String> = m.headers.get_all(&name).map(str::to_owned).collect();
            Ok((values,))
        },
    )?;
    i.func_wrap(
        "[method]message.header-values-joined",
        |s: StoreContextMut<'_, Ctx>, (this, names): (Msg, WasmStr)| {
            let names = names.to_str(s.as_context())?;
            let m = current(s.data(), &this)?;
            let mut out = String::with_capacity(256);
            for (k, name) in names.split(',').enumerate() {
                if k >= MAX_JOINED_NAMES {
                    bail!("header-values-joined: more than {MAX_JOINED_NAMES} names");
                }
                for v in m.headers.get_all(name.trim_ascii()) {
                    push_dec(&mut out, v.len() as u64);
                    out.push(':');
                    out.push_str(v);
                }
                out.push('\n');
            }
            Ok((out,))
        },
    )?;
    i.func_wrap(
        "[method]message.header-names",
        |s: StoreContextMut<'_, Ctx>, (this,): (Msg,)| {
            let m = current(s.data(), &this)?;
            let names: Vec<String> = m.headers.iter().map(|h| h.name.to_string()).collect();
            Ok((names,))
        },
    )?;
    i.func_wrap(
        "[method]message.headers",
        |s: StoreContextMut<'_, Ctx>, (this,): (Msg,)| {
            let m = current(s.data(), &this)?;
            let all: Vec<WitHeader> = m
                .headers
                .iter()
                .map(|h| WitHeader {
                    name: h.name.to_string(),
                    value: h.value.to_string(),
                })
                .collect();
            Ok((all,))
        },
    )?;
    i.func_wrap(
        "[method]message.add-header",
        |mut s: StoreContextMut<'_, Ctx>, (this, name, value): (Msg, WasmStr, WasmStr)| {
            let checked = {
                let name = name.to_str(s.as_context())?;
                let value = value.to_str(s.as_context())?;
                let m = current(s.data(), &this)?;
                check_add(m, &name, &value).map(|()| (name.into_owned(), value.into_owned()))
            };
            Ok((match checked {
                Ok((name, value)) => {
                    let (m, log) = begin_edit(s.data_mut(), &this)?;
                    undo::add_header(m, log, name, value);
                    Ok(())
                }
                Err(e) => Err(e),
            },))
        },
    )?;
    i.func_wrap(
        "[method]message.set-header",
        |mut s: StoreContextMut<'_, Ctx>, (this, name, value): (Msg, WasmStr, WasmStr)| {
            let checked = {
                let name = name.to_str(s.as_context())?;
                let value = value.to_str(s.as_context())?;
                let m = current(s.data(), &this)?;
                check_set(m, &name, &value).map(|()| (name.into_owned(), value.into_owned()))
            };
            Ok((match checked {
                Ok((name, value)) => {
                    let (m, log) = begin_edit(s.data_mut(), &this)?;
                    undo::set_header(m, log, name, value);
                    Ok(())
                }
                Err(e) => Err(e),
            },))
        },
    )?;
    i.func_wrap(
        "[method]message.remove-header",
        |mut s: StoreContextMut<'_, Ctx>, (this, name): (Msg, WasmStr)| {
            let checked: EditResult<Option<String>> = {
                let name = name.to_str(s.as_context())?;
                let m = current(s.data(), &this)?;
                check_name(&name)
                    .and_then(|()| check_unprotected(&name))
                    .map(|()| m.headers.contains(&name).then(|| name.into_owned()))
            };
            Ok((match checked {
                Ok(Some(name)) => {
                    let (m, log) = begin_edit(s.data_mut(), &this)?;
                    let removed = undo::remove_header(m, log, &name);
                    Ok(u32::try_from(removed).unwrap_or(u32::MAX))
                }
                Ok(None) => Ok(0),
                Err(e) => Err(e),
            },))
        },
    )?;
    i.func_wrap(
        "[method]message.remove-headers-by-prefix",
        |mut s: StoreContextMut<'_, Ctx>, (this, prefix): (Msg, WasmStr)| {
            let checked: EditResult<Vec<usize>> = {
                let prefix = prefix.to_str(s.as_context())?;
                let m = current(s.data(), &this)?;
                check_name(&prefix).and_then(|()| prefix_positions(m, &prefix))
            };
            Ok((match checked {
                Ok(at) => {
                    let (m, log) = begin_edit(s.data_mut(), &this)?;
                    let removed = undo::remove_positions(m, log, &at);
                    Ok(u32::try_from(removed).unwrap_or(u32::MAX))
                }
                Err(e) => Err(e),
            },))
        },
    )?;
    i.func_wrap(
        "[method]message.rename-header",
        |mut s: StoreContextMut<'_, Ctx>, (this, name, new_name): (Msg, WasmStr, WasmStr)| {
            let checked: EditResult<Option<(String, String)>> = {
                let name = name.to_str(s.as_context())?;
                let new_name = new_name.to_str(s.as_context())?;
                let m = current(s.data(), &this)?;
                check_rename(m, &name, &new_name)
                    .map(|any| any.then(|| (name.into_owned(), new_name.into_owned())))
            };
            Ok((match checked {
                Ok(Some((name, new_name))) => {
                    let (m, log) = begin_edit(s.data_mut(), &this)?;
                    let renamed = undo::rename_header(m, log, &name, &new_name);
                    Ok(u32::try_from(renamed).unwrap_or(u32::MAX))
                }
                Ok(None) => Ok(0),
                Err(e) => Err(e),
            },))
        },
    )?;
    i.func_wrap(
        "[method]message.body",
        |s: StoreContextMut<'_, Ctx>, (this,): (Msg,)| {
            Ok((current(s.data(), &this)?.body.to_vec(),))
        },
    )?;
    i.func_wrap(
        "[method]message.set-body",
        |mut s: StoreContextMut<'_, Ctx>, (this, body): (Msg, WasmList<u8>)| {
            let checked = {
                let m = current(s.data(), &this)?;
                // The length is known before a byte is read.
                let size = wire_size(m);
                if body.len() > MAX_MESSAGE_BYTES {
                    Err(EditError::TooLarge)
                } else {
                    check_growth(size, size - m.body.len() + body.len())
                        .map(|()| Bytes::copy_from_slice(body.as_le_slice(s.as_context())))
                }
            };
            Ok((match checked {
                Ok(bytes) => {
                    let (m, log) = begin_edit(s.data_mut(), &this)?;
                    undo::set_body(m, log, bytes);
                    Ok(())
                }
                Err(e) => Err(e),
            },))
        },
    )?;
    i.func_wrap(
        "[method]message.source",
        |s: StoreContextMut<'_, Ctx>, (this,): (Msg,)| {
            current(s.data(), &this)?;
            let source = s.data().call.source;
            Ok((Address {
                ip: source.ip().to_string(),
                port: source.port(),
            },))
        },
    )?;
    i.func_wrap(
        "[method]message.transport",
        |s: StoreContextMut<'_, Ctx>, (this,): (Msg,)| {
            current(s.data(), &this)?;
            Ok((to_wit_transport(s.data().call.transport),))
        },
    )?;
    i.func_wrap(
        "[method]message.listener",
        |s: StoreContextMut<'_, Ctx>, (this,): (Msg,)| {
            current(s.data(), &this)?;
            Ok((s.data().call.listener.clone(),))
        },
    )?;
    i.func_wrap(
        "[method]message.hook",
        |s: StoreContextMut<'_, Ctx>, (this,): (Msg,)| {
            current(s.data(), &this)?;
            Ok((match s.data().call.hook {
                crate::call::Hook::Request => WitHook::Request,
                crate::call::Hook::Reply => WitHook::Reply,
                crate::call::Hook::Failure => WitHook::Failure,
                crate::call::Hook::BranchFailure => WitHook::BranchFailure,
            },))
        },
    )?;
    i.func_wrap(
        "[method]message.failure-status",
        |s: StoreContextMut<'_, Ctx>, (this,): (Msg,)| {
            current(s.data(), &this)?;
            Ok((s.data().call.failure_status,))
        },
    )?;
    i.func_wrap(
        "[method]message.is-cancelled",
        |s: StoreContextMut<'_, Ctx>, (this,): (Msg,)| {
            current(s.data(), &this)?;
            Ok((s.data().call.cancelled,))
        },
    )?;
    i.func_wrap(
        "[method]message.connection-id",
        |s: StoreContextMut<'_, Ctx>, (this,): (Msg,)| {
            current(s.data(), &this)?;
            Ok((s.data().call.connection,))
        },
    )?;
    i.func_wrap(
        "[method]message.transaction-id",
        |s: StoreContextMut<'_, Ctx>, (this,): (Msg,)| {
            current(s.data(), &this)?;
            Ok((s.data().call.transaction,))
        },
    )?;
    i.func_wrap(
        "[method]message.get-var",
        |s: StoreContextMut<'_, Ctx>, (this, name): (Msg, WasmStr)| {
            current(s.data(), &this)?;
            let name = name.to_str(s.as_context())?;
            let v = s.data().call.vars.get(&name).map(str::to_owned);
            Ok((v,))
        },
    )?;
    i.func_wrap(
        "[method]message.set-var",
        |mut s: StoreContextMut<'_, Ctx>, (this, name, value): (Msg, WasmStr, WasmStr)| {
            current(s.data(), &this)?;
            let (name, value) = {
                let name = name.to_str(s.as_context())?;
                let value = value.to_str(s.as_context())?;
                if name.len() > crate::call::MAX_VAR_NAME
                    || value.len() > crate::call::MAX_VAR_VALUE
                {
                    return Ok((false,));
                }
                (name.into_owned(), value.into_owned())
            };
            let call = &mut s.data_mut().call;
            let ok = call.vars.set(name, value);
            call.vars_dirty |= ok;
            Ok((ok,))
        },
    )?;
    Ok(())
}

// === Edit checks ===

fn check_add(m: &Message, name: &str, value: &str) -> EditResult<()> {
    if name.len().saturating_add(value.len()) > MAX_MESSAGE_BYTES {
        return Err(EditError::TooLarge);
    }
    check_name(name)?;
    check_unprotected(name)?;
    check_value(name, value)?;
    let size = wire_size(m);
    check_growth(size, size + line_size(name, value))
}

fn check_set(m: &Message, name: &str, value: &str) -> EditResult<()> {
    if name.len().saturating_add(value.len()) > MAX_MESSAGE_BYTES {
        return Err(EditError::TooLarge);
    }
    check_name(name)?;
    check_unprotected(name)?;
    check_value(name, value)?;
    let size = wire_size(m);
    let replaced: usize = m
        .headers
        .iter()
        .filter(|h| weir_message::names_equal(&h.name, name))
        .map(|h| line_size(&h.name, &h.value))
        .sum();
    check_growth(size, size - replaced + line_size(name, value))
}

/// Checks a rename; `Ok(false)` when no line has that name (nothing to do).
fn check_rename(m: &Message, name: &str, new_name: &str) -> EditResult<bool> {
    check_name(name)?;
    check_name(new_name)?;
    // A rename may change the spelling of a protected header (e.g. to its compact
    // form) but never turn it into, or make it out of, another header.
    if !names_equal(name, new_name) {
        if is_protected(name) {
            return Err(EditError::ProtectedHeader(name.to_owned()));
        }
        if is_protected(new_name) {
            return Err(EditError::ProtectedHeader(new_name.to_owned()));
        }
    }
    let mut count = 0usize;
    let mut grown = 0usize;
    let mut shrunk = 0usize;
    for h in m
        .headers
        .iter()
        .filter(|h| weir_message::names_equal(&h.name, name))
    {
        count += 1;
        grown += new_name.len();
        shrunk += h.name.len();
    }
    if count == 0 {
        return Ok(false);
    }
    let size = wire_size(m);
    check_growth(size, size - shrunk + grown)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn invite() -> Message {
        let raw = "INVITE sip:bob@example.com SIP/2.0\r\n\
                   Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776\r\n\
                   From: <sip:alice@example.com>;tag=1\r\n\
                   To: <sip:bob@example.com>\r\n\
                   Call-ID: a84b4c76e66710\r\n\
                   CSeq: 314159 INVITE\r\n\
                   Content-Length: 0\r\n\r\n";
        Message::parse(raw.as_bytes(), &Default::default()).unwrap()
    }

    #[test]
    fn known_methods_are_named_and_others_not() {
        for (name, kind) in [
            ("INVITE", MethodKind::Invite),
            ("ACK", MethodKind::Ack),
            ("BYE", MethodKind::Bye),
            ("CANCEL", MethodKind::Cancel),
            ("REGISTER", MethodKind::Register),
            ("OPTIONS", MethodKind::Options),
            ("INFO", MethodKind::Info),
            ("UPDATE", MethodKind::Update),
            ("PRACK", MethodKind::Prack),
            ("SUBSCRIBE", MethodKind::Subscribe),
            ("NOTIFY", MethodKind::Notify),
            ("REFER", MethodKind::Refer),
            ("MESSAGE", MethodKind::Message),
            ("PUBLISH", MethodKind::Publish),
        ] {
            assert_eq!(
                method_kind(&Method::parse(name).unwrap()),
                Some(kind),
                "{name}"
            );
        }
        for other in ["invite", "FOO"] {
            assert_eq!(method_kind(&Method::parse(other).unwrap()), None, "{other}");
        }
    }

    #[test]
    fn protected_headers_are_refused_in_any_spelling() {
        let m = invite();
        for name in [
            "Via",
            "v",
            "VIA",
            "Content-Length",
            "l",
            "CSeq",
            "Call-ID",
            "i",
        ] {
            assert_eq!(
                check_add(&m, name, "x"),
                Err(EditError::ProtectedHeader(name.into())),
                "{name}"
            );
            assert_eq!(
                check_set(&m, name, "x"),
                Err(EditError::ProtectedHeader(name.into()))
            );
        }
        assert!(check_add(&m, "X-Ok", "1").is_ok());
    }

    #[test]
    fn invalid_names_and_values() {
        let m = invite();
        assert!(matches!(
            check_add(&m, "Bad Name", "x"),
            Err(EditError::Invalid(_))
        ));
        assert!(matches!(check_add(&m, "", "x"), Err(EditError::Invalid(_))));
        assert!(matches!(
            check_add(&m, "X-A", "a\r\nVia: x"),
            Err(EditError::Invalid(_))
        ));
        assert!(matches!(
            check_add(&m, "X-A", "a\0"),
            Err(EditError::Invalid(_))
        ));
    }

    #[test]
    fn growth_is_bounded() {
        let m = invite();
        let big = "x".repeat(MAX_MESSAGE_BYTES);
        assert_eq!(check_add(&m, "X-Big", &big), Err(EditError::TooLarge));
        let fits = "x".repeat(MAX_MESSAGE_BYTES - wire_size(&m) - line_size("X-Big", ""));
        assert_eq!(check_add(&m, "X-Big", &fits), Ok(()));
        assert_eq!(
            check_add(&m, "X-Big", &format!("{fits}x")),
            Err(EditError::TooLarge)
        );
    }

    #[test]
    fn prefix_matching_is_the_same_as_on_lowercase_copies() {
        // The definition: the lowercase long form, or the compact form, starts with
        // the lowercase prefix.
        fn reference(m: &Message, prefix: &str) -> EditResult<Vec<usize>> {
            let prefix = prefix.to_ascii_lowercase();
            let mut at = Vec::new();
            for (i, h) in m.headers.iter().enumerate() {
                let long = canonical_name(&h.name);
                if long.starts_with(&prefix)
                    || compact_form(&h.name).is_some_and(|c| c.starts_with(&prefix))
                {
                    check_unprotected(&h.name)?;
                    at.push(i);
                }
            }
            Ok(at)
        }
        let raw = "INVITE sip:bob@example.com SIP/2.0\r\n\
                   Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK776\r\n\
                   f: <sip:alice@example.com>;tag=1\r\n\
                   To: <sip:bob@example.com>\r\n\
                   X-Debug-A: 1\r\nx-debug-b: 2\r\nN: 3\r\nz: 4\r\nS: 5\r\n\
                   Subject: 6\r\nc: text/plain\r\nContent-Type: text/plain\r\n\
                   Call-ID: a84b4c76e66710\r\n\
                   CSeq: 314159 INVITE\r\n\
                   Content-Length: 0\r\n\r\n";
        let m = Message::parse(raw.as_bytes(), &Default::default()).unwrap();
        for prefix in [
            "X-Debug-",
            "x-DEBUG",
            "X",
            "x-",
            "f",
            "F",
            "From",
            "fr",
            "s",
            "S",
            "sub",
            "n",
            "N",
            "z",
            "c",
            "C",
            "Content-T",
            "content-",
            "t",
            "To",
            "v",
            "Via",
            "i",
            "q",
        ] {
            assert_eq!(
                prefix_positions(&m, prefix),
                reference(&m, prefix),
                "{prefix}"
            );
        }
    }

    #[test]
    fn rename_keeps_protected_headers_what_they_are() {
        let m = invite();
        assert_eq!(check_rename(&m, "Via", "v"), Ok(true));
        assert_eq!(
            check_rename(&m, "Via", "X-Via"),
            Err(EditError::ProtectedHeader("Via".into()))
        );
        assert_eq!(
            check_rename(&m, "From", "Call-ID"),
            Err(EditError::ProtectedHeader("Call-ID".into()))
        );
        assert_eq!(check_rename(&m, "X-None", "X-Other"), Ok(false));
        assert_eq!(check_rename(&m, "From", "f"), Ok(true));
    }

    #[test]
    fn request_uri_must_parse() {
        let m = invite();
        assert!(check_request_uri(&m, "sip:carol@example.org;transport=tcp").is_ok());
        assert!(check_request_uri(&m, "urn:service:sos").is_ok());
        assert!(matches!(
            check_request_uri(&m, "sip:"),
            Err(EditError::Invalid(_))
        ));
        assert!(matches!(
            check_request_uri(&m, "no uri"),
            Err(EditError::Invalid(_))
        ));
        assert!(matches!(
            check_request_uri(&m, ""),
            Err(EditError::Invalid(_))
        ));
    }
}
