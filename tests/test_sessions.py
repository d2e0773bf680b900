from becomingone.devices.sessions import SEQ_WINDOW, Session, Sessions


def test_seq_gaps_duplicates_reorder():
    s = Session(1, 10, 0.0)
    assert s.note_seq(0) == "new"
    assert s.note_seq(1) == "new"
    assert s.note_seq(4) == "new"           # 2, 3 lost
    assert s.lost == 2
    assert s.note_seq(3) == "reordered"
    assert s.lost == 1 and s.reordered == 1
    assert s.note_seq(3) == "duplicate"
    assert s.note_seq(4) == "duplicate"
    assert s.duplicates == 2
    assert s.note_seq(4 + SEQ_WINDOW + 5) == "new"
    assert s.note_seq(4) == "old_seq"
    assert s.lost == 1 + SEQ_WINDOW + 4


def test_first_frame_not_zero_counts_loss():
    s = Session(1, 10, 0.0)
    s.note_seq(5)
    assert s.lost == 5


def test_seq_run_fast_path_matches_slow_path():
    a, b = Session(1, 1, 0), Session(1, 1, 0)
    for x in (a, b):
        x.note_seq(0)
        x.note_seq(1)
    assert a.note_seq_run(5, 104, 100)
    for q in range(5, 105):
        b.note_seq(q)
    assert (a.highest, a.seen, a.lost) == (b.highest, b.seen, b.lost)
    assert not a.note_seq_run(100, 110, 11)      # overlaps: slow path
    assert not a.note_seq_run(200, 210, 5)       # holes inside: slow path
    assert a.note_seq(104) == "duplicate" and a.note_seq(50) == "duplicate"


def test_new_boot_retires_old_and_refuses_its_frames(tmp_path):
    opened = []
    ss = Sessions(str(tmp_path / "sessions.json"), max_old_boots=3, on_new_session=opened.append)
    s1, r = ss.lookup(7, 100, 1, now=1.0)
    assert r is None and s1.boot_id == 100
    assert ss.lookup(7, 100, 2)[0] is s1
    s2, r = ss.lookup(7, 200, 1, now=2.0)         # reboot
    assert s2 is not s1 and ss.get(7) is s2
    assert ss.lookup(7, 100, 2) == (None, "stale_boot")   # replay of the earlier boot
    assert ss.lookup(7, 100, 1) == (None, "stale_boot")   # even its HELLO
    assert ss.counters["stale_boot"] == 2
    for b in (300, 400, 500):
        ss.lookup(7, b, 1)
    assert 100 not in ss.old_boots[7] and len(ss.old_boots[7]) == 3   # bounded
    assert [s.boot_id for s in opened] == [100, 200, 300, 400, 500]
    ss.save()
    # a restarted host: the boot current at stop continues; older boots stay refused
    ss2 = Sessions(str(tmp_path / "sessions.json"))
    assert ss2.lookup(7, 400, 2) == (None, "stale_boot")
    s, r = ss2.lookup(7, 500, 2)
    assert r is None and s.boot_id == 500
    s, r = ss2.lookup(7, 600, 1)
    assert ss2.lookup(7, 500, 2) == (None, "stale_boot")


def test_expire_and_summary():
    ss = Sessions(timeout_s=5)
    s, _ = ss.lookup(3, 9, 1, now=0.0)
    s.last_seen = 0.0
    assert ss.expire(now=1.0) == []
    assert ss.expire(now=6.0) == [s] and not s.online
    d = ss.summary()
    assert d["devices"] == 1 and d["online"] == 0
    assert d["sessions"]["3"]["boot_id"] == 9


def test_damaged_state_file(tmp_path):
    p = tmp_path / "s.json"
    p.write_text("[1,2")
    ss = Sessions(str(p))
    assert ss.counters["state_file_damaged"] == 1


def test_host_seq_survives_a_host_restart():
    """A restarted host (fresh session state) must not reuse sequence numbers a keyed device
    already accepted: its seq starts from the wall clock, above what it sent before."""
    import time
    from becomingone.devices.sessions import Session
    a = Session.__new__(Session)
    a.host_seq = 0
    first = [a.next_host_seq() for _ in range(50)]       # a burst runs ahead of the clock
    assert first == sorted(first) and len(set(first)) == 50
    time.sleep(5.2)                    # host traffic is a few frames/s: the clock catches up
    for _ in range(5):
        first.append(a.next_host_seq())
        time.sleep(0.1)
    time.sleep(0.15)
    b = Session.__new__(Session)      # the host restarted: no memory of `a`
    b.host_seq = 0
    assert b.next_host_seq() > max(first)
