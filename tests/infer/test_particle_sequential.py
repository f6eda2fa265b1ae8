"""VIMCO and RWS over a sequential data plate (hybridpgm/infer/particle_sequential.py, particle_plates.py): one
importance weight per iteration of ``for i in pyro.plate("data", N, subsample=idx)``, the same losses and gradients
as the vectorized program ``with pyro.plate("data", N, subsample=idx):`` on the same particles; and what is still
refused (a global latent beside the loop, the sleep phase)."""

import pyro
import pyro.distributions as dist
import pytest
import torch

from hybridpgm.errors import ObjectiveError
from hybridpgm.infer.rws import ReweightedWakeSleepELBO
from hybridpgm.infer.vimco import VIMCO_ELBO

N, D = 6, 2
X = torch.tensor([[1.5, 0.7], [-0.3, -1.1], [2.2, 1.4], [0.4, 0.0], [-1.7, -0.9], [0.9, 2.1]])
THETA = torch.tensor([0.3, 1.2, 0.8], requires_grad=True)  # p(h) logit, the shift of z given h, the weight of z
# per data point: the logit of q(h), the loc and log-scale of q(z | h)
PHI = torch.randn(N, 3, generator=torch.Generator().manual_seed(1)).requires_grad_()


def _draws(num_particles: int):
    """Fixed particles ``(h, z)``, each ``[K, N]``: the guides are Deltas at them carrying the density of a
    Bernoulli and a Normal guide (``log_density``), so the two programs weigh the same particles and the densities
    keep their gradients in ``PHI`` (the values are detached, as the score-function objectives detach them)."""
    g = torch.Generator().manual_seed(num_particles)
    return torch.bernoulli(torch.full((num_particles, N), 0.5), generator=g), torch.randn(num_particles, N, generator=g)


def _q(rows, h, z):
    """Delta guides at ``h`` and ``z`` with the log-densities of ``q(h) q(z | h)`` of ``rows``."""
    q_h = dist.Bernoulli(logits=PHI[rows, 0]).log_prob(h)
    q_z = dist.Normal(PHI[rows, 1] + h, PHI[rows, 2].exp()).log_prob(z)
    return dist.Delta(h, log_density=q_h), dist.Delta(z, log_density=q_z)


def _p_h():
    return dist.Bernoulli(logits=THETA[0])


def _p_z(h):
    return dist.Normal(THETA[1] * h, 1.0)


def model_vectorized(idx, h, z):
    with pyro.plate("data", N, subsample=idx, dim=-2):
        h = pyro.sample("h", _p_h())
        z = pyro.sample("z", _p_z(h))
        with pyro.plate("feat", D, dim=-1):
            pyro.sample("x", dist.Normal(THETA[2] * z, 1.0), obs=X[idx])


def guide_vectorized(idx, h, z):
    with pyro.plate("data", N, subsample=idx, dim=-2):
        q_h, q_z = _q(idx[:, None], h[:, idx, None], z[:, idx, None])
        pyro.sample("h", q_h)
        pyro.sample("z", q_z)


def model_sequential(idx, h, z):
    feat = pyro.plate("feat", D, dim=-1)  # a data point's features, vectorized within its iteration
    for i in pyro.plate("data", N, subsample=idx):
        h_i = pyro.sample(f"h_{i}", _p_h())
        z_i = pyro.sample(f"z_{i}", _p_z(h_i))  # [K, 1]: the particle plate is at dim -2
        with feat:
            pyro.sample(f"x_{i}", dist.Normal(THETA[2] * z_i, 1.0), obs=X[i])


def guide_sequential(idx, h, z):
    for i in pyro.plate("data", N, subsample=idx):
        q_h, q_z = _q(i, h[:, i, None], z[:, i, None])
        pyro.sample(f"h_{i}", q_h)
        pyro.sample(f"z_{i}", q_z)


def _loss_and_grads(loss_fn, model, guide, idx, draws):
    loss = loss_fn(model, guide, idx, *draws)
    grads = torch.autograd.grad(loss, (THETA, PHI), allow_unused=True)  # RWS's theta and phi reach one each
    return (loss.detach(), *(torch.zeros_like(p) if g is None else g for p, g in zip((THETA, PHI), grads)))


ELBOS = {
    "vimco": (lambda k, nesting: VIMCO_ELBO(k, max_plate_nesting=nesting), "differentiable_loss"),
    "rws": (lambda k, nesting: ReweightedWakeSleepELBO(k, max_plate_nesting=nesting), "differentiable_loss"),
    "rws theta": (lambda k, nesting: ReweightedWakeSleepELBO(k, max_plate_nesting=nesting), "theta"),
    "rws phi": (lambda k, nesting: ReweightedWakeSleepELBO(k, max_plate_nesting=nesting), "phi"),
}


def _loss_fn(name, k, nesting):
    make, part = ELBOS[name]
    elbo = make(k, nesting)
    if part == "differentiable_loss":
        return elbo.differentiable_loss
    return lambda *args: getattr(elbo.losses(*args), part)


@pytest.mark.parametrize("name", list(ELBOS))
@pytest.mark.parametrize("num_particles", [2, 3, 5])
@pytest.mark.parametrize("idx", [torch.tensor([4]), torch.tensor([4, 0, 2]), torch.arange(N)],
                         ids=["B=1", "B=3", "B=N"])
def test_a_sequential_data_plate_gives_the_losses_and_gradients_of_the_vectorized_one(name, num_particles, idx):
    """HEAD refused the sequential program ("the data plate 'data' is sequential"); the vectorized one's loss
    carries the subsampling scale N / B (6, 2 and 1 here)."""
    draws = _draws(num_particles)
    vectorized = _loss_and_grads(_loss_fn(name, num_particles, 2), model_vectorized, guide_vectorized, idx, draws)
    sequential = _loss_and_grads(_loss_fn(name, num_particles, 1), model_sequential, guide_sequential, idx, draws)
    for v, s in zip(vectorized, sequential):
        torch.testing.assert_close(s, v)
    reached = {"rws theta": (True, False), "rws phi": (False, True)}.get(name, (True, True))
    assert tuple(bool(g.abs().sum() > 0) for g in vectorized[1:]) == reached


@pytest.mark.parametrize("make", [lambda: VIMCO_ELBO(3, max_plate_nesting=1),
                                  lambda: ReweightedWakeSleepELBO(3, max_plate_nesting=1)])
def test_the_log_weights_are_one_column_per_iteration_and_carry_the_plate_scale(make):
    idx = torch.tensor([5, 1, 3])
    lw = make().log_weights(model_sequential, guide_sequential, idx, *_draws(3))
    assert lw.log_p.shape == lw.log_q.shape == (3, 3) and lw.scale == N / 3
    h, z = (d[:, idx] for d in _draws(3))
    q_h, q_z = _q(idx, h, z)
    torch.testing.assert_close(lw.log_q, q_h.log_prob(h) + q_z.log_prob(z))
    log_x = dist.Normal(THETA[2] * z.unsqueeze(-1), 1.0).log_prob(X[idx]).sum(-1)
    torch.testing.assert_close(lw.log_p, _p_h().log_prob(h) + _p_z(h).log_prob(z) + log_x)


def test_a_global_latent_beside_the_loop_is_refused_naming_it_and_the_sequential_plate():
    """HEAD said the data plate was sequential (refused as such); the sequential plate is fine, the global latent
    outside it is not (VIMCO and RWS need every site in the data plate)."""
    def model(x):
        mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
        for i in pyro.plate("data", 3):
            pyro.sample(f"x_{i}", dist.Normal(mu, 1.0), obs=x[i])

    def guide(x):
        pyro.sample("mu", dist.Normal(0.0, 1.0))

    with pytest.raises(ObjectiveError, match=r"sample site\(s\) \['mu'\] lie outside the sequential data plate "
                                             r"'data'"):
        VIMCO_ELBO(3).loss(model, guide, torch.randn(3))


def test_the_sleep_phase_refuses_a_sequential_data_plate_naming_it():
    """The sleep phase passes the model's one observed site to the guide; a sequential plate has one per
    iteration.  HEAD refused it only as "found ['x_0', 'x_1', 'x_2']"."""
    def model(x):
        for i in pyro.plate("data", 3):
            z = pyro.sample(f"z_{i}", dist.Normal(0.0, 1.0))
            pyro.sample(f"x_{i}", dist.Normal(z, 1.0), obs=x[i])

    def guide(x):
        for i in pyro.plate("data", 3):
            pyro.sample(f"z_{i}", dist.Normal(0.0, 1.0))

    x = torch.randn(3)
    ReweightedWakeSleepELBO(3).loss(model, guide, x)  # the wake phases weigh it
    with pytest.raises(ObjectiveError, match=r"found \['x_0', 'x_1', 'x_2'\], one per iteration of the sequential "
                                             r"plate\(s\) \['data'\] .*needs the observations in one site"):
        ReweightedWakeSleepELBO(3, sleep_phi=True).differentiable_loss(model, guide, x)
