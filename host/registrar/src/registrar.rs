//! The registrar: REGISTER processing (`save`), lookup and binding removal.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rand::Rng;
use weir_message::{host_ip, CSeq, Message, NameAddr, Scheme, Uri, UriRef};
use weir_store::{Binding, LocationStore, StoreError, SubscriberStore};

use crate::aor::{aor_of_uri, Aor, AorError};
use crate::config::{
    Config, ConfigError, OutboundMode, PathMode, RegIdMode, RetryAfter, SaveReceived,
};
use crate::contact::{
    format_q, has_option_tag, parse_contacts_with_uris, parse_delta, parse_path, parse_q,
    ContactError, ContactSpec, Contacts, PathEntry,
};
use crate::types::{
    BindingRef, Event, EventKind, Lookup, Registered, RequestContext, SaveOptions, SaveResult,
    Target,
};

// P-Registrar-Error texts (Kamailio registrar reply.c).
const EI_INV_CSEQ: &str = "Invalid CSeq number";
const EI_TO_MISS: &str = "To header not found";
const EI_CID_MISS: &str = "Call-ID header not found";
const EI_CS_MISS: &str = "CSeq header not found";
const EI_PARSE: &str = "Message parse error";
const EI_PARSE_EXP: &str = "Expires parse error";
const EI_PARSE_CONT: &str = "Contact parse error";
const EI_STAR_EXP: &str = "* used in contact and expires is not zero";
const EI_STAR_CONT: &str = "* used in contact and more than 1 contact";
const EI_INV_Q: &str = "Invalid q param in contact";
const EI_TOO_MANY: &str = "Too many registered contacts";
const EI_CONTACT_LEN: &str = "Contact/received too long";
const EI_CALLID_LEN: &str = "Callid too long";
const EI_PARSE_PATH: &str = "Path parse error";
const EI_PATH_UNSUP: &str = "No support for found Path indicated";
const EI_OB_UNSUP: &str = "No support for Outbound indicated";
const EI_OB_REQD: &str = "No support for Outbound on server";
const EI_OB_UNSUP_EDGE: &str = "No support for Outbound on edge proxy";
const EI_INV_REGID: &str = "Invalid Reg-Id number";
const EI_LOW_EXP: &str = "Interval too brief";
const EI_UL_GET_R: &str = "usrloc_record_get failed";
const EI_UL_DEL_R: &str = "usrloc_record_delete failed";
const EI_UL_UPD_C: &str = "usrloc_contact_update failed";

/// Longest User-Agent stored (Kamailio MAX_UA_SIZE).
const MAX_UA_SIZE: usize = 255;

/// Reason phrase Kamailio's registrar uses for `code`.
pub fn reason_for(code: u16) -> &'static str {
    match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        420 => "Bad Extension",
        421 => "Extension Required",
        423 => "Interval Too Brief",
        439 => "First Hop Lacks Outbound Support",
        480 => "Temporarily Unavailable",
        500 => "Server Internal Error",
        503 => "Service Unavailable",
        _ => "",
    }
}

/// A rejection before or during the store update.
struct Fail {
    code: u16,
    info: &'static str,
    headers: Vec<(String, String)>,
    result: SaveResult,
}

impl Fail {
    fn new(code: u16, info: &'static str) -> Self {
        Fail {
            code,
            info,
            headers: Vec::new(),
            result: SaveResult::Error,
        }
    }
    fn bad(info: &'static str) -> Self {
        Fail::new(400, info)
    }
    fn with(mut self, name: &str, value: impl Into<String>) -> Self {
        self.headers.push((name.to_string(), value.into()));
        self
    }
}

/// One contact of the REGISTER, ready to store.
#[derive(Clone, Debug)]
struct NewContact {
    uri: String,
    expires: u32,
    q: Option<u16>,
    instance: Option<String>,
    reg_id: Option<u32>,
    received: Option<String>,
    params: Vec<(String, String)>,
    ruid: String,
}

/// Everything the store update needs; computed before it so that retries of the
/// update closure are deterministic.
struct Plan<'a> {
    aor: &'a str,
    contacts: Vec<NewContact>,
    call_id: &'a str,
    cseq: u32,
    path: &'a [PathEntry],
    listener: Option<&'a str>,
    user_agent: Option<&'a str>,
    single: bool,
    max_contacts: usize,
    cseq_delay_ms: u64,
    now_ms: u64,
}

enum Reject {
    InvalidCSeq,
    TooMany,
}

struct Applied {
    bindings: Vec<Binding>,
    changes: Changes,
}

/// What a REGISTER changed: the Removed events, and the position in the new binding
/// list of each added or refreshed binding (ascending). Their events are made from the
/// list the store returns (the list as written), after the reply lists it: no copy.
#[derive(Default)]
struct Changes {
    removed: Vec<Event>,
    written: Vec<(usize, EventKind)>,
}

impl Changes {
    fn is_empty(&self) -> bool {
        self.removed.is_empty() && self.written.is_empty()
    }

    fn result(&self) -> SaveResult {
        let any = |kind| self.written.iter().any(|w| w.1 == kind);
        if any(EventKind::Added) {
            SaveResult::Inserted
        } else if any(EventKind::Refreshed) {
            SaveResult::Updated
        } else if !self.removed.is_empty() {
            SaveResult::Deleted
        } else {
            SaveResult::Inserted
        }
    }

    /// The events, in order: Removed, then Added/Refreshed in list order; `stored` is
    /// the binding list as written.
    fn into_events(self, aor: &str, stored: Vec<Binding>) -> Vec<Event> {
        let mut events = self.removed;
        // Exact: events are large, and a Vec grown by doubling can leave malloc's
        // small-block cache (which ends at about 1 KiB).
        events.reserve_exact(self.written.len());
        let mut written = self.written.into_iter().peekable();
        for (i, binding) in stored.into_iter().enumerate() {
            if let Some((_, kind)) = written.next_if(|w| w.0 == i) {
                events.push(Event {
                    kind,
                    aor: aor.to_string(),
                    binding,
                });
            }
        }
        events
    }
}

/// What the update closure reports: the changes of the list it wrote back.
type Outcome = Result<Changes, Reject>;

/// Kamailio registrar + usrloc semantics over a [`LocationStore`].
///
/// Sans-IO: every call is synchronous, takes the time as an argument and touches
/// nothing but the store. Cheap to share (`Arc<Registrar>`).
pub struct Registrar {
    cfg: Config,
    store: Arc<dyn LocationStore>,
    subscribers: Option<Arc<dyn SubscriberStore>>,
    /// Per-process counter making ruids unique even with a poorly seeded rng.
    ruid_counter: AtomicU64,
}

impl std::fmt::Debug for Registrar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registrar")
            .field("cfg", &self.cfg)
            .field("subscribers", &self.subscribers.is_some())
            .finish_non_exhaustive()
    }
}

impl Registrar {
    /// A registrar over `store`; fails when `cfg` is out of range.
    pub fn new(cfg: Config, store: Arc<dyn LocationStore>) -> Result<Self, ConfigError> {
        cfg.validate()?;
        Ok(Registrar {
            cfg,
            store,
            subscribers: None,
            ruid_counter: AtomicU64::new(0),
        })
    }

    /// Lets [`lookup`](Self::lookup) tell a known subscriber without bindings
    /// ([`Lookup::NoBinding`]) from an unknown user ([`Lookup::NotFound`]).
    pub fn with_subscribers(mut self, subscribers: Arc<dyn SubscriberStore>) -> Self {
        self.subscribers = Some(subscribers);
        self
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// The normalised AOR key of a URI (`sip:alice@example.com`).
    pub fn aor_key(&self, uri: &str) -> Result<String, AorError> {
        crate::aor::aor_of(uri, &self.cfg).map(|a| a.key)
    }

    // === REGISTER ===

    /// Processes a REGISTER (Kamailio `save("location")`) and returns the reply to
    /// send. Never panics; store failures give 500 (+ Retry-After when configured).
    pub fn register<R: Rng + ?Sized>(
        &self,
        req: &Message,
        ctx: &RequestContext<'_>,
        rng: &mut R,
    ) -> Registered {
        self.register_with(req, ctx, &SaveOptions::default(), rng)
    }

    /// [`register`](Self::register) with `save()` flags / explicit AOR URI.
    pub fn register_with<R: Rng + ?Sized>(
        &self,
        req: &Message,
        ctx: &RequestContext<'_>,
        opts: &SaveOptions,
        rng: &mut R,
    ) -> Registered {
        let (aor, host) = match self.aor_for(req, opts) {
            Ok(a) => a,
            Err(f) => return self.fail_reply(f, None, rng),
        };
        match self.save(req, ctx, opts, rng, &aor, host) {
            Ok(mut r) => {
                r.aor = Some(aor.key);
                r
            }
            Err(f) => self.fail_reply(f, Some(aor.key), rng),
        }
    }

    /// A 500 for a REGISTER the host will not process (e.g. a registration storm
    /// throttled by a module), with Retry-After per `retry_after`.
    pub fn overloaded<R: Rng + ?Sized>(&self, rng: &mut R) -> Registered {
        let mut headers = Vec::new();
        if let Some(secs) = self.retry_after_value(rng) {
            headers.push(("Retry-After".to_string(), secs.to_string()));
        }
        Registered {
            status: 500,
            reason: reason_for(500).to_string(),
            headers,
            events: Vec::new(),
            result: SaveResult::Error,
            aor: None,
        }
    }

    fn retry_after_value<R: Rng + ?Sized>(&self, rng: &mut R) -> Option<u32> {
        match self.cfg.retry_after {
            RetryAfter::Off => None,
            RetryAfter::Fixed(n) => Some(n),
            RetryAfter::Range { min, max } => Some(if min >= max {
                min
            } else {
                rng.gen_range(min..=max)
            }),
        }
    }

    fn fail_reply<R: Rng + ?Sized>(&self, f: Fail, aor: Option<String>, rng: &mut R) -> Registered {
        let mut headers = f.headers;
        headers.push(("P-Registrar-Error".to_string(), f.info.to_string()));
        if (500..600).contains(&f.code) {
            if let Some(secs) = self.retry_after_value(rng) {
                headers.push(("Retry-After".to_string(), secs.to_string()));
            }
        }
        Registered {
            status: f.code,
            reason: reason_for(f.code).to_string(),
            headers,
            events: Vec::new(),
            result: f.result,
            aor,
        }
    }

    /// Step 1 of a REGISTER: the AOR (To, or the explicit URI), and the host of its
    /// URI as written.
    fn aor_for(&self, req: &Message, opts: &SaveOptions) -> Result<(Aor, String), Fail> {
        let unparsable = |_| Fail::bad(AorError::Parse.static_str());
        let to = req.headers.get("to").ok_or(Fail::bad(EI_TO_MISS))?;
        // The To value must parse whatever names the AOR.
        let to_uri = UriRef::of_name_addr(to).map_err(unparsable)?;
        let aor_uri = match &opts.aor_uri {
            Some(s) => UriRef::parse(s.trim()).map_err(unparsable)?,
            None => to_uri,
        };
        let aor = aor_of_uri(aor_uri, &self.cfg).map_err(|e| {
            let code = if e == AorError::TooLong { 500 } else { 400 };
            Fail::new(code, e.static_str())
        })?;
        Ok((aor, aor_uri.host.to_string()))
    }

    /// Steps 2 to 5 of a REGISTER, for the AOR [`aor_for`](Self::aor_for) found; the
    /// reply's `aor` is left for the caller to fill.
    fn save<R: Rng + ?Sized>(
        &self,
        req: &Message,
        ctx: &RequestContext<'_>,
        opts: &SaveOptions,
        rng: &mut R,
        aor: &Aor,
        mut host: String,
    ) -> Result<Registered, Fail> {
        let cfg = &self.cfg;
        let now = ctx.now_ms;

        // 2. Call-ID, CSeq, Expires, Contact.
        let call_id = req
            .call_id()
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .ok_or(Fail::bad(EI_CID_MISS))?;
        if call_id.len() > cfg.callid_max_size {
            return Err(Fail::bad(EI_CALLID_LEN));
        }
        let cseq = match req.headers.get("cseq") {
            None => return Err(Fail::bad(EI_CS_MISS)),
            Some(v) => CSeq::parse(v).map_err(|_| Fail::bad(EI_PARSE))?.seq,
        };
        let expires_hdr = match req.headers.get("expires") {
            None => None,
            Some(v) => Some(parse_delta(v).ok_or(Fail::bad(EI_PARSE_EXP))?),
        };
        let (contacts, uris) =
            parse_contacts_with_uris(req.headers.get_all("contact")).map_err(|e| match e {
                ContactError::Parse(_) => Fail::bad(EI_PARSE_CONT),
                ContactError::StarWithOthers => Fail::bad(EI_STAR_CONT),
            })?;
        if contacts == Contacts::Star && expires_hdr.unwrap_or(cfg.default_expires) != 0 {
            return Err(Fail::bad(EI_STAR_EXP));
        }
        if let Contacts::List(l) = &contacts {
            if l.iter().any(|c| c.uri.len() > cfg.contact_max_size) {
                return Err(Fail::bad(EI_CONTACT_LEN));
            }
        }

        // 3. Outbound (RFC 5626) and Path (RFC 3327).
        let supported = |tag: &str| has_option_tag(req.headers.get_all("supported"), tag);
        let required = |tag: &str| has_option_tag(req.headers.get_all("require"), tag);
        if cfg.outbound_mode == OutboundMode::Required && !supported("outbound") {
            return Err(Fail::new(421, EI_OB_UNSUP)
                .with("Require", "outbound")
                .with("Supported", "outbound"));
        }
        if cfg.outbound_mode == OutboundMode::None && required("outbound") {
            return Err(Fail::new(420, EI_OB_REQD).with("Unsupported", "outbound"));
        }
        let path = if cfg.use_path || cfg.outbound_mode != OutboundMode::None {
            parse_path(req.headers.get_all("path")).map_err(|_| Fail::bad(EI_PARSE_PATH))?
        } else {
            Vec::new()
        };
        let mut use_regid = true;
        if cfg.outbound_mode != OutboundMode::None {
            if let Contacts::List(l) = &contacts {
                if via_count(req) > 1 && !path.first().is_some_and(|p| p.ob) {
                    // Not the first hop, and the edge proxy did not do outbound.
                    if cfg.regid_mode == RegIdMode::Outbound {
                        let first_has_regid = l.first().is_some_and(|c| c.reg_id.is_some());
                        if supported("outbound") && first_has_regid {
                            return Err(Fail::new(439, EI_OB_UNSUP_EDGE));
                        }
                        use_regid = false;
                    }
                }
            }
        }
        let path: Vec<PathEntry> = if cfg.use_path { path } else { Vec::new() };
        let path_raw = path
            .iter()
            .map(|p| p.raw.as_str())
            .collect::<Vec<_>>()
            .join(",");
        let echo_path = cfg.use_path && !path.is_empty() && cfg.path_mode != PathMode::Off;
        if echo_path && cfg.path_mode == PathMode::Strict && !supported("path") {
            return Err(Fail::new(420, EI_PATH_UNSUP)
                .with("Unsupported", "path")
                .with("Path", path_raw));
        }

        // 4. The operation.
        let gruu = cfg.gruu_enabled && supported("gruu");
        // Lowercased where the reply uses it (GRUUs).
        host.make_ascii_lowercase();
        let mut reply = Registered {
            status: 200,
            reason: reason_for(200).to_string(),
            headers: Vec::new(),
            events: Vec::new(),
            result: SaveResult::Inserted,
            aor: None,
        };
        let mut written = Changes::default();
        let bindings = match contacts {
            Contacts::None => {
                reply.result = SaveResult::Fetched;
                self.store.lookup(&aor.key, now).map_err(|e| {
                    tracing::warn!(aor = %aor.key, error = %e, "registrar: store lookup failed");
                    Fail::new(500, EI_UL_GET_R)
                })?
            }
            Contacts::Star => {
                reply.result = SaveResult::Deleted;
                let mut removed = Vec::new();
                self.store
                    .update(&aor.key, now, &mut |list| {
                        removed = std::mem::take(list);
                        !removed.is_empty()
                    })
                    .map_err(|e| {
                        tracing::warn!(aor = %aor.key, error = %e, "registrar: store delete failed");
                        Fail::new(500, EI_UL_DEL_R)
                    })?;
                reply.events = removed
                    .into_iter()
                    .map(|b| Event {
                        kind: EventKind::Removed,
                        aor: aor.key.clone(),
                        binding: b,
                    })
                    .collect();
                Vec::new()
            }
            Contacts::List(list) => {
                let plan = self.plan(
                    aor,
                    list,
                    uris,
                    call_id,
                    cseq,
                    &path,
                    ctx,
                    opts,
                    use_regid,
                    expires_hdr,
                    rng,
                    req,
                )?;
                let (bindings, changes) = self.apply_plan(&plan, aor, &host, gruu)?;
                reply.result = changes.result();
                written = changes;
                bindings
            }
        };

        // 5. Reply headers.
        if let Some(c) = self.contact_header(&bindings, now, aor, &host, gruu) {
            reply.headers.push(("Contact".to_string(), c));
        }
        if !written.is_empty() {
            reply.events = written.into_events(&aor.key, bindings);
        }
        if echo_path && supported("path") {
            reply.headers.push(("Path".to_string(), path_raw));
        }
        match cfg.outbound_mode {
            OutboundMode::None => {}
            OutboundMode::Required => {
                reply.headers.push(("Require".into(), "outbound".into()));
                reply.headers.push(("Supported".into(), "outbound".into()));
                if cfg.flow_timer > 0 {
                    reply
                        .headers
                        .push(("Flow-Timer".into(), cfg.flow_timer.to_string()));
                }
            }
            OutboundMode::Supported => {
                let ua_ob = required("outbound") || supported("outbound");
                if ua_ob {
                    reply.headers.push(("Require".into(), "outbound".into()));
                }
                reply.headers.push(("Supported".into(), "outbound".into()));
                if ua_ob && cfg.flow_timer > 0 {
                    reply
                        .headers
                        .push(("Flow-Timer".into(), cfg.flow_timer.to_string()));
                }
            }
        }
        Ok(reply)
    }

    #[allow(clippy::too_many_arguments)]
    fn plan<'a, R: Rng + ?Sized>(
        &self,
        aor: &'a Aor,
        list: Vec<ContactSpec>,
        uris: Vec<Uri>,
        call_id: &'a str,
        cseq: u32,
        path: &'a [PathEntry],
        ctx: &RequestContext<'a>,
        opts: &SaveOptions,
        use_regid: bool,
        expires_hdr: Option<u32>,
        rng: &mut R,
        req: &'a Message,
    ) -> Result<Plan<'a>, Fail> {
        let cfg = &self.cfg;
        let mut contacts = Vec::with_capacity(list.len());
        for (c, uri) in list.into_iter().zip(&uris) {
            let expires =
                self.contact_expires(c.expires.as_deref(), expires_hdr, opts.no_randomize, rng)?;
            let q = match c.q.as_deref() {
                Some(raw) => Some(parse_q(raw.trim()).ok_or(Fail::bad(EI_INV_Q))?),
                None => cfg.default_q,
            };
            let reg_id = match (&c.instance, &c.reg_id, use_regid) {
                (Some(_), Some(raw), true) => match parse_delta(raw) {
                    Some(n) if n > 0 && n != u32::MAX => Some(n),
                    _ => return Err(Fail::bad(EI_INV_REGID)),
                },
                _ => None,
            };
            let received = self.received_for(uri, ctx);
            // Kamailio sruid style: time, a per-process counter, and randomness (so
            // that several nodes sharing a store do not collide).
            let n = self.ruid_counter.fetch_add(1, Ordering::Relaxed);
            // `uloc-{:x}-{n:x}-{:08x}`, without the formatting machinery.
            let mut ruid = String::with_capacity(48);
            ruid.push_str("uloc-");
            push_hex(&mut ruid, ctx.now_ms / 1000, 1);
            ruid.push('-');
            push_hex(&mut ruid, n, 1);
            ruid.push('-');
            push_hex(&mut ruid, u64::from(rng.gen::<u32>()), 8);
            contacts.push(NewContact {
                uri: c.uri,
                expires,
                q,
                instance: c.instance,
                reg_id,
                received,
                params: c.params,
                ruid,
            });
        }
        let user_agent = req
            .headers
            .get("user-agent")
            .filter(|ua| !ua.is_empty() && ua.len() <= MAX_UA_SIZE);
        Ok(Plan {
            aor: &aor.key,
            contacts,
            call_id,
            cseq,
            path,
            listener: ctx.listener,
            user_agent,
            single: opts.single_binding,
            max_contacts: usize::try_from(cfg.max_contacts).unwrap_or(usize::MAX),
            cseq_delay_ms: u64::from(cfg.cseq_delay) * 1000,
            now_ms: ctx.now_ms,
        })
    }

    /// Expiry of one contact (Kamailio `calc_contact_expires`): Contact `expires`
    /// (unparsable: default) -> Expires header -> `default_expires`; then min (or 423),
    /// randomisation, min again, max.
    fn contact_expires<R: Rng + ?Sized>(
        &self,
        param: Option<&str>,
        header: Option<u32>,
        no_randomize: bool,
        rng: &mut R,
    ) -> Result<u32, Fail> {
        let cfg = &self.cfg;
        let (mut e, range) = match param.map(str::trim).filter(|p| !p.is_empty()) {
            Some(raw) => match parse_delta(raw) {
                Some(v) => (v, cfg.expires_range),
                None => (cfg.default_expires, cfg.default_expires_range),
            },
            None => match header {
                Some(v) => (v, cfg.expires_range),
                None => (cfg.default_expires, cfg.default_expires_range),
            },
        };
        if e == 0 {
            return Ok(0);
        }
        if cfg.min_expires > 0 && e < cfg.min_expires {
            if cfg.min_expires_mode {
                return Err(
                    Fail::new(423, EI_LOW_EXP).with("Min-Expires", cfg.min_expires.to_string())
                );
            }
            e = cfg.min_expires;
        }
        if !no_randomize && range > 0 {
            e = randomize(e, range, rng);
            if cfg.min_expires > 0 && e < cfg.min_expires {
                e = cfg.min_expires;
            }
        }
        if cfg.max_expires > 0 && e > cfg.max_expires {
            e = cfg.max_expires;
        }
        Ok(e)
    }

    /// The `received` of a contact whose URI is `u`.
    fn received_for(&self, u: &Uri, ctx: &RequestContext<'_>) -> Option<String> {
        let src = ctx.source;
        let rcv = || {
            let mut r = String::with_capacity(64);
            let _ = match src.ip() {
                IpAddr::V4(a) => write!(r, "sip:{a}:"),
                IpAddr::V6(a) => write!(r, "sip:[{a}]:"),
            };
            let _ = write!(r, "{};transport=", src.port());
            r.extend(ctx.transport.chars().map(|c| c.to_ascii_lowercase()));
            r
        };
        match self.cfg.save_received {
            SaveReceived::Never => None,
            SaveReceived::Always => Some(rcv()),
            SaveReceived::Nat => {
                if !ctx.transport.eq_ignore_ascii_case("udp") {
                    return Some(rcv());
                }
                let ip_differs = host_ip(&u.host).is_some_and(|ip| ip != src.ip());
                let default_port = if u.scheme == Scheme::Sips { 5061 } else { 5060 };
                let port_differs = u.port.unwrap_or(default_port) != src.port();
                (ip_differs || port_differs).then(rcv)
            }
        }
    }

    fn apply_plan(
        &self,
        plan: &Plan,
        aor: &Aor,
        host: &str,
        gruu: bool,
    ) -> Result<(Vec<Binding>, Changes), Fail> {
        let mut outcome: Option<Outcome> = None;
        let stored = self
            .store
            .update(plan.aor, plan.now_ms, &mut |list| {
                let (r, changed) = match apply(list, plan) {
                    Ok(a) => {
                        let changed = !a.changes.is_empty();
                        if changed {
                            *list = a.bindings;
                        }
                        (Ok(a.changes), changed)
                    }
                    Err(rej) => (Err(rej), false),
                };
                outcome = Some(r);
                changed
            })
            .map_err(|e| {
                tracing::warn!(aor = %plan.aor, error = %e, "registrar: store update failed");
                Fail::new(500, EI_UL_UPD_C)
            })?;
        match outcome {
            Some(Ok(changes)) => Ok((stored, changes)),
            None => Ok((stored, Changes::default())),
            Some(Err(rej)) => {
                let mut f = match rej {
                    Reject::InvalidCSeq => Fail::bad(EI_INV_CSEQ),
                    Reject::TooMany => {
                        let mut f = Fail::new(503, EI_TOO_MANY);
                        f.result = SaveResult::TooMany;
                        f
                    }
                };
                // Kamailio lists the current bindings in these error replies too.
                if let Some(c) = self.contact_header(&stored, plan.now_ms, aor, host, gruu) {
                    f.headers.insert(0, ("Contact".to_string(), c));
                }
                Err(f)
            }
        }
    }

    /// The 200 OK Contact header (Kamailio `build_contact`): `<uri>[;q=..];expires=N
    /// [;received="..."][;pub-gruu="..";temp-gruu=".."][;+sip.instance=".."][;reg-id=N]`
    /// per live binding, joined by `, `; `None` when there is none.
    fn contact_header(
        &self,
        bindings: &[Binding],
        now_ms: u64,
        aor: &Aor,
        host: &str,
        gruu: bool,
    ) -> Option<String> {
        let is_live = |b: &&Binding| b.expires_at_ms > now_ms;
        let rank = |b: &Binding| std::cmp::Reverse(q_rank(b.q));
        // A sorted copy only when the list is not in q order already (one binding
        // always is): the live bindings are either `sorted` or, in stored order, the
        // second part of the chain.
        let sorted: Option<Vec<&Binding>> =
            (!bindings.iter().filter(is_live).is_sorted_by_key(rank)).then(|| {
                let mut v: Vec<&Binding> = bindings.iter().filter(is_live).collect();
                v.sort_by_key(|b| rank(b));
                v
            });
        let live = sorted
            .iter()
            .flatten()
            .copied()
            .chain(bindings.iter().filter(|b| sorted.is_none() && is_live(b)));
        let mut out = String::with_capacity(
            live.clone()
                .map(|b| {
                    64 + b.contact.len()
                        + b.received
                            .as_ref()
                            .map_or(0, |r| r.len() + self.cfg.received_param.len())
                })
                .sum(),
        );
        for b in live {
            if !out.is_empty() {
                out.push_str(", ");
            }
            out.push('<');
            out.push_str(&b.contact);
            out.push('>');
            if let Some(q) = b.q {
                out.push_str(";q=");
                out.push_str(&format_q(q));
            }
            let remaining = b.expires_at_ms.saturating_sub(now_ms).div_ceil(1000);
            let _ = write!(out, ";expires={remaining}");
            if let Some(r) = &b.received {
                if !self.cfg.received_param.is_empty() {
                    let _ = write!(out, ";{}=\"{r}\"", self.cfg.received_param);
                }
            }
            if let Some(inst) = &b.instance {
                if gruu {
                    let bare = inst
                        .strip_prefix('<')
                        .and_then(|s| s.strip_suffix('>'))
                        .unwrap_or(inst);
                    let public = if aor.key.contains('@') {
                        aor.key.clone()
                    } else {
                        format!("sip:{}@{host}", aor.user)
                    };
                    let _ = write!(out, ";pub-gruu=\"{public};gr={bare}\"");
                    let _ = write!(
                        out,
                        ";temp-gruu=\"sip:{}-{}@{host};gr\"",
                        b.ruid,
                        hash_nibbles(aor_hash(&aor.key))
                    );
                }
                let _ = write!(out, ";+sip.instance=\"{inst}\"");
            }
            if let Some(r) = b.reg_id {
                let _ = write!(out, ";reg-id={r}");
            }
        }
        (!out.is_empty()).then_some(out)
    }

    // === lookup ===

    /// Kamailio `lookup("location")`: the live bindings of the Request-URI's AOR as
    /// ordered targets (q descending, no q last, equal q older first). A `;gr=<inst>`
    /// Request-URI (public GRUU) selects that instance's bindings only. With
    /// `append_branches = 0` only the first target is returned.
    pub fn lookup(&self, request_uri: &str, now_ms: u64) -> Lookup {
        let Ok(uri) = Uri::parse(request_uri.trim()) else {
            return Lookup::NotFound;
        };
        let Ok(aor) = aor_of_uri((&uri).into(), &self.cfg) else {
            return Lookup::NotFound;
        };
        let gr = uri.param("gr");
        if gr == Some(None) {
            // Temporary GRUU: the AOR is not recoverable from it without a
            // by-ruid index in the store (see crate docs).
            return Lookup::NotFound;
        }
        let mut bindings = match self.store.lookup(&aor.key, now_ms) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(aor = %aor.key, error = %e, "registrar: store lookup failed");
                return Lookup::Error(e);
            }
        };
        bindings.retain(|b| b.expires_at_ms > now_ms);
        if let Some(Some(inst)) = gr {
            let inst = inst.trim_matches('"');
            let inst = inst
                .strip_prefix('<')
                .and_then(|s| s.strip_suffix('>'))
                .unwrap_or(inst);
            bindings.retain(|b| {
                b.instance.as_deref().is_some_and(|i| {
                    let i = i
                        .strip_prefix('<')
                        .and_then(|s| s.strip_suffix('>'))
                        .unwrap_or(i);
                    i.eq_ignore_ascii_case(inst)
                })
            });
        }
        if bindings.is_empty() {
            return self.no_binding(&aor);
        }
        bindings.sort_by_key(|b| std::cmp::Reverse(q_rank(b.q)));
        if !self.cfg.append_branches {
            bindings.truncate(1);
        }
        Lookup::Found(
            bindings
                .into_iter()
                .map(|b| target_of(&aor.key, b))
                .collect(),
        )
    }

    fn no_binding(&self, aor: &Aor) -> Lookup {
        let Some(subs) = &self.subscribers else {
            return Lookup::NotFound;
        };
        match subs.credentials(&aor.user, &aor.domain) {
            Ok(Some(_)) => Lookup::NoBinding,
            Ok(None) => Lookup::NotFound,
            Err(e) => Lookup::Error(e),
        }
    }

    /// Status and reason the host should reply with for a lookup that found nothing
    /// (`None` for [`Lookup::Found`]): 404 Not Found, `no_binding_reply` for a known
    /// subscriber, 500 on store errors.
    pub fn lookup_reply(&self, lookup: &Lookup) -> Option<(u16, &'static str)> {
        match lookup {
            Lookup::Found(_) => None,
            Lookup::NotFound => Some((404, reason_for(404))),
            Lookup::NoBinding => {
                let c = self.cfg.no_binding_reply;
                Some((c, reason_for(c)))
            }
            Lookup::Error(_) => Some((500, reason_for(500))),
        }
    }

    /// Whether the URI's AOR has a live binding (Kamailio `registered()`).
    pub fn registered(&self, uri: &str, now_ms: u64) -> Result<bool, StoreError> {
        let Ok(aor) = crate::aor::aor_of(uri, &self.cfg) else {
            return Ok(false);
        };
        Ok(self
            .store
            .lookup(&aor.key, now_ms)?
            .iter()
            .any(|b| b.expires_at_ms > now_ms))
    }

    // === removal ===

    /// Removes one binding of the AOR key `aor` (Kamailio `unregister(.., ruid)`).
    /// With `unchanged_since`, the binding is kept if it was written after that time
    /// (the UA re-registered meanwhile). Returns the Removed event, `None` when no
    /// such binding exists.
    pub fn remove_binding(
        &self,
        aor: &str,
        which: BindingRef<'_>,
        unchanged_since: Option<u64>,
        now_ms: u64,
    ) -> Result<Option<Event>, StoreError> {
        let mut removed: Option<Binding> = None;
        self.store.update(aor, now_ms, &mut |list| {
            removed = None;
            let pos = list.iter().position(|b| match which {
                BindingRef::Ruid(r) => b.ruid == r,
                BindingRef::Contact(c) => b.contact == c,
            });
            let Some(i) = pos else { return false };
            if let (Some(t), Some(b)) = (unchanged_since, list.get(i)) {
                if b.updated_ms > t {
                    return false;
                }
            }
            if i < list.len() {
                removed = Some(list.remove(i));
            }
            removed.is_some()
        })?;
        Ok(removed.map(|binding| Event {
            kind: EventKind::Removed,
            aor: aor.to_string(),
            binding,
        }))
    }

    /// Removes every binding of the URI's AOR (Kamailio `unregister(.., uri)`).
    pub fn unregister(&self, uri: &str, now_ms: u64) -> Result<Vec<Event>, StoreError> {
        let Ok(aor) = crate::aor::aor_of(uri, &self.cfg) else {
            return Ok(Vec::new());
        };
        let mut removed = Vec::new();
        self.store.update(&aor.key, now_ms, &mut |list| {
            removed = std::mem::take(list);
            !removed.is_empty()
        })?;
        Ok(removed
            .into_iter()
            .map(|binding| Event {
                kind: EventKind::Removed,
                aor: aor.key.clone(),
                binding,
            })
            .collect())
    }

    /// Branch-failure policy: when the branch to `target` failed with `status` and
    /// `status` is listed in `unregister_on`, removes that binding (unless it was
    /// refreshed since the lookup). A 408 counts only when the branch got no reply at
    /// all (`got_reply == false`): a device that sent 100/180 is alive.
    pub fn branch_failed(
        &self,
        target: &Target,
        status: u16,
        got_reply: bool,
        now_ms: u64,
    ) -> Result<Option<Event>, StoreError> {
        if !self.cfg.unregister_on.contains(&status) || (status == 408 && got_reply) {
            return Ok(None);
        }
        self.remove_binding(
            &target.aor,
            BindingRef::Ruid(&target.ruid),
            Some(target.updated_ms),
            now_ms,
        )
    }

    /// Purges expired bindings (call periodically, e.g. every `timer_interval` = 60 s)
    /// and returns an Expired event for each.
    pub fn purge(&self, now_ms: u64) -> Result<Vec<Event>, StoreError> {
        Ok(self
            .store
            .purge_expired(now_ms)?
            .into_iter()
            .map(|(aor, binding)| Event {
                kind: EventKind::Expired,
                aor,
                binding,
            })
            .collect())
    }
}

impl AorError {
    fn static_str(&self) -> &'static str {
        match self {
            AorError::Parse => "Error while parsing AOR",
            AorError::Unescape => "Error while unescaping username",
            AorError::NoUser => "No username in To URI",
            AorError::TooLong => "Address Of Record too long",
        }
    }
}

/// Sort rank of a q-value: no q below every explicit q.
fn q_rank(q: Option<u16>) -> i32 {
    q.map_or(-1, i32::from)
}

fn via_count(req: &Message) -> usize {
    match req.vias() {
        Ok(v) => v.len(),
        Err(_) => req.headers.get_all("via").count(),
    }
}

/// Kamailio `randomize_expires`: uniformly in `[e - e*range/100, e]`.
fn randomize<R: Rng + ?Sized>(e: u32, range: u8, rng: &mut R) -> u32 {
    let e64 = u64::from(e);
    let cut = (e64 * u64::from(range.min(100))).div_ceil(100);
    let lo = e64.saturating_sub(cut);
    let v = if lo >= e64 {
        e64
    } else {
        rng.gen_range(lo..=e64)
    };
    u32::try_from(v).unwrap_or(e)
}

/// Appends `v` in lowercase hex, zero-padded to at least `width` digits (as
/// `{:0width$x}`).
fn push_hex(out: &mut String, v: u64, width: usize) {
    let digits = (64 - v.leading_zeros()).div_ceil(4).max(1);
    let digits = usize::try_from(digits).unwrap_or(16).max(width);
    for i in (0..digits).rev() {
        let shift = u32::try_from(4 * i).unwrap_or(u32::MAX);
        let nibble = v.checked_shr(shift).unwrap_or(0) & 0xf;
        out.push(char::from_digit(u32::try_from(nibble).unwrap_or(0), 16).unwrap_or('0'));
    }
}

/// 32-bit FNV-1a of the AOR key (for temporary GRUUs).
fn aor_hash(s: &str) -> u32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in s.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// Hex digits least-significant nibble first, as Kamailio prints the AOR hash.
fn hash_nibbles(mut h: u32) -> String {
    let mut s = String::new();
    while h != 0 {
        let d = h & 0xf;
        s.push(char::from_digit(d, 16).unwrap_or('0'));
        h >>= 4;
    }
    s
}

fn same_instance(b: &Binding, inst: &str) -> bool {
    b.instance
        .as_deref()
        .is_some_and(|i| i.eq_ignore_ascii_case(inst))
}

/// The stored binding a contact refers to: by `+sip.instance` + `reg-id` when the
/// contact has an instance, else (or if none) by exact Contact URI.
fn find_match(work: &[Binding], c: &NewContact) -> Option<usize> {
    if let Some(inst) = &c.instance {
        if let Some(i) = work
            .iter()
            .position(|b| same_instance(b, inst) && b.reg_id == c.reg_id)
        {
            return Some(i);
        }
    }
    work.iter().position(|b| b.contact == c.uri)
}

fn fill(b: &mut Binding, c: &NewContact, plan: &Plan) {
    b.contact = c.uri.clone();
    b.expires_at_ms = plan
        .now_ms
        .saturating_add(u64::from(c.expires).saturating_mul(1000));
    b.q = c.q;
    b.call_id = plan.call_id.to_string();
    b.cseq = plan.cseq;
    b.instance = c.instance.clone();
    b.reg_id = c.reg_id;
    b.path = plan.path.iter().map(|p| p.raw.clone()).collect();
    b.received = c.received.clone();
    b.listener = plan.listener.map(str::to_string);
    b.user_agent = plan.user_agent.map(str::to_string);
    b.params = c.params.clone();
    b.updated_ms = plan.now_ms;
}

/// Applies the REGISTER's contacts to the live bindings (Kamailio `update_contacts` /
/// `insert_contacts` + `test_max_contacts`), all or nothing.
fn apply(list: &[Binding], plan: &Plan) -> Result<Applied, Reject> {
    let now = plan.now_ms;
    // Room for every contact to be new: no regrowth.
    let mut work: Vec<Binding> = Vec::with_capacity(list.len() + plan.contacts.len());
    work.extend(list.iter().filter(|b| b.expires_at_ms > now).cloned());
    // ruids of the bindings this REGISTER wrote (new ones borrowed from the plan).
    let mut touched: Vec<Cow<'_, str>> = Vec::new();
    for c in &plan.contacts {
        let mut stop = false;
        match find_match(&work, c) {
            Some(i) => {
                let Some(b) = work.get(i) else { continue };
                if !touched.iter().any(|t| *t == b.ruid) && b.call_id == plan.call_id {
                    if plan.cseq < b.cseq {
                        return Err(Reject::InvalidCSeq);
                    }
                    if plan.cseq == b.cseq {
                        if b.updated_ms.saturating_add(plan.cseq_delay_ms) > now {
                            // Retransmission: no change.
                            if c.expires != 0 && plan.single {
                                break;
                            }
                            continue;
                        }
                        return Err(Reject::InvalidCSeq);
                    }
                }
                let new_call_id = b.call_id != plan.call_id;
                let ruid = b.ruid.clone();
                if c.expires == 0 {
                    work.remove(i);
                    continue;
                }
                if let Some(b) = work.get_mut(i) {
                    fill(b, c, plan);
                }
                touched.push(Cow::Owned(ruid.clone()));
                if plan.single {
                    work.retain(|b| b.ruid == ruid);
                    stop = true;
                } else if let (Some(inst), true) = (&c.instance, new_call_id) {
                    // The device restarted (new Call-ID): its older bindings go.
                    work.retain(|b| b.ruid == ruid || !same_instance(b, inst));
                }
            }
            None => {
                if c.expires == 0 {
                    continue;
                }
                let mut b = Binding {
                    contact: String::new(),
                    expires_at_ms: 0,
                    q: None,
                    call_id: String::new(),
                    cseq: 0,
                    instance: None,
                    reg_id: None,
                    path: Vec::new(),
                    received: None,
                    listener: None,
                    user_agent: None,
                    params: Vec::new(),
                    ruid: c.ruid.clone(),
                    updated_ms: now,
                };
                fill(&mut b, c, plan);
                touched.push(Cow::Borrowed(&c.ruid));
                work.push(b);
                if plan.single {
                    work.retain(|b| b.ruid == c.ruid);
                    stop = true;
                }
            }
        }
        if stop {
            break;
        }
    }
    if !plan.single && plan.max_contacts > 0 && work.len() > plan.max_contacts {
        return Err(Reject::TooMany);
    }
    let mut changes = Changes::default();
    for old in list {
        if old.expires_at_ms > now && !work.iter().any(|b| b.ruid == old.ruid) {
            changes.removed.push(Event {
                kind: EventKind::Removed,
                aor: plan.aor.to_string(),
                binding: old.clone(),
            });
        }
    }
    for (i, b) in work.iter().enumerate() {
        match list.iter().find(|o| o.ruid == b.ruid) {
            None => changes.written.push((i, EventKind::Added)),
            Some(o) if o != b => changes.written.push((i, EventKind::Refreshed)),
            Some(_) => {}
        }
    }
    Ok(Applied {
        bindings: work,
        changes,
    })
}

fn target_of(aor: &str, b: Binding) -> Target {
    let destination = match b.path.first() {
        Some(p) => NameAddr::parse(p)
            .map(|na| na.uri.to_string())
            .ok()
            .or_else(|| b.received.clone()),
        None => b.received.clone(),
    };
    Target {
        uri: b.contact,
        destination,
        route: b.path,
        q: b.q,
        ruid: b.ruid,
        aor: aor.to_string(),
        instance: b.instance,
        reg_id: b.reg_id,
        listener: b.listener,
        params: b.params,
        expires_at_ms: b.expires_at_ms,
        updated_ms: b.updated_ms,
    }
}

#[cfg(test)]
mod hex_tests {
    use super::push_hex;

    #[test]
    fn push_hex_is_lower_hex() {
        for v in [
            0,
            1,
            0xf,
            0x10,
            0xabc,
            0x6553_f100,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            for width in [0, 1, 8, 17] {
                let mut s = String::new();
                push_hex(&mut s, v, width);
                assert_eq!(s, format!("{v:0width$x}"));
            }
        }
    }
}
