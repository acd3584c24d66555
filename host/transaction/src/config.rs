//! Timer values and table settings, with Kamailio `tm` defaults.

use std::time::Duration;

/// Transaction timers (RFC 3261 §17, Table 4), named after Kamailio's `tm` parameters.
///
/// How the RFC timers derive from these:
///
/// | timer | meaning | value |
/// |---|---|---|
/// | A, E, G | retransmission interval, doubling | starts at `t1`, capped at `t2` (UDP only) |
/// | B, F | client gives up without a provisional (B) / without a final (F) | `fr_timer` |
/// | C | INVITE client gives up after a provisional (restarted on each 1xx) | `fr_inv_timer` |
/// | D | client INVITE absorbs final retransmissions | `64*t1` (UDP), 0 (reliable) |
/// | H | server waits for the ACK of a non-2xx final | `64*t1` |
/// | L, M | 2xx retransmission windows (RFC 6026) | `wt_timer` |
/// | D | client INVITE absorbs non-2xx final retransmissions | `wt_timer` (UDP), 0 (reliable) |
/// | I, K | absorb ACK / response retransmissions | `t4` (UDP), 0 (reliable) |
/// | J | server non-INVITE absorbs request retransmissions | `wt_timer` (UDP), 0 (reliable) |
///
/// RFC 3261/6026 give D, J, L and M `64*T1` (32 s); like Kamailio, Weir keeps a
/// completed transaction for `wt_timer` (5 s) instead: a proxy at 1,000 calls/s would
/// otherwise hold 64,000 finished transactions. Retransmissions arriving later are
/// rare (the peer's own timers stopped when it got the final) and are then handled
/// statelessly, as Kamailio does.
///
/// `max_inv_lifetime` / `max_noninv_lifetime` cap a whole proxy transaction (all branches
/// together); `wt_timer` is also how long an unmatched CANCEL is remembered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate; first retransmission interval. Kamailio `retr_timer1`, 500 ms.
    pub t1: Duration,
    /// Retransmission interval cap. Kamailio `retr_timer2`, 4 s.
    pub t2: Duration,
    /// Longest time a message stays in the network. 5 s.
    pub t4: Duration,
    /// Branch timer until the first provisional (INVITE) or the final (non-INVITE);
    /// expiry is a local 408. Kamailio `fr_timer`, 30 s.
    pub fr_timer: Duration,
    /// INVITE branch timer once a provisional arrived, restarted on each one. Kamailio
    /// `fr_inv_timer`, 120 s.
    pub fr_inv_timer: Duration,
    /// Cap on a whole INVITE transaction. Kamailio `max_inv_lifetime`, 180 s.
    pub max_inv_lifetime: Duration,
    /// Cap on a whole non-INVITE transaction. Kamailio `max_noninv_lifetime`, 32 s.
    pub max_noninv_lifetime: Duration,
    /// How long a completed transaction lingers to absorb late retransmissions
    /// (timers D, J, L, M), and how long an unmatched CANCEL is remembered. Kamailio
    /// `wt_timer`, 5 s.
    pub wt_timer: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        TimerConfig {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
            fr_timer: Duration::from_secs(30),
            fr_inv_timer: Duration::from_secs(120),
            max_inv_lifetime: Duration::from_secs(180),
            max_noninv_lifetime: Duration::from_secs(32),
            wt_timer: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// `64*T1`: timers C and H.
    pub fn t1x64(&self) -> Duration {
        self.t1.saturating_mul(64)
    }

    /// How long a completed transaction lingers: timers D (UDP), J (UDP), L and M.
    pub fn linger(&self) -> Duration {
        self.wt_timer
    }

    /// The next retransmission interval after `current`: doubled, capped at T2.
    pub(crate) fn backoff(&self, current: Duration) -> Duration {
        current.saturating_mul(2).min(self.t2)
    }
}

/// Settings of a [`TransactionTable`](crate::TransactionTable).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TableConfig {
    /// Most transactions alive at once (CANCEL transactions included). Inserting beyond
    /// is [`Error::Full`](crate::Error::Full), which the proxy answers with 503.
    pub capacity: usize,
    /// Number of lock shards (rounded to 1..=256).
    pub shards: usize,
    /// Most branches one transaction may fork to, over all serial legs (Kamailio's
    /// `MAX_BRANCHES`, 12).
    pub max_branches: usize,
    /// Default timers; each transaction can override them.
    pub timers: TimerConfig,
    /// `Server` header put on replies the table generates (100, 408, 487, 481, ...).
    pub server_header: Option<String>,
    /// Send `100 trying -- your call is important to us` upstream on a new INVITE
    /// (Kamailio `auto_inv_100`, on).
    pub auto_inv_100: bool,
    /// Relay downstream 100s upstream (Kamailio `relay_100`, off).
    pub relay_100: bool,
    /// A winning 503 goes upstream as 500 (Kamailio `remap_503_500`, on; RFC 3261
    /// §16.7 step 6).
    pub remap_503_500: bool,
    /// Put every WWW-/Proxy-Authenticate of every 401/407 branch into a winning
    /// 401/407 (Kamailio `aggregate_challenges`, on; RFC 3261 §16.7 step 7).
    pub aggregate_challenges: bool,
    /// Most unmatched CANCELs remembered at once (per table), for `wt_timer`.
    pub max_cancel_memory: usize,
    /// Timers fire on a grid of this step (default 60 ms; Kamailio's timer tick is
    /// 1/16 s), up to one step late, in batches: the timer task wakes at most once per
    /// step instead of once per deadline. Zero fires each timer at its exact deadline.
    pub timer_resolution: Duration,
}

impl Default for TableConfig {
    fn default() -> Self {
        TableConfig {
            capacity: 65_536,
            shards: 16,
            max_branches: 12,
            timers: TimerConfig::default(),
            server_header: None,
            auto_inv_100: true,
            relay_100: false,
            remap_503_500: true,
            aggregate_challenges: true,
            max_cancel_memory: 4096,
            timer_resolution: Duration::from_millis(60),
        }
    }
}
