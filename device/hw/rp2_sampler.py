"""Samplers of a machine.ADC at f_s on rp2 (see device/hw/sampler.py for the ring and the design):
a machine.Timer callback, or a loop on the second core (_thread)."""
from device.clock import tdiff, tadd
from device.hw.sampler import Ring, _check_fs


class TimerSampler:
    def __init__(self, adc, f_s, timer, ring=None):
        _check_fs(f_s)
        self.adc = adc
        self.f_s = f_s
        self.timer = timer
        self.ring = ring or Ring()
        self._cb = self._tick      # bound once: the IRQ does not allocate a bound method

    def _tick(self, _t):
        self.ring.put(self.adc.read_u16() >> 4)

    def start(self, now=0):
        self.timer.init(mode=1, freq=self.f_s, callback=self._cb)

    def poll(self, now):
        pass

    def drain(self, dst):
        return self.ring.drain(dst)

    def stop(self):
        self.timer.deinit()


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
                at = clk.ticks()   # fell behind by more than a sample: re-phase

    def start(self, now=0):
        import _thread
        self.running = True
        _thread.start_new_thread(self._run, ())

    def poll(self, now):
        pass

    def drain(self, dst):
        return self.ring.drain(dst)

    def stop(self):
        self.running = False


