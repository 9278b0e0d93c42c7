"""Container images from tools/image/build.sh (make image), built without a container engine.

Structure: the OCI layout's multi-arch index, each manifest's config (architecture, variant,
labels, user) and the static ELF of the right architecture inside; the docker-archives.
Run: the amd64 agent image under real crun (Debian), as root without an engine, with the
DaemonSet's settings (host PID namespace, only SYS_PTRACE, SYS_ADMIN, DAC_READ_SEARCH, no new
privileges, read-only root, spool on a host directory) discovers a real Go test service that
runs in its own crun container with its own network namespace; the collector image, also under
crun, stores what it sends. The arm64 image's agent runs under qemu-user."""
import base64
import gzip
import io
import json
import os
import shutil
import subprocess
import tarfile
import uuid

import pytest
import yaml

from conftest import ROOT, TESTSVC, wait_for
from pgcluster import PgCluster
from test_agent_run import query, udp_port

VERSION = (ROOT / "VERSION").read_text().strip()
ARCHES = {"amd64": ("amd64", None, "x86-64"), "arm64": ("arm64", None, "ARM aarch64"),
          "armv7": ("arm", "v7", "ARM, EABI5")}
CAPS = ["CAP_SYS_PTRACE", "CAP_SYS_ADMIN", "CAP_DAC_READ_SEARCH"]   # deploy/agent-daemonset.yaml


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    out = tmp_path_factory.mktemp("image")
    r = subprocess.run(["bash", str(ROOT / "tools/image/build.sh"), str(out)], capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    layout = out / "layout"
    layout.mkdir()
    with tarfile.open(out / f"edgetrace-{VERSION}.oci.tar") as t:
        t.extractall(layout)
    return out, layout


def blob(layout, digest):
    return (layout / "blobs" / "sha256" / digest.split(":")[1]).read_bytes()


def tagged(layout, tag):
    for m in json.loads((layout / "index.json").read_text())["manifests"]:
        if m.get("annotations", {}).get("org.opencontainers.image.ref.name") == tag:
            return m
    pytest.fail(f"no {tag} in index.json")


def layer_files(layout, manifest):
    files = {}
    for layer in manifest["layers"]:
        assert layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar+gzip"
        with tarfile.open(fileobj=io.BytesIO(gzip.decompress(blob(layout, layer["digest"])))) as t:
            for m in t.getmembers():
                files[m.name.lstrip("./")] = (m, t.extractfile(m).read() if m.isfile() else None)
    return files


def file_type(tmp_path, data):
    p = tmp_path / f"elf-{uuid.uuid4().hex}"
    p.write_bytes(data)
    return subprocess.run(["file", "-b", str(p)], capture_output=True, text=True).stdout


def test_agent_index_and_each_architecture(images, tmp_path):
    out, layout = images
    # the only two entries, named so that `ctr images import` names the images after them
    refs = sorted(m["annotations"]["org.opencontainers.image.ref.name"]
                  for m in json.loads((layout / "index.json").read_text())["manifests"])
    assert refs == [f"docker.io/edgetrace/agent:{VERSION}", f"docker.io/edgetrace/collector:{VERSION}"]
    top = tagged(layout, f"docker.io/edgetrace/agent:{VERSION}")
    assert top["mediaType"] == "application/vnd.oci.image.index.v1+json"
    index = json.loads(blob(layout, top["digest"]))
    platforms = {(m["platform"]["architecture"], m["platform"].get("variant")): m for m in index["manifests"]}
    assert set(platforms) == {(a, v) for a, v, _ in ARCHES.values()}
    for name, (arch, variant, elf) in ARCHES.items():
        desc = platforms[(arch, variant)]
        assert desc["platform"]["os"] == "linux"
        manifest = json.loads(blob(layout, desc["digest"]))
        config = json.loads(blob(layout, manifest["config"]["digest"]))
        assert (config["architecture"], config.get("variant"), config["os"]) == (arch, variant, "linux")
        labels = config["config"]["Labels"]
        assert labels["org.opencontainers.image.version"] == VERSION
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
        assert labels["org.opencontainers.image.revision"] == rev.stdout.strip()
        assert labels["org.opencontainers.image.source"]
        assert config["config"]["Entrypoint"] == ["/usr/local/bin/edgetrace-agent"]
        files = layer_files(layout, manifest)
        regular = [n for n, (m, _) in files.items() if m.isfile()]
        assert regular == ["usr/local/bin/edgetrace-agent"], regular   # the agent and nothing else
        kind = file_type(tmp_path, files["usr/local/bin/edgetrace-agent"][1])
        assert elf in kind and "statically linked" in kind, (name, kind)


def test_docker_archives_name_the_image(images):
    out, _ = images
    for name, (arch, variant, _) in ARCHES.items():
        with tarfile.open(out / f"edgetrace-agent-{VERSION}-{name}.docker.tar") as t:
            manifest = json.load(t.extractfile("manifest.json"))
            assert manifest[0]["RepoTags"] == [f"docker.io/edgetrace/agent:{VERSION}"]
            config = json.load(t.extractfile(manifest[0]["Config"]))
            assert config["architecture"] == arch and config.get("variant") == variant
    with tarfile.open(out / f"edgetrace-collector-{VERSION}-amd64.docker.tar") as t:
        assert json.load(t.extractfile("manifest.json"))[0]["RepoTags"] == [f"docker.io/edgetrace/collector:{VERSION}"]


def test_collector_image_is_libc6_and_non_root(images, tmp_path):
    _, layout = images
    manifest = json.loads(blob(layout, tagged(layout, f"docker.io/edgetrace/collector:{VERSION}")["digest"]))
    config = json.loads(blob(layout, manifest["config"]["digest"]))
    assert config["config"]["User"] == "65532:65532"
    assert config["config"]["Labels"]["org.opencontainers.image.base.name"].startswith("debian:libc6=")
    files = layer_files(layout, manifest)
    libs = sorted(n for n, (m, _) in files.items() if m.isfile() and ".so" in n)
    assert libs and all(n.startswith(("lib/", "lib64/")) for n in libs), libs
    assert files["var/lib/edgetrace"][0].uid == 65532


def test_collector_image_reaches_postgresql_over_verified_tls(images, tmp_path):
    """The collector image's binary carries libpq and OpenSSL (static: the image has libc6 files
    only): under crun it provisions a device into a real PostgreSQL 15 that accepts TCP over TLS
    only, with verify-full against the CA file mounted into the container."""
    out, _ = images
    pg = PgCluster()
    if not pg.available():
        pytest.fail("PostgreSQL 15 server binaries not found (tools/setup.sh installs postgresql)")
    try:
        pg.init().enable_tls().start()
        pg.createdb("etimg")
        bundle = tmp_path / "pg-bundle"
        spec = unpack(out / f"edgetrace-collector-{VERSION}-amd64.docker.tar", bundle)
        no_namespace(spec, "network")
        spec["root"]["readonly"] = True
        spec["process"]["terminal"] = False
        bind(spec, pg.ca, "/etc/edgetrace/pg-ca.crt")
        url = pg.tcp_url("etimg", "sslmode=verify-full&sslrootcert=/etc/edgetrace/pg-ca.crt")
        spec["process"]["args"] = ["/usr/local/bin/edgetrace-collector", "provision", "gw-pg", "--db", url]
        save(bundle, spec)
        r = crun("run", "--bundle", str(bundle), f"et-pg-{uuid.uuid4().hex[:8]}")
        assert r.returncode == 0, r.stdout + r.stderr
        assert "gw-pg" in r.stdout
        assert pg.sql("etimg", "SELECT id FROM devices") == [["gw-pg"]]
        # and the same binary outside TLS is turned away: the TLS above was real
        plain = subprocess.run([str(ROOT / "build/host/edgetrace-collector"), "keys", "--db",
                                pg.tcp_url("etimg", "sslmode=disable")], capture_output=True, text=True, timeout=60)
        assert plain.returncode != 0 and "no encryption" in plain.stderr, plain.stderr
    finally:
        pg.cleanup()


def test_images_are_reproducible(images, tmp_path):
    out, layout = images
    again = tmp_path / "again"
    subprocess.run(["bash", str(ROOT / "tools/image/build.sh"), str(again)], check=True, capture_output=True)
    with tarfile.open(again / f"edgetrace-{VERSION}.oci.tar") as t:
        idx = json.load(t.extractfile("./index.json"))
    assert idx == json.loads((layout / "index.json").read_text())


# ---------------------------------------------------------------- running them with crun

CRUN = ["unshare", "-m", "sh", "-c",
        # crun 1.8 refuses this machine's hybrid cgroup layout (v1 controllers + a v2 'unified'
        # mount); hiding the v2 mount in a private mount namespace leaves it plain v1. The
        # cgroup manager is off: no resource limits are under test here.
        'umount -l /sys/fs/cgroup/unified 2>/dev/null; exec crun --cgroup-manager=disabled "$@"', "crun"]


def crun(*args, **kw):
    return subprocess.run(CRUN + list(args), capture_output=True, text=True, timeout=60, **kw)


class Container:
    def __init__(self, bundle, name, log):
        self.id = f"et-{name}-{uuid.uuid4().hex[:8]}"
        self.log = log
        self.proc = subprocess.Popen(CRUN + ["run", "--bundle", str(bundle), self.id],
                                     stdout=open(log, "w"), stderr=subprocess.STDOUT)

    def pid(self):
        st = crun("state", self.id)
        return json.loads(st.stdout)["pid"] if st.returncode == 0 else None

    def stop(self):
        crun("kill", self.id, "TERM")
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            crun("kill", self.id, "KILL")
            self.proc.wait(timeout=10)
        crun("delete", "-f", self.id)
        return self.proc.returncode


def unpack(archive, bundle):
    """A runtime bundle (rootfs + config.json from the image config) from a docker-archive."""
    oci = bundle.parent / (bundle.name + "-oci")
    subprocess.run(["skopeo", "copy", "-q", f"docker-archive:{archive}", f"oci:{oci}:img"], check=True)
    subprocess.run(["umoci", "unpack", "--image", f"{oci}:img", str(bundle)], check=True, capture_output=True)
    return json.loads((bundle / "config.json").read_text())


def save(bundle, spec):
    (bundle / "config.json").write_text(json.dumps(spec))


def bind(spec, src, dst, ro=True):
    spec["mounts"].append({"destination": dst, "type": "bind", "source": str(src),
                           "options": ["rbind", "ro" if ro else "rw"]})


def no_namespace(spec, kind):
    spec["linux"]["namespaces"] = [n for n in spec["linux"]["namespaces"] if n["type"] != kind]


@pytest.fixture
def collector_container(images, tmp_path):
    """The collector image under crun, on this machine's network (its port on 127.0.0.1)."""
    out, _ = images
    data = tmp_path / "collector-data"
    data.mkdir()
    os.chown(data, 65532, 65532)
    creds = tmp_path / "creds"
    creds.mkdir()
    bundle = tmp_path / "collector-bundle"
    spec = unpack(out / f"edgetrace-collector-{VERSION}-amd64.docker.tar", bundle)
    no_namespace(spec, "network")
    spec["root"]["readonly"] = True
    spec["process"]["terminal"] = False
    bind(spec, data, "/var/lib/edgetrace", ro=False)
    # provision as README.md's Deploy on K3s does: node names on stdin, the Secret on stdout
    # (the image has no shell, cat or tar to fetch a file with)
    spec["process"]["args"] = ["/usr/local/bin/edgetrace-collector", "provision", "--from", "/dev/stdin",
                               "--db", "/var/lib/edgetrace/collector.db", "--k8s-secret", "-"]
    save(bundle, spec)
    r = crun("run", "--bundle", str(bundle), f"et-prov-{uuid.uuid4().hex[:8]}", input="gw-crun\nnode-b\n")
    assert r.returncode == 0, r.stdout + r.stderr
    secret = yaml.safe_load(r.stdout)
    assert sorted(secret["data"]) == ["gw-crun", "node-b"]
    (creds / "gw-crun").write_bytes(base64.b64decode(secret["data"]["gw-crun"]))
    port = udp_port()
    spec["process"]["args"] = ["/usr/local/bin/edgetrace-collector", "serve", "--db",
                               "/var/lib/edgetrace/collector.db", "--listen", f"127.0.0.1:{port}"]
    save(bundle, spec)
    c = Container(bundle, "collector", tmp_path / "collector.log")
    wait_for(c.pid, timeout=10)
    yield data / "collector.db", port, creds / "gw-crun"
    c.stop()


def go_container(tmp_path, name, port):
    """A real Go test service in its own crun container: own PID, network and mount namespaces,
    running as an unprivileged user as pods do (so reading its /proc entries takes SYS_PTRACE)."""
    bundle = tmp_path / f"{name}-bundle"
    (bundle / "rootfs").mkdir(parents=True)
    shutil.copy(TESTSVC / "1.23" / "range-unclosed", bundle / "rootfs" / name)
    subprocess.run(["crun", "spec"], cwd=bundle, check=True)
    spec = json.loads((bundle / "config.json").read_text())
    spec["process"]["terminal"] = False
    spec["process"]["args"] = [f"/{name}", "-listen", f"127.0.0.1:{port}", "-rate", "40"]
    spec["process"]["user"] = {"uid": 65534, "gid": 65534}
    spec["root"]["readonly"] = True
    save(bundle, spec)
    return Container(bundle, "svc", tmp_path / "svc.log")


def agent_container(out, tmp_path, cport, creds, caps, extra_conf=""):
    """The amd64 agent image as deploy/agent-daemonset.yaml runs it: hostPID, only `caps`, not
    privileged, no new privileges, read-only root, spool on a host directory, config and
    credentials mounted. The host network stands in for the pod network that reaches the
    collector's Service."""
    spool = tmp_path / "spool"
    spool.mkdir()
    conf = tmp_path / "agent.conf"
    conf.write_text(f"""[agent]
interval = 1s
deep_interval = 4s
leak_interval = 5s
discover = yes
log_level = info
[spool]
dir = /var/lib/edgetrace/spool
fsync = always
[uplink]
collector = coaps://127.0.0.1:{cport}
credentials = /etc/edgetrace/credentials
ack_timeout = 1s
{extra_conf}""")
    bundle = tmp_path / "agent-bundle"
    spec = unpack(out / f"edgetrace-agent-{VERSION}-amd64.docker.tar", bundle)
    no_namespace(spec, "pid")
    no_namespace(spec, "network")
    spec["process"]["terminal"] = False
    spec["process"]["capabilities"] = {k: caps for k in ("bounding", "effective", "permitted")}
    spec["process"]["noNewPrivileges"] = True
    spec["root"]["readonly"] = True
    bind(spec, spool, "/var/lib/edgetrace/spool", ro=False)
    bind(spec, conf, "/etc/edgetrace/agent.conf")
    bind(spec, creds, "/etc/edgetrace/credentials")
    save(bundle, spec)
    assert spec["process"]["user"]["uid"] == 0 and spec["process"]["args"][0] == "/usr/local/bin/edgetrace-agent"
    return Container(bundle, "agent", tmp_path / "agent.log")


def snapshots_of(db, prefix):
    return [s for s in query(db, "snapshots") if s["target"].startswith(prefix)]


def test_agent_image_under_crun_finds_a_pod_in_its_own_netns(images, collector_container, tmp_path):
    out, _ = images
    db, cport, creds = collector_container
    svc_name = "imgtest-" + uuid.uuid4().hex[:6]
    svc = go_container(tmp_path, svc_name, 6060)   # same port as anything on the host: own netns
    agent = None
    try:
        wait_for(svc.pid, timeout=10)
        agent = agent_container(out, tmp_path, cport, creds, CAPS)
        agent_pid = wait_for(agent.pid, timeout=10)
        status = open(f"/proc/{agent_pid}/status").read()
        eff = int([ln for ln in status.splitlines() if ln.startswith("CapEff:")][0].split()[1], 16)
        assert eff == (1 << 19) | (1 << 21) | (1 << 2), hex(eff)   # SYS_PTRACE, SYS_ADMIN, DAC_READ_SEARCH
        got = wait_for(lambda: len(snapshots_of(db, svc_name)) >= 3 and snapshots_of(db, svc_name),
                       timeout=60, step=1)
        assert got, (tmp_path / "agent.log").read_text()[-3000:]
        assert all(s["device"] == "gw-crun" for s in got)
        assert any(s["goroutines"] > 0 and s["rss_kb"] > 0 for s in got), got[:2]
        assert os.listdir(tmp_path / "spool")   # the spool lives on the host directory
    finally:
        rc = agent.stop() if agent else None
        svc.stop()
    assert rc == 0, (tmp_path / "agent.log").read_text()[-2000:]


@pytest.mark.parametrize("dropped", ["CAP_SYS_PTRACE", "CAP_SYS_ADMIN"])
def test_agent_image_without_a_capability_cannot_sample_the_pod(images, collector_container, go_service, tmp_path,
                                                                dropped):
    """Why the DaemonSet adds them: without SYS_PTRACE the pod's process (another user) stays
    invisible; without SYS_ADMIN the agent cannot enter its network namespace. A configured
    target on the host network is still sampled meanwhile."""
    out, _ = images
    db, cport, creds = collector_container
    svc_name = "imgtest-" + uuid.uuid4().hex[:6]
    svc = go_container(tmp_path, svc_name, 6060)
    control = go_service("basic", go="1.23")
    agent = None
    try:
        wait_for(svc.pid, timeout=10)
        caps = [c for c in CAPS if c != dropped]
        agent = agent_container(out, tmp_path, cport, creds, caps, f'[target "control"]\nurl = {control.url}\n')
        assert wait_for(lambda: len(snapshots_of(db, "control")) >= 4, timeout=60, step=1)
        assert snapshots_of(db, svc_name) == []
    finally:
        if agent:
            agent.stop()
        svc.stop()


def test_arm64_image_agent_under_qemu(images, collector_container, go_service, tmp_path):
    """The arm64 image's binary, under qemu-user, samples a Go service into the collector image."""
    _, layout = images
    db, cport, creds = collector_container
    index = json.loads(blob(layout, tagged(layout, f"docker.io/edgetrace/agent:{VERSION}")["digest"]))
    desc = [m for m in index["manifests"] if m["platform"]["architecture"] == "arm64"][0]
    data = layer_files(layout, json.loads(blob(layout, desc["digest"])))["usr/local/bin/edgetrace-agent"][1]
    binary = tmp_path / "edgetrace-agent-arm64"
    binary.write_bytes(data)
    binary.chmod(0o755)
    svc = go_service("range-unclosed", go="1.23", args=("-rate", "40"))
    conf = tmp_path / "agent.conf"
    conf.write_text(f"""[agent]
interval = 1s
discover = no
log_level = info
[spool]
dir = {tmp_path / "spool"}
[uplink]
collector = coaps://127.0.0.1:{cport}
credentials = {creds}
ack_timeout = 1s
[target "arm64-from-image"]
url = {svc.url}
""")
    log = open(tmp_path / "agent.log", "w")
    agent = subprocess.Popen(["qemu-aarch64-static", "-cpu", "cortex-a53", str(binary), "run", "--config", str(conf)],
                             stdout=log, stderr=log)
    try:
        got = wait_for(lambda: [s for s in query(db, "snapshots") if s["target"] == "arm64-from-image"],
                       timeout=60, step=1)
        assert got, (tmp_path / "agent.log").read_text()[-3000:]
        assert got[0]["board"] == "imx8mm" and got[0]["goroutines"] > 0
    finally:
        agent.terminate()
        agent.wait(timeout=30)


# ---------------------------------------------------------------- containerd (what K3s embeds)

@pytest.fixture(scope="module")
def containerd(tmp_path_factory):
    """Debian's containerd on a private root, state and socket (no CRI plugin: ctr only)."""
    if not shutil.which("containerd"):
        pytest.skip("containerd not installed (apt-get install containerd)")
    d = tmp_path_factory.mktemp("containerd")
    (d / "config.toml").write_text(f"""version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "{d}/sock"
[ttrpc]
  address = "{d}/sock.ttrpc"
""")
    p = subprocess.Popen(["containerd", "-c", str(d / "config.toml")], stdout=subprocess.DEVNULL,
                         stderr=open(d / "containerd.log", "w"))
    wait_for(lambda: (d / "sock").exists(), timeout=20)

    def ctr(*args, ns="k8s.io"):
        return subprocess.run(["ctr", "-a", str(d / "sock"), "-n", ns, *args], capture_output=True, text=True,
                              timeout=120)
    yield ctr
    p.terminate()
    p.wait(timeout=20)


def test_ctr_imports_both_tarballs_and_runs_the_agent(images, containerd, go_service):
    out, _ = images
    ref = f"docker.io/edgetrace/agent:{VERSION}"
    # the OCI layout: the multi-arch index under its full name, every platform imported
    r = containerd("images", "import", "--all-platforms", str(out / f"edgetrace-{VERSION}.oci.tar"), ns="oci")
    assert r.returncode == 0, r.stderr
    ls = containerd("images", "ls", ns="oci").stdout
    line = [ln for ln in ls.splitlines() if ln.startswith(ref + " ")][0]
    assert all(p in line for p in ("linux/amd64", "linux/arm64", "linux/arm/v7")), line
    assert f"docker.io/edgetrace/collector:{VERSION}" in ls
    # the docker-archive, into the namespace the kubelet uses (what `k3s ctr images import` does)
    r = containerd("images", "import", str(out / f"edgetrace-agent-{VERSION}-amd64.docker.tar"))
    assert r.returncode == 0, r.stderr
    svc = go_service("basic", go="1.23")
    r = containerd("run", "--rm", "--net-host", ref, f"et-ctr-{uuid.uuid4().hex[:8]}",
                   "/usr/local/bin/edgetrace-agent", "sample", svc.url, "--samples", "1")
    assert r.returncode == 0, r.stderr
    assert f"target      {svc.url}" in r.stdout and "samples     1 (1 ok)" in r.stdout, r.stdout
