# The device beat on the emulator board with a virtual clock (both runtimes). The scenarios are
# in beat_scenarios.py; under MicroPython each runs in its own process with a fresh heap of
# tests/mpy/harness_heap.py (the firmware plus the test harness does not fit one heap shared
# with every other test).
import sys

MPY = sys.implementation.name == "micropython"
if MPY:
    from tests.mpy.harness_heap import HEAP


def _run(name, module="beat_scenarios"):
    if MPY:
        import os
        root = __file__.rsplit("/tests/", 1)[0] if "/tests/" in __file__ else "."
        rc = os.system("%s -X heapsize=%s %s/tests/mpy/%s.py %s %s"
                       % (sys.executable, HEAP, root, module, root, name))
        assert rc == 0, "scenario %s failed (exit status %r)" % (name, rc)
    else:
        mod = __import__("tests.mpy." + module, None, None, ["*"])
        getattr(mod, "sc_" + name)()


def test_steady_beat_allocates_nothing():
    _run('steady_beat_allocates_nothing')


def test_ticks_wrap_and_deadline_schedule():
    _run('ticks_wrap_and_deadline_schedule')


def test_telemetry_every_beat_and_hello_first():
    _run('telemetry_every_beat_and_hello_first')


def test_telemetry_every_n_sums_partials_and_batches():
    _run('telemetry_every_n_sums_partials_and_batches')


def test_quarantine_latched_until_clear():
    _run('quarantine_latched_until_clear')


def test_witness_resent_after_link_drop_until_acked():
    _run('witness_resent_after_link_drop_until_acked', 'beat_scenarios_link')


def test_mining_never_makes_a_beat_late():
    _run('mining_never_makes_a_beat_late', 'beat_scenarios_link')


def test_config_changes_P_at_run_time_and_rejects_kP_le_1():
    _run('config_changes_P_at_run_time_and_rejects_kP_le_1', 'beat_scenarios_config')


def test_config_other_keys_and_unknown_key():
    _run('config_other_keys_and_unknown_key', 'beat_scenarios_config')


def test_config_crashers_refused_whole_and_nothing_applied():
    _run('config_crashers_refused_whole_and_nothing_applied', 'beat_scenarios_config')


def test_config_period_within_board_limits():
    _run('config_period_within_board_limits', 'beat_scenarios_config')


def test_config_actuator_pid_keys_and_manual_mode():
    _run('config_actuator_pid_keys_and_manual_mode', 'beat_scenarios_config')


def test_time_sync_reply_and_model():
    _run('time_sync_reply_and_model', 'beat_scenarios_link')


def test_bad_host_frames_counted_not_raised():
    _run('bad_host_frames_counted_not_raised', 'beat_scenarios_link')


def test_epoch_roll_before_era_256():
    _run('epoch_roll_before_era_256', 'beat_scenarios_epoch')


def test_epoch_roll_before_seq_2_30():
    _run('epoch_roll_before_seq_2_30', 'beat_scenarios_epoch')


def test_telemetry_every_n_keeps_n_samples_in_a_byte():
    _run('telemetry_every_n_keeps_n_samples_in_a_byte', 'beat_scenarios_epoch')


def test_exception_in_beat_safe_output_error_and_crash_latch():
    _run('exception_in_beat_safe_output_error_and_crash_latch', 'beat_scenarios_faults')


def test_quarantine_survives_a_reboot_until_clear():
    _run('quarantine_survives_a_reboot_until_clear', 'beat_scenarios_faults')


def test_clear_does_not_bump_the_output():
    _run('clear_does_not_bump_the_output', 'beat_scenarios_faults')


def test_samples_lost_reported_in_heartbeat():
    _run('samples_lost_reported_in_heartbeat', 'beat_scenarios_faults')


def test_counters_cannot_overflow():
    _run('counters_cannot_overflow', 'beat_scenarios_faults')
