"""Alerts once for the fleet: two collector nodes on one PostgreSQL database (pgcluster.py), each with the
same real Alertmanager (Debian prometheus-alertmanager, as in test_alerts.py) configured. Only the node whose
database session holds the leader's advisory lock evaluates, keeps the outbox and POSTs; when it dies
(kill -9) the other takes the lock over and goes on from the same alert_state/alert_outbox rows.

Alertmanager itself merges identical alerts, so "once" is checked where a second sender would show: the
collectors' own counters (fired and sent, summed over the nodes), beside what Alertmanager and its webhook got.

Run: make collector agent host-deps && make run-tests PYTEST_ARGS="tests/integration/test_alerts_pg.py -x"
"""
import json
import signal
import time
import urllib.request

from conftest import wait_for
from test_alerts import PUBLIC, am, hook, send  # noqa: F401 (am, hook: fixtures)
from test_collector_pg import db, nodes, pg, pg_cluster, provision  # noqa: F401 (fixtures)

DEVICE = "gw-pgalert"


def counter(node, name):
    text = urllib.request.urlopen(f"http://127.0.0.1:{node.http}/metrics", timeout=10).read().decode()
    return int(next(line.split()[-1] for line in text.splitlines() if line.startswith(name + " ")))


def am_alerts(am):
    with urllib.request.urlopen(f"{am.url}/api/v2/alerts?filter=device%3D%22{DEVICE}%22", timeout=5) as r:
        return json.load(r)


def test_two_nodes_send_each_alert_once_and_fail_over(pg, db, nodes, am, hook, tmp_path):
    name, url = db
    conf = tmp_path / "alerts.conf"
    # resend 1s: a node that is not the leader would show in its own re-sends within seconds
    conf.write_text(f"[collector]\nalertmanager_url = {am.url}\nalert_resend_interval = 1s\nsilent_after = 0\n"
                    f"public_url = {PUBLIC}/\n")
    a = nodes(url, "a", ["-c", str(conf)])
    b = nodes(url, "b", ["-c", str(conf)])
    a.creds = b.creds = provision(url, DEVICE, tmp_path, a.port)

    send(a, tmp_path, finding=True)
    (fired,) = hook.wait("firing", device=DEVICE)
    assert fired["labels"]["alertname"] == "EdgetraceGoroutineLeak"
    time.sleep(4)  # both nodes evaluate every second: a second sender would have fired or re-sent by now
    assert len([x for x in hook.alerts(device=DEVICE) if x["status"] == "firing"]) == 1
    live = am_alerts(am)
    assert len(live) == 1 and live[0]["status"]["state"] == "active", live
    fired_n = [counter(n, "edgetrace_alerts_fired_total") for n in (a, b)]
    sent_n = [counter(n, "edgetrace_alerts_sent_total") for n in (a, b)]
    assert sorted(fired_n) == [0, 1], fired_n
    # one node sent the change and its re-sends, the other nothing at all
    lead = fired_n.index(1)
    assert sent_n[lead] >= 2 and sent_n[1 - lead] == 0, (fired_n, sent_n)
    assert pg.sql(name, "SELECT count(*) FROM alert_outbox") == [["0"]]

    # The leader dies; the finding clears through the other node, which takes the lead over and resolves it.
    leader, other = (a, b) if lead == 0 else (b, a)
    leader.stop(signal.SIGKILL)
    send(other, tmp_path, finding=False)
    (res,) = hook.wait("resolved", device=DEVICE)
    assert res["labels"] == fired["labels"] and res["startsAt"] == fired["startsAt"]
    assert counter(other, "edgetrace_alerts_resolved_total") == 1
    assert counter(other, "edgetrace_alerts_fired_total") == 0, "the fired alert was taken over, not fired again"
    log = other.log.read_text()
    assert "another node sends the fleet's alerts" in log and "this node sends the fleet's alerts" in log, log
    assert wait_for(lambda: pg.sql(name, "SELECT count(*) FROM alert_outbox") == [["0"]], timeout=10)
