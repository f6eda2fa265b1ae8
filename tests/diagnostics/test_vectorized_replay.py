"""The one-run replay of from_pyro_svi (hybridpgm/diagnostics/vectorized_replay.py): the model runs once per
posterior draw (for the replicates), not three times, and a seed gives the draws of the draw-by-draw code."""

import numpy as np
import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro import poutine
from pyro.infer import Predictive

from hybridpgm.diagnostics import from_pyro_svi
from hybridpgm.diagnostics.vectorized_replay import draws_no_random_numbers
from tests.diagnostics.replay_models import Counted, mixing_model

X = torch.tensor([0.3, -1.2, 0.8, 2.0, 0.1, -0.4])
LATENTS = ["mu", "log_sigma"]


def model(x):
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    log_sigma = pyro.sample("log_sigma", dist.Normal(0.0, 1.0))
    pyro.deterministic("sigma", log_sigma.exp())
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(mu, log_sigma.exp()), obs=x)


def noisy_model(x):
    """Draws a random number outside any site (as dropout does): replayed draw by draw, as before."""
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    log_sigma = pyro.sample("log_sigma", dist.Normal(0.0, 1.0))
    jitter = 1e-3 * torch.rand(())
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(mu + jitter, log_sigma.exp()), obs=x)


def guide(x):
    pyro.sample("mu", dist.Normal(0.4, 0.3))
    pyro.sample("log_sigma", dist.Normal(0.1, 0.2))


def draw_by_draw(model, x, num_samples):
    """The groups as the draw-by-draw code gave them for seed 0: a trace of the guide and of the model replaying
    it (the sites), Predictive(model, guide), one conditioned run per draw for the log-likelihood, Predictive on
    the unconditioned model for the replicates."""
    pyro.set_rng_seed(0)
    guide_trace = poutine.trace(guide).get_trace(x)
    poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(x)
    post = Predictive(model, guide=guide, num_samples=num_samples, return_sites=LATENTS)(x)
    post = {n: v.reshape(num_samples) for n, v in post.items()}
    log_lik = []
    for s in range(num_samples):
        trace = poutine.trace(poutine.condition(model, {n: v[s] for n, v in post.items()})).get_trace(x)
        log_lik.append(trace.nodes["x"]["fn"].log_prob(x))
    rep = Predictive(poutine.uncondition(model), posterior_samples=post, return_sites=["x"])(x)
    return post, torch.stack(log_lik), rep["x"].reshape(num_samples, len(x))


@pytest.mark.parametrize("parallel", [False, True])
@pytest.mark.parametrize("program", [model, mixing_model, noisy_model], ids=["stacks", "mixes-draws", "draws-rng"])
def test_a_seed_gives_the_draws_of_the_draw_by_draw_code(program, parallel):
    """The posterior is the same numbers as the draw-by-draw code's for the same seed, the log-likelihood the same
    up to float rounding of batched kernels, whether the draws stack, mix (so the stacked run is refused) or the
    model draws random numbers, with and without ``parallel``; so are the replicates, except where ``parallel``
    stacks them (one sampler call for all draws takes the stream in another order: same distribution,
    test_vectorized_predictive.py), where they differ.  Before, the stacked case gave the draw-by-draw replicates
    too (the replicates were never stacked): that case fails on the old code, the others are guards."""
    post, log_lik, rep = draw_by_draw(program, X, 30)
    pyro.set_rng_seed(0)
    idata = from_pyro_svi(program, guide, X, num_samples=30, parallel=parallel)
    for name in LATENTS:
        np.testing.assert_array_equal(idata.posterior[name].values[0], post[name].numpy())
    same = np.array_equal(idata.posterior_predictive["x"].values[0], rep.numpy())
    assert same != (parallel and program is model)
    np.testing.assert_allclose(idata.log_likelihood["x"].values[0], log_lik.numpy(), rtol=1e-6, atol=0)
    if program is model:
        np.testing.assert_allclose(idata.posterior["sigma"].values[0], np.exp(post["log_sigma"].numpy()), rtol=1e-6)


def runs_per_draw(program, parallel: bool) -> float:
    """The model runs ``from_pyro_svi`` makes per draw: the difference between 40 and 20 draws, over 20."""
    runs = {}
    for num_samples in (20, 40):
        counted = Counted(program)
        pyro.set_rng_seed(0)
        from_pyro_svi(counted, guide, X, num_samples=num_samples, parallel=parallel)
        runs[num_samples] = counted.runs
    return (runs[40] - runs[20]) / 20


@pytest.mark.parametrize("parallel, per_draw", [(False, 2), (True, 0)])
def test_from_pyro_svi_runs_the_model_once_per_draw_and_replay(parallel, per_draw):
    """Before: three model runs per draw (Predictive's, the log-likelihood replay's and the replicates'), 2.2x
    the time of Predictive(model, guide); now Predictive's, which would only hand back the guide's draws, is
    skipped (two per draw), and with ``parallel=True`` the log-likelihood and the replicates come from one
    stacked run each (none per draw; before this round the replicates still took one per draw)."""
    assert runs_per_draw(model, parallel) == per_draw


def thresholded_model(x):
    """A scale floored at a fifth of the largest scale drawn: written for one draw (where it is a no-op), it
    reads across a stack of draws, and the first and the last draw need not show it."""
    log_sigma = pyro.sample("log_sigma", dist.Normal(0.0, 1.0))
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    sigma = log_sigma.exp()
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(mu, sigma.clamp(min=0.2 * float(sigma.max()))), obs=x)


class ScriptedGuide:
    """A guide whose scale is small at every tenth call (offset 5) and 1 elsewhere: the first and the last of 40
    draws are ordinary, some in between fall under the thresholded model's floor."""

    def __init__(self):
        self.calls = 0

    def __call__(self, x):
        small = self.calls % 10 == 5
        self.calls += 1
        pyro.sample("mu", dist.Delta(torch.tensor(0.4)))
        pyro.sample("log_sigma", dist.Delta(torch.tensor(-3.0 if small else 0.0)))


def test_the_default_replays_draw_by_draw_a_model_that_reads_across_draws():
    """The stacked run checks two draws only, so it is opt-in (``parallel=True``, Pyro's ``Predictive`` spelling
    of the same contract): by default a model reading across the draws gets each draw's own log-likelihood (the
    first version stacked by default: the small-scale draws got the floor of the largest, off by nats)."""
    scripted = ScriptedGuide()
    idata = from_pyro_svi(thresholded_model, scripted, X, num_samples=40)
    _assert_each_draw_has_its_own_log_likelihood(idata)


def _assert_each_draw_has_its_own_log_likelihood(idata):
    """The scripted draws include small scales (-3) besides ordinary ones at the ends, and each draw's
    log-likelihood is that of the model conditioned on it alone."""
    log_sigma = torch.as_tensor(idata.posterior["log_sigma"].values[0])
    assert bool((log_sigma == -3.0).any()) and float(log_sigma[0]) == float(log_sigma[-1]) == 0.0
    own = torch.stack([poutine.trace(poutine.condition(thresholded_model, {"mu": torch.tensor(0.4), "log_sigma": v}))
                       .get_trace(X).nodes["x"]["fn"].log_prob(X) for v in log_sigma])
    np.testing.assert_allclose(idata.log_likelihood["x"].values[0], own.numpy(), rtol=1e-6, atol=0)


def test_a_model_that_mixes_stacked_draws_is_replayed_draw_by_draw():
    """With ``parallel=True``, the stacked run of mixing_model differs from the draw-by-draw one at the checked
    draws, so each draw is replayed."""
    assert runs_per_draw(mixing_model, parallel=True) == 2


def test_draws_no_random_numbers_tells_and_moves_no_stream():
    torch.manual_seed(3)
    state = torch.get_rng_state()
    assert draws_no_random_numbers(lambda: torch.zeros(3).sum()) == (True, torch.tensor(0.0))
    drew, value = draws_no_random_numbers(lambda: torch.rand(()))
    assert not drew and 0 <= float(value) < 1
    assert torch.equal(torch.get_rng_state(), state)


def test_parallel_checks_the_extreme_draws_so_a_floor_from_the_largest_draw_is_caught():
    """Before, ``parallel=True`` compared the stacked run with the draw-by-draw replay at the first and the last
    draw only, both ordinary here, so the four small-scale draws got the floor of the largest (off by nats).
    Now the draw with each latent's smallest entry is checked too (vectorized_replay.checked_rows): the stacked
    run is refused and every draw gets its own log-likelihood."""
    idata = from_pyro_svi(thresholded_model, ScriptedGuide(), X, num_samples=40, parallel=True)
    _assert_each_draw_has_its_own_log_likelihood(idata)


def test_checked_rows_are_the_ends_the_extremes_and_random_draws_of_their_own_generator():
    """First and last, then per site the draws of its smallest and largest entry (NaN left out), then
    RANDOM_ROWS others from a generator seeded with CHECK_SEED: the same rows every time, torch's global stream
    untouched, each row once, at most MAX_CHECKED."""
    from hybridpgm.diagnostics.vectorized_replay import MAX_CHECKED, RANDOM_ROWS, checked_rows

    a = torch.zeros(50, 2)
    a[7, 1], a[9, 0], a[3, 0] = -5.0, 4.0, float("nan")
    b = torch.arange(50).flip(0)  # an integer site: its largest entry at draw 0, smallest at 49
    torch.manual_seed(1)
    state = torch.get_rng_state()
    rows = checked_rows({"a": a, "b": b}, 50)
    assert torch.equal(torch.get_rng_state(), state)
    assert rows[:4] == [0, 49, 7, 9] and len(rows) == 4 + RANDOM_ROWS == len(set(rows))
    assert 3 not in rows[:4] and all(0 <= r < 50 for r in rows)
    assert checked_rows({"a": a, "b": b}, 50) == rows
    assert checked_rows({"a": torch.zeros(1)}, 1) == [0]
    assert sorted(checked_rows({"a": torch.zeros(3)}, 3)) == [0, 1, 2]
    many = {f"s{i}": torch.randn(1000) for i in range(20)}
    assert len(checked_rows(many, 1000)) == MAX_CHECKED


def test_a_model_that_mixes_one_random_checked_draw_only_is_caught():
    """A stack whose mixing shows at one draw only, neither an end nor an extreme: one of the draws picked at
    random (CHECK_SEED's generator).  The stacked run is refused there and each draw keeps its own
    log-likelihood (the first/last check of the old code let it through)."""
    from hybridpgm.diagnostics.vectorized_replay import checked_rows

    pyro.set_rng_seed(0)
    default = from_pyro_svi(model, guide, X, num_samples=40)
    draws = {n: torch.as_tensor(default.posterior[n].values[0]) for n in LATENTS}
    rows = checked_rows(draws, 40)
    row = rows[-1]  # a random pick: the extremes and the ends come first
    assert row not in rows[:-4]

    def one_draw_off(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
        log_sigma = pyro.sample("log_sigma", dist.Normal(0.0, 1.0))
        if mu.dim() > 0 and mu.shape[0] == 40:  # the stacked run: draw `row` shifted
            mu = mu + (torch.arange(40) == row).reshape(mu.shape).to(mu.dtype)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(mu, log_sigma.exp()), obs=x)

    pyro.set_rng_seed(0)
    idata = from_pyro_svi(one_draw_off, guide, X, num_samples=40, parallel=True)
    np.testing.assert_allclose(idata.log_likelihood["x"].values, default.log_likelihood["x"].values, rtol=1e-6,
                               atol=0)


def test_replay_parallel_is_deprecated_and_still_answers():
    """Found by an audit: ``replay_parallel``, public in the module's ``__all__``, had no caller in hybridpgm
    (``from_mcmc`` calls ``replay_stacked`` and falls back to ``replay_draws`` itself).  It now warns, pointing at
    the caller's line, and answers as before."""
    from hybridpgm.diagnostics.pointwise_log_lik import _Sites
    from hybridpgm.diagnostics.vectorized_replay import replay_parallel, replay_stacked

    model_trace = poutine.trace(model).get_trace(X)
    sites = _Sites(latent=LATENTS, discrete=[], deterministic=["sigma"], observed={"x": model_trace.nodes["x"]},
                   placeholders={})
    draws = {n: torch.randn(5, generator=torch.Generator().manual_seed(i)) for i, n in enumerate(LATENTS)}
    with pytest.warns(FutureWarning, match=r"replay_parallel is deprecated .* call replay_stacked") as caught:
        values, log_lik = replay_parallel(model, draws, sites, model_trace, 1, 5, (X,), {})
    assert len(caught) == 1 and caught[0].filename == __file__
    expected_values, expected_log_lik = replay_stacked(model, draws, sites, model_trace, 1, 5, (X,), {})
    assert torch.equal(values["sigma"], expected_values["sigma"]) and values["sigma"].shape == (5,)
    assert torch.equal(log_lik["x"], expected_log_lik["x"]) and log_lik["x"].shape == (5, 6)
