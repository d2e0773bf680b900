# Runs under both pytest (CPython) and tests/mpy_runner.py (MicroPython).
import sys


def test_runtime_has_struct_and_crc():
    import struct
    import binascii
    assert struct.calcsize("<IHB") == 7
    assert binascii.crc32(b"123456789") == 0xCBF43926


def test_fake_machine_is_used():
    import machine
    assert getattr(machine, "FAKE", False) is True, "tests/fakes/machine.py must shadow the built-in"
