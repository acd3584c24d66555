#!/usr/bin/env python3
"""CPU per thread of one Weir, second by second, during and after a burst of calls.

    python3 bench/lib/burst.py --bin target/dist/weir [--rate 1000] [--seconds 5] [--watch 14]

Starts BIN on bench/weir/stateful.toml (its own ports, the SIPp UAS of bench/run --mode
stateful, the header module given by --module), sends --rate calls/s for --seconds with
SIPp's stateful UAC, and prints every second, for --watch seconds from the burst's
start, the CPU seconds each of Weir's threads used in that second (/proc schedstat,
the scheduler's run time; utime + stime where that is missing). Transactions are freed wt_timer (5 s) after they end, so the
timer thread's work for the burst shows twice: while it runs (retransmission timers)
and 5 s later (reaping). Loopback only; stops what it started.
"""

import argparse
import os
import subprocess
import time

from ab import ROOT, stateful_config, stop_all, thread_cpu, uac_argv, uas_argv


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
    path = f"{a.work_dir}/weir.toml"
    open(path, "w").write(stateful_config(os.path.abspath(a.module), a.port, a.port + 10))
    procs = []
    try:
        procs.append(subprocess.Popen(uas_argv(a.port + 10),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        weir = subprocess.Popen([a.bin, "run", "--config", path],
                                stdout=open(f"{a.work_dir}/weir.log", "w"), stderr=subprocess.STDOUT)
        procs.append(weir)
        time.sleep(2)
        if weir.poll() is not None:
            raise SystemExit(f"weir exited at start; see {a.work_dir}/weir.log")
        procs.append(subprocess.Popen(uac_argv(a.port, a.port + 30, a.rate, a.rate * a.seconds),
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        prev = thread_cpu(weir.pid)
        for i in range(a.watch):
            time.sleep(1)
            cur = thread_cpu(weir.pid)
            used = {k.split("#")[0]: round(v - prev.get(k, 0), 4)
                    for k, v in cur.items() if v - prev.get(k, 0) > 0.00005}
            print(f"{i + 1:3d} s  {used}", flush=True)
            prev = cur
    finally:
        stop_all(procs)


if __name__ == "__main__":
    main()
