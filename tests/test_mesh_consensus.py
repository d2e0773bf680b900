"""Consensus simulations (host/mesh/consensus.py): small sizes only (N <= 500)."""
import json
import math

import numpy as np
import pytest

from becomingone.cli import main
from becomingone.errors import UserError
from becomingone.mesh import consensus as c


def test_pushsum_converges_and_conserves_mass():
    r = c.simulate(200, "pushsum", graph="complete", seed=3, max_rounds=500)
    assert r["converged"] and r["rounds"] == r["rounds_run"]
    assert r["final_error"] <= 1e-6 < r["initial_error"]
    assert r["messages"] == 200 * r["rounds"]
    assert r["mass_drift"] < 1e-12 and r["weight_drift"] < 1e-12


def test_pushsum_on_the_seed_small_world_graph_converges_slower():
    ws = c.simulate(100, "pushsum", graph="ws", seed=1, max_rounds=3000)
    full = c.simulate(100, "pushsum", graph="complete", seed=1, max_rounds=3000)
    assert ws["converged"] and full["converged"]
    assert ws["rounds"] > 3 * full["rounds"]


def test_versioned_map_is_exact_within_two_log2_n_rounds():
    for n in (64, 500):
        r = c.simulate(n, "versioned", graph="complete", seed=n, max_rounds=200)
        assert r["converged"] and r["all_known"] and r["final_error"] < 1e-14
        assert r["rounds"] <= 2 * math.log2(n), r["rounds"]
        assert r["messages"] == 2 * n * r["rounds"]
        # every node needs the n-1 values it lacks, at least once
        assert r["values_sent"] >= n * (n - 1)


def test_round_cap_reports_not_converged():
    r = c.simulate(300, "pushsum", graph="ws", seed=0, max_rounds=5)
    assert r["converged"] is False and r["rounds"] is None and r["rounds_run"] == 5
    assert r["final_error"] > 1e-6 and r["within_target"] is False


def test_emtd_pair_energy_change_matches_brute_force():
    topo = c.Topology(40, "ws", seed=7)
    rng = np.random.default_rng(0)
    x = rng.random(40)
    for a in range(40):
        b = int(topo.indices[topo.indptr[a]])
        dE = c.pair_energy_change(topo, x, np.array([a]), np.array([b]))[0]
        y = x.copy()
        y[a] = y[b] = 0.5 * (x[a] + x[b])
        assert dE == pytest.approx(c.energy(topo, y) - c.energy(topo, x), abs=1e-12)


def test_emtd_conserves_the_sum_and_lowers_the_energy():
    r = c.simulate(300, "emtd", seed=2, max_rounds=400)
    assert r["mass_drift"] < 1e-12          # every accepted move is a pairwise average
    assert r["final_error"] < r["initial_error"]
    topo = c.Topology(300, "ws", seed=2)
    x0 = np.random.default_rng(3).random(300) * 2.0
    assert r["final_energy"] < 0.2 * c.energy(topo, x0)
    assert r["proposed"] > 0 and 0 < r["accepted"] <= r["proposed"]


def test_swarm_agrees_but_drifts_from_the_true_average():
    r = c.simulate(300, "swarm", graph="complete", seed=4, max_rounds=300)
    assert r["agreement_round"] is not None and r["agreement_round"] < 100
    assert r["final_spread"] <= 1e-6
    assert r["final_error"] > 1e-6 and r["converged"] is False   # Eq 21 does not conserve the sum
    assert r["messages"] == 300 * 3 * r["rounds_run"]


def test_seeded_runs_repeat_and_seeds_differ():
    a = c.simulate(150, "emtd", seed=5, max_rounds=50)
    b = c.simulate(150, "emtd", seed=5, max_rounds=50)
    d = c.simulate(150, "emtd", seed=6, max_rounds=50)
    assert a["final_error"] == b["final_error"] and a["messages"] == b["messages"]
    assert a["final_error"] != d["final_error"]


@pytest.mark.parametrize("kw,what", [
    (dict(n=1, algo="pushsum"), "nodes"),
    (dict(n=10, algo="raft"), "algo"),
    (dict(n=10, algo="pushsum", graph="ring"), "graph"),
    (dict(n=10, algo="pushsum", max_rounds=0), "max-rounds"),
    (dict(n=10, algo="pushsum", tol=2.0), "tol"),
    (dict(n=10, algo="emtd", graph="complete"), "emtd"),
    (dict(n=4, algo="pushsum", graph="ws"), "Watts-Strogatz"),
])
def test_bad_input_names_what_is_wrong(kw, what):
    with pytest.raises(UserError, match=what):
        c.simulate(kw.pop("n"), kw.pop("algo"), **kw)


def test_cli_simulate_json(capsys):
    rc = main(["mesh", "simulate", "--nodes", "128", "--algo", "versioned", "--graph", "complete",
               "--json", "--seed", "9"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["converged"] and out["nodes"] == 128 and out["algo"] == "versioned"


def test_cli_simulate_table_and_exit_code_when_not_converged(capsys):
    rc = main(["mesh", "simulate", "--nodes", "100", "--algo", "pushsum", "--max-rounds", "3"])
    out = capsys.readouterr().out
    assert rc == 1 and "converged          False" in out
    assert main(["mesh", "simulate", "--nodes", "100", "--algo", "bogus"]) == 2
    assert "algo must be one of" in capsys.readouterr().err
    assert main(["mesh", "simulate", "--nodes", "100", "--algo", "pushsum", "--max-rounds", "3",
                 "--json"]) == 1
    assert json.loads(capsys.readouterr().out)["converged"] is False


def test_bench_mesh_quick_rows():
    import argparse
    from becomingone.bench import mesh as bench_mesh
    args = argparse.Namespace(quick=True, sizes="100", max_rounds=3000, seed=0)
    rows = {r["name"]: r for r in bench_mesh.collect(args)}
    for algo in ("pushsum", "emtd", "swarm", "versioned"):
        assert "sim-%s-100" % algo in rows
    assert rows["sim-versioned-complete-100"]["within_target"] is True
    assert rows["ring"]["moved_space_fraction"] == pytest.approx(rows["ring"]["hot_cell_share_change"])
    assert rows["archive-restore"]["entries"] == rows["archive-seal"]["entries"] == 5000
    t = rows["mesh-traffic"]                 # the whole live mesh, measured on the wire
    assert t["alive_min"] == 5 and t["bytes_per_cell_per_s"] > rows["gossip"]["bytes_per_cell_per_s"]
    if "nats-10" in rows:                    # nats-server and nats-py installed: the scale row, small
        r = rows["nats-10"]
        assert r["cells"] == 10 and r["settled"] is True and r["errors"] == {}
        assert r["msgs_per_cell_per_s"] > 1 and r["bytes_per_cell_per_s"] > 100 and r["cpu_ms_per_cell_per_s"] > 0
        assert r["tglobal_converge_s"] is not None and r["dead_detect_s"] is not None
        assert r["msgs_by_kind_per_cell_per_s"]["value"]["out"] > 0.5        # one value or heartbeat a period
        assert "members-kv" not in r["msgs_by_kind_per_cell_per_s"]          # no cell watches every record
