"""A user's mistakes with files and pipes end as one `becomingone: ...` line, never a traceback:
a data or output folder that cannot be created, and a reader that closes the pipe early
(`becomingone ledger show | head`)."""
import os
import subprocess
import sys

from becomingone.cli import main
from becomingone.ledger import Ledger

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _blocked(tmp_path):
    """A path that cannot be created: its parent is a regular file (fails for root too)."""
    f = tmp_path / "a-file"
    f.write_text("")
    return str(f / "sub")


def test_run_with_a_data_folder_that_cannot_be_created(tmp_path, capsys):
    where = _blocked(tmp_path)
    assert main(["run", "--data", where, "--no-http", "--duration", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("becomingone: cannot use %s" % where) and "Traceback" not in err


def test_mesh_init_into_a_folder_that_cannot_be_created(tmp_path, capsys):
    where = _blocked(tmp_path)
    assert main(["mesh", "init", "--dir", where, "--cells", "a"]) == 2
    assert capsys.readouterr().err.startswith("becomingone: cannot use ")


def test_ledger_show_into_a_closed_pipe(tmp_path):
    with Ledger(str(tmp_path / "ledger.sqlite")) as led:
        led.append_many([("action", {"action": "test", "n": i, "pad": "x" * 200})
                         for i in range(2000)])        # ~0.5 MB of output, more than a pipe holds
    p = subprocess.Popen([sys.executable, "-m", "becomingone.cli", "ledger", "show", "--from", "0",
                          "--data", str(tmp_path)], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert p.stdout.readline()
    p.stdout.close()                                   # what `| head -1` does
    err = p.stderr.read().decode()
    p.stderr.close()
    assert p.wait(timeout=60) == 141
    assert "Traceback" not in err and "BrokenPipe" not in err


def test_emulate_never_empties_a_real_coordinators_folder(tmp_path, capsys):
    cell = tmp_path / "cell"
    cell.mkdir()
    with Ledger(str(cell / "ledger.sqlite")) as led:
        led.append_many([("action", {"action": "test", "n": i}) for i in range(3)])
    assert main(["emulate", "--data", str(cell), "--duration", "1", "--no-http"]) == 2
    assert "not an emulation's" in capsys.readouterr().err
    with Ledger(str(cell / "ledger.sqlite")) as led:
        assert led.size == 4
