"""The firmware's configuration rules: every CONFIG key's range, the rules between keys, and the
board's rate limits.  One definition, used by

- the device before it applies a CONFIG (device/config_plan.py: the whole configuration it would
  have is checked before any key is applied),
- the host before it stores a change in a device's config history (host/devconfig.py), with the
  limits the device announced in its HELLO,
- the device's boot (device/runner.py) and ``becomingone flash`` for the board's sample rate and
  beat period (tools/deploy/plan.py).

A configuration is read through ``get(name) -> value`` in CONFIG units (shared/protocol_codes.py
CONFIG_KEYS: "q16" keys as floats, as the device sees them after the wire's round(v * 65536)):
the host passes a dict's ``__getitem__``, the device a function that looks in the CONFIG's pairs
and then at what it runs with (device/config_plan.py; no dict of every key on a small heap).
``check`` raises ``Refused(key, message)`` (a ValueError) naming the key at fault, or
``Unsupported`` for a key the device cannot change at run time; it allocates only on refusal
(the message), config time only, never on the beat.

Board limits (``boards/*.py`` LIMITS, sent in HELLO): ``f_s`` the sample rate, ``spb_max`` the
most samples one beat takes, ``period_min_us`` the shortest beat period; the rate rule itself is
in device/limits.py (period <= (spb_max - 1) / f_s).
"""
from device.pulse import t_lambda
from device.pid import check_gains

# the actuator PID's defaults (SPEC §3 step 6; CONFIG act_kp/ki/kd)
ACT_GAINS = (2.0, 8.0, 0.0)


from device.limits import (Refused, Unsupported, key_of, message_of,  # noqa: F401
                           period_max_us, check_rate, PERIOD_LIMIT_US)


_G = 4096.0           # |gain| bound of device/pid.py


def _range(name):
    """(lo, hi, integer) of a key, or None when this firmware does not know it."""
    if name in ("coherence_threshold", "setpoint", "alert_threshold", "quarantine_threshold",
                "output_safe", "act_manual"):
        return 0.0, 1.0, False
    if name in ("pid_kp", "pid_ki", "pid_kd", "act_kp", "act_ki", "act_kd"):
        return -_G, _G, False
    if name in ("pulse_k", "pulse_p", "omega"):
        return -32768.0, 32768.0, False
    if name == "telemetry_every":
        return 1, 255, True
    if name == "pow_bits":
        return 0, 28, True
    if name == "period_us":
        return 0, PERIOD_LIMIT_US, True
    if name == "batch_beats":
        return 1, 5, True
    if name == "heartbeat_every":
        return 0, 100000, True
    if name == "anomaly_z":
        return 2.0, 40.0, False
    if name in ("act_mode", "act_p_on_m"):
        return 0, 1, True
    if name == "lag_samples":
        return 0, 1000, True          # 0: learn it; a device refuses more than its longest
    return None


BOOT_ONLY = ("omega",)


def _pick(changed, names):
    """The key a cross-key rule names: the first of names that this change touches."""
    for n in names:
        if changed is None or n in changed:
            return n
    return names[0]


def effective_period_us(get):
    """The beat period a configuration gives: period_us, or T_Lambda(pulse_k, pulse_p) when
    period_us is 0 or equals round(T_Lambda) (then the period follows T_Lambda exactly)."""
    tl = int(round(t_lambda(get("pulse_k"), get("pulse_p")) * 1e6))
    p = get("period_us")
    return tl if p in (0, tl) else p


def check(get, changed, limits=None, running=None):
    """Check a whole configuration: ``get(name)`` gives every key's value (the CONFIG's for the
    keys it sets, the running one for the others); changed: the names this CONFIG sets (a
    cross-key rule names one of them; boot-time-only keys are checked only when changed);
    limits: the board's (HELLO: f_s, spb_max, period_min_us), or None; running:
    {"lag_samples", "omega"} the device runs with, or None.
    Raises Refused / Unsupported; returns the effective beat period in us."""
    for name in changed:
        r = _range(name)
        if r is None:
            raise Unsupported(name, "config key %s is not known to this firmware" % (name,))
        v = get(name)
        if r[2] and v != int(v):
            raise Refused(name, "%s must be an integer, got %r" % (name, v))
        if not r[0] <= v <= r[1]:
            raise Refused(name, "%s must be in %s..%s, got %r" % (name, r[0], r[1], v))
        if name in BOOT_ONLY and running is not None:
            cur = running.get(name)
            if cur is not None and abs(v - cur) > 1.0 / 65536:
                raise Unsupported(name, "%s is set at boot only (running %r, asked %r)"
                                  % (name, cur, v))
    # thresholds: 0 < alert <= quarantine <= 1
    a = get("alert_threshold")
    q = get("quarantine_threshold")
    if not a > 0.0:
        raise Refused("alert_threshold", "alert_threshold must be > 0, got %r" % (a,))
    if not a <= q:
        raise Refused(_pick(changed, ("alert_threshold", "quarantine_threshold")),
                      "alert_threshold (%r) must be <= quarantine_threshold (%r)" % (a, q))
    # T_Lambda: k > 0 flows, P > 0 nodes, k*P > 1 (a negative k with a negative P has k*P > 1
    # but no meaning: refused by sign first)
    k = get("pulse_k")
    p = get("pulse_p")
    if not k > 0.0:
        raise Refused("pulse_k", "pulse_k must be > 0 (parallel flows), got %r" % (k,))
    if not p > 0.0:
        raise Refused("pulse_p", "pulse_p must be > 0 (nodes), got %r" % (p,))
    if not k * p > 1.0:
        raise Refused(_pick(changed, ("pulse_p", "pulse_k")),
                      "pulse_k * pulse_p must be > 1 (T_Lambda is undefined otherwise), got "
                      "%r * %r" % (k, p))
    pu = get("period_us")
    if 0 < pu < 500:
        raise Refused("period_us", "period_us must be 0 (follow T_Lambda) or >= 500, got %r"
                      % (pu,))
    period = effective_period_us(get)
    if limits is not None and limits.get("f_s"):
        try:
            check_rate(limits["f_s"], period, limits)
        except Refused as e:
            raise Refused(_pick(changed, ("period_us", "pulse_p", "pulse_k")), message_of(e))
    # both PIDs step once per beat: every gain must fit the fixed-point form at that period
    ts = period / 1e6
    for pre in ("pid_", "act_"):
        for g in ("kp", "ki", "kd"):
            v = get(pre + g)
            try:
                check_gains(v if g == "kp" else 0.0, v if g == "ki" else 0.0,
                            v if g == "kd" else 0.0, ts)
            except ValueError as e:
                raise Refused(_pick(changed, (pre + g, "period_us", "pulse_p", "pulse_k")),
                              "%s%s = %r at a %d us beat: %s" % (pre, g, v, period, e))
    return period
