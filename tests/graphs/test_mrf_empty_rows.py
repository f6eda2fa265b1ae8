"""MarkovNet queries and model of 0 rows (audit of empty inputs, findings 3 and 6).

Before, every query of evidence (or tables) of 0 rows was refused with ``EvidenceError("... holds no model")``,
while :class:`~hybridpgm.graphs.BayesNet`'s queries answer 0 rows with empty results of the right shape; now the
MarkovNet's do too, by every method.  The Pyro model cannot run a plate of 0 rows: it raised Pyro's bare
``ZeroDivisionError: size cannot be zero`` and names the 0 rows now, as ``BayesNet.model`` does.
"""

from __future__ import annotations

import pyro
import pytest
import torch
from pyro import poutine

from hybridpgm.errors import ConfigError, DataError, ModelSpecError
from hybridpgm.graphs import MarkovNet


def _triangle() -> MarkovNet:
    """A loop of three variables (2, 3 and 2 states) with float64 tables: BP and mean field are approximate."""
    g = torch.Generator().manual_seed(0)
    mrf = MarkovNet({"a": 2, "b": 3, "c": 2})
    mrf.add_factor("ab", ["a", "b"], torch.randn(2, 3, dtype=torch.float64, generator=g))
    mrf.add_factor("bc", ["b", "c"], torch.randn(3, 2, dtype=torch.float64, generator=g))
    mrf.add_factor("ca", ["c", "a"], torch.randn(2, 2, dtype=torch.float64, generator=g))
    return mrf


EMPTY = [torch.zeros(0, dtype=torch.long), torch.zeros(2, 0, dtype=torch.long)]


@pytest.mark.parametrize("method", ["exact", "bp", "mean_field"])
@pytest.mark.parametrize("a", EMPTY, ids=["(0,)", "(2,0)"])
def test_log_partition_and_marginals_of_no_rows_are_empty(method, a):
    mrf = _triangle()
    log_z = mrf.log_partition(method, evidence={"a": a})
    assert log_z.shape == a.shape and log_z.dtype == torch.float64
    marginals = mrf.marginals(method, evidence={"a": a})
    assert {v: tuple(m.shape) for v, m in marginals.items()} == {v: a.shape + (c,) for v, c in mrf.cards.items()}
    assert all(m.dtype == torch.float64 for m in marginals.values())


@pytest.mark.parametrize("method", ["auto", "exact", "bp"])
def test_the_map_assignment_of_no_rows_is_empty(method):
    x = _triangle().map_assignment({"a": EMPTY[1]}, method=method)
    assert {v: (tuple(t.shape), t.dtype) for v, t in x.items()} == {v: ((2, 0), torch.long) for v in "abc"}


@pytest.mark.parametrize("kwargs", [{}, {"method": "gibbs", "num_sweeps": 2}])
def test_samples_of_no_rows_are_empty(kwargs):
    x = _triangle().sample(3, evidence={"a": EMPTY[0]}, **kwargs)
    assert {v: tuple(t.shape) for v, t in x.items()} == {v: (3, 0) for v in "abc"}


def test_the_distribution_of_no_rows_answers_empty():
    d = _triangle().distribution(evidence={"a": EMPTY[0]})
    assert d.batch_shape == (0,) and d.sample((2,)).shape == (2, 0, 3)
    assert d.log_prob(torch.zeros(0, 3, dtype=torch.long)).shape == (0,)
    assert d.mode.shape == (0, 3) and d.entropy().shape == (0,) and d.log_partition.shape == (0,)


def test_tables_of_no_rows_answer_empty_too():
    mrf = MarkovNet({"a": 2, "b": 2})
    mrf.add_factor("ab", ["a", "b"], torch.randn(0, 2, 2, dtype=torch.float64))
    assert mrf.log_partition("bp").shape == (0,) and mrf.marginals("bp")["a"].shape == (0, 2)
    neural = MarkovNet({"a": 2}).add_factor("f", ["a"], torch.nn.Linear(1, 2))
    assert neural.log_partition("mean_field", context=torch.zeros(0, 1)).shape == (0,)


def test_a_loss_over_no_rows_has_a_zero_gradient():
    """The empty answer stays in the potentials' graph: a summed loss back-propagates zeros, not autograd's
    "does not require grad" (mean field over a pairwise table)."""
    table = torch.nn.Parameter(torch.randn(2, 3, dtype=torch.float64))
    mrf = MarkovNet({"a": 2, "b": 3}).add_factor("ab", ["a", "b"], table)
    mrf.log_partition("mean_field", evidence={"a": EMPTY[0]}).sum().backward()
    assert torch.equal(table.grad, torch.zeros(2, 3, dtype=torch.float64))


def test_options_are_checked_for_no_rows_too():
    mrf = _triangle()
    with pytest.raises(ConfigError, match="num_iters must be a positive integer, got 2.5"):
        mrf.log_partition("bp", evidence={"a": EMPTY[0]}, num_iters=2.5)
    with pytest.raises(ModelSpecError, match=r"has no option\(s\) \['foo'\]"):
        mrf.map_assignment({"a": EMPTY[0]}, method="bp", foo=1)


def test_the_answers_of_rows_are_unchanged_beside_the_empty_path():
    mrf = _triangle()
    a = torch.tensor([0, 1])
    exact = mrf.log_partition(evidence={"a": a})
    assert torch.allclose(exact[1], mrf.log_partition(evidence={"a": a[1:]})[0], rtol=0, atol=1e-12)
    assert mrf.map_assignment({"a": a}, method="exact")["a"].tolist() == [0, 1]


@pytest.mark.parametrize("values, context, match", [
    ({"a": torch.zeros(0, dtype=torch.long)}, None, r"values of shapes \{'a': \(0,\)\}"),
    (None, torch.zeros(0, 1), r"tables of 0 rows from a context of shape \(0, 1\)"),
])
def test_the_model_names_data_of_no_rows(values, context, match):
    if context is None:
        mrf = MarkovNet({"a": 2}).add_factor("f", ["a"], torch.zeros(2))
    else:
        mrf = MarkovNet({"a": 2}).add_factor("f", ["a"], torch.nn.Linear(1, 2))
    with pytest.raises(DataError, match=rf"MarkovNet.model got data of 0 rows \({match}\); a Pyro plate cannot be "):
        poutine.trace(mrf.model).get_trace(values, context)
    pyro.clear_param_store()
