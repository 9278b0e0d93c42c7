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
