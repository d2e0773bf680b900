# Minimal test runner for the MicroPython unix port (pytest does not exist there).
# Usage: micropython -X heapsize=192K tests/mpy_runner.py [ROOT] [-k SUBSTR] [FILE ...]
# Discovers tests/mpy/test_*.py, calls every function whose name starts with test_,
# and prints a closing line "N passed, N failed". The same files run under pytest.
import sys
import os
import gc

try:
    import time
    _ticks = time.ticks_ms
    _diff = time.ticks_diff
except AttributeError:  # CPython
    import time
    _ticks = lambda: int(time.monotonic() * 1000)
    _diff = lambda a, b: a - b


def _root():
    args = [a for a in sys.argv[1:] if not a.startswith("-")]
    if args and not args[0].endswith(".py"):
        return args[0]
    script = sys.argv[0] if sys.argv and sys.argv[0] else "tests/mpy_runner.py"
    i = script.rfind("/")
    d = script[:i] if i >= 0 else "."
    j = d.rfind("/")
    return d[:j] if j >= 0 else "."


def _print_exc(e):
    if hasattr(sys, "print_exception"):
        sys.print_exception(e)
    else:
        import traceback
        traceback.print_exception(type(e), e, e.__traceback__)


_BASE_MODULES = []


def _forget_new_modules():
    """Drop the modules the previous test file imported (and their attributes on parent
    packages) so every file starts with the same free heap: 192K does not hold them all."""
    if not _BASE_MODULES:
        _BASE_MODULES.extend(sys.modules)
        return
    for name in list(sys.modules):
        if name in _BASE_MODULES:
            continue
        del sys.modules[name]
        i = name.rfind(".")
        if i > 0 and name[:i] in sys.modules:
            try:
                delattr(sys.modules[name[:i]], name[i + 1:])
            except (AttributeError, TypeError):
                pass
    gc.collect()


def main():
    root = _root()
    # fakes first: a fake machine.py replaces the built-in one
    for p in (root + "/tests/fakes", root):
        if p not in sys.path:
            sys.path.insert(0, p)
    sys.path.insert(1, root + "/tests/fakes")
    only = None
    files = []
    argv = sys.argv[1:]
    i = 0
    while i < len(argv):
        if argv[i] == "-k":
            only = argv[i + 1]
            i += 2
            continue
        if argv[i].endswith(".py"):
            files.append(argv[i].split("/")[-1][:-3])
        i += 1
    if not files:
        files = sorted(f[:-3] for f in os.listdir(root + "/tests/mpy")
                       if f.startswith("test_") and f.endswith(".py"))
    passed = failed = 0
    failures = []
    for modname in files:
        _forget_new_modules()
        try:
            mod = __import__("tests.mpy." + modname, None, None, ["*"])
        except Exception as e:
            print("ERROR importing", modname)
            _print_exc(e)
            failed += 1
            failures.append(modname + " (import)")
            continue
        names = sorted(n for n in dir(mod) if n.startswith("test_"))
        for n in names:
            if only and only not in n:
                continue
            fn = getattr(mod, n)
            if not callable(fn):
                continue
            t0 = _ticks()
            try:
                fn()
                passed += 1
                print("PASS %s.%s (%d ms)" % (modname, n, _diff(_ticks(), t0)))
            except Exception as e:
                failed += 1
                failures.append(modname + "." + n)
                print("FAIL %s.%s" % (modname, n))
                _print_exc(e)
            gc.collect()
    if failures:
        print("failures:")
        for f in failures:
            print("  " + f)
    print("%d passed, %d failed" % (passed, failed))
    return failed


if __name__ == "__main__":
    sys.exit(1 if main() else 0)
