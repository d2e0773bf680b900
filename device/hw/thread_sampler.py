"""Samplers on a thread (CPython on the Pi Zero; see device/hw/sampler.py for the ring).

- ``ThreadSampler(adc, f_s, clock)``: reads ``adc.read_u16() >> 4`` on a deadline schedule
  (next = previous + 1/f_s) with ``sleep_us``; a generic fallback for any ADC read on demand.
- ``ReadySampler(ads, ready, clock)``: the ADS1115 in continuous mode with its ALERT/RDY pin in
  conversion-ready mode (device/hw/ads1115.py ``ready_pin_mode``): the thread waits for the pin's
  pulse at the end of each conversion and then reads that conversion, so every conversion is read
  at the ADC's own rate (no polling, no duplicate conversions however the thread is scheduled).
  ``ready`` is any object with ``wait(timeout_s) -> n``, the pulses seen since the last call (0:
  none within the deadline); device/hw/gpio_edge.py gives one on Linux GPIO (libgpiod, edges
  queued by the kernel).  When the thread was late and n > 1, only the newest conversion is still
  in the register: the n - 1 others are counted in ``Ring.missed``.  Each wait has a deadline
  (three conversion periods): a pulse that does not come is counted in ``Ring.missed`` and the
  thread carries on (a loose wire shows up as samples_lost in HEARTBEAT, not as a hang).

Both write only the ring's producer side, so the beat's drain needs no lock.
"""
from device.clock import tdiff, tadd
from device.hw.sampler import Ring, _check_fs, _SAT


class ThreadSampler:
    def __init__(self, adc, f_s, clock, ring=None):
        _check_fs(f_s)
        self.adc = adc
        self.f_s = f_s
        self.clock = clock
        self.ring = ring or Ring()
        self.period_us = 1000000 // f_s
        self.running = False

    def _run(self):
        clk = self.clock
        at = clk.ticks()
        while self.running:
            self.ring.put(self.adc.read_u16() >> 4)
            at = tadd(at, self.period_us)
            r = tdiff(at, clk.ticks())
            if r > 0:
                clk.sleep_us(r)
            elif r < -self.period_us:
                n = (-r) // self.period_us          # instants skipped
                m = self.ring.missed + n
                self.ring.missed = m if m < _SAT else _SAT
                at = clk.ticks()   # fell behind by more than a sample: re-phase

    def start(self, now=0):
        import _thread
        self.running = True
        _thread.start_new_thread(self._run, ())

    def poll(self, now):
        pass

    def drain(self, dst):
        return self.ring.drain(dst)

    def lost(self):
        return self.ring.lost()

    def stop(self):
        self.running = False


class ReadySampler:
    def __init__(self, ads, ready, f_s, ring=None):
        _check_fs(f_s)
        self.ads = ads
        self.ready = ready
        self.f_s = f_s
        self.ring = ring or Ring()
        self.timeout_s = 3.0 / f_s + 0.005
        self.running = False
        self.reads = 0
        self.errors = 0
        self.stopped = None

    def _run(self):
        ring = self.ring
        try:
            while self.running:
                n = self.ready.wait(self.timeout_s)
                if n != 1:                 # 0: no pulse in time; > 1: the thread was late
                    m = ring.missed + (1 if n == 0 else n - 1)
                    ring.missed = m if m < _SAT else _SAT
                    if n == 0:
                        continue
                try:
                    v = self.ads.read_u12()
                except OSError:            # bus error: this conversion is lost, go on
                    self.errors += 1
                    m = ring.missed + 1
                    ring.missed = m if m < _SAT else _SAT
                    continue
                ring.put(v)
                self.reads += 1
        finally:
            self.stopped = True

    def start(self, now=0):
        import _thread
        self.running = True
        self.stopped = False
        _thread.start_new_thread(self._run, ())

    def poll(self, now):
        pass

    def drain(self, dst):
        return self.ring.drain(dst)

    def lost(self):
        return self.ring.lost()

    def stop(self):
        self.running = False
