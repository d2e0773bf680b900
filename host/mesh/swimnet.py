"""SWIM (host/mesh/swim.py) over the mutual-TLS request/reply transport (host/mesh/tls.py).

A member's address is "host:port" (the advertised address: a cell bound to 0.0.0.0 advertises
the address its peers reach it at); its name is its certificate's cell name, and a message whose
"from" differs from the certificate of the connection it came on is refused (a certified cell
cannot speak for another). Each message uses one short connection (probe timeouts bound it).

Run one cell's membership as a process (used by the multi-process tests): it prints
{"cell": NAME, "listening": PORT} once its listener is up (--port 0: a free port), then its view
as one JSON line per period on stdout:

    python -m becomingone.mesh.swimnet --tls DIR --cell cell-a --port 18789 [--seed 127.0.0.1:18790 ...]
                                [--interval 1.0] [--timeout 0.3]

A port that cannot be bound ends it with exit code 2 and one line on stderr saying why.
"""
import argparse
import asyncio
import json
import random
import sys

from becomingone.mesh.swim import Swim
from becomingone.mesh.tls import MeshServer, MeshTLSError, connector


class SwimNode:
    """SWIM membership over mutual TLS: owns the Swim state machine and the listener it
    shares with the other mesh services. Raises OSError from start() when the port cannot be
    bound."""
    def __init__(self, tls_folder, cell, host, port, seeds=(), interval=1.0, timeout=0.3, rng=None,
                 advertise=None, pool=None):
        self.tls, self.cell, self.host, self.port = tls_folder, cell, host, port
        self._connect = connector(tls_folder, cell, pool)   # pool: host/mesh/tls.py ConnectionPool
        self.advertise = advertise or host     # the address other cells reach us at
        self.swim = Swim(cell, "%s:%d" % (self.advertise, port), self._send, seeds=seeds,
                         probe_interval=interval, probe_timeout=timeout, rng=rng or random.Random())
        self.server = MeshServer(tls_folder, cell, self.handle)
        self.refused = 0

    async def start(self):
        self.port = await self.server.start(self.host, self.port)
        self.swim.announce("%s:%d" % (self.advertise, self.port))
        return self.port

    async def handle(self, peer, payload):
        try:
            msg = json.loads(payload)
        except ValueError:
            msg = None
        if not isinstance(msg, dict) or msg.get("from") != peer:
            self.refused += 1
            return b'{"type":"nack","updates":[]}'
        reply = await self.swim.handle(msg)
        return json.dumps(reply, separators=(",", ":")).encode("ascii")

    async def _send(self, addr, msg, timeout):
        host, _, port = str(addr).rpartition(":")
        try:
            conn = await asyncio.wait_for(self._connect(host, int(port), timeout=timeout), timeout)
        except (MeshTLSError, asyncio.TimeoutError, ValueError, OSError):
            return None
        try:
            rep = await asyncio.wait_for(conn.request(json.dumps(msg, separators=(",", ":")).encode("ascii")), timeout)
            out = json.loads(rep)
            return out if isinstance(out, dict) else None
        except (MeshTLSError, asyncio.TimeoutError, ValueError, OSError):
            return None
        finally:
            try:
                await conn.close()
            except Exception:
                pass

    async def run(self, report=None):
        await self.swim.join()
        while True:
            await self.swim.probe_once()
            if report:
                report(self.swim.view())
            await asyncio.sleep(self.swim.probe_interval)

    async def close(self):
        await self.server.close()


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m becomingone.mesh.swimnet")
    p.add_argument("--tls", required=True)
    p.add_argument("--cell", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=18789)
    p.add_argument("--seed", action="append", default=[])
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--timeout", type=float, default=0.3)
    a = p.parse_args(argv)

    def say(**kw):
        kw["cell"] = a.cell
        sys.stdout.write(json.dumps(kw, sort_keys=True) + "\n")
        sys.stdout.flush()

    async def go():
        node = SwimNode(a.tls, a.cell, a.host, a.port, seeds=a.seed, interval=a.interval, timeout=a.timeout)
        try:
            port = await node.start()
        except OSError as e:
            print("swimnet: cannot listen on %s:%d: %s" % (a.host, a.port, e.strerror or e), file=sys.stderr)
            return 2
        say(listening=port)
        await node.run(lambda view: say(view=view))
    try:
        return asyncio.run(go())
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
