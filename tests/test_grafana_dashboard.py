"""deploy/grafana/becomingone.json (issue 15): a provisioning-ready Grafana dashboard whose every
query (panels and template variables) names only metrics a real coordinator exports: scraped
from /metrics of a coordinator on 127.0.0.1 with a device that sent TELEMETRY, a WITNESS and a
rejected frame."""
import json
import os
import re

import yaml
from prometheus_client.parser import text_string_to_metric_families

from shared import protocol as P
from tests.http_helpers import Host, witness
from tests.test_coordinator import tel, wait

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GRAFANA = os.path.join(ROOT, "deploy", "grafana")
NAME = re.compile(r"\bbecomingone_[a-z0-9_]+")


def _exprs(dash):
    out = []
    for p in dash["panels"]:
        out += [t["expr"] for t in p.get("targets", [])]
    for v in dash["templating"]["list"]:
        q = v.get("query")
        if isinstance(q, dict):
            out.append(q["query"])
        elif v["type"] == "query":
            out.append(q)
    return out


def _exported(h):
    status, body, _ = h.request("/metrics", raw=True)
    assert status == 200
    names = set()
    for fam in text_string_to_metric_families(body.decode()):
        names.update(s.name for s in fam.samples)
    return names


def test_dashboard_is_provisioning_ready():
    with open(os.path.join(GRAFANA, "becomingone.json")) as f:
        dash = json.load(f)
    assert dash["uid"] and dash["title"] and dash["panels"] and dash["schemaVersion"] >= 36
    ids = [p["id"] for p in dash["panels"]]
    assert len(ids) == len(set(ids))
    for p in dash["panels"]:
        assert p["targets"] and p["datasource"]["uid"] == "${datasource}", p["title"]
    with open(os.path.join(GRAFANA, "provisioning", "dashboards", "becomingone.yaml")) as f:
        prov = yaml.safe_load(f)
    assert prov["apiVersion"] == 1 and prov["providers"][0]["type"] == "file"
    with open(os.path.join(GRAFANA, "provisioning", "datasources", "prometheus.yaml")) as f:
        ds = yaml.safe_load(f)
    assert ds["datasources"][0]["type"] == "prometheus"
    # lateness percentiles come from the histogram, in seconds
    assert any("histogram_quantile(0.99" in e and "becomingone_device_lateness_seconds_bucket" in e
               for e in _exprs(dash))


def test_every_query_names_an_exported_metric(tmp_path):
    with open(os.path.join(GRAFANA, "becomingone.json")) as f:
        dash = json.load(f)
    wanted = {m for e in _exprs(dash) for m in NAME.findall(e)}
    assert len(wanted) >= 20
    h = Host(tmp_path)
    try:
        dev = h.device(17, beats=30)
        dev.send(P.WITNESS, witness(1, P.DECISION_ALERT))
        dev.recv(P.ACK)
        bad = dev.frame(P.TELEMETRY, tel(31))
        dev.sock.sendto(bad[:-1] + bytes([bad[-1] ^ 0xFF]), h.addr)
        beat = [31]

        def complete():                 # the sync layer's per-device state needs a cycle
            for _ in range(10):
                beat[0] += 1
                dev.send(P.TELEMETRY, tel(beat[0]))
            return not (wanted - _exported(h))
        wait(complete, 20)
        missing = wanted - _exported(h)
        assert not missing, "the dashboard queries metrics the coordinator does not export: %s" \
            % sorted(missing)
    finally:
        h.stop()
