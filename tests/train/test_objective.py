"""The training contract's optional ``settings()`` (hybridpgm/train/objective.py), recorded and compared on resume.

Before, an objective's own settings were not recorded: a contrastive-divergence run resumed with another ``k``, an
ELBO with another number of particles, a GAN with another ``k``, all silently.
"""

import enum
import functools

import numpy as np
import pyro
import pytest
import torch
from pyro.infer import Trace_ELBO

from hybridpgm import fit
from hybridpgm.energy import RBM
from hybridpgm.errors import CheckpointError
from hybridpgm.infer import ContrastiveDivergence, PersistentCD, SVIObjective
from hybridpgm.infer.adversarial import GAN, IWGAN
from hybridpgm.train import load_checkpoint, save_checkpoint
from hybridpgm.train.objective import elbo_settings, objective_settings
from tests.infer.adversarial.conftest import tiny_pair


def _run(ckpt, objective, data, **kwargs):
    options = dict(batch_size=8, optim=functools.partial(torch.optim.SGD, lr=0.01), checkpoint=ckpt,
                   progress=False, seed=0)
    options.update(kwargs)
    return fit(objective, data, **options)


def _binary(n=32, d=6):
    return (torch.rand(n, d, generator=torch.Generator().manual_seed(0)) < 0.5).double()


def _rbm():
    torch.manual_seed(0)
    return RBM(6, 4).double()


def test_settings_of_each_family():
    assert objective_settings(ContrastiveDivergence(_rbm(), k=3)) == {"k": 3}
    assert objective_settings(PersistentCD(_rbm(), k=2, num_chains=5)) == {"k": 2, "num_chains": 5}
    assert objective_settings(GAN(*tiny_pair(), k=2)) == {"k": 2}
    assert objective_settings(IWGAN(*tiny_pair(), num_samples=3)) == {"k": 1, "num_samples": 3,
                                                                       "weight_discriminator": True}
    assert elbo_settings(Trace_ELBO(num_particles=4, vectorize_particles=True)) == {
        "elbo": "Trace_ELBO", "num_particles": 4, "vectorize_particles": True, "tail_adaptive_beta": -1.0}
    assert objective_settings(object()) is None  # an objective without settings() is not compared


def test_a_changed_cd_k_is_refused_unless_overridden_and_an_older_file_is_not_compared(tmp_path):
    ckpt, data = tmp_path / "cd.pt", _binary()
    _run(ckpt, ContrastiveDivergence(_rbm(), k=1), data, max_steps=2)
    assert load_checkpoint(ckpt)["config"]["objective_settings"] == {"k": 1}
    with pytest.raises(CheckpointError, match=r"objective_settings\['k'\]: checkpoint 1, requested 3"):
        _run(ckpt, ContrastiveDivergence(_rbm(), k=3), data, max_steps=4)
    assert load_checkpoint(ckpt)["step"] == 2  # untouched
    result = _run(ckpt, ContrastiveDivergence(_rbm(), k=3), data, max_steps=4, override_hyperparameters=True)
    assert result.steps == 4 and load_checkpoint(ckpt)["config"]["objective_settings"] == {"k": 3}
    state = load_checkpoint(ckpt)
    del state["config"]["objective_settings"]  # as a checkpoint written before the settings were recorded
    save_checkpoint(ckpt, state)
    assert _run(ckpt, ContrastiveDivergence(_rbm(), k=1), data, max_steps=6).steps == 6
    state = load_checkpoint(ckpt)
    state["config"]["objective_settings"] = {}  # as one written before a setting was added to settings()
    save_checkpoint(ckpt, state)
    assert _run(ckpt, ContrastiveDivergence(_rbm(), k=1), data, max_steps=8).steps == 8


class _Gaussian(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.loc = torch.nn.Parameter(torch.zeros(2))
        self.q_loc = torch.nn.Parameter(torch.zeros(2))

    def model(self, x):
        z = pyro.sample("z", pyro.distributions.Normal(self.loc, 1.0).to_event(1))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", pyro.distributions.Normal(z, 1.0).to_event(1), obs=x)

    def guide(self, x):
        pyro.sample("z", pyro.distributions.Normal(self.q_loc, 1.0).to_event(1))


def test_another_number_of_elbo_particles_is_refused(tmp_path):
    ckpt, data = tmp_path / "svi.pt", torch.randn(16, 2, generator=torch.Generator().manual_seed(0))

    def objective(n):
        m = _Gaussian()
        return SVIObjective(m.model, m.guide, Trace_ELBO(num_particles=n))

    _run(ckpt, objective(1), data, max_steps=2)
    with pytest.raises(CheckpointError, match=r"objective_settings\['num_particles'\]: checkpoint 1, requested 5"):
        _run(ckpt, objective(5), data, max_steps=4)
    assert _run(ckpt, objective(1), data, max_steps=4).steps == 4


def test_another_gan_k_is_refused(tmp_path):
    ckpt, data = tmp_path / "gan.pt", torch.randn(16, 2, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    _run(ckpt, GAN(*tiny_pair(), k=1), data, max_steps=1, optim=functools.partial(torch.optim.Adam, lr=1e-3))
    torch.manual_seed(0)
    with pytest.raises(CheckpointError, match=r"objective_settings\['k'\]: checkpoint 1, requested 2"):
        _run(ckpt, GAN(*tiny_pair(), k=2), data, max_steps=2, optim=functools.partial(torch.optim.Adam, lr=1e-3))


class _Scheduled:
    def __init__(self, schedule):
        self.module = torch.nn.Linear(2, 1)
        self.schedule = schedule

    def players(self):
        return {"p": list(self.module.parameters())}


class _Set(_Scheduled):
    def __init__(self, values):
        super().__init__(None)
        self.values = values

    def settings(self):
        return self.values


def test_a_schedule_or_settings_of_the_wrong_kind_is_refused_naming_the_objective():
    """Before, a ``schedule`` written as a method and ``settings()`` returning a list raised raw TypeErrors, and
    ``schedule = "p"`` was split into characters."""
    from hybridpgm.errors import ConfigError
    from hybridpgm.train.objective import player_schedule

    assert player_schedule(_Scheduled(["p", "p"])) == ["p", "p"] and player_schedule(_Scheduled(None)) == ["p"]
    with pytest.raises(ConfigError, match=r"_Scheduled.schedule must be a list of player names .*got 'p'"):
        player_schedule(_Scheduled("p"))
    with pytest.raises(ConfigError, match=r"got a method"):
        player_schedule(_Scheduled(_Scheduled.players.__get__(_Scheduled(None))))
    with pytest.raises(ConfigError, match=r"_Set.settings\(\) must return a dict keyed by names, got a list"):
        objective_settings(_Set([("k", 1)]))
    assert objective_settings(_Set({"k": 1})) == {"k": 1}


def test_settings_must_be_plain_and_are_read_only_for_a_checkpoint(tmp_path):
    """The review of the first version found a tensor in ``settings()`` recorded, then a raw torch error on resume
    (``==`` of two tensors), and a caller's own ``settings`` method of another meaning breaking ``fit`` without any
    checkpoint."""
    from hybridpgm.errors import ConfigError

    ckpt, data = tmp_path / "cd.pt", _binary()
    cd = ContrastiveDivergence(_rbm(), k=1)
    cd.settings = lambda: {"weights": torch.ones(3)}
    with pytest.raises(ConfigError, match=r"ContrastiveDivergence.settings\(\)\['weights'\] is a torch.Tensor"):
        _run(ckpt, cd, data, max_steps=1)
    cd.settings = lambda: {"k": np.int64(1), "sizes": (2, 3), "a": np.array(0.5), "s": np.str_("x"),
                           "m": enum.IntEnum("Mode", "X")["X"]}
    assert objective_settings(cd) == {"k": 1, "sizes": [2, 3], "a": 0.5, "s": "x", "m": 1}
    assert [type(v) for v in objective_settings(cd).values()] == [int, list, float, str, int]
    cd.settings = lambda: "not a dict"  # a method of the caller's own, with another meaning
    assert _run(None, cd, data, max_steps=2).steps == 2


class _Plated(torch.nn.Module):
    """A two-plate model (``data`` outermost, ``pixels`` inside): the data plate is a choice of the estimator."""

    def __init__(self):
        super().__init__()
        self.loc = torch.nn.Parameter(torch.zeros(2))
        self.q_loc = torch.nn.Parameter(torch.zeros(2))

    def model(self, x):
        with pyro.plate("data", x.shape[0], dim=-1):
            z = pyro.sample("z", pyro.distributions.Normal(self.loc[0], 1.0))
            pyro.sample("x", pyro.distributions.Normal(z.unsqueeze(-1), 1.0).to_event(1), obs=x)

    def guide(self, x):
        with pyro.plate("data", x.shape[0], dim=-1):
            pyro.sample("z", pyro.distributions.Normal(self.q_loc[0], 1.0))


def test_another_data_plate_of_a_particle_elbo_is_refused_and_an_older_file_is_not_compared(tmp_path):
    """Before, ``plate_name`` was not recorded: a VIMCO run resumed with another data plate (another estimator:
    the particles' weights are normalised per point of that plate) went on silently."""
    from hybridpgm.infer import VIMCO

    ckpt, data = tmp_path / "vimco.pt", torch.randn(16, 2, generator=torch.Generator().manual_seed(0))

    def objective(plate_name):
        m = _Plated()
        return VIMCO(m.model, m.guide, num_particles=3, plate_name=plate_name, max_plate_nesting=1,
                     model_parameters=[m.loc], guide_parameters=[m.q_loc], module=m)

    _run(ckpt, objective(None), data, max_steps=2)
    assert load_checkpoint(ckpt)["config"]["objective_settings"]["plate_name"] is None
    with pytest.raises(CheckpointError, match=r"objective_settings\['plate_name'\]: checkpoint None, requested "
                                              r"'data'"):
        _run(ckpt, objective("data"), data, max_steps=4)
    assert _run(ckpt, objective(None), data, max_steps=4).steps == 4
    state = load_checkpoint(ckpt)
    del state["config"]["objective_settings"]["plate_name"]  # as a checkpoint written before it was recorded
    save_checkpoint(ckpt, state)
    assert _run(ckpt, objective("data"), data, max_steps=6).steps == 6
    assert load_checkpoint(ckpt)["config"]["objective_settings"]["plate_name"] == "data"
