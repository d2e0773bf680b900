"""Cluster-scale backend (`sync.backend: nats`): the mesh over NATS JetStream at O(1) work per cell.

- **Ledgers.** Each cell's ledger is a stream `BO_LEDGER_<origin id>` on subject
  `bo.ledger.<origin id>` (`replicas` configurable): each message is a block of up to BLOCK
  consecutive export lines (docs/LEDGER.md §7) joined by newlines, with headers `Bo-First` /
  `Bo-Count`, published with `Nats-Expected-Last-Sequence` (the block count so far) and
  `Nats-Msg-Id: <origin id>-<first>`: blocks are contiguous, a re-publish is deduplicated, and
  before its first publish the owner checks that the stream's last message is its own block, so a
  message inserted by anyone else stops the owner with an error (and a replica refuses it: not a
  block, or it cannot reach the signed root). The last block of each publish carries the signed
  checkpoint of its end (`Bo-Checkpoint`, base64), so a replica applies what it receives without
  asking anyone. **Only the `fanout` cells after an origin on the ring** (host/mesh/ring.py
  ledger_holders) replicate it, each through one ordered consumer that JetStream pushes new blocks
  to: O(fanout) per cell, not O(N).
- **Heads.** Each signed checkpoint also goes to the key-value bucket `bo_checkpoints` (key =
  origin id), where any cell can check any origin's head on demand (`check_head`); each period a
  cell checks one origin it does not replicate (round robin): a newer head is accepted only with
  an RFC 9162 consistency proof from the one it holds (host/mesh/heads.py), asked of the origin
  over `bo.rpc.<cell token>`, so split views of every origin stay detectable at O(1) per period.
  Split-view evidence found by anyone is published on `bo.evidence` and checked on its own by
  every cell (host/mesh/replica.py check_evidence).
- **T_global and membership** come from the tree aggregate (host/mesh/hierarchy.py) over the
  subjects `bo.agg.<level>.<group>` and `bo.global` (core NATS: soft state, resent every
  period). Membership records (a level-0 group's live cells, signed by its leader) are written
  to the key-value bucket `bo_groups` (key = level-0 group) only when the group changes, and
  reach the other cells inside the tree's messages (up to the root, down to every cell); a
  cell reads the whole bucket only at start and when its records disagree with the global
  sum's membership digest (read_groups): no cell watches every group's key.

Nothing read from NATS is trusted: replicas are applied through ReplicaStore (entries must reach
the origin's signed root; split views become evidence), values, summaries and membership records
are signed (hierarchy.py). The trust folder is reloaded while running (host/mesh/trust.py).

    cell = NatsCell("nats://127.0.0.1:4222", "cell-a", ledger=led, store=store, replicas=1)
    await cell.connect(); await cell.publish_ledger(); await cell.pull(origin) -> entries applied
    await cell.follow(origin, on_event); await cell.head(origin) -> note; await cell.close()
    mesh = NatsMesh(url, "cell-a", ledger, trust_dir, replicas_dir, fanout=3, group_size=16)
    await mesh.start(); await mesh.period(T_hat, devices); mesh.members(); await mesh.close()
"""
import asyncio
import base64
import hashlib
import json
import os
import random
import time

from becomingone.errors import MeshError
from becomingone.ledger import checkpoint as ckpt
from becomingone.mesh.archive import ArchiveError
from becomingone.mesh.archiving import Archiver, serve_shards
from becomingone.mesh.backends.base import MeshBackend
from becomingone.mesh.heads import HeadTracker
from becomingone.mesh.hierarchy import (DEFAULT_GROUP_SIZE, GLOBAL_SUBJECT, MEMBER_FIELDS, Layout, TreeAggregate,
                                        group_subject)
from becomingone.mesh.replica import ReplicaError, ReplicaStore, origin_id
from becomingone.mesh.replication import serve
from becomingone.mesh.ring import ledger_holders, replicated_by
from becomingone.mesh.trust import TrustWatch, load_trust, write_trust

__all__ = ["NatsMesh", "NatsCell", "NatsBackendError", "cell_token"]

CKPT_BUCKET, GROUP_BUCKET = "bo_checkpoints", "bo_groups"
EVIDENCE_SUBJECT = "bo.evidence"
FETCH_BATCH = 64          # messages per fetch
BLOCK = 500               # entries per stream message
RPC_TIMEOUT = 2.0
HEALTH_EVERY = 60.0       # seconds between checks that this cell's consumers still exist
STORE_CHECK_EVERY = 30.0  # seconds between a level-0 leader's checks that the store holds its group's record
SHARD_TIMEOUT = 10.0


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


def _note_header(headers):
    """The signed checkpoint a block carries (Bo-Checkpoint, base64), or None."""
    raw = (headers or {}).get("Bo-Checkpoint")
    if not raw:
        return None
    try:
        return base64.b64decode(raw, validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None


class _Gap(Exception):
    """A followed stream skipped a block (the push consumer dropped one): follow again."""


class NatsBackendError(MeshError):
    """The NATS cluster cannot be used (unreachable, a stream written by someone else)."""


def stream_name(origin):
    return "BO_LEDGER_" + origin_id(origin).upper()


def subject(origin):
    return "bo.ledger." + origin_id(origin)


def cell_token(cell):
    """A cell's name as one NATS subject token (names may hold dots)."""
    return hashlib.blake2b(cell.encode("utf-8"), digest_size=8).hexdigest()


def _enc(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":")).encode("ascii")


class NatsCell:
    """One cell's use of a NATS JetStream cluster: its ledger stream and checkpoint key, and the
    replicas it reads. Raises NatsBackendError (cannot connect, a stream written by someone
    else) and ReplicaError (a block or entry that does not verify)."""
    def __init__(self, url, cell, ledger=None, store=None, replicas=1, no_echo=False):
        if type(replicas) is not int or not 1 <= replicas <= 5:
            raise NatsBackendError("stream replicas must be an integer in 1..5, got %r" % (replicas,))
        self.url, self.cell, self.ledger, self.store = url, cell, ledger, store
        self.replicas, self.no_echo = replicas, no_echo
        self.nc = self.js = None
        self.kv = {}
        self._published = None    # (blocks in our stream, entries in it) once checked
        self._note_put = None     # the checkpoint note last put in the bucket
        self.published_size = 0   # entries in our stream after our last publish
        self.published_at = None  # wall time that publish began
        self.follows = {}         # origin -> {"sub", "buf", "applied", "error"}

    async def connect(self, timeout=5.0):
        # nats-py is optional (the `nats` extra): loaded only when this backend runs
        import nats
        from nats.js.api import KeyValueConfig
        try:
            self.nc = await nats.connect(self.url, connect_timeout=timeout, max_reconnect_attempts=-1,
                                         reconnect_time_wait=1.0, name="becomingone-" + self.cell,
                                         no_echo=self.no_echo, allow_reconnect=True)
        except Exception as e:
            raise NatsBackendError("cannot connect to NATS at %s: %s" % (self.url, e)) from None
        self.js = self.nc.jetstream()
        for bucket in (CKPT_BUCKET, GROUP_BUCKET):
            try:
                self.kv[bucket] = await self.js.key_value(bucket)
            except Exception:
                cfg = KeyValueConfig(bucket=bucket, history=1, replicas=self.replicas)
                try:
                    self.kv[bucket] = await self.js.create_key_value(config=cfg)
                except Exception:                 # created by another cell meanwhile
                    self.kv[bucket] = await self.js.key_value(bucket)

    async def close(self):
        for f in list(self.follows.values()):
            await self._stop_follow(f)
        self.follows.clear()
        if self.nc is not None:
            try:
                await self.nc.drain()
            except Exception:
                pass
            self.nc = None

    def stats(self):
        """Messages and bytes this cell's connection sent and received."""
        s = self.nc.stats if self.nc is not None else {}
        return {k: int(s.get(k, 0)) for k in ("in_msgs", "out_msgs", "in_bytes", "out_bytes")}

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

    async def _check_own_stream(self):
        """(blocks, entries) of our stream, after checking its last message is our block."""
        led = self.ledger
        info = await self._ensure_stream(led.origin)
        blocks = info.state.last_seq
        if blocks == 0:
            return 0, 0
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
        return blocks, first + count

    async def publish_ledger(self):
        """Publish our entries the stream lacks (in blocks, the last carrying the signed
        checkpoint of their end), and put that checkpoint in the bucket. -> entries published."""
        led = self.ledger
        # a checkpoint of the ledger as it is now: signed (and fsynced) off the event loop
        note = await asyncio.to_thread(self._head_note)
        size = ckpt.parse_note(note)["size"]
        if self._published is not None and size > self._published[1]:
            # one cheap look: has anyone else written to our stream since our last publish?
            info = await self.js.stream_info(stream_name(led.origin))
            if info.state.last_seq != self._published[0]:
                self._published = None
        if self._published is None:
            self._published = await self._check_own_stream()
        blocks, have = self._published
        if size > have:
            t_pub = time.time()
            subj, oid = subject(led.origin), origin_id(led.origin)
            futs, block, seq = [], [], blocks
            hdr_note = base64.b64encode(note.encode("utf-8")).decode("ascii")

            async def flush(block, seq, last):
                first = block[0].index
                h = {"Nats-Expected-Last-Sequence": str(seq), "Nats-Msg-Id": "%s-%d" % (oid, first),
                     "Bo-First": str(first), "Bo-Count": str(len(block))}
                if last:
                    h["Bo-Checkpoint"] = hdr_note
                futs.append(await self.js.publish_async(
                    subj, "\n".join(e.to_json() for e in block).encode("ascii"), headers=h))
            for e in led.entries(have, size):
                block.append(e)
                if len(block) == BLOCK:
                    await flush(block, seq, e.index == size - 1)
                    seq, block = seq + 1, []
                    if len(futs) >= 256:
                        await self._settle(futs)
                        futs = []
            if block:
                await flush(block, seq, True)
                seq += 1
            try:
                await self._settle(futs)
            except NatsBackendError:
                self._published = None                # checked again before the next publish
                raise
            self._published = (seq, size)
            self.published_size, self.published_at = size, t_pub
        if note != self._note_put:
            await self.kv[CKPT_BUCKET].put(origin_id(led.origin), note.encode("utf-8"))
            self._note_put = note
        return size - have

    def _head_note(self):
        led = self.ledger
        note = led.latest_checkpoint()
        if note is None or ckpt.parse_note(note)["size"] < led.size:
            note = led.checkpoint()
        return note

    async def _settle(self, futs):
        try:
            # bounded: nats-py leaves a publish_async future unresolved when JetStream answers
            # with an API error, so a refused block would otherwise hang here
            await asyncio.wait_for(asyncio.gather(*futs), 30.0)
        except Exception as e:
            raise NatsBackendError("JetStream refused a ledger message (%s): another writer touched "
                                   "our stream?" % e) from None

    async def _seq_of(self, origin, index):
        """Stream sequence of the block holding entry `index` (binary search on block headers);
        (None, last_seq) when no block holds it."""
        info = await self.js.stream_info(stream_name(origin))
        lo, hi = 1, info.state.last_seq
        last = hi
        while lo <= hi:
            mid = (lo + hi) // 2
            first, count, _ = await self._last_block(origin, mid)
            if index < first:
                hi = mid - 1
            elif index >= first + count:
                lo = mid + 1
            else:
                return mid, last
        return None, last

    async def head(self, origin):
        """The origin's newest signed checkpoint from the bucket, or None."""
        from nats.js.errors import KeyNotFoundError  # nats-py: optional, loaded lazily
        try:
            return (await self.kv[CKPT_BUCKET].get(origin_id(origin))).value.decode("utf-8")
        except KeyNotFoundError:
            return None

    async def pull(self, origin):
        """Catch up the replica of `origin` to its checkpoint in the bucket (verified), once.
        -> entries applied (0 when up to date). A split view raises ReplicaError (evidence kept)."""
        import nats.errors  # nats-py: optional, loaded lazily
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        note = await self.head(origin)
        if note is None:
            return 0
        seen = self.store.observe(origin, note)
        if seen["status"] == "split-view":
            raise ReplicaError("split view for %s: %s (evidence %s)" % (origin, seen["why"], seen["evidence"]))
        if seen["status"] != "ahead":
            return 0
        have, target = self.store.size(origin), ckpt.parse_note(note)["size"]
        seq, _last = await self._seq_of(origin, have)
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

    # ------------------------------------------------------------ following a replica
    async def follow(self, origin, on_event):
        """Keep the replica of `origin` up to date as JetStream pushes its blocks (a push
        consumer without acks from the block holding our next entry; no flow control or
        heartbeat tasks: check_follows() looks after it). on_event(origin, kind, info) is called
        with kind "applied" ({size, entries}) or "alert" ({status, why}; following stops).
        -> False when the origin has no stream yet (try again later)."""
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy
        from nats.js.errors import NotFoundError
        if origin in self.follows:
            return True
        have = self.store.size(origin)
        try:
            seq, last = await self._seq_of(origin, have)
        except NotFoundError:
            return False
        if seq is None:
            # up to date with the stream (or it is empty): from the next block on
            seq = last + 1
        st = {"sub": None, "buf": [], "applied": 0, "error": None, "gap": False}
        self.follows[origin] = st

        async def cb(m):
            if st["error"] is not None or st["gap"]:
                return
            try:
                self._on_block(origin, st, m, on_event)
            except _Gap:
                st["gap"] = True                      # re-followed from the replica's size
            except ReplicaError as e:
                why = str(e)
                st["error"] = why
                on_event(origin, "alert", {"status": "split-view" if why.startswith("split view") else "forged",
                                           "why": why})
        cfg = ConsumerConfig(deliver_policy=DeliverPolicy.BY_START_SEQUENCE, opt_start_seq=seq,
                             ack_policy=AckPolicy.NONE, inactive_threshold=120.0)
        st["sub"] = await self.js.subscribe(subject(origin), stream=stream_name(origin), cb=cb, config=cfg)
        return True

    async def check_follows(self):
        """Re-follow any replica whose consumer is gone (server restart, inactivity) or that
        missed a block (a slow consumer's drop): from the replica's verified size. -> how many."""
        from nats.js.errors import NotFoundError
        n = 0
        for origin, st in list(self.follows.items()):
            if st["error"] is not None:
                continue
            gone = st["gap"]
            if not gone:
                try:
                    await st["sub"].consumer_info()
                except NotFoundError:
                    gone = True
                except Exception:
                    continue                          # the server did not answer: next time
            if gone:
                self.follows.pop(origin, None)
                await self._stop_follow(st)
                n += 1
        return n

    def _on_block(self, origin, st, m, on_event):
        seq = m.metadata.sequence.stream
        first, count, lines = _block(origin, seq, m.headers, m.data)
        have = self.store.size(origin)
        nxt = have + len(st["buf"])
        if first > nxt:
            raise _Gap("stream %s block %d starts at entry %d, expected entry %d next"
                       % (stream_name(origin), seq, first, nxt))
        if first + count > nxt:
            st["buf"] += lines[nxt - first:]
        note = _note_header(m.headers)
        if note is None:
            return
        seen = self.store.observe(origin, note)
        if seen["status"] == "split-view":
            raise ReplicaError("split view for %s: %s (evidence %s)" % (origin, seen["why"], seen["evidence"]))
        if seen["status"] == "untrusted":
            raise ReplicaError("origin %s is untrusted" % origin)
        size = ckpt.parse_note(note)["size"]
        if seen["status"] == "ahead" and size == have + len(st["buf"]):
            n = self.store.apply(origin, st["buf"], note)
            st["buf"] = []
            st["applied"] += n
            on_event(origin, "applied", {"size": size, "entries": n})

    async def unfollow(self, origin):
        f = self.follows.pop(origin, None)
        if f is not None:
            await self._stop_follow(f)

    async def _stop_follow(self, f):
        try:
            if f["sub"] is not None:
                await f["sub"].unsubscribe()
        except Exception:
            pass


class NatsMesh(MeshBackend):
    """The mesh over an existing NATS JetStream cluster (`sync.backend: nats`) at O(1) work per
    cell: T_global and membership from the tree aggregate (hierarchy.py, groups of
    `group_size`), the ledgers of the `fanout` origins the ring assigns this cell replicated as
    JetStream pushes them, the others' heads checked one per period and on demand. trust_dir:
    the cells' trust files (this cell's written at start; reloaded while running). Raises
    NatsBackendError from start() when the cluster cannot be reached."""

    def __init__(self, url, cell, ledger, trust_dir, replicas_dir, interval=1.0, replicas=1,
                 member_ttl=5.0, publish_every=10.0, fanout=3, group_size=DEFAULT_GROUP_SIZE,
                 head_check_every=5.0, write_own_trust=True, archive=None, shards_dir=None):
        self.url, self.cell, self.ledger = url, cell, ledger
        self.trust_dir, self.replicas_dir = trust_dir, replicas_dir
        self.interval, self.replicas, self.member_ttl = float(interval), int(replicas), float(member_ttl)
        self.publish_every, self.fanout, self.group_size = float(publish_every), int(fanout), int(group_size)
        # one other origin's head checked every head_check_every s (0: only on demand)
        self.head_check_every, self.write_own_trust = float(head_check_every), write_own_trust
        # the first publish and head check at a random point of their interval: cells started
        # together do not all hit JetStream in the same second
        self._next_head = time.monotonic() + random.random() * self.head_check_every
        self._next_health = time.monotonic() + HEALTH_EVERY * (1 + random.random())
        self._retry = {}          # origin -> (next follow attempt, attempts) while it has no stream
        self._house = None        # the background housekeeping task of the last period
        self._writes = []         # membership records waiting to be written
        self._resync = False      # read the whole membership store at the next housekeeping
        self._next_store_check = time.monotonic() + STORE_CHECK_EVERY * random.random()
        self.bg_errors, self.bg_last_error = 0, None
        # archive = (k, n, segment entries): seal and place this ledger's segments (archiving.py)
        self.archive_cfg = archive
        self.shards_dir = shards_dir or os.path.join(os.path.dirname(os.path.abspath(replicas_dir)), "shards")
        self.archiver = None
        self.alerts = []
        self.trust = {}
        self.agg = self.store = self.nats = self.heads = None
        self.watch = None
        self._origin_cell = {}
        self._subs = {}           # subject -> subscription
        self._next_publish = time.monotonic() + random.random() * min(self.publish_every, 5.0)
        self._replicate = set()   # origins this cell keeps full replicas of
        self._head_order, self._head_i = [], 0
        self._members_cache = (None, None)
        self.on_applied = None    # optional hook(origin, size, t) (benchmarks)
        self.counters = {"published_entries": 0, "head_checks": 0, "rpc_served": 0, "trust_reloads": 0,
                         "evidence_accepted": 0, "member_writes": 0, "group_reads": 0, "store_rewrites": 0}
        self.errors = []

    # ------------------------------------------------------------ trust and placement
    def _load_trust(self):
        trust = load_trust(self.trust_dir)
        if self.cell not in trust:
            raise NatsBackendError("no trust file for this cell %r in %s" % (self.cell, self.trust_dir))
        return trust

    def _apply_trust(self, trust):
        old = set(self.trust)
        self.trust = trust
        self._origin_cell = {o: c for c, (o, _p) in trust.items()}
        keys = {c: p for c, (_o, p) in trust.items()}
        layout = Layout.of(trust, self.group_size)
        if self.agg is None:
            key, _pub = self.ledger.signing_key()
            self.agg = TreeAggregate(self.cell, layout, key, keys, ttl=self.member_ttl, interval=self.interval)
        else:
            self.agg.keys = keys
            if set(trust) != old:
                self.agg.set_layout(layout)
        okeys = {o: p for c, (o, p) in trust.items() if c != self.cell}
        if self.store is None:
            self.store = ReplicaStore(self.replicas_dir, okeys)
        else:
            self.store.keys = okeys
        self._replicate = {trust[o][0] for o in replicated_by(self.cell, list(trust), self.fanout)}
        others = sorted(o for o in okeys if o not in self._replicate)
        random.Random(self.cell).shuffle(others)
        self._head_order, self._head_i = others, 0
        self._members_cache = (None, None)

    async def reload_trust(self):
        """Apply the trust folder as it is now: new cells trusted (their values, heads and
        ledgers), removed ones refused; replicas followed or dropped as the ring says."""
        trust = self._load_trust()
        self._apply_trust(trust)
        for origin in list(self.nats.follows):
            if origin not in self._replicate:
                await self.nats.unfollow(origin)
        self.counters["trust_reloads"] += 1

    def request_reload(self):
        """Reload trust at the next period (safe from a signal handler or another thread)."""
        if self.watch is not None:
            self.watch.request()

    def replicates(self, origin):
        return origin in self._replicate

    def origin_cell(self, origin):
        return self._origin_cell.get(origin)

    def head_size(self, origin):
        return self.heads.size(origin)

    # ------------------------------------------------------------ lifecycle
    async def start(self):
        if self.write_own_trust:
            write_trust(self.trust_dir, self.cell, self.ledger)
        self.watch = TrustWatch(self.trust_dir)
        self._apply_trust(self._load_trust())
        self.heads = HeadTracker(os.path.join(self.replicas_dir, "heads.json"), self.store, save_every=30.0)
        k, n, seg = self.archive_cfg or (3, 5, 0)
        # a cell holds others' shards whether or not it seals its own (segment 0)
        self.archiver = Archiver(self.ledger, self.shards_dir, k=k, n=n, segment=seg or 1 << 62, cell=self.cell)
        self.nats = NatsCell(self.url, self.cell, ledger=self.ledger, store=self.store,
                             replicas=self.replicas, no_echo=True)
        await self.nats.connect()
        nc = self.nats.nc
        await nc.subscribe("bo.rpc." + cell_token(self.cell), cb=self._rpc)
        await nc.subscribe(EVIDENCE_SUBJECT, cb=self._evidence)
        await self.read_groups()
        await self._set_subjects({group_subject(self.agg.gid0)})

    async def read_groups(self):
        """Every membership record of bo_groups, read once (at start, and when the records this
        cell holds disagree with the global sum's membership digest for a while): membership
        changes otherwise reach a cell inside the tree's messages (hierarchy.py), so no cell
        watches every group's key. -> records read."""
        import nats.errors  # nats-py: optional, loaded lazily
        kv = self.nats.kv[GROUP_BUCKET]
        n = 0
        w = await kv.watchall(ignore_deletes=True, inactive_threshold=30.0)
        try:
            while True:
                try:
                    e = await w.updates(timeout=5.0)
                except nats.errors.TimeoutError:
                    break
                if e is None:                         # the current records, all read
                    break
                try:
                    gid, rec = int(e.key), json.loads(e.value)
                except (ValueError, TypeError):
                    continue
                if isinstance(rec, dict):
                    self.agg.on_members(gid, rec, stored=True)
                    n += 1
        finally:
            try:
                await w.stop()
            except Exception:
                pass
        self._members_cache = (None, None)
        self.counters["group_reads"] += 1
        return n

    async def _check_store(self):
        """A level-0 leader: does the store hold its group's live cells as this leader holds
        them, signed by a trusted cell? (Two leaders in turn - an old one whose put was slow -
        can leave an older record there, and cells that read the store would keep it.) If not,
        the record is signed and sent again (store and tree)."""
        from nats.js.errors import KeyNotFoundError  # nats-py: optional, loaded lazily
        tree = self.agg
        _rec, when = tree.last_record(tree.gid0)
        now = time.monotonic()
        if (self._writes or now - tree.leading < 3 * self.interval
                or (when is not None and now - when < 2 * self.interval)):
            return
        try:
            got = json.loads((await self.nats.kv[GROUP_BUCKET].get(str(tree.gid0))).value)
        except (KeyNotFoundError, ValueError):
            got = None
        ok = (isinstance(got, dict) and isinstance(got.get("alive"), list)
              and sorted(got["alive"]) == sorted(tree._group(tree.gid0)) and tree._verify(got, MEMBER_FIELDS))
        if not ok and tree.leading is not None:
            tree.rewrite(tree.gid0)
            self.counters["store_rewrites"] += 1

    async def _check_health(self):
        """Every HEALTH_EVERY s: replica consumers the server dropped are made again."""
        await self.nats.check_follows()

    async def _set_subjects(self, want):
        nc = self.nats.nc
        for s in [s for s in self._subs if s not in want]:
            try:
                await self._subs.pop(s).unsubscribe()
            except Exception:
                pass
        for s in want:
            if s not in self._subs:
                self._subs[s] = await nc.subscribe(s, cb=self._on_tree)

    async def _on_tree(self, m):
        try:
            msg = json.loads(m.data)
        except ValueError:
            self.agg.refused += 1
            return
        if not isinstance(msg, dict):
            self.agg.refused += 1
            return
        s = m.subject
        if s.startswith("bo.grp."):
            self.agg.on_group(msg)
        elif s.startswith("bo.agg.0."):
            self.agg.on_value(msg)
        elif s == GLOBAL_SUBJECT:
            self.agg.on_global(msg)
        else:
            self.agg.on_summary(msg)

    async def period(self, t_hat, devices):
        """The tree's part of the period at once (core NATS publishes: buffered, never waiting on
        JetStream); membership writes and the JetStream housekeeping (ledger publish, replicas to
        follow, a head check, consumer health) in a background task of their own, so a slow
        JetStream never delays this cell's value or its group's messages."""
        if self.watch.changed():
            await self.reload_trust()
        c, tree = self.nats, self.agg
        e = tree.publish(t_hat, devices)
        await c.nc.publish("bo.agg.0.%d" % tree.gid0, _enc(e))
        acts = tree.tick()
        for subj, msg in acts.publish:
            await c.nc.publish(subj, _enc(msg))
        if acts.members:
            self._writes.extend(acts.members)
            self._members_cache = (None, None)
        if tree.needs_resync():
            self._resync = True
        await self._set_subjects(acts.subjects)
        if self._house is not None and self._house.done():
            self._reap(self._house)
            self._house = None
        if self._house is None:
            self._house = asyncio.ensure_future(self._housekeeping(time.monotonic()))

    def _reap(self, task):
        if not task.cancelled() and task.exception() is not None:
            e = task.exception()
            self.bg_errors += 1
            self.bg_last_error = "%s: %s" % (type(e).__name__, e)

    async def _housekeeping(self, now):
        c = self.nats
        while self._writes:
            gid, rec = self._writes.pop(0)
            await c.kv[GROUP_BUCKET].put(str(gid), _enc(rec))
            self.counters["member_writes"] += 1
        if now >= self._next_publish:
            self._next_publish = now + self.publish_every
            self.counters["published_entries"] += await c.publish_ledger()
        for origin in sorted(self._replicate - set(c.follows)):
            if origin not in self.store.untrusted and now >= self._retry.get(origin, (0.0, 0))[0]:
                if await c.follow(origin, self._on_replica):
                    self._retry.pop(origin, None)
                else:                                 # no stream yet: again after 2, 4 ... 60 s
                    _t, k = self._retry.get(origin, (0.0, 0))
                    self._retry[origin] = (now + min(60.0, 2.0 * 2 ** k), k + 1)
        if self.head_check_every and self._head_order and now >= self._next_head:
            self._next_head = now + self.head_check_every
            origin = self._head_order[self._head_i % len(self._head_order)]
            self._head_i += 1
            await self.check_head(origin)
        if now >= self._next_health:
            self._next_health = now + HEALTH_EVERY
            await self._check_health()
        if self._resync:
            self._resync = False
            try:
                await self.read_groups()
            except Exception:
                self.agg.last_resync = None           # not read: asked again after resync_after, not 60 s
                raise
        if self.agg.leading is not None and now >= self._next_store_check:
            self._next_store_check = now + STORE_CHECK_EVERY * (0.75 + 0.5 * random.random())
            await self._check_store()
        if self.archiver.due():
            await self.archiver.step(sorted(self.agg.alive_cells()), self._send_shard)

    async def _send_shard(self, cell, blob):
        r = await self.nats.nc.request("bo.rpc." + cell_token(cell), _enc(
            {"op": "shard", "origin": self.ledger.origin, "blob": base64.b64encode(blob).decode("ascii")}),
            timeout=SHARD_TIMEOUT)
        got = json.loads(r.data)
        if not (isinstance(got, dict) and got.get("stored")):
            raise ArchiveError("cell %s did not store the shard: %s" % (cell, got.get("error") if isinstance(got, dict) else got))
        return True

    def _on_replica(self, origin, kind, info):
        if kind == "applied":
            if self.on_applied is not None:
                self.on_applied(origin, info["size"], time.time())
            return
        self._alert(origin, info["status"], info["why"], info.get("evidence"))

    def _alert(self, origin, status, why, evidence=None):
        a = {"status": status, "origin": origin, "peer": "nats", "why": why}
        if evidence:
            a["evidence"] = evidence
        self.alerts.append(a)
        if status == "split-view" and self.nats is not None and self.nats.nc is not None:
            for ev in self.store.evidence():
                if ev.get("origin") == origin:
                    asyncio.ensure_future(self.nats.nc.publish(EVIDENCE_SUBJECT, _enc(ev)))

    # ------------------------------------------------------------ heads on demand
    async def check_head(self, origin):
        """Check `origin`'s signed head in the bucket against the one this cell verified
        (consistency proof asked of the origin, or of a cell replicating it). -> the status dict
        (host/mesh/heads.py); a split view is an alert and evidence, shared on bo.evidence."""
        if origin in self.store.untrusted or origin not in self.store.keys:
            return {"status": "untrusted", "origin": origin}
        note = await self.nats.head(origin)
        if note is None:
            return {"status": "none", "origin": origin}
        self.counters["head_checks"] += 1
        if origin in self._replicate:
            seen = self.store.observe(origin, note)
            if seen["status"] == "split-view":
                self._alert(origin, "split-view", seen["why"], seen.get("evidence"))
            return seen

        async def prove(old, new):
            return await self._ask_consistency(origin, old, new)
        got = await self.heads.check(origin, note, prove)
        if got["status"] == "split-view":
            self._alert(origin, "split-view", got["why"], got.get("evidence"))
        elif got["status"] == "refused" and "not consistent" in got.get("why", ""):
            self._alert(origin, "inconsistent-head", got["why"])
        return got

    async def _ask_consistency(self, origin, old, new):
        owner = self._origin_cell.get(origin)
        asked = [owner] + [c for c in ledger_holders(list(self.trust), self.fanout).get(owner, ())
                           if c != self.cell]
        last = None
        for cell in [c for c in asked if c]:
            try:
                r = await self.nats.nc.request("bo.rpc." + cell_token(cell),
                                               _enc({"op": "consistency", "origin": origin, "old": old, "new": new}),
                                               timeout=RPC_TIMEOUT)
                got = json.loads(r.data)
                if isinstance(got, dict) and isinstance(got.get("path"), list):
                    return got["path"]
                last = got.get("error") if isinstance(got, dict) else "bad answer"
            except Exception as e:                        # no responder, timeout
                last = "%s: %s" % (type(e).__name__, e)
        raise ReplicaError("no consistency proof for %s %d -> %d (%s)" % (origin, old, new, last))

    async def _rpc(self, m):
        try:
            msg = json.loads(m.data)
            if not isinstance(msg, dict):
                raise ValueError("not an object")
            if msg.get("op") in ("shard", "shards"):
                out = serve_shards(self.archiver, msg, msg.get("origin"))
            else:
                out = serve(self.ledger, self.store, msg)
            if isinstance(out, bytes):
                raise ValueError("op %r is not served over NATS" % msg.get("op"))
            body = _enc(out)
        except (ValueError, ReplicaError, ArchiveError) as e:
            body = _enc({"error": "%s: %s" % (self.cell, e)})
        self.counters["rpc_served"] += 1
        if m.reply:
            await m.respond(body)

    async def _evidence(self, m):
        try:
            ev = json.loads(m.data)
            origin = ev["origin"]
        except (ValueError, KeyError, TypeError):
            return
        if origin not in self.store.keys or origin in self.store.untrusted:
            return
        try:
            self.store.check_evidence(ev)
        except ReplicaError:
            return
        self.counters["evidence_accepted"] += 1
        self.alerts.append({"status": "split-view", "origin": origin, "peer": "nats",
                            "why": "evidence from another cell: %s" % ev.get("why")})
        await self.nats.unfollow(origin)

    # ------------------------------------------------------------ reads
    async def close(self):
        if self._house is not None:
            self._house.cancel()
            try:
                await self._house
            except BaseException:
                pass
            self._house = None
        if self.heads is not None:
            self.heads.flush()
        if self.nats is not None:
            await self.nats.close()
        if self.store is not None:
            self.store.close()

    def is_alive(self, cell):
        return self.agg.is_alive(cell)

    def members(self):
        ver = (self.agg.groups_version, len(self.trust))
        if self._members_cache[0] != ver:
            self._members_cache = (ver, {c: {"state": st, "incarnation": None, "addr": None}
                                         for c, st in self.agg.members().items()})
        return self._members_cache[1]

    def alive_count(self):
        return self.agg.alive_count()

    def status_fields(self):
        out = {"url": self.url, "group": self.agg.gid0, "levels": self.agg.layout.top + 1,
               "leads": self.agg.leads(), "replicating": len(self._replicate),
               "heads_checked": self.counters["head_checks"], "background_errors": self.bg_errors,
               "background_last_error": self.bg_last_error, "archive": self.archiver.status()}
        return out
