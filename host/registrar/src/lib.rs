//! # weir-registrar — Kamailio registrar + lookup semantics, sans-IO
//!
//! [`Registrar`] processes REGISTER requests the way Kamailio's `registrar` module
//! (`save("location")`) does, keeps the bindings in a [`weir_store::LocationStore`]
//! (usrloc), and turns a Request-URI into forking targets the way `lookup("location")`
//! followed by `t_load_contacts()` / `t_next_contacts()` does. It performs no IO: the host passes
//! the parsed message, the source address, the clock and a random number generator,
//! and builds the reply from the returned [`Registered`].
//!
//! ```
//! use std::sync::Arc;
//! use weir_registrar::{Config, Registrar, RequestContext, Lookup};
//! # use weir_store::{Binding, LocationStore, StoreError};
//! # use std::sync::Mutex;
//! # #[derive(Default)] struct Mem(Mutex<Vec<(String, Vec<Binding>)>>);
//! # impl LocationStore for Mem {
//! #   fn lookup(&self, aor: &str, now: u64) -> Result<Vec<Binding>, StoreError> {
//! #     Ok(self.0.lock().unwrap().iter().find(|e| e.0 == aor).map(|e| e.1.iter().filter(|b| b.expires_at_ms > now).cloned().collect()).unwrap_or_default())
//! #   }
//! #   fn update(&self, aor: &str, now: u64, f: &mut dyn FnMut(&mut Vec<Binding>) -> bool) -> Result<Vec<Binding>, StoreError> {
//! #     let mut g = self.0.lock().unwrap();
//! #     let mut cur: Vec<Binding> = g.iter().find(|e| e.0 == aor).map(|e| e.1.iter().filter(|b| b.expires_at_ms > now).cloned().collect()).unwrap_or_default();
//! #     if f(&mut cur) { g.retain(|e| e.0 != aor); if !cur.is_empty() { g.push((aor.to_string(), cur.clone())); } }
//! #     drop(g); self.lookup(aor, now)
//! #   }
//! #   fn purge_expired(&self, _now: u64) -> Result<Vec<(String, Binding)>, StoreError> { Ok(vec![]) }
//! #   fn aor_count(&self) -> Result<usize, StoreError> { Ok(self.0.lock().unwrap().len()) }
//! # }
//! let store = Arc::new(Mem::default());
//! let reg = Registrar::new(Config::default(), store).unwrap();
//! let req = weir_message::Message::parse(b"REGISTER sip:example.com SIP/2.0\r\n\
//!     Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK1\r\n\
//!     From: <sip:alice@example.com>;tag=1\r\nTo: <sip:alice@example.com>\r\n\
//!     Call-ID: c1\r\nCSeq: 1 REGISTER\r\n\
//!     Contact: <sip:alice@192.0.2.10:5060>;expires=600\r\nContent-Length: 0\r\n\r\n",
//!     &Default::default()).unwrap();
//! let ctx = RequestContext {
//!     source: "192.0.2.10:5060".parse().unwrap(),
//!     transport: "udp",
//!     listener: None,
//!     now_ms: 1_000_000,
//! };
//! let reply = reg.register(&req, &ctx, &mut rand::thread_rng());
//! assert_eq!(reply.status, 200);
//! assert_eq!(reply.header("Contact"), Some("<sip:alice@192.0.2.10:5060>;expires=600"));
//! match reg.lookup("sip:alice@example.com", 1_000_000) {
//!     Lookup::Found(t) => assert_eq!(t[0].uri, "sip:alice@192.0.2.10:5060"),
//!     other => panic!("{other:?}"),
//! }
//! ```
//!
//! ## REGISTER ([`Registrar::register`])
//!
//! 1. **AOR** from the To URI (or [`SaveOptions::aor_uri`]): user unescaped and
//!    lowercased (unless `case_sensitive`), domain lowercased, `realm_prefix` stripped;
//!    key `sip:user@domain` (`use_domain`) or `sip:user`. Scheme is ignored.
//! 2. **Validation** (400 + `P-Registrar-Error`): To, Call-ID (≤ `callid_max_size`),
//!    CSeq, Expires (digits), every Contact (name-addr/addr-spec, comma lists over
//!    several lines, quoted strings with commas), Contact URI ≤ `contact_max_size`,
//!    `q` (RFC 3261 qvalue), `reg-id` (1..2^32-2, only with `+sip.instance`).
//!    `Contact: *` must be alone and needs `Expires: 0`.
//! 3. **Outbound** (RFC 5626, `outbound_mode`): 421 when required and the UA lacks
//!    `Supported: outbound`; 420 + `Unsupported: outbound` when the UA requires it and
//!    it is off; 439 when not first hop, top Path lacks `;ob`, UA supports outbound and
//!    uses reg-id (`regid_mode = 1`; otherwise reg-id is ignored there).
//! 4. **Path** (RFC 3327, `use_path`): stored per binding; `path_mode` 2 (strict)
//!    rejects a Path without `Supported: path` with 420 + `Unsupported: path` + `Path`.
//! 5. **Expiry** per contact: Contact `expires` (unparsable: `default_expires`) →
//!    Expires header → `default_expires`. Non-zero: below `min_expires` → raised, or
//!    423 + `Min-Expires` with `min_expires_mode`; randomised into
//!    `[e·(1−r/100), e]` (`expires_range` for client values, `default_expires_range`
//!    for the default); raised to min again; lowered to `max_expires`. 0 removes.
//! 6. **Matching**: a contact with `+sip.instance` matches the binding with the same
//!    instance and reg-id (one binding per device/flow; the Contact URI may change),
//!    otherwise the binding with the identical Contact URI. Same Call-ID: lower CSeq →
//!    400 "Invalid CSeq number"; same CSeq within `cseq_delay` → retransmission (200,
//!    nothing changes), later → 400. A matched instance with a **new Call-ID** (the
//!    device restarted) also removes every other binding of that instance.
//! 7. **max_contacts**: the resulting number of bindings above the limit → 503
//!    "Too many registered contacts" (+ Retry-After). Nothing is written.
//! 8. **Reply**: 200 with one `Contact` listing every live binding:
//!    `<uri>[;q=0.5];expires=<remaining s>[;received="sip:ip:port;transport=t"]`
//!    `[;pub-gruu="..";temp-gruu=".."][;+sip.instance="<..>"][;reg-id=N]` (GRUUs only
//!    with `gruu_enabled` and `Supported: gruu`); `Path` echoed (path_mode 1/2 and
//!    supported); outbound `Require`/`Supported`/`Flow-Timer`. Every non-200 carries
//!    `P-Registrar-Error`; every 5xx carries `Retry-After` when `retry_after` is set
//!    (a fixed N or random in `[min, max]`).
//!
//! The whole contact list is applied atomically in one
//! [`LocationStore::update`](weir_store::LocationStore::update) (rejections write
//! nothing). Store failures give 500, never a panic. [`Registered::events`] lists
//! Added / Refreshed / Removed bindings.
//!
//! ## Lookup ([`Registrar::lookup`])
//!
//! Live bindings of the Request-URI's AOR, ordered q descending (no q last), equal q
//! older first, as [`Target`]s: new Request-URI = Contact; `destination` = first Path
//! URI, else `received`; `route` = Path. `;gr=<instance>` selects one instance.
//! [`fork_plan`] groups targets (equal q parallel, groups serial; further flows of an
//! instance deferred). Nothing found: [`Lookup::NotFound`] (404) or, when a
//! [`SubscriberStore`](weir_store::SubscriberStore) is attached and knows the user,
//! [`Lookup::NoBinding`] (`no_binding_reply`, 404 or 480) — see
//! [`Registrar::lookup_reply`].
//!
//! ## Removal
//!
//! [`Registrar::branch_failed`] removes the binding a failed branch used when the
//! status is in `unregister_on` (e.g. 477, or 408 without any reply — "unregister
//! mobiles that do not answer"), unless the UA re-registered since the lookup.
//! [`Registrar::remove_binding`], [`Registrar::unregister`] and [`Registrar::purge`]
//! (expired bindings → [`EventKind::Expired`]) complete the set.
//!
//! ## Configuration ([`Config`], Kamailio names)
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `default_expires` | 3600 | expiry without Contact `expires` and Expires header |
//! | `default_expires_range` | 0 | % randomisation of the default expiry |
//! | `expires_range` | 0 | % randomisation of client expiries |
//! | `min_expires` | 60 | 0 off; lower non-zero values raised (or 423) |
//! | `min_expires_mode` | 0 | 1: 423 Interval Too Brief + Min-Expires instead of raising |
//! | `max_expires` | 0 | 0 off; higher values lowered |
//! | `default_q` | unset | q*1000 for contacts without q |
//! | `max_contacts` | 0 | bindings per AOR, 0 unlimited; above → 503 |
//! | `retry_after` | 0 | Retry-After on 5xx: `N` or `[min, max]` (random) |
//! | `case_sensitive` | 0 | keep AOR user case |
//! | `use_domain` | **1** | AOR includes the domain (Kamailio default 0) |
//! | `realm_prefix` | unset | stripped from the AOR domain |
//! | `use_path` | 0 | store Path and route through it |
//! | `path_mode` | 2 | 0 off / 1 lazy / 2 strict (420 without Supported: path) |
//! | `gruu_enabled` | 1 | pub-gruu/temp-gruu with Supported: gruu |
//! | `outbound_mode` | 0 | 0 none / 1 supported / 2 required |
//! | `regid_mode` | 0 | 0 always honour reg-id / 1 only via an outbound edge |
//! | `flow_timer` | 0 | Flow-Timer value (0..=999) with outbound |
//! | `cseq_delay` | 20 | retransmission window (s) |
//! | `contact_max_size` | 512 | longest Contact URI |
//! | `callid_max_size` | 255 | longest Call-ID |
//! | `received_param` | `received` | Contact param echoing the stored source ("" none) |
//! | `save_received` | `nat` | `never` / `nat` / `always` store the source address |
//! | `append_branches` | 1 | lookup returns all contacts (0: first only) |
//! | `no_binding_reply` | 404 | 404 or 480 for a known user without binding |
//! | `unregister_on` | `[]` | branch failures that remove the binding, e.g. `[477, 408]` |
//!
//! ## Differences from Kamailio
//!
//! * AOR keys carry a `sip:` prefix; `use_domain` defaults to 1.
//! * A REGISTER is all-or-nothing (Kamailio may keep the contacts processed before an
//!   error); Path strict-mode 420 is decided before saving (Kamailio saves, then 420s).
//! * A missing/unparsable To gives 400 (Kamailio's `save()` returns -1 without reply).
//! * Instance matching is ASCII case-insensitive; without an instance match a contact
//!   falls back to Contact-URI matching (no duplicate URIs), and the CSeq check also
//!   applies to instance matches.
//! * `received` is computed here (`save_received`) instead of by nathelper.
//! * temp-gruu uses FNV-1a for the AOR hash (opaque anyway); a temp-gruu Request-URI
//!   cannot be looked up (the store has no by-ruid index) and gives NotFound.
//! * Not implemented: `method_filtering`, `xavp_cfg`/`xavp_rcd`, socket/tcpconn
//!   tracking, `path_use_received`, `path_check_local`, `lookup_filter_mode`, DB modes.
#![deny(missing_docs)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used))]

mod aor;
mod config;
mod contact;
mod registrar;
mod types;

#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;

pub use aor::{aor_of, Aor, AorError, MAX_AOR_LEN};
pub use config::{
    Config, ConfigError, OutboundMode, PathMode, RegIdMode, RetryAfter, SaveReceived,
};
pub use contact::{
    format_q, has_option_tag, parse_contacts, parse_delta, parse_path, parse_q, split_list,
    ContactError, ContactSpec, Contacts, PathEntry,
};
pub use registrar::{reason_for, Registrar};
pub use types::{
    fork_plan, BindingRef, Event, EventKind, ForkPlan, Lookup, Registered, RequestContext,
    SaveOptions, SaveResult, Target,
};
