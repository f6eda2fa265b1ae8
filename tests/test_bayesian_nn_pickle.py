"""A network made by ``bayesianize`` / ``BayesianRegressor`` (hybridpgm/bayesian_nn.py) pickles: its priors are
instances of a module-level class, not closures, so it reaches a ``spawn`` child (a ProcessPoolExecutor, Pyro's
parallel chains) and answers there as here.  Before, ``pickle.dumps`` raised ``AttributeError: Can't pickle local
object '_weight_prior.<locals>._pyro_prior_prior_weight'``."""

from __future__ import annotations

import concurrent.futures
import copy
import multiprocessing
import pickle

import pyro
import torch

import hybridpgm
from hybridpgm.bayesian_nn import BayesianRegressor, bayesianize

X = torch.linspace(-1.0, 1.0, 8).reshape(4, 2)
Y = X.sum(-1)


def _regressor() -> BayesianRegressor:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Linear(3, 1))
    return BayesianRegressor(net, num_data=20, prior_scale=0.5)


def _seeded(model, *args, seed: int = 1):
    """``model(*args)`` under ``torch.manual_seed(seed)``, and the log density of that draw's trace."""
    torch.manual_seed(seed)
    trace = pyro.poutine.trace(model).get_trace(*args)
    return trace.nodes["_RETURN"]["value"].detach(), trace.log_prob_sum().detach()


def test_a_bayesianized_layer_pickles_and_draws_the_same_weights():
    layer = bayesianize(torch.nn.Linear(3, 2), prior_scale=2.0)
    copied = pickle.loads(pickle.dumps(layer))
    for got, want in zip(_seeded(copied, X.repeat(1, 2)[:, :3]), _seeded(layer, X.repeat(1, 2)[:, :3])):
        assert torch.equal(got, want)
    assert copied._pyro_samples["weight"].weight_shape == (2, 3)  # what hybridpgm.save reads


def test_a_regressor_pickles_deep_copies_and_saves_with_the_same_seeded_answers():
    model = _regressor()
    want = _seeded(model, X, Y)
    for copied in (pickle.loads(pickle.dumps(model)), copy.deepcopy(model)):
        for got, expected in zip(_seeded(copied, X, Y), want):
            assert torch.equal(got, expected)
        assert [n for n, s in pyro.poutine.trace(copied).get_trace(X, Y).nodes.items() if s["type"] == "sample"] \
            == ["net.0.weight", "net.0.bias", "net.2.weight", "net.2.bias", "data", "y"]  # the site names kept


def test_a_regressor_saved_by_hybridpgm_save_still_loads(tmp_path):
    """Guard (passes before and after): the priors, now objects, still satisfy what save checks and reads."""
    model = _regressor()
    hybridpgm.save(model, tmp_path / "reg.pt")
    loaded = hybridpgm.load(tmp_path / "reg.pt")
    assert torch.equal(_seeded(loaded, X)[0], _seeded(model, X)[0])


def _answer(model: BayesianRegressor) -> torch.Tensor:
    return _seeded(model, X)[0]


def test_a_spawned_child_answers_as_this_process():
    """The one spawned child of this file (a few seconds): the regressor crosses to it by pickle."""
    model = _regressor()
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        got = pool.submit(_answer, model).result()
    assert torch.equal(got, _answer(model))
