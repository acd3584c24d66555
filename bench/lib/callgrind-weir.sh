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
root="$(cd "$(dirname "$0")/../.." && pwd)"
# UAS ports: one, or the three destinations of the dispatcher's list
uas_ports=($((port + 20)))
if [ $mode = stateful ] || [ $mode = dispatcher ]; then
    n1=100 n2=600 rate=20
    uas=(-sf "$root/bench/sipp/uas-stateful.xml") uac="$root/bench/sipp/uac-stateful.xml"
    if [ $mode = dispatcher ]; then
        uas+=(-aa)
        uas_ports=($((port + 20)) $((port + 21)) $((port + 22)))
    fi
elif [ $mode = stateless ]; then
    n1=200 n2=1200 rate=100
    uas=(-sn uas) uac="$root/bench/sipp/uac.xml"
else
    n1=200 n2=1200 rate=100
    uas=() uac="$root/bench/sipp/uac-$mode.xml"
fi
mkdir -p "$out"
out=$(realpath "$out")
users="$out/users.csv"
if [ $mode = register-auth ]; then
    module=$(realpath "$module")
    # As bench/lib/register.py write_users: SIPp's [authentication] keyword in field1
    # (SIPp does not expand a field inside it), and `user,domain,password` subscribers.
    {
        echo SEQUENTIAL
        for i in $(seq 1 $n2); do echo "ca$i;[authentication username=ca$i password=pw${i}x]"; done
    } > "$users"
    for i in $(seq 1 $n2); do echo "ca$i,127.0.0.1,pw${i}x"; done > "$out/subscribers.txt"
else
    { echo SEQUENTIAL; for i in $(seq 1 $n2); do echo "cg$i;pw$i"; done; } > "$users"
fi
if [ $mode = dispatcher ]; then
    module=$(realpath "$module")
    # bench/weir/dispatcher.list with our UAS ports (read relative to the config)
    sed -e "s/127.0.0.1:5271/127.0.0.1:${uas_ports[0]}/" \
        -e "s/127.0.0.1:5272/127.0.0.1:${uas_ports[1]}/" \
        -e "s/127.0.0.1:5273/127.0.0.1:${uas_ports[2]}/" \
        "$root/bench/weir/dispatcher.list" > "$out/dispatcher.list"
fi
cfg="$out/weir.toml"
# a module call's first run under valgrind takes far longer than its 50 ms default
# deadline (the timeout does not change the instructions counted)
sed -e "s#component = \".*\"#component = \"$module\"\ntimeout_ms = 5000#" \
    -e "s#file = \"subscribers.txt\"#file = \"$out/subscribers.txt\"#" \
    -e "s/127.0.0.1:5160/127.0.0.1:$port/" -e "s/127.0.0.1:5360/127.0.0.1:$port/" -e "s/127.0.0.1:5170/127.0.0.1:$((port + 20))/" \
    "$root/bench/weir/$mode.toml" > "$cfg"
vg=(valgrind --tool=callgrind --smc-check=all-non-file)
# compile the module once under valgrind, so both runs load it from the cache
"${vg[@]}" --callgrind-out-file=/dev/null "$bin" check --config "$cfg" > /dev/null 2>&1
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT
declare -A total mallocs
for n in $n1 $n2; do
    rm -f "$out"/cg."$n".*
    # the UAS first: the dispatcher's first probes find them answering
    pids=()
    u=()
    if [ ${#uas[@]} -gt 0 ]; then
        for up in "${uas_ports[@]}"; do
            sipp "${uas[@]}" -i 127.0.0.1 -p "$up" -nostdin -buff_size 4194304 \
                > /dev/null 2>&1 &
            u+=($!)
            pids+=($!)
        done
        sleep 0.5
    fi
    "${vg[@]}" --callgrind-out-file="$out/cg.$n.%p" "$bin" run --config "$cfg" \
        > "$out/weir.$n.log" 2>&1 &
    v=$!
    pids+=("$v")
    for _ in $(seq 1 120); do grep -q "running" "$out/weir.$n.log" && break; sleep 1; done
    rc=0
    sipp -sf "$uac" 127.0.0.1:$port -s service -i 127.0.0.1 -p $((port + 30)) -d 0 -nostdin \
        -inf "$users" -buff_size 4194304 -r $rate -m "$n" -timeout 120 > /dev/null 2>&1 || rc=$?
    kill "${u[@]}" "$v"
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
