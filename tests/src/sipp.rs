//! sipp as a load generator: a UAS in the background (killed on drop) and a UAC run to
//! completion, with its call counts read from the `-trace_stat` CSV. Both run sipp's
//! built-in scenarios or one of the files in `tests/scenarios/` ([`scenario`]); a UAS
//! given a number of calls exits after them and reports its own counts ([`Uas::finish`]).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::paths::{self, TempDir};
use crate::ports;

/// Transport mode for sipp (`-t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// `-t u1`: UDP, one socket.
    Udp,
    /// `-t t1`: TCP, one connection.
    Tcp,
}

impl Transport {
    fn flag(self) -> &'static str {
        match self {
            Transport::Udp => "u1",
            Transport::Tcp => "t1",
        }
    }
}

fn sipp_addr(a: SocketAddr) -> String {
    match a {
        SocketAddr::V4(a) => a.to_string(),
        SocketAddr::V6(a) => format!("[{}]:{}", a.ip(), a.port()),
    }
}

fn read_lossy(p: &std::path::Path) -> String {
    std::fs::read(p)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// The last `n` lines of `s`.
fn tail(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A scenario file of `tests/scenarios/`; panics if it is missing.
pub fn scenario(name: &str) -> PathBuf {
    let p = paths::repo_root().join("tests/scenarios").join(name);
    assert!(p.is_file(), "sipp scenario {} not found", p.display());
    p
}

/// `-sn <built-in>` or `-sf <file>`.
fn scenario_args(cmd: &mut Command, builtin: &str, file: Option<&PathBuf>) {
    match file {
        Some(f) => cmd.arg("-sf").arg(f),
        None => cmd.args(["-sn", builtin]),
    };
}

// === UAS ===

/// What a UAS runs: sipp's built-in `uas` by default.
#[derive(Debug, Clone, Default)]
pub struct UasOptions {
    /// A scenario file (see [`scenario`]) instead of the built-in `uas`.
    pub scenario: Option<PathBuf>,
    /// Exit after this many calls (`-m`), so that [`Uas::finish`] can report them.
    pub calls: Option<u32>,
    /// More sipp arguments.
    pub args: Vec<String>,
}

/// How a UAS started with [`UasOptions::calls`] ended.
#[derive(Debug)]
pub struct UasResult {
    /// sipp's exit code: 0 means every call succeeded.
    pub exit_code: Option<i32>,
    /// `SuccessfulCall(C)` of the last statistics row.
    pub successful: Option<u64>,
    /// `FailedCall(C)` of the last statistics row.
    pub failed: Option<u64>,
}

/// `sipp -sn uas` running in the background.
#[derive(Debug)]
pub struct Uas {
    child: Child,
    addr: SocketAddr,
    dir: TempDir,
}

impl Uas {
    /// Start a UAS on a free port of `ip` (a loopback address) and wait until it has
    /// bound its socket.
    pub fn start(ip: IpAddr, transport: Transport) -> Uas {
        Uas::start_with(ip, transport, &UasOptions::default())
    }

    /// Start a UAS as [`start`](Self::start) does, running what `opts` says.
    pub fn start_with(ip: IpAddr, transport: Transport, opts: &UasOptions) -> Uas {
        assert!(ip.is_loopback(), "sipp UAS must listen on loopback");
        let mut last = String::new();
        for _ in 0..5 {
            let port = if ip.is_ipv6() {
                ports::free_port_dual()
            } else {
                ports::free_port()
            };
            let dir = TempDir::new("sipp-uas");
            let out = dir.path().join("uas.out");
            let file = std::fs::File::create(&out).expect("sipp output file");
            let err = file.try_clone().expect("sipp output file");
            let mut cmd = Command::new(paths::sipp_bin());
            cmd.current_dir(dir.path());
            scenario_args(&mut cmd, "uas", opts.scenario.as_ref());
            if let Some(n) = opts.calls {
                cmd.args(["-m", &n.to_string(), "-trace_stat", "-stf"])
                    .arg(dir.path().join("stat.csv"));
            }
            let mut child = cmd
                .args(["-nostdin", "-i", &ip.to_string()])
                .args(["-p", &port.to_string(), "-t", transport.flag()])
                .args(&opts.args)
                .args(["-trace_err", "-error_file"])
                .arg(dir.path().join("errors.log"))
                .stdin(Stdio::null())
                .stdout(file)
                .stderr(err)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run sipp (is it installed?): {e}"));
            let bound = crate::wait::until(Duration::from_secs(10), || {
                if child.try_wait().ok().flatten().is_some() {
                    return Some(false);
                }
                let up = match transport {
                    Transport::Udp => ports::udp_in_use(ip, port),
                    Transport::Tcp => ports::tcp_in_use(ip, port),
                };
                up.then_some(true)
            });
            if bound == Some(true) {
                return Uas {
                    child,
                    addr: SocketAddr::new(ip, port),
                    dir,
                };
            }
            let _ = child.kill();
            let _ = child.wait();
            last = read_lossy(&out);
        }
        panic!("sipp UAS did not start:\n{}", tail(&last, 40));
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `sip:host:port` of the UAS, for `next_hop`.
    pub fn uri(&self) -> String {
        format!("sip:{}", sipp_addr(self.addr))
    }

    /// Wait for a UAS started with [`UasOptions::calls`] to exit after its calls, and
    /// read its counts; panics (with its log) if it is still running after `limit`.
    pub fn finish(&mut self, limit: Duration) -> UasResult {
        let status = crate::wait::until(limit, || self.child.try_wait().ok().flatten());
        let Some(status) = status else {
            panic!(
                "sipp UAS {} still running after {limit:?}:\n{}",
                self.addr,
                self.log()
            );
        };
        let csv = read_lossy(&self.dir.path().join("stat.csv"));
        UasResult {
            exit_code: status.code(),
            successful: stat_column(&csv, "SuccessfulCall(C)"),
            failed: stat_column(&csv, "FailedCall(C)"),
        }
    }

    /// Its screen output and error log, for failure messages.
    pub fn log(&self) -> String {
        format!(
            "{}\n--- uas errors ---\n{}",
            tail(&read_lossy(&self.dir.path().join("uas.out")), 60),
            tail(&read_lossy(&self.dir.path().join("errors.log")), 60)
        )
    }
}

impl Drop for Uas {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- sipp UAS {} ---\n{}", self.addr, self.log());
        }
    }
}

// === UAC ===

/// A `sipp -sn uac` run.
#[derive(Debug, Clone)]
pub struct Uac {
    /// Where calls are sent (the proxy).
    pub remote: SocketAddr,
    /// Transport.
    pub transport: Transport,
    /// Calls to place (`-m`).
    pub calls: u32,
    /// Calls per second (`-r`).
    pub rate: u32,
    /// Global timeout (`-timeout`, with `-timeout_error`).
    pub timeout: Duration,
    /// Keep a call going when a message arrives out of scenario order (e.g. a 180
    /// after the 200) instead of aborting it: `-default_behaviors all,-abortunexp`.
    /// UDP allows reordering, and a proxy with several receive threads may reorder
    /// datagrams that arrive back to back.
    pub tolerate_reordering: bool,
    /// A scenario file (see [`scenario`]) instead of the built-in `uac`.
    pub scenario: Option<PathBuf>,
    /// More sipp arguments (e.g. `-lost 10`).
    pub args: Vec<String>,
}

impl Uac {
    /// `calls` calls at `rate` cps to `remote` over `transport`, 30 s timeout.
    pub fn new(remote: SocketAddr, transport: Transport, calls: u32, rate: u32) -> Uac {
        Uac {
            remote,
            transport,
            calls,
            rate,
            timeout: Duration::from_secs(30),
            tolerate_reordering: false,
            scenario: None,
            args: Vec::new(),
        }
    }

    /// Run to completion.
    pub fn run(&self) -> UacResult {
        assert!(
            self.remote.ip().is_loopback(),
            "sipp UAC must call loopback"
        );
        let ip = self.remote.ip();
        let dir = TempDir::new("sipp-uac");
        let stat = dir.path().join("stat.csv");
        let errors = dir.path().join("errors.log");
        let screen = dir.path().join("screen.log");
        let port = if ip.is_ipv6() {
            ports::free_port_dual()
        } else {
            ports::free_port()
        };
        let started = Instant::now();
        let mut cmd = Command::new(paths::sipp_bin());
        if self.tolerate_reordering {
            cmd.args(["-default_behaviors", "all,-abortunexp"]);
        }
        cmd.current_dir(dir.path()).arg(sipp_addr(self.remote));
        scenario_args(&mut cmd, "uac", self.scenario.as_ref());
        let out = cmd
            .args(["-nostdin", "-i", &ip.to_string()])
            .args(["-p", &port.to_string(), "-t", self.transport.flag()])
            .args(["-m", &self.calls.to_string(), "-r", &self.rate.to_string()])
            .args(["-timeout", &format!("{}s", self.timeout.as_secs().max(1))])
            .arg("-timeout_error")
            .args(["-trace_stat", "-stf"])
            .arg(&stat)
            .args(["-trace_err", "-error_file"])
            .arg(&errors)
            .args(["-trace_screen", "-screen_file"])
            .arg(&screen)
            .args(&self.args)
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot run sipp (is it installed?): {e}"));
        let elapsed = started.elapsed();
        let csv = read_lossy(&stat);
        let count = |col: &str| stat_column(&csv, col);
        UacResult {
            exit_code: out.status.code(),
            successful: count("SuccessfulCall(C)"),
            failed: count("FailedCall(C)"),
            retransmissions: count("Retransmissions(C)"),
            elapsed,
            report: format!(
                "sipp UAC exit {:?} after {elapsed:?}\n--- screen ---\n{}\n--- errors ---\n{}\n--- stderr ---\n{}",
                out.status.code(),
                tail(&read_lossy(&screen), 40),
                tail(&read_lossy(&errors), 60),
                tail(&String::from_utf8_lossy(&out.stderr), 20),
            ),
            stat_file: stat,
            _dir: dir,
        }
    }
}

/// Read a cumulative counter from the last row of sipp's `-trace_stat` CSV.
fn stat_column(csv: &str, col: &str) -> Option<u64> {
    let mut lines = csv.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next()?.split(';').collect();
    let idx = header.iter().position(|h| h.trim() == col)?;
    let last = lines.next_back()?;
    last.split(';').nth(idx)?.trim().parse().ok()
}

/// What a UAC run did.
#[derive(Debug)]
pub struct UacResult {
    /// sipp's exit code: 0 means every call succeeded.
    pub exit_code: Option<i32>,
    /// `SuccessfulCall(C)` of the last statistics row.
    pub successful: Option<u64>,
    /// `FailedCall(C)` of the last statistics row.
    pub failed: Option<u64>,
    /// `Retransmissions(C)` of the last statistics row: requests sipp sent again
    /// because no response came in time (its own timers, not proxy-triggered resends).
    pub retransmissions: Option<u64>,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Screen, errors and stderr, for failure messages.
    pub report: String,
    /// The statistics file.
    pub stat_file: PathBuf,
    _dir: TempDir,
}

#[cfg(test)]
mod tests {
    #[test]
    fn reads_the_last_row_of_a_stat_column() {
        let csv = "A;SuccessfulCall(C);FailedCall(C);\n1;0;0;\n2;199;1;\n";
        assert_eq!(super::stat_column(csv, "SuccessfulCall(C)"), Some(199));
        assert_eq!(super::stat_column(csv, "FailedCall(C)"), Some(1));
        assert_eq!(super::stat_column(csv, "Nope"), None);
        assert_eq!(super::stat_column("", "FailedCall(C)"), None);
    }
}
