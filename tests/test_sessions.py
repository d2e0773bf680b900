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
    ss = Sessions(str(tmp_path / "sessions.json"), max_old_boots=3, on_new_session=opened.append,
                  takeover_s=0.0)
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
    ss2 = Sessions(str(tmp_path / "sessions.json"), takeover_s=0.0)
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


def test_keyless_new_boot_cannot_take_a_live_session():
    """One spoofed HELLO with a new boot id must not lock a keyless device out (issue 13 #2): the
    new boot waits until the current session has been silent for takeover_s."""
    ss = Sessions(takeover_s=2.0)
    s1, _ = ss.lookup(7, 100, 1, now=10.0)
    s1.last_seen = 10.0
    assert ss.lookup(7, 999, 1, now=10.5) == (None, "unconfirmed_boot")   # the spoof
    assert ss.get(7) is s1 and 999 not in ss.old_boots.get(7, {})
    assert ss.lookup(7, 100, 2, now=10.6)[0] is s1                      # the device goes on
    s2, r = ss.lookup(7, 200, 1, now=12.5)      # its real reboot: the old boot fell silent
    assert r is None and s2.boot_id == 200 and 100 in ss.old_boots[7]


def test_keyed_device_needs_the_handshake():
    ss = Sessions(takeover_s=0.0)
    assert ss.lookup(7, 100, 1, keyed=True) == (None, "no_session")
    s, opened = ss.establish(7, 100, "SK1")
    assert opened and s.keyed and ss.auths[7] == "SK1"
    assert ss.lookup(7, 100, 2, keyed=True)[0] is s
    assert ss.lookup(7, 200, 1, keyed=True) == (None, "no_session")      # a replayed HELLO
    assert ss.get(7) is s
    s2, opened = ss.establish(7, 100, "SK2")       # host restart / re-key in the same boot
    assert s2 is s and not opened and s.rekeys == 1 and ss.auths[7] == "SK2"
    s3, opened = ss.establish(7, 300, "SK3")        # a proven reboot
    assert opened and ss.get(7) is s3 and 100 in ss.old_boots[7]
    ss.drop_key(7)
    assert 7 not in ss.auths and s3.auth is None


def test_keyless_devices_bounded_and_idle_ones_dropped():
    ss = Sessions(takeover_s=0.0, max_unkeyed=5, unkeyed_idle_s=60.0)
    for d in range(1, 6):
        assert ss.lookup(d, 1, 1, now=0.0)[1] is None
    assert ss.lookup(6, 1, 1, now=0.0) == (None, "device_limit")
    for d in range(1, 6):
        ss.get(d).last_seen = 0.0
    ss.get(1).last_seen = 100.0
    ss.expire(now=100.0)
    assert sorted(ss.current) == [1] and ss.counters["sessions_dropped_idle"] == 4
    # still at most 5 keyless devices per run (their Master rings stay allocated)
    assert ss.lookup(6, 1, 1, now=100.0) == (None, "device_limit")
    assert ss.lookup(2, 7, 1, now=100.0)[1] is None     # a device taken in before comes back


def test_seq_jump_needs_corroboration():
    """One valid frame with seq + 20,000,000 must not make the genuine frames 'old' (issue 13
    #4): the jump is followed only after JUMP_CONFIRM frames above it while the old sequence is
    silent."""
    from becomingone.devices.sessions import JUMP_CONFIRM, JUMP_QUIET_S
    s = Session(1, 10, 0.0)
    for q in range(100):
        assert s.note_seq(q, now=1.0) == "new"
    s.last_seen = 1.0
    assert s.note_seq(20000000 + 100, now=1.01) == "jump"
    for q in range(100, 200):                            # the device goes on: all accepted
        assert s.note_seq(q, now=1.02) == "new"
    s.last_seen = 1.02
    assert s.highest == 199 and s.seq_jumps == 1
    # the attacker confirms the jump while the device keeps talking: still refused
    for k in range(JUMP_CONFIRM + 2):
        assert s.note_seq(20000000 + 101 + k, now=1.03) == "jump"
    assert s.note_seq(200, now=1.04) == "new"
    # a genuine jump (e.g. after a long outage): the old sequence stops, the new one goes on
    s.last_seen = 2.0
    later = 2.0 + JUMP_QUIET_S + 0.1
    res = [s.note_seq(50000 + k, now=later) for k in range(JUMP_CONFIRM + 1)]
    assert res[:JUMP_CONFIRM - 1] == ["jump"] * (JUMP_CONFIRM - 1) and res[JUMP_CONFIRM - 1:] == ["new", "new"]
    assert s.highest == 50000 + JUMP_CONFIRM


def test_restart_refuses_seqs_of_before(tmp_path):
    """Replay across a host restart (issue 13 #5, keyless devices): the highest seq of the boot
    that was current is saved, and frames at or below it are refused after the restart."""
    p = str(tmp_path / "s.json")
    ss = Sessions(p, takeover_s=0.0)
    s, _ = ss.lookup(7, 100, 1)
    for q in range(50):
        s.note_seq(q)
    ss.save()
    ss2 = Sessions(p, takeover_s=0.0)
    s2, r = ss2.lookup(7, 100, 2)
    assert r is None and s2.highest == 49
    assert s2.note_seq(10) in ("old_seq", "duplicate") and s2.note_seq(49) == "duplicate"
    assert s2.note_seq(50) == "new"
