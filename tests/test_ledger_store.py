"""Ledger storage (on-disk format 2): stored tree levels, proofs from stored + recomputed
subtrees at every size, multi-row inserts at chunk boundaries, format-1 upgrade and refusal of
unknown formats, synchronous option, and the lazily built futures under races."""
import os
import random
import sqlite3
import threading

import pytest

from becomingone.errors import UserError
from becomingone.ledger import Ledger, LedgerError, merkle, verify_path
from becomingone.ledger.db import FORMAT, INSERT_CHUNK, NODE_LEVEL
from becomingone.ledger.future import LedgerFuture
from tests.reference.ledger_ref import reference_root
from tests.test_ledger_faults import _sql


def W(i):
    return {"device": 1 + i % 7, "layer": "micro", "n": i}


def _leaves(led):
    return [merkle.leaf_hash(bytes.fromhex(e.hash)) for e in led.entries()]


def _check_inclusion(led, m, size, leaves):
    p = led.inclusion_proof(m, size)
    size = led.size if size is None else size
    assert p["tree_size"] == size
    root = reference_root(leaves[:size])
    assert bytes.fromhex(p["root"]) == root and bytes.fromhex(p["leaf_hash"]) == leaves[m]
    assert merkle.verify_inclusion(m, size, leaves[m], [bytes.fromhex(x) for x in p["path"]], root), (m, size)


def test_every_proof_of_small_ledgers_at_current_and_older_sizes(tmp_path):
    with Ledger(str(tmp_path / "l.sqlite")) as led:
        for _ in range(69):
            leaves = _leaves(led)
            n = led.size
            for m in range(n):                       # current size: suffixes from the frontier
                _check_inclusion(led, m, None, leaves)
            size = max(1, n // 2 + 1)                # an older size: everything from storage
            for m in range(size):
                _check_inclusion(led, m, size, leaves)
            for old in range(n + 1):
                c = led.consistency_proof(old)
                assert merkle.verify_consistency(old, n, reference_root(leaves[:old]),
                                                 reference_root(leaves), [bytes.fromhex(x) for x in c["path"]])
            led.append("witness", W(n))
        rows = _sql(led.path, "SELECT pos, level FROM nodes ORDER BY pos, level")
        n = led.size
        expect = sorted(((k + 1) << lv, lv) for lv in range(NODE_LEVEL, 8) for k in range(n >> lv))
        assert rows == expect and min(lv for _p, lv in rows) == NODE_LEVEL


@pytest.mark.parametrize("batches", [[1, 1, 5], [INSERT_CHUNK - 1, 2, INSERT_CHUNK, INSERT_CHUNK + 3], [2 * INSERT_CHUNK + 700]])
def test_multi_row_inserts_at_chunk_boundaries(tmp_path, batches):
    p = str(tmp_path / "l.sqlite")
    i = 0
    with Ledger(p) as led:
        for b in batches:
            es = led.append_many([("witness", W(i + j)) for j in range(b)])
            assert [e.index for e in es] == list(range(led.size - b, led.size))
            i += b
        assert led.size == 1 + sum(batches)
        assert [e.data["n"] for e in led.entries(1)] == list(range(sum(batches)))
        leaves = _leaves(led)
        assert led.root() == reference_root(leaves)
        for m in random.Random(3).sample(range(led.size), min(20, led.size)):
            _check_inclusion(led, m, None, leaves)
    r = verify_path(p, workers=1)
    assert r.ok and r.size == 1 + sum(batches), r.message()


def _make_format1(p, n=100):
    """A format-1 file: every level >= 1 stored, no 'format' meta row (as older versions wrote)."""
    with Ledger(p) as led:
        led.append_many([("witness", W(i)) for i in range(n - 1)])
        root = led.root()
        leaves = _leaves(led)
    fr, nodes = merkle.Frontier(), []
    for lf in leaves:
        fr.push(lf, nodes)
    c = sqlite3.connect(p, isolation_level=None)
    c.executemany("INSERT INTO nodes(pos, level, hash) VALUES (?,?,?)",
                  [((k + 1) << lv, lv, h) for lv, k, h in nodes if lv < NODE_LEVEL])
    c.execute("DELETE FROM meta WHERE key IN ('format', 'node_level')")
    c.close()
    return root


def test_format1_file_verifies_read_only_and_is_upgraded_on_open(tmp_path):
    p = str(tmp_path / "old.sqlite")
    root = _make_format1(p)
    assert _sql(p, "SELECT count(*) FROM nodes WHERE level < ?", (NODE_LEVEL,))[0][0] > 0
    r = verify_path(p, workers=1)                    # read-only: checks format 1 as it is
    assert r.ok and r.root == root, r.message()
    with Ledger(p) as led:                           # writable open: upgraded in place
        assert led.root() == root and led.size == 100
        _check_inclusion(led, 37, None, _leaves(led))
        led.append("witness", W(1000))
    assert _sql(p, "SELECT value FROM meta WHERE key='format'") == [(str(FORMAT),)]
    assert _sql(p, "SELECT count(*) FROM nodes WHERE level < ?", (NODE_LEVEL,))[0][0] == 0
    assert verify_path(p).ok


def test_format2_file_with_low_level_nodes_fails_verify(tmp_path):
    p = str(tmp_path / "l.sqlite")
    with Ledger(p) as led:
        led.append_many([("witness", W(i)) for i in range(40)])
        h = led.root()
    _sql(p, "INSERT INTO nodes(pos, level, hash) VALUES (2, 1, ?)", (h,))
    r = verify_path(p)
    assert not r.ok and r.first_bad["part"] == "tree" and "unexpected node" in r.first_bad["what"], r.message()


def test_newer_format_is_refused_clearly(tmp_path):
    p = str(tmp_path / "l.sqlite")
    Ledger(p).close()
    _sql(p, "UPDATE meta SET value='9' WHERE key='format'")
    for opener in (lambda: Ledger(p), lambda: verify_path(p)):
        with pytest.raises(LedgerError, match=r"on-disk format 9, newer than this becomingone reads \(formats 1\.\.2\)"):
            opener()


def test_synchronous_option(tmp_path):
    p = str(tmp_path / "l.sqlite")
    with Ledger(p, synchronous="NORMAL") as led:
        assert led._con.execute("PRAGMA synchronous").fetchone()[0] == 1     # NORMAL
        led.submit("witness", W(1)).result(timeout=10)
    with Ledger(p) as led:
        assert led._con.execute("PRAGMA synchronous").fetchone()[0] == 2     # FULL
    with pytest.raises(UserError, match="synchronous must be one of FULL, NORMAL"):
        Ledger(p, synchronous="OFF")


def test_lazy_future_races_between_waiters_callbacks_and_the_writer():
    for rnd in range(400):
        f = LedgerFuture()
        got, cbs = [], []
        waiter = threading.Thread(target=lambda: got.append(f.result(timeout=10)))
        adder = threading.Thread(target=lambda: f.add_done_callback(lambda x: cbs.append(x.result())))
        ths = [waiter, adder]
        if rnd % 2:
            ths.reverse()
        for t in ths:
            t.start()
        if rnd % 3 == 0:
            f.done()
        f._resolve(rnd, None)
        for t in ths:
            t.join(10)
        assert got == [rnd] and cbs == [rnd] and f.result() == rnd
    f = LedgerFuture()
    f._resolve(None, ValueError("boom"))
    with pytest.raises(ValueError, match="boom"):
        f.result()


def test_submit_futures_waited_from_many_threads(tmp_path):
    with Ledger(str(tmp_path / "l.sqlite")) as led:
        futs, out = [], {}
        lock = threading.Lock()

        def waiter(fs):
            for f in fs:
                e = f.result(timeout=20)
                with lock:
                    out[e.index] = e.data["n"]

        ths = []
        for j in range(8):
            fs = [led.submit("witness", W(j * 200 + i)) for i in range(200)]
            futs += fs
            t = threading.Thread(target=waiter, args=(fs,))
            t.start()
            ths.append(t)
        for t in ths:
            t.join(30)
        assert sorted(out) == list(range(1, 1601)) and sorted(out.values()) == list(range(1600))
        assert all(f.done() for f in futs)
    assert verify_path(led.path).ok


def test_reopen_after_partial_chunk_keeps_the_frontier(tmp_path):
    p = str(tmp_path / "l.sqlite")
    for rounds in range(5):
        with Ledger(p) as led:
            led.append_many([("witness", W(rounds * 10 + i)) for i in range(rounds * 3 + 1)])
            leaves = _leaves(led)
            assert led.root() == reference_root(leaves)
            _check_inclusion(led, led.size - 1, None, leaves)
    assert verify_path(p).ok
    assert os.path.exists(p)


def test_full_chunk_fast_node_check_catches_moved_and_swapped_nodes(tmp_path):
    p = str(tmp_path / "l.sqlite")
    with Ledger(p) as led:
        for j in range(0, 16400, 4100):
            led.append_many([("witness", W(i)) for i in range(j, j + 4100)])
    assert verify_path(p, workers=1).ok
    # a level-2 node moved to an off-grid pos (same row order, same hashes)
    _sql(p, "UPDATE nodes SET pos=pos+1 WHERE pos=400 AND level=2")
    r = verify_path(p, workers=1)
    assert not r.ok and r.first_bad["index"] == 399 and "(level 2, index 99, covering entries 396..399) is missing" in r.first_bad["what"], r.message()
    _sql(p, "UPDATE nodes SET pos=pos-1 WHERE pos=401 AND level=2")
    assert verify_path(p, workers=1).ok
    # two stored hashes swapped
    (a,), (b,) = _sql(p, "SELECT hash FROM nodes WHERE level=4 AND pos IN (160, 176) ORDER BY pos")
    _sql(p, "UPDATE nodes SET hash=? WHERE level=4 AND pos=160", (b,))
    _sql(p, "UPDATE nodes SET hash=? WHERE level=4 AND pos=176", (a,))
    r = verify_path(p, workers=1)
    assert not r.ok and r.first_bad["index"] == 159 and "level 4, index 9" in r.first_bad["what"], r.message()


def test_second_writer_is_refused(tmp_path):
    """A second writer's batch is refused with the clear one-writer LedgerError (nothing of
    it is written, its state unchanged); the first writer goes on."""
    p = str(tmp_path / "l.sqlite")
    a, b = Ledger(p), Ledger(p)
    try:
        a.append_many([("witness", W(i)) for i in range(5)])
        with pytest.raises(LedgerError, match="changed by another process .size 6, expected 1.; only one writer"):
            b.append("witness", W(9))
        assert b.size == 1
        f = b.submit("witness", W(10))
        with pytest.raises(LedgerError, match="only one writer"):
            f.result(timeout=10)
        a.append("witness", W(5))
        assert a.size == 7
    finally:
        a.close()
        b.close()
    r = verify_path(p, workers=1)
    assert r.ok and r.size == 7, r.message()


def test_future_result_is_an_entry_and_callbacks_get_entries(tmp_path):
    import asyncio
    with Ledger(str(tmp_path / "l.sqlite")) as led:
        got = []
        futs = [led.submit("witness", W(i), callback=lambda e, err: got.append((e, err))) for i in range(50)]
        es = [f.result(timeout=10) for f in futs]
        assert [e.index for e in es] == list(range(1, 51)) and es[0] is futs[0].result()
        assert [e.data["n"] for e in es] == list(range(50)) and es[3].data["kind"] == "witness"
        assert [(e.index, e.hash, err) for e, err in got] == [(e.index, e.hash, None) for e in es]
        assert [e.data for e, _err in got] == [dict(W(i), kind="witness") for i in range(50)]
        assert [e.hash for e in es] == [e.hash for e in led.entries(1)]
        assert all(x.previous_hash == y.hash for x, y in zip(es[1:], es))

        async def main():
            return await asyncio.wrap_future(led.submit("witness", W(99)))
        e = asyncio.run(main())
        assert e.index == 51 and e.data["n"] == 99 and led.get(51).hash == e.hash
