"""The integration core end to end on real frames: the device's integer KAIROS partials
(shared/kairos.py) -> TELEMETRY frames (shared/protocol.py, some lost) -> the host's batch
decoder (host/wire/telemetry.py) -> Master -> sync / witnessing / memory -> `becomingone memory`; the
Master's windows agree with the float64 reference over the raw samples."""
import json

import numpy as np
import pytest

from tests.reference import kairos_ref
from becomingone.cli import main
from becomingone.config import load_config
from becomingone.core.integration import Integration
from becomingone.core.master import Master
from becomingone.wire.telemetry import decode_telemetry_batch
from shared import kairos as dk
from shared import kairos_host as KH
from shared import protocol as P

FS, PERIOD_US = 1000, 4210


def test_frames_to_memory(tmp_path, capsys):
    rng = np.random.default_rng(9)
    n = 40 * FS
    t = np.arange(n) / FS
    # a machine that knocks once per turn at omega = 2 rad/s: a 100 ms, 10 Hz swing every
    # 2 pi / omega seconds.  With L = 1 sample d[n-1] ~ d[n] inside a swing, and every swing sits at
    # the same phase of e^{i omega t}, so windows of any length are coherent (C near 1): collapse.
    period = 2 * np.pi / KH.quantized_omega(dk.phase_step_for(2.0, FS), FS)
    swing = (np.mod(t, period) < 0.1).astype(float)
    x = np.clip(np.rint(2048 + 1500 * swing * np.sin(2 * np.pi * 10 * np.mod(t, period))
                        + rng.normal(0, 0.3, n)), 0, 4095).astype(int)
    sizes, acc, tot = [], 0.0, 0
    while tot < n:
        acc += PERIOD_US * 1e-6 * FS
        k = min(int(acc) - tot, n - tot)
        sizes.append(k)
        tot += k
    x = x - 2048                  # the KAIROS stream is signed (the device removes the mean)
    # 12-bit values, one beat per window segment: sum_shift 0, so the Master's sums are exact
    kw = dict(rate_hz=FS, omega=2.0, lag=1, bits=12, max_samples_per_beat=8, seg_beats=1,
              beats_per_s=1e6 / PERIOD_US)
    em = dk.Emissary(**kw)
    parts = KH.beat_partials(x.tolist(), sizes, **kw)
    lost = rng.random(len(parts)) < 0.02
    frames, seq = [], 0
    for b, p in enumerate(parts):
        if lost[b]:
            continue
        rec = dict(beat=b, period_us=PERIOD_US, lateness_us=0, dT_re=p[0], dT_im=p[1], dE0=p[2],
                   dEL=p[3], n_samples=p[4], coherence=min(p[5], 65535), pid_error=0, pid_output=0,
                   threat=0, o_weight=0, decision_state=0, level=0, kurt=0, crest=0, anoms=0)
        frames.append(P.encode(P.TELEMETRY, rec, 21, 0x1234, seq, 0, b * PERIOD_US))
        seq += 1
    cfg = load_config(overrides={"data_dir": str(tmp_path), "master.windows": [1, 10, 30],
                                 "master.tau_max": 30})
    m = Master.from_config(cfg)
    idx = m.open_stream(21, 0x1234, FS, PERIOD_US, sum_shift=em.sum_shift, phase_step=em.phase_step,
                        lag_samples=em.lag)
    ledger = []
    from becomingone.ledger import Ledger
    real = Ledger(str(tmp_path / "ledger.db"))   # the entry kinds' checks, for real

    def submit(kind, data):
        ledger.append((kind, data))
        real.append(kind, data)
    core = Integration(cfg, m, ledger_submit=submit)
    now = 1000.0
    for a in range(0, len(frames), 500):
        res = decode_telemetry_batch(frames[a:a + 500])
        beats = res.beats
        assert len(beats) == len(frames[a:a + 500])
        m.ingest_records(idx, beats, boot=beats["boot_id"])
        core.telemetry_coherence(21, int(beats["coherence"][-1]))
        now += 0.5
        core.tick(now=now, health={"frames": a})
    st = m.stream(21)
    assert st["lost"] == int(lost[:st["last_beat"] + 1].sum()) and st["beats"] == len(frames)
    for r in m.windows(21):
        ref = kairos_ref.window(x, sizes, r["first_beat"], r["last_beat"], FS, lag=em.lag,
                                phase_step=em.phase_step, present=~lost)
        assert r["E0"] == ref["E0"] and r["beats"] == ref["beats"]
        # the device rounds every term d*d_L*cos (and sin) to an integer: at most 1/2 per sample
        # and component, times f_s * 2^sum_shift; plus the Q14 table's relative error
        n_samples = r["seconds"] * FS
        bound = 0.5 * np.sqrt(2) * n_samples * FS * 2 ** em.sum_shift + 2e-4 * np.sqrt(ref["E0"] * ref["EL"])
        assert abs(r["T"] - ref["T"]) <= bound
        if r["window"] >= 10:                      # whole swings: large terms, rounding negligible
            assert abs(r["T_hat"] - ref["T_hat"]) < 2e-3
    assert m.window(21, 10)["C"] > 0.95
    # collapses (the 1 s Emissary window holding a whole swing, in phase with the 10 s Master
    # window) went to the ledger, each once (edge-triggered), and to memory as macro records
    assert ledger and all(k == "collapse" and d["device_id"] == 21 and d["boot_id"] == 0x1234
                          and d["C_sync"] >= 0.95 for k, d in ledger)
    assert core.sync.collapses == len(ledger)
    assert core.ledger_errors == 0 and real.size == 1 + len(ledger) and real.verify().ok
    real.close()
    core.close()
    # what memory kept: snapshots of every window, meso rows, meta health
    assert main(["memory", "reconstruct", "--data", str(tmp_path), "--device", "21", "--at", str(now),
                 "--json"]) == 0
    state = json.loads(capsys.readouterr().out)
    assert [w["window"] for w in state["windows"]] == [1.0, 10.0, 30.0]
    kinds = {c["kind"] for c in state["coherence"]}
    assert kinds == {"master", "emissary", "sync"}
    emis = [c for c in state["coherence"] if c["kind"] == "emissary"][0]
    # the host's 1 s window and the device's own Q16 window coherence agree
    assert emis["device_c"] == pytest.approx(emis["C"], abs=0.02)
    assert main(["memory", "query", "--data", str(tmp_path), "--table", "witness", "--layer", "meta",
                 "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["rows"]) >= 1
    assert main(["memory", "query", "--data", str(tmp_path), "--table", "witness", "--layer", "macro",
                 "--json"]) == 0
    assert len(json.loads(capsys.readouterr().out)["rows"]) == len(ledger)
