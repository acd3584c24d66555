//! Which URLs a module may call.

use crate::url::Url;
use crate::HttpError;

/// URL prefixes granted to one module. A URL is permitted when its normalised form
/// (lower-case scheme and host, default port dropped, `/` for an empty path, fragment
/// removed) starts with one of the normalised prefixes. An empty list permits nothing.
///
/// Prefixes are normalised like URLs, so `https://push.example.com` becomes
/// `https://push.example.com/` and cannot match `https://push.example.com.evil.net/`.
/// Within the path the match is plain string prefix: end a prefix with `/` to grant a
/// directory and not its siblings (`/v1/` does not grant `/v10`; `/v1` does).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Allowlist(Vec<String>);

// === Allowlist ===

impl Allowlist {
    /// Normalises each prefix; a prefix that is not a valid URL is an error (so a typo in
    /// the configuration is reported, not silently ignored).
    pub fn new<I, S>(prefixes: I) -> Result<Self, HttpError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        prefixes
            .into_iter()
            .map(|p| Url::parse(p.as_ref()).map(|u| u.normalised()))
            .collect::<Result<Vec<_>, _>>()
            .map(Allowlist)
    }

    /// Whether `url` may be called. An invalid URL is never permitted.
    pub fn permits(&self, url: &str) -> bool {
        match Url::parse(url) {
            Ok(u) => self.permits_url(&u),
            Err(_) => false,
        }
    }

    pub(crate) fn permits_url(&self, url: &Url) -> bool {
        let n = url.normalised();
        self.0.iter().any(|p| n.starts_with(p.as_str()))
    }

    /// The normalised prefixes.
    pub fn prefixes(&self) -> &[String] {
        &self.0
    }

    /// Whether the list is empty (and so permits nothing).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_permits_nothing() {
        let a = Allowlist::default();
        assert!(a.is_empty());
        assert!(!a.permits("http://127.0.0.1/"));
        assert!(!Allowlist::new(Vec::<String>::new())
            .unwrap()
            .permits("https://a.b/"));
    }

    #[test]
    fn prefix_match_on_normalised_forms() {
        let a =
            Allowlist::new(["https://Push.Example.com:443/v1/", "http://127.0.0.1:8080"]).unwrap();
        assert_eq!(
            a.prefixes(),
            ["https://push.example.com/v1/", "http://127.0.0.1:8080/"]
        );
        assert!(a.permits("https://push.example.com/v1/send"));
        assert!(a.permits("HTTPS://PUSH.EXAMPLE.COM/v1/send?x=1#f"));
        assert!(a.permits("https://push.example.com:443/v1/"));
        assert!(a.permits("http://127.0.0.1:8080"));
        assert!(a.permits("http://127.0.0.1:8080/anything"));
        // Path case matters; other directories, ports, schemes and hosts do not match.
        assert!(!a.permits("https://push.example.com/V1/send"));
        assert!(!a.permits("https://push.example.com/v10"));
        assert!(!a.permits("https://push.example.com/"));
        assert!(!a.permits("https://push.example.com:8443/v1/send"));
        assert!(!a.permits("http://push.example.com/v1/send"));
        assert!(!a.permits("http://127.0.0.1:80800/"));
        assert!(!a.permits("http://127.0.0.1/"));
    }

    #[test]
    fn host_boundary_and_tricks() {
        let a = Allowlist::new(["https://push.example.com"]).unwrap();
        assert!(a.permits("https://push.example.com/x"));
        assert!(!a.permits("https://push.example.com.evil.net/"));
        assert!(!a.permits("https://push.example.com@evil.net/"));
        assert!(!a.permits("https://push.example.com:443@evil.net/"));
        let a = Allowlist::new(["https://push.example.com/tenant-a/"]).unwrap();
        assert!(!a.permits("https://push.example.com/tenant-a/../tenant-b/x"));
        assert!(!a.permits("https://push.example.com/tenant-a/%2e%2e/tenant-b/x"));
        assert!(!a.permits("https://push.example.com/tenant-a/..%2ftenant-b"));
        assert!(!a.permits("not a url"));
    }

    #[test]
    fn invalid_prefix_is_an_error() {
        assert!(matches!(
            Allowlist::new(["https://ok.example/", "ftp://x/"]),
            Err(HttpError::InvalidUrl(_))
        ));
    }
}
