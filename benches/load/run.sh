#!/usr/bin/env bash
# The load benchmark: scrim against nginx, haproxy and nginx + Lua on loopback.
#
#   bash benches/load/run.sh            # check, then the speed runs (about 4 minutes)
#   bash benches/load/run.sh memory     # RSS with 1,000 connections, and a 1 GiB NDJSON stream
#   bash benches/load/run.sh all        # both
#   bash benches/load/run.sh tls        # check, then the speed runs with an https upstream
#                                         (HTTP/1.1 for nginx and scrim; h2 for scrim alone)
#
# Environment: DURATION (seconds per run, default 10), ROUNDS (3), CONNS (64),
# WARMUP (seconds per peer before the rounds, 2), PROXY_CPU (1), LOAD_CPU (0),
# BASE_PORT (18080; uses BASE_PORT..BASE_PORT+10), STREAM_BYTES (1 GiB),
# SCRIM_BIN (skip the build and use this binary), FLOOR_BIN (likewise for
# the hyper floor, `cargo build --release --example load_floor`), KEEP_WORK=1 (keep the
# working directory with the logs and raw results).
#
# Every proxy runs pinned to PROXY_CPU; wrk, the sink and the clients to
# LOAD_CPU. Everything listens on 127.0.0.1 only, and everything started
# here is stopped on exit.
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
MODE=${1:-bench}
DURATION=${DURATION:-10}
ROUNDS=${ROUNDS:-3}
CONNS=${CONNS:-64}
WARMUP=${WARMUP:-2}
PROXY_CPU=${PROXY_CPU:-1}
LOAD_CPU=${LOAD_CPU:-0}
BASE=${BASE_PORT:-18080}
STREAM_BYTES=${STREAM_BYTES:-1073741824}
SINK_PORT=$BASE
NGINX_PORT=$((BASE + 1))
HAPROXY_PORT=$((BASE + 2))
LUA_PORT=$((BASE + 3))
TLS_SINK_PORT=$((BASE + 4))
H2_SINK_PORT=$((BASE + 5))
FLOOR_PORT=$((BASE + 6))
STREAM_PORT=$((BASE + 9))
SCRIM_PORT=$((BASE + 10))

case "$MODE" in bench | memory | all | tls) ;; *)
    echo "usage: $0 [bench|memory|all|tls]" >&2
    exit 2
    ;;
esac

# --- what it needs ----------------------------------------------------------
need_install=()
command -v wrk >/dev/null || need_install+=(wrk)
command -v nginx >/dev/null || need_install+=(nginx)
command -v haproxy >/dev/null || need_install+=(haproxy)
[ -e /usr/lib/nginx/modules/ngx_http_lua_module.so ] || need_install+=(libnginx-mod-http-lua)
[ -e /usr/lib/x86_64-linux-gnu/lua/5.1/cjson.so ] || need_install+=(lua-cjson)
command -v taskset >/dev/null || need_install+=(util-linux)
command -v curl >/dev/null || need_install+=(curl)
command -v openssl >/dev/null || need_install+=(openssl)
if [ ${#need_install[@]} -gt 0 ]; then
    echo "installing: ${need_install[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get install -y "${need_install[@]}" >/dev/null
fi

# Cargo's target directory (it may be elsewhere: CARGO_TARGET_DIR, config).
target_dir() {
    (cd "$ROOT" && cargo metadata --format-version 1 --no-deps |
        python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
}
if [ -z "${SCRIM_BIN:-}" ]; then
    echo "building scrim (cargo build --release --locked)"
    (cd "$ROOT" && cargo build --release --locked)
    SCRIM_BIN=$(target_dir)/release/scrim
fi
if [ -z "${FLOOR_BIN:-}" ]; then
    echo "building the hyper floor (cargo build --release --locked --example load_floor)"
    (cd "$ROOT" && cargo build --release --locked --example load_floor)
    FLOOR_BIN=$(target_dir)/release/examples/load_floor
fi

# --- processes --------------------------------------------------------------
WORK=$(mktemp -d "${TMPDIR:-/tmp}/scrim-load.XXXXXX")
chmod 755 "$WORK" # nginx workers run as nobody
declare -A PID=()

cleanup() {
    local p
    for p in "${PID[@]}"; do
        kill "$p" 2>/dev/null || true
    done
    for p in "${PID[@]}"; do
        wait "$p" 2>/dev/null || true
    done
    if [ -n "${KEEP_WORK:-}" ]; then
        echo "kept: $WORK"
    else
        rm -rf "$WORK"
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

render() { # template -> $WORK/name
    sed -e "s#@WORK@#$WORK#g" -e "s#@HERE@#$HERE#g" -e "s#@SINK_PORT@#$SINK_PORT#g" \
        -e "s#@STREAM_PORT@#$STREAM_PORT#g" -e "s#@SCRIM_PORT@#$SCRIM_PORT#g" \
        -e "s#@TLS_SINK_PORT@#$TLS_SINK_PORT#g" -e "s#@H2_SINK_PORT@#$H2_SINK_PORT#g" \
        -e "s#@PORT@#$2#g" "$HERE/$1" >"$WORK/$3"
}

# start NAME CPU COMMAND...: in the background, pinned, output to $WORK/NAME.log
start() {
    local name=$1 cpu=$2
    shift 2
    taskset -c "$cpu" "$@" >"$WORK/$name.log" 2>&1 &
    PID[$name]=$!
}

stop() {
    local name
    for name in "$@"; do
        if [ -n "${PID[$name]:-}" ]; then
            kill "${PID[$name]}" 2>/dev/null || true
            wait "${PID[$name]}" 2>/dev/null || true
            unset "PID[$name]"
        fi
    done
}

wait_port() {
    local i
    for i in $(seq 1 100); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    echo "nothing listens on 127.0.0.1:$1; logs in $WORK" >&2
    KEEP_WORK=1
    exit 1
}

# The https sink's certificate, from a CA made for this run: scrim trusts
# the CA (`ca_file`); nginx, as configured by default, verifies nothing.
(
    cd "$WORK"
    ec=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes)
    openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.crt -days 2 -subj /CN=scrim-bench-ca
    openssl req "${ec[@]}" -keyout sink.key -out sink.csr -subj /CN=127.0.0.1
    printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' >sink.ext
    openssl x509 -req -in sink.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 \
        -extfile sink.ext -out sink.crt
    chmod 644 sink.key # nginx workers run as nobody
) >"$WORK/openssl.log" 2>&1

export SCRIM_KEY
SCRIM_KEY=$(head -c 32 /dev/urandom | base64)
render scrim.toml "" scrim.toml
cp "$HERE/pseudo-rules.toml" "$WORK/"
render nginx-sink.conf "$SINK_PORT" nginx-sink.conf
render nginx-pass.conf "$NGINX_PORT" nginx-pass.conf
render nginx-lua.conf "$LUA_PORT" nginx-lua.conf
render haproxy.cfg "$HAPROXY_PORT" haproxy.cfg
mkdir -p "$WORK/sink-body" "$WORK/pass-body" "$WORK/pass-proxy" "$WORK/lua-body" "$WORK/lua-proxy"
"$SCRIM_BIN" check -c "$WORK/scrim.toml" >/dev/null

start_nginx_sink() {
    start sink "$LOAD_CPU" nginx -p "$WORK/" -e "$WORK/nginx-sink.error.log" -c "$WORK/nginx-sink.conf"
    wait_port "$SINK_PORT"
}
start_peers() {
    start nginx "$PROXY_CPU" nginx -p "$WORK/" -e "$WORK/nginx-pass.error.log" -c "$WORK/nginx-pass.conf"
    start haproxy "$PROXY_CPU" haproxy -db -f "$WORK/haproxy.cfg"
    start nginx-lua "$PROXY_CPU" nginx -p "$WORK/" -e "$WORK/nginx-lua.error.log" -c "$WORK/nginx-lua.conf"
    start scrim "$PROXY_CPU" "$SCRIM_BIN" run -c "$WORK/scrim.toml"
    start floor "$PROXY_CPU" "$FLOOR_BIN" "127.0.0.1:$FLOOR_PORT" "127.0.0.1:$SINK_PORT"
    wait_port "$NGINX_PORT"
    wait_port "$HAPROXY_PORT"
    wait_port "$LUA_PORT"
    wait_port "$SCRIM_PORT"
    wait_port "$FLOOR_PORT"
}
stop_peers() { stop nginx haproxy nginx-lua scrim floor; }

# The peers: name, process, URL. With `tls`, the same proxies forward to
# the https sink (HTTP/1.1 over TLS, kept connections) instead.
if [ "$MODE" = tls ]; then
    PEERS=(
        "nginx, https upstream|nginx|http://127.0.0.1:$NGINX_PORT/tls/event"
        "scrim pass-through, https upstream|scrim|http://127.0.0.1:$SCRIM_PORT/tls/pass/event"
        "scrim pseudonymising, https upstream|scrim|http://127.0.0.1:$SCRIM_PORT/tls/pseudo/event"
        "scrim pass-through, h2 upstream|scrim|http://127.0.0.1:$SCRIM_PORT/h2/pass/event"
        "scrim pseudonymising, h2 upstream|scrim|http://127.0.0.1:$SCRIM_PORT/h2/pseudo/event"
    )
    # The check's sink.py answers on both https ports, in HTTP/1.1 (it has
    # no h2): the check looks at what is forwarded, the speed runs at h2.
    CHECK_SINK_PORTS=$TLS_SINK_PORT,$H2_SINK_PORT
    CHECK_SINK_PORT=$TLS_SINK_PORT
    CHECK_SINK_TLS=(--tls "$WORK/sink.crt" "$WORK/sink.key")
else
    PEERS=(
        "nginx|nginx|http://127.0.0.1:$NGINX_PORT/pass/event"
        "haproxy|haproxy|http://127.0.0.1:$HAPROXY_PORT/pass/event"
        "hyper floor|floor|http://127.0.0.1:$FLOOR_PORT/pass/event"
        "nginx+lua|nginx-lua|http://127.0.0.1:$LUA_PORT/pseudo/event"
        "scrim pass-through|scrim|http://127.0.0.1:$SCRIM_PORT/pass/event"
        "scrim pseudonymising|scrim|http://127.0.0.1:$SCRIM_PORT/pseudo/event"
    )
    CHECK_SINK_PORTS=$SINK_PORT
    CHECK_SINK_PORT=$SINK_PORT
    CHECK_SINK_TLS=()
fi
check_mode() { case "$1" in nginx+lua | "scrim pseudonymising"*) echo pseudo ;; *) echo pass ;; esac; }

# CPU ticks of a process and its children (nginx workers): "user system".
ticks() {
    local p user=0 sys=0 u s
    for p in "$1" $(pgrep -P "$1" || true); do
        read -r u s < <(sed 's/^.*) //' "/proc/$p/stat" 2>/dev/null | awk '{print $12, $13}') || true
        user=$((user + ${u:-0}))
        sys=$((sys + ${s:-0}))
    done
    echo "$user $sys"
}
core_busy_idle() { # "busy idle" jiffies of one CPU
    awk -v c="cpu$1" '$1 == c {print $2+$3+$4+$7+$8+$9, $5+$6}' /proc/stat
}
sink_requests() {
    curl -s "http://127.0.0.1:$SINK_PORT/__status" | awk 'NR == 3 {print $3}'
}

# --- the check: what does each peer forward? ----------------------------------
verify() {
    echo "== check: a sample of what each peer forwards (sink.py records)"
    start sink "$LOAD_CPU" python3 "$HERE/sink.py" "$CHECK_SINK_PORTS" --record "${CHECK_SINK_TLS[@]}"
    wait_port "$CHECK_SINK_PORT"
    start_peers
    local entry name proc url
    for entry in "${PEERS[@]}"; do
        IFS='|' read -r name proc url <<<"$entry"
        echo "$name:"
        taskset -c "$LOAD_CPU" timeout 20 wrk -t1 -c4 -d1s -s "$HERE/events.lua" "$url" | grep '^RESULT' | sed 's/^/  wrk: /'
        python3 "$HERE/check.py" "$(check_mode "$name")" "$CHECK_SINK_PORT" 100 ${CHECK_SINK_TLS:+https} || {
            KEEP_WORK=1
            exit 1
        }
    done
    stop_peers
    stop sink
}

# --- the speed runs -------------------------------------------------------------
bench() {
    CLK_TCK=$(getconf CLK_TCK)
    start_nginx_sink
    start_peers
    local entry name proc url round
    echo "== warm-up: ${WARMUP}s per peer"
    for entry in "${PEERS[@]}"; do
        IFS='|' read -r name proc url <<<"$entry"
        taskset -c "$LOAD_CPU" timeout $((WARMUP + 30)) wrk -t1 -c"$CONNS" -d"${WARMUP}s" -s "$HERE/events.lua" "$url" >/dev/null
    done
    echo "== $ROUNDS rounds, ${DURATION}s per peer, $CONNS connections, interleaved"
    : >"$WORK/results.tsv"
    for round in $(seq 1 "$ROUNDS"); do
        for entry in "${PEERS[@]}"; do
            IFS='|' read -r name proc url <<<"$entry"
            local pid=${PID[$proc]} u0 k0 u1 k1 s0 s1 c0 c1 out
            read -r u0 k0 < <(ticks "$pid")
            s0=$(sink_requests)
            c0=$(core_busy_idle "$LOAD_CPU")
            out=$(taskset -c "$LOAD_CPU" timeout $((DURATION + 30)) wrk -t1 -c"$CONNS" -d"${DURATION}s" \
                --timeout 5s --latency -s "$HERE/events.lua" "$url")
            read -r u1 k1 < <(ticks "$pid")
            s1=$(sink_requests)
            c1=$(core_busy_idle "$LOAD_CPU")
            echo "$out" >>"$WORK/wrk.log"
            local res
            res=$(echo "$out" | grep '^RESULT') || {
                echo "wrk gave no result for $name" >&2
                KEEP_WORK=1
                exit 1
            }
            # forwarded: requests the sink saw, minus this run's status query
            printf '%s\t%s\t%s ticks=%s user_ticks=%s clk_tck=%s forwarded=%s load_core=%s\n' \
                "$round" "$name" "$res" "$((u1 + k1 - u0 - k0))" "$((u1 - u0))" "$CLK_TCK" \
                "$((s1 - s0 - 1))" "${c0// /,},${c1// /,}" >>"$WORK/results.tsv"
            echo "  round $round, $name: $(echo "$res" | sed 's/^RESULT //')"
        done
    done
    stop_peers
    stop sink
    python3 "$HERE/table.py" "$WORK/results.tsv"
}

# --- memory ------------------------------------------------------------------
rss() { awk '/^VmRSS|^VmHWM/ {printf "%s %.1f MiB  ", $1, $2 / 1024}' "/proc/$1/status"; }
hwm_kib() { awk '/^VmHWM/ {print $2}' "/proc/$1/status"; }

memory() {
    echo "== memory: scrim alone, fresh; (a) 1,000 connections, (b) a streamed NDJSON body"
    start_nginx_sink
    start stream-sink "$LOAD_CPU" python3 "$HERE/sink.py" "$STREAM_PORT"
    wait_port "$STREAM_PORT"
    start scrim "$PROXY_CPU" "$SCRIM_BIN" run -c "$WORK/scrim.toml"
    wait_port "$SCRIM_PORT"
    local pid=${PID[scrim]}
    sleep 1
    echo "started:                             $(rss "$pid")"

    # (a) 1,000 keep-alive connections, each served once, then idle
    mkfifo "$WORK/hold"
    taskset -c "$LOAD_CPU" python3 "$HERE/conns.py" "$SCRIM_PORT" /pseudo/event 1000 <"$WORK/hold" >"$WORK/conns.out" 2>&1 &
    PID[conns]=$!
    exec 3>"$WORK/hold"
    local i
    for i in $(seq 1 300); do
        grep -q '^open=' "$WORK/conns.out" 2>/dev/null && break
        sleep 0.1
    done
    sleep 1
    echo "1,000 idle connections ($(cat "$WORK/conns.out")): $(rss "$pid")"
    exec 3>&-
    wait "${PID[conns]}" || true
    unset "PID[conns]"

    # (a') 1,000 connections under load for 5 s
    echo 5 >"/proc/$pid/clear_refs" # resets VmHWM
    local res
    res=$(taskset -c "$LOAD_CPU" timeout 60 wrk -t1 -c1000 -d5s --timeout 10s -s "$HERE/events.lua" \
        "http://127.0.0.1:$SCRIM_PORT/pseudo/event" | grep '^RESULT' | sed 's/^RESULT //')
    echo "1,000 busy connections, 5 s:          $(rss "$pid")"
    echo "  wrk: $res"

    # (b) one NDJSON body of STREAM_BYTES through the pseudonymising rules,
    # on a fresh scrim (the allocator keeps what (a) used)
    stop scrim
    start scrim "$PROXY_CPU" "$SCRIM_BIN" run -c "$WORK/scrim.toml"
    wait_port "$SCRIM_PORT"
    pid=${PID[scrim]}
    sleep 1
    echo "restarted:                           $(rss "$pid")"
    (
        max=0
        while kill -0 "$pid" 2>/dev/null; do
            r=$(awk '/^VmRSS/ {print $2}' "/proc/$pid/status")
            [ "$r" -gt "$max" ] && max=$r && echo "$max" >"$WORK/stream-rss-max"
            sleep 0.2
        done
    ) &
    PID[sampler]=$!
    local answer
    answer=$(taskset -c "$LOAD_CPU" timeout 900 python3 "$HERE/stream.py" "$SCRIM_PORT" /stream/events "$STREAM_BYTES")
    stop sampler
    echo "NDJSON stream of $STREAM_BYTES bytes:  $(rss "$pid") (VmRSS sampled every 0.2 s: max $(awk '{printf "%.1f MiB", $1/1024}' "$WORK/stream-rss-max"))"
    echo "  $answer"
    stop scrim stream-sink sink
}

echo "scrim: $SCRIM_BIN ($("$SCRIM_BIN" --version 2>/dev/null || echo '?'))"
echo "machine: $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'); load average $(cut -d' ' -f1-3 /proc/loadavg)"
echo "nginx $(nginx -v 2>&1 | sed 's/.*\///'), $(haproxy -v | head -1 | awk '{print "haproxy", $3}'), $(wrk -v 2>&1 | head -1 | awk '{print "wrk", $2}')"
case "$MODE" in
bench)
    verify
    bench
    ;;
memory) memory ;;
all)
    verify
    bench
    memory
    ;;
tls)
    verify
    bench
    ;;
esac
