"""Weir vs Kamailio as registrars (issue #4): bench/run --mode register | register-auth |
register-memory. Called by bench.py's main(); reuses its process handling, /proc
accounting, max-rate ramp and ABBA fixed-rate slices.

register / register-auth:
  1. both proxies up side by side (Weir bench/weir/register[-auth].toml, Kamailio
     bench/kamailio/register.cfg [-A AUTH=1]), bindings in memory only;
  2. --users distinct users (generated into the run directory: SIPp -inf CSV, Weir's
     subscribers file, Kamailio's db_text table for its htable) each registered once
     through each proxy ("fill", its rate is reported), so that every later REGISTER
     refreshes an existing binding, a registrar's steady state, and both proxies hold
     the same number of bindings while measured;
  3. one traced registration through each (2 messages, 4 with auth);
  4. max rate: closed loops (SIPp -l steps, as the call benchmark), registrations/s with
     under 0.1% failed;
  5. CPU per registration at fixed rates, ABBA slices, median.
  A "call" of the stateless/stateful modes is one registration here: REGISTER + 200, or
  REGISTER + 401 + REGISTER with Authorization + 200.

register-memory:
  each proxy alone and fresh, for each --bindings N: idle baseline, N distinct users
  registered (no auth, expires 3600), memory again; per binding = delta / N.
  Weir: VmRSS of its process (everything it allocated, as the kernel sees it).
  Kamailio: preallocates its shared memory (-m), so its RSS says little; its figure is
  the shm `real_used` delta (kamcmd core.shmmem: usrloc keeps bindings in shm) plus the
  delta of every process's pkg `real_used` (kamcmd pkg.stats); its PSS delta (all
  processes, /proc/PID/smaps_rollup) is reported too.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import bench as B
from bench import (BENCH, HOST, PROCS, ROOT, Bench, Load, Proxy, ProxyDied, Result, cpu_of_tree,
                   exchange, sip_request, weir_binary_info)


def write_users(run_dir: Path, n: int, auth: bool, start: int = 0) -> dict:
    """The run's users: SIPp CSV, Weir's subscribers file, Kamailio's db_text table."""
    csv = run_dir / f"users-{start}-{n}.csv"
    with open(csv, "w") as f:
        f.write("SEQUENTIAL\n")
        for i in range(start, start + n):
            if auth:
                f.write(f"b{i};[authentication username=b{i} password=p{i}x]\n")
            else:
                f.write(f"b{i}\n")
    out = {"csv": csv}
    if auth:
        subs = run_dir / "subscribers.txt"
        with open(subs, "w") as f:
            for i in range(start, start + n):
                f.write(f"b{i},{HOST},p{i}x\n")
        db = run_dir / "kamailio-db"
        db.mkdir(exist_ok=True)
        with open(db / "htable", "w") as f:
            f.write("key_name(str) key_type(int) value_type(int) key_value(str) expires(int)\n")
            for i in range(start, start + n):
                f.write(f"b{i}:0:0:p{i}x:0\n")
        (db / "version").write_text("table_name(str) table_version(int)\nhtable:2\n")
        out.update(subs=subs, db=db)
    return out


class RegBench(Bench):
    def __init__(self, args):
        super().__init__(args)
        self.auth = args.mode == "register-auth"
        self.memory = args.mode == "register-memory"
        self.uac_xml = BENCH / "sipp" / ("uac-register-auth.xml" if self.auth else "uac-register.xml")
        self.uas_xml = None
        self.users = write_users(self.run_dir, args.users, self.auth)
        self.ctl = self.run_dir / "kamailio-run" / "ctl"

    def cfg_name(self) -> str:
        return "register-auth" if self.auth else "register"

    def uac_argv(self, proxy_port, extra, csv=None, trace=None, rtt=False, users=None):
        return super().uac_argv(proxy_port, ["-inf", str(users or self.users["csv"])] + extra,
                                csv=csv, trace=trace, rtt=False)

    def weir_proxy(self) -> Proxy:
        built = Path(self.a.weir_bin).resolve() if self.a.weir_bin else B.DEFAULT_WEIR
        wasm_src = (Path(self.a.weir_auth_module).resolve() if self.a.weir_auth_module else
                    ROOT / "target" / "wasm32-wasip2" / "release" / "auth_digest.wasm")
        for f in (built,) + ((wasm_src,) if self.auth else ()):
            if not f.exists():
                sys.exit(f"bench: {f} not found: run scripts/setup pgo")
        weir = self.run_dir / "weir"
        shutil.copy2(built, weir)
        self.weir_binary = weir_binary_info(weir, built)
        text = (BENCH / "weir" / f"{self.cfg_name()}.toml").read_text()
        text = re.sub(r"(?m)^udp_workers = \d+", f"udp_workers = {os.cpu_count() or 1}", text)
        text = text.replace(f'"{HOST}:5160"', f'"{HOST}:{self.a.weir_port}"')
        if self.auth:
            wasm = self.run_dir / "auth_digest.wasm"
            shutil.copy2(wasm_src, wasm)
            text = text.replace('"../../target/wasm32-wasip2/release/auth_digest.wasm"',
                                json.dumps(str(wasm)))
            text = text.replace('file = "subscribers.txt"', f'file = {json.dumps(str(self.users["subs"]))}')
        return self.run_weir_config(weir, text)

    def kamailio_proxy(self) -> Proxy:
        kam = shutil.which("kamailio") or "/usr/sbin/kamailio"
        rundir = self.run_dir / "kamailio-run"
        rundir.mkdir(exist_ok=True)
        cfg = BENCH / "kamailio" / "register.cfg"
        defs = ["-A", f"PROXY_PORT={self.a.kamailio_port}", "-A", f"CHILDREN={os.cpu_count() or 1}",
                "-A", f'CTL="unix:{self.ctl}"']
        if self.auth:
            defs += ["-A", "AUTH=1", "-A", f'DBURL="text://{self.users["db"]}"']
        chk = subprocess.run([kam, "-c", "-f", str(cfg), "-Y", str(rundir), *defs],
                             capture_output=True, text=True)
        if chk.returncode != 0:
            sys.exit(f"bench: kamailio -c failed:\n{chk.stdout}{chk.stderr}")
        ver = subprocess.run([kam, "-v"], capture_output=True, text=True).stdout.splitlines()
        ver = ver[0].replace("version: ", "") if ver else "kamailio ?"
        # usrloc keeps bindings in shm: ~1 KB each, so 1M bindings need about 1 GiB
        shm = str(self.a.kamailio_shm)
        argv = self.pin([kam, "-DD", "-E", "-f", str(cfg), "-Y", str(rundir), "-m", shm, "-M", "8",
                         *shlex.split(self.a.kamailio_args), *defs], self.proxy_cpus)
        return Proxy("kamailio", self.a.kamailio_port, argv, ver, self.run_dir / "kamailio.log")

    # -- checks -------------------------------------------------------------------------

    def check_register(self, px: Proxy) -> dict:
        """One REGISTER by hand: 200 with the binding (no auth) or 401 with an MD5,
        qop=auth challenge (auth); a wrong password is challenged again."""
        out = {"ok": True, "problems": []}
        user = "b0"
        ruri = f"sip:{HOST}:{px.port}"

        def reg(p, extra=()):
            return sip_request("REGISTER", ruri, p, [f"Expires: 3600", *extra]).replace(
                f"sip:bench@{HOST}>".encode(), f"sip:{user}@{HOST}>".encode()).replace(
                f"<{ruri}>".encode(), f"<sip:{user}@{HOST}>".encode())
        r = exchange(px.port, lambda p: reg(p))
        out["reply"] = (r or "").split("\r\n")[0]
        if self.auth:
            if not r or not r.startswith("SIP/2.0 401"):
                out["problems"].append(f"REGISTER without credentials: {out['reply'] or 'no reply'}")
            else:
                ch = [l for l in r.split("\r\n") if l.lower().startswith("www-authenticate:")]
                out["challenge"] = ch[0] if ch else ""
                if not ch or 'qop="auth"' not in ch[0] or "algorithm=" in ch[0] and "MD5" not in ch[0]:
                    out["problems"].append(f"challenge not MD5/qop=auth: {ch}")
        elif not r or not r.startswith("SIP/2.0 200") or f"sip:{user}@" not in r:
            out["problems"].append(f"REGISTER: {out['reply'] or 'no reply'}")
        out["ok"] = not out["problems"]
        return out

    # -- runs ---------------------------------------------------------------------------

    def fill(self, px: Proxy, res: Result, users_csv: Path, n: int, rate: int, tag: str) -> dict:
        """Register n users once (sequential CSV), at most -l 200 in progress."""
        csv = self.run_dir / f"{px.name}-{tag}.csv"
        argv = self.uac_argv(px.port, ["-r", str(rate), "-l", "200", "-m", str(n)], csv=csv,
                             users=users_csv)
        res.commands[tag] = shlex.join(argv)
        c0, t0 = cpu_of_tree(px.proc.pid), time.time()
        p = PROCS.start(f"{px.name}-uac-{tag}", argv, self.run_dir / f"{px.name}-uac-{tag}.out",
                        cwd=str(self.run_dir))
        while p.poll() is None:
            time.sleep(0.2)
            if px.proc.poll() is not None:
                PROCS.stop(p)
                self.check_alive(px, tag)
            if time.time() - t0 > n / 500 + 120:
                res.warnings.append(f"{tag}: SIPp did not finish in time, stopped")
                PROCS.stop(p, signal.SIGUSR1, timeout=10)
                break
        t1, c1 = time.time(), cpu_of_tree(px.proc.pid)
        PROCS.live = [(x, q) for (x, q) in PROCS.live if q is not p]
        rows = B.sipp_stats(csv)
        last = rows[-1] if rows else {}
        ok, failed = B.ival(last, "SuccessfulCall(C)"), B.ival(last, "FailedCall(C)")
        d = {"users": n, "ok": ok, "failed": failed, "seconds": round(t1 - t0, 1),
             "per_s": round(ok / (t1 - t0), 0), "retrans": B.ival(last, "Retransmissions(C)"),
             "cpu_us_per_reg": round(1e6 * (c1 - c0).total / max(1, ok), 1)}
        if failed or ok < n:
            res.warnings.append(f"{tag}: {ok} of {n} registrations succeeded, {failed} failed")
        print(f"    {px.name:<8} {tag}: {ok}/{n} registered in {d['seconds']} s ({d['per_s']:.0f}/s), "
              f"{failed} failed, {d['retrans']} retrans, {d['cpu_us_per_reg']} us CPU per registration",
              flush=True)
        return d

    def bench_all(self, pxs: list[Proxy]) -> list[Result]:
        if self.memory:
            return self.memory_all(pxs)
        res = {px.name: Result(px.name, px.version, port=px.port) for px in pxs}
        o0, ot0, st0 = self.monitor.seconds(), time.time(), self.monitor.steal_seconds()
        # no SIPp UAS: a placeholder process, so that the "uas" CPU columns read 0
        uas = PROCS.start("no-uas", ["sleep", "100000"], self.run_dir / "no-uas.out")
        try:
            for px in pxs:
                self.say(f"{px.name}: {shlex.join(px.argv)}")
                res[px.name].commands["proxy"] = shlex.join(px.argv)
                self.start_proxy(px)
            for px in pxs:
                r = res[px.name]
                r.edits = self.check_register(px)
                print(f"    {px.name:<8} REGISTER check: {'ok' if r.edits['ok'] else 'FAILED'} "
                      f"({r.edits.get('reply')}{'; ' + r.edits.get('challenge', '') if self.auth else ''})"
                      + (f" {r.edits['problems']}" if r.edits["problems"] else ""), flush=True)
                if not r.edits["ok"]:
                    r.warnings.append("REGISTER check: " + "; ".join(r.edits["problems"]))
            c0 = {px.name: cpu_of_tree(px.proc.pid) for px in pxs}
            t0 = time.time()
            time.sleep(3)
            for px in pxs:
                res[px.name].idle_cpu_pct = (100.0 * (cpu_of_tree(px.proc.pid) - c0[px.name]).total
                                             / (time.time() - t0))
            for px in pxs:
                r = res[px.name]
                r.fill = self.fill(px, r, self.users["csv"], self.a.users, self.a.fill_rate, "fill")
                self.trace_one_call(px, r)
                print(f"    {px.name:<8} one registration = {r.msgs_per_call} messages: "
                      + ", ".join(B.short(f) for f in r.call_trace), flush=True)
            self.max_rate(pxs, res, uas)
            self.fixed_rates(pxs, res, uas)
            for px in pxs:
                cur = cpu_of_tree(px.proc.pid)
                res[px.name].proxy_procs, res[px.name].proxy_threads = cur.procs, cur.threads
            self.profile_runs(pxs, res, uas)
        except ProxyDied as e:
            for r in res.values():
                r.failed = str(e)
                r.warnings.append(f"FAILED: {e}")
            print(f"    FAILED: {e}", file=sys.stderr, flush=True)
        finally:
            PROCS.stop(uas)
            for px in pxs:
                if px.proc is not None:
                    PROCS.stop(px.proc, signal.SIGTERM, timeout=10)
        others = 100.0 * (self.monitor.seconds() - o0) / (time.time() - ot0)
        steal = 100.0 * (self.monitor.steal_seconds() - st0) / (time.time() - ot0)
        for px in pxs:
            r = res[px.name]
            r.others_cpu_pct, r.steal_pct = others, steal
            self.log_warnings(px, r)
        return [res[px.name] for px in pxs]

    def log_warnings(self, px: Proxy, r: Result):
        log = px.log.read_text(errors="replace") if px.log.exists() else ""
        r.log_warnings = [l for l in log.splitlines()
                          if re.search(r"\b(WARN|ERROR|CRITICAL)\b", l) and "load_tm_api" not in l][:20]
        for l in r.log_warnings[:3]:
            r.warnings.append(f"{px.name} log: {l.strip()[:200]}")

    # -- memory per binding -------------------------------------------------------------

    def mem_snapshot(self, px: Proxy) -> dict:
        pids = B.process_tree(px.proc.pid)
        rss = pss = anon = 0
        for pid in pids:
            try:
                for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                    k = line.split(":")[0]
                    if k in ("Rss", "Pss", "Anonymous"):
                        v = int(line.split()[1]) * 1024
                        rss += v if k == "Rss" else 0
                        pss += v if k == "Pss" else 0
                        anon += v if k == "Anonymous" else 0
            except OSError:
                pass
        snap = {"rss": rss, "pss": pss, "anon": anon, "procs": len(pids)}
        if px.name == "weir":
            for line in Path(f"/proc/{px.proc.pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    snap["vmrss"] = int(line.split()[1]) * 1024
        else:
            snap.update(self.kam_mem())
        return snap

    def kamcmd(self, *cmd) -> str:
        return subprocess.run(["kamcmd", "-s", f"unix:{self.ctl}", *cmd], capture_output=True,
                              text=True, timeout=30).stdout

    def kam_mem(self) -> dict:
        shm = self.kamcmd("core.shmmem")
        pkg = self.kamcmd("pkg.stats")
        g = lambda k, t: int(m.group(1)) if (m := re.search(rf"\b{k}:\s+(\d+)", t)) else 0
        pkg_used = sum(int(x) for x in re.findall(r"\breal_used:\s+(\d+)", pkg))
        users = self.kamcmd("stats.get_statistics", "usrloc:location-users")
        contacts = self.kamcmd("stats.get_statistics", "usrloc:location-contacts")
        num = lambda t: int(m.group(1)) if (m := re.search(r"=\s*(\d+)", t)) else -1
        return {"shm_used": g("used", shm), "shm_real_used": g("real_used", shm),
                "pkg_real_used": pkg_used, "ul_users": num(users), "ul_contacts": num(contacts)}

    def memory_all(self, pxs: list[Proxy]) -> list[Result]:
        res = {px.name: Result(px.name, px.version, port=px.port) for px in pxs}
        o0, ot0 = self.monitor.seconds(), time.time()
        try:
            for n in self.a.bindings:
                users = write_users(self.run_dir, n, False)["csv"]
                for px in pxs:
                    r = res[px.name]
                    self.say(f"{px.name}: {n} bindings: {shlex.join(px.argv)}")
                    r.commands["proxy"] = shlex.join(px.argv)
                    self.start_proxy(px)
                    time.sleep(2)
                    before = self.mem_snapshot(px)
                    f = self.fill(px, r, users, n, self.a.fill_rate, f"register-{n}")
                    time.sleep(3)
                    after = self.mem_snapshot(px)
                    ok = f["ok"] or 1
                    d = {"bindings": n, "registered": f["ok"], "fill": f,
                         "before": before, "after": after}
                    if px.name == "weir":
                        d["bytes_per_binding"] = (after["vmrss"] - before["vmrss"]) / ok
                    else:
                        d["bytes_per_binding"] = ((after["shm_real_used"] - before["shm_real_used"])
                                                  + (after["pkg_real_used"] - before["pkg_real_used"])) / ok
                        d["shm_bytes_per_binding"] = (after["shm_real_used"] - before["shm_real_used"]) / ok
                    d["pss_bytes_per_binding"] = (after["pss"] - before["pss"]) / ok
                    d["rss_bytes_per_binding"] = (after["rss"] - before["rss"]) / ok
                    r.memory = getattr(r, "memory", []) + [d]
                    print(f"    {px.name:<8} {n} bindings: {d['bytes_per_binding']:.0f} bytes per binding "
                          f"(PSS delta {d['pss_bytes_per_binding']:.0f}, RSS delta "
                          f"{d['rss_bytes_per_binding']:.0f}); before {json.dumps(before)}; "
                          f"after {json.dumps(after)}", flush=True)
                    PROCS.stop(px.proc, signal.SIGTERM, timeout=30)
                    self.log_warnings(px, r)
                    time.sleep(1)
        except ProxyDied as e:
            for r in res.values():
                r.failed = str(e)
                r.warnings.append(f"FAILED: {e}")
            print(f"    FAILED: {e}", file=sys.stderr, flush=True)
        finally:
            for px in pxs:
                if px.proc is not None:
                    PROCS.stop(px.proc, signal.SIGTERM, timeout=10)
        others = 100.0 * (self.monitor.seconds() - o0) / (time.time() - ot0)
        for r in res.values():
            r.others_cpu_pct = others
        return [res[px.name] for px in pxs]


# ---------------------------------------------------------------------------------------
# reporting


# A step is proxy-bound when each proxy used at least this share of its --proxy-cpu-limit
# and the machine still had this much idle CPU (% of one CPU): nothing else (SIPp, the
# other proxy, a full machine) held a proxy back.
AT_CAP = 0.95
MIN_IDLE_PCT = 10.0


def proxy_bound(ld: Load, cap_pct: float) -> bool:
    return (ld.paired and ld.fail_pct < 0.1 and ld.cps > 0
            and ld.proxy_cpu_pct >= AT_CAP * cap_pct and ld.idle_pct >= MIN_IDLE_PCT)


def paired_ratios(w: Result, k: Result, cap_pct: float) -> list[float]:
    """Weir / Kamailio of each max-rate step both ran at the same time (--paired) and
    both proxy-bound ([`proxy_bound`]); steps where either had 0.1% failed calls or more
    are left out."""
    ks = {ld.step: ld for ld in k.max_steps if proxy_bound(ld, cap_pct)}
    return [ld.cps / ks[ld.step].cps for ld in w.max_steps
            if proxy_bound(ld, cap_pct) and ld.step in ks]


def table(b: RegBench, results: list[Result]) -> str:
    by = {r.proxy: r for r in results}
    cols = [r.proxy for r in results]
    both = "weir" in by and "kamailio" in by
    rows = [["", *cols] + (["Weir / Kamailio"] if both else [])]

    def row(label, vals, fmt="{:,.0f}", ratio=True):
        cells = [fmt.format(v) if isinstance(v, (int, float)) and v == v else str(v) for v in vals]
        if both and ratio:
            w, k = vals[cols.index("weir")], vals[cols.index("kamailio")]
            cells.append(f"{w / k:.2f}" if isinstance(w, (int, float)) and isinstance(k, (int, float)) and k else "–")
        elif both:
            cells.append("")
        rows.append([label, *cells])

    if b.memory:
        for i, n in enumerate(b.a.bindings):
            ms = [by[c].memory[i] if len(getattr(by[c], "memory", [])) > i else {} for c in cols]
            row(f"{n:,} bindings: bytes per binding", [m.get("bytes_per_binding", "–") for m in ms])
            row(f"{n:,} bindings: PSS delta per binding", [m.get("pss_bytes_per_binding", "–") for m in ms])
            row(f"{n:,} bindings: registered", [m.get("registered", "–") for m in ms], ratio=False)
            row(f"{n:,} bindings: fill rate, registrations/s", [m.get("fill", {}).get("per_s", "–") for m in ms])
    else:
        row("users (bindings held)", [b.a.users for _ in cols], ratio=False)
        row("fill: new bindings/s (-l 200)", [getattr(by[c], "fill", {}).get("per_s", "–") for c in cols])
        row("messages per registration", [by[c].msgs_per_call for c in cols], ratio=False)
        row("max registrations/s (<0.1% failed)", [by[c].best.cps if by[c].best else "–" for c in cols])
        row("  reached at -l", [by[c].best.limit if by[c].best else "–" for c in cols], ratio=False)
        row("  proxy CPU there, % of a core", [by[c].best.proxy_cpu_pct if by[c].best else "–" for c in cols])
        if both and b.a.paired:
            rs = paired_ratios(by["weir"], by["kamailio"], b.a.proxy_cpu_limit)
            rows.append(["  --paired, proxy-bound steps: Weir / Kamailio",
                         *["" for _ in cols],
                         f"median {statistics.median(rs):.2f}, {min(rs):.2f}-{max(rs):.2f} ({len(rs)} steps)"
                         if rs else "–"])
        for i, rate in enumerate(b.a.rates):
            fx = [by[c].fixed[i] if len(by[c].fixed) > i else None for c in cols]
            row(f"CPU per registration at {rate}/s, µs (median)", [f.us_per_call if f else "–" for f in fx], "{:.1f}")
            row("  per message, µs", [f.us_per_msg if f else "–" for f in fx], "{:.2f}")
            row("  slices, µs per message", [", ".join(f"{x:.1f}" for x in f.slices_us) if f else "–" for f in fx],
                ratio=False)
            row("  user + sys, s", [f"{f.proxy_user_s:.2f} + {f.proxy_sys_s:.2f}" if f else "–" for f in fx],
                ratio=False)
            row("  failed / retrans", [f"{f.calls_failed} / {f.retrans}" if f else "–" for f in fx], ratio=False)
        row("idle CPU, % of a core", [by[c].idle_cpu_pct for c in cols], "{:.2f}", ratio=False)
    row("others' CPU during the run, % of a core", [by[c].others_cpu_pct for c in cols], "{:.0f}", ratio=False)
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    out = ["| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(r)) + " |" for r in rows]
    out.insert(1, "|" + "|".join("-" * (x + 2) for x in w) + "|")
    return "\n".join(out)


def write_report(b: RegBench, results: list[Result], info: dict, argv) -> Path:
    out_dir = BENCH / "results"
    out_dir.mkdir(exist_ok=True)
    path = out_dir / f"{b.stamp}-{b.a.mode}.md"
    lines = [f"# Weir vs Kamailio: {b.a.mode} ({info['date']})", "",
             f"`bench/run {shlex.join(argv)}`", "",
             f"Machine: {info['cpu']}, {info['nproc']} CPUs, {info['memory_gib']} GiB, Linux "
             f"{info['kernel']}, {info['os']}. Commit {info['commit']}. {info['weir_binary']}. "
             f"{info['sipp']}. Versions: {info['versions']}. Load average before: {b.loadavg}.", "",
             table(b, results), ""]
    if info.get("proxy_cpu_limit"):
        lines += ["Proxy CPU limit (--proxy-cpu-limit): " + "; ".join(
            f"{k}: {v}" for k, v in info["proxy_cpu_limit"].items()) + ".", ""]
    for r in results:
        lines += [f"## {r.proxy}", ""]
        if getattr(r, "edits", None):
            lines += [f"REGISTER check: `{json.dumps(r.edits)}`", ""]
        if getattr(r, "fill", None):
            lines += [f"fill: `{json.dumps(r.fill)}`", ""]
        if r.call_trace:
            lines += ["one traced registration: " + ", ".join(f"`{x}`" for x in r.call_trace), ""]
        for s in r.max_steps:
            lines.append(f"- max -l {s.limit}: {s.cps:.0f} registrations/s, {s.calls_failed} failed of "
                         f"{s.calls_ok + s.calls_failed}, {s.retrans} retrans, drops proxy {s.drops_proxy} "
                         f"sipp {s.drops_sipp}, proxy CPU {s.proxy_cpu_pct:.0f}%, uac {s.uac_cpu_pct:.0f}%, "
                         f"{s.us_per_call:.1f} µs per registration"
                         + (f", throttled {s.throttled_pct:.0f}%" if info.get("proxy_cpu_limit") else "")
                         + (f", same window as the other proxy (step {s.step}), machine idle "
                            f"{s.idle_pct:.0f}% of a CPU"
                            + (", proxy-bound" if proxy_bound(s, b.a.proxy_cpu_limit) else "")
                            if s.paired else ""))
        for f in r.fixed:
            lines.append(f"- fixed {f.rate}/s: {f.us_per_call:.1f} µs per registration (median), "
                         f"slices µs/message {f.slices_us}, {f.calls_ok} ok, {f.calls_failed} failed, "
                         f"{f.retrans} retrans, threads {f.threads}")
        for m in getattr(r, "memory", []):
            lines.append(f"- memory, {m['bindings']} bindings: `{json.dumps(m)}`")
        if r.profile:
            lines += [""] + B.profile_report(r, f"{b.a.rates[0]} registrations/s")
        for w in r.warnings:
            lines.append(f"- warning: {w}")
        lines += ["", "Commands:", ""] + [f"- {k}: `{v}`" for k, v in r.commands.items()] + [""]
    path.write_text("\n".join(lines))
    data = {"info": info, "argv": argv, "results": [
        {k: (v if not hasattr(v, "__dataclass_fields__") else B.asdict(v)) for k, v in vars(r).items()}
        for r in results]}
    path.with_suffix(".json").write_text(json.dumps(data, indent=1, default=lambda o: B.asdict(o)
                                                    if hasattr(o, "__dataclass_fields__") else str(o)))
    return path


def main(args):
    b = RegBench(args)
    b.loadavg = Path("/proc/loadavg").read_text().split()[:3]
    results = B.start_and_bench(b, args.proxies)
    info = B.machine_info(b, results)
    path = write_report(b, results, info, sys.argv[1:])
    print()
    print(table(b, results))
    print()
    for r in results:
        for w in r.warnings:
            print(f"warning ({r.proxy}): {w}")
    print(f"\nwritten: {path.relative_to(ROOT)} (+ .json)")
    if any(r.failed for r in results):
        sys.exit(1)
