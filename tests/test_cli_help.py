"""`becomingone COMMAND --help` ends with examples, one per action at least, and every example
parses with that command's own parser (issue 15)."""
import argparse
import importlib
import shlex

import pytest

from becomingone.cli import COMMANDS, EXAMPLES, main


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_help_has_examples_that_parse(name, capsys):
    with pytest.raises(SystemExit) as e:
        main([name, "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert "examples:" in out and "becomingone %s " % name in out
    mod = importlib.import_module(COMMANDS[name][0])
    for ex in EXAMPLES[name]:
        argv = shlex.split(ex)[2:]
        p = argparse.ArgumentParser(prog="becomingone " + name, exit_on_error=False)
        mod.add_arguments(p)
        if name == "bench":
            argv = [a for a in argv if a not in ("--json", "--quick")]
        try:
            p.parse_args(argv)
        except (argparse.ArgumentError, SystemExit) as err:
            raise AssertionError("example %r does not parse: %s" % (ex, err)) from None


def test_version(capsys):
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("becomingone ")
