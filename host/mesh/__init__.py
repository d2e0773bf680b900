"""Mesh between cells (a cell = a host and its devices). docs/MESH.md describes each part.

    from host.mesh.consensus import simulate, ALGOS, GRAPHS
    simulate(n, algo, seed=0, max_rounds=2000, tol=1e-6, graph="ws", progress=None) -> dict
        algo in emtd | swarm | pushsum | versioned; graph in ws | complete; the dict has rounds
        (None if not converged), messages, converged, rounds_run, final_error, seconds, ...
"""
