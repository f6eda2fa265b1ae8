"""A Gibbs chain over a plate given ``subsample=`` indices (hybridpgm/infer/gibbs_sites.py, ``check_full_plate``).

Carried since session 38 (CARRYFIX, session 41): the full-plate check read the plate's ``subsample_size`` only, which
Pyro leaves ``None`` where the model passes ``subsample=idx``.  So a plate of 4 rows given the indices ``[0, 3]``
(Pyro's scale 4/2: tempered terms) or ``[0, 0, 1, 2]`` (row 0 twice, row 3 left out, at scale 1) passed as the whole
plate, and the chain ran on another posterior: over ``mu ~ Categorical(4)``, ``y_i ~ Normal(mu, 1)``, y = (0, 0.2,
0.1, 3), E[mu | y] is 0.847 and the chains' means were 1.504 and 0.137 (4000 draws, standard errors 0.009 and
0.005).  Now both raise :class:`~hybridpgm.errors.ModelSpecError` naming the plate; a permutation of the rows keeps
the plate and gives the conditional of the unpermuted model."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch

from hybridpgm.errors import ModelSpecError
from hybridpgm.infer import Gibbs

Y = torch.tensor([0.0, 0.2, 0.1, 3.0])


def _global_mean(y, idx):
    mu = pyro.sample("mu", dist.Categorical(torch.ones(4) / 4))
    with pyro.plate("data", len(y), subsample=idx) as i:
        pyro.sample("y", dist.Normal(mu.to(y.dtype), 1.0), obs=y[i])


def _local_states(y, idx):
    with pyro.plate("rows", len(y), subsample=idx) as i:
        z = pyro.sample("z", dist.Bernoulli(torch.tensor(0.3)))
        pyro.sample("y", dist.Normal(z, 0.5), obs=y[i])


@pytest.mark.parametrize("model", [_global_mean, _local_states])
def test_indices_of_fewer_rows_are_refused(model):
    """Fails before: ``subsample=[0, 3]`` of 4 rows was taken for the whole plate (the chain's E[mu] 1.504 against
    the posterior's 0.847), as ``subsample_size=2`` was not."""
    with pytest.raises(ModelSpecError, match=r"plate '(data|rows)' subsamples 2 of its 4 elements"):
        Gibbs(model).setup(0, Y, torch.tensor([0, 3]))


def test_indices_of_more_rows_than_the_plate_are_refused():
    """Fails before: five indices for four rows (Pyro's scale 4/5) passed."""
    with pytest.raises(ModelSpecError, match=r"plate 'data' is given 5 subsample= indices for its 4 elements"):
        Gibbs(_global_mean).setup(0, Y, torch.tensor([0, 1, 2, 3, 3]))


@pytest.mark.parametrize("model", [_global_mean, _local_states])
def test_full_size_indices_that_repeat_rows_are_refused(model):
    """Fails before: ``[0, 0, 1, 2]`` passed the full-plate check (size 4 of 4) and the chain's E[mu] was 0.137,
    the posterior of row 0 counted twice and row 3 left out, against 0.847."""
    with pytest.raises(ModelSpecError, match=r"plate '(data|rows)' is given subsample= indices of its full size 4 "
                                             r"that are not a permutation of 0..3: 1 row\(s\) repeated \(e.g. \[0\]\), "
                                             r"1 missing \(e.g. \[3\]\)"):
        Gibbs(model).setup(0, Y, torch.tensor([0, 0, 1, 2]))


def _four_of(y, idx):
    """A plate of 4 rows over data of more (its own rows the first 4); ``obs=y[:4]`` does not read ``idx``."""
    with pyro.plate("four", 4, subsample=idx):
        z = pyro.sample("z", dist.Bernoulli(torch.tensor(0.3)))
        pyro.sample("y", dist.Normal(z, 0.5), obs=y[:4])


def test_full_size_indices_outside_the_rows_are_refused():
    """Fails before: ``[0, 1, 2, 7]`` for a plate of 4 passed (a model reading ``y[i]`` from more rows than the
    plate has would score row 7 and never row 3)."""
    with pytest.raises(ModelSpecError, match=r"plate 'four' .* 0 row\(s\) repeated \(e.g. \[\]\), 1 missing "
                                             r"\(e.g. \[3\]\), 1 outside 0..3"):
        Gibbs(_four_of).setup(0, torch.arange(8.0) / 8, torch.tensor([0, 1, 2, 7]))


@pytest.mark.parametrize("idx", [torch.tensor([0.0, 1.0, 2.0, 3.0]), torch.tensor([True, True, True, True])])
def test_indices_that_are_not_integers_are_refused(idx):
    """Fails before: float or boolean "indices" of the plate's size passed the check."""
    with pytest.raises(ModelSpecError, match=r"plate 'four' is given subsample= of dtype torch\.(float32|bool)"):
        Gibbs(_four_of).setup(0, Y, idx)


@pytest.mark.parametrize("idx", [torch.arange(4), torch.tensor([3, 1, 0, 2]), [2, 0, 3, 1]])
def test_a_permutation_of_the_rows_is_the_whole_plate(idx):
    """Guard: a permutation (a tensor or a list) keeps every row once: the global's conditional is that of the
    plate without ``subsample=``, which is the exact posterior of ``mu``."""
    kernel = Gibbs(_global_mean)
    kernel.setup(0, Y, idx)
    logits, _ = kernel.log_conditional(["mu"], {"mu": torch.tensor(0)})
    exact = torch.stack([dist.Normal(float(m), 1.0).log_prob(Y).sum() for m in range(4)])
    torch.testing.assert_close(logits.reshape(4).log_softmax(-1), exact.log_softmax(-1))


def test_a_plate_without_subsample_is_unchanged():
    """Guard: ``pyro.plate(name, N)`` and ``subsample_size=N`` give Pyro's own ``torch.arange(N)``: accepted."""
    def model(y, size):
        with pyro.plate("data", len(y), subsample_size=size) as i:
            z = pyro.sample("z", dist.Bernoulli(torch.tensor(0.3)))
            pyro.sample("y", dist.Normal(z, 0.5), obs=y[i])

    for size in (None, 4):
        kernel = Gibbs(model)
        kernel.setup(0, Y, size)
        assert kernel.blocks == [["z"]]
