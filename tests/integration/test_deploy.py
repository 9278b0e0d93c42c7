"""deploy/ (kubectl apply -k): offline checks of the manifests.

Debian ships no Kubernetes schema validator (kubeconform, kubeval), so this parses every
manifest (python3-yaml) and checks the fields the deployment depends on, against the parts
they must agree with: the image build (names, tags, entrypoint), the agent's measured memory,
the capabilities the crun test runs the image with, the collector's ports and /healthz.
When kubectl is on the machine, `kubectl kustomize` must render the set too."""
import os
import re
import shutil
import signal
import subprocess
import time

import pytest
import yaml

from conftest import AGENT, COLLECTOR, ROOT, wait_for
from test_image import CAPS, VERSION

DEPLOY = ROOT / "deploy"


def docs():
    out = {}
    for p in sorted(DEPLOY.glob("*.yaml")):
        if p.name == "kustomization.yaml":
            continue
        for d in yaml.safe_load_all(p.read_text()):
            if d:
                out[(d["kind"], d["metadata"]["name"])] = d
    return out


def mebibytes(q):
    n, unit = re.fullmatch(r"(\d+)(Mi|Gi)", q).groups()
    return int(n) * (1024 if unit == "Gi" else 1)


@pytest.fixture(scope="module")
def m():
    return docs()


def test_kustomization_lists_every_manifest(m):
    k = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    files = sorted(p.name for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(k["resources"]) == files
    assert k["namespace"] == "edgetrace"
    assert {i["name"]: i["newTag"] for i in k["images"]} == {"edgetrace/agent": VERSION,
                                                            "edgetrace/collector": VERSION}


def agent_pod(m):
    return m[("DaemonSet", "edgetrace-agent")]["spec"]["template"]["spec"]


def test_daemonset_sees_the_node_with_the_fewest_capabilities(m):
    ds = m[("DaemonSet", "edgetrace-agent")]
    pod = agent_pod(m)
    assert ds["spec"]["selector"]["matchLabels"].items() <= ds["spec"]["template"]["metadata"]["labels"].items()
    assert pod["hostPID"] is True and not pod.get("hostNetwork")
    (c,) = pod["containers"]
    assert c["image"] == f"edgetrace/agent:{VERSION}"
    assert c["args"][:3] == ["run", "--config", "/etc/edgetrace/agent.conf"]   # the image's Cmd
    assert c["args"][3:] == ["--device-id", "$(NODE_NAME)"]   # expanded by Kubernetes from env
    sc = c["securityContext"]
    assert sc["privileged"] is False and sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    assert sorted("CAP_" + x for x in sc["capabilities"]["add"]) == sorted(CAPS)
    assert sc["readOnlyRootFilesystem"] is True
    tol = {t["key"] for t in pod["tolerations"]}
    assert {"node-role.kubernetes.io/control-plane", "node-role.kubernetes.io/edge"} <= tol


def test_daemonset_identity_credentials_spool_and_discovery_mounts(m):
    pod = agent_pod(m)
    (c,) = pod["containers"]
    env = {e["name"]: e for e in c["env"]}
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    mounts = {v["mountPath"]: v for v in c["volumeMounts"]}
    vols = {v["name"]: v for v in pod["volumes"]}
    # The whole Secret as a directory, keyed by node name: no subPath (never updated in place, and
    # a missing key would keep the container from starting), optional (the agent spools before
    # the Secret exists), not readable by others.
    cred = mounts["/etc/edgetrace/creds"]
    assert "subPath" not in cred and "subPathExpr" not in cred and cred["readOnly"] is True
    secret = vols[cred["name"]]["secret"]
    assert secret["secretName"] == "edgetrace-credentials"
    assert secret["defaultMode"] == 0o400 and secret["optional"] is True
    assert not any(v.get("subPath") or v.get("subPathExpr") for v in c["volumeMounts"]
                   if v["name"] == cred["name"])
    spool = mounts["/var/lib/edgetrace/spool"]
    assert vols[spool["name"]]["hostPath"]["path"] == "/var/lib/edgetrace/spool"
    conf = mounts["/etc/edgetrace/agent.conf"]
    cm = m[("ConfigMap", vols[conf["name"]]["configMap"]["name"])]
    text = cm["data"][conf["subPath"]]
    assert "dir = /var/lib/edgetrace/spool" in text and "credentials_dir = /etc/edgetrace/creds" in text
    assert "device_id" not in text   # one ConfigMap for every node: the id comes from --device-id
    assert "discover = yes" in text
    # the collector address names the CoAP Service in the kustomization's namespace
    host, port = re.search(r"coaps://([^:]+):(\d+)", text).groups()
    svc = m[("Service", host.split(".")[0])]
    assert host.split(".")[1] == "edgetrace" and int(port) == svc["spec"]["ports"][0]["port"]
    # containerd's task bundles (discover_pod.c reads their config.json for pod names + annotations)
    for path in ("/run/k3s/containerd/io.containerd.runtime.v2.task", "/run/containerd/io.containerd.runtime.v2.task"):
        assert mounts[path]["readOnly"] is True and vols[mounts[path]["name"]]["hostPath"]["path"] == path
        assert any(path in f.read_text() for f in (ROOT / "firmware/src").glob("discover*.c"))


def test_agent_resources_match_its_measured_memory(m, tmp_path):
    """The request covers the agent's measured high-water RSS with discovery on; the limit
    leaves it 4x headroom for deep samples."""
    (c,) = agent_pod(m)["containers"]
    req, lim = c["resources"]["requests"], c["resources"]["limits"]
    conf = tmp_path / "agent.conf"
    conf.write_text(f"[agent]\ninterval = 1s\ndiscover = yes\nlog_level = warn\n[spool]\ndir = {tmp_path}/spool\n")
    p = subprocess.Popen([str(AGENT), "run", "--config", str(conf)], stderr=subprocess.DEVNULL)
    try:
        time.sleep(4)
        hwm_kb = int(re.search(r"VmHWM:\s+(\d+)", open(f"/proc/{p.pid}/status").read()).group(1))
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=20)
    assert hwm_kb <= mebibytes(req["memory"]) * 1024, hwm_kb
    assert mebibytes(lim["memory"]) * 1024 >= 4 * hwm_kb
    assert lim["cpu"] == "200m"   # the systemd unit's CPUQuota=20%
    assert "CPUQuota=20%" in (ROOT / "tools/flash/edgetrace-agent.service").read_text()


def test_collector_statefulset_services_and_probes(m):
    sts = m[("StatefulSet", "edgetrace-collector")]
    pod = sts["spec"]["template"]["spec"]
    labels = sts["spec"]["template"]["metadata"]["labels"]
    assert sts["spec"]["replicas"] == 1   # SQLite: one writer
    (c,) = pod["containers"]
    assert c["image"] == f"edgetrace/collector:{VERSION}"
    assert pod["securityContext"]["runAsUser"] == 65532 and pod["securityContext"]["runAsNonRoot"]
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert {v["name"]: v["mountPath"] for v in c["volumeMounts"]}[claim["metadata"]["name"]] == "/var/lib/edgetrace"
    assert "/var/lib/edgetrace/collector.db" in c["args"]
    ports = {p["name"]: p for p in c["ports"]}
    assert (ports["coaps"]["containerPort"], ports["coaps"]["protocol"]) == (5684, "UDP")
    assert (ports["http"]["containerPort"], ports["http"]["protocol"]) == (8080, "TCP")
    assert "0.0.0.0:5684" in c["args"] and "0.0.0.0:8080" in c["args"]
    for probe in ("readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"] == {"path": "/healthz", "port": "http"}
    for name, proto in (("edgetrace-coap", "UDP"), ("edgetrace-http", "TCP")):
        svc = m[("Service", name)]
        assert svc["spec"]["selector"].items() <= labels.items()
        (p,) = svc["spec"]["ports"]
        assert p["protocol"] == proto and p["targetPort"] in ports


@pytest.mark.skipif(not shutil.which("kubectl"), reason="kubectl not installed")
def test_kustomize_renders_into_the_namespace():
    out = subprocess.run(["kubectl", "kustomize", str(DEPLOY)], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    rendered = [d for d in yaml.safe_load_all(out.stdout) if d]
    assert len(rendered) == 6
    for d in rendered:
        if d["kind"] != "Namespace":
            assert d["metadata"]["namespace"] == "edgetrace", d["metadata"]["name"]
        assert d["metadata"]["labels"]["app.kubernetes.io/part-of"] == "edgetrace"


def test_agent_takes_its_node_key_from_the_secret_directory_without_a_restart(m, tmp_path):
    """The DaemonSet's container as the kubelet runs it: the ConfigMap's agent.conf, its args with
    $(NODE_NAME) expanded, and the Secret (as `provision --from --k8s-secret` writes it) mounted
    as a directory. The pod starts before the node has a key, samples and spools, and takes the
    key when it is added to the Secret. (With the old subPathExpr mount the container could not
    start until the key existed, and the agent refused to start without its file.)"""
    import base64
    pod = agent_pod(m)
    (c,) = pod["containers"]
    mounts = {v["name"]: v["mountPath"] for v in c["volumeMounts"]}
    cm_name = next(v for v in pod["volumes"] if "configMap" in v)["configMap"]["name"]
    text = m[("ConfigMap", cm_name)]["data"]["agent.conf"]
    creds_dir, spool = tmp_path / "creds", tmp_path / "spool"
    creds_dir.mkdir()
    text = text.replace(mounts["credentials"], str(creds_dir)).replace(mounts["spool"], str(spool))
    conf = tmp_path / "agent.conf"
    conf.write_text(text)
    args = [a.replace("$(NODE_NAME)", "node-b") for a in c["args"]]
    args[args.index("--config") + 1] = str(conf)
    nodes = tmp_path / "nodes"
    nodes.write_text("node-a\nnode-b\n")
    r = subprocess.run([str(COLLECTOR), "provision", "--from", str(nodes), "--db",
                        str(tmp_path / "c.db"), "--k8s-secret", "-"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    data = {k: base64.b64decode(v).decode() for k, v in yaml.safe_load(r.stdout)["data"].items()}
    assert set(data) == {"node-a", "node-b"} and "device_id = node-b" in data["node-b"]
    (creds_dir / "node-a").write_text(data["node-a"])   # another node's key only
    log = tmp_path / "agent.log"
    p = subprocess.Popen([str(AGENT), *args], stdout=open(log, "w"), stderr=subprocess.STDOUT)
    try:
        assert wait_for(lambda: "no credentials at" in log.read_text(), timeout=10), log.read_text()
        assert f"no credentials at {creds_dir}/node-b: sampling and spooling" in log.read_text()
        time.sleep(2.5)
        assert p.poll() is None and log.read_text().count("no credentials at") == 1
        (creds_dir / "node-b").write_text(data["node-b"])
        os.chmod(creds_dir / "node-b", 0o400)
        assert wait_for(lambda: f"credentials {creds_dir}/node-b: loaded for node-b" in log.read_text(),
                        timeout=10), log.read_text()
        assert p.poll() is None
    finally:
        p.send_signal(signal.SIGTERM)
        p.wait(timeout=20)
