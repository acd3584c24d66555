//! The crate's error type.

use weir_message::HeaderError;

/// Why the table refused an operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The table holds `capacity` transactions already. The proxy answers 503.
    #[error("transaction table full ({capacity} transactions)")]
    Full {
        /// The configured capacity.
        capacity: usize,
    },
    /// No live transaction has this id (it ended, or never existed).
    #[error("no such transaction")]
    NotFound,
    /// The message lacks what matching needs (top Via, CSeq, Call-ID, method).
    #[error("cannot match message: {0}")]
    Unmatchable(#[from] HeaderError),
    /// A response or ACK was handed where a request that creates a transaction was
    /// expected, or the other way round.
    #[error("message of the wrong kind: {0}")]
    WrongKind(&'static str),
    /// A branch request carries no Via branch, or one already used in this table.
    #[error("branch request has a missing or duplicate Via branch")]
    BadBranch,
    /// Forking beyond `max_branches`.
    #[error("too many branches (at most {max})")]
    TooManyBranches {
        /// The configured limit.
        max: usize,
    },
    /// A 6xx arrived: RFC 3261 §16.7 step 5 forbids new branches.
    #[error("forking blocked by a 6xx response")]
    ForkingBlocked,
    /// The request was cancelled upstream.
    #[error("transaction cancelled")]
    Cancelled,
    /// A final response was already sent upstream.
    #[error("final response already sent")]
    Completed,
    /// Branches are still pending (for [`TransactionTable::release`](crate::TransactionTable::release)).
    #[error("transaction has branches")]
    HasBranches,
}

impl Error {
    /// The status a stateless reply to the request should carry when this error stops
    /// it: 503 for a full table, 500 otherwise.
    pub fn status(&self) -> u16 {
        match self {
            Error::Full { .. } => 503,
            _ => 500,
        }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
