"""IWAE's data index (hybridpgm/infer/iwae.py): a sequential data plate, a guide plate named otherwise than the
model's, a plate nesting that grows after the first batch, and the scale refusal's wording."""

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from hybridpgm import IWAE
from hybridpgm.errors import ObjectiveError
from hybridpgm.infer.iwae import importance_log_weights

N, B, K = 6, 3, 4
X = torch.tensor([1.5, -0.3, 2.2, 0.4, -1.7, 0.9])
LOC = torch.tensor([0.2, -0.1, 0.8, 0.0, -0.6, 0.3])
IDX = torch.tensor([4, 0, 2])
EPS = torch.randn(K, B, generator=torch.Generator().manual_seed(0))


# The guides are Deltas at LOC + EPS: the particles are the rows of EPS, not random draws, so the vectorized and
# the sequential program weigh the same particles and their values can be compared exactly.  EPS has the particle
# dim already, so the plate nesting is given (1 vectorized, 0 sequential) rather than guessed by a trace without it.
def model_vectorized(idx, eps):
    with pyro.plate("data", N, subsample=idx):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=X[idx])


def guide_vectorized(idx, eps):
    with pyro.plate("data", N, subsample=idx):
        pyro.sample("z", dist.Delta(LOC[idx] + eps))


def model_sequential(idx, eps):
    for i in pyro.plate("data", N, subsample=idx):
        z = pyro.sample(f"z_{i}", dist.Normal(0.0, 1.0))
        pyro.sample(f"x_{i}", dist.Normal(z, 1.0), obs=X[i])


def guide_sequential(idx, eps):
    for j, i in enumerate(pyro.plate("data", N, subsample=idx)):
        pyro.sample(f"z_{i}", dist.Delta(LOC[i] + eps[:, j]))


def _exact_log_weights():
    z = LOC[IDX] + EPS  # [K, B]
    return dist.Normal(0.0, 1.0).log_prob(z) + dist.Normal(z, 1.0).log_prob(X[IDX])


def test_a_sequential_data_plate_gets_one_weight_per_data_point():
    """Before, the iterations of ``for i in pyro.plate("data", N, subsample=idx)`` were summed into one weight
    for the whole batch (the auditor's bound 79.11 against 72.23 vectorized and 72.05 exact)."""
    expected = _exact_log_weights()
    sequential, scale = importance_log_weights(model_sequential, guide_sequential, IDX, EPS, num_particles=K,
                                               max_plate_nesting=0)
    vectorized, scale_v = importance_log_weights(model_vectorized, guide_vectorized, IDX, EPS, num_particles=K,
                                                 max_plate_nesting=1)
    assert sequential.shape == (K, B) and scale == scale_v == N / B
    torch.testing.assert_close(vectorized, expected)
    torch.testing.assert_close(sequential, expected)
    bound = (N / B) * (torch.logsumexp(expected, 0) - math.log(K)).sum()
    for model, guide, nesting in ((model_sequential, guide_sequential, 0), (model_vectorized, guide_vectorized, 1)):
        assert IWAE(K, max_plate_nesting=nesting).loss(model, guide, IDX, EPS) == pytest.approx(-bound.item(), rel=1e-6)


def test_a_sequential_plate_inside_the_vectorized_data_plate_is_summed_within_a_data_point():
    x = torch.tensor([[0.3, -1.0], [1.2, 0.5], [-0.4, 2.0]])

    def model(x, eps):
        with pyro.plate("data", B):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            for t in pyro.plate("steps", 2):
                pyro.sample(f"x_{t}", dist.Normal(z, 1.0), obs=x[:, t])

    def guide(x, eps):
        with pyro.plate("data", B):
            pyro.sample("z", dist.Delta(LOC[:B] + eps))

    log_w, _ = importance_log_weights(model, guide, x, EPS, num_particles=K, max_plate_nesting=1)
    z = LOC[:B] + EPS
    expected = dist.Normal(0.0, 1.0).log_prob(z) + dist.Normal(z.unsqueeze(-1), 1.0).log_prob(x).sum(-1)
    torch.testing.assert_close(log_w, expected)


@pytest.mark.filterwarnings("ignore:Found plate statements in guide but not model")  # Pyro's, with validation on
def test_a_guide_plate_named_otherwise_than_the_models_is_refused_by_name():
    """Before, the guide's ``plate("rows", 4)`` holding no observed site was taken for a global latent's plate:
    one weight for the whole batch, silently."""
    x = torch.tensor([0.1, -0.4, 1.3, 0.6])

    def model(x):
        with pyro.plate("data", 4):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        with pyro.plate("rows", 4):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    with pytest.raises(ObjectiveError, match=r"site 'z' lies in the model's plate 'data' but in the guide's plate "
                                             r"'rows' \(dim -1, size 4\)"):
        IWAE(3).differentiable_loss(model, guide, x)


def _growing_model(x):
    """The first batch (1-d) has no inner plate: the nesting is guessed 1; a 2-d batch enters a plate whose dim
    Pyro allocates (left of the particle plate, once the guess is made)."""
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        if x.dim() == 1:
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)
        else:
            with pyro.plate("feat", x.shape[1]):
                pyro.sample("x", dist.Normal(z, 1.0), obs=x.T)


def _growing_guide(x):
    with pyro.plate("data", x.shape[0]):
        pyro.sample("z", dist.Normal(0.0, 1.0))


@pytest.mark.parametrize("validation", [False, True])
def test_a_plate_nesting_that_grows_after_the_first_batch_is_refused_naming_the_site(validation):
    """Before, with Pyro's validation off the second batch's value was wrong (17.34 against 14.49), with it on
    Pyro's "Try increasing max_plate_nesting to at least 3" counted the particle plate (2 is the fix)."""
    x1, x2 = torch.randn(3), torch.randn(3, 3)
    with pyro.validation_enabled(validation):
        iwae = IWAE(3)
        iwae.loss(_growing_model, _growing_guide, x1)
        with pytest.raises(ObjectiveError, match=r"site 'x' .*max_plate_nesting=1 .*pass max_plate_nesting= .*"
                                                 r"at least 2"):
            iwae.loss(_growing_model, _growing_guide, x2)
        pyro.set_rng_seed(0)
        given = IWAE(3, max_plate_nesting=2).loss(_growing_model, _growing_guide, x2)
        pyro.set_rng_seed(0)
        assert given == IWAE(3).loss(_growing_model, _growing_guide, x2)  # guessed on this batch: 2


def test_sites_scaled_differently_are_named_with_their_program():
    def model(x):
        with pyro.plate("data", 4):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("x", dist.Normal(z, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", 8, subsample=torch.arange(4)):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    with pytest.raises(ObjectiveError, match=r"the model's site 'z' \(scale 1\) and the guide's site 'z' \(scale 2\)"):
        IWAE(3).differentiable_loss(model, guide, torch.zeros(4))
