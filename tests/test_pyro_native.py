"""Every model family is an ordinary Pyro model under Pyro's default settings.

Each family trains with plain :class:`pyro.infer.SVI` + ``pyro.optim.Adam``
(the loss falls, the parameters change, they appear in Pyro's param store) and
with :func:`hybridpgm.fit` whatever the ``module_local_params`` setting is.
"""

from __future__ import annotations

import functools

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import SVI, Predictive, Trace_ELBO, TraceEnum_ELBO, TraceGraph_ELBO, TraceMeanField_ELBO
from pyro.infer.autoguide import AutoDelta, AutoDiagonalNormal, AutoNormal
from pyro.nn import PyroModule
from torch import nn

import hybridpgm
from hybridpgm.bayesian_nn import BayesianRegressor
from hybridpgm.graphs import BayesNet, MarkovNet, cpd
from hybridpgm.graphs.crf import CRFHead
from hybridpgm.infer import SVIObjective


@pytest.fixture(autouse=True)
def pyro_defaults():
    """Each test starts and ends with Pyro's defaults and an empty param store."""
    assert pyro.settings.get("module_local_params") is False
    pyro.clear_param_store()
    yield
    pyro.clear_param_store()
    assert pyro.settings.get("module_local_params") is False


# ----------------------------------------------------------------------------- families
def _binary(n=60, d=12, seed=0):
    g = torch.Generator().manual_seed(seed)
    proto = (torch.rand(3, d, generator=g) < 0.5).float()
    x = proto[torch.randint(0, 3, (n,), generator=g)]
    flip = torch.rand(x.shape, generator=g) < 0.05
    return torch.where(flip, 1 - x, x)


def _vae():
    vae = hybridpgm.VAE(12, z_dim=2, hidden=[16])
    return vae, vae.model, vae.guide, Trace_ELBO(), (_binary(),)


def _sbn():
    sbn = hybridpgm.SigmoidBeliefNet([12, 4])
    return sbn, sbn.model, sbn.guide, TraceGraph_ELBO(), (_binary(),)


def _bn_data(n=200, seed=0):
    """Rows of a chain a -> b -> c with a quarter of ``b`` missing (``-1``)."""
    g = torch.Generator().manual_seed(seed)
    a = (torch.rand(n, generator=g) < 0.8).long()
    b = torch.where(torch.rand(n, generator=g) < 0.9, a, 1 - a)
    c = torch.where(torch.rand(n, generator=g) < 0.9, b, 1 - b)
    b = torch.where(torch.rand(n, generator=g) < 0.25, torch.full_like(b, -1), b)
    return torch.stack([a, b, c], dim=1)


def _bayes_net_table():
    bn = BayesNet()
    bn.add("a", cpd.Table([0.5, 0.5]))
    bn.add("b", cpd.Table([[0.5, 0.5], [0.5, 0.5]], ["a"]))
    bn.add("c", cpd.Table([[0.5, 0.5], [0.5, 0.5]], ["b"]))
    return bn, bn.model, bn.guide, TraceEnum_ELBO(max_plate_nesting=1), (_bn_data(),)


def _bayes_net_neural():
    torch.manual_seed(0)
    bn = BayesNet()
    bn.add("a", cpd.Table([0.5, 0.5]))
    bn.add("b", cpd.Neural(nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2)), ["a"], cardinality=2))
    bn.add("c", cpd.Table([[0.5, 0.5], [0.5, 0.5]], ["b"]))
    return bn, bn.model, bn.guide, TraceEnum_ELBO(max_plate_nesting=1), (_bn_data(),)


def _markov_net():
    """A pairwise MRF with learnable potentials, observed in full."""
    mrf = MarkovNet({"a": 2, "b": 2, "c": 2})
    mrf.add_factor("ab", ["a", "b"], nn.Parameter(torch.zeros(2, 2)))
    mrf.add_factor("bc", ["b", "c"], nn.Parameter(torch.zeros(2, 2)))
    rows = _bn_data()
    rows = torch.where(rows < 0, rows[:, :1], rows)  # fill b's gaps: fully observed
    values = {"a": rows[:, 0], "b": rows[:, 1], "c": rows[:, 2]}

    def model(values):
        return mrf.model(values)

    def guide(values):
        pass

    return mrf, model, guide, TraceEnum_ELBO(max_plate_nesting=1), (values,)


class _Tagger(PyroModule):
    """A user's tagger: a linear emission network and a CRF head (an ``nn.Module``)."""

    def __init__(self, features=5, labels=3):
        super().__init__()
        self.emit = PyroModule[nn.Linear](features, labels)
        self.head = CRFHead(labels)

    def forward(self, x, tags):
        with pyro.plate("sentences", x.shape[0]):
            return pyro.sample("tags", self.head(self.emit(x)), obs=tags)


def _crf():
    torch.manual_seed(0)
    x = torch.randn(16, 7, 5)
    tags = x[..., :3].argmax(-1)
    tagger = _Tagger()
    return tagger, tagger, lambda x, tags: None, Trace_ELBO(), (x, tags)


def _sv_deep_kernel():
    torch.manual_seed(0)
    x = torch.randn(64, 2)
    y = torch.sin(2 * x[:, 0]) + 0.1 * torch.randn(64)
    net = nn.Sequential(nn.Linear(2, 8), nn.Tanh(), nn.Linear(8, 2))
    gp = hybridpgm.SVDeepKernelGP(net, num_features=2, num_data=64, inducing_points=torch.randn(8, 2))
    elbo = TraceMeanField_ELBO(num_particles=4, vectorize_particles=True, max_plate_nesting=1)
    return gp, gp.model, gp.guide, elbo, (x, y)


def _bayesianized():
    torch.manual_seed(0)
    x = torch.randn(40, 3)
    y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(40)
    reg = BayesianRegressor(nn.Linear(3, 1), num_data=40)
    guide = AutoNormal(reg)
    return reg, reg, guide, Trace_ELBO(), (x, y)


FAMILIES = {
    "vae": _vae,
    "sbn": _sbn,
    "bayes_net_table": _bayes_net_table,
    "bayes_net_neural": _bayes_net_neural,
    "markov_net": _markov_net,
    "crf": _crf,
    "sv_deep_kernel": _sv_deep_kernel,
    "bayesianized": _bayesianized,
}


def _snapshot(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before, module):
    after = module.state_dict()
    return [k for k, v in before.items() if v.is_floating_point() and not torch.equal(v, after[k])]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_plain_pyro_svi_trains_every_family(family):
    pyro.set_rng_seed(0)
    module, model, guide, elbo, args = FAMILIES[family]()
    before = _snapshot(module)
    svi = SVI(model, guide, pyro.optim.Adam({"lr": 0.03}), elbo)
    losses = [svi.step(*args) for _ in range(150)]
    assert sum(losses[-15:]) < sum(losses[:15]), f"{family}: loss did not fall ({losses[0]:.4g} -> {losses[-1]:.4g})"
    assert _changed(before, module), f"{family}: no parameter of the module changed"
    store = pyro.get_param_store()
    in_store = {id(store.get_param(name).unconstrained()) for name in store.keys()}
    trainable = [n for n, p in module.named_parameters() if p.requires_grad]
    missing = [n for n, p in module.named_parameters() if p.requires_grad and id(p) not in in_store]
    assert trainable and not missing, f"{family}: parameters not in Pyro's param store: {missing}"


@pytest.mark.parametrize("module_local", [False, True])
@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_fit_trains_every_family_under_either_setting(family, module_local):
    with pyro.settings.context(module_local_params=module_local):
        pyro.set_rng_seed(0)
        module, model, guide, elbo, args = FAMILIES[family]()
        if family == "bayesianized":  # an autoguide builds its parameters on its first call
            guide(*args)
        if family == "sbn":  # discrete latents: its own objective (TraceGraph_ELBO has no differentiable_loss)
            objective = hybridpgm.RWS(model, guide)
        else:
            objective = SVIObjective(model, guide, elbo, module=nn.ModuleList([module, guide])
                                     if isinstance(guide, nn.Module) else module)
        before = _snapshot(module)
        data = args if len(args) > 1 or torch.is_tensor(args[0]) else None
        if data is None:  # a dict of columns: one full batch per step
            rows = torch.stack([args[0][k] for k in ("a", "b", "c")], dim=1)
            objective = SVIObjective(lambda r: model({"a": r[:, 0], "b": r[:, 1], "c": r[:, 2]}),
                                     lambda r: None, elbo, module=module)
            data = rows
        user_store = set(pyro.get_param_store().keys())
        result = hybridpgm.fit(objective, data, epochs=40, batch_size=len(data[0]) if isinstance(data, tuple)
                               else len(data), progress=False, seed=0,
                               optim=functools.partial(torch.optim.Adam, lr=0.03))
    (losses,) = result.history.loss.values()
    assert sum(losses[-5:]) < sum(losses[:5]), f"{family}: loss did not fall under fit"
    assert _changed(before, module)
    assert set(pyro.get_param_store().keys()) == user_store, "fit changed the user's param store"


def test_two_vaes_trained_side_by_side_with_fit_share_nothing():
    torch.manual_seed(0)
    x = _binary()
    a, b = hybridpgm.VAE(12, 2, [8]), hybridpgm.VAE(12, 2, [8])
    b.load_state_dict(a.state_dict())  # identical names and values: any sharing would show
    b_before = _snapshot(b)
    hybridpgm.fit(SVIObjective(a.model, a.guide), x, epochs=3, batch_size=20, progress=False, seed=0)
    assert not _changed(b_before, b)
    a_after = _snapshot(a)
    hybridpgm.fit(SVIObjective(b.model, b.guide), x, epochs=3, batch_size=20, progress=False, seed=1)
    assert not _changed(a_after, a) and _changed(b_before, b)


# ----------------------------------------------------------------------------- Predictive
def test_predictive_generates_from_the_vae_with_data_none():
    vae = hybridpgm.VAE(12, z_dim=2, hidden=[8])
    draws = Predictive(vae.model, num_samples=5)(None)
    assert draws["x"].shape == (5, 1, 12) and draws["z"].shape == (5, 1, 2)
    assert set(draws["x"].unique().tolist()) <= {0.0, 1.0}
    many = Predictive(vae.model, num_samples=2)(None, num_data=7)
    assert many["x"].shape == (2, 7, 12)
    x = _binary(n=4)
    posterior = Predictive(vae.model, guide=vae.guide, num_samples=3, return_sites=["z"])(x)
    assert posterior["z"].shape == (3, 4, 2)


def test_predictive_generates_from_the_sbn_and_the_bayes_net():
    sbn = hybridpgm.SigmoidBeliefNet([12, 4])
    assert Predictive(sbn.model, num_samples=3)(None)["x"].shape == (3, 1, 12)
    bn = _bayes_net_table()[0]
    rows = Predictive(bn.model, num_samples=4)(None)
    assert rows["c"].shape == (4, 1)


# ----------------------------------------------------------------------------- autoguides
@pytest.mark.parametrize("autoguide", [AutoNormal, AutoDelta, AutoDiagonalNormal])
def test_autoguides_fit_a_bayesianized_network(autoguide):
    pyro.set_rng_seed(0)
    reg, _, _, _, (x, y) = _bayesianized()
    guide = autoguide(reg)
    svi = SVI(reg, guide, pyro.optim.Adam({"lr": 0.05}), Trace_ELBO())
    losses = [svi.step(x, y) for _ in range(200)]
    assert sum(losses[-20:]) < sum(losses[:20])
    assert len(pyro.get_param_store()) > 0
    samples = Predictive(reg, guide=guide, num_samples=10, return_sites=["_RETURN"])(x)["_RETURN"]
    assert samples.shape == (10, 40)


def test_sv_deep_kernel_accepts_particle_dimensions_of_a_latent_input():
    """A GP layer inside a larger Pyro model: its input depends on a latent variable,
    so with vectorized particles the features carry a leading particle dimension."""
    torch.manual_seed(0)
    gp = hybridpgm.SVDeepKernelGP(nn.Linear(2, 2), num_features=2, num_data=32, inducing_points=torch.randn(6, 2))
    x, y = torch.randn(32, 2), torch.randn(32)

    def model(x, y):
        shift = pyro.sample("shift", dist.Normal(torch.zeros(2), 1.0).to_event(1))
        return gp.model(x + shift.unsqueeze(-2), y)

    def guide(x, y):
        loc = pyro.param("shift_loc", torch.zeros(2))
        pyro.sample("shift", dist.Normal(loc, 0.1).to_event(1))
        gp.guide(x + loc, y)

    elbo = TraceMeanField_ELBO(num_particles=8, vectorize_particles=True, max_plate_nesting=1)
    loss = elbo.differentiable_loss(model, guide, x, y)
    assert torch.isfinite(loss)
    loss.backward()
    assert all(p.grad is not None for p in gp.feature_extractor.parameters())
