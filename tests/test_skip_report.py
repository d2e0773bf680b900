"""The test command ends by naming each skipped real-component test group with the one command
that installs what it needs (tests/conftest.py pytest_terminal_summary; tools/test.sh prints
build/skipped-components.txt last)."""
import os

from tests import conftest


class _Rep:
    def __init__(self, reason):
        self.longrepr = ("file.py", 1, "Skipped: " + reason)


class _Terminal:
    def __init__(self, reasons):
        self.stats = {"skipped": [_Rep(r) for r in reasons]}
        self.lines = []

    def section(self, title):
        self.lines.append("== " + title)

    def write_line(self, line):
        self.lines.append(line)


def test_skipped_groups_name_their_install_command(tmp_path, monkeypatch):
    monkeypatch.setattr(conftest, "SKIP_REPORT", str(tmp_path / "skipped.txt"))
    t = _Terminal(["chromium and chromium-driver (Debian packages) are not installed",
                   "nats-server (Debian package) not installed", "fake board needs: bwrap, socat",
                   "mosquitto is not installed", "something else"])
    conftest.pytest_terminal_summary(t, 0, None)
    text = (tmp_path / "skipped.txt").read_text()
    assert "apt-get install -y chromium chromium-driver" in text
    assert "apt-get install -y nats-server" in text and "apt-get install -y mosquitto" in text
    assert "apt-get install -y bubblewrap socat" in text and "something" not in text
    assert t.lines[0] == "== real-component tests skipped" and len(t.lines) == 5
    with open(os.path.join(conftest.ROOT, "tools", "test.sh")) as f:
        sh = f.read()
    assert "build/skipped-components.txt" in sh
    assert sh.index("skipped-components") > sh.index("lane 3")      # printed last
