"""The emulated Raspberry Pi Pico: the real MicroPython rp2 firmware (RPI_PICO, firmware/) on
rp2040js (Wokwi's RP2040 emulator, npm, pinned in emu/package-lock.json), with this project's
firmware compiled for the chip (`mpy-cross -march=armv6m`) on its littlefs filesystem.

    chip.py      the firmware image, Node and the npm install, the runner command line
    fsimage.py   littlefs images of the Pico's filesystem (build and read back)
    build.py     the project's firmware compiled for the chip, as `becomingone flash` deploys it
    run.py       run a script on the chip through the raw REPL (exit status, stdout, stats)
    board.py     a running emulated Pico whose USB CDC serial port is a pty on this machine
    measure.py   step() time, heap and proof-of-work rate on the chip (chip_beat.py runs there)
    profile.py   sampled program-counter profile by firmware symbol
    budget.py    the beat's budget on the chip (the lane's and the bench's numbers)
    emulate.py   `becomingone emulate --runtime rp2040`: device processes that are emulated Picos
    emu/         the Node side: rp2run.mjs (the emulator runner), bootrom.mjs, package(-lock).json
    firmware/    RPI_PICO.uf2 with its provenance and licences, RPI_PICO.syms

Command line: `python -m becomingone.rp2040 --help` (docs/DEVICE.md, "On the chip").
"""
