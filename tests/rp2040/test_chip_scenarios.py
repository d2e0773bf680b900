"""The beat scenarios on the emulated RP2040: the same scenario bodies lane 2 runs on the
MicroPython unix port (tests/mpy/beat_scenarios*.py), here on the chip's heap with the firmware
compiled for the Cortex-M0+, plus a fault scenario of its own (tests/rp2040/chip_scenarios.py):
a sensor fault drives ALERT then QUARANTINE, a signed CONFIG and a signed CLEAR are applied, an
unsigned CLEAR is refused, every frame carries the device key's tag."""
import re

import pytest

from tests.rp2040.conftest import ROOT

# The beat scenarios that matter on the chip (lane 2 runs them all on the unix port); the
# longer ones (ticks wrap: 1000 beats, witness resend: 700, mining: 800, the no-key allocation
# check: 350 beats, 11 emulated s) stay there: on the chip every beat costs tens of ms of
# emulated time today, and allocation in the steady beat is measured with a device key by
# test_chip_budget.py.
SCENARIOS = (
    "telemetry_every_beat_and_hello_first",
    "telemetry_every_n_sums_partials_and_batches",
    "quarantine_latched_until_clear",
    "config_changes_P_at_run_time_and_rejects_kP_le_1",
    "config_other_keys_and_unknown_key",
    "time_sync_reply_and_model",
    "bad_host_frames_counted_not_raised",
    "chip_fault_alert_quarantine_clear",
)
HELPERS = ("tests/__init__.py", "tests/mpy/__init__.py", "tests/mpy/beat_helpers.py",
           "tests/mpy/beat_scenarios.py", "tests/mpy/beat_scenarios_config.py",
           "tests/mpy/beat_scenarios_link.py", "tests/mpy/beat_scenarios_faults.py",
           "tests/mpy/beat_scenarios_epoch.py")


@pytest.fixture(scope="module")
def results(firmware_files):
    import os
    from becomingone.rp2040 import build
    from becomingone.rp2040.run import run_script
    files = dict(firmware_files)
    files.update(build.compile_sources(list(HELPERS)))
    with open(os.path.join(ROOT, "tests", "rp2040", "chip_scenarios.py"), "rb") as f:
        files["chip_scenarios.py"] = f.read()
    res = run_script(files, "chip_scenarios.py", list(SCENARIOS), wall_timeout=900)
    text = res.text
    out = {}
    for m in re.finditer(r"SCENARIO (PASS|FAIL) (\w+)(.*?)(?=\nSCENARIO |\Z)", text, re.S):
        out[m.group(2)] = (m.group(1), m.group(3))
    return res, out


@pytest.mark.parametrize("name", SCENARIOS)
def test_scenario_on_the_chip(results, name):
    res, out = results
    assert name in out, "scenario %s did not report (exit %d):\n%s\n%s" % (
        name, res.rc, res.text[-2000:], res.stderr[-2000:])
    verdict, detail = out[name]
    assert verdict == "PASS", "on the emulated RP2040:\n" + detail


def test_scenario_run_exit_status(results):
    res, out = results
    failed = sum(1 for v, _d in out.values() if v == "FAIL")
    assert res.rc == failed, (res.rc, failed, res.stderr[-1500:])
