"""A Pyro autoguide as the guide of VIMCO / RWS (ModelGuideObjective.setup, hybridpgm/infer/model_guide_objective.py).

Before, an autoguide made its parameters at its first call, after the objective had listed the guide's parameters
:math:`\\phi` (empty): ``fit`` never trained it (its locations stayed 0 after 40 epochs) and a resume failed with a
CheckpointError on the parameters the checkpoint lacked.
"""

import functools

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import AutoNormal
from pyro.nn import PyroModule, PyroParam

from hybridpgm import fit
from hybridpgm.errors import ConfigError
from hybridpgm.infer import RWS, VIMCO, WakeSleep

N = 8
X = torch.randn(N, generator=torch.Generator().manual_seed(0)) * 2 + 3
IDX = torch.arange(N)


class _Model(PyroModule):
    """:math:`z_n \\sim N(m, 1)`, :math:`x_n \\sim N(z_n, 0.5^2)`: the posterior of :math:`z_n` is
    :math:`N((m + 4 x_n) / 5, 1/5)`."""

    def __init__(self):
        super().__init__()
        self.prior_loc = PyroParam(torch.tensor(0.0))

    def forward(self, idx, x):
        with pyro.plate("data", N, subsample=idx):
            z = pyro.sample("z", dist.Normal(self.prior_loc, 1.0))
            pyro.sample("x", dist.Normal(z, 0.5), obs=x)


def _plates(idx, x):
    return pyro.plate("data", N, subsample=idx)


def _guide(model):
    """An AutoNormal whose location of row n is that of x_n, whichever batch the row comes in."""
    return AutoNormal(model, create_plates=_plates)


_OBJECTIVES = {
    "vimco": lambda m, g: VIMCO(m, g, num_particles=4, per_example=False),
    "rws": lambda m, g: RWS(m, g, num_particles=4, per_example=False),
    "rws-players": lambda m, g: RWS(m, g, num_particles=4, joint=False, per_example=False),
}


def _cell(name, prerun=False, **fit_kwargs):
    """A notebook cell: a model, an autoguide that has not run (``prerun``: run once on a batch before the objective
    is built, the workaround before), the objective, fit."""
    with pyro.get_param_store().scope():
        torch.manual_seed(0)
        model = _Model()
        guide = _guide(model)
        if prerun:
            with torch.random.fork_rng():
                guide(IDX[:4], X[:4])
        objective = _OBJECTIVES[name](model, guide)
        fit(objective, (IDX, X), batch_size=4, epochs=150, progress=False, seed=0,
            optim=functools.partial(torch.optim.Adam, lr=0.05), **fit_kwargs)
        return model, guide


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n != "rws" else n for n in _OBJECTIVES])
def test_fit_trains_an_autoguide_that_has_not_run_yet(name):
    """The run ends where the workaround's (the autoguide run before the objective is built) ends, bit for bit
    (setup uses up no random numbers), with the guide's locations moved toward the exact posterior means."""
    model, guide = _cell(name)
    reference_model, reference = _cell(name, prerun=True)
    assert all(torch.equal(p, q) for p, q in zip(guide.parameters(), reference.parameters()))
    assert torch.equal(model.prior_loc, reference_model.prior_loc)
    posterior_mean = (model.prior_loc.detach() + 4 * X) / 5
    loc = guide.locs.z.detach()
    assert loc.shape == (N,)
    # each location (from its initial 0) ends closer to its exact posterior mean than it started
    assert ((loc - posterior_mean).abs() < posterior_mean.abs()).all(), (loc, posterior_mean)


def test_a_resumed_run_with_a_fresh_autoguide_ends_as_an_uninterrupted_one(tmp_path):
    _, whole = _cell("vimco", checkpoint=tmp_path / "a.pt")
    _cell("vimco", checkpoint=tmp_path / "b.pt", max_steps=120)
    _, resumed = _cell("vimco", checkpoint=tmp_path / "b.pt")
    assert all(torch.equal(p, q) for p, q in zip(whole.parameters(), resumed.parameters()))


@pytest.mark.parametrize("objective", [VIMCO, RWS, WakeSleep])
def test_outside_fit_setup_lists_the_autoguides_parameters_and_loss_refuses_before_it(objective):
    """Outside fit, an optimizer built from players() before the autoguide ran would never train it: the first
    loss refuses, naming the fix; after setup(batch), players() holds the guide's parameters."""
    with pyro.get_param_store().scope():
        model = _Model()
        guide = _guide(model)
        obj = objective(model, guide, per_example=False)
        player = obj.schedule[0]
        with pytest.raises(ConfigError, match=r"the AutoNormal has not run yet.*objective\.setup\(batch\)"):
            obj.loss(player, (IDX, X))
        rng = torch.get_rng_state()
        obj.setup((IDX, X))
        assert torch.equal(torch.get_rng_state(), rng)  # no random numbers used up (a resume runs it again)
        listed = {id(p) for group in obj.players().values() for p in group}
        assert {id(p) for p in guide.parameters()} <= listed and len(list(guide.parameters())) == 2
        assert {id(p) for p in model.parameters()} <= listed
        assert obj.phi and all(any(p is q for q in guide.parameters()) for p in obj.phi)


def test_an_autoguide_run_after_the_objective_was_built_is_refused_until_setup():
    with pyro.get_param_store().scope():
        model = _Model()
        guide = _guide(model)
        obj = VIMCO(model, guide, per_example=False)
        guide(IDX, X)  # the workaround, too late: phi was listed (empty) before
        with pytest.raises(ConfigError, match=r"guide's parameters changed after the objective listed them "
                                              r"\(0 then, 2 now"):
            obj.loss("elbo", (IDX, X))
        obj.setup((IDX, X))
        assert len(obj.phi) == 2
        assert torch.isfinite(obj.loss("elbo", (IDX, X)))


def test_an_explicit_group_that_cannot_list_the_autoguides_parameters_is_refused():
    with pyro.get_param_store().scope():
        model = _Model()
        guide = _guide(model)
        obj = VIMCO(model, guide, model_parameters=list(model.parameters()), guide_parameters=[], per_example=False)
        with pytest.raises(ConfigError, match=r"AutoNormal made its parameters \['locs.z_unconstrained', "
                                              r"'scales.z_unconstrained'\] at its first run"):
            obj.setup((IDX, X))


def test_the_sleep_phase_refuses_an_autoguide_saying_why():
    """Before: "guide sites ['z_unconstrained'] have no counterpart among the model's latent sites ['data', 'z']",
    which did not say that the site is the autoguide's auxiliary one."""
    from hybridpgm.errors import ObjectiveError

    with pyro.get_param_store().scope():
        model = _Model()
        guide = _guide(model)
        obj = WakeSleep(model, guide, per_example=False)
        obj.setup((IDX, X))
        assert torch.isfinite(obj.loss("wake", (IDX, X)))
        with pytest.raises(ObjectiveError, match=r"cannot score the guide's auxiliary site\(s\) \['z_unconstrained'\] "
                                                 r"\(a Pyro autoguide's"):
            obj.loss("sleep", (IDX, X))
