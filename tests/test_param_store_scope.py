"""hybridpgm's own calls leave Pyro's global param store as they found it (hybridpgm/param_store_scope.py)."""

import pyro
import pytest
import torch
from pyro.infer import SVI, TraceEnum_ELBO

from hybridpgm import VAE
from hybridpgm.generative import SigmoidBeliefNet
from hybridpgm.graphs import BayesNet, cpd


def _net(pa, pb):
    bn = BayesNet()
    bn.add("a", cpd.Table(pa))
    bn.add("b", cpd.Table(pb, ["a"]))
    return bn


def _binary(n=8, d=6):
    return torch.bernoulli(torch.full((n, d), 0.5), generator=torch.Generator().manual_seed(0))


CALLS = {
    "BayesNet.sample": lambda: _net([0.2, 0.8], [[0.9, 0.1], [0.3, 0.7]]).sample(5),
    "BayesNet.log_prob": lambda: _net([0.2, 0.8], [[0.9, 0.1], [0.3, 0.7]]).log_prob(torch.tensor([[0, 1], [1, 1]])),
    "VAE.log_likelihood": lambda: VAE(6, 2, (4,)).log_likelihood(_binary(), num_samples=4),
    "VAE.elbo": lambda: VAE(6, 2, (4,)).elbo(_binary()),
    "SigmoidBeliefNet.log_likelihood": lambda: SigmoidBeliefNet([6, 3]).log_likelihood(_binary(), num_samples=4),
    "SigmoidBeliefNet.sample": lambda: SigmoidBeliefNet([6, 3]).sample(4),
    "SigmoidBeliefNet.exact_log_likelihood": lambda: SigmoidBeliefNet([6, 3]).exact_log_likelihood(_binary()),
}


@pytest.mark.parametrize("call", list(CALLS))
def test_scoring_and_sampling_register_nothing_in_the_global_param_store(call):
    with pyro.get_param_store().scope():  # starts empty; the test's own store is restored after
        CALLS[call]()
        assert list(pyro.get_param_store().keys()) == []


def test_a_network_sampled_from_does_not_hold_a_later_networks_parameters():
    """The data of a plain-SVI fit are drawn with ``truth.sample``; a learner with the same node names then
    learns p(a).  Before, sampling registered truth's tables under those names in the global store, Pyro
    handed them to the learner, and its loss and p(a) never moved."""
    with pyro.get_param_store().scope():
        pyro.set_rng_seed(0)
        truth = _net([0.2, 0.8], [[0.9, 0.1], [0.3, 0.7]])
        rows = truth.sample(2000)
        data = torch.stack([rows["a"], rows["b"]], -1)
        learner = _net([0.5, 0.5], [[0.5, 0.5], [0.5, 0.5]])
        svi = SVI(learner.model, learner.guide, pyro.optim.Adam({"lr": 0.1}), TraceEnum_ELBO(max_plate_nesting=1))
        for _ in range(150):
            svi.step(data)
        learned = learner.cpds["a"].probs.detach()
        empirical = torch.stack([(rows["a"] == k).double().mean() for k in range(2)]).to(learned.dtype)
        assert torch.allclose(learned, empirical, atol=0.02)


def test_predictions_of_a_rerun_notebook_cell_use_its_own_guide():
    """Pyro copies a store entry over a module's parameter of the same name.  Before, predictive_samples of a
    re-run cell found the first guide's entries (registered by the first cell's predictive_samples) and
    silently replaced the freshly trained guide's parameters with them: both cells predicted alike."""
    import functools

    from pyro.infer.autoguide import AutoNormal

    from hybridpgm import SVIObjective, fit
    from hybridpgm.bayesian_nn import BayesianRegressor, predictive_samples

    x = torch.randn(64, 2, generator=torch.Generator().manual_seed(0))
    y = x @ torch.tensor([3.0, -1.0])
    with pyro.get_param_store().scope():
        def cell(target):
            torch.manual_seed(0)
            model = BayesianRegressor(torch.nn.Linear(2, 1), num_data=len(x))
            guide = AutoNormal(model, init_scale=0.05)
            fit(SVIObjective(model, guide, per_example=False), (x, target), batch_size=32, epochs=40,
                progress=False, seed=0, optim=functools.partial(torch.optim.Adam, lr=0.05))
            trained = [p.detach().clone() for p in guide.parameters()]
            store = {k: v for k, v in pyro.get_param_store().items()}
            prediction = predictive_samples(model, guide, x[:8], num_samples=100).mean(0)
            assert all(torch.equal(p, q) for p, q in zip(guide.parameters(), trained))  # its own, kept
            assert {k: v for k, v in pyro.get_param_store().items()}.keys() == store.keys()  # store untouched
            return prediction

        first, second = cell(y), cell(-y)
        assert torch.corrcoef(torch.stack([first, second]))[0, 1] < -0.9  # trained on -y: the opposite fit
