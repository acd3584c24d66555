//! The decisions of Kamailio's pipelimit algorithms, as pure functions of the counters
//! and load figures, so each can be tested without a store.

use serde::Deserialize;

/// A pipe's algorithm. Names are upper case, as in Kamailio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum Algorithm {
    /// Pass while the window's counter is at most the limit.
    #[serde(rename = "TAILDROP")]
    TailDrop,
    /// Random early detection: drop every `load`-th request but one, where `load` is the
    /// previous window's counter divided by the limit.
    #[serde(rename = "RED")]
    Red,
    /// Drop while the bytes queued on the proxy's UDP sockets exceed the limit.
    #[serde(rename = "NETWORK")]
    Network,
    /// Drop a share of requests set by a PID controller on the CPU load, whose setpoint
    /// is the limit in percent.
    #[serde(rename = "FEEDBACK")]
    Feedback,
    /// Never drop.
    #[serde(rename = "NOP")]
    Nop,
}

impl Algorithm {
    /// The name as written in the config.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::TailDrop => "TAILDROP",
            Algorithm::Red => "RED",
            Algorithm::Network => "NETWORK",
            Algorithm::Feedback => "FEEDBACK",
            Algorithm::Nop => "NOP",
        }
    }
}

/// TAILDROP: the `count`-th request of the window passes iff `count <= limit`.
pub fn taildrop_passes(count: i64, limit: i64) -> bool {
    count <= limit
}

/// RED's load: the previous window's counter divided by the limit (integer division,
/// as Kamailio does it at the end of each timer interval).
pub fn red_load(previous: i64, limit: i64) -> i64 {
    if limit <= 0 {
        return 0;
    }
    previous.max(0) / limit
}

/// RED: the `count`-th request passes iff the load is 0 or `count` is a multiple of it.
/// So nothing drops until the previous window had at least twice the limit; with load
/// `n` one request in `n` passes.
pub fn red_passes(count: i64, load: i64) -> bool {
    load <= 0 || count % load == 0
}

/// NETWORK: Kamailio's load is +1 when the queued bytes exceed the limit, -1 otherwise,
/// and the check returns `-load`: pass iff `queued <= limit`.
pub fn network_passes(queued_bytes: u64, limit: i64) -> bool {
    i128::from(queued_bytes) <= i128::from(limit)
}

/// Kamailio's fixed permutation of 0..100 that FEEDBACK compares the drop rate with:
/// any permutation drops exactly `rate` of every 100 consecutive requests, and a
/// scattered one spreads them out. 37 is coprime with 100, so this is one.
pub fn feedback_slot(count: i64) -> i64 {
    (count.rem_euclid(100) * 37 + 11) % 100
}

/// FEEDBACK: the `count`-th request drops iff its slot is below the drop rate (percent).
pub fn feedback_passes(count: i64, drop_rate: i64) -> bool {
    feedback_slot(count) >= drop_rate
}

/// The gains of FEEDBACK's PID controller (Kamailio: `kp` 0, `ki` -25, `kd` 0).
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PidGains {
    /// Proportional gain.
    #[serde(default)]
    pub kp: f64,
    /// Integral gain; negative, since the error is negative when the CPU is too busy.
    #[serde(default = "default_ki")]
    pub ki: f64,
    /// Derivative gain.
    #[serde(default)]
    pub kd: f64,
}

impl Default for PidGains {
    fn default() -> Self {
        PidGains {
            kp: 0.0,
            ki: default_ki(),
            kd: 0.0,
        }
    }
}

fn default_ki() -> f64 {
    -25.0
}

/// The state of a PID controller, kept in the store between windows.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PidState {
    /// The window this state was computed for.
    pub window: u64,
    /// The integral of the error.
    pub int_err: f64,
    /// The last error.
    pub last_err: f64,
    /// The drop rate in percent (0 to 100) that follows.
    pub drop_rate: i64,
}

impl PidState {
    /// One controller step at the start of `window` (Kamailio's `do_update_load`):
    /// `err = setpoint - load`; the integral grows only while it is negative or the
    /// error is (so long idle periods do not build up credit); `output = kp*err +
    /// ki*integral + kd*(err - last_err)`; the drop rate is the output cut to a whole
    /// percent, at least 0 (and at most 100 here).
    pub fn step(self, gains: PidGains, setpoint: f64, load: f64, window: u64) -> PidState {
        let err = setpoint - load;
        let dif_err = err - self.last_err;
        let mut int_err = self.int_err;
        if int_err < 0.0 || err < 0.0 {
            int_err += err;
        }
        let output = gains.kp * err + gains.ki * int_err + gains.kd * dif_err;
        // `clamp` keeps NaN, which `as` maps to 0: any output lands in 0..=100.
        let drop_rate = output.clamp(0.0, 100.0) as i64;
        PidState {
            window,
            int_err,
            last_err: err,
            drop_rate,
        }
    }

    /// The store text: `window int_err last_err drop_rate`.
    pub fn encode(&self) -> String {
        format!(
            "{} {} {} {}",
            self.window, self.int_err, self.last_err, self.drop_rate
        )
    }

    /// Parse [`encode`](Self::encode)'s text; `None` if it is not that.
    pub fn decode(text: &str) -> Option<PidState> {
        let mut f = text.split_ascii_whitespace();
        let state = PidState {
            window: f.next()?.parse().ok()?,
            int_err: f.next()?.parse().ok().filter(|v: &f64| v.is_finite())?,
            last_err: f.next()?.parse().ok().filter(|v: &f64| v.is_finite())?,
            drop_rate: f.next()?.parse().ok()?,
        };
        f.next().is_none().then_some(state)
    }
}
