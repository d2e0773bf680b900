"""CONFIG from the host, on the device: checked as a whole, then applied atomically.

    new = plan(beat, pairs)     # {name: value} of the CONFIG's keys; raises Refused / Unsupported
    apply(beat, new)            # every key of new, or (on any error) none

``plan`` reads the CONFIG's pairs into ``new`` and checks the configuration the device would
have (``new`` laid over what it runs with, ``now``) with device/config_rules.py: ranges,
alert <= quarantine, k > 0, P > 0, k*P > 1, both PIDs' gains at the resulting beat period, and
that period within the board's limits (f_s, spb_max, period_min_us).  Nothing changes while
planning.  ``apply`` sets every key of ``new``; should a setter still raise (a bug: the rules
are meant to catch everything first), the keys already set are put back to their previous
values before the error goes on, so a CONFIG is never half applied.  Config time only, never on
the beat; no dict of every key (a small heap): values are read one by one (``now``).
"""
from shared import protocol_codes as P
from device import config_rules as R


def limits_of(beat):
    """The board's rate limits as config_rules wants them (HELLO carries the same values)."""
    board = getattr(beat.hw, "limits", None) or {}
    return {"f_s": beat.hw.f_s, "spb_max": beat.m.max_samples(),
            "period_min_us": board.get("period_min_us", 500)}


def now(beat, name):
    """The value of CONFIG key ``name`` the device runs with (q16 keys as floats)."""
    m = beat.m
    s = beat.s
    if name in ("telemetry_every", "pow_bits", "batch_beats", "heartbeat_every"):
        return getattr(s, name)
    if name[:4] == "pid_":
        return getattr(m.arb.pid, name[4:])
    if name[:4] == "act_":
        a = m.act
        if name == "act_mode":
            return 0 if a.auto else 1
        if name == "act_manual":
            return m.act_manual_q16 / 65536.0
        if name == "act_p_on_m":
            return 1 if a.p_on_measurement else 0
        return getattr(a, name[4:])
    if name == "coherence_threshold":
        return m.em.threshold_q16 / 65536.0
    if name == "period_us":
        return m.period_override_us
    if name == "setpoint":
        return m.act.setpoint / 65536.0
    if name == "alert_threshold":
        return m.arb.alert_q16 / 65536.0
    if name == "quarantine_threshold":
        return m.arb.quarantine_q16 / 65536.0
    if name == "lag_samples":
        return 0 if m.auto_lag else m.em.lag
    if name == "omega":
        return m.omega
    if name == "anomaly_z":
        return m.anomaly_z
    if name == "output_safe":
        return beat.hw.pwm.safe_duty / 65535.0
    if name == "pulse_k":
        return m.pulse.k
    if name == "pulse_p":
        return m.pulse.P
    raise KeyError(name)


def plan(beat, pairs):
    """{name: value} for CONFIG ``pairs`` [(key id, i32), ...], checked as a whole."""
    new = {}
    for kv in pairs:
        spec = P.CONFIG_KEYS.get(kv[0])
        if spec is None:
            raise R.Unsupported(kv[0], "config key %d is not known to this firmware "
                                "(known: 1..%d)" % (kv[0], max(P.CONFIG_KEYS)))
        new[spec[0]] = kv[1] / 65536.0 if spec[1] == "q16" else kv[1]

    def get(name):
        return new[name] if name in new else now(beat, name)
    m = beat.m
    R.check(get, new, limits_of(beat), {"omega": m.omega})
    if "lag_samples" in new and new["lag_samples"] > m.em.max_lag:
        raise R.Refused("lag_samples", "lag_samples must be 0 (learn it) or 1..%d KAIROS samples "
                        "on this device, got %r" % (m.em.max_lag, new["lag_samples"]))
    return new


def apply(beat, new):
    old = {}
    for name in new:
        old[name] = now(beat, name)
    try:
        _set(beat, new)
    except Exception:
        _set(beat, old)           # back to the configuration that was running
        raise


def _set(beat, new):
    s = beat.s
    m = beat.m
    arb = m.arb
    a = m.act

    def get(name):
        return new[name] if name in new else now(beat, name)
    for name in ("telemetry_every", "batch_beats", "heartbeat_every", "pow_bits"):
        if name in new:
            setattr(s, name, int(new[name]))
    if "coherence_threshold" in new:
        m.em.set_threshold(new["coherence_threshold"])
    if "alert_threshold" in new or "quarantine_threshold" in new:
        arb.set_thresholds(quarantine=get("quarantine_threshold"), alert=get("alert_threshold"))
        m.health.set_thresholds(arb.alert_q16, arb.quarantine_q16)
    if "anomaly_z" in new:
        m.set_anomaly_z(new["anomaly_z"])
    if "setpoint" in new:
        a.set_setpoint(new["setpoint"])
    if "output_safe" in new:
        beat.hw.pwm.safe_duty = int(round(new["output_safe"] * 65535))
        if beat.quarantined:
            beat.hw.pwm.safe()
    timing = "pulse_k" in new or "pulse_p" in new or "period_us" in new
    if timing:
        m.pulse.set_params(k=get("pulse_k"), P=get("pulse_p"))
        p = int(get("period_us"))
        # period_us equal to round(T_Lambda) means "follow T_Lambda" (exact)
        m.period_override_us = 0 if p in (0, m.pulse.period_us) else p
    ps = m.period_s()
    if timing or "pid_kp" in new or "pid_ki" in new or "pid_kd" in new:
        arb.pid.configure(get("pid_kp"), get("pid_ki"), get("pid_kd"), ps)
        if timing:
            arb.set_period(ps)
            m.health.set_period(ps)
    if timing or "act_kp" in new or "act_ki" in new or "act_kd" in new:
        a.configure(get("act_kp"), get("act_ki"), get("act_kd"), ps)
    if "act_p_on_m" in new:
        a.set_p_on_measurement(new["act_p_on_m"] == 1)
    if "act_manual" in new:
        m.set_manual_output(new["act_manual"])
    if "act_mode" in new:
        m.set_act_mode(int(new["act_mode"]), beat.pwm_duty)
    if "lag_samples" in new and int(new["lag_samples"]) != now(beat, "lag_samples"):
        m.set_lag(int(new["lag_samples"]))     # a new KAIROS stream: announced in HELLO
        if not timing:
            beat.send_hello()
    if timing:
        beat.set_period(m.period_q16())        # sends HELLO
