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


def _mean_scale_model(data):
    def model():
        m = pyro.param("m", torch.tensor(0.0))
        s = pyro.param("s", torch.tensor(1.0), constraint=pyro.distributions.constraints.positive)
        with pyro.plate("d", len(data)):
            pyro.sample("y", pyro.distributions.Normal(m, s), obs=data)
    return model


def _reload_run(make, tmp_path, store_first):
    """Pyro's save/load workflow in one process: 3 steps, save the store and the optimizer, 2 steps
    (uninterrupted), load both back (in either order), 2 steps again (resumed)."""
    data = torch.randn(20, generator=torch.Generator().manual_seed(1)) + 1
    optim = make()
    svi = SVI(_mean_scale_model(data), lambda: None, optim, pyro.infer.Trace_ELBO())
    for _ in range(3):
        svi.step()
    pyro.get_param_store().save(tmp_path / "params.pt")
    optim.save(tmp_path / "optim.pt")
    for _ in range(2):
        svi.step()
    straight = {k: v.detach().clone() for k, v in pyro.get_param_store().items()}
    loads = [lambda: pyro.get_param_store().load(tmp_path / "params.pt"), lambda: optim.load(tmp_path / "optim.pt")]
    for load in loads if store_first else loads[::-1]:
        load()
    for _ in range(2):
        svi.step()
    resumed = {k: v.detach().clone() for k, v in pyro.get_param_store().items()}
    return straight, resumed, optim


@pytest.mark.parametrize("store_first", [True, False])
def test_reloading_the_store_and_the_optimizer_in_one_process_resumes_as_pyro_optim_does(tmp_path, store_first):
    """Before, the loaded moments went to the tensors the reloaded store no longer held, and the new ones
    restarted Adam at step 1 (a different trajectory)."""
    straight, resumed, optim = _reload_run(lambda: GroupedAdam({"lr": 0.1}), tmp_path, store_first)
    with pyro.get_param_store().scope():
        pyro_straight, pyro_resumed, _ = _reload_run(lambda: pyro.optim.Adam({"lr": 0.1}), tmp_path, store_first)
    for name in ("m", "s"):
        assert torch.equal(pyro_resumed[name], pyro_straight[name]), name
        assert torch.equal(straight[name], pyro_straight[name]), name
        assert torch.equal(resumed[name], straight[name]), name
    assert optim.optimizer.state[pyro.get_param_store()._params["m"]]["step"] == 5  # 3 saved + 2 resumed steps


def test_tensors_the_store_replaced_leave_the_optimizer(tmp_path):
    """Before, the replaced tensors stayed in the optimizer's groups and state for good."""
    _, _, optim = _reload_run(lambda: GroupedAdam({"lr": 0.1}), tmp_path, store_first=True)
    store = pyro.get_param_store()
    current = [store._params["m"], store._params["s"]]
    in_groups = [p for g in optim.optimizer.param_groups for p in g["params"]]
    assert len(in_groups) == 2 and all(any(p is q for q in current) for p in in_groups)
    assert len(optim.optimizer.state) == 2 and all(any(p is q for q in current) for p in optim.optimizer.state)
    assert len(optim._group_of) == 2 and set(optim.get_state()) == {"m", "s"}


def test_a_state_loaded_and_not_yet_stepped_is_saved_as_loaded(tmp_path):
    """``optim.load`` then ``optim.save`` before a step writes what was loaded (before: nothing for the
    parameters not yet stepped)."""
    _, svi, _ = _train(GroupedAdam({"lr": 0.05}), steps=2)
    state = svi.optim.get_state()
    fresh = GroupedAdam({"lr": 0.05})
    fresh.set_state(state)
    assert fresh.get_state() == state


def test_a_schedulers_state_is_refused_when_loaded():
    """Before, a scheduler's state for a parameter not yet stepped was refused only at its first step."""
    optim = GroupedAdam({"lr": 0.1})
    with pytest.raises(ConfigError, match="scheduler's state \\(parameter 'w'\\)"):
        optim.set_state({"w": {"scheduler": {}, "optimizer": {}}})
    assert optim.get_state() == {}
