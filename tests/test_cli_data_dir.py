"""Every command finds the data folder the same way as `becomingone run`: --data DIR, else the
config file's data_dir, else ./var/becomingone (relative to the working directory)."""
import json
import os

from becomingone.cli import main
from becomingone.commands.common import resolve_data_dir
from becomingone.config import load_config
from becomingone.ledger import Ledger
from becomingone.memory.store import Memory


def _populate(folder):
    os.makedirs(folder, exist_ok=True)
    with Ledger(os.path.join(folder, "ledger.sqlite")) as led:
        led.append_many([("action", {"action": "test", "n": i}) for i in range(5)])
    m = Memory(os.path.join(folder, "memory.sqlite"))
    m.coherence(7, 100.0, "emissary", 0.5)
    m.close()


def test_ledger_and_memory_default_to_runs_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert resolve_data_dir(None, None) == str(tmp_path / "var" / "becomingone")
    _populate(str(tmp_path / "var" / "becomingone"))
    assert main(["ledger", "verify", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["size"] == 6   # genesis + 5
    assert main(["memory", "query", "--table", "coherence", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["device_id"] for r in (rows["rows"] if isinstance(rows, dict) else rows)] == [7]


def test_config_data_dir_is_used_and_default_matches(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert load_config().data_dir == "var/becomingone"     # the schema default is run's default
    elsewhere = tmp_path / "elsewhere"
    cfg = tmp_path / "b.yaml"
    cfg.write_text("data_dir: %s\n" % elsewhere)
    _populate(str(elsewhere))
    assert main(["ledger", "verify", "--config", str(cfg), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["size"] == 6   # genesis + 5
    assert not os.path.exists(tmp_path / "var")             # nothing created in the default


def test_missing_ledger_is_a_clear_error(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["ledger", "verify"]) != 0
    err = capsys.readouterr().err
    assert "no ledger" in err and os.path.join("var", "becomingone") in err
