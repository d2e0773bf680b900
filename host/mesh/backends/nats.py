"""Cluster-scale backend (`sync.backend: nats`): the same messages over NATS JetStream.

- Each cell's ledger is a stream `BO_LEDGER_<origin id>` on subject `bo.ledger.<origin id>`
  (`replicas` configurable): each message is a block of up to BLOCK consecutive export lines
  (docs/LEDGER.md §7) joined by newlines, with headers `Bo-First` / `Bo-Count`, published with
  `Nats-Expected-Last-Sequence` (the block count so far) and `Nats-Msg-Id: <origin id>-<first>`:
  blocks are contiguous, a re-publish is deduplicated, and before publishing the owner checks
  that the stream's last message is its own block, so a message inserted by anyone else stops
  the owner with an error (and a replica refuses it: not a block, or it cannot reach the signed
  root). A reader finds the block holding its next entry by binary search on block headers.
- Signed checkpoints live in the key-value bucket `bo_checkpoints` (key = origin id).
- T_global entries (host/mesh/aggregate.py, signed) live in the bucket `bo_tglobal` (key = cell).
- Membership follows from the cluster: each cell refreshes its key in the bucket `bo_members`,
  whose entries expire after `member_ttl` seconds; the live cells are the keys present.

Nothing read from NATS is trusted: replicas are applied through ReplicaStore (entries must reach
the origin's signed root; split views become evidence) and T_global entries through
VersionedAggregate (signatures, versions).

    cell = NatsCell("nats://127.0.0.1:4222", "cell-a", ledger=led, store=store, agg=agg, replicas=1)
    await cell.connect(); await cell.publish_ledger(); await cell.pull(origin) -> entries applied
    await cell.heartbeat(); await cell.members() -> [cells]; await cell.publish_value(T, n)
    await cell.fetch_values() -> changed; await cell.close()
"""
import asyncio
import json
import os
import time

from becomingone.errors import MeshError
from becomingone.ledger import checkpoint as ckpt
from becomingone.mesh.aggregate import VersionedAggregate
from becomingone.mesh.backends.base import MeshBackend
from becomingone.mesh.replica import ReplicaError, ReplicaStore, origin_id
from becomingone.mesh.trust import load_trust, write_trust

__all__ = ["NatsMesh", "NatsCell", "NatsBackendError"]

CKPT_BUCKET, VALUE_BUCKET, MEMBER_BUCKET = "bo_checkpoints", "bo_tglobal", "bo_members"
FETCH_BATCH = 64          # messages per fetch
BLOCK = 500               # entries per stream message


def _block(origin, seq, headers, data):
    """(first, count, lines) of a stream message; ReplicaError if it is not one of our blocks."""
    try:
        first, count = int((headers or {})["Bo-First"]), int((headers or {})["Bo-Count"])
        lines = data.decode("ascii").split("\n")
    except (KeyError, ValueError, UnicodeDecodeError):
        raise ReplicaError("stream %s message %d is not a block of entries (no Bo-First/Bo-Count "
                           "headers or not ASCII)" % (stream_name(origin), seq)) from None
    if first < 0 or count != len(lines) or count < 1:
        raise ReplicaError("stream %s message %d: header says %d entries, it holds %d"
                           % (stream_name(origin), seq, count, len(lines)))
    return first, count, lines


class NatsBackendError(MeshError):
    """The NATS cluster cannot be used (unreachable, a stream written by someone else)."""


def stream_name(origin):
    return "BO_LEDGER_" + origin_id(origin).upper()


def subject(origin):
    return "bo.ledger." + origin_id(origin)


class NatsCell:
    """One cell's use of a NATS JetStream cluster: its ledger stream, the checkpoint,
    T_global and member buckets. Raises NatsBackendError (cannot connect, a stream written
    by someone else) and ReplicaError (a block or entry that does not verify)."""
    def __init__(self, url, cell, ledger=None, store=None, agg=None, replicas=1, member_ttl=5.0):
        if type(replicas) is not int or not 1 <= replicas <= 5:
            raise NatsBackendError("stream replicas must be an integer in 1..5, got %r" % (replicas,))
        self.url, self.cell, self.ledger, self.store, self.agg = url, cell, ledger, store, agg
        self.replicas, self.member_ttl = replicas, member_ttl
        self.nc = self.js = None
        self.kv = {}

    async def connect(self, timeout=5.0):
        # nats-py is optional (the `nats` extra): loaded only when this backend runs
        import nats
        from nats.js.api import KeyValueConfig
        try:
            self.nc = await nats.connect(self.url, connect_timeout=timeout, max_reconnect_attempts=3,
                                         name="becomingone-" + self.cell)
        except Exception as e:
            raise NatsBackendError("cannot connect to NATS at %s: %s" % (self.url, e)) from None
        self.js = self.nc.jetstream()
        for bucket, ttl in ((CKPT_BUCKET, None), (VALUE_BUCKET, None), (MEMBER_BUCKET, self.member_ttl)):
            cfg = KeyValueConfig(bucket=bucket, history=1, replicas=self.replicas, ttl=ttl)
            try:
                self.kv[bucket] = await self.js.create_key_value(config=cfg)
            except Exception:
                self.kv[bucket] = await self.js.key_value(bucket)

    async def close(self):
        if self.nc is not None:
            await self.nc.drain()
            self.nc = None

    # ------------------------------------------------------------ ledger stream
    async def _ensure_stream(self, origin):
        from nats.js.api import StorageType, StreamConfig  # nats-py: optional, loaded lazily
        from nats.js.errors import NotFoundError
        name = stream_name(origin)
        try:
            return await self.js.stream_info(name)
        except NotFoundError:
            return await self.js.add_stream(StreamConfig(name=name, subjects=[subject(origin)],
                                                         num_replicas=self.replicas,
                                                         storage=StorageType.FILE,
                                                         duplicate_window=120.0))

    async def _last_block(self, origin, seq):
        """(first index, count, lines) of stream message `seq` (a block of entries)."""
        m = await self.js.get_msg(stream_name(origin), seq=seq)
        return _block(origin, seq, m.headers, m.data)

    async def publish_ledger(self):
        """Publish our entries the stream lacks (in blocks), then our latest checkpoint.
        -> entries published."""
        led = self.ledger
        info = await self._ensure_stream(led.origin)
        blocks = info.state.last_seq
        have = 0
        if blocks > 0:
            # the stream's last message must be OUR block (a message injected by anyone else
            # would otherwise sit in the middle of our ledger)
            try:
                first, count, lines = await self._last_block(led.origin, blocks)
            except ReplicaError as e:
                raise NatsBackendError("stream %s was written by someone else: %s" % (stream_name(led.origin), e)) from None
            mine = [x.to_json() for x in led.entries(first, first + count)]
            if lines != mine:
                raise NatsBackendError("stream %s message %d is not our entries [%d, %d): the stream was "
                                       "written by someone else" % (stream_name(led.origin), blocks, first, first + count))
            have = first + count
        subj, oid = subject(led.origin), origin_id(led.origin)
        futs, block, seq = [], [], blocks

        async def flush(block, seq):
            first = block[0].index
            futs.append(await self.js.publish_async(
                subj, "\n".join(e.to_json() for e in block).encode("ascii"),
                headers={"Nats-Expected-Last-Sequence": str(seq), "Nats-Msg-Id": "%s-%d" % (oid, first),
                         "Bo-First": str(first), "Bo-Count": str(len(block))}))
        for e in led.entries(have, led.size):
            block.append(e)
            if len(block) == BLOCK:
                await flush(block, seq)
                seq, block = seq + 1, []
                if len(futs) >= 256:
                    await self._settle(futs)
                    futs = []
        if block:
            await flush(block, seq)
        await self._settle(futs)
        note = led.latest_checkpoint()
        if note is None or ckpt.parse_note(note)["size"] != led.size:
            note = led.checkpoint()
        await self.kv[CKPT_BUCKET].put(oid, note.encode("utf-8"))
        return led.size - have

    async def _settle(self, futs):
        try:
            await asyncio.gather(*futs)
        except Exception as e:
            raise NatsBackendError("JetStream refused a ledger message (%s): another writer touched "
                                   "our stream?" % e) from None

    async def _seq_of(self, origin, index):
        """Stream sequence of the block holding entry `index` (binary search on block headers)."""
        info = await self.js.stream_info(stream_name(origin))
        lo, hi = 1, info.state.last_seq
        while lo <= hi:
            mid = (lo + hi) // 2
            first, count, _ = await self._last_block(origin, mid)
            if index < first:
                hi = mid - 1
            elif index >= first + count:
                lo = mid + 1
            else:
                return mid
        return None

    async def pull(self, origin):
        """Catch up the replica of `origin` to its checkpoint in the bucket (verified).
        -> entries applied (0 when up to date). A split view raises ReplicaError (evidence kept)."""
        import nats.errors  # nats-py: optional, loaded lazily
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import KeyNotFoundError
        try:
            note = (await self.kv[CKPT_BUCKET].get(origin_id(origin))).value.decode("utf-8")
        except KeyNotFoundError:
            return 0
        seen = self.store.observe(origin, note)
        if seen["status"] == "split-view":
            raise ReplicaError("split view for %s: %s (evidence %s)" % (origin, seen["why"], seen["evidence"]))
        if seen["status"] != "ahead":
            return 0
        have, target = self.store.size(origin), ckpt.parse_note(note)["size"]
        seq = await self._seq_of(origin, have)
        if seq is None:
            raise ReplicaError("stream %s holds no block with entry %d, the signed checkpoint of %s "
                               "says %d" % (stream_name(origin), have, origin, target))
        # no acks: reading a ledger is not work to hand out (and acks would cap us at
        # max_ack_pending messages in flight)
        cfg = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=seq,
                             ack_policy=AckPolicy.NONE, inactive_threshold=30.0)
        sub = await self.js.pull_subscribe(subject(origin), durable=None, stream=stream_name(origin), config=cfg)
        lines = []
        try:
            while have + len(lines) < target:
                try:
                    msgs = await sub.fetch(FETCH_BATCH, timeout=2.0)
                except nats.errors.TimeoutError:
                    raise ReplicaError("stream %s holds entries only up to %d, the signed checkpoint "
                                       "of %s says %d" % (stream_name(origin), have + len(lines), origin,
                                                          target)) from None
                for m in msgs:
                    first, count, block = _block(origin, m.metadata.sequence.stream, m.headers, m.data)
                    nxt = have + len(lines)
                    if not first <= nxt < first + count:
                        raise ReplicaError("stream %s block %d holds entries [%d, %d), expected entry %d next"
                                           % (stream_name(origin), m.metadata.sequence.stream, first,
                                              first + count, nxt))
                    lines += block[nxt - first: target - first]
                    if have + len(lines) >= target:
                        break
        finally:
            await sub.unsubscribe()
        return self.store.apply(origin, lines, note)

    # ------------------------------------------------------------ membership and T_global
    async def heartbeat(self):
        await self.kv[MEMBER_BUCKET].put(self.cell, b"alive")

    async def members(self):
        from nats.js.errors import NoKeysError  # nats-py: optional, loaded lazily
        try:
            return sorted(await self.kv[MEMBER_BUCKET].keys())
        except NoKeysError:
            return []

    async def publish_value(self, t_hat, devices):
        e = self.agg.publish(t_hat, devices)
        await self.kv[VALUE_BUCKET].put(self.cell, json.dumps(e, sort_keys=True).encode("ascii"))
        return e

    async def fetch_values(self):
        """Merge every cell's latest T_global entry from the bucket -> origins changed."""
        from nats.js.errors import NoKeysError  # nats-py: optional, loaded lazily
        try:
            keys = await self.kv[VALUE_BUCKET].keys()
        except NoKeysError:
            return 0
        ents = []
        for k in keys:
            try:
                ents.append(json.loads((await self.kv[VALUE_BUCKET].get(k)).value))
            except (ValueError, AttributeError):
                continue
        return self.agg.merge([e for e in ents if isinstance(e, dict)])


class NatsMesh(MeshBackend):
    """The mesh over an existing NATS JetStream cluster (`sync.backend: nats`): membership from
    the member bucket's live keys, T_global entries in their bucket, each cell's ledger in its
    stream (published at least every `publish_every` seconds), every trusted peer's ledger
    pulled and verified each period. trust_dir: the cells' trust files (this cell's written
    at start). Raises NatsBackendError from start() when the cluster cannot be reached."""

    def __init__(self, url, cell, ledger, trust_dir, replicas_dir, interval=1.0, replicas=1,
                 member_ttl=5.0, publish_every=10.0):
        self.url, self.cell, self.ledger = url, cell, ledger
        self.trust_dir, self.replicas_dir = trust_dir, replicas_dir
        self.interval, self.replicas, self.member_ttl = interval, replicas, member_ttl
        self.publish_every = publish_every
        self.alerts = []
        self.trust = {}
        self.agg = self.store = self.nats = None
        self._live = []
        self._next_publish = 0.0

    async def start(self):
        write_trust(self.trust_dir, self.cell, self.ledger)
        self.trust = load_trust(self.trust_dir)
        key, _pub = self.ledger.signing_key()
        self.agg = VersionedAggregate(self.cell, signing_key=key,
                                      keys={c: p for c, (_o, p) in self.trust.items()},
                                      ttl=max(5.0, 10 * self.interval))
        self.store = ReplicaStore(self.replicas_dir, {o: p for c, (o, p) in self.trust.items()
                                                      if c != self.cell})
        self.nats = NatsCell(self.url, self.cell, ledger=self.ledger, store=self.store, agg=self.agg,
                             replicas=int(self.replicas), member_ttl=float(self.member_ttl))
        await self.nats.connect()

    async def period(self, t_hat, devices):
        c = self.nats
        await c.heartbeat()
        now = time.monotonic()
        if now >= self._next_publish:
            self._next_publish = now + self.publish_every
            await c.publish_ledger()
        await c.publish_value(t_hat, devices)
        await c.fetch_values()
        self._live = await c.members()
        for cell, (origin, _p) in sorted(self.trust.items()):
            if cell == self.cell or origin in c.store.untrusted:
                continue
            try:
                await c.pull(origin)
            except ReplicaError as e:
                why = str(e)
                self.alerts.append({"status": "split-view" if why.startswith("split view") else "forged",
                                    "origin": origin, "peer": "nats", "why": why})

    async def close(self):
        if self.nats is not None:
            await self.nats.close()

    def members(self):
        live = set(self._live)
        return {cell: {"state": "alive" if cell in live else "dead", "incarnation": None, "addr": None}
                for cell in set(self.trust) | live}

    def alive_count(self):
        return len(set(self._live) | {self.cell})

    def status_fields(self):
        return {"url": self.url}
