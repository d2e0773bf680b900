"""Rows `nats-10`, `nats-100`, `nats-1000` of `becomingone bench mesh`: N cells on ONE real
nats-server (JetStream) on this machine, each cell a NatsMesh (host/mesh/backends/nats.py) with
its own NATS connection, a real ledger (SQLite, Ed25519 signing key) and its trust file, run as
asyncio tasks in a few worker processes (`python -m becomingone.bench.mesh_scale --worker`).

Every cell runs one mesh period per `interval` (1 s, the live default): publishes its signed T_hat,
does its part of the tree aggregate; it writes one entry per period to its ledger (handed to the
ledger's writer thread, as in a coordinator, five at a time); every `publish_every` (5 s, the
checkpoint interval) it publishes its ledger (a signed checkpoint); it follows the ledgers the ring assigns it (fan-out 3) as they are published and
checks one other origin's head every 5 s. Measured, after every cell agrees on T_global and on N cells alive,
holds every group's membership record and follows every ledger the ring assigns it:
- msgs/bytes per cell per second: the NATS client's counters of every cell's connection, in and
  out, over a steady window (`window` s), and by kind (`msgs_by_kind_per_cell_per_s`: value,
  group, summary, global, members-kv, ledger, rpc, JetStream API; "-reply" the answers to this
  cell's requests, "-answer" its answers to others'); `subscriptions_per_cell` (mean, max);
- CPU ms per cell per second: the worker processes' CPU time over the same window / N (the
  nats-server's own CPU is reported beside it, per cell);
- tglobal_converge_s: one cell changes its value (and device count); the time until T_global at
  every cell equals the new device-weighted mean (1e-9);
- dead_detect_s: one cell is killed (its task cancelled, its connection closed, nothing said);
  the time until every other cell holds it dead (its group's membership record);
- replication lag at the fan-out: for every ledger publish, the time from the owner's publish
  to each ring holder's verified apply (p50, p99, max), and how many of the expected applies
  happened.
"""
import argparse
import asyncio
import json
import math
import os
import random
import signal
import subprocess
import sys
import tempfile
import time

from becomingone.bench.nats_server import SERVER as NATS_SERVER, nats_server
from becomingone.mesh.hierarchy import DEFAULT_EPS as VALUE_EPS

__all__ = ["scale_rows", "scale_row"]

TOL = 1.5e-3             # T_global agrees within the damping of the group message (value_epsilon / 10)
DRIFT = 0.002             # std of each T_hat component's random step per period in the steady window


def cell_name(i):
    return "cell-%04d" % i


def value(i):
    """Cell i's published (T_hat, devices) before any change."""
    ang = 2 * math.pi * ((i * 0.618033988749895) % 1.0)
    return complex(0.3 * math.cos(ang), 0.3 * math.sin(ang)), 1 + i % 5


def expected(values):
    n = sum(d for _v, d in values.values())
    return sum(v * d for v, d in values.values()) / n


# ------------------------------------------------------------------ traffic by kind
def subject_kind(subject):
    """The kind of traffic a NATS subject carries (the `by_kind` breakdown of a row)."""
    s = subject
    if s.startswith("bo.agg.0."):
        return "value"                 # a cell's value or heartbeat to its level-0 group
    if s.startswith("bo.agg."):
        return "summary"               # a group leader's summary to its parent group
    if s.startswith("bo.grp."):
        return "group"                 # a level-0 leader's group message to its members
    if s.startswith("bo.up.") or s.startswith("bo.down."):
        return "tree-" + s.split(".")[1]
    if s == "bo.global" or s.startswith("bo.global."):
        return "global"
    if s.startswith("bo.ledger."):
        return "ledger"                # ledger blocks (published, or pushed to a replica)
    if s.startswith("bo.rpc."):
        return "rpc"                   # consistency proofs, shards
    if s.startswith("bo.evidence"):
        return "evidence"
    if s.startswith("$KV.bo_groups.") or s.startswith("$KV.bo_members."):
        return "members-kv"
    if s.startswith("$KV.bo_checkpoints."):
        return "checkpoint-kv"
    if s.startswith("$JS.API.DIRECT.GET") or s.startswith("$JS.API.STREAM.MSG.GET"):
        return "js-get"
    if s.startswith("$JS.API.CONSUMER"):
        return "js-consumer"
    if s.startswith("$JS.API."):
        return "js-api"
    if s.startswith("$JS.ACK"):
        return "js-ack"
    return "other"


def count_by_kind(nc, table):
    """Count a nats-py client's messages in and out by kind into table {kind: [in, out, in_bytes,
    out_bytes]}; an answer (to an inbox) is counted as "<kind of the request>-reply"."""
    pending = {}
    send, process = nc._send_publish, nc._process_msg

    def add(kind, i, size):
        row = table.get(kind)
        if row is None:
            row = table[kind] = [0, 0, 0, 0]
        row[i] += 1
        row[i + 2] += size

    async def _send_publish(subject, reply, payload, payload_size, headers):
        kind = pending.pop(subject, None)
        kind = kind + "-answer" if kind is not None else subject_kind(subject)
        if reply:
            if len(pending) > 10000:
                pending.clear()
            pending[reply] = kind
        add(kind, 1, payload_size)
        return await send(subject, reply, payload, payload_size, headers)

    async def _process_msg(sid, subject, reply, data, headers):
        subj = subject.decode() if isinstance(subject, (bytes, bytearray)) else subject
        kind = pending.pop(subj, None)
        if kind is not None:
            kind += "-reply"
        else:
            kind = subject_kind(subj)
            rep = reply.decode() if isinstance(reply, (bytes, bytearray)) else reply
            if rep and not rep.startswith("$JS.ACK"):
                pending[rep] = kind       # a request to us: our answer is counted as its reply
        add(kind, 0, len(data))
        return await process(sid, subject, reply, data, headers)
    nc._send_publish, nc._process_msg = _send_publish, _process_msg


# ------------------------------------------------------------------ the worker process
TREE_EVENTS = ("member_writes", "records_in", "records_carried", "resyncs", "took_lead", "stepped_down", "starved",
               "values_sent")
class Worker:
    def __init__(self, a):
        self.a = a
        self.names = [cell_name(i) for i in range(a.first, a.first + a.count)]
        self.meshes, self.tasks, self.leds = {}, {}, {}
        self.values = {c: value(a.first + k) for k, c in enumerate(self.names)}
        self.target = None
        self.hit = {}
        self.published = {}            # origin -> [[size, t]]
        self.applied = []              # [holder, origin, size, t]
        self.errors = {}
        self.killed = set()
        self.late = 0.0
        self.drift, self.walk, self.rng = False, {}, random.Random(a.first)
        self.measuring, self.lates = False, []
        self.kinds = {}                # kind -> [in, out, in_bytes, out_bytes] over this worker's cells
        self.subs = {}                 # cell -> subscriptions held (sampled at stats)
        self._fd = None

    def setup(self):
        from becomingone.ledger import Ledger
        from becomingone.mesh.trust import write_trust
        for c in self.names:
            d = os.path.join(self.a.dir, c)
            os.makedirs(d, exist_ok=True)
            # synchronous NORMAL (ledger.synchronous): a commit survives a crash of the process; a
            # thousand fsyncs a second would measure this machine's disk, not the mesh
            led = self.leds[c] = Ledger(os.path.join(d, "ledger.sqlite"), synchronous="NORMAL")
            led.append("action", {"action": "bench", "cell": c})
            write_trust(os.path.join(self.a.dir, "trust"), c, led)
        return {"ok": True, "origins": {c: led.origin for c, led in self.leds.items()}}

    async def start(self):
        from becomingone.mesh.backends.nats import NatsMesh
        a = self.a
        for c in self.names:
            m = NatsMesh(a.url, c, self.leds[c], os.path.join(a.dir, "trust"), os.path.join(a.dir, c, "replicas"),
                         interval=a.interval, member_ttl=a.ttl, publish_every=a.publish_every,
                         fanout=a.fanout, group_size=a.group, write_own_trust=False)
            m.on_applied = (lambda origin, size, t, c=c: self.applied.append([c, origin, size, t]))
            await m.start()
            count_by_kind(m.nats.nc, self.kinds)
            self.meshes[c] = m
        loop = asyncio.get_running_loop()
        for k, c in enumerate(self.names):     # spread over one interval
            self.tasks[c] = loop.create_task(self._run(c, k * a.interval / len(self.names)))
        return {"ok": True, "started": len(self.meshes)}

    async def _run(self, c, delay):
        m, led, a = self.meshes[c], self.leds[c], self.a
        await asyncio.sleep(delay)
        nxt = time.monotonic()
        k, seen = 0, 0
        every = max(1, int(round(a.publish_every / a.interval)))
        while True:
            k += 1
            started_late = time.monotonic() - nxt
            if self.measuring:
                self.lates.append(max(0.0, started_late))   # how late this period began
            if k % every == 0:
                # one entry per period, handed to the ledger's writer thread (as a coordinator's) a
                # checkpoint interval's worth at a time
                for j in range(every):
                    led.submit("action", {"action": "tick", "cell": c, "k": k - j})
            v, n = self.values[c]
            if self.drift:                        # T_hat wanders (a random walk) as a live cell's does
                w = self.walk.get(c, 0j) + complex(self.rng.gauss(0, a.drift), self.rng.gauss(0, a.drift))
                w = self.walk[c] = w if abs(w) < 0.1 else w * 0.9
                v = v + w
            try:
                await m.period(v, n)
            except Exception as e:            # counted: the next period tries again
                self.errors[type(e).__name__] = self.errors.get(type(e).__name__, 0) + 1
            if m.nats.published_size != seen:       # published by the mesh's background task
                seen = m.nats.published_size
                self.published.setdefault(led.origin, []).append([seen, m.nats.published_at])
            self._check(c, m)
            nxt += a.interval
            late = time.monotonic() - nxt
            self.late = max(self.late * 0.99, started_late)
            if late > a.interval:                 # far behind (an overloaded machine): skip, do not burst
                nxt = time.monotonic()
            await asyncio.sleep(max(0.0, nxt - time.monotonic()))

    def _check(self, c, m):
        tg = self.target
        if tg is None or c in self.hit:
            return
        t, _w = m.agg.t_global()
        if tg.get("t") is not None and abs(t - complex(*tg["t"])) > TOL:
            return
        if tg.get("alive") is not None and m.alive_count() != tg["alive"]:
            return
        if tg.get("dead") is not None and m.is_alive(tg["dead"]):
            return
        if tg.get("members") is not None and m.agg.view_digest() != self._full_digest(m):
            return                                # every group's membership record held (its digest)
        if tg.get("follows") and not set(m.nats.follows) >= m._replicate:
            return                                # following every ledger the ring assigns it

        self.hit[c] = time.time()

    def _full_digest(self, m):
        """The membership digest of every cell alive (what each cell's records add up to then)."""
        lay = m.agg.layout
        if self._fd is None or self._fd[0] is not lay:
            from becomingone.mesh.hierarchy import digest
            self._fd = (lay, digest(lay.cells, lay.h64))
        return self._fd[1]

    def stats(self):
        s = {"in_msgs": 0, "out_msgs": 0, "in_bytes": 0, "out_bytes": 0}
        for c, m in self.meshes.items():
            if c in self.killed:
                continue
            for k, v in m.nats.stats().items():
                s[k] += v
        t = os.times()
        subs = [len(m.nats.nc._subs) for c, m in self.meshes.items() if c not in self.killed]
        live = [m for c, m in self.meshes.items() if c not in self.killed]
        ev = {k: sum(m.agg.counts.get(k, 0) for m in live) for k in TREE_EVENTS}
        for k in ("group_reads", "store_rewrites"):
            ev[k] = sum(m.counters.get(k, 0) for m in live)
        s.update(kinds={k: list(v) for k, v in self.kinds.items()}, subs_sum=sum(subs), events=ev,
                 subs_max=max(subs) if subs else 0)
        s.update(cpu=t.user + t.system, loop_cpu=time.thread_time(), cells=len(self.meshes) - len(self.killed),
                 errors=dict(self.errors),
                 alerts=sum(len(m.alerts) for m in self.meshes.values()))
        return s

    async def kill(self, c):
        if c in self.tasks:
            self.tasks.pop(c).cancel()
            self.killed.add(c)
            try:
                await self.meshes[c].nats.nc.close()
            except Exception:
                pass
        return {"ok": True}

    async def stop(self):
        for t in self.tasks.values():
            t.cancel()
        for c, m in self.meshes.items():
            try:
                await asyncio.wait_for(m.close(), 5)
            except Exception:
                pass
        for led in self.leds.values():
            led.close()
        return {"ok": True}

    async def handle(self, cmd):
        op = cmd["op"]
        if op == "setup":
            return self.setup()
        if op == "start":
            out = await self.start()
            _settle_heap()
            return out
        if op == "target":
            self.target, self.hit = cmd, {}
            return {"ok": True}
        if op == "published":
            return {"values": {c: [m.agg.mine["re"], m.agg.mine["im"], m.agg.mine["devices"]]
                               for c, m in self.meshes.items() if c not in self.killed and m.agg.mine}}
        if op == "measure":
            self.measuring = bool(cmd["on"])
            if self.measuring:
                _settle_heap()
                self.lates = []
            return {"late": sorted(self.lates)[::max(1, len(self.lates) // 2000)]}
        if op == "drift":
            self.drift = bool(cmd["on"])
            if not self.drift:
                self.walk = {}
            return {"ok": True}
        if op == "progress":
            live = [c for c in self.names if c not in self.killed]
            hits = [self.hit[c] for c in live if c in self.hit]
            return {"cells": len(live), "done": len(hits), "last": max(hits) if hits else None}
        if op == "change":
            if cmd["cell"] in self.values:
                re, im, n = cmd["value"]
                self.values[cmd["cell"]] = (complex(re, im), n)
            return {"ok": True}
        if op == "kill":
            return await self.kill(cmd["cell"])
        if op == "stats":
            return self.stats()
        if op == "diag":
            ms = [m for c, m in self.meshes.items() if c not in self.killed]
            tg = self.target or {}
            want = complex(*tg["t"]) if tg.get("t") else None
            alive = [m.alive_count() for m in ms]
            errs = sorted(abs(m.agg.t_global()[0] - want) for m in ms) if want is not None else []
            ages = sorted(time.monotonic() - m.agg.grp_seen for m in ms if m.agg.grp_seen is not None)
            dead = tg.get("dead")
            return {"cells": len(ms), "t_ok": sum(1 for m in ms if want is not None
                                                    and abs(m.agg.t_global()[0] - want) <= TOL),
                    "t_err_p50_max": [_pct(errs, 0.5), errs[-1] if errs else None],
                    "grp_age_p50_max": [_pct(ages, 0.5), ages[-1] if ages else None],
                    "victim_dead_at": None if dead is None else sum(1 for m in ms if not m.is_alive(dead)),
                    "t_none": sum(1 for m in ms if m.agg.grp is None or m.agg.grp["g"] is None),
                    "alive_min": min(alive) if alive else None, "alive_max": max(alive) if alive else None,
                    "leaders": sum(1 for m in ms if m.agg.leading is not None), "late_s": round(self.late, 3),
                    "members_held": sum(1 for m in ms if m.agg.view_digest() == self._full_digest(m)),
                    "follows_missing": sum(len(m._replicate - set(m.nats.follows)) for m in ms),
                    "events": {k: sum(m.agg.counts.get(k, 0) for m in ms) for k in TREE_EVENTS},
                    "counts": {k: sum(m.agg.counts[k] for m in ms) for k in ("took_lead", "stepped_down", "starved",
                                                                            "values_sent", "hb_unusable", "member_writes")},
                    "refused": sum(m.agg.refused for m in ms),
                    "errors": dict(self.errors), "cpu": sum(os.times()[:2])}
        if op == "repl":
            return {"published": self.published, "applied": self.applied}
        if op == "stop":
            return await self.stop()
        return {"error": "unknown op %r" % op}


# The cyclic garbage collector in a worker: 250 cells' worth of long-lived objects (ledgers,
# replicas, trust keys, NATS clients: about 250,000 objects) in ONE heap, where a real cell has
# one cell's. Left alone, each full collection walks all of them and stops all 250 cells' periods
# (0.5 s pauses measured, and about 10 % of the worker's time in collections at 250 cells), a cost
# of packing cells into one process, not of a cell. So the heap built at start, and again once the
# mesh has settled (replicas opened, subscriptions made), is frozen out of the collector's walks
# (gc.freeze; garbage made later is still collected) and young collections run less often.
GC_THRESHOLDS = (10000, 20, 20)


def _settle_heap():
    import gc
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


async def _worker_main(a):
    w = Worker(a)
    loop = asyncio.get_running_loop()
    if os.environ.get("BO_BENCH_SLOW_CALLBACKS"):       # diagnosis: name what blocks the loop
        import logging
        logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
        loop.set_debug(True)
        loop.slow_callback_duration = float(os.environ["BO_BENCH_SLOW_CALLBACKS"])
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while True:
        line = await reader.readline()
        if not line:
            await w.stop()
            return
        cmd = json.loads(line)
        try:
            out = await w.handle(cmd)
        except Exception as e:
            out = {"error": "%s: %s" % (type(e).__name__, e)}
        sys.stdout.write(json.dumps(out) + "\n")
        sys.stdout.flush()
        if cmd["op"] == "stop":
            return


# ------------------------------------------------------------------ the driver
class _Procs:
    def __init__(self, procs, verbose=False):
        self.procs, self.verbose = procs, verbose

    def all(self, cmd, timeout=300.0):
        for p in self.procs:
            p.stdin.write(json.dumps(cmd) + "\n")
            p.stdin.flush()
        out = []
        for p in self.procs:
            line = p.stdout.readline()
            if not line:
                raise RuntimeError("a mesh bench worker died (op %s)" % cmd["op"])
            out.append(json.loads(line))
        for o in out:
            if "error" in o:
                raise RuntimeError("mesh bench worker: %s" % o["error"])
        return out

    def wait(self, limit, poll=0.25):
        """Until every live cell met the target -> (seconds since the target was set or None)."""
        end = time.time() + limit
        shown = time.time()
        while time.time() < end:
            got = self.all({"op": "progress"})
            if all(g["done"] == g["cells"] for g in got):
                return max(g["last"] for g in got if g["last"] is not None)
            if self.verbose and time.time() - shown > 5:
                shown = time.time()
                print("mesh bench: %s" % json.dumps(self.all({"op": "diag"})), file=sys.stderr)
            time.sleep(poll)
        return None


def _server_cpu(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            parts = f.read().rsplit(")", 1)[1].split()
        return (int(parts[11]) + int(parts[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def _pct(xs, q):
    if not xs:
        return None
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


def scale_row(n, window=20.0, interval=1.0, ttl=5.0, group=16, fanout=3, publish_every=5.0, workers=None,
              settle_limit=None, verbose=False):
    """One `nats-N` row (see the module docstring)."""
    workers = workers or max(1, min(4, math.ceil(n / 250)))
    t_all = time.time()
    with tempfile.TemporaryDirectory(prefix="bo-scale-") as d, nats_server(os.path.join(d, "js"), pid_out=True) as (url, pid):
        per = math.ceil(n / workers)
        procs = []
        for w in range(workers):
            first = w * per
            count = min(per, n - first)
            if count <= 0:
                break
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "becomingone.bench.mesh_scale", "--worker", "--url", url, "--dir", d,
                 "--first", str(first), "--count", str(count), "--interval", str(interval), "--ttl", str(ttl),
                 "--group", str(group), "--fanout", str(fanout), "--publish-every", str(publish_every),
                 "--drift", str(DRIFT)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1))
        ps = _Procs(procs, verbose)
        try:
            origins = {}
            for r in ps.all({"op": "setup"}):
                origins.update(r["origins"])
            values = {cell_name(i): value(i) for i in range(n)}
            t0 = time.time()
            ps.all({"op": "start"})
            # settled: T_global and the live count right at every cell, every group's membership
            # record held, every ring-assigned ledger followed (start-up catch-up is not steady traffic)
            ps.all({"op": "target", "t": [expected(values).real, expected(values).imag], "alive": n,
                    "members": n, "follows": True})
            limit = settle_limit or (60.0 + n * 0.2)
            settled = ps.wait(limit) is not None
            if not settled:                       # measured anyway, and said so (with what was missing)
                unsettled = ps.all({"op": "diag"})
                unsettled = {k: [d[k] for d in unsettled] for k in ("t_ok", "alive_min", "members_held",
                                                                    "follows_missing", "late_s")}
            settle_s = time.time() - t0 if settled else None
            t_settled = time.time()
            # steady window: every T_hat wanders (a random walk of `drift` per period)
            ps.all({"op": "drift", "on": True})
            time.sleep(3 * interval)
            ps.all({"op": "measure", "on": True})
            a, ca = ps.all({"op": "stats"}), _server_cpu(pid)
            ta = time.time()
            time.sleep(window)
            b, cb = ps.all({"op": "stats"}), _server_cpu(pid)
            dt = time.time() - ta
            lates = sorted(x for r in ps.all({"op": "measure", "on": False}) for x in r["late"])
            ps.all({"op": "drift", "on": False})
            time.sleep(2 * interval)
            # what the cells published last (within value_epsilon of their T_hat): T_global's inputs
            values = {}
            for r in ps.all({"op": "published"}):
                values.update({c: (complex(re, im), d) for c, (re, im, d) in r["values"].items()})
            ps.all({"op": "target", "t": [expected(values).real, expected(values).imag]})
            if ps.wait(60.0) is None:
                raise RuntimeError("nats-%d: T_global did not come back after the drift" % n)
            tot = {k: sum(x[k] for x in b) - sum(x[k] for x in a)
                   for k in ("in_msgs", "out_msgs", "in_bytes", "out_bytes", "cpu", "loop_cpu")}
            # a change of one cell's value
            changed = cell_name(n // 2)
            values[changed] = (0.9 + 0.1j, 50)
            want = expected(values)
            ps.all({"op": "target", "t": [want.real, want.imag]})
            tc = time.time()
            ps.all({"op": "change", "cell": changed, "value": [0.9, 0.1, 50]})
            got = ps.wait(60.0)
            converge = None if got is None else max(0.0, got - tc)
            # a killed cell
            victim = cell_name(n - 1 if n > 1 else 0)
            ps.all({"op": "target", "dead": victim})
            tk = time.time()
            ps.all({"op": "kill", "cell": victim})
            got = ps.wait(90.0)
            dead = None if got is None else max(0.0, got - tk)
            repl = ps.all({"op": "repl"})
            end = ps.all({"op": "stats"})
            ps.all({"op": "stop"})
        finally:
            for p in procs:
                try:
                    p.stdin.close()
                except OSError:
                    pass
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()                      # by PID: the worker we started
                    p.wait(5)
    lags, expected_applies, applies = _lags(repl, origins, n, fanout, t_settled, t_end=tk)
    kinds = {}
    for x in b:
        for k, v in x["kinds"].items():
            kinds[k] = [p + q for p, q in zip(kinds.get(k, [0, 0, 0, 0]), v)]
    for x in a:
        for k, v in x["kinds"].items():
            kinds[k] = [p - q for p, q in zip(kinds[k], v)]
    events = {k: sum(x["events"].get(k, 0) for x in b) - sum(x["events"].get(k, 0) for x in a)
              for k in b[0]["events"]}
    by_kind = {k: {"in": round(v[0] / n / dt, 3), "out": round(v[1] / n / dt, 3),
                   "bytes": round((v[2] + v[3]) / n / dt, 1)}
               for k, v in sorted(kinds.items(), key=lambda kv: -(kv[1][0] + kv[1][1])) if v[0] + v[1]}
    errors = {}
    for e in end:
        for k, v in e["errors"].items():
            errors[k] = errors.get(k, 0) + v
    return {"name": "nats-%d" % n, "cells": n, "workers": len(procs), "interval_s": interval, "group_size": group,
            "t_hat_drift_per_period": DRIFT, "value_epsilon": VALUE_EPS,
            "fanout": fanout, "member_ttl_s": ttl, "window_s": round(dt, 2),
            "msgs_per_cell_per_s": (tot["in_msgs"] + tot["out_msgs"]) / n / dt,
            "msgs_in_per_cell_per_s": tot["in_msgs"] / n / dt, "msgs_out_per_cell_per_s": tot["out_msgs"] / n / dt,
            "bytes_per_cell_per_s": (tot["in_bytes"] + tot["out_bytes"]) / n / dt,
            "cpu_ms_per_cell_per_s": tot["loop_cpu"] * 1000 / n / dt,
            "cpu_with_ledger_ms_per_cell_per_s": tot["cpu"] * 1000 / n / dt,
            "server_cpu_ms_per_cell_per_s": None if ca is None or cb is None else (cb - ca) * 1000 / n / dt,
            "period_late_p50_s": _pct(lates, 0.5), "period_late_p99_s": _pct(lates, 0.99),
            "tglobal_converge_s": converge, "dead_detect_s": dead,
            "replication_lag_p50_s": _pct(lags, 0.5), "replication_lag_p99_s": _pct(lags, 0.99),
            "replication_lag_max_s": max(lags) if lags else None,
            "replica_applies": applies, "replica_applies_expected": expected_applies,
            "msgs_by_kind_per_cell_per_s": by_kind,
            "tree_events_in_window": events,
            "subscriptions_per_cell": [round(sum(x["subs_sum"] for x in b) / max(1, sum(x["cells"] for x in b)), 2),
                                       max(x["subs_max"] for x in b)],
            "settle_s": settle_s, "settled": settled, **({} if settled else {"unsettled": unsettled}),
            "errors": errors, "alerts": sum(e["alerts"] for e in end),
            "seconds": time.time() - t_all}


def _lags(repl, origins, n, fanout, t_start, t_end):
    """Replication lag of every (publish, ring holder) pair published between t_start (the
    mesh settled) and 10 s before t_end -> (lags, applies expected, applies seen)."""
    from becomingone.mesh.ring import ledger_holders
    cell_of = {o: c for c, o in origins.items()}
    pub, app = {}, {}
    for r in repl:
        for origin, evs in r["published"].items():
            pub.setdefault(origin, []).extend(evs)
        for holder, origin, size, t in r["applied"]:
            app[(holder, origin, size)] = t
    holders = ledger_holders([cell_name(i) for i in range(n)], fanout)
    lags, want, got = [], 0, 0
    for origin, evs in pub.items():
        for size, t in evs:
            if not t_start <= t <= t_end - 10.0:   # still settling, or too late to be judged
                continue
            for h in holders.get(cell_of.get(origin), ()):
                want += 1
                ta = app.get((h, origin, size))
                if ta is not None:
                    got += 1
                    lags.append(max(0.0, ta - t))
    return lags, want, got


def scale_rows(quick, cells=None):
    """nats-10, nats-100 and nats-1000 (quick: nats-10 alone, a smoke test at a 0.5 s period and
    a 4 s window, about 20 s; or one row per count in `cells`), or a skip row without the server.
    nats-1000 carries its ratios against nats-100 of the same run."""
    try:
        import nats  # noqa: F401  (nats-py: optional, the `nats` extra; only checked for here)
    except ImportError:
        return [{"name": "nats-scale", "skipped": "nats-py not installed"}]
    if NATS_SERVER is None:
        return [{"name": "nats-scale", "skipped": "nats-server not installed (Debian package nats-server)"}]
    if quick and not cells:
        cells, how = (10,), {"window": 4.0, "interval": 0.5, "ttl": 2.5, "publish_every": 2.5}
    else:
        cells, how = cells or (10, 100, 1000), {"window": 10.0 if quick else 20.0}
    rows = [scale_row(n, **how) for n in cells]
    by = {r["cells"]: r for r in rows}
    if 1000 in by and 100 in by:
        for k in ("msgs_per_cell_per_s", "bytes_per_cell_per_s", "cpu_ms_per_cell_per_s"):
            by[1000][k.replace("_per_cell_per_s", "_ratio_vs_100")] = by[1000][k] / by[100][k]
    return rows


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--worker", action="store_true")
    p.add_argument("--url")
    p.add_argument("--dir")
    p.add_argument("--first", type=int)
    p.add_argument("--count", type=int)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--ttl", type=float, default=5.0)
    p.add_argument("--group", type=int, default=16)
    p.add_argument("--fanout", type=int, default=3)
    p.add_argument("--publish-every", type=float, default=5.0)
    p.add_argument("--drift", type=float, default=DRIFT)
    p.add_argument("--cells", type=int, default=None, help="driver: one row with this many cells")
    p.add_argument("--window", type=float, default=20.0)
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--verbose", action="store_true", help="driver: progress on stderr every 5 s")
    a = p.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_a: sys.exit(143))   # finally blocks run: servers stopped
    if a.worker:
        asyncio.run(_worker_main(a))
        return 0
    print(json.dumps(scale_row(a.cells or 10, window=a.window, interval=a.interval, ttl=a.ttl, group=a.group,
                               fanout=a.fanout, publish_every=a.publish_every, workers=a.workers,
                               verbose=a.verbose), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
