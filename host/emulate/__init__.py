"""Host-only emulation: N device processes running the real firmware (MicroPython unix
port by default) against an in-process coordinator, with faults injected by link proxies."""
