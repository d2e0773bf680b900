"""The closing JSON report of device/main.py (loaded only when the run ends)."""
import json


def report_json(beat):
    r = beat.report()
    r["board"] = beat.hw.name
    r["device_id"] = beat.enc.device_id
    r["boot_id"] = beat.enc.boot_id
    h = beat.host
    if h is not None:
        r["host_frames"] = {"ok": h.rx_ok, "crc": h.rx_crc, "cobs": h.rx_cobs, "auth": h.rx_auth,
                            "replay": h.rx_replay, "other": h.rx_other,
                            "configs": h.configs, "config_rejected": h.config_rejected,
                            "clears": h.clears, "time_syncs": h.time_syncs}
    return json.dumps(r)
