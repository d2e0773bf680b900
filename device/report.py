"""The closing report of a run (device/main.py prints it as one JSON line): loaded at exit only,
so its names do not sit in a running board's heap.  Few names of its own (report, report_json,
write_report): every new name interned at exit may need a new qstr pool, and on the unix port
a 192K heap has no room left for one (docs/DEVICE.md "Names")."""
import gc
import json

from shared.protocol_codes import DECISION_NAMES


def report(beat):
    """The run's figures: beats, lateness percentiles, decisions, collapses, heap, mining, link,
    board, ids, boot state, host-frame counters."""
    lt = beat.lateness
    dec = {}
    for i in range(len(DECISION_NAMES)):
        dec[DECISION_NAMES[i]] = beat.decisions[i]
    q = beat.queue
    mem = hasattr(gc, "mem_free")
    link = beat.link
    # mean bytes allocated by steps 1-8 over the measured steady beats (None on CPython)
    apb = None
    if mem and beat.alloc_beats:
        t = beat.alloc_total
        n = beat.alloc_beats
        apb = t // n if t % n == 0 else t / n
    r = {
        "beats": beat.beat,
        "period_us": beat.deadline.period_us if beat.deadline else 0,
        "lateness_us": {"p50": lt.percentile(50), "p99": lt.percentile(99), "max": lt.max_us},
        "skipped_beats": beat.skipped,
        "samples_lost": beat.samples_lost(),
        "decisions": dec,
        "collapses": beat.collapses,
        "quarantined": beat.quarantined,
        "crashed": beat.crashed.decode() if beat.crashed else None,
        "heap_free": gc.mem_free() if mem else None,
        "alloc_bytes_per_beat": apb,
        "alloc_bytes_max_beat": beat.alloc_max if mem else None,
        "gc_in_beat": beat.gc_in_beat,
        "gc_idle_runs": beat.gc_runs,
        "witness": {"pushed": q.pushed, "mined": beat.records_mined, "acked": q.acked,
                    "resent": q.resent, "dropped": q.dropped, "pending": q.pending()},
        "pow_hashes": beat.hashes,
        "link": {"name": link.name, "tx_frames": link.tx_frames, "rx_frames": link.rx_frames,
                 "send_errors": link.send_errors},
        "board": beat.hw.name,
        "device_id": beat.enc.device_id,
        "boot_id": beat.enc.boot_id,
    }
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
    return r


def report_json(beat):
    """report(beat) as one JSON line."""
    return json.dumps(report(beat))


def write_report(beat, out):
    """report(beat) and a newline written to the stream ``out`` piece by piece (json.dump
    streams): at exit the beat's heap may hold no 1 KB run for the whole line."""
    json.dump(report(beat), out)
    out.write("\n")
