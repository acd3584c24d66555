//! Kamailio dispatcher list files: `setid uri [flags [priority [attrs]]]`.
//!
//! Tokens are separated by spaces, tabs or CR; `#` starts a comment where a token may
//! start (inside the attrs token it is kept, as in Kamailio). Flags are decimal or `0x`
//! hex, the priority is decimal, attrs is one `k=v;k=v` token. Inside a set the
//! destinations are ordered by priority descending and, for equal priorities, in reverse
//! file order (Kamailio inserts into a list sorted ascending and then copies it
//! backwards), so index 0 is the first choice.
//!
//! Deliberate strictness over Kamailio (which silently stops reading a number at the first
//! non-digit and prefixes `sip:` to scheme-less URIs): a set id that is not a decimal
//! number, a URI not starting with `sip:`/`sips:` (any case) or without a host, and flags
//! or a priority that are not fully numeric are errors with the line number.

use std::fmt;

/// Destination flag: inactive (not used for routing).
pub const FLAG_INACTIVE: u32 = 1;
/// Destination flag: trying (failed pings below the threshold; still used).
pub const FLAG_TRYING: u32 = 2;
/// Destination flag: disabled by the admin (not used, not probed).
pub const FLAG_DISABLED: u32 = 4;
/// Destination flag: probing (keepalives are sent).
pub const FLAG_PROBING: u32 = 8;
/// Destination flag: no DNS A/AAAA resolution of the host (also not probed).
pub const FLAG_NO_DNS: u32 = 16;
/// Destination flag: never ping.
pub const FLAG_NO_PING: u32 = 32;
/// All state bits (Kamailio's `DS_STATES_ALL`), reset by every state update.
pub const FLAG_STATES_ALL: u32 = 63;

/// Most destinations a list may hold.
pub const MAX_ENTRIES: usize = 10_000;
/// Longest line, in bytes (without the line end).
pub const MAX_LINE: usize = 4096;

/// Kamailio's `ds_skip_dst`: inactive or disabled destinations are not routed to.
/// Trying destinations are still usable.
pub fn is_usable(flags: u32) -> bool {
    flags & (FLAG_INACTIVE | FLAG_DISABLED) == 0
}

/// A parsed list file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DestList {
    /// Sets in ascending id order.
    pub sets: Vec<DestSet>,
}

/// One destination set (group).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DestSet {
    pub id: u32,
    /// In selection order: priority descending, equal priority in reverse file order.
    pub dests: Vec<Dest>,
}

/// One destination.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Dest {
    pub uri: String,
    /// Initial flags (`FLAG_*`).
    pub flags: u32,
    pub priority: i32,
    pub attrs: Attrs,
}

/// Which attribute selects the send socket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SocketRef<'a> {
    /// `sockname=` (wins over `socket=`).
    Name(&'a str),
    /// `socket=proto:addr:port`.
    Address(&'a str),
}

/// Destination attributes (`k=v;k=v`). Names are case-insensitive; numeric values that
/// do not parse count as 0, as with Kamailio's `str2sint`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Attrs {
    /// The attrs token as written, without a trailing `;` (empty when none).
    pub body: String,
    pub duid: Option<String>,
    /// Most concurrent calls for algorithm 10; 0 = unlimited.
    pub maxload: i32,
    /// 1..=100, else 0 (out-of-range values are ignored, as in Kamailio).
    pub weight: u32,
    /// 1..=100, else 0.
    pub rweight: u32,
    /// `cc=` congestion control (non-zero = on).
    pub cc: i32,
    pub socket: Option<String>,
    pub sockname: Option<String>,
    pub ping_socket: Option<String>,
    pub ping_from: Option<String>,
    pub obproxy: Option<String>,
    /// Initial latency estimate (`latency=`), in ms.
    pub latency: Option<i32>,
    pub ocmin: Option<i32>,
    pub ocmax: Option<i32>,
    pub ocrate: Option<i32>,
    /// Attributes not listed above, in order, names as written.
    pub other: Vec<(String, String)>,
}

impl Attrs {
    /// Parses an attrs token (`k=v;k=v`, trailing `;` allowed, values may be quoted).
    pub fn parse(token: &str) -> Attrs {
        let body = token.strip_suffix(';').unwrap_or(token);
        let mut a = Attrs {
            body: body.to_string(),
            ..Attrs::default()
        };
        for part in body.split(';') {
            let part = part.trim_matches(WS);
            if part.is_empty() {
                continue;
            }
            let (name, value) = match part.split_once('=') {
                Some((n, v)) => (n.trim_matches(WS), unquote(v.trim_matches(WS))),
                None => (part, ""),
            };
            let lname = name.to_ascii_lowercase();
            match lname.as_str() {
                "duid" => a.duid = Some(value.to_string()),
                "cc" => a.cc = str2sint(value),
                "weight" => a.weight = percent(value),
                "rweight" => a.rweight = percent(value),
                "latency" => a.latency = parse_sint(value),
                "maxload" => a.maxload = str2sint(value),
                "socket" => a.socket = Some(value.to_string()),
                "sockname" => a.sockname = Some(value.to_string()),
                "ping_socket" => a.ping_socket = Some(value.to_string()),
                "ping_from" => a.ping_from = Some(value.to_string()),
                "obproxy" => a.obproxy = Some(value.to_string()),
                "ocmin" => a.ocmin = Some(str2sint(value)),
                "ocmax" => a.ocmax = Some(str2sint(value)),
                "ocrate" => a.ocrate = Some(str2sint(value)),
                _ => a.other.push((name.to_string(), value.to_string())),
            }
        }
        a
    }

    /// The send socket: `sockname` wins over `socket`; empty values count as unset.
    pub fn send_socket(&self) -> Option<SocketRef<'_>> {
        match (&self.sockname, &self.socket) {
            (Some(n), _) if !n.is_empty() => Some(SocketRef::Name(n)),
            (_, Some(s)) if !s.is_empty() => Some(SocketRef::Address(s)),
            _ => None,
        }
    }

    /// Looks up an unknown attribute by name (case-insensitive).
    pub fn get_other(&self, name: &str) -> Option<&str> {
        self.other
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// A list file error, with the 1-based line number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError {
    pub line: usize,
    pub kind: ParseErrorKind,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ParseErrorKind {
    /// The set id is not a decimal number fitting u32.
    BadSetId(String),
    /// A set id without a URI.
    MissingUri,
    /// Not `sip:`/`sips:` or no host.
    BadUri(String),
    BadFlags(String),
    BadPriority(String),
    /// Line longer than [`MAX_LINE`] bytes.
    LineTooLong,
    /// More than [`MAX_ENTRIES`] destinations.
    TooManyEntries,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "dispatcher list line {}: ", self.line)?;
        match &self.kind {
            ParseErrorKind::BadSetId(s) => write!(f, "bad set id {s:?}"),
            ParseErrorKind::MissingUri => write!(f, "missing destination URI"),
            ParseErrorKind::BadUri(s) => {
                write!(f, "bad URI {s:?} (must be sip:/sips: with a host)")
            }
            ParseErrorKind::BadFlags(s) => {
                write!(f, "bad flags {s:?} (decimal or 0x hex expected)")
            }
            ParseErrorKind::BadPriority(s) => write!(f, "bad priority {s:?}"),
            ParseErrorKind::LineTooLong => write!(f, "line longer than {MAX_LINE} bytes"),
            ParseErrorKind::TooManyEntries => write!(f, "more than {MAX_ENTRIES} destinations"),
        }
    }
}

impl std::error::Error for ParseError {}

const WS: &[char] = &[' ', '\t', '\r', '\n'];

impl DestList {
    /// Parses a whole list file.
    pub fn parse(text: &str) -> Result<DestList, ParseError> {
        // (set id, entries in file order)
        let mut sets: Vec<(u32, Vec<Dest>)> = Vec::new();
        let mut count = 0usize;
        for (i, raw) in text.split('\n').enumerate() {
            let line = i + 1;
            let err = |kind| ParseError { line, kind };
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            if raw.len() > MAX_LINE {
                return Err(err(ParseErrorKind::LineTooLong));
            }
            let Some(dest) = parse_line(raw).map_err(err)? else {
                continue;
            };
            count += 1;
            if count > MAX_ENTRIES {
                return Err(err(ParseErrorKind::TooManyEntries));
            }
            let (id, dest) = dest;
            match sets.iter_mut().find(|(sid, _)| *sid == id) {
                Some((_, v)) => v.push(dest),
                None => sets.push((id, vec![dest])),
            }
        }
        sets.sort_by_key(|(id, _)| *id);
        Ok(DestList {
            sets: sets
                .into_iter()
                .map(|(id, dests)| DestSet::from_file_order(id, dests))
                .collect(),
        })
    }

    /// The set with this id.
    pub fn set(&self, id: u32) -> Option<&DestSet> {
        self.sets.iter().find(|s| s.id == id)
    }

    /// Number of destinations over all sets.
    pub fn len(&self) -> usize {
        self.sets.iter().map(|s| s.dests.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.sets.is_empty()
    }
}

impl DestSet {
    /// Builds a set from destinations in file (insertion) order, applying Kamailio's
    /// order: priority descending, equal priority in reverse insertion order.
    pub fn from_file_order(id: u32, mut dests: Vec<Dest>) -> DestSet {
        dests.reverse();
        // Stable sort keeps the reversed order among equal priorities.
        dests.sort_by_key(|d| std::cmp::Reverse(d.priority));
        DestSet { id, dests }
    }

    /// Kamailio's `rrserial` (algorithm 14): true when every priority is equal and > 0.
    pub fn rr_serial(&self) -> bool {
        match self.dests.first() {
            Some(first) => {
                first.priority > 0 && self.dests.iter().all(|d| d.priority == first.priority)
            }
            None => false,
        }
    }

    /// Index of the destination with this URI (case-insensitive, as Kamailio matches).
    pub fn position(&self, uri: &str) -> Option<usize> {
        self.dests
            .iter()
            .position(|d| d.uri.eq_ignore_ascii_case(uri))
    }

    /// Index of the destination with this `duid` attribute (case-insensitive).
    pub fn position_by_duid(&self, duid: &str) -> Option<usize> {
        self.dests.iter().position(|d| {
            d.attrs
                .duid
                .as_deref()
                .is_some_and(|x| x.eq_ignore_ascii_case(duid))
        })
    }
}

/// Splits off the next token; `#` ends the line where a token starts.
fn next_token(s: &str) -> (Option<&str>, &str) {
    let s = s.trim_start_matches(WS);
    if s.is_empty() || s.starts_with('#') {
        return (None, "");
    }
    let end = s.find(WS).unwrap_or(s.len());
    (Some(&s[..end]), &s[end..])
}

type LineResult = Result<Option<(u32, Dest)>, ParseErrorKind>;

fn parse_line(line: &str) -> LineResult {
    let (Some(setid), rest) = next_token(line) else {
        return Ok(None);
    };
    let id = parse_setid(setid)?;
    // The URI token also stops at '#'.
    let rest = rest.trim_start_matches(WS);
    if rest.is_empty() || rest.starts_with('#') {
        return Err(ParseErrorKind::MissingUri);
    }
    let uri_end = rest
        .find(|c: char| WS.contains(&c) || c == '#')
        .unwrap_or(rest.len());
    let uri = &rest[..uri_end];
    let rest = &rest[uri_end..];
    if !valid_uri(uri) {
        return Err(ParseErrorKind::BadUri(uri.to_string()));
    }
    let mut dest = Dest {
        uri: uri.to_string(),
        ..Dest::default()
    };
    let (flags, rest) = next_token(rest);
    if let Some(f) = flags {
        dest.flags = parse_flags(f).ok_or_else(|| ParseErrorKind::BadFlags(f.to_string()))?;
        let (prio, rest) = next_token(rest);
        if let Some(p) = prio {
            dest.priority = p
                .parse::<i32>()
                .ok()
                .filter(|_| p.bytes().all(|b| b.is_ascii_digit() || b == b'-'))
                .ok_or_else(|| ParseErrorKind::BadPriority(p.to_string()))?;
            // Attrs stop only at whitespace; anything after them is ignored (Kamailio).
            let (attrs, _) = next_token(rest);
            if let Some(a) = attrs {
                dest.attrs = Attrs::parse(a);
            }
        }
    }
    Ok(Some((id, dest)))
}

fn parse_setid(s: &str) -> Result<u32, ParseErrorKind> {
    if s.bytes().all(|b| b.is_ascii_digit()) {
        if let Ok(v) = s.parse::<u32>() {
            return Ok(v);
        }
    }
    Err(ParseErrorKind::BadSetId(s.to_string()))
}

/// Decimal or `0x` hex flags (`0X` is not accepted, as in Kamailio).
pub fn parse_flags(s: &str) -> Option<u32> {
    if let Some(h) = s.strip_prefix("0x") {
        if h.is_empty() || !h.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(h, 16).ok()
    } else {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        s.parse().ok()
    }
}

/// `sip:`/`sips:` (any case) followed by a non-empty host.
fn valid_uri(uri: &str) -> bool {
    crate::hash::SipUri::parse(uri).is_some_and(|u| !u.host.is_empty())
}

fn unquote(v: &str) -> &str {
    if v.len() >= 2 && v.starts_with('"') && v.ends_with('"') {
        &v[1..v.len() - 1]
    } else {
        v
    }
}

fn parse_sint(v: &str) -> Option<i32> {
    let digits = v.strip_prefix(['-', '+']).unwrap_or(v);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    v.parse().ok()
}

/// Kamailio's `str2sint` as used by `ds_set_attrs`: unparsable -> 0.
fn str2sint(v: &str) -> i32 {
    parse_sint(v).unwrap_or(0)
}

fn percent(v: &str) -> u32 {
    match str2sint(v) {
        w @ 1..=100 => w.unsigned_abs(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uris(set: &DestSet) -> Vec<&str> {
        set.dests.iter().map(|d| d.uri.as_str()).collect()
    }

    #[test]
    fn parses_order_and_fields() {
        let text = "\
# comment line
1 sip:a.example.com:5060
1 sip:b.example.com 0 5
  1\tsip:c.example.com 0x8 5 duid=c;weight=30;maxload=7;foo=bar
1 sip:d.example.com 2 0 # trailing comment

2 sips:e.example.com;transport=tls 0 0 socket=udp:1.2.3.4:5060;sockname=s1;
";
        let list = DestList::parse(text).unwrap();
        assert_eq!(list.sets.len(), 2);
        assert_eq!(list.len(), 5);
        let s1 = list.set(1).unwrap();
        // priority 5 (c after b in file -> c first), then priority 0 reversed (d, a)
        assert_eq!(
            uris(s1),
            vec![
                "sip:c.example.com",
                "sip:b.example.com",
                "sip:d.example.com",
                "sip:a.example.com:5060"
            ]
        );
        let c = &s1.dests[0];
        assert_eq!(c.flags, FLAG_PROBING);
        assert_eq!(c.priority, 5);
        assert_eq!(c.attrs.duid.as_deref(), Some("c"));
        assert_eq!(c.attrs.weight, 30);
        assert_eq!(c.attrs.maxload, 7);
        assert_eq!(c.attrs.get_other("FOO"), Some("bar"));
        assert_eq!(c.attrs.body, "duid=c;weight=30;maxload=7;foo=bar");
        assert_eq!(s1.dests[2].flags, FLAG_TRYING);
        let e = &list.set(2).unwrap().dests[0];
        assert_eq!(e.attrs.send_socket(), Some(SocketRef::Name("s1")));
        assert_eq!(e.attrs.body, "socket=udp:1.2.3.4:5060;sockname=s1");
    }

    #[test]
    fn equal_priority_reverse_file_order() {
        let list = DestList::parse("5 sip:a\n5 sip:b\n5 sip:c\n").unwrap();
        assert_eq!(uris(list.set(5).unwrap()), vec!["sip:c", "sip:b", "sip:a"]);
        let list = DestList::parse("5 sip:a 0 1\n5 sip:b 0 3\n5 sip:c 0 2\n5 sip:d 0 3\n").unwrap();
        assert_eq!(
            uris(list.set(5).unwrap()),
            vec!["sip:d", "sip:b", "sip:c", "sip:a"]
        );
    }

    #[test]
    fn sets_sorted_by_id() {
        let list = DestList::parse("9 sip:a\n2 sip:b\n").unwrap();
        let ids: Vec<u32> = list.sets.iter().map(|s| s.id).collect();
        assert_eq!(ids, vec![2, 9]);
    }

    #[test]
    fn attrs_details() {
        let a = Attrs::parse("weight=0;rweight=101;cc=1;Socket=tcp:1.1.1.1:5060;latency=x");
        assert_eq!(a.weight, 0);
        assert_eq!(a.rweight, 0);
        assert_eq!(a.cc, 1);
        assert_eq!(
            a.send_socket(),
            Some(SocketRef::Address("tcp:1.1.1.1:5060"))
        );
        assert_eq!(a.latency, None);
        let a = Attrs::parse("rweight=100;weight=1;maxload=abc;ocrate=50");
        assert_eq!(
            (a.rweight, a.weight, a.maxload, a.ocrate),
            (100, 1, 0, Some(50))
        );
        assert_eq!(Attrs::parse("").send_socket(), None);
    }

    #[test]
    fn flags_forms() {
        assert_eq!(parse_flags("0x1f"), Some(31));
        assert_eq!(parse_flags("0xA"), Some(10));
        assert_eq!(parse_flags("12"), Some(12));
        assert_eq!(parse_flags("0x"), None);
        assert_eq!(parse_flags("1a"), None);
        assert_eq!(parse_flags("0X1"), None);
    }

    #[test]
    fn errors_have_line_numbers() {
        let e = DestList::parse("1 sip:a\nx sip:b\n").unwrap_err();
        assert_eq!(e.line, 2);
        assert_eq!(e.kind, ParseErrorKind::BadSetId("x".into()));
        assert!(e.to_string().contains("line 2"));
        let e = DestList::parse("\n\n1 http://a\n").unwrap_err();
        assert_eq!(
            (e.line, e.kind),
            (3, ParseErrorKind::BadUri("http://a".into()))
        );
        let e = DestList::parse("1 sip:\n").unwrap_err();
        assert!(matches!(e.kind, ParseErrorKind::BadUri(_)));
        let e = DestList::parse("1 sip:a 0xzz\n").unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::BadFlags("0xzz".into()));
        let e = DestList::parse("1 sip:a 1 p\n").unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::BadPriority("p".into()));
        let e = DestList::parse("1 # no uri\n").unwrap_err();
        assert_eq!(e.kind, ParseErrorKind::MissingUri);
        let e = DestList::parse("99999999999 sip:a\n").unwrap_err();
        assert!(matches!(e.kind, ParseErrorKind::BadSetId(_)));
    }

    #[test]
    fn bounds() {
        let long = format!("1 sip:a 0 0 x={}\n", "y".repeat(MAX_LINE));
        let e = DestList::parse(&long).unwrap_err();
        assert_eq!((e.line, e.kind), (1, ParseErrorKind::LineTooLong));
        let many = "1 sip:a\n".repeat(MAX_ENTRIES);
        assert_eq!(DestList::parse(&many).unwrap().len(), MAX_ENTRIES);
        let too_many = format!("{many}2 sip:b\n");
        let e = DestList::parse(&too_many).unwrap_err();
        assert_eq!(
            (e.line, e.kind),
            (MAX_ENTRIES + 1, ParseErrorKind::TooManyEntries)
        );
    }

    #[test]
    fn negative_priority_and_crlf() {
        let list = DestList::parse("1 sip:a 0 -1\r\n1 sip:b 0 0\r\n").unwrap();
        assert_eq!(uris(list.set(1).unwrap()), vec!["sip:b", "sip:a"]);
        assert_eq!(list.set(1).unwrap().dests[1].priority, -1);
    }

    #[test]
    fn rr_serial_and_lookup() {
        let list =
            DestList::parse("1 sip:a 0 3 duid=A\n1 sip:b 0 3\n2 sip:c 0 0\n2 sip:d 0 0\n").unwrap();
        assert!(list.set(1).unwrap().rr_serial());
        assert!(!list.set(2).unwrap().rr_serial());
        assert_eq!(list.set(1).unwrap().position("SIP:A"), Some(1));
        assert_eq!(list.set(1).unwrap().position_by_duid("a"), Some(1));
        assert!(is_usable(FLAG_TRYING | FLAG_PROBING));
        assert!(!is_usable(FLAG_INACTIVE));
        assert!(!is_usable(FLAG_DISABLED));
    }
}
