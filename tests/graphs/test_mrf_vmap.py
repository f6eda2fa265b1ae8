"""MarkovNet queries under :func:`torch.func.vmap` (:mod:`hybridpgm.graphs.mrf_vmap`).

Found by an audit: every query (``log_partition``, ``marginals``, ``map_assignment``, ``sample``, ``score``,
``log_prob``, ``distribution``) reads its evidence, values or tables on the host, and under ``vmap`` over them failed
with torch's raw ``RuntimeError`` ("vmap: It looks like you're attempting to use a Tensor in some data-dependent
control flow").  They now raise :class:`~hybridpgm.errors.ConfigError` naming the query and saying to pass the
rows as one batch, which the guards below show gives the loop's answer.
"""

import pytest
import torch
from torch.func import vmap

from hybridpgm.errors import ConfigError, ModelSpecError
from hybridpgm.graphs import MarkovNet

EVIDENCE = torch.tensor([0, 1, -1])


def _net(parameter=False):
    g = torch.Generator().manual_seed(0)
    mrf = MarkovNet({"a": 2, "b": 3, "c": 2})
    ab = torch.randn(2, 3, generator=g)
    mrf.add_factor("ab", ["a", "b"], torch.nn.Parameter(ab) if parameter else ab)
    return mrf.add_factor("bc", ["b", "c"], torch.randn(3, 2, generator=g))


QUERIES = {
    "log_partition": [lambda m, e: m.log_partition(evidence={"a": e}),
                      lambda m, e: m.log_partition(method="bp", evidence={"a": e})],  # mean field runs: see
    # tests/graphs/test_mrf_vmap_mean_field.py
    "marginals": [lambda m, e: m.marginals(evidence={"a": e})["b"],
                  lambda m, e: m.marginals(method="bp", evidence={"a": e})["b"]],
    "map_assignment": [lambda m, e: m.map_assignment(evidence={"a": e})["b"],
                       lambda m, e: m.map_assignment(method="bp", evidence={"a": e})["b"]],
    "sample": [lambda m, e: m.sample(2, evidence={"a": e})["b"]],
    "score": [lambda m, e: m.score({"a": e.clamp_min(0), "b": e.clamp_min(0), "c": e.clamp_min(0)})],
    "log_prob": [lambda m, e: m.log_prob({"a": e.clamp_min(0), "b": e.clamp_min(0), "c": e.clamp_min(0)})],
    "distribution": [lambda m, e: m.distribution(evidence={"a": e}).log_prob(torch.zeros(3, dtype=torch.long))],
}


@pytest.mark.parametrize("name, query", [(n, q) for n, qs in QUERIES.items() for q in qs])
def test_a_query_vmapped_over_its_evidence_or_values_raises_a_config_error_naming_it(name, query):
    mrf = _net()
    with pytest.raises(ConfigError, match=rf"MarkovNet\.{name} does not support torch\.func\.vmap.*shape \[N\]") as e:
        vmap(lambda x: query(mrf, x))(EVIDENCE)
    assert isinstance(e.value.__cause__, RuntimeError) and "vmap" in str(e.value.__cause__)


def test_a_query_vmapped_over_the_tables_raises_a_config_error_naming_it():
    """A ``vmap`` over the potentials (the factor's parameter swapped for a batched one) is refused by name too;
    the error says to give the tables a leading batch dimension."""
    mrf = _net(parameter=True)
    tables = torch.randn(4, 2, 3)

    def log_z(t):
        with torch.nn.utils.stateless._reparametrize_module(mrf, {"table_potentials.ab": t}):
            return mrf.log_partition()

    with pytest.raises(ConfigError, match=r"MarkovNet\.log_partition .*leading batch dimension"):
        vmap(log_z)(tables)


def test_the_batch_the_error_asks_for_gives_the_loops_answer():
    """Guard (passes before and after the fix): the advice holds, evidence rows ``[N]`` answered together equal a
    loop over the rows, and a ``vmap`` whose batched input the query never touches runs as before."""
    mrf = _net()
    together = mrf.log_partition(evidence={"a": EVIDENCE})
    loop = torch.stack([mrf.log_partition(evidence={"a": e}) for e in EVIDENCE])
    torch.testing.assert_close(together, loop, rtol=0, atol=1e-6)
    marg = mrf.marginals(method="bp", evidence={"a": EVIDENCE})["b"]
    torch.testing.assert_close(marg, torch.stack([mrf.marginals(method="bp", evidence={"a": e})["b"]
                                                  for e in EVIDENCE]), rtol=0, atol=1e-6)
    out = vmap(lambda x: x * mrf.log_partition())(torch.arange(3.0))
    torch.testing.assert_close(out, torch.arange(3.0) * mrf.log_partition())


def test_hybridpgms_own_errors_pass_through_vmap_unchanged():
    """Guard: a bad call under ``vmap`` still raises its own error (an unknown method), not the vmap advice."""
    mrf = _net()
    with pytest.raises(ModelSpecError, match="unknown inference method 'bogus'"):
        vmap(lambda x: x * mrf.log_partition(method="bogus"))(torch.arange(3.0))


def test_declaring_a_factor_inside_vmap_raises_a_config_error_naming_it():
    """Found by an audit: ``add_factor`` (and ``ising_grid``) inside ``vmap`` raised torch's data-dependent
    control-flow error from the table's finiteness check, before any query could name the problem."""
    def declare(table):
        net = MarkovNet({"a": 2, "b": 3})
        net.add_factor("ab", ["a", "b"], table)
        return net.log_partition()

    with pytest.raises(ConfigError, match=r"factor 'ab' cannot be declared inside torch.func.vmap.*leading batch"):
        vmap(declare)(torch.randn(4, 2, 3))
    net = MarkovNet({"a": 2, "b": 3})  # outside vmap, a NaN table is still refused by name
    with pytest.raises(ModelSpecError, match="non-finite"):
        net.add_factor("ab", ["a", "b"], torch.full((2, 3), float("nan")))
