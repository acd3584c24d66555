//! Kamailio's destination selection (`ds_manage_routes`), as a pure function.
//!
//! Everything Kamailio keeps in shared memory comes in as arguments, so the result is
//! deterministic:
//! * `states`: the current flags of each destination (`FLAG_*`, from the health store);
//! * `cursor`: Kamailio's per-set `last` index (round robin, algorithms 4, 5 without
//!   credentials, 13, 14 as round robin, 64) or its `wlast`/`rwlast`/`pwlast` table
//!   position (9, 11, 15). Feed an atomically incremented per-set counter (keep a separate
//!   counter for the table algorithms); `cursor % n` resp. `cursor % 100` is used. Kamailio
//!   moves `last` past the entry actually used when it had to skip inactive ones:
//!   [`Selection::next_cursor`] carries that value, store it if the counter was not
//!   changed meanwhile to get exactly Kamailio's sequence;
//! * `random`: the value of `ksr_xrand()` for algorithm 6;
//! * `table_seed`: seeds the shuffles of the 100-slot tables of 9, 11 and 15. Kamailio
//!   shuffles once at load (and, for 11/15, on a state change); use one seed per list
//!   load so all workers share the same table;
//! * `loads`: the current call count (`dload`) of each destination for algorithm 10.
//!
//! The output is the failover list of Kamailio's `_dsdst_` XAVP (with `flags & 2`): the
//! chosen entry, then the usable entries after it, then those before it, then the
//! default entry (`use_default`), capped by `limit`.

use crate::hash;
use crate::list::{is_usable, DestSet};

pub const ALG_HASH_CALLID: u32 = 0;
pub const ALG_HASH_FROM_URI: u32 = 1;
pub const ALG_HASH_TO_URI: u32 = 2;
pub const ALG_HASH_RURI: u32 = 3;
pub const ALG_ROUND_ROBIN: u32 = 4;
pub const ALG_HASH_AUTH_USER: u32 = 5;
pub const ALG_RANDOM: u32 = 6;
pub const ALG_HASH_PV: u32 = 7;
pub const ALG_SERIAL: u32 = 8;
pub const ALG_WEIGHT: u32 = 9;
pub const ALG_CALL_LOAD: u32 = 10;
pub const ALG_REL_WEIGHT: u32 = 11;
pub const ALG_PARALLEL: u32 = 12;
pub const ALG_LATENCY: u32 = 13;
pub const ALG_RR_SERIAL: u32 = 14;
pub const ALG_PRIORITY_WEIGHT: u32 = 15;
/// Round robin with RFC 7339 overload control; without overload data (no
/// `ds_oc_set_attrs`) it is plain round robin, which is what this crate implements.
pub const ALG_OVERLOAD: u32 = 64;

/// Kamailio's `flags` bit 2: keep the alternatives (failover list).
pub const FLAG_FAILOVER: u32 = 2;

/// Slots of the weight tables.
pub const TABLE_SLOTS: usize = 100;

/// Message values the hash algorithms use. URIs may be given with or without `<>`.
#[derive(Clone, Copy, Debug, Default)]
pub struct HashInputs<'a> {
    pub call_id: &'a str,
    pub from_uri: &'a str,
    pub to_uri: &'a str,
    pub ruri: &'a str,
    /// Digest username of Proxy-Authorization, else Authorization; `None` if neither.
    pub auth_user: Option<&'a str>,
    /// The expanded `hash_pvar` format (algorithm 7).
    pub hash_pvar: Option<&'a str>,
}

/// Latency statistics of one destination (algorithm 13), in ms.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Latency {
    pub estimate: i32,
    pub average: i32,
}

/// Selection parameters; see the module doc for `cursor`, `random`, `table_seed`.
#[derive(Clone, Copy, Debug)]
pub struct SelectParams<'a> {
    pub alg: u32,
    /// Kamailio's `flags` modparam: 1 hash URI user only, 2 failover list.
    pub ds_flags: u32,
    /// `use_default`: the last entry of the set is only a fallback.
    pub use_default: bool,
    /// Most entries in the failover list; 0 = unlimited.
    pub limit: u32,
    pub cursor: u64,
    pub random: u32,
    pub table_seed: u64,
    /// Algorithm 10 only balances INVITEs; other requests use the first entry.
    pub is_invite: bool,
    /// Current call load per destination (algorithm 10); missing entries count as 0.
    pub loads: &'a [i32],
    /// Latency per destination (algorithm 13); missing entries count as 0.
    pub latency: &'a [Latency],
}

impl<'a> SelectParams<'a> {
    /// Algorithm `alg` with failover on and everything else zero/empty.
    pub fn new(alg: u32) -> SelectParams<'a> {
        SelectParams {
            alg,
            ds_flags: FLAG_FAILOVER,
            use_default: false,
            limit: 0,
            cursor: 0,
            random: 0,
            table_seed: 0,
            is_invite: true,
            loads: &[],
            latency: &[],
        }
    }
}

/// The result of a selection. `chosen == None` (and empty `targets`) means no usable
/// destination (Kamailio returns -1).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Selection {
    /// The destination to use now (`$du` / R-URI host).
    pub chosen: Option<usize>,
    /// The failover list (the `_dsdst_` XAVP records), starting with the chosen entry
    /// (algorithm 13 lists its own reordered list). Without [`FLAG_FAILOVER`] only the
    /// chosen entry. For algorithm 12: the chosen entry and every entry after it, whatever
    /// its state (as Kamailio's `ds_add_branches`), to be forked in parallel.
    pub targets: Vec<usize>,
    /// Algorithm 12: fork to all `targets` at once.
    pub parallel: bool,
    /// The cursor Kamailio would hold next (`(chosen + 1) % n`) for algorithms using it.
    pub next_cursor: Option<u64>,
    /// Algorithm 10: the destination whose load the caller must count for this Call-ID
    /// (its `duid`); `None` when Kamailio falls back to "classic" dispatching.
    pub load_dest: Option<usize>,
}

/// Why a selection could not be computed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SelectError {
    /// The From / To / R-URI needed for the hash does not parse (names the header).
    BadUri(&'static str),
    /// Algorithm 7 with an empty `hash_pvar` value.
    EmptyHashValue,
    /// Algorithm 10 with failover: a listed destination has no `duid` attribute.
    MissingDuid(usize),
}

impl std::fmt::Display for SelectError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SelectError::BadUri(which) => write!(f, "cannot hash {which} URI"),
            SelectError::EmptyHashValue => write!(f, "hash_pvar value is empty"),
            SelectError::MissingDuid(i) => write!(f, "destination {i} has no duid attribute"),
        }
    }
}

impl std::error::Error for SelectError {}

/// A small deterministic generator (SplitMix64) for the table shuffles.
#[derive(Clone, Debug)]
pub struct SeededRng(u64);

impl SeededRng {
    pub fn new(seed: u64) -> SeededRng {
        SeededRng(seed)
    }

    pub fn next_u32(&mut self) -> u32 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 32) as u32
    }
}

/// Kamailio's `shuffle_uint100array`: `k = j + rand % (100 - j)`, swap.
pub fn shuffle100(arr: &mut [usize; TABLE_SLOTS], rng: &mut impl FnMut() -> u32) {
    for j in 0..TABLE_SLOTS {
        let k = j + (rng() as usize) % (TABLE_SLOTS - j);
        arr.swap(j, k);
    }
}

/// Algorithm 9 table (`dp_init_weights`): `weight` slots per entry in set order, states
/// ignored; past 100 slots the rest is dropped, a shortfall is filled with the last entry;
/// then shuffled. If the first entry has no weight the table is all 0 (unshuffled).
pub fn weight_table(set: &DestSet, rng: &mut impl FnMut() -> u32) -> [usize; TABLE_SLOTS] {
    let mut t = [0usize; TABLE_SLOTS];
    let nr = set.dests.len();
    if set.dests.first().is_none_or(|d| d.attrs.weight == 0) {
        return t;
    }
    let mut n = 0;
    'fill: for (j, d) in set.dests.iter().enumerate() {
        for _ in 0..d.attrs.weight {
            if n >= TABLE_SLOTS {
                break 'fill;
            }
            t[n] = j;
            n += 1;
        }
    }
    for slot in t.iter_mut().skip(n) {
        *slot = nr - 1;
    }
    shuffle100(&mut t, rng);
    t
}

/// Algorithm 11 table (`dp_init_relative_weights`): each usable entry gets
/// `rweight * 100 / sum(rweight of usable)` slots (truncated), the remainder goes to the
/// last entry inserted (or the last entry of the set if none), then shuffled. Sets of
/// fewer than 2 entries or a zero sum give the all-0 table (Kamailio keeps the previous
/// table in the latter case; this crate has no history and uses the initial one).
pub fn rweight_table(
    set: &DestSet,
    flags: &[u32],
    rng: &mut impl FnMut() -> u32,
) -> [usize; TABLE_SLOTS] {
    let mut t = [0usize; TABLE_SLOTS];
    let nr = set.dests.len();
    if nr < 2 {
        return t;
    }
    let fl = |j: usize| flags.get(j).copied().unwrap_or(set.dests[j].flags);
    let sum: u32 = (0..nr)
        .filter(|&j| is_usable(fl(j)))
        .map(|j| set.dests[j].attrs.rweight)
        .sum();
    if sum == 0 {
        return t;
    }
    let mut n = 0;
    for j in (0..nr).filter(|&j| is_usable(fl(j))) {
        let slice = (set.dests[j].attrs.rweight * 100 / sum) as usize;
        for _ in 0..slice {
            if n < TABLE_SLOTS {
                t[n] = j;
                n += 1;
            }
        }
    }
    let last = if n > 0 { t[n - 1] } else { nr - 1 };
    for slot in t.iter_mut().skip(n) {
        *slot = last;
    }
    shuffle100(&mut t, rng);
    t
}

/// Algorithm 15 table (`dp_init_priority_weights`): among usable entries, the lowest
/// priority *value* wins; slots by `weight` share (`weight * 100 / sum`, remainder to the
/// last slot's entry) or equal shares (remainder to the last) when no weights; then
/// shuffled. No usable entry: all 0, unshuffled.
pub fn priority_weight_table(
    set: &DestSet,
    flags: &[u32],
    rng: &mut impl FnMut() -> u32,
) -> [usize; TABLE_SLOTS] {
    let mut t = [0usize; TABLE_SLOTS];
    let nr = set.dests.len();
    let fl = |j: usize| flags.get(j).copied().unwrap_or(set.dests[j].flags);
    let Some(best) = (0..nr)
        .filter(|&j| is_usable(fl(j)))
        .map(|j| set.dests[j].priority)
        .min()
    else {
        return t;
    };
    let tier: Vec<usize> = (0..nr)
        .filter(|&j| is_usable(fl(j)) && set.dests[j].priority == best)
        .collect();
    let wsum: u32 = tier.iter().map(|&j| set.dests[j].attrs.weight).sum();
    let mut n = 0;
    if wsum == 0 {
        let cnt = tier.len();
        for (c, &j) in tier.iter().enumerate() {
            let slots = if c == cnt - 1 {
                TABLE_SLOTS - n
            } else {
                TABLE_SLOTS / cnt
            };
            for _ in 0..slots {
                if n < TABLE_SLOTS {
                    t[n] = j;
                    n += 1;
                }
            }
        }
    } else {
        for &j in &tier {
            let slots = (set.dests[j].attrs.weight * 100)
                .checked_div(wsum)
                .unwrap_or(0) as usize;
            for _ in 0..slots {
                if n < TABLE_SLOTS {
                    t[n] = j;
                    n += 1;
                }
            }
        }
        let last = t[n.saturating_sub(1)];
        for slot in t.iter_mut().skip(n) {
            *slot = last;
        }
    }
    shuffle100(&mut t, rng);
    t
}

/// Kamailio's `ds_get_leastloaded`: the first usable entry with the smallest load that
/// is below its `maxload` (0 = unlimited).
pub fn least_loaded(set: &DestSet, flags: &[u32], loads: &[i32]) -> Option<usize> {
    let mut best: Option<usize> = None;
    let mut t = i32::MAX;
    for (j, d) in set.dests.iter().enumerate() {
        let f = flags.get(j).copied().unwrap_or(d.flags);
        let load = loads.get(j).copied().unwrap_or(0);
        if is_usable(f) && (d.attrs.maxload == 0 || load < d.attrs.maxload) && load < t {
            best = Some(j);
            t = load;
        }
    }
    best
}

/// `ds_next_dst`: drops the current record and returns the next one; `None` when the
/// list is exhausted.
pub fn next_dst(targets: &mut Vec<usize>) -> Option<usize> {
    if targets.is_empty() {
        return None;
    }
    targets.remove(0);
    targets.first().copied()
}

/// Algorithm 13 (`ds_manage_route_algo13`): returns (hash, reordered entries).
fn algo13(
    set: &DestSet,
    fl: &dyn Fn(usize) -> u32,
    use_default: bool,
    last: usize,
    latency: &[Latency],
) -> (isize, Vec<(isize, i32, u32)>) {
    let nr = set.dests.len();
    let mut z = last;
    let mut sorted: Vec<(isize, i32, u32)> = Vec::with_capacity(nr);
    for _ in 0..nr {
        let d = &set.dests[z];
        let prio = d.priority;
        let lat = latency.get(z).copied().unwrap_or_default();
        let gw_latency = if d.attrs.cc != 0 {
            lat.estimate.wrapping_sub(lat.average)
        } else {
            lat.estimate
        };
        let f = fl(z);
        if is_usable(f) {
            let handicap = if gw_latency > prio && prio > 0 {
                gw_latency / prio
            } else {
                0
            };
            let mut rp = prio.wrapping_sub(handicap);
            if rp < 1 && prio > 0 {
                rp = 1;
            }
            sorted.push((z as isize, rp, f));
        } else {
            sorted.push((-1, -1, f));
        }
        z = if use_default && nr != 1 {
            (z + 1) % (nr - 1)
        } else {
            (z + 1) % nr
        };
    }
    // Kamailio's bubble sort (swap only when strictly smaller) is a stable descending sort.
    sorted.sort_by_key(|s| std::cmp::Reverse(s.1));
    let hash = sorted.first().map_or(-1, |s| s.0);
    (hash, sorted)
}

/// Selects destinations from `set` (see the module doc). `states[i]` are the current
/// flags of entry `i` (missing entries use the list file's flags).
pub fn select(
    set: &DestSet,
    states: &[u32],
    keys: &HashInputs<'_>,
    p: &SelectParams<'_>,
) -> Result<Selection, SelectError> {
    let nr = set.dests.len();
    let mut out = Selection::default();
    if nr == 0 {
        return Ok(out);
    }
    let fl = |i: usize| states.get(i).copied().unwrap_or(set.dests[i].flags);
    let usable = |i: usize| is_usable(fl(i));
    let limit = if p.limit == 0 { u32::MAX } else { p.limit } as usize;
    let last = (p.cursor % nr as u64) as usize;
    let slot = (p.cursor % TABLE_SLOTS as u64) as usize;
    let mut alg = p.alg;
    let valg = if alg == ALG_RR_SERIAL {
        if set.rr_serial() {
            ALG_ROUND_ROBIN
        } else {
            ALG_SERIAL
        }
    } else {
        alg
    };
    let mut uses_cursor = false;
    let mut reordered: Option<Vec<(isize, i32, u32)>> = None;
    let hash: u64 = match valg {
        ALG_HASH_CALLID => hash::hash_callid(keys.call_id).into(),
        ALG_HASH_FROM_URI => hash::hash_uri(keys.from_uri, p.ds_flags)
            .ok_or(SelectError::BadUri("From"))?
            .into(),
        ALG_HASH_TO_URI => hash::hash_uri(keys.to_uri, p.ds_flags)
            .ok_or(SelectError::BadUri("To"))?
            .into(),
        ALG_HASH_RURI => hash::hash_uri(keys.ruri, p.ds_flags)
            .ok_or(SelectError::BadUri("Request"))?
            .into(),
        ALG_ROUND_ROBIN | ALG_OVERLOAD => {
            uses_cursor = true;
            last as u64
        }
        ALG_HASH_AUTH_USER => match keys.auth_user.and_then(hash::hash_auth_user) {
            Some(h) => h.into(),
            None => {
                uses_cursor = true;
                last as u64
            }
        },
        ALG_RANDOM => p.random.into(),
        ALG_HASH_PV => hash::hash_pvar(keys.hash_pvar.unwrap_or(""))
            .ok_or(SelectError::EmptyHashValue)?
            .into(),
        ALG_SERIAL | ALG_PARALLEL => 0,
        ALG_WEIGHT => {
            let mut r = SeededRng::new(p.table_seed);
            weight_table(set, &mut || r.next_u32())[slot] as u64
        }
        ALG_CALL_LOAD => {
            if !p.is_invite {
                alg = ALG_HASH_CALLID;
                0
            } else {
                let Some(i) = least_loaded(set, states, p.loads) else {
                    return Ok(out);
                };
                if set.dests[i]
                    .attrs
                    .duid
                    .as_deref()
                    .is_some_and(|d| !d.is_empty())
                {
                    out.load_dest = Some(i);
                } else {
                    // ds_load_add fails: classic dispatching
                    alg = ALG_HASH_CALLID;
                }
                i as u64
            }
        }
        ALG_REL_WEIGHT => {
            let mut r = SeededRng::new(p.table_seed);
            rweight_table(set, states, &mut || r.next_u32())[slot] as u64
        }
        ALG_LATENCY => {
            let (h, sorted) = algo13(set, &fl, p.use_default, last, p.latency);
            out.next_cursor = Some(((h + 1) as u64) % nr as u64);
            if h < 0 {
                return Ok(out);
            }
            reordered = Some(sorted);
            h as u64
        }
        ALG_PRIORITY_WEIGHT => {
            let mut r = SeededRng::new(p.table_seed);
            priority_weight_table(set, states, &mut || r.next_u32())[slot] as u64
        }
        _ => 0,
    };

    let m = if p.use_default && nr != 1 { nr - 1 } else { nr };
    let start = (hash % m as u64) as usize;
    let mut i = start;
    if reordered.is_none() {
        while !usable(i) {
            i = (i + 1) % m;
            if i == start {
                if p.use_default {
                    i = nr - 1;
                    if !usable(i) {
                        return Ok(Selection::default());
                    }
                    break;
                }
                return Ok(Selection::default());
            }
        }
    }
    let chosen = i;
    out.chosen = Some(chosen);
    if uses_cursor {
        out.next_cursor = Some(((chosen + 1) % nr) as u64);
    }

    if alg == ALG_PARALLEL {
        out.parallel = true;
        out.targets = (chosen..nr).collect();
        return Ok(out);
    }
    if p.ds_flags & FLAG_FAILOVER == 0 {
        out.targets = vec![chosen];
        return Ok(out);
    }

    let is_default = |j: usize| p.use_default && j == nr - 1;
    let mut targets: Vec<usize> = Vec::new();
    if let Some(sorted) = reordered {
        for (idx, _, f) in sorted {
            if targets.len() >= limit {
                break;
            }
            if idx < 0 || !is_usable(f) || is_default(idx as usize) {
                continue;
            }
            targets.push(idx as usize);
        }
    } else {
        let full = |j: usize| {
            let d = &set.dests[j];
            alg == ALG_CALL_LOAD
                && d.attrs.maxload != 0
                && p.loads.get(j).copied().unwrap_or(0) >= d.attrs.maxload
        };
        targets.push(chosen);
        for j in (chosen + 1..nr).chain(0..chosen) {
            if targets.len() >= limit {
                break;
            }
            if !usable(j) || is_default(j) || full(j) {
                continue;
            }
            targets.push(j);
        }
    }
    if p.use_default && chosen != nr - 1 && targets.len() < limit {
        targets.push(nr - 1);
    }
    if alg == ALG_CALL_LOAD {
        if let Some(&j) = targets
            .iter()
            .find(|&&j| set.dests[j].attrs.duid.as_deref().is_none_or(str::is_empty))
        {
            return Err(SelectError::MissingDuid(j));
        }
    }
    out.targets = targets;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::list::{DestList, FLAG_DISABLED, FLAG_INACTIVE, FLAG_TRYING};

    fn set(text: &str) -> DestSet {
        DestList::parse(text).unwrap().sets.remove(0)
    }

    /// n entries sip:d0..sip:d{n-1} in set order (all priority 0).
    fn plain(n: usize) -> DestSet {
        let text: String = (0..n).rev().map(|i| format!("1 sip:d{i}\n")).collect();
        let s = set(&text);
        for (i, d) in s.dests.iter().enumerate() {
            assert_eq!(d.uri, format!("sip:d{i}"));
        }
        s
    }

    fn sel(s: &DestSet, states: &[u32], p: &SelectParams<'_>) -> Selection {
        select(s, states, &HashInputs::default(), p).unwrap()
    }

    const I: u32 = FLAG_INACTIVE;
    const D: u32 = FLAG_DISABLED;
    const T: u32 = FLAG_TRYING;

    #[test]
    fn hash_algorithms_pick_hash_mod_n() {
        let s = plain(5);
        let keys = HashInputs {
            call_id: "callid-12345@host",
            from_uri: "<sip:alice@example.com>",
            to_uri: "sip:alice@example.com:5060",
            ruri: "sip:alice@example.com;user=phone",
            auth_user: Some("abc@x"),
            hash_pvar: Some("abc@x"),
        };
        let h_cid = 1346185339u32 as usize % 5;
        let h_uri = 1442294598u32 as usize % 5;
        let h_abc = hash::ds_hash(b"abc", None) as usize % 5;
        let h_pv = 1834960047u32 as usize % 5;
        for (alg, want) in [
            (0, h_cid),
            (1, h_uri),
            (2, h_uri),
            (3, h_uri),
            (5, h_abc),
            (7, h_pv),
        ] {
            let r = select(&s, &[], &keys, &SelectParams::new(alg)).unwrap();
            assert_eq!(r.chosen, Some(want), "alg {alg}");
            assert_eq!(r.next_cursor, None);
        }
        // use_default: hash mod n-1
        let mut p = SelectParams::new(0);
        p.use_default = true;
        let r = select(&s, &[], &keys, &p).unwrap();
        assert_eq!(r.chosen, Some(1346185339usize % 4));
    }

    #[test]
    fn hash_errors() {
        let s = plain(3);
        let keys = HashInputs {
            from_uri: "tel:+1",
            ..HashInputs::default()
        };
        assert_eq!(
            select(&s, &[], &keys, &SelectParams::new(1)),
            Err(SelectError::BadUri("From"))
        );
        assert_eq!(
            select(&s, &[], &keys, &SelectParams::new(7)),
            Err(SelectError::EmptyHashValue)
        );
    }

    #[test]
    fn user_only_flag() {
        let s = plain(7);
        let keys = HashInputs {
            from_uri: "sip:alice@example.com",
            ..HashInputs::default()
        };
        let mut p = SelectParams::new(1);
        p.ds_flags = FLAG_FAILOVER | hash::HASH_USER_ONLY;
        let r = select(&s, &[], &keys, &p).unwrap();
        assert_eq!(
            r.chosen,
            Some(hash::ds_hash(b"alice", Some(b"")) as usize % 7)
        );
    }

    #[test]
    fn round_robin_and_failover_order() {
        let s = plain(4);
        for c in 0..8u64 {
            let mut p = SelectParams::new(4);
            p.cursor = c;
            let r = sel(&s, &[], &p);
            let k = (c % 4) as usize;
            assert_eq!(r.chosen, Some(k));
            let want: Vec<usize> = (k..4).chain(0..k).collect();
            assert_eq!(r.targets, want);
            assert_eq!(r.next_cursor, Some(((k + 1) % 4) as u64));
        }
    }

    #[test]
    fn skip_walk_wraps_and_skips_in_failover() {
        let s = plain(5);
        // cursor at 3; 3 and 4 down -> wraps to 0
        let st = [0, I, T, D, I];
        let mut p = SelectParams::new(4);
        p.cursor = 3;
        let r = sel(&s, &st, &p);
        assert_eq!(r.chosen, Some(0));
        assert_eq!(r.next_cursor, Some(1));
        // trying counts as usable; 1, 3, 4 skipped
        assert_eq!(r.targets, vec![0, 2]);
        // serial starts at 0 and walks
        let r = sel(&s, &[I, I, 0, 0, 0], &SelectParams::new(8));
        assert_eq!(r.targets, vec![2, 3, 4]);
    }

    #[test]
    fn exhaustion_and_next_dst() {
        let s = plain(3);
        let r = sel(&s, &[I, D, I], &SelectParams::new(4));
        assert_eq!(r, Selection::default());
        let mut t = sel(&s, &[0, I, 0], &SelectParams::new(8)).targets;
        assert_eq!(t, vec![0, 2]);
        assert_eq!(next_dst(&mut t), Some(2));
        assert_eq!(next_dst(&mut t), None);
        assert_eq!(next_dst(&mut t), None);
    }

    #[test]
    fn limit_caps_list() {
        let s = plain(5);
        let mut p = SelectParams::new(4);
        p.cursor = 2;
        p.limit = 3;
        assert_eq!(sel(&s, &[], &p).targets, vec![2, 3, 4]);
        p.limit = 1;
        assert_eq!(sel(&s, &[], &p).targets, vec![2]);
        // with default entry: the default counts against the limit
        p.limit = 3;
        p.use_default = true;
        assert_eq!(sel(&s, &[], &p).targets, vec![2, 3, 0]);
        p.limit = 0;
        assert_eq!(sel(&s, &[], &p).targets, vec![2, 3, 0, 1, 4]);
    }

    #[test]
    fn failover_off_gives_only_chosen() {
        let s = plain(3);
        let mut p = SelectParams::new(4);
        p.ds_flags = 0;
        p.cursor = 1;
        assert_eq!(sel(&s, &[], &p).targets, vec![1]);
    }

    #[test]
    fn use_default_entry() {
        let s = plain(4);
        let mut p = SelectParams::new(4);
        p.use_default = true;
        // cursor 3 -> 3 % 4 = 3, then mod (n-1) = 0
        p.cursor = 3;
        let r = sel(&s, &[], &p);
        assert_eq!(r.chosen, Some(0));
        assert_eq!(r.targets, vec![0, 1, 2, 3]);
        // walk never lands on the default while others are usable
        let r = sel(&s, &[0, I, I, 0], &{
            let mut q = p;
            q.cursor = 1;
            q
        });
        assert_eq!(r.chosen, Some(0));
        assert_eq!(r.targets, vec![0, 3]);
        // all regular entries down -> default
        let r = sel(&s, &[I, I, D, 0], &p);
        assert_eq!(r.chosen, Some(3));
        assert_eq!(r.targets, vec![3]);
        // default down too -> fail
        assert_eq!(sel(&s, &[I, I, D, I], &p).chosen, None);
        // the default is appended even when inactive (Kamailio does not check it)
        let r = sel(&s, &[0, 0, 0, I], &p);
        assert_eq!(r.targets, vec![0, 1, 2, 3]);
        // a one-entry set: the entry is regular
        let one = plain(1);
        let r = sel(&one, &[], &p);
        assert_eq!(r.targets, vec![0]);
    }

    #[test]
    fn auth_user_without_credentials_is_round_robin() {
        let s = plain(3);
        let mut p = SelectParams::new(5);
        p.cursor = 2;
        let r = sel(&s, &[], &p);
        assert_eq!(r.chosen, Some(2));
        assert_eq!(r.next_cursor, Some(0));
        let keys = HashInputs {
            auth_user: Some(""),
            ..HashInputs::default()
        };
        assert_eq!(select(&s, &[], &keys, &p).unwrap().chosen, Some(2));
    }

    #[test]
    fn random_uses_value() {
        let s = plain(3);
        let mut p = SelectParams::new(6);
        p.random = 7;
        assert_eq!(sel(&s, &[], &p).chosen, Some(1));
        assert_eq!(sel(&s, &[0, I, 0], &p).chosen, Some(2));
    }

    #[test]
    fn unknown_alg_is_first_entry() {
        let s = plain(3);
        assert_eq!(sel(&s, &[I], &SelectParams::new(99)).chosen, Some(1));
    }

    #[test]
    fn weight_table_fill() {
        let mut zero = || 0u32; // k = j: identity shuffle
        let s = set("1 sip:a 0 0 weight=70\n1 sip:b 0 0 weight=50\n1 sip:c 0 0 weight=10\n");
        // order: c, b, a
        let t = weight_table(&s, &mut zero);
        assert_eq!(t.iter().filter(|&&x| x == 0).count(), 10);
        assert_eq!(t.iter().filter(|&&x| x == 1).count(), 50);
        assert_eq!(t.iter().filter(|&&x| x == 2).count(), 40); // overflow dropped
                                                               // shortfall filled by the last entry
        let s = set("1 sip:a 0 0 weight=10\n1 sip:b 0 0 weight=20\n");
        let t = weight_table(&s, &mut zero);
        assert_eq!(t.iter().filter(|&&x| x == 0).count(), 20);
        assert_eq!(t.iter().filter(|&&x| x == 1).count(), 80);
        // first entry without weight -> all 0
        let s = set("1 sip:a 0 0 weight=10\n1 sip:b\n");
        assert_eq!(weight_table(&s, &mut zero), [0; 100]);
        // a real shuffle keeps the counts
        let s = set("1 sip:a 0 0 weight=25\n1 sip:b 0 0 weight=75\n");
        let mut r = SeededRng::new(42);
        let t = weight_table(&s, &mut || r.next_u32());
        assert_eq!(t.iter().filter(|&&x| x == 0).count(), 75);
        assert_ne!(t[..75], [0; 75]);
    }

    #[test]
    fn shuffle_matches_kamailio_formula() {
        let mut a: [usize; 100] = std::array::from_fn(|i| i);
        let mut one = || 1u32;
        shuffle100(&mut a, &mut one);
        // k = j + 1 % (100 - j): every step swaps with the next -> rotation by one
        let want: [usize; 100] = std::array::from_fn(|i| (i + 1) % 100);
        assert_eq!(a, want);
    }

    #[test]
    fn weight_selection_cycles_table() {
        let s = set("1 sip:a 0 0 weight=25\n1 sip:b 0 0 weight=75\n");
        let mut counts = [0usize; 2];
        for c in 0..100u64 {
            let mut p = SelectParams::new(9);
            p.cursor = c;
            p.table_seed = 7;
            counts[sel(&s, &[], &p).chosen.unwrap()] += 1;
        }
        assert_eq!(counts, [75, 25]);
        // states ignored when building, skip walk applies when selecting
        let mut p = SelectParams::new(9);
        p.table_seed = 7;
        for c in 0..100u64 {
            p.cursor = c;
            assert_eq!(sel(&s, &[I, 0], &p).chosen, Some(1));
        }
    }

    #[test]
    fn relative_weight() {
        let mut zero = || 0u32;
        let s = set("1 sip:a 0 0 rweight=10\n1 sip:b 0 0 rweight=20\n1 sip:c 0 0 rweight=30\n");
        // order c(30), b(20), a(10): 50, 33, 16 -> remainder 1 to a
        let t = rweight_table(&s, &[], &mut zero);
        let cnt = |t: &[usize; 100], x| t.iter().filter(|&&y| y == x).count();
        assert_eq!((cnt(&t, 0), cnt(&t, 1), cnt(&t, 2)), (50, 33, 17));
        // c inactive: b 66, a 33 +1
        let t = rweight_table(&s, &[I, 0, 0], &mut zero);
        assert_eq!((cnt(&t, 0), cnt(&t, 1), cnt(&t, 2)), (0, 66, 34));
        // all inactive -> zero table; single entry -> zero table
        assert_eq!(rweight_table(&s, &[I, I, D], &mut zero), [0; 100]);
        assert_eq!(rweight_table(&plain(1), &[], &mut zero), [0; 100]);
        // selection over 100 cursors follows the table
        let mut counts = [0usize; 3];
        for c in 0..100u64 {
            let mut p = SelectParams::new(11);
            p.cursor = c;
            p.table_seed = 3;
            counts[sel(&s, &[I, 0, 0], &p).chosen.unwrap()] += 1;
        }
        assert_eq!(counts, [0, 66, 34]);
    }

    #[test]
    fn call_load() {
        let s =
            set("1 sip:a 0 0 duid=a;maxload=2\n1 sip:b 0 0 duid=b\n1 sip:c 0 0 duid=c;maxload=1\n");
        // order: c, b, a
        let mut p = SelectParams::new(10);
        let loads = [1, 5, 1];
        p.loads = &loads;
        let r = sel(&s, &[], &p);
        // c full (1 >= 1), a has 1 < 5
        assert_eq!(r.chosen, Some(2));
        assert_eq!(r.load_dest, Some(2));
        // failover skips full entries
        assert_eq!(r.targets, vec![2, 1]);
        // all full or down -> fail
        let loads = [1, 5, 2];
        p.loads = &loads;
        assert_eq!(sel(&s, &[0, I, 0], &p).chosen, None);
        // not an INVITE: first entry, no load, no maxload skipping
        p.is_invite = false;
        let r = sel(&s, &[], &p);
        assert_eq!((r.chosen, r.load_dest), (Some(0), None));
        assert_eq!(r.targets, vec![0, 1, 2]);
        // missing duid in the failover list is an error
        let s2 = set("1 sip:a 0 0 duid=a\n1 sip:b 0 0\n");
        let mut p = SelectParams::new(10);
        let loads = [3, 0];
        p.loads = &loads;
        // order b (no duid, load 3), a (duid, load 0) -> a chosen, b listed -> error
        assert_eq!(
            select(&s2, &[], &HashInputs::default(), &p),
            Err(SelectError::MissingDuid(0))
        );
        // chosen without duid -> classic (no load, no error)
        let loads = [0, 3];
        p.loads = &loads;
        let r = sel(&s2, &[], &p);
        assert_eq!((r.chosen, r.load_dest), (Some(0), None));
        assert_eq!(r.targets, vec![0, 1]);
    }

    #[test]
    fn parallel() {
        let s = plain(4);
        let r = sel(&s, &[I, 0, I, 0], &SelectParams::new(12));
        assert!(r.parallel);
        assert_eq!(r.chosen, Some(1));
        // Kamailio adds every later entry as a branch, whatever its state
        assert_eq!(r.targets, vec![1, 2, 3]);
        assert_eq!(sel(&s, &[I, I, I, D], &SelectParams::new(12)).chosen, None);
    }

    #[test]
    fn rr_serial() {
        let eq = set("1 sip:a 0 5\n1 sip:b 0 5\n1 sip:c 0 5\n");
        let mut p = SelectParams::new(14);
        p.cursor = 2;
        let r = sel(&eq, &[], &p);
        assert_eq!((r.chosen, r.next_cursor), (Some(2), Some(0)));
        let mixed = set("1 sip:a 0 5\n1 sip:b 0 6\n");
        let r = sel(&mixed, &[], &p);
        assert_eq!((r.chosen, r.next_cursor), (Some(0), None));
        let zero = set("1 sip:a 0 0\n1 sip:b 0 0\n");
        assert_eq!(sel(&zero, &[], &p).chosen, Some(0));
    }

    #[test]
    fn latency_priority() {
        // order: a(10) b(10) c(5) in set order after sorting: prio desc, reverse file
        let s = set("1 sip:c 0 5\n1 sip:b 0 10\n1 sip:a 0 10\n");
        assert_eq!(s.dests[0].uri, "sip:a");
        let lat = [
            Latency {
                estimate: 50,
                average: 0,
            },
            Latency::default(),
            Latency::default(),
        ];
        let mut p = SelectParams::new(13);
        p.latency = &lat;
        // a: 10 - 50/10 = 5; b: 10; c: 5 -> b, a, c (stable)
        let r = sel(&s, &[], &p);
        assert_eq!(r.chosen, Some(1));
        assert_eq!(r.targets, vec![1, 0, 2]);
        assert_eq!(r.next_cursor, Some(2));
        // starting at cursor 2: c, a, b -> sorted b(10), c(5), a(5)
        p.cursor = 2;
        let r = sel(&s, &[], &p);
        assert_eq!(r.targets, vec![1, 2, 0]);
        // inactive entries are left out; all down -> fail with cursor reset
        let r = sel(&s, &[0, I, 0], &p);
        assert_eq!(r.targets, vec![2, 0]);
        let r = sel(&s, &[I, I, I], &p);
        assert_eq!((r.chosen, r.next_cursor), (None, Some(0)));
    }

    #[test]
    fn priority_weight() {
        let mut zero = || 0u32;
        let s = set("1 sip:a 0 1 weight=30\n1 sip:b 0 1 weight=10\n1 sip:c 0 2 weight=50\n");
        // order: c(2), b(1), a(1); best tier = priority 1: b 25, a 75
        let t = priority_weight_table(&s, &[], &mut zero);
        let cnt = |t: &[usize; 100], x| t.iter().filter(|&&y| y == x).count();
        assert_eq!((cnt(&t, 0), cnt(&t, 1), cnt(&t, 2)), (0, 25, 75));
        // tier down -> next tier
        let t = priority_weight_table(&s, &[0, I, D], &mut zero);
        assert_eq!(cnt(&t, 0), 100);
        // no weights: equal split, remainder to the last
        let s = set("1 sip:a 0 1\n1 sip:b 0 1\n1 sip:c 0 1\n");
        let t = priority_weight_table(&s, &[], &mut zero);
        assert_eq!((cnt(&t, 0), cnt(&t, 1), cnt(&t, 2)), (33, 33, 34));
        assert_eq!(priority_weight_table(&s, &[I, I, I], &mut zero), [0; 100]);
        let mut counts = [0usize; 3];
        for c in 0..100u64 {
            let mut p = SelectParams::new(15);
            p.cursor = c;
            p.table_seed = 11;
            counts[sel(&s, &[], &p).chosen.unwrap()] += 1;
        }
        assert_eq!(counts, [33, 33, 34]);
    }

    #[test]
    fn overload_alg_is_round_robin() {
        let s = plain(3);
        let mut p = SelectParams::new(64);
        p.cursor = 4;
        let r = sel(&s, &[0, I, 0], &p);
        assert_eq!((r.chosen, r.next_cursor), (Some(2), Some(0)));
    }
}
