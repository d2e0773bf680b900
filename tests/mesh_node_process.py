"""One cell's embedded mesh backend (becomingone/mesh/backends/embedded.py MeshNode) as a
process of its own, for the multi-process mesh tests; prints one JSON status line per period:

    python -m tests.mesh_node_process --tls DIR --trust DIR --cell NAME --ledger DB --replicas DIR
        --port P [--host H] [--seed H:P ...] [--interval 0.5] [--t-hat RE,IM] [--devices N]
        [--append-every K]
"""
import argparse
import asyncio
import json
import sys

from becomingone.ledger import Ledger
from becomingone.mesh.backends.embedded import MeshNode
from becomingone.mesh.trust import load_trust


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m tests.mesh_node_process")
    for flag in ("--tls", "--trust", "--cell", "--ledger", "--replicas"):
        p.add_argument(flag, required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=18789)
    p.add_argument("--seed", action="append", default=[])
    p.add_argument("--interval", type=float, default=0.5)
    p.add_argument("--timeout", type=float, default=0.3)
    p.add_argument("--t-hat", default="0,0")
    p.add_argument("--devices", type=int, default=1)
    p.add_argument("--append-every", type=int, default=0, help="append an entry and sign a checkpoint every K periods")
    a = p.parse_args(argv)
    re_, im_ = (float(x) for x in a.t_hat.split(","))

    async def go():
        led = Ledger(a.ledger)
        node = MeshNode(a.tls, load_trust(a.trust), a.cell, led, a.replicas, a.host, a.port,
                        seeds=a.seed, interval=a.interval, timeout=a.timeout)
        await node.start()
        k = 0
        while True:
            k += 1
            if a.append_every and k % a.append_every == 0:
                led.append("action", {"action": "tick", "period": k})
                led.checkpoint()
            await node.period(complex(re_, im_), a.devices)
            sys.stdout.write(json.dumps(node.status(), sort_keys=True) + "\n")
            sys.stdout.flush()
            await asyncio.sleep(a.interval)
    try:
        asyncio.run(go())
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
