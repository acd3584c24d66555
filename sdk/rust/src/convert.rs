//! Conversions between the generated WIT types and the SDK's own, and (on wasm) the
//! export glue that `export_module!` calls.

use crate::__private::bindings::weir::sip::kv::KvError as WitKvError;
use crate::__private::bindings::weir::sip::types as wit;
use crate::log::Level;
use crate::{names, Address, EditError, Header, Hook, KvError, Transport, Verdict};

impl From<wit::Hook> for Hook {
    fn from(h: wit::Hook) -> Self {
        match h {
            wit::Hook::Request => Hook::Request,
            wit::Hook::Reply => Hook::Reply,
            wit::Hook::Failure => Hook::Failure,
            wit::Hook::BranchFailure => Hook::BranchFailure,
        }
    }
}

impl From<Hook> for wit::Hook {
    fn from(h: Hook) -> Self {
        match h {
            Hook::Request => wit::Hook::Request,
            Hook::Reply => wit::Hook::Reply,
            Hook::Failure => wit::Hook::Failure,
            Hook::BranchFailure => wit::Hook::BranchFailure,
        }
    }
}

impl From<wit::Transport> for Transport {
    fn from(t: wit::Transport) -> Self {
        match t {
            wit::Transport::Udp => Transport::Udp,
            wit::Transport::Tcp => Transport::Tcp,
            wit::Transport::Tls => Transport::Tls,
            wit::Transport::Ws => Transport::Ws,
            wit::Transport::Wss => Transport::Wss,
        }
    }
}

impl From<wit::Address> for Address {
    fn from(a: wit::Address) -> Self {
        Address {
            ip: a.ip,
            port: a.port,
        }
    }
}

impl From<wit::Header> for Header {
    fn from(h: wit::Header) -> Self {
        Header {
            name: h.name,
            value: h.value,
        }
    }
}

impl From<wit::EditError> for EditError {
    fn from(e: wit::EditError) -> Self {
        match e {
            wit::EditError::ProtectedHeader(name) => EditError::ProtectedHeader(name),
            wit::EditError::Invalid(why) => EditError::Invalid(why),
            wit::EditError::TooLarge => EditError::TooLarge,
        }
    }
}

impl From<WitKvError> for KvError {
    fn from(e: WitKvError) -> Self {
        match e {
            WitKvError::Limit(why) => KvError::Limit(why),
            WitKvError::NotANumber => KvError::NotANumber,
            WitKvError::Backend(why) => KvError::Backend(why),
        }
    }
}

impl From<Level> for wit::Level {
    fn from(l: Level) -> Self {
        match l {
            Level::Trace => wit::Level::Trace,
            Level::Debug => wit::Level::Debug,
            Level::Info => wit::Level::Info,
            Level::Warn => wit::Level::Warn,
            Level::Error => wit::Level::Error,
        }
    }
}

/// Check a verdict and lower it to the WIT type. Mistakes the host would refuse anyway
/// are reported here with a clearer message (they become the hook's error).
// Only the wasm glue lowers verdicts; natively it is exercised by the tests below.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) fn verdict_to_wit(verdict: Verdict) -> Result<wit::Verdict, String> {
    Ok(match verdict {
        Verdict::Continue => wit::Verdict::Continue,
        Verdict::Drop => wit::Verdict::Drop,
        Verdict::Forward(targets) => {
            if targets.is_empty() {
                return Err("verdict: forward with no targets".into());
            }
            wit::Verdict::Forward(targets)
        }
        Verdict::Reply(reply) => {
            if !(100..=699).contains(&reply.code) {
                return Err(format!(
                    "verdict: reply code {} is outside 100..=699",
                    reply.code
                ));
            }
            if !names::is_valid_value(&reply.reason) {
                return Err(format!("verdict: invalid reason phrase {:?}", reply.reason));
            }
            let mut headers = Vec::with_capacity(reply.headers.len());
            for h in reply.headers {
                if !names::is_valid(&h.name) || !names::is_valid_value(&h.value) {
                    return Err(format!("verdict: invalid reply header {:?}", h.to_string()));
                }
                headers.push(wit::Header {
                    name: h.name,
                    value: h.value,
                });
            }
            wit::Verdict::Reply(wit::Reply {
                code: reply.code,
                reason: reply.reason,
                headers,
            })
        }
    })
}

/// A WIT binding event as the SDK type.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) fn binding_event(e: wit::BindingEvent) -> crate::BindingEvent {
    crate::BindingEvent {
        change: match e.change {
            wit::BindingChange::Added => crate::BindingChange::Added,
            wit::BindingChange::Refreshed => crate::BindingChange::Refreshed,
            wit::BindingChange::Removed => crate::BindingChange::Removed,
            wit::BindingChange::Expired => crate::BindingChange::Expired,
        },
        aor: e.aor,
        contact: e.contact,
        expires_at_ms: e.expires_at_ms,
        instance: e.instance,
        params: e
            .params
            .into_iter()
            .map(|h| crate::Header {
                name: h.name,
                value: h.value,
            })
            .collect(),
    }
}

/// The functions behind `export_module!`'s `Guest` impl.
#[cfg(target_arch = "wasm32")]
pub(crate) mod glue {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::verdict_to_wit;
    use crate::__private::{WitBindingEvent, WitMessage, WitParam, WitVerdict};
    use crate::{BindingEvent, Error, Message, Module, Verdict};

    /// The object-safe part of [`Module`], so one slot can hold any module type.
    trait Handler {
        fn on_request(&self, msg: &mut Message<'_>) -> Result<Verdict, Error>;
        fn on_reply(&self, msg: &mut Message<'_>) -> Result<Verdict, Error>;
        fn on_binding(&self, event: &BindingEvent) -> Result<(), Error>;
    }

    impl<M: Module> Handler for M {
        fn on_request(&self, msg: &mut Message<'_>) -> Result<Verdict, Error> {
            Module::on_request(self, msg)
        }
        fn on_reply(&self, msg: &mut Message<'_>) -> Result<Verdict, Error> {
            Module::on_reply(self, msg)
        }
        fn on_binding(&self, event: &BindingEvent) -> Result<(), Error> {
            Module::on_binding(self, event)
        }
    }

    thread_local! {
        // One module instance per component instance; wasm instances are single-threaded.
        static INSTANCE: RefCell<Option<Rc<dyn Handler>>> = const { RefCell::new(None) };
    }

    /// `init` export: decode params, build the module, keep it.
    pub fn init<M: Module>(params: Vec<WitParam>) -> Result<(), String> {
        let module = crate::params::instantiate::<M>(params).map_err(|e| e.to_string())?;
        INSTANCE.with(|slot| *slot.borrow_mut() = Some(Rc::new(module)));
        Ok(())
    }

    /// `on-request` export.
    pub fn on_request(msg: &WitMessage) -> Result<WitVerdict, String> {
        dispatch(msg, |h, m| h.on_request(m))
    }

    /// `on-reply` export.
    pub fn on_reply(msg: &WitMessage) -> Result<WitVerdict, String> {
        dispatch(msg, |h, m| h.on_reply(m))
    }

    /// `on-binding` export.
    pub fn on_binding(event: WitBindingEvent) -> Result<(), String> {
        let handler = INSTANCE
            .with(|slot| slot.borrow().clone())
            .ok_or_else(|| "module called before init".to_string())?;
        handler
            .on_binding(&super::binding_event(event))
            .map_err(|e| e.to_string())
    }

    fn dispatch(
        msg: &WitMessage,
        hook: impl FnOnce(&dyn Handler, &mut Message<'_>) -> Result<Verdict, Error>,
    ) -> Result<WitVerdict, String> {
        // Clone the Rc out so no RefCell borrow is held while module code runs.
        let handler = INSTANCE
            .with(|slot| slot.borrow().clone())
            .ok_or_else(|| "module called before init".to_string())?;
        let mut msg = Message::from_host(msg);
        let verdict = hook(&*handler, &mut msg).map_err(|e| e.to_string())?;
        verdict_to_wit(verdict)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verdicts_lower_to_wit() {
        assert!(matches!(
            verdict_to_wit(Verdict::Continue),
            Ok(wit::Verdict::Continue)
        ));
        assert!(matches!(
            verdict_to_wit(Verdict::Drop),
            Ok(wit::Verdict::Drop)
        ));
        match verdict_to_wit(Verdict::reply_with(486, "", [("Retry-After", "5")])) {
            Ok(wit::Verdict::Reply(r)) => {
                assert_eq!(r.code, 486);
                assert_eq!(r.headers[0].name, "Retry-After");
            }
            other => panic!("{other:?}"),
        }
        match verdict_to_wit(Verdict::forward(["sip:10.0.0.1"])) {
            Ok(wit::Verdict::Forward(t)) => assert_eq!(t, vec!["sip:10.0.0.1".to_string()]),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_verdicts_are_errors() {
        let empty: [&str; 0] = [];
        assert!(verdict_to_wit(Verdict::forward(empty))
            .unwrap_err()
            .contains("no targets"));
        assert!(verdict_to_wit(Verdict::reply(99))
            .unwrap_err()
            .contains("99"));
        assert!(verdict_to_wit(Verdict::reply(700)).is_err());
        assert!(verdict_to_wit(Verdict::reply_with(400, "", [("Bad Name", "x")])).is_err());
        assert!(verdict_to_wit(Verdict::reply_with(400, "a\r\nb", [("X", "x")])).is_err());
    }

    #[test]
    fn wit_types_convert() {
        assert_eq!(Transport::from(wit::Transport::Wss), Transport::Wss);
        assert_eq!(
            EditError::from(wit::EditError::ProtectedHeader("Via".into())),
            EditError::ProtectedHeader("Via".into())
        );
        assert_eq!(KvError::from(WitKvError::NotANumber), KvError::NotANumber);
    }
}
