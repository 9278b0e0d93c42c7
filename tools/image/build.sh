#!/usr/bin/env bash
# Builds the agent and collector container images without a container engine, with Debian's
# umoci (layers, config) and skopeo (docker-archive), from the binaries `make all-boards
# collector` left in build/.
#
#   tools/image/build.sh OUTDIR
#
# OUTDIR/edgetrace-<version>.oci.tar        OCI image layout (tar) holding
#     docker.io/edgetrace/agent:<version>     multi-arch index: linux/amd64, linux/arm64, linux/arm/v7
#     docker.io/edgetrace/collector:<version> linux/amd64
# OUTDIR/edgetrace-agent-<version>-<arch>.docker.tar, OUTDIR/edgetrace-collector-<version>-amd64.docker.tar
#     docker-archive, one architecture each (the format has no index), for `ctr images import`
#     and `k3s ctr images import` on air-gapped nodes.
#
# Which board binary goes into which image: the one built for the oldest core of the
# architecture, so it runs on every board of it: x86_64 (x86-64 baseline), imx8mm (Cortex-A53,
# ARMv8.0) for arm64, bbb (Cortex-A8, ARMv7-A + NEON) for arm/v7.
#
# The agent image holds the static binary and nothing else (no CA bundle: it only talks DTLS
# to the collector, with a PSK or the pki_ca file the user mounts). It runs as root: it must
# read every pod's /proc entries and setns into their network namespaces, and a non-root
# user cannot get those capabilities in Kubernetes (no ambient capabilities there, and file
# capabilities would need xattrs in the layer that not every snapshotter keeps). The DaemonSet
# drops every capability but the three it needs.
#
# The collector links glibc (SQLite, libmicrohttpd, getaddrinfo's NSS), so its image is a
# minimal base made of the Debian libc6 files it loads (the dynamic loader, libc, libm, found
# with ldd and checked with dpkg -S): a static glibc build would still dlopen NSS modules
# at run time, and a musl build of its libraries is a second dependency tree to keep.
# It runs as uid 65532 and keeps its SQLite database in /var/lib/edgetrace.
set -euo pipefail
out=${1:?usage: build.sh OUTDIR}
repo=$(cd "$(dirname "$0")/../.." && pwd)
version=$(cat "$repo/VERSION")
revision=$(git -C "$repo" rev-parse HEAD 2>/dev/null || echo unknown)
source=${IMAGE_SOURCE:-$(git -C "$repo" remote get-url origin 2>/dev/null || echo https://example.invalid/edgetrace)}
# Reproducible: every timestamp is the commit's, so the same tree gives the same digests.
epoch=${SOURCE_DATE_EPOCH:-$(git -C "$repo" log -1 --format=%ct 2>/dev/null || echo 0)}
created=$(date -u -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
lay=$work/layout
umoci init --layout "$lay"
mkdir -p "$out"

# One image from a root directory. $1 tag, $2 rootfs dir, $3 OCI architecture, $4 user,
# $5 entrypoint, $6 cmd (one word per line), $7 title, $8 description
image() {
    local tag=$1 rootfs=$2 arch=$3 user=$4 entry=$5 cmd=$6 title=$7 desc=$8 c
    umoci new --image "$lay:$tag"
    find "$rootfs" -exec touch -h -d "@$epoch" {} +   # file times are in the layer's digest
    umoci insert --image "$lay:$tag" --history.created "$created" --history.comment "$title" "$rootfs" /
    local args=(--image "$lay:$tag" --os linux --architecture "$arch" --config.user "$user"
                --config.entrypoint "$entry" --created "$created" --no-history)
    while read -r c; do args+=(--config.cmd "$c"); done <<< "$cmd"
    # The OCI annotation keys (image-spec annotations.md), as labels.
    for c in "title=$title" "description=$desc" "version=$version" "revision=$revision" \
             "source=$source" "created=$created" "vendor=edgetrace"; do
        args+=(--config.label "org.opencontainers.image.$c")
    done
    umoci config "${args[@]}" --config.stopsignal SIGTERM
}

agent_rootfs() {  # $1 board -> rootfs dir
    local r=$work/rootfs-agent-$1 bin=$repo/build/$1/edgetrace-agent
    [ -x "$bin" ] || { echo "image: $bin missing: run make all-boards" >&2; exit 1; }
    install -D -m 0755 "$bin" "$r/usr/local/bin/edgetrace-agent"
    # Mount points the DaemonSet fills (spool hostPath, config, credentials).
    mkdir -p "$r/var/lib/edgetrace/spool" "$r/etc/edgetrace"
    echo "$r"
}

agent_cmd=$'run\n--config\n/etc/edgetrace/agent.conf'
declare -A board=([amd64]=x86_64 [arm64]=imx8mm [armv7]=bbb)
declare -A ociarch=([amd64]=amd64 [arm64]=arm64 [armv7]=arm)
for a in amd64 arm64 armv7; do
    image "agent-$version-$a" "$(agent_rootfs "${board[$a]}")" "${ociarch[$a]}" 0:0 \
        /usr/local/bin/edgetrace-agent "$agent_cmd" edgetrace-agent \
        "edgetrace agent (${board[$a]} build): Go service leak detection on edge gateways"
done

# Collector: the binary plus the libc6 files it loads, at the paths the binary asks for.
coll=$repo/build/host/edgetrace-collector
[ -x "$coll" ] || { echo "image: $coll missing: run make collector" >&2; exit 1; }
cr=$work/rootfs-collector
install -D -m 0755 "$coll" "$cr/usr/local/bin/edgetrace-collector"
strip --strip-debug "$cr/usr/local/bin/edgetrace-collector"   # the build keeps -g for gdb; the image need not
pkgs=""
for lib in $(ldd "$coll" | awk '/=> \// {print $3} /^\t\// {print $1}'); do
    pkg=$(dpkg -S "$(readlink -f "$lib")" 2>/dev/null | cut -d: -f1 | head -1) || true
    [ -n "$pkg" ] || pkg=$(dpkg -S "$lib" | cut -d: -f1 | head -1)
    case $pkg in libc6) ;; *) echo "image: collector needs $lib from $pkg, not libc6: add it" >&2; exit 1 ;; esac
    install -D -m 0755 "$(readlink -f "$lib")" "$cr$lib"
done
pkgs="libc6=$(dpkg-query -W -f '${Version}' libc6)"
install -d -m 0755 "$cr/etc" "$cr/tmp"
chmod 1777 "$cr/tmp"
printf 'root:x:0:0:root:/:/nonexistent\nedgetrace:x:65532:65532:edgetrace:/var/lib/edgetrace:/nonexistent\n' > "$cr/etc/passwd"
printf 'root:x:0:\nedgetrace:x:65532:\n' > "$cr/etc/group"
printf 'hosts: files dns\n' > "$cr/etc/nsswitch.conf"
install -d -m 0750 -o 65532 -g 65532 "$cr/var/lib/edgetrace"
image "collector-$version" "$cr" amd64 65532:65532 /usr/local/bin/edgetrace-collector \
    $'serve\n--db\n/var/lib/edgetrace/collector.db\n--listen\n0.0.0.0:5684' edgetrace-collector \
    "edgetrace collector: stores the fleet's snapshots (base: Debian $pkgs)"
umoci config --image "$lay:collector-$version" --no-history --config.label "org.opencontainers.image.base.name=debian:$pkgs"

python3 "$repo/tools/image/oci_index.py" "$lay" "agent-$version" \
    "agent-$version-amd64" "agent-$version-arm64" "agent-$version-armv7=v7"
umoci gc --layout "$lay"

for a in amd64 arm64 armv7; do
    rm -f "$out/edgetrace-agent-$version-$a.docker.tar"
    skopeo copy -q "oci:$lay:agent-$version-$a" \
        "docker-archive:$out/edgetrace-agent-$version-$a.docker.tar:edgetrace/agent:$version"
done
rm -f "$out/edgetrace-collector-$version-amd64.docker.tar"
skopeo copy -q "oci:$lay:collector-$version" \
    "docker-archive:$out/edgetrace-collector-$version-amd64.docker.tar:edgetrace/collector:$version"
python3 "$repo/tools/image/oci_index.py" --refs "$lay" \
    "agent-$version=docker.io/edgetrace/agent:$version" "collector-$version=docker.io/edgetrace/collector:$version"
tar -C "$lay" --sort=name --mtime="@$epoch" --owner=0 --group=0 --numeric-owner \
    -cf "$out/edgetrace-$version.oci.tar" .
ls -l "$out"
