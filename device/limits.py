"""A board's rate limits (boards/*.py LIMITS: f_s, spb_max, period_min_us), checked at boot
(device/cli.py check_board, from device/runner.py), by ``becomingone flash`` and, through
device/config_rules.py, for every CONFIG on the device and on the host.  A small module on its
own: the boot needs only this, the rest of the configuration rules are loaded when a CONFIG
arrives.

A beat at period T takes f_s * T samples on average; a beat may take at most ``spb_max - 1``
samples on average, so one sample of headroom per beat drains the backlog a late beat leaves:

    period_max_us = floor((spb_max - 1) * 1e6 / f_s)

(at 1 kHz and 32 samples: 31 ms).  A longer period, or a higher f_s at a period, drops samples
every beat; both are refused.
"""
PERIOD_LIMIT_US = 1000000       # no beat longer than 1 s, whatever the board


class Refused(ValueError):
    """args: (key name, message)."""


class Unsupported(Refused):
    """A key this device does not know, or cannot change at run time (args as Refused)."""


def key_of(e):
    return e.args[0] if e.args else "?"


def message_of(e):
    return e.args[1] if len(e.args) > 1 else str(e)


def period_max_us(f_s, spb_max):
    """The longest beat period (us) at f_s Hz when a beat takes at most spb_max samples."""
    if f_s < 1 or spb_max < 2:
        return 0
    return (spb_max - 1) * 1000000 // f_s


def check_rate(f_s, period_us, limits, what="period_us"):
    """The board can sample at f_s and beat every period_us: raise Refused(what, ...) if not.
    limits: {"f_s_max", "spb_max", "period_min_us"} (missing keys are not checked)."""
    fmax = limits.get("f_s_max")
    if fmax is not None and not 1 <= f_s <= fmax:
        raise Refused("f_s", "f_s must be 1..%d Hz on this board, got %r" % (fmax, f_s))
    rates = limits.get("f_s_rates")
    if rates and f_s not in rates:
        raise Refused("f_s", "f_s must be one of %s Hz on this board (the ADC's data rates), "
                      "got %r" % (", ".join(str(r) for r in rates), f_s))
    pmin = limits.get("period_min_us", 1)
    if period_us < pmin:
        raise Refused(what, "the beat period must be >= %d us on this board, got %d us"
                      % (pmin, period_us))
    spb = limits.get("spb_max")
    if spb is not None:
        pmax = period_max_us(f_s, spb)
        if period_us > pmax:
            fmax_here = (spb - 1) * 1000000 // period_us
            raise Refused(what, "f_s %d Hz x period %d us = %.1f samples per beat: this board "
                          "takes at most %d (%d with a sample of headroom), so the period must be "
                          "<= %d us at %d Hz, or f_s <= %d Hz at this period"
                          % (f_s, period_us, f_s * period_us / 1e6, spb, spb - 1, pmax, f_s,
                             fmax_here))
    if period_us > PERIOD_LIMIT_US:
        raise Refused(what, "the beat period must be <= %d us, got %d" % (PERIOD_LIMIT_US,
                                                                           period_us))
