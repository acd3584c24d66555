//! The SIP message a hook is looking at.

#[cfg(not(target_arch = "wasm32"))]
use std::marker::PhantomData;

use crate::{Address, EditError, Header, Hook, Transport};

/// The SIP message a hook is looking at, owned by the host.
///
/// Every accessor is a call to the host (on wasm), and only what the module asks for
/// crosses the boundary: read what you need once, keep it in a local, and prefer one
/// [`headers`](Message::headers) call to many [`header`](Message::header) calls when you
/// need most of them.
///
/// Header names are case-insensitive and compact forms are equivalent to long forms
/// everywhere (`header("Contact")` finds `m:`). Adding, setting and removing the
/// host-owned headers (`Via`, `Content-Length`, `CSeq`, `Call-ID`) is refused with
/// [`EditError::ProtectedHeader`]; renaming them is allowed. Nothing is written back
/// after the hook: every edit is applied by the host as it is made.
///
/// The lifetime ties the message to the hook call it was given to. In the native test
/// harness a message is built with [`testing::request`](crate::testing::request) and
/// friends, and is `Message<'static>`.
#[derive(Debug)]
pub struct Message<'a> {
    #[cfg(target_arch = "wasm32")]
    inner: &'a crate::__private::WitMessage,
    #[cfg(not(target_arch = "wasm32"))]
    inner: crate::testing::mem::MemMessage,
    #[cfg(not(target_arch = "wasm32"))]
    _borrow: PhantomData<&'a ()>,
}

#[cfg(target_arch = "wasm32")]
impl<'a> Message<'a> {
    pub(crate) fn from_host(inner: &'a crate::__private::WitMessage) -> Self {
        Self { inner }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Message<'static> {
    pub(crate) fn from_mem(inner: crate::testing::mem::MemMessage) -> Self {
        Self {
            inner,
            _borrow: PhantomData,
        }
    }
}

#[cfg(not(target_arch = "wasm32"))]
impl Message<'_> {
    pub(crate) fn mem(&self) -> &crate::testing::mem::MemMessage {
        &self.inner
    }

    pub(crate) fn mem_mut(&mut self) -> &mut crate::testing::mem::MemMessage {
        &mut self.inner
    }
}

impl Message<'_> {
    // --- start line ---

    /// True for requests, false for replies.
    pub fn is_request(&self) -> bool {
        self.inner.is_request()
    }

    /// True for replies.
    pub fn is_reply(&self) -> bool {
        !self.is_request()
    }

    /// The request method, or the CSeq method of a reply (`INVITE`, `REGISTER`, any
    /// extension method).
    pub fn method(&self) -> String {
        // A standard method comes as a fixed-size answer: cheaper than the string.
        #[cfg(target_arch = "wasm32")]
        if let Some(kind) = self.inner.known_method() {
            return method_name(kind).to_string();
        }
        self.inner.method()
    }

    /// The status code of a reply; 0 for requests.
    pub fn status(&self) -> u16 {
        self.inner.status()
    }

    /// The reason phrase of a reply; empty for requests.
    pub fn reason(&self) -> String {
        self.inner.reason()
    }

    /// The request URI; empty for replies.
    pub fn request_uri(&self) -> String {
        self.inner.request_uri()
    }

    /// Replace the request URI. Fails with [`EditError::Invalid`] if it does not parse
    /// (or the message is a reply).
    pub fn set_request_uri(&mut self, uri: &str) -> Result<(), EditError> {
        self.inner.set_request_uri(uri).map_err(EditError::from)
    }

    // --- headers ---

    /// The first value of the named header.
    pub fn header(&self, name: &str) -> Option<String> {
        self.inner.header(name)
    }

    /// True if the message has at least one line of the named header.
    pub fn has_header(&self, name: &str) -> bool {
        self.header(name).is_some()
    }

    /// All values of the named header in message order, one entry per header line (a
    /// line holding `a, b` is one entry).
    pub fn header_values(&self, name: &str) -> Vec<String> {
        self.inner.header_values(name)
    }

    /// Every value of several headers with one host call: cheaper than a
    /// [`header`](Message::header) or [`header_values`](Message::header_values) call per
    /// name when a hook reads a few headers of each message (each call costs far more
    /// than the bytes it copies). `names` lists the names separated by commas, each as
    /// for [`header`](Message::header); at most 32 (the host refuses more: the call
    /// traps). The answer refers to the names by position.
    ///
    /// ```
    /// # use weir_sdk::testing;
    /// let msg = testing::request(
    ///     "REGISTER sip:example.com SIP/2.0\r\n\
    ///      Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\n\
    ///      From: <sip:alice@example.com>;tag=1\r\n\
    ///      To: <sip:alice@example.com>\r\n\
    ///      Call-ID: c1\r\nCSeq: 1 REGISTER\r\n\r\n",
    /// );
    /// let set = msg.header_set("f,Authorization,To");
    /// assert_eq!(set.first(0), Some("<sip:alice@example.com>;tag=1"));
    /// assert_eq!(set.values(1).count(), 0);
    /// assert_eq!(set.first(2), Some("<sip:alice@example.com>"));
    /// ```
    pub fn header_set(&self, names: &str) -> HeaderSet {
        HeaderSet::new(self.inner.header_values_joined(names))
    }

    /// The names of all header lines in message order, spelled as in the message
    /// (duplicates included).
    pub fn header_names(&self) -> Vec<String> {
        self.inner.header_names()
    }

    /// Every header line in message order.
    pub fn headers(&self) -> Vec<Header> {
        self.inner.headers().into_iter().map(Header::from).collect()
    }

    /// Append a header line after the last header.
    pub fn add_header(&mut self, name: &str, value: &str) -> Result<(), EditError> {
        self.inner.add_header(name, value).map_err(EditError::from)
    }

    /// Replace every line of the named header by one line with this value, placed where
    /// the first one was (or appended if there was none).
    pub fn set_header(&mut self, name: &str, value: &str) -> Result<(), EditError> {
        self.inner.set_header(name, value).map_err(EditError::from)
    }

    /// Remove every line of the named header (compact form included); returns how many
    /// lines were removed.
    pub fn remove_header(&mut self, name: &str) -> Result<u32, EditError> {
        self.inner.remove_header(name).map_err(EditError::from)
    }

    /// Remove every header line whose name, in its long or compact form, starts with
    /// `prefix` (ASCII case ignored); returns how many lines were removed. One host call,
    /// however many headers match. Refused with [`EditError::ProtectedHeader`], removing
    /// nothing, if a host-owned header matches.
    pub fn remove_headers_by_prefix(&mut self, prefix: &str) -> Result<u32, EditError> {
        self.inner
            .remove_headers_by_prefix(prefix)
            .map_err(EditError::from)
    }

    /// Rename every line of the named header (e.g. to its compact form), keeping order and
    /// values; returns how many lines were renamed. Allowed for protected headers too, as
    /// long as the new name is the same header.
    pub fn rename_header(&mut self, name: &str, new_name: &str) -> Result<u32, EditError> {
        self.inner
            .rename_header(name, new_name)
            .map_err(EditError::from)
    }

    // --- body ---

    /// The body as bytes.
    pub fn body(&self) -> Vec<u8> {
        self.inner.body()
    }

    /// Replace the body. The host keeps Content-Length right: the header is rewritten to
    /// match when the message is written out (reading it within the same hook still
    /// gives the old value).
    pub fn set_body(&mut self, body: impl AsRef<[u8]>) -> Result<(), EditError> {
        self.inner.set_body(body.as_ref()).map_err(EditError::from)
    }

    // --- where it came from ---

    /// The address the message came from.
    pub fn source(&self) -> Address {
        self.inner.source().into()
    }

    /// The transport it arrived on.
    pub fn transport(&self) -> Transport {
        self.inner.transport().into()
    }

    /// The name of the listener it arrived on, as in the config.
    pub fn listener(&self) -> String {
        self.inner.listener()
    }

    /// Which chain is running: request, reply or failure.
    pub fn hook(&self) -> Hook {
        self.inner.hook().into()
    }

    /// In a failure chain, the status of the best final reply of the failed leg (408
    /// when its branches timed out); 0 in other chains.
    pub fn failure_status(&self) -> u16 {
        self.inner.failure_status()
    }

    /// Whether the request's transaction was cancelled upstream (always false on
    /// stateless routes).
    pub fn is_cancelled(&self) -> bool {
        self.inner.is_cancelled()
    }

    /// The stream connection (TCP, TLS, WS) the message arrived on; 0 for UDP. Ids are
    /// never reused within a run of the proxy: key [`connections`](crate::connections)
    /// bindings by it.
    pub fn connection_id(&self) -> u64 {
        self.inner.connection_id()
    }

    // --- transaction and variables ---

    /// The id of the request's transaction on stateful routes, for
    /// [`transactions`](crate::transactions) (and [`Verdict::Wait`](crate::Verdict::Wait));
    /// 0 on stateless routes and for replies. Ids are never reused.
    pub fn transaction_id(&self) -> u64 {
        self.inner.transaction_id()
    }

    /// A variable of the request's processing (Kamailio's AVPs): set in one chain with
    /// [`set_var`](Message::set_var), read in a later one of the same transaction (the
    /// request chain, then the failure chain). Per message on stateless routes.
    pub fn var(&self, name: &str) -> Option<String> {
        self.inner.get_var(name)
    }

    /// Set a variable (see [`var`](Message::var)), replacing its value. False, setting
    /// nothing, if the name is empty or longer than [`Message::MAX_VAR_NAME`] bytes, the
    /// value is longer than [`Message::MAX_VAR_VALUE`] bytes, or [`Message::MAX_VARS`]
    /// other variables are set already. Like every edit, it is kept only if the hook
    /// succeeds.
    pub fn set_var(&mut self, name: &str, value: &str) -> bool {
        self.inner.set_var(name, value)
    }
}

impl Message<'_> {
    /// Longest variable name, in bytes.
    pub const MAX_VAR_NAME: usize = 64;
    /// Longest variable value, in bytes.
    pub const MAX_VAR_VALUE: usize = 4096;
    /// Most variables per transaction (or message).
    pub const MAX_VARS: usize = 32;
}

/// The spelling of a method the host named with `known-method`.
#[cfg(target_arch = "wasm32")]
fn method_name(kind: crate::__private::bindings::weir::sip::message::MethodKind) -> &'static str {
    use crate::__private::bindings::weir::sip::message::MethodKind as K;
    match kind {
        K::Invite => "INVITE",
        K::Ack => "ACK",
        K::Bye => "BYE",
        K::Cancel => "CANCEL",
        K::Register => "REGISTER",
        K::Options => "OPTIONS",
        K::Info => "INFO",
        K::Update => "UPDATE",
        K::Prack => "PRACK",
        K::Subscribe => "SUBSCRIBE",
        K::Notify => "NOTIFY",
        K::Refer => "REFER",
        K::Message => "MESSAGE",
        K::Publish => "PUBLISH",
    }
}

/// The values of several headers, read with one host call by
/// [`Message::header_set`]; the names are referred to by their position in the list
/// asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeaderSet {
    /// As the host answers: per name, each value as `<length>:<value>`, then LF. The
    /// lengths let the decoding skip values instead of scanning them (a byte loop is
    /// slow in a module).
    text: String,
    /// Where each name's part starts in `text`, found once.
    starts: [u32; HeaderSet::MAX_NAMES],
    /// How many parts `text` has.
    parts: usize,
}

impl HeaderSet {
    /// Most names one set holds (the host's limit).
    pub(crate) const MAX_NAMES: usize = 32;

    fn new(text: String) -> HeaderSet {
        let mut starts = [0u32; HeaderSet::MAX_NAMES];
        let mut parts = 0;
        let mut at = 0usize;
        while parts < HeaderSet::MAX_NAMES && at < text.len() {
            let Some(slot) = starts.get_mut(parts) else {
                break;
            };
            *slot = u32::try_from(at).unwrap_or(u32::MAX);
            parts += 1;
            let mut v = HeaderSetValues {
                rest: text.get(at..).unwrap_or(""),
            };
            while v.next().is_some() {}
            // Past the part's LF.
            at = text.len() - v.rest.len() + 1;
        }
        HeaderSet {
            text,
            starts,
            parts,
        }
    }

    /// The values of the `i`-th name, in message order (none if the message has no such
    /// header, or `i` is beyond the names asked for).
    pub fn values(&self, i: usize) -> HeaderSetValues<'_> {
        let rest = match self.starts.get(i).filter(|_| i < self.parts) {
            Some(&at) => self.text.get(at as usize..).unwrap_or(""),
            None => "",
        };
        HeaderSetValues { rest }
    }

    /// The first value of the `i`-th name.
    pub fn first(&self, i: usize) -> Option<&str> {
        self.values(i).next()
    }
}

/// The values of one name of a [`HeaderSet`], in message order.
#[derive(Debug, Clone)]
pub struct HeaderSetValues<'a> {
    /// From the next value's length, or the LF that ends the name's part.
    rest: &'a str,
}

impl<'a> Iterator for HeaderSetValues<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        let b = self.rest.as_bytes();
        let mut len = 0usize;
        let mut i = 0;
        while let Some(d) = b.get(i).filter(|d| d.is_ascii_digit()) {
            len = len.saturating_mul(10).saturating_add(usize::from(d - b'0'));
            i += 1;
        }
        // No length (the LF, or the end): this name has no more values.
        if i == 0 || b.get(i) != Some(&b':') {
            return None;
        }
        let start = i + 1;
        let end = start.saturating_add(len);
        let value = self.rest.get(start..end)?;
        self.rest = self.rest.get(end..).unwrap_or("");
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use super::HeaderSet;

    fn set(text: &str) -> HeaderSet {
        HeaderSet::new(text.into())
    }

    #[test]
    fn header_set_decodes_by_length_not_content() {
        // Values holding digits, `:` and even LF are taken by their length.
        let s = set("3:a:b5:1\n3:4\n0:\n2:xy\n");
        assert_eq!(s.values(0).collect::<Vec<_>>(), ["a:b", "1\n3:4"]);
        assert_eq!(s.values(1).collect::<Vec<_>>(), [""]);
        assert_eq!(s.values(2).collect::<Vec<_>>(), ["xy"]);
        assert_eq!(s.first(3), None);
        assert_eq!(s.first(99), None);
    }

    #[test]
    fn header_set_survives_a_malformed_answer() {
        for text in [
            "",
            "9:abc",
            "x:1\n",
            "3",
            ":\n",
            "99999999999999999999999:a",
        ] {
            let s = set(text);
            for i in 0..3 {
                assert!(s.values(i).count() <= 1, "{text:?}");
            }
        }
    }
}
