"""HTTP API against a real coordinator fed by a fake device over loopback UDP."""
import http.client
import time
from urllib.parse import urlsplit

import pytest

from becomingone.ledger.merkle import verify_inclusion
from shared import protocol as P
from tests.http_helpers import Host, witness
from tests.test_coordinator import tel, wait


@pytest.fixture
def host(tmp_path):
    h = Host(tmp_path)
    yield h
    h.stop()


def test_devices_windows_sync_and_status(host):
    host.device(17, beats=60)
    devs = host.get("/api/devices")["devices"]
    assert [d["device_id"] for d in devs] == [17]
    d = devs[0]
    assert d["online"] and d["frames"] == 61 and d["hello"]["board"] == "emu"
    t = d["telemetry"]             # tel(): coherence 60000 Q16, pid_output 32768, threat 100
    assert t["beat"] == 60 and t["decision"] == "NOOP" and not t["quarantined"]
    assert t["coherence"] == pytest.approx(60000 / 65536) and t["pid_output"] == pytest.approx(0.5)
    assert t["lateness_us"] == 3 and t["period_us"] == 4211

    one = host.get("/api/devices/17")
    assert one["device_id"] == 17 and one["config"]["pow_bits"] == 12
    # the decoded state: windows with their unit, fill; the Master's full windows beside
    assert [w["window"] for w in one["windows"]] == ["10s", "60s", "600s", "3600s"]
    assert [w["window_s"] for w in one["windows"]] == [10.0, 60.0, 600.0, 3600.0]
    assert 0 < one["windows"][0]["fill"] <= 1
    assert [w["window"] for w in one["master_windows"]] == [10.0, 60.0, 600.0, 3600.0]
    # 60 beats of 4 samples at 1 kHz hold 0.24 s: the 10 s window is 2.4 % full, so it does not
    # exist yet (C and T_hat null, here and in the decoded state)
    mw = one["master_windows"][0]
    assert mw["beats"] == 60 and mw["T_hat"] is None and mw["C"] is None and mw["ready"] is False
    assert mw["fill"] == pytest.approx(0.024) and one["windows"][0]["fill"] == pytest.approx(0.024)
    assert one["windows"][0]["C"] is None
    # physical values, no raw fixed point, ISO 8601 times
    assert "last_telemetry" not in d and d["coherence"] == pytest.approx(60000 / 65536)
    assert d["decision"] == "NOOP" and d["quarantined"] is False and d["lateness_s"] == 3e-6
    assert d["last_seen"].endswith("Z") and d["last_seen"][10] == "T"
    w = host.get("/api/devices/17/windows?seconds=0.1")["windows"]
    assert len(w) == 1 and w[0]["window"] == 0.1 and 0 < w[0]["beats"] < 60

    st = host.get("/api/status")
    s17 = st["sessions"]["17"]               # decoded: no raw wire values in the API
    assert "last_telemetry" not in s17 and s17["coherence"] == pytest.approx(60000 / 65536)
    assert st["frames_accepted"] >= 61 and st["http"]["url"] == host.url
    sync = host.get("/api/sync")
    assert sync["enabled"] is True and sync["I_c"] == 0.95
    assert host.get("/api/mesh")["enabled"] is False       # sync.mesh_enabled: false


def test_errors_are_clear(host):
    host.device(17, beats=5)
    status, body, _ = host.request("/api/devices/99")
    assert status == 404 and "device 99 has not been seen" in body["error"]
    status, body, _ = host.request("/api/devices/abc")
    assert status == 400 and "device id must be an integer" in body["error"]
    status, body, _ = host.request("/api/devices/17/windows?seconds=x")
    assert status == 400 and "seconds" in body["error"]
    status, body, _ = host.request("/api/nothing")
    assert status == 404 and "no such" in body["error"]
    status, body, _ = host.request("/api/devices/17/clear")          # GET on a POST route
    assert status == 405
    # POST needs a JSON content type (a cross-site form cannot send one)
    status, body, _ = host.request("/api/devices/17/clear", method="POST", body=b"{}",
                                   headers={"Content-Type": "text/plain"})
    assert status == 415 and "application/json" in body["error"]
    status, body, _ = host.request("/api/devices/17/config", method="POST", body={"nope": 1})
    assert status == 400 and "changes" in body["error"]
    status, body, _ = host.request("/api/devices/17/config", method="POST",
                                   body={"changes": {"no_such_key": 1}})
    assert status == 400 and "no_such_key" in body["error"]
    status, body, _ = host.request("/api/ledger/entries?limit=0")
    assert status == 400 and "limit" in body["error"]


def test_clear_sends_the_frame_and_writes_the_ledger(host):
    dev = host.device(17, beats=5)
    status, body, _ = host.request("/api/devices/17/clear", method="POST", body={})
    assert status == 200 and body == {"device_id": 17, "sent": True}
    f = dev.recv(P.CLEAR)
    assert f.fields["reason"] == P.CLEAR_OPERATOR
    c = host.c
    c.ledger.flush(5)
    actions = [e.data for e in c.ledger.entries() if e.data["kind"] == "action"]
    assert {"action": "clear", "device": 17, "sent": True}.items() <= actions[-1].items()
    ev = host.get("/api/decisions?device=17")["events"]
    assert ev[-1]["event"] == "clear" and ev[-1]["device"] == 17


def test_config_undo_and_model(host):
    dev = host.device(17, beats=5)
    r = host.get("/api/devices/17/config")
    assert r["version"] == 0
    status, r, _ = host.request("/api/devices/17/config", method="POST",
                                body={"changes": {"telemetry_every": 4}, "note": "from the API"})
    assert status == 200 and r["op"] == "apply" and r["changes"] == {"telemetry_every": 4}
    assert dev.recv(P.CONFIG).fields["config_version"] >= 1
    status, r, _ = host.request("/api/devices/17/undo", method="POST", body={})
    assert status == 200 and r["version"] == 0
    status, r, _ = host.request("/api/model", method="POST", body={"device": "all", "w": 0.1, "b": 0})
    assert status == 200 and r["sent_to"] == [17]
    assert dev.recv(P.MODEL).fields["w_anoms"] == pytest.approx(0.1)   # the seed form w, b
    status, r, _ = host.request("/api/model", method="POST",
                                body={"device": 17, "bias": 3.0, "w_level": 3.1, "w_kurt": 2.8})
    assert status == 200 and r["sent_to"] == [17]
    m = dev.recv(P.MODEL).fields
    assert m["w_level"] == pytest.approx(3.1) and m["w_crest"] == 0.0
    status, r, _ = host.request("/api/model", method="POST", body={"device": "all", "w": "x", "b": 0})
    assert status == 400 and "w must be a number" in r["error"]


def test_decision_timeline_and_ledger_proofs(host):
    dev = host.device(17, beats=5)
    dev.send(P.WITNESS, witness(1, P.DECISION_ALERT, beat=3))
    dev.recv(P.ACK)
    dev.send(P.WITNESS, witness(2, P.DECISION_QUARANTINE, beat=4))
    dev.recv(P.ACK)
    ev = host.get("/api/decisions")["events"]
    assert [(e["device"], e["decision"]) for e in ev] == [(17, "ALERT"), (17, "QUARANTINE")]
    assert host.get("/api/decisions")["counts"] == {"ALERT": 1, "QUARANTINE": 1}
    led = host.get("/api/ledger")
    assert led["size"] >= 3 and led["checkpoint"] is None and led["public_key"] is None
    page = host.get("/api/ledger/entries?start=0&limit=2")
    assert [e["index"] for e in page["entries"]] == [0, 1]
    idx = ev[-1]["index"]
    got = host.get("/api/ledger/entries/%d" % idx)
    assert got["entry"]["data"]["decision"] == "QUARANTINE"
    pr = got["proof"]
    assert verify_inclusion(pr["index"], pr["tree_size"], bytes.fromhex(pr["leaf_hash"]),
                            [bytes.fromhex(h) for h in pr["path"]], bytes.fromhex(pr["root"]))
    assert pr["root"] == host.c.ledger.root(pr["tree_size"]).hex()
    status, body, _ = host.request("/api/ledger/entries/%d" % (led["size"] + 50))
    assert status == 404 and "no entry" in body["error"]
    assert host.request("/api/ledger/checkpoint")[0] == 404
    host.c.call(host.c.ledger.checkpoint)
    cp = host.get("/api/ledger/checkpoint")
    assert cp["size"] == host.c.ledger.size and cp["note"].startswith(cp["origin"])
    led = host.get("/api/ledger")
    assert led["checkpoint"] == cp and "BEGIN PUBLIC KEY" in led["public_key"]
    assert host.get("/api/ledger/cosignatures") == {"cosignatures": [], "count": 0}
    host.c.call(host.c.ledger.add_cosignature, cp["size"], "w.example/1", "\u2014 w.example/1 AAAA", 7)
    co = host.get("/api/ledger/cosignatures")
    assert co["count"] == 1 and co["cosignatures"][0]["name"] == "w.example/1"


def test_memory_queries(host):
    dev = host.device(17, beats=30)
    # snapshots are taken on the coordinator's tick (memory.snapshot_interval 1 s): keep beating
    beat = [30]

    def more():
        for _ in range(20):
            beat[0] += 1
            dev.send(P.TELEMETRY, tel(beat[0]))
        # a snapshot's rows and its signature may land in two commits: wait for both
        return all(host.get("/api/memory/tables/%s?device=17&limit=1" % t)["rows"]
                   for t in ("snapshots", "signatures"))
    assert wait(more, 15)
    rows = host.get("/api/memory/tables/snapshots?device=17&limit=5")["rows"]
    # a few seconds of beats: the windows are still filling (no T_hat, C), their fill is there
    assert rows[0]["device_id"] == 17 and rows[0]["T_hat"] is None and rows[0]["c"] is None
    assert 0 < rows[0]["fill"] < 0.9
    rec = host.get("/api/memory/reconstruct?device=17")
    assert rec["device_id"] == 17 and rec["windows"]
    sim = host.get("/api/memory/similar?device=17&top=3")
    assert isinstance(sim["results"], list)
    status, body, _ = host.request("/api/memory/tables/nope")
    assert status == 404 and "phase_snapshots" in body["error"]
    status, body, _ = host.request("/api/memory/tables/witness?layer=bad&since=yesterday")
    assert status == 400 and "bad time" in body["error"]


def test_dashboard_files_are_package_data():
    """Every file the dashboard serves is matched by pyproject's package-data globs (a fresh
    `pip install` of the repository carries them: checked by building a wheel of a clone)."""
    import fnmatch
    import os
    import tomllib
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    with open(os.path.join(root, "pyproject.toml"), "rb") as f:
        globs = tomllib.load(f)["tool"]["setuptools"]["package-data"]["becomingone.http"]
    static = os.path.join(root, "host", "http", "static")
    files = sorted(os.listdir(static))
    assert {"index.html", "app.js", "style.css"} <= set(files)
    for name in files:
        assert any(fnmatch.fnmatch("static/" + name, g) for g in globs), name


def test_keep_alive_responses_are_not_held_back_by_nagle(host):
    # the listener is made by hand (proto 0), so asyncio never set TCP_NODELAY on its
    # connections: every response on a kept-alive connection waited for the client's delayed
    # ACK, ~40 ms (p50 44 ms for /healthz; with TCP_NODELAY ~1 ms). 20 requests on one connection.
    u = urlsplit(host.url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
    took = []
    try:
        for _ in range(21):
            t0 = time.perf_counter()
            conn.request("GET", "/healthz")
            r = conn.getresponse()
            r.read()
            took.append(time.perf_counter() - t0)
    finally:
        conn.close()
    assert r.status == 200
    took = sorted(took[1:])
    assert took[len(took) // 2] < 0.02, ["%.1f ms" % (t * 1000) for t in took]
