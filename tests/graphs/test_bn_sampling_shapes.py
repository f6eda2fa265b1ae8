"""``BayesNet.sample`` with context inputs: the same shapes with and without a generator (found by an audit of the
samplers: ``sample(5, inputs, generator=g)`` drew every input row 5 times, ``[5, 5]``, where ``sample(5, inputs)``
draws sample ``s`` given row ``s``, ``[5]``)."""

import pytest
import torch

from hybridpgm import BayesNet
from hybridpgm.errors import DataError
from hybridpgm.graphs import cpd
from tests import generator_contract as contract

U = torch.tensor([[-1.0], [1.0], [1.0], [-1.0], [1.0], [-1.0]])


def _net():
    """``z`` follows its context's sign (logits ``[0, 60 u]``: the other state has probability ``e^{-60}``), ``a``
    is a coin beside it."""
    linear = torch.nn.Linear(1, 2)
    with torch.no_grad():
        linear.weight.copy_(torch.tensor([[0.0], [60.0]]))
        linear.bias.zero_()
    bn = BayesNet().add("a", cpd.Table([0.3, 0.7]))
    return bn.add("z", cpd.Neural(linear, [], 2, context=["u"]))


@pytest.mark.parametrize("generator", [None, torch.Generator().manual_seed(0)], ids=["global stream", "generator"])
def test_sample_s_is_drawn_given_input_row_s_with_or_without_a_generator(generator):
    torch.manual_seed(0)
    draws = _net().sample(6, context=U, generator=generator)
    assert {v: tuple(t.shape) for v, t in draws.items()} == {"a": (6,), "z": (6,)}
    assert torch.equal(draws["z"], (U[:, 0] > 0).long())
    assert {v: tuple(t.shape) for v, t in _net().sample(0, context=U, generator=generator).items()} == \
        {"a": (0,), "z": (0,)}


def test_inputs_of_another_row_count_are_refused_with_a_generator_too_naming_the_call_that_draws_per_row():
    """Review: with a generator this call gave ``[4, 6]`` before (4 samples given each input row); the refusal names
    the call that still does, and that call does."""
    net = _net()
    with pytest.raises(DataError, match=r"BayesNet.sample: 4 samples asked for, but the context inputs have 'u': 6 ") \
            as refused:
        net.sample(4, context=U, generator=torch.Generator().manual_seed(0))
    assert str(refused.value).endswith("call hybridpgm.infer.exact.posterior_sample(bn, 4, {'u': <its rows>})")
    from hybridpgm.infer.exact import posterior_sample

    draws = posterior_sample(net, 4, {"u": U}, generator=torch.Generator().manual_seed(0))
    assert draws["z"].shape == (4, 6) and torch.equal(draws["z"], (U[:, 0] > 0).long().expand(4, 6))


def test_the_generator_contract_holds_with_context_inputs():
    net = _net()
    contract.assert_generator_contract(lambda **kw: list(net.sample(6, context=U, **kw).values()),
                                       "BayesNet.sample generator")


def test_evidence_rows_keep_their_shape():
    """With evidence the inputs join its rows: ``[num_samples, N]``, with or without a generator."""
    evidence = {"a": torch.tensor([0, 1, 1, 0, 0, 1])}
    for generator in (None, torch.Generator().manual_seed(0)):
        draws = _net().sample(4, context=U, evidence=evidence, generator=generator)
        assert draws["z"].shape == (4, 6) and torch.equal(draws["z"], (U[:, 0] > 0).long().expand(4, 6))
