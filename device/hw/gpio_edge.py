"""Waiting for a GPIO edge on Linux (the Pi Zero's ADS1115 ALERT/RDY pin), through libgpiod's
Python bindings (Debian python3-libgpiod, or PyPI gpiod): v2 (``gpiod.request_lines``) or v1
(``Chip.get_line``).  The kernel timestamps and queues every edge from the pin's interrupt, so a
pulse of a few microseconds is not missed while the thread sleeps.

    e = GpioEdge(27)                 # BCM GPIO 27, falling edges, /dev/gpiochip0
    n = e.wait(0.005)                # edges since the last call (0: none within the deadline)

``gpiod`` can be injected (tests).  CPython only: not imported on a Pico.
"""


class GpioEdge:
    def __init__(self, line, chip="/dev/gpiochip0", falling=True, gpiod=None,
                 consumer="becomingone"):
        if gpiod is None:
            try:
                import gpiod
            except ImportError:
                raise OSError("the ADS1115 ready pin needs libgpiod's Python bindings "
                              "(apt install python3-libgpiod, or pip install gpiod)")
        self.line = line
        self.gpiod = gpiod
        self.v2 = hasattr(gpiod, "request_lines")
        if self.v2:
            from datetime import timedelta
            self._td = timedelta
            Edge = gpiod.line.Edge
            settings = gpiod.LineSettings(edge_detection=Edge.FALLING if falling else Edge.RISING)
            self.req = gpiod.request_lines(chip, consumer=consumer, config={line: settings})
        else:
            name = chip.rsplit("/", 1)[-1]
            self.chip = gpiod.Chip(name)
            self.req = self.chip.get_line(line)
            self.req.request(consumer=consumer, type=gpiod.LINE_REQ_EV_FALLING_EDGE if falling
                             else gpiod.LINE_REQ_EV_RISING_EDGE)

    def wait(self, timeout_s):
        """Edges seen since the last call, waiting up to timeout_s for the first (0: none)."""
        r = self.req
        if self.v2:
            if not r.wait_edge_events(self._td(seconds=timeout_s)):
                return 0
            return len(r.read_edge_events())
        sec = int(timeout_s)
        if not r.event_wait(sec=sec, nsec=int((timeout_s - sec) * 1e9)):
            return 0
        n = 0
        while True:
            r.event_read()
            n += 1
            if not r.event_wait(sec=0, nsec=0):
                return n

    def close(self):
        try:
            self.req.release()
        except Exception:
            pass
