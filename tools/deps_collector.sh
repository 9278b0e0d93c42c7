#!/usr/bin/env bash
# Builds the collector's host-only C libraries from Debian source packages, statically,
# into their own prefix:
#
#   tools/deps_collector.sh PREFIX
#
# Kept apart from tools/deps.sh on purpose: the Makefile keys each prefix by a hash of its
# script, so adding a library for the collector (HTTP server, JSON, later libpq) does not
# invalidate and rebuild the five boards' dependency caches.
#
#   jansson        JSON for the HTTP API (MIT)
#   libmicrohttpd  the HTTP server (LGPL-2.1+; linked statically into the collector only,
#                  never into the device binary; the collector's object files are shipped
#                  with the source, which satisfies the LGPL's relinking clause)
set -euo pipefail

PREFIX=$1
CACHE=${EDGETRACE_CACHE:-/var/cache/edgetrace}
SRC="$CACHE/src"
JOBS=${JOBS:-$(nproc)}

JANSSON_DEB=2.14-2
MHD_DEB=1.0.1-4

log() { printf '[deps collector] %s\n' "$*" >&2; }

mkdir -p "$(dirname "$PREFIX")" "$SRC"
exec 9>"$CACHE/deps/.lock-collector"
flock 9
[ -f "$PREFIX/.ready" ] && exit 0
mkdir -p "$PREFIX/lib" "$PREFIX/include" "$PREFIX/build"

fetch_deb() {
    local pkg=$1 ver=$2 dir="$SRC/$1_${2//:/_}"
    if [ ! -f "$dir/.unpacked" ]; then
        log "apt-get source $pkg=$ver"
        rm -rf "$dir"; mkdir -p "$dir/dl"
        (cd "$dir/dl" && apt-get source -q=2 --download-only "$pkg=$ver" >/dev/null 2>&1) \
            || { echo "deps: apt-get source $pkg=$ver failed (is tools/setup.sh done?)" >&2; exit 1; }
        (cd "$dir/dl" && dpkg-source -q -x ./*.dsc "$dir/tree" >/dev/null 2>&1)
        touch "$dir/.unpacked"
    fi
    echo "$dir/tree"
}
done_mark() { [ -f "$PREFIX/.done-$1" ]; }
mark() { touch "$PREFIX/.done-$1"; }
CFLAGS="-O2 -g -fPIC"

if ! done_mark jansson; then
    s=$(fetch_deb jansson "$JANSSON_DEB"); b="$PREFIX/build/jansson"; rm -rf "$b"
    log "jansson"
    cmake -S "$s" -B "$b" -DCMAKE_BUILD_TYPE=None -DCMAKE_C_FLAGS="$CFLAGS" -DCMAKE_INSTALL_PREFIX="$PREFIX" \
        -DCMAKE_INSTALL_LIBDIR=lib -DJANSSON_BUILD_SHARED_LIBS=OFF -DJANSSON_BUILD_DOCS=OFF \
        -DJANSSON_WITHOUT_TESTS=ON -DJANSSON_EXAMPLES=OFF >"$b.log" 2>&1 || { tail -30 "$b.log" >&2; exit 1; }
    cmake --build "$b" -j"$JOBS" >>"$b.log" 2>&1 || { tail -40 "$b.log" >&2; exit 1; }
    cmake --install "$b" >>"$b.log" 2>&1 || { tail -20 "$b.log" >&2; exit 1; }
    mark jansson
fi

if ! done_mark microhttpd; then
    s=$(fetch_deb libmicrohttpd "$MHD_DEB"); b="$PREFIX/build/mhd"; rm -rf "$b"; cp -a "$s" "$b"
    log "libmicrohttpd"
    # No HTTPS in the library (it would pull GnuTLS): TLS for the web API is left to a
    # reverse proxy, as the README says. No digest/basic auth either: the collector checks a
    # bearer token itself.
    (cd "$b" && { [ -x configure ] || autoreconf -fi >/dev/null 2>&1; } \
        && ./configure --prefix="$PREFIX" --libdir="$PREFIX/lib" --enable-static --disable-shared \
            --disable-https --disable-doc --disable-examples --disable-curl --disable-dauth --disable-bauth \
            --disable-postprocessor --without-gnutls CFLAGS="$CFLAGS" >"$b.log" 2>&1 \
        && make -j"$JOBS" >>"$b.log" 2>&1 && make install >>"$b.log" 2>&1) \
        || { tail -40 "$b.log" >&2; exit 1; }
    mark microhttpd
fi

rm -rf "$PREFIX/build"
log "ready in $PREFIX"
