//! Conversions between the generated WIT types and the SDK's own, and (on wasm) the
//! export glue that `export_module!` calls.

use crate::__private::bindings::weir::sip::kv::KvError as WitKvError;
use crate::__private::bindings::weir::sip::types as wit;
use crate::log::Level;
use crate::{
    names, Address, BranchTarget, EditError, Event, Header, Hook, HttpOutcome, KvError,
    SipResponse, Transport, Verdict, Wait,
};

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

impl From<Header> for wit::Header {
    fn from(h: Header) -> Self {
        wit::Header {
            name: h.name,
            value: h.value,
        }
    }
}

impl From<wit::BranchTarget> for BranchTarget {
    fn from(b: wit::BranchTarget) -> Self {
        BranchTarget {
            uri: b.uri,
            destination: b.destination,
            path: b.path,
        }
    }
}

impl From<BranchTarget> for wit::BranchTarget {
    fn from(b: BranchTarget) -> Self {
        wit::BranchTarget {
            uri: b.uri,
            destination: b.destination,
            path: b.path,
        }
    }
}

/// Convert a list of headers (WIT to SDK or back).
pub(crate) fn headers<A, B: From<A>>(list: Vec<A>) -> Vec<B> {
    list.into_iter().map(B::from).collect()
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
            if let Some(h) = reply
                .headers
                .iter()
                .find(|h| !names::is_valid(&h.name) || !names::is_valid_value(&h.value))
            {
                return Err(format!("verdict: invalid reply header {:?}", h.to_string()));
            }
            // Same layout: the vector is reused in place, not copied.
            let headers = reply
                .headers
                .into_iter()
                .map(|h| wit::Header {
                    name: h.name,
                    value: h.value,
                })
                .collect();
            wit::Verdict::Reply(wit::Reply {
                code: reply.code,
                reason: reply.reason,
                headers,
            })
        }
        Verdict::Wait(wait) => wit::Verdict::Wait(wait_to_wit(wait)?),
    })
}

fn wait_to_wit(wait: Wait) -> Result<wit::WaitSpec, String> {
    if !(1..=Wait::MAX_TIMEOUT_MS).contains(&wait.timeout_ms) {
        return Err(format!(
            "verdict: wait timeout of {} ms is outside 1 ms..=300 s",
            wait.timeout_ms
        ));
    }
    if !(400..=699).contains(&wait.code) {
        return Err(format!(
            "verdict: wait code {} is outside 400..=699",
            wait.code
        ));
    }
    if wait.branches.len() > Wait::MAX_BRANCHES {
        return Err(format!(
            "verdict: wait with {} branches (at most {})",
            wait.branches.len(),
            Wait::MAX_BRANCHES
        ));
    }
    let mut branches = Vec::with_capacity(wait.branches.len());
    for b in wait.branches {
        if b.uri.is_empty() || b.destination.as_deref() == Some("") {
            return Err("verdict: wait branch with an empty URI".into());
        }
        if !b.path.iter().all(|p| names::is_valid_value(p)) {
            return Err(format!(
                "verdict: wait branch to {} has an invalid path",
                b.uri
            ));
        }
        branches.push(b.into());
    }
    Ok(wit::WaitSpec {
        branches,
        timeout_ms: wait.timeout_ms,
        code: wait.code,
    })
}

/// A WIT event as the SDK type.
#[cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]
pub(crate) fn event(e: wit::Event) -> Event {
    match e {
        wit::Event::Timer(name) => Event::Timer(name),
        wit::Event::Response(r) => Event::Response(SipResponse {
            id: r.id,
            tag: r.tag,
            status: r.status,
            reason: r.reason,
            headers: headers(r.headers),
        }),
        wit::Event::HttpResponse(o) => Event::Http(HttpOutcome {
            id: o.id,
            tag: o.tag,
            response: o.response.map(|r| crate::http::Response {
                status: r.status,
                headers: headers(r.headers),
                body: r.body,
            }),
        }),
        wit::Event::TransactionDone(id) => Event::TransactionDone(id),
    }
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
    use crate::__private::{WitBindingEvent, WitEvent, WitMessage, WitParam, WitVerdict};
    use crate::{BindingEvent, Error, Event, Message, Module, Verdict};

    /// The object-safe part of [`Module`], so one slot can hold any module type.
    trait Handler {
        fn on_request(&self, msg: &mut Message<'_>) -> Result<Verdict, Error>;
        fn on_reply(&self, msg: &mut Message<'_>) -> Result<Verdict, Error>;
        fn on_binding(&self, event: &BindingEvent) -> Result<(), Error>;
        fn on_event(&self, event: &Event) -> Result<(), Error>;
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
        fn on_event(&self, event: &Event) -> Result<(), Error> {
            Module::on_event(self, event)
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
        instance()?
            .on_binding(&super::binding_event(event))
            .map_err(|e| e.to_string())
    }

    /// `on-event` export.
    pub fn on_event(event: WitEvent) -> Result<(), String> {
        instance()?
            .on_event(&super::event(event))
            .map_err(|e| e.to_string())
    }

    /// The module instance, cloned out so no `RefCell` borrow is held while module code
    /// runs.
    fn instance() -> Result<Rc<dyn Handler>, String> {
        INSTANCE
            .with(|slot| slot.borrow().clone())
            .ok_or_else(|| "module called before init".to_string())
    }

    fn dispatch(
        msg: &WitMessage,
        hook: impl FnOnce(&dyn Handler, &mut Message<'_>) -> Result<Verdict, Error>,
    ) -> Result<WitVerdict, String> {
        let handler = instance()?;
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

    fn wait(branches: usize, timeout_ms: u32, code: u16) -> Verdict {
        Verdict::Wait(Wait {
            branches: (0..branches)
                .map(|i| BranchTarget::new(format!("sip:{i}@example.com")))
                .collect(),
            timeout_ms,
            code,
        })
    }

    #[test]
    fn wait_verdicts_lower_to_wit() {
        let v = Verdict::wait(
            vec![BranchTarget::new("sip:a@192.0.2.10").via("sip:198.51.100.1:5060")],
            std::time::Duration::from_secs(30),
            480,
        );
        match verdict_to_wit(v) {
            Ok(wit::Verdict::Wait(w)) => {
                assert_eq!((w.timeout_ms, w.code), (30_000, 480));
                assert_eq!(w.branches[0].uri, "sip:a@192.0.2.10");
                assert_eq!(
                    w.branches[0].destination.as_deref(),
                    Some("sip:198.51.100.1:5060")
                );
            }
            other => panic!("{other:?}"),
        }
        assert!(verdict_to_wit(wait(0, 1, 400)).is_ok());
        assert!(verdict_to_wit(wait(16, 300_000, 699)).is_ok());
    }

    #[test]
    fn bad_wait_verdicts_are_errors() {
        assert!(verdict_to_wit(wait(0, 0, 480))
            .unwrap_err()
            .contains("timeout"));
        assert!(verdict_to_wit(wait(0, 300_001, 480)).is_err());
        assert!(verdict_to_wit(wait(0, 1000, 399))
            .unwrap_err()
            .contains("399"));
        assert!(verdict_to_wit(wait(0, 1000, 700)).is_err());
        assert!(verdict_to_wit(wait(17, 1000, 480))
            .unwrap_err()
            .contains("17 branches"));
        let empty = Verdict::wait(
            vec![BranchTarget::new("")],
            std::time::Duration::from_secs(1),
            480,
        );
        assert!(verdict_to_wit(empty).unwrap_err().contains("empty URI"));
        let empty_dest = Verdict::wait(
            vec![BranchTarget::new("sip:a@b").via("")],
            std::time::Duration::from_secs(1),
            480,
        );
        assert!(verdict_to_wit(empty_dest).is_err());
        let mut bad_path = BranchTarget::new("sip:a@b");
        bad_path.path.push("<sip:p>\r\nX: y".into());
        assert!(verdict_to_wit(Verdict::wait(
            vec![bad_path],
            std::time::Duration::from_secs(1),
            480
        ))
        .is_err());
    }

    #[test]
    fn events_lift_from_wit() {
        assert_eq!(
            event(wit::Event::Timer("probe".into())),
            Event::Timer("probe".into())
        );
        assert_eq!(
            event(wit::Event::TransactionDone(7)),
            Event::TransactionDone(7)
        );
        let Event::Response(r) = event(wit::Event::Response(wit::SipResponse {
            id: 3,
            tag: "gw1".into(),
            status: 200,
            reason: "OK".into(),
            headers: vec![wit::Header {
                name: "m".into(),
                value: "<sip:gw1>".into(),
            }],
        })) else {
            panic!("not a response")
        };
        assert_eq!((r.id, r.tag.as_str(), r.status), (3, "gw1", 200));
        assert_eq!(r.header("Contact"), Some("<sip:gw1>"));
        let Event::Http(o) = event(wit::Event::HttpResponse(wit::HttpOutcome {
            id: 4,
            tag: "push".into(),
            response: Ok(wit::HttpResponse {
                status: 202,
                headers: vec![wit::Header {
                    name: "Content-Type".into(),
                    value: "text/plain".into(),
                }],
                body: b"queued".to_vec(),
            }),
        })) else {
            panic!("not http")
        };
        let resp = o.response.unwrap();
        assert_eq!(
            (o.id, resp.status, resp.body.as_slice()),
            (4, 202, &b"queued"[..])
        );
        assert_eq!(resp.header("content-type"), Some("text/plain"));
        let Event::Http(failed) = event(wit::Event::HttpResponse(wit::HttpOutcome {
            id: 5,
            tag: String::new(),
            response: Err("connection refused".into()),
        })) else {
            panic!("not http")
        };
        assert_eq!(failed.response, Err("connection refused".to_string()));
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
