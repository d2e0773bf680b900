# Code tables of the wire protocol (field values), re-exported by shared/protocol.py:
# use them as P.CAP_AUTH, P.DECISION_ALERT, P.ACK_OK, ... docs/PROTOCOL.md lists the same.
try:
    from micropython import const
except ImportError:
    def const(x):
        return x

# Capability bits (HELLO.capabilities)
CAP_AUTH = const(0x0001)
CAP_UDP = const(0x0002)
CAP_SERIAL = const(0x0004)
CAP_PWM = const(0x0008)
CAP_ADC = const(0x0010)
CAP_POW = const(0x0020)
CAP_BATCH = const(0x0040)
CAP_TIME_SYNC = const(0x0080)
CAP_MODEL = const(0x0100)
CAP_WDT = const(0x0200)
CAP_DUAL_CORE = const(0x0400)

# HELLO.reset_cause: why the device (re)started this boot
RESET_UNKNOWN = const(0)
RESET_POWER_ON = const(1)     # power-on, brown-out, or the RUN pin
RESET_WATCHDOG = const(2)     # the watchdog fired: the beat stopped feeding it
RESET_CRASH = const(3)        # an exception escaped the beat: outputs safe, ERROR, watchdog reset
RESET_SOFT = const(4)         # a deliberate reset (machine.reset(), process restarted cleanly)
RESET_CAUSE_MAX = const(4)     # names: device/latch.py CAUSE_NAMES

# HELLO.boot_flags
BOOT_LATCHED = const(0x01)    # QUARANTINE is latched as this HELLO is sent
BOOT_RESTORED = const(0x02)   # ... because it was restored at boot (persisted latch, or a
#                               watchdog/crash reset), not entered during this boot
BOOT_FLAGS_KNOWN = const(0x03)

# decision_state (TELEMETRY) and decision (WITNESS)
DECISION_NOOP = const(0)
DECISION_APPLY_BALANCE = const(1)
DECISION_APPLY_OPTIMIZE = const(2)
DECISION_ALERT = const(3)
DECISION_QUARANTINE = const(4)
DECISION_MASK = const(0x07)
STATE_QUARANTINE_LATCHED = const(0x80)
STATE_COLLAPSE = const(0x40)
STATE_COHERENCE_LOST = const(0x20)   # a steady machine lost its rhythm (device/health.py)
STATE_SENSOR_FAULT = const(0x10)     # the beat had no samples or a stuck sensor
STATE_LAG_LOCKED = const(0x08)       # the KAIROS lag is learned (or fixed by CONFIG)
DECISION_NAMES = ("NOOP", "APPLY_BALANCE", "APPLY_OPTIMIZE", "ALERT", "QUARANTINE")

# WITNESS.kind
WITNESS_DECISION = const(1)
WITNESS_COLLAPSE = const(2)
WITNESS_CONFIG_APPLIED = const(3)
WITNESS_QUARANTINE_CLEARED = const(4)
WITNESS_MODEL_APPLIED = const(5)
WITNESS_BOOT = const(6)
WITNESS_KIND_MAX = const(6)

# ACK.status
ACK_OK = const(0)
ACK_REJECTED = const(1)
ACK_UNSUPPORTED = const(2)
ACK_BAD_VALUE = const(3)
ACK_STALE = const(4)
ACK_BUSY = const(5)
ACK_STATUS_MAX = const(5)

# TIME_SYNC.mode
SYNC_REQUEST = const(0)
SYNC_REPLY = const(1)

# CLEAR.reason
CLEAR_OPERATOR = const(1)
CLEAR_AUTO = const(2)
CLEAR_TEST = const(3)
CLEAR_REASON_MAX = const(3)

# ERROR.code
ERR_BAD_FRAME = const(1)
ERR_CRC = const(2)
ERR_AUTH = const(3)
ERR_REPLAY = const(4)
ERR_UNSUPPORTED = const(5)
ERR_CONFIG_KEY = const(6)
ERR_CONFIG_VALUE = const(7)
ERR_BUSY = const(8)
ERR_INTERNAL = const(9)
ERR_CODE_MAX = const(9)

# The default proof-of-work difficulty of WITNESS records (leading zero bits), device and host:
# a Pico computes ~2,700 hashes/s (emulated RP2040, 125 MHz), so 12 bits mine a record in ~1.5 s
# on average (4,096 hashes; within 5 s 96 % of the time), where SPEC's 16 would take ~24 s
POW_BITS_DEFAULT = const(12)

# CONFIG key ids -> (name, scale). Values are i32; scale "q16" means value / 65536.
CONFIG_KEYS = {
    1: ("telemetry_every", "int"), 2: ("pow_bits", "int"), 3: ("coherence_threshold", "q16"),
    4: ("period_us", "int"), 5: ("pid_kp", "q16"), 6: ("pid_ki", "q16"), 7: ("pid_kd", "q16"),
    8: ("setpoint", "q16"), 9: ("alert_threshold", "q16"), 10: ("quarantine_threshold", "q16"),
    11: ("batch_beats", "int"), 12: ("heartbeat_every", "int"), 13: ("lag_samples", "int"),
    14: ("omega", "q16"), 15: ("anomaly_z", "q16"), 16: ("output_safe", "q16"),
    17: ("pulse_k", "q16"), 18: ("pulse_p", "q16"),  # T_Lambda k and P (k*P must be > 1)
    # the actuator PID (sensor -> setpoint -> PWM duty); 5-7 are the genomic PID's gains
    19: ("act_kp", "q16"), 20: ("act_ki", "q16"), 21: ("act_kd", "q16"),
    22: ("act_mode", "int"),      # 0 automatic (the PID drives the output), 1 manual
    23: ("act_manual", "q16"),    # the output in manual mode (fraction of full duty)
    24: ("act_p_on_m", "int"),    # 1: proportional on measurement (no kick on setpoint change)
}
