#!/usr/bin/env python3
"""CPU per thread of one Weir, second by second, during and after a burst of calls.

    python3 bench/lib/burst.py --bin target/dist/weir [--rate 1000] [--seconds 5] [--watch 14]

Starts BIN on bench/weir/stateful.toml (its own ports, the SIPp UAS of bench/run --mode
stateful, the header module given by --module), sends --rate calls/s for --seconds with
SIPp's stateful UAC, and prints every second, for --watch seconds from the burst's
start, the CPU seconds each of Weir's threads used in that second (/proc, utime +
stime, 10 ms resolution). Transactions are freed wt_timer (5 s) after they end, so the
timer thread's work for the burst shows twice: while it runs (retransmission timers)
and 5 s later (reaping). Loopback only; stops what it started.
"""

import argparse
import os
import re
import subprocess
import time

from ab import ROOT, stop_all, thread_cpu


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bin", required=True, help="the weir binary")
    ap.add_argument("--module", default=f"{ROOT}/target/wasm32-wasip2/release/header_ops.wasm")
    ap.add_argument("--rate", type=int, default=1000, help="calls/s (default 1000)")
    ap.add_argument("--seconds", type=int, default=5, help="length of the burst (default 5)")
    ap.add_argument("--watch", type=int, default=14, help="seconds to print (default 14)")
    ap.add_argument("--port", type=int, default=5660, help="proxy port (UAS +10, UAC +30)")
    ap.add_argument("--work-dir", default="/tmp/weir-burst")
    a = ap.parse_args()
    os.makedirs(a.work_dir, exist_ok=True)
    cfg = open(f"{ROOT}/bench/weir/stateful.toml").read()
    cfg = re.sub(r'component = ".*"', f'component = "{os.path.abspath(a.module)}"', cfg)
    cfg = cfg.replace("127.0.0.1:5160", f"127.0.0.1:{a.port}")
    cfg = cfg.replace("127.0.0.1:5170", f"127.0.0.1:{a.port + 10}")
    path = f"{a.work_dir}/weir.toml"
    open(path, "w").write(cfg)
    procs = []
    try:
        procs.append(subprocess.Popen(
            ["sipp", "-sf", f"{ROOT}/bench/sipp/uas-stateful.xml", "-i", "127.0.0.1",
             "-p", str(a.port + 10), "-nostdin", "-buff_size", "4194304"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        weir = subprocess.Popen([a.bin, "run", "--config", path],
                                stdout=open(f"{a.work_dir}/weir.log", "w"), stderr=subprocess.STDOUT)
        procs.append(weir)
        time.sleep(2)
        if weir.poll() is not None:
            raise SystemExit(f"weir exited at start; see {a.work_dir}/weir.log")
        procs.append(subprocess.Popen(
            ["sipp", "-sf", f"{ROOT}/bench/sipp/uac-stateful.xml", f"127.0.0.1:{a.port}",
             "-s", "service", "-i", "127.0.0.1", "-p", str(a.port + 30), "-d", "0",
             "-nostdin", "-buff_size", "4194304", "-r", str(a.rate),
             "-m", str(a.rate * a.seconds)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        prev = thread_cpu(weir.pid)
        for i in range(a.watch):
            time.sleep(1)
            cur = thread_cpu(weir.pid)
            used = {k.split("#")[0]: round(v - prev.get(k, 0), 2)
                    for k, v in cur.items() if v - prev.get(k, 0) > 0}
            print(f"{i + 1:3d} s  {used}", flush=True)
            prev = cur
    finally:
        stop_all(procs)


if __name__ == "__main__":
    main()
