"""Progress bars for long operations (flash, ledger verify, mesh simulate, mesh restore).

A rich bar on stderr, drawn only when stderr is a terminal and the command was not asked for
machine output (--json) or silence (--quiet); stdout stays machine-readable either way.

    with progress_bar("verify", total=n, enabled=wants_progress(args)) as update:
        work(progress=lambda done: update(done))
    update(done, info="", total=None)     # absolute position; info: text after the bar;
                                          # total: a new total (when it is learnt late)

`console` (a rich Console) overrides the terminal check: tests pass
Console(file=StringIO(), force_terminal=True) to see a bar drawn. unit="bytes" shows byte
counts and a transfer rate instead of done/total.
"""
import contextlib
import sys

from rich.console import Console
from rich.progress import (BarColumn, DownloadColumn, MofNCompleteColumn, Progress, TextColumn,
                           TimeElapsedColumn, TransferSpeedColumn)


def wants_progress(args=None):
    """False with --json or --quiet, or when stderr is not a terminal."""
    if args is not None and (getattr(args, "json", False) or getattr(args, "quiet", False)):
        return False
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


def _noop(done, info="", total=None):
    return None


@contextlib.contextmanager
def progress_bar(label, total=None, enabled=True, console=None, unit=None, transient=True):
    if not enabled or (console is None and not wants_progress()):
        yield _noop
        return
    counts = (DownloadColumn(), TransferSpeedColumn()) if unit == "bytes" else (MofNCompleteColumn(),)
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), *counts,
                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                  console=console or Console(stderr=True), transient=transient) as prog:
        task = prog.add_task(label, total=total, info="")

        def update(done, info="", total=None):
            if total is not None:
                prog.update(task, total=total)
            prog.update(task, completed=done, info=info)
        yield update
