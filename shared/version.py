# The one version of the firmware and the host (both runtimes import this file).
# pyproject.toml reads __version__ from here ([tool.setuptools.dynamic]); the device sends
# FW_VERSION in its HELLO (fw_major, fw_minor, fw_patch); package.json (mip) is generated from it.
__version__ = "0.2.0"


# (major, minor, patch), each 0..255 (HELLO sends them as u8); tests/test_version.py checks them
FW_VERSION = tuple(int(x) for x in __version__.split("."))
