"""Consensus simulations (vectorised numpy, one array operation per round, no per-node Python
loops): EMTD annealing (seed 001), ET Eq 21 swarm variance minimisation (seed 000) and push-sum
(Kempe, Dobra, Gehrke 2003) as the standard baseline. docs/MESH.md gives the measurements.

What is simulated, for every algorithm:
- n nodes on a graph: the seed's small world `watts_strogatz_graph(n, k=4, p=0.1)` (the connected
  variant, re-drawn until connected: a split graph cannot agree), or "complete" (a node may
  contact any other, as a mesh with full membership does).
- node i starts with a value x_i ~ Uniform[0, 2) (drawn from `seed`); the goal is that every node
  holds the true average mu = mean(x(0)).
- relative error after a round = max_i |est_i - mu| / |mu|; converged when it is <= tol (1e-6).
  Spread = (max_i est_i - min_i est_i) / |mu| measures agreement alone (nodes agree on SOME value).
- messages: every value a node sends to another node (one number or one pair = one message).

Algorithms (each round = every node acts once, in parallel):
- pushsum: node i holds (s_i, w_i) = (x_i, 1); it keeps half and sends half to one uniformly
  chosen neighbour; est_i = s_i / w_i. Sum of s and of w is conserved exactly -> est -> mu.
  Messages per round: n.
- emtd: node i holds x_i; the energy is the seed's Hamiltonian H = 1/2 sum over edges (x_i-x_j)^2.
  Each round a random matching of edges is drawn (half the nodes are "active" and propose to one
  random neighbour, a passive node takes the proposer with the lowest random ticket); the
  proposal for a matched pair is that both adopt their mean m = (x_i+x_j)/2 (sum conserved). dE is
  the exact change of H given the current neighbour values; the pair accepts if dE <= 0, else with
  probability exp(-dE/T) (Metropolis-Hastings). T starts at t0 = 100 and cools by decay = 0.95 per
  round (the seed's constants). The seed's "quantum tunneling" escape from metastable traps: when a
  round accepts no proposal while not converged, T is re-heated to the mean |dE| of that round's
  proposals. Messages: proposals + replies + each changed node telling its neighbours its new
  value (the energy needs neighbour values), plus the first announcement (2|E|).
- swarm: node i holds x_i and a variance V_i (its coherence). Each round it samples `peers`
  (3, the seed's `peer_count`) random neighbours (with replacement), receives their (x_j, V_j) and
  moves to the gravity-weighted state argmin_S sum_p w_p (x_p - S)^2 = sum w_p x_p / sum w_p with
  w_p = 1/V_p (Eq 21: Weight = 1/V; a floor of 1e-30 mu^2 avoids division by zero); its new V_i is
  the variance of the sampled group around the new state. Messages per round: n * peers. The sum
  is NOT conserved, so the swarm agrees on a value near, not at, mu (reported as final_error).
- versioned (what the live mesh uses, docs/MESH.md): node i holds a map origin -> (version, value)
  starting with its own entry; each round it contacts one random peer and both merge the other's
  map (push-pull anti-entropy; keep the higher version per origin, so a duplicate or re-delivered
  message changes nothing); est_i = mean of the values it knows. Messages per round: 2n (request
  and reply); `values_sent` counts the map entries the peers did not have yet (the deltas).
"""
import math
import time

import numpy as np

from becomingone.errors import UserError

ALGOS = ("emtd", "swarm", "pushsum", "versioned")
GRAPHS = ("ws", "complete")
DEFAULT_TOL = 1e-6
REHEAT_BELOW = 0.0   # emtd re-heats when at most this fraction of disagreeing pairs accepted


class Topology:
    """Neighbour lists as arrays: CSR (indptr, indices) and the directed edge list (src, dst)."""

    def __init__(self, n, graph="ws", seed=0, k=4, p=0.1):
        if type(n) is not int or n < 2:
            raise UserError("nodes must be an integer >= 2, got %r" % (n,))
        if graph not in GRAPHS:
            raise UserError("graph must be one of %s, got %r" % (", ".join(GRAPHS), graph))
        self.n, self.kind = n, graph
        if graph == "complete":
            self.indptr = self.indices = self.src = self.dst = None
            self.deg = np.full(n, n - 1, dtype=np.int64)
            self.edges = n * (n - 1) // 2
            return
        if n <= k:
            raise UserError("a Watts-Strogatz graph with k=%d needs more than %d nodes, got %d" % (k, k, n))
        try:
            # networkx: optional (the `sim` extra), only for Watts-Strogatz topologies
            import networkx as nx
        except ImportError:
            raise UserError("the Watts-Strogatz topology needs networkx: pip install "
                            "'becomingone-edge[sim]' (or --graph complete)") from None
        g = nx.connected_watts_strogatz_graph(n, k, p, tries=100, seed=seed)
        e = np.array(g.edges(), dtype=np.int64).reshape(-1, 2)
        src = np.concatenate([e[:, 0], e[:, 1]])
        dst = np.concatenate([e[:, 1], e[:, 0]])
        order = np.argsort(src, kind="stable")
        self.src, self.dst = src[order], dst[order]
        self.deg = np.bincount(self.src, minlength=n).astype(np.int64)
        self.indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(self.deg, out=self.indptr[1:])
        self.indices = self.dst
        self.edges = len(e)

    def random_neighbours(self, rng, count=None):
        """One uniformly chosen neighbour per node (or `count` per node: shape (count, n))."""
        n = self.n
        shape = (n,) if count is None else (count, n)
        if self.kind == "complete":
            r = rng.integers(0, n - 1, size=shape)
            return r + (r >= np.arange(n))      # skip self
        off = (rng.random(shape) * self.deg).astype(np.int64)
        return self.indices[self.indptr[:n] + off]

    def neighbour_sum(self, x):
        if self.kind == "complete":
            return x.sum() - x
        return np.bincount(self.src, weights=x[self.dst], minlength=self.n)


class Result(dict):
    """rounds (to tol, or None), messages (to tol, or all sent), converged, rounds_run,
    agreement_round (spread <= tol), final_error, final_spread, seconds, ..."""


def _errors(est, mu):
    a = abs(mu)
    return float(np.max(np.abs(est - mu)) / a), float((est.max() - est.min()) / a)


def simulate(n, algo, seed=0, max_rounds=2000, tol=DEFAULT_TOL, graph="ws", progress=None,
             peers=3, t0=100.0, decay=0.95):
    """Run one simulation; returns a Result dict. progress(round, error) is called every round."""
    if algo not in ALGOS:
        raise UserError("algo must be one of %s, got %r" % (", ".join(ALGOS), algo))
    if type(max_rounds) is not int or max_rounds < 1:
        raise UserError("max-rounds must be an integer >= 1, got %r" % (max_rounds,))
    if not (isinstance(tol, float) and 0 < tol < 1):
        raise UserError("tol must be a float in (0, 1), got %r" % (tol,))
    if algo == "emtd" and graph == "complete":
        raise UserError("emtd's energy needs every neighbour's value: use --graph ws (complete "
                        "would mean n-1 messages per changed node)")
    t_start = time.perf_counter()
    topo = Topology(n, graph, seed=seed)
    rng = np.random.default_rng(seed + 1)
    x0 = rng.random(n) * 2.0
    mu = float(x0.mean())
    step = {"pushsum": _pushsum, "emtd": _emtd, "swarm": _swarm, "versioned": _versioned}[algo](topo, x0, rng, mu,
                                                                      peers=peers, t0=t0, decay=decay)
    messages = step.initial_messages
    res = Result(algo=algo, nodes=n, graph=graph, seed=seed, tol=tol, rounds=None, converged=False,
                 agreement_round=None, max_rounds=max_rounds)
    err, spread = _errors(step.estimate(), mu)
    res["initial_error"] = err
    r = 0
    while r < max_rounds and err > tol:
        r += 1
        messages += step.round()
        err, spread = _errors(step.estimate(), mu)
        if res["agreement_round"] is None and spread <= tol:
            res["agreement_round"] = r
        if progress is not None:
            progress(r, err)
        if res["agreement_round"] is not None and algo == "swarm" and spread == 0.0:
            break  # exact agreement: nothing can change any more
    res.update(rounds_run=r, messages=messages, final_error=err, final_spread=spread,
               seconds=time.perf_counter() - t_start, edges=topo.edges,
               log2_n=math.log2(n), target_rounds=2 * math.log2(n))
    if err <= tol:
        res.update(rounds=r, converged=True)
    res["within_target"] = bool(res["converged"] and r <= res["target_rounds"])
    res.update(step.extra())
    return res


def energy(topo, x):
    """The seed's Hamiltonian H = 1/2 sum over undirected edges (x_a - x_b)^2 (ws graphs)."""
    return 0.25 * float(((x[topo.src] - x[topo.dst]) ** 2).sum())   # each edge listed twice


def pair_energy_change(topo, x, i, j):
    """dH if each pair (i[q], j[q]) (neighbours, disjoint pairs) adopts its mean, all other
    values unchanged. With S = sum of neighbour values and m the mean, the edges of i change by
    (m - x_i)(deg_i (m + x_i) - 2 S_i) counting edge (i, j) at the old x_j; the same for j; the
    correction for edge (i, j) itself (old d^2, new 0) makes the total A_i + A_j + d^2/2."""
    S = topo.neighbour_sum(x)
    deg = topo.deg
    xi, xj = x[i], x[j]
    m = 0.5 * (xi + xj)
    a_i = (m - xi) * (deg[i] * (m + xi) - 2.0 * S[i])
    a_j = (m - xj) * (deg[j] * (m + xj) - 2.0 * S[j])
    return 0.5 * (a_i + a_j + 0.5 * (xi - xj) ** 2)


class _pushsum:
    def __init__(self, topo, x0, rng, mu, **_):
        self.t, self.rng = topo, rng
        self.s, self.w = x0.copy(), np.ones(topo.n)
        self.mu = mu
        self.initial_messages = 0

    def round(self):
        n = self.t.n
        tgt = self.t.random_neighbours(self.rng)
        hs, hw = self.s * 0.5, self.w * 0.5
        self.s = hs + np.bincount(tgt, weights=hs, minlength=n)
        self.w = hw + np.bincount(tgt, weights=hw, minlength=n)
        return n

    def estimate(self):
        return self.s / self.w

    def extra(self):
        n = self.t.n
        return {"mass_drift": abs(float(self.s.sum()) - n * self.mu) / (n * abs(self.mu)),
                "weight_drift": abs(float(self.w.sum()) - n) / n}


class _emtd:
    def __init__(self, topo, x0, rng, mu, t0=100.0, decay=0.95, **_):
        self.t, self.rng = topo, rng
        self.x = x0.copy()
        self.mu = mu
        self.T, self.t0, self.decay = float(t0), float(t0), float(decay)
        self.initial_messages = 2 * topo.edges
        self.accepted = self.proposed = self.uphill = self.reheats = 0

    def round(self):
        t, rng, x, n = self.t, self.rng, self.x, self.t.n
        active = rng.random(n) < 0.5
        cand = t.random_neighbours(rng)
        prop = np.flatnonzero(active & ~active[cand])      # active i proposing to passive cand[i]
        msgs = len(prop)
        if len(prop):
            ticket = rng.random(len(prop))
            order = np.lexsort((ticket, cand[prop]))
            recv = cand[prop][order]
            first = np.ones(len(order), dtype=bool)
            first[1:] = recv[1:] != recv[:-1]
            i = prop[order][first]
            j = recv[first]
            msgs += len(i)                                 # replies
            deg = t.deg
            m = 0.5 * (x[i] + x[j])
            d2 = (x[i] - x[j]) ** 2
            dE = pair_energy_change(t, x, i, j)
            with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
                p_up = np.exp(-np.maximum(dE, 0.0) / self.T)
            acc = (dE <= 0) | (rng.random(len(i)) < p_up)
            self.proposed += len(i)
            self.uphill += int(np.count_nonzero(acc & (dE > 0)))
            live = d2 > 0                                  # pairs that already agree change nothing
            na = int(np.count_nonzero(acc & live))
            self.accepted += na
            moved = np.concatenate([i[acc], j[acc]])
            moved = moved[np.concatenate([d2[acc], d2[acc]]) > 0]
            x[i[acc]] = m[acc]
            x[j[acc]] = m[acc]
            msgs += int(deg[moved].sum())                   # new values to the neighbours
            nl = int(np.count_nonzero(live))
            if nl and na <= REHEAT_BELOW * nl:             # metastable trap: tunnel (re-heat)
                self.T = max(float(np.mean(np.abs(dE[live]))), 1e-300)
                self.reheats += 1
                return msgs
        self.T *= self.decay
        return msgs

    def estimate(self):
        return self.x

    def extra(self):
        return {"mass_drift": abs(float(self.x.mean()) - self.mu) / abs(self.mu),
                "final_energy": energy(self.t, self.x), "accepted": self.accepted, "proposed": self.proposed, "uphill_accepted": self.uphill,
                "reheats": self.reheats, "final_temperature": self.T}


class _swarm:
    def __init__(self, topo, x0, rng, mu, peers=3, **_):
        if type(peers) is not int or peers < 1:
            raise UserError("peers must be an integer >= 1, got %r" % (peers,))
        self.t, self.rng, self.peers = topo, rng, peers
        self.x = x0.copy()
        self.floor = 1e-30 * mu * mu
        self.V = np.full(topo.n, float(np.var(x0)))       # everyone starts equally uncertain
        self.initial_messages = 0

    def round(self):
        t, x = self.t, self.x
        nb = t.random_neighbours(self.rng, self.peers)     # (peers, n)
        xs = np.vstack([x[None, :], x[nb]])                # group: self + sampled peers
        w = 1.0 / np.maximum(np.vstack([self.V[None, :], self.V[nb]]), self.floor)
        new = (w * xs).sum(axis=0) / w.sum(axis=0)
        self.V = ((xs - new) ** 2).mean(axis=0)
        self.x = new
        return t.n * self.peers

    def estimate(self):
        return self.x

    def extra(self):
        return {"peers": self.peers}


_POPCOUNT = np.array([bin(b).count("1") for b in range(256)], dtype=np.int64)


class _versioned:
    """Known origins as a packed bit matrix (row i = the origins node i holds a value for)."""

    def __init__(self, topo, x0, rng, mu, **_):
        self.t, self.rng, self.x = topo, rng, x0
        n = topo.n
        eye = np.zeros((n, n), dtype=bool)
        eye[np.arange(n), np.arange(n)] = True
        self.known = np.packbits(eye, axis=1)             # (n, ceil(n/8)) uint8
        self.initial_messages = 0
        self.values_sent = 0

    def round(self):
        k, n = self.known, self.t.n
        tgt = self.t.random_neighbours(self.rng)
        pulled = k[tgt]                                    # i asks tgt: tgt's map comes back
        new = k | pulled
        order = np.argsort(tgt, kind="stable")             # tgt receives i's map (push half)
        recv = tgt[order]
        starts = np.flatnonzero(np.r_[True, recv[1:] != recv[:-1]])
        pushed = np.bitwise_or.reduceat(k[order], starts, axis=0)
        new[recv[starts]] |= pushed
        self.values_sent += int(_POPCOUNT[pulled & ~k].sum() + _POPCOUNT[k[order] & ~k[recv]].sum())
        self.known = new
        return 2 * n

    def estimate(self):
        # sum of the known values per row through a per-byte table: lut[b, v] = sum of the x of
        # the origins whose bits are set in byte value v of byte column b (8x fewer operations
        # than unpacking the bits)
        if not hasattr(self, "_lut"):
            n = self.t.n
            nb = self.known.shape[1]
            xp = np.zeros(nb * 8)
            xp[:n] = self.x
            bits = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1).astype(np.float64)
            self._lut = xp.reshape(nb, 8) @ bits.T                  # (nb, 256)
            self._cols = np.arange(nb)
        n, out = self.t.n, np.empty(self.t.n)
        for a in range(0, n, 256):
            blk = self.known[a:a + 256]
            out[a:a + 256] = self._lut[self._cols, blk].sum(axis=1) / _POPCOUNT[blk].sum(axis=1)
        return out

    def extra(self):
        full = np.unpackbits(self.known, axis=1, count=self.t.n).all()
        return {"values_sent": self.values_sent, "all_known": bool(full)}
