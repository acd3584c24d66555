//! Counters of what the core did with each message.

use weir_metrics::Counter;

/// Bump a counter.
pub(crate) fn inc(c: &Counter) {
    c.inc();
}

macro_rules! counters {
    ($($(#[$doc:meta])* $name:ident),* $(,)?) => {
        /// Counters, updated without locks, each thread in its own cache line
        /// ([`Counter`]).
        #[derive(Debug, Default)]
        pub struct Stats { $($(#[$doc])* pub $name: Counter,)* }

        /// A point-in-time copy of [`Stats`].
        #[derive(Debug, Default, Clone, PartialEq, Eq)]
        pub struct StatsSnapshot { $($(#[$doc])* pub $name: u64,)* }

        impl Stats {
            /// Read every counter.
            pub fn snapshot(&self) -> StatsSnapshot {
                StatsSnapshot { $($name: self.$name.get(),)* }
            }
        }

        impl StatsSnapshot {
            /// `(name, value)` pairs, for logs and metrics export.
            pub fn pairs(&self) -> Vec<(&'static str, u64)> {
                vec![$((stringify!($name), self.$name),)*]
            }
        }
    };
}

counters! {
    /// Requests parsed.
    requests,
    /// Responses parsed.
    responses,
    /// Unparseable messages that could not be answered, dropped.
    parse_dropped,
    /// Malformed requests answered with 400/505/513.
    malformed_replied,
    /// Requests forwarded.
    forwarded,
    /// Responses relayed upstream.
    responses_relayed,
    /// Responses not for us, or with nowhere to go, dropped.
    responses_dropped,
    /// Replies generated locally (all codes).
    local_replies,
    /// Requests answered 483 (Max-Forwards exhausted).
    too_many_hops,
    /// Requests answered 482 (loop).
    loops,
    /// Requests dropped by a module verdict or policy.
    module_dropped,
    /// Module failures (trap, timeout, memory, error, busy).
    module_failures,
    /// Requests that matched no route.
    no_route,
    /// Destinations that could not be resolved.
    unresolvable,
    /// Sends that failed.
    send_failed,
    /// Stateful branches that ended without success (final >= 300 or timeout).
    branch_failures,
    /// New legs started after a failure (serial forking, failover).
    failovers,
    /// REGISTERs handled by the registrar (all outcomes).
    registrations,
    /// REGISTERs the registrar refused (>= 300).
    registrations_refused,
    /// Location lookups.
    lookups,
    /// Lookups that found no usable contact (404/480).
    lookups_not_found,
    /// Bindings removed after a branch failure (`unregister_on`).
    unregistered,
    /// ACKs of replies Weir sent statelessly, absorbed.
    acks_absorbed,
    /// Registrar binding events (added, refreshed, removed, expired).
    binding_events,
    /// Transactions a module kept pending (verdict `wait`).
    parked,
    /// Parked transactions answered with the `wait` code (no branch ever started).
    park_timeouts,
    /// Branches added to pending transactions by modules (`add-branch`, `append-contacts`).
    late_branches,
    /// SIP requests originated by modules.
    module_requests,
    /// Module-originated requests that timed out (local 408).
    module_request_timeouts,
    /// HTTP requests made by modules.
    module_http_requests,
    /// Asynchronous events (timers, request outcomes, transaction ends) modules handled.
    module_events,
}
