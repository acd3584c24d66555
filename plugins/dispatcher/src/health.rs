//! Destination state and the keepalive (probing) state machine: Kamailio's
//! `ds_update_state`, `ds_options_callback` and `ds_ping_result_helper`.
//!
//! A destination's state is its flags word (`FLAG_*` of [`crate::list`]) plus one
//! counter (`probing_count`) shared by failures (towards `ds_probing_threshold`) and, while
//! inactive, successes (towards `ds_inactive_threshold`). Kamailio quirks kept on purpose:
//! every update clears all six state bits first (so `ds_mark_dst` also clears the
//! no-DNS/no-ping flags), a failed probe of an inactive destination keeps it inactive and
//! resets the counter, and in probing mode 0 a failure drops the probing flag.

use crate::list::{
    is_usable, FLAG_DISABLED, FLAG_INACTIVE, FLAG_NO_DNS, FLAG_NO_PING, FLAG_PROBING,
    FLAG_STATES_ALL, FLAG_TRYING,
};

/// `ds_probing_mode` 0: probe only destinations with the probing flag; a successful
/// probe clears the flag.
pub const PROBE_FLAGGED: u8 = 0;
/// 1: probe all; failures set trying, probing flag kept.
pub const PROBE_ALL: u8 = 1;
/// 2: probe only inactive destinations with the probing flag.
pub const PROBE_INACTIVE: u8 = 2;
/// 3: probe probing-flagged destinations continuously (the flag is kept).
pub const PROBE_ONLY_FLAGGED: u8 = 3;

/// `ds_update_state` mode bit: immediate state change (thresholds ignored).
const MODE_SET: u32 = 1;
/// `ds_update_state` mode bit: called from script.
const MODE_FUNC: u32 = 2;

/// Extra reply codes counting as a successful probe (`ds_ping_reply_codes`): exact codes
/// (`code=NNN`, 100..=699) and classes (`class=N`, 1..=6). Any 2xx always counts.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplyCodes(Vec<u16>);

impl ReplyCodes {
    /// Parses `code=NNN;class=N;...` (names case-insensitive). Out-of-range or
    /// non-numeric values and unknown names are ignored, as in Kamailio.
    pub fn parse(s: &str) -> ReplyCodes {
        let mut v = Vec::new();
        for part in s.split(';') {
            let Some((name, value)) = part.split_once('=') else {
                continue;
            };
            let name = name.trim();
            let Ok(n) = value.trim().parse::<u16>() else {
                continue;
            };
            let code = name.eq_ignore_ascii_case("code") && (100..700).contains(&n);
            let class = name.eq_ignore_ascii_case("class") && (1..7).contains(&n);
            if code || class {
                v.push(n);
            }
        }
        ReplyCodes(v)
    }

    /// `ds_ping_check_rplcode`: entries >= 10 are codes, smaller ones classes.
    pub fn matches(&self, code: u16) -> bool {
        self.0.iter().any(|&c| {
            if c / 10 != 0 {
                c == code
            } else {
                c == code / 100
            }
        })
    }
}

/// Probing configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeConfig {
    /// `ds_probing_threshold`: failed probes before a destination goes inactive.
    pub probing_threshold: u32,
    /// `ds_inactive_threshold`: successful probes before an inactive one comes back.
    pub inactive_threshold: u32,
    /// `ds_probing_mode`, 0..=3 (`PROBE_*`).
    pub mode: u8,
    pub reply_codes: ReplyCodes,
}

impl Default for ProbeConfig {
    fn default() -> ProbeConfig {
        ProbeConfig {
            probing_threshold: 1,
            inactive_threshold: 1,
            mode: PROBE_FLAGGED,
            reply_codes: ReplyCodes::default(),
        }
    }
}

impl ProbeConfig {
    /// Whether a probe reply code counts as success (2xx or a listed code/class).
    pub fn is_success(&self, code: u16) -> bool {
        (200..=299).contains(&code) || self.reply_codes.matches(code)
    }
}

/// Up/down transition of an update (for `dispatcher:dst-up` / `dispatcher:dst-down`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Up,
    Down,
}

/// The result of a state update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Update {
    pub old_flags: u32,
    pub new_flags: u32,
    /// False when the update was not applied (disabled destination, or mode 3 and the
    /// probing flag was removed meanwhile).
    pub applied: bool,
    /// Set by [`DestHealth::mark`] (script / admin change).
    pub from_script: bool,
}

impl Update {
    fn unapplied(flags: u32) -> Update {
        Update {
            old_flags: flags,
            new_flags: flags,
            applied: false,
            from_script: false,
        }
    }

    /// Whether the flags changed.
    pub fn changed(&self) -> bool {
        self.old_flags != self.new_flags
    }

    /// The up/down event under `event_callback_mode` 0 (any change).
    pub fn event(&self) -> Option<Event> {
        self.event_for_mode(0)
    }

    /// The up/down event as Kamailio raises it: mode 0 any change, 1 only from probes
    /// (not from `ds_mark_dst`), 2 also when the old flags were 0 (initial state) — which
    /// fires `dst-up` for every successful probe of a plain active destination.
    pub fn event_for_mode(&self, callback_mode: u8) -> Option<Event> {
        if !self.applied {
            return None;
        }
        if callback_mode != 0 && callback_mode != 2 && self.from_script {
            return None;
        }
        let was_down = !is_usable(self.old_flags);
        let is_down = !is_usable(self.new_flags);
        let initial = callback_mode == 2 && self.old_flags == 0;
        if (initial || !was_down) && is_down {
            Some(Event::Down)
        } else if (initial || was_down) && !is_down {
            Some(Event::Up)
        } else {
            None
        }
    }
}

/// The runtime state of one destination.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DestHealth {
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Kamailio's `probing_count`.
    pub probing_count: u32,
}

impl DestHealth {
    /// The initial state: the list file's flags, counter 0.
    pub fn new(flags: u32) -> DestHealth {
        DestHealth {
            flags,
            probing_count: 0,
        }
    }

    /// Usable for routing (not inactive, not disabled).
    pub fn is_usable(&self) -> bool {
        is_usable(self.flags)
    }

    /// Compact store form: `<flags>:<count>` in decimal, e.g. `9:0`.
    pub fn encode(&self) -> String {
        format!("{}:{}", self.flags, self.probing_count)
    }

    /// Parses [`DestHealth::encode`]'s form.
    pub fn decode(s: &str) -> Option<DestHealth> {
        let (f, c) = s.split_once(':')?;
        let digits = |x: &str| !x.is_empty() && x.bytes().all(|b| b.is_ascii_digit());
        if !digits(f) || !digits(c) {
            return None;
        }
        Some(DestHealth {
            flags: f.parse().ok()?,
            probing_count: c.parse().ok()?,
        })
    }

    /// The two state letters of `dispatcher.list`: I/D/T/A, then P (probing), N (no
    /// ping) or X.
    pub fn letters(&self) -> String {
        let a = if self.flags & FLAG_INACTIVE != 0 {
            'I'
        } else if self.flags & FLAG_DISABLED != 0 {
            'D'
        } else if self.flags & FLAG_TRYING != 0 {
            'T'
        } else {
            'A'
        };
        let b = if self.flags & FLAG_PROBING != 0 {
            'P'
        } else if self.flags & FLAG_NO_PING != 0 {
            'N'
        } else {
            'X'
        };
        format!("{a}{b}")
    }

    /// `ds_ping_result_helper` plus the skips of `ds_ping_set`: whether the timer sends
    /// a keepalive to this destination under `mode`.
    pub fn should_probe(&self, mode: u8) -> bool {
        let f = self.flags;
        if f & (FLAG_DISABLED | FLAG_NO_PING | FLAG_NO_DNS) != 0 {
            return false;
        }
        if mode == PROBE_ALL {
            return true;
        }
        if mode != PROBE_INACTIVE && f & FLAG_PROBING != 0 {
            return true;
        }
        mode == PROBE_INACTIVE && f & FLAG_PROBING != 0 && f & FLAG_INACTIVE != 0
    }

    /// Applies a probe reply (`ds_options_callback`). `code` is the final reply code,
    /// 408 for a local timeout; use [`DestHealth::on_probe_send_failed`] when the request
    /// could not be sent.
    pub fn on_probe_result(&mut self, code: u16, cfg: &ProbeConfig) -> Update {
        if cfg.mode == PROBE_ONLY_FLAGGED && self.flags & FLAG_PROBING == 0 {
            return Update::unapplied(self.flags);
        }
        let state = if cfg.is_success(code) {
            if cfg.mode == PROBE_ALL
                || (cfg.mode == PROBE_ONLY_FLAGGED && self.flags & FLAG_PROBING != 0)
            {
                FLAG_PROBING
            } else {
                0
            }
        } else {
            self.failure_state(cfg)
        };
        if self.flags & FLAG_DISABLED != 0 {
            return Update::unapplied(self.flags);
        }
        self.update(state, 0, cfg)
    }

    /// Sending the keepalive failed (Kamailio treats it like a failed probe, code 500).
    pub fn on_probe_send_failed(&mut self, cfg: &ProbeConfig) -> Update {
        if self.flags & FLAG_DISABLED != 0 {
            return Update::unapplied(self.flags);
        }
        let state = self.failure_state(cfg);
        self.update(state, 0, cfg)
    }

    fn failure_state(&self, cfg: &ProbeConfig) -> u32 {
        if cfg.mode != PROBE_FLAGGED {
            FLAG_TRYING | FLAG_PROBING
        } else {
            FLAG_TRYING
        }
    }

    /// `ds_mark_dst` / `ds_mark_addr`: immediate change, thresholds ignored (`t` lands in
    /// inactive, `a` in active), counter reset. `state` is from [`parse_state`] or
    /// [`default_mark_state`].
    pub fn mark(&mut self, state: u32, cfg: &ProbeConfig) -> Update {
        let mut u = self.update(state, MODE_SET | MODE_FUNC, cfg);
        u.from_script = true;
        u
    }

    /// `dispatcher.set_state` (`ds_reinit_state`): sets the state bits as given, counter
    /// untouched, no events.
    pub fn set_state(&mut self, state: u32) -> Update {
        let old = self.flags;
        self.flags = (self.flags & !FLAG_STATES_ALL) | state;
        Update {
            old_flags: old,
            new_flags: self.flags,
            applied: true,
            from_script: true,
        }
    }

    /// Kamailio's `ds_update_state` on this destination.
    fn update(&mut self, mut state: u32, mode: u32, cfg: &ProbeConfig) -> Update {
        let old = self.flags;
        self.flags &= !FLAG_STATES_ALL;
        let init_state = state;
        if state & FLAG_TRYING != 0 && old & FLAG_INACTIVE != 0 {
            // inactive must become active before it can be trying
            state &= !FLAG_TRYING;
            state |= FLAG_INACTIVE;
        }
        if state & FLAG_DISABLED != 0 {
            self.flags |= FLAG_DISABLED;
        } else {
            self.flags |= state;
        }
        if state & FLAG_TRYING != 0 {
            self.probing_count = self.probing_count.saturating_add(1);
            if mode & MODE_SET != 0 || self.probing_count >= cfg.probing_threshold {
                self.flags &= !FLAG_TRYING;
                self.flags |= FLAG_INACTIVE;
                self.probing_count = 0;
            }
        } else if init_state & FLAG_TRYING == 0 && old & FLAG_INACTIVE != 0 {
            self.probing_count = self.probing_count.saturating_add(1);
            if mode & MODE_SET == 0 && self.probing_count < cfg.inactive_threshold {
                self.flags |= FLAG_INACTIVE;
                if old & FLAG_PROBING != 0 {
                    self.flags |= FLAG_PROBING;
                }
            } else {
                self.probing_count = 0;
            }
        } else {
            self.probing_count = 0;
        }
        Update {
            old_flags: old,
            new_flags: self.flags,
            applied: true,
            from_script: false,
        }
    }
}

/// `ds_parse_flags`: the state argument of `ds_mark_dst`/`ds_mark_addr`: letters
/// `a` (clear), `i`, `d`, `t`, `p`, any case, combined left to right. `None` for other
/// characters.
pub fn parse_state(s: &str) -> Option<u32> {
    let mut flag = 0u32;
    for c in s.chars() {
        match c.to_ascii_lowercase() {
            'a' => flag &= !FLAG_STATES_ALL,
            'i' => flag |= FLAG_INACTIVE,
            'd' => flag |= FLAG_DISABLED,
            't' => flag |= FLAG_TRYING,
            'p' => flag |= FLAG_PROBING,
            _ => return None,
        }
    }
    Some(flag)
}

/// The state of `ds_mark_dst()` without argument: inactive, plus probing in mode 1.
pub fn default_mark_state(mode: u8) -> u32 {
    if mode == PROBE_ALL {
        FLAG_INACTIVE | FLAG_PROBING
    } else {
        FLAG_INACTIVE
    }
}

/// The state argument of the `dispatcher.set_state` RPC: first character `0`/`i`
/// inactive, `1`/`a` active, `2`/`d` disabled, `3`/`t` trying (any case); a second
/// character `p` adds probing (not for disabled).
pub fn parse_rpc_state(s: &str) -> Option<u32> {
    let mut it = s.chars();
    let first = it.next()?.to_ascii_lowercase();
    let probing = matches!(it.next(), Some('p' | 'P'));
    let p = if probing { FLAG_PROBING } else { 0 };
    match first {
        '0' | 'i' => Some(FLAG_INACTIVE | p),
        '1' | 'a' => Some(p),
        '2' | 'd' => Some(FLAG_DISABLED),
        '3' | 't' => Some(FLAG_TRYING | p),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const I: u32 = FLAG_INACTIVE;
    const T: u32 = FLAG_TRYING;
    const D: u32 = FLAG_DISABLED;
    const P: u32 = FLAG_PROBING;

    fn cfg(mode: u8, pt: u32, it: u32) -> ProbeConfig {
        ProbeConfig {
            probing_threshold: pt,
            inactive_threshold: it,
            mode,
            reply_codes: ReplyCodes::default(),
        }
    }

    #[test]
    fn encode_decode() {
        let h = DestHealth {
            flags: I | P,
            probing_count: 2,
        };
        assert_eq!(h.encode(), "9:2");
        assert_eq!(DestHealth::decode("9:2"), Some(h));
        assert_eq!(DestHealth::decode("9"), None);
        assert_eq!(DestHealth::decode("x:1"), None);
        assert_eq!(DestHealth::decode("1:-1"), None);
        assert_eq!(DestHealth::decode(":1"), None);
        assert_eq!(h.letters(), "IP");
        assert_eq!(DestHealth::new(FLAG_NO_PING).letters(), "AN");
        assert_eq!(DestHealth::new(T).letters(), "TX");
    }

    #[test]
    fn reply_codes() {
        let rc = ReplyCodes::parse("code=404;class=3;code=99;class=7;foo=1;CODE=488");
        assert!(rc.matches(404));
        assert!(rc.matches(488));
        assert!(rc.matches(302));
        assert!(!rc.matches(99));
        assert!(!rc.matches(703));
        assert!(!rc.matches(403));
        let c = ProbeConfig {
            reply_codes: rc,
            ..ProbeConfig::default()
        };
        assert!(c.is_success(200) && c.is_success(299) && c.is_success(404));
        assert!(!c.is_success(408) && !c.is_success(500));
    }

    #[test]
    fn failures_reach_probing_threshold() {
        let c = cfg(PROBE_ALL, 3, 1);
        let mut h = DestHealth::new(0);
        let u = h.on_probe_result(408, &c);
        assert_eq!((h.flags, h.probing_count), (T | P, 1));
        assert!(u.changed());
        assert_eq!(u.event(), None); // trying is still usable
        h.on_probe_result(500, &c);
        assert_eq!((h.flags, h.probing_count), (T | P, 2));
        let u = h.on_probe_result(408, &c);
        assert_eq!((h.flags, h.probing_count), (I | P, 0));
        assert_eq!(u.event(), Some(Event::Down));
        // further failures keep it inactive, counter reset each time
        let u = h.on_probe_send_failed(&c);
        assert_eq!((h.flags, h.probing_count), (I | P, 0));
        assert!(!u.changed());
        assert_eq!(u.event(), None);
    }

    #[test]
    fn success_resets_trying() {
        let c = cfg(PROBE_ALL, 3, 1);
        let mut h = DestHealth::new(0);
        h.on_probe_result(408, &c);
        h.on_probe_result(408, &c);
        h.on_probe_result(200, &c);
        assert_eq!((h.flags, h.probing_count), (P, 0));
        // the count starts over
        h.on_probe_result(408, &c);
        assert_eq!(h.probing_count, 1);
    }

    #[test]
    fn successes_reach_inactive_threshold() {
        let c = cfg(PROBE_ALL, 1, 3);
        let mut h = DestHealth::new(I | P);
        let u = h.on_probe_result(200, &c);
        assert_eq!((h.flags, h.probing_count), (I | P, 1));
        assert_eq!(u.event(), None);
        h.on_probe_result(200, &c);
        assert_eq!((h.flags, h.probing_count), (I | P, 2));
        // a failure in between resets the success count
        h.on_probe_result(408, &c);
        assert_eq!((h.flags, h.probing_count), (I | P, 0));
        h.on_probe_result(200, &c);
        h.on_probe_result(200, &c);
        let u = h.on_probe_result(200, &c);
        assert_eq!((h.flags, h.probing_count), (P, 0));
        assert_eq!(u.event(), Some(Event::Up));
    }

    #[test]
    fn default_thresholds_flip_immediately() {
        let c = cfg(PROBE_ALL, 1, 1);
        let mut h = DestHealth::new(0);
        assert_eq!(h.on_probe_result(408, &c).event(), Some(Event::Down));
        assert_eq!(h.flags, I | P);
        assert_eq!(h.on_probe_result(200, &c).event(), Some(Event::Up));
        assert_eq!(h.flags, P);
    }

    #[test]
    fn mode0_clears_probing_flag() {
        let c = cfg(PROBE_FLAGGED, 1, 1);
        let mut h = DestHealth::new(P);
        assert!(h.should_probe(PROBE_FLAGGED));
        h.on_probe_result(200, &c);
        assert_eq!(h.flags, 0);
        assert!(!h.should_probe(PROBE_FLAGGED));
        // failure in mode 0 drops the probing flag too
        let mut h = DestHealth::new(P);
        h.on_probe_result(408, &c);
        assert_eq!(h.flags, I);
        // an inactive+probing destination below the threshold keeps probing
        let c = cfg(PROBE_FLAGGED, 1, 2);
        let mut h = DestHealth::new(I | P);
        h.on_probe_result(200, &c);
        assert_eq!(h.flags, I | P);
        h.on_probe_result(200, &c);
        assert_eq!(h.flags, 0);
    }

    #[test]
    fn mode3_keeps_flag_and_ignores_unflagged() {
        let c = cfg(PROBE_ONLY_FLAGGED, 1, 1);
        let mut h = DestHealth::new(P);
        h.on_probe_result(200, &c);
        assert_eq!(h.flags, P);
        let mut h = DestHealth::new(0);
        let u = h.on_probe_result(408, &c);
        assert!(!u.applied);
        assert_eq!(h.flags, 0);
    }

    #[test]
    fn disabled_is_never_updated_by_probes() {
        let c = cfg(PROBE_ALL, 1, 1);
        let mut h = DestHealth::new(D);
        assert!(!h.should_probe(PROBE_ALL));
        assert!(!h.on_probe_result(408, &c).applied);
        assert!(!h.on_probe_send_failed(&c).applied);
        assert_eq!(h.flags, D);
    }

    #[test]
    fn which_destinations_get_probed() {
        let h = |f| DestHealth::new(f);
        // no-ping, no-dns never
        assert!(!h(FLAG_NO_PING).should_probe(PROBE_ALL));
        assert!(!h(FLAG_NO_DNS | P).should_probe(PROBE_ALL));
        // mode 1: all
        assert!(h(0).should_probe(PROBE_ALL));
        // modes 0 and 3: probing flag
        assert!(!h(0).should_probe(PROBE_FLAGGED));
        assert!(h(P).should_probe(PROBE_FLAGGED));
        assert!(h(P).should_probe(PROBE_ONLY_FLAGGED));
        assert!(!h(I).should_probe(PROBE_ONLY_FLAGGED));
        // mode 2: inactive and probing
        assert!(!h(P).should_probe(PROBE_INACTIVE));
        assert!(!h(I).should_probe(PROBE_INACTIVE));
        assert!(h(I | P).should_probe(PROBE_INACTIVE));
    }

    #[test]
    fn mark_is_immediate() {
        let c = cfg(PROBE_ALL, 5, 5);
        let mut h = DestHealth::new(0);
        // 't' lands in inactive despite the threshold
        let u = h.mark(parse_state("t").unwrap(), &c);
        assert_eq!((h.flags, h.probing_count), (I, 0));
        assert_eq!(u.event(), Some(Event::Down));
        assert_eq!(u.event_for_mode(1), None); // keepalive-only events
                                               // 'a' comes back at once
        let u = h.mark(parse_state("a").unwrap(), &c);
        assert_eq!((h.flags, h.probing_count), (0, 0));
        assert_eq!(u.event(), Some(Event::Up));
        // 'ip'
        h.mark(parse_state("IP").unwrap(), &c);
        assert_eq!(h.flags, I | P);
        // 'd' keeps only disabled; mark also clears no-ping/no-dns (Kamailio)
        let mut h = DestHealth::new(FLAG_NO_PING | P);
        h.mark(parse_state("dp").unwrap(), &c);
        assert_eq!(h.flags, D);
        h.mark(default_mark_state(PROBE_ALL), &c);
        assert_eq!(h.flags, I | P);
        h.mark(default_mark_state(PROBE_FLAGGED), &c);
        assert_eq!(h.flags, I);
    }

    #[test]
    fn event_modes() {
        let c = cfg(PROBE_ALL, 1, 1);
        let mut h = DestHealth::new(0);
        let u = h.on_probe_result(200, &c);
        assert_eq!(u.event(), None);
        // mode 2: old flags 0 and up -> dst-up
        assert_eq!(u.event_for_mode(2), Some(Event::Up));
        assert_eq!(u.event_for_mode(1), None);
    }

    #[test]
    fn state_parsers() {
        assert_eq!(parse_state("ip"), Some(I | P));
        assert_eq!(parse_state("ia"), Some(0));
        assert_eq!(parse_state("x"), None);
        assert_eq!(parse_rpc_state("ip"), Some(I | P));
        assert_eq!(parse_rpc_state("1P"), Some(P));
        assert_eq!(parse_rpc_state("d"), Some(D));
        assert_eq!(parse_rpc_state("3"), Some(T));
        assert_eq!(parse_rpc_state("z"), None);
        assert_eq!(parse_rpc_state(""), None);
        let mut h = DestHealth {
            flags: I | FLAG_NO_PING,
            probing_count: 3,
        };
        let u = h.set_state(T);
        assert_eq!((h.flags, h.probing_count), (T, 3));
        assert!(u.changed());
    }
}
