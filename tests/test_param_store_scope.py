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


def _user_store(size):
    """The user's store with ``size`` entries: a real-valued one (Pyro gives it an ``unconstrained`` reference on
    read) and positive ones."""
    pyro.param("user_real", torch.zeros(2)).unconstrained  # noqa: B018 -- set by pyro.param on a real value
    for i in range(size - 1):
        pyro.param(f"user_{i}", torch.ones(1), constraint=torch.distributions.constraints.positive)


def test_a_scoped_call_leaves_the_users_store_and_its_tensors_untouched():
    """A scoped call takes the store's tables out and puts the same ones back: the user's tensors keep the
    ``unconstrained`` reference Pyro gave them (``get_state`` used to strip it from every real-valued entry)."""
    with pyro.get_param_store().scope():
        _user_store(3)
        store = pyro.get_param_store()
        tables = (store._params, store._param_to_name, store._constraints)
        contents = [dict(t) for t in tables]
        real = store._params["user_real"]
        assert "unconstrained" in real.__dict__
        CALLS["BayesNet.log_prob"]()
        assert all(a is b for a, b in zip((store._params, store._param_to_name, store._constraints), tables))
        assert [dict(t) for t in tables] == contents
        assert "unconstrained" in real.__dict__


def test_a_scoped_calls_cost_does_not_grow_with_the_users_store(monkeypatch):
    """No copy of the user's store per call: ``get_state``/``set_state`` (a copy of every entry) are not called,
    however large the store, by sampling, scoring or a fit with another thread let in."""
    from pyro.params.param_store import ParamStoreDict

    import hybridpgm

    copies = []
    monkeypatch.setattr(ParamStoreDict, "get_state", lambda self: copies.append("get") or {})
    monkeypatch.setattr(ParamStoreDict, "set_state", lambda self, state: copies.append("set"))
    store = pyro.get_param_store()
    saved = (store._params, store._param_to_name, store._constraints)
    store._params, store._param_to_name, store._constraints = {}, {}, {}
    try:
        _user_store(50)
        for call in ("BayesNet.sample", "BayesNet.log_prob", "SigmoidBeliefNet.sample"):
            CALLS[call]()
        hybridpgm.fit(hybridpgm.SVIObjective(_net([0.5, 0.5], [[0.5, 0.5], [0.5, 0.5]]).model,
                                             lambda *a, **k: None), torch.tensor([[0, 1], [1, 1]]),
                      max_steps=2, progress=False)
        assert copies == []
        assert len(store._params) == 50
    finally:
        store._params, store._param_to_name, store._constraints = saved


def test_a_param_store_without_pyros_tables_is_still_scoped(monkeypatch):
    """A store object of another shape (no ``_params`` table) is scoped by ``get_state``/``clear``/``set_state``."""
    from hybridpgm.param_store_scope import _put_contents, _take_contents

    class Store:
        def __init__(self):
            self.state = {"params": {"a": torch.ones(1)}, "constraints": {}}

        def get_state(self):
            return {k: dict(v) for k, v in self.state.items()}

        def clear(self):
            self.state = {"params": {}, "constraints": {}}

        def set_state(self, state):
            for k, v in state.items():
                self.state[k].update(v)

    store = Store()
    taken = _take_contents(store)
    assert store.state["params"] == {}
    store.state["params"]["b"] = torch.zeros(1)
    _put_contents(store, taken)
    assert list(store.state["params"]) == ["a"]


def test_a_param_store_subclass_is_scoped_by_its_own_methods(monkeypatch):
    """A subclass may keep state of its own, which only its ``get_state``/``clear``/``set_state`` know: it is
    scoped through them, not by swapping Pyro's three tables (review A)."""
    from pyro.params.param_store import ParamStoreDict

    from hybridpgm.param_store_scope import _put_contents, _take_contents

    class Tagged(ParamStoreDict):
        def __init__(self):
            super().__init__()
            self.tags = {}

        def clear(self):
            super().clear()
            self.tags = {}

        def get_state(self):
            return {**super().get_state(), "tags": dict(self.tags)}

        def set_state(self, state):
            super().set_state({k: v for k, v in state.items() if k != "tags"})
            self.tags.update(state.get("tags", {}))

    store = Tagged()
    store.tags["user"] = 1
    taken = _take_contents(store)
    assert store.tags == {}
    store.tags["scoped"] = 2
    _put_contents(store, taken)
    assert store.tags == {"user": 1}
