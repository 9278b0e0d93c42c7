"""Service definitions beyond systemd (flash.sh --init), run under a real BusyBox init.

The sysvinit/BusyBox and OpenRC scripts are driven inside a BusyBox root file system (Debian's
busybox-static) booted with unshare (own PID and mount namespaces) and chroot: BusyBox init is
PID 1 there and reaps what dies, as on a gateway. OpenRC is Debian's (openrc, librc1,
libeinfo1, fetched with apt-get download into the cache once, with the host's libc files it
loads). OpenWrt's procd (with ubus) is not in Debian: its script is checked for the
installer's detection, links and the ceilings it declares."""
import os
import shutil
import signal
import stat
import subprocess
import time

import pytest

from conftest import CACHE
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
        for _ in range(200):
            kids = open(f"/proc/{self.holder.pid}/task/{self.holder.pid}/children").read().split()
            # Until it has chrooted, the child is still the sh that mounts /dev: entering it
            # then would run the commands on this machine's root.
            try:
                if kids and os.readlink(f"/proc/{kids[0]}/root") == str(root):
                    self.init = int(kids[0])
                    break
            except OSError:
                pass
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


def busybox_gateway(tmp_path):
    r = busybox_rootfs(tmp_path)
    (r / "sbin").mkdir()
    os.symlink("../bin/busybox", r / "sbin" / "init")
    (r / "etc").mkdir()
    (r / "etc" / "inittab").write_text("::sysinit:/bin/true\n")
    conf = tmp_path / "agent.conf"
    conf.write_text(CONF)
    return r, conf


@pytest.fixture
def sysv_gateway(tmp_path):
    r, conf = busybox_gateway(tmp_path)
    out = flash("x86_64", r, "--config", conf)   # no --init: detected from /etc/inittab, /sbin/init
    assert out.returncode == 0, out.stderr
    assert "sysv" in out.stdout
    boot = BusyBoxBoot(r)
    yield r, boot
    boot.close()


OPENRC_DEBS = ("openrc", "librc1", "libeinfo1")


def openrc_debs():
    """Debian's OpenRC packages, downloaded once into the cache (skips when apt cannot)."""
    d = CACHE / "debs" / "openrc"
    if not list(d.glob("openrc_*.deb")):
        d.mkdir(parents=True, exist_ok=True)
        r = subprocess.run(["apt-get", "download", *OPENRC_DEBS], cwd=d, capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            pytest.skip(f"apt-get download {' '.join(OPENRC_DEBS)} failed: {r.stderr.strip()[-300:]}")
    return sorted(d.glob("*.deb"))


def install_openrc(r):
    """OpenRC into the BusyBox root, with the host's (Debian's) shared libraries it loads."""
    for deb in openrc_debs():
        subprocess.run(["dpkg-deb", "-x", str(deb), str(r)], check=True)
    env = dict(os.environ, LD_LIBRARY_PATH=str(r / "lib/x86_64-linux-gnu"))
    for b in ("sbin/openrc-run", "sbin/supervise-daemon", "sbin/rc-service"):
        for ln in subprocess.run(["ldd", str(r / b)], capture_output=True, text=True, env=env).stdout.splitlines():
            f = ln.split()
            lib = f[2] if "=>" in f and len(f) > 2 else f[0] if f and f[0].startswith("/") else None
            if lib and lib.startswith("/") and not lib.startswith(str(r)) and not (r / lib.lstrip("/")).exists():
                (r / lib.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(os.path.realpath(lib), r / lib.lstrip("/"))


@pytest.fixture
def openrc_gateway(tmp_path):
    r, conf = busybox_gateway(tmp_path)
    install_openrc(r)
    out = flash("x86_64", r, "--config", conf)   # detected from /sbin/openrc-run
    assert out.returncode == 0, out.stderr
    assert out.stdout.rstrip().endswith("openrc)")
    boot = BusyBoxBoot(r)
    # What OpenRC's own boot leaves in /run before any service starts.
    st = boot.sh("mkdir -p /run/openrc && cd /run/openrc && mkdir -p daemons exclusive failed hotplugged "
                 "inactive options scheduled started starting stopping tmp wasinactive && echo default > softlevel")
    assert st.returncode == 0, st.stderr
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


def proc_children(gw, pid):
    return [int(x) for x in gw.sh(f"cat /proc/{pid}/task/*/children").stdout.split()]


def test_openrc_service_starts_respawns_after_a_kill_and_stops(openrc_gateway):
    r, gw = openrc_gateway
    assert os.readlink(r / "etc/runlevels/default/edgetrace-agent") == "/etc/init.d/edgetrace-agent"
    out = gw.sh("/etc/init.d/edgetrace-agent start")
    assert out.returncode == 0 and "Starting edgetrace-agent" in out.stdout, out.stdout + out.stderr
    assert "status: started" in gw.sh("/etc/init.d/edgetrace-agent status").stdout
    supervisor = int(gw.sh("cat /run/edgetrace-agent.pid").stdout)
    assert "supervise-daemon" in gw.sh(f"cat /proc/{supervisor}/cmdline").stdout
    agent = wait_for(lambda: proc_children(gw, supervisor), "the agent")[0]
    assert "/usr/local/bin/edgetrace-agent" in gw.sh(f"cat /proc/{agent}/cmdline").stdout
    limits = gw.sh(f"cat /proc/{agent}/limits").stdout
    assert [ln for ln in limits.splitlines() if ln.startswith("Max address space")][0].split()[3] == str(VMEM_LIMIT)
    assert gw.sh(f"cat /proc/{agent}/stat").stdout.split(")")[1].split()[16] == "10"

    gw.sh(f"kill -9 {agent}")   # supervise-daemon restarts it after respawn_delay (5 s)
    again = wait_for(lambda: [p for p in proc_children(gw, supervisor) if p != agent], "the respawn", timeout=20)
    assert "/usr/local/bin/edgetrace-agent" in gw.sh(f"cat /proc/{again[0]}/cmdline").stdout

    out = gw.sh("/etc/init.d/edgetrace-agent stop")
    assert out.returncode == 0, out.stdout + out.stderr
    assert "status: stopped" in gw.sh("/etc/init.d/edgetrace-agent status").stdout
    assert "edgetrace-agent run" not in gw.sh("ps").stdout


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


@pytest.mark.parametrize("marker,init", [("sbin/procd", "procd"), ("lib/systemd/systemd", "systemd")])
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
    # procd (no procd in Debian to run it under): what it declares
    assert text.startswith("#!/bin/sh /etc/rc.common") and "USE_PROCD=1" in text
    assert "procd_set_param respawn" in text and 'limits as="100663296 100663296"' in text
    assert os.readlink(r / "etc/rc.d/S95edgetrace-agent") == "../init.d/edgetrace-agent"


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
