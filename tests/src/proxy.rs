//! A running `weir run` process: config written to a scratch directory, log captured
//! from both streams, killed on drop (with the log printed when the test is failing).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crate::paths::{self, TempDir};
use crate::ports;

/// Replaced by the absolute path of the header-ops module in configs given to
/// [`Proxy::start`] and [`Proxy::check`].
pub const HEADER_OPS: &str = "@HEADER_OPS@";
/// Replaced by the absolute path of the misbehave test module.
pub const MISBEHAVE: &str = "@MISBEHAVE@";

/// How long `weir run` may take to print "weir is running" (first start compiles the
/// modules; later starts hit the compile cache).
const START_TIMEOUT: Duration = Duration::from_secs(90);
/// Lines of log kept (the first lines are kept as well, they hold the start-up story).
const LOG_LINES: usize = 20_000;
const LOG_HEAD: usize = 200;

// === Log ===

/// Lines written by a child process on stdout and stderr, in arrival order.
#[derive(Clone, Default)]
pub(crate) struct Log {
    inner: Arc<(Mutex<LogState>, Condvar)>,
}

#[derive(Default)]
struct LogState {
    lines: Vec<String>,
    dropped: usize,
    closed_streams: usize,
}

impl Log {
    /// Read `stream` line by line on a thread.
    pub(crate) fn follow(&self, stream: impl Read + Send + 'static) {
        let log = self.clone();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stream);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => log.push(strip_ansi(&String::from_utf8_lossy(&buf))),
                }
            }
            let (m, cv) = &*log.inner;
            lock(m).closed_streams += 1;
            cv.notify_all();
        });
    }

    fn push(&self, line: String) {
        let (m, cv) = &*self.inner;
        let mut st = lock(m);
        st.lines.push(line.trim_end().to_string());
        if st.lines.len() > LOG_LINES {
            st.lines.remove(LOG_HEAD);
            st.dropped += 1;
        }
        cv.notify_all();
    }

    /// Everything captured so far.
    pub(crate) fn text(&self) -> String {
        let st = lock(&self.inner.0);
        let mut out = String::new();
        for (i, l) in st.lines.iter().enumerate() {
            if i == LOG_HEAD && st.dropped > 0 {
                out.push_str(&format!("[... {} lines dropped ...]\n", st.dropped));
            }
            out.push_str(l);
            out.push('\n');
        }
        out
    }

    /// Wait until a line contains `needle`, the streams close, or `limit` passes.
    pub(crate) fn wait_for(&self, needle: &str, limit: Duration, streams: usize) -> bool {
        let end = Instant::now() + limit;
        let (m, cv) = &*self.inner;
        let mut st = lock(m);
        loop {
            if st.lines.iter().any(|l| l.contains(needle)) {
                return true;
            }
            let left = crate::wait::left(end);
            if left.is_zero() || st.closed_streams >= streams {
                return false;
            }
            st = cv
                .wait_timeout(st, left.min(Duration::from_millis(100)))
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Remove ANSI colour sequences (in case the logger colours despite `NO_COLOR`).
fn strip_ansi(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' && chars.peek() == Some(&'[') {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

// === Config files ===

/// Write `config` (placeholders expanded) into `dir` as `weir.toml`.
fn write_config(dir: &TempDir, config: &str) -> PathBuf {
    let mut text = config.to_string();
    if text.contains(HEADER_OPS) {
        text = text.replace(HEADER_OPS, &toml_path(&paths::header_ops_wasm()));
    }
    if text.contains(MISBEHAVE) {
        text = text.replace(MISBEHAVE, &toml_path(&paths::misbehave_wasm()));
    }
    let path = dir.path().join("weir.toml");
    std::fs::write(&path, text).unwrap_or_else(|e| panic!("cannot write {}: {e}", path.display()));
    path
}

fn toml_path(p: &std::path::Path) -> String {
    p.display()
        .to_string()
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
}

fn weir_command(args: &[&str]) -> Command {
    let mut cmd = Command::new(paths::weir_bin());
    cmd.args(args)
        .env("NO_COLOR", "1")
        .env(
            "RUST_LOG",
            std::env::var("WEIR_TEST_LOG").unwrap_or_else(|_| "info".into()),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// The outcome of a `weir` command run to completion.
#[derive(Debug)]
pub struct Finished {
    /// Exit status.
    pub status: ExitStatus,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl Finished {
    /// Both streams, for messages.
    pub fn output(&self) -> String {
        format!("{}{}", self.stdout, self.stderr)
    }
}

/// Run a command to completion, killing it after `limit`.
fn finish(mut cmd: Command, limit: Duration) -> Finished {
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let out = Log::default();
    let err = Log::default();
    if let Some(s) = child.stdout.take() {
        out.follow(s);
    }
    if let Some(s) = child.stderr.take() {
        err.follow(s);
    }
    let end = Instant::now() + limit;
    let status = loop {
        if let Some(st) = child.try_wait().ok().flatten() {
            break st;
        }
        if Instant::now() >= end {
            let _ = child.kill();
            let st = child.wait();
            panic!(
                "{cmd:?} did not exit within {limit:?} ({st:?})\n{}{}",
                out.text(),
                err.text()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    // Let the readers drain what the process wrote before it exited.
    out.wait_for("\u{0}never", Duration::from_secs(5), 1);
    err.wait_for("\u{0}never", Duration::from_secs(5), 1);
    Finished {
        status,
        stdout: out.text(),
        stderr: err.text(),
    }
}

// === Proxy ===

/// Counters from the proxy's final `stats:` log line (absent counters are zero).
#[derive(Debug, Default, Clone)]
pub struct ProxyStats(pub BTreeMap<String, u64>);

impl ProxyStats {
    /// A counter's value.
    pub fn get(&self, name: &str) -> u64 {
        self.0.get(name).copied().unwrap_or(0)
    }
}

/// A running `weir run`.
pub struct Proxy {
    child: Mutex<Child>,
    log: Log,
    port: u16,
    dir: TempDir,
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("port", &self.port)
            .field("dir", &self.dir.path())
            .finish_non_exhaustive()
    }
}

impl Proxy {
    /// Start `weir run` on `config`, whose listeners the caller put on `port`, and wait
    /// until it says "weir is running". Panics with the log if it does not.
    pub fn start(port: u16, config: &str) -> Proxy {
        match Proxy::try_start(config, port) {
            Ok(p) => p,
            Err(log) => panic!("weir did not start:\n{log}\n--- config ---\n{config}"),
        }
    }

    /// Like [`start`](Self::start), with a fresh port (free on 127.0.0.1 and ::1, UDP
    /// and TCP) passed to `config`; retried with another port if it was taken meanwhile.
    pub fn start_with(config: impl Fn(u16) -> String) -> Proxy {
        let mut last = String::new();
        for _ in 0..5 {
            let port = ports::free_port_dual();
            let text = config(port);
            match Proxy::try_start(&text, port) {
                Ok(p) => return p,
                Err(log) if log.contains("in use") => last = log,
                Err(log) => panic!("weir did not start:\n{log}\n--- config ---\n{text}"),
            }
        }
        panic!("weir did not start, ports kept being taken:\n{last}");
    }

    /// Start (listeners on `port`), or return the log of a failed start.
    pub fn try_start(config: &str, port: u16) -> Result<Proxy, String> {
        let dir = TempDir::new("proxy");
        let path = write_config(&dir, config);
        let mut cmd = weir_command(&["run", "--config", &path.display().to_string()]);
        cmd.current_dir(dir.path());
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", paths::weir_bin().display()));
        let log = Log::default();
        if let Some(s) = child.stdout.take() {
            log.follow(s);
        }
        if let Some(s) = child.stderr.take() {
            log.follow(s);
        }
        if !log.wait_for("weir is running", START_TIMEOUT, 2) {
            let _ = child.kill();
            let status = child.wait();
            return Err(format!("{}(exit: {status:?})", log.text()));
        }
        Ok(Proxy {
            child: Mutex::new(child),
            log,
            port,
            dir,
        })
    }

    /// Run `weir check` on `config`.
    pub fn check(config: &str) -> Finished {
        let dir = TempDir::new("check");
        let path = write_config(&dir, config);
        Proxy::check_file(&path)
    }

    /// Run `weir check` on a config file.
    pub fn check_file(path: &std::path::Path) -> Finished {
        let cmd = weir_command(&["check", "--config", &path.display().to_string()]);
        finish(cmd, START_TIMEOUT)
    }

    /// Run `weir run` on a config that must make it exit; returns how it exited. Panics
    /// if it is still running after `limit`.
    pub fn run_to_exit(config: &str, limit: Duration) -> Finished {
        let dir = TempDir::new("run");
        let path = write_config(&dir, config);
        let cmd = weir_command(&["run", "--config", &path.display().to_string()]);
        finish(cmd, limit)
    }

    /// The port passed to the config by [`start_with`](Self::start_with).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:port` (the UDP and TCP listeners of the usual configs).
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), self.port)
    }

    /// `[::1]:port`.
    pub fn addr6(&self) -> SocketAddr {
        SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), self.port)
    }

    /// The log so far.
    pub fn log(&self) -> String {
        self.log.text()
    }

    /// Wait until the log has a line containing `needle`.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) -> bool {
        self.log.wait_for(needle, limit, 2)
    }

    /// Panic (with the log) unless the process is still running.
    pub fn assert_running(&self) {
        let status = lock(&self.child).try_wait();
        if let Ok(Some(st)) = status {
            panic!("weir exited ({st}):\n{}", self.log());
        }
    }

    /// Stop with SIGTERM (as an operator would) and return the final counters.
    ///
    /// First waits (up to 5 s) until the process catches SIGTERM: Weir used to log
    /// "weir is running" before installing its handler, and a test done within a few
    /// milliseconds then killed it with the signal's default action, losing the final
    /// counters. `stateful.rs` checks that ordering itself with
    /// [`stop_at_once`](Self::stop_at_once).
    pub fn stop(self) -> ProxyStats {
        let pid = lock(&self.child).id();
        crate::wait::until(Duration::from_secs(5), || {
            catches_sigterm(pid).then_some(())
        });
        self.stop_at_once()
    }

    /// Kill with SIGKILL (a crash: no shutdown, no final counters) and wait until the
    /// process is gone.
    pub fn kill9(self) {
        let mut child = lock(&self.child);
        // `Child::kill` is SIGKILL on Unix, sent to this child's PID only.
        let _ = child.kill();
        let _ = child.wait();
    }

    /// Like [`stop`](Self::stop), without first waiting for the SIGTERM handler.
    pub fn stop_at_once(self) -> ProxyStats {
        let pid = lock(&self.child).id();
        let sent = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .is_ok_and(|s| s.success());
        assert!(sent, "cannot signal weir (pid {pid})");
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            let done = lock(&self.child).try_wait().ok().flatten();
            if let Some(st) = done {
                assert!(
                    st.success(),
                    "weir exited with {st} on SIGTERM:\n{}",
                    self.log()
                );
                break;
            }
            assert!(
                Instant::now() < end,
                "weir did not stop on SIGTERM:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        self.log.wait_for("\u{0}never", Duration::from_secs(5), 2);
        let log = self.log();
        let line = log
            .lines()
            .rev()
            .find_map(|l| l.split_once("stats:").map(|(_, s)| s.to_string()))
            .unwrap_or_default();
        ProxyStats(
            line.split_whitespace()
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.to_string(), v.parse().ok()?))
                })
                .collect(),
        )
    }
}

/// Whether process `pid` has a handler for SIGTERM (Linux: bit 15 of `SigCgt` in
/// `/proc/<pid>/status`). True where that cannot be read, so callers do not wait.
fn catches_sigterm(pid: u32) -> bool {
    const SIGTERM: u32 = 15;
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return true;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("SigCgt:"))
        .and_then(|m| u64::from_str_radix(m.trim(), 16).ok())
        .is_none_or(|mask| mask & (1 << (SIGTERM - 1)) != 0)
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let mut child = lock(&self.child);
        let _ = child.kill();
        let _ = child.wait();
        if std::thread::panicking() {
            eprintln!(
                "--- weir log (port {}, {}) ---\n{}--- end of weir log ---",
                self.port,
                self.dir.path().display(),
                self.log.text()
            );
        }
    }
}
