//! Errors: the module-level [`Error`] and the typed errors of host calls.

use std::error::Error as StdError;
use std::fmt;

// === Error ===

/// The error a module hook returns.
///
/// Any `std::error::Error` converts into it with `?` (the typed [`EditError`] and
/// [`KvError`] included), [`Error::new`] makes one from a message, and [`Context`] adds
/// context on the way up. The host receives the [`Display`](fmt::Display) text, with every
/// cause, and applies the chain entry's `on_error` policy.
///
/// It deliberately does not implement `std::error::Error` itself (that is what lets every
/// error type convert into it); use [`Error::downcast_ref`] to inspect the cause.
pub struct Error {
    context: Vec<String>,
    cause: Option<Box<dyn StdError + 'static>>,
}

impl Error {
    /// An error with this message and no underlying cause.
    pub fn new(message: impl fmt::Display) -> Self {
        Self {
            context: vec![message.to_string()],
            cause: None,
        }
    }

    /// Wrap the error in more context: `Error::from(e).context("loading x")` displays as
    /// `loading x: <e>`.
    #[must_use]
    pub fn context(mut self, context: impl fmt::Display) -> Self {
        self.context.insert(0, context.to_string());
        self
    }

    /// The underlying cause, if it is an `E`.
    pub fn downcast_ref<E: StdError + 'static>(&self) -> Option<&E> {
        self.cause.as_deref().and_then(|c| c.downcast_ref::<E>())
    }

    /// True if the underlying cause is an `E`.
    pub fn is<E: StdError + 'static>(&self) -> bool {
        self.downcast_ref::<E>().is_some()
    }
}

impl<E: StdError + 'static> From<E> for Error {
    fn from(cause: E) -> Self {
        Self {
            context: Vec::new(),
            cause: Some(Box::new(cause)),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut sep = "";
        for context in &self.context {
            write!(f, "{sep}{context}")?;
            sep = ": ";
        }
        let mut cause = self.cause.as_deref();
        while let Some(c) = cause {
            write!(f, "{sep}{c}")?;
            sep = ": ";
            cause = c.source();
        }
        Ok(())
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Error({:?})", self.to_string())
    }
}

// === Context ===

/// Add context to an error on its way up: `kv::get(&key).context("rate state")?`.
pub trait Context<T> {
    /// Convert the error into an [`Error`] prefixed with `context`.
    fn context(self, context: impl fmt::Display) -> Result<T, Error>;
}

impl<T, E: Into<Error>> Context<T> for Result<T, E> {
    fn context(self, context: impl fmt::Display) -> Result<T, Error> {
        self.map_err(|e| e.into().context(context))
    }
}

// === EditError ===

/// Why the host refused an edit of the message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum EditError {
    /// The header is owned by the host (`Via`, `Content-Length`, `CSeq`, `Call-ID`).
    ProtectedHeader(String),
    /// The name, value or URI is not valid SIP.
    Invalid(String),
    /// The edit would grow the message beyond the host's size limit.
    TooLarge,
}

impl fmt::Display for EditError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EditError::ProtectedHeader(name) => {
                write!(
                    f,
                    "header `{name}` is owned by the host and cannot be edited"
                )
            }
            EditError::Invalid(why) => write!(f, "invalid edit: {why}"),
            EditError::TooLarge => f.write_str("edit would make the message too large"),
        }
    }
}

impl StdError for EditError {}

// === KvError ===

/// Why a key-value store operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum KvError {
    /// Key or value too large, or the namespace is full.
    Limit(String),
    /// The stored value is not a decimal integer (from [`kv::incr`](crate::kv::incr)).
    NotANumber,
    /// The backing store failed.
    Backend(String),
}

impl fmt::Display for KvError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KvError::Limit(why) => write!(f, "kv limit: {why}"),
            KvError::NotANumber => f.write_str("kv value is not a decimal integer"),
            KvError::Backend(why) => write!(f, "kv backend: {why}"),
        }
    }
}

impl StdError for KvError {}

// === HostError ===

/// The host refused a service call ([`timers`](crate::timers), [`requests`](crate::requests),
/// [`transactions`](crate::transactions), [`location`](crate::location),
/// [`http`](crate::http), [`files`](crate::files)): the call that failed and the host's
/// reason. Those functions return it inside an [`Error`]; inspect it with
/// `err.downcast_ref::<HostError>()`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HostError {
    /// The WIT function that failed, e.g. `"timers.every"` or `"http.send"`.
    pub call: &'static str,
    /// Why, as the host said it.
    pub message: String,
}

impl HostError {
    /// A refusal of `call` for `message`.
    pub fn new(call: &'static str, message: impl Into<String>) -> Self {
        Self {
            call,
            message: message.into(),
        }
    }
}

impl fmt::Display for HostError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} refused: {}", self.call, self.message)
    }
}

impl StdError for HostError {}

/// Map a host call's error string to an [`Error`] holding a [`HostError`].
pub(crate) fn host<T>(call: &'static str, r: Result<T, String>) -> Result<T, Error> {
    r.map_err(|message| Error::from(HostError { call, message }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_joins_context_and_causes() {
        let e = Error::from(EditError::TooLarge).context("appending X-Weir");
        assert_eq!(
            e.to_string(),
            "appending X-Weir: edit would make the message too large"
        );
        assert!(e.is::<EditError>());
        assert_eq!(Error::new("plain").to_string(), "plain");
        assert_eq!(
            Error::new("inner").context("outer").to_string(),
            "outer: inner"
        );
    }

    #[test]
    fn host_errors_name_the_call() {
        let e = host::<()>("timers.every", Err("too many timers".into())).unwrap_err();
        assert_eq!(e.to_string(), "timers.every refused: too many timers");
        assert_eq!(
            e.downcast_ref::<HostError>(),
            Some(&HostError::new("timers.every", "too many timers"))
        );
        assert_eq!(host("x", Ok::<_, String>(3)).unwrap(), 3);
    }

    #[test]
    fn question_mark_converts_typed_errors() {
        fn edit() -> Result<(), Error> {
            Err(EditError::ProtectedHeader("Via".into()))?;
            Ok(())
        }
        let e = edit().unwrap_err();
        assert_eq!(
            e.downcast_ref::<EditError>(),
            Some(&EditError::ProtectedHeader("Via".into()))
        );
        let r: Result<(), KvError> = Err(KvError::NotANumber);
        assert_eq!(
            r.context("counter").unwrap_err().to_string(),
            "counter: kv value is not a decimal integer"
        );
    }
}
