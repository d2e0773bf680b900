# Runs ON the emulated RP2040 (MicroPython), started by tests/rp2040/test_chip_scenarios.py:
#   chip_scenarios.py NAME...       -> one line per scenario: "SCENARIO PASS name us" or
#                                      "SCENARIO FAIL name" + its traceback; exit status = failures
# Names: the beat scenarios of tests/mpy/beat_scenarios*.py (sc_NAME, the same bodies lane 2
# runs on the unix port) and chip_fault_alert_quarantine_clear below. Everything runs on the chip's
# own heap with the firmware compiled for it (.mpy, armv6m), on a virtual beat clock (the beats'
# schedule) while time.ticks_us() counts the chip's cycles.
import gc
import sys
import time


def chip_fault_alert_quarantine_clear():
    """A bearing fault develops on an emulator board's sensor (impacts from 0.3 s, as `emulate
    --faults fault=D@T` gives it: host/emulate/devices.py): ALERT, then QUARANTINE (output to its safe value, latched); an unsigned CLEAR is refused; a
    signed CONFIG is applied and acknowledged; the host's signed CLEAR unlatches, and as the
    machine still impacts the next beat latches again (a new QUARANTINE record); every frame the
    device sent carries a valid tag of the device key."""
    from device.cli import parse_args
    from device import runner
    from device.clock import VirtualClock
    from shared import protocol as P
    from shared.auth import Auth
    from tests.mpy.beat_helpers import FakeLink
    key = bytes(range(1, 33))
    with open("chip.key", "wb") as f:
        f.write(key)
    o = parse_args(["--board", "emulator", "--clock", "virtual", "--boot-id", "77",
                    "--device-id", "9", "--key-file", "chip.key", "--pow-bits", "4",
                    "--faults", "impact@300+2000*420,impact@2300+3000*700"])
    clk = VirtualClock()
    link = FakeLink()
    b = runner.build(o, clock=clk, link=link)
    auth = Auth(key)

    def host(t, fields, seq):
        return P.encode(t, fields, 0, b.enc.boot_id, seq, auth=auth)

    def frames(t):
        out = []
        for d in link.sent:
            f = P.decode(d, auth={9: auth})            # raises on a bad tag
            if f.type == t:
                out.append(f)
        return out
    b.start()
    first = {}
    for i in range(1000):
        b.idle()
        b.step()
        d = b.last_decision
        if d not in first:
            first[d] = i
        if b.quarantined:
            break
    assert b.quarantined, ("no QUARANTINE within 1000 beats", first)
    assert P.DECISION_ALERT in first and first[P.DECISION_ALERT] < first[P.DECISION_QUARANTINE], first
    assert b.hw.pwm.duty == b.hw.pwm.safe_duty
    # an unsigned CLEAR is refused (counted), the latch holds
    link.inbox.append(P.encode(P.CLEAR, {"reason": P.CLEAR_OPERATOR, "ref": 1}, 0, b.enc.boot_id, 1))
    for i in range(3):
        b.idle()
        b.step()
    assert b.quarantined and b.host.rx_auth == 1, b.host.rx_auth
    # a signed CONFIG (telemetry every 2 beats) and the host's signed CLEAR, handled in idle()
    link.inbox.append(host(P.CONFIG, {"config_version": 5, "pairs": [[1, 2]]}, 2))
    link.inbox.append(host(P.CLEAR, {"reason": P.CLEAR_OPERATOR, "ref": 9}, 3))
    b.idle()
    assert b.s.telemetry_every == 2
    assert not b.quarantined                        # unlatched by the CLEAR
    for i in range(1000):                           # the machine still impacts: latched again
        b.step()
        if b.quarantined:
            break
        b.idle()
    assert b.quarantined and b.hw.pwm.duty == b.hw.pwm.safe_duty, i
    for i in range(6):
        b.idle()
        b.step()
    acks = [(a.fields["acked_type"], a.fields["status"], a.fields["ref"]) for a in frames(P.ACK)]
    assert (P.CONFIG, P.ACK_OK, 5) in acks and (P.CLEAR, P.ACK_OK, 9) in acks, acks
    assert frames(P.HELLO)[0].fields["board"] == "emulator"
    quar = [w for w in frames(P.WITNESS) if w.fields["decision"] == P.DECISION_QUARANTINE]
    assert len(quar) + b.queue.pending() >= 2       # one QUARANTINE record per latch


# the modules holding the beat scenarios (tests/mpy/beat_scenarios*.py), searched in this order
MODULES = ("beat_scenarios", "beat_scenarios_config", "beat_scenarios_link",
           "beat_scenarios_faults", "beat_scenarios_epoch")


def _unload(name):
    sys.modules.pop(name, None)
    pkg = sys.modules.get(name.rsplit(".", 1)[0])
    if pkg is not None and hasattr(pkg, name.rsplit(".", 1)[1]):
        delattr(pkg, name.rsplit(".", 1)[1])


def _scenario(name):
    """sc_NAME from whichever scenario module has it: one module in the heap at a time (each
    one not holding it is dropped again before the next is imported) -> (function, module)."""
    for m in MODULES:
        full = "tests.mpy." + m
        mod = __import__(full, None, None, ["sc_" + name])
        fn = getattr(mod, "sc_" + name, None)
        if fn is not None:
            return fn, full
        mod = None
        _unload(full)
        gc.collect()
    return None, None


def main(names):
    # the scenario bodies build their beat on the emulator board (tests/mpy/beat_helpers.py
    # make_beat names it: on an rp2 chip device/cli.py defaults to pico, as a Pico runs main.py
    # with no arguments)
    failed = 0
    for name in names:
        mod = None
        if name.startswith("chip_"):
            fn = globals().get(name)
        else:
            fn, mod = _scenario(name)
        if fn is None:
            print("SCENARIO FAIL %s: no such scenario" % name)
            failed += 1
            continue
        gc.collect()
        t0 = time.ticks_us()
        try:
            fn()
        except Exception as e:
            failed += 1
            print("SCENARIO FAIL %s" % name)
            sys.print_exception(e, sys.stdout)
            print("SCENARIO END")
            continue
        finally:
            fn = None
            if mod is not None:
                _unload(mod)          # the next scenario's module gets its heap
            gc.collect()
        print("SCENARIO PASS %s %d" % (name, time.ticks_diff(time.ticks_us(), t0)))
    sys.exit(failed)


main(sys.argv[1:])
