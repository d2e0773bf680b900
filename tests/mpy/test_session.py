# The session handshake on the device (device/session.py, device/hostframes.py; docs/PROTOCOL.md
# 4.1) and its key derivation (shared/hkdf.py), on both runtimes. The bodies are in
# session_scenarios.py; under MicroPython each runs in its own process with a fresh 192K heap
# (after the other test modules the shared runner's heap is too fragmented for the firmware's
# host-frame path plus the host-side encoder these tests play the host with).
import sys

MPY = sys.implementation.name == "micropython"


def _run(name):
    if MPY:
        import os
        root = __file__.rsplit("/tests/", 1)[0] if "/tests/" in __file__ else "."
        rc = os.system("%s -X heapsize=192K %s/tests/mpy/session_scenarios.py %s %s"
                       % (sys.executable, root, root, name))
        assert rc == 0, "scenario %s failed (exit status %r)" % (name, rc)
    else:
        mod = __import__("tests.mpy.session_scenarios", None, None, ["*"])
        getattr(mod, "sc_" + name)()


def test_hkdf_rfc5869_and_session_vectors():
    _run("hkdf_rfc5869_and_session_vectors")


def test_handshake_establishes_a_session_key():
    _run("handshake_establishes_a_session_key")


def test_device_key_frame_starts_a_new_handshake_once():
    _run("device_key_frame_starts_a_new_handshake_once")


def test_pending_hello_resent_each_second():
    _run("pending_hello_resent_each_second")


def test_time_sync_receive_time_taken_when_the_frame_is_read():
    _run("time_sync_receive_time_taken_when_the_frame_is_read")


def test_rejected_witness_is_kept_and_restamped():
    _run("rejected_witness_is_kept_and_restamped")
