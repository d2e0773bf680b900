"""Control socket of a running coordinator (docs/HOST.md, "Control socket").

A unix stream socket `control.sock` in the data folder (mode 0600). Protocol: one JSON object
per line each way. Request {"cmd": NAME, ...arguments}; response {"ok": true, "result": ...}
or {"ok": false, "error": "message"}. One request per connection is typical (the client
closes after the reply), but a connection may carry several.

Commands: ping, status, devices, device (device), config (device[, changes]), undo (device),
redo (device), goto (device, version), clear (device), model (device or "all", w, b),
pow (device, bits), keys_reload, stop.
"""
import json
import os
import socket
import threading

from becomingone.errors import BecomingOneError, UserError

__all__ = ["ControlServer", "request", "SOCKET_NAME"]

SOCKET_NAME = "control.sock"
MAX_LINE = 1 << 20


class ControlServer:
    """Accepts connections in a thread; `handler(request_dict) -> result` runs the command
    (the coordinator posts it to its processing thread); UserError/ValueError become
    {"ok": false, "error": ...}."""

    def __init__(self, path, handler):
        self.path = path
        self.handler = handler
        self.sock = None
        self._stop = threading.Event()
        self._thread = None
        self.requests = 0
        self.errors = 0

    def start(self):
        if os.path.exists(self.path):
            try:                         # a live coordinator already owns it?
                request(self.path, {"cmd": "ping"}, timeout=0.5)
            except UserError:
                os.unlink(self.path)     # stale socket of a dead process
            else:
                raise UserError("another coordinator is running with this data folder "
                                "(control socket %s answers)" % self.path)
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old = os.umask(0o177)
        try:
            s.bind(self.path)
        finally:
            os.umask(old)
        s.listen(16)
        s.settimeout(0.2)
        self.sock = s
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        if self.sock is not None:
            self.sock.close()
            self.sock = None
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            threading.Thread(target=self._conn, args=(conn,), daemon=True).start()

    def _conn(self, conn):
        conn.settimeout(30)
        f = conn.makefile("rwb")
        try:
            while True:
                line = f.readline(MAX_LINE)
                if not line:
                    return
                self.requests += 1
                try:
                    req = json.loads(line)
                    if not isinstance(req, dict) or not isinstance(req.get("cmd"), str):
                        raise UserError('a request is a JSON object with "cmd"')
                    resp = {"ok": True, "result": self.handler(req)}
                except (BecomingOneError, ValueError, KeyError, TypeError) as e:
                    self.errors += 1
                    msg = str(e) if not isinstance(e, KeyError) else "missing %s" % e
                    resp = {"ok": False, "error": msg}
                except Exception as e:  # never let a command kill the server
                    self.errors += 1
                    resp = {"ok": False, "error": "internal error: %s: %s" % (type(e).__name__, e)}
                f.write((json.dumps(resp, default=str) + "\n").encode())
                f.flush()
        except (OSError, ValueError):
            return
        finally:
            try:
                f.close()
                conn.close()
            except OSError:
                pass


def request(path, req, timeout=10.0):
    """Send one request to the coordinator at control socket `path`; returns `result` or
    raises UserError with the coordinator's message (or why it cannot be reached)."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        s.close()
        raise UserError("no coordinator is running with control socket %s (start one with "
                        "`becomingone run --data DIR`)" % path) from None
    except OSError as e:
        s.close()
        raise UserError("cannot reach the coordinator at %s: %s" % (path, e)) from None
    try:
        s.sendall((json.dumps(req) + "\n").encode())
        f = s.makefile("rb")
        line = f.readline(MAX_LINE)
    except OSError as e:
        raise UserError("control socket %s: %s" % (path, e)) from None
    finally:
        s.close()
    if not line:
        raise UserError("the coordinator closed the control connection without answering")
    resp = json.loads(line)
    if not resp.get("ok"):
        raise UserError(resp.get("error", "request failed"))
    return resp.get("result")
