"""The closing JSON report of device/main.py (loaded at exit only)."""
import json


def report_json(beat):
    """One JSON line: Beat.report() plus board, ids, boot state, host-frame counters."""
    r = beat.report()
    r["board"] = beat.hw.name
    r["device_id"] = beat.enc.device_id
    r["boot_id"] = beat.enc.boot_id
    latch = getattr(beat, "latch", None)
    if latch is not None:
        r["boot"] = latch.report()
    h = beat.host
    if h is not None:
        r["host_frames"] = {"ok": h.rx_ok, "crc": h.rx_crc, "cobs": h.rx_cobs, "auth": h.rx_auth,
                            "replay": h.rx_replay, "other": h.rx_other,
                            "configs": h.configs, "config_rejected": h.config_rejected,
                            "clears": h.clears, "time_syncs": h.time_syncs,
                            "last_error": h.last_error}
    return json.dumps(r)
