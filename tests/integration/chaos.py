"""Chaos helpers for edgetrace end-to-end tests (a helper module, not a test file).

What it offers:
  - LossyLink / start_lossy_link(): run tools/lossy-link between a UDP client and server with a
    named or ad-hoc impairment profile, wait until it is listening, read its stats, trigger a
    NAT rebinding, stop it and get the final counters.
  - PROFILES: named impairment profiles (plain dicts of lossy-link options).
  - kill_at_random(), kill_at_random_async(), kill_when(): SIGKILL a process at a random or
    chosen moment, for "kill -9 at any point loses nothing" trials; trial_rngs() for seeding them.
  - wait_for(), free_udp_port().

Nothing here knows about the agent or the collector; tests put them on either side:

    from chaos import start_lossy_link, kill_at_random, trial_rngs

    with start_lossy_link(upstream=("127.0.0.1", collector_port), profile="weak_cellular",
                          workdir=tmp_path) as link:
        agent = start_agent(uplink="%s:%d" % link.addr)        # the test's own code
        ...
        link.rebind()                                          # the collector sees a new port
        stats = link.stats()                                   # counters, fresh from the proxy
    print(link.final_stats)                                    # counters at exit

Every LossyLink has a seed (chosen at random unless given) and puts it in its repr and in the
errors it raises, so a failing run can be replayed with the same random decisions.

The binary is $ET_LOSSY_LINK, default build/host/lossy-link under the repository root.
"""

import json
import os
import random
import signal
import socket
import subprocess
import tempfile
import threading
import time

ROOT = os.environ.get("ET_ROOT") or os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
LOSSY_LINK = os.environ.get("ET_LOSSY_LINK") or os.path.join(ROOT, "build", "host", "lossy-link")

# Options a profile may set, spelled as lossy-link's long options with "_" for "-".
# "outage" is a list of (start_s, duration_s) pairs or "START:DUR" strings.
PROFILE_KEYS = frozenset(
    """loss loss_up loss_down delay_ms delay_up_ms delay_down_ms jitter_ms jitter_up_ms jitter_down_ms
    reorder reorder_up reorder_down reorder_hold_ms dup dup_up dup_down rate_kbps rate_up_kbps
    rate_down_kbps rate_buffer_ms outage rebind_every max_queue max_queue_bytes max_flows
    flow_idle_s verbose""".split()
)

PROFILES = {
    # a transparent relay: useful as the control run of a comparison
    "clean": {},
    # a decent link with some loss and a little latency
    "mild": {"loss": 2, "delay_ms": 20, "jitter_ms": 10},
    # a poor cellular link: heavy loss, long and variable latency, some reordering and duplication
    "cellular": {"loss": 10, "delay_ms": 150, "jitter_ms": 100, "reorder": 2, "dup": 1},
    # issue 4 item 6: 30% loss each way, 300 ms delay, one 60 s outage (tests add a rebinding with
    # LossyLink.rebind() or "rebind_every" when they want it at a particular moment)
    "weak_cellular": {"loss": 30, "delay_ms": 300, "outage": [(20, 60)]},
    # a NAT that keeps changing the port: every flow rebinds every 10 s
    "nat_churn": {"rebind_every": 10, "delay_ms": 30},
    # a thin metered link
    "narrow": {"rate_kbps": 64, "delay_ms": 100, "rate_buffer_ms": 2000},
}


def _format_outage(o):
    if isinstance(o, str):
        return o
    start, duration = o
    return "%g:%g" % (start, duration)


def profile_args(profile=None, **overrides):
    """lossy-link arguments for PROFILE (a name from PROFILES or a dict) with OVERRIDES applied.

    An override of None removes that option. Unknown keys raise ValueError, so a typo in a test
    does not silently run an unimpaired link."""
    if profile is None:
        settings = {}
    elif isinstance(profile, str):
        if profile not in PROFILES:
            raise ValueError("unknown lossy-link profile %r (known: %s)" % (profile, ", ".join(sorted(PROFILES))))
        settings = dict(PROFILES[profile])
    else:
        settings = dict(profile)
    settings.update(overrides)
    args = []
    for key in sorted(settings):
        value = settings[key]
        if key not in PROFILE_KEYS:
            raise ValueError("unknown lossy-link option %r in profile" % key)
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if key == "outage":
            for o in value:
                args += [flag, _format_outage(o)]
        elif value is True:
            args.append(flag)
        else:
            args += [flag, "%g" % value if isinstance(value, float) else str(value)]
    return args


def wait_for(pred, timeout=10.0, step=0.05):
    """Poll PRED until it returns something truthy; return that value, or the last one on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(step)


def free_udp_port(host="127.0.0.1"):
    """A UDP port that was free a moment ago (prefer port 0 where the program supports it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


class LossyLinkError(RuntimeError):
    pass


class LossyLink:
    """One lossy-link process. Use start_lossy_link() or call start() yourself.

    Attributes once started: addr (host, port) that clients send to, listen ("host:port"),
    proc (Popen), seed, started_at (time.monotonic() when it became ready, at or just after the
    proxy's own time zero, which its --outage schedule counts from), workdir, log_path,
    stats_path, final_stats (after stop())."""

    def __init__(self, upstream, profile=None, listen="127.0.0.1:0", workdir=None, seed=None, binary=None,
                 extra_args=(), **overrides):
        if isinstance(upstream, tuple):
            upstream = "%s:%d" % upstream
        self.upstream = upstream
        self.listen_arg = listen
        self.seed = random.SystemRandom().randrange(2**32) if seed is None else int(seed)
        self.binary = binary or LOSSY_LINK
        self._own_workdir = workdir is None
        self.workdir = str(workdir) if workdir is not None else tempfile.mkdtemp(prefix="lossy-link-")
        os.makedirs(self.workdir, exist_ok=True)
        self.args = profile_args(profile, **overrides) + list(extra_args)
        self.profile = profile
        self.proc = None
        self.addr = None
        self.listen = None
        self.started_at = None
        self.final_stats = None
        self.log_path = os.path.join(self.workdir, "lossy-link.log")
        self.stats_path = os.path.join(self.workdir, "lossy-link.stats.json")
        self.ready_path = os.path.join(self.workdir, "lossy-link.ready")

    def __repr__(self):
        return "<LossyLink %s -> %s seed=%d args=%s>" % (self.listen, self.upstream, self.seed, " ".join(self.args))

    def command(self):
        return [self.binary, "--listen", self.listen_arg, "--upstream", self.upstream, "--seed", str(self.seed),
                "--stats-file", self.stats_path, "--ready-file", self.ready_path, *self.args]

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout=10.0):
        if not os.access(self.binary, os.X_OK):
            raise LossyLinkError("lossy-link binary not found at %s (build it or set ET_LOSSY_LINK)" % self.binary)
        for path in (self.ready_path, self.stats_path):
            if os.path.exists(path):
                os.unlink(path)
        # stdout and stderr go to a file, never a pipe, so the proxy can never block on a full pipe
        log = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        finally:
            log.close()
        ready = wait_for(lambda: self._read_ready() or self.proc.poll() is not None, timeout, 0.01)
        line = self._read_ready()
        if not line:
            self.kill()
            raise LossyLinkError("%r did not become ready (%s): %s" % (
                self, "exited %s" % self.proc.returncode if ready else "timeout", self.log_tail()))
        host, port = line.rsplit(":", 1)
        self.addr = (host.strip("[]"), int(port))
        self.listen = line
        self.started_at = time.monotonic()
        return self

    def _read_ready(self):
        try:
            with open(self.ready_path) as f:
                text = f.read()
        except FileNotFoundError:
            return None
        return text.strip() if text.endswith("\n") else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=10.0):
        """SIGTERM, wait, and return the final stats. Raises if the exit was not clean."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()
                raise LossyLinkError("%r ignored SIGTERM for %.0f s" % (self, timeout))
        self.final_stats = self._read_stats()
        if self.proc.returncode != 0:
            raise LossyLinkError("%r exited with %s: %s" % (self, self.proc.returncode, self.log_tail()))
        return self.final_stats

    def kill(self):
        """SIGKILL without ceremony (no final stats)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def __enter__(self):
        if self.proc is None:
            self.start()
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is None:
            self.stop()
        else:
            try:
                self.stop()
            except LossyLinkError:
                pass

    # ---------------------------------------------------------------------- stats

    def _read_stats(self):
        try:
            with open(self.stats_path) as f:
                return json.load(f)  # the proxy renames a complete file into place: never torn
        except (FileNotFoundError, ValueError):
            return None

    def stats(self, fresh=True, timeout=5.0):
        """The proxy's counters as a dict (see the top of lossy-link.c for the fields).

        fresh=True asks the proxy for a new snapshot (SIGUSR2) and waits for it; fresh=False
        returns the file as last written (at most about a second old)."""
        current = self._read_stats()
        if not fresh:
            return current
        if not self.alive():
            return self.final_stats or current
        before = current["seq"] if current else 0
        self.proc.send_signal(signal.SIGUSR2)
        newer = wait_for(lambda: (lambda s: s if s and s["seq"] > before else None)(self._read_stats()), timeout, 0.01)
        if not newer:
            raise LossyLinkError("%r: no fresh stats within %.0f s: %s" % (self, timeout, self.log_tail()))
        return newer

    def wait_stats(self, pred, timeout=10.0, step=0.1):
        """Poll fresh stats until PRED(stats) is true; return those stats (raise on timeout)."""
        found = wait_for(lambda: (lambda s: s if pred(s) else None)(self.stats()), timeout, step)
        if not found:
            raise LossyLinkError("%r: stats condition not met within %.0f s; last: %s" % (self, timeout, self.stats()))
        return found

    def upstream_ports(self):
        """{client "host:port": the source port the upstream currently sees for that client}."""
        return {f["client"]: f["upstream_port"] for f in self.stats()["flows"]}

    def rebind(self, timeout=5.0):
        """NAT rebinding now: every flow gets a new upstream source port (the old socket is closed).

        Returns fresh stats taken after the rebinding. With no flow yet there is nothing to rebind."""
        before = self.stats()
        self.proc.send_signal(signal.SIGUSR1)
        if before["flows_active"] == 0:
            return self.stats()
        target = before["rebinds"] + before["rebind_failures"] + 1
        return self.wait_stats(lambda s: s["rebinds"] + s["rebind_failures"] >= target, timeout, 0.02)

    # ----------------------------------------------------------------- the schedule

    def outage_windows(self):
        """The --outage windows as (start, end) in time.monotonic() terms (approximate: the proxy's
        time zero is at or slightly before started_at)."""
        windows = []
        args = self.args
        for i, a in enumerate(args[:-1]):
            if a == "--outage":
                start, duration = (float(x) for x in args[i + 1].split(":"))
                windows.append((self.started_at + start, self.started_at + start + duration))
        return windows

    def wait_outage_over(self, margin=0.5):
        """Sleep until every scheduled outage has ended (plus MARGIN seconds)."""
        ends = [end for _, end in self.outage_windows()]
        if ends:
            left = max(ends) + margin - time.monotonic()
            if left > 0:
                time.sleep(left)

    def log_tail(self, lines=20):
        try:
            with open(self.log_path, "rb") as f:
                text = f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


def start_lossy_link(upstream, profile=None, workdir=None, seed=None, timeout=10.0, **kwargs):
    """Start lossy-link in front of UPSTREAM ((host, port) or "host:port") and wait until it is ready.

    PROFILE is a name from PROFILES or a dict of options; keyword options override it
    (e.g. loss=30, outage=[(5, 10)], rebind_every=None). Returns a started LossyLink, usable as a
    context manager."""
    return LossyLink(upstream, profile=profile, workdir=workdir, seed=seed, **kwargs).start(timeout)


# ----------------------------------------------------------------------------- kill -9 trials


def _pid(proc):
    return proc if isinstance(proc, int) else proc.pid


def _alive(proc):
    if isinstance(proc, int):
        try:
            os.kill(proc, 0)
        except ProcessLookupError:
            return False
        return True
    return proc.poll() is None


def _sigkill(proc, sig=signal.SIGKILL):
    """Send SIG; True if it was delivered to a live process."""
    if not _alive(proc):
        return False
    try:
        os.kill(_pid(proc), sig)
    except ProcessLookupError:
        return False
    if not isinstance(proc, int):
        proc.wait(10)
    return True


def kill_at_random(proc, rng, min_s=0.0, max_s=5.0, sig=signal.SIGKILL):
    """Sleep a uniform random time in [MIN_S, MAX_S] (drawn from RNG, a random.Random), then send
    SIG (default SIGKILL) to PROC (a Popen or a pid). Blocks.

    Returns the delay in seconds if the process was killed, or None if it had already exited on
    its own (then the trial did not test what it meant to: count such trials)."""
    delay = rng.uniform(min_s, max_s)
    deadline = time.monotonic() + delay
    while time.monotonic() < deadline:
        if not _alive(proc):
            return None
        time.sleep(min(0.01, max(0.0, deadline - time.monotonic())))
    return delay if _sigkill(proc, sig) else None


def kill_at_random_async(proc, rng, min_s=0.0, max_s=5.0, sig=signal.SIGKILL):
    """kill_at_random in a background thread. Returns (thread, result) where result["delay"] is
    set once the thread has finished (None if the process exited first); join the thread."""
    result = {"delay": None}
    delay_rng = random.Random(rng.getrandbits(64))  # the caller's rng stays usable in its thread

    def run():
        result["delay"] = kill_at_random(proc, delay_rng, min_s, max_s, sig)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, result


def kill_when(proc, pred, timeout=30.0, step=0.005, sig=signal.SIGKILL):
    """SIGKILL PROC as soon as PRED() is true (e.g. a spool file passed a random size, or the
    collector logged an upload). Returns True if killed, False if PROC exited or TIMEOUT passed."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not _alive(proc):
            return False
        if pred():
            return _sigkill(proc, sig)
        time.sleep(step)
    return False


def trial_rngs(trials, base_seed=None):
    """Yield (trial index, seed, random.Random(seed)) for kill trials, seed = BASE_SEED + index.

    BASE_SEED defaults to $ET_CHAOS_SEED, else a random one. Put the seed in every assertion
    message: rerunning with ET_CHAOS_SEED=<that seed> makes trial 0 repeat the failing trial."""
    if base_seed is None:
        env = os.environ.get("ET_CHAOS_SEED")
        base_seed = int(env) if env else random.SystemRandom().randrange(2**32)
    for i in range(trials):
        seed = base_seed + i
        yield i, seed, random.Random(seed)
