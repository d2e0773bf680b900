"""The rp2040 rows of `becomingone bench device`: the beat measured on the emulated RP2040 at
125 MHz with the shipped defaults (board pico, serial link on USB CDC, a device key), by the same
measurement the RP2040 lane asserts (measure.py + chip_beat.py), against budget.py's numbers.

  row            keys (besides name, runtime "rp2040", board, beats)
  rp2040-step    step_p50_us, step_p99_us, step_max_us, period_us, p50_of_period, p99_of_period,
                 target_p99_of_period (0.40), within_budget, lateness_p99_us and skipped_beats
                 (the firmware's own report of the run: real clock, the chip's time)
  rp2040-alloc   alloc_beats, beats_allocating, alloc_bytes_max, gc_in_step, key,
                 target_bytes_per_beat (0), within_budget
  rp2040-heap    free_after_collect_start, free_after_collect_end, low_water, heap_total,
                 target_free_min (49152), within_budget (level only; flatness over 5,000 beats
                 is the lane's long run)
  rp2040-pow     hashes_per_s, pow_bits, witness_s (expected seconds to mine one WITNESS at
                 pow_bits with the chip doing nothing else), target_witness_s (5.0)
  rp2040-realtime  the beat run as on a board for realtime_beats (2,000): lateness_p50_us,
                 lateness_p99_us, lateness_max_us, p99_of_period, skipped_beats,
                 target_p99_of_period (0.10), target_skipped (0), within_budget, hashes (mined
                 in those beats)
Every row also has firmware_sha256 (the .uf2 booted) and emulated_s / wall_s of the run.
"""
from becomingone.rp2040 import budget
from shared.protocol_codes import POW_BITS_DEFAULT


def collect(beats=300, firmware=None, pow_bits=POW_BITS_DEFAULT, realtime=budget.REALTIME_BEATS):
    from becomingone.rp2040.measure import measure
    return rows_from(measure(board="pico", beats=beats, key=True, firmware=firmware,
                             realtime=realtime), pow_bits)


def rows_from(r, pow_bits=POW_BITS_DEFAULT):
    """The rows of one measure.measure() result."""
    s, a, h, pw = r["step_us"], r["alloc"], r["heap"], r.get("pow") or {"hashes_per_s": -1}
    rep = r.get("report") or {}
    common = {"runtime": "rp2040", "board": r["board"], "beats": r["beats"],
              "firmware_sha256": r["firmware"]["sha256"][:16],
              "emulated_s": r["emulator"]["script_emu_s"], "wall_s": r["emulator"]["script_wall_s"]}
    per = float(r["period_us"])
    rate = pw["hashes_per_s"]

    def row(name, **kw):
        d = {"name": name}
        d.update(common)
        d.update(kw)
        return d
    rows = [
        row("rp2040-step", step_p50_us=s["p50"], step_p99_us=s["p99"], step_max_us=s["max"],
            period_us=r["period_us"], p50_of_period=round(s["p50"] / per, 3),
            p99_of_period=round(s["p99"] / per, 3),
            target_p99_of_period=budget.STEP_P99_MAX_FRACTION,
            within_budget=not budget.check_step(r),
            lateness_p99_us=(rep.get("lateness_us") or {}).get("p99"),
            skipped_beats=rep.get("skipped_beats")),
        row("rp2040-alloc", alloc_beats=a["beats"], beats_allocating=a["beats_allocating"],
            alloc_bytes_max=a["bytes_max"], gc_in_step=a["gc_in_step"], key=r["key"],
            target_bytes_per_beat=budget.ALLOC_MAX_PER_STEADY_BEAT,
            within_budget=not budget.check_alloc(r)),
        row("rp2040-heap", free_after_collect_start=h["free_after_warmup_collect"],
            free_after_collect_end=h["free_after_end_collect"], low_water=h["low_water"],
            heap_total=h["total"], target_free_min=budget.HEAP_FREE_MIN,
            within_budget=not budget.check_heap_level(r)),
        row("rp2040-pow", hashes_per_s=rate, pow_bits=pow_bits,
            witness_s=round((1 << pow_bits) / float(rate), 2) if rate > 0 else None,
            target_witness_s=budget.POW_WITNESS_MAX_S),
    ]
    rt = r.get("realtime")
    if rt:
        lt = rt["lateness_us"]
        rows.append(row("rp2040-realtime", realtime_beats=rt["beats"], lateness_p50_us=lt["p50"],
                        lateness_p99_us=lt["p99"], lateness_max_us=lt["max"],
                        p99_of_period=round(lt["p99"] / per, 3),
                        skipped_beats=rt["skipped_beats"],
                        target_p99_of_period=budget.LATENESS_P99_MAX_FRACTION,
                        target_skipped=budget.SKIPPED_MAX,
                        within_budget=not budget.check_realtime(r), hashes=rt["hashes"]))
    return rows
