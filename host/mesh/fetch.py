"""Fetch an origin's archive shards from the live cells that hold them (host/mesh/archiving.py),
into a folder `becomingone mesh restore --from` reads: OUT/<holder cell>/<shard file>.

    becomingone mesh fetch-shards --origin CELL_OR_ORIGIN --out DIR --nats URL --trust DIR
    becomingone mesh fetch-shards --origin CELL_OR_ORIGIN --out DIR --tls DIR --cell NAME --peer HOST:PORT ...

Over NATS every trusted cell is asked (`bo.rpc.<cell>`, op shards); over the embedded mesh each
--peer, with this cell's certificate (mutual TLS). A cell that does not answer is named in the
result and skipped: any k holders per segment are enough. Nothing fetched is trusted here; the
restore verifies every segment against the origin's signed checkpoint.
"""
import base64
import json
import os

from becomingone.errors import UserError
from becomingone.mesh.archive import ArchiveError, parse_shard, shard_filename
from becomingone.mesh.trust import load_trust
from becomingone.util.atomic import atomic_write

__all__ = ["fetch_nats", "fetch_tls", "resolve_origin"]


def resolve_origin(origin, trust_dir=None):
    """A cell name (looked up in the trust folder) or an origin string -> the origin."""
    if trust_dir and os.path.isdir(trust_dir):
        trust = load_trust(trust_dir)
        if origin in trust:
            return trust[origin][0]
    return origin


def _keep(out_dir, holder, blobs, report):
    d = os.path.join(out_dir, holder)
    n = 0
    for b in blobs:
        try:
            h, _body = parse_shard(b)
        except ArchiveError as e:
            report["rejected"].append({"cell": holder, "why": str(e)})
            continue
        os.makedirs(d, exist_ok=True)
        with atomic_write(os.path.join(d, shard_filename(h, h["index"], h["n"])), binary=True) as f:
            f.write(b)
        n += 1
    report["cells"][holder] = n
    report["shards"] += n


async def _pages(ask):
    """Every shard of a holder, page by page: ask(from) -> reply dict."""
    out, i = [], 0
    while i is not None:
        got = await ask(i)
        if not isinstance(got, dict) or "shards" not in got:
            raise ArchiveError("bad answer: %.200r" % (got,))
        out += [base64.b64decode(x, validate=True) for x in got["shards"]]
        i = got.get("next")
    return out


async def fetch_nats(url, trust_dir, origin, out_dir, timeout=3.0):
    """Ask every trusted cell over NATS for `origin`'s shards. -> report dict."""
    import nats  # nats-py: optional (the `nats` extra)
    from becomingone.mesh.backends.nats import cell_token
    trust = load_trust(trust_dir)
    origin = resolve_origin(origin, trust_dir)
    report = {"origin": origin, "cells": {}, "unreachable": {}, "rejected": [], "shards": 0}
    try:
        nc = await nats.connect(url, connect_timeout=timeout, max_reconnect_attempts=1)
    except Exception as e:
        raise UserError("cannot connect to NATS at %s: %s" % (url, e)) from None
    try:
        for cell, (o, _p) in sorted(trust.items()):
            if o == origin:
                continue

            async def ask(i, cell=cell):
                r = await nc.request("bo.rpc." + cell_token(cell),
                                     json.dumps({"op": "shards", "origin": origin, "from": i}).encode("ascii"),
                                     timeout=timeout)
                return json.loads(r.data)
            try:
                _keep(out_dir, cell, await _pages(ask), report)
            except Exception as e:                       # dead, or no answer: skip it
                report["unreachable"][cell] = "%s: %s" % (type(e).__name__, e)
    finally:
        await nc.close()
    return report


async def fetch_tls(tls_dir, cell, peers, origin, out_dir, trust_dir=None, timeout=5.0):
    """Ask each peer (host:port) over mutual TLS (as `cell`) for `origin`'s shards."""
    from becomingone.mesh.tls import MeshTLSError, connect
    origin = resolve_origin(origin, trust_dir)
    report = {"origin": origin, "cells": {}, "unreachable": {}, "rejected": [], "shards": 0}
    for p in peers:
        host, _, port = p.rpartition(":")
        try:
            conn = await connect(tls_dir, cell, host, int(port), timeout=timeout)
        except (MeshTLSError, OSError, ValueError) as e:
            report["unreachable"][p] = str(e)
            continue
        try:
            async def ask(i):
                return json.loads(await conn.request(json.dumps(
                    {"op": "shards", "origin": origin, "from": i}).encode("ascii")))
            _keep(out_dir, conn.name or p, await _pages(ask), report)
        except Exception as e:
            report["unreachable"][p] = "%s: %s" % (type(e).__name__, e)
        finally:
            await conn.close()
    return report
