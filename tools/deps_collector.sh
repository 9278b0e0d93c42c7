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
#   libpq          PostgreSQL's client library (PostgreSQL licence), from bookworm's
#                  postgresql-15 source: libpq.a plus the libpgcommon_shlib.a/libpgport_shlib.a
#                  it calls into. Static, so the collector image (libc6 files only) runs the
#                  PostgreSQL backend without a libpq5 package in it. TLS through Debian's static
#                  OpenSSL (libssl-dev's libssl.a/libcrypto.a): PostgreSQL is reached over the
#                  network, and `sslmode=verify-full` in the URL must work. No Kerberos, LDAP,
#                  ICU, readline, zlib: libpq needs none of them for password/SCRAM over TLS,
#                  and each would be one more static tree to build.
set -euo pipefail

PREFIX=$1
CACHE=${EDGETRACE_CACHE:-/var/cache/edgetrace}
SRC="$CACHE/src"
JOBS=${JOBS:-$(nproc)}

JANSSON_DEB=2.14-2
MHD_DEB=1.0.1-4
# bookworm's (the machine's) PostgreSQL major, so the client speaks what the tests' server does.
# apt-get source checks the files against Debian's signed Sources index; the orig tarball's
# sha256 (from that .dsc) is pinned on top, so a re-uploaded tarball fails loudly.
PG_DEB=15.18-0+deb12u1
PG_ORIG_SHA256=11df0df97fe3ea4ba9a791faaf39cee1d2fe571e78885b5b55d8517d27c323b4

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

if ! done_mark libpq; then
    s=$(fetch_deb postgresql-15 "$PG_DEB"); b="$PREFIX/build/pg"; rm -rf "$b"; mkdir -p "$b"
    echo "$PG_ORIG_SHA256  $(ls "$SRC/postgresql-15_$PG_DEB"/dl/postgresql-15_*.orig.tar.*)" | sha256sum -c --quiet
    log "libpq (postgresql-15 $PG_DEB)"
    # the collector links OpenSSL statically (Makefile PG_LIBS): say so now, not at the final link
    [ -f "$(gcc -print-file-name=libssl.a)" ] && [ -f "$(gcc -print-file-name=libcrypto.a)" ] \
        || { echo "deps: libssl.a/libcrypto.a missing: apt-get install libssl-dev (tools/setup.sh does)" >&2; exit 1; }
    # Out-of-tree (VPATH) build: the unpacked source in the cache stays clean for the next key.
    # Only libpq and the two libraries it links are built (src/common, src/port come with it
    # as its submake prerequisites), not the server: ~1 min instead of ~10 on 2 cores. The
    # generated headers (errcodes.h...) are made explicitly: PostgreSQL's makefiles only make
    # them from a top-level make (MAKELEVEL 0), and we run under the project's make.
    (cd "$b" && "$s/configure" --prefix="$PREFIX" --libdir="$PREFIX/lib" --includedir="$PREFIX/include" \
            --with-openssl --without-readline --without-zlib --without-icu --without-gssapi \
            --without-ldap --without-pam --without-libxml --without-lz4 --without-zstd \
            --without-systemd --without-llvm --disable-nls CFLAGS="$CFLAGS" >"$b.log" 2>&1 \
        && make -C src/backend generated-headers >>"$b.log" 2>&1 \
        && make -C src/interfaces/libpq -j"$JOBS" all-static-lib >>"$b.log" 2>&1) \
        || { tail -40 "$b.log" >&2; exit 1; }
    cp "$b/src/interfaces/libpq/libpq.a" "$b/src/common/libpgcommon_shlib.a" "$b/src/port/libpgport_shlib.a" "$PREFIX/lib/"
    # The client headers only (libpq-install would also want the shared library).
    cp "$s/src/interfaces/libpq/libpq-fe.h" "$s/src/interfaces/libpq/libpq-events.h" \
       "$s/src/include/postgres_ext.h" "$b/src/include/pg_config_ext.h" "$PREFIX/include/"
    mark libpq
fi

rm -rf "$PREFIX/build"
log "ready in $PREFIX"
