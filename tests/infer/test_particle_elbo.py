"""ParticleELBO's guess of ``max_plate_nesting`` (hybridpgm/infer/particle_elbo.py, through the probe trace of
hybridpgm/infer/particle_probe.py): Pyro's value, no log line, no random numbers used up and no module buffer
changed; the data plate of the importance-weighted estimates."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import Trace_ELBO

from hybridpgm.infer import particle_elbo
from hybridpgm.infer.particle_elbo import ParticleELBO
from tests.infer.probe_helpers import X, batch_norm_vae, batches_tracked, guessed, pyro_elbo_log


def _programs():
    """(model, guide) pairs, each a model and a guide over the same sites, with various plate nestings."""

    def none(x):
        pyro.sample("z", dist.Normal(0.0, 1.0))

    def one(x):
        with pyro.plate("data", len(x)):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    def nested(x):
        with pyro.plate("data", len(x), dim=-1):
            with pyro.plate("features", 3, dim=-2):
                pyro.sample("z", dist.Normal(0.0, 1.0))

    def deep_dim(x):
        with pyro.plate("data", len(x), dim=-3):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    def subsampled(x):
        with pyro.plate("data", 100, subsample_size=len(x), dim=-1):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    def global_and_local(x):
        pyro.sample("g", dist.Normal(0.0, 1.0))
        with pyro.plate("outer", 2, dim=-2), pyro.plate("data", len(x), dim=-1):
            pyro.sample("z", dist.Normal(0.0, 1.0))

    return {f.__name__: f for f in (none, one, nested, deep_dim, subsampled, global_and_local)}


@pytest.mark.parametrize("name", list(_programs()))
@pytest.mark.parametrize("num_particles", [1, 3])
def test_the_guess_is_pyros_without_its_log_line(name, num_particles):
    program, x = _programs()[name], torch.zeros(4, 2)
    pyros = Trace_ELBO(num_particles=num_particles, vectorize_particles=True)
    with pyro_elbo_log() as records:
        pyros._guess_max_plate_nesting(program, program, (x,), {})
    assert guessed(records)  # what Pyro logs, and hybridpgm must not
    extra = 1 if num_particles > 1 else 0  # Pyro's particle plate
    with pyro_elbo_log() as records:
        ours = particle_elbo.guess_plate_nesting(program, program, (x,), {})
        elbo = ParticleELBO(num_particles)
        elbo.plate_nesting(program, program, (x,), {})
    assert ours + extra == pyros.max_plate_nesting and elbo.max_plate_nesting == ours and not records


def test_the_guess_uses_no_random_numbers_and_leaves_batch_norm_statistics_alone():
    """Before, the guess kept the random state but ran the batch-norm layers in training mode."""
    torch.manual_seed(0)
    vae = batch_norm_vae()
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    torch.manual_seed(1)
    with pyro_elbo_log() as records:
        assert ParticleELBO(2).plate_nesting(vae.model, vae.guide, (X,), {}) == 1
    assert not guessed(records)
    after_guess = torch.rand(3)
    torch.manual_seed(1)
    assert torch.equal(after_guess, torch.rand(3))
    assert all(torch.equal(before[k], v) for k, v in vae.state_dict().items())
    assert set(batches_tracked(vae).values()) == {0}


def test_the_probe_helpers_are_still_importable_from_particle_elbo():
    """They moved to hybridpgm.infer.particle_probe (tested in tests/infer/test_particle_probe.py)."""
    from hybridpgm.infer import particle_probe

    moved = ["guess_plate_nesting", "keeping_module_state", "keeping_rng_state", "probed_modules", "probing"]
    assert set(moved) <= set(particle_probe.__all__)
    for name in moved:
        assert getattr(particle_elbo, name) is getattr(particle_probe, name) and name in particle_elbo.__all__


def _plates_with_explicit_dims(x):
    """x[b, d] = z[b, d] + noise, z and noise standard normal; the data plate declared at dim=-2 around a feature
    plate at dim=-1 (Pyro's usual style), so log p(x_b) = sum_d log N(x_bd; 0, sqrt 2)."""
    with pyro.plate("data", x.shape[0], dim=-2), pyro.plate("features", x.shape[1], dim=-1):
        z = pyro.sample("z", dist.Normal(torch.zeros((), dtype=x.dtype), 1.0))
        pyro.sample("x", dist.Normal(z, 1.0), obs=x)


def _exact_posterior(x):
    with pyro.plate("data", x.shape[0], dim=-2), pyro.plate("features", x.shape[1], dim=-1):
        pyro.sample("z", dist.Normal(0.5 * x, 0.5 ** 0.5))


def test_the_data_plate_is_the_outermost_one_whatever_its_dim():
    """Found by an audit: the plate of the least negative dim was taken as the outermost, here the feature plate,
    so the estimate had one value per feature (shape (4,)), each a log-mean-exp across datapoints."""
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    exact = dist.Normal(0.0, 2.0 ** 0.5).log_prob(x).sum(-1)
    got = particle_elbo.importance_log_likelihood(_plates_with_explicit_dims, _exact_posterior, x, num_samples=7)
    assert got.shape == (3,)
    assert torch.allclose(got, exact, atol=1e-6)  # the exact posterior as guide: every weight is p(x_b)


@pytest.mark.parametrize("objective", ["RWS", "VIMCO", "WakeSleep"])
def test_the_fit_objectives_pass_the_data_plate_on(objective):
    """RWS, VIMCO and WakeSleep took no plate_name, so a fit user could not name the data plate."""
    import hybridpgm.infer as infer

    x = torch.randn(3, 4, dtype=torch.float64)
    net = torch.nn.Linear(1, 1)
    obj = getattr(infer, objective)(_plates_with_explicit_dims, _exact_posterior, module=net,
                                    model_parameters=[net.weight], guide_parameters=[net.bias], plate_name="elsewhere")
    player = obj.schedule[0]
    with pytest.raises(Exception, match="outside the data plate 'elsewhere'"):
        obj.loss(player, (x,))
