//! # weir-transaction — the SIP transaction layer of Weir
//!
//! This crate owns the state a stateful proxy keeps per request, with Kamailio `tm`
//! semantics:
//!
//! * **the RFC 3261 §17 state machines** as pure structs: [`ServerInvite`],
//!   [`ServerNonInvite`], [`ClientInvite`], [`ClientNonInvite`]. Each takes an event and
//!   `now` and returns [`Action`]s (send, start/cancel timer, deliver to the TU, timeout,
//!   terminated). Timers A–K (plus L and M of RFC 6026) use a [`TimerConfig`] whose
//!   defaults are Kamailio's (`fr_timer` 30 s, `fr_inv_timer` 120 s, ...);
//! * **the §16.7 response context** ([`ResponseContext`]): which responses go upstream
//!   at once (provisionals but 100, every 2xx), when siblings are CANCELled (2xx with
//!   `Reason: SIP;cause=200;text="Call completed elsewhere"`, 6xx), which final wins
//!   ([`priority`]: Kamailio's table), 401/407 challenge aggregation, 503 → 500, serial
//!   forking through a failure hook, and per-branch failure events;
//! * **matching** ([`ServerKey`], [`ClientKey`]): RFC 3261 branch + sent-by + method,
//!   the RFC 2543 fallback, ACK and CANCEL to their INVITE;
//! * **the [`TransactionTable`]**: bounded, sharded by key hash, called synchronously
//!   from the proxy's receive threads; and the timer driver ([`run_timers`]) that fires
//!   timers into it from one tokio task.
//!
//! What it never does: open sockets, resolve names, read a clock on its own (every call
//! takes `now`; only [`run_timers`] looks at tokio's clock), run module code, write Via
//! or pick branches (the proxy core does: only it writes Via), or use `unsafe`.
//!
//! The proxy core drives it:
//!
//! 1. [`TransactionTable::on_request`] for each request of a stateful route:
//!    retransmissions, hop-by-hop ACKs and CANCELs are handled here; a
//!    [`RequestOutcome::New`] goes through the route's chain, then
//!    [`TransactionTable::forward`] (one [`Target`] per branch) or
//!    [`TransactionTable::reply`];
//! 2. [`TransactionTable::on_response`] for each response; a
//!    [`ResponseOutcome::Branch`] goes through the reply chain, then
//!    [`TransactionTable::relay`];
//! 3. every call returns [`Output`]s to send or react to; [`run_timers`] hands those of
//!    timers to a sink.
//!
//! ```
//! use std::net::SocketAddr;
//! use weir_message::{Limits, Message};
//! use weir_transaction::{
//!     Output, Peer, RequestOutcome, ResponseOutcome, TableConfig, Target, TransactionTable,
//!     Transport,
//! };
//!
//! let table = TransactionTable::new(TableConfig::default());
//! let now = tokio::time::Instant::now();
//! let caller = Peer { addr: "192.0.2.1:5060".parse().unwrap(), transport: Transport::Udp, listener: 0 };
//! let callee = Peer { addr: "192.0.2.9:5060".parse().unwrap(), transport: Transport::Udp, listener: 0 };
//! let invite = Message::parse(
//!     b"INVITE sip:bob@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKa\r\n\
//!       From: <sip:alice@example.com>;tag=1\r\nTo: <sip:bob@example.com>\r\nCall-ID: c\r\n\
//!       CSeq: 1 INVITE\r\nMax-Forwards: 70\r\n\r\n",
//!     &Limits::default(),
//! ).unwrap();
//!
//! // A new INVITE: a transaction, and `100 trying` upstream at once.
//! let h = table.on_request(&invite, caller, now).unwrap();
//! let RequestOutcome::New(tx) = h.outcome else { panic!() };
//! assert!(matches!(&h.outputs[..], [Output::Response { response, .. }] if response.status() == Some(100)));
//!
//! // The route forwards it: our Via on top, a branch of our own.
//! let mut out = invite.clone();
//! out.headers.insert(0, "Via", "SIP/2.0/UDP 198.51.100.1;branch=z9hG4bKw1");
//! let sent = table.forward(tx, vec![Target { request: out.clone(), to: callee }], now).unwrap();
//! assert!(matches!(&sent[..], [Output::Request { .. }]));
//!
//! // The callee answers 486: we ACK it downstream, and 486 goes upstream.
//! let (outcome, acks) = table.on_response(out.reply(486, "", Some("b")), now);
//! let ResponseOutcome::Branch(br) = outcome else { panic!() };
//! assert!(matches!(&acks[..], [Output::Request { request, .. }] if request.method().map(|m| m.as_str()) == Some("ACK")));
//! let up = table.relay(br, now);
//! assert!(up.iter().any(|o| matches!(o, Output::Response { response, .. } if response.status() == Some(486))));
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod action;
mod build;
mod cell;
mod client;
mod config;
mod context;
mod driver;
mod error;
mod key;
mod server;
mod table;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod testutil;

pub use action::{Action, Timer};
pub use build::{
    ack_for, cancel_for, cancel_reason, pop_top_via, CANCELED_REASON, CANCELING_REASON,
    COMPLETED_ELSEWHERE, NO_MORE_BRANCHES_REASON, TRYING_REASON,
};
pub use client::{
    ClientEvent, ClientInvite, ClientInviteState, ClientNonInvite, ClientNonInviteState, ClientTx,
};
pub use config::{TableConfig, TimerConfig};
pub use context::{priority, BranchSlot, CtxAction, FinalOptions, Reply, ResponseContext, Winner};
pub use driver::{run_timers, Slot};
pub use error::{Error, Result};
pub use key::{
    BranchSuffix, ClientKey, IdHash, IdHasher, Peer, PeerHash, ServerKey, Transport, TxId,
    MAGIC_COOKIE,
};
pub use server::{
    ServerEvent, ServerInvite, ServerInviteState, ServerNonInvite, ServerNonInviteState, ServerTx,
};
pub use table::{
    BranchResponse, Handled, Output, RequestOutcome, ResponseOutcome, Target, TransactionTable,
};
