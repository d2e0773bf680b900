"""HTTP face of a standalone witness (`becomingone witness serve`; C2SP tlog-witness):

    POST <prefix>/add-checkpoint      the request of host/ledger/witness.py add_checkpoint
    GET  <prefix>/checkpoint?origin=O the checkpoint the witness cosigned last for log O, with
                                       its cosignature (text; 404 if none): a monitor or an
                                       operator saves it for `ledger verify --against`
    GET  <prefix>/                     the witness's name, vkey, logs and heads (JSON)

uvicorn + Starlette's ASGI interface with the same limits as the coordinator's API
(host/http/server.py: request-head deadline, body deadline and size, connection limit).
"""
import asyncio
import json
import socket
import threading
import time

import uvicorn

from becomingone.errors import UserError
from becomingone.http.server import (BODY_TIMEOUT, IDLE_TIMEOUT, MAX_CONNECTIONS, MAX_HEAD,
                                     GuardedH11)

__all__ = ["WitnessServer", "MAX_REQUEST"]

MAX_REQUEST = 16 * 1024       # an add-checkpoint request: 63 proof lines and a note fit easily


class _App:
    def __init__(self, owner):
        self.owner = owner

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return
        o = self.owner
        path = scope["path"]
        prefix = o.prefix
        if not path.startswith(prefix):
            return await self._send(send, 404, "text/plain", b"not found\n")
        path = path[len(prefix):] or "/"
        method = scope["method"]
        if path == "/add-checkpoint":
            if method != "POST":
                return await self._send(send, 405, "text/plain", b"POST only\n", allow="POST")
            body = await self._body(scope, receive)
            if isinstance(body, tuple):
                return await self._send(send, body[0], "text/plain", body[1])
            status, ctype, out = await asyncio.get_running_loop().run_in_executor(
                None, o.witness.add_checkpoint, body)
            return await self._send(send, status, ctype, out)
        if method not in ("GET", "HEAD"):
            return await self._send(send, 405, "text/plain", b"GET only\n", allow="GET")
        if path == "/checkpoint":
            qs = dict(p.split("=", 1) for p in scope.get("query_string", b"").decode(
                "utf-8", "replace").split("&") if "=" in p)
            from urllib.parse import unquote
            note = o.witness.head(unquote(qs.get("origin", "")))
            if note is None:
                return await self._send(send, 404, "text/plain", b"no checkpoint cosigned for that origin\n")
            return await self._send(send, 200, "text/plain; charset=utf-8", note.encode("utf-8"))
        if path == "/":
            return await self._send(send, 200, "application/json",
                                    json.dumps(o.witness.summary(), sort_keys=True).encode())
        return await self._send(send, 404, "text/plain", b"not found\n")

    async def _body(self, scope, receive):
        for k, v in scope.get("headers", ()):
            if k == b"content-length":
                try:
                    if int(v) > MAX_REQUEST:
                        return 413, b"request body over %d bytes\n" % MAX_REQUEST
                except ValueError:
                    return 400, b"Content-Length is not a number\n"
        chunks, n = [], 0
        end = time.monotonic() + BODY_TIMEOUT
        while True:
            try:
                msg = await asyncio.wait_for(receive(), max(0.01, end - time.monotonic()))
            except asyncio.TimeoutError:
                return 408, b"request body not received within %d s\n" % BODY_TIMEOUT
            if msg["type"] == "http.disconnect":
                return 400, b"client went away\n"
            chunk = msg.get("body", b"")
            n += len(chunk)
            if n > MAX_REQUEST:
                return 413, b"request body over %d bytes\n" % MAX_REQUEST
            chunks.append(chunk)
            if not msg.get("more_body"):
                return b"".join(chunks)

    async def _send(self, send, status, ctype, body, allow=None):
        self.owner.count(str(status))
        headers = [(b"content-type", ctype.encode()), (b"content-length", b"%d" % len(body)),
                   (b"cache-control", b"no-store")]
        if allow:
            headers.append((b"allow", allow.encode()))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class WitnessServer:
    """Serves one Witness (host/ledger/witness.py) over HTTP. Binds at construction (UserError
    when the address is taken); serve() runs in the calling thread until stop(), start() in a
    thread."""

    def __init__(self, witness, host="127.0.0.1", port=0, prefix=""):
        self.witness = witness
        self.prefix = prefix.rstrip("/")
        self.requests = {}
        self._lock = threading.Lock()
        fam = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(fam, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
            sock.listen(128)
        except OSError as e:
            sock.close()
            raise UserError("the witness cannot listen on %s:%d: %s (choose another --listen)"
                            % (host, port, e.strerror or e)) from None
        sock.setblocking(False)
        self.sock = sock
        self.port = sock.getsockname()[1]
        shown = "[%s]" % host if ":" in host else host
        self.url = "http://%s:%d%s" % (shown, self.port, self.prefix)
        protocol = type("GuardedH11ForWitness", (GuardedH11,), {"owner": self})
        self.server = uvicorn.Server(uvicorn.Config(
            _App(self), http=protocol, lifespan="off", access_log=False, log_level="warning",
            timeout_keep_alive=int(IDLE_TIMEOUT), limit_concurrency=MAX_CONNECTIONS,
            h11_max_incomplete_event_size=MAX_HEAD, timeout_graceful_shutdown=1,
            server_header=False))
        self._thread = None

    def count(self, status):
        with self._lock:
            self.requests[status] = self.requests.get(status, 0) + 1

    def serve(self):
        asyncio.run(self.server.serve(sockets=[self.sock]))

    def start(self):
        self._thread = threading.Thread(target=self.serve, name="witness-http", daemon=True)
        self._thread.start()
        end = time.monotonic() + 10
        while not self.server.started and self._thread.is_alive() and time.monotonic() < end:
            time.sleep(0.01)
        return self

    def stop(self):
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(5)
            self._thread = None
        try:
            self.sock.close()
        except OSError:
            pass
