//! The location service (the registrar's bindings), read-only: the contacts registered
//! for an address of record, e.g. to fork a call to them yourself or to find the push
//! parameters (RFC 8599 `pn-*`) of a device that is not registered right now.
//!
//! ```
//! use weir_sdk::{location, testing};
//!
//! let mut phone = location::Binding::new("sip:alice@192.0.2.10:5060;transport=tcp");
//! phone.params.push(weir_sdk::Header::new("pn-provider", "apns"));
//! testing::set_bindings("sip:alice@example.com", vec![phone]);
//!
//! for b in location::lookup("sip:alice@example.com")? {
//!     if b.param("PN-Provider") == Some("apns") {
//!         let branch = b.to_branch(); // for transactions::add_branch or Verdict::wait
//!         assert_eq!(branch.uri, "sip:alice@192.0.2.10:5060;transport=tcp");
//!     }
//! }
//! assert!(location::lookup("sip:bob@example.com")?.is_empty());
//! # Ok::<(), weir_sdk::Error>(())
//! ```
//!
//! In the native harness an AOR has no bindings until
//! [`testing::set_bindings`](crate::testing::set_bindings) gives it some (AORs are
//! compared as given), and [`testing::fail_location`](crate::testing::fail_location)
//! makes lookups fail.

#[cfg(target_arch = "wasm32")]
use crate::__private::bindings::weir::sip::location as backend;
use crate::__private::bindings::weir::sip::location::Binding as WitBinding;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::mock::location as backend;
use crate::{BranchTarget, Error, Header};

/// One registered contact of an address of record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Binding {
    /// The Contact URI.
    pub contact: String,
    /// Where requests to it are sent when not by the contact itself (the source address
    /// the REGISTER came from, for a NATed device), as a SIP URI.
    pub destination: Option<String>,
    /// Route set from the REGISTER's Path headers.
    pub path: Vec<String>,
    /// `+sip.instance`, if any.
    pub instance: Option<String>,
    /// q-value times 1000 (`q=0.5` is 500); `None` when the contact gave no q.
    pub q: Option<u16>,
    /// Expiry, milliseconds since the Unix epoch.
    pub expires_at_ms: u64,
    /// Other Contact params kept with the binding (e.g. RFC 8599 `pn-provider`,
    /// `pn-prid`, `pn-param`), as name and value.
    pub params: Vec<Header>,
}

impl Binding {
    /// A binding of `contact` with nothing else set (no destination, Path, instance, q
    /// or params; expiry 0): for tests and as a base to fill in.
    pub fn new(contact: impl Into<String>) -> Self {
        Self {
            contact: contact.into(),
            destination: None,
            path: Vec::new(),
            instance: None,
            q: None,
            expires_at_ms: 0,
            params: Vec::new(),
        }
    }

    /// The value of the Contact param `name` (ASCII case ignored); `Some("")` for a
    /// param without a value.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
            .map(|p| p.value.as_str())
    }

    /// The branch that reaches this contact: its URI, sent to its destination, through
    /// its Path.
    pub fn to_branch(&self) -> BranchTarget {
        BranchTarget {
            uri: self.contact.clone(),
            destination: self.destination.clone(),
            path: self.path.clone(),
        }
    }
}

impl From<WitBinding> for Binding {
    fn from(b: WitBinding) -> Self {
        Binding {
            contact: b.contact,
            destination: b.destination,
            path: b.path,
            instance: b.instance,
            q: b.q,
            expires_at_ms: b.expires_at_ms,
            params: crate::convert::headers(b.params),
        }
    }
}

impl From<Binding> for WitBinding {
    fn from(b: Binding) -> Self {
        WitBinding {
            contact: b.contact,
            destination: b.destination,
            path: b.path,
            instance: b.instance,
            q: b.q,
            expires_at_ms: b.expires_at_ms,
            params: crate::convert::headers(b.params),
        }
    }
}

/// The live bindings of `aor` (a SIP URI such as `sip:alice@example.com`; the
/// registrar's `use_domain` decides whether the domain counts), empty when there is
/// none. Fails with a [`HostError`](crate::HostError) when the proxy runs no registrar
/// or its store fails.
pub fn lookup(aor: &str) -> Result<Vec<Binding>, Error> {
    crate::error::host("location.lookup", backend::lookup(aor))
        .map(|list| list.into_iter().map(Binding::from).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_and_branches() {
        let mut b = Binding::new("sip:a@192.0.2.1");
        b.destination = Some("sip:198.51.100.1:41000".into());
        b.path = vec!["<sip:edge.example.com;lr>".into()];
        b.params = vec![Header::new("pn-prid", "abc"), Header::new("ob", "")];
        assert_eq!(b.param("PN-PRID"), Some("abc"));
        assert_eq!(b.param("ob"), Some(""));
        assert_eq!(b.param("pn-provider"), None);
        let t = b.to_branch();
        assert_eq!(t.uri, "sip:a@192.0.2.1");
        assert_eq!(t.destination, b.destination);
        assert_eq!(t.path, b.path);
        assert_eq!(Binding::from(WitBinding::from(b.clone())), b);
    }
}
