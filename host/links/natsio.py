"""A nats-py client for synchronous callers: its own asyncio loop on a daemon thread.

The NATS device link (links/nats.py) and the relay's NATS uplink (relay/uplink.py) are driven
from plain threads (a link's reader, the relay's select loop); nats-py is asyncio only. NatsIO
runs one client on a loop of its own and offers what those callers need, thread-safely:

    io = NatsIO("nats://127.0.0.1:4222", name="relay").start(timeout=2.0)   # OSError if down
    io.subscribe("bo.dev.up.>", cb)     # cb(subject, data) on the loop thread: keep it short
    io.publish("bo.dev.down.x.1", b"...")  # OSError(ENETUNREACH) while disconnected
    io.connected; io.close()

After the first connect nats-py reconnects by itself, forever, and re-subscribes; while it is
away publish() raises OSError(ENETUNREACH), so a caller sees a lost uplink the way it sees an
unreachable UDP peer. nats-py is the `nats` extra: imported only here, only when used.
"""
import asyncio
import errno
import threading

__all__ = ["NatsIO", "parse_nats_url"]

DEFAULT_PREFIX = "bo.dev"


def parse_nats_url(url, what="link"):
    """(server URL, subject prefix) of nats://HOST:PORT[/PREFIX]; ValueError naming the allowed
    form otherwise. The prefix is dot-separated NATS tokens (default bo.dev)."""
    if not isinstance(url, str) or not url.lower().startswith("nats://"):
        raise ValueError("%s %r: a NATS %s is nats://HOST:PORT[/SUBJECT_PREFIX]" % (what, url, what))
    rest = url[len("nats://"):]
    hostport, _, prefix = rest.partition("/")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ValueError("%s %r: a NATS %s is nats://HOST:PORT[/SUBJECT_PREFIX] with a port "
                         "1..65535" % (what, url, what))
    prefix = prefix or DEFAULT_PREFIX
    tokens = prefix.split(".")
    if any(not t or any(c in t for c in " \t*>") for t in tokens):
        raise ValueError("%s %r: the subject prefix %r must be dot-separated NATS tokens without "
                         "spaces, '*' or '>' (default %s)" % (what, url, prefix, DEFAULT_PREFIX))
    return "nats://" + hostport, prefix


class NatsIO:
    """One NATS client on a loop thread of its own (module docstring)."""

    def __init__(self, server, name="becomingone"):
        self.server, self.name = server, name
        self.nc = None
        self.loop = None
        self._thread = None
        self._subs = []           # (subject, cb): re-made by nats-py after a reconnect
        self.counters = {"disconnects": 0, "reconnects": 0, "publish_failures": 0}

    # ------------------------------------------------------------------ lifecycle
    def start(self, timeout=2.0):
        """Connect (within `timeout` s); OSError when the server cannot be reached."""
        import nats  # noqa: F401 - the `nats` extra; a clear ImportError otherwise
        ready = threading.Event()
        self.loop = asyncio.new_event_loop()

        def run():
            asyncio.set_event_loop(self.loop)
            ready.set()
            self.loop.run_forever()
        self._thread = threading.Thread(target=run, name="nats-io", daemon=True)
        self._thread.start()
        ready.wait()
        fut = asyncio.run_coroutine_threadsafe(self._connect(timeout), self.loop)
        try:
            fut.result(timeout + 1.0)
        except Exception as e:  # noqa: BLE001 - any failure to connect: the server is not there
            fut.cancel()
            self._stop_loop()
            why = "no NATS server answered within %g s" % timeout if isinstance(
                e, (TimeoutError, asyncio.TimeoutError)) else (str(e) or type(e).__name__)
            raise OSError("cannot connect to %s: %s" % (self.server, why)) from None
        return self

    async def _connect(self, timeout):
        import nats

        async def disconnected():
            self.counters["disconnects"] += 1

        async def reconnected():
            self.counters["reconnects"] += 1

        async def error(_e):
            pass                  # reconnects are nats-py's; the caller sees publish failures

        # nats-py retries a first connect forever with reconnects allowed: bounded here
        self.nc = await asyncio.wait_for(
            nats.connect(self.server, name=self.name, connect_timeout=timeout,
                         allow_reconnect=True, max_reconnect_attempts=-1,
                         reconnect_time_wait=0.5, disconnected_cb=disconnected,
                         reconnected_cb=reconnected, error_cb=error), timeout)

    def close(self):
        if self.loop is None:
            return
        if self.nc is not None:
            fut = asyncio.run_coroutine_threadsafe(self._close(), self.loop)
            try:
                fut.result(3.0)
            except Exception:  # noqa: BLE001 - closing: nothing left to report to
                pass
        self._stop_loop()

    async def _close(self):
        try:
            await self.nc.close()
        except Exception:  # noqa: BLE001
            pass

    def _stop_loop(self):
        loop, self.loop = self.loop, None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(3.0)
            if not loop.is_running():
                loop.close()

    # ------------------------------------------------------------------ messages
    @property
    def connected(self):
        nc = self.nc
        return nc is not None and nc.is_connected

    def subscribe(self, subject, cb):
        """cb(subject, data) for every message on `subject` (wildcards allowed), called on the
        loop thread. Raises OSError when the subscription cannot be made."""
        async def handler(msg):
            cb(msg.subject, msg.data)

        async def sub():
            await self.nc.subscribe(subject, cb=handler)
            await self.nc.flush(timeout=2)
        try:
            asyncio.run_coroutine_threadsafe(sub(), self.loop).result(5.0)
        except Exception as e:  # noqa: BLE001
            raise OSError("cannot subscribe to %s on %s: %s"
                          % (subject, self.server, str(e) or type(e).__name__)) from None
        self._subs.append((subject, cb))

    def publish(self, subject, data):
        """Queue `data` on `subject` (nats-py writes it out); OSError(ENETUNREACH) while the
        client is disconnected or closed."""
        loop = self.loop
        if loop is None or not self.connected:
            self.counters["publish_failures"] += 1
            raise OSError(errno.ENETUNREACH, "not connected to %s" % self.server)
        loop.call_soon_threadsafe(self._publish, subject, bytes(data))

    def _publish(self, subject, data):
        asyncio.ensure_future(self._pub(subject, data))

    async def _pub(self, subject, data):
        try:
            await self.nc.publish(subject, data)
        except Exception:  # noqa: BLE001 - lost meanwhile: counted, like a dropped datagram
            self.counters["publish_failures"] += 1
