# Names that differ between MicroPython and CPython, in one place.
#   from shared.compat import micropython, const
#   from shared.compat import ptr16, ptr32   (CPython only: MicroPython's viper has them built in)
# MicroPython's compiler recognises `X = const(n)` and `@micropython.native` by name at compile
# time, so importing these names from here keeps constant folding and native code on the device;
# on CPython they are no-ops.
import sys

if sys.implementation.name == "micropython":
    import micropython
    from micropython import const
else:
    # CPython, even where Adafruit Blinka installs a `micropython` module (a Pi Zero): its
    # stub refuses @micropython.viper, so CPython always gets these no-op stand-ins
    def const(x):
        return x

    class micropython:          # CPython stand-in: the code emitter decorators are no-ops
        @staticmethod
        def native(f):
            return f

        @staticmethod
        def viper(f):
            return f

    # viper's casts and pointer types: on CPython a pointer is the array itself (the viper code
    # indexes typed arrays whose item size matches: array('H') for ptr16, array('i') for ptr32)
    def ptr8(buf):
        return buf

    ptr16 = ptr32 = ptr8

    def uint(v):
        return v
