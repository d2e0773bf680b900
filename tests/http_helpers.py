"""Shared by tests/test_http_*.py: a real Coordinator (UDP link, HTTP on a free loopback port)
fed by a fake device speaking the real protocol, and a small HTTP client."""
import json
import socket
import threading
import urllib.error
import urllib.request

from becomingone.config import load_config
from becomingone.cell import Cell
from shared import protocol as P
from tests.test_coordinator import HELLO, FakeDevice, tel, wait


class Host:
    def __init__(self, tmp_path, http="127.0.0.1:0", **over):
        o = {"data_dir": str(tmp_path / "data"), "security.intrinsic": False,
             "ledger.pulse_summary_every": 0, "http.sse_interval": 0.1,
             # the fake devices are keyless: ledgered only when unknown devices are accepted
             "admission.unknown_devices": "accept"}
        o.update(over)
        self.cfg = load_config(overrides=o)
        self.cell = Cell(self.cfg, links=["udp://127.0.0.1:0"], http=http).start()
        self.c = self.cell.coordinator
        self.thread = threading.Thread(target=self.c.run, daemon=True)
        self.thread.start()
        host, port = self.c.links[0].local_url[6:].rsplit(":", 1)
        self.addr = (host, int(port))
        self.url = self.cell.http.url if self.cell.http is not None else None
        self.token = None

    def device(self, device_id=17, beats=60, telemetry=tel):
        """A fake device: HELLO, then `beats` TELEMETRY records; returns it once integrated."""
        dev = FakeDevice(self.addr, device_id=device_id)
        dev.send(P.HELLO, HELLO)
        for b in range(1, beats + 1):
            dev.send(P.TELEMETRY, telemetry(b))
        assert wait(lambda: self.c.call(lambda: (s := self.c.sessions.get(device_id)) is not None
                                        and s.last_telemetry is not None
                                        and s.last_telemetry["beat"] == beats), 10)
        return dev

    def request(self, path, method="GET", body=None, headers=None, token=None, raw=False):
        """(status, parsed JSON or bytes, headers)."""
        h = dict(headers or {})
        tok = token if token is not None else self.token
        if tok:
            h["Authorization"] = "Bearer " + tok
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            h.setdefault("Content-Type", "application/json")
        req = urllib.request.Request(self.url + path.lstrip("/"), data=data, headers=h, method=method)
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                status, content, hdrs = r.status, r.read(), r.headers
        except urllib.error.HTTPError as e:
            status, content, hdrs = e.code, e.read(), e.headers
        if not raw and (hdrs.get("Content-Type") or "").startswith("application/json"):
            return status, json.loads(content), hdrs
        return status, content, hdrs

    def get(self, path, **kw):
        status, body, _ = self.request(path, **kw)
        assert status == 200, (path, status, body)
        return body

    def stop(self):
        self.c.stop()
        self.thread.join(15)
        assert not self.thread.is_alive()


def witness(wid, decision, kind=1, beat=40, threat=42000):
    return {"witness_id": wid, "kind": kind, "beat": beat, "decision": decision, "threat": threat,
            "coherence": 30000, "value": -1, "pow_bits": 0, "nonce": 0}


def raw_http(addr, data, timeout=10):
    """Raw bytes on a fresh connection to addr (host, port): (status, body bytes); status 0 when
    the server answered nothing."""
    s = socket.create_connection(addr, timeout=timeout)
    try:
        s.sendall(data)
        buf = b""
        while True:
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            buf += chunk
            head, sep, body = buf.partition(b"\r\n\r\n")
            if sep and b"content-length:" in head.lower():
                n = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(body) >= n:
                    break
    finally:
        s.close()
    head, _, body = buf.partition(b"\r\n\r\n")
    return (int(head.split()[1]) if head else 0), body
