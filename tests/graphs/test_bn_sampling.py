"""BayesNetSampling: ``BayesNet.sample`` with a generator (dropout, eval mode, the exact query) and its context
inputs' row count (hybridpgm/graphs/bn_sampling.py)."""

import pytest
import torch

from hybridpgm.errors import DataError
from hybridpgm.graphs import BayesNet, cpd
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)


def _dropout_bn():
    torch.manual_seed(0)
    bn = BayesNet()
    bn.add("a", cpd.Table([0.3, 0.7]))
    bn.add("b", cpd.Neural(torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Dropout(0.5), torch.nn.Linear(8, 2)),
                           ["a"], 2))
    bn.add("c", cpd.Table([[0.5, 0.5], [0.1, 0.9]], ["b"]))
    return bn


@pytest.mark.parametrize("evidence", [None, {"c": torch.tensor([1])}])
def test_sample_with_a_generator_repeats_under_dropout_and_keeps_the_global_streams(evidence):
    # found by an audit: a Neural CPD's dropout drew from torch's global stream, so sample(generator=g) was not a
    # function of g and moved the caller's stream
    bn = _dropout_bn().train()
    torch.manual_seed(5)
    state = torch.get_rng_state()
    s1 = bn.sample(500, evidence=evidence, generator=torch.Generator().manual_seed(1))
    assert torch.equal(torch.get_rng_state(), state)
    s2 = bn.sample(500, evidence=evidence, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(s1[v], s2[v]) for v in bn.nodes)


def test_sample_with_a_generator_in_eval_mode_draws_as_the_exact_query():
    # no network in training mode: no draw for a seed, the samples are posterior_sample's for the same generator
    from hybridpgm.infer.exact import posterior_sample

    bn = _dropout_bn().eval()
    evidence = {"c": torch.tensor([1, 0])}
    g, reference = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    got = bn.sample(300, evidence=evidence, generator=g)
    expected = posterior_sample(bn, 300, evidence, generator=reference)
    assert all(torch.equal(got[v], expected[v]) for v in bn.nodes)
    assert torch.equal(g.get_state(), reference.get_state())


def test_sample_refuses_context_inputs_of_another_row_count():
    """Before, ``sample(1000, inputs)`` with one input row returned 1 draw (50 rows: 50 draws), silently."""
    bn = BayesNet()
    bn.add("z", cpd.Neural(torch.nn.Linear(1, 2), [], 2, context=["u"]))
    assert bn.sample(5, context=torch.randn(5, 1))["z"].shape == (5,)
    for rows in (1, 50):
        with pytest.raises(DataError, match=rf"1000 samples asked for, but the context inputs have 'u': {rows} "
                                            r"row\(s\)"):
            bn.sample(1000, context=torch.randn(rows, 1))
    assert bn.sample(0, context=torch.randn(5, 1))["z"].shape == (0,)  # zero samples: empty, whatever the inputs
