//! Transaction control (Kamailio's tm/tmx/tsilo): keep an INVITE transaction pending
//! with [`Verdict::wait`](crate::Verdict::wait), fork it to more targets later, and
//! learn when it ends. Transaction ids come from
//! [`Message::transaction_id`](crate::Message::transaction_id) (0 on stateless routes)
//! and are never reused. The typical use is push notification: wait for the callee's
//! device to register, then fork the call to it from
//! [`Module::on_binding`](crate::Module::on_binding).
//!
//! ```
//! use std::time::Duration;
//! use weir_sdk::{location, testing, transactions, BranchTarget, Verdict};
//! use weir_sdk::transactions::State;
//!
//! let mut invite = testing::request(
//!     "INVITE sip:alice@example.com SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
//!      Call-ID: 1@a\r\nCSeq: 1 INVITE\r\n\r\n",
//! );
//! testing::set_transaction(&mut invite, 7);
//! testing::set_tx_state(7, State::Pending);
//!
//! // In on_request: keep the call open for 30 s and hear when it ends.
//! let tx = invite.transaction_id();
//! let verdict = Verdict::wait(vec![], Duration::from_secs(30), 480);
//! assert!(transactions::watch(tx));
//!
//! // Later (on_binding, on_event): fork it to the device that registered.
//! if transactions::state(tx) == State::Pending {
//!     transactions::add_branch(tx, &BranchTarget::new("sip:alice@192.0.2.10:5060"))?;
//! }
//! assert_eq!(testing::added_branches(), vec![(7, BranchTarget::new("sip:alice@192.0.2.10:5060"))]);
//!
//! // Or, like tsilo's ts_append, fork to every contact of the AOR not yet tried.
//! testing::set_bindings("sip:alice@example.com", vec![
//!     location::Binding::new("sip:alice@192.0.2.10:5060"),
//!     location::Binding::new("sip:alice@192.0.2.11:5060"),
//! ]);
//! assert_eq!(transactions::append_contacts(tx, "sip:alice@example.com", None)?, 1);
//! # let _ = verdict;
//! # Ok::<(), weir_sdk::Error>(())
//! ```
//!
//! In the native harness every transaction is [`State::Gone`] until
//! [`testing::set_tx_state`](crate::testing::set_tx_state) says otherwise, and
//! [`testing::added_branches`](crate::testing::added_branches),
//! [`testing::appended`](crate::testing::appended) and
//! [`testing::watched`](crate::testing::watched) record the calls.

#[cfg(target_arch = "wasm32")]
use crate::__private::bindings::weir::sip::transactions as backend;
use crate::__private::bindings::weir::sip::transactions::TxState as WitState;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::mock::transactions as backend;
use crate::{BranchTarget, Error};

/// Where a transaction stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// No final response went upstream yet: branches may be added.
    Pending,
    /// A final response went upstream.
    Answered,
    /// Cancelled upstream.
    Cancelled,
    /// Unknown: ended and forgotten, or never existed (0, for instance).
    Gone,
}

impl From<WitState> for State {
    fn from(s: WitState) -> Self {
        match s {
            WitState::Pending => State::Pending,
            WitState::Answered => State::Answered,
            WitState::Cancelled => State::Cancelled,
            WitState::Gone => State::Gone,
        }
    }
}

impl From<State> for WitState {
    fn from(s: State) -> Self {
        match s {
            State::Pending => WitState::Pending,
            State::Answered => WitState::Answered,
            State::Cancelled => WitState::Cancelled,
            State::Gone => WitState::Gone,
        }
    }
}

/// The state of transaction `id`.
pub fn state(id: u64) -> State {
    backend::state(id).into()
}

/// Fork pending transaction `id` to one more target (a new parallel branch). Fails with
/// a [`HostError`](crate::HostError) when the transaction is not pending or the target
/// is invalid (a URI that does not parse, more than 8 Path entries).
pub fn add_branch(id: u64, target: &BranchTarget) -> Result<(), Error> {
    crate::error::host(
        "transactions.add-branch",
        backend::add_branch(id, &target.clone().into()),
    )
}

/// Kamailio's `ts_append`: look `aor` up in the location service and fork pending
/// transaction `id` to every registered contact that is not yet one of its branches
/// (only to `contact`, when given). Returns how many branches were added (0 is not an
/// error). Fails with a [`HostError`](crate::HostError) when the transaction is not
/// pending or the location service cannot answer.
pub fn append_contacts(id: u64, aor: &str, contact: Option<&str>) -> Result<u32, Error> {
    crate::error::host(
        "transactions.append-contacts",
        backend::append_contacts(id, aor, contact),
    )
}

/// Deliver [`Event::TransactionDone(id)`](crate::Event::TransactionDone) to this module
/// when transaction `id` ends. False if it is already gone.
pub fn watch(id: u64) -> bool {
    backend::watch(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states_convert_both_ways() {
        for s in [
            State::Pending,
            State::Answered,
            State::Cancelled,
            State::Gone,
        ] {
            assert_eq!(State::from(WitState::from(s)), s);
        }
    }
}
