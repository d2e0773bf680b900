"""Fault specification for `becomingone emulate --faults SPEC`.

SPEC is a comma-separated list of `name=value` items:

  loss=0.05         drop each datagram / frame with this probability (both directions)
  dup=0.01          duplicate each datagram with this probability
  reorder=0.01      hold a datagram back and deliver it after the next one
  biterr=1e-4       flip each byte's random bit with this probability (serial links)
  reboot=2@10       device 2 reboots (process killed and restarted) at t = 10 s
  flood=3           device 3 also floods the host (a flooding sender with its id)
  forge=1           a forger sends frames claiming device 1 with a wrong key / bad tag
  fault=2@5         device 2's sensor gets an injected fault (noise burst) from t = 5 s
  seed=7            random seed of the proxies (default 1)

Several reboot/fault/flood/forge items may be given. Unknown names or bad values raise
UserError listing what is allowed.
"""
from becomingone.errors import UserError

RATES = ("loss", "dup", "reorder", "biterr")
EVENTS = ("reboot", "fault")
DEVICE_LISTS = ("flood", "forge")
ALLOWED = RATES + EVENTS + DEVICE_LISTS + ("seed",)


class FaultSpec:
    """The faults of an emulation (`--faults`): link loss, duplication, reordering, bit
    errors, reboots, sensor faults, floods and forgeries, and the seed."""
    def __init__(self):
        self.loss = 0.0
        self.dup = 0.0
        self.reorder = 0.0
        self.biterr = 0.0
        self.reboot = []   # [(device_index, at_seconds)]
        self.fault = []    # [(device_index, at_seconds)]
        self.flood = []    # [device_index]
        self.forge = []    # [device_index]
        self.seed = 1

    @property
    def link_faults(self):
        return any((self.loss, self.dup, self.reorder, self.biterr))

    def check_devices(self, n):
        """UserError when an item names a device the emulation does not have (1..n)."""
        for name in EVENTS:
            for dev, at in getattr(self, name):
                if not 1 <= dev <= n:
                    raise UserError("--faults %s=%d@%g: there is no device %d (allowed: 1..%d, "
                                    "the emulation's --devices %d)" % (name, dev, at, dev, n, n))
        for name in DEVICE_LISTS:
            for dev in getattr(self, name):
                if not 1 <= dev <= n:
                    raise UserError("--faults %s=%d: there is no device %d (allowed: 1..%d, "
                                    "the emulation's --devices %d)" % (name, dev, dev, n, n))

    def as_dict(self):
        return {k: getattr(self, k) for k in ALLOWED}

    def __repr__(self):
        return "FaultSpec(%r)" % self.as_dict()


def _device(value, item):
    try:
        d = int(value)
    except ValueError:
        raise UserError("--faults %r: %r is not a device number (1..N)" % (item, value)) from None
    if d < 1:
        raise UserError("--faults %r: device numbers start at 1" % item)
    return d


def parse_faults(spec):
    """Parse a fault SPEC string (see module doc). Empty or None gives no faults."""
    fs = FaultSpec()
    if not spec:
        return fs
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        if "=" not in item:
            raise UserError("--faults item %r must be name=value (allowed names: %s)" % (item, ", ".join(ALLOWED)))
        name, value = (s.strip() for s in item.split("=", 1))
        if name in RATES:
            try:
                p = float(value)
            except ValueError:
                raise UserError("--faults %s=%r: not a number (a probability in [0, 1])" % (name, value)) from None
            if not 0.0 <= p <= 1.0:
                raise UserError("--faults %s=%s: must be a probability in [0, 1]" % (name, value))
            setattr(fs, name, p)
        elif name in EVENTS:
            if "@" not in value:
                raise UserError("--faults %s=%r: use DEVICE@SECONDS, e.g. %s=2@10" % (name, value, name))
            dev, at = value.split("@", 1)
            try:
                t = float(at)
            except ValueError:
                raise UserError("--faults %s=%r: %r is not a time in seconds" % (name, value, at)) from None
            if t < 0:
                raise UserError("--faults %s=%r: time must be >= 0" % (name, value))
            getattr(fs, name).append((_device(dev, item), t))
        elif name in DEVICE_LISTS:
            getattr(fs, name).append(_device(value, item))
        elif name == "seed":
            try:
                fs.seed = int(value)
            except ValueError:
                raise UserError("--faults seed=%r: must be an integer" % value) from None
        else:
            raise UserError("--faults: unknown fault %r (allowed: %s)" % (name, ", ".join(ALLOWED)))
    return fs
