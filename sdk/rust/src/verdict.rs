//! What a hook tells the host to do next.

use std::time::Duration;

use crate::types::{BranchTarget, Header};

// === Verdict ===

/// What the host should do with the message once the module has looked at it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Hand the (possibly edited) message to the next module in the chain; at the end of
    /// the chain the host forwards it to the route's next hop or by the request URI.
    Continue,
    /// Answer the request locally and stop the chain. Build with [`Verdict::reply`] or
    /// [`Verdict::reply_with`].
    Reply(Reply),
    /// Forward the request to these SIP URIs and stop the chain (parallel fork on a
    /// stateful route, first target on a stateless one). Build with [`Verdict::forward`].
    Forward(Vec<String>),
    /// Discard the message silently and stop the chain.
    Drop,
    /// Stateful routes, initial INVITE: keep the transaction pending (Kamailio's
    /// `t_suspend` / tsilo pattern) and stop the chain. The host forks to the given
    /// branches now (possibly none) and keeps the transaction open until the timeout
    /// even when every branch fails, so that
    /// [`transactions::add_branch`](crate::transactions::add_branch) and
    /// [`append_contacts`](crate::transactions::append_contacts) can fork it later. At
    /// the deadline, if nothing answered and no branch is pending, the best reply of the
    /// failed branches goes upstream, or `code` when there was none. Elsewhere the host
    /// refuses it (the failure policy applies). Build with [`Verdict::wait`].
    Wait(Wait),
}

impl Verdict {
    /// Answer with `code` and its standard reason phrase.
    pub fn reply(code: u16) -> Self {
        Verdict::Reply(Reply {
            code,
            reason: String::new(),
            headers: Vec::new(),
        })
    }

    /// Answer with `code`, a reason phrase (empty: the standard one) and extra headers,
    /// given as [`Header`]s or `(name, value)` pairs.
    ///
    /// ```
    /// # use weir_sdk::Verdict;
    /// let busy = Verdict::reply_with(486, "Busy Here", [("Retry-After", "60")]);
    /// ```
    pub fn reply_with<H: Into<Header>>(
        code: u16,
        reason: impl Into<String>,
        headers: impl IntoIterator<Item = H>,
    ) -> Self {
        Verdict::Reply(Reply {
            code,
            reason: reason.into(),
            headers: headers.into_iter().map(Into::into).collect(),
        })
    }

    /// Forward to these SIP URIs (e.g. `sip:10.0.0.1:5060;transport=tcp`). An empty list
    /// is an error when the hook returns.
    pub fn forward<T: Into<String>>(targets: impl IntoIterator<Item = T>) -> Self {
        Verdict::Forward(targets.into_iter().map(Into::into).collect())
    }

    /// Keep the transaction pending for `timeout` (1 ms to 300 s, rounded up to whole
    /// milliseconds), forking to `branches` now; answer `code` (400..=699, e.g. 480) at
    /// the deadline if no branch ever answered. At most 16 branches. The bounds are
    /// checked when the hook returns.
    ///
    /// ```
    /// use std::time::Duration;
    /// use weir_sdk::{BranchTarget, Status, Verdict};
    ///
    /// // Push the callee's device, and wait up to 30 s for it to register.
    /// let v = Verdict::wait(vec![], Duration::from_secs(30), Status::TEMPORARILY_UNAVAILABLE);
    /// // Or ring what is registered now and keep the call open for late devices.
    /// let v = Verdict::wait(
    ///     vec![BranchTarget::new("sip:alice@192.0.2.10")],
    ///     Duration::from_secs(30),
    ///     480,
    /// );
    /// ```
    pub fn wait(branches: Vec<BranchTarget>, timeout: Duration, code: u16) -> Self {
        Verdict::Wait(Wait {
            branches,
            timeout_ms: crate::types::millis_u32(timeout),
            code,
        })
    }
}

// === Wait ===

/// How long and with what to keep a transaction pending ([`Verdict::Wait`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wait {
    /// Branches to start now (at most 16; possibly none).
    pub branches: Vec<BranchTarget>,
    /// How long the transaction stays open waiting for more branches: 1 ms to 300 s
    /// (the host also bounds it by the transaction's lifetime).
    pub timeout_ms: u32,
    /// The reply at the deadline when no branch ever answered: 400..=699.
    pub code: u16,
}

impl Wait {
    /// Longest wait, in milliseconds.
    pub const MAX_TIMEOUT_MS: u32 = 300_000;
    /// Most branches started with the verdict.
    pub const MAX_BRANCHES: usize = 16;
}

// === Reply ===

/// A locally generated reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// Status code, 100..=699 (checked when the hook returns).
    pub code: u16,
    /// Reason phrase; empty means the standard phrase for `code`.
    pub reason: String,
    /// Extra headers to put in the reply.
    pub headers: Vec<Header>,
}

// === Status ===

/// Names for common SIP status codes, for [`Verdict::reply`]: `Verdict::reply(Status::NOT_FOUND)`.
///
/// A namespace only (it has no values); the codes are plain `u16`s.
#[derive(Debug)]
pub enum Status {}

impl Status {
    /// 100 Trying.
    pub const TRYING: u16 = 100;
    /// 180 Ringing.
    pub const RINGING: u16 = 180;
    /// 183 Session Progress.
    pub const SESSION_PROGRESS: u16 = 183;
    /// 200 OK.
    pub const OK: u16 = 200;
    /// 202 Accepted.
    pub const ACCEPTED: u16 = 202;
    /// 301 Moved Permanently.
    pub const MOVED_PERMANENTLY: u16 = 301;
    /// 302 Moved Temporarily.
    pub const MOVED_TEMPORARILY: u16 = 302;
    /// 400 Bad Request.
    pub const BAD_REQUEST: u16 = 400;
    /// 401 Unauthorized.
    pub const UNAUTHORIZED: u16 = 401;
    /// 403 Forbidden.
    pub const FORBIDDEN: u16 = 403;
    /// 404 Not Found.
    pub const NOT_FOUND: u16 = 404;
    /// 405 Method Not Allowed.
    pub const METHOD_NOT_ALLOWED: u16 = 405;
    /// 407 Proxy Authentication Required.
    pub const PROXY_AUTHENTICATION_REQUIRED: u16 = 407;
    /// 408 Request Timeout.
    pub const REQUEST_TIMEOUT: u16 = 408;
    /// 420 Bad Extension.
    pub const BAD_EXTENSION: u16 = 420;
    /// 423 Interval Too Brief.
    pub const INTERVAL_TOO_BRIEF: u16 = 423;
    /// 480 Temporarily Unavailable.
    pub const TEMPORARILY_UNAVAILABLE: u16 = 480;
    /// 481 Call/Transaction Does Not Exist.
    pub const CALL_DOES_NOT_EXIST: u16 = 481;
    /// 482 Loop Detected.
    pub const LOOP_DETECTED: u16 = 482;
    /// 483 Too Many Hops.
    pub const TOO_MANY_HOPS: u16 = 483;
    /// 484 Address Incomplete.
    pub const ADDRESS_INCOMPLETE: u16 = 484;
    /// 486 Busy Here.
    pub const BUSY_HERE: u16 = 486;
    /// 487 Request Terminated.
    pub const REQUEST_TERMINATED: u16 = 487;
    /// 488 Not Acceptable Here.
    pub const NOT_ACCEPTABLE_HERE: u16 = 488;
    /// 500 Server Internal Error.
    pub const SERVER_INTERNAL_ERROR: u16 = 500;
    /// 501 Not Implemented.
    pub const NOT_IMPLEMENTED: u16 = 501;
    /// 502 Bad Gateway.
    pub const BAD_GATEWAY: u16 = 502;
    /// 503 Service Unavailable.
    pub const SERVICE_UNAVAILABLE: u16 = 503;
    /// 504 Server Time-out.
    pub const SERVER_TIMEOUT: u16 = 504;
    /// 600 Busy Everywhere.
    pub const BUSY_EVERYWHERE: u16 = 600;
    /// 603 Decline.
    pub const DECLINE: u16 = 603;
    /// 604 Does Not Exist Anywhere.
    pub const DOES_NOT_EXIST_ANYWHERE: u16 = 604;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constructors() {
        assert_eq!(
            Verdict::reply(Status::NOT_FOUND),
            Verdict::Reply(Reply {
                code: 404,
                reason: String::new(),
                headers: vec![]
            })
        );
        let Verdict::Reply(r) = Verdict::reply_with(486, "Busy Here", [("Retry-After", "60")])
        else {
            panic!("not a reply")
        };
        assert_eq!(r.headers, vec![Header::new("Retry-After", "60")]);
        assert_eq!(
            Verdict::forward(["sip:a", "sip:b"]),
            Verdict::Forward(vec!["sip:a".into(), "sip:b".into()])
        );
        assert_eq!(
            Verdict::wait(
                vec![BranchTarget::new("sip:a")],
                Duration::from_micros(1500),
                480
            ),
            Verdict::Wait(Wait {
                branches: vec![BranchTarget::new("sip:a")],
                timeout_ms: 2,
                code: 480
            })
        );
    }
}
