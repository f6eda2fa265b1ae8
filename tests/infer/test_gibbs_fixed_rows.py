"""A Gibbs chain over a plate whose ``subsample=`` indices the model draws afresh at every run
(``pyro.plate("rows", N, subsample=torch.randperm(N))`` inside the model; hybridpgm/infer/gibbs_sites.py,
``check_same_rows``).

Carried from session 41: the full-plate check (``check_full_plate``) reads the indices once, at ``setup``, where a
fresh permutation passes.  But the chain keeps a plated latent site's state by position, so at every run of the
model the state of element ``j`` was paired with another row: over ``z_i ~ Bernoulli(0.5)``,
``y_i ~ Normal(3 z_i, 0.5)``, y = (0, 0, 3, 3), the rows' posterior means are (0, 0, 1, 1) to 1e-8, and the chain's
were about 0.5 at every position.  Now a sweep raises :class:`~hybridpgm.errors.ModelSpecError` naming the plate
and its latent sites; a plate of observed sites only may still be reordered at each run (its log-density is a sum
over the rows), and a permutation drawn once outside the model is kept."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC

from hybridpgm.errors import ModelSpecError
from hybridpgm.infer import Gibbs

Y = torch.tensor([0.0, 0.0, 3.0, 3.0])


def _local_states(y, idx=None):
    idx = torch.randperm(len(y)) if idx is None else idx  # drawn afresh at every run when not given
    with pyro.plate("rows", len(y), subsample=idx) as i:
        z = pyro.sample("z", dist.Bernoulli(torch.tensor(0.5)))
        pyro.sample("y", dist.Normal(3 * z, 0.5), obs=y[i])


def _global_mean(y):
    mu = pyro.sample("mu", dist.Categorical(torch.ones(4) / 4))
    with pyro.plate("data", len(y), subsample=torch.randperm(len(y))) as i:
        pyro.sample("y", dist.Normal(mu.to(y.dtype), 1.0), obs=y[i])


def _run(model, *args, num_samples=40):
    pyro.set_rng_seed(0)
    mcmc = MCMC(Gibbs(model), num_samples=num_samples, warmup_steps=0, disable_progbar=True)
    mcmc.run(*args)
    return mcmc.get_samples()


def test_a_latent_plate_reordered_at_every_run_is_refused_naming_the_plate():
    with pytest.raises(ModelSpecError, match=r"Gibbs: plate 'rows' holds the latent site\(s\) \['z'\] and is given "
                                             r"other subsample= indices .*torch.randperm"):
        _run(_local_states, Y)


def test_the_sweep_refuses_it_too():
    """Whatever the seed: a run that happens to draw the setup's permutation again passes, the next ones do not."""
    for seed in range(3):
        pyro.set_rng_seed(seed)
        kernel = Gibbs(_local_states)
        kernel.setup(0, Y)
        params = {"z": torch.zeros(4)}
        with pytest.raises(ModelSpecError, match="plate 'rows'"):
            for _ in range(20):
                params = kernel.sample(params)


def test_a_permutation_drawn_once_outside_is_kept_and_pairs_states_with_rows():
    """Guard: the same indices at every run: element ``j`` is the state of row ``idx[j]``."""
    idx = torch.tensor([2, 0, 3, 1])
    z = _run(_local_states, Y, idx)["z"]
    torch.testing.assert_close(z.mean(0), torch.tensor([1.0, 0.0, 1.0, 0.0]))


def test_an_observed_plate_may_be_reordered_at_every_run():
    """Guard: a plate of observed sites only sums its rows: the global's conditional is the exact posterior."""
    pyro.set_rng_seed(0)
    kernel = Gibbs(_global_mean)
    kernel.setup(0, Y)
    exact = torch.stack([dist.Normal(float(m), 1.0).log_prob(Y).sum() for m in range(4)]).log_softmax(-1)
    for _ in range(3):
        logits, _ = kernel.log_conditional(["mu"], {"mu": torch.tensor(0)})
        torch.testing.assert_close(logits.reshape(4).log_softmax(-1), exact)
    assert _run(_global_mean, Y)["mu"].shape == (40,)


def test_indices_reshuffled_in_place_are_refused_too():
    """One index tensor shuffled in place at every run (``perm.copy_(torch.randperm(N))``) is new indices too: the
    chain keeps a copy of the setup's, not the tensor itself (it passed as ``value is rows``; REVIEWB, session 42)."""
    perm = torch.arange(len(Y))

    def reshuffled(y):
        perm.copy_(torch.randperm(len(y)))
        _local_states(y, perm)

    with pytest.raises(ModelSpecError, match=r"Gibbs: plate 'rows' holds the latent site\(s\) \['z'\]"):
        _run(reshuffled, Y)
