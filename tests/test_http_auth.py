"""HTTP server settings, token authentication, Host check, port in use, and the CLI flags."""
import http.client
import json
import os
import socket
import subprocess
import sys

import pytest

from becomingone.config import load_config
from becomingone.errors import UserError
from becomingone.http import ENV_HTTP, ENV_TOKEN, resolve_settings
from tests.http_helpers import Host

TOKEN = "correct-horse-battery-staple-42"
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_settings_order_and_the_token_rule(tmp_path):
    cfg = load_config()
    s = resolve_settings(cfg, environ={})
    assert (s.host, s.port, s.token) == ("127.0.0.1", 8000, None)
    assert resolve_settings(cfg, override=False, environ={}) is None
    assert resolve_settings(cfg, environ={ENV_HTTP: "off"}) is None
    assert resolve_settings(load_config(overrides={"http.enabled": False}), environ={}) is None
    s = resolve_settings(cfg, environ={ENV_HTTP: "127.0.0.2:0"})
    assert (s.host, s.port) == ("127.0.0.2", 0)
    s = resolve_settings(cfg, override="[::1]:9000", environ={ENV_HTTP: "off"})   # the flag wins
    assert (s.host, s.port) == ("::1", 9000)
    # any address but loopback needs a token: refused with a message saying how to fix it
    for where in ({"override": "0.0.0.0:8000"}, {"environ": {ENV_HTTP: "192.0.2.1:80"}}):
        kw = {"environ": {}, **where}
        with pytest.raises(UserError) as e:
            resolve_settings(cfg, **kw)
        assert "without a token" in str(e.value) and ENV_TOKEN in str(e.value)
    s = resolve_settings(cfg, override="0.0.0.0:8000", environ={ENV_TOKEN: TOKEN})
    assert s.token == TOKEN
    s = resolve_settings(load_config(overrides={"http.host": "0.0.0.0", "http.token": TOKEN}),
                         environ={})
    assert s.token == TOKEN
    with pytest.raises(UserError, match="at least 16"):
        resolve_settings(cfg, environ={ENV_TOKEN: "short"})
    with pytest.raises(UserError, match="HOST:PORT"):
        resolve_settings(cfg, override="8000", environ={})
    # token file: read, and refused when other users may read it
    f = tmp_path / "token"
    f.write_text(TOKEN + "\n")
    f.chmod(0o644)
    c2 = load_config(overrides={"http.token_file": str(f), "http.host": "0.0.0.0"})
    with pytest.raises(UserError, match="chmod 600"):
        resolve_settings(c2, environ={})
    f.chmod(0o600)
    assert resolve_settings(c2, environ={}).token == TOKEN


def _raw_get(url, path, headers):
    host, port = url[len("http://"):].rstrip("/").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request("GET", path, headers=headers)
    r = conn.getresponse()
    body = r.read()
    conn.close()
    return r.status, r.headers, body


def test_token_required_bearer_query_and_cookie(tmp_path):
    h = Host(tmp_path, **{"http.token": TOKEN})
    try:
        for path in ("/api/devices", "/metrics", "/openapi.json", "/api/events"):
            status, body, hdrs = h.request(path)
            assert status == 401, path
            assert hdrs["WWW-Authenticate"].startswith("Bearer")
        assert h.request("/api/devices", token="x" * 20)[0] == 401
        assert h.request("/api/devices", token=TOKEN)[0] == 200
        assert h.request("/api/devices?token=" + TOKEN)[0] == 200
        # the dashboard page: 401 explains ?token=; with it, a cookie and a redirect
        status, hdrs, body = _raw_get(h.url, "/", {})
        assert status == 401 and b"?token=" in body
        status, hdrs, _ = _raw_get(h.url, "/?token=" + TOKEN, {})
        assert status == 303 and hdrs["Location"] == "/"
        cookie = hdrs["Set-Cookie"].split(";")[0]
        assert "HttpOnly" in hdrs["Set-Cookie"] and "SameSite=Strict" in hdrs["Set-Cookie"]
        assert TOKEN not in cookie                                  # an HMAC of it, not the token
        status, hdrs, body = _raw_get(h.url, "/", {"Cookie": cookie})
        assert status == 200 and b"<title>BecomingONE dashboard</title>" in body
        assert "script-src 'self'" in hdrs["Content-Security-Policy"]
        assert _raw_get(h.url, "/api/snapshot", {"Cookie": cookie})[0] == 200
        assert _raw_get(h.url, "/api/snapshot", {"Cookie": cookie[:-2] + "00"})[0] == 401
    finally:
        h.stop()


def test_loopback_without_token_checks_the_host_header(tmp_path):
    h = Host(tmp_path)
    try:
        assert _raw_get(h.url, "/api/devices", {"Host": "localhost:8000"})[0] == 200
        assert _raw_get(h.url, "/api/devices", {"Host": "[::1]:8000"})[0] == 200
        status, _, body = _raw_get(h.url, "/api/devices", {"Host": "evil.example:8000"})
        assert status == 421 and b"not a loopback name" in body       # DNS rebinding refused
    finally:
        h.stop()


def test_port_in_use_is_a_clear_error(tmp_path):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    port = s.getsockname()[1]
    try:
        with pytest.raises(UserError) as e:
            Host(tmp_path, http="127.0.0.1:%d" % port)
        msg = str(e.value)
        assert "in use" in msg and "--http" in msg and "--no-http" in msg
        # nothing was left open: the data folder's control socket is gone, a second start works
        assert not os.path.exists(tmp_path / "data" / "control.sock")
        h = Host(tmp_path)
        h.stop()
    finally:
        s.close()


def _run(args, env_extra=None, timeout=60):
    env = dict(os.environ)
    env.pop(ENV_HTTP, None)
    env.update(env_extra or {})
    return subprocess.run([sys.executable, "-m", "becomingone.cli"] + args, cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=timeout)


def test_run_prints_the_dashboard_and_puts_it_in_the_ready_json(tmp_path):
    r = _run(["run", "--data", str(tmp_path / "d"), "--link", "udp://127.0.0.1:0",
              "--http", "127.0.0.1:0", "--duration", "1"])
    assert r.returncode == 0, r.stderr
    line = [l for l in r.stdout.splitlines() if l.startswith("becomingone: dashboard ")]
    assert line and line[0].startswith("becomingone: dashboard http://127.0.0.1:")
    url = line[0].split()[-1]
    assert not url.endswith(":0/")                      # the real port, not 0
    ready = json.loads([l for l in r.stdout.splitlines() if l.startswith("ready ")][0][6:])
    assert ready["http"] == url
    r = _run(["run", "--data", str(tmp_path / "d"), "--link", "udp://127.0.0.1:0", "--no-http",
              "--duration", "0.5"])
    assert r.returncode == 0 and "becomingone: dashboard" not in r.stdout
    assert '"http": null' in r.stdout
    r = _run(["run", "--data", str(tmp_path / "d"), "--link", "udp://127.0.0.1:0",
              "--http", "0.0.0.0:0", "--duration", "0.5"], env_extra={ENV_TOKEN: ""})
    assert r.returncode == 2 and r.stderr.startswith("becomingone: ") and "token" in r.stderr
    assert "Traceback" not in r.stderr
    # bound to every address: the printed URL names this host, not 0.0.0.0
    r = _run(["run", "--data", str(tmp_path / "d"), "--link", "udp://127.0.0.1:0",
              "--http", "0.0.0.0:0", "--duration", "0.5"], env_extra={ENV_TOKEN: "t" * 32})
    import socket
    assert r.returncode == 0, r.stderr
    assert "becomingone: dashboard http://%s:" % socket.gethostname() in r.stdout, r.stdout


def test_emulate_prints_the_dashboard(tmp_path):
    r = _run(["emulate", "--runtime", "cpython", "--devices", "1", "--duration", "2",
              "--http", "127.0.0.1:0", "--no-live", "--data", str(tmp_path / "emu")], timeout=120)
    lines = [l for l in r.stdout.splitlines() if l.startswith("becomingone: dashboard http://127.0.0.1:")]
    assert len(lines) == 1 and not lines[0].endswith(":0/"), r.stdout + r.stderr
