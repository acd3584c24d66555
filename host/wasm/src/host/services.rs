//! `weir:sip/timers`, `requests`, `transactions`, `location`, `http` and `files`: the
//! guest side is checked and copied here, the work is the proxy's
//! ([`Services`](crate::Services)); `files` is served from the module's grants.

use std::fs;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::time::{Duration, Instant, SystemTime};

use wasmtime::component::{Linker, WasmStr};
use wasmtime::{AsContext, StoreContextMut};
use weir_message::{is_valid_header_name, is_valid_header_value, names_equal, Uri};

use super::Ctx;
use crate::bindings::weir::sip::files::File as WitFile;
use crate::bindings::weir::sip::http::HttpRequest as WitHttpRequest;
use crate::bindings::weir::sip::location::Binding as WitBinding;
use crate::bindings::weir::sip::requests::OutgoingRequest as WitOutgoing;
use crate::bindings::weir::sip::transactions::TxState as WitTxState;
use crate::bindings::weir::sip::types::{BranchTarget as WitBranch, Header as WitHeader};
use crate::services::{BranchTarget, HttpRequest, NoServices, OutgoingRequest, Services, TxState};

/// Longest timer name.
pub(crate) const MAX_TIMER_NAME: usize = 64;
/// Shortest and longest timer interval.
const TIMER_MS: std::ops::RangeInclusive<u32> = 10..=86_400_000;
/// Longest module tag on a request.
const MAX_TAG: usize = 256;
/// Bounds of an originated SIP request's timeout.
const REQUEST_TIMEOUT_MS: std::ops::RangeInclusive<u32> = 100..=32_000;
/// Bounds of an HTTP request's timeout.
const HTTP_TIMEOUT_MS: std::ops::RangeInclusive<u32> = 100..=60_000;
/// Most headers on an originated request.
const MAX_HEADERS: usize = 32;
/// Largest body of an originated request (SIP or HTTP).
const MAX_BODY: usize = 64 * 1024;
/// Longest URI, URL or AOR a guest may pass.
const MAX_URI: usize = 2048;
/// Most Path entries on a branch.
const MAX_PATH: usize = 8;
/// Largest granted file.
const MAX_FILE: u64 = 4 * 1024 * 1024;
/// How often a granted file is checked for changes.
const FILE_CHECK: Duration = Duration::from_secs(1);

// === State ===

/// The proxy's services, swappable like the subscriber store.
pub(crate) struct ServiceState {
    services: RwLock<Arc<dyn Services>>,
}

impl ServiceState {
    pub(crate) fn new() -> ServiceState {
        ServiceState {
            services: RwLock::new(Arc::new(NoServices)),
        }
    }

    pub(crate) fn set(&self, s: Arc<dyn Services>) {
        *self
            .services
            .write()
            .unwrap_or_else(PoisonError::into_inner) = s;
    }

    pub(crate) fn get(&self) -> Arc<dyn Services> {
        self.services
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// What the config grants one module beyond the default imports.
#[derive(Debug, Default)]
pub(crate) struct Grants {
    /// URL prefixes `http.send` may reach; empty: none.
    pub(crate) http_allow: Vec<String>,
    /// Files by grant name.
    pub(crate) files: Vec<(String, GrantedFile)>,
}

impl Grants {
    pub(crate) fn http_permits(&self, url: &str) -> bool {
        self.http_allow.iter().any(|p| url.starts_with(p.as_str()))
    }

    fn file(&self, name: &str) -> Option<&GrantedFile> {
        self.files.iter().find(|(n, _)| n == name).map(|(_, f)| f)
    }
}

/// One granted file, re-read when its size or modification time changes (checked at
/// most once per [`FILE_CHECK`], on use).
#[derive(Debug)]
pub(crate) struct GrantedFile {
    path: PathBuf,
    state: Mutex<FileState>,
}

#[derive(Debug, Default)]
struct FileState {
    checked: Option<Instant>,
    stamp: Option<(u64, Option<SystemTime>)>,
    version: u64,
    content: Option<Arc<Vec<u8>>>,
    error: Option<String>,
}

impl GrantedFile {
    pub(crate) fn new(path: PathBuf) -> GrantedFile {
        GrantedFile {
            path,
            state: Mutex::new(FileState::default()),
        }
    }

    /// The current version and content, re-read if the file changed.
    fn current(&self) -> Result<(u64, Arc<Vec<u8>>), String> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let due = st.checked.is_none_or(|t| t.elapsed() >= FILE_CHECK);
        if due {
            st.checked = Some(Instant::now());
            self.refresh(&mut st);
        }
        match (&st.content, &st.error) {
            (Some(c), _) => Ok((st.version, c.clone())),
            (None, Some(e)) => Err(e.clone()),
            (None, None) => Err(format!("{} was never read", self.path.display())),
        }
    }

    fn refresh(&self, st: &mut FileState) {
        let meta = match fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) => {
                st.error = Some(format!("cannot read {}: {e}", self.path.display()));
                return;
            }
        };
        let stamp = (meta.len(), meta.modified().ok());
        if st.stamp == Some(stamp) && st.content.is_some() {
            return;
        }
        match read_bounded(&self.path) {
            Ok(bytes) => {
                let changed = st.content.as_deref() != Some(&bytes);
                st.stamp = Some(stamp);
                st.error = None;
                if changed {
                    st.version += 1;
                    st.content = Some(Arc::new(bytes));
                    tracing::info!(file = %self.path.display(), version = st.version, "granted file (re)read");
                }
            }
            Err(e) => {
                // Keep serving the last good content.
                tracing::warn!(file = %self.path.display(), error = %e, "cannot re-read granted file");
                st.error = Some(e);
            }
        }
    }
}

fn read_bounded(path: &std::path::Path) -> Result<Vec<u8>, String> {
    let f = fs::File::open(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let mut out = Vec::new();
    f.take(MAX_FILE + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    if u64::try_from(out.len()).unwrap_or(u64::MAX) > MAX_FILE {
        return Err(format!(
            "{} is larger than {MAX_FILE} bytes",
            path.display()
        ));
    }
    Ok(out)
}

// === Checks ===

fn headers(list: Vec<WitHeader>) -> Result<Vec<(String, String)>, String> {
    if list.len() > MAX_HEADERS {
        return Err(format!("more than {MAX_HEADERS} headers"));
    }
    let mut out = Vec::with_capacity(list.len());
    for h in list {
        if !is_valid_header_name(&h.name) || !is_valid_header_value(&h.value) {
            return Err(format!(
                "`{}` is not a valid header",
                super::imports::cut(&h.name, 64)
            ));
        }
        out.push((h.name, h.value));
    }
    Ok(out)
}

fn sip_uri(what: &str, s: &str) -> Result<(), String> {
    if s.len() > MAX_URI {
        return Err(format!("{what} is longer than {MAX_URI} bytes"));
    }
    Uri::parse(s).map(|_| ()).map_err(|e| {
        format!(
            "{what} `{}` does not parse: {e}",
            super::imports::cut(s, 128)
        )
    })
}

fn is_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 32
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b))
}

pub(crate) fn check_outgoing(r: WitOutgoing) -> Result<OutgoingRequest, String> {
    if !is_token(&r.method) {
        return Err("the method is not a SIP token".into());
    }
    if matches!(
        r.method.to_ascii_uppercase().as_str(),
        "INVITE" | "ACK" | "CANCEL"
    ) {
        return Err(format!("{} cannot be originated by a module", r.method));
    }
    sip_uri("uri", &r.uri)?;
    if let Some(d) = &r.destination {
        sip_uri("destination", d)?;
    }
    if !REQUEST_TIMEOUT_MS.contains(&r.timeout_ms) {
        return Err("timeout-ms must be 100 to 32000".into());
    }
    if r.body.len() > MAX_BODY {
        return Err(format!("body larger than {MAX_BODY} bytes"));
    }
    let headers = headers(r.headers)?;
    for (n, _) in &headers {
        if ["via", "call-id", "cseq", "max-forwards", "content-length"]
            .iter()
            .any(|owned| names_equal(n, owned))
        {
            return Err(format!("header `{n}` is the host's"));
        }
    }
    Ok(OutgoingRequest {
        method: r.method,
        uri: r.uri,
        headers,
        body: r.body,
        destination: r.destination,
        timeout: Duration::from_millis(u64::from(r.timeout_ms)),
    })
}

pub(crate) fn check_branch(b: WitBranch) -> Result<BranchTarget, String> {
    sip_uri("uri", &b.uri)?;
    if let Some(d) = &b.destination {
        sip_uri("destination", d)?;
    }
    if b.path.len() > MAX_PATH {
        return Err(format!("more than {MAX_PATH} path entries"));
    }
    for p in &b.path {
        if p.len() > MAX_URI || !is_valid_header_value(p) {
            return Err("a path entry is not a valid Route value".into());
        }
    }
    Ok(BranchTarget {
        uri: b.uri,
        destination: b.destination,
        path: b.path,
    })
}

fn check_http(r: WitHttpRequest) -> Result<HttpRequest, String> {
    if !is_token(&r.method) {
        return Err("the method is not an HTTP token".into());
    }
    if r.url.len() > MAX_URI {
        return Err(format!("url is longer than {MAX_URI} bytes"));
    }
    if !HTTP_TIMEOUT_MS.contains(&r.timeout_ms) {
        return Err("timeout-ms must be 100 to 60000".into());
    }
    if r.body.len() > MAX_BODY {
        return Err(format!("body larger than {MAX_BODY} bytes"));
    }
    Ok(HttpRequest {
        method: r.method,
        url: r.url,
        headers: headers(r.headers)?,
        body: r.body,
        timeout: Duration::from_millis(u64::from(r.timeout_ms)),
    })
}

fn check_tag(tag: &str) -> Result<(), String> {
    if tag.len() > MAX_TAG {
        return Err(format!("tag longer than {MAX_TAG} bytes"));
    }
    Ok(())
}

// === Linker ===

pub(crate) fn add_to_linker(linker: &mut Linker<Ctx>) -> wasmtime::Result<()> {
    let mut i = linker.instance("weir:sip/timers@0.1.0")?;
    i.func_wrap(
        "every",
        |s: StoreContextMut<'_, Ctx>, (name, ms): (WasmStr, u32)| {
            let name = name.to_str(s.as_context())?;
            if name.is_empty() || name.len() > MAX_TIMER_NAME {
                return Ok((Err(format!("timer names are 1 to {MAX_TIMER_NAME} bytes")),));
            }
            if !TIMER_MS.contains(&ms) {
                return Ok((Err("interval-ms must be 10 to 86400000".to_string()),));
            }
            let ctx = s.data();
            let r = ctx.services.get().timer_every(
                &ctx.ident.name,
                &name,
                Duration::from_millis(u64::from(ms)),
            );
            Ok((r,))
        },
    )?;
    i.func_wrap(
        "cancel",
        |s: StoreContextMut<'_, Ctx>, (name,): (WasmStr,)| {
            let name = name.to_str(s.as_context())?;
            if name.len() > MAX_TIMER_NAME {
                return Ok((false,));
            }
            let ctx = s.data();
            Ok((ctx.services.get().timer_cancel(&ctx.ident.name, &name),))
        },
    )?;

    let mut i = linker.instance("weir:sip/requests@0.1.0")?;
    i.func_wrap(
        "send",
        |s: StoreContextMut<'_, Ctx>, (req, tag): (WitOutgoing, String)| {
            let ctx = s.data();
            let r = check_tag(&tag)
                .and_then(|()| check_outgoing(req))
                .and_then(|req| ctx.services.get().send_request(&ctx.ident.name, req, tag));
            Ok((r,))
        },
    )?;

    let mut i = linker.instance("weir:sip/transactions@0.1.0")?;
    i.func_wrap("state", |s: StoreContextMut<'_, Ctx>, (id,): (u64,)| {
        let st = match s.data().services.get().tx_state(id) {
            TxState::Pending => WitTxState::Pending,
            TxState::Answered => WitTxState::Answered,
            TxState::Cancelled => WitTxState::Cancelled,
            TxState::Gone => WitTxState::Gone,
        };
        Ok((st,))
    })?;
    i.func_wrap(
        "add-branch",
        |s: StoreContextMut<'_, Ctx>, (id, target): (u64, WitBranch)| {
            let r = check_branch(target).and_then(|t| s.data().services.get().add_branch(id, t));
            Ok((r,))
        },
    )?;
    i.func_wrap(
        "append-contacts",
        |s: StoreContextMut<'_, Ctx>, (id, aor, contact): (u64, WasmStr, Option<WasmStr>)| {
            let aor = aor.to_str(s.as_context())?;
            let contact = match &contact {
                Some(c) => Some(c.to_str(s.as_context())?),
                None => None,
            };
            if aor.len() > MAX_URI || contact.as_ref().is_some_and(|c| c.len() > MAX_URI) {
                return Ok((Err(format!("aor and contact are at most {MAX_URI} bytes")),));
            }
            let r = s
                .data()
                .services
                .get()
                .append_contacts(id, &aor, contact.as_deref());
            Ok((r,))
        },
    )?;
    i.func_wrap("watch", |s: StoreContextMut<'_, Ctx>, (id,): (u64,)| {
        let ctx = s.data();
        Ok((ctx.services.get().watch(&ctx.ident.name, id),))
    })?;

    let mut i = linker.instance("weir:sip/location@0.1.0")?;
    i.func_wrap(
        "lookup",
        |s: StoreContextMut<'_, Ctx>, (aor,): (WasmStr,)| {
            let aor = aor.to_str(s.as_context())?;
            if aor.len() > MAX_URI {
                return Ok((Err(format!("aor longer than {MAX_URI} bytes")),));
            }
            let found = s.data().services.get().location(&aor).map(|list| {
                list.into_iter()
                    .map(|b| WitBinding {
                        contact: b.contact,
                        destination: b.destination,
                        path: b.path,
                        instance: b.instance,
                        q: b.q,
                        expires_at_ms: b.expires_at_ms,
                        params: b
                            .params
                            .into_iter()
                            .map(|(name, value)| WitHeader { name, value })
                            .collect(),
                    })
                    .collect::<Vec<_>>()
            });
            Ok((found,))
        },
    )?;

    let mut i = linker.instance("weir:sip/http@0.1.0")?;
    i.func_wrap(
        "send",
        |s: StoreContextMut<'_, Ctx>, (req, tag): (WitHttpRequest, String)| {
            let ctx = s.data();
            if !ctx.grants.http_permits(&req.url) {
                return Ok((Err(format!(
                    "`{}` is not granted to this module (http_allow)",
                    super::imports::cut(&req.url, 128)
                )),));
            }
            let r = check_tag(&tag)
                .and_then(|()| check_http(req))
                .and_then(|req| ctx.services.get().http_send(&ctx.ident.name, req, tag));
            Ok((r,))
        },
    )?;

    let mut i = linker.instance("weir:sip/files@0.1.0")?;
    i.func_wrap(
        "read",
        |s: StoreContextMut<'_, Ctx>, (name,): (WasmStr,)| {
            let name = name.to_str(s.as_context())?;
            let r = match s.data().grants.file(&name) {
                Some(f) => f.current().map(|(version, content)| WitFile {
                    version,
                    content: content.as_ref().clone(),
                }),
                None => Err(format!(
                    "no file is granted as `{}`",
                    super::imports::cut(&name, 64)
                )),
            };
            Ok((r,))
        },
    )?;
    i.func_wrap(
        "version",
        |s: StoreContextMut<'_, Ctx>, (name,): (WasmStr,)| {
            let name = name.to_str(s.as_context())?;
            let v = s
                .data()
                .grants
                .file(&name)
                .and_then(|f| f.current().ok())
                .map(|(v, _)| v);
            Ok((v,))
        },
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(method: &str, headers: &[(&str, &str)], timeout_ms: u32) -> WitOutgoing {
        WitOutgoing {
            method: method.into(),
            uri: "sip:10.0.0.1:5060".into(),
            headers: headers
                .iter()
                .map(|(n, v)| WitHeader {
                    name: (*n).into(),
                    value: (*v).into(),
                })
                .collect(),
            body: Vec::new(),
            destination: None,
            timeout_ms,
        }
    }

    #[test]
    fn originated_requests_are_checked() {
        assert!(check_outgoing(req("OPTIONS", &[("From", "<sip:a@b>")], 2000)).is_ok());
        for bad in [
            req("INVITE", &[], 2000),
            req("ack", &[], 2000),
            req("BAD METHOD", &[], 2000),
            req("OPTIONS", &[("Via", "x")], 2000),
            req("OPTIONS", &[("i", "x")], 2000),
            req("OPTIONS", &[("X-A", "a\r\nb")], 2000),
            req("OPTIONS", &[], 50),
            req("OPTIONS", &[], 40_000),
        ] {
            assert!(check_outgoing(bad.clone()).is_err(), "{bad:?}");
        }
        let mut r = req("OPTIONS", &[], 2000);
        r.destination = Some("not a uri".into());
        assert!(check_outgoing(r).is_err());
    }

    #[test]
    fn http_grants_are_prefixes() {
        let g = Grants {
            http_allow: vec!["http://127.0.0.1:9000/push/".into()],
            files: Vec::new(),
        };
        assert!(g.http_permits("http://127.0.0.1:9000/push/apns"));
        assert!(!g.http_permits("http://127.0.0.1:9000/admin"));
        assert!(!Grants::default().http_permits("http://127.0.0.1:9000/push/"));
    }

    #[test]
    fn granted_files_reload_on_change() {
        let dir = std::env::temp_dir().join(format!("weir-grant-{}", std::process::id()));
        let _ = fs::create_dir_all(&dir);
        let path = dir.join("list");
        fs::write(&path, b"1 sip:a").unwrap();
        let f = GrantedFile::new(path.clone());
        let (v1, c1) = f.current().unwrap();
        assert_eq!((v1, c1.as_slice()), (1, &b"1 sip:a"[..]));
        fs::write(&path, b"1 sip:b\n").unwrap();
        // Not re-checked within a second.
        assert_eq!(f.current().unwrap().0, 1);
        f.state.lock().unwrap().checked = None;
        let (v2, c2) = f.current().unwrap();
        assert_eq!((v2, c2.as_slice()), (2, &b"1 sip:b\n"[..]));
        // A vanished file keeps its last content.
        fs::remove_file(&path).unwrap();
        f.state.lock().unwrap().checked = None;
        assert_eq!(f.current().unwrap().0, 2);
        let missing = GrantedFile::new(dir.join("none"));
        assert!(missing.current().is_err());
        let _ = fs::remove_dir_all(&dir);
    }
}
