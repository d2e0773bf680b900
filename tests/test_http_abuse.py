"""The HTTP server under abuse (issue 13, item 9), against a real coordinator on 127.0.0.1:
64 slow connections (one byte every 5 s) do not starve legitimate requests and are closed at
the header deadline; malformed requests and hostile JSON bodies get 400 with a clear message
(never 500); a wrong type is refused, not truncated; slow and oversize bodies are refused."""
import json
import socket
import threading
import time

import pytest

from becomingone.http import server as srv
from tests.http_helpers import Host, raw_http


@pytest.fixture
def host(tmp_path):
    h = Host(tmp_path)
    h.device(17, beats=5)
    yield h
    h.stop()


def _addr(h):
    host, port = h.url[len("http://"):].rstrip("/").rsplit(":", 1)
    return host, int(port)


def _raw(h, data, timeout=10):
    """Send raw bytes on a fresh connection; (status, parsed JSON body or text)."""
    status, body = raw_http(_addr(h), data, timeout)
    try:
        return status, json.loads(body)
    except ValueError:
        return status, body.decode(errors="replace")


def _post(path, body, ctype=b"application/json", extra=b""):
    return (b"POST %s HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: %s\r\nContent-Length: %d\r\n%s\r\n"
            % (path.encode(), ctype, len(body), extra)) + body


def test_slow_connections_do_not_starve_legitimate_requests(host):
    addr = _addr(host)
    slow = []
    for _ in range(64):
        s = socket.create_connection(addr, timeout=30)
        s.sendall(b"G")
        slow.append(s)
    stop = threading.Event()

    def drip():                        # one byte every 5 s on every slow connection
        while not stop.wait(5.0):
            for s in slow:
                try:
                    s.sendall(b"E")
                except OSError:
                    pass
    t = threading.Thread(target=drip, daemon=True)
    t.start()
    try:
        t0 = time.monotonic()
        lat = []
        for _ in range(45):
            a = time.monotonic()
            status, body, _ = host.request("/api/devices")
            lat.append(time.monotonic() - a)
            assert status == 200 and body["devices"][0]["device_id"] == 17
            time.sleep(0.1)
        assert max(lat) < 2.0, lat
        # the slow connections never completed a request head: closed at the header deadline
        left = srv.HEADER_TIMEOUT + 3 - (time.monotonic() - t0)
        if left > 0:
            time.sleep(left)
        closed = 0
        for s in slow:
            s.settimeout(0.5)
            try:
                closed += s.recv(100) == b""
            except OSError:
                closed += 1
        assert closed == 64
        assert host.cell.http.stats()["requests"].get("head_timeout", 0) >= 64
    finally:
        stop.set()
        for s in slow:
            s.close()


def test_malformed_requests_and_hostile_json_get_400(host):
    # Content-Length that is not a number
    status, body = _raw(host, b"POST /api/devices/17/clear HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              b"Content-Type: application/json\r\nContent-Length: abc\r\n\r\n{}")
    assert status == 400 and "Content-Length" in body["error"], body
    # JSON nested 30,000 deep (60 KB: under the body limit)
    deep = b"[" * 30000 + b"]" * 30000
    status, body = _raw(host, _post("/api/devices/17/goto", b'{"version": ' + deep + b"}"))
    assert status == 400 and "deep" in body["error"], body
    # a number JSON cannot hold in a float
    status, body = _raw(host, _post("/api/devices/17/goto", b'{"version": 1e400}'))
    assert status == 400 and "1e400" in body["error"] and "finite" in body["error"], body
    status, body = _raw(host, _post("/api/devices/17/goto", b'{"version": NaN}'))
    assert status == 400 and "NaN" in body["error"], body
    # a wrong type is refused, never truncated: the difficulty stays what it was
    before = host.get("/api/devices/17/config")["state"]["pow_bits"]
    status, body = _raw(host, _post("/api/devices/17/pow", b'{"bits": 3.5}'))
    assert status == 400 and "bits must be an integer" in body["error"], body
    status, body = _raw(host, _post("/api/devices/17/pow", b'{"bits": true}'))
    assert status == 400 and "bits must be an integer" in body["error"], body
    status, body = _raw(host, _post("/api/devices/17/pow", b'{"bits": 99}'))
    assert status == 400 and "out of range" in body["error"], body
    assert host.get("/api/devices/17/config")["state"]["pow_bits"] == before
    status, body = _raw(host, _post("/api/devices/17/goto", b'{"version": 1, "x": 2}'))
    assert status == 400 and "unknown field 'x'" in body["error"], body
    # a request line and headers over the limit
    status, body = _raw(host, b"GET /api/devices HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: "
                              + b"a" * (srv.MAX_HEAD + 10) + b"\r\n\r\n")
    assert status == 431 and "at most" in body["error"], body
    # the server is still fine, and nothing above was a 500
    assert host.request("/api/devices")[0] == 200
    assert "500" not in host.cell.http.stats()["requests"]


def test_slow_and_oversize_bodies(host, monkeypatch):
    monkeypatch.setattr(srv, "BODY_TIMEOUT", 1.0)
    status, body = _raw(host, b"POST /api/devices/17/clear HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                              b"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{")
    assert status == 408 and "did not arrive" in body["error"], body
    status, body = _raw(host, _post("/api/devices/17/clear", b" " * (srv.MAX_BODY + 1)))
    assert status == 413, body


def test_probes_need_no_token(tmp_path):
    h = Host(tmp_path, **{"http.token": "correct-horse-battery-staple-42"})
    try:
        status, body, _ = h.request("/healthz")
        assert status == 200 and body["status"] == "ok" and body["processing_loop"] is True
        status, body, _ = h.request("/readyz")
        assert status == 200 and body["status"] == "ready", body
        assert body["checks"] == {"ledger_writable": True, "running": True, "links_open": True}
        assert h.request("/api/devices")[0] == 401           # everything else needs it
        # a link closed: not ready, naming it; still alive
        h.c.call(lambda: h.c.links[0].close())
        status, body, _ = h.request("/readyz")
        assert status == 503 and body["checks"]["links_open"] is False and body["closed_links"]
        assert h.request("/healthz")[0] == 200
    finally:
        h.stop()


def test_control_socket_refuses_a_fractional_difficulty_too(host):
    from becomingone.errors import UserError
    with pytest.raises(UserError, match="must be an integer"):
        host.c.call(lambda: host.c.operator.set_pow_bits(17, 3.5))
