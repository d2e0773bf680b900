"""becomingone: the host coordinator of BecomingONE edge (the repository's host/ folder). Its
folders are its layers, bottom to top: util, config, links, wire, ingest, devices, core, ledger,
memory, model, mesh, coordinator, then the surfaces (http, mqtt), the composition root cell.py and
the CLI (commands, cli.py); docs/ARCHITECTURE.md walks one frame through them."""


def _version():
    # the installed distribution's version (pyproject.toml); a plain checkout says so
    try:
        from importlib.metadata import PackageNotFoundError, version
        return version("becomingone-edge")
    except PackageNotFoundError:
        return "0+checkout"


__version__ = _version()
