"""/api/events: the server-sent event stream delivers `snapshot` events that follow the
coordinator's state, shared by every client."""
import http.client
import json
import threading

from jsonschema import Draft202012Validator

from shared import protocol as P
from tests.http_helpers import Host
from tests.test_coordinator import tel


def _events(url, n, out, path="/api/events"):
    host, port = url[len("http://"):].rstrip("/").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", "%s?max_events=%d" % (path, n))
    r = conn.getresponse()
    out["status"], out["type"] = r.status, r.headers["Content-Type"]
    raw = r.read().decode()          # the server closes after n events
    conn.close()
    evs = []
    for block in raw.split("\n\n"):
        fields = dict(line.split(": ", 1) for line in block.split("\n") if ": " in line)
        if fields.get("event") == "snapshot":
            evs.append((int(fields["id"]), fields["data"]))
    out["events"] = evs
    return evs


def test_stream_delivers_snapshots_that_change_and_are_shared(tmp_path):
    h = Host(tmp_path)
    try:
        dev = h.device(17, beats=10)
        beat = [10]
        stop = threading.Event()

        def feed():                   # the device keeps beating while we listen
            while not stop.wait(0.02):
                beat[0] += 1
                dev.send(P.TELEMETRY, tel(beat[0]))
        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        outs = [{} for _ in range(3)]
        readers = [threading.Thread(target=_events, args=(h.url, 6, o)) for o in outs]
        for t in readers:
            t.start()
        for t in readers:
            t.join(30)
        stop.set()
        feeder.join(5)
        doc = h.get("/openapi.json")
        v = Draft202012Validator({"$ref": "#/components/schemas/Snapshot",
                                  "components": doc["components"]})
        by_seq = {}
        for o in outs:
            assert o["status"] == 200 and o["type"].startswith("text/event-stream")
            evs = o["events"]
            assert len(evs) == 6
            seqs = [s for s, _ in evs]
            assert seqs == sorted(set(seqs))                 # strictly increasing, no repeats
            for s, data in evs:
                snap = json.loads(data)
                assert snap["seq"] == s
                assert not list(v.iter_errors(snap))
                assert by_seq.setdefault(s, data) == data     # one snapshot per seq for everyone
            beats = [json.loads(d)["devices"][0]["telemetry"]["beat"] for _, d in evs]
            assert beats[-1] > beats[0], beats               # values follow the device
        # the clients overlapped in time, so they were served the same snapshots
        common = set.intersection(*({s for s, _ in o["events"]} for o in outs))
        assert common, [[s for s, _ in o["events"]] for o in outs]
    finally:
        h.stop()
