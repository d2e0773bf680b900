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

A board whose ADC paces itself from a clock (LIMITS "adc_clock_hz", "adc_div": the whole divider's
range in clocks; the RP2040: 48 MHz, 96..65536) samples only at rates that divide that clock, or
below clock/div_max at f_s x 2^k with every 2^k-th sample kept (``adc_pacing``): any other f_s is
refused at boot, before the watchdog starts, rather than by the sampler's constructor after it.
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


def adc_pacing(f_s, clock_hz, div_min, div_max):
    """The k with which an ADC clocked at clock_hz paces f_s x 2^k by a whole divider of
    div_min..div_max clocks (k > 0 only where f_s alone needs more than div_max); -1 if none."""
    if f_s < 1 or clock_hz < 1:
        return -1
    sh = 0
    while clock_hz // (f_s << sh) > div_max:
        sh += 1
    rate = f_s << sh
    if clock_hz % rate or clock_hz // rate < div_min:
        return -1
    return sh


def _paced_near(f_s, clock_hz, div_min, div_max):
    """The nearest rates below and above f_s the ADC can pace (for the error message)."""
    out = []
    for d in (-1, 1):
        r = f_s + d
        while 1 <= r <= clock_hz // div_min and adc_pacing(r, clock_hz, div_min, div_max) < 0:
            r += d
        if 1 <= r <= clock_hz // div_min:
            out.append(r)
    return out


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
    clk = limits.get("adc_clock_hz")
    if clk:
        lo, hi = limits["adc_div"]
        if adc_pacing(f_s, clk, lo, hi) < 0:
            near = _paced_near(f_s, clk, lo, hi)
            raise Refused("f_s", "f_s must divide the ADC's %d Hz clock into %d..%d clocks (below "
                          "%d Hz: f_s x 2^k), e.g. 12000, 10000, 8000, 1000, 500; nearest to %r: "
                          "%s Hz" % (clk, lo, hi, clk // hi + 1, f_s,
                                     " or ".join(str(r) for r in near)))
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
