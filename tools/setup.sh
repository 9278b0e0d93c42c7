#!/usr/bin/env bash
# Prepares a fresh Debian bookworm machine (as root) to build and test edgetrace.
# Idempotent: a stamp keyed by this file's content skips the apt work on later runs.
#
#   - apt sources: deb-src for bookworm and trixie (dependency sources), bookworm-backports
#     (Go 1.21-1.23), all on the mirror this machine already uses;
#   - foreign architectures arm64 and armhf (musl-dev for the ARM boards);
#   - cross compilers, qemu-user, cmake, cmocka, pytest, clang (fuzzing), sqlite3 CLI;
#   - the real peers the tests drive: Chromium + chromedriver (selenium), Alertmanager,
#     promtool, BusyBox, crun, umoci/skopeo, nginx's stream module, PostgreSQL;
#   - Go 1.25/1.26/1.27 for the test services, downloaded from trixie-backports through a
#     private apt configuration (the system's sources stay bookworm-only) and unpacked into
#     the cache with dpkg-deb -x.
set -euo pipefail

CACHE=${EDGETRACE_CACHE:-/var/cache/edgetrace}
HERE=$(cd "$(dirname "$0")" && pwd)
STAMP_KEY=$(sha256sum "$HERE/setup.sh" | cut -c1-16)
STAMP="$CACHE/setup-$STAMP_KEY.done"
GO_TRIXIE_VERSIONS="1.25 1.26 1.27"
GO_BOOKWORM_VERSIONS="1.21 1.22 1.23"

log() { printf '[setup] %s\n' "$*" >&2; }

if [ -f "$STAMP" ] && [ "${1:-}" != "--force" ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ]; then
    echo "setup: must run as root (apt-get install)" >&2
    exit 1
fi
mkdir -p "$CACHE"
export DEBIAN_FRONTEND=noninteractive

# The Debian mirror this machine is configured for; we never hard-code a host.
mirror=$(grep -hoE '^(URIs:|deb) +[a-z]+://[^ ]+/debian/?( |$)' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list 2>/dev/null \
         | grep -v security | head -1 | awk '{print $2}' || true)
mirror=${mirror%/}
[ -n "$mirror" ] || { echo "setup: cannot find the Debian mirror in /etc/apt/sources" >&2; exit 1; }
echo "$mirror" > "$CACHE/mirror"
keyring=/usr/share/keyrings/debian-archive-keyring.gpg

cat > /etc/apt/sources.list.d/edgetrace.sources <<EOF
# Written by edgetrace tools/setup.sh
Types: deb-src
URIs: $mirror
Suites: bookworm trixie
Components: main
Signed-By: $keyring

Types: deb
URIs: $mirror
Suites: bookworm-backports
Components: main
Signed-By: $keyring
EOF
rm -f /etc/apt/sources.list.d/edgetrace-probe.sources

for arch in arm64 armhf; do
    dpkg --print-foreign-architectures | grep -qx "$arch" || dpkg --add-architecture "$arch"
done

# apt-get update, tolerating a mirror that is mid-sync: retry, and accept a run whose only
# errors are "unexpected size ... Mirror sync in progress" on some index (the other indexes
# are then current and the failed one keeps its previous copy).
apt_update() {
    local i out
    for i in 1 2 3 4 5; do
        if out=$(apt-get update 2>&1); then return 0; fi
        if ! printf '%s\n' "$out" | grep -E '^E:' | grep -vqE 'Mirror sync in progress|Some index files failed|unexpected size'; then
            [ "$i" -ge 3 ] && { log "apt-get update: accepting partial mirror sync"; return 0; }
        fi
        log "apt-get update failed (try $i), retrying"; sleep $((i * 2))
    done
    printf '%s\n' "$out" >&2
    return 1
}
apt_update

PKGS=(
  build-essential dpkg-dev file pkg-config bzip2 xz-utils zstd tcl
  musl-tools musl-dev musl-dev:arm64 musl-dev:armhf
  gcc-aarch64-linux-gnu gcc-arm-linux-gnueabihf binutils-aarch64-linux-gnu binutils-arm-linux-gnueabihf
  qemu-user-static cmake
  clang llvm libclang-rt-14-dev
  python3 python3-pytest sqlite3 iproute2 procps
  # the collector's web page, alerts and metrics, tested with the real programs:
  chromium chromium-driver python3-selenium prometheus-alertmanager prometheus
  # images, init systems and scale-out, tested with the real programs:
  busybox-static crun umoci skopeo nginx libnginx-mod-stream postgresql
  # static OpenSSL (libssl.a, libcrypto.a) for the collector's libpq (tools/deps_collector.sh)
  libssl-dev
  # `ctr images import` of the agent image into a private containerd (test_image.py)
  containerd
  panicparse  # make bench: baseline of the goroutine-dump parser (tools/bench/bench.py parse)
)
for v in $GO_BOOKWORM_VERSIONS; do PKGS+=("golang-$v-go"); done
apt-get install -y --no-install-recommends "${PKGS[@]}" >/dev/null

# Go toolchains from trixie-backports, via a private apt configuration.
PAPT="$CACHE/apt-trixie-backports"
mkdir -p "$PAPT/lists/partial" "$PAPT/archives/partial"
echo "deb [signed-by=$keyring] $mirror trixie-backports main" > "$PAPT/sources.list"
papt=(-o Dir::Etc::SourceList="$PAPT/sources.list" -o Dir::Etc::SourceParts=/dev/null
      -o Dir::State::Lists="$PAPT/lists" -o Dir::Cache="$PAPT" -o Dir::Cache::Archives="$PAPT/archives"
      -o APT::Architectures::=amd64 -o Debug::NoLocking=1)
need_trixie_go=0
for v in $GO_TRIXIE_VERSIONS; do [ -x "$CACHE/go/$v/bin/go" ] || need_trixie_go=1; done
if [ $need_trixie_go = 1 ]; then
    for i in 1 2 3; do apt-get "${papt[@]}" update >/dev/null 2>&1 && break; sleep 3; done
    for v in $GO_TRIXIE_VERSIONS; do
        [ -x "$CACHE/go/$v/bin/go" ] && continue
        log "fetching Go $v from trixie-backports"
        d=$(mktemp -d)
        (cd "$d" && apt-get "${papt[@]}" download "golang-$v-go" "golang-$v-src" >/dev/null)
        rm -rf "$CACHE/go/root-$v"; mkdir -p "$CACHE/go/root-$v"
        for deb in "$d"/*.deb; do dpkg-deb -x "$deb" "$CACHE/go/root-$v"; done
        rm -rf "$d"
        ln -sfn "root-$v/usr/lib/go-$v" "$CACHE/go/$v"
        "$CACHE/go/$v/bin/go" version >/dev/null
    done
fi
for v in $GO_BOOKWORM_VERSIONS; do
    mkdir -p "$CACHE/go"; ln -sfn "/usr/lib/go-$v" "$CACHE/go/$v"
done

rm -f "$CACHE"/setup-*.done
touch "$STAMP"
log "done"
