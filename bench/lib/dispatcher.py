#!/usr/bin/env python3
"""Weir's dispatcher module vs Kamailio's dispatcher: the same SIPp calls through each,
round robin over three SIPp UAS, on one machine, in one run (issue #6).

Called by bench/dispatcher (which installs Kamailio/SIPp when missing). Standard library
only; the measurement machinery is bench/lib/bench.py's (imported, not changed):

  1. three SIPp UAS on 127.0.0.1 (--uas-port, default 5271-5273; bench/sipp/
     uas-stateful.xml, plus -aa so that they answer the OPTIONS probes with 200) in one
     process group;
  2. Weir (bench/weir/dispatcher.toml + dispatcher.list, the dispatcher Wasm module in
     the request and failure chains of a stateful route) and Kamailio
     (bench/kamailio/dispatcher.cfg: dispatcher + tm, ds_select_dst("1", "4"),
     failure_route with ds_next_dst), side by side on their own ports, both reading a
     copy of the same list and probing the same UAS (OPTIONS every 3 s, thresholds 1/1);
  3. one traced call through each (messages per call), then a check that a few calls
     reach every UAS;
  4. max rate: closed loops of SIPp calls (bench/sipp/uac-stateful.xml: INVITE, ACK and
     BYE along the route set), -l raised step by step (--limits), then the two highest
     steps again (--max-repeat), the proxies taking turns at each step; the best step
     with under 0.1% failed calls is the max rate;
  5. fixed rates (--rates): CPU time per call of the proxy (utime+stime of every process
     and thread, /proc) in ABBA slices, median per proxy; response times by SIPp
     (whole ms) and by bench/lib/probe.py (µs).

It prints a table and writes bench/results/<date>-dispatcher.md (+ .json).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench  # noqa: E402  bench/lib/bench.py
from bench import (  # noqa: E402
    BENCH, HOST, PROCS, ROOT, SIPP_BUFFER, Bench, Proxy, ProxyDied, Result,
    cpu_of_tree, int_list, ival, machine_info, noise_warnings, on_signal, sipp_stats, short,
    start_and_bench, table, udp_port_free, weir_binary_info, write_report,
)


class DispatcherBench(Bench):
    def __init__(self, args):
        super().__init__(args)
        self.stamp += "-dispatcher"
        self.uas_ports = [args.uas_port + i for i in range(3)]

    # -- the three UAS ------------------------------------------------------------------

    def one_uas_argv(self, port: int) -> list[str]:
        return [self.sipp, "-sf", str(self.uas_xml), "-i", HOST, "-p", str(port), "-nostdin",
                "-aa", "-buff_size", str(SIPP_BUFFER),
                "-trace_stat", "-stf", str(self.run_dir / f"uas-{port}.csv"), "-fd", "1"]

    def uas_argv(self):
        """One shell running the three SIPp UAS: one process group, one CPU tree."""
        cmds = " & ".join(shlex.join(self.one_uas_argv(p)) for p in self.uas_ports)
        return self.pin(["sh", "-c", f"{cmds} & wait"], self.sipp_cpus)

    def uas_calls(self) -> dict[int, int]:
        out = {}
        for p in self.uas_ports:
            rows = sipp_stats(self.run_dir / f"uas-{p}.csv")
            out[p] = ival(rows[-1], "TotalCallCreated") if rows else 0
        return out

    def list_copy(self) -> Path:
        text = (BENCH / "weir" / "dispatcher.list").read_text()
        for i, p in enumerate(self.uas_ports):
            text = text.replace(f"sip:{HOST}:{5271 + i}\n", f"sip:{HOST}:{p}\n")
        out = self.run_dir / "dispatcher.list"
        out.write_text(text)
        return out

    # -- proxies ------------------------------------------------------------------------

    def weir_proxy(self) -> Proxy:
        built = Path(self.a.weir_bin).resolve() if self.a.weir_bin else bench.DEFAULT_WEIR
        built_wasm = (Path(self.a.weir_module).resolve() if self.a.weir_module else
                      ROOT / "target" / "wasm32-wasip2" / "release" / "dispatcher.wasm")
        for f in (built, built_wasm):
            if not f.exists():
                sys.exit(f"bench: {f} not found: build it (scripts/setup pgo) or give "
                         "--weir-bin / --weir-module")
        weir, wasm = self.run_dir / "weir", self.run_dir / "dispatcher.wasm"
        shutil.copy2(built, weir)
        shutil.copy2(built_wasm, wasm)
        self.weir_binary = weir_binary_info(weir, built)
        self.list_copy()
        text = (BENCH / "weir" / "dispatcher.toml").read_text()
        text = re.sub(r"(?m)^udp_workers = \d+", f"udp_workers = {os.cpu_count() or 1}", text)
        text = text.replace(f'"{HOST}:5360"', f'"{HOST}:{self.a.weir_port}"')
        text = text.replace('"../../target/wasm32-wasip2/release/dispatcher.wasm"', f'"{wasm}"')
        return self.run_weir_config(weir, text)

    def kamailio_proxy(self) -> Proxy:
        kam = shutil.which("kamailio") or "/usr/sbin/kamailio"
        if not Path(kam).exists():
            sys.exit("bench: kamailio not found (bench/dispatcher installs it with apt-get)")
        rundir = self.run_dir / "kamailio-run"
        rundir.mkdir(exist_ok=True)
        cfg = BENCH / "kamailio" / "dispatcher.cfg"
        lst = self.list_copy()
        defs = ["-A", f"PROXY_PORT={self.a.kamailio_port}",
                "-A", f"CHILDREN={os.cpu_count() or 1}", "-A", f'DS_LIST="{lst}"']
        chk = subprocess.run([kam, "-c", "-f", str(cfg), "-Y", str(rundir), *defs],
                             capture_output=True, text=True)
        if chk.returncode != 0:
            sys.exit(f"bench: kamailio -c failed:\n{chk.stdout}{chk.stderr}")
        ver = subprocess.run([kam, "-v"], capture_output=True, text=True).stdout.splitlines()
        ver = ver[0].replace("version: ", "") if ver else "kamailio ?"
        # tm keeps each transaction in shared memory until wt_timer after it ends (see
        # bench.py's stateful mode): 2 GiB as there
        argv = self.pin([kam, "-DD", "-E", "-f", str(cfg), "-Y", str(rundir), "-m", "2048",
                         "-M", "8", *shlex.split(self.a.kamailio_args), *defs], self.proxy_cpus)
        return Proxy("kamailio", self.a.kamailio_port, argv, ver, self.run_dir / "kamailio.log")

    def start_proxy(self, px: Proxy):
        ports = [px.port, self.a.uac_port, *self.uas_ports]
        if self.a.probe_rate > 0:
            ports.append(self.a.probe_port)
        for port in ports:
            if not udp_port_free(port):
                sys.exit(f"bench: UDP {HOST}:{port} is in use (ss -ulpn | grep :{port}); "
                         "stop what holds it or choose other ports (see --help)")
        self.launch(px)
        if not bench.wait_ready(px.port, px.proc):
            tail = px.log.read_text(errors="replace")[-3000:] if px.log.exists() else ""
            PROCS.stop(px.proc)
            sys.exit(f"bench: {px.name} did not start (no 200 to OPTIONS on {HOST}:{px.port} "
                     f"within 30 s). Command: {shlex.join(px.argv)}\nLog tail:\n{tail}")

    def spread_check(self, px: Proxy, res: Result):
        """30 calls through the proxy: every UAS must get some (round robin)."""
        before = self.uas_calls()
        argv = self.uac_argv(px.port, ["-m", "30", "-r", "30"])
        p = PROCS.start(f"{px.name}-uac-spread", argv, self.run_dir / f"{px.name}-uac-spread.out")
        try:
            rc = p.wait(30)
        except subprocess.TimeoutExpired:
            rc = -1
        PROCS.stop(p)
        time.sleep(1.5)  # the UAS write their stats once a second
        after = self.uas_calls()
        got = {port: after[port] - before.get(port, 0) for port in self.uas_ports}
        res.commands["spread check (30 calls)"] = shlex.join(argv)
        res.edits = {"ok": rc == 0 and all(v > 0 for v in got.values()), "spread": got}
        line = ", ".join(f":{k} {v}" for k, v in got.items())
        print(f"    {px.name:<8} 30 calls (sipp exit {rc}) reached the UAS as {line}", flush=True)
        if not res.edits["ok"]:
            res.warnings.append(f"spread check: sipp exit {rc}, calls per UAS {line}")

    # -- the run ------------------------------------------------------------------------

    def bench_all(self, pxs: list[Proxy]) -> list[Result]:
        res = {px.name: Result(px.name, px.version, port=px.port) for px in pxs}
        o0, ot0, st0 = self.monitor.seconds(), time.time(), self.monitor.steal_seconds()
        uas = None
        try:
            for px in pxs:
                self.say(f"{px.name}: {shlex.join(px.argv)}")
                res[px.name].commands["proxy"] = shlex.join(px.argv)
                self.start_proxy(px)
            uas = PROCS.start("uas", self.uas_argv(), self.run_dir / "uas.out")
            for r in res.values():
                r.commands["uas (three SIPp)"] = shlex.join(self.uas_argv())
            # both proxies probe every 3 s: let them see every UAS answer first
            self.say(f"three UAS on {', '.join(map(str, self.uas_ports))}; "
                     f"{self.a.settle:g} s for the probes")
            c0 = {px.name: cpu_of_tree(px.proc.pid) for px in pxs}
            t0 = time.time()
            time.sleep(self.a.settle)
            for px in pxs:
                res[px.name].idle_cpu_pct = (100.0 * (cpu_of_tree(px.proc.pid) - c0[px.name]).total
                                             / (time.time() - t0))
            if uas.poll() is not None:
                sys.exit(f"bench: the SIPp UAS did not start, see {self.run_dir}/uas.out")
            for px in pxs:
                r = res[px.name]
                self.trace_one_call(px, r)
                print(f"    {px.name:<8} one call = {r.msgs_per_call} messages through the proxy: "
                      + ", ".join(short(f) for f in r.call_trace)
                      + f"; idle CPU (probing) {r.idle_cpu_pct:.2f}% of a core", flush=True)
                self.spread_check(px, r)
            self.max_rate(pxs, res, uas)
            self.fixed_rates(pxs, res, uas)
            for px in pxs:
                cur = cpu_of_tree(px.proc.pid)
                res[px.name].proxy_procs, res[px.name].proxy_threads = cur.procs, cur.threads
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
        for px in pxs:
            r = res[px.name]
            r.others_cpu_pct, r.steal_pct = others, steal
            log = px.log.read_text(errors="replace") if px.log.exists() else ""
            r.log_warnings = [l for l in log.splitlines()
                              if re.search(r"\b(WARN|ERROR|CRITICAL)\b|\bdown \(", l)
                              and "load_tm_api" not in l][:20]
            for l in r.log_warnings[:3]:
                r.warnings.append(f"{px.name} log: {l.strip()[:200]}")
        return [res[px.name] for px in pxs]


def main():
    ap = argparse.ArgumentParser(prog="bench/dispatcher", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    env = os.environ.get
    ap.add_argument("--rates", type=int_list, default=int_list(env("BENCH_RATES", "1000")),
                    help="calls/s of the fixed-rate CPU tests (default 1000)")
    ap.add_argument("--slice", type=float, default=float(env("BENCH_SLICE", 5)),
                    help="seconds of each fixed-rate slice (default 5)")
    ap.add_argument("--rounds", type=int, default=int(env("BENCH_ROUNDS", 4)),
                    help="fixed-rate slices per proxy and rate, in turns ABBA (default 4)")
    bench.add_ramp_args(ap)
    ap.add_argument("--settle", type=float, default=float(env("BENCH_SETTLE", 8)),
                    help="seconds between starting the UAS and the first call, for the "
                         "probes (default 8: two probe rounds plus a timeout)")
    ap.add_argument("--probe-rate", type=float, default=float(env("BENCH_PROBE_RATE", 20)),
                    help="calls/s of the µs response-time probe during the fixed-rate "
                         "slices (default 20; 0: none)")
    ap.add_argument("--probe-port", type=int, default=int(env("BENCH_PROBE_PORT", 5382)))
    ap.add_argument("--proxies", default=env("BENCH_PROXIES", "weir,kamailio"),
                    help="comma-separated, in this order (default weir,kamailio)")
    ap.add_argument("--weir-bin", default=env("BENCH_WEIR_BIN"),
                    help="weir binary (default target/pgo/dist/weir, scripts/setup pgo's build)")
    ap.add_argument("--weir-module", default=env("BENCH_WEIR_MODULE"),
                    help="dispatcher.wasm (default target/wasm32-wasip2/release/dispatcher.wasm)")
    ap.add_argument("--kamailio-args", default=env("BENCH_KAMAILIO_ARGS", "-x tlsf"),
                    help="extra kamailio options (default \"-x tlsf\", as bench/run)")
    ap.add_argument("--weir-port", type=int, default=int(env("BENCH_WEIR_PORT", 5360)))
    ap.add_argument("--kamailio-port", type=int, default=int(env("BENCH_KAMAILIO_PORT", 5460)))
    ap.add_argument("--uas-port", type=int, default=int(env("BENCH_UAS_PORT", 5271)),
                    help="first of the three UAS ports (default 5271: 5271-5273)")
    ap.add_argument("--uac-port", type=int, default=int(env("BENCH_UAC_PORT", 5380)))
    ap.add_argument("--work-dir", default=env("BENCH_WORK_DIR"),
                    help="where logs and SIPp stats go (default /tmp/weir-bench-<date>)")
    ap.add_argument("--build", action="store_true",
                    help="(bench/dispatcher) build weir and dispatcher.wasm first")
    args = ap.parse_args()
    # what bench.py's Bench expects of a stateful run
    args.mode, args.profile, args.instructions = "stateful", False, False

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGHUP, on_signal)

    b = DispatcherBench(args)
    results = start_and_bench(b, args.proxies)
    noise_warnings(results)
    info = machine_info(b, results)
    path = write_report(b, results, info, sys.argv[1:])
    text = path.read_text().split("\n", 1)
    path.write_text(f"# Weir vs Kamailio, dispatcher (round robin over three UAS, "
                    f"stateful), {info['date']}\n" + text[1].replace(
                        "`bench/run ", "`bench/dispatcher ", 1))
    print()
    print(table(results, args.rates, True))
    print()
    for r in results:
        for w in r.warnings:
            print(f"warning ({r.proxy}): {w}")
    print(f"\nwritten: {path.relative_to(ROOT)} (+ .json)")
    if any(r.failed for r in results):
        sys.exit(1)


if __name__ == "__main__":
    main()
