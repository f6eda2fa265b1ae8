"""Pyro autoguides over a data plate inside the package's objectives (hybridpgm/infer/autoguide_plates.py).

Before, ``fit(SVIObjective(model, AutoNormal(model)), x, batch_size=4)`` over 8 examples, ``model`` drawing a local
``z`` in ``pyro.plate("data", x.shape[0])``, trained an ``AutoNormal`` whose locations had shape ``(4,)``: position
``i`` of every batch shared one posterior (unshuffled, example 4 took example 0's: both ended at 4.72, exact posterior
means 0 and 9.6; shuffled, all four near 8.3, and full-batch shuffled all eight near 7.3).  Over
``pyro.plate("data", N, subsample=idx)`` an ``AutoNormal`` without ``create_plates`` drew its own random indices
(its 8 locations all ended between 7.5 and 8.5), and ``AutoDiagonalNormal`` kept a joint latent of the batch's 4
positions; all silently.
"""

import functools

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer.autoguide import AutoDelta, AutoDiagonalNormal, AutoGuideList, AutoLowRankMultivariateNormal, AutoNormal
from pyro.nn import PyroModule, PyroParam

from hybridpgm import fit
from hybridpgm.errors import ConfigError, TrainingWarning
from hybridpgm.infer import VIMCO, SVIObjective

N = 8
X = torch.arange(N, dtype=torch.float32) * 3.0
IDX = torch.arange(N)


def local_model(x):
    """:math:`z_n \\sim N(0, 1)`, :math:`x_n \\sim N(z_n, 0.5^2)`, in a plate the size of the batch."""
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 0.5), obs=x)


class LocalModel(PyroModule):
    """:func:`local_model` with a learnt prior mean, a module for the model/guide objectives."""

    def __init__(self):
        super().__init__()
        self.prior_loc = PyroParam(torch.tensor(0.0))

    def forward(self, x):
        with pyro.plate("data", x.shape[0]):
            z = pyro.sample("z", dist.Normal(self.prior_loc, 1.0))
            pyro.sample("x", dist.Normal(z, 0.5), obs=x)


def unplated_model(x):
    """The same local latent, its batch dim made by ``expand`` instead of a plate."""
    z = pyro.sample("z", dist.Normal(0.0, 1.0).expand([x.shape[0]]).to_event(1))
    pyro.sample("x", dist.Normal(z, 0.5).to_event(1), obs=x)


def global_model(x):
    """A global mean, and four global weights in a plate of 4: the batch size below, not the data."""
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    with pyro.plate("features", 4):
        w = pyro.sample("w", dist.Normal(0.0, 1.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(mu + w.sum(), 1.0), obs=x)


def subsampled_model(idx, x):
    mu = pyro.sample("mu", dist.Normal(0.0, 10.0))
    with pyro.plate("data", N, subsample=idx):
        z = pyro.sample("z", dist.Normal(mu, 1.0))
        pyro.sample("x", dist.Normal(z, 0.5), obs=x)


def data_plate(idx, x):
    return pyro.plate("data", N, subsample=idx)


def _fit(guide_of, model, data, epochs=3, lr=0.05, **kwargs):
    with pyro.get_param_store().scope():
        torch.manual_seed(0)
        guide = guide_of(model)
        fit(SVIObjective(model, guide, per_example=False), data, progress=False, seed=0, epochs=epochs,
            optim=functools.partial(torch.optim.Adam, lr=lr), **kwargs)
        return guide


@pytest.mark.parametrize("batching", [dict(batch_size=4, shuffle=False), dict(batch_size=4),
                                      dict(batch_size=N), dict(batch_size=N, shuffle=False, accumulate=2)],
                         ids=["B<N", "B<N-shuffled", "full-batch-shuffled", "full-batch-accumulate"])
@pytest.mark.parametrize("guide_of", [AutoNormal, AutoDelta, AutoDiagonalNormal])
def test_fit_refuses_parameters_per_position_when_the_batches_move_the_examples(guide_of, batching):
    rows = batching["batch_size"]
    with pytest.raises(ConfigError, match=rf"{guide_of.__name__}'s latent site 'z' in plate 'data' has parameters "
                                          rf"for each of the first batch's {rows} positions, not for each of the N=8 "
                                          r"examples.*pyro.plate\('data', 8, subsample=idx\)"):
        _fit(guide_of, local_model, X, **batching)


def test_the_refusal_says_why_the_positions_move():
    with pytest.raises(ConfigError, match=r"\(batch_size=4 < N=8; shuffle=True reorders the examples every epoch\)"):
        _fit(AutoNormal, local_model, X, batch_size=4)


def test_a_latent_whose_batch_dim_is_not_a_plate_is_refused_too():
    with pytest.raises(ConfigError, match=r"latent site 'z' in dim 0 of its value \(no plate\)"):
        _fit(AutoNormal, unplated_model, X, batch_size=4)


def test_a_full_batch_in_order_trains_one_location_per_example():
    guide = _fit(AutoNormal, local_model, X, batch_size=N, shuffle=False, epochs=300)
    loc = guide.locs.z.detach()
    assert loc.shape == (N,)
    posterior_mean = 4 * X / 5
    assert ((loc - posterior_mean).abs() < posterior_mean.abs() / 2)[1:].all(), (loc, posterior_mean)


@pytest.mark.parametrize("objective", ["svi", "vimco"])
def test_check_batching_uses_no_random_numbers_and_changes_no_parameter(objective):
    """So a run it lets through is the run it was before, bit for bit."""
    with pyro.get_param_store().scope():
        model = LocalModel()
        guide = AutoNormal(model)
        obj = SVIObjective(model, guide) if objective == "svi" else VIMCO(model, guide)
        obj.setup(X)
        before = [p.detach().clone() for p in guide.parameters()]
        rng = torch.get_rng_state()
        obj.check_batching(X, num_examples=N, shuffle=False)
        with pytest.raises(ConfigError, match="latent site 'z' in plate 'data'"):
            obj.check_batching(X, num_examples=N, shuffle=True)
        assert torch.equal(torch.get_rng_state(), rng)
        assert all(torch.equal(p, q) for p, q in zip(guide.parameters(), before))


def test_check_batching_reuses_the_trace_setup_made_of_the_first_batch():
    """``setup`` runs the autoguide on the first batch, which traces the model (its prototype); before,
    ``check_batching`` traced the model on that batch once more: calls on 4 and 5 rows, now on 5 (the probe)."""
    rows = []

    def counted(x):
        rows.append(x.shape[0])
        return global_model(x)

    with pyro.get_param_store().scope():
        obj = SVIObjective(counted, AutoNormal(counted))
        batch = X[:4]
        obj.setup(batch)
        rows.clear()
        obj.check_batching(batch, num_examples=N, shuffle=True)
        assert rows == [5]
        rows.clear()  # a batch the autoguide's prototype was not traced on is traced
        obj.check_batching(X[4:], num_examples=N, shuffle=True)
        assert rows == [4, 5]


@pytest.mark.parametrize("guide_of", [AutoNormal, AutoDiagonalNormal, AutoDelta])
def test_global_latents_in_a_plate_the_size_of_the_batch_are_not_refused(guide_of):
    """The plate of 4 weights does not follow the batch (one more row leaves it 4): nothing is per position."""
    guide = _fit(guide_of, global_model, X, batch_size=4)
    assert all(p.shape[:1] in ((), (1,), (4,), (5,)) for p in guide.parameters())


def test_a_plate_subsampling_the_data_set_given_by_create_plates_trains_one_location_per_example():
    guide = _fit(lambda m: AutoNormal(m, create_plates=data_plate), subsampled_model, (IDX, X), batch_size=4,
                 epochs=300)
    loc = guide.locs.z.detach()
    assert loc.shape == (N,)
    assert (loc[1:] - loc[:-1] > 1).all(), loc  # each example its own location, in the order of the data


@pytest.mark.parametrize("guide_of", [AutoNormal, AutoDelta])
def test_an_autoguide_making_the_subsampled_plate_itself_is_refused(guide_of):
    with pytest.raises(ConfigError, match=rf"{guide_of.__name__}'s latent site 'z' lies in plate 'data', which "
                                          r"subsamples 4 of 8 examples, and the \w+ makes that plate itself.*"
                                          r"create_plates=fn"):
        _fit(guide_of, subsampled_model, (IDX, X), batch_size=4)


@pytest.mark.parametrize("guide_of", [AutoDiagonalNormal, functools.partial(AutoLowRankMultivariateNormal, rank=1)],
                         ids=["AutoDiagonalNormal", "AutoLowRankMultivariateNormal"])
def test_a_joint_autoguide_over_a_subsampled_local_latent_is_refused_naming_the_guides_that_take_the_plate(guide_of):
    """They take no create_plates (Pyro's TypeError); the message says which autoguides do."""
    with pytest.raises(ConfigError, match=r"lies in plate 'data', which subsamples 4 of 8 examples; a joint autoguide "
                                          r".*takes no create_plates=.*AutoNormal or AutoDelta\(model, create_plates"
                                          r".*AutoGuideList\(model, create_plates=...\)"):
        _fit(guide_of, subsampled_model, (IDX, X), batch_size=4)


def test_a_joint_autoguide_over_the_globals_of_an_autoguide_list_with_the_data_plate_trains():
    def guide_of(model):
        guide = AutoGuideList(model, create_plates=data_plate)
        guide.append(AutoDiagonalNormal(poutine.block(model, expose=["mu"])))
        guide.append(AutoNormal(poutine.block(model, expose=["z"])))
        return guide

    guide = _fit(guide_of, subsampled_model, (IDX, X), batch_size=4, epochs=300)
    loc = guide[1].locs.z.detach()
    assert loc.shape == (N,) and (loc[1:] - loc[:-1] > 1).all(), loc


def test_a_model_guide_objective_refuses_alike():
    with pyro.get_param_store().scope():
        model = LocalModel()
        guide = AutoNormal(model)
        with pytest.raises(ConfigError, match=r"VIMCO: the AutoNormal's latent site 'z' in plate 'data'.*4 positions"):
            fit(VIMCO(model, guide, num_particles=2, per_example=False), X, batch_size=4,
                progress=False, seed=0, epochs=1)


def self_subsampling_model(x):
    """Pyro's own subsampling: the model draws 4 of the batch's rows, ``ind``, and picks its data by them (the
    ELBO replays the guide's ``ind`` into it)."""
    with pyro.plate("data", x.shape[0], subsample_size=4) as ind:
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 0.5), obs=x[ind])


def test_a_model_drawing_its_own_subsample_indices_fits_full_batch_in_order():
    """Before, setup refused it ("the AutoNormal makes that plate itself, drawing its own random indices instead of
    the batch's"), though Pyro replays the guide's indices into the model and the run trained right."""
    guide = _fit(AutoNormal, self_subsampling_model, X, batch_size=N, shuffle=False, epochs=400, lr=0.2)
    loc = guide.locs.z.detach()
    posterior_mean = 4 * X / 5  # prior N(0, 1), likelihood N(z, 0.5^2): precision 1 + 4
    assert loc.shape == (N,)
    assert (loc - posterior_mean).abs().max() < 0.5, (loc, posterior_mean)  # posterior sd 0.45; means 0 to 16.8


@pytest.mark.parametrize("batching", [dict(batch_size=N), dict(batch_size=6, shuffle=False)],
                         ids=["full-batch-shuffled", "B<N"])
def test_a_model_drawing_its_own_indices_among_the_batch_rows_is_refused_when_the_batches_move_the_examples(
        batching):
    """Its plate's size is the batch's: the autoguide makes one location per row of the first batch (a shuffled full
    batch trained all eight near the mean, 7.9 to 9.2, against 0 to 16.8)."""
    rows = batching["batch_size"]
    with pytest.raises(ConfigError, match=rf"AutoNormal's latent site 'z' in plate 'data' has parameters for each "
                                          rf"of the first batch's {rows} positions"):
        _fit(AutoNormal, self_subsampling_model, X, **batching)


def test_a_model_scaling_its_batch_as_a_subsample_without_using_the_indices_stays_refused():
    """``pyro.plate("data", N, subsample_size=len(x))`` with ``obs=x``: the guide's random indices are not the
    batch's examples."""
    def model(x):
        with pyro.plate("data", N, subsample_size=x.shape[0]):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 0.5), obs=x)

    with pytest.raises(ConfigError, match=r"latent site 'z' in plate 'data' has parameters for each of the first "
                                          r"batch's 4 positions"):
        _fit(AutoNormal, model, X, batch_size=4, shuffle=False)


def even_rows_model(x):
    """Four global weights, the batch read as pairs of rows: one more row (or one fewer) fails."""
    blocks = x.reshape(-1, 2)
    with pyro.plate("features", 4):
        w = pyro.sample("w", dist.Normal(0.0, 1.0))
    with pyro.plate("data", blocks.shape[0]):
        pyro.sample("x", dist.Normal(w.sum(), 1.0).expand([blocks.shape[0], 2]).to_event(1), obs=blocks)


def at_most_n_rows_model(x):
    """Eight global weights and a check of the batch against the data set's size (as BayesianRegressor's)."""
    if x.shape[0] > N:
        raise ValueError(f"x holds {x.shape[0]} rows, more than num_data={N}")
    with pyro.plate("features", N):
        w = pyro.sample("w", dist.Normal(0.0, 1.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(w.mean(), 1.0), obs=x)


@pytest.mark.parametrize("model, batch_size", [(even_rows_model, 4), (at_most_n_rows_model, N)],
                         ids=["even-rows-B4", "at-most-N-full-batch-shuffled"])
@pytest.mark.parametrize("guide_of", [AutoNormal, AutoDelta])
def test_global_latents_of_a_model_failing_on_one_more_row_are_not_refused(guide_of, model, batch_size):
    """Before, a global plate the size of the batch was refused ("has parameters for each of the first batch's 4
    positions") when the model failed on one more row; it is probed on one fewer, then twice as many rows."""
    guide = _fit(guide_of, model, X, batch_size=batch_size)
    assert [tuple(p.shape) for p in guide.parameters()] == [(batch_size,)] * (2 if guide_of is AutoNormal else 1)


def test_a_latent_judged_from_the_plates_sizes_alone_is_warned_of_not_refused():
    """Review E: a model taking exactly B rows, with a *global* plate of B, was refused with no way past (each probe
    fails, and a plate of the batch's size looked like the batch): it is warned of, naming the model's errors."""
    def model(x):
        if x.shape[0] != 4:
            raise ValueError(f"takes 4 rows, got {x.shape[0]}")
        with pyro.plate("features", 4):
            w = pyro.sample("w", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(w.sum(), 1.0), obs=x)

    with pytest.warns(TrainingWarning, match=r"could not tell whether the AutoNormal's latent site 'w' in plate "
                                             r"'features' follows the batch: the model raised ValueError: takes 4 "
                                             r"rows, got 5 on 5 rows; ValueError: takes 4 rows, got 3 on 3 rows; "
                                             r"ValueError: takes 4 rows, got 8 on 8 rows, and the plate has the "
                                             r"batch's 4 rows") as caught:
        _fit(AutoNormal, model, X, batch_size=4)
    assert [w.filename for w in caught if issubclass(w.category, TrainingWarning)] == [__file__]
