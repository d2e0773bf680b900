"""The T_Lambda pulse (SPEC 4.1): the beat period of the device.

    T_Lambda(k, P, U, T1) = T1 * ln(U) / (1 - 1/(k*P)),  defined only for k*P > 1,
    never below 1e-6 s.  Defaults k = 4, P = 5, T1 = 0.001 s, U = e^4 -> 0.004211 s.

Floats are used only here, when the period is (re)computed (boot, CONFIG), never per beat: the
beat reads the integers period_us and dT_q16.

Public API
----------
t_lambda(k=4, P=5, U=E4, T1=0.001) -> float seconds      ValueError if k*P <= 1, k <= 0, P <= 0, U <= 1 or T1 <= 0
Pulse(k=4, P=5, U=E4, T1=0.001, threshold=0.02)
    .period_s (float), .period_us (int, >= 1)            the beat period
    .dT_s (float) = period_s - threshold                 genomic PID error (SPEC 4.4)
    .dT_q16 (int) = round(dT_s * 65536)                  the same in Q16 seconds
    .set_nodes(P)            P changes at run time (e.g. live mesh size; CONFIG pulse_p)
    .set_params(k=None, P=None, U=None, T1=None, threshold=None)
    all setters validate first and leave the pulse unchanged on error.
"""
import math

E4 = math.exp(4.0)
MIN_PERIOD_S = 1e-6


def t_lambda(k=4.0, P=5.0, U=E4, T1=0.001):
    """T1 * ln(U) / (1 - 1/(k*P)) seconds, at least 1e-6 s. Raises ValueError outside the domain."""
    kp = k * P
    if not (k > 0 and P > 0):
        raise ValueError("T_Lambda needs k > 0 flows and P > 0 nodes: got k=%r, P=%r" % (k, P))
    if not kp > 1.0:
        raise ValueError("T_Lambda is defined only for k*P > 1: got k=%r, P=%r (k*P=%r)" % (k, P, kp))
    if not U > 1.0:
        raise ValueError("T_Lambda needs U > 1 (ln U > 0): got U=%r" % (U,))
    if not T1 > 0.0:
        raise ValueError("T_Lambda needs T1 > 0 s: got T1=%r" % (T1,))
    t = T1 * math.log(U) / (1.0 - 1.0 / kp)
    if t < MIN_PERIOD_S:
        t = MIN_PERIOD_S
    return t


class Pulse:
    def __init__(self, k=4.0, P=5.0, U=E4, T1=0.001, threshold=0.02):
        self.k = k
        self.P = P
        self.U = U
        self.T1 = T1
        self.threshold = threshold
        self.period_s = 0.0
        self.period_us = 0
        self.dT_s = 0.0
        self.dT_q16 = 0
        self.set_params()

    def set_params(self, k=None, P=None, U=None, T1=None, threshold=None):
        k = self.k if k is None else k
        P = self.P if P is None else P
        U = self.U if U is None else U
        T1 = self.T1 if T1 is None else T1
        threshold = self.threshold if threshold is None else threshold
        if not threshold > 0.0:
            raise ValueError("T_threshold must be > 0 s: got %r" % (threshold,))
        t = t_lambda(k, P, U, T1)      # raises before anything changes
        self.k, self.P, self.U, self.T1, self.threshold = k, P, U, T1, threshold
        self.period_s = t
        self.period_us = max(1, int(round(t * 1e6)))
        self.dT_s = t - threshold
        self.dT_q16 = int(round(self.dT_s * 65536.0))
        return self.period_us

    def set_nodes(self, P):
        """P follows the live mesh size (or a CONFIG pulse_p); recomputes the period once."""
        return self.set_params(P=P)
