"""/metrics: scraped and parsed with prometheus_client's own parser; values match the
coordinator's status at scrape time."""
import pytest
from prometheus_client.parser import text_string_to_metric_families

from shared import protocol as P
from tests.http_helpers import Host, witness
from tests.test_coordinator import tel


def _scrape(h):
    status, body, hdrs = h.request("/metrics", raw=True)
    assert status == 200 and hdrs["Content-Type"].startswith("text/plain")
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_metrics_parse_and_match_the_status(tmp_path):
    h = Host(tmp_path)
    try:
        def alarmed(b):
            r = tel(b)
            r.update(decision_state=P.DECISION_ALERT, lateness_us=250, threat=49152, coherence=32768)
            return r
        dev = h.device(17, beats=20, telemetry=alarmed)
        dev.send(P.WITNESS, witness(1, P.DECISION_ALERT))
        dev.recv(P.ACK)
        bad = dev.frame(P.TELEMETRY, tel(21))
        # a corrupted frame is refused as "crc"
        dev.sock.sendto(bad[:-1] + bytes([bad[-1] ^ 0xFF]), h.addr)
        h.c.ledger.flush(5)
        import time
        for _ in range(100):
            if h.c.status()["frames_rejected"].get("crc"):
                break
            time.sleep(0.02)
        m = _scrape(h)
        st = h.c.status()
        assert m[("becomingone_frames_received_total", ())] == st["frames_received"]
        assert m[("becomingone_frames_accepted_total", ())] == st["frames_accepted"]
        assert m[("becomingone_frames_sent_total", ())] == st["frames_sent"] > 0
        assert m[("becomingone_frames_rejected_total", (("reason", "crc"),))] == 1
        dev17 = (("device", "17"),)
        # lateness: a histogram in seconds over every accepted beat (20 beats of 250 µs)
        assert m[("becomingone_device_lateness_seconds_count", dev17)] == 20
        assert m[("becomingone_device_lateness_seconds_sum", dev17)] == pytest.approx(20 * 250e-6)
        assert m[("becomingone_device_lateness_seconds_bucket", (("device", "17"), ("le", "0.00025")))] == 20
        assert m[("becomingone_device_lateness_seconds_bucket", (("device", "17"), ("le", "0.0001")))] == 0
        assert m[("becomingone_device_frames_lost_total", dev17)] == 0
        info = [k for k in m if k[0] == "becomingone_build_info"]
        assert len(info) == 1 and dict(info[0][1])["version"]
        assert m[("becomingone_device_coherence", dev17)] == 0.5
        assert m[("becomingone_device_threat", dev17)] == 0.75
        assert m[("becomingone_device_decision", (("decision", "ALERT"), ("device", "17")))] == 1
        assert m[("becomingone_device_decision", (("decision", "NOOP"), ("device", "17")))] == 0
        assert m[("becomingone_device_online", dev17)] == 1
        assert m[("becomingone_master_coherence", (("device", "17"), ("window", "10s")))] >= 0
        assert 0 < m[("becomingone_master_window_fill", (("device", "17"), ("window", "10s")))] <= 1
        assert m[("becomingone_ledger_decision_records_total", (("decision", "ALERT"),))] == 1
        assert m[("becomingone_ledger_entries", ())] == h.c.ledger.size
        assert m[("becomingone_witness_total", (("outcome", "committed"),))] == 1
        assert m[("becomingone_mesh_enabled", ())] == 0
        assert ("becomingone_sync_collapses_total", ()) in m
        assert m.get(("becomingone_http_requests_total", (("code", "200"),)), 0) + 1 == \
            _scrape(h)[("becomingone_http_requests_total", (("code", "200"),))]
        # counters grow between scrapes (read at scrape time, nothing cached)
        for b in range(21, 31):
            dev.send(P.TELEMETRY, tel(b))
        for _ in range(200):
            if _scrape(h)[("becomingone_frames_accepted_total", ())] > m[("becomingone_frames_accepted_total", ())]:
                break
            time.sleep(0.02)
        else:
            raise AssertionError("frames_accepted did not grow")
    finally:
        h.stop()


class _MeshStatus:
    """What becomingone/mesh/bridge.py's MeshBridge shows in status()["mesh"] (its shape, fixed
    values): the mesh itself needs TLS material and peers, tested in tests/test_mesh_*.py."""

    def status(self):
        return {"enabled": True, "running": True, "cell": "cell-a", "backend": "embedded",
                "alive": 2, "t_global": [0.6, 0.8],
                "members": {"cell-a": {"state": "alive", "incarnation": 1, "addr": None},
                            "cell-b": {"state": "alive", "incarnation": 3, "addr": None},
                            "cell-c": {"state": "suspect", "incarnation": 2, "addr": None}}}

    def tick(self, now):
        pass

    def stop(self):
        pass


def test_mesh_state_in_metrics_api_and_snapshot(tmp_path):
    h = Host(tmp_path)
    try:
        mesh = _MeshStatus()              # wired as the composition root wires the real one
        h.c.call(lambda: h.c.attach("mesh", lambda: None, tick=mesh.tick, status=mesh.status))
        m = _scrape(h)
        assert m[("becomingone_mesh_enabled", ())] == 1
        assert m[("becomingone_mesh_peers", (("state", "alive"),))] == 2
        assert m[("becomingone_mesh_peers", (("state", "suspect"),))] == 1
        assert abs(m[("becomingone_mesh_t_global_magnitude", ())] - 1.0) < 1e-9
        mesh = h.get("/api/mesh")
        assert mesh["cell"] == "cell-a" and set(mesh["members"]) == {"cell-a", "cell-b", "cell-c"}
        import time
        time.sleep(0.15)                      # past http.sse_interval: a fresh snapshot
        assert h.get("/api/snapshot")["mesh"]["t_global"] == [0.6, 0.8]
    finally:
        h.stop()
