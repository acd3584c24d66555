//! Header list and header-name helpers.

use std::borrow::Cow;

use crate::chars::is_token;
use crate::span::Span;
use crate::text::Text;
use crate::via::{ViaRef, ViaSpans};

/// One header line: name as on the wire (or as added), value unfolded and trimmed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// Name as written (compact forms and letter case preserved).
    pub name: Text,
    /// Value with line folding replaced by a single SP and surrounding SP/HT trimmed.
    pub value: Text,
}

impl Header {
    /// Build a header line.
    pub fn new(name: impl Into<Text>, value: impl Into<Text>) -> Self {
        Header {
            name: name.into(),
            value: value.into(),
        }
    }
}

/// Header list in wire order. All lookups by name are case-insensitive and compact forms
/// (`i m e l c f s k t v`, and `o u r b x y a j d n` from RFC 6665/3515/3892/4028/8224/
/// 3841/4474) are equivalent to their long forms.
///
/// ```
/// use weir_message::Headers;
/// let mut h = Headers::new();
/// h.push("v", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1");
/// h.push("Via", "SIP/2.0/UDP 192.0.2.2;branch=z9hG4bK2");
/// assert_eq!(h.get("VIA"), Some("SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1"));
/// assert_eq!(h.get_all("via").count(), 2);
/// ```
#[derive(Clone, Debug, Default)]
pub struct Headers {
    list: Vec<Header>,
    /// Where the parser found the first line of each [`First`] header, and what its
    /// checks parsed from them; kept up to date by `insert`, `remove_at`, `push` and
    /// `set_value_at`, forgotten at any other edit (lookups then scan the list, as for
    /// any other name, and values are parsed when read).
    first: FirstLines,
}

/// The headers every message has and the proxy reads many times per message: a parsed
/// message remembers where their first lines are, so reading them needs no scan and no
/// name comparison.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum First {
    Via,
    From,
    To,
    CallId,
    CSeq,
    MaxForwards,
}

impl First {
    /// Every one, in the order of their slots in [`FirstLines`].
    pub(crate) const ALL: [First; 6] = [
        First::Via,
        First::From,
        First::To,
        First::CallId,
        First::CSeq,
        First::MaxForwards,
    ];

    /// The long name, for the scan when the lines are not remembered.
    pub(crate) fn name(self) -> &'static str {
        match self {
            First::Via => "Via",
            First::From => "From",
            First::To => "To",
            First::CallId => "Call-ID",
            First::CSeq => "CSeq",
            First::MaxForwards => "Max-Forwards",
        }
    }
}

/// Index of the first line of each [`First`] header ([`FirstLines::ABSENT`]: none), and
/// the From and To tags and top via-parm as byte ranges of those lines, valid only while
/// `known`. Bytes and byte ranges, not indices and strings: a message is moved by value
/// many times (this is 46 bytes); a message whose known lines lie beyond the 254th is
/// not remembered.
#[derive(Clone, Copy, Debug, Default)]
struct FirstLines {
    known: bool,
    at: [u8; 6],
    /// Where the `tag` of the first From line is in its value, as the parser's check of
    /// From found it (a param [`Span`]; [`Span::UNKNOWN`] if not looked at); like `at`,
    /// valid only while `known`.
    from_tag: Span,
    /// The same for the first To line.
    to_tag: Span,
    /// The top Via's first via-parm as the parser's check of Via parsed it; like `at`,
    /// valid only while `known`.
    top_via: Option<ViaSpans>,
}

impl FirstLines {
    const ABSENT: u8 = u8::MAX;

    /// Forget what was parsed from the first line of `which` (its line changed).
    fn forget_parsed(&mut self, which: First) {
        match which {
            First::Via => self.top_via = None,
            First::From => self.from_tag = Span::UNKNOWN,
            First::To => self.to_tag = Span::UNKNOWN,
            _ => {}
        }
    }
}

/// Two lists are equal when their lines are: what the parser remembered does not count.
impl PartialEq for Headers {
    fn eq(&self, other: &Headers) -> bool {
        self.list == other.list
    }
}

impl Eq for Headers {}

impl Headers {
    /// Empty list.
    pub fn new() -> Self {
        Headers {
            list: Vec::new(),
            first: FirstLines::default(),
        }
    }

    /// Empty list with room for `n` lines.
    pub fn with_capacity(n: usize) -> Self {
        Headers {
            list: Vec::with_capacity(n),
            first: FirstLines::default(),
        }
    }

    /// Number of header lines.
    pub fn len(&self) -> usize {
        self.list.len()
    }

    /// No header lines.
    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    /// Lines in wire order.
    pub fn iter(&self) -> std::slice::Iter<'_, Header> {
        self.list.iter()
    }

    /// Mutable lines in wire order.
    pub fn iter_mut(&mut self) -> std::slice::IterMut<'_, Header> {
        self.first.known = false;
        self.list.iter_mut()
    }

    /// Value of the first line named `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        let want = expand(name);
        self.list
            .iter()
            .find(|h| same_long(expand(&h.name), want))
            .map(|h| h.value.as_str())
    }

    /// Values of every line named `name`, in order (a line's value is not split on commas).
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let want = expand(name);
        self.list
            .iter()
            .filter(move |h| same_long(expand(&h.name), want))
            .map(|h| h.value.as_str())
    }

    /// Whether a line named `name` exists.
    pub fn contains(&self, name: &str) -> bool {
        self.position(name).is_some()
    }

    /// Append a line.
    pub fn push(&mut self, name: impl Into<Text>, value: impl Into<Text>) {
        self.push_header(Header::new(name, value));
    }

    /// Insert a line before `index` (appends when `index >= len()`).
    pub fn insert(&mut self, index: usize, name: impl Into<Text>, value: impl Into<Text>) {
        let index = index.min(self.list.len());
        self.list.insert(index, Header::new(name, value));
        self.inserted(index);
    }

    /// Keep the remembered lines right after a line was inserted at `index`: the lines
    /// after it move down one, and it becomes the first line of its kind if none came
    /// before it (a Via inserted on top is parsed then, so it is read without a parse).
    fn inserted(&mut self, index: usize) {
        if !self.first.known {
            return;
        }
        if self.list.len() >= usize::from(FirstLines::ABSENT) {
            self.first.known = false;
            return;
        }
        for at in &mut self.first.at {
            if *at != FirstLines::ABSENT && usize::from(*at) >= index {
                *at += 1;
            }
        }
        let Some(line) = self.list.get(index) else {
            return;
        };
        let Some(which) = crate::message::first_kind(&line.name) else {
            return;
        };
        let slot = which as usize;
        let Some(&at) = self.first.at.get(slot) else {
            return;
        };
        if at == FirstLines::ABSENT || usize::from(at) > index {
            if let Some(at) = self.first.at.get_mut(slot) {
                *at = index as u8;
            }
            self.first.forget_parsed(which);
            if which == First::Via {
                let value = line.value.as_str();
                self.first.top_via = ViaRef::parse(value)
                    .ok()
                    .and_then(|v| ViaSpans::of(value, &v));
            }
        }
    }

    /// Index of the first line named `name`.
    pub fn position(&self, name: &str) -> Option<usize> {
        let want = expand(name);
        self.list
            .iter()
            .position(|h| same_long(expand(&h.name), want))
    }

    /// Replace all lines named `name` by one line with `value`, at the position of the
    /// first one (its spelling of the name is kept), or append it.
    pub fn set(&mut self, name: &str, value: impl Into<Text>) {
        self.first.known = false;
        let value = value.into();
        match self.position(name) {
            Some(i) => {
                let want = expand(name);
                let mut idx = 0usize;
                self.list.retain(|h| {
                    let keep = idx == i || !same_long(expand(&h.name), want);
                    idx += 1;
                    keep
                });
                if let Some(h) = self.list.get_mut(i) {
                    h.value = value;
                }
            }
            None => self.push(name, value),
        }
    }

    /// Remove every line named `name`; returns how many were removed.
    pub fn remove(&mut self, name: &str) -> usize {
        self.first.known = false;
        let want = expand(name);
        let before = self.list.len();
        self.list.retain(|h| !same_long(expand(&h.name), want));
        before.saturating_sub(self.list.len())
    }

    /// Rename every line named `name` to `new_name`; returns how many were renamed.
    pub fn rename(&mut self, name: &str, new_name: &str) -> usize {
        self.first.known = false;
        let want = expand(name);
        let mut n = 0usize;
        for h in &mut self.list {
            if same_long(expand(&h.name), want) {
                h.name = Text::from(new_name);
                n += 1;
            }
        }
        n
    }

    /// Line at `index`.
    pub fn get_mut(&mut self, index: usize) -> Option<&mut Header> {
        self.first.known = false;
        self.list.get_mut(index)
    }

    /// Replace the value of the line at `index`, keeping its name; false if there is no
    /// such line. Unlike [`Headers::get_mut`], the remembered lines stay known.
    pub fn set_value_at(&mut self, index: usize, value: impl Into<Text>) -> bool {
        let Some(line) = self.list.get_mut(index) else {
            return false;
        };
        line.value = value.into();
        if self.first.known {
            for (which, at) in First::ALL.into_iter().zip(self.first.at) {
                if at != FirstLines::ABSENT && usize::from(at) == index {
                    self.first.forget_parsed(which);
                }
            }
        }
        true
    }

    /// Line at `index`.
    pub fn get_at(&self, index: usize) -> Option<&Header> {
        self.list.get(index)
    }

    /// Remove and return the line at `index`.
    pub fn remove_at(&mut self, index: usize) -> Option<Header> {
        if index >= self.list.len() {
            return None;
        }
        let removed = self.list.remove(index);
        if self.first.known {
            for (slot, which) in First::ALL.into_iter().enumerate() {
                let Some(&at) = self.first.at.get(slot) else {
                    continue;
                };
                if at == FirstLines::ABSENT || usize::from(at) < index {
                    continue;
                }
                let next = if usize::from(at) == index {
                    // Its first line is gone: the next one of the kind, if any.
                    self.first.forget_parsed(which);
                    self.list
                        .iter()
                        .skip(index)
                        .position(|h| crate::message::first_kind(&h.name) == Some(which))
                        .map_or(FirstLines::ABSENT, |p| (p + index) as u8)
                } else {
                    at - 1
                };
                if let Some(at) = self.first.at.get_mut(slot) {
                    *at = next;
                }
            }
        }
        Some(removed)
    }

    pub(crate) fn last_mut(&mut self) -> Option<&mut Header> {
        self.first.known = false;
        self.list.last_mut()
    }

    pub(crate) fn push_header(&mut self, h: Header) {
        self.list.push(h);
        self.inserted(self.list.len() - 1);
    }

    /// Remember where the first line of each [`First`] header is (`line(which)`; `None`:
    /// absent), as the parser found them for the lines as they are now. Until the next
    /// edit, [`Headers::first`] reads them without a scan.
    pub(crate) fn remember_first(&mut self, line: impl Fn(First) -> Option<usize>) {
        let mut first = FirstLines {
            known: true,
            at: [FirstLines::ABSENT; 6],
            from_tag: Span::UNKNOWN,
            to_tag: Span::UNKNOWN,
            top_via: None,
        };
        for (slot, which) in first.at.iter_mut().zip(First::ALL) {
            if let Some(i) = line(which) {
                match u8::try_from(i) {
                    Ok(i) if i != FirstLines::ABSENT && usize::from(i) < self.list.len() => {
                        *slot = i;
                    }
                    // Beyond what a byte holds (or out of range): remember nothing.
                    _ => return,
                }
            }
        }
        self.first = first;
    }

    /// Remember where the first From line's tag is (a param [`Span`] of its value), while
    /// the lines are remembered.
    pub(crate) fn remember_from_tag(&mut self, span: Span) {
        if self.first.known {
            self.first.from_tag = span;
        }
    }

    /// Remember where the first To line's tag is, as [`Headers::remember_from_tag`].
    pub(crate) fn remember_to_tag(&mut self, span: Span) {
        if self.first.known {
            self.first.to_tag = span;
        }
    }

    /// The first From line's tag as remembered: `None` if it was not (then parse the
    /// value), `Some(None)` if it has none.
    pub(crate) fn remembered_from_tag(&self) -> Option<Option<&str>> {
        self.remembered_tag(First::From, self.first.from_tag)
    }

    /// The first To line's tag as remembered, as [`Headers::remembered_from_tag`].
    pub(crate) fn remembered_to_tag(&self) -> Option<Option<&str>> {
        self.remembered_tag(First::To, self.first.to_tag)
    }

    fn remembered_tag(&self, which: First, span: Span) -> Option<Option<&str>> {
        if !self.first.known {
            return None;
        }
        span.get_param(self.first(which)?).map(Option::flatten)
    }

    /// Remember the top Via's first via-parm, parsed from the first Via line, while the
    /// lines are remembered.
    pub(crate) fn remember_top_via(&mut self, via: Option<ViaSpans>) {
        if self.first.known {
            self.first.top_via = via;
        }
    }

    /// The top Via's first via-parm as remembered, `None` if it was not (then parse it).
    pub(crate) fn remembered_top_via(&self) -> Option<ViaRef<'_>> {
        let spans = self.first.top_via.as_ref().filter(|_| self.first.known)?;
        spans.get(self.first(First::Via)?)
    }

    /// Value of the first line of `which`: the remembered line, else by name.
    pub(crate) fn first(&self, which: First) -> Option<&str> {
        if !self.first.known {
            return self.get(which.name());
        }
        let i = *self.first.at.get(which as usize)?;
        if i == FirstLines::ABSENT {
            return None;
        }
        self.list.get(usize::from(i)).map(|h| h.value.as_str())
    }
}

impl<'a> IntoIterator for &'a Headers {
    type Item = &'a Header;
    type IntoIter = std::slice::Iter<'a, Header>;
    fn into_iter(self) -> Self::IntoIter {
        self.list.iter()
    }
}

impl FromIterator<Header> for Headers {
    fn from_iter<T: IntoIterator<Item = Header>>(iter: T) -> Self {
        Headers {
            first: FirstLines::default(),
            list: iter.into_iter().collect(),
        }
    }
}

/// (compact letter, long form, lowercase long form). `n` (Identity-Info, RFC 4474) is left
/// out on purpose: the header is obsolete and Kamailio does not map it either.
const COMPACT: [(u8, &str, &str); 19] = [
    (b'a', "Accept-Contact", "accept-contact"),
    (b'b', "Referred-By", "referred-by"),
    (b'c', "Content-Type", "content-type"),
    (b'd', "Request-Disposition", "request-disposition"),
    (b'e', "Content-Encoding", "content-encoding"),
    (b'f', "From", "from"),
    (b'i', "Call-ID", "call-id"),
    (b'j', "Reject-Contact", "reject-contact"),
    (b'k', "Supported", "supported"),
    (b'l', "Content-Length", "content-length"),
    (b'm', "Contact", "contact"),
    (b'o', "Event", "event"),
    (b'r', "Refer-To", "refer-to"),
    (b's', "Subject", "subject"),
    (b't', "To", "to"),
    (b'u', "Allow-Events", "allow-events"),
    (b'v', "Via", "via"),
    (b'x', "Session-Expires", "session-expires"),
    (b'y', "Identity", "identity"),
];

#[inline]
fn compact_entry(name: &str) -> Option<&'static (u8, &'static str, &'static str)> {
    match name.as_bytes() {
        [c] => {
            let c = c.to_ascii_lowercase();
            COMPACT.iter().find(|e| e.0 == c)
        }
        _ => None,
    }
}

/// Long form of a compact name, else the name itself (letter case untouched).
#[inline]
pub(crate) fn expand(name: &str) -> &str {
    match compact_entry(name) {
        Some(e) => e.1,
        None => name,
    }
}

/// Lowercase long form: `canonical_name("v") == "via"`, `canonical_name("Call-ID") ==
/// "call-id"`. Borrows when no change is needed.
pub fn canonical_name(name: &str) -> Cow<'_, str> {
    if let Some(e) = compact_entry(name) {
        return Cow::Borrowed(e.2);
    }
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(name.to_ascii_lowercase())
    } else {
        Cow::Borrowed(name)
    }
}

/// Compact form of a header name (`compact_form("Via") == Some("v")`); a compact name maps
/// to itself in lowercase. `None` when the header has no compact form.
pub fn compact_form(name: &str) -> Option<&'static str> {
    const LETTERS: [&str; 26] = [
        "a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k", "l", "m", "n", "o", "p", "q", "r",
        "s", "t", "u", "v", "w", "x", "y", "z",
    ];
    let e = match compact_entry(name) {
        Some(e) => e,
        None => COMPACT.iter().find(|e| e.1.eq_ignore_ascii_case(name))?,
    };
    LETTERS.get(usize::from(e.0.checked_sub(b'a')?)).copied()
}

/// Whether two header names denote the same header (case-insensitive, compact forms equal
/// to long forms).
#[inline]
pub fn names_equal(a: &str, b: &str) -> bool {
    same_long(expand(a), expand(b))
}

/// Case-insensitive equality of two expanded names, the lengths compared inline first:
/// most names a lookup passes differ in length, and `eq_ignore_ascii_case` is an
/// out-of-line call (measured: ~48 per parsed REGISTER under callgrind).
#[inline]
fn same_long(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.eq_ignore_ascii_case(b)
}

/// RFC 3261 `token`: non-empty, token characters only.
pub fn is_valid_header_name(name: &str) -> bool {
    is_token(name)
}

/// A value that can be written on one header line: no CR, LF or NUL.
pub fn is_valid_header_value(value: &str) -> bool {
    // Eight bytes at a time.
    crate::scan::find_special(value.as_bytes(), 0) == value.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_forms_map_both_ways() {
        let pairs = [
            ("i", "Call-ID"),
            ("m", "Contact"),
            ("e", "Content-Encoding"),
            ("l", "Content-Length"),
            ("c", "Content-Type"),
            ("f", "From"),
            ("s", "Subject"),
            ("k", "Supported"),
            ("t", "To"),
            ("v", "Via"),
            ("o", "Event"),
            ("u", "Allow-Events"),
            ("r", "Refer-To"),
            ("b", "Referred-By"),
            ("x", "Session-Expires"),
            ("y", "Identity"),
            ("a", "Accept-Contact"),
            ("j", "Reject-Contact"),
            ("d", "Request-Disposition"),
        ];
        for (c, long) in pairs {
            assert!(names_equal(c, long), "{c} vs {long}");
            assert!(names_equal(&c.to_uppercase(), &long.to_uppercase()));
            assert_eq!(compact_form(long), Some(c));
            assert_eq!(compact_form(&long.to_lowercase()), Some(c));
            assert_eq!(compact_form(c), Some(c));
            assert_eq!(canonical_name(c), long.to_lowercase());
            assert_eq!(canonical_name(long), long.to_lowercase());
        }
        assert_eq!(canonical_name("v"), "via");
        assert_eq!(canonical_name("Call-ID"), "call-id");
        assert!(matches!(canonical_name("x-foo"), Cow::Borrowed(_)));
        assert_eq!(compact_form("X-Foo"), None);
        assert_eq!(compact_form("g"), None);
        assert!(!names_equal("g", "Via"));
        assert!(!names_equal("Via", "Vias"));
    }

    #[test]
    fn header_list_operations() {
        let mut h = Headers::new();
        assert!(h.is_empty());
        h.push("Via", "a");
        h.push("f", "from");
        h.push("v", "b");
        h.push("X-Custom", "1");
        assert_eq!(h.len(), 4);
        assert_eq!(h.get("VIA"), Some("a"));
        assert_eq!(h.get_all("V").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(h.get("From"), Some("from"));
        assert!(h.contains("x-custom"));
        assert_eq!(h.position("x-CUSTOM"), Some(3));
        h.insert(0, "Via", "z");
        assert_eq!(h.get("via"), Some("z"));
        h.insert(100, "Tail", "t");
        assert_eq!(h.get_at(5).map(|x| x.name.as_str()), Some("Tail"));
        h.set("Via", "only");
        assert_eq!(h.get_all("via").collect::<Vec<_>>(), ["only"]);
        assert_eq!(h.position("via"), Some(0));
        h.set("New", "n");
        assert_eq!(h.iter().last().map(|x| x.value.as_str()), Some("n"));
        assert_eq!(h.rename("x-custom", "X-Other"), 1);
        assert_eq!(h.get("X-Other"), Some("1"));
        assert_eq!(h.remove("x-other"), 1);
        assert_eq!(h.remove("x-other"), 0);
        h.get_mut(0).unwrap().value = "changed".into();
        assert_eq!(h.get("v"), Some("changed"));
        assert!(h.remove_at(99).is_none());
        assert_eq!(h.remove_at(0).unwrap().value, "changed");
        assert!(!h.contains("via"));
    }

    #[test]
    fn validity() {
        assert!(is_valid_header_name("X-Foo.bar!"));
        assert!(!is_valid_header_name(""));
        assert!(!is_valid_header_name("X Foo"));
        assert!(!is_valid_header_name("X:Foo"));
        assert!(is_valid_header_value(""));
        assert!(is_valid_header_value("a b\tc ü"));
        assert!(!is_valid_header_value("a\r\nInjected: 1"));
        assert!(!is_valid_header_value("a\0"));
        // Past the first eight bytes, and in the last partial word.
        assert!(!is_valid_header_value("0123456789abcdef\nx"));
        assert!(!is_valid_header_value("0123456789\r"));
        assert!(is_valid_header_value("0123456789abcdef\t\x0b\x0c\x0e"));
    }
}
