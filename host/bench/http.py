"""`becomingone bench http [--json]`: the host's HTTP API (host/http) against a bare HTTP server,
and the API on its server (uvicorn + Starlette) against the same API on the hand-written
standard-library server it replaced (host/bench/stdlib_http.py), in the same run.

Rows
  api-devices-stdlib  GET /api/devices served by the former ThreadingHTTPServer (the "before");
                 api-devices has ratio_vs_stdlib (after / before)
  footprint      resident memory a coordinator process adds by starting each HTTP server and
                 answering 200 requests (`rss_mb_uvicorn`, `rss_mb_stdlib`, measured in two fresh
                 processes), and the ratio
  bare-http      the standard library's ThreadingHTTPServer (HTTP/1.1 keep-alive) answering
                 the same bytes our GET /api/devices returned, from memory: the peer, i.e. the
                 ceiling of the server stack our API runs on
  api-devices    GET /api/devices on a real coordinator (this process) with --devices devices
                 (HELLO + a few TELEMETRY each over loopback UDP): one Coordinator.call per
                 request, session summaries, JSON
  api-snapshot   GET /api/snapshot (the dashboard snapshot: rebuilt at most every sse_interval)
  metrics        one /metrics scrape (ms, median of 20) and its size
  snapshot-build one dashboard snapshot built from scratch (ms, median of 20), and the part of
                 it spent in the processing thread (`collect`: how long the ingest loop is held)
  api-devices-hold  the part of one GET /api/devices spent in the processing thread (copying
                 the session summaries; the rest is done in the HTTP thread)
Columns: req_per_s (sequential requests on `connections` keep-alive connections from a
separate client process), p50_ms, p99_ms, ratio_vs_bare, bytes.
"""
import http.client
import json
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from becomingone.cell import Cell
from becomingone.config import load_config
from shared import protocol as P


def add_arguments(p):
    p.add_argument("--devices", type=int, default=100, help="devices known to the coordinator (100)")
    p.add_argument("--requests", type=int, default=None, help="requests per run (default 3000, quick 400)")


def _client(url, n, conns):
    """Separate process: n GET requests spread over `conns` keep-alive connections."""
    host, rest = url[len("http://"):].split("/", 1)
    h, port = host.rsplit(":", 1)
    path = "/" + rest
    lat = []
    lock = threading.Lock()

    def worker(k):
        c = http.client.HTTPConnection(h, int(port), timeout=30)
        mine = []
        for _ in range(k):
            t0 = time.perf_counter()
            c.request("GET", path)
            r = c.getresponse()
            r.read()
            if r.status != 200:
                raise SystemExit("HTTP %d" % r.status)
            mine.append(time.perf_counter() - t0)
        c.close()
        with lock:
            lat.extend(mine)
    per = [n // conns + (1 if i < n % conns else 0) for i in range(conns)]
    threads = [threading.Thread(target=worker, args=(k,)) for k in per]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    dt = time.perf_counter() - t0
    lat.sort()
    print(json.dumps({"req_per_s": round(n / dt, 1), "p50_ms": round(lat[len(lat) // 2] * 1e3, 3),
                      "p99_ms": round(lat[int(len(lat) * 0.99)] * 1e3, 3)}), flush=True)


def _measure(url, n, conns):
    r = subprocess.run([sys.executable, "-m", "becomingone.bench.http", "--client", url, str(n), str(conns)],
                       capture_output=True, text=True, timeout=600)
    try:
        return json.loads(r.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return {"error": (r.stderr or r.stdout).strip()[-200:]}


def _bare_server(body):
    class H(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def setup(self):
            super().setup()
            self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    class S(ThreadingHTTPServer):
        daemon_threads = True
    s = S(("127.0.0.1", 0), H)
    threading.Thread(target=s.serve_forever, daemon=True).start()
    return s


def _feed(port, devices):
    hello = {"board": "emu", "fw_major": 0, "fw_minor": 1, "fw_patch": 0, "capabilities": 0,
             "fs_hz": 1000, "period_us": 4211, "phase_step": 2147, "lag_samples": 10,
             "adc_bits": 12, "sum_shift": 0, "pow_bits": 16, "telemetry_every": 1,
             "spb_max": 32, "period_min_us": 500, "reset_cause": 1, "boot_flags": 0,
             "kairos_decim": 4, "counts_per_unit_q4": 2048, "nonce": bytes(16)}
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for d in range(1, devices + 1):
        s.sendto(P.encode(P.HELLO, hello, d, 0x1000 + d, 0), ("127.0.0.1", port))
        for b in range(1, 6):
            tel = {"beat": b, "period_us": 4211, "lateness_us": 3, "dT_re": 1000, "dT_im": -50,
                   "dE0": 4000, "dEL": 3900, "n_samples": 4, "coherence": 60000, "pid_error": 0,
                   "pid_output": 32768, "threat": 100, "o_weight": 22938, "decision_state": 0,
                   "level": -980, "kurt": 406, "crest": 480, "anoms": 0}
            s.sendto(P.encode(P.TELEMETRY, tel, d, 0x1000 + d, b, 0, b * 4211), ("127.0.0.1", port))
    s.close()


def _median_ms(fn, k=20):
    ts = []
    for _ in range(k):
        t0 = time.perf_counter()
        fn()
        ts.append((time.perf_counter() - t0) * 1e3)
    return round(statistics.median(ts), 3)


def collect(args):
    quick = getattr(args, "quick", False)
    n = args.requests or (400 if quick else 3000)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(overrides={"data_dir": tmp})
        cell = Cell(cfg, links=["udp://127.0.0.1:0"], control=False, http="127.0.0.1:0").start()
        c, server = cell.coordinator, cell.http
        th = threading.Thread(target=c.run, daemon=True)
        th.start()
        try:
            _feed(c.links[0].port, args.devices)
            end = time.time() + 10
            while len(c.sessions.current) < args.devices and time.time() < end:
                time.sleep(0.05)
            url = server.url
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            conn.request("GET", "/api/devices")
            body = conn.getresponse().read()
            bare = _bare_server(body)
            bare_url = "http://127.0.0.1:%d/api/devices" % bare.server_address[1]
            from becomingone.bench.stdlib_http import StdlibHttpServer
            from becomingone.http.settings import HttpSettings
            old = StdlibHttpServer(cell.view, HttpSettings("127.0.0.1", 0, None, 0.5)).start()
            old_url = old.url
            for conns in (1, 4):
                b = _measure(bare_url, n, conns)
                rows.append(dict(name="bare-http", connections=conns, bytes=len(body), **b))
                before = _measure(old_url + "api/devices", n, conns)
                if "req_per_s" in before and "req_per_s" in b:
                    before["ratio_vs_bare"] = round(before["req_per_s"] / b["req_per_s"], 3)
                rows.append(dict(name="api-devices-stdlib", connections=conns, bytes=len(body),
                                 devices=len(c.sessions.current), **before))
                o = _measure(url + "api/devices", n, conns)
                if "req_per_s" in o and "req_per_s" in b:
                    o["ratio_vs_bare"] = round(o["req_per_s"] / b["req_per_s"], 3)
                if "req_per_s" in o and "req_per_s" in before:
                    o["ratio_vs_stdlib"] = round(o["req_per_s"] / before["req_per_s"], 3)
                rows.append(dict(name="api-devices", connections=conns, bytes=len(body),
                                 devices=len(c.sessions.current), **o))
            old.close()
            rows.append(dict(name="api-snapshot", connections=1, **_measure(url + "api/snapshot", n, 1)))
            bare.shutdown()

            conn.close()            # idle past the server's keep-alive timeout by now
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)

            def scrape():
                conn.request("GET", "/metrics")
                scrape.size = len(conn.getresponse().read())
            ms = _median_ms(scrape)
            rows.append(dict(name="metrics", scrape_ms=ms, bytes=scrape.size))
            hub = server.api.hub
            build_ms = _median_ms(hub._build)
            op = c.operator
            hold_ms = _median_ms(lambda: c.call(lambda: (time.perf_counter(), op.dashboard(),
                                                         time.perf_counter())))
            inner = []
            for _ in range(20):
                t0, _st, t1 = c.call(lambda: (time.perf_counter(), op.dashboard(), time.perf_counter()))
                inner.append((t1 - t0) * 1e3)
            rows.append(dict(name="snapshot-build", build_ms=build_ms, call_ms=hold_ms,
                             processing_thread_ms=round(statistics.median(inner), 3),
                             devices=len(c.sessions.current)))
            listing = []
            for _ in range(20):
                t0, _x, t1 = c.call(lambda: (time.perf_counter(), op.devices(), time.perf_counter()))
                listing.append((t1 - t0) * 1e3)
            rows.append(dict(name="api-devices-hold", devices=len(c.sessions.current),
                             processing_thread_ms=round(statistics.median(listing), 3)))
            conn.close()
        finally:
            c.stop()
            th.join(30)
    fp = {k: _footprint(k, args.devices) for k in ("stdlib", "uvicorn")}
    row = {"name": "footprint", "devices": args.devices}
    for k, v in fp.items():
        row["rss_mb_" + k] = v
    if all(isinstance(v, float) for v in fp.values()):
        row["ratio_uvicorn_vs_stdlib"] = round(fp["uvicorn"] / fp["stdlib"], 3) if fp["stdlib"] else None
    rows.append(row)
    return rows


def _rss_mb():
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return 0.0


def _footprint_child(kind, devices):
    """Separate process: a coordinator with `devices` devices and no HTTP; then the RSS it
    adds by importing and starting one HTTP server and answering 200 GET /api/devices."""
    import gc
    with tempfile.TemporaryDirectory() as tmp:
        cfg = load_config(overrides={"data_dir": tmp})
        cell = Cell(cfg, links=["udp://127.0.0.1:0"], control=False, http=False).start()
        c = cell.coordinator
        th = threading.Thread(target=c.run, daemon=True)
        th.start()
        try:
            _feed(c.links[0].port, devices)
            end = time.time() + 10
            while len(c.sessions.current) < devices and time.time() < end:
                time.sleep(0.05)
            c.call(lambda: c.operator.devices())
            gc.collect()
            time.sleep(0.2)
            base = _rss_mb()
            from becomingone.http.settings import HttpSettings
            if kind == "stdlib":
                from becomingone.bench.stdlib_http import StdlibHttpServer as S
            else:
                from becomingone.http.server import HttpServer as S
            server = S(cell.view, HttpSettings("127.0.0.1", 0, None, 0.5)).start()
            conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            for _ in range(200):
                conn.request("GET", "/api/devices")
                r = conn.getresponse()
                r.read()
            conn.close()
            gc.collect()
            print(json.dumps({"rss_mb": round(_rss_mb() - base, 2)}), flush=True)
            server.close()
        finally:
            c.stop()
            th.join(30)


def _footprint(kind, devices):
    r = subprocess.run([sys.executable, "-m", "becomingone.bench.http", "--footprint", kind,
                        str(devices)], capture_output=True, text=True, timeout=300)
    try:
        return float(json.loads(r.stdout.strip().splitlines()[-1])["rss_mb"])
    except (ValueError, IndexError, KeyError):
        return (r.stderr or r.stdout).strip()[-200:]


if __name__ == "__main__":
    if sys.argv[1] == "--client":
        _client(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]))
    elif sys.argv[1] == "--footprint":
        _footprint_child(sys.argv[2], int(sys.argv[3]))
