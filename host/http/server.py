"""The HTTP server: uvicorn (an asyncio HTTP/1.1 server on h11) running a Starlette app in its
own thread, with the limits a server on a network needs (docs/HTTP.md, "Limits"):

- header deadline: a connection must deliver a complete request head within HEADER_TIMEOUT
  seconds of connecting (or of its previous response), else it is closed: slow clients
  ("slowloris", one byte every few seconds) cannot keep connections forever, and since the
  server is asynchronous they hold no worker while they wait;
- body deadline: a request body must arrive within BODY_TIMEOUT seconds (408 otherwise), and
  is at most MAX_BODY bytes (413, counted as it streams in, whatever Content-Length says);
- request heads at most MAX_HEAD bytes (h11's limit; 400 beyond); MAX_CONNECTIONS connections
  at once (503 beyond), MAX_STREAMS event streams; idle keep-alive connections close after
  IDLE_TIMEOUT s;
- malformed requests get 400 with the parser's reason (`Content-Length: abc` included); JSON
  bodies: non-finite or out-of-range numbers (1e400), nesting deeper than MAX_DEPTH, and
  values of the wrong type for the route's request schema (`{"bits": 3.5}`) are refused with a
  400 naming the field and what is allowed, never truncated.

Security as before: with a token every request needs it (Authorization: Bearer TOKEN, the
cookie a browser gets by opening /?token=TOKEN once, or ?token= on any URL); without a token
(loopback only) the Host header must name a loopback address (DNS rebinding). POST needs
Content-Type: application/json, which a cross-site form cannot send without a CORS preflight
(never granted). /healthz and /readyz answer without a token (they reveal nothing but
up/ready) so that systemd, Kubernetes and load balancers can probe.

Handlers (host/http/api.py) are synchronous: they run in a bounded thread pool (anyio's,
WORKERS threads), each read of the coordinator bounded by the view's 2 s timeout.
"""
import asyncio
import hashlib
import hmac
import json
import logging
import mimetypes
import os
import socket
import threading
import time
from urllib.parse import parse_qs, urlencode

import anyio.to_thread
import h11
import uvicorn
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from uvicorn.protocols.http.h11_impl import H11Protocol

from becomingone.errors import UserError
from becomingone.http.api import Api, match_route, validate_body
from becomingone.http.responses import ApiError, Raw
from becomingone.http.settings import is_loopback

__all__ = ["HttpServer", "COOKIE", "MAX_CONNECTIONS", "MAX_STREAMS", "HEADER_TIMEOUT",
           "BODY_TIMEOUT", "MAX_BODY", "MAX_DEPTH", "parse_json_body"]

COOKIE = "becomingone_session"
MAX_CONNECTIONS = 256         # concurrent connections; more get 503
MAX_STREAMS = 16              # concurrent event streams (dashboards)
MAX_BODY = 64 * 1024          # request body bytes
MAX_HEAD = 16 * 1024          # request line + headers bytes
MAX_DEPTH = 32                # JSON nesting of a request body
HEADER_TIMEOUT = 10.0         # seconds to deliver a complete request head
BODY_TIMEOUT = 10.0           # seconds to deliver the body
IDLE_TIMEOUT = 15.0           # seconds a keep-alive connection may sit idle
WORKERS = 16                  # threads running handlers
STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "static")
LOG = logging.getLogger("becomingone.http")
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'")
SECURITY_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff",
                    "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"}
PROBES = ("/healthz", "/readyz")


# ---------------------------------------------------------------------- the protocol
class _Conn:
    """h11.Connection wrapper that remembers why the parser refused a request, so the 400
    names it (uvicorn's own says only "Invalid HTTP request received.")."""
    __slots__ = ("_c", "refused")

    def __init__(self, c):
        self._c = c
        self.refused = None

    def next_event(self):
        try:
            return self._c.next_event()
        except h11.RemoteProtocolError as e:
            self.refused = str(e) or type(e).__name__
            raise

    def __getattr__(self, name):
        return getattr(self._c, name)


class GuardedH11(H11Protocol):
    """uvicorn's h11 protocol plus a request-head deadline (module docstring) and a 400 that
    names the parser's reason. Counts what it refuses in the server's counters."""
    owner = None                      # the HttpServer (set on a subclass per server)

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.conn = _Conn(self.conn)
        self._head_timer = None

    def connection_made(self, transport):
        super().connection_made(transport)
        # asyncio sets TCP_NODELAY only on sockets made with proto IPPROTO_TCP, and ours come
        # from a listener made by hand (proto 0): without it every keep-alive response waited
        # ~40 ms (Nagle against the client's delayed ACK), /healthz included
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        self._arm_head_deadline()

    def _arm_head_deadline(self):
        self._cancel_head_deadline()
        self._head_timer = self.loop.call_later(HEADER_TIMEOUT, self._head_deadline)

    def _cancel_head_deadline(self):
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_deadline(self):
        self._head_timer = None
        if self.cycle is None or self.cycle.response_complete:   # still no complete head
            self.owner.count("head_timeout")
            if not self.transport.is_closing():
                self.transport.close()

    def handle_events(self):
        before = self.cycle
        super().handle_events()
        if self.cycle is not before:                # a request head arrived
            self._cancel_head_deadline()

    def on_response_complete(self):
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm_head_deadline()               # the next request's head, same deadline

    def connection_lost(self, exc):
        self._cancel_head_deadline()
        super().connection_lost(exc)

    def send_400_response(self, msg):
        why = self.conn.refused
        self.owner.count("400")
        if why:
            msg = "malformed HTTP request: %s (allowed: HTTP/1.1 with a numeric Content-Length, " \
                  "request line and headers under %d bytes)" % (why, MAX_HEAD)
        body = json.dumps({"error": msg}).encode()
        # h11 is in an error state: write the response by hand, then close
        self.transport.write(b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(body), body))
        self.transport.close()


# ---------------------------------------------------------------------- JSON bodies
def _reject_constant(name):
    raise ValueError("%s is not a number JSON allows (allowed: finite numbers)" % name)


def _finite_float(text):
    v = float(text)
    if v in (float("inf"), float("-inf")):
        raise ValueError("number %s is out of range (allowed: finite numbers, |x| < 1.8e308)"
                         % text[:40])
    return v


def _depth_ok(raw, limit):
    """True when the JSON text nests at most `limit` arrays/objects (strings skipped)."""
    depth = 0
    in_str = esc = False
    for ch in raw:
        if in_str:
            if esc:
                esc = False
            elif ch == 0x5C:            # backslash
                esc = True
            elif ch == 0x22:
                in_str = False
        elif ch == 0x22:
            in_str = True
        elif ch in (0x5B, 0x7B):
            depth += 1
            if depth > limit:
                return False
        elif ch in (0x5D, 0x7D):
            depth -= 1
    return True


def parse_json_body(raw):
    """A request body (bytes) -> a dict; ApiError 400 naming what is wrong and what is allowed."""
    if not raw.strip():
        return {}
    if not _depth_ok(raw, MAX_DEPTH):
        raise ApiError(400, "the request body nests arrays/objects more than %d deep (allowed: "
                            "at most %d)" % (MAX_DEPTH, MAX_DEPTH))
    try:
        body = json.loads(raw, parse_float=_finite_float, parse_constant=_reject_constant)
    except RecursionError:
        raise ApiError(400, "the request body nests too deep (allowed: at most %d)" % MAX_DEPTH) from None
    except ValueError as e:
        raise ApiError(400, "the request body is not valid JSON: %s" % e) from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    return body


# ---------------------------------------------------------------------- the app
class _App:
    """The ASGI application: authentication, the Host check, probes, routing to the Api,
    static files and the event stream (Starlette requests and responses)."""

    def __init__(self, owner):
        self.owner = owner

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        req = Request(scope, receive)
        try:
            resp = await self.dispatch(req)
        except ApiError as e:
            resp = self.json_error(e.status, e.message, allow=e.allow)
        except ClientDisconnect:
            return
        except Exception as e:             # never let a request kill the server; counted
            LOG.exception("HTTP %s %s failed", req.method, req.url.path)
            resp = self.json_error(500, "internal error: %s: %s" % (type(e).__name__, e))
        await resp(scope, receive, send)

    def json_error(self, status, message, allow=None, extra=None):
        h = dict(extra or {})
        if allow:
            h["Allow"] = allow
        return self.send(status, json.dumps({"error": message}).encode(), "application/json",
                         extra=h)

    def send(self, status, body, ctype, head=False, extra=None, count=True):
        if count:
            self.owner.count(str(status))
        h = dict(SECURITY_HEADERS)
        h.update(extra or {})
        h["Content-Length"] = str(len(body))
        return Response(b"" if head else body, status_code=status, headers=h, media_type=ctype)

    async def dispatch(self, req):
        owner = self.owner
        method = req.method
        path = req.url.path
        query = {k: v[-1] for k, v in parse_qs(req.url.query, keep_blank_values=True).items()}
        size = len(req.scope.get("raw_path") or b"") + len(req.scope.get("query_string") or b"") \
            + sum(len(k) + len(v) + 4 for k, v in req.scope["headers"])
        if size > MAX_HEAD:            # h11 checks only heads that arrive in pieces
            raise ApiError(431, "the request line and headers have %d bytes (allowed: at most %d)"
                           % (size, MAX_HEAD))
        if path in PROBES and method in ("GET", "HEAD"):
            return await self.probe(path, method == "HEAD")
        if not self._host_ok(req):
            raise ApiError(421, "Host header %r is not a loopback name; open the dashboard at %s"
                           % (req.headers.get("host"), owner.url))
        if not self._authorized(req, query):
            return self._unauthorized(path)
        if owner.settings.token and query.get("token") and method in ("GET", "HEAD") \
                and not path.startswith("/api/"):
            # a browser opened ?token=...: keep it in a cookie, drop it from the address bar
            rest = {k: v for k, v in query.items() if k != "token"}
            return self.send(303, b"", "text/plain", extra={
                "Location": path + ("?" + urlencode(rest) if rest else ""),
                "Set-Cookie": "%s=%s; Path=/; HttpOnly; SameSite=Strict" % (COOKIE, owner.cookie_value)})
        route, params = match_route(method if method != "HEAD" else "GET", path)
        if route is None:
            if params == "method":
                raise ApiError(405, "%s is not allowed on %s" % (method, path))
            return self.static(path, method)
        body = None
        if method == "POST":
            body = await self.json_body(req)
            validate_body(route, body)
        if route.stream:
            return self.stream(query)
        result = await anyio.to_thread.run_sync(owner.api.handle, route, params, query, body,
                                                limiter=owner.limiter)
        if isinstance(result, Raw):
            return self.send(result.status, result.body, result.content_type, head=method == "HEAD")
        return self.send(200, owner.api.dumps(result), "application/json", head=method == "HEAD")

    async def probe(self, path, head):
        fn = self.owner.api.liveness if path == "/healthz" else self.owner.api.readiness
        ok, report = await anyio.to_thread.run_sync(fn, limiter=self.owner.limiter)
        return self.send(200 if ok else 503, json.dumps(report).encode(), "application/json",
                         head=head)

    def _host_ok(self, req):
        owner = self.owner
        if owner.settings.token:
            return True
        host = (req.headers.get("host") or "").strip()
        if not host:
            return True                      # HTTP/1.0 clients
        if host.startswith("["):
            name = host[1:host.find("]")] if "]" in host else host
        else:
            name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        return is_loopback(name) or name == owner.settings.host

    def _authorized(self, req, query):
        owner = self.owner
        token = owner.settings.token
        if not token:
            return True
        auth = req.headers.get("authorization") or ""
        if auth[:7].lower() == "bearer " and hmac.compare_digest(auth[7:].strip().encode(),
                                                                  token.encode()):
            return True
        q = query.get("token")
        if q and hmac.compare_digest(q.encode(), token.encode()):
            return True
        v = req.cookies.get(COOKIE)
        return bool(v) and hmac.compare_digest(v.encode(), owner.cookie_value.encode())

    def _unauthorized(self, path):
        owner = self.owner
        owner.count("401")
        www = {"WWW-Authenticate": 'Bearer realm="becomingone"'}
        if path in ("/", "/index.html"):
            page = ("<!doctype html><meta charset=utf-8><title>BecomingONE: token needed</title>"
                    "<p>This dashboard needs its token. Open <code>%s?token=YOUR_TOKEN</code> once "
                    "(the browser then keeps a cookie), or send <code>Authorization: Bearer "
                    "YOUR_TOKEN</code>.</p>" % owner.url).encode()
            return self.send(401, page, "text/html; charset=utf-8", extra=www, count=False)
        return self.send(401, json.dumps({"error": "this server needs a token: send "
                                          "Authorization: Bearer TOKEN"}).encode(),
                         "application/json", extra=www, count=False)

    async def json_body(self, req):
        ctype = (req.headers.get("content-type") or "").split(";")[0].strip().lower()
        declared = req.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
            raise ApiError(413, "request body of %s bytes is over the limit of %d" % (declared, MAX_BODY))
        chunks, n = [], 0

        async def read():
            nonlocal n
            async for chunk in req.stream():
                n += len(chunk)
                if n > MAX_BODY:
                    raise ApiError(413, "request body is over the limit of %d bytes" % MAX_BODY)
                chunks.append(chunk)
        try:
            await asyncio.wait_for(read(), BODY_TIMEOUT)
        except asyncio.TimeoutError:
            self.owner.count("body_timeout")
            raise ApiError(408, "the request body did not arrive within %.0f s (allowed: a "
                                "body of at most %d bytes sent at once)" % (BODY_TIMEOUT, MAX_BODY),
                           ) from None
        if ctype != "application/json":
            raise ApiError(415, "POST needs Content-Type: application/json (got %r)" % (ctype or None,))
        return parse_json_body(b"".join(chunks))

    def static(self, path, method):
        if method not in ("GET", "HEAD"):
            raise ApiError(404, "no such endpoint: %s %s" % (method, path))
        name = "index.html" if path in ("/", "/index.html", "/snapshot") else \
            path[len("/static/"):] if path.startswith("/static/") else None
        if not name or "/" in name or "\\" in name or name.startswith("."):
            raise ApiError(404, "no such endpoint: %s %s (see /openapi.json)" % (method, path))
        try:
            with open(os.path.join(STATIC, name), "rb") as f:
                data = f.read()
        except OSError:
            raise ApiError(404, "no such file: %s" % path) from None
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith("javascript"):
            ctype += "; charset=utf-8"
        return self.send(200, data, ctype, head=method == "HEAD",
                         extra={"Content-Security-Policy": CSP})

    def stream(self, query):
        owner = self.owner
        if not owner.stream_slots.acquire(blocking=False):
            raise ApiError(503, "too many live clients (at most %d)" % MAX_STREAMS)
        try:
            limit = int(float(query.get("max_events") or 0)) or None
        except ValueError:
            owner.stream_slots.release()
            raise ApiError(400, "query parameter max_events must be a number (got %r)"
                           % query.get("max_events")) from None
        owner.count("200")

        async def events():
            hub = owner.api.hub
            try:
                yield b"retry: 2000\n\n"
                last, idle, sent = -1, time.monotonic(), 0
                while not owner.stopping.is_set():
                    snap = await anyio.to_thread.run_sync(hub.get, limiter=owner.limiter)
                    if snap.seq != last:
                        yield snap.sse
                        last, idle = snap.seq, time.monotonic()
                        sent += 1
                        if limit is not None and sent >= limit:
                            break
                    elif time.monotonic() - idle > 15:
                        yield b": keep-alive\n\n"
                        idle = time.monotonic()
                    await asyncio.sleep(max(0.02, snap.built + hub.interval - time.monotonic()))
            finally:
                owner.stream_slots.release()
        h = dict(SECURITY_HEADERS)
        h["Connection"] = "close"
        return StreamingResponse(events(), media_type="text/event-stream; charset=utf-8", headers=h)


# ---------------------------------------------------------------------- the server
class HttpServer:
    """The HTTP API, dashboard and /metrics of one coordinator, reached through its narrow view
    (becomingone/coordinator/view.py CoordinatorView). Binds at construction (so a port in use
    is a clear error before anything else starts: UserError naming the fix); start() serves in a
    thread (uvicorn on its own event loop); close() stops serving and closes the socket."""

    def __init__(self, view, settings):
        self.settings = settings
        self.view = view
        self.stopping = threading.Event()
        self.stream_slots = threading.BoundedSemaphore(MAX_STREAMS)
        self.requests = {}
        self._lock = threading.Lock()
        self.limiter = None                   # anyio CapacityLimiter, made in the server's loop
        self.cookie_value = hmac.new((settings.token or "").encode(), b"becomingone dashboard",
                                     hashlib.sha256).hexdigest() if settings.token else ""
        fam = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        sock = socket.socket(fam, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((settings.host, settings.port))
            sock.listen(512)
        except OSError as e:
            sock.close()
            if e.errno in (98, 48):          # EADDRINUSE (Linux, BSD)
                raise UserError(
                    "HTTP port %s:%d is in use (another coordinator, or another program): choose "
                    "another with --http HOST:PORT (127.0.0.1:0 picks a free one) or set "
                    "http.port, or switch the server off with --no-http"
                    % (settings.host, settings.port)) from None
            raise UserError("the HTTP server cannot listen on %s:%d: %s"
                            % (settings.host, settings.port, e.strerror or e)) from None
        sock.setblocking(False)
        self.sock = sock
        host, port = sock.getsockname()[:2]
        self.port = port
        if host in ("0.0.0.0", "::"):      # every address: show one a browser elsewhere can use
            host = socket.gethostname() or host
        shown = "[%s]" % host if ":" in host else host
        self.url = "http://%s:%d/" % (shown, port)
        self.api = Api(view, self)
        protocol = type("GuardedH11ForServer", (GuardedH11,), {"owner": self})
        self.config = uvicorn.Config(
            _App(self), http=protocol, lifespan="off", access_log=False, log_level="warning",
            timeout_keep_alive=int(IDLE_TIMEOUT), limit_concurrency=MAX_CONNECTIONS,
            h11_max_incomplete_event_size=MAX_HEAD, timeout_graceful_shutdown=1,
            server_header=False, date_header=True)
        self.server = uvicorn.Server(self.config)
        self._thread = None

    def count(self, status):
        with self._lock:
            self.requests[status] = self.requests.get(status, 0) + 1

    def stats(self):
        with self._lock:
            return {"url": self.url, "requests": dict(self.requests), "auth": bool(self.settings.token),
                    "server": "uvicorn %s" % uvicorn.__version__}

    def _serve(self):
        async def main():
            self.limiter = anyio.CapacityLimiter(WORKERS)
            await self.server.serve(sockets=[self.sock])
        asyncio.run(main())

    def start(self):
        self._thread = threading.Thread(target=self._serve, name="http", daemon=True)
        self._thread.start()
        end = time.monotonic() + 10
        while not self.server.started and self._thread.is_alive() and time.monotonic() < end:
            time.sleep(0.01)
        return self

    def close(self):
        self.stopping.set()
        if self._thread is not None:
            self.server.should_exit = True
            self._thread.join(5)
            self._thread = None
        try:
            self.sock.close()
        except OSError:
            pass
        self.api.close()
