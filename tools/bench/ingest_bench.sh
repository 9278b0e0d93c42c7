#!/usr/bin/env bash
# ingest_bench.sh - collector ingest rate (snapshots/s over DTLS PSK, each answered only after a
# durable SQLite commit) side by side with stock libcoap coap-server answering the same POSTs
# from memory (no storage). Same load generator (tools/bench/ingest_bench.c), same machine.
#
#   tools/bench/ingest_bench.sh [COUNT] [SESSIONS] [WINDOW]
#
# Env: ET_COLLECTOR (build/host/edgetrace-collector), ET_HOST_DEPS (coap-server), INGEST_BENCH
# (the generator binary, default build/host/ingest_bench), BENCH_DIR (scratch, default a mktemp).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
COUNT=${1:-20000}
SESSIONS=${2:-16}
WINDOW=${3:-4}
COLLECTOR=${ET_COLLECTOR:-$ROOT/build/host/edgetrace-collector}
GEN=${INGEST_BENCH:-$ROOT/build/host/ingest_bench}
HOST_DEPS=${ET_HOST_DEPS:-$(ls -d /var/cache/edgetrace/deps/host-* | grep -v probe | tail -1)}
COAP_SERVER=$HOST_DEPS/bin/coap-server
DIR=${BENCH_DIR:-$(mktemp -d /tmp/ingest-bench-XXXXXX)}
mkdir -p "$DIR"
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

port() { python3 -c 'import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$COLLECTOR" provision gw-bench --db "$DIR/collector.db" --out "$DIR/gw.cred" 2>/dev/null
PSK=$(sed -n 's/^psk = //p' "$DIR/gw.cred")

run_collector() { # $1 = label, rest = extra serve options
    local label=$1; shift
    local p; p=$(port)
    rm -f "$DIR/run.db"*; cp "$DIR/collector.db" "$DIR/run.db"
    "$COLLECTOR" serve --db "$DIR/run.db" --listen 127.0.0.1:$p --stats-interval 0 "$@" >"$DIR/serve.out" 2>"$DIR/serve-$label.log" &
    local pid=$!; PIDS+=("$pid")
    for _ in $(seq 50); do grep -q ready "$DIR/serve.out" 2>/dev/null && break; sleep 0.1; done
    local out; out=$("$GEN" --url coaps://127.0.0.1:$p/s --identity gw-bench --psk "$PSK" --sessions "$SESSIONS" \
        --window "$WINDOW" --count "$COUNT" ${GEN_EXTRA:-} --json) || true
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    # rows, and the database's bytes per stored snapshot once the WAL is folded in
    local rows; rows=$(python3 -c "
import sqlite3,sys
c=sqlite3.connect(sys.argv[1]); c.execute('pragma wal_checkpoint(truncate)')
n=c.execute('select count(*) from snapshots').fetchone()[0]
b=c.execute('select page_count*page_size from pragma_page_count(), pragma_page_size()').fetchone()[0]
print('%d  db %d B/snapshot' % (n, b // max(n, 1)))" "$DIR/run.db")
    local commits; commits=$(grep -o 'commits=[0-9]*' "$DIR/serve-$label.log" | tail -1 | cut -d= -f2)
    echo "$out" | python3 -c "
import json,sys
r=json.loads(sys.stdin.read())
print('%-34s %8.0f/s  answered %d (2.01 %d, other %d, timeouts %d)  rows %s  commits %s' % ('$label', r['per_second'], r['answered'], r['created'], r['other'], r['nacks'], '$rows', '${commits:-?}'))"
}

run_stock() {
    local p; p=$(port)
    # coap-server listens for DTLS on its -p port + 1; -d 1 lets POST /s create one resource in memory
    "$COAP_SERVER" -A 127.0.0.1 -p $((p)) -k "0x$PSK" -d 1 -v 0 >"$DIR/stock.log" 2>&1 &
    local pid=$!; PIDS+=("$pid")
    sleep 0.5
    local out; out=$("$GEN" --url coaps://127.0.0.1:$((p + 1))/s --identity gw-bench --psk "$PSK" --sessions "$SESSIONS" \
        --window "$WINDOW" --count "$COUNT" --json) || true
    kill -TERM "$pid"; wait "$pid" 2>/dev/null || true
    echo "$out" | python3 -c "
import json,sys
r=json.loads(sys.stdin.read())
print('%-34s %8.0f/s  answered %d (2.01 %d, 2.04 %d, timeouts %d)  (memory only)' % ('stock coap-server', r['per_second'], r['answered'], r['created'], r['changed'], r['nacks']))"
}

echo "ingest rate: $COUNT POSTs of real snapshot envelopes, $SESSIONS DTLS PSK sessions x $WINDOW in flight, $(nproc) cores"
run_collector "collector (group commit, durable)"
run_collector "collector (commit per snapshot)" --no-group-commit
# what real agents send: 16 sites (memo refs), memstats, /proc, a finding every tenth
GEN_EXTRA=--full run_collector "collector, full snapshots (group)"
GEN_EXTRA=--full run_collector "collector, full, no raw payload" --no-payload
run_stock
