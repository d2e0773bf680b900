"""`becomingone bench mesh [--json] [--quick]`: consensus simulation rounds/messages to a relative
error of 1e-6 at N = 100, 1,000, 10,000 (--quick: up to 1,000) for each algorithm, on the seed's
Watts-Strogatz graph (rows `sim-<algo>-<N>`) and with full membership (rows
`sim-<algo>-complete-<N>`); placement (ring), archive (seal/restore) gossip (versioned
T_global anti-entropy over mutual TLS, 5 cells) and replication (verified ledger pull between
two cells over mutual TLS) rows, and the cluster-scale rows `nats-10`, `nats-100`, `nats-1000` (N cells
on one real nats-server, host/bench/mesh_scale.py). `--only nats-scale --cells 100,1000` runs just
those rows, in one run (same-run ratios). The target
(<= 2 log2 N rounds) is reported per row as `target_rounds` / `within_target`."""
import asyncio
import collections
import os
import random
import socket
import tempfile
import time

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from becomingone.bench.nats_server import SERVER as NATS_SERVER, nats_server
from becomingone.ledger import Ledger, checkpoint as ckpt
from becomingone.mesh.aggregate import VersionedAggregate
from becomingone.mesh.antientropy import AntiEntropy
from becomingone.mesh.archive import restore, seal_to_cells
from becomingone.mesh.backends.embedded import MeshNode
from becomingone.mesh.backends.nats import NatsCell
from becomingone.mesh.consensus import simulate
from becomingone.mesh.replica import ReplicaStore
from becomingone.mesh.replication import Replicator
from becomingone.mesh.ring import Ring
from becomingone.mesh.tls import init_mesh
from becomingone.mesh.trust import load_trust, write_trust

WS_ALGOS = ("pushsum", "emtd", "swarm", "versioned")
COMPLETE_ALGOS = ("pushsum", "swarm", "versioned")


def add_arguments(p):
    p.add_argument("--max-rounds", type=int, default=3000, help="round cap per simulation")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sizes", default=None, help="comma-separated N (default 100,1000,10000)")
    p.add_argument("--only", default=None,
                   help="comma-separated row groups to run: sim, ring, archive, gossip, traffic, replication, "
                        "nats, nats-scale (default: all)")
    p.add_argument("--cells", default=None,
                   help="nats-scale: comma-separated cell counts, one row each, in one run "
                        "(default 10,100,1000; --quick 10)")


def _sim_row(name, res):
    keep = ("algo", "graph", "nodes", "rounds", "messages", "converged", "rounds_run", "agreement_round",
            "final_error", "target_rounds", "within_target", "seconds", "values_sent")
    row = {"name": name}
    row.update({k: res[k] for k in keep if k in res})
    return row


def sim_rows(sizes, max_rounds, seed):
    rows = []
    for n in sizes:
        for algo in WS_ALGOS:
            rows.append(_sim_row("sim-%s-%d" % (algo, n),
                                 simulate(n, algo, seed=seed, max_rounds=max_rounds, graph="ws")))
        for algo in COMPLETE_ALGOS:
            rows.append(_sim_row("sim-%s-complete-%d" % (algo, n),
                                 simulate(n, algo, seed=seed, max_rounds=max_rounds, graph="complete")))
    return rows


def ring_rows(quick):
    cells = {"cell-%02d" % i: (1.0, 0.0) for i in range(20)}
    keys = ["shard-%d" % i for i in range(20000 if quick else 200000)]
    t = time.perf_counter()
    ring = Ring(cells)
    build = time.perf_counter() - t
    t = time.perf_counter()
    before = [ring.get(k) for k in keys]
    per_get = (time.perf_counter() - t) / len(keys)
    share0 = ring.shares()["cell-00"]
    moved_space = ring.set_load("cell-00", 3.0)   # one hot cell: weight 1/(1+3)
    after = [ring.get(k) for k in keys]
    moved = sum(a != b for a, b in zip(before, after)) / len(keys)
    share = after.count("cell-00") / len(keys)
    return [{"name": "ring", "cells": 20, "vnodes_per_unit": ring.vnodes, "build_seconds": build,
             "get_us": per_get * 1e6, "hot_cell_share_before": share0, "hot_cell_share": share,
             "fair_share_1_of_20": 1 / 20, "moved_keys_fraction": moved,
             "moved_space_fraction": moved_space,
             "hot_cell_share_change": share0 - ring.shares()["cell-00"]}]


def archive_rows(quick):
    n_entries = 5000 if quick else 50000
    rows = []
    with tempfile.TemporaryDirectory() as d:
        db = os.path.join(d, "src", "ledger.sqlite")
        os.makedirs(os.path.dirname(db))
        with Ledger(db) as led:
            led.append_many([("action", {"action": "bench", "i": i}) for i in range(n_entries - 1)])
        cells = Ring({"cell-%d" % i: (1.0, 0.0) for i in range(6)})
        t = time.perf_counter()
        info = seal_to_cells(db, 0, None, 4, 6, cells, os.path.join(d, "cells"))
        seal_s = time.perf_counter() - t
        used = [os.path.dirname(s["path"]) for s in info["shards"]][2:]   # lose 2 of 6 cells
        t = time.perf_counter()
        res = restore(used, 4, os.path.join(d, "restored.sqlite"))
        rest_s = time.perf_counter() - t
        rows.append({"name": "archive-seal", "entries": n_entries, "k": 4, "n": 6,
                     "seconds": seal_s, "entries_per_s": n_entries / seal_s,
                     "segment_bytes": info["segment_bytes"], "shard_bytes": info["shard_bytes"]})
        rows.append({"name": "archive-restore", "entries": res["size"], "k": 4, "n": 6,
                     "seconds": rest_s, "entries_per_s": res["size"] / rest_s})
    return rows


def gossip_rows(quick, cells=5, interval=1.0):
    """Anti-entropy of the versioned T_global map over mutual TLS on loopback: every cell
    publishes a new value and runs one exchange per interval (1 s, the live default)."""
    names = ["cell-%d" % i for i in range(cells)]
    rounds = 10 if quick else 40
    with tempfile.TemporaryDirectory() as d:
        init_mesh(d, names)
        priv = {c: Ed25519PrivateKey.generate() for c in names}
        pub = {c: k.public_key() for c, k in priv.items()}

        async def go():
            aggs = {c: VersionedAggregate(c, priv[c], pub) for c in names}
            nodes = {c: AntiEntropy(aggs[c], d, c, rng=random.Random(i)) for i, c in enumerate(names)}
            ports = {c: await nodes[c].start("127.0.0.1", 0) for c in names}
            for c in names:
                nodes[c].peers = [("127.0.0.1", ports[p], p) for p in names if p != c]
            rng = random.Random(0)
            t = time.perf_counter()
            for _ in range(rounds):
                for c in names:
                    aggs[c].publish(complex(rng.uniform(-0.5, 0.5), rng.uniform(-0.5, 0.5)), rng.randint(1, 9))
                await asyncio.gather(*(n.exchange() for n in nodes.values()))
            wall = time.perf_counter() - t
            for n in nodes.values():
                await n.close()
            sent = sum(n.bytes_sent for n in nodes.values())
            return wall, sent, sum(n.failures for n in nodes.values())
        wall, sent, failures = asyncio.run(go())
    per_round = sent / cells / rounds
    return [{"name": "gossip", "cells": cells, "rounds": rounds, "interval_s": interval,
             "bytes_per_cell_per_s": per_round / interval, "bytes_per_cell_per_round": per_round,
             "exchange_ms": wall / rounds * 1000, "failures": failures,
             "note": "application bytes (frames + JSON), TLS record overhead not counted"}]


async def _counting_proxy(listen_host, port, target_host, counter):
    """TCP relay listen_host:port -> target_host:port counting every byte both ways (TLS
    records and handshakes included): what the wire carries for that cell's listener."""

    async def pipe(r, w):
        try:
            while True:
                data = await r.read(65536)
                if not data:
                    break
                counter["bytes"] += len(data)
                w.write(data)
                await w.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            w.close()

    async def client(r, w):
        counter["connections"] += 1
        try:
            tr, tw = await asyncio.open_connection(target_host, port)
        except OSError:
            w.close()
            return
        await asyncio.gather(pipe(r, tw), pipe(tr, w))
    return await asyncio.start_server(client, listen_host, port)


def traffic_rows(quick, cells=5, interval=1.0):
    """Everything the live mesh sends (MeshNode: SWIM probes, anti-entropy of T_global, ledger
    heads and replication pulls, over mutual TLS), measured on the wire: each cell listens on
    127.0.0.2:P behind a counting relay on 127.0.0.1:P that the others are told about, so every
    TCP byte (TLS handshakes and records included) is counted once. One period per interval
    (1 s, the live default), ledgers idle after the first full replication."""
    names = ["cell-%d" % i for i in range(cells)]
    periods = 5 if quick else 15
    with tempfile.TemporaryDirectory() as d:
        init_mesh(os.path.join(d, "tls"), names)
        leds = {}
        for c in names:
            os.makedirs(os.path.join(d, c))
            led = leds[c] = Ledger(os.path.join(d, c, "ledger.sqlite"))
            led.append_many([("action", {"action": "tick", "i": i}) for i in range(100)])
            led.checkpoint()
            write_trust(os.path.join(d, "trust"), c, led)
        trust = load_trust(os.path.join(d, "trust"))
        ports = {}
        for c in names:
            with socket.socket() as sk:
                sk.bind(("127.0.0.1", 0))
                ports[c] = sk.getsockname()[1]

        async def go():
            counter = collections.Counter()
            relays = [await _counting_proxy("127.0.0.1", ports[c], "127.0.0.2", counter) for c in names]
            seed = ["127.0.0.1:%d" % ports[names[0]]]
            nodes = [MeshNode(os.path.join(d, "tls"), trust, c, leds[c], os.path.join(d, c, "replicas"),
                              host="127.0.0.2", port=ports[c], seeds=seed if i else (),
                              interval=interval, advertise="127.0.0.1") for i, c in enumerate(names)]
            for n in nodes:
                await n.start()
            for _ in range(40):               # membership and first replication settle
                await asyncio.gather(*(n.period(0.1 + 0.1j, 3) for n in nodes))
                if all(n.alive_count() == cells for n in nodes) and \
                        all(n.store.size(leds[c].origin) == leds[c].size
                            for n in nodes for c in names if c != n.cell):
                    break
                await asyncio.sleep(interval / 4)
            base = dict(counter)
            t = time.perf_counter()
            for _ in range(periods):
                t0 = time.perf_counter()
                await asyncio.gather(*(n.period(0.1 + 0.1j, 3) for n in nodes))
                await asyncio.sleep(max(0.0, interval - (time.perf_counter() - t0)))
            wall = time.perf_counter() - t
            alive = min(n.alive_count() for n in nodes)
            for n in nodes:
                await n.close()
            for r in relays:
                r.close()
            return (counter["bytes"] - base.get("bytes", 0), counter["connections"] - base.get("connections", 0),
                    wall, alive)
        sent, conns, wall, alive = asyncio.run(go())
        for led in leds.values():
            led.close()
    return [{"name": "mesh-traffic", "cells": cells, "periods": periods, "interval_s": interval,
             "bytes_per_cell_per_s": sent / cells / wall, "tls_connections_per_cell_per_s": conns / cells / wall,
             "alive_min": alive,
             "note": "all mesh services on the wire (TCP payload: TLS handshakes and records), idle ledgers"}]


def replication_rows(quick):
    """One cell pulls another's ledger over mutual TLS on loopback (verified, written)."""
    n = 10000 if quick else 100000
    with tempfile.TemporaryDirectory() as d:
        init_mesh(os.path.join(d, "tls"), ["cell-a", "cell-b"])
        os.makedirs(os.path.join(d, "a"))
        led = Ledger(os.path.join(d, "a", "ledger.sqlite"))
        led.append_many([("witness", {"device": i % 50, "layer": "micro", "seq": i}) for i in range(n - 1)])
        led.checkpoint()
        pub = ckpt.load_public_key(led.public_key_pem().encode())
        store = ReplicaStore(os.path.join(d, "b"), {led.origin: pub})

        async def go():
            ra = Replicator(led, ReplicaStore(os.path.join(d, "a-rep"), {}), os.path.join(d, "tls"), "cell-a")
            port = await ra.start("127.0.0.1", 0)
            rb = Replicator(None, store, os.path.join(d, "tls"), "cell-b", peers=[("127.0.0.1", port, "cell-a")])
            t = time.perf_counter()
            rep = await rb.pull()
            wall = time.perf_counter() - t
            await ra.close()
            return rep, wall
        rep, wall = asyncio.run(go())
        ok = store.root(led.origin) == led.root()
        store.close()
        led.close()
    got = rep["applied"].get(led.origin, 0)
    return [{"name": "replication", "entries": got, "seconds": wall, "entries_per_s": got / wall,
             "target_entries_per_s": 20000, "root_matches": ok}]


def nats_rows(quick):
    """Ledger replication through a real nats-server (JetStream) on loopback, if installed."""
    server = NATS_SERVER
    try:
        import nats  # noqa: F401  (nats-py: optional, the `nats` extra; only checked for here)
    except ImportError:
        server = None
    if server is None:
        return [{"name": "replication-nats", "skipped": "nats-server or nats-py not installed"}]
    n = 10000 if quick else 100000
    with tempfile.TemporaryDirectory() as d, nats_server(os.path.join(d, "js")) as url:
        os.makedirs(os.path.join(d, "a"))
        led = Ledger(os.path.join(d, "a", "ledger.sqlite"))
        led.append_many([("witness", {"device": i % 50, "layer": "micro", "seq": i}) for i in range(n - 1)])
        store = ReplicaStore(os.path.join(d, "b"), {led.origin: ckpt.load_public_key(led.public_key_pem().encode())})

        async def go():
            ca, cb = NatsCell(url, "cell-a", ledger=led), NatsCell(url, "cell-b", store=store)
            await ca.connect()
            await cb.connect()
            t = time.perf_counter()
            await ca.publish_ledger()
            t_pub = time.perf_counter() - t
            t = time.perf_counter()
            got = await cb.pull(led.origin)
            t_pull = time.perf_counter() - t
            await ca.close()
            await cb.close()
            return got, t_pub, t_pull
        got, t_pub, t_pull = asyncio.run(go())
        ok = store.root(led.origin) == led.root()
        store.close()
        led.close()
    return [{"name": "replication-nats", "entries": got, "publish_entries_per_s": n / t_pub,
             "pull_verify_entries_per_s": got / t_pull, "entries_per_s": got / (t_pub + t_pull),
             "root_matches": ok}]


GROUPS = ("sim", "ring", "archive", "gossip", "traffic", "replication", "nats", "nats-scale")


def collect(args):
    quick = bool(getattr(args, "quick", False))
    only = set(GROUPS) if not getattr(args, "only", None) else {x.strip() for x in args.only.split(",") if x.strip()}
    bad = only - set(GROUPS)
    if bad:
        from becomingone.errors import UserError
        raise UserError("bench mesh --only: unknown row group(s) %s (allowed: %s)"
                        % (", ".join(sorted(bad)), ", ".join(GROUPS)))
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
    else:
        sizes = [100, 1000] if quick else [100, 1000, 10000]
    rows = sim_rows(sizes, args.max_rounds, args.seed) if "sim" in only else []
    try:
        for name, fn in (("ring", ring_rows), ("archive", archive_rows), ("gossip", gossip_rows),
                         ("traffic", traffic_rows), ("replication", replication_rows), ("nats", nats_rows)):
            if name in only:
                rows += fn(quick)
        if "nats-scale" in only:
            from becomingone.bench.mesh_scale import scale_rows
            cells = [int(c) for c in args.cells.split(",")] if getattr(args, "cells", None) else None
            rows += scale_rows(quick, cells)
    except ImportError:
        pass
    return rows
