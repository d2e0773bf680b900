"""Sensor health and machine coherence, as threats and counted events (docs/DEVICE.md
"Sensor and coherence events").

Per beat, from what the beat measured:
  dead sensor   no sample in a beat that should hold at least one
  stuck sensor  every sample of the beat repeats the previous one (a frozen or saturated input)
  overrun       samples the sampler had to drop
  coherence     armed once the machine collapses at a learned lag (a steady machine is known);
                lost when C stays below I_c - hysteresis for ``loss_grace_s``; after
                ``loss_hold_s`` lost, the lag is learned again (the machine may have settled at a
                new speed) and the detector waits for the next collapse
Each affected beat is one counted event (they join the exceedances in the window's anoms).
The external threat ext (Q16) the arbiter takes as a floor under the model's threat:
  sensor fault for >= fault_alert_s       -> halfway between the ALERT and QUARANTINE thresholds
  sensor fault for >= fault_quarantine_s  -> halfway between QUARANTINE and 1
  coherence lost                          -> halfway between ALERT and QUARANTINE
so a dead or stuck sensor raises ALERT, then drives the output to its safe state (its reading
also feeds the actuator loop, which must not act on a frozen value), and a machine that loses
its rhythm raises ALERT until it is steady again or relearned.

SignalHealth(period_s, alert_q16, quarantine_q16, expected=True, fault_alert_s=0.25,
             fault_quarantine_s=2.0, loss_grace_s=0.25, loss_hold_s=10.0)
    .beat(n, stuck, overruns, cstate, locked) -> ext      cstate: shared/kairos.py CSTATE word
    .events (this beat), .sensor_fault, .coherence_lost (bools), .relearn (bool; clear it)
    .set_period(s), .set_thresholds(alert_q16, quarantine_q16), .reset_coherence()
    .st[...]  the state words (viper); EVENTS indexes the beat's events
"""
import array

from shared.compat import micropython, const  # noqa: F401
try:
    from shared.compat import ptr32    # CPython stand-in; viper has it built in
except ImportError:
    pass

_STREAK = const(0)
_FA = const(1)
_FQ = const(2)
_LG = const(3)
_LH = const(4)
_XA = const(5)       # ext threat for ALERT-level conditions
_XQ = const(6)       # ext threat for QUARANTINE-level conditions
_ARMED = const(7)
_LOST = const(8)
_BELOW = const(9)
_LOSTB = const(10)
_RELEARN = const(11)
_EVENTS = const(12)
_LOSSES = const(13)
_DEAD = const(14)
_STUCKB = const(15)
_SF = const(16)
_EXP = const(17)
_NST = const(18)
EVENTS = const(_EVENTS)


@micropython.viper
def beat(st, n: int, stuck: int, overruns: int, cst: int, locked: int) -> int:
    s = ptr32(st)
    ev = overruns
    fault = 0
    if n == 0 and int(s[_EXP]):
        s[_DEAD] = int(s[_DEAD]) + 1
        fault = 1
    elif stuck:
        s[_STUCKB] = int(s[_STUCKB]) + 1
        fault = 1
    if fault:
        ev += 1
        streak = int(s[_STREAK]) + 1
        if streak > 0x3FFFFFF:
            streak = 0x3FFFFFF
    else:
        streak = 0
    s[_STREAK] = streak
    s[_SF] = fault
    ext = 0
    if streak >= int(s[_FQ]):
        ext = int(s[_XQ])
    elif streak >= int(s[_FA]):
        ext = int(s[_XA])
    lost = int(s[_LOST])
    if locked and (cst & 1):
        s[_ARMED] = 1
        lost = 0
        s[_BELOW] = 0
        s[_LOSTB] = 0
    elif int(s[_ARMED]) and not fault:
        if cst & 2:
            b = int(s[_BELOW]) + 1
            s[_BELOW] = b
            if b >= int(s[_LG]):
                if not lost:
                    s[_LOSSES] = int(s[_LOSSES]) + 1
                lost = 1
        elif not lost:
            s[_BELOW] = 0
    if lost:
        ev += 1
        lb = int(s[_LOSTB]) + 1
        s[_LOSTB] = lb
        if int(s[_XA]) > ext:
            ext = int(s[_XA])
        if lb >= int(s[_LH]):
            s[_RELEARN] = 1
            s[_ARMED] = 0
            lost = 0
            s[_BELOW] = 0
            s[_LOSTB] = 0
    s[_LOST] = lost
    s[_EVENTS] = ev
    return ext


class SignalHealth:
    def __init__(self, period_s, alert_q16, quarantine_q16, expected=True, fault_alert_s=0.25,
                 fault_quarantine_s=2.0, loss_grace_s=0.25, loss_hold_s=10.0):
        if not 0 < fault_alert_s <= fault_quarantine_s:
            raise ValueError("sensor fault times need 0 < alert_s <= quarantine_s, got %r, %r"
                             % (fault_alert_s, fault_quarantine_s))
        if not 0 < loss_grace_s < loss_hold_s:
            raise ValueError("coherence loss needs 0 < grace_s < hold_s, got %r, %r"
                             % (loss_grace_s, loss_hold_s))
        self.st = array.array("i", bytes(4 * _NST))
        self.st[_EXP] = 1 if expected else 0
        self._times = (fault_alert_s, fault_quarantine_s, loss_grace_s, loss_hold_s)
        self.set_period(period_s)
        self.set_thresholds(alert_q16, quarantine_q16)

    def set_period(self, period_s):
        fa, fq, lg, lh = self._times
        s = self.st
        s[_FA] = max(1, int(round(fa / period_s)))
        s[_FQ] = max(s[_FA], int(round(fq / period_s)))
        s[_LG] = max(1, int(round(lg / period_s)))
        s[_LH] = max(s[_LG] + 1, int(round(lh / period_s)))

    def set_thresholds(self, alert_q16, quarantine_q16):
        self.st[_XA] = (alert_q16 + quarantine_q16) >> 1
        self.st[_XQ] = (quarantine_q16 + 65535) >> 1

    def reset_coherence(self):
        """A new lag (stream restart): wait for the next collapse before arming."""
        s = self.st
        s[_ARMED] = 0
        s[_LOST] = 0
        s[_BELOW] = 0
        s[_LOSTB] = 0

    def beat(self, n, stuck, overruns, cstate, locked):
        return beat(self.st, n, stuck, overruns, cstate, 1 if locked else 0)

    @property
    def events(self):
        return self.st[_EVENTS]

    @property
    def sensor_fault(self):
        return self.st[_SF] != 0

    @property
    def coherence_lost(self):
        return self.st[_LOST] != 0

    @property
    def armed(self):
        return self.st[_ARMED] != 0

    @property
    def relearn(self):
        return self.st[_RELEARN] != 0

    @relearn.setter
    def relearn(self, v):
        self.st[_RELEARN] = 1 if v else 0

    @property
    def losses(self):
        return self.st[_LOSSES]

    @property
    def dead_beats(self):
        return self.st[_DEAD]

    @property
    def stuck_beats(self):
        return self.st[_STUCKB]
