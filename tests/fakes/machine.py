# Fake `machine` module for tests (CPython and the MicroPython unix port).
# Placed first on sys.path so it shadows the unix port's built-in `machine`.
FAKE = True
