import math

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import RenyiELBO, Trace_ELBO

from hybridpgm import IWAE, VAE
from hybridpgm.errors import ConfigError, ObjectiveError
from hybridpgm.infer.iwae import importance_log_weights


class PPCA:
    """Probabilistic PCA p(z)=N(0,I), p(x|z)=N(Wz+b, s^2 I) with a linear, deliberately
    imperfect Gaussian guide. log p(x) = log N(x; b, WW^T + s^2 I) in closed form."""

    def __init__(self, d=3, k=2, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.W = torch.randn(d, k, generator=g, dtype=torch.float64)
        self.b = torch.randn(d, generator=g, dtype=torch.float64)
        self.s = 0.7
        self.A = 0.3 * torch.randn(k, d, generator=g, dtype=torch.float64)
        self.k = k

    def _plate(self, x, num_data):
        if num_data is None:
            return pyro.plate("data", x.shape[0], dim=-1)
        return pyro.plate("data", num_data, subsample=torch.arange(x.shape[0]), dim=-1)

    def model(self, x, num_data=None):
        with self._plate(x, num_data):
            z = pyro.sample("z", dist.Normal(x.new_zeros(x.shape[:-1] + (self.k,)), 1.0).to_event(1))
            pyro.sample("x", dist.Normal(z @ self.W.T + self.b, self.s).to_event(1), obs=x)

    def guide(self, x, num_data=None):
        with self._plate(x, num_data):
            pyro.sample("z", dist.Normal(x @ self.A.T, 0.9).to_event(1))

    def exact_guide(self, x, num_data=None):
        """The true posterior p(z | x), Gaussian with covariance (I + W^T W / s^2)^-1."""
        precision = torch.eye(self.k, dtype=torch.float64) + self.W.T @ self.W / self.s**2
        cov = torch.linalg.inv(precision)
        loc = (x - self.b) @ (cov @ self.W.T / self.s**2).T
        with self._plate(x, num_data):
            pyro.sample("z", dist.MultivariateNormal(loc, scale_tril=torch.linalg.cholesky(cov)))

    def exact_log_likelihood(self, x):
        cov = self.W @ self.W.T + self.s**2 * torch.eye(len(self.b), dtype=torch.float64)
        return dist.MultivariateNormal(self.b, cov).log_prob(x)


def test_k1_equals_trace_elbo_loss_and_gradients():
    torch.manual_seed(0)
    vae = VAE(10, 3, (8,))
    x = torch.bernoulli(torch.rand(7, 10))
    grads = []
    for elbo in (Trace_ELBO(), IWAE(1)):
        pyro.set_rng_seed(4)
        vae.zero_grad()
        loss = elbo.differentiable_loss(vae.model, vae.guide, x)
        loss.backward()
        grads.append((loss.detach(), [p.grad.clone() for p in vae.parameters()]))
    torch.testing.assert_close(grads[0][0], grads[1][0])
    for a, b in zip(grads[0][1], grads[1][1]):
        torch.testing.assert_close(a, b)


def test_bound_increases_with_k_towards_exact_log_likelihood():
    ppca = PPCA()
    x = ppca.b + torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    repeats = 400
    batch = x.expand(repeats, 3)
    exact = ppca.exact_log_likelihood(x).item()
    pyro.set_rng_seed(0)
    means, errors = [], []
    for k in (1, 10, 100, 2000):
        log_w, scale = importance_log_weights(ppca.model, ppca.guide, batch, num_particles=k)
        assert log_w.shape == (k, repeats) and scale == 1.0
        per_point = torch.logsumexp(log_w, 0) - math.log(k)
        means.append(per_point.mean().item())
        errors.append(per_point.std().item() / math.sqrt(repeats))
    for lower, higher, e1, e2 in zip(means, means[1:], errors, errors[1:]):
        assert higher > lower + 2 * math.hypot(e1, e2)  # strictly improves as K grows
    assert means[-1] <= exact + 3 * errors[-1]  # a lower bound in expectation
    assert abs(means[-1] - exact) < 0.02 < abs(means[0] - exact)


def test_subsampled_plate_scales_per_datapoint_bound():
    ppca = PPCA()
    x = torch.randn(6, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    iwae = IWAE(8)
    pyro.set_rng_seed(3)
    full = iwae.differentiable_loss(ppca.model, ppca.guide, x)
    pyro.set_rng_seed(3)
    scaled = iwae.differentiable_loss(ppca.model, ppca.guide, x, num_data=600)
    torch.testing.assert_close(scaled, 100.0 * full)
    # Pyro's RenyiELBO(alpha=0) applies log-mean-exp after scaling and gets another number
    pyro.set_rng_seed(3)
    renyi = RenyiELBO(alpha=0, num_particles=8, vectorize_particles=True, max_plate_nesting=1)
    assert abs(renyi.loss(ppca.model, ppca.guide, x, num_data=600) - scaled.item()) > 1.0


def test_partition_of_the_data_recovers_the_full_batch_value():
    # with the exact posterior as guide every weight equals p(x_n): the bound is exact and
    # the scaled half-batch losses must add up to the full-batch loss, -sum_n log p(x_n)
    ppca = PPCA()
    x = torch.randn(8, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    iwae = IWAE(3)
    full = iwae.loss(ppca.model, ppca.exact_guide, x)
    halves = [iwae.loss(ppca.model, ppca.exact_guide, part, num_data=8) for part in x.split(4)]
    assert full == pytest.approx(-ppca.exact_log_likelihood(x).sum().item(), rel=1e-9)
    assert sum(halves) / 2 == pytest.approx(full, rel=1e-9)
    assert halves[0] == pytest.approx(-2 * ppca.exact_log_likelihood(x[:4]).sum().item(), rel=1e-9)


def test_non_reparameterized_latent_is_refused_by_name():
    def model(x):
        with pyro.plate("data", x.shape[0]):
            c = pyro.sample("coin", dist.Bernoulli(0.5))
            pyro.sample("x", dist.Normal(c, 1.0), obs=x)

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("coin", dist.Bernoulli(0.3))

    with pytest.raises(ObjectiveError, match="'coin'"):
        IWAE(3).differentiable_loss(model, guide, torch.zeros(4))


def test_global_latent_under_subsampling_is_refused():
    def model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", 100, subsample=torch.arange(x.shape[0])):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    def guide(x):
        pyro.sample("mu", dist.Normal(0.1, 1.0))

    with pytest.raises(ObjectiveError, match="scaled differently"):
        IWAE(3).differentiable_loss(model, guide, torch.zeros(4))


def test_global_latent_without_subsampling_is_the_plain_iwae_bound():
    def model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", x.shape[0]):
            pyro.sample("x", dist.Normal(mu, 1.0), obs=x)

    def guide(x):
        pyro.sample("mu", dist.Normal(0.5, 0.3))

    x = torch.tensor([0.3, 1.0, -0.2])
    pyro.set_rng_seed(0)
    log_w, _ = importance_log_weights(model, guide, x, num_particles=5)
    assert log_w.shape == (5,)
    pyro.set_rng_seed(0)
    mu = dist.Normal(0.5, 0.3).sample((5,))
    expected = dist.Normal(0.0, 1.0).log_prob(mu) + dist.Normal(mu[:, None], 1.0).log_prob(x).sum(-1) \
        - dist.Normal(0.5, 0.3).log_prob(mu)
    torch.testing.assert_close(log_w, expected)


def test_num_particles_must_be_positive():
    with pytest.raises(ConfigError):
        IWAE(0)


def test_the_plate_nesting_guess_under_plain_svi_leaves_batch_norm_statistics_alone():
    """Under plain ``pyro.infer.SVI`` IWAE guesses its plate nesting inside the first step: that probe trace
    fed the batch into the batch-norm running statistics before the step's own pass did."""
    from tests.infer.probe_helpers import X, batches_tracked, batch_norm_vae, pyro_elbo_log

    with pyro.get_param_store().scope(), pyro_elbo_log() as records:
        torch.manual_seed(0)
        vae = batch_norm_vae()
        first = vae.encoder[1].running_mean.clone()
        svi = pyro.infer.SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-3}), IWAE(num_particles=3))
        svi.step(X)
    assert set(batches_tracked(vae).values()) == {1} and not records
    torch.manual_seed(0)
    one_pass = batch_norm_vae()  # the same initial module, one training pass of the encoder
    one_pass.guide(X)
    assert not torch.equal(first, vae.encoder[1].running_mean)
    assert torch.equal(one_pass.encoder[1].running_mean, vae.encoder[1].running_mean)


def two_vaes(rows_left=3, rows_right=3):
    """Two VAEs in one program (docs/pyro_native.md, "Two models in one program"): plates "v1/data" and
    "v2/data", both at dim -1."""
    torch.manual_seed(0)
    v1, v2 = VAE(6, 2, (5,), name="v1").double(), VAE(6, 2, (5,), name="v2").double()
    x1 = torch.bernoulli(torch.full((rows_left, 6), 0.4, dtype=torch.float64))
    x2 = torch.bernoulli(torch.full((rows_right, 6), 0.6, dtype=torch.float64))

    def model(a, b):
        v1.model(a, prefix="v1/")
        v2.model(b, prefix="v2/")

    def guide(a, b):
        v1.guide(a, prefix="v1/")
        v2.guide(b, prefix="v2/")

    return v1, v2, x1, x2, model, guide


def test_sibling_plates_of_one_size_are_one_data_index():
    """Two models over the same rows: one weight per row, the product of the models' weights, and the bound
    takes its log-mean-exp per row. The weights were once summed over all six points into one per particle
    (loss 27.580 where the per-row bound is 27.169 on the audit's draws)."""
    v1, v2, x1, x2, model, guide = two_vaes()
    k = 8
    with torch.no_grad():
        pyro.set_rng_seed(0)
        log_w, scale = importance_log_weights(model, guide, x1, x2, num_particles=k, max_plate_nesting=1)
        pyro.set_rng_seed(0)  # the same draws, one model at a time (the guide samples v1/z, then v2/z)
        left, _ = importance_log_weights(v1.model, v1.guide, x1, num_particles=k, max_plate_nesting=1)
        right, _ = importance_log_weights(v2.model, v2.guide, x2, num_particles=k, max_plate_nesting=1)
        pyro.set_rng_seed(0)
        loss = IWAE(num_particles=k, max_plate_nesting=1).loss(model, guide, x1, x2)
    assert log_w.shape == (k, 3) and scale == 1.0
    torch.testing.assert_close(log_w, left + right)
    per_row = torch.logsumexp(left + right, 0) - math.log(k)
    assert loss == pytest.approx(-float(per_row.sum()), rel=1e-12)
    assert loss != pytest.approx(-float(torch.logsumexp((left + right).sum(-1), 0) - math.log(k)), rel=1e-3)


@pytest.mark.parametrize("dims", [(-1, -1), (-1, -2)])
def test_sibling_plates_that_share_no_index_are_refused_by_name(dims):
    """Plates of different sizes (two data sets), or at different dims: no per-point bound; it once summed
    every site into one weight per particle without a word."""
    def model(a, b):
        with pyro.plate("v1/data", 2, dim=dims[0]):
            pyro.sample("v1/x", dist.Normal(pyro.sample("v1/z", dist.Normal(0.0, 1.0)), 1.0), obs=a)
        with pyro.plate("v2/data", 3, dim=dims[1]):
            pyro.sample("v2/x", dist.Normal(pyro.sample("v2/z", dist.Normal(0.0, 1.0)), 1.0), obs=b)

    def guide(a, b):
        with pyro.plate("v1/data", 2, dim=dims[0]):
            pyro.sample("v1/z", dist.Normal(0.5 * a, 1.0))
        with pyro.plate("v2/data", 3, dim=dims[1]):
            pyro.sample("v2/z", dist.Normal(0.5 * b, 1.0))

    a, b = torch.zeros(2), torch.zeros(3)
    if dims[1] == -2:
        b = b[:, None]
    with pytest.raises(ObjectiveError, match=r"plate 'v1/data' \(dim -1, size 2\) holds \['v1/z', 'v1/x'\].*"
                                             rf"plate 'v2/data' \(dim {dims[1]}, size 3\)"):
        IWAE(4, max_plate_nesting=2).loss(model, guide, a, b)


@pytest.mark.parametrize("components", [3, 2])
def test_a_global_latent_in_a_plate_of_its_own_is_one_weight_whatever_its_size(components):
    """A global latent vector sampled in a "components" plate beside the data plate at the same dim: every row
    depends on all of it, so the batch is one importance weight.  A review found the sibling-plate rule pairing
    component k with row k when the sizes matched (a "bound" above log p(x)) and refusing other sizes."""
    x = torch.tensor([0.5, -1.0, 2.0])

    def model(x):
        with pyro.plate("components", components):
            mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        with pyro.plate("data", 3):
            pyro.sample("x", dist.Normal(mu.sum(-1, keepdim=True).expand(mu.shape[:-1] + (3,)), 1.0), obs=x)

    def guide(x):
        with pyro.plate("components", components):
            pyro.sample("mu", dist.Normal(torch.linspace(0.1, 0.3, components), 0.7))

    pyro.set_rng_seed(0)
    log_w, _ = importance_log_weights(model, guide, x, num_particles=4000, max_plate_nesting=1)
    assert log_w.shape == (4000,)
    bound = float(torch.logsumexp(log_w, 0) - math.log(4000))
    exact = float(dist.MultivariateNormal(torch.zeros(3), torch.eye(3) + components * torch.ones(3, 3)).log_prob(x))
    assert abs(bound - exact) < 0.05  # 4000 particles: within Monte Carlo error (the mis-paired one was 1.0 above)


def test_iwae_objective_with_per_example_on_a_subsampled_plate_is_refused():
    """Guard (passes before and after this change): IWAE reaches fit only through SVIObjective, whose loss
    refuses per_example=True on a plate that subsamples the batch (the trap RWS, VIMCO, NVIL and WakeSleep
    now refuse too); per_example=False gives the N / B-scaled bound."""
    from hybridpgm.errors import ConfigError
    from hybridpgm.generative import SigmoidBeliefNet
    from hybridpgm.infer import SVIObjective

    torch.manual_seed(0)
    sbn = SigmoidBeliefNet([3, 2])
    x = torch.bernoulli(torch.full((8, 3), 0.5))
    with pytest.raises(ConfigError, match=r"plate 'data' subsamples the batch's 4 row\(s\) from 8"):
        SVIObjective(sbn.model, sbn.guide, IWAE(2), num_data=8, temperature=0.5).loss("elbo", x[:4])
    loss = SVIObjective(sbn.model, sbn.guide, IWAE(2), per_example=False, num_data=8, temperature=0.5)
    assert torch.isfinite(loss.loss("elbo", x[:4]))
