# Weir alone under a SIPp load, shared by bench/lib/callgrind-weir.sh (instruction counts)
# and bench/lib/pgo-train.sh (the training run of a profile-guided build). Sourced, not run.
#
#   load_prepare MODE MODULE OUTDIR PORT USERS [EXTRA_MODULE_LINE]
#       MODE: stateful | stateless | register | register-auth | dispatcher. Writes into
#       OUTDIR the config weir.toml (bench/weir/MODE.toml with PORT for the proxy, PORT+20
#       for the UAS, MODULE as its module, EXTRA_MODULE_LINE after the module line), USERS
#       SIPp users (users.csv), and for register-auth a subscribers file of them, for
#       dispatcher a copy of bench/weir/dispatcher.list with the UAS ports PORT+20..22.
#       Sets load_dir (OUTDIR, absolute), load_cfg, load_users, load_uac, load_uas (SIPp
#       arguments, empty for the registrar) and load_uas_ports.
#   load_start_uas      start the UAS (none for the registrar); their PIDs in load_pids
#   load_wait_running LOG   wait (up to 120 s) until weir logs that it is running
#   load_uac N RATE [SIPP_ARGS...]   N calls or registrations from SIPp's UAC at RATE
#                       per second to PORT, from PORT+30; SIPp's exit status
#   load_stop_uas       stop the UAS started by load_start_uas
#
# Loopback only.

load_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

load_prepare() {
    local mode=$1 module=$2 out=$3 port=$4 n=$5 extra=${6:-}
    load_port=$port
    load_uas_ports=($((port + 20)))
    load_uas=()
    case $mode in
        stateful|dispatcher)
            load_uas=(-sf "$load_root/bench/sipp/uas-stateful.xml")
            load_uac="$load_root/bench/sipp/uac-stateful.xml"
            if [ "$mode" = dispatcher ]; then
                # answers the dispatcher's OPTIONS probes too
                load_uas+=(-aa)
                load_uas_ports=($((port + 20)) $((port + 21)) $((port + 22)))
            fi
            ;;
        stateless)
            load_uas=(-sn uas)
            load_uac="$load_root/bench/sipp/uac.xml"
            ;;
        register|register-auth)
            load_uac="$load_root/bench/sipp/uac-$mode.xml"
            ;;
        *) echo "load_prepare: unknown mode $mode" >&2; return 2 ;;
    esac
    mkdir -p "$out"
    out=$(realpath "$out")
    load_dir=$out
    load_users="$out/users.csv"
    if [ "$mode" = register-auth ]; then
        # As bench/lib/register.py write_users: SIPp's [authentication] keyword in field1
        # (SIPp does not expand a field inside it), and `user,domain,password` subscribers.
        {
            echo SEQUENTIAL
            for i in $(seq 1 "$n"); do echo "ca$i;[authentication username=ca$i password=pw${i}x]"; done
        } > "$load_users"
        for i in $(seq 1 "$n"); do echo "ca$i,127.0.0.1,pw${i}x"; done > "$out/subscribers.txt"
    else
        { echo SEQUENTIAL; for i in $(seq 1 "$n"); do echo "cg$i;pw$i"; done; } > "$load_users"
    fi
    if [ "$mode" = dispatcher ]; then
        # bench/weir/dispatcher.list with our UAS ports (read relative to the config)
        sed -e "s/127.0.0.1:5271/127.0.0.1:${load_uas_ports[0]}/" \
            -e "s/127.0.0.1:5272/127.0.0.1:${load_uas_ports[1]}/" \
            -e "s/127.0.0.1:5273/127.0.0.1:${load_uas_ports[2]}/" \
            "$load_root/bench/weir/dispatcher.list" > "$out/dispatcher.list"
    fi
    if [ -n "$module" ]; then module=$(realpath -m "$module"); fi
    local line="component = \"$module\""
    if [ -n "$extra" ]; then line="$line\n$extra"; fi
    load_cfg="$out/weir.toml"
    sed -e "s#component = \".*\"#$line#" \
        -e "s#file = \"subscribers.txt\"#file = \"$out/subscribers.txt\"#" \
        -e "s/127.0.0.1:5160/127.0.0.1:$port/" -e "s/127.0.0.1:5360/127.0.0.1:$port/" \
        -e "s/127.0.0.1:5170/127.0.0.1:$((port + 20))/" \
        "$load_root/bench/weir/$mode.toml" > "$load_cfg"
    load_pids=()
}

load_start_uas() {
    load_pids=()
    if [ ${#load_uas[@]} -eq 0 ]; then return 0; fi
    local up
    for up in "${load_uas_ports[@]}"; do
        sipp "${load_uas[@]}" -i 127.0.0.1 -p "$up" -nostdin -buff_size 4194304 \
            > /dev/null 2>&1 &
        load_pids+=($!)
    done
    # the UAS first: the dispatcher's first probes find them answering
    sleep 0.5
}

load_wait_running() {
    local _
    for _ in $(seq 1 120); do
        if grep -q "running" "$1"; then return 0; fi
        sleep 1
    done
    echo "weir did not start: see $1" >&2
    return 1
}

load_uac() {
    local n=$1 rate=$2 rc=0
    shift 2
    # SIPp's own -timeout does not end a run whose TCP connection broke: timeout(1) does
    timeout 300 sipp -sf "$load_uac" "127.0.0.1:$load_port" -s service -i 127.0.0.1 -p $((load_port + 30)) \
        -d 0 -nostdin -inf "$load_users" -buff_size 4194304 -r "$rate" -m "$n" -timeout 120 \
        "$@" > /dev/null 2>&1 || rc=$?
    return $rc
}

load_stop_uas() {
    if [ ${#load_pids[@]} -gt 0 ]; then kill "${load_pids[@]}" 2>/dev/null || true; fi
    load_pids=()
}
