#!/usr/bin/env bash
# The training run of Weir's profile-guided build (scripts/setup pgo, ADR 0010): an
# instrumented weir binary under SIPp load, one mode after another, each over UDP and
# then TCP, so the profile covers what a proxy, registrar and dispatcher do on both:
#
#   bench/lib/pgo-train.sh BIN MODULE_DIR OUTDIR
#
# BIN: weir (built with -Cprofile-generate, which writes its profile when weir exits;
# any weir binary runs the same load). MODULE_DIR: the release builds of the modules
# (auth_digest.wasm, dispatcher.wasm, header_ops.wasm). The loads, from the benchmark's
# configs and SIPp scenarios (bench/weir, bench/sipp; bench/lib/weir-load.sh): stateless
# relay, transaction-stateful calls through header-ops, dispatcher calls to three UAS,
# registrations without and with digest auth. Ports PORT (default 5760) to PORT+32.
# Fails when a load does not complete. Loopback only; stops what it started.
set -euo pipefail
if [ $# -ne 3 ]; then sed -n '2,14p' "$0"; exit 2; fi
bin=$1; mods=$2; out=$3
port=${PORT:-5760}
# shellcheck source=bench/lib/weir-load.sh
. "$(dirname "$0")/weir-load.sh"

weir_pid=
cleanup() {
    load_stop_uas
    if [ -n "$weir_pid" ]; then kill "$weir_pid" 2>/dev/null || true; fi
}
trap cleanup EXIT

# mode, module, calls per transport, rate per second
loads=(
    "stateless header_ops 3000 1000"
    "stateful header_ops 2000 500"
    "dispatcher dispatcher 2000 500"
    "register - 3000 1000"
    "register-auth auth_digest 3000 1000"
)
for load in "${loads[@]}"; do
    read -r mode module n rate <<< "$load"
    wasm=""
    if [ "$module" != - ]; then wasm="$mods/$module.wasm"; fi
    load_prepare "$mode" "$wasm" "$out/$mode" "$port" "$n"
    # the same port over TCP too; the next hop by UDP whatever the request came in on
    sed -i "s#^next_hop = \"\\(.*\\)\"#next_hop = \"\\1;transport=udp\"#" "$load_cfg"
    printf '\n[[listen]]\nname = "tcp"\ntransport = "tcp"\naddress = "127.0.0.1:%s"\n' \
        "$port" >> "$load_cfg"
    load_start_uas
    log="$load_dir/weir.log"
    "$bin" run --config "$load_cfg" > "$log" 2>&1 &
    weir_pid=$!
    load_wait_running "$log"
    for transport in u1 t1; do
        if ! load_uac "$n" "$rate" -t "$transport"; then
            echo "pgo-train: $mode over $transport did not complete (weir log: $log)" >&2
            exit 1
        fi
    done
    load_stop_uas
    # SIGTERM: weir stops cleanly, and an instrumented binary writes its profile
    kill "$weir_pid"
    wait "$weir_pid" || { echo "pgo-train: weir exited with status $? ($log)" >&2; exit 1; }
    weir_pid=
    echo "pgo-train: $mode: $n over UDP, $n over TCP"
done
