#!/usr/bin/env bash
# Builds edgetrace's C dependencies from Debian source packages, statically, for one board.
#
#   tools/deps.sh BOARD PREFIX         (called by the Makefile with the board's variables exported)
#
# Sources come from `apt-get source PKG=VERSION`, which checks every file against Debian's
# signed Sources index. libcoap 4.3.5 has no usable .dsc on the archive, so its upstream
# tarball is taken from Debian's pool with apt's own downloader and checked against the
# sha256 pinned below (the one in sid's Sources index).
#
# Everything lands in PREFIX/{include,lib,bin}. The Makefile names PREFIX after a hash of
# this file, the board file and the flags, so a second build reuses it and any change
# rebuilds it. BOARD "host" is the build machine's own glibc toolchain: it carries the
# collector's extras (libcoap server and tools, SQLite, zstd decompression, cmocka).
set -euo pipefail

BOARD=$1
PREFIX=$2
CACHE=${EDGETRACE_CACHE:-/var/cache/edgetrace}
SRC="$CACHE/src"
JOBS=${JOBS:-$(nproc)}

# ---- pinned versions -------------------------------------------------------------------
MBEDTLS_DEB=3.6.6-0.1~deb13u1
ZSTD_DEB=1.5.7+dfsg-1
ZLIB_DEB=1:1.3.dfsg+really1.3.1-1
# tinycbor 0.6.1-1 (trixie): its .dsc is missing on the archive, so the orig tarball is pinned.
TINYCBOR_VER=0.6.1
TINYCBOR_SHA256=0f9944496d1143935e9c996bc6233ca0dd5451299def33ef400a409942f8f34b
CMOCKA_DEB=1.1.5-2.1
INIH_DEB=59-1
SQLITE_DEB=3.46.1-7+deb13u2
# libcoap3 4.3.5 (sid): no usable .dsc on the archive; orig tarball pinned.
LIBCOAP_VER=4.3.5
LIBCOAP_SHA256=a332b682ceacef4c3130b2fb17851db02020c3f64b8a562c1ffd8d9b8a9320d4

log() { printf '[deps %s] %s\n' "$BOARD" "$*" >&2; }

# Several makes (parallel jobs, a second terminal) may ask for dependencies at once and
# share the source cache: one builds at a time, the others wait and then find it done.
mkdir -p "$(dirname "$PREFIX")" "$SRC"
exec 9>"$CACHE/deps/.lock"
flock 9
[ -f "$PREFIX/.ready" ] && exit 0

# ---- fetching ----------------------------------------------------------------------------
# fetch_deb SRCPKG VERSION -> prints the unpacked source directory
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

# fetch_pool POOLPATH FILE SHA256 -> prints the unpacked directory. For packages whose .dsc is
# missing on the archive: the upstream tarball is taken from Debian's pool with apt's own
# downloader and must match the sha256 pinned here (copied from Debian's Sources index).
fetch_pool() {
    local pool=$1 file=$2 sha=$3 dir="$SRC/${2%.orig.tar.*}"
    if [ ! -f "$dir/.unpacked" ]; then
        local mirror; mirror=$(cat "$CACHE/mirror")
        log "$file (sha256 pinned)"
        rm -rf "$dir"; mkdir -p "$dir/tree"
        /usr/lib/apt/apt-helper -q download-file "$mirror/pool/main/$pool/$file" "$dir/$file" "SHA256:$sha" >/dev/null
        echo "$sha  $dir/$file" | sha256sum -c --quiet
        tar xf "$dir/$file" -C "$dir/tree" --strip-components=1
        touch "$dir/.unpacked"
    fi
    echo "$dir/tree"
}

# ---- toolchain for this board ------------------------------------------------------------
if [ "$BOARD" = host ]; then
    CC=gcc; AR=ar; RANLIB=ranlib; STRIP=strip
    CFLAGS="-O2 -g -fPIC"
    CMAKE_SYS=()
    HOSTFLAG=""
else
    CC="${BOARD_CROSS}gcc -specs $BOARD_MUSL_SPECS"
    AR="${BOARD_CROSS}ar"; RANLIB="${BOARD_CROSS}ranlib"; STRIP="${BOARD_CROSS}strip"
    CFLAGS="-Os $BOARD_CPU_FLAGS -ffunction-sections -fdata-sections -fno-asynchronous-unwind-tables -fomit-frame-pointer"
    CMAKE_SYS=(-DCMAKE_SYSTEM_NAME=Linux -DCMAKE_SYSTEM_PROCESSOR="$BOARD_CMAKE_PROC"
               -DCMAKE_FIND_ROOT_PATH="$PREFIX" -DCMAKE_FIND_ROOT_PATH_MODE_PROGRAM=NEVER
               -DCMAKE_FIND_ROOT_PATH_MODE_LIBRARY=ONLY -DCMAKE_FIND_ROOT_PATH_MODE_INCLUDE=ONLY)
    HOSTFLAG="--host=${BOARD_TRIPLE}"
fi
# cmake wants CC as a program: a tiny wrapper carries the musl specs.
mkdir -p "$PREFIX/bin" "$PREFIX/lib" "$PREFIX/include" "$PREFIX/build"
cat > "$PREFIX/bin/cc" <<EOF
#!/bin/sh
exec $CC "\$@"
EOF
chmod +x "$PREFIX/bin/cc"
CCW="$PREFIX/bin/cc"

cmake_build() { # SRC BUILD [cmake args...]
    local s=$1 b=$2; shift 2
    rm -rf "$b"
    cmake -S "$s" -B "$b" -DCMAKE_BUILD_TYPE=None -DCMAKE_C_COMPILER="$CCW" -DCMAKE_C_FLAGS="$CFLAGS" \
        -DCMAKE_AR="$(command -v "${AR%% *}")" -DCMAKE_RANLIB="$(command -v "$RANLIB")" \
        -DCMAKE_INSTALL_PREFIX="$PREFIX" -DCMAKE_INSTALL_LIBDIR=lib -DCMAKE_SKIP_RPATH=ON \
        -DBUILD_SHARED_LIBS=OFF "${CMAKE_SYS[@]}" "$@" >"$b.log" 2>&1 \
        || { tail -30 "$b.log" >&2; exit 1; }
    cmake --build "$b" -j"$JOBS" >>"$b.log" 2>&1 || { tail -40 "$b.log" >&2; exit 1; }
    cmake --install "$b" >>"$b.log" 2>&1 || { tail -20 "$b.log" >&2; exit 1; }
}

done_mark() { [ -f "$PREFIX/.done-$1" ]; }
mark() { touch "$PREFIX/.done-$1"; }

# ---- zlib: inflate for gzip HTTP bodies ---------------------------------------------------
if ! done_mark zlib; then
    s=$(fetch_deb zlib "$ZLIB_DEB"); b="$PREFIX/build/zlib"; rm -rf "$b"; cp -a "$s" "$b"
    log "zlib"
    (cd "$b" && CC="$CCW" CFLAGS="$CFLAGS" AR="$AR" RANLIB="$RANLIB" ./configure --static --prefix="$PREFIX" >/dev/null \
        && make -j"$JOBS" libz.a >/dev/null && make install-libs install-headers >/dev/null 2>&1 || {
            cp libz.a "$PREFIX/lib/"; cp zlib.h zconf.h "$PREFIX/include/"; })
    mark zlib
fi

# ---- zstd: compression only on the device, full on the host --------------------------------
if ! done_mark zstd; then
    s=$(fetch_deb libzstd "$ZSTD_DEB"); b="$PREFIX/build/zstd"; rm -rf "$b"; cp -a "$s" "$b"
    log "zstd"
    zflags=()
    if [ "$BOARD" != host ]; then
        # The agent compresses at level <= 3 (fast / dfast): the slower strategies are dead weight.
        zex="-DZSTD_EXCLUDE_GREEDY_BLOCK_COMPRESSOR -DZSTD_EXCLUDE_LAZY_BLOCK_COMPRESSOR"
        zex="$zex -DZSTD_EXCLUDE_LAZY2_BLOCK_COMPRESSOR -DZSTD_EXCLUDE_BTLAZY2_BLOCK_COMPRESSOR"
        zex="$zex -DZSTD_EXCLUDE_BTOPT_BLOCK_COMPRESSOR -DZSTD_EXCLUDE_BTULTRA_BLOCK_COMPRESSOR"
        zflags=(ZSTD_LIB_DECOMPRESSION=0 ZSTD_LIB_DICTBUILDER=0 ZSTD_LIB_DEPRECATED=0 ZSTD_LEGACY_SUPPORT=0
                ZSTD_LIB_MINIFY=1 ZSTD_NO_ASM=1 "CPPFLAGS=$zex")
    fi
    make -C "$b/lib" -j"$JOBS" CC="$CCW" AR="$AR" CFLAGS="$CFLAGS" "${zflags[@]}" libzstd.a >/dev/null 2>&1 \
        || { make -C "$b/lib" CC="$CCW" AR="$AR" CFLAGS="$CFLAGS" "${zflags[@]}" libzstd.a 2>&1 | tail -20 >&2; exit 1; }
    cp "$b/lib/libzstd.a" "$PREFIX/lib/"
    cp "$b/lib/zstd.h" "$b/lib/zstd_errors.h" "$b/lib/zdict.h" "$PREFIX/include/"
    mark zstd
fi

# ---- tinycbor: allocation-free CBOR encoder/parser ----------------------------------------
if ! done_mark tinycbor; then
    s=$(fetch_pool t/tinycbor "tinycbor_$TINYCBOR_VER.orig.tar.gz" "$TINYCBOR_SHA256"); b="$PREFIX/build/tinycbor"; rm -rf "$b"; mkdir -p "$b"
    log "tinycbor"
    for f in cborencoder cborencoder_close_container_checked cborparser cborerrorstrings cborvalidation; do
        $CC $CFLAGS -std=gnu99 -c "$s/src/$f.c" -o "$b/$f.o"
    done
    rm -f "$PREFIX/lib/libtinycbor.a"
    $AR rcs "$PREFIX/lib/libtinycbor.a" "$b"/*.o
    mkdir -p "$PREFIX/include/tinycbor"
    cp "$s/src/cbor.h" "$s/src/tinycbor-version.h" "$PREFIX/include/tinycbor/"
    mark tinycbor
fi

# ---- inih: the agent's and collector's config file parser ---------------------------------
if ! done_mark inih; then
    s=$(fetch_deb libinih "$INIH_DEB"); b="$PREFIX/build/inih"; rm -rf "$b"; mkdir -p "$b"
    log "inih"
    # Bounded line buffer on the stack, no heap; a config line is never longer than this.
    $CC $CFLAGS -DINI_MAX_LINE=512 -DINI_USE_STACK=1 -DINI_STOP_ON_FIRST_ERROR=0 -c "$s/ini.c" -o "$b/ini.o"
    rm -f "$PREFIX/lib/libinih.a"; $AR rcs "$PREFIX/lib/libinih.a" "$b/ini.o"
    cp "$s/ini.h" "$PREFIX/include/"
    mark inih
fi

# ---- mbedTLS 3.6: DTLS 1.2 with PSK, optional certificates, Connection ID -----------------
if ! done_mark mbedtls; then
    s=$(fetch_deb mbedtls "$MBEDTLS_DEB"); b="$PREFIX/build/mbedtls"
    log "mbedtls"
    if [ "$BOARD" != host ]; then
        # The device is a DTLS 1.2 client with PSK (certificates optional): no TLS 1.3, no
        # server side, and none of the legacy ciphers and curves. The collector (host) keeps
        # the default configuration.
        cp -a "$s" "$b-src"; s="$b-src"
        for opt in MBEDTLS_SSL_PROTO_TLS1_3 MBEDTLS_SSL_TLS1_3_COMPATIBILITY_MODE \
            MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK_ENABLED MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_EPHEMERAL_ENABLED \
            MBEDTLS_SSL_TLS1_3_KEY_EXCHANGE_MODE_PSK_EPHEMERAL_ENABLED MBEDTLS_SSL_SRV_C MBEDTLS_SSL_TICKET_C \
            MBEDTLS_RIPEMD160_C MBEDTLS_CAMELLIA_C MBEDTLS_ARIA_C MBEDTLS_DES_C \
            MBEDTLS_CHACHA20_C MBEDTLS_CHACHAPOLY_C MBEDTLS_POLY1305_C MBEDTLS_DHM_C \
            MBEDTLS_KEY_EXCHANGE_DHE_PSK_ENABLED MBEDTLS_KEY_EXCHANGE_DHE_RSA_ENABLED \
            MBEDTLS_ECP_DP_BP256R1_ENABLED MBEDTLS_ECP_DP_BP384R1_ENABLED MBEDTLS_ECP_DP_BP512R1_ENABLED \
            MBEDTLS_ECP_DP_SECP192R1_ENABLED MBEDTLS_ECP_DP_SECP224R1_ENABLED MBEDTLS_ECP_DP_SECP192K1_ENABLED \
            MBEDTLS_ECP_DP_SECP224K1_ENABLED MBEDTLS_ECP_DP_SECP256K1_ENABLED MBEDTLS_ECP_DP_CURVE448_ENABLED \
            MBEDTLS_LMS_C MBEDTLS_NIST_KW_C MBEDTLS_SHA3_C MBEDTLS_PKCS7_C MBEDTLS_X509_CSR_PARSE_C \
            MBEDTLS_X509_CSR_WRITE_C MBEDTLS_X509_CRT_WRITE_C MBEDTLS_X509_CREATE_C MBEDTLS_PEM_WRITE_C \
            MBEDTLS_PK_WRITE_C MBEDTLS_PKCS12_C MBEDTLS_SELF_TEST MBEDTLS_VERSION_FEATURES \
            MBEDTLS_ERROR_C; do
            python3 "$s/scripts/config.py" -f "$s/include/mbedtls/mbedtls_config.h" unset "$opt"
        done
    fi
    cmake_build "$s" "$b" -DENABLE_TESTING=OFF -DENABLE_PROGRAMS=OFF -DGEN_FILES=OFF \
        -DUSE_SHARED_MBEDTLS_LIBRARY=OFF -DUSE_STATIC_MBEDTLS_LIBRARY=ON -DMBEDTLS_FATAL_WARNINGS=OFF
    mark mbedtls
fi

# ---- libcoap 4.3.5 over mbedTLS ------------------------------------------------------------
if ! done_mark libcoap; then
    s=$(fetch_pool libc/libcoap3 "libcoap3_$LIBCOAP_VER.orig.tar.bz2" "$LIBCOAP_SHA256"); b="$PREFIX/build/libcoap"
    log "libcoap"
    if [ "$BOARD" = host ]; then
        role=(-DENABLE_SERVER_MODE=ON -DENABLE_CLIENT_MODE=ON -DENABLE_EXAMPLES=ON)
    else
        # The device is a client only: no server, no TCP/TLS, no WebSockets, no OSCORE.
        role=(-DENABLE_SERVER_MODE=OFF -DENABLE_CLIENT_MODE=ON -DENABLE_EXAMPLES=OFF
              -DENABLE_PROXY_CODE=OFF -DENABLE_ASYNC=OFF -DWITH_OBSERVE_PERSIST=OFF)
    fi
    CXX="$CCW" cmake_build "$s" "$b" -DCMAKE_CXX_COMPILER="$CCW" -DCMAKE_CXX_COMPILER_WORKS=ON \
        -DENABLE_DTLS=ON -DDTLS_BACKEND=mbedtls -DMbedTLS_ROOT_DIR="$PREFIX" -DMBEDTLS_ROOT_DIR="$PREFIX" \
        -DCMAKE_PREFIX_PATH="$PREFIX" \
        -DENABLE_TCP=OFF -DENABLE_WS=OFF -DENABLE_OSCORE=OFF -DENABLE_Q_BLOCK=OFF \
        -DENABLE_DOCS=OFF -DENABLE_TESTS=OFF -DENABLE_THREAD_SAFE=OFF -DENABLE_THREAD_RECURSIVE_LOCK_CHECK=OFF \
        -DENABLE_SMALL_STACK=OFF -DWITH_EPOLL=ON -DENABLE_IPV4=ON -DENABLE_IPV6=ON -DENABLE_AF_UNIX=OFF \
        -DUSE_VENDORED_TINYDTLS=OFF "${role[@]}"
    mark libcoap
fi

# ---- host-only: cmocka (unit tests) and SQLite (collector) --------------------------------
if [ "$BOARD" = host ] && ! done_mark sqlite; then
    s=$(fetch_deb sqlite3 "$SQLITE_DEB"); b="$PREFIX/build/sqlite"; rm -rf "$b"; mkdir -p "$b"
    log "sqlite (amalgamation)"
    (cd "$b" && "$s/configure" --disable-tcl >/dev/null 2>&1 && make -j"$JOBS" sqlite3.c >/dev/null 2>&1) \
        || { echo "deps: sqlite amalgamation failed" >&2; exit 1; }
    gcc $CFLAGS -DSQLITE_THREADSAFE=1 -DSQLITE_DEFAULT_WAL_SYNCHRONOUS=1 -DSQLITE_OMIT_LOAD_EXTENSION \
        -DSQLITE_DQS=0 -c "$b/sqlite3.c" -o "$b/sqlite3.o"
    rm -f "$PREFIX/lib/libsqlite3.a"; ar rcs "$PREFIX/lib/libsqlite3.a" "$b/sqlite3.o"
    cp "$b/sqlite3.h" "$PREFIX/include/"
    mark sqlite
fi
# cmocka is built for every board: the unit tests also run cross-compiled under qemu.
if ! done_mark cmocka; then
    s=$(fetch_deb cmocka "$CMOCKA_DEB"); b="$PREFIX/build/cmocka"
    log "cmocka"
    # musl's stdint.h defines uintptr_t without the guard macro cmocka.h looks for.
    CFLAGS="$CFLAGS -D_UINTPTR_T_DEFINED" cmake_build "$s" "$b" -DWITH_STATIC_LIB=ON -DUNIT_TESTING=OFF -DWITH_EXAMPLES=OFF -DPICKY_DEVELOPER=OFF
    mark cmocka
fi

rm -rf "$PREFIX/build"
log "ready in $PREFIX"
