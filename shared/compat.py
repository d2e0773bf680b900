# Names that differ between MicroPython and CPython, in one place.
#   from shared.compat import micropython, const
# MicroPython's compiler recognises `X = const(n)` and `@micropython.native` by name at compile
# time, so importing these names from here keeps constant folding and native code on the device;
# on CPython they are no-ops.
try:
    import micropython
    from micropython import const
except ImportError:
    def const(x):
        return x

    class micropython:          # CPython stand-in: the code emitter decorators are no-ops
        @staticmethod
        def native(f):
            return f

        @staticmethod
        def viper(f):
            return f
