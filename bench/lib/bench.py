#!/usr/bin/env python3
"""Weir vs Kamailio: the same SIPp load through each proxy, on one machine, in one run.

Called by bench/run (which builds Weir and installs Kamailio/SIPp first). Standard
library only. For each proxy in turn it:

  1. starts the proxy and waits until it answers an OPTIONS keep-alive;
  2. checks it edits an INVITE as the other does (X-Debug-* removed, X-Weir appended,
     Max-Forwards decremented, Record-Route and Via added) and answers Max-Forwards: 0
     with 483;
  3. starts a SIPp UAS behind it and counts the messages of one traced call;
  4. max-rate test: a closed loop of SIPp calls (-l concurrent calls, -r far above what
     the machine can do) for --duration seconds; calls/s from SIPp's per-second stats;
  5. fixed-rate test: --rate calls/s for --duration seconds; the proxy's CPU time
     (utime+stime of every process and thread of it, from /proc) over the test, per
     relayed message.

Then it prints a table and writes bench/results/<date>.md.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field, asdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"

# ---------------------------------------------------------------------------------------
# process handling


def _die_with_parent():
    """Child processes get SIGTERM if this script dies, even by SIGKILL."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


class Procs:
    """Every process this script starts, each in its own process group."""

    def __init__(self):
        self.live: list[tuple[str, subprocess.Popen]] = []

    def start(self, name, argv, log_path, env=None, cwd=None) -> subprocess.Popen:
        log = open(log_path, "wb")
        p = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=_die_with_parent,
        )
        log.close()
        self.live.append((name, p))
        return p

    def stop(self, p: subprocess.Popen, sig=signal.SIGTERM, timeout=5.0):
        if p.poll() is None:
            try:
                os.killpg(p.pid, sig)
            except ProcessLookupError:
                pass
            try:
                p.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(p.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                p.wait(5)
        # Leftover children of the group (Kamailio's workers) go too.
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        self.live = [(n, q) for (n, q) in self.live if q is not p]

    def stop_all(self):
        for _, p in list(reversed(self.live)):
            self.stop(p, timeout=3.0)


PROCS = Procs()


def on_signal(signum, _frame):
    PROCS.stop_all()
    print(f"\nbench: interrupted (signal {signum}), everything stopped", file=sys.stderr)
    sys.exit(130)


# ---------------------------------------------------------------------------------------
# /proc accounting


def _stat(pid: int):
    """(ppid, utime, stime) in ticks, or None if gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm may hold spaces and parentheses: split after the last ')'.
    rest = raw[raw.rindex(")") + 2 :].split()
    return int(rest[1]), int(rest[11]), int(rest[12])


def process_tree(root: int) -> list[int]:
    """root and all its descendants."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            s = _stat(int(d))
            if s:
                children.setdefault(s[0], []).append(int(d))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


@dataclass
class Cpu:
    user: float = 0.0  # seconds
    sys: float = 0.0
    procs: int = 0
    threads: int = 0

    @property
    def total(self) -> float:
        return self.user + self.sys

    def __sub__(self, o: "Cpu") -> "Cpu":
        return Cpu(self.user - o.user, self.sys - o.sys, self.procs, self.threads)


def cpu_of_tree(root: int) -> Cpu:
    """utime+stime of a process and all its descendants. /proc/PID/stat of a process
    already sums all its threads (live and exited)."""
    c = Cpu()
    for pid in process_tree(root):
        s = _stat(pid)
        if not s:
            continue
        c.user += s[1] / CLK_TCK
        c.sys += s[2] / CLK_TCK
        c.procs += 1
        try:
            c.threads += len(os.listdir(f"/proc/{pid}/task"))
        except OSError:
            pass
    return c


def machine_busy() -> tuple[float, float]:
    """(busy, total) jiffies of all CPUs, from /proc/stat."""
    f = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = f[3] + f[4]
    total = sum(f[:8])
    return total - idle, total


# ---------------------------------------------------------------------------------------
# SIP helpers (a few hand-made messages for the checks; SIPp makes the load)


def udp_port_free(port: int) -> bool:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        s.bind((HOST, port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def sip_request(method, ruri, port_from, extra=(), max_forwards="70", body=""):
    tag = os.urandom(4).hex()
    lines = [
        f"{method} {ruri} SIP/2.0",
        f"Via: SIP/2.0/UDP {HOST}:{port_from};branch=z9hG4bK-bench-{tag};rport",
        f"Max-Forwards: {max_forwards}",
        f"From: <sip:bench@{HOST}>;tag={tag}",
        f"To: <{ruri}>",
        f"Call-ID: bench-{tag}@{HOST}",
        f"CSeq: 1 {method}",
        f"Contact: <sip:bench@{HOST}:{port_from}>",
        *extra,
        f"Content-Length: {len(body)}",
        "",
        body,
    ]
    return "\r\n".join(lines).encode()


def exchange(port, data, timeout=1.0):
    """Send to the proxy, return the first datagram back (or None)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((HOST, 0))
    s.settimeout(timeout)
    try:
        s.sendto(data(s.getsockname()[1]), (HOST, port))
        return s.recv(65535).decode(errors="replace")
    except (socket.timeout, ConnectionRefusedError):
        return None
    finally:
        s.close()


def wait_ready(port, proc, timeout=30.0) -> bool:
    """Until the proxy answers an OPTIONS to itself with 200."""
    end = time.time() + timeout
    while time.time() < end:
        if proc.poll() is not None:
            return False
        r = exchange(port, lambda p: sip_request("OPTIONS", f"sip:{HOST}:{port}", p), 0.3)
        if r and r.startswith("SIP/2.0 200"):
            return True
        time.sleep(0.1)
    return False


def header_lines(msg: str) -> list[str]:
    head = msg.split("\r\n\r\n", 1)[0]
    return head.split("\r\n")[1:]


def check_edits(proxy_port, uas_port) -> dict:
    """Send one INVITE with X-Debug-* headers; capture what reaches the next hop."""
    uas = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    uas.bind((HOST, uas_port))
    uas.settimeout(2.0)
    result = {"ok": False, "forwarded": None, "problems": []}
    try:
        extra = ["X-Debug-Trace: 7f3a", "x-debug-lower: yes", "Subject: bench check"]
        sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 4000 RTP/AVP 0\r\n"
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((HOST, 0))
        p = s.getsockname()[1]
        s.sendto(
            sip_request(
                "INVITE",
                f"sip:service@{HOST}:{proxy_port}",
                p,
                extra + ["Content-Type: application/sdp"],
                body=sdp,
            ),
            (HOST, proxy_port),
        )
        try:
            fwd = uas.recv(65535).decode(errors="replace")
        except socket.timeout:
            result["problems"].append("INVITE not forwarded to the next hop within 2 s")
            return result
        finally:
            s.close()
        result["forwarded"] = fwd
        hl = header_lines(fwd)
        names = [h.split(":", 1)[0].strip().lower() for h in hl]
        if any(n.startswith("x-debug-") for n in names):
            result["problems"].append("X-Debug-* header still present")
        if "X-Weir: stateless" not in hl:
            result["problems"].append("X-Weir: stateless not appended")
        if not any(re.fullmatch(r"max-forwards:\s*69", h, re.I) for h in hl):
            result["problems"].append("Max-Forwards not decremented to 69")
        if names.count("via") + names.count("v") < 2:
            result["problems"].append("no Via added")
        if "record-route" not in names:
            result["problems"].append("no Record-Route on the initial INVITE")
        # Max-Forwards: 0 -> 483
        r = exchange(
            proxy_port,
            lambda p: sip_request("INVITE", f"sip:service@{HOST}:{proxy_port}", p, max_forwards="0"),
        )
        result["mf0"] = r.split("\r\n", 1)[0] if r else None
        if not (r and r.startswith("SIP/2.0 483")):
            result["problems"].append(f"Max-Forwards: 0 answered {result['mf0']!r}, not 483")
        result["ok"] = not result["problems"]
        return result
    finally:
        uas.close()


# ---------------------------------------------------------------------------------------
# SIPp


def sipp_stats(csv_path: Path) -> list[dict]:
    """Rows of a SIPp -trace_stat file, with 't' = epoch of CurrentTime."""
    if not csv_path.exists():
        return []
    lines = csv_path.read_text(errors="replace").splitlines()
    if len(lines) < 2:
        return []
    head = lines[0].rstrip(";").split(";")
    rows = []
    for line in lines[1:]:
        vals = line.rstrip(";").split(";")
        if len(vals) < len(head):
            continue
        r = dict(zip(head, vals))
        try:
            r["t"] = float(r["CurrentTime"].split("\t")[-1])
        except (KeyError, ValueError):
            continue
        rows.append(r)
    return rows


def ival(row, key) -> int:
    try:
        return int(float(row.get(key, "0")))
    except ValueError:
        return 0


def short(first_line: str) -> str:
    """'-> INVITE sip:x SIP/2.0' -> '-> INVITE'; '<- SIP/2.0 180 Ringing' -> '<- 180'."""
    parts = first_line.split()
    if len(parts) >= 3 and parts[1] == "SIP/2.0":
        return f"{parts[0]} {parts[2]}"
    return " ".join(parts[:2])


def count_traced_messages(path: Path) -> tuple[int, list[str]]:
    """Messages a SIPp -trace_msg file shows sent and received, and their first lines."""
    text = path.read_text(errors="replace") if path.exists() else ""
    firsts = []
    blocks = re.split(r"^-{20,}.*$", text, flags=re.M)
    for b in blocks:
        m = re.search(r"message (sent|received).*?:\s*\n\s*\n(.+)", b)
        if m:
            first = m.group(2).strip()
            firsts.append(("-> " if m.group(1) == "sent" else "<- ") + first)
    return len(firsts), firsts


@dataclass
class Proxy:
    name: str
    port: int
    argv: list[str]
    version: str
    log: Path
    proc: subprocess.Popen | None = None


@dataclass
class Result:
    proxy: str
    version: str = ""
    msgs_per_call: int = 0
    call_trace: list[str] = field(default_factory=list)
    edits: dict = field(default_factory=dict)
    # max rate
    max_cps: float = 0.0
    max_mps: float = 0.0
    max_fail_pct: float = 0.0
    max_retrans: int = 0
    max_window_s: float = 0.0
    max_proxy_cpu_pct: float = 0.0  # % of one core
    max_machine_busy_pct: float = 0.0
    max_limit: int = 0
    max_attempts: list = field(default_factory=list)
    # fixed rate
    fixed_rate: int = 0
    fixed_calls_ok: int = 0
    fixed_calls_failed: int = 0
    fixed_retrans: int = 0
    fixed_wall_s: float = 0.0
    fixed_cps: float = 0.0
    fixed_messages: int = 0
    fixed_cpu_user_s: float = 0.0
    fixed_cpu_sys_s: float = 0.0
    fixed_us_per_msg: float = 0.0
    fixed_proxy_cpu_pct: float = 0.0
    fixed_uac_cpu_pct: float = 0.0
    fixed_uas_cpu_pct: float = 0.0
    fixed_machine_busy_pct: float = 0.0
    proxy_procs: int = 0
    proxy_threads: int = 0
    profile: str = ""
    commands: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)


class Bench:
    def __init__(self, args):
        self.a = args
        stamp = dt.datetime.now().strftime("%Y-%m-%d-%H%M%S")
        self.stamp = stamp
        self.run_dir = Path(args.work_dir or f"/tmp/weir-bench-{stamp}")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.sipp = shutil.which("sipp") or "sipp"
        self.uac_xml = BENCH / "sipp" / "uac.xml"

    # -- helpers ----------------------------------------------------------------------

    def say(self, msg):
        print(f"\033[1m==> {msg}\033[0m", flush=True)

    def uac_argv(self, proxy_port, extra, csv=None, trace=None):
        argv = [
            self.sipp, "-sf", str(self.uac_xml), f"{HOST}:{proxy_port}",
            "-s", "service", "-i", HOST, "-p", str(self.a.uac_port),
            "-d", "0", "-nostdin", "-trace_err",
            "-error_file", str(self.run_dir / f"uac-errors-{proxy_port}.log"),
        ]
        if csv:
            argv += ["-trace_stat", "-stf", str(csv), "-fd", "1"]
        if trace:
            argv += ["-trace_msg", "-message_file", str(trace)]
        return argv + extra

    def uas_argv(self):
        return [
            self.sipp, "-sn", "uas", "-i", HOST, "-p", str(self.a.uas_port), "-nostdin",
        ]

    def run_sipp(self, name, argv, timeout) -> int:
        p = PROCS.start(name, argv, self.run_dir / f"{name}.out")
        try:
            return p.wait(timeout)
        except subprocess.TimeoutExpired:
            PROCS.stop(p, signal.SIGUSR1, timeout=10)
            return -1

    # -- proxies ----------------------------------------------------------------------

    def weir_proxy(self) -> Proxy:
        weir = ROOT / "target" / "release" / "weir"
        if not weir.exists():
            sys.exit(f"bench: {weir} not found: run scripts/setup")
        wasm = ROOT / "target" / "wasm32-wasip2" / "release" / "header_ops.wasm"
        if not wasm.exists():
            sys.exit(f"bench: {wasm} not found: run scripts/setup")
        text = (BENCH / "weir" / "stateless.toml").read_text()
        text = text.replace(f'"{HOST}:5160"', f'"{HOST}:{self.a.weir_port}"')
        text = text.replace(f'"sip:{HOST}:5170"', f'"sip:{HOST}:{self.a.uas_port}"')
        text = text.replace('"../../target/wasm32-wasip2/release/header_ops.wasm"', json.dumps(str(wasm)))
        cfg = self.run_dir / "weir.toml"
        cfg.write_text(text)
        chk = subprocess.run([str(weir), "check", "--config", str(cfg)], capture_output=True, text=True)
        if chk.returncode != 0:
            sys.exit(f"bench: weir check failed:\n{chk.stdout}{chk.stderr}")
        ver = subprocess.run([str(weir), "version"], capture_output=True, text=True).stdout.strip()
        return Proxy("weir", self.a.weir_port, [str(weir), "run", "--config", str(cfg)], ver,
                     self.run_dir / "weir.log")

    def kamailio_proxy(self) -> Proxy:
        kam = shutil.which("kamailio") or "/usr/sbin/kamailio"
        if not Path(kam).exists():
            sys.exit("bench: kamailio not found (bench/run installs it with apt-get)")
        rundir = self.run_dir / "kamailio-run"
        rundir.mkdir(exist_ok=True)
        cfg = BENCH / "kamailio" / "stateless.cfg"
        defs = ["-A", f"PROXY_PORT={self.a.kamailio_port}", "-A", f"UAS_PORT={self.a.uas_port}"]
        chk = subprocess.run([kam, "-c", "-f", str(cfg), "-Y", str(rundir), *defs],
                             capture_output=True, text=True)
        if chk.returncode != 0:
            sys.exit(f"bench: kamailio -c failed:\n{chk.stdout}{chk.stderr}")
        ver = subprocess.run([kam, "-v"], capture_output=True, text=True).stdout.splitlines()
        ver = ver[0].replace("version: ", "") if ver else "kamailio ?"
        argv = [kam, "-DD", "-E", "-f", str(cfg), "-Y", str(rundir), "-m", "64", "-M", "8", *defs]
        return Proxy("kamailio", self.a.kamailio_port, argv, ver, self.run_dir / "kamailio.log")

    def start_proxy(self, px: Proxy):
        for port in (px.port, self.a.uas_port, self.a.uac_port):
            if not udp_port_free(port):
                sys.exit(f"bench: UDP {HOST}:{port} is in use (ss -ulpn | grep :{port}); "
                         "free it or choose other ports (--help)")
        env = dict(os.environ)
        px.proc = PROCS.start(px.name, px.argv, px.log, env=env, cwd=str(ROOT))
        if not wait_ready(px.port, px.proc):
            tail = px.log.read_text(errors="replace")[-3000:] if px.log.exists() else ""
            PROCS.stop(px.proc)
            sys.exit(f"bench: {px.name} did not start (no 200 to OPTIONS on {HOST}:{px.port} "
                     f"within 30 s). Command: {shlex.join(px.argv)}\nLog tail:\n{tail}")

    # -- tests ------------------------------------------------------------------------

    def max_rate(self, px: Proxy, res: Result):
        """Closed loop: at most LIMIT calls in progress, new calls as fast as SIPp can.
        If failures reach 0.1%, halve LIMIT and try again (at most 3 times)."""
        limit = self.a.limit
        for attempt in range(3):
            csv = self.run_dir / f"{px.name}-max-l{limit}.csv"
            argv = self.uac_argv(px.port, ["-r", str(self.a.max_offered), "-l", str(limit)], csv=csv)
            res.commands[f"max-rate (-l {limit})"] = shlex.join(argv)
            p = PROCS.start(f"{px.name}-uac-max", argv, self.run_dir / f"{px.name}-uac-max-l{limit}.out")
            t_start = time.time()
            time.sleep(self.a.warmup)
            c0, m0, t0 = cpu_of_tree(px.proc.pid), machine_busy(), time.time()
            time.sleep(self.a.duration)
            c1, m1, t1 = cpu_of_tree(px.proc.pid), machine_busy(), time.time()
            PROCS.stop(p, signal.SIGUSR1, timeout=8)  # SIGUSR1: no new calls, finish the rest
            rows = sipp_stats(csv)
            win = [r for r in rows if t0 - 0.6 <= r["t"] <= t1 + 0.6]
            if len(win) < 2:
                res.warnings.append(f"max-rate: SIPp wrote too few stats rows ({len(rows)})")
                return
            a, b = win[0], win[-1]
            span = b["t"] - a["t"]
            ok = ival(b, "SuccessfulCall(C)") - ival(a, "SuccessfulCall(C)")
            failed_total = ival(rows[-1], "FailedCall(C)")
            made_total = ival(rows[-1], "OutgoingCall(C)")
            fail_pct = 100.0 * failed_total / max(1, made_total)
            cps = ok / span if span > 0 else 0.0
            attempt_info = {
                "limit": limit, "cps": round(cps, 1), "failed": failed_total, "calls": made_total,
                "fail_pct": round(fail_pct, 3), "retrans": ival(rows[-1], "Retransmissions(C)"),
                "since_start_s": round(t0 - t_start, 1),
            }
            res.max_attempts.append(attempt_info)
            print(f"    max-rate -l {limit}: {cps:8.0f} calls/s, {failed_total} failed of {made_total} "
                  f"({fail_pct:.3f}%), {attempt_info['retrans']} retransmissions", flush=True)
            if fail_pct < 0.1 or attempt == 2:
                res.max_cps = cps
                res.max_mps = cps * res.msgs_per_call
                res.max_fail_pct = fail_pct
                res.max_retrans = attempt_info["retrans"]
                res.max_window_s = span
                res.max_limit = limit
                res.max_proxy_cpu_pct = 100.0 * (c1 - c0).total / (t1 - t0)
                res.max_machine_busy_pct = 100.0 * (m1[0] - m0[0]) / max(1, m1[1] - m0[1])
                if fail_pct >= 0.1:
                    res.warnings.append(f"max-rate: {fail_pct:.3f}% failed calls even at -l {limit}")
                return
            limit = max(10, limit // 2)
            time.sleep(4.5)  # let the UAS's 4 s timewait drain

    def fixed_rate(self, px: Proxy, res: Result, uas: subprocess.Popen, profile=False):
        rate = self.a.rate
        calls = int(rate * self.a.duration)
        tag = "profile" if profile else "fixed"
        csv = self.run_dir / f"{px.name}-{tag}.csv"
        argv = self.uac_argv(px.port, ["-r", str(rate), "-m", str(calls)], csv=csv)
        if not profile:
            res.commands["fixed-rate"] = shlex.join(argv)
        perf = None
        if profile:
            data = self.run_dir / f"{px.name}.perf.data"
            perf_argv = ["perf", "record", "-e", "cpu-clock", "-F", "1999", "-g",
                         "-o", str(data), "-p", str(px.proc.pid)]
            res.commands["profile"] = shlex.join(perf_argv)
            perf = PROCS.start("perf", perf_argv, self.run_dir / "perf-record.out")
            time.sleep(0.5)
        c0, m0, t0 = cpu_of_tree(px.proc.pid), machine_busy(), time.time()
        p = PROCS.start(f"{px.name}-uac-{tag}", argv, self.run_dir / f"{px.name}-uac-{tag}.out")
        uas0 = cpu_of_tree(uas.pid)
        uac_cpu = Cpu()
        # Reap the UAC ourselves: wait4 gives its exact CPU time.
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid == p.pid:
                p.returncode = os.waitstatus_to_exitcode(status)
                uac_cpu = Cpu(ru.ru_utime, ru.ru_stime, 1, 1)
                break
            time.sleep(0.1)
            if time.time() - t0 > self.a.duration * 3 + 30:
                res.warnings.append(f"{tag}: SIPp did not finish in time, stopped")
                PROCS.stop(p, signal.SIGUSR1, timeout=20)
                break
        c1, m1, t1 = cpu_of_tree(px.proc.pid), machine_busy(), time.time()
        uas1 = cpu_of_tree(uas.pid)
        if perf:
            PROCS.stop(perf, signal.SIGINT, timeout=20)
            report = subprocess.run(
                ["perf", "report", "-i", str(self.run_dir / f"{px.name}.perf.data"), "--stdio",
                 "--no-children", "--sort", "dso,symbol", "--percent-limit", "0.7", "-g", "none"],
                capture_output=True, text=True)
            lines = [l for l in report.stdout.splitlines() if l and not l.startswith("#")]
            res.profile = "\n".join(lines[:40])
            return
        PROCS.live = [(n, q) for (n, q) in PROCS.live if q is not p]
        rows = sipp_stats(csv)
        last = rows[-1] if rows else {}
        d = c1 - c0
        wall = t1 - t0
        res.fixed_rate = rate
        res.fixed_calls_ok = ival(last, "SuccessfulCall(C)")
        res.fixed_calls_failed = ival(last, "FailedCall(C)")
        res.fixed_retrans = ival(last, "Retransmissions(C)")
        res.fixed_wall_s = wall
        res.fixed_cps = res.fixed_calls_ok / wall if wall > 0 else 0
        res.fixed_messages = res.fixed_calls_ok * res.msgs_per_call
        res.fixed_cpu_user_s = d.user
        res.fixed_cpu_sys_s = d.sys
        res.fixed_us_per_msg = 1e6 * d.total / max(1, res.fixed_messages)
        res.fixed_proxy_cpu_pct = 100.0 * d.total / wall
        res.fixed_uac_cpu_pct = 100.0 * uac_cpu.total / wall
        res.fixed_uas_cpu_pct = 100.0 * (uas1 - uas0).total / wall
        res.fixed_machine_busy_pct = 100.0 * (m1[0] - m0[0]) / max(1, m1[1] - m0[1])
        res.proxy_procs, res.proxy_threads = c1.procs, c1.threads
        total = res.fixed_calls_ok + res.fixed_calls_failed
        fail_pct = 100.0 * res.fixed_calls_failed / max(1, total)
        if total < calls or fail_pct >= 0.1:
            res.warnings.append(
                f"fixed-rate: {res.fixed_calls_ok} of {calls} calls succeeded ({fail_pct:.3f}% failed): "
                "lower --rate")
        if res.fixed_retrans > calls * 0.001:
            res.warnings.append(f"fixed-rate: {res.fixed_retrans} retransmissions (messages lost)")
        print(f"    fixed-rate {rate}/s: {res.fixed_calls_ok} calls in {wall:.1f} s, "
              f"{res.fixed_calls_failed} failed, {res.fixed_retrans} retrans; proxy CPU "
              f"{d.user:.2f} s user + {d.sys:.2f} s sys = {res.fixed_us_per_msg:.2f} us/message "
              f"({res.fixed_proxy_cpu_pct:.0f}% of a core)", flush=True)

    def trace_one_call(self, px: Proxy, res: Result):
        trace = self.run_dir / f"{px.name}-onecall-msgs.log"
        argv = self.uac_argv(px.port, ["-m", "1"], trace=trace)
        res.commands["one traced call"] = shlex.join(argv)
        rc = self.run_sipp(f"{px.name}-uac-onecall", argv, timeout=15)
        n, firsts = count_traced_messages(trace)
        res.msgs_per_call, res.call_trace = n, firsts
        if rc != 0:
            sys.exit(f"bench: one call through {px.name} failed (sipp exit {rc}); "
                     f"see {self.run_dir}/{px.name}-uac-onecall.out and {trace}")

    def bench_proxy(self, px: Proxy) -> Result:
        res = Result(px.name, px.version)
        self.say(f"{px.name}: starting ({shlex.join(px.argv)})")
        res.commands["proxy"] = shlex.join(px.argv)
        self.start_proxy(px)
        res.edits = check_edits(px.port, self.a.uas_port)
        if not res.edits["ok"]:
            res.warnings.append("edit check: " + "; ".join(res.edits["problems"]))
            print(f"    edit check FAILED: {res.edits['problems']}", flush=True)
        else:
            print("    edit check ok (X-Debug-* removed, X-Weir appended, Max-Forwards 69, "
                  "Record-Route, 483 at Max-Forwards 0)", flush=True)
        uas_log = self.run_dir / f"{px.name}-uas.out"
        uas = PROCS.start(f"{px.name}-uas", self.uas_argv(), uas_log)
        res.commands["uas"] = shlex.join(self.uas_argv())
        time.sleep(0.5)
        if uas.poll() is not None:
            sys.exit(f"bench: SIPp UAS did not start, see {uas_log}")
        try:
            self.trace_one_call(px, res)
            print(f"    one call = {res.msgs_per_call} messages relayed: "
                  + ", ".join(short(f) for f in res.call_trace), flush=True)
            self.max_rate(px, res)
            time.sleep(4.5)  # UAS timewait
            self.fixed_rate(px, res, uas)
            if self.a.profile and px.name == "weir":
                time.sleep(2)
                self.fixed_rate(px, res, uas, profile=True)
            cur = cpu_of_tree(px.proc.pid)
            res.proxy_procs, res.proxy_threads = cur.procs, cur.threads
        finally:
            PROCS.stop(uas)
            PROCS.stop(px.proc, signal.SIGTERM, timeout=10)
        return res


# ---------------------------------------------------------------------------------------
# reporting


def sh(cmd) -> str:
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True, timeout=10).stdout.strip()
    except subprocess.SubprocessError:
        return ""


def machine_info(results) -> dict:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().split("\n")[0].split()[1]
    commit = sh(f"git -C {ROOT} rev-parse --short HEAD") or "?"
    dirty = sh(f"git -C {ROOT} status --porcelain --untracked-files=no")
    untracked = sh(f"git -C {ROOT} status --porcelain") != dirty
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(int(mem) / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": sh(". /etc/os-release 2>/dev/null && echo \"$PRETTY_NAME\""),
        "commit": commit + (" (modified)" if dirty else "") + (" (+ untracked files)" if untracked else ""),
        "versions": {r.proxy: r.version for r in results},
        "sipp": sh("sipp -v 2>&1 | grep -m1 SIPp").strip(),
        "rustc": sh("rustc --version"),
    }


def ratio(a, b):
    return a / b if b else float("nan")


def table(results: list[Result]) -> str:
    by = {r.proxy: r for r in results}
    cols = [r.proxy for r in results]
    both = "weir" in by and "kamailio" in by
    rows = [
        ("messages relayed per call", lambda r: f"{r.msgs_per_call}", None),
        ("max rate: calls/s", lambda r: f"{r.max_cps:,.0f}", "max_cps"),
        ("max rate: messages/s", lambda r: f"{r.max_mps:,.0f}", "max_mps"),
        ("max rate: failed calls", lambda r: f"{r.max_fail_pct:.3f}%", None),
        ("max rate: proxy CPU (% of one core)", lambda r: f"{r.max_proxy_cpu_pct:.0f}%", "max_proxy_cpu_pct"),
        ("max rate: machine busy (2 cores = 100%)", lambda r: f"{r.max_machine_busy_pct:.0f}%", None),
        (f"fixed rate: offered calls/s", lambda r: f"{r.fixed_rate:,}", None),
        ("fixed rate: calls ok / failed", lambda r: f"{r.fixed_calls_ok:,} / {r.fixed_calls_failed}", None),
        ("fixed rate: retransmissions", lambda r: f"{r.fixed_retrans}", None),
        ("fixed rate: proxy CPU user+sys (s)", lambda r: f"{r.fixed_cpu_user_s:.2f} + {r.fixed_cpu_sys_s:.2f}", None),
        ("**fixed rate: proxy CPU per message (µs)**", lambda r: f"**{r.fixed_us_per_msg:.2f}**", "fixed_us_per_msg"),
        ("fixed rate: proxy CPU (% of one core)", lambda r: f"{r.fixed_proxy_cpu_pct:.0f}%", None),
        ("fixed rate: SIPp UAC / UAS CPU (% of one core)", lambda r: f"{r.fixed_uac_cpu_pct:.0f}% / {r.fixed_uas_cpu_pct:.0f}%", None),
        ("proxy processes / threads", lambda r: f"{r.proxy_procs} / {r.proxy_threads}", None),
    ]
    head = "| | " + " | ".join(cols) + (" | Weir / Kamailio |" if both else " |")
    sep = "|---|" + "---:|" * len(cols) + ("---:|" if both else "")
    out = [head, sep]
    for label, f, key in rows:
        line = f"| {label} | " + " | ".join(f(by[c]) for c in cols) + " |"
        if both:
            line += f" {ratio(getattr(by['weir'], key), getattr(by['kamailio'], key)):.2f} |" if key else " |"
        out.append(line)
    return "\n".join(out)


def write_report(b: Bench, results: list[Result], info: dict) -> Path:
    out = BENCH / "results" / f"{b.stamp}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    a = b.a
    L = []
    L.append(f"# Weir vs Kamailio, stateless relay: {info['date']}\n")
    L.append(f"Produced by `bench/run` ({' '.join(shlex.quote(x) for x in sys.argv[1:]) or 'defaults'}). "
             "See docs/performance.md for what is measured and why.\n")
    L.append("## Figures\n")
    L.append(table(results) + "\n")
    L.append("Weir / Kamailio above 1 means Weir relays more (rates) or spends more CPU (CPU per "
             "message: below 1 is better for Weir).\n")
    L.append("## Machine\n")
    L.append(f"- CPU: {info['cpu']}, {info['nproc']} cores; {info['memory_gib']} GiB RAM")
    L.append(f"- kernel {info['kernel']}; {info['os']}")
    L.append(f"- commit {info['commit']}")
    for k, v in info["versions"].items():
        L.append(f"- {k}: {v}")
    L.append(f"- {info['sipp']}; {info['rustc']}")
    L.append(f"- settings: duration {a.duration} s (after {a.warmup} s warm-up for max rate), "
             f"fixed rate {a.rate} calls/s, max-rate closed loop -l {a.limit} -r {a.max_offered}; "
             f"ports: weir {a.weir_port}, kamailio {a.kamailio_port}, UAS {a.uas_port}, UAC {a.uac_port}\n")
    for r in results:
        L.append(f"## {r.proxy}\n")
        if r.warnings:
            L.append("**Warnings:** " + "; ".join(r.warnings) + "\n")
        L.append("Commands:\n")
        L.append("```")
        for k, v in r.commands.items():
            L.append(f"# {k}\n{v}")
        L.append("```\n")
        L.append(f"One call ({r.msgs_per_call} messages through the proxy, seen by the UAC): "
                 + ", ".join(r.call_trace) + "\n")
        if r.max_attempts:
            L.append("Max-rate attempts: " + "; ".join(
                f"-l {x['limit']}: {x['cps']} calls/s, {x['failed']}/{x['calls']} failed, "
                f"{x['retrans']} retransmissions" for x in r.max_attempts) + "\n")
        if r.edits.get("forwarded"):
            L.append("INVITE with `X-Debug-Trace` and `x-debug-lower` as the next hop received it "
                     f"(check {'passed' if r.edits['ok'] else 'FAILED'}; Max-Forwards: 0 answered "
                     f"`{r.edits.get('mf0')}`):\n")
            L.append("```\n" + r.edits["forwarded"].split("\r\n\r\n")[0].replace("\r\n", "\n") + "\n```\n")
        if r.profile:
            L.append("perf profile during a second fixed-rate run (self time, `perf record -e cpu-clock`):\n")
            L.append("```\n" + r.profile + "\n```\n")
    L.append(f"Raw files (SIPp stats, logs) were in `{b.run_dir}`.\n")
    out.write_text("\n".join(L))
    (out.with_suffix(".json")).write_text(json.dumps(
        {"machine": info, "settings": vars(a), "results": [asdict(r) for r in results]}, indent=2))
    return out


def main():
    ap = argparse.ArgumentParser(prog="bench/run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    env = os.environ.get
    ap.add_argument("--duration", type=float, default=float(env("BENCH_DURATION", 20)),
                    help="seconds of each measured test (default 20)")
    ap.add_argument("--warmup", type=float, default=float(env("BENCH_WARMUP", 3)),
                    help="seconds of max-rate load before measuring (default 3)")
    ap.add_argument("--rate", type=int, default=int(env("BENCH_RATE", 1000)),
                    help="calls/s of the fixed-rate CPU test (default 1000)")
    ap.add_argument("--limit", type=int, default=int(env("BENCH_LIMIT", 100)),
                    help="calls in progress in the max-rate closed loop (default 100)")
    ap.add_argument("--max-offered", type=int, default=int(env("BENCH_MAX_OFFERED", 100000)),
                    help="-r of the max-rate test, far above what is reachable (default 100000)")
    ap.add_argument("--proxies", default=env("BENCH_PROXIES", "weir,kamailio"),
                    help="comma-separated, in order (default weir,kamailio)")
    ap.add_argument("--profile", action="store_true", default=bool(env("BENCH_PROFILE")),
                    help="after Weir's measurements, profile it with perf during another fixed-rate run")
    ap.add_argument("--weir-port", type=int, default=int(env("BENCH_WEIR_PORT", 5160)))
    ap.add_argument("--kamailio-port", type=int, default=int(env("BENCH_KAMAILIO_PORT", 5260)))
    ap.add_argument("--uas-port", type=int, default=int(env("BENCH_UAS_PORT", 5170)))
    ap.add_argument("--uac-port", type=int, default=int(env("BENCH_UAC_PORT", 5180)))
    ap.add_argument("--work-dir", default=env("BENCH_WORK_DIR"),
                    help="where logs and SIPp stats go (default /tmp/weir-bench-<date>)")
    ap.add_argument("--no-setup", action="store_true", help="(handled by bench/run) skip scripts/setup")
    args = ap.parse_args()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    b = Bench(args)
    b.say(f"run directory {b.run_dir}")
    busy0 = machine_busy()
    time.sleep(1)
    busy1 = machine_busy()
    idle_busy = 100.0 * (busy1[0] - busy0[0]) / max(1, busy1[1] - busy0[1])
    if idle_busy > 15:
        print(f"bench: warning: the machine is already {idle_busy:.0f}% busy before the benchmark; "
              "figures will be noisy", file=sys.stderr)
    results = []
    try:
        for name in [p.strip() for p in args.proxies.split(",") if p.strip()]:
            if name == "weir":
                px = b.weir_proxy()
            elif name == "kamailio":
                px = b.kamailio_proxy()
            else:
                sys.exit(f"bench: unknown proxy {name!r}")
            results.append(b.bench_proxy(px))
            time.sleep(1)
    finally:
        PROCS.stop_all()
    info = machine_info(results)
    if idle_busy > 15:
        for r in results:
            r.warnings.append(f"machine was {idle_busy:.0f}% busy before the run")
    path = write_report(b, results, info)
    print()
    print(table(results))
    print()
    for r in results:
        for w in r.warnings:
            print(f"warning ({r.proxy}): {w}")
    print(f"\nwritten: {path.relative_to(ROOT)} (+ .json)")


if __name__ == "__main__":
    main()
