#!/usr/bin/env python3
"""Weir against Weir: CPU per message of several builds under the same stateful load.

    python3 bench/lib/ab.py --bins /tmp/weir-a,/tmp/weir-b [--rate 2000] [--rounds 4]

Each binary runs bench/weir/stateful.toml (its own port, the same SIPp UAS, the header
module given by --module) side by side with the others; SIPp's stateful UAC then sends
--rate calls/s for --slice seconds to one of them at a time, in turns (A B C A B C ...),
and the proxy's utime + stime over the slice (/proc, every thread) is divided by the
messages through it (7 per call). It prints each slice with the CPU seconds of each busy
thread, then the median per binary. No Kamailio: for comparing two builds of Weir, not
for the figures against Kamailio (bench/run does those). Loopback only; stops what it
started.
"""

import argparse
import os
import re
import signal
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TICK = os.sysconf("SC_CLK_TCK")


def thread_cpu(pid):
    """CPU seconds of each thread of `pid`, keyed `name#tid`: the scheduler's run time
    (/proc/.../schedstat, nanoseconds) where the kernel has it, else utime + stime (whole
    ticks, which on a tick-accounting kernel are samples)."""
    out = {}
    for t in os.listdir(f"/proc/{pid}/task"):
        s = open(f"/proc/{pid}/task/{t}/stat").read()
        name = s[s.index("(") + 1 : s.rindex(")")]
        try:
            out[f"{name}#{t}"] = int(open(f"/proc/{pid}/task/{t}/schedstat").read().split()[0]) / 1e9
        except (OSError, ValueError, IndexError):
            f = s.rsplit(")", 1)[1].split()
            out[f"{name}#{t}"] = (int(f[11]) + int(f[12])) / TICK
    return out


def stateful_config(module, port, uas_port):
    """bench/weir/stateful.toml with `module` as its header module, listening on `port`
    and forwarding to the UAS on `uas_port`."""
    cfg = open(f"{ROOT}/bench/weir/stateful.toml").read()
    cfg = re.sub(r'component = ".*"', f'component = "{module}"', cfg)
    cfg = cfg.replace("127.0.0.1:5160", f"127.0.0.1:{port}")
    return cfg.replace("127.0.0.1:5170", f"127.0.0.1:{uas_port}")


def uas_argv(uas_port):
    """SIPp's stateful UAS (bench/run --mode stateful's) on `uas_port`."""
    return ["sipp", "-sf", f"{ROOT}/bench/sipp/uas-stateful.xml", "-i", "127.0.0.1",
            "-p", str(uas_port), "-nostdin", "-buff_size", "4194304"]


def uac_argv(port, uac_port, rate, calls):
    """SIPp's stateful UAC from `uac_port`: `calls` calls at `rate` calls/s to `port`."""
    return ["sipp", "-sf", f"{ROOT}/bench/sipp/uac-stateful.xml", f"127.0.0.1:{port}",
            "-s", "service", "-i", "127.0.0.1", "-p", str(uac_port), "-d", "0",
            "-nostdin", "-buff_size", "4194304", "-r", str(rate), "-m", str(calls)]


def stop_all(procs):
    """SIGTERM every process started, then wait up to 5 s for each and kill the rest."""
    for p in procs:
        p.send_signal(signal.SIGTERM)
    for p in procs:
        try:
            p.wait(5)
        except subprocess.TimeoutExpired:
            p.kill()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bins", required=True, help="comma-separated weir binaries")
    ap.add_argument("--module", default=f"{ROOT}/target/wasm32-wasip2/release/header_ops.wasm")
    ap.add_argument("--rate", type=int, default=2000, help="calls/s (default 2000)")
    ap.add_argument("--slice", type=int, default=5, help="seconds per slice (default 5)")
    ap.add_argument("--rounds", type=int, default=4, help="slices per binary (default 4)")
    ap.add_argument("--port", type=int, default=5460, help="first proxy port (then +2 each)")
    ap.add_argument("--uas-port", type=int, default=5480)
    ap.add_argument("--uac-port", type=int, default=5490)
    ap.add_argument("--work-dir", default="/tmp/weir-ab")
    a = ap.parse_args()
    bins = a.bins.split(",")
    os.makedirs(a.work_dir, exist_ok=True)
    module = f"{a.work_dir}/header_ops.wasm"
    subprocess.run(["cp", a.module, module], check=True)
    procs = []
    try:
        procs.append(subprocess.Popen(uas_argv(a.uas_port),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        proxies = []
        for i, b in enumerate(bins):
            port = a.port + 2 * i
            path = f"{a.work_dir}/weir{i}.toml"
            open(path, "w").write(stateful_config(module, port, a.uas_port))
            p = subprocess.Popen([b, "run", "--config", path],
                                 stdout=open(f"{a.work_dir}/weir{i}.log", "w"),
                                 stderr=subprocess.STDOUT)
            procs.append(p)
            proxies.append((p, port))
        time.sleep(2)
        for p, _ in proxies:
            if p.poll() is not None:
                raise SystemExit(f"a proxy exited at start; see {a.work_dir}/weir*.log")
        # Cyclic (A B C A B C ...), never the same binary twice in a row: a proxy reaps
        # a slice's transactions wt_timer (5 s) after it, which must not land in its
        # own next slice.
        order = list(range(len(bins))) * a.rounds
        res = {b: [] for b in bins}
        for i in order:
            p, port = proxies[i]
            n = a.rate * a.slice
            before = thread_cpu(p.pid)
            u = subprocess.run(
                uac_argv(port, a.uac_port, a.rate, n) + ["-timeout", str(6 * a.slice)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.3)
            after = thread_cpu(p.pid)
            busy = {k: round(v - before.get(k, 0), 2) for k, v in after.items()
                    if v - before.get(k, 0) >= 0.02}
            total = sum(v - before.get(k, 0) for k, v in after.items())
            us = total / (n * 7) * 1e6
            res[bins[i]].append(us)
            print(f"{bins[i]:24s} sipp rc={u.returncode} {us:6.2f} us/message  {busy}", flush=True)
            time.sleep(1)
        for b in bins:
            v = sorted(res[b])
            print(f"{b}: median {v[len(v) // 2]:.2f} us/message, slices {[round(x, 2) for x in res[b]]}")
    finally:
        stop_all(procs)


if __name__ == "__main__":
    main()
