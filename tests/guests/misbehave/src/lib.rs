//! Test fixture for `weir-wasm`: a routing module whose behaviour is chosen by the
//! `mode` param, so the host's failure handling (traps, timeouts, runaway memory,
//! refused edits, kv isolation) can be exercised from integration tests.
//!
//! The mode comes from the `mode` param of `init`; a request may override it for one
//! call with an `X-Mode` header, so a test can make one call misbehave and check the
//! next one on the same module works.
//!
//! Modes: `ok`, `trap`, `loop`, `alloc`, `error`, `reply`, `edit-via`, `kv`, `panic`,
//! `wasi`, `fs`, `big-header`, `edit-error`, `inspect`, `forward`, `bad-reply`,
//! `note` (logs the hook, failure status, cancel flag and request URI; continues).

wit_bindgen::generate!({
    path: "../../../wit",
    world: "module",
});

use std::cell::Cell;
use std::hint::black_box;

use exports::weir::sip::handler::Guest;
use weir::sip::kv;
use weir::sip::message::Message;
use weir::sip::types::{EditError, Header, Param, ParamValue, Reply, Verdict};

#[derive(Clone, Copy, Debug, PartialEq)]
enum Mode {
    Ok,
    Trap,
    Loop,
    Alloc,
    Error,
    Reply,
    EditVia,
    Kv,
    Panic,
    Wasi,
    Fs,
    BigHeader,
    EditError,
    Inspect,
    Forward,
    BadReply,
    Note,
}

impl Mode {
    fn parse(s: &str) -> Option<Mode> {
        Some(match s {
            "ok" => Mode::Ok,
            "trap" => Mode::Trap,
            "loop" => Mode::Loop,
            "alloc" => Mode::Alloc,
            "error" => Mode::Error,
            "reply" => Mode::Reply,
            "edit-via" => Mode::EditVia,
            "kv" => Mode::Kv,
            "note" => Mode::Note,
            "panic" => Mode::Panic,
            "wasi" => Mode::Wasi,
            "fs" => Mode::Fs,
            "big-header" => Mode::BigHeader,
            "edit-error" => Mode::EditError,
            "inspect" => Mode::Inspect,
            "forward" => Mode::Forward,
            "bad-reply" => Mode::BadReply,
            _ => return None,
        })
    }
}

thread_local! {
    // One instance is single-threaded; `init` runs once per instance.
    static MODE: Cell<Option<Mode>> = const { Cell::new(None) };
}

fn edit_error_text(e: &EditError) -> String {
    match e {
        EditError::ProtectedHeader(name) => format!("protected-header: {name}"),
        EditError::Invalid(why) => format!("invalid: {why}"),
        EditError::TooLarge => "too-large".to_string(),
    }
}

fn handle(msg: &Message) -> Result<Verdict, String> {
    let init_mode = MODE.with(|m| m.get()).ok_or("init was not called")?;
    let mode = match msg.header("X-Mode") {
        Some(m) => Mode::parse(&m).ok_or(format!("unknown X-Mode `{m}`"))?,
        None => init_mode,
    };
    match mode {
        Mode::Ok => {
            msg.add_header("X-Ok", "1")
                .map_err(|e| edit_error_text(&e))?;
            Ok(Verdict::Continue)
        }
        Mode::Trap => core::arch::wasm32::unreachable(),
        Mode::Loop => {
            let mut n: u64 = 0;
            loop {
                n = black_box(n.wrapping_add(1));
            }
        }
        Mode::Alloc => {
            let mut hoard: Vec<Vec<u8>> = Vec::new();
            loop {
                hoard.push(vec![0xA5; 1 << 20]);
                black_box(&hoard);
            }
        }
        Mode::Error => Err("asked to fail".to_string()),
        Mode::Reply => Ok(Verdict::Reply(Reply {
            code: 403,
            reason: "Forbidden".to_string(),
            headers: vec![Header {
                name: "X-Why".to_string(),
                value: "misbehave".to_string(),
            }],
        })),
        Mode::EditVia => match msg.remove_header("Via") {
            Ok(n) => Err(format!("removed {n} Via lines")),
            Err(e) => Err(edit_error_text(&e)),
        },
        Mode::Note => {
            weir::sip::log::log(
                weir::sip::types::Level::Info,
                &format!(
                    "note hook={:?} failure={} cancelled={} uri={}",
                    msg.hook(),
                    msg.failure_status(),
                    msg.is_cancelled(),
                    msg.request_uri()
                ),
            );
            Ok(Verdict::Continue)
        }
        Mode::Kv => {
            let n = kv::incr("counter", 1, None).map_err(|e| format!("{e:?}"))?;
            msg.set_header("X-Count", &n.to_string())
                .map_err(|e| edit_error_text(&e))?;
            Ok(Verdict::Continue)
        }
        Mode::Panic => panic!("misbehave asked to panic"),
        Mode::Wasi => {
            // Touches what Rust std pulls from WASI: hash seeds, clocks, env, stdio.
            let mut map = std::collections::HashMap::new();
            map.insert("k", 1);
            let wall = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_err(|e| e.to_string())?;
            let start = std::time::Instant::now();
            let env = std::env::vars().count();
            let args = std::env::args().count();
            println!("misbehave: stdout line");
            eprintln!("misbehave: stderr line");
            let summary = format!(
                "map={} wall={} mono={} env={} args={}",
                map.len(),
                wall.as_secs() > 1_600_000_000,
                start.elapsed().as_secs() < 10,
                env,
                args
            );
            msg.set_header("X-Wasi", &summary)
                .map_err(|e| edit_error_text(&e))?;
            Ok(Verdict::Continue)
        }
        Mode::Fs => match std::fs::read("/etc/passwd") {
            Ok(b) => Err(format!("read {} bytes from the host filesystem", b.len())),
            Err(e) => Err(format!("fs refused: {e}")),
        },
        Mode::EditError => {
            msg.add_header("X-Partial", "1")
                .map_err(|e| edit_error_text(&e))?;
            msg.set_header("From", "<sip:mallory@example.com>;tag=9")
                .map_err(|e| edit_error_text(&e))?;
            Err("failed after editing".to_string())
        }
        Mode::Inspect => {
            let source = msg.source();
            let summary = format!(
                "request={} method={} status={} uri={} src={}:{} transport={:?} listener={} vias={} names={} body={}",
                msg.is_request(),
                msg.method(),
                msg.status(),
                msg.request_uri(),
                source.ip,
                source.port,
                msg.transport(),
                msg.listener(),
                msg.header_values("v").len(),
                msg.header_names().len(),
                msg.body().len(),
            );
            // Several headers in one call: `<length>:<value>` each, LF after each name.
            let joined = msg.header_values_joined("v, X-None,To").replace('\n', "|");
            let summary = format!("{summary} joined={joined}");
            let renamed = msg
                .rename_header("Via", "v")
                .map_err(|e| edit_error_text(&e))?;
            msg.set_request_uri("sip:carol@example.org")
                .map_err(|e| edit_error_text(&e))?;
            msg.set_body(b"v=0\r\n").map_err(|e| edit_error_text(&e))?;
            let headers = msg.headers().len();
            msg.set_header(
                "X-Inspect",
                &format!("{summary} renamed={renamed} headers={headers}"),
            )
            .map_err(|e| edit_error_text(&e))?;
            msg.set_header(
                "X-Context",
                &format!(
                    "hook={:?} failure={} cancelled={}",
                    msg.hook(),
                    msg.failure_status(),
                    msg.is_cancelled()
                ),
            )
            .map_err(|e| edit_error_text(&e))?;
            Ok(Verdict::Continue)
        }
        Mode::Forward => Ok(Verdict::Forward(vec![
            "sip:10.0.0.1:5060;transport=tcp".to_string(),
            "sip:10.0.0.2".to_string(),
        ])),
        Mode::BadReply => Ok(Verdict::Reply(Reply {
            code: 999,
            reason: String::new(),
            headers: Vec::new(),
        })),
        Mode::BigHeader => {
            let value = "x".repeat(8 * 1024);
            let mut added = 0;
            loop {
                match msg.add_header("X-Big", &value) {
                    Ok(()) => added += 1,
                    Err(e) => return Err(format!("{} after {added}", edit_error_text(&e))),
                }
                if added > 1000 {
                    return Err("no size limit".to_string());
                }
            }
        }
    }
}

struct Misbehave;

impl Guest for Misbehave {
    fn init(params: Vec<Param>) -> Result<(), String> {
        let mut mode = None;
        for p in params {
            if p.key == "mode" {
                match p.value {
                    ParamValue::Text(s) => {
                        mode = Some(Mode::parse(&s).ok_or(format!("unknown mode `{s}`"))?)
                    }
                    _ => return Err("param `mode` must be text".to_string()),
                }
            }
        }
        let mode = mode.ok_or("missing param `mode`")?;
        MODE.with(|m| m.set(Some(mode)));
        Ok(())
    }

    fn on_request(msg: &Message) -> Result<Verdict, String> {
        handle(msg)
    }

    fn on_reply(msg: &Message) -> Result<Verdict, String> {
        handle(msg)
    }

    /// Mode `note` logs each binding event; `error` fails it; the others ignore it.
    fn on_binding(event: weir::sip::types::BindingEvent) -> Result<(), String> {
        match MODE.with(|m| m.get()) {
            Some(Mode::Note) => {
                weir::sip::log::log(
                    weir::sip::types::Level::Info,
                    &format!(
                        "note binding={:?} aor={} contact={} instance={}",
                        event.change,
                        event.aor,
                        event.contact,
                        event.instance.as_deref().unwrap_or("-")
                    ),
                );
                Ok(())
            }
            Some(Mode::Error) => Err("asked to fail".to_string()),
            _ => Ok(()),
        }
    }

    fn on_event(event: weir::sip::types::Event) -> Result<(), String> {
        match MODE.with(|m| m.get()) {
            Some(Mode::Note) => {
                weir::sip::log::log(
                    weir::sip::types::Level::Info,
                    &format!("note event={event:?}"),
                );
                Ok(())
            }
            Some(Mode::Error) => Err("asked to fail".to_string()),
            _ => Ok(()),
        }
    }
}

export!(Misbehave);
