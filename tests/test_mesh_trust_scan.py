"""Trust folder watches of the cells of one process share a recent scan (host/mesh/trust.py
recent_fingerprint): N cells and N trust files cost N stats per scan round, not N^2, and a
change that moves the folder's mtime is never hidden by a shared scan."""
import os

from becomingone.mesh import trust as T


class Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _write(folder, name):
    T.write_trust_entry(folder, name, "origin/" + name, "PEM")


def test_watches_share_a_scan_and_still_see_every_change(tmp_path, monkeypatch):
    folder = str(tmp_path / "trust")
    for i in range(5):
        _write(folder, "cell-%d" % i)
    clock = Clock()
    scans = []
    real = T.fingerprint
    monkeypatch.setattr(T, "fingerprint", lambda f: scans.append(f) or real(f))
    watches = [T.TrustWatch(folder, scan_every=30.0, look_every=5.0, clock=clock) for _ in range(50)]
    assert len(scans) == 1                          # 50 watches, one scan
    clock.t += 31.0                                 # the periodic full scan is due for every watch
    assert not any(w.changed() for w in watches)
    assert len(scans) == 2
    # a new trust file moves the folder's mtime: the shared scan of the old mtime is not used
    _write(folder, "cell-new")
    os.utime(folder, ns=(os.stat(folder).st_atime_ns, os.stat(folder).st_mtime_ns + 10 ** 9))
    clock.t += 5.0
    assert all(w.changed() for w in watches)
    assert len(scans) == 3
    # SIGHUP: a fresh scan of its own
    watches[0].request()
    assert not watches[0].changed() and len(scans) == 4
