"""SWIM membership (host/mesh/swim.py) on an in-memory network with a manual clock: join,
kill -> suspect -> dead, restart -> rejoin, partition and heal, refutation of a false suspicion."""
import asyncio
import json
import random

from becomingone.mesh.swim import ALIVE, DEAD, SUSPECT, Swim


class Net:
    def __init__(self):
        self.nodes, self.down, self.cut, self.now = {}, set(), set(), 0.0
        self.messages = 0

    def reachable(self, a, b):
        return b not in self.down and a not in self.down and frozenset((a, b)) not in self.cut

    def sender(self, src):
        async def send(addr, msg, timeout):
            self.messages += 1
            if not self.reachable(src, addr) or addr not in self.nodes:
                return None
            msg = json.loads(json.dumps(msg))          # what a wire would carry
            return json.loads(json.dumps(await self.nodes[addr].handle(msg)))
        return send

    def add(self, name, seeds=(), seed=0):
        n = Swim(name, name, self.sender(name), seeds=seeds, probe_interval=1.0,
                 rng=random.Random(seed), clock=lambda: self.now)
        self.nodes[name] = n
        return n

    def partition(self, a, b):
        self.cut = {frozenset((x, y)) for x in a for y in b}

    async def rounds(self, k):
        for _ in range(k):
            live = [n for name, n in self.nodes.items() if name not in self.down]
            await asyncio.gather(*(n.probe_once() for n in live))
            self.now += 1.0

    def states(self, about):
        return {name: n.view().get(about, (None, None))[0]
                for name, n in self.nodes.items() if name not in self.down and name != about}


NAMES = ["n%d" % i for i in range(5)]


async def _cluster():
    net = Net()
    for i, name in enumerate(NAMES):
        net.add(name, seeds=["n0"] if i else [], seed=i)
    for name in NAMES[1:]:
        await net.nodes[name].join()
    await net.rounds(6)
    return net


def test_join_converges_to_full_membership():
    async def go():
        net = await _cluster()
        return net, {n: net.nodes[n].view() for n in NAMES}
    net, views = asyncio.run(go())
    for name, v in views.items():
        assert set(v) == set(NAMES) and all(s == ALIVE for s, _i in v.values()), (name, v)


def test_killed_node_is_suspected_then_declared_dead_then_rejoins():
    async def go():
        net = await _cluster()
        net.down.add("n3")
        seen_suspect = False
        for _ in range(40):
            await net.rounds(1)
            st = net.states("n3")
            seen_suspect |= SUSPECT in st.values()
            if all(s == DEAD for s in st.values()):
                break
        dead_after = net.now
        assert seen_suspect and all(s == DEAD for s in net.states("n3").values()), net.states("n3")
        # restart: a new process, incarnation 0, joins through the seed
        net.down.discard("n3")
        fresh = net.add("n3", seeds=["n0"], seed=99)
        await fresh.join()
        await net.rounds(12)
        return net, dead_after, fresh
    net, dead_after, fresh = asyncio.run(go())
    assert all(s == ALIVE for s in net.states("n3").values()), net.states("n3")
    assert fresh.incarnation >= 1                      # it refuted its death
    assert set(fresh.view()) == set(NAMES) and all(s == ALIVE for s, _ in fresh.view().values())


def test_partition_then_heal_converges():
    async def go():
        net = await _cluster()
        a, b = {"n0", "n1"}, {"n2", "n3", "n4"}
        net.partition(a, b)
        await net.rounds(40)
        split = {n: dict(net.nodes[n].view()) for n in NAMES}
        net.cut = set()
        for _ in range(60):
            await net.rounds(1)
            if all(all(s == ALIVE for s, _ in net.nodes[n].view().values()) for n in NAMES):
                break
        return split, {n: net.nodes[n].view() for n in NAMES}
    split, healed = asyncio.run(go())
    assert split["n0"]["n3"][0] == DEAD and split["n4"]["n1"][0] == DEAD
    assert split["n0"]["n1"][0] == ALIVE and split["n2"]["n4"][0] == ALIVE
    for n, v in healed.items():
        assert set(v) == set(NAMES) and all(s == ALIVE for s, _ in v.values()), (n, v)


def test_indirect_probe_saves_a_node_behind_one_bad_link_and_refutes_suspicion():
    async def go():
        net = await _cluster()
        net.cut = {frozenset(("n0", "n1"))}            # only the direct link n0-n1 fails
        await net.rounds(30)
        v = net.nodes["n0"].view()["n1"]
        # a false suspicion is refuted by the node itself with a higher incarnation
        n1 = net.nodes["n1"]
        n1.apply({"name": "n1", "addr": "n1", "state": SUSPECT, "incarnation": n1.incarnation})
        return v, n1.incarnation, net.nodes["n0"].stats
    v, inc, stats = asyncio.run(go())
    assert v[0] == ALIVE and stats["ping_reqs"] > 0
    assert stats["suspected"] == 0                      # the indirect probes always got through
    assert inc >= 1


def test_precedence_rules():
    s = Swim("me", "me", None, rng=random.Random(0), clock=lambda: 0.0)
    s.apply({"name": "x", "addr": "x", "state": ALIVE, "incarnation": 2})
    s.apply({"name": "x", "state": SUSPECT, "incarnation": 1})      # older: ignored
    assert s.view()["x"] == (ALIVE, 2)
    s.apply({"name": "x", "state": SUSPECT, "incarnation": 2})
    assert s.view()["x"] == (SUSPECT, 2)
    s.apply({"name": "x", "state": ALIVE, "incarnation": 2})        # same incarnation: no
    assert s.view()["x"] == (SUSPECT, 2)
    s.apply({"name": "x", "state": ALIVE, "incarnation": 3})
    assert s.view()["x"] == (ALIVE, 3)
    s.apply({"name": "x", "state": DEAD, "incarnation": 3})
    assert s.view()["x"] == (DEAD, 3)
    s.apply({"name": "x", "state": SUSPECT, "incarnation": 3})
    assert s.view()["x"] == (DEAD, 3)
    s.apply({"name": "y", "state": DEAD, "incarnation": 0})          # unknown and dead: ignored
    assert "y" not in s.view()
    s.apply({"name": "x", "state": "zombie", "incarnation": 9})
    s.apply({"bogus": 1})
    assert s.view()["x"] == (DEAD, 3)
