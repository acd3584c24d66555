//! [`Text`]: the string type of header names and values and of the start line.
//!
//! A parsed message's strings are views of the datagram or stream frame it came from, not
//! copies: parsing a header costs no allocation, and cloning a message (the transaction
//! layer keeps the request, each branch gets its own copy) costs a reference count per
//! string instead of an allocation and a copy. Strings that a module or the proxy sets
//! are owned, as before. The price is that a kept header keeps its whole message's buffer
//! alive, as the message body already did.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::LazyLock;

use bytestring::ByteString;

/// An immutable UTF-8 string, cheap to clone (shared storage). Reads as a `&str`.
///
/// ```
/// use weir_message::Text;
/// let t = Text::from("Via");
/// assert_eq!(t, "Via");
/// assert!(t.eq_ignore_ascii_case("via"));
/// assert_eq!(t.as_str().len(), 3);
/// ```
#[derive(Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Text(ByteString);

impl Text {
    /// The empty string.
    pub const fn new() -> Text {
        Text(ByteString::new())
    }

    /// A string that borrows static storage.
    pub const fn from_static(s: &'static str) -> Text {
        Text(ByteString::from_static(s))
    }

    /// The decimal form of `n`; no allocation for 0-255 (Max-Forwards and the like).
    pub fn number(n: u32) -> Text {
        static SMALL: LazyLock<String> =
            LazyLock::new(|| (0..=255u32).map(|n| n.to_string()).collect());
        let s: &'static str = SMALL.as_str();
        let at = |n: u32| -> usize {
            let n = n as usize;
            match n {
                0..=9 => n,
                10..=99 => 10 + 2 * (n - 10),
                _ => 190 + 3 * (n - 100),
            }
        };
        match n {
            0..=255 => {
                let (a, b) = (at(n), at(n + 1));
                match s.get(a..b) {
                    Some(t) => Text::from_static(t),
                    None => Text::from(n.to_string()),
                }
            }
            _ => Text::from(n.to_string()),
        }
    }

    /// A part of this string (a slice of it, e.g. from `trim` or `split`) sharing its
    /// storage; a copy if `part` does not lie inside it.
    pub fn slice_ref(&self, part: &str) -> Text {
        Text::share(&self.0, part)
    }

    /// The string as `&str`.
    #[inline]
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `part` as a [`Text`] sharing `whole`'s storage when `part` lies inside `whole`
    /// (it was sliced from it); otherwise a copy.
    #[inline]
    pub(crate) fn share(whole: &ByteString, part: &str) -> Text {
        let base = whole.as_ptr() as usize;
        let p = part.as_ptr() as usize;
        let inside = p >= base
            && p.checked_add(part.len())
                .is_some_and(|end| end <= base.saturating_add(whole.len()));
        if inside && !part.is_empty() {
            Text(whole.slice_ref(part))
        } else {
            Text(ByteString::from(part))
        }
    }
}

impl Deref for Text {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for Text {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl AsRef<[u8]> for Text {
    fn as_ref(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl Borrow<str> for Text {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl Hash for Text {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl From<String> for Text {
    fn from(s: String) -> Text {
        Text(ByteString::from(s))
    }
}

impl From<&String> for Text {
    fn from(s: &String) -> Text {
        Text(ByteString::from(s.as_str()))
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Text {
        Text(ByteString::from(s))
    }
}

impl From<&Text> for Text {
    fn from(s: &Text) -> Text {
        s.clone()
    }
}

impl From<std::borrow::Cow<'_, str>> for Text {
    fn from(s: std::borrow::Cow<'_, str>) -> Text {
        match s {
            std::borrow::Cow::Borrowed(b) => Text::from(b),
            std::borrow::Cow::Owned(o) => Text::from(o),
        }
    }
}

impl From<Text> for String {
    fn from(t: Text) -> String {
        t.as_str().to_string()
    }
}

impl PartialEq<str> for Text {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Text {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Text {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other.as_str()
    }
}

impl PartialEq<Text> for str {
    fn eq(&self, other: &Text) -> bool {
        self == other.as_str()
    }
}

impl PartialEq<Text> for &str {
    fn eq(&self, other: &Text) -> bool {
        *self == other.as_str()
    }
}

impl PartialEq<Text> for String {
    fn eq(&self, other: &Text) -> bool {
        self.as_str() == other.as_str()
    }
}

impl fmt::Display for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self.as_str(), f)
    }
}

impl fmt::Debug for Text {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn share_slices_inside_and_copies_outside() {
        let whole = ByteString::from("Via: SIP/2.0/UDP a");
        let part = whole.get(5..).unwrap_or("");
        let t = Text::share(&whole, part);
        assert_eq!(t, "SIP/2.0/UDP a");
        assert_eq!(t.as_ptr(), part.as_ptr(), "shares storage");
        let other = String::from("SIP/2.0/UDP a");
        let c = Text::share(&whole, &other);
        assert_eq!(c, "SIP/2.0/UDP a");
        assert_ne!(c.as_ptr(), other.as_ptr(), "copied");
        assert_eq!(Text::share(&whole, ""), "");
        // a slice that starts inside and runs past the end is copied, not sliced
        let longer = ByteString::from("Via: SIP/2.0/UDP a and more");
        assert_eq!(Text::share(&whole, &longer), "Via: SIP/2.0/UDP a and more");
    }

    #[test]
    fn numbers() {
        for n in [
            0u32,
            7,
            9,
            10,
            42,
            69,
            70,
            99,
            100,
            199,
            254,
            255,
            256,
            1000,
            u32::MAX,
        ] {
            assert_eq!(Text::number(n), n.to_string());
        }
        let all = Text::from("a, b");
        let part = all.slice_ref(all.get(3..).unwrap_or(""));
        assert_eq!(part, "b");
        assert_eq!(part.as_ptr(), all.get(3..).unwrap_or("").as_ptr());
    }

    #[test]
    fn equality_hash_and_conversions() {
        use std::collections::HashSet;
        let t = Text::from(String::from("abc"));
        assert_eq!(t, "abc");
        assert_eq!("abc", t);
        assert_eq!(String::from("abc"), t);
        assert_eq!(t, Text::from_static("abc"));
        let s: String = t.clone().into();
        assert_eq!(s, "abc");
        let mut set = HashSet::new();
        set.insert(t);
        assert!(set.contains("abc"));
        assert_eq!(
            format!("{} {:?}", Text::from("x"), Text::from("y")),
            "x \"y\""
        );
        assert!(Text::new().is_empty());
    }
}
