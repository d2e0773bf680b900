"""Cluster-scale backend (`sync.backend: nats`): the same messages over NATS JetStream.

- Each cell's ledger is a stream `BO_LEDGER_<origin id>` on subject `bo.ledger.<origin id>`
  (`replicas` configurable): message i carries export line i (docs/LEDGER.md §7), published with
  `Nats-Expected-Last-Sequence: i` and `Nats-Msg-Id: <origin id>-<i>`, so stream sequence =
  index + 1 exactly: a re-publish is deduplicated, and before publishing the owner checks that
  the stream's last message is its own entry, so a message inserted by anyone else stops the
  owner with an error (and a replica refuses it: it cannot reach the signed root).
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

from host.errors import UserError
from host.ledger import checkpoint as ckpt
from host.mesh.replica import ReplicaError, origin_id

CKPT_BUCKET, VALUE_BUCKET, MEMBER_BUCKET = "bo_checkpoints", "bo_tglobal", "bo_members"
FETCH_BATCH = 2000


class NatsBackendError(UserError):
    pass


def stream_name(origin):
    return "BO_LEDGER_" + origin_id(origin).upper()


def subject(origin):
    return "bo.ledger." + origin_id(origin)


class NatsCell:
    def __init__(self, url, cell, ledger=None, store=None, agg=None, replicas=1, member_ttl=5.0):
        if type(replicas) is not int or not 1 <= replicas <= 5:
            raise NatsBackendError("stream replicas must be an integer in 1..5, got %r" % (replicas,))
        self.url, self.cell, self.ledger, self.store, self.agg = url, cell, ledger, store, agg
        self.replicas, self.member_ttl = replicas, member_ttl
        self.nc = self.js = None
        self.kv = {}

    async def connect(self, timeout=5.0):
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
        from nats.js.api import StorageType, StreamConfig
        from nats.js.errors import NotFoundError
        name = stream_name(origin)
        try:
            return await self.js.stream_info(name)
        except NotFoundError:
            return await self.js.add_stream(StreamConfig(name=name, subjects=[subject(origin)],
                                                         num_replicas=self.replicas,
                                                         storage=StorageType.FILE,
                                                         duplicate_window=120.0))

    async def publish_ledger(self):
        """Publish our entries the stream lacks, then our latest checkpoint. -> entries published."""
        led = self.ledger
        info = await self._ensure_stream(led.origin)
        have = info.state.last_seq
        if have > led.size:
            raise NatsBackendError("stream %s holds %d messages but ledger %s has %d entries: the "
                                   "stream was written by someone else" % (stream_name(led.origin), have,
                                                                         led.origin, led.size))
        if have > 0:
            # the stream's last message must be OUR entry of that index (an injected message
            # would otherwise take an index slot and our next publish would follow it)
            last = await self.js.get_msg(stream_name(led.origin), seq=have)
            if last.data != led.get(have - 1).to_json().encode("ascii"):
                raise NatsBackendError("stream %s message %d is not our entry %d: the stream was "
                                       "written by someone else" % (stream_name(led.origin), have, have - 1))
        subj, oid = subject(led.origin), origin_id(led.origin)
        futs = []
        for e in led.entries(have, led.size):
            futs.append(await self.js.publish_async(
                subj, e.to_json().encode("ascii"),
                headers={"Nats-Expected-Last-Sequence": str(e.index), "Nats-Msg-Id": "%s-%d" % (oid, e.index)}))
            if len(futs) >= 4096:
                await self._settle(futs)
                futs = []
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

    async def pull(self, origin):
        """Catch up the replica of `origin` to its checkpoint in the bucket (verified).
        -> entries applied (0 when up to date); split views are returned by store.observe."""
        import nats.errors
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
        # no acks: reading a ledger is not work to hand out (and acks would cap us at
        # max_ack_pending messages in flight)
        cfg = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=have + 1,
                             ack_policy=AckPolicy.NONE, inactive_threshold=30.0)
        sub = await self.js.pull_subscribe(subject(origin), durable=None, stream=stream_name(origin), config=cfg)
        lines = []
        try:
            while have + len(lines) < target:
                try:
                    msgs = await sub.fetch(min(FETCH_BATCH, target - have - len(lines)), timeout=2.0)
                except nats.errors.TimeoutError:
                    raise ReplicaError("stream %s holds entries only up to %d, the signed checkpoint "
                                       "of %s says %d" % (stream_name(origin), have + len(lines), origin,
                                                          target)) from None
                for m in msgs:
                    seq = m.metadata.sequence.stream
                    if seq == have + len(lines) + 1 and seq <= target:
                        lines.append(m.data.decode("ascii"))
        finally:
            await sub.unsubscribe()
        return self.store.apply(origin, lines, note)

    # ------------------------------------------------------------ membership and T_global
    async def heartbeat(self):
        await self.kv[MEMBER_BUCKET].put(self.cell, b"alive")

    async def members(self):
        from nats.js.errors import NoKeysError
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
        from nats.js.errors import NoKeysError
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
