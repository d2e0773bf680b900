"""ADS1115 16-bit ADC over I2C, in continuous mode, handed its bus.

Works with a ``machine.I2C`` (``writeto_mem`` / ``readfrom_mem_into``) or a CircuitPython/Blinka
``busio.I2C`` (``try_lock``/``writeto``/``writeto_then_readfrom``).  A Raspberry Pi has no ADC,
so the pizero board reads its sensor through one of these at 475 or 860 samples/s.

``read()`` returns the last conversion as a signed count; ``read_u12()`` maps it to the device's
12-bit sample scale (0..4095, mid-scale 2048) so the beat sees the same units on every board.
Every bus access has a bounded wait (the lock is tried a bounded number of times).

``ready=True`` puts the ALERT/RDY pin in conversion-ready mode (datasheet 9.3.8: Hi_thresh MSB 1,
Lo_thresh MSB 0, comparator queue enabled): in continuous mode the pin pulses low for about 8 us
at the end of every conversion, so a sampler can read each conversion once, when it is done
(device/hw/thread_sampler.py ReadySampler) instead of polling at a guessed rate: the ADS1115's
own oscillator is only good to +-10 %, so a polled read at the nominal rate duplicates or skips
conversions."""

_REG_CONV = 0x00
_REG_CONFIG = 0x01
_REG_LO = 0x02
_REG_HI = 0x03
RATES = {8: 0, 16: 1, 32: 2, 64: 3, 128: 4, 250: 5, 475: 6, 860: 7}
_MUX_SINGLE = {0: 4, 1: 5, 2: 6, 3: 7}
PGA_4V096 = 1   # +-4.096 V full scale


class BusBusy(OSError):
    pass


class ADS1115:
    def __init__(self, i2c, address=0x48, rate=860, channel=0, pga=PGA_4V096, lock_tries=100,
                 ready=False):
        if rate not in RATES:
            raise ValueError("ADS1115 rate must be one of %s samples/s, got %r"
                             % (sorted(RATES), rate))
        if channel not in _MUX_SINGLE:
            raise ValueError("ADS1115 channel must be 0..3, got %r" % (channel,))
        self.i2c = i2c
        self.address = address
        self.rate = rate
        self.lock_tries = lock_tries
        self._busio = hasattr(i2c, "try_lock")
        self._cmd = bytearray(1)
        self._buf = bytearray(2)
        self._w3 = bytearray(3)
        self.ready = bool(ready)
        # OS=0 (continuous), MUX single-ended, PGA, MODE=0 continuous, DR; comparator off (0b11)
        # or, for ALERT/RDY as conversion-ready: COMP_MODE/POL/LAT 0, COMP_QUE 00 (enabled)
        cfg = (_MUX_SINGLE[channel] << 12) | (pga << 9) | (0 << 8) | (RATES[rate] << 5) | \
            (0x00 if ready else 0x03)
        self.config = cfg
        if ready:
            self._write(_REG_LO, 0x0000)     # Lo_thresh MSB 0 and Hi_thresh MSB 1:
            self._write(_REG_HI, 0x8000)     # ALERT/RDY is the conversion-ready signal
        self._write(_REG_CONFIG, cfg)

    def _lock(self):
        for _ in range(self.lock_tries):
            if self.i2c.try_lock():
                return
        raise BusBusy("I2C bus busy (lock not taken after %d tries)" % self.lock_tries)

    def _write(self, reg, value):
        w = self._w3
        w[0] = reg
        w[1] = (value >> 8) & 0xFF
        w[2] = value & 0xFF
        if self._busio:
            self._lock()
            try:
                self.i2c.writeto(self.address, w)
            finally:
                self.i2c.unlock()
        else:
            self.i2c.writeto_mem(self.address, reg, memoryview(w)[1:])

    def read(self):
        b = self._buf
        if self._busio:
            self._cmd[0] = _REG_CONV
            self._lock()
            try:
                self.i2c.writeto_then_readfrom(self.address, self._cmd, b)
            finally:
                self.i2c.unlock()
        else:
            self.i2c.readfrom_mem_into(self.address, _REG_CONV, b)
        v = (b[0] << 8) | b[1]
        return v - 65536 if v & 0x8000 else v

    def read_u12(self):
        v = (self.read() >> 4) + 2048
        return 0 if v < 0 else (4095 if v > 4095 else v)

    def sample(self):
        """PullSampler source interface."""
        return self.read_u12()
