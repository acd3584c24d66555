#!/usr/bin/env bash
# Weir alone under callgrind: user-space instructions and malloc calls per call, for
# comparing two builds without the noise of CPU time (no Kamailio; bench/run
# --instructions does the comparison against it).
#
#   bench/lib/callgrind-weir.sh [--stateless|--register|--register-auth|--dispatcher] BIN MODULE OUTDIR
#
# Runs BIN twice under valgrind (stateful: 100 and 600 calls at 20 calls/s, with
# bench/weir/stateful.toml and the SIPp scenarios of bench/run --mode stateful;
# --stateless: 200 and 1,200 calls at 100 calls/s with bench/weir/stateless.toml;
# --register: 200 and 1,200 REGISTERs of distinct users at 100/s with
# bench/weir/register.toml, MODULE unused; --register-auth: the same with digest auth,
# bench/weir/register-auth.toml with MODULE as its auth-digest module, a subscribers file
# of the users and bench/sipp/uac-register-auth.xml, one registration being REGISTER,
# 401, REGISTER, 200; --dispatcher: the stateful calls through bench/weir/dispatcher.toml
# with MODULE as its dispatcher module, round robin over three SIPp UAS on PORT+20..22
# answering the OPTIONS probes, as bench/dispatcher) on ports PORT (default 5560, the
# proxy), PORT+20 (UAS) and PORT+30 (UAC), and prints the difference per extra call, which
# cancels start-up and shutdown. The callgrind files stay in OUTDIR for
# callgrind_annotate. Loopback only; stops what it started.
set -euo pipefail
mode=stateful
case "${1:-}" in
    --stateless) mode=stateless; shift ;;
    --register) mode=register; shift ;;
    --register-auth) mode=register-auth; shift ;;
    --dispatcher) mode=dispatcher; shift ;;
esac
if [ $# -ne 3 ]; then sed -n '2,20p' "$0"; exit 2; fi
port=${PORT:-5560}
bin=$1; module=$2; out=$3
# shellcheck source=bench/lib/weir-load.sh
. "$(dirname "$0")/weir-load.sh"
if [ $mode = stateful ] || [ $mode = dispatcher ]; then
    n1=100 n2=600 rate=20
else
    n1=200 n2=1200 rate=100
fi
# a module call's first run under valgrind takes far longer than its 50 ms default
# deadline (the timeout does not change the instructions counted)
load_prepare $mode "$module" "$out" "$port" $n2 "timeout_ms = 5000"
out=$load_dir
cfg=$load_cfg
vg=(valgrind --tool=callgrind --smc-check=all-non-file)
# compile the module once under valgrind, so both runs load it from the cache
"${vg[@]}" --callgrind-out-file=/dev/null "$bin" check --config "$cfg" > /dev/null 2>&1
pids=()
cleanup() { load_stop_uas; for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
declare -A total mallocs
for n in $n1 $n2; do
    rm -f "$out"/cg."$n".*
    load_start_uas
    "${vg[@]}" --callgrind-out-file="$out/cg.$n.%p" "$bin" run --config "$cfg" \
        > "$out/weir.$n.log" 2>&1 &
    v=$!
    pids=("$v")
    load_wait_running "$out/weir.$n.log"
    rc=0
    load_uac "$n" $rate || rc=$?
    load_stop_uas
    kill "$v"
    wait "$v" 2>/dev/null || true
    pids=()
    if [ $rc -ne 0 ]; then echo "SIPp exit status $rc with $n calls: no count"; exit 1; fi
    t=0 m=0
    for f in "$out"/cg."$n".*; do
        t=$((t + $(grep -m1 '^summary:' "$f" | awk '{print $2}')))
        m=$((m + $(python3 - "$f" <<'PY'
import re, sys
# calls= lines after a cfn= naming malloc; names are compressed to "(id)" after first use
names, calls, cur = {}, 0, None
for line in open(sys.argv[1], errors="replace"):
    mt = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line)
    if mt:
        if mt.group(2):
            names[mt.group(1)] = mt.group(2).strip()
        if line.startswith("cfn="):
            cur = names.get(mt.group(1))
        continue
    if line.startswith("calls=") and cur == "malloc":
        calls += int(line[6:].split()[0])
print(calls)
PY
)))
    done
    total[$n]=$t mallocs[$n]=$m
    echo "$n calls: $t instructions, $m malloc calls"
done
d=$((n2 - n1))
echo "per call: $(( (total[$n2] - total[$n1]) / d )) instructions, $(( (mallocs[$n2] - mallocs[$n1]) / d )) malloc calls"
