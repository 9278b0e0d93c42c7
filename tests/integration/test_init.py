"""Service definitions beyond systemd (flash.sh --init), run under a real BusyBox init.

The sysvinit/BusyBox script is driven inside a BusyBox root file system (Debian's busybox-static)
booted with unshare (own PID and mount namespaces) and chroot: BusyBox init is PID 1 there and
reaps what dies, as on a gateway. OpenRC and procd need their own supervisors (openrc-run,
OpenWrt's procd + ubus), which Debian does not ship in a form that runs in such a root; their
scripts are checked for the installer's detection, links and the ceilings they declare."""
import os
import signal
import stat
import subprocess
import time

import pytest

from test_flash import busybox_rootfs, flash

CONF = "[agent]\ndiscover = no\nlog_level = info\n"
VMEM_LIMIT = 98304 * 1024   # ulimit -v in edgetrace-agent.sysv, bytes


class BusyBoxBoot:
    """A BusyBox root booted into its own PID + mount namespace with BusyBox init as PID 1."""

    def __init__(self, root):
        self.root = root
        (root / "proc").mkdir(exist_ok=True)
        (root / "dev").mkdir(exist_ok=True)
        # /dev as a gateway's devtmpfs gives it (the bind stays inside the private mount namespace).
        self.holder = subprocess.Popen(["unshare", "--pid", "--fork", "--mount", f"--mount-proc={root}/proc",
                                        "sh", "-c", f"mount --rbind /dev {root}/dev && exec chroot {root} /sbin/init"],
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.init = None
        for _ in range(100):
            kids = open(f"/proc/{self.holder.pid}/task/{self.holder.pid}/children").read().split()
            if kids:
                self.init = int(kids[0])
                break
            time.sleep(0.05)
        assert self.init, "BusyBox init did not start"

    def sh(self, cmd, timeout=30):
        return subprocess.run(["nsenter", "-t", str(self.init), "-p", "-m", "-r", "-w", "/bin/sh", "-c", cmd],
                              capture_output=True, text=True, timeout=timeout)

    def agent_pid(self):
        """PID (in the gateway's namespace) from the script's pid file, if the script says it runs."""
        out = self.sh("/etc/init.d/edgetrace-agent status && cat /var/run/edgetrace-agent.pid")
        return int(out.stdout.split()[-1]) if out.returncode == 0 else None

    def close(self):
        os.kill(self.init, signal.SIGKILL)   # PID 1 gone: the kernel kills the whole namespace
        self.holder.wait(timeout=10)


@pytest.fixture
def sysv_gateway(tmp_path):
    r = busybox_rootfs(tmp_path)
    (r / "sbin").mkdir()
    os.symlink("../bin/busybox", r / "sbin" / "init")
    (r / "etc").mkdir()
    (r / "etc" / "inittab").write_text("::sysinit:/bin/true\n")
    conf = tmp_path / "agent.conf"
    conf.write_text(CONF)
    out = flash("x86_64", r, "--config", conf)   # no --init: detected from /etc/inittab, /sbin/init
    assert out.returncode == 0, out.stderr
    assert "sysv" in out.stdout
    boot = BusyBoxBoot(r)
    yield r, boot
    boot.close()


def wait_for(pred, what, timeout=10):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}")


def test_sysv_script_starts_stops_and_restarts_after_a_kill(sysv_gateway):
    r, gw = sysv_gateway
    # BusyBox (Buildroot) rcS starts /etc/init.d/S??*: the installer linked the script there.
    assert os.readlink(r / "etc/init.d/S95edgetrace-agent") == "edgetrace-agent"
    assert not (r / "etc/systemd").exists()

    out = gw.sh("/etc/init.d/edgetrace-agent start")
    assert out.returncode == 0 and "started" in out.stdout, out.stdout + out.stderr
    pid = wait_for(gw.agent_pid, "the agent")
    cmdline = gw.sh(f"tr '\\0' ' ' < /proc/{pid}/cmdline").stdout
    assert cmdline.startswith("/usr/local/bin/edgetrace-agent run --config /etc/edgetrace/agent.conf")
    # The ceilings it declares: address space and nice 10 (no cgroup2 mount inside the chroot).
    limits = gw.sh(f"cat /proc/{pid}/limits").stdout
    assert [ln for ln in limits.splitlines() if ln.startswith("Max address space")][0].split()[3] == str(VMEM_LIMIT)
    assert gw.sh(f"cat /proc/{pid}/stat").stdout.split(")")[1].split()[16] == "10"
    assert gw.sh("/etc/init.d/edgetrace-agent start").stdout.startswith("edgetrace-agent already running")

    out = gw.sh("/etc/init.d/edgetrace-agent stop")
    assert out.returncode == 0 and "stopped" in out.stdout
    assert gw.sh("/etc/init.d/edgetrace-agent status").returncode == 3
    assert "edgetrace-agent run" not in gw.sh("ps").stdout
    assert (r / "var/lib/edgetrace/spool").is_dir()

    # Killed hard (OOM killer, a crash): the stale pid file must not stop the next start.
    assert gw.sh("/etc/init.d/edgetrace-agent start").returncode == 0
    pid = wait_for(gw.agent_pid, "the agent")
    gw.sh(f"kill -9 {pid}")
    wait_for(lambda: gw.sh("/etc/init.d/edgetrace-agent status").returncode == 3, "the kill")
    assert (r / "var/run/edgetrace-agent.pid").exists()
    out = gw.sh("/etc/init.d/edgetrace-agent restart")
    assert out.returncode == 0 and "started" in out.stdout, out.stdout + out.stderr
    pid2 = wait_for(gw.agent_pid, "the restarted agent")
    assert pid2 != pid
    assert gw.sh("/etc/init.d/edgetrace-agent stop").returncode == 0


def test_sysv_links_on_a_sysvinit_root(tmp_path):
    r = busybox_rootfs(tmp_path)
    for n in range(7):
        (r / f"etc/rc{n}.d").mkdir(parents=True)
    (r / "etc/init.d").mkdir()
    out = flash("x86_64", r, "--init", "sysv")
    assert out.returncode == 0, out.stderr
    for n in (2, 3, 4, 5):
        assert os.readlink(r / f"etc/rc{n}.d/S95edgetrace-agent") == "../init.d/edgetrace-agent"
    for n in (0, 1, 6):
        assert os.readlink(r / f"etc/rc{n}.d/K05edgetrace-agent") == "../init.d/edgetrace-agent"
    assert not (r / "etc/init.d/S95edgetrace-agent").exists()


@pytest.mark.parametrize("marker,init", [("sbin/procd", "procd"), ("sbin/openrc-run", "openrc"),
                                         ("lib/systemd/systemd", "systemd")])
def test_init_system_is_detected(tmp_path, marker, init):
    r = busybox_rootfs(tmp_path)
    (r / marker).parent.mkdir(parents=True, exist_ok=True)
    (r / marker).write_text("")
    (r / marker).chmod(0o755)
    (r / "etc/init.d").mkdir(parents=True, exist_ok=True)   # every one of them has it
    out = flash("x86_64", r)
    assert out.returncode == 0 and f"{init})" in out.stdout, out.stdout + out.stderr
    script = r / "etc/init.d/edgetrace-agent"
    if init == "systemd":
        assert not script.exists()
        assert (r / "etc/systemd/system/multi-user.target.wants/edgetrace-agent.service").resolve().exists()
        return
    assert script.stat().st_mode & stat.S_IXUSR
    text = script.read_text()
    # Parsed by the shell the gateway runs its init scripts with (BusyBox ash on OpenWrt/Alpine).
    assert subprocess.run(["/usr/bin/busybox", "sh", "-n", str(script)]).returncode == 0
    if init == "procd":
        assert text.startswith("#!/bin/sh /etc/rc.common") and "USE_PROCD=1" in text
        assert "procd_set_param respawn" in text and 'limits as="100663296 100663296"' in text
        assert os.readlink(r / "etc/rc.d/S95edgetrace-agent") == "../init.d/edgetrace-agent"
    else:
        assert text.startswith("#!/sbin/openrc-run") and "supervisor=supervise-daemon" in text
        assert "memory.max 33554432" in text and 'rc_ulimit="-v 98304"' in text
        assert os.readlink(r / "etc/runlevels/default/edgetrace-agent") == "/etc/init.d/edgetrace-agent"


def test_unknown_init_system_is_refused(tmp_path):
    out = flash("x86_64", tmp_path, "--init", "upstart")
    assert out.returncode == 2 and "unknown init system" in out.stderr


def test_flash_over_ssh_detects_sysv_and_starts_the_agent(sysv_gateway, tmp_path):
    """ssh path into a running BusyBox gateway: the init system is detected there, and the
    installer starts the agent through the installed script."""
    r, gw = sysv_gateway
    fake_ssh = tmp_path / "fake-ssh"
    # Called as: fake-ssh -p PORT HOST REMOTE_COMMAND; runs it inside the booted gateway.
    fake_ssh.write_text(f'#!/bin/sh\nshift 3\nexec nsenter -t {gw.init} -p -m -r -w /bin/sh -c "$*"\n')
    fake_ssh.chmod(0o755)
    out = flash("x86_64", "ssh://root@gw-7", "--ssh-command", fake_ssh)
    assert out.returncode == 0, out.stderr
    assert "(sysv)" in out.stdout and "started" in out.stdout, out.stdout
    pid = wait_for(gw.agent_pid, "the agent")
    assert "edgetrace-agent" in gw.sh(f"cat /proc/{pid}/cmdline").stdout
    # flashing again restarts it (a new binary must run)
    assert flash("x86_64", "ssh://root@gw-7", "--ssh-command", fake_ssh).returncode == 0
    assert wait_for(lambda: (gw.agent_pid() or pid) != pid and gw.agent_pid(), "the restarted agent")
    assert gw.sh("/etc/init.d/edgetrace-agent stop").returncode == 0
