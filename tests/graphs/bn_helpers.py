"""Shared helpers of the Bayesian-network tests: random DAGs, brute force, pgmpy references."""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import warnings
from unittest import mock

import pytest
import torch
from pyro.infer import TraceEnum_ELBO

import hybridpgm
from hybridpgm.graphs import BayesNet, cpd


@pytest.fixture(autouse=True)
def single_thread():
    """Run a test on one intra-op thread: these tests are many tiny kernels, which
    oversubscribed threads (a shared 2-core machine) slow down several-fold."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def batch_norm_net():
    """``c -> w``: ``w`` a Neural CPD with a batch norm (context ``u``), the network in training mode; returns
    ``(bn, the CPD's network)``."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.BatchNorm1d(8), torch.nn.ReLU(),
                              torch.nn.Linear(8, 2))
    bn = BayesNet().add("c", cpd.Table([0.3, 0.7])).add("w", cpd.Neural(net, ["c"], 2, context=["u"]))
    return bn.train(), net


def neural_child_net() -> BayesNet:
    """``c -> w``: ``w`` a Neural CPD (a two-layer tanh network of ``c``), seeded."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 4), torch.nn.Tanh(), torch.nn.Linear(4, 2))
    return BayesNet().add("c", cpd.Table([0.3, 0.7])).add("w", cpd.Neural(net, ["c"], 2))


def neural_child_training(bn: BayesNet):
    """``(SVIObjective, data)`` training :func:`neural_child_net` by enumeration on three rows with missing
    entries (one complete, one ``w`` missing, one ``c`` missing)."""
    rows = torch.tensor([[0.0, 1.0], [1.0, float("nan")], [float("nan"), 0.0]])
    return hybridpgm.SVIObjective(bn.model, bn.guide, TraceEnum_ELBO(max_plate_nesting=1)), bn.split_missing(rows)


def star(k: int = 8) -> BayesNet:
    """``x0`` and its children ``x1..x{k-1}``, binary (leaves: evidence missing in some rows splits no rows)."""
    bn = BayesNet().add("x0", cpd.Table([0.4, 0.6]))
    for i in range(1, k):
        bn.add(f"x{i}", cpd.Table([[0.3 + 0.05 * i, 0.7 - 0.05 * i], [0.8, 0.2]], ["x0"]))
    return bn


def sprinkler() -> BayesNet:
    """The rain -> sprinkler -> wet-grass network (rain also wets the grass), with state names for rain."""
    bn = BayesNet()
    bn.add("rain", cpd.Table([0.8, 0.2]), states=["no", "yes"])
    bn.add("sprinkler", cpd.Table([[0.6, 0.4], [0.99, 0.01]], ["rain"]))
    bn.add("wet", cpd.Table([[[1.0, 0.0], [0.1, 0.9]], [[0.2, 0.8], [0.01, 0.99]]], ["rain", "sprinkler"]))
    return bn


def random_bn(seed: int, num_nodes: int, max_card: int = 3, max_parents: int = 2, zeros: bool = False,
              dtype=torch.float64) -> BayesNet:
    """A random DAG over ``x0..x{n-1}`` (parents among earlier nodes) with random tables."""
    g = torch.Generator().manual_seed(seed)
    cards = [int(torch.randint(2, max_card + 1, (), generator=g)) for _ in range(num_nodes)]
    bn = BayesNet()
    for i in range(num_nodes):
        k = int(torch.randint(0, min(i, max_parents) + 1, (), generator=g))
        parents = sorted(torch.randperm(i, generator=g)[:k].tolist()) if i else []
        shape = [cards[p] for p in parents] + [cards[i]]
        probs = torch.rand(shape, generator=g, dtype=dtype) + 0.05
        if zeros:
            probs = probs * (torch.rand(shape, generator=g, dtype=dtype) > 0.3)
            probs[..., 0] += 0.01  # keep every row valid
        bn.add(f"x{i}", cpd.Table(probs / probs.sum(-1, keepdim=True), [f"x{p}" for p in parents]))
    return bn


def brute_joint(bn: BayesNet) -> tuple[torch.Tensor, torch.Tensor]:
    """Every complete assignment ``[M, V]`` (columns in ``bn.nodes`` order) and its ``[M]`` log-probability."""
    cards = [bn.cardinality(v) for v in bn.nodes]
    rows = torch.tensor(list(itertools.product(*[range(c) for c in cards])))
    with torch.no_grad():
        logp = bn.log_prob({v: rows[:, i] for i, v in enumerate(bn.nodes)})
    return rows, logp


def brute_posterior(bn, rows, logp, evidence: dict, query: str) -> torch.Tensor:
    keep = torch.ones(len(rows), dtype=torch.bool)
    for v, x in evidence.items():
        keep &= rows[:, bn.nodes.index(v)] == x
    w = torch.where(keep, logp, torch.tensor(float("-inf"), dtype=logp.dtype))
    col = rows[:, bn.nodes.index(query)]
    out = torch.stack([w[col == k].logsumexp(0) for k in range(bn.cardinality(query))])
    return (out - out.logsumexp(0)).exp()


@functools.lru_cache(maxsize=None)
def pgmpy_model(name: str):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from pgmpy.utils import get_example_model

        return get_example_model(name)


def bundled_bif(name: str) -> str:
    import pgmpy

    return os.path.join(os.path.dirname(pgmpy.__file__), "utils", "example_models", f"{name}.bif.gz")


def pgmpy_marginal(ve, bn: BayesNet, evidence_row: dict, var: str) -> torch.Tensor:
    """pgmpy's ``p(var | evidence)`` in the state order of ``bn``."""
    ev = {v: bn.state_names[v][int(x)] for v, x in evidence_row.items()}
    f = ve.query([var], evidence=ev, show_progress=False)
    return torch.tensor([float(f.values[f.state_names[var].index(s)]) for s in bn.state_names[var]],
                        dtype=torch.float64)


@contextlib.contextmanager
def in_space(prob: bool):
    """Exact queries as usual (``prob``: float64 and float32 in probability space), or every dtype in log space
    (no dtype in :data:`~hybridpgm.infer.bn_contract.PROBABILITY_FLOOR`), so both spaces stay tested."""
    from hybridpgm.infer import bn_contract

    with mock.patch.dict(bn_contract.PROBABILITY_FLOOR, {} if not prob else dict(bn_contract.PROBABILITY_FLOOR),
                         clear=True):
        yield
