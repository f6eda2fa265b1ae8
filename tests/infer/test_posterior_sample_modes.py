"""``posterior_sample``/``BayesNet.sample`` with ``generator=`` whatever the CPDs' networks' modes (found by an
audit of the samplers: the global streams were seeded from the generator only while some network was in training
mode)."""

import torch
import torch.nn.functional as F

from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer.exact import posterior_sample
from tests import generator_contract as contract
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)


class _AlwaysDropout(torch.nn.Module):
    """The MC-dropout idiom: a layer that draws in evaluation mode too."""

    def forward(self, x):
        return F.dropout(x, 0.5, training=True)


def _bn(always_dropout=False):
    torch.manual_seed(0)
    layers = [torch.nn.Linear(2, 3)] + ([_AlwaysDropout()] if always_dropout else [])
    bn = BayesNet()
    bn.add("a", cpd.Table([0.3, 0.7]))
    bn.add("b", cpd.Neural(torch.nn.Sequential(*layers), parents=["a"], cardinality=3))
    return bn.add("c", cpd.Table([[0.9, 0.1], [0.5, 0.5], [0.2, 0.8]], parents=["b"]))


def _draws(out):
    return [out[v] for v in sorted(out)]


def test_the_same_generator_gives_the_same_samples_in_training_and_evaluation_mode():
    """A network that does not depend on its mode.  Before, the generator gave one seed draw while it was in
    training mode and none in evaluation mode, so every draw after it differed."""
    bn = _bn()
    for evidence in (None, {"c": torch.tensor([0, 1, -1])}):
        trained = posterior_sample(bn.train(), 40, evidence, generator=torch.Generator().manual_seed(42))
        evaluated = posterior_sample(bn.eval(), 40, evidence, generator=torch.Generator().manual_seed(42))
        assert all(torch.equal(x, y) for x, y in zip(_draws(trained), _draws(evaluated)))


def test_a_network_that_draws_in_evaluation_mode_draws_from_the_generator():
    """Before, in evaluation mode its dropout followed torch's global seed and moved the caller's stream."""
    bn = _bn(always_dropout=True).eval()
    call = lambda **kw: _draws(bn.sample(200, **kw))  # noqa: E731 - the contract's call
    contract.assert_repeatable(call)
    contract.assert_seeds_differ(call)
    contract.assert_callers_streams_untouched(call)
