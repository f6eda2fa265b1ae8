"""``SVIObjective(per_example=True)`` refuses a data plate that already scales the batch to the full data."""

import functools

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer.autoguide import AutoDelta
from pyro.nn import PyroModule, PyroParam

from hybridpgm import SVIObjective, VAE, fit
from hybridpgm.bayesian_nn import BayesianRegressor
from hybridpgm.errors import ConfigError


class _Mean(PyroModule):
    """``y_i ~ N(mu, 1)`` with ``mu ~ N(0, 1)`` under a data plate chosen by ``plate`` (a global latent and a
    likelihood, so a wrong weighting of the two shows in the gradient); the guide is a point mass at ``loc``."""

    def __init__(self, plate):
        super().__init__()
        self.loc = PyroParam(torch.tensor(0.3))
        self.plate, self.calls = plate, 0

    def model(self, y):
        self.calls += 1
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with self.plate(y):
            pyro.sample("y", dist.Normal(mu, 1.0), obs=y)

    def guide(self, y):
        pyro.sample("mu", dist.Delta(self.loc))


def _subsampled(y, n=100):  # the batch's rows as a subsample of n, by index
    return pyro.plate("data", n, subsample=torch.arange(y.shape[0]))


def _subsample_size(y, n=100):  # the batch's rows as a random subsample of n, by size
    return pyro.plate("rows", n, subsample_size=y.shape[0])


def _plain(y):
    return pyro.plate("data", y.shape[0])


@pytest.mark.parametrize("plate, name", [(_subsampled, "data"), (_subsample_size, "rows")])
def test_per_example_refuses_a_plate_that_subsamples_the_batch(plate, name):
    m = _Mean(plate)
    objective = SVIObjective(m.model, m.guide)
    with pytest.raises(ConfigError, match=rf"model's plate '{name}' subsamples the batch's 8 row\(s\) from 100 .*"
                                          r"per_example=False"):
        objective.loss("elbo", torch.randn(8))
    with pytest.raises(ConfigError, match="per_example=False"):  # not only once: a retry is refused as well
        objective.loss("elbo", torch.randn(8))
    assert SVIObjective(m.model, m.guide, per_example=False).loss("elbo", torch.randn(8)).isfinite()


def test_a_vae_with_num_data_is_refused_on_its_direct_path():
    vae = VAE(6, 2, [4])
    x = torch.bernoulli(torch.full((8, 6), 0.5))
    with pytest.raises(ConfigError, match=r"plate 'data' subsamples the batch's 8 row\(s\) from 64"):
        SVIObjective(vae.model, vae.guide, num_data=64).loss("elbo", x)
    SVIObjective(vae.model, vae.guide, per_example=False, num_data=64).loss("elbo", x)


def test_a_bayesian_regressor_is_refused_under_fit_and_trains_with_per_example_false():
    torch.manual_seed(0)
    x, y = torch.randn(12, 2), torch.randn(12)
    model = BayesianRegressor(torch.nn.Linear(2, 1), num_data=12)
    with pytest.raises(ConfigError, match="plate 'data'.*per_example=False"):
        fit(SVIObjective(model, AutoDelta(model)), (x, y), batch_size=4, max_steps=1, progress=False, seed=0)
    fit(SVIObjective(model, AutoDelta(model), per_example=False), (x, y), batch_size=4, max_steps=1,
        progress=False, seed=0)


def test_a_full_batch_first_does_not_hide_the_scale_of_a_smaller_batch_after():
    m = _Mean(functools.partial(_subsampled, n=10))
    objective, y = SVIObjective(m.model, m.guide), torch.randn(10)
    objective.loss("elbo", y)  # all 10 rows: the plate's N / B is 1, and dividing by B is right
    with pytest.raises(ConfigError, match=r"subsamples the batch's 4 row\(s\) from 10"):
        objective.loss("elbo", y[:4])  # a short last batch, or a micro-batch of accumulate


def test_accumulate_micro_batches_of_a_full_batch_are_refused():
    m = _Mean(functools.partial(_subsampled, n=12))
    with pytest.raises(ConfigError, match=r"subsamples the batch's 4 row\(s\) from 12"):
        fit(SVIObjective(m.model, m.guide), torch.randn(12), batch_size=12, accumulate=3, max_steps=1,
            progress=False, seed=0)


@pytest.mark.parametrize("scale", [0.1, 3.0])
def test_a_kl_anneal_by_poutine_scale_is_not_refused(scale):
    """Guard (passes on the old code too): a scale that is not a subsampled plate is left alone."""
    m = _Mean(_plain)
    y = torch.randn(8)
    annealed = SVIObjective(pyro.poutine.scale(m.model, scale=scale), pyro.poutine.scale(m.guide, scale=scale),
                            module=m)
    plain = SVIObjective(m.model, m.guide)
    torch.testing.assert_close(annealed.loss("elbo", y), scale * plain.loss("elbo", y), rtol=1e-6, atol=0.0)


def test_a_model_that_subsamples_the_data_it_is_given_is_not_refused():
    """Guard (passes on the old code too): the Pyro-tutorial pattern, all N rows passed and the plate drawing
    its subsample of them; the batch is then the N rows and per_example's division by N is right."""

    def model(y):
        with pyro.plate("data", y.shape[0], subsample_size=5) as idx:
            pyro.sample("y", dist.Normal(m.loc, 1.0), obs=y[idx])

    m = _Mean(_plain)
    loss = SVIObjective(model, lambda y: None, module=m).loss("elbo", torch.zeros(20))
    expected = -dist.Normal(0.3, 1.0).log_prob(torch.zeros(())) * 20 / 20  # N / b * b log-densities, over N
    torch.testing.assert_close(loss, expected.expand(()), rtol=1e-6, atol=0.0)


def test_an_inner_subsampled_plate_of_another_size_is_not_refused():
    """Guard (passes on the old code too): words subsampled within each document of the batch; the data plate
    is the batch, so dividing by the batch size is right."""

    def model(docs):
        with pyro.plate("docs", docs.shape[0], dim=-2), pyro.plate("words", 50, subsample_size=3, dim=-1):
            pyro.sample("w", dist.Normal(m.loc, 1.0), obs=docs[:, :3])

    m = _Mean(_plain)
    assert SVIObjective(model, lambda docs: None, module=m).loss("elbo", torch.zeros(4, 50)).isfinite()


def test_the_probe_runs_on_the_first_batch_and_on_smaller_ones_only():
    """The check's cost, counted in runs of the model: one probe on the first batch and one on each batch smaller
    than any before (a short last batch, a micro-batch), none on the other steps."""
    m = _Mean(_plain)
    objective = SVIObjective(m.model, m.guide)
    calls = []
    for rows in (8, 8, 8, 8, 3, 8, 3, 8):
        before = m.calls
        objective.loss("elbo", torch.randn(rows))
        calls.append(m.calls - before)
    assert calls == [2, 1, 1, 1, 2, 1, 1, 1]


def test_the_probe_uses_no_random_numbers():
    """Guard (passes on the old code too, which had no probe): a probed first loss of a VAE (its guide draws)
    equals the same loss unprobed on the same seed, and leaves torch's generator where that one does."""
    vae = VAE(6, 2, [4])
    x = torch.bernoulli(torch.full((8, 6), 0.5))
    torch.manual_seed(2)
    probed = SVIObjective(vae.model, vae.guide)
    first, after = probed.loss("elbo", x), torch.rand(())
    torch.manual_seed(2)
    unprobed = SVIObjective(vae.model, vae.guide)
    unprobed._smallest_probed = 8  # as if probed before
    torch.testing.assert_close(first, unprobed.loss("elbo", x), rtol=0.0, atol=0.0)
    torch.testing.assert_close(after, torch.rand(()), rtol=0.0, atol=0.0)
