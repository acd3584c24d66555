#!/usr/bin/env python3
"""Weir vs Kamailio: the same SIPp load through each proxy, on one machine, in one run.

Called by bench/run (which builds Weir and installs Kamailio/SIPp first). Standard
library only. For each proxy it:

  1. starts the proxy and waits until it answers an OPTIONS keep-alive;
  2. checks it edits an INVITE as the other does (X-Debug-* removed, X-Weir appended,
     Max-Forwards decremented, Record-Route and Via added) and answers Max-Forwards: 0
     with 483;
  3. counts the messages of one traced call through it (one SIPp UAS serves both);
  4. max rate: closed loops of SIPp calls (at most -l calls in progress, -r far above
     what the machine can do), -l raised step by step (--limits), then the two highest
     steps again (--max-repeat), the proxies taking turns; calls/s from SIPp's
     per-second stats; the best step with under 0.1% failed calls is the max rate;
  5. fixed rates (--rates calls/s): the proxy's CPU time (utime+stime of all its
     processes and threads, from /proc) over the run, per relayed message, in slices
     (--rounds x --slice s) taken by the proxies in turns (ABBA), median per proxy.

Both proxies run side by side (each idle while the other is measured) behind one SIPp
UAS, so that the measurements can alternate and a change in background load hits both.

With --mode stateful both proxies run transaction-stateful configs (Weir
bench/weir/stateful.toml, Kamailio bench/kamailio/stateful.cfg with tm), SIPp runs
bench/sipp/uac-stateful.xml / uas-stateful.xml (in-dialog requests along the route set),
and the report adds CPU time per call and response times: SIPp's (-trace_rtt, whole
milliseconds, every call) and a probe's (bench/lib/probe.py, microseconds, a few calls a
second during the fixed-rate slices).

Then it prints a table and writes bench/results/<date>.md.
"""

from __future__ import annotations

import argparse
import atexit
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
# What `scripts/setup pgo` builds (bench/run runs it): the `dist` profile, profile-guided.
DEFAULT_WEIR = ROOT / "target" / "pgo" / "dist" / "weir"
CLK_TCK = os.sysconf("SC_CLK_TCK")
HOST = "127.0.0.1"
# SIPp's socket buffers (its default, 64 KiB, overflows at the UAS at a few thousand
# calls/s; the kernel caps it at net.core.rmem_max). Weir asks for 4 MiB too.
SIPP_BUFFER = 4 * 1024 * 1024

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

    def start(self, name, argv, log_path, env=None, cwd=None, cgroup=None) -> subprocess.Popen:
        """Start `argv` in its own process group; `cgroup` (a CpuLimit) puts it, and
        everything it forks, into that cgroup before it runs."""
        log = open(log_path, "wb")

        def before_exec():
            _die_with_parent()
            if cgroup is not None:
                cgroup.enter()

        p = subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,
            preexec_fn=before_exec,
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


class CpuLimit:
    """--proxy-cpu-limit: a proxy, with every process it forks, in a cgroup of its own
    whose CPU bandwidth is capped at `pct` % of one CPU (CFS quota per 10 ms period,
    short enough that a throttled proxy's queue stays within its socket buffer). The
    same cap for both proxies makes the proxy, not SIPp's single-threaded UAC, the
    bottleneck of the max-rate steps: the max is then what each proxy does with the
    same CPU budget. cgroup v2 (cpu.max) or v1 (/sys/fs/cgroup/cpu)."""

    PERIOD_US = 10_000

    def __init__(self, pct: float, name: str):
        self.pct = pct
        quota = max(1000, int(self.PERIOD_US * pct / 100.0))
        root = Path("/sys/fs/cgroup")
        leaf = f"weir-bench-{name}-{os.getpid()}"
        v2 = root / "cgroup.controllers"
        if v2.exists() and "cpu" in (root / "cgroup.subtree_control").read_text().split():
            self.dir, self.version = root / leaf, 2
            files = [("cpu.max", f"{quota} {self.PERIOD_US}")]
        elif (root / "cpu" / "cpu.cfs_quota_us").exists():
            self.dir, self.version = root / "cpu" / leaf, 1
            files = [("cpu.cfs_period_us", str(self.PERIOD_US)), ("cpu.cfs_quota_us", str(quota))]
        else:
            sys.exit("bench: --proxy-cpu-limit needs a cgroup CPU controller (cgroup v2 with "
                     "cpu in /sys/fs/cgroup/cgroup.subtree_control, or v1 at /sys/fs/cgroup/cpu)")
        try:
            self.dir.mkdir()
            for f, v in files:
                (self.dir / f).write_text(v)
        except OSError as e:
            sys.exit(f"bench: --proxy-cpu-limit: cannot set up {self.dir}: {e} (needs root)")
        self.setting = ", ".join(f"{f} {v}" for f, v in files)
        atexit.register(self.remove)  # after the proxies are stopped

    def describe(self) -> str:
        return f"{self.pct:g}% of one CPU (cgroup v{self.version}: {self.setting})"

    def enter(self):
        """In the child, before exec: move this process into the cgroup."""
        with open(self.dir / "cgroup.procs", "w") as f:
            f.write(str(os.getpid()))

    def throttled_s(self) -> float:
        """Seconds throttled so far (summed over CPUs)."""
        try:
            st = dict(l.split() for l in (self.dir / "cpu.stat").read_text().splitlines() if l)
        except (OSError, ValueError):
            return 0.0
        if self.version == 2:
            return int(st.get("throttled_usec", 0)) / 1e6
        return int(st.get("throttled_time", 0)) / 1e9

    def remove(self):
        """Remove the cgroup (once its processes are gone)."""
        for _ in range(50):
            try:
                self.dir.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                time.sleep(0.1)


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


def threads_cpu(root: int) -> dict[str, float]:
    """CPU seconds per thread (or per process, for Kamailio's forked workers) of a
    process tree, keyed by name; same-named tasks are numbered."""
    out: dict[str, float] = {}
    for pid in process_tree(root):
        try:
            tids = sorted(int(t) for t in os.listdir(f"/proc/{pid}/task"))
        except OSError:
            continue
        for tid in tids:
            try:
                raw = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
            except OSError:
                continue
            comm = raw[raw.index("(") + 1: raw.rindex(")")]
            rest = raw[raw.rindex(")") + 2:].split()
            secs = (int(rest[11]) + int(rest[12])) / CLK_TCK
            key, n = comm, 1
            while key in out:
                n += 1
                key = f"{comm}#{n}"
            out[key] = secs
    return out


def proc_counters(root: int) -> tuple[int, int]:
    """(minor page faults, context switches) of every process and thread of a tree."""
    faults = switches = 0
    for pid in process_tree(root):
        try:
            raw = Path(f"/proc/{pid}/stat").read_text()
            faults += int(raw[raw.rindex(")") + 2:].split()[7])
            tids = os.listdir(f"/proc/{pid}/task")
        except (OSError, ValueError, IndexError):
            continue
        for tid in tids:
            try:
                for line in Path(f"/proc/{pid}/task/{tid}/status").read_text().splitlines():
                    if line.endswith("ctxt_switches:") or "ctxt_switches:" in line:
                        switches += int(line.split()[1])
            except (OSError, ValueError, IndexError):
                continue
    return faults, switches


def others_busy(seconds=1.0) -> float:
    """CPU used by every process on the machine but this one, in % of one core, over
    `seconds`: a check that nothing else competes with the benchmark."""
    def snap():
        t = {}
        for d in os.listdir("/proc"):
            if d.isdigit() and int(d) != os.getpid():
                s = _stat(int(d))
                if s:
                    t[int(d)] = s[1] + s[2]
        return t
    a = snap()
    time.sleep(seconds)
    b = snap()
    ticks = sum(v - a.get(k, v) for k, v in b.items())
    return 100.0 * ticks / CLK_TCK / seconds


class OthersMonitor:
    """Counts the CPU used by processes that are not this benchmark's (a build, a
    browser...), sampling /proc once a second in a thread: a busy neighbour makes the
    figures noisy, and the report says so."""

    def __init__(self):
        import threading
        self.ticks = 0
        self.steal0 = self.steal_ticks()
        self._prev: dict[int, int] = {}
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _ours(self, parents: dict[int, int]) -> set[int]:
        me = os.getpid()
        ours = set()
        for pid in parents:
            p, hops = pid, 0
            while p > 1 and hops < 50:
                if p == me:
                    ours.add(pid)
                    break
                p, hops = parents.get(p, 0), hops + 1
        return ours

    def _sample(self):
        parents, ticks = {}, {}
        for d in os.listdir("/proc"):
            if d.isdigit():
                s = _stat(int(d))
                if s:
                    parents[int(d)] = s[0]
                    ticks[int(d)] = s[1] + s[2]
        ours = self._ours(parents)
        cur = {pid: t for pid, t in ticks.items() if pid not in ours}
        self.ticks += sum(t - self._prev[pid] for pid, t in cur.items() if pid in self._prev)
        self._prev = cur

    def _run(self):
        while not self._stop.wait(1.0):
            self._sample()

    def seconds(self) -> float:
        return self.ticks / CLK_TCK

    @staticmethod
    def steal_ticks() -> int:
        """Time the hypervisor gave to other guests while ours wanted to run (all CPUs)."""
        try:
            f = Path("/proc/stat").read_text().split("\n")[0].split()
            return int(f[8])
        except (OSError, IndexError, ValueError):
            return 0

    def steal_seconds(self) -> float:
        return (self.steal_ticks() - self.steal0) / CLK_TCK

    def stop(self):
        self._stop.set()


def idle_seconds() -> float:
    """CPU seconds the machine has been idle (idle + iowait, all CPUs), from /proc/stat."""
    try:
        f = Path("/proc/stat").read_text().split("\n")[0].split()
        return (int(f[4]) + int(f[5])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return 0.0


def udp_drops() -> dict[int, int]:
    """Datagrams the kernel dropped per local UDP port (socket buffer full), from
    /proc/net/udp: tells who lost messages when SIPp retransmits."""
    out: dict[int, int] = {}
    try:
        lines = Path("/proc/net/udp").read_text().splitlines()[1:]
    except OSError:
        return out
    for line in lines:
        f = line.split()
        try:
            port = int(f[1].split(":")[1], 16)
            out[port] = out.get(port, 0) + int(f[-1])
        except (IndexError, ValueError):
            continue
    return out


# ---------------------------------------------------------------------------------------
# profile summary

PERF_LINE = re.compile(r"^\s*([\d.]+)%\s+(\S+)\s+(.+?)\s+\[([.k])\]\s+(.*?)\s*$")

# (bucket, test on (thread, dso, symbol)); first match wins.
BUCKETS = [
    ("epoch ticker thread (wasm deadlines)", lambda c, d, s: "epoch" in c),
    ("kernel: scheduler, sleeps and wake-ups",
     lambda c, d, s: d.startswith("[kernel") and re.search(
         r"finish_task_switch|_raw_spin_unlock_irqrestore|schedule|switch_to|wake|futex|"
         r"hrtimer|nanosleep|ttwu|enqueue_task|dequeue_task|pick_next|update_curr", s)),
    ("kernel: UDP send/receive and syscalls", lambda c, d, s: d.startswith("[kernel")),
    ("Weir async workers: transaction timers (weir-worker threads, user space)",
     lambda c, d, s: c.startswith("weir-worker")),
    ("Weir transaction layer on the UDP threads (weir_transaction, timer heap)",
     lambda c, d, s: re.search(r"weir_transaction|binary_heap", s)),
    ("wasm guest code (header-ops, JIT)", lambda c, d, s: d.startswith("[JIT") or "memfd" in d
     or d.startswith("[unknown")),
    ("wasmtime runtime (calls, component ABI, host glue)",
     lambda c, d, s: re.search(r"wasmtime|cranelift|pulley", s)),
    ("Weir wasm host (weir_wasm: message view for modules)", lambda c, d, s: "weir_wasm" in s),
    ("SIP parse / serialise (weir_message)", lambda c, d, s: "weir_message" in s),
    ("proxy logic (weir_proxy)", lambda c, d, s: "weir_proxy" in s),
    ("transport (weir_transport)", lambda c, d, s: "weir_transport" in s),
    ("Kamailio core and modules", lambda c, d, s: "kamailio" in d
     or (d.endswith(".so") and not d.startswith(("libc", "ld-")))),
    ("malloc / free", lambda c, d, s: "libc" in d and re.search(r"malloc|free|realloc|calloc|tcache|arena", s)),
    ("memcpy / memmove / memset / str*", lambda c, d, s: "libc" in d and re.search(r"mem|str", s)),
    ("libc syscall wrappers", lambda c, d, s: "libc" in d),
    ("other user space (Weir: Rust std/core/alloc, i.e. fmt, hashing, strings)",
     lambda c, d, s: True),
]


def profile_report(r: "Result", run: str) -> list[str]:
    """The report's lines for a --profile run (`run`: its rate, e.g. "1000 calls/s")."""
    return [f"perf profile during one more {run} run ({r.profile_us_per_msg:.2f} µs per "
            "message under perf; self time, `perf record -e cpu-clock`):", "",
            r.profile_buckets, "", "Top symbols:", "", "```", r.profile, "```", ""]


def profile_buckets(perf_data: Path, us_per_msg: float) -> tuple[str, str]:
    """Self time of a perf recording grouped into a few buckets, and the top symbols."""
    rep = subprocess.run(
        ["perf", "report", "-i", str(perf_data), "--stdio", "--no-children",
         "--sort", "comm,dso,sym", "-g", "none", "--percent-limit", "0"],
        capture_output=True, text=True)
    totals: dict[str, float] = {}
    top = []
    for line in rep.stdout.splitlines():
        m = PERF_LINE.match(line)
        if not m:
            continue
        pct, comm, dso, _kind, sym = float(m.group(1)), m.group(2), m.group(3), m.group(4), m.group(5)
        for name, test in BUCKETS:
            if test(comm, dso, sym):
                totals[name] = totals.get(name, 0.0) + pct
                break
        top.append((pct, comm, dso, sym))
    rows = ["| where (self time) | share of the proxy's CPU | µs per message |", "|---|---:|---:|"]
    for name, _ in BUCKETS:
        if name in totals:
            rows.append(f"| {name} | {totals[name]:.1f}% | {totals[name] * us_per_msg / 100:.2f} |")
    sym_lines = [f"{p:6.2f}%  {c:<16} {d[:20]:<20} {s[:110]}" for p, c, d, s in top[:30]]
    return "\n".join(rows), "\n".join(sym_lines)


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


def reply_to(req: str, code: int, reason: str) -> bytes:
    """A final response to a request as received by a UAS (Vias, From, To + tag, Call-ID,
    CSeq copied)."""
    keep = []
    for h in header_lines(req):
        n = h.split(":", 1)[0].strip().lower()
        if n in ("via", "v", "from", "f", "call-id", "i", "cseq"):
            keep.append(h)
        elif n in ("to", "t"):
            keep.append(h + ";tag=bench-uas")
    return "\r\n".join([f"SIP/2.0 {code} {reason}", *keep, "Content-Length: 0", "", ""]).encode()


def ack_for(invite: bytes, resp: str) -> bytes:
    """The hop-by-hop ACK of a non-2xx final response to `invite` (RFC 3261 17.1.1.3)."""
    inv = invite.decode(errors="replace")
    ruri = inv.split("\r\n", 1)[0].split()[1]
    lines = [f"ACK {ruri} SIP/2.0"]
    for h in header_lines(inv):
        n = h.split(":", 1)[0].strip().lower()
        if n in ("via", "from", "call-id"):
            lines.append(h)
    to = next((h for h in header_lines(resp) if h.split(":", 1)[0].strip().lower() in ("to", "t")), "")
    lines += [to, "CSeq: 1 ACK", "Max-Forwards: 70", "Content-Length: 0", "", ""]
    return "\r\n".join(lines).encode()


def check_edits(proxy_port, uas_port, appended="X-Weir: stateless", stateful=False) -> dict:
    """Send one INVITE with X-Debug-* headers; capture what reaches the next hop.
    Stateful: the next hop answers 486 and both ends ACK it, so that no transaction is
    left retransmitting towards the UAS port when SIPp takes it over."""
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
        invite = sip_request(
            "INVITE",
            f"sip:service@{HOST}:{proxy_port}",
            p,
            extra + ["Content-Type: application/sdp"],
            body=sdp,
        )
        s.sendto(invite, (HOST, proxy_port))
        call_id = re.search(rb"Call-ID: (\S+)", invite).group(1).decode()

        def recv_ours(method):
            """The next message at the next hop of this check's call (leftovers of an
            earlier check are skipped)."""
            while True:
                m = uas.recv(65535).decode(errors="replace")
                if m.startswith(method + " ") and call_id in m:
                    return m
        try:
            fwd = recv_ours("INVITE")
        except socket.timeout:
            result["problems"].append("INVITE not forwarded to the next hop within 2 s")
            s.close()
            return result
        if stateful:
            uas.sendto(reply_to(fwd, 486, "Busy Here"), (HOST, proxy_port))
            s.settimeout(2.0)
            try:
                while True:
                    r = s.recv(65535).decode(errors="replace")
                    code = int(r.split()[1])
                    if code >= 200:
                        result["final"] = r.split("\r\n", 1)[0]
                        s.sendto(ack_for(invite, r), (HOST, proxy_port))
                        break
            except (socket.timeout, ValueError, IndexError):
                result["problems"].append("the next hop's 486 was not relayed back within 2 s")
            try:  # the proxy's hop-by-hop ACK of the 486
                a = recv_ours("ACK")
                result["uas_ack"] = a.split("\r\n", 1)[0]
            except socket.timeout:
                result["problems"].append("the proxy did not ACK the next hop's 486 within 2 s")
        s.close()
        result["forwarded"] = fwd
        hl = header_lines(fwd)
        names = [h.split(":", 1)[0].strip().lower() for h in hl]
        if any(n.startswith("x-debug-") for n in names):
            result["problems"].append("X-Debug-* header still present")
        if appended not in hl:
            result["problems"].append(f"{appended} not appended")
        if not any(re.fullmatch(r"max-forwards:\s*69", h, re.I) for h in hl):
            result["problems"].append("Max-Forwards not decremented to 69")
        if names.count("via") + names.count("v") < 2:
            result["problems"].append("no Via added")
        if "record-route" not in names:
            result["problems"].append("no Record-Route on the initial INVITE")
        # Max-Forwards: 0 -> 483
        mf0 = {}

        def mf0_invite(p):
            mf0["req"] = sip_request("INVITE", f"sip:service@{HOST}:{proxy_port}", p,
                                     max_forwards="0")
            return mf0["req"]
        if stateful:  # ACK the 483, as a UA would (a stateful 483 is retransmitted until then)
            c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            c.bind((HOST, 0))
            c.settimeout(1.0)
            try:
                c.sendto(mf0_invite(c.getsockname()[1]), (HOST, proxy_port))
                r = c.recv(65535).decode(errors="replace")
                c.sendto(ack_for(mf0["req"], r), (HOST, proxy_port))
            except socket.timeout:
                r = None
            finally:
                c.close()
            # the ACK of the proxy's own 483 ends there (Kamailio: sl absorbs it)
            uas.settimeout(0.5)
            try:
                leak = uas.recv(65535).decode(errors="replace")
                result["acked_483_forwarded"] = leak.split("\r\n\r\n")[0]
                result["problems"].append(
                    "the ACK of the proxy's own 483 was forwarded to the next hop: "
                    + leak.split("\r\n", 1)[0])
            except socket.timeout:
                pass
        else:
            r = exchange(proxy_port, mf0_invite)
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


def read_rtt(path: Path) -> dict:
    """SIPp -trace_rtt file (Date_ms;response_time_ms;rtd_no) -> {rtd: {ms: count}}."""
    out: dict = {}
    if not path.exists():
        return out
    for line in path.read_text(errors="replace").splitlines()[1:]:
        f = line.strip().rstrip(";").split(";")
        if len(f) < 3:
            continue
        try:
            ms = int(round(float(f[1])))
        except ValueError:
            continue
        h = out.setdefault(f[2], {})
        h[ms] = h.get(ms, 0) + 1
    return out


def hist_pct(hist: dict, q: float) -> float:
    """The q-quantile (nearest rank) of a {value: count} histogram (keys may be str)."""
    items = sorted((float(k), v) for k, v in hist.items())
    n = sum(v for _, v in items)
    if not n:
        return float("nan")
    rank, seen = max(1, -(-int(q * n * 1000) // 1000)), 0
    for k, v in items:
        seen += v
        if seen >= rank:
            return k
    return items[-1][0]


def list_pct(vals: list, q: float) -> float:
    """The q-quantile (nearest rank) of a list."""
    if not vals:
        return float("nan")
    v = sorted(vals)
    return v[min(len(v) - 1, max(0, -(-int(q * len(v) * 1000) // 1000) - 1))]


def rtd_text(ld) -> str:
    """' | setup p50/p90/p99 ... ms' for a console line."""
    out = ""
    for name, h in ld.rtd.items():
        out += (f" | SIPp {name} p50/p90/p99 {hist_pct(h, .5):.0f}/{hist_pct(h, .9):.0f}/"
                f"{hist_pct(h, .99):.0f} ms")
    for name, v in ld.probe.items():
        if v:
            out += (f" | probe {name} p50/p90/p99 {list_pct(v, .5):.0f}/{list_pct(v, .9):.0f}/"
                    f"{list_pct(v, .99):.0f} us")
    return out


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


class ProxyDied(Exception):
    pass


@dataclass
class Proxy:
    name: str
    port: int
    argv: list[str]
    version: str
    log: Path
    proc: subprocess.Popen | None = None

    @property
    def bare(self) -> list[str]:
        """The command without a taskset prefix."""
        return self.argv[3:] if self.argv[:1] == ["taskset"] else self.argv


@dataclass
class Load:
    """One SIPp run against a proxy, measured over a window."""
    kind: str  # "max" (closed loop) or "fixed"
    limit: int = 0  # max: calls in progress (-l)
    step: int = -1  # max: the ramp's step number (steps of one number ran at once with --paired)
    paired: bool = False  # max: every proxy ran this step at the same time (--paired)
    rate: int = 0  # fixed: offered calls/s (-r)
    window_s: float = 0.0
    cps: float = 0.0  # successful calls/s over the window
    mps: float = 0.0  # relayed messages/s
    calls_ok: int = 0  # whole run
    calls_failed: int = 0
    fail_pct: float = 0.0
    retrans: int = 0
    drops_proxy: int = 0  # datagrams dropped by the kernel at the proxy's socket
    drops_sipp: int = 0  # ... at SIPp's sockets
    proxy_user_s: float = 0.0
    proxy_sys_s: float = 0.0
    proxy_cpu_pct: float = 0.0  # % of one core
    throttled_pct: float = 0.0  # --proxy-cpu-limit: % of the window the proxy was throttled
    idle_pct: float = -1.0  # max: the machine's idle CPU over the window, % of one CPU
    uac_cpu_pct: float = 0.0
    uas_cpu_pct: float = 0.0
    us_per_msg: float = 0.0  # proxy CPU per relayed message
    threads: dict = field(default_factory=dict)  # % of one core per thread / process
    slices_us: list = field(default_factory=list)  # fixed: CPU per message of each slice
    faults_per_msg: float = 0.0  # minor page faults of the proxy per relayed message
    switches_per_msg: float = 0.0  # context switches of the proxy per relayed message
    us_per_call: float = 0.0  # proxy CPU per completed call
    # stateful: SIPp response times (-trace_rtt), per rtd name a histogram {ms: count}
    rtd: dict = field(default_factory=dict)
    # stateful, fixed rates: the probe's response times, per name a list of µs
    probe: dict = field(default_factory=dict)
    probe_calls: int = 0
    probe_failed: int = 0


@dataclass
class Result:
    proxy: str
    version: str = ""
    port: int = 0
    msgs_per_call: int = 0
    call_trace: list[str] = field(default_factory=list)
    edits: dict = field(default_factory=dict)
    idle_cpu_pct: float = 0.0
    others_cpu_pct: float = 0.0  # CPU of other processes on the machine meanwhile
    steal_pct: float = 0.0  # CPU the hypervisor took meanwhile (VMs), % of one core
    max_steps: list[Load] = field(default_factory=list)
    best: Load | None = None
    fixed: list[Load] = field(default_factory=list)
    proxy_procs: int = 0
    proxy_threads: int = 0
    failed: str = ""  # why the run of this proxy stopped early
    instructions_per_msg: float = 0.0  # callgrind, user space
    instructions_per_call: float = 0.0  # stateful
    profile: str = ""
    profile_buckets: str = ""
    profile_us_per_msg: float = 0.0
    log_warnings: list[str] = field(default_factory=list)
    commands: dict = field(default_factory=dict)
    warnings: list = field(default_factory=list)


def aggregate(parts: list[Load], rate: int) -> Load:
    """One Load from a proxy's slices at one rate: sums, and the median CPU per message."""
    out = Load("fixed", rate=rate)
    if not parts:
        return out
    wall = sum(p.window_s for p in parts)
    out.window_s = wall
    out.calls_ok = sum(p.calls_ok for p in parts)
    out.calls_failed = sum(p.calls_failed for p in parts)
    out.fail_pct = 100.0 * out.calls_failed / max(1, out.calls_ok + out.calls_failed)
    out.retrans = sum(p.retrans for p in parts)
    out.drops_proxy = sum(p.drops_proxy for p in parts)
    out.drops_sipp = sum(p.drops_sipp for p in parts)
    out.proxy_user_s = sum(p.proxy_user_s for p in parts)
    out.proxy_sys_s = sum(p.proxy_sys_s for p in parts)
    out.cps = out.calls_ok / wall if wall else 0.0
    out.mps = sum(p.mps * p.window_s for p in parts) / wall if wall else 0.0
    out.proxy_cpu_pct = sum(p.proxy_cpu_pct * p.window_s for p in parts) / wall if wall else 0.0
    out.throttled_pct = sum(p.throttled_pct * p.window_s for p in parts) / wall if wall else 0.0
    out.uac_cpu_pct = sum(p.uac_cpu_pct * p.window_s for p in parts) / wall if wall else 0.0
    out.uas_cpu_pct = sum(p.uas_cpu_pct * p.window_s for p in parts) / wall if wall else 0.0
    us = sorted(p.us_per_msg for p in parts)
    mid = len(us) // 2
    out.us_per_msg = us[mid] if len(us) % 2 else (us[mid - 1] + us[mid]) / 2
    out.slices_us = [round(p.us_per_msg, 2) for p in parts]
    uc = sorted(p.us_per_call for p in parts)
    out.us_per_call = uc[mid] if len(uc) % 2 else (uc[mid - 1] + uc[mid]) / 2
    for p in parts:
        for name, hist in p.rtd.items():
            h = out.rtd.setdefault(name, {})
            for k, v in hist.items():
                h[k] = h.get(k, 0) + v
        for name, vals in p.probe.items():
            out.probe.setdefault(name, []).extend(vals)
        out.probe_calls += p.probe_calls
        out.probe_failed += p.probe_failed
    msgs = sum(p.mps * p.window_s for p in parts) or 1.0
    out.faults_per_msg = sum(p.faults_per_msg * p.mps * p.window_s for p in parts) / msgs
    out.switches_per_msg = sum(p.switches_per_msg * p.mps * p.window_s for p in parts) / msgs
    threads: dict[str, float] = {}
    for p in parts:
        for k, v in p.threads.items():
            threads[k] = threads.get(k, 0.0) + v * p.window_s
    out.threads = {k: round(v / wall, 1) for k, v in threads.items()} if wall else {}
    return out


class Bench:
    def __init__(self, args):
        self.a = args
        self.stamp = dt.datetime.now().strftime("%Y-%m-%d-%H%M%S")
        self.run_dir = Path(args.work_dir or f"/tmp/weir-bench-{self.stamp}")
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.sipp = shutil.which("sipp") or "sipp"
        self.stateful = args.mode == "stateful"
        self.uac_xml = BENCH / "sipp" / ("uac-stateful.xml" if self.stateful else "uac.xml")
        # stateful: a UAS that copies Record-Route (the built-in uas does not)
        self.uas_xml = BENCH / "sipp" / "uas-stateful.xml" if self.stateful else None
        # --proxy-cpu-limit: each proxy's cgroup, by name
        self.cpu_limits: dict[str, CpuLimit] = {}
        # --pin: the proxy on the last CPU, SIPp on the others
        n = os.cpu_count() or 1
        self.proxy_cpus = str(n - 1) if n > 1 else ""
        self.sipp_cpus = f"0-{n - 2}" if n > 2 else ("0" if n == 2 else "")
        # the commit when the run starts (the tree may change while it runs)
        commit = sh(f"git -C {ROOT} rev-parse --short HEAD") or "?"
        dirty = sh(f"git -C {ROOT} status --porcelain -- host plugins sdk wit Cargo.toml Cargo.lock")
        self.commit = commit + (" + uncommitted changes in host/plugins/sdk/wit" if dirty else "")

    def say(self, msg):
        print(f"\033[1m==> {msg}\033[0m", flush=True)

    # -- SIPp command lines -------------------------------------------------------------

    def pin(self, argv: list[str], cpus: str) -> list[str]:
        return (["taskset", "-c", cpus] + argv) if (self.a.pin and cpus) else argv

    def uac_argv(self, proxy_port, extra, csv=None, trace=None, rtt=False):
        argv = [
            self.sipp, "-sf", str(self.uac_xml), f"{HOST}:{proxy_port}",
            "-s", "service", "-i", HOST, "-p", str(self.uac_port(proxy_port)),
            "-d", "0", "-nostdin", "-buff_size", str(SIPP_BUFFER), "-trace_err",
            "-error_file", str(self.run_dir / f"uac-errors-{proxy_port}.log"),
        ]
        if csv:
            argv += ["-trace_stat", "-stf", str(csv), "-fd", "1"]
        if trace:
            argv += ["-trace_msg", "-message_file", str(trace)]
        if rtt:
            # every response time, in <cwd>/<scenario>_<pid>_rtt.csv (cwd: the run dir)
            argv += ["-trace_rtt", "-rtt_freq", "100"]
        return self.pin(argv + extra, self.sipp_cpus)

    def uac_port(self, proxy_port: int) -> int:
        """The UDP port of the SIPp UAC that loads the proxy on `proxy_port`: --uac-port,
        or with --paired (one UAC per proxy at once) --uac-port + the proxy's place."""
        if getattr(self.a, "paired", False):
            ports = [self.a.weir_port, self.a.kamailio_port]
            if proxy_port in ports:
                return self.a.uac_port + ports.index(proxy_port)
        return self.a.uac_port

    def rtt_file(self, pid: int) -> Path:
        return self.run_dir / f"{self.uac_xml.stem}_{pid}_rtt.csv"

    def uas_argv(self):
        scen = ["-sf", str(self.uas_xml)] if self.uas_xml else ["-sn", "uas"]
        return self.pin([
            self.sipp, *scen, "-i", HOST, "-p", str(self.a.uas_port), "-nostdin",
            "-buff_size", str(SIPP_BUFFER),
        ], self.sipp_cpus)

    # -- proxies ------------------------------------------------------------------------

    def weir_proxy(self) -> Proxy:
        built = Path(self.a.weir_bin).resolve() if self.a.weir_bin else DEFAULT_WEIR
        if not built.exists():
            sys.exit(f"bench: {built} not found: run scripts/setup pgo")
        built_wasm = (Path(self.a.weir_module).resolve() if self.a.weir_module else
                      ROOT / "target" / "wasm32-wasip2" / "release" / "header_ops.wasm")
        if not built_wasm.exists():
            sys.exit(f"bench: {built_wasm} not found: run scripts/setup")
        # Run copies, so a rebuild during the run cannot change what is measured.
        weir, wasm = self.run_dir / "weir", self.run_dir / "header_ops.wasm"
        shutil.copy2(built, weir)
        shutil.copy2(built_wasm, wasm)
        self.weir_binary = weir_binary_info(weir, built)
        text = (BENCH / "weir" / f"{self.a.mode}.toml").read_text()
        if self.stateful:
            # one UDP worker per core, as Kamailio's children (-A CHILDREN=<nproc>)
            text = re.sub(r"(?m)^udp_workers = \d+", f"udp_workers = {os.cpu_count() or 1}", text)
        text = text.replace(f'"{HOST}:5160"', f'"{HOST}:{self.a.weir_port}"')
        text = text.replace(f'"sip:{HOST}:5170"', f'"sip:{HOST}:{self.a.uas_port}"')
        text = text.replace('"../../target/wasm32-wasip2/release/header_ops.wasm"',
                            json.dumps(str(wasm)))
        return self.run_weir_config(weir, text)

    def run_weir_config(self, weir, text) -> Proxy:
        """Write `text` as this run's weir.toml, stop the bench if `weir check` refuses
        it, and return the Proxy that runs it (shared by every bench mode)."""
        cfg = self.run_dir / "weir.toml"
        cfg.write_text(text)
        chk = subprocess.run([str(weir), "check", "--config", str(cfg)],
                             capture_output=True, text=True)
        if chk.returncode != 0:
            sys.exit(f"bench: weir check failed:\n{chk.stdout}{chk.stderr}")
        ver = subprocess.run([str(weir), "version"], capture_output=True, text=True).stdout.strip()
        return Proxy("weir", self.a.weir_port,
                     self.pin([str(weir), "run", "--config", str(cfg)], self.proxy_cpus), ver,
                     self.run_dir / "weir.log")

    def kamailio_proxy(self) -> Proxy:
        kam = shutil.which("kamailio") or "/usr/sbin/kamailio"
        if not Path(kam).exists():
            sys.exit("bench: kamailio not found (bench/run installs it with apt-get)")
        rundir = self.run_dir / "kamailio-run"
        rundir.mkdir(exist_ok=True)
        cfg = BENCH / "kamailio" / f"{self.a.mode}.cfg"
        defs = ["-A", f"PROXY_PORT={self.a.kamailio_port}", "-A", f"UAS_PORT={self.a.uas_port}"]
        if self.stateful:
            defs += ["-A", f"CHILDREN={os.cpu_count() or 1}"]
        chk = subprocess.run([kam, "-c", "-f", str(cfg), "-Y", str(rundir), *defs],
                             capture_output=True, text=True)
        if chk.returncode != 0:
            sys.exit(f"bench: kamailio -c failed:\n{chk.stdout}{chk.stderr}")
        ver = subprocess.run([kam, "-v"], capture_output=True, text=True).stdout.splitlines()
        ver = ver[0].replace("version: ", "") if ver else "kamailio ?"
        # stateful: tm keeps every transaction (a copy of its request, its last reply) in
        # shared memory until wt_timer (5 s) after it ends; 64 MiB ran out at 1,500
        # calls/s and 512 MiB at 3,500 (new_t(): out of mem, failed calls)
        shm = "2048" if self.stateful else "64"
        argv = self.pin([kam, "-DD", "-E", "-f", str(cfg), "-Y", str(rundir), "-m", shm, "-M", "8",
                         *shlex.split(self.a.kamailio_args), *defs], self.proxy_cpus)
        return Proxy("kamailio", self.a.kamailio_port, argv, ver, self.run_dir / "kamailio.log")

    def launch(self, px: Proxy):
        """Start the proxy's process, in its own cgroup under --proxy-cpu-limit."""
        cgroup = None
        if self.a.proxy_cpu_limit:
            cgroup = self.cpu_limits.get(px.name) or CpuLimit(self.a.proxy_cpu_limit, px.name)
            self.cpu_limits[px.name] = cgroup
        px.proc = PROCS.start(px.name, px.argv, px.log, cwd=str(ROOT), cgroup=cgroup)

    def start_proxy(self, px: Proxy):
        for port in (px.port, self.a.uas_port, self.uac_port(px.port)) + (
                (self.a.probe_port,) if self.stateful and self.a.probe_rate > 0 else ()):
            if not udp_port_free(port):
                sys.exit(f"bench: UDP {HOST}:{port} is in use (ss -ulpn | grep :{port}); "
                         "stop what holds it or choose other ports (see --help)")
        self.launch(px)
        if not wait_ready(px.port, px.proc):
            tail = px.log.read_text(errors="replace")[-3000:] if px.log.exists() else ""
            PROCS.stop(px.proc)
            sys.exit(f"bench: {px.name} did not start (no 200 to OPTIONS on {HOST}:{px.port} "
                     f"within 30 s). Command: {shlex.join(px.argv)}\nLog tail:\n{tail}")

    # -- measurements -------------------------------------------------------------------

    def check_alive(self, px: Proxy, during: str):
        rc = px.proc.poll()
        if rc is None:
            return
        how = f"signal {-rc}" if rc < 0 else f"exit status {rc}"
        tail = px.log.read_text(errors="replace").splitlines()[-5:] if px.log.exists() else []
        hint = ""
        if any("stopping" in l for l in tail):
            hint = (" It stopped on a SIGTERM/SIGINT that the bench did not send: is something "
                    "else on this machine killing weir processes (pkill, killall, a test suite)?")
        raise ProxyDied(f"{px.name} exited during {during} ({how}).{hint} Log tail: "
                        + " | ".join(tail))

    def throttled_s(self, px: Proxy) -> float:
        """Seconds `px` has been throttled by its --proxy-cpu-limit cgroup (0 without)."""
        cg = self.cpu_limits.get(px.name)
        return cg.throttled_s() if cg else 0.0

    def throttle_text(self, ld: Load) -> str:
        return f" | throttled {ld.throttled_pct:.0f}%" if self.a.proxy_cpu_limit else ""

    def _finish(self, ld: Load, res: Result, rows, d: Cpu, wall, uac: Cpu, uas: Cpu, drops0,
                th0=None, th1=None, pc0=None, pc1=None, throttled_s=0.0):
        # throttled time is counted per CPU that had a runnable thread: can exceed 100%
        ld.throttled_pct = 100.0 * throttled_s / wall if wall else 0.0
        if th0 is not None and th1 is not None:
            ld.threads = {k: round(100.0 * (v - th0.get(k, 0.0)) / wall, 1)
                          for k, v in th1.items() if v - th0.get(k, 0.0) > 0}
        drops1 = udp_drops()
        dd = {k: v - drops0.get(k, 0) for k, v in drops1.items()}
        ld.drops_proxy = dd.get(res.port, 0)
        ld.drops_sipp = dd.get(self.a.uas_port, 0) + dd.get(self.uac_port(res.port), 0)
        last = rows[-1] if rows else {}
        ld.calls_ok = ival(last, "SuccessfulCall(C)")
        ld.calls_failed = ival(last, "FailedCall(C)")
        ld.fail_pct = 100.0 * ld.calls_failed / max(1, ld.calls_ok + ld.calls_failed)
        ld.retrans = ival(last, "Retransmissions(C)")
        ld.proxy_user_s, ld.proxy_sys_s = d.user, d.sys
        ld.proxy_cpu_pct = 100.0 * d.total / wall
        ld.uac_cpu_pct = 100.0 * uac.total / wall
        ld.uas_cpu_pct = 100.0 * uas.total / wall
        ld.mps = ld.cps * res.msgs_per_call
        ld.us_per_msg = 1e6 * d.total / max(1.0, ld.mps * wall)
        ld.us_per_call = 1e6 * d.total / max(1.0, ld.cps * wall)
        if pc0 and pc1:
            msgs = max(1.0, ld.mps * wall)
            ld.faults_per_msg = (pc1[0] - pc0[0]) / msgs
            ld.switches_per_msg = (pc1[1] - pc0[1]) / msgs

    def max_rate_step(self, runs: list[tuple[Proxy, Result]], uas: subprocess.Popen,
                      limit: int) -> list[Load]:
        """Closed loop: at most `limit` calls in progress, new ones as fast as SIPp can.
        Several proxies (--paired): each its own SIPp UAC, all measured over one window."""
        started = []
        drops0 = udp_drops()
        for px, res in runs:
            csv = self.run_dir / f"{px.name}-max-l{limit}.csv"
            argv = self.uac_argv(px.port, ["-r", str(self.a.max_offered), "-l", str(limit)],
                                 csv=csv, rtt=self.stateful)
            res.commands[f"max rate, -l {limit}"] = shlex.join(argv)
            p = PROCS.start(f"{px.name}-uac-max", argv,
                            self.run_dir / f"{px.name}-uac-max-l{limit}.out", cwd=str(self.run_dir))
            started.append((px, res, csv, p))
        time.sleep(self.a.warmup)

        def snap(px, p):
            return (threads_cpu(px.proc.pid), proc_counters(px.proc.pid), self.throttled_s(px),
                    cpu_of_tree(px.proc.pid), cpu_of_tree(p.pid))
        before = [snap(px, p) for px, _, _, p in started]
        s0, i0, t0 = cpu_of_tree(uas.pid), idle_seconds(), time.time()
        time.sleep(self.a.step)
        s1, i1, t1 = cpu_of_tree(uas.pid), idle_seconds(), time.time()
        after = [snap(px, p) for px, _, _, p in started]
        loads = []
        for (px, res, csv, p), b, a in zip(started, before, after):
            PROCS.stop(p, signal.SIGUSR1, timeout=8)  # SIGUSR1: no new calls, finish the others
            self.check_alive(px, f"the max-rate step -l {limit}")
            rows = sipp_stats(csv)
            ld = Load("max", limit=limit)
            win = [r for r in rows if t0 - 0.6 <= r["t"] <= t1 + 0.6]
            if len(win) >= 2 and win[-1]["t"] > win[0]["t"]:
                ld.window_s = win[-1]["t"] - win[0]["t"]
                ok = ival(win[-1], "SuccessfulCall(C)") - ival(win[0], "SuccessfulCall(C)")
                ld.cps = ok / ld.window_s
            else:
                res.warnings.append(f"max rate -l {limit}: SIPp wrote too few stats rows ({len(rows)})")
            (th0, pc0, thr0, c0, u0), (th1, pc1, thr1, c1, u1) = b, a
            self._finish(ld, res, rows, c1 - c0, t1 - t0, u1 - u0, s1 - s0, drops0, th0, th1,
                         pc0, pc1, thr1 - thr0)
            ld.rtd = read_rtt(self.rtt_file(p.pid)) if self.stateful else {}
            ld.paired = len(runs) > 1
            ld.idle_pct = 100.0 * (i1 - i0) / (t1 - t0)
            print(f"    {px.name:<8} max rate -l {limit:<4}: {ld.cps:7.0f} calls/s {ld.mps:8.0f} msg/s | fail "
                  f"{ld.calls_failed}/{ld.calls_ok + ld.calls_failed} retrans {ld.retrans} drops "
                  f"proxy {ld.drops_proxy} sipp {ld.drops_sipp} | CPU proxy {ld.proxy_cpu_pct:.0f}% "
                  f"uac {ld.uac_cpu_pct:.0f}% uas {ld.uas_cpu_pct:.0f}%"
                  + (f" | {ld.us_per_call:.1f} us/call" + rtd_text(ld) if self.stateful else "")
                  + self.throttle_text(ld)
                  + (f" | paired, machine idle {ld.idle_pct:.0f}%" if ld.paired else ""),
                  flush=True)
            loads.append(ld)
        return loads

    def max_rate(self, pxs: list[Proxy], res: dict, uas):
        """Raise the calls in progress step by step, the proxies taking turns at each
        step (so a change in background load hits both); the max rate is the best step
        whose failed calls stay under 0.1%. A proxy's ramp stops past its knee. Then the
        ramp's two highest steps run again --max-repeat times, highest first (..., 400,
        800, then 800, 400), for each proxy none of whose steps failed: near the top
        SIPp's UAC, not the proxy, is often the bottleneck, and its own CPU per call moves
        by 10-20% between 5-second steps on a shared machine, so the best of more steps
        is a steadier maximum for both proxies.

        --paired: the proxies run each step at the same time instead of in turns, each
        loaded by its own UAC, and every step runs for every proxy that has not failed
        (no stop past the knee), so each step gives a ratio of two rates measured under
        the same background load."""
        done, failed = set(), set()
        top = self.a.limits[-2:][::-1]
        steps = [(lim, False) for lim in self.a.limits]
        steps += [(lim, True) for _ in range(self.a.max_repeat) for lim in top]
        paired = getattr(self.a, "paired", False)
        for i, (limit, repeat) in enumerate(steps):
            order = pxs if i % 2 == 0 else list(reversed(pxs))
            todo = [px for px in order if px.name not in failed
                    and (paired or repeat or px.name not in done)]
            for group in ([todo] if paired and todo else [[px] for px in todo]):
                loads = self.max_rate_step([(px, res[px.name]) for px in group], uas, limit)
                for px, ld in zip(group, loads):
                    r = res[px.name]
                    ld.step = i
                    r.max_steps.append(ld)
                    good = ld.fail_pct < 0.1 and ld.cps > 0
                    if good and (r.best is None or ld.cps > r.best.cps):
                        r.best = ld
                    if not good:
                        failed.add(px.name)
                    if not good or (r.best and ld.cps < 0.85 * r.best.cps):
                        done.add(px.name)
                time.sleep(1)
        for r in res.values():
            if r.best is None:
                r.warnings.append("max rate: no step had under 0.1% failed calls")

    def profile_runs(self, pxs: list[Proxy], res: dict, uas):
        """--profile: one more run per proxy at the first fixed rate, twice a slice long,
        under perf (after the measurements, so that perf does not disturb them)."""
        if not self.a.profile:
            return
        for px in pxs:
            time.sleep(1)
            self.fixed_rate(px, res[px.name], uas, self.a.rates[0], self.a.slice * 2, profile=True)

    def fixed_rates(self, pxs: list[Proxy], res: dict, uas):
        """Each rate in slices of --slice seconds, the proxies taking turns in ABBA order
        (A B B A A B B A ...): slow changes in background load cancel out. The figure is
        the median over a proxy's slices; the report gives the spread."""
        for rate in self.a.rates:
            slices: dict[str, list[Load]] = {px.name: [] for px in pxs}
            for k in range(self.a.rounds):
                order = pxs if k % 2 == 0 else list(reversed(pxs))
                for px in order:
                    time.sleep(1)
                    slices[px.name].append(
                        self.fixed_rate(px, res[px.name], uas, rate, self.a.slice, n=k + 1))
            for px in pxs:
                res[px.name].fixed.append(aggregate(slices[px.name], rate))

    def fixed_rate(self, px: Proxy, res: Result, uas: subprocess.Popen, rate: int,
                   seconds: float, profile=False, n=0) -> Load:
        calls = int(rate * seconds)
        tag = f"profile-r{rate}" if profile else f"fixed-r{rate}-{n}"
        csv = self.run_dir / f"{px.name}-{tag}.csv"
        argv = self.uac_argv(px.port, ["-r", str(rate), "-m", str(calls)], csv=csv,
                             rtt=self.stateful and not profile)
        perf = None
        if profile:
            data = self.run_dir / f"{px.name}.perf.data"
            pids = ",".join(str(x) for x in process_tree(px.proc.pid))
            perf_argv = ["perf", "record", "-e", "cpu-clock", "-F", "1999",
                         "-o", str(data), "-p", pids]
            res.commands["profile (perf)"] = shlex.join(perf_argv)
            perf = PROCS.start("perf", perf_argv, self.run_dir / "perf-record.out")
            time.sleep(1.0)
        else:
            res.commands[f"fixed rate {rate}/s, slice {n}"] = shlex.join(argv)
        drops0 = udp_drops()
        th0, pc0 = threads_cpu(px.proc.pid), proc_counters(px.proc.pid)
        thr0 = self.throttled_s(px)
        c0, s0, t0 = cpu_of_tree(px.proc.pid), cpu_of_tree(uas.pid), time.time()
        p = PROCS.start(f"{px.name}-uac-{tag}", argv, self.run_dir / f"{px.name}-uac-{tag}.out",
                        cwd=str(self.run_dir))
        probe = probe_out = None
        if self.stateful and not profile and self.a.probe_rate > 0:
            # a few timed calls (µs) next to SIPp's load, ending before it does
            probe_out = self.run_dir / f"{px.name}-probe-{tag}.json"
            probe_argv = [sys.executable, str(BENCH / "lib" / "probe.py"), str(px.port),
                          str(self.a.probe_port), str(self.a.probe_rate),
                          str(max(1.0, seconds - 1.0)), str(probe_out)]
            res.commands["response-time probe"] = shlex.join(probe_argv)
            probe = PROCS.start(f"{px.name}-probe", probe_argv,
                                self.run_dir / f"{px.name}-probe-{tag}.out")
        uac = Cpu()
        # Reap the UAC here: wait4 gives its exact CPU time.
        while True:
            pid, status, ru = os.wait4(p.pid, os.WNOHANG)
            if pid == p.pid:
                p.returncode = os.waitstatus_to_exitcode(status)
                uac = Cpu(ru.ru_utime, ru.ru_stime, 1, 1)
                break
            time.sleep(0.1)
            if px.proc.poll() is not None:
                PROCS.stop(p, signal.SIGKILL, timeout=5)
                self.check_alive(px, f"the fixed-rate {rate}/s test")
            if time.time() - t0 > seconds * 2 + 30:
                res.warnings.append(f"fixed rate {rate}/s: SIPp did not finish in time, stopped")
                PROCS.stop(p, signal.SIGUSR1, timeout=10)
                break
        PROCS.live = [(n, q) for (n, q) in PROCS.live if q is not p]
        if probe is not None:
            try:
                probe.wait(10)
            except subprocess.TimeoutExpired:
                res.warnings.append(f"fixed rate {rate}/s: the response-time probe did not finish")
            PROCS.stop(probe)
        c1, s1, t1 = cpu_of_tree(px.proc.pid), cpu_of_tree(uas.pid), time.time()
        thr1 = self.throttled_s(px)
        th1, pc1 = threads_cpu(px.proc.pid), proc_counters(px.proc.pid)
        ld = Load("fixed", rate=rate, window_s=t1 - t0)
        rows = sipp_stats(csv)
        ld.cps = ival(rows[-1], "SuccessfulCall(C)") / ld.window_s if rows else 0.0
        if probe_out is not None:
            try:
                pr = json.loads(probe_out.read_text())
            except (OSError, ValueError):
                pr = {}
                res.warnings.append(f"fixed rate {rate}/s: no probe results in {probe_out}")
            ld.probe = {"setup": pr.get("setup_us", []), "bye": pr.get("bye_us", [])}
            ld.probe_calls, ld.probe_failed = pr.get("ok", 0), pr.get("failed", 0)
            for e in pr.get("errors", [])[:3]:
                res.warnings.append(f"fixed rate {rate}/s probe: {e}")
            # the probe's calls went through the proxy too: count them in CPU per call
            ld.cps += ld.probe_calls / ld.window_s
        self._finish(ld, res, rows, c1 - c0, t1 - t0, uac, s1 - s0, drops0, th0, th1, pc0, pc1,
                     thr1 - thr0)
        if self.stateful and not profile:
            ld.rtd = read_rtt(self.rtt_file(p.pid))
        if perf:
            PROCS.stop(perf, signal.SIGINT, timeout=30)
            res.profile_buckets, res.profile = profile_buckets(
                self.run_dir / f"{px.name}.perf.data", ld.us_per_msg)
            res.profile_us_per_msg = ld.us_per_msg
            print("    profile (self time):\n      " + res.profile_buckets.replace("\n", "\n      "),
                  flush=True)
            return ld
        if ld.calls_ok + ld.calls_failed < calls or ld.fail_pct >= 0.1:
            res.warnings.append(
                f"fixed rate {rate}/s: {ld.calls_ok} of {calls} calls succeeded "
                f"({ld.fail_pct:.3f}% failed); lower the rate (--rates)")
        if ld.retrans > calls * 0.001:
            res.warnings.append(f"fixed rate {rate}/s: {ld.retrans} retransmissions (lost messages)")
        print(f"    {px.name:<8} fixed {rate}/s #{n}: {ld.calls_ok} calls in {ld.window_s:.1f} s, "
              f"{ld.calls_failed} failed, {ld.retrans} retrans | proxy CPU {ld.proxy_user_s:.2f} s "
              f"user + {ld.proxy_sys_s:.2f} s sys = {ld.us_per_msg:.2f} us/message "
              f"({ld.proxy_cpu_pct:.0f}% of a core), {ld.switches_per_msg:.2f} switches and "
              f"{ld.faults_per_msg:.3f} faults/message | uac {ld.uac_cpu_pct:.0f}% uas "
              f"{ld.uas_cpu_pct:.0f}%"
              + (f" | {ld.us_per_call:.1f} us/call" + rtd_text(ld) if self.stateful else "")
              + self.throttle_text(ld),
              flush=True)
        return ld

    def trace_one_call(self, px: Proxy, res: Result):
        trace = self.run_dir / f"{px.name}-onecall-msgs.log"
        argv = self.uac_argv(px.port, ["-m", "1"], trace=trace)
        res.commands["one traced call"] = shlex.join(argv)
        p = PROCS.start(f"{px.name}-uac-onecall", argv, self.run_dir / f"{px.name}-uac-onecall.out")
        try:
            rc = p.wait(15)
        except subprocess.TimeoutExpired:
            rc = -1
        PROCS.stop(p)
        n, firsts = count_traced_messages(trace)
        res.msgs_per_call, res.call_trace = n, firsts
        if rc != 0 or n == 0:
            sys.exit(f"bench: one call through {px.name} failed (sipp exit {rc}); "
                     f"see {self.run_dir}/{px.name}-uac-onecall.out and {trace}")

    def instructions(self, px: Proxy, res: Result):
        """User-space instructions per relayed message, counted by callgrind: two runs of
        the proxy under valgrind, N1 and N2 calls at 100 calls/s; the difference over the
        extra calls cancels start-up and shutdown. Noise-free, unlike CPU time."""
        # stateful: Weir's transaction timers run on another thread, and valgrind runs one
        # thread at a time: at 100 calls/s under callgrind it fell behind and SIPp's
        # retransmissions and timeouts failed 46% of the calls; 20 calls/s keeps up
        n1, n2, rate = (100, 600, 20) if self.stateful else (200, 1200, 100)
        totals = []
        vg = ["valgrind", "--tool=callgrind", "--smc-check=all-non-file"]
        cg_dir = self.run_dir / f"callgrind-{px.name}"
        cg_dir.mkdir(exist_ok=True)
        if px.name == "weir":
            # compile the module once under valgrind (its CPU features differ) so both
            # measured runs load it from the cache
            subprocess.run(vg + ["--callgrind-out-file=/dev/null"] + px.bare[:1]
                           + ["check", "--config", px.bare[-1]], capture_output=True)
        for n in (n1, n2):
            run = cg_dir / str(n)
            run.mkdir(exist_ok=True)
            argv = vg + [f"--callgrind-out-file={run}/cg.%p"] + px.bare
            res.commands[f"callgrind, {n} calls"] = shlex.join(argv)
            proc = PROCS.start(f"{px.name}-callgrind", argv, run / "proxy.log", cwd=str(ROOT))
            if not wait_ready(px.port, proc, timeout=180):
                PROCS.stop(proc)
                res.warnings.append("callgrind: the proxy did not start under valgrind")
                return
            uas = PROCS.start(f"{px.name}-uas-cg", self.uas_argv(), run / "uas.out")
            time.sleep(0.5)
            uac = self.uac_argv(px.port, ["-r", str(rate), "-m", str(n)])
            p = PROCS.start(f"{px.name}-uac-cg", uac, run / "uac.out")
            try:
                rc = p.wait(n / rate * 3 + 60)
            except subprocess.TimeoutExpired:
                rc = -1
            if rc != 0:
                res.warnings.append(f"callgrind: SIPp exit status {rc} with {n} calls (failed "
                                    f"calls: see {run}/uac.out); no instruction count")
                PROCS.stop(p)
                PROCS.stop(uas)
                PROCS.stop(proc, signal.SIGTERM, timeout=60)
                return
            PROCS.stop(p)
            PROCS.stop(uas)
            PROCS.stop(proc, signal.SIGTERM, timeout=60)
            total = 0
            for f in run.glob("cg.*"):
                m = re.search(r"^summary:\s+(\d+)", f.read_text(errors="replace"), re.M)
                if m:
                    total += int(m.group(1))
            totals.append(total)
        if len(totals) == 2 and totals[1] > totals[0]:
            res.instructions_per_msg = (totals[1] - totals[0]) / ((n2 - n1) * res.msgs_per_call)
            print(f"    callgrind: {res.instructions_per_msg:,.0f} user-space instructions per "
                  "message", flush=True)
            if self.stateful:
                res.instructions_per_call = res.instructions_per_msg * res.msgs_per_call

    def bench_all(self, pxs: list[Proxy]) -> list[Result]:
        """Both proxies up side by side (each idle while the other is measured), one
        SIPp UAS behind them, the measurements interleaved."""
        res = {px.name: Result(px.name, px.version, port=px.port) for px in pxs}
        o0, ot0, st0 = self.monitor.seconds(), time.time(), self.monitor.steal_seconds()
        uas = None
        try:
            for px in pxs:
                self.say(f"{px.name}: {shlex.join(px.argv)}")
                res[px.name].commands["proxy"] = shlex.join(px.argv)
                self.start_proxy(px)
            for px in pxs:
                r = res[px.name]
                r.edits = check_edits(px.port, self.a.uas_port,
                                      "X-Weir: " + ("stateful" if self.stateful else "stateless"),
                                      self.stateful)
                if r.edits["ok"]:
                    print(f"    {px.name:<8} edits ok: X-Debug-* removed, X-Weir appended, "
                          "Max-Forwards 69, Record-Route added; Max-Forwards 0 answered 483"
                          + (f"; next hop's 486 relayed ({r.edits.get('final')}) and ACKed "
                             f"hop by hop ({r.edits.get('uas_ack')})" if self.stateful else ""),
                          flush=True)
                else:
                    r.warnings.append("edit check: " + "; ".join(r.edits["problems"]))
                    print(f"    {px.name:<8} edit check FAILED: {r.edits['problems']}", flush=True)
            c0 = {px.name: cpu_of_tree(px.proc.pid) for px in pxs}
            t0 = time.time()
            time.sleep(3)
            for px in pxs:
                res[px.name].idle_cpu_pct = (100.0 * (cpu_of_tree(px.proc.pid) - c0[px.name]).total
                                             / (time.time() - t0))
            uas_log = self.run_dir / "uas.out"
            uas = PROCS.start("uas", self.uas_argv(), uas_log)
            for r in res.values():
                r.commands["uas"] = shlex.join(self.uas_argv())
            time.sleep(0.5)
            if uas.poll() is not None:
                sys.exit(f"bench: the SIPp UAS did not start, see {uas_log}")
            for px in pxs:
                r = res[px.name]
                self.trace_one_call(px, r)
                print(f"    {px.name:<8} one call = {r.msgs_per_call} messages through the proxy: "
                      + ", ".join(short(f) for f in r.call_trace)
                      + f"; idle CPU {r.idle_cpu_pct:.1f}% of a core", flush=True)
            self.max_rate(pxs, res, uas)
            self.fixed_rates(pxs, res, uas)
            for px in pxs:
                r = res[px.name]
                cur = cpu_of_tree(px.proc.pid)
                r.proxy_procs, r.proxy_threads = cur.procs, cur.threads
            self.profile_runs(pxs, res, uas)
        except ProxyDied as e:
            for r in res.values():
                r.failed = str(e)
                r.warnings.append(f"FAILED: {e}")
            print(f"    FAILED: {e}", file=sys.stderr, flush=True)
        finally:
            if uas is not None:
                PROCS.stop(uas)
            for px in pxs:
                if px.proc is not None:
                    PROCS.stop(px.proc, signal.SIGTERM, timeout=10)
        others = 100.0 * (self.monitor.seconds() - o0) / (time.time() - ot0)
        steal = 100.0 * (self.monitor.steal_seconds() - st0) / (time.time() - ot0)
        if self.a.instructions and not any(r.failed for r in res.values()):
            for px in pxs:
                self.instructions(px, res[px.name])
        for px in pxs:
            r = res[px.name]
            r.others_cpu_pct = others
            r.steal_pct = steal
            log = px.log.read_text(errors="replace") if px.log.exists() else ""
            r.log_warnings = [l for l in log.splitlines()
                              if re.search(r"\b(WARN|ERROR|CRITICAL)\b", l)
                              and "load_tm_api" not in l][:20]
            for l in r.log_warnings[:3]:
                r.warnings.append(f"{px.name} log: {l.strip()[:200]}")
        return [res[px.name] for px in pxs]


# ---------------------------------------------------------------------------------------
# reporting


def sh(cmd) -> str:
    try:
        return subprocess.run(cmd, shell=True, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    except subprocess.SubprocessError:
        return ""


def weir_binary_info(f: Path, origin: Path) -> str:
    """Which weir binary ran: the tree may hold uncommitted work, so name the file too."""
    import hashlib
    h = hashlib.sha256(f.read_bytes()).hexdigest()[:12]
    built = dt.datetime.fromtimestamp(f.stat().st_mtime).astimezone().isoformat(timespec="seconds")
    try:
        where = origin.relative_to(ROOT)
    except ValueError:
        where = origin
    return f"weir binary: a copy of {where}, sha256 {h}…, built {built}"


def add_ramp_args(ap: argparse.ArgumentParser):
    """The options of the max-rate ramp (Bench.max_rate) and of where the proxies run
    (--pin, --proxy-cpu-limit), the same in bench.py's and dispatcher.py's parsers."""
    env = os.environ.get
    ap.add_argument("--limits", type=int_list,
                    default=int_list(env("BENCH_LIMITS", "25,50,100,200,400,800")),
                    help="max-rate steps: calls in progress (SIPp -l) (default 25,50,100,200,400,800)")
    ap.add_argument("--max-repeat", type=int, default=int(env("BENCH_MAX_REPEAT", 1)),
                    help="times the two highest max-rate steps run again, highest first, "
                         "for each proxy without a failed step (default 1)")
    ap.add_argument("--step", type=float, default=float(env("BENCH_STEP", 5)),
                    help="seconds measured per max-rate step (default 5)")
    ap.add_argument("--warmup", type=float, default=float(env("BENCH_WARMUP", 1)),
                    help="seconds of load before each max-rate step is measured (default 1)")
    ap.add_argument("--max-offered", type=int, default=int(env("BENCH_MAX_OFFERED", 100000)),
                    help="SIPp -r of the max-rate steps, far above what is reachable (default 100000)")
    ap.add_argument("--pin", action="store_true", default=bool(env("BENCH_PIN")),
                    help="pin the proxy to the last CPU and SIPp to the others (taskset)")
    ap.add_argument("--proxy-cpu-limit", type=float, default=float(env("BENCH_PROXY_CPU_LIMIT", 0)),
                    metavar="PCT",
                    help="cap each proxy's CPU at PCT %% of one CPU (a cgroup per proxy, "
                         "CFS quota per 10 ms; needs root), so that the proxy and not SIPp's "
                         "UAC sets the max rate: e.g. 30 (default 0: no cap)")


def machine_info(b, results) -> dict:
    cpu = ""
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem = Path("/proc/meminfo").read_text().split("\n")[0].split()[1]
    commit = b.commit
    return {
        "date": dt.datetime.now().astimezone().isoformat(timespec="seconds"),
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "memory_gib": round(int(mem) / 1024 / 1024, 1),
        "kernel": platform.release(),
        "os": sh(". /etc/os-release 2>/dev/null && echo \"$PRETTY_NAME\""),
        "commit": commit,
        "versions": {r.proxy: r.version for r in results},
        "weir_binary": getattr(b, "weir_binary", ""),
        "pinned": bool(b.a.pin),
        "proxy_cpu_limit": {n: c.describe() for n, c in b.cpu_limits.items()},
        "sipp": sh("sipp -v 2>&1 | grep -m1 SIPp").strip(),
        "rustc": sh("rustc --version"),
    }


def table(results: list[Result], rates: list[int], stateful=False) -> str:
    by = {r.proxy: r for r in results}
    cols = [r.proxy for r in results]
    both = "weir" in by and "kamailio" in by

    def fx(r, rate):
        return next((x for x in r.fixed if x.rate == rate), Load("fixed", rate=rate))

    def best(r):
        return r.best or Load("max")

    rows = [
        ("messages through the proxy per call", lambda r: r.msgs_per_call, "{:d}", False),
        ("max rate: calls/s", lambda r: best(r).cps, "{:,.0f}", True),
        ("**max rate: messages/s**", lambda r: best(r).mps, "**{:,.0f}**", True),
        ("max rate: reached at -l (calls in progress)", lambda r: best(r).limit, "{:d}", False),
        ("max rate: failed calls", lambda r: best(r).fail_pct, "{:.3f}%", False),
        ("max rate: proxy CPU, % of one core", lambda r: best(r).proxy_cpu_pct, "{:.0f}%", True),
        ("max rate: SIPp UAC + UAS CPU, % of one core",
         lambda r: best(r).uac_cpu_pct + best(r).uas_cpu_pct, "{:.0f}%", False),
        ("max rate: proxy CPU per message (µs)", lambda r: best(r).us_per_msg, "{:.2f}", True),
    ]

    def rtd3(h):
        return (hist_pct(h, .5), hist_pct(h, .9), hist_pct(h, .99)) if h else (float("nan"),) * 3

    def pr3(v):
        return (list_pct(v, .5), list_pct(v, .9), list_pct(v, .99)) if v else (float("nan"),) * 3

    if stateful:
        rows[1] = ("**max rate: calls/s**", lambda r: best(r).cps, "**{:,.0f}**", True)
        rows[2] = ("max rate: messages/s", lambda r: best(r).mps, "{:,.0f}", True)
        rows += [
            ("max rate: proxy CPU per call (µs)", lambda r: best(r).us_per_call, "{:.1f}", True),
            ("max rate: SIPp INVITE→200 p50 / p90 / p99 (ms)",
             lambda r: rtd3(best(r).rtd.get("setup")), "{:.0f} / {:.0f} / {:.0f}", False),
            ("max rate: SIPp BYE→200 p50 / p90 / p99 (ms)",
             lambda r: rtd3(best(r).rtd.get("bye")), "{:.0f} / {:.0f} / {:.0f}", False),
        ]
    for rate in rates:
        if stateful:
            rows += [
                (f"**{rate} calls/s: proxy CPU per call (µs)**",
                 lambda r, rate=rate: fx(r, rate).us_per_call, "**{:.1f}**", True),
                (f"{rate} calls/s: probe INVITE→200 p50 / p90 / p99 (µs)",
                 lambda r, rate=rate: pr3(fx(r, rate).probe.get("setup")),
                 "{:,.0f} / {:,.0f} / {:,.0f}", False),
                (f"{rate} calls/s: probe BYE→200 p50 / p90 / p99 (µs)",
                 lambda r, rate=rate: pr3(fx(r, rate).probe.get("bye")),
                 "{:,.0f} / {:,.0f} / {:,.0f}", False),
                (f"{rate} calls/s: probe INVITE→200 p50 (µs)",
                 lambda r, rate=rate: pr3(fx(r, rate).probe.get("setup"))[0], "{:,.0f}", True),
                (f"{rate} calls/s: probe calls ok / failed",
                 lambda r, rate=rate: (fx(r, rate).probe_calls, fx(r, rate).probe_failed),
                 "{:,} / {}", False),
                (f"{rate} calls/s: SIPp INVITE→200 p50 / p90 / p99 (ms)",
                 lambda r, rate=rate: rtd3(fx(r, rate).rtd.get("setup")), "{:.0f} / {:.0f} / {:.0f}", False),
                (f"{rate} calls/s: SIPp BYE→200 p50 / p90 / p99 (ms)",
                 lambda r, rate=rate: rtd3(fx(r, rate).rtd.get("bye")), "{:.0f} / {:.0f} / {:.0f}", False),
            ]
        rows += [
            (f"**{rate} calls/s: proxy CPU per message (µs)**",
             lambda r, rate=rate: fx(r, rate).us_per_msg, "**{:.2f}**", True),
            (f"{rate} calls/s: CPU per message of each slice, min – max (µs)",
             lambda r, rate=rate: (min(fx(r, rate).slices_us or [0]), max(fx(r, rate).slices_us or [0])),
             "{:.2f} – {:.2f}", False),
            (f"{rate} calls/s: proxy context switches / page faults per message",
             lambda r, rate=rate: (fx(r, rate).switches_per_msg, fx(r, rate).faults_per_msg),
             "{:.2f} / {:.3f}", False),
            (f"{rate} calls/s: proxy CPU, % of one core (user + sys s)",
             lambda r, rate=rate: (fx(r, rate).proxy_cpu_pct, fx(r, rate).proxy_user_s,
                                   fx(r, rate).proxy_sys_s), "{:.1f}% ({:.2f} + {:.2f})", False),
            (f"{rate} calls/s: calls ok / failed / retransmissions",
             lambda r, rate=rate: (fx(r, rate).calls_ok, fx(r, rate).calls_failed,
                                   fx(r, rate).retrans), "{:,} / {} / {}", False),
        ]
    if any(r.instructions_per_msg for r in results):
        rows.append(("**user-space instructions per message (callgrind)**",
                     lambda r: r.instructions_per_msg, "**{:,.0f}**", True))
    if any(r.instructions_per_call for r in results):
        rows.append(("**user-space instructions per call (callgrind)**",
                     lambda r: r.instructions_per_call, "**{:,.0f}**", True))
    rows += [
        ("idle proxy CPU, % of one core", lambda r: r.idle_cpu_pct, "{:.2f}%", False),
        ("proxy processes / threads", lambda r: (r.proxy_procs, r.proxy_threads), "{} / {}", False),
        ("other processes' CPU during the run, % of one core (noise)", lambda r: r.others_cpu_pct,
         "{:.1f}%", False),
        ("CPU stolen by the hypervisor during the run, % of one core (noise)",
         lambda r: r.steal_pct, "{:.1f}%", False),
    ]
    head = "| | " + " | ".join(cols) + (" | Weir / Kamailio |" if both else " |")
    sep = "|---|" + "---:|" * len(cols) + ("---:|" if both else "")
    out = [head, sep]
    for label, get, fmt, show_ratio in rows:
        cells = []
        for c in cols:
            v = get(by[c])
            cells.append(fmt.format(*v) if isinstance(v, tuple) else fmt.format(v))
        line = f"| {label} | " + " | ".join(cells) + " |"
        if both:
            if show_ratio:
                w, k = get(by["weir"]), get(by["kamailio"])
                line += f" {w / k:.2f} |" if k else " – |"
            else:
                line += " |"
        out.append(line)
    return "\n".join(out)


def write_report(b: Bench, results: list[Result], info: dict, argv) -> Path:
    out = BENCH / "results" / f"{b.stamp}.md"
    out.parent.mkdir(parents=True, exist_ok=True)
    a = b.a
    L = [f"# Weir vs Kamailio, {'stateful proxy (tm)' if b.stateful else 'stateless relay'}, "
         f"{info['date']}\n",
         f"`bench/run {' '.join(shlex.quote(x) for x in argv)}`. What is measured and why: "
         "docs/performance.md.\n",
         "## Figures\n",
         table(results, a.rates, b.stateful) + "\n",
         "Ratios: Weir / Kamailio. Above 1 for rates is better for Weir; below 1 for CPU is "
         "better for Weir.\n",
         "## Machine and versions\n",
         f"- {info['cpu']}, {info['nproc']} cores, {info['memory_gib']} GiB; "
         f"kernel {info['kernel']}; {info['os']}",
         f"- commit {info['commit']}"
         + (" (of the tree; the weir binary was given with --weir-bin)" if a.weir_bin else "")]
    for k, v in info["versions"].items():
        L.append(f"- {k}: {v}")
    if info.get("weir_binary"):
        L.append(f"- {info['weir_binary']}")
    for k, v in info.get("proxy_cpu_limit", {}).items():
        L.append(f"- {k}'s CPU limit (--proxy-cpu-limit): {v}")
    L += [f"- {info['sipp']}; {info['rustc']}",
          f"- settings: max-rate steps -l {','.join(map(str, a.limits))} and the two highest "
          f"{a.max_repeat} more time(s), {a.step:g} s each after "
          f"{a.warmup:g} s warm-up; fixed rates {','.join(map(str, a.rates))} calls/s, "
          f"{a.rounds} slices of {a.slice:g} s per proxy and rate, in turns; ports weir {a.weir_port}, kamailio {a.kamailio_port}, "
          f"UAS {a.uas_port}, UAC {a.uac_port}\n"]
    for r in results:
        L.append(f"## {r.proxy}\n")
        if r.warnings:
            L.append("Warnings:\n")
            L += [f"- {w}" for w in r.warnings]
            L.append("")
        L.append(f"One call, as the UAC saw it ({r.msgs_per_call} messages through the proxy): "
                 + ", ".join(short(x) for x in r.call_trace) + "\n")
        L.append("| load | calls/s | messages/s | failed | retrans | drops proxy / SIPp "
                 "| proxy CPU | µs CPU / message | switches / message | UAC CPU | UAS CPU |")
        L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for x in r.max_steps + r.fixed:
            name = (f"closed loop -l {x.limit}" if x.kind == "max"
                    else f"fixed {x.rate}/s, median of {len(x.slices_us)} slices")
            L.append(f"| {name} | {x.cps:,.0f} | {x.mps:,.0f} | {x.calls_failed} | {x.retrans} | "
                     f"{x.drops_proxy} / {x.drops_sipp} | {x.proxy_cpu_pct:.0f}% | "
                     f"{x.us_per_msg:.2f} | {x.switches_per_msg:.2f} | {x.uac_cpu_pct:.0f}% | "
                     f"{x.uas_cpu_pct:.0f}% |")
        for x in r.fixed:
            L.append(f"\nFixed {x.rate}/s, CPU per message of each slice (µs): "
                     + ", ".join(f"{v:.2f}" for v in x.slices_us))
        if b.stateful:
            L.append("\nCPU per call and response times (SIPp: whole ms, every call; probe: µs, "
                     f"{a.probe_rate:g} calls/s during the fixed-rate slices):\n")
            for x in r.max_steps + r.fixed:
                name = f"closed loop -l {x.limit}" if x.kind == "max" else f"fixed {x.rate}/s"
                L.append(f"- {name}: {x.us_per_call:.1f} µs CPU per call" + rtd_text(x)
                         + (f" (probe calls {x.probe_calls} ok, {x.probe_failed} failed)"
                            if x.probe_calls or x.probe_failed else ""))
        L.append("\nCPU by thread (Weir) or process (Kamailio), % of one core:\n")
        for x in r.max_steps + r.fixed:
            name = f"closed loop -l {x.limit}" if x.kind == "max" else f"fixed {x.rate}/s"
            th = ", ".join(f"{k} {v:.1f}%" for k, v in sorted(x.threads.items(), key=lambda kv: -kv[1]))
            L.append(f"- {name}: {th}")
        L.append("\nCommands:\n\n```")
        for k, v in r.commands.items():
            L.append(f"# {k}\n{v}")
        L.append("```\n")
        if r.edits.get("forwarded"):
            L.append("An INVITE with `X-Debug-Trace` and `x-debug-lower` headers as the next hop "
                     f"received it (check {'passed' if r.edits['ok'] else 'FAILED'}; "
                     f"Max-Forwards: 0 was answered `{r.edits.get('mf0')}`):\n")
            L.append("```\n" + r.edits["forwarded"].split("\r\n\r\n")[0].replace("\r\n", "\n")
                     + "\n```\n")
        if r.profile:
            L += profile_report(r, f"{a.rates[0]} calls/s")
    L.append(f"Raw files (SIPp stats and logs): `{b.run_dir}`.\n")
    out.write_text("\n".join(L))

    def enc(o):
        return asdict(o) if hasattr(o, "__dataclass_fields__") else str(o)
    out.with_suffix(".json").write_text(json.dumps(
        {"machine": info, "settings": vars(a), "results": [asdict(r) for r in results]},
        indent=1, default=enc))
    return out


def int_list(s: str) -> list[int]:
    return [int(x) for x in str(s).split(",") if x.strip()]



def start_and_bench(b, proxies):
    """Warn when the machine is busy already, start the proxies named in `proxies`
    (comma-separated: weir, kamailio), bench each with `b`, stop every process; the
    results. Shared by the stateless/stateful, register and dispatcher benches."""
    b.say(f"run directory {b.run_dir}")
    others = others_busy()
    if others > 10:
        print(f"bench: warning: other processes use {others:.0f}% of a core right now; "
              "figures will be noisy", file=sys.stderr)
    b.monitor = OthersMonitor()
    pxs = []
    for name in [p.strip() for p in proxies.split(",") if p.strip()]:
        if name == "weir":
            pxs.append(b.weir_proxy())
        elif name == "kamailio":
            pxs.append(b.kamailio_proxy())
        else:
            sys.exit(f"bench: unknown proxy {name!r} (weir, kamailio)")
    try:
        return b.bench_all(pxs)
    finally:
        PROCS.stop_all()


def noise_warnings(results):
    """Add a warning to each result measured while the host or other processes took
    CPU."""
    for r in results:
        if r.steal_pct > 10:
            r.warnings.append(f"the hypervisor took {r.steal_pct:.0f}% of a core (steal) during "
                              "the measurements: the host is busy, figures are noisy")
        if r.others_cpu_pct > 10:
            r.warnings.append(f"other processes used {r.others_cpu_pct:.0f}% of a core during "
                              "the measurements: figures are noisy")

def main():
    ap = argparse.ArgumentParser(prog="bench/run", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    env = os.environ.get
    ap.add_argument("--rates", type=int_list,
                    default=int_list(env("BENCH_RATES")) if env("BENCH_RATES") else None,
                    help="calls/s of the fixed-rate CPU tests (default 1000,3000; "
                         "1000,2000 with --mode stateful)")
    ap.add_argument("--slice", type=float, default=float(env("BENCH_SLICE", 5)),
                    help="seconds of each fixed-rate slice (default 5)")
    ap.add_argument("--rounds", type=int, default=int(env("BENCH_ROUNDS", 4)),
                    help="fixed-rate slices per proxy and rate, taken in turns ABBA... "
                         "(default 4: 20 s per proxy and rate)")
    add_ramp_args(ap)
    ap.add_argument("--mode", choices=["stateless", "stateful", "register", "register-auth",
                                       "register-memory"],
                    default=env("BENCH_MODE", "stateless"),
                    help="stateless (default): bench/weir/stateless.toml against "
                         "bench/kamailio/stateless.cfg; stateful: bench/weir/stateful.toml "
                         "against bench/kamailio/stateful.cfg (tm), with calls along the "
                         "route set, CPU per call and response times; register / "
                         "register-auth: bench/weir/register[-auth].toml against "
                         "bench/kamailio/register.cfg (registrar, usrloc in memory; digest "
                         "auth), registrations/s and CPU per registration; register-memory: "
                         "memory per binding (--bindings); see bench/lib/register.py")
    ap.add_argument("--users", type=int, default=int(env("BENCH_USERS", 20000)),
                    help="register modes: distinct users, registered once before the "
                         "measurements (default 20000)")
    ap.add_argument("--fill-rate", type=int, default=int(env("BENCH_FILL_RATE", 5000)),
                    help="register modes: SIPp -r when registering every user once "
                         "(default 5000, at most 200 in progress)")
    ap.add_argument("--bindings", type=int_list, default=int_list(env("BENCH_BINDINGS", "100000")),
                    help="register-memory: binding counts, each on a fresh proxy "
                         "(default 100000)")
    ap.add_argument("--weir-auth-module", default=env("BENCH_WEIR_AUTH_MODULE"),
                    help="register-auth: auth_digest.wasm to load (default "
                         "target/wasm32-wasip2/release/...)")
    ap.add_argument("--kamailio-shm", type=int, default=int(env("BENCH_KAMAILIO_SHM", 1024)),
                    help="register modes: kamailio -m, MiB of shared memory (default 1024; "
                         "1M bindings need about 1.5 GiB)")
    ap.add_argument("--probe-rate", type=float, default=float(env("BENCH_PROBE_RATE", 20)),
                    help="stateful: calls/s of the response-time probe during each fixed-rate "
                         "slice (default 20; 0: none)")
    ap.add_argument("--probe-port", type=int, default=int(env("BENCH_PROBE_PORT", 5182)))
    ap.add_argument("--proxies", default=env("BENCH_PROXIES", "weir,kamailio"),
                    help="comma-separated, in this order (default weir,kamailio)")
    ap.add_argument("--profile", action="store_true", default=bool(env("BENCH_PROFILE")),
                    help="after each proxy's measurements, record a perf profile during one "
                         "more run at the first fixed rate (needs perf)")
    ap.add_argument("--instructions", action="store_true", default=bool(env("BENCH_INSTRUCTIONS")),
                    help="also count user-space instructions per message with valgrind's "
                         "callgrind (about 1.5 extra minutes; needs valgrind)")
    ap.add_argument("--weir-bin", default=env("BENCH_WEIR_BIN"),
                    help="weir binary to run (default target/pgo/dist/weir, scripts/setup "
                         "pgo's build), e.g. to compare "
                         "two builds; use with --no-setup")
    ap.add_argument("--weir-module", default=env("BENCH_WEIR_MODULE"),
                    help="header_ops.wasm to load (default target/wasm32-wasip2/release/...)")
    ap.add_argument("--kamailio-args", default=env("BENCH_KAMAILIO_ARGS", "-x tlsf"),
                    help="extra kamailio options (default \"-x tlsf\": its fastest memory "
                         "manager here; \"\" for the packaged default)")
    ap.add_argument("--weir-port", type=int, default=int(env("BENCH_WEIR_PORT", 5160)))
    ap.add_argument("--kamailio-port", type=int, default=int(env("BENCH_KAMAILIO_PORT", 5260)))
    ap.add_argument("--uas-port", type=int, default=int(env("BENCH_UAS_PORT", 5170)))
    ap.add_argument("--uac-port", type=int, default=int(env("BENCH_UAC_PORT", 5180)),
                    help="SIPp UAC's port (default 5180; with --paired the second proxy's "
                         "UAC uses the next port)")
    ap.add_argument("--paired", action="store_true", default=bool(env("BENCH_PAIRED")),
                    help="register modes, with --proxy-cpu-limit: the proxies run each "
                         "max-rate step at the same time, each loaded by its own SIPp UAC, "
                         "so both rates of a step see the same background load; the report "
                         "adds the ratio of each step")
    ap.add_argument("--work-dir", default=env("BENCH_WORK_DIR"),
                    help="where logs and SIPp stats go (default /tmp/weir-bench-<date>)")
    ap.add_argument("--no-setup", action="store_true",
                    help="skip scripts/setup (handled by bench/run)")
    args = ap.parse_args()
    if args.rates is None:
        args.rates = {"stateful": [1000, 2000], "register": [2000, 4000],
                      "register-auth": [1000, 2000]}.get(args.mode, [1000, 3000])
    if args.instructions and not shutil.which("valgrind"):
        sys.exit("bench: --instructions needs valgrind (Debian: valgrind)")
    if args.profile and not shutil.which("perf"):
        sys.exit("bench: --profile needs perf (Debian: linux-perf)")
    if args.paired and not (args.mode in ("register", "register-auth") and args.proxy_cpu_limit):
        sys.exit("bench: --paired needs --mode register or register-auth (the other modes share "
                 "one SIPp UAS) and --proxy-cpu-limit (uncapped, the two proxies and their "
                 "UACs would compete for the CPUs instead of each being held to the same budget)")

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    if args.mode.startswith("register"):
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        sys.modules.setdefault("bench", sys.modules[__name__])  # one PROCS for both
        import register  # bench/lib/register.py
        return register.main(args)

    b = Bench(args)
    results = start_and_bench(b, args.proxies)
    noise_warnings(results)
    info = machine_info(b, results)
    path = write_report(b, results, info, sys.argv[1:])
    print()
    print(table(results, args.rates, b.stateful))
    print()
    for r in results:
        for w in r.warnings:
            print(f"warning ({r.proxy}): {w}")
    print(f"\nwritten: {path.relative_to(ROOT)} (+ .json)")
    if any(r.failed for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
