# pico and pico_w board definitions with the fake machine module (both runtimes). The bodies are
# in board_scenarios.py; under MicroPython each runs in its own process (heap: tests/mpy/harness_heap.py).
import sys
import machine

MPY = sys.implementation.name == "micropython"
if MPY:
    from tests.mpy.harness_heap import HEAP


def _run(name):
    if MPY:
        import os
        root = __file__.rsplit("/tests/", 1)[0] if "/tests/" in __file__ else "."
        rc = os.system("%s -X heapsize=%s %s/tests/mpy/board_scenarios.py %s %s"
                       % (sys.executable, HEAP, root, root, name))
        assert rc == 0, "scenario %s failed (exit status %r)" % (name, rc)
    else:
        from tests.mpy import board_scenarios
        getattr(board_scenarios, "sc_" + name)()


def test_fake_machine_in_use():
    assert machine.FAKE


def test_pico_build_and_drive_timer_sampler():
    _run('pico_build_and_drive_timer_sampler')


def test_timer_irq_allocates_nothing_and_stall_is_counted():
    _run('timer_irq_allocates_nothing_and_stall_is_counted')


def test_pico_limits_rejected():
    _run('pico_limits_rejected')


def test_ring_overrun_drops_new_and_never_moves_tail():
    _run('ring_overrun_drops_new_and_never_moves_tail')


def test_pico_w_joins_wifi_with_deadline_and_uses_cyw43_led():
    _run('pico_w_joins_wifi_with_deadline_and_uses_cyw43_led')


def test_pico_w_ap_down_at_boot_watchdog_first_then_reconnects():
    _run('pico_w_ap_down_at_boot_watchdog_first_then_reconnects')


def test_latch_survives_watchdog_reset_not_soft_reset():
    _run('latch_survives_watchdog_reset_not_soft_reset')
