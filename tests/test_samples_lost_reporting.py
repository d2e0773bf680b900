"""Sampler overruns reported end to end: a device's HEARTBEAT `samples_lost` reaches the HTTP API
(/api/devices), /metrics and `becomingone status`; a boot after a crash is flagged in status."""

from shared import protocol as P
from tests.http_helpers import Host
from tests.test_coordinator import HELLO, FakeDevice, wait
from tests.test_http_metrics import _scrape

HB = {"beats": 500, "late_p50_us": 20, "late_p99_us": 300, "late_max_us": 900,
      "heap_free": 20000, "witness_queue": 0, "rx_ok": 3, "rx_crc": 0, "rx_cobs": 0,
      "rx_auth": 0, "rx_replay": 0, "rx_other": 0, "tx_dropped": 0, "samples_lost": 1234}


def test_samples_lost_in_api_metrics_and_status(tmp_path):
    h = Host(tmp_path)
    try:
        dev = h.device(17, beats=5)
        dev.send(P.HEARTBEAT, HB)
        assert wait(lambda: h.c.call(lambda: "heartbeat" in h.c.sessions.get(17).extra))
        status, body, _ = h.request("/api/devices")
        d = [x for x in body["devices"] if x["device_id"] == 17][0]
        assert status == 200 and d["samples_lost"] == 1234
        assert d["heartbeat"]["samples_lost"] == 1234
        m = _scrape(h)
        assert m[("becomingone_device_samples_lost_total", (("device", "17"),))] == 1234
        # a device that booted after a crash, latched: flagged in the status lines
        crashed = dict(HELLO, reset_cause=P.RESET_CRASH, boot_flags=P.BOOT_LATCHED | P.BOOT_RESTORED)
        dev2 = FakeDevice(h.addr, device_id=18)
        dev2.send(P.HELLO, crashed)
        dev2.send(P.HEARTBEAT, dict(HB, samples_lost=0))
        assert wait(lambda: h.c.call(lambda: h.c.sessions.get(18) is not None and
                                     "heartbeat" in h.c.sessions.get(18).extra))
        from becomingone.commands.status import _device_lines
        lines = _device_lines(h.c.status()["sessions"])
        assert any(l.startswith("device 17") and "1234 samples lost" in l for l in lines), lines
        assert any(l.startswith("device 18") and "crash reset" in l and
                   "QUARANTINE restored" in l for l in lines), lines
    finally:
        h.stop()
