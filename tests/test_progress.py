"""Progress bars (host/util/progress.py) on flash, ledger verify, mesh simulate and mesh restore:
callbacks monotone and reaching the total, a bar drawn on a (forced) terminal, nothing on
stdout, --json output still valid JSON."""
import io
import json
import os
import sys
import types

import pytest
from rich.console import Console

from becomingone.cli import main
from becomingone.ledger import Ledger, verify_path
from becomingone.util.progress import progress_bar, wants_progress


def _terminal():
    buf = io.StringIO()
    return Console(file=buf, force_terminal=True, width=100, color_system=None), buf


def _monotone_to_total(calls):
    """calls: [(done, total)]; done never decreases, never exceeds total; ends at the total."""
    assert calls
    dones = [d for d, _t in calls]
    assert dones == sorted(dones)
    assert all(d <= t for d, t in calls)
    assert calls[-1][0] == calls[-1][1]


def test_bar_is_drawn_on_a_terminal_and_not_otherwise(capsys):
    con, buf = _terminal()
    with progress_bar("verify", total=10, console=con, transient=False) as upd:
        for i in range(1, 11):
            upd(i, "chunk %d" % i)
    out = buf.getvalue()
    assert "verify" in out and "10/10" in out and "━" in out and "chunk 10" in out
    with progress_bar("verify", total=10) as upd:      # pytest's stderr is not a terminal
        upd(5)
    assert capsys.readouterr() == ("", "")
    assert not wants_progress(types.SimpleNamespace(json=True))
    assert not wants_progress(types.SimpleNamespace(quiet=True))


def test_bytes_unit_and_late_total():
    con, buf = _terminal()
    with progress_bar("copying", total=None, console=con, unit="bytes", transient=False) as upd:
        upd(0, "main.py", total=2048)
        upd(2048, "main.py")
    assert "2.0/2.0 kB" in buf.getvalue()


def test_flash_progress_draws_by_bytes():
    from becomingone.commands.flash import _Progress
    con, buf = _terminal()
    item = types.SimpleNamespace(remote="/device/main.mpy", size=4000)
    with _Progress(4000, console=con) as prog:
        for done in (1000, 2000, 4000):
            prog(item, done, 4000)
    assert "/device/main.mpy" in buf.getvalue() and "4.0/4.0 kB" in buf.getvalue()


def test_flash_without_terminal_prints_one_line_per_file(capsys):
    from becomingone.commands.flash import _Progress
    a = types.SimpleNamespace(remote="/a.mpy", size=10)
    b = types.SimpleNamespace(remote="/b.mpy", size=20)
    with _Progress(30) as prog:
        prog(a, 5, 30)
        prog(a, 10, 30)
        prog(b, 30, 30)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 2 and "/a.mpy" in lines[0] and "/b.mpy" in lines[1]


@pytest.mark.parametrize("workers", [1, 2])
def test_ledger_verify_progress_monotone_to_total(tmp_path, workers):
    db = str(tmp_path / "l.sqlite")
    with Ledger(db) as led:
        for j in range(5):
            led.append_many([("action", {"action": "x", "i": i}) for i in range(j * 10000, (j + 1) * 10000)])
        led.checkpoint()
    calls = []
    res = verify_path(db, workers=workers, progress=lambda done, total: calls.append((done, total)))
    assert res.ok and res.size == 50001
    _monotone_to_total(calls)
    assert calls[-1] == (50001, 50001)
    assert len(calls) >= 2


def test_consensus_progress_rounds():
    from becomingone.mesh.consensus import simulate
    rounds = []
    res = simulate(200, "pushsum", seed=1, progress=lambda r, err: rounds.append(r))
    assert rounds == list(range(1, res["rounds_run"] + 1))


def test_restore_progress_monotone_to_total(tmp_path):
    from becomingone.mesh.archive import restore, seal_to_cells
    from becomingone.mesh.ring import Ring
    db = str(tmp_path / "src" / "ledger.sqlite")
    os.makedirs(tmp_path / "src")
    with Ledger(db) as led:
        led.append_many([("action", {"action": "a", "i": i}) for i in range(120)])
        led.checkpoint()
        seal_to_cells(led, 0, None, 2, 3, Ring(["a", "b", "c"]), str(tmp_path / "cells"))
    os.makedirs(tmp_path / "out")
    calls = []
    res = restore([str(tmp_path / "cells")], 2, str(tmp_path / "out" / "l.sqlite"),
                  progress=lambda done, total, what: calls.append((done, total)))
    assert res["size"] == 121
    _monotone_to_total(calls)


def test_cli_json_stays_valid_on_a_terminal(tmp_path, capsys, monkeypatch):
    # stderr claims to be a terminal: --json still prints pure JSON on stdout and draws nothing
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True, raising=False)
    assert main(["mesh", "simulate", "--nodes", "100", "--algo", "pushsum", "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["converged"] is True and err == ""
    db = str(tmp_path / "l.sqlite")
    with Ledger(db) as led:
        led.append_many([("action", {"action": "x", "i": i}) for i in range(100)])
        led.checkpoint()
    assert main(["ledger", "verify", "--db", db, "--json"]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["ok"] is True and err == ""
