# Witness queue: ACK, resend after timeout and after a link drop, full-queue policy.
from device.witness_queue import WitnessQueue, FREE, MINING, READY, SENT


def _push(q, quar=False, body=b"rec"):
    s = q.alloc(quar)
    if s >= 0:
        q.rec[s][0:len(body)] = body
        q.commit(s, len(body))
    return s


def test_lifecycle_mine_send_ack():
    q = WitnessQueue(capacity=4, rec_max=16, timeout_ms=100)
    s = _push(q)
    assert q.state[s] == MINING and q.pending() == 1
    assert q.due(0) == -1          # not mined yet: nothing to send
    assert q.next_to_mine() == s
    q.mined(s, 12345, 1)
    assert q.state[s] == READY
    assert q.due(0) == s
    q.sent(s, 0)
    assert q.due(50) == -1
    assert q.ack(q.rec_id[s])
    assert q.state[s] == FREE and q.pending() == 0
    assert not q.ack(999)
    assert q.unknown_acks == 1


def test_resend_after_timeout_with_backoff():
    q = WitnessQueue(capacity=4, rec_max=16, timeout_ms=100, max_timeout_ms=300)
    s = _push(q)
    q.mined(s, 1)
    q.sent(s, 1000)
    assert q.due(1099) == -1
    assert q.due(1100) == s
    q.sent(s, 1100)            # resend: timeout doubles
    assert q.resent == 1
    assert q.due(1299) == -1
    assert q.due(1300) == s
    q.sent(s, 1300)
    q.sent(s, 1600)
    assert q.wait_ms[s] == 300  # capped
    assert q.sends[s] == 4


def test_resend_after_link_drop():
    q = WitnessQueue(capacity=4, rec_max=16, timeout_ms=1000)
    a = _push(q)
    b = _push(q)
    q.mined(a, 1)
    q.mined(b, 2)
    q.sent(a, 0)
    q.sent(b, 0)
    assert q.due(10) == -1
    q.link_restored(10)
    got = q.due(10)
    assert got in (a, b)
    q.sent(got, 10)
    other = q.due(10)
    assert other in (a, b) and other != got


def test_full_queue_evicts_oldest_non_quarantine():
    q = WitnessQueue(capacity=3, rec_max=16)
    s0 = _push(q, body=b"0")
    sq = _push(q, quar=True, body=b"Q")
    s1 = _push(q, body=b"1")
    id0 = q.rec_id[s0]
    s2 = _push(q, body=b"2")     # full: evicts record 0
    assert s2 == s0 and q.dropped == 1
    assert q.rec_id[s2] != id0
    assert q.quar[sq] == 1 and q.state[sq] == MINING


def test_quarantine_records_never_dropped_and_clear_refused_when_needed():
    q = WitnessQueue(capacity=3, rec_max=16)
    a = _push(q, quar=True)
    assert q.can_clear()
    b = _push(q, quar=True)
    assert not q.can_clear()     # a third QUARANTINE would need the last slot
    n = _push(q)                 # a normal record still fits
    assert n >= 0
    m = _push(q)                 # full of Q + one normal: evicts the normal one
    assert m == n and q.dropped == 1
    c = _push(q, quar=True)      # a QUARANTINE record evicts the normal one
    assert c == n and q.quar[c] == 1
    assert _push(q) == -1        # only QUARANTINE left: the normal record is dropped
    for s in (a, b, c):
        assert q.state[s] == MINING and q.quar[s] == 1
    assert q.quarantine_pending() == 3


def test_quarantine_mined_first():
    q = WitnessQueue(capacity=4, rec_max=16)
    a = _push(q)
    b = _push(q, quar=True)
    assert q.next_to_mine() == b
    q.mined(b, 7)
    assert q.next_to_mine() == a


def test_bad_arguments_rejected():
    for kw in ({"capacity": 1}, {"rec_max": 0}, {"timeout_ms": 0}):
        try:
            WitnessQueue(**kw)
        except ValueError:
            pass
        else:
            assert False, kw
    q = WitnessQueue(capacity=2, rec_max=8)
    s = q.alloc()
    try:
        q.commit(s, 9)
    except ValueError as e:
        assert "1..8" in str(e)
    else:
        assert False


def test_steady_operations_do_not_allocate():
    try:
        import gc
        gc.mem_alloc
    except (ImportError, AttributeError):
        return
    q = WitnessQueue(capacity=4, rec_max=16)
    s = _push(q)
    q.mined(s, 1)
    q.sent(s, 0)
    gc.collect()
    a = gc.mem_alloc()
    for t in range(200):
        q.due(t)
        q.next_to_mine()
        q.can_clear()
    assert gc.mem_alloc() - a == 0
