#!/usr/bin/env bash
# make demo: the main job end to end on this machine.
#
#   leaking Go service ─┐
#                       ├─ pprof ─> edgetrace-agent (rpi4 build, under qemu-aarch64)
#   healthy Go service ─┘              │ spool (build/demo/spool)
#                                      │ CoAP/DTLS-PSK
#                                 lossy-link (10% loss each way, 80±40 ms)
#                                      │
#                               edgetrace-collector ── build/demo/collector.db (SQLite)
#                                      │ HTTP (loopback): JSON API + the fleet web page
#                               headless Chromium ── build/demo/fleet.png, finding.png
#
# After about a minute it prints the collector's findings, screenshots the fleet overview and
# the leak's finding page, prints the page's URL, stops everything it started and exits 0 if
# the leak's site is among the findings. KEEP=1 (make demo KEEP=1) leaves the collector, the
# agent and the services running so a person can open the page.
set -euo pipefail
cd "$(dirname "$0")/.."

CACHE=${EDGETRACE_CACHE:-/var/cache/edgetrace}
GO=${DEMO_GO:-1.23}
SVC="$CACHE/testsvc/$GO"
DEMO=build/demo
COLLECTOR=build/host/edgetrace-collector
LOSSY=build/host/lossy-link
BOARD=${DEMO_BOARD:-rpi4}
QEMU=$(sed -n 's/^BOARD_QEMU *:= *//p' "boards/$BOARD.mk")
AGENT=(${QEMU} "build/$BOARD/edgetrace-agent")
LEAKY=${DEMO_LEAKY:-range-unclosed}
HEALTHY=${DEMO_HEALTHY:-worker-pool}
SECONDS_MAX=${DEMO_SECONDS:-120}
KEEP=${KEEP:-}

pids=()
cleanup() {
    [ -n "$KEEP" ] && return
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
say() { printf '\033[1m== %s\033[0m\n' "$*"; }

rm -rf "$DEMO"; mkdir -p "$DEMO/spool"

svc_url=""
start_svc() { # NAME RATE -> sets svc_url (not a $(...) subshell: the PID must reach cleanup)
    local name=$1 log="$DEMO/$1.log"
    "$SVC/$name" -listen 127.0.0.1:0 -rate "${2:-40}" >"$log" 2>&1 &
    pids+=($!)
    for _ in $(seq 100); do
        local addr; addr=$(sed -n 's/^listening //p' "$log" | head -1)
        [ -n "$addr" ] && { svc_url="http://$addr"; return; }
        sleep 0.1
    done
    echo "demo: $name did not start" >&2; exit 1
}

say "provisioning device demo-gw"
"$COLLECTOR" provision demo-gw --db "$DEMO/collector.db" --out "$DEMO/credentials" >/dev/null

cport=$(free_port); lport=$(free_port); hport=$(free_port)
web="http://127.0.0.1:$hport/"
say "collector on 127.0.0.1:$cport (DTLS-PSK), database $DEMO/collector.db, web page $web"
"$COLLECTOR" serve --db "$DEMO/collector.db" --listen "127.0.0.1:$cport" --http "127.0.0.1:$hport" \
    >"$DEMO/collector.log" 2>&1 &
pids+=($!)

say "lossy-link 127.0.0.1:$lport -> collector: 10% loss each way, 80±40 ms delay"
"$LOSSY" --listen "127.0.0.1:$lport" --upstream "127.0.0.1:$cport" --loss-up 10 --loss-down 10 \
    --delay-ms 80 --jitter-ms 40 --seed 7 --stats-file "$DEMO/lossy-link.json" >"$DEMO/lossy-link.log" 2>&1 &
pids+=($!)

say "Go services (Go $GO): $LEAKY (leaks) and $HEALTHY (healthy)"
start_svc "$LEAKY" 40; leaky_url=$svc_url
start_svc "$HEALTHY" 40; healthy_url=$svc_url
echo "   $LEAKY at $leaky_url, $HEALTHY at $healthy_url"

cat >"$DEMO/agent.conf" <<EOF
[agent]
device_id = demo-gw
interval = 3s
deep_interval = 15s
leak_interval = 30s
discover = no
[spool]
dir = $DEMO/spool
max_bytes = 4M
fsync = always
[uplink]
collector = coaps://127.0.0.1:$lport
credentials = $DEMO/credentials
ack_timeout = 1s
max_retransmit = 8
[target "$LEAKY"]
url = $leaky_url
[target "$HEALTHY"]
url = $healthy_url
EOF

say "agent: build/$BOARD/edgetrace-agent under ${QEMU%% *}"
"${AGENT[@]}" --version | sed 's/^/   /'
"${AGENT[@]}" run --config "$DEMO/agent.conf" >"$DEMO/agent.log" 2>&1 &
pids+=($!)

expected_fn=$(python3 -c "import json,sys; c=json.load(open('tools/testsvc/corpus.json')); p=[x for x in c['programs'] if x['name']=='$LEAKY'][0]; print(p['function'])")
say "waiting for the collector to report the leak in $expected_fn (up to ${SECONDS_MAX}s)"
found=0
for i in $(seq "$SECONDS_MAX"); do
    sleep 1
    if "$COLLECTOR" findings --db "$DEMO/collector.db" --json 2>/dev/null | grep -qF "\"function\": \"$expected_fn\"" ||
       "$COLLECTOR" findings --db "$DEMO/collector.db" --json 2>/dev/null | grep -qF "\"function\":\"$expected_fn\""; then
        found=1
        [ "$i" -ge 60 ] && break
    fi
    [ "$i" -ge 60 ] && [ $found = 1 ] && break
done

say "devices"
"$COLLECTOR" devices --db "$DEMO/collector.db"
say "snapshots"
"$COLLECTOR" snapshots --db "$DEMO/collector.db" | tail -n 8
say "findings"
"$COLLECTOR" findings --db "$DEMO/collector.db"
say "lossy-link counters"
sleep 1.1; cat "$DEMO/lossy-link.json" 2>/dev/null; echo

# Screenshots of the page as a person sees it, by headless Chromium (the same browser the
# web tests drive); --virtual-time-budget lets the page fetch its data and draw the plots.
shot() { # ROUTE FILE
    chromium --headless=new --no-sandbox --disable-gpu --hide-scrollbars --window-size=1440,1000 \
        --virtual-time-budget=8000 --screenshot="$2" "$web#$1" >/dev/null 2>&1 || true
    [ -s "$2" ] && echo "   $2" || echo "   (no screenshot: $2)"
}
finding_id=$(curl -sf "${web}api/findings?state=open" | python3 -c "
import json, sys
d = json.load(sys.stdin); fs = d if isinstance(d, list) else d.get('findings', [])
print(next((str(f['id']) for f in fs if f.get('function') == '$expected_fn'), ''))" 2>/dev/null || true)
say "screenshots of the web page"
shot / "$PWD/$DEMO/fleet.png"
[ -n "$finding_id" ] && shot "/findings/$finding_id" "$PWD/$DEMO/finding.png"

if [ $found = 1 ]; then
    say "OK: the leak in $expected_fn reached the collector through the lossy link"
    echo "   query again: $COLLECTOR findings --db $DEMO/collector.db --json"
    [ -n "$finding_id" ] && echo "   the finding's page: ${web}#/findings/$finding_id"
    if [ -n "$KEEP" ]; then
        echo "   KEEP=1: still running (pids ${pids[*]}); stop with: kill ${pids[*]}"
    fi
    say "fleet page: $web"
    exit 0
fi
say "FAILED: no finding for $expected_fn; see $DEMO/*.log"
exit 1
