"""GroupedOptim: pyro.optim's trajectories and state format with one torch optimizer."""

import pyro
import pyro.optim
import pytest
import torch
from pyro.infer import SVI

import hybridpgm
from hybridpgm.errors import ConfigError
from hybridpgm.infer import DirectTrace_ELBO, GroupedAdam, GroupedOptim

X = torch.bernoulli(torch.full((16, 10), 0.4), generator=torch.Generator().manual_seed(0))


def _train(optim, steps=5, vae=None, seed=0):
    """``steps`` SVI steps of a small VAE from fixed weights; returns (vae, svi, losses)."""
    torch.manual_seed(seed)
    vae = vae or hybridpgm.VAE(10, 2, [8])
    svi = SVI(vae.model, vae.guide, optim, loss=DirectTrace_ELBO())
    losses = [svi.step(X) for _ in range(steps)]
    return vae, svi, losses


@pytest.fixture(autouse=True)
def fresh_param_store():
    with pyro.get_param_store().scope():
        yield


def test_takes_the_same_steps_as_pyro_optim_adam():
    ours, _, ours_losses = _train(GroupedAdam({"lr": 0.05}))
    with pyro.get_param_store().scope():
        theirs, _, their_losses = _train(pyro.optim.Adam({"lr": 0.05}))
    assert ours_losses == their_losses
    for (name, a), (_, b) in zip(ours.named_parameters(), theirs.named_parameters()):
        assert torch.equal(a, b), name


def test_one_optimizer_one_group_and_no_gradients_left_behind():
    vae, svi, _ = _train(GroupedAdam({"lr": 0.05}), steps=2)
    optim = svi.optim
    assert len(optim.optimizer.param_groups) == 1
    assert set(optim.optimizer.param_groups[0]["params"]) == set(vae.parameters())
    assert all(p.grad is None for p in vae.parameters())  # SVI's zeroing then has nothing to allocate


def test_steps_only_the_parameters_it_is_given():
    a, b = torch.nn.Parameter(torch.ones(3)), torch.nn.Parameter(torch.ones(2))
    optim = GroupedOptim(torch.optim.SGD, {"lr": 0.5})
    a.grad, b.grad = torch.ones(3), torch.ones(2)
    optim([a, b])
    assert torch.equal(a, torch.full((3,), 0.5)) and torch.equal(b, torch.full((2,), 0.5))
    a.grad, b.grad = torch.ones(3), torch.full((2,), 7.0)
    optim([a])
    assert torch.equal(a, torch.zeros(3)) and torch.equal(b, torch.full((2,), 0.5))  # b not stepped
    assert a.grad is None and torch.equal(b.grad, torch.full((2,), 7.0))  # b's gradient kept for its owner


def test_per_parameter_hyperparameters_form_groups_with_torch_defaults_filled_in():
    def args(name):
        return {"lr": 0.0} if name.startswith("decoder") else {"lr": 0.05, "betas": (0.5, 0.9)}

    vae, svi, _ = _train(GroupedOptim(torch.optim.Adam, args), steps=3)
    with pyro.get_param_store().scope():
        reference, _, _ = _train(pyro.optim.Adam(args), steps=3)
    groups = svi.optim.optimizer.param_groups
    assert len(groups) == 2 and sorted(g["lr"] for g in groups) == [0.0, 0.05]
    frozen = next(g for g in groups if g["lr"] == 0.0)
    assert frozen["betas"] == (0.9, 0.999)  # torch's default, not the first group's (0.5, 0.9)
    for (name, a), (_, b) in zip(vae.named_parameters(), reference.named_parameters()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("saver", ["grouped", "pyro"])
def test_state_resumes_in_either_class(saver):
    make = {"grouped": lambda: GroupedAdam({"lr": 0.05}), "pyro": lambda: pyro.optim.Adam({"lr": 0.05})}
    straight, _, straight_losses = _train(GroupedAdam({"lr": 0.05}), steps=6)
    with pyro.get_param_store().scope():
        vae, svi, first = _train(make[saver](), steps=3)
        state = svi.optim.get_state()
        assert set(state) == set(pyro.get_param_store().keys())
        resumed = GroupedAdam({"lr": 0.05})
        resumed.set_state(state)
        svi = SVI(vae.model, vae.guide, resumed, loss=DirectTrace_ELBO())
        rest = [svi.step(X) for _ in range(3)]
    assert first + rest == straight_losses
    for (name, a), (_, b) in zip(vae.named_parameters(), straight.named_parameters()):
        assert torch.equal(a, b), name


def test_bad_optim_args_are_config_errors():
    with pytest.raises(ConfigError, match="dict or a callable"):
        GroupedAdam([("lr", 0.1)])
    with pytest.raises(ConfigError, match="one argument"):
        GroupedAdam(lambda module, name: {"lr": 0.1})
    optim = GroupedAdam(lambda name: 0.1)
    p = torch.nn.Parameter(torch.ones(2))
    pyro.param("p", p)
    p = pyro.param("p").unconstrained()
    p.grad = torch.ones(2)
    with pytest.raises(ConfigError, match="returned a float for parameter 'p'"):
        optim([p])
