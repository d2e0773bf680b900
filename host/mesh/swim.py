"""SWIM membership with suspicion and incarnation numbers (Das, Gupta, Motivala 2002, in the
manner of HashiCorp memberlist), transport-agnostic.

Every `probe_interval` a node probes the next member of a shuffled round-robin list: `ping`; if
no `ack` within `probe_timeout`, it asks `indirect` other members to `ping-req` the target for it;
if none of them gets an ack, the target becomes SUSPECT. A suspect that does not refute within
`suspicion_timeout` (scaled by log2 of the group size) is declared DEAD. A node that hears it is
suspected or dead refutes by raising its incarnation and gossiping ALIVE; a restarted node
rejoins the same way. Every `reconnect_every` periods one DEAD member is pinged with what we
believe about it, so a healed partition or a restarted node refutes and is taken back. Updates ride on every message (piggyback), each retransmitted
`retransmit_mult * log2(n + 1)` times (at least once).

Precedence (about member m whose known incarnation is i):
    alive{j}:   applies if m is unknown or j > i
    suspect{j}: applies if (m alive and j >= i) or (m suspect and j > i)
    dead{j}:    applies if m is not dead and j >= i
About itself a node never accepts suspect/dead: it refutes with incarnation max(i, j) + 1.

Messages are dicts (JSON-able): {"type": "ping"|"ack"|"ping-req"|"nack", "from", "updates": [...],
"target"?}. `send(addr, msg, timeout) -> reply dict | None` is injected (mutual TLS request/reply
in host/mesh/swimnet.py, an in-memory network in the tests); `handle(msg) -> reply` answers.
"""
import asyncio
import math
import random
import time

ALIVE, SUSPECT, DEAD = "alive", "suspect", "dead"


class Member:
    """What one cell knows of another: name, address, SWIM state, incarnation, since when."""
    __slots__ = ("name", "addr", "state", "incarnation", "since")

    def __init__(self, name, addr, state=ALIVE, incarnation=0, since=0.0):
        self.name, self.addr, self.state, self.incarnation, self.since = name, addr, state, incarnation, since

    def to_dict(self):
        return {"name": self.name, "addr": self.addr, "state": self.state, "incarnation": self.incarnation}


class Swim:
    """The SWIM protocol state of one cell, transport-agnostic: members (alive, suspect,
    dead, incarnations), probes, indirect probes and piggybacked gossip through an injected
    send(). Raises nothing."""
    def __init__(self, name, addr, send, seeds=(), probe_interval=1.0, probe_timeout=0.3,
                 suspicion_mult=4.0, indirect=3, retransmit_mult=3, max_piggyback=16,
                 reconnect_every=5, rng=None, clock=time.monotonic, on_change=None):
        self.name, self.addr, self.send = name, addr, send
        self.incarnation = 0
        self.members = {}                 # other members by name
        self.seeds = list(seeds)          # addresses to join through
        self.probe_interval, self.probe_timeout = probe_interval, probe_timeout
        self.suspicion_mult, self.indirect = suspicion_mult, indirect
        self.retransmit_mult, self.max_piggyback = retransmit_mult, max_piggyback
        self.rng = rng or random.Random()
        self.clock = clock
        self.on_change = on_change
        self._queue = {}                  # name -> [update dict, transmissions left]
        self._order, self._pos = [], 0
        self._period = 0
        self.reconnect_every = reconnect_every
        self.stats = {"pings": 0, "ping_reqs": 0, "suspected": 0, "declared_dead": 0, "refuted": 0}
        self._queue_update(self._self_update())

    # ------------------------------------------------------------ state
    def _self_update(self):
        return {"name": self.name, "addr": self.addr, "state": ALIVE, "incarnation": self.incarnation}

    def announce(self, addr):
        """This cell's address (known once its listener is up), gossiped to the others."""
        self.addr = addr
        self._queue_update(self._self_update())

    def view(self):
        """{name: (state, incarnation)} including self."""
        v = {m.name: (m.state, m.incarnation) for m in self.members.values()}
        v[self.name] = (ALIVE, self.incarnation)
        return v

    def alive_count(self):
        return 1 + sum(1 for m in self.members.values() if m.state != DEAD)

    def _limit(self):
        return max(1, int(math.ceil(self.retransmit_mult * math.log2(len(self.members) + 2))))

    def _queue_update(self, upd):
        self._queue[upd["name"]] = [dict(upd), self._limit()]

    def _piggyback(self):
        items = sorted(self._queue.items(), key=lambda kv: -kv[1][1])[: self.max_piggyback]
        out = []
        for name, slot in items:
            out.append(dict(slot[0]))
            slot[1] -= 1
            if slot[1] <= 0:
                del self._queue[name]
        # our own liveness always rides along (cheap, and lets a seed learn about a joiner)
        if not any(u["name"] == self.name for u in out):
            out.append(self._self_update())
        return out

    def _set(self, m, state, inc):
        old = m.state
        m.state, m.incarnation, m.since = state, inc, self.clock()
        self._queue_update(m.to_dict())
        if state == SUSPECT and old != SUSPECT:
            self.stats["suspected"] += 1
        if state == DEAD and old != DEAD:
            self.stats["declared_dead"] += 1
        if self.on_change and old != state:
            self.on_change(m.name, old, state)

    def apply(self, upd):
        """Merge one update (precedence rules in the module docstring)."""
        try:
            name, addr, state, inc = upd["name"], upd.get("addr"), upd["state"], int(upd["incarnation"])
        except (KeyError, TypeError, ValueError):
            return
        if state not in (ALIVE, SUSPECT, DEAD) or not isinstance(name, str):
            return
        if name == self.name:
            if state != ALIVE and inc >= self.incarnation:
                self.incarnation = inc + 1            # refute
                self.stats["refuted"] += 1
                self._queue_update(self._self_update())
            return
        m = self.members.get(name)
        if m is None:
            if state == DEAD:
                return
            m = self.members[name] = Member(name, addr, DEAD, -1)
            self._order.append(name)
        if addr:
            m.addr = addr
        if state == ALIVE and inc > m.incarnation:
            self._set(m, ALIVE, inc)
        elif state == SUSPECT and ((m.state == ALIVE and inc >= m.incarnation)
                                   or (m.state == SUSPECT and inc > m.incarnation)
                                   or (m.state == DEAD and inc > m.incarnation)):
            self._set(m, SUSPECT, inc)
        elif state == DEAD and m.state != DEAD and inc >= m.incarnation:
            self._set(m, DEAD, inc)

    # ------------------------------------------------------------ messages
    def _msg(self, typ, to=None, **kw):
        ups = self._piggyback()
        if to is not None and to.state != ALIVE:
            ups.append(to.to_dict())      # tell it what we believe, so it can refute
        d = {"type": typ, "from": self.name, "updates": ups}
        d.update(kw)
        return d

    async def handle(self, msg):
        """Answer one incoming message (ping -> ack; ping-req -> ack or nack)."""
        for u in msg.get("updates") or []:
            if isinstance(u, dict):
                self.apply(u)
        typ = msg.get("type")
        sender = self.members.get(msg.get("from"))
        if typ == "ping":
            return self._msg("ack", to=sender)
        if typ == "ping-req":
            t = self.members.get(msg.get("target"))
            if t is not None and t.addr:
                r = await self.send(t.addr, self._msg("ping", to=t), self.probe_timeout)
                if r is not None and r.get("type") == "ack":
                    self._absorb(r)
                    return self._msg("ack", to=sender, target=t.name)
            return self._msg("nack", to=sender, target=msg.get("target"))
        return self._msg("nack", to=sender)

    def _absorb(self, reply):
        for u in (reply or {}).get("updates") or []:
            if isinstance(u, dict):
                self.apply(u)

    # ------------------------------------------------------------ protocol period
    def _next_target(self):
        live = [n for n in self._order if n in self.members and self.members[n].state != DEAD]
        if not live:
            return None
        if self._pos >= len(self._order) or not set(self._order[self._pos:]) & set(live):
            self._order = list(live)
            self.rng.shuffle(self._order)
            self._pos = 0
        while self._pos < len(self._order):
            n = self._order[self._pos]
            self._pos += 1
            if n in self.members and self.members[n].state != DEAD:
                return self.members[n]
        return None

    def suspicion_timeout(self):
        return self.suspicion_mult * max(1.0, math.log2(len(self.members) + 1)) * self.probe_interval

    async def join(self):
        """Ping the seeds once (they learn about us from the piggyback, we about them)."""
        ok = 0
        for addr in self.seeds:
            r = await self.send(addr, self._msg("ping"), self.probe_timeout)
            if r is not None:
                self._absorb(r)
                ok += 1
        return ok

    async def probe_once(self):
        """One protocol period's probe; then expire suspects. -> name probed or None."""
        if not any(m.state != DEAD for m in self.members.values()) and self.seeds:
            await self.join()             # alone (seed not up yet, or everyone dead): retry the seeds
        now = self.clock()
        for m in list(self.members.values()):
            if m.state == SUSPECT and now - m.since >= self.suspicion_timeout():
                self._set(m, DEAD, m.incarnation)
        self._period += 1
        dead = [m for m in self.members.values() if m.state == DEAD and m.addr]
        if dead and self._period % self.reconnect_every == 0:
            # gossip to the dead (memberlist): a healed partition or a restarted node refutes
            m = self.rng.choice(dead)
            r = await self.send(m.addr, self._msg("ping", to=m), self.probe_timeout)
            self._absorb(r)
        t = self._next_target()
        if t is None:
            return None
        self.stats["pings"] += 1
        r = await self.send(t.addr, self._msg("ping", to=t), self.probe_timeout)
        if r is not None and r.get("type") == "ack":
            self._absorb(r)
            return t.name
        helpers = [m for m in self.members.values() if m.state == ALIVE and m.name != t.name]
        helpers = self.rng.sample(helpers, min(self.indirect, len(helpers)))
        if helpers:
            self.stats["ping_reqs"] += len(helpers)
            replies = await asyncio.gather(*(self.send(h.addr, self._msg("ping-req", to=h, target=t.name),
                                                       2 * self.probe_timeout) for h in helpers))
            for rr in replies:
                self._absorb(rr)
            if any(rr is not None and rr.get("type") == "ack" for rr in replies):
                return t.name
        if t.state == ALIVE:
            self._set(t, SUSPECT, t.incarnation)
        return t.name

    async def run(self):
        await self.join()
        while True:
            await self.probe_once()
            await asyncio.sleep(self.probe_interval)
