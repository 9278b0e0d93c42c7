#!/bin/sh
# Build every test service of the corpus with one Go release.
#
#   tools/testsvc/build.sh GOVERSION OUTDIR
#
# GOVERSION is a directory name under /var/cache/edgetrace/go (1.21 1.22 1.23
# 1.25 1.26 1.27). Binaries land in OUTDIR/<program>. Cross builds: set GOARCH
# (and GOARM) in the environment, e.g. GOARCH=arm64 or GOARCH=arm GOARM=7.
# A stamp in OUTDIR (hash of sources, Go version, GOARCH/GOARM, flags) makes a
# repeated build a no-op. Go 1.26 is built with
# GOEXPERIMENT=goroutineleakprofile so /debug/pprof/goroutineleak exists;
# Go 1.27 has it by default.
set -eu

if [ $# -ne 2 ]; then
	echo "usage: $0 GOVERSION OUTDIR" >&2
	exit 2
fi
GOVERSION=$1
OUTDIR=$2
SRCDIR=$(cd "$(dirname "$0")" && pwd)
CACHE=${ET_CACHE:-/var/cache/edgetrace}
GOBIN_GO=$CACHE/go/$GOVERSION/bin/go

if [ ! -x "$GOBIN_GO" ]; then
	echo "build.sh: no Go toolchain at $GOBIN_GO" >&2
	exit 1
fi

GOEXP=
case $GOVERSION in
1.26) GOEXP=goroutineleakprofile ;;
esac
ARCH=${GOARCH:-amd64}
ARM=${GOARM:-}

# Labels must point at the marked lines before anything is built.
/usr/bin/python3 "$SRCDIR/check_corpus.py" "$SRCDIR"

GOVER_STR=$("$GOBIN_GO" version)
STAMP_INPUT=$(
	cd "$SRCDIR"
	find go.mod internal cmd -type f -name '*.go' -o -type f -name go.mod | LC_ALL=C sort | xargs sha256sum
	echo "$GOVER_STR arch=$ARCH arm=$ARM exp=$GOEXP build.sh=$(sha256sum < "$SRCDIR/build.sh")"
)
STAMP=$(printf '%s\n' "$STAMP_INPUT" | sha256sum | cut -d' ' -f1)
if [ -f "$OUTDIR/.stamp" ] && [ "$(cat "$OUTDIR/.stamp")" = "$STAMP" ]; then
	echo "build.sh: $OUTDIR up to date (go $GOVERSION $ARCH)"
	exit 0
fi

mkdir -p "$OUTDIR"
rm -f "$OUTDIR/.stamp"
OUTDIR=$(cd "$OUTDIR" && pwd)

export GOTOOLCHAIN=local GOPROXY=off GOFLAGS=-mod=mod
export GOCACHE=$CACHE/gocache-$GOVERSION
export GOPATH=$CACHE/gocache-$GOVERSION/gopath
export CGO_ENABLED=0 GOARCH=$ARCH
if [ -n "$ARM" ]; then export GOARM=$ARM; else unset GOARM 2>/dev/null || true; fi
if [ -n "$GOEXP" ]; then export GOEXPERIMENT=$GOEXP; else unset GOEXPERIMENT 2>/dev/null || true; fi

# -trimpath gives stable frame paths (edgetrace/testsvc/cmd/<name>/<file>.go);
# symbols are kept (no -s -w) so the binaries look like ordinary builds.
cd "$SRCDIR"
"$GOBIN_GO" build -p 2 -trimpath -o "$OUTDIR/" ./cmd/...
for d in cmd/*/; do
	name=$(basename "$d")
	if [ ! -x "$OUTDIR/$name" ]; then
		echo "build.sh: $OUTDIR/$name missing after build" >&2
		exit 1
	fi
done
printf '%s\n' "$STAMP" > "$OUTDIR/.stamp"
echo "build.sh: built $(ls cmd | wc -l) programs with $GOVER_STR${GOEXP:+ GOEXPERIMENT=$GOEXP} GOARCH=$ARCH${ARM:+ GOARM=$ARM} into $OUTDIR"
