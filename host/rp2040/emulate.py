"""`becomingone emulate --runtime rp2040`: each device is an emulated Raspberry Pi Pico running the
real MicroPython RPI_PICO firmware with this project's firmware on its flash, exactly as
`becomingone flash --board pico` leaves a board: the armv6m .mpy build, boardcfg.json, the
device key, the root main.py. It boots into the beat on the board `pico` (its ADC sampler on a
machine.Timer, PWM, the hardware watchdog) with the serial link on its USB CDC port, which is
bridged to the emulation's serial pty (through the same fault proxy as the other runtimes).

Why board pico and not the emulator board's synthetic sensor: pico is what ships, and on the
chip the synthetic sensor would be computed inside step() (hundreds of us per sample of Python
on a Cortex-M0+), which a real Pico never pays. The emulator drives ADC0 (GP26) instead, with the
same kinds of signals the other runtimes give their devices: odd devices a clean 5 Hz vibration
(coherent), even devices the vibration buried in white noise, and a `fault=D@T` item a train of
60-count (0.47 g) spikes every 25 ms for 1.5 s from T emulated seconds (an impacting machine:
ALERT, then QUARANTINE). The PWM output is not fed back into the ADC (no plant).

Time: the chip's clock is emulated time. It runs at most as fast as the wall clock and slower
while the chip is busy (today's beat keeps it busy: 2-5 wall seconds per emulated second), so
fault times T and the device's timestamps are in emulated seconds; the host sees a device clock
that runs slow, which its clock estimator takes as drift, and beats arrive at the rate the chip
manages. HEARTBEAT lateness and skipped-beat counters are the chip's.
"""
import os

from becomingone.rp2040 import build, chip
from becomingone.rp2040.board import EmulatedPico
from becomingone.rp2040.errors import UserError

# ADC0 in counts (board pico: 128 counts per g), as host/emulate/devices.py gives the emulator
# board: odd devices a machine with a steady 5 Hz rotation (3 g) and a little broadband noise
# (coherent: KAIROS collapses), even devices a healthy machine without a dominant rotation
# (0.06 g broadband: no collapse, no alarm), fault=D@T impacts every 25 ms for 1.5 s of 60
# counts (0.47 g, between the emulator board's 0.42 g ALERT and 0.7 g QUARANTINE stages): as the
# impacts fill the feature window (~1 s) the shipped model's threat passes ALERT for a few beats,
# then QUARANTINE (at 11.7 g one beat of impacts went straight to QUARANTINE: no ALERT)
COHERENT = dict(mid=2048, hz=5, amp=400, noise=6)
BROADBAND = dict(mid=2048, hz=0, amp=0, noise=8)
SPIKES = dict(spikes_dur=1.5, spikes_amp=60)


def adc_for(index, fault_events):
    sig = dict(COHERENT if index % 2 == 1 else BROADBAND)
    at = [t for d, t in fault_events if d == index]
    if at:
        sig.update(SPIKES, spikes_at=float(min(at)))
    return chip.adc_spec(0, seed=1000 + index, **sig)


def firmware_modules():
    """The pico build, compiled once per emulation."""
    chip.ensure_installed()
    chip.firmware()
    return build.firmware_modules(("pico",))


class Rp2040Device:
    """One emulated Pico with the DeviceProcess interface of host/emulate/devices.py."""

    def __init__(self, index, device_id, link_url, log_dir, modules, key_file=None,
                 fault_events=(), pow_bits=None, extra=(), omega=None, lag=None):
        self.index = index
        self.device_id = device_id
        self.link_url = link_url               # the serial proxy's device-side pty
        self.runtime = "rp2040"
        self.log_path = os.path.join(log_dir, "device-%d.log" % device_id)
        self.boots = 0
        self.reports = []                      # a Pico runs forever: no closing report
        key = None
        if key_file:
            from device.runner import load_key
            key = load_key(key_file)
        config = {"board": "pico", "device_id": device_id, "link": "serial",
                  "key_file": "device.key" if key else None, "boot_grace_ms": 200}
        if pow_bits is not None:
            config["pow_bits"] = int(pow_bits)
        if omega is not None:
            config["omega"] = omega
        if lag is not None:
            config["lag"] = int(lag)
        for k, v in _flags(extra).items():
            config[k] = v
        config = {k: v for k, v in config.items() if v is not None}
        files = dict(modules)
        files.update(build.boot_files(config, key))
        self.config = config
        self.pico = EmulatedPico(files=files, adc=[adc_for(index, fault_events)],
                                 attach=link_url, log_path=self.log_path,
                                 name="pico-%d" % device_id)

    def argv(self):
        return ["(emulated Pico)"] + ["--%s=%s" % (k, v) for k, v in sorted(self.config.items())]

    def start(self):
        self.boots += 1
        with open(self.log_path, "ab") as f:
            f.write(("--- boot %d: emulated RP2040, %s, boardcfg %s\n"
                     % (self.boots, self.pico.fw.describe(), self.config)).encode())
        if self.pico.proc is None and self.pico.port is None:
            self.pico.start()
        else:
            self.pico._spawn()                 # after kill(): power back on, flash as kept
        return self

    def alive(self):
        return self.pico.alive()

    def stop(self, timeout=5.0):
        self.pico.stop(timeout=timeout)

    def kill(self):
        self.pico.kill()

    def reboot(self):
        """A reset of the chip in place (flash kept): the firmware boots again, new boot id."""
        self.boots += 1
        self.pico.power_cycle()

    def close(self):
        self.pico.close()

    def tail(self, n=5):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace").splitlines()[-n:]
        except OSError:
            return []


def _flags(extra):
    """Extra device/main.py flags (["--signal", "x", ...]) -> boardcfg entries."""
    out = {}
    i = 0
    extra = list(extra)
    while i < len(extra):
        a = extra[i]
        if not a.startswith("--"):
            raise UserError("device argument %r: expected --FLAG VALUE" % a)
        k = a[2:].replace("-", "_")
        if i + 1 < len(extra) and not extra[i + 1].startswith("--"):
            out[k] = extra[i + 1]
            i += 2
        else:
            out[k] = True
            i += 1
    out.pop("signal", None)      # the emulator board's sensor shape: the ADC input instead
    return out
