#!/usr/bin/env bash
# make bench: every speed, size and memory figure of edgetrace side by side with a baseline.
#
#   bash tools/bench/run.sh [SECTION...]      sections: parse detect realtime snapshot trace ingest size flash api pg
#
# `make bench` builds the agent, collector, lossy-link and the Go test services first; the
# host tools (build/host/parse_bench, snapshot_bench, ...) are built here if missing.
# Each section prints a table: metric | edgetrace | baseline | target | verdict (ok/MISS).
# A missed target is reported and the run still exits 0 (bench reports, it does not gate);
# a bench that crashes, hangs past its time limit or cannot start exits non-zero.
# Everything talks to 127.0.0.1 only and every process started is killed on exit.
# What each figure means: tools/bench/README.md.
set -uo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

export ET_ROOT=$ROOT
export ET_BUILD=${ET_BUILD:-$ROOT/build}
export ET_CACHE=${ET_CACHE:-${EDGETRACE_CACHE:-/var/cache/edgetrace}}
export ET_TESTSVC=${ET_TESTSVC:-$ET_CACHE/testsvc}
export ET_AGENT=${ET_AGENT:-$ET_BUILD/x86_64/edgetrace-agent}
export ET_COLLECTOR=${ET_COLLECTOR:-$ET_BUILD/host/edgetrace-collector}
export ET_GO_VERSIONS=${ET_GO_VERSIONS:-1.21 1.23 1.27}
export ET_HOST_DEPS=${ET_HOST_DEPS:-$ET_CACHE/deps/host-$(sha256sum tools/deps.sh | cut -c1-12)}
export PYTHONDONTWRITEBYTECODE=1  # no __pycache__ in the checkout
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3

WORK=$(mktemp -d /tmp/edgetrace-bench.XXXXXX)
export ET_BENCH_WORK=$WORK
child=
cleanup() {
    # Only what this script started: the running section (its own session, see below).
    if [ -n "$child" ] && kill -0 "$child" 2>/dev/null; then
        kill -TERM -- "-$child" 2>/dev/null || kill -TERM "$child" 2>/dev/null
        sleep 1
        kill -KILL -- "-$child" 2>/dev/null || true
    fi
    rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

SECTIONS=("$@")
[ ${#SECTIONS[@]} -gt 0 ] || SECTIONS=(parse detect realtime snapshot trace ingest size flash api pg)

declare -A status
declare -A took
failed=0

# run_section NAME LIMIT_S CMD... : runs CMD in its own session (so cleanup can take its
# whole process group), with a wall-clock limit; records ok / FAILED / TIMEOUT.
run_section() {
    local name=$1 limit=$2; shift 2
    local t0=$SECONDS rc
    setsid -w "$@" &
    child=$!
    # The watchdog is its own session so that killing it takes its `sleep` too: an orphaned
    # sleep would hold this script's stdout open (a pipe reader never sees EOF) and later
    # signal a pid that may have been reused.
    setsid bash -c 'sleep "$1"; kill -TERM -- "-$2" 2>/dev/null; sleep 5; kill -KILL -- "-$2" 2>/dev/null' \
        watchdog "$limit" "$child" &
    local watchdog=$!
    wait "$child"; rc=$?
    kill -- "-$watchdog" 2>/dev/null; wait "$watchdog" 2>/dev/null
    child=
    took[$name]=$((SECONDS - t0))
    if [ $rc -eq 0 ]; then
        status[$name]=ok
    elif [ $rc -eq 143 ] || [ $rc -eq 137 ] && [ "${took[$name]}" -ge "$limit" ]; then
        status[$name]="TIMEOUT after ${limit}s"; failed=1
        echo "  BENCH FAILED ($name): over its ${limit}s limit"
    else
        status[$name]="FAILED (exit $rc)"; failed=1
    fi
}

skip() { status[$1]="skipped: $2"; printf '\n%s\n  SKIPPED: %s\n' "$3" "$2"; }

echo "edgetrace bench  $(date -u '+%Y-%m-%d %H:%M:%S UTC')  rev $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo), load $(cut -d' ' -f1-3 /proc/loadavg)"

# Host tools (parse_bench, snapshot_bench, ingest_bench: tools/*.c and tools/bench/*.c) link
# the agent's stages. Make them current here (a no-op when they are), so a figure never
# comes from a stale binary even when run.sh is run by hand.
if ! make -s --no-print-directory -j2 host-tools >"$WORK/host-tools.log" 2>&1; then
    echo "make host-tools failed:"; tail -n 20 "$WORK/host-tools.log"
    status[host-tools]="FAILED"; failed=1
fi

# Another helper's bench, whichever form it has: tools/bench/NAME.sh, NAME.py, or a C
# program built by host-tools into build/host/NAME. Its own output is shown indented, then
# bench.py restates its figures in the common table. A helper that exits 1 on a missed
# target (trace_bench.py does) is a report, not a crash, when its figures were printed.
helper_bench() { # SECTION NAME LIMIT TITLE
    local sec=$1 name=$2 limit=$3 title=$4 cmd=()
    if [ -f "tools/bench/$name.sh" ]; then cmd=(bash "tools/bench/$name.sh")
    elif [ -f "tools/bench/$name.py" ]; then cmd=("$PY" "tools/bench/$name.py")
    elif [ -x "$ET_BUILD/host/$name" ]; then cmd=("$ET_BUILD/host/$name")
    elif [ -f "tools/bench/$name.c" ]; then
        status[$sec]="FAILED: tools/bench/$name.c did not build"; failed=1
        printf '\n%s\n  BENCH FAILED: tools/bench/%s.c did not build\n' "$title" "$name"; return
    else
        skip "$sec" "tools/bench/$name.{sh,py,c} not present yet" "$title"; return
    fi
    local log=$WORK/$sec.log
    failed_before=$failed
    printf '\n%s\n  $ %s\n' "$title" "${cmd[*]}"
    run_section "$sec" "$limit" bash -c '"$@" >"$0" 2>&1' "$log" "${cmd[@]}"
    sed 's/^/  | /' "$log"
    if "$PY" tools/bench/bench.py helper "$sec" "$log"; then
        case ${status[$sec]} in
        "FAILED (exit 1)") status[$sec]="ok (helper exited 1: a missed target)"; failed=$failed_before ;;
        esac
    fi
}

for s in "${SECTIONS[@]}"; do
    case $s in
    parse) run_section parse 420 "$PY" tools/bench/bench.py parse ;;
    detect) run_section detect 360 "$PY" tools/bench/bench.py detect ;;
    # 13 samples 30 s apart in real time (~7 min), every Go version at once: starting ~90
    # services and the final fetches on a loaded 2-core machine need the margin.
    realtime) run_section realtime 900 "$PY" tools/bench/bench.py realtime ;;
    snapshot) run_section snapshot 120 "$PY" tools/bench/bench.py snapshot ;;
    size) run_section size 180 "$PY" tools/bench/bench.py size ;;
    trace) helper_bench trace trace_bench 240 \
        "4. Trace parsing: the trace helper's bench (its own output, then the table)" ;;
    ingest) helper_bench ingest ingest_bench 240 \
        "5. Collector ingest: the collector helper's bench (its own output, then the table)" ;;
    flash) printf '\n7. Flash wear: bytes the spool writes per snapshot and per day (build/host/flash_bench)\n'
        run_section flash 120 "$ET_BUILD/host/flash_bench" ;;
    api) helper_bench api api_bench 2400 \
        "8. HTTP API latency on a fleet-sized database, and ingest while the API is hammered" ;;
    # a PostgreSQL cluster, 1-3 nodes, a 432k-snapshot fleet database migrated into it: ~2 min
    pg) helper_bench pg pg_bench 900 \
        "9. Scaling out: ingest on PostgreSQL through 1, 2 and 3 nodes beside SQLite; API latency on PostgreSQL" ;;
    *) echo "unknown section $s (parse detect realtime snapshot trace ingest size flash api pg)"; failed=1 ;;
    esac
done

echo
echo "Summary (a MISS above is a missed target; FAILED/TIMEOUT is a bench that did not run)"
for s in "${SECTIONS[@]}"; do
    printf '  %-9s %-40s %s\n' "$s" "${status[$s]:-?}" "${took[$s]:+${took[$s]}s}"
done
[ -n "${status[host-tools]:-}" ] && printf '  %-9s %s\n' host-tools "${status[host-tools]}"
exit $failed
