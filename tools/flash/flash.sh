#!/usr/bin/env bash
# Installs the agent for one board onto a gateway.
#
#   tools/flash/flash.sh BOARD ROOTFS_DIR  [--credentials FILE] [--config FILE] [--force]
#                        [--init systemd|sysv|openrc|procd]
#   tools/flash/flash.sh BOARD ssh://[user@]host[:port] [--credentials FILE] [--config FILE]
#                        [--init ...] [--ssh-command CMD]
#
# ROOTFS_DIR is a gateway's root file system: an SD card or eMMC image mounted on this
# machine, or a build tree (Yocto/Buildroot staging). ssh:// installs on a running gateway
# (needs ssh, a POSIX sh and tar there, GNU or BusyBox) and restarts the service there.
# --ssh-command replaces `ssh` (called as: CMD -p PORT HOST REMOTE_COMMAND).
#
# --init picks the service definition; without it the target's init system is detected:
# procd (OpenWrt), OpenRC, systemd, else sysvinit/BusyBox init when it has /etc/inittab,
# /etc/init.d or /sbin/init; a root with none of these gets the systemd unit.
#
# Only files are written: directories that already exist on the target (/, /etc, /usr/local/bin
# ...) keep their owner and mode; missing ones are created 0755 root-owned.
#
# What lands on the gateway:
#   /usr/local/bin/edgetrace-agent                 the stripped static binary for BOARD
#   /etc/edgetrace/agent.conf                      from --config, else a default (kept if present)
#   /etc/edgetrace/credentials                     from --credentials (edgetrace-collector provision)
#   the service, by init system:
#     systemd  /etc/systemd/system/edgetrace-agent.service and its multi-user.target.wants link
#     sysv     /etc/init.d/edgetrace-agent, linked S95 in rc2-5.d (or /etc/init.d/S95... BusyBox)
#     openrc   /etc/init.d/edgetrace-agent, linked in /etc/runlevels/default
#     procd    /etc/init.d/edgetrace-agent, linked /etc/rc.d/S95 and K10
#   /var/lib/edgetrace/spool                       the spool directory
#
# Before writing, the root file system's own /bin/sh (or busybox) must be of BOARD's
# architecture: flashing an armv7 agent onto an aarch64 image is refused (--force overrides).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 2 ] || usage
board=$1 dest=$2; shift 2
creds="" conf="" force=0 ssh_cmd=ssh init=""
while [ $# -gt 0 ]; do
    case $1 in
        --credentials) creds=$2; shift 2 ;;
        --config) conf=$2; shift 2 ;;
        --force) force=1; shift ;;
        --ssh-command) ssh_cmd=$2; shift 2 ;;
        --init) init=$2; shift 2 ;;
        *) usage ;;
    esac
done
case $init in ""|systemd|sysv|openrc|procd) ;; *) echo "flash: unknown init system '$init'" >&2; exit 2 ;; esac
[ -f "$repo/boards/$board.mk" ] || { echo "flash: unknown board '$board' (see make boards)" >&2; exit 2; }
agent="$repo/build/$board/edgetrace-agent"
[ -x "$agent" ] || { echo "flash: $agent missing: run make BOARD=$board" >&2; exit 1; }
[ -z "$creds" ] || [ -r "$creds" ] || { echo "flash: cannot read $creds" >&2; exit 1; }
[ -z "$conf" ] || [ -r "$conf" ] || { echo "flash: cannot read $conf" >&2; exit 1; }
arch=$(sed -n 's/^BOARD_ARCH *:= *//p' "$repo/boards/$board.mk")
spool=$(sed -n 's/^BOARD_SPOOL_DIR *:= *//p' "$repo/boards/$board.mk")

# `file` wording for each board architecture.
case $arch in
    x86_64) want="x86-64" ;;
    aarch64) want="ARM aarch64" ;;
    armv7) want="ARM, EABI5" ;;
    *) echo "flash: no architecture check for $arch" >&2; exit 1 ;;
esac

default_conf() {
    cat <<CONF
; edgetrace agent configuration (see README.md, Configuration)
[agent]
discover = yes
log_level = warn
[spool]
dir = $spool
[uplink]
; collector = coaps://collector.example:5684
credentials = /etc/edgetrace/credentials
CONF
}

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
install -D -m 0755 "$agent" "$stage/usr/local/bin/edgetrace-agent"
if [ -n "$conf" ]; then install -D -m 0644 "$conf" "$stage/etc/edgetrace/agent.conf"
else mkdir -p "$stage/etc/edgetrace"; default_conf > "$stage/etc/edgetrace/agent.conf.default"; fi
[ -z "$creds" ] || install -D -m 0600 "$creds" "$stage/etc/edgetrace/credentials"

# Which init system the target runs, judged from its files (R is its root, "" when live).
detect_script='if [ -x "$R/sbin/procd" ] || [ -f "$R/etc/rc.common" ]; then echo procd
elif [ -x "$R/sbin/openrc-run" ] || [ -x "$R/usr/sbin/openrc-run" ]; then echo openrc
elif [ -d "$R/run/systemd/system" ] || [ -e "$R/lib/systemd/systemd" ] || [ -e "$R/usr/lib/systemd/systemd" ]; then echo systemd
elif [ -f "$R/etc/inittab" ] || [ -d "$R/etc/init.d" ] || [ -e "$R/sbin/init" ]; then echo sysv
else echo unknown; fi'

stage_service() {
    case $init in
    systemd)
        install -D -m 0644 "$here/edgetrace-agent.service" "$stage/etc/systemd/system/edgetrace-agent.service"
        mkdir -p "$stage/etc/systemd/system/multi-user.target.wants"
        ln -s ../edgetrace-agent.service "$stage/etc/systemd/system/multi-user.target.wants/edgetrace-agent.service" ;;
    sysv|openrc|procd)
        install -D -m 0755 "$here/edgetrace-agent.$init" "$stage/etc/init.d/edgetrace-agent" ;;
    esac
    case $init in
    openrc) mkdir -p "$stage/etc/runlevels/default"
        ln -s /etc/init.d/edgetrace-agent "$stage/etc/runlevels/default/edgetrace-agent" ;;
    procd) mkdir -p "$stage/etc/rc.d"
        ln -s ../init.d/edgetrace-agent "$stage/etc/rc.d/S95edgetrace-agent"
        ln -s ../init.d/edgetrace-agent "$stage/etc/rc.d/K10edgetrace-agent" ;;
    esac
}

# The payload carries files and symlinks only, never a directory entry: extracting a directory
# entry (or cp -a of one) stamps the staging directory's mode, 0700 from mktemp, and owner onto
# the target's existing /, /etc ... which locks every service but root out of the gateway.
# The directories are made by `mkdir -p` on the target first, which leaves existing ones alone.
payload() { (cd "$stage" && find . ! -type d | sort | tar -cf - --owner=0 --group=0 --numeric-owner -T -); }
# Runs on the target with R set to its root ("" on a live gateway): plain POSIX sh, BusyBox tar.
install_script() {
    local dirs
    dirs=$(cd "$stage" && find . -mindepth 1 -type d | sed 's|^\.||' | sort | tr '\n' ' ')
    echo 'set -e; umask 022
for d in '"$dirs $spool"'; do mkdir -p "$R$d"; done
tar -C "$R/" -xf -
if [ -f "$R/etc/edgetrace/agent.conf.default" ]; then
    [ -f "$R/etc/edgetrace/agent.conf" ] || mv "$R/etc/edgetrace/agent.conf.default" "$R/etc/edgetrace/agent.conf"
    rm -f "$R/etc/edgetrace/agent.conf.default"
fi'
    # sysvinit proper starts from rcN.d links; BusyBox init (Buildroot rcS) runs /etc/init.d/S??*.
    [ "$init" != sysv ] || echo 'if [ -d "$R/etc/rc2.d" ]; then
    for n in 2 3 4 5; do [ -d "$R/etc/rc$n.d" ] && ln -sf ../init.d/edgetrace-agent "$R/etc/rc$n.d/S95edgetrace-agent"; done
    for n in 0 1 6; do [ -d "$R/etc/rc$n.d" ] && ln -sf ../init.d/edgetrace-agent "$R/etc/rc$n.d/K05edgetrace-agent"; done
else ln -sf edgetrace-agent "$R/etc/init.d/S95edgetrace-agent"; fi'
}
# Restart on a live gateway, with whatever its init system offers.
restart_script() {
    case $init in
    systemd) echo 'if [ -d /run/systemd/system ]; then systemctl daemon-reload; systemctl restart edgetrace-agent;
        else echo "flash: systemd is not running there: start edgetrace-agent yourself" >&2; fi' ;;
    openrc) echo 'rc-service edgetrace-agent restart' ;;
    sysv|procd) echo '/etc/init.d/edgetrace-agent restart' ;;
    esac
}
pick_init() {  # $1: what detect_script printed
    [ -n "$init" ] && return
    init=$1
    if [ "$init" = unknown ]; then
        echo "flash: no init system recognised on the target: installing the systemd unit (--init overrides)" >&2
        init=systemd
    fi
}

case $dest in
ssh://*)
    hostpart=${dest#ssh://}; port=22
    case $hostpart in *:*) port=${hostpart##*:}; hostpart=${hostpart%:*} ;; esac
    remote_arch="" found=""
    { read -r remote_arch; read -r found; } < <($ssh_cmd -p "$port" "$hostpart" "uname -m; R=; $detect_script") || true
    [ -n "$found" ] || { echo "flash: cannot run commands on $hostpart over ssh" >&2; exit 1; }
    pick_init "$found"
    case "$arch:$remote_arch" in
        x86_64:x86_64|aarch64:aarch64|armv7:armv7*|armv7:armv8*) ;;
        *) [ $force = 1 ] || { echo "flash: $hostpart is $remote_arch, board $board is $arch" >&2; exit 1; } ;;
    esac
    stage_service
    # /run/systemd/system exists only while systemd is the running init (sd_booted(3)).
    payload | $ssh_cmd -p "$port" "$hostpart" "R=; $(install_script)
$(restart_script)"
    echo "flashed $board agent to $hostpart ($init)"
    ;;
*)
    root=$dest
    [ -d "$root" ] || { echo "flash: $root is not a directory" >&2; exit 1; }
    sh=""
    for c in "$root/bin/busybox" "$root/bin/sh" "$root/usr/bin/sh" "$root/bin/bash"; do
        [ -e "$c" ] && { sh=$(readlink -f "$c" 2>/dev/null || echo "$c"); break; }
    done
    # readlink -f resolves against this machine's root for absolute links: re-anchor.
    case $sh in "$root"/*) ;; /*) sh="$root$sh" ;; esac
    if [ -z "$sh" ] || ! file -b "$sh" | grep -q "$want"; then
        if [ $force = 1 ]; then
            echo "flash: warning: cannot confirm $root is $arch (--force)" >&2
        else
            echo "flash: $root does not look like a $arch root file system (its shell: ${sh:-none}); --force overrides" >&2
            exit 1
        fi
    fi
    pick_init "$(R=$root sh -c "$detect_script")"
    stage_service
    payload | R=$root sh -c "$(install_script)"
    echo "flashed $board agent into $root ($(stat -c %s "$root/usr/local/bin/edgetrace-agent") bytes, $init)"
    ;;
esac
