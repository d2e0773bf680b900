"""Partition and heal with real network namespaces (ip netns + veth + a bridge in its own
namespace; iproute2, root only): three cells as processes, cell-2's link is cut, both sides
declare the other dead, T_global falls back to the reachable cells; after the link comes back
every cell is alive again, T_global is the same everywhere and the ledgers written during the
partition are replicated."""
import os
import subprocess

import pytest

from tests.test_mesh_node_procs import CELLS, Proc, converged, expected_t, setup_cells, wait

PFX = "bo%d" % (os.getpid() % 100000)


def _show(procs):
    keep = ("view", "t_global", "replicas", "size", "alerts", "last_error")
    return "\n".join("%s: %s" % (c, {k: (p.status or {}).get(k) for k in keep}) for c, p in procs.items())


def _ip(*args, check=True):
    return subprocess.run(["ip"] + list(args), capture_output=True, text=True, check=check)


def _can_netns():
    if os.geteuid() != 0:
        return False
    try:
        return _ip("netns", "add", PFX + "probe", check=False).returncode == 0 and \
            _ip("netns", "del", PFX + "probe", check=False).returncode == 0
    except FileNotFoundError:
        return False


pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not _can_netns(), reason="needs root and iproute2 network namespaces")]


@pytest.fixture
def netns():
    sw = PFX + "sw"
    names = [PFX + "c%d" % i for i in range(3)]
    _ip("netns", "add", sw)
    try:
        _ip("-n", sw, "link", "add", "br0", "type", "bridge")
        _ip("-n", sw, "link", "set", "br0", "up")
        for i, ns in enumerate(names):
            _ip("netns", "add", ns)
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("link", "add", PFX + "a%d" % i, "netns", ns, "type", "veth", "peer", "name",
                PFX + "s%d" % i, "netns", sw)
            _ip("-n", ns, "addr", "add", "10.77.0.%d/24" % (i + 1), "dev", PFX + "a%d" % i)
            _ip("-n", ns, "link", "set", PFX + "a%d" % i, "up")
            _ip("-n", sw, "link", "set", PFX + "s%d" % i, "master", "br0", "up")
        yield sw, names
    finally:
        for ns in names + [sw]:
            _ip("netns", "del", ns, check=False)


def test_partition_and_heal_converge(tmp_path, netns):
    sw, names = netns
    base = str(tmp_path)
    tls, trust = setup_cells(base, CELLS)
    addr = {c: "10.77.0.%d" % (i + 1) for i, c in enumerate(CELLS)}
    seed = "%s:18789" % addr["cell-0"]
    procs = {}
    try:
        for i, (c, (t, n)) in enumerate(CELLS.items()):
            procs[c] = Proc(base, tls, trust, c, 18789, ([] if c == "cell-0" else [seed], addr[c]), t, n,
                            prefix=["ip", "netns", "exec", names[i]])
        everyone = list(CELLS)
        assert wait(lambda: converged(procs, everyone, expected_t(CELLS)), 40), \
            _show(procs)
        _ip("-n", sw, "link", "set", PFX + "s2", "down")          # cut cell-2 off
        rest = {c: v for c, v in CELLS.items() if c != "cell-2"}

        def split():
            return all(procs[c].status["view"]["cell-2"][0] == "dead" for c in rest) and \
                all(procs["cell-2"].status["view"][c][0] == "dead" for c in rest) and \
                all(abs(procs[c].status["t_global"][0] - expected_t(rest)[0]) < 1e-9 for c in rest)
        assert wait(split, 40), _show(procs)
        size2 = procs["cell-2"].status["size"]                      # cell-2 kept writing
        _ip("-n", sw, "link", "set", PFX + "s2", "up")             # heal

        def healed():
            return converged(procs, everyone, expected_t(CELLS)) and \
                all(procs[c].status["replicas"]["cell-2"] >= size2 for c in rest)
        assert wait(healed, 60), _show(procs)
        assert all(p.status["alerts"] == 0 for p in procs.values())
    finally:
        for p in procs.values():
            p.stop()
