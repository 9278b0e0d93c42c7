"""tools/flash/flash.sh into a gateway root file system (a directory, as a mounted SD card)."""
import os
import shutil
import stat
import subprocess

import pytest

from conftest import BUILD, ROOT, agent_cmd

FLASH = ROOT / "tools" / "flash" / "flash.sh"


def rootfs(tmp_path, board):
    """A minimal root file system whose /bin/sh is a binary of the board's architecture."""
    r = tmp_path / f"rootfs-{board}"
    (r / "bin").mkdir(parents=True)
    shutil.copy(BUILD / board / "edgetrace-agent", r / "bin" / "busybox")
    os.symlink("busybox", r / "bin" / "sh")
    return r


def flash(*args):
    return subprocess.run(["bash", str(FLASH), *map(str, args)], capture_output=True, text=True, timeout=60)


def test_flash_into_matching_rootfs(tmp_path):
    r = rootfs(tmp_path, "rpi4")
    creds = tmp_path / "credentials"
    creds.write_text("[device]\nid = gw-1\npsk = 00112233\n")
    out = flash("rpi4", r, "--credentials", creds)
    assert out.returncode == 0, out.stderr
    agent = r / "usr/local/bin/edgetrace-agent"
    assert agent.stat().st_mode & stat.S_IXUSR
    assert (r / "etc/systemd/system/multi-user.target.wants/edgetrace-agent.service").resolve().exists()
    assert stat.S_IMODE((r / "etc/edgetrace/credentials").stat().st_mode) == 0o600
    assert "[uplink]" in (r / "etc/edgetrace/agent.conf").read_text()
    assert (r / "var/lib/edgetrace/spool").is_dir()
    # what was flashed is the rpi4 agent and it runs (under qemu here)
    v = subprocess.run(agent_cmd("rpi4")[:-1] + [str(agent), "--version"], capture_output=True, text=True)
    assert "board: rpi4" in v.stdout


def test_reflash_keeps_the_gateways_config(tmp_path):
    r = rootfs(tmp_path, "bbb")
    assert flash("bbb", r).returncode == 0
    conf = r / "etc/edgetrace/agent.conf"
    conf.write_text("[agent]\ndevice_id = line-7\n")
    assert flash("bbb", r).returncode == 0
    assert conf.read_text() == "[agent]\ndevice_id = line-7\n"
    assert not (r / "etc/edgetrace/agent.conf.default").exists()


def test_flash_refuses_wrong_architecture(tmp_path):
    r = rootfs(tmp_path, "rpi4")  # aarch64 image
    out = flash("bbb", r)         # armv7 agent
    assert out.returncode == 1 and "does not look like a armv7" in out.stderr
    assert not (r / "usr/local/bin/edgetrace-agent").exists()
    assert flash("bbb", r, "--force").returncode == 0


def test_flash_usage_errors(tmp_path):
    assert flash("pdp11", tmp_path).returncode == 2
    assert flash("rpi4", tmp_path / "nope").returncode == 1
    out = flash("x86_64", "ssh://gw-1", "--ssh-command", "false")   # the gateway cannot be reached
    assert out.returncode == 1 and "cannot run commands on gw-1" in out.stderr


def busybox_rootfs(tmp_path, name="bbroot"):
    """A BusyBox root file system (Debian's busybox-static, x86_64) with every applet linked."""
    r = tmp_path / name
    (r / "bin").mkdir(parents=True)
    shutil.copy("/usr/bin/busybox", r / "bin" / "busybox")
    applets = subprocess.run(["/usr/bin/busybox", "--list"], capture_output=True, text=True).stdout.split()
    for a in applets:
        if a != "busybox":
            os.symlink("busybox", r / "bin" / a)
    return r


def existing_dirs(r):
    """The gateway's own directories, with owners and modes flash.sh must not touch."""
    os.chmod(r, 0o755)
    layout = {"etc": (0o750, 0, 4), "usr": (0o755, 0, 0), "usr/local": (0o775, 0, 50),
              "usr/local/bin": (0o755, 1000, 1000), "var": (0o755, 0, 0)}
    for d, (mode, uid, gid) in layout.items():
        (r / d).mkdir(exist_ok=True)
        os.chown(r / d, uid, gid)
        os.chmod(r / d, mode)
    os.chown(r, 0, 0)
    layout[""] = (0o755, 0, 0)
    return layout


def assert_untouched(r, layout):
    for d, want in layout.items():
        st = (r / d).stat()
        assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == want, f"/{d} changed"


def test_flash_leaves_existing_directories_alone(tmp_path):
    r = rootfs(tmp_path, "rpi4")
    layout = existing_dirs(r)
    out = flash("rpi4", r)
    assert out.returncode == 0, out.stderr
    assert_untouched(r, layout)
    assert (r / "usr/local/bin/edgetrace-agent").stat().st_uid == 0
    assert stat.S_IMODE((r / "etc/edgetrace").stat().st_mode) == 0o755


def test_flash_over_ssh_leaves_existing_directories_alone(tmp_path):
    """The ssh path: the 'remote' is a BusyBox root reached through chroot, so its tar is BusyBox's."""
    r = busybox_rootfs(tmp_path)
    layout = existing_dirs(r)
    fake_ssh = tmp_path / "fake-ssh"
    # Called as: fake-ssh -p PORT HOST REMOTE_COMMAND (what ssh gets); runs it inside the root.
    fake_ssh.write_text(f'#!/bin/sh\nshift 3\nexec chroot {r} /bin/sh -c "$*"\n')
    fake_ssh.chmod(0o755)
    creds = tmp_path / "credentials"
    creds.write_text("[device]\nid = gw-1\npsk = 00112233\n")
    out = flash("x86_64", "ssh://root@gw-1", "--credentials", creds, "--ssh-command", fake_ssh)
    assert out.returncode == 0, out.stderr
    assert "systemd is not running" in out.stderr
    assert_untouched(r, layout)
    assert stat.S_IMODE((r / "etc/edgetrace/credentials").stat().st_mode) == 0o600
    assert "[uplink]" in (r / "etc/edgetrace/agent.conf").read_text()
    v = subprocess.run(["chroot", str(r), "/usr/local/bin/edgetrace-agent", "--version"],
                       capture_output=True, text=True)
    assert "board: x86_64" in v.stdout
