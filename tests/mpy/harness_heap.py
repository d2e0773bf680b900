# The heap of one beat or board scenario process under the MicroPython unix port (test_beat.py,
# test_boards.py). The firmware alone runs in 192K: lane 1 runs the precompiled device/main.py at
# -X heapsize=192K (test_device_main.py, test_device_serial_nonblocking.py, test_device_systemd.py,
# the crash-loop replay) and lane 4 runs it on the emulated RP2040. A scenario process also holds
# the harness on top: the host-side decoder (shared/protocol.py and its layouts, ~10 KB of
# bytecode and qstrs), fake links and clocks and the scenario's own code, on a 64-bit port whose
# objects take twice a Pico's words.
HEAP = "256K"
