"""Holographic (erasure-coded) ledger archives (THHE seed): a sealed ledger segment, entries
[a, b), is zfec-coded into n shards of which any k rebuild it; the shards are placed on cells by
the load-weighted ring (host/mesh/ring.py). `restore` rebuilds a lost ledger from any k shards
per segment and verifies everything against the origin's signed checkpoint BEFORE writing.

Segment (the bytes that are erasure coded) = zlib(level 6) of
    <header: canonical JSON object>\\n  then entries a..b-1, one export line each (docs/LEDGER.md §7)
header = {"format": "becomingone-archive-segment/1", "origin", "start": a, "stop": b,
          "prev_hash": hash of entry a-1 (64 zeros for a = 0),
          "prefix": [hex of the complete-subtree hashes of [0, a), largest first] (the compact
                     range: with the entries it gives the root of size b),
          "root": hex root of size b, "checkpoint": signed note of size c >= b,
          "consistency": RFC 9162 consistency path from b to c ([] when c == b),
          "public_key_pem": the origin's Ed25519 key}

Shard file = b"BOSHARD1\\n" + canonical JSON header + b"\\n" + shard bytes, header =
{"format": "becomingone-archive-shard/1", "origin", "start", "stop", "k", "n", "index",
 "segment_len", "segment_sha3", "shard_len", "shard_sha3"} (SHA3-256 hex).

Restore trusts nothing in a shard header: a shard whose bytes do not match its own SHA3 is
skipped; shards are grouped by (origin, range, k, n, segment SHA3); k of them are decoded and
the result must hash to the segment SHA3 (other k-subsets are tried if one fails), then every
other shard is checked against the segment re-encoded (a forged shard with a matching header
hash is named and skipped); finally the decoded segment is verified entry by entry (export line
shape, data a JSON object, canonical timestamps, indices, hash chain, entry hashes over the exact
data bytes), its root of size b recomputed from the prefix, the
checkpoint's Ed25519 signature checked with the trusted key, its origin against the genesis
entry, and its root against ours (equal size) or through the consistency proof (larger size).
"""
import hashlib
import itertools
import json
import os
import zlib

import zfec.easyfec
from cryptography.hazmat.primitives import serialization

from becomingone.errors import MeshError
from becomingone.ledger import Ledger, checkpoint as ckpt, hashing, merkle, tree
from becomingone.ledger.db import connect, format_of
from becomingone.ledger.verify import verify_path
from becomingone.mesh.replica import ReplicaError, split_line
from becomingone.util.atomic import atomic_write

SEGMENT_FORMAT = "becomingone-archive-segment/1"
SHARD_FORMAT = "becomingone-archive-shard/1"
MAGIC = b"BOSHARD1\n"
MAX_SUBSETS = 256          # k-subsets tried per segment when a decode does not match its SHA3
ZERO_HASH = "0" * 64


class ArchiveError(MeshError):
    """A segment or shard set cannot be sealed or restored (the message says why)."""


def _sha3(b):
    return hashlib.sha3_256(b).hexdigest()


def _dumps(obj):
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


# ------------------------------------------------------------------ sealing
def seal_segment(ledger, start=0, stop=None):
    """Segment bytes and header for entries [start, stop) of an open Ledger (the owner: it may
    sign a checkpoint when none covers `stop`)."""
    size = ledger.size
    stop = size if stop is None else stop
    if type(start) is not int or type(stop) is not int or not 0 <= start < stop <= size:
        raise ArchiveError("segment range [%r, %r) is not valid for a ledger of size %d (need "
                           "0 <= from < to <= %d)" % (start, stop, size, size))
    fr = merkle.Frontier()
    prev = ZERO_HASH
    for e in ledger.entries(0, start):
        fr.push(merkle.leaf_hash(bytes.fromhex(e.hash)), [])
        prev = e.hash
    prefix = [h.hex() for _lv, h in fr.stack]
    lines = []
    for e in ledger.entries(start, stop):
        fr.push(merkle.leaf_hash(bytes.fromhex(e.hash)), [])
        lines.append(e.to_json())
    root = fr.root()
    notes = [ckpt.parse_note(t) for t in ledger.checkpoints()]
    exact = [t for t, p in zip(ledger.checkpoints(), notes) if p["size"] == stop]
    later = [(p["size"], t) for t, p in zip(ledger.checkpoints(), notes) if p["size"] > stop]
    if exact:
        note, path = exact[-1], []
    else:
        if later:
            c, note = min(later)
        else:
            note = ledger.checkpoint()
            c = ckpt.parse_note(note)["size"]
        if c == stop:
            path = []
        else:
            path = ledger.consistency_proof(stop, c)["path"]
    header = {"format": SEGMENT_FORMAT, "origin": ledger.origin, "start": start, "stop": stop,
              "prev_hash": prev, "prefix": prefix, "root": root.hex(), "checkpoint": note,
              "consistency": path, "public_key_pem": ledger.public_key_pem()}
    text = _dumps(header) + "\n" + "".join(line + "\n" for line in lines)
    return zlib.compress(text.encode("ascii"), 6), header


def encode_shards(segment, header, k, n):
    """n shard files (bytes) of which any k rebuild `segment`."""
    if type(k) is not int or type(n) is not int or not 1 <= k <= n <= 256:
        raise ArchiveError("need 1 <= k <= n <= 256 (zfec), got k=%r n=%r" % (k, n))
    blocks = zfec.easyfec.Encoder(k, n).encode(segment)
    seg_sha = _sha3(segment)
    out = []
    for i, blk in enumerate(blocks):
        h = {"format": SHARD_FORMAT, "origin": header["origin"], "start": header["start"],
             "stop": header["stop"], "k": k, "n": n, "index": i, "segment_len": len(segment),
             "segment_sha3": seg_sha, "shard_len": len(blk), "shard_sha3": _sha3(blk)}
        out.append(MAGIC + _dumps(h).encode("ascii") + b"\n" + bytes(blk))
    return out


def shard_filename(header, index, n):
    oid = header["origin"].rsplit("/", 1)[-1]
    return "%s_%d-%d_%03dof%03d.shard" % (oid, header["start"], header["stop"], index, n)


def seal_to_cells(ledger, start, stop, k, n, ring, out_dir):
    """Seal entries [start, stop) (stop None = size) of `ledger` (a Ledger or a database path)
    into k-of-n shards placed by `ring` (becomingone.mesh.ring.Ring) as out_dir/<cell>/<file>."""
    if isinstance(ledger, (str, os.PathLike)):
        if not os.path.exists(ledger):
            raise ArchiveError("no ledger database at %s" % ledger)
        with Ledger(ledger) as led:
            return seal_to_cells(led, start, stop, k, n, ring, out_dir)
    segment, header = seal_segment(ledger, start, stop)
    shards = encode_shards(segment, header, k, n)
    key = "segment:%s:%d-%d" % (header["origin"], header["start"], header["stop"])
    cells = ring.get_n(key, min(n, len(ring)))
    placed = []
    for i, blob in enumerate(shards):
        cell = cells[i % len(cells)]
        folder = os.path.join(out_dir, cell)
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, shard_filename(header, i, n))
        with atomic_write(path, binary=True) as f:
            f.write(blob)
        placed.append({"index": i, "cell": cell, "path": path})
    return {"origin": header["origin"], "start": header["start"], "stop": header["stop"], "k": k,
            "n": n, "segment_sha3": _sha3(segment), "segment_bytes": len(segment),
            "shard_bytes": len(shards[0]), "cells_used": len(cells),
            "shards_per_cell_max": -(-n // len(cells)), "shards": placed}


# ------------------------------------------------------------------ reading shards
def read_shard(path):
    """-> (header dict, shard bytes); ArchiveError naming what is wrong."""
    try:
        with open(path, "rb") as f:
            blob = f.read()
    except OSError as e:
        raise ArchiveError("cannot read %s: %s" % (path, e.strerror)) from None
    return parse_shard(blob)


def parse_shard(blob):
    """A shard file's bytes -> (header dict, shard bytes); ArchiveError naming what is wrong."""
    if not isinstance(blob, (bytes, bytearray)) or not blob.startswith(MAGIC) or b"\n" not in blob[len(MAGIC):]:
        raise ArchiveError("not a shard file (no BOSHARD1 header)")
    hline, body = blob[len(MAGIC):].split(b"\n", 1)
    try:
        h = json.loads(hline.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        raise ArchiveError("shard header is not JSON") from None
    need = {"format": str, "origin": str, "start": int, "stop": int, "k": int, "n": int,
            "index": int, "segment_len": int, "segment_sha3": str, "shard_len": int, "shard_sha3": str}
    if not isinstance(h, dict) or set(h) != set(need) or any(type(h[f]) is not t for f, t in need.items()):
        raise ArchiveError("shard header fields are not %s" % ", ".join(sorted(need)))
    if h["format"] != SHARD_FORMAT:
        raise ArchiveError("shard format %r (this build reads %s)" % (h["format"], SHARD_FORMAT))
    if not (1 <= h["k"] <= h["n"] <= 256 and 0 <= h["index"] < h["n"] and 0 <= h["start"] < h["stop"]):
        raise ArchiveError("shard header values out of range (k=%d n=%d index=%d range [%d, %d))"
                           % (h["k"], h["n"], h["index"], h["start"], h["stop"]))
    if len(body) != h["shard_len"] or _sha3(body) != h["shard_sha3"]:
        raise ArchiveError("shard bytes do not match the SHA3-256 in its header (tampered or corrupted)")
    return h, body


def find_shards(dirs):
    paths = []
    for d in dirs:
        if os.path.isfile(d):
            paths.append(d)
            continue
        if not os.path.isdir(d):
            raise ArchiveError("--from %s is not a folder or a shard file" % d)
        for root, _dirs, files in os.walk(d):
            paths += [os.path.join(root, f) for f in sorted(files) if f.endswith(".shard")]
    return sorted(set(paths))


# ------------------------------------------------------------------ decoding and verifying
def _decode(group, k):
    """group: {index: (path, header, body)} of one segment -> (segment bytes, [rejections])."""
    any_h = next(iter(group.values()))[1]
    n, seg_len, want = any_h["n"], any_h["segment_len"], any_h["segment_sha3"]
    idx = sorted(group)
    for tries, subset in enumerate(itertools.combinations(idx, k)):
        if tries >= MAX_SUBSETS:
            break
        blocks = [group[i][2] for i in subset]
        pad = len(blocks[0]) * k - seg_len
        if pad < 0 or any(len(b) != len(blocks[0]) for b in blocks):
            continue
        seg = zfec.easyfec.Decoder(k, n).decode(blocks, list(subset), pad)
        if _sha3(seg) != want:
            continue
        # re-encode and check every other shard we hold: a forged one is named and dropped
        good = zfec.easyfec.Encoder(k, n).encode(seg)
        rejected = [{"path": group[i][0], "why": "shard %d does not match the segment re-encoded "
                                                 "from %d other shards (forged)" % (i, k)}
                    for i in idx if bytes(good[i]) != group[i][2]]
        return seg, rejected
    return None, [{"path": group[i][0], "why": "no %d of the %d shards of this segment decode to "
                                               "its SHA3-256" % (k, len(idx))} for i in idx]


def parse_segment(segment):
    """-> (header dict, [entry line str]) of decoded segment bytes."""
    try:
        text = zlib.decompress(segment).decode("ascii")
    except (zlib.error, UnicodeDecodeError) as e:
        raise ArchiveError("segment is not a zlib-compressed ASCII text (%s)" % e) from None
    hline, _, rest = text.partition("\n")
    try:
        h = json.loads(hline)
    except ValueError:
        raise ArchiveError("segment header is not JSON") from None
    keys = {"format", "origin", "start", "stop", "prev_hash", "prefix", "root", "checkpoint",
            "consistency", "public_key_pem"}
    if not isinstance(h, dict) or set(h) != keys or h.get("format") != SEGMENT_FORMAT:
        raise ArchiveError("segment header is not a %s header" % SEGMENT_FORMAT)
    lines = rest.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return h, lines


def verify_segment(h, lines, pub, prev_hash=None, frontier=None):
    """Check one segment completely. prev_hash / frontier: the state after the segments before
    it (None: trust the segment's own prev_hash and prefix, which the checkpoint then binds).
    -> (Frontier after the segment, last hash, [(index, ts, data_json, prev bytes, hash bytes)],
        parsed checkpoint)."""
    a, b = h["start"], h["stop"]
    where = "segment [%d, %d) of %s" % (a, b, h["origin"])
    if len(lines) != b - a:
        raise ArchiveError("%s holds %d entries, expected %d" % (where, len(lines), b - a))
    prev = h["prev_hash"] if prev_hash is None else prev_hash
    if prev != h["prev_hash"]:
        raise ArchiveError("%s does not follow the previous segment (prev_hash differs)" % where)
    if a == 0 and prev != ZERO_HASH:
        raise ArchiveError("%s starts at 0 but its prev_hash is not zero" % where)
    if frontier is None:
        stack = [(lv, bytes.fromhex(x)) for (lv, _k), x in zip(merkle.decompose(0, a), h["prefix"])]
        if len(stack) != len(merkle.decompose(0, a)):
            raise ArchiveError("%s: its prefix has %d hashes, %d expected" % (where, len(h["prefix"]), len(stack)))
        frontier = merkle.Frontier(a, stack)
    elif [x.hex() for _lv, x in frontier.stack] != h["prefix"]:
        raise ArchiveError("%s: its Merkle prefix differs from the entries before it" % where)
    fr = frontier.copy()
    rows = []
    for off, line in enumerate(lines):
        i = a + off
        try:
            data_json, h_given, idx, prev_given, ts, data = split_line(line)
        except ReplicaError as e:
            raise ArchiveError("%s: entry %d: %s" % (where, i, e)) from None
        if idx != i:
            raise ArchiveError("%s: line %d holds index %r" % (where, i, idx))
        if prev_given != prev:
            raise ArchiveError("%s: entry %d does not link to the entry before it (hash chain broken)" % (where, i))
        if (i == 0) != (data.get("kind") == "genesis"):
            raise ArchiveError("%s: entry %d: only entry 0 is the genesis entry" % (where, i))
        h_hex = hashing.entry_hash(i, ts, data_json, prev).hex()
        if h_hex != h_given:
            raise ArchiveError("%s: entry %d: its hash does not match its contents" % (where, i))
        hb = bytes.fromhex(h_hex)
        rows.append((i, ts, data_json, bytes.fromhex(prev), hb))
        fr.push(merkle.leaf_hash(hb), [])
        prev = h_hex
    root = fr.root()
    if root.hex() != h["root"]:
        raise ArchiveError("%s: recomputed root differs from the root it carries" % where)
    try:
        note = ckpt.verify_note(h["checkpoint"], pub)
    except ckpt.CheckpointError as e:
        raise ArchiveError("%s: checkpoint: %s" % (where, e)) from None
    if note["origin"] != h["origin"]:
        raise ArchiveError("%s: checkpoint origin %r differs" % (where, note["origin"]))
    c = note["size"]
    if c == b:
        if note["root"] != root:
            raise ArchiveError("%s: the signed checkpoint's root differs from the entries' root" % where)
    elif c > b:
        path = [bytes.fromhex(x) for x in h["consistency"]]
        if not merkle.verify_consistency(b, c, root, note["root"], path):
            raise ArchiveError("%s: consistency proof to the signed checkpoint of size %d fails" % (where, c))
    else:
        raise ArchiveError("%s: checkpoint size %d does not cover the segment" % (where, c))
    return fr, prev, rows, note


def _write_db(db, rows, notes, pub_pem):
    """Write verified rows into a new ledger database (via a temporary file, renamed at the end)."""
    folder = os.path.dirname(os.path.abspath(db))
    tmpdir = os.path.join(folder, ".restore-%d" % os.getpid())
    os.makedirs(tmpdir)
    tmp = os.path.join(tmpdir, "ledger.sqlite")
    try:
        con = connect(tmp)
        try:
            fr = merkle.Frontier()
            nodes = []
            for r in rows:
                fr.push(merkle.leaf_hash(r[4]), nodes)
            con.execute("BEGIN IMMEDIATE")
            con.executemany("INSERT INTO entries(idx, ts, data, prev, hash) VALUES (?,?,?,?,?)", rows)
            con.executemany("INSERT INTO nodes(pos, level, hash) VALUES (?,?,?)",
                            tree.node_rows(nodes, format_of(con)[1]))
            con.executemany("INSERT OR REPLACE INTO checkpoints(size, timestamp_ms, root, note) "
                            "VALUES (?,?,?,?)",
                            [(p["size"], p["timestamp_ms"], p["root"], t) for t, p in notes])
            con.execute("COMMIT")
            con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        finally:
            con.close()
        with open(os.path.join(tmpdir, ckpt.PUB_FILE), "wb") as f:
            f.write(pub_pem)
        res = verify_path(tmp, key_folder=tmpdir, workers=1)
        if not res.ok:
            raise ArchiveError("restored ledger failed its own verification: %s" % res.message())
        pub_path = os.path.join(folder, ckpt.PUB_FILE)
        if os.path.exists(db) or os.path.exists(pub_path) and open(pub_path, "rb").read() != pub_pem:
            raise ArchiveError("%s or a different %s appeared while restoring; nothing written" % (db, pub_path))
        os.replace(os.path.join(tmpdir, ckpt.PUB_FILE), pub_path)
        os.replace(tmp, db)
    finally:
        for f in os.listdir(tmpdir):
            os.unlink(os.path.join(tmpdir, f))
        os.rmdir(tmpdir)
    return res


def restore(dirs, k, db, public_key_pem=None, progress=None):
    """Rebuild a ledger into the new database `db` from the shards found under `dirs`, using any
    k valid shards per segment; segments must chain from entry 0. Everything is verified before
    anything is written. progress(done, total, what): done never decreases, total grows once the
    segments are known (shards read + segments + 1 write step), the last call has done == total.
    -> summary dict."""
    if type(k) is not int or not 1 <= k <= 256:
        raise ArchiveError("--k must be an integer in 1..256, got %r" % (k,))
    folder = os.path.dirname(os.path.abspath(db))
    if os.path.exists(db):
        raise ArchiveError("%s already exists; restore writes a new ledger (choose another path)" % db)
    if not os.path.isdir(folder):
        raise ArchiveError("folder %s of %s does not exist" % (folder, db))
    for name in (ckpt.KEY_FILE,):
        if os.path.exists(os.path.join(folder, name)):
            raise ArchiveError("%s holds %s of another ledger; restore into an empty folder" % (folder, name))
    trusted = None
    if public_key_pem is not None:
        try:
            trusted = ckpt.load_public_key(public_key_pem)
        except (ValueError, ckpt.CheckpointError) as e:
            raise ArchiveError("--pubkey is not an Ed25519 public key PEM (%s)" % e) from None
    paths = find_shards(dirs)
    prog = progress or (lambda done, total, what: None)
    rejected, groups = [], {}
    for n_done, p in enumerate(paths):
        prog(n_done, len(paths) + 1, "reading shards")
        try:
            h, body = read_shard(p)
        except ArchiveError as e:
            rejected.append({"path": p, "why": str(e)})
            continue
        if h["k"] != k:
            rejected.append({"path": p, "why": "sealed with k=%d, --k %d given" % (h["k"], k)})
            continue
        key = (h["origin"], h["start"], h["stop"], h["n"], h["segment_len"], h["segment_sha3"])
        groups.setdefault(key, {}).setdefault(h["index"], (p, h, body))
    segments, short = {}, []
    for key, group in sorted(groups.items(), key=lambda kv: (kv[0][1], -kv[0][2], -len(kv[1]))):
        where = "segment [%d, %d) of %s" % (key[1], key[2], key[0])
        if len(group) < k:
            short.append("%s: %d valid shard(s), %d needed" % (where, len(group), k))
            continue
        seg, rej = _decode(group, k)
        rejected += rej
        if seg is None:
            short.append("%s: no %d shards decode to the segment" % (where, k))
            continue
        try:
            sh, lines = parse_segment(seg)
        except ArchiveError as e:
            short.append("%s: %s" % (where, e))
            continue
        if (sh["origin"], sh["start"], sh["stop"]) != key[:3]:
            short.append("%s: the decoded segment names a different range" % where)
            continue
        segments.setdefault(key[1], []).append((sh, lines, len(group) - len(rej)))
    if 0 not in segments:
        detail = "; ".join(short) or "no shard files found under %s" % ", ".join(dirs)
        bad = ("; rejected: " + "; ".join("%s (%s)" % (r["path"], r["why"]) for r in rejected[:5])) if rejected else ""
        raise ArchiveError("cannot restore: fewer than k=%d valid shards for a segment starting at "
                           "entry 0 (%s)%s; nothing written" % (k, detail, bad))
    # chain segments from 0, verifying each before taking the next
    pos, prev, fr, rows, notes, origin, pem, used, errors = 0, ZERO_HASH, merkle.Frontier(), [], [], None, None, 0, []
    total = sum(len(v) for v in segments.values())
    base = len(paths)                      # progress steps: shards read, segments, the write
    prog(base, base + total + 1, "shards read")
    while pos in segments:
        took = False
        for sh, lines, nshards in sorted(segments[pos], key=lambda s: -s[0]["stop"]):
            if origin is not None and sh["origin"] != origin:
                continue
            pub_pem = sh["public_key_pem"].encode("ascii")
            try:
                pub = trusted or ckpt.load_public_key(pub_pem)
                if pem is not None and pub_pem != pem and trusted is None:
                    raise ArchiveError("segment [%d, %d) carries a different public key" % (sh["start"], sh["stop"]))
                fr2, prev2, rows2, note = verify_segment(sh, lines, pub, prev, fr)
            except (ArchiveError, ValueError, ckpt.CheckpointError) as e:
                errors.append(str(e))
                continue
            if pos == 0:
                origin = "becomingone.ledger/" + rows2[0][4].hex()[:16]
                if sh["origin"] != origin:
                    errors.append("segment [0, %d): origin %r is not the genesis entry's %r"
                                  % (sh["stop"], sh["origin"], origin))
                    continue
            pem = pub_pem if trusted is None else trusted_pem(trusted)
            fr, prev, pos = fr2, prev2, sh["stop"]
            rows += rows2
            notes.append((sh["checkpoint"], note))
            used += nshards
            took = True
            prog(base + len(notes), base + total + 1, "verified [%d, %d)" % (sh["start"], sh["stop"]))
            break
        if not took:
            break
    if not rows:
        raise ArchiveError("cannot restore: no segment starting at entry 0 verified (%s); nothing "
                           "written" % "; ".join(errors))
    size = len(rows)
    keep = [(t, p) for t, p in notes if p["size"] <= size]
    if not keep:
        raise ArchiveError("cannot restore: the restored entries [0, %d) have no signed checkpoint of "
                       "a size <= %d to store (%s); nothing written" % (size, size, "; ".join(errors)))
    res = _write_db(db, rows, keep, pem)
    prog(base + total + 1, base + total + 1, "written")
    fp = hashlib.sha256(ckpt.raw_public(ckpt.load_public_key(pem))).hexdigest()[:16]
    return {"db": db, "origin": origin, "size": size, "root": res.root.hex() if isinstance(res.root, bytes) else res.root,
            "checkpoint_size": max(p["size"] for _t, p in keep), "segments": len(notes),
            "shards_used": used, "rejected": rejected, "skipped_segments": short + errors,
            "public_key_sha256_16": fp, "key_pinned": trusted is not None}


def trusted_pem(pub):
    return pub.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
