"""The coordinator's former HTTP server, kept only as the "before" of `becomingone bench http`
(the API now runs on uvicorn + Starlette: host/http/server.py): the standard library's
ThreadingHTTPServer in its own threads, HTTP/1.1 keep-alive, 64 connection slots (a thread
each), no header or body deadline, so 64 slow clients hold every slot (issue 13).

Security: with a token every request needs it (Authorization: Bearer TOKEN, or the cookie a
browser gets by opening /?token=TOKEN once, or ?token= on any URL); without a token (loopback
only) the Host header must name a loopback address (DNS rebinding). POST needs
Content-Type: application/json, which a cross-site form cannot send without a CORS preflight
(never granted), so a web page cannot make the browser CLEAR a device.
"""
import hashlib
import hmac
import json
import logging
import mimetypes
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlsplit

from becomingone.errors import UserError
from becomingone.http.api import Api, match_route
from becomingone.http.responses import ApiError, Raw
from becomingone.http.settings import is_loopback

__all__ = ["StdlibHttpServer"]

COOKIE = "becomingone_session"
MAX_CONNECTIONS = 64          # concurrent connections (a thread each); more get 503
MAX_STREAMS = 16              # concurrent event streams (dashboards)
MAX_BODY = 64 * 1024
IDLE_TIMEOUT = 15.0           # seconds a keep-alive connection may sit idle
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
LOG = logging.getLogger("becomingone.http")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def __init__(self, addr, handler, owner):
        self.owner = owner
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        super().__init__(addr, handler)

    def process_request(self, request, client_address):
        if not self.slots.acquire(blocking=False):
            try:
                request.sendall(b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n"
                                b"Connection: close\r\nRetry-After: 1\r\n\r\n")
            except OSError:
                pass
            self.owner.count("503")
            self.shutdown_request(request)
            return
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class _Server6(_Server):
    address_family = socket.AF_INET6


class Handler(BaseHTTPRequestHandler):
    """One HTTP connection (stdlib BaseHTTPRequestHandler): authentication, the Host check,
    routing to the Api, static files and the event stream."""
    protocol_version = "HTTP/1.1"
    server_version = "becomingone"
    sys_version = ""
    timeout = IDLE_TIMEOUT

    def setup(self):
        super().setup()
        # headers and body are two writes: without this, Nagle + delayed ACK stall each small
        # keep-alive response by ~40 ms
        self.request.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def log_message(self, fmt, *args):          # requests are counted, not logged
        LOG.debug("%s " + fmt, self.address_string(), *args)

    def do_GET(self):
        self._dispatch("GET")

    def do_HEAD(self):
        self._dispatch("HEAD")

    def do_POST(self):
        self._dispatch("POST")

    def do_PUT(self):
        self._dispatch("PUT")

    def do_DELETE(self):
        self._dispatch("DELETE")

    # ------------------------------------------------------------------ dispatch
    def _dispatch(self, method):
        owner = self.server.owner
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        path = url.path
        try:
            if not self._host_ok(owner):
                raise ApiError(421, "Host header %r is not a loopback name; open the dashboard at "
                                    "%s" % (self.headers.get("Host"), owner.url))
            if not self._authorized(owner, query):
                return self._unauthorized(owner, path)
            if owner.settings.token and query.get("token") and method in ("GET", "HEAD") \
                    and not path.startswith("/api/"):
                # a browser opened ?token=...: keep it in a cookie, drop it from the address bar
                rest = {k: v for k, v in query.items() if k != "token"}
                return self._send(303, b"", "text/plain", extra={
                    "Location": path + ("?" + urlencode(rest) if rest else ""),
                    "Set-Cookie": "%s=%s; Path=/; HttpOnly; SameSite=Strict"
                                  % (COOKIE, owner.cookie_value)})
            route, params = match_route(method if method != "HEAD" else "GET", path)
            if route is None:
                if params == "method":
                    raise ApiError(405, "%s is not allowed on %s" % (method, path))
                return self._static(path, method)
            body = None
            if method == "POST":
                body = self._json_body()
            if route.stream:
                return self._stream(owner, route, query)
            result = owner.api.handle(route, params, query, body)
            if isinstance(result, Raw):
                return self._send(result.status, result.body, result.content_type,
                                  head=method == "HEAD")
            return self._send(200, owner.api.dumps(result), "application/json",
                              head=method == "HEAD")
        except ApiError as e:
            self._send(e.status, json.dumps({"error": e.message}).encode(), "application/json",
                       extra={"Allow": e.allow} if e.allow else None)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as e:             # never let a request kill the server; counted
            LOG.exception("HTTP %s %s failed", method, path)
            self._send(500, json.dumps({"error": "internal error: %s: %s"
                                        % (type(e).__name__, e)}).encode(), "application/json")

    def _host_ok(self, owner):
        if owner.settings.token:
            return True
        host = (self.headers.get("Host") or "").strip()
        if not host:
            return True                      # HTTP/1.0 clients
        if host.startswith("["):
            name = host[1:host.find("]")] if "]" in host else host
        else:
            name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return is_loopback(name) or name == owner.settings.host

    def _authorized(self, owner, query):
        token = owner.settings.token
        if not token:
            return True
        auth = self.headers.get("Authorization") or ""
        if auth[:7].lower() == "bearer " and hmac.compare_digest(auth[7:].strip().encode(),
                                                                  token.encode()):
            return True
        q = query.get("token")
        if q and hmac.compare_digest(q.encode(), token.encode()):
            return True
        for part in (self.headers.get("Cookie") or "").split(";"):
            k, _, v = part.strip().partition("=")
            if k == COOKIE and hmac.compare_digest(v.encode(), owner.cookie_value.encode()):
                return True
        return False

    def _unauthorized(self, owner, path):
        owner.count("401")
        if path in ("/", "/index.html"):
            page = ("<!doctype html><meta charset=utf-8><title>BecomingONE: token needed</title>"
                    "<p>This dashboard needs its token. Open <code>%s?token=YOUR_TOKEN</code> once "
                    "(the browser then keeps a cookie), or send <code>Authorization: Bearer "
                    "YOUR_TOKEN</code>.</p>" % owner.url).encode()
            return self._send(401, page, "text/html; charset=utf-8",
                              extra={"WWW-Authenticate": 'Bearer realm="becomingone"'}, count=False)
        return self._send(401, json.dumps({"error": "this server needs a token: send "
                                           "Authorization: Bearer TOKEN"}).encode(),
                          "application/json", extra={"WWW-Authenticate": 'Bearer realm="becomingone"'},
                          count=False)

    def _json_body(self):
        ctype = (self.headers.get("Content-Type") or "").split(";")[0].strip().lower()
        n = int(self.headers.get("Content-Length") or 0)
        if n > MAX_BODY:
            self.close_connection = True
            raise ApiError(413, "request body of %d bytes is over the limit of %d" % (n, MAX_BODY))
        raw = self.rfile.read(n) if n > 0 else b""
        if ctype != "application/json":
            raise ApiError(415, "POST needs Content-Type: application/json (got %r)" % (ctype or None,))
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError as e:
            raise ApiError(400, "the request body is not valid JSON: %s" % e) from None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        return body

    def _static(self, path, method):
        if method not in ("GET", "HEAD"):
            raise ApiError(404, "no such endpoint: %s %s" % (method, path))
        name = "index.html" if path in ("/", "/index.html") else \
            path[len("/static/"):] if path.startswith("/static/") else None
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise ApiError(404, "no such endpoint: %s %s (see /openapi.json)" % (method, path))
        full = os.path.join(STATIC, name)
        try:
            with open(full, "rb") as f:
                data = f.read()
        except OSError:
            raise ApiError(404, "no such file: %s" % path) from None
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith("javascript"):
            ctype += "; charset=utf-8"
        return self._send(200, data, ctype, head=method == "HEAD",
                          extra={"Content-Security-Policy": CSP})

    def _send(self, status, body, ctype, head=False, extra=None, count=True):
        if count:
            self.server.owner.count(str(status))
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("X-Frame-Options", "DENY")
        self.send_header("Referrer-Policy", "no-referrer")
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        if not head and body:
            self.wfile.write(body)

    # ------------------------------------------------------------------ event stream
    def _stream(self, owner, route, query):
        if not owner.stream_slots.acquire(blocking=False):
            raise ApiError(503, "too many live clients (at most %d)" % MAX_STREAMS)
        try:
            owner.count("200")
            self.close_connection = True
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-store")
            self.send_header("X-Content-Type-Options", "nosniff")
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"retry: 2000\n\n")
            self.wfile.flush()
            hub = owner.api.hub
            last, idle = -1, time.monotonic()
            limit = float(query.get("max_events") or 0) or None
            sent = 0
            while not owner.stopping.is_set():
                snap = hub.get()
                if snap.seq != last:
                    self.wfile.write(snap.sse)
                    self.wfile.flush()
                    last, idle = snap.seq, time.monotonic()
                    sent += 1
                    if limit is not None and sent >= limit:
                        break
                elif time.monotonic() - idle > 15:
                    self.wfile.write(b": keep-alive\n\n")
                    self.wfile.flush()
                    idle = time.monotonic()
                owner.stopping.wait(max(0.02, snap.built + hub.interval - time.monotonic()))
        except (BrokenPipeError, ConnectionResetError, socket.timeout, OSError):
            pass
        except Exception:                 # headers are out: end the stream (the client retries)
            LOG.exception("event stream ended by an error")
        finally:
            owner.stream_slots.release()


class StdlibHttpServer:
    """The HTTP API, dashboard and /metrics of one coordinator, reached through its narrow view
    (becomingone/coordinator/view.py CoordinatorView). Binds at construction (so a port in use
    is a clear error before anything else starts: UserError naming the fix); start() serves in a
    thread; close() stops serving and closes the socket."""

    def __init__(self, view, settings):
        self.settings = settings
        self.view = view
        self.stopping = threading.Event()
        self.stream_slots = threading.BoundedSemaphore(MAX_STREAMS)
        self.requests = {}
        self._lock = threading.Lock()
        self.cookie_value = hmac.new((settings.token or "").encode(), b"becomingone dashboard",
                                     hashlib.sha256).hexdigest() if settings.token else ""
        cls = _Server6 if ":" in settings.host else _Server
        try:
            self.httpd = cls((settings.host, settings.port), Handler, self)
        except OSError as e:
            if e.errno in (98, 48):          # EADDRINUSE (Linux, BSD)
                raise UserError(
                    "HTTP port %s:%d is in use (another coordinator, or another program): choose "
                    "another with --http HOST:PORT (127.0.0.1:0 picks a free one) or set "
                    "http.port, or switch the server off with --no-http"
                    % (settings.host, settings.port)) from None
            raise UserError("the HTTP server cannot listen on %s:%d: %s"
                            % (settings.host, settings.port, e.strerror or e)) from None
        host, port = self.httpd.server_address[:2]
        self.port = port
        if host in ("0.0.0.0", "::"):      # every address: show one a browser elsewhere can use
            host = socket.gethostname() or host
        shown = "[%s]" % host if ":" in host else host
        self.url = "http://%s:%d/" % (shown, port)
        self.api = Api(view, self)
        self._thread = None

    def count(self, status):
        with self._lock:
            self.requests[status] = self.requests.get(status, 0) + 1

    def stats(self):
        with self._lock:
            return {"url": self.url, "requests": dict(self.requests), "auth": bool(self.settings.token)}

    def start(self):
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.2},
                                        name="http", daemon=True)
        self._thread.start()
        return self

    def close(self):
        self.stopping.set()
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join(5)
            self._thread = None
        self.httpd.server_close()
        self.api.close()
