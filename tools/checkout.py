"""Tools run from a checkout whether or not the project is installed: without an install, host/
is imported as the package `becomingone` (what setup.py's package-dir mapping does for an
install), and device/, shared/ and boards/ from the repository root."""
import importlib.util
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def use_checkout():
    """Make `import becomingone` (and shared, device, boards) work for a tool of this checkout."""
    if ROOT not in sys.path:
        sys.path.insert(0, ROOT)
    if importlib.util.find_spec("becomingone") is not None:
        return                          # installed (pip install -e . or a wheel)
    host = os.path.join(ROOT, "host")
    spec = importlib.util.spec_from_file_location(
        "becomingone", os.path.join(host, "__init__.py"), submodule_search_locations=[host])
    module = importlib.util.module_from_spec(spec)
    sys.modules["becomingone"] = module
    spec.loader.exec_module(module)
