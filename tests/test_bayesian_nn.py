"""The Bayesian networks of :mod:`hybridpgm.bayesian_nn`: ``bayesianize`` (Gaussian priors on a network's weights)
and ``BayesianRegressor`` (its settings, its checks of the batch, training with ``fit`` and plain SVI, its noise,
saving and loading).  The predictive functions are tested in ``tests/test_bayesian_nn_predict.py``."""

import functools

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.nn import PyroModule
from torch import nn

import hybridpgm
from hybridpgm.bayesian_nn import BayesianRegressor, predictive_samples
from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.nn import bayesianize, mlp


def test_bayesianize_puts_gaussian_priors_on_every_parameter():
    net = mlp([3, 4, 2])
    bnet = bayesianize(net, prior_scale=0.5)
    assert isinstance(bnet, PyroModule) and not isinstance(net, PyroModule)  # the original is untouched
    assert list(bnet.parameters()) == []
    x = torch.randn(5, 3)
    trace = pyro.poutine.trace(bnet).get_trace(x)
    sites = {n: s for n, s in trace.nodes.items() if s["type"] == "sample"}
    assert set(sites) == {"0.weight", "0.bias", "2.weight", "2.bias"}
    for name, param in net.named_parameters():
        site = sites[name]
        assert site["value"].shape == param.shape
        d = site["fn"]
        assert d.event_shape == param.shape
        torch.testing.assert_close(d.base_dist.scale, torch.full(param.shape, 0.5))
        torch.testing.assert_close(d.log_prob(site["value"]),
                                   dist.Normal(0.0, 0.5).log_prob(site["value"]).sum())
    # the output is the original architecture with the sampled weights
    with torch.no_grad():
        for name, param in net.named_parameters():
            param.copy_(sites[name]["value"])
    torch.testing.assert_close(trace.nodes["_RETURN"]["value"], net(x))


def test_prior_predictive_variance_of_a_bayesian_linear_layer():
    layer = bayesianize(torch.nn.Linear(2, 1), prior_scale=2.0)
    x = torch.tensor([[1.0, -1.0], [0.5, 0.0]])
    with torch.no_grad():
        out = torch.stack([layer(x) for _ in range(2000)])[..., 0]
    # Var f(x) = s^2 (|x|^2 + 1)
    torch.testing.assert_close(out.var(0), torch.tensor([12.0, 5.0]), rtol=0.1, atol=0.0)


def test_bayesianize_rejects_bad_arguments():
    with pytest.raises(ModelSpecError, match="prior_scale"):
        bayesianize(torch.nn.Linear(2, 2), prior_scale=0.0)
    with pytest.raises(ModelSpecError, match="no parameters"):
        bayesianize(torch.nn.ReLU())


def test_bayesian_mlp_widens_its_interval_away_from_the_data():
    pyro.set_rng_seed(0)
    g = torch.Generator().manual_seed(0)
    n = 64
    x = torch.rand(n, 1, generator=g) * 2 - 1
    y = torch.sin(3 * x[:, 0]) + 0.1 * torch.randn(n, generator=g)
    model = BayesianRegressor(mlp([1, 16, 1], activation="relu"), num_data=n, prior_scale=1.0)
    guide = pyro.infer.autoguide.AutoNormal(model, init_scale=0.05)
    guide(x, y)  # create the guide's parameters before fit builds the optimizer
    objective = hybridpgm.SVIObjective(model, guide, per_example=False)
    result = hybridpgm.fit(objective, (x, y), batch_size=32, epochs=10**6, max_steps=200, seed=0, progress=False,
                           optim=functools.partial(torch.optim.Adam, lr=0.05))
    assert result.history.loss["elbo"][-1] < result.history.loss["elbo"][0]
    inside = torch.linspace(-0.9, 0.9, 7)[:, None]
    outside = torch.tensor([[-3.0], [3.0]])
    samples = predictive_samples(model, guide, torch.cat([inside, outside]), num_samples=300)
    sd = samples.std(0)
    assert sd[-2:].min() > 2 * sd[:-2].max()  # epistemic spread grows away from the data
    truth = torch.sin(3 * inside[:, 0])
    rmse = (samples.mean(0)[:-2] - truth).pow(2).mean().sqrt()
    assert rmse < 0.5 * truth.std()  # and the data are fitted: far better than a constant


def test_regressor_checks_targets():
    model = BayesianRegressor(mlp([2, 3, 1]), num_data=10)
    with pytest.raises(DataError, match=r"expected \(4,\)"):
        model(torch.zeros(4, 2), torch.zeros(3))


@pytest.mark.parametrize("scale", [float("inf"), "1", True, None, torch.tensor([1.0, 2.0])])
def test_bayesianize_refuses_prior_scales_that_are_not_finite_positive_numbers(scale):
    with pytest.raises(ModelSpecError, match="bayesianize prior_scale must be a finite number > 0"):
        bayesianize(torch.nn.Linear(3, 1), scale)


@pytest.mark.parametrize("kwargs,word", [(dict(num_data=2.0), "num_data must be a positive integer, got 2.0"),
                                         (dict(num_data=2.5), "num_data must be a positive integer, got 2.5"),
                                         (dict(num_data=True), "num_data must be a positive integer, got True"),
                                         (dict(num_data="5"), "num_data must be a positive integer, got '5'"),
                                         (dict(num_data=5, noise=float("inf")), "noise must be a finite number > 0"),
                                         (dict(num_data=5, noise="1"), "noise must be a finite number > 0"),
                                         (dict(num_data=5, prior_scale=float("inf")), "prior_scale must be a finite")])
def test_bayesian_regressor_settings(kwargs, word):
    with pytest.raises(ModelSpecError, match=word):
        BayesianRegressor(torch.nn.Linear(3, 1), **kwargs)


def test_bayesian_regressor_checks_its_batch():
    model = BayesianRegressor(torch.nn.Linear(3, 1), num_data=5)
    with pytest.raises(DataError, match="BayesianRegressor x: got a list"):
        model([[0.0, 0.0, 0.0]])
    with pytest.raises(DataError, match="holds 6 training rows, more than num_data=5"):
        model(torch.zeros(6, 3), torch.zeros(6))
    with pytest.raises(DataError, match="BayesianRegressor x .* NaN/inf"):
        model(torch.full((2, 3), float("nan")), torch.zeros(2))
    with pytest.raises(DataError, match="BayesianRegressor y .* NaN/inf"):
        model(torch.zeros(2, 3), torch.tensor([0.0, float("nan")]))


def test_the_regressor_names_a_network_output_or_input_dtype_it_cannot_use():
    """Before: torch's 'shape [10] is invalid for input of size 20' and 'mat1 and mat2 must have the same
    dtype'."""
    x = torch.randn(10, 1)
    with pytest.raises(ModelSpecError, match=r"maps x of shape \(10, 1\) to \(10, 2\); it must give \(10,\) or "):
        BayesianRegressor(nn.Linear(1, 2), num_data=10)(x)
    with pytest.raises(DataError, match="x has dtype torch.float64, the model computes in torch.float32"):
        BayesianRegressor(nn.Linear(1, 1), num_data=10)(x.double())
    assert BayesianRegressor(nn.Linear(1, 1).double(), num_data=10)(x.double()).dtype == torch.float64


def _trained_regressor(net, prior_scale=0.5):
    from pyro.infer.autoguide import AutoNormal

    torch.manual_seed(0)
    dtype = next(net.parameters()).dtype
    x = torch.randn(16, 2, dtype=dtype)
    y = x.sum(-1) + 0.1 * torch.randn(16, dtype=dtype)
    model = BayesianRegressor(net, num_data=16, prior_scale=prior_scale, noise=0.3)
    guide = AutoNormal(model)
    with pyro.get_param_store().scope():
        guide(x, y)
        hybridpgm.fit(hybridpgm.SVIObjective(model, guide, per_example=False), (x, y), batch_size=8, epochs=2,
                      seed=0, progress=False, device="cpu")
    return model, guide, x, y


@pytest.mark.parametrize("net", [
    lambda: nn.Sequential(nn.Linear(2, 4), nn.BatchNorm1d(4), nn.Tanh(), nn.Linear(4, 1, bias=False)),
    lambda: mlp([2, 3, 1]).double(),
    lambda: nn.Linear(2, 1),
], ids=["sequential", "float64", "linear"])
def test_a_bayesian_regressor_saves_and_loads_with_its_guide(net, tmp_path):
    """Before, hybridpgm.save refused it ('BayesianRegressor is not serializable').  The model file holds the
    network's structure, the prior scale, the noise and the batch-norm statistics; the guide's state dict,
    saved beside it, loads into an AutoNormal of the loaded model, and the two predict alike."""
    from pyro.infer.autoguide import AutoNormal

    model, guide, x, y = _trained_regressor(net())
    path = hybridpgm.save(model, tmp_path / "model.pt")
    torch.save(guide.state_dict(), tmp_path / "guide.pt")
    loaded = hybridpgm.load(path)
    assert type(loaded) is BayesianRegressor and loaded.num_data == 16
    assert repr(loaded.net) == repr(model.net)
    assert list(loaded.state_dict()) == list(model.state_dict())
    for name, value in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[name], value) and loaded.state_dict()[name].dtype == value.dtype, name
    assert loaded.noise.item() == model.noise.item() != 0.3  # trained
    assert all(b.item() == 0.5 for n, b in loaded.named_buffers() if n.endswith("_prior_scale"))
    with pyro.get_param_store().scope():
        restored = AutoNormal(loaded)
        restored(x[:1], y[:1])  # builds the guide's parameters, then their values come from the file
        restored.load_state_dict(torch.load(tmp_path / "guide.pt", weights_only=True))
        model.eval()
        pyro.set_rng_seed(1)
        expected = predictive_samples(model, guide, x, num_samples=4)
        pyro.set_rng_seed(1)
        assert torch.equal(predictive_samples(loaded, restored, x, num_samples=4), expected)


def test_a_bayesian_regressor_a_model_file_cannot_rebuild_is_refused(tmp_path):
    class Custom(nn.Module):
        def __init__(self):
            super().__init__()
            self.linear = nn.Linear(2, 1)

        def forward(self, x):
            return self.linear(x)

    with pytest.raises(hybridpgm.errors.CheckpointError,
                       match=r"cannot save BayesianRegressor.net: a bayesianized Custom; only a network of"):
        hybridpgm.save(BayesianRegressor(Custom(), num_data=4), tmp_path / "a.pt")
    model = BayesianRegressor(nn.Sequential(nn.Linear(2, 1)), num_data=4)
    model.net[0].weight = pyro.nn.PyroSample(dist.Laplace(0.0, 1.0).expand([1, 2]).to_event(2))
    with pytest.raises(hybridpgm.errors.CheckpointError,
                       match=r"cannot save BayesianRegressor.net\[0\]: its weight has the prior .*Laplace.*not the "
                             r"Gaussian prior of hybridpgm.bayesian_nn.bayesianize"):
        hybridpgm.save(model, tmp_path / "b.pt")
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="runs the model on CUDA")
def test_a_regressor_of_a_cuda_network_is_on_cuda():
    """Found in a CUDA audit: the noise parameter was built on the CPU whatever the network's device, so the
    likelihood of CUDA data mixed devices ('Expected all tensors to be on the same device')."""
    model = BayesianRegressor(mlp([2, 3, 1]).cuda(), num_data=10)
    assert {p.device.type for p in model.parameters()} == {"cuda"}
    x, y = torch.randn(4, 2).cuda(), torch.randn(4).cuda()
    with pyro.get_param_store().scope():
        trace = pyro.poutine.trace(model).get_trace(x, y)
    assert trace.log_prob_sum().device.type == "cuda"


def test_the_noise_of_a_float64_network_is_float64():
    """Found by an audit: the noise parameter followed the network's device but not its dtype (0.1 stored as
    0.099999994)."""
    model = BayesianRegressor(nn.Linear(2, 1).double(), num_data=10, noise=0.1)
    assert model.raw_noise.dtype == torch.float64
    assert abs(float(model.noise) - 0.1) < 1e-16


def test_bayesianize_refuses_tied_parameters_naming_both_paths():
    """Before, a weight shared by two layers got two independent sample sites (the tie was lost)."""
    first = nn.Linear(3, 3)
    net = nn.Sequential(first, nn.Tanh(), nn.Linear(3, 3))
    net[2].weight = first.weight
    with pytest.raises(ModelSpecError, match=r"shares a parameter between '0.weight' and '2.weight'"):
        bayesianize(net)
    assert net[2].weight is first.weight  # the original untouched


def test_a_frozen_noise_stays_frozen_under_pyro_and_fit():
    """``raw_noise``, a parameter of the PyroModule itself, was unfrozen by one trace under Pyro's global param
    store (its ``__setitem__`` calls ``requires_grad_(True)``) and then trained by ``fit``."""
    from pyro.infer.autoguide import AutoNormal

    torch.manual_seed(0)
    x, y = torch.randn(8, 2), torch.randn(8)
    model = BayesianRegressor(nn.Linear(2, 1), num_data=8, noise=1.0)
    model.raw_noise.requires_grad_(False)
    before = model.raw_noise.detach().clone()
    with pyro.settings.context(module_local_params=False), pyro.get_param_store().scope():
        pyro.poutine.trace(model).get_trace(x, y)
        assert not model.raw_noise.requires_grad and "raw_noise" not in pyro.get_param_store()
        guide = AutoNormal(model)
        guide(x, y)
        hybridpgm.fit(hybridpgm.SVIObjective(model, guide, per_example=False), (x, y), batch_size=8, max_steps=3,
                      seed=0, progress=False, device="cpu", optim=lambda ps: torch.optim.SGD(ps, lr=1e-3))
    assert torch.equal(model.raw_noise, before) and not model.raw_noise.requires_grad
    assert set(model.state_dict()) == {"raw_noise", "net._prior_scale"} and torch.equal(model.noise, before.exp())


def test_a_trainable_noise_is_trained_by_plain_svi():
    from pyro.infer.autoguide import AutoNormal

    torch.manual_seed(0)
    x, y = torch.randn(8, 2), torch.randn(8)
    model = BayesianRegressor(nn.Linear(2, 1), num_data=8, noise=1.0)
    before = model.raw_noise.detach().clone()
    with pyro.settings.context(module_local_params=False), pyro.get_param_store().scope():
        svi = pyro.infer.SVI(model, AutoNormal(model), pyro.optim.SGD({"lr": 1e-3}), pyro.infer.Trace_ELBO())
        svi.step(x, y)
        assert pyro.get_param_store()["raw_noise"] is model.raw_noise
    assert not torch.equal(model.raw_noise, before)
    model.load_state_dict({"raw_noise": torch.tensor(-1.0), "net._prior_scale": torch.tensor(1.0)})  # saved keys
    assert torch.equal(model.noise, torch.tensor(-1.0).exp())


def _one_sgd_step(objective, data, accumulate):
    """The parameter change of one SGD(lr=1) step of ``fit`` over the whole of ``data`` (restored after)."""
    params = dict(objective.module.named_parameters())
    before = {n: p.detach().clone() for n, p in params.items()}
    hybridpgm.fit(objective, data, batch_size=len(data[0]), accumulate=accumulate, max_steps=1, seed=0,
                  shuffle=False, progress=False, optim=functools.partial(torch.optim.SGD, lr=1.0))
    change = {n: p.detach() - before[n] for n, p in params.items()}
    with torch.no_grad():
        for n, p in params.items():
            p.copy_(before[n])
    return change


def test_a_regressor_trains_with_per_example_false_and_the_default_is_refused():
    """Its plate scales a batch to the ``num_data`` rows: ``per_example=True`` (the default) would divide that
    full-data estimate by the batch again and is refused naming the plate; with ``per_example=False`` (as the
    docstring says) ``accumulate=3`` (micro-batches of 4, 3, 3 rows) steps exactly as one batch."""
    from pyro.infer.autoguide import AutoDelta

    from hybridpgm.errors import ConfigError

    torch.manual_seed(0)
    x, y = torch.randn(10, 2, dtype=torch.float64), torch.randn(10, dtype=torch.float64)
    model = BayesianRegressor(nn.Linear(2, 1).double(), num_data=10)
    guide = AutoDelta(model)
    with pytest.raises(ConfigError, match=r"plate 'data' subsamples the batch's 4 row\(s\) from 10.*"
                                          r"per_example=False"):
        _one_sgd_step(hybridpgm.SVIObjective(model, guide), (x, y), accumulate=3)
    objective = hybridpgm.SVIObjective(model, guide, per_example=False)
    whole, split = _one_sgd_step(objective, (x, y), 1), _one_sgd_step(objective, (x, y), 3)
    assert whole.keys() == split.keys() and len(whole) == 3
    for name in whole:
        torch.testing.assert_close(split[name], whole[name], rtol=1e-12, atol=1e-12)
