"""NVIL (hybridpgm/infer/nvil.py, nvil_elbo.py): its gradient against the exact ELBO gradient, the loss value,
the learned baselines' variance reduction, dtypes, data, refusals and options assigned after construction."""

import math

import pytest
import torch

import hybridpgm  # noqa: F401
from hybridpgm.errors import ConfigError, DataError, ObjectiveError
from hybridpgm.infer import NVIL, NVIL_ELBO, NVILBaselines
from tests.generative import sbn_brute_force as bf
from tests.generative.sbn_brute_force import (binary, deterministic_guide_sbn, flat_grads, mc_check,  # noqa: F401
                                             random_sbn, single_thread)
from tests.infer.nvil_helpers import _setup


@pytest.mark.parametrize("num_particles", [1, 3])
def test_nvil_gradient_is_unbiased_up_to_the_normalisation(num_particles):
    """E[gradient] = exact ELBO gradient for theta, and / max(1, sd_l) for layer l of the guide,
    whatever the (frozen) baselines and centring constants are."""
    sbn, x = _setup()
    objective = NVIL(sbn.model, sbn.guide, hidden_dim=4, num_particles=num_particles)
    baselines = objective.baselines
    with torch.no_grad():
        for p in baselines.parameters():
            p.normal_(0.0, 1.0)
        baselines.mean.copy_(torch.tensor([0.5, -0.3]))
        baselines.var.copy_(torch.tensor([4.0, 9.0]))  # scales 2 and 3
    baselines.eval()  # statistics frozen
    theta, enc1, enc2 = sbn.model_parameters(), list(sbn.encoders[0].parameters()), list(sbn.encoders[1].parameters())
    params = theta + enc1 + enc2
    exact = flat_grads(-bf.elbo(sbn, x).mean(), params)
    n_theta = sum(p.numel() for p in theta)
    n_enc1 = sum(p.numel() for p in enc1)
    exact[n_theta : n_theta + n_enc1] /= 2.0
    exact[n_theta + n_enc1 :] /= 3.0
    batch = x.repeat(2000 // num_particles, 1)
    torch.manual_seed(1)
    estimates = torch.stack([flat_grads(objective.loss("elbo", batch), params) for _ in range(25)])
    mc_check(estimates, exact)


def test_nvil_without_normalisation_matches_pyro_tracegraph_gradient():
    sbn, x = _setup(1)
    params = list(sbn.parameters())
    exact = flat_grads(-bf.elbo(sbn, x).mean(), params)
    objective = NVIL(sbn.model, sbn.guide, hidden_dim=0, variance_normalization=False, centering=False)
    batch = x.repeat(2000, 1)
    torch.manual_seed(2)
    estimates = torch.stack([flat_grads(objective.loss("elbo", batch), params) for _ in range(25)])
    mc_check(estimates, exact)


def test_loss_value_is_negative_elbo_and_statistics_update():
    sbn, x = _setup(2)
    objective = NVIL(sbn.model, sbn.guide, hidden_dim=3, decay=0.5)
    batch = x.repeat(20000, 1)
    torch.manual_seed(3)
    loss = objective.loss("elbo", batch)
    assert math.isclose(loss.item(), -bf.elbo(sbn, x).mean().item(), abs_tol=0.05)
    b = objective.baselines
    assert not torch.equal(b.mean, torch.zeros(2)) and not torch.equal(b.var, torch.ones(2))
    # decay 0.5: the new mean is half the old (0) plus half the batch mean of the centred signal
    assert (b.var > 0.5).all()
    # the baselines' own loss trains them: psi gets gradients
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in b.parameters())


@pytest.mark.slow
def test_learned_baselines_reduce_gradient_variance():
    sbn, x = _setup(3)
    batch = x.repeat(64, 1)
    objective = NVIL(sbn.model, sbn.guide, hidden_dim=8)
    opt = torch.optim.Adam(objective.baselines.parameters(), lr=0.05)
    torch.manual_seed(4)
    for _ in range(150):  # train the baselines only
        opt.zero_grad()
        objective.loss("elbo", batch).backward()
        opt.step()
    objective.baselines.eval()
    plain = NVIL(sbn.model, sbn.guide, hidden_dim=0, variance_normalization=False, centering=False)
    with torch.no_grad():
        for p in plain.baselines.parameters():
            p.zero_()
    phi = sbn.guide_parameters()
    scale = objective.baselines.var.sqrt().clamp(min=1.0)

    def spread(obj, rescale):
        g = torch.stack([flat_grads(obj.loss("elbo", x), phi) for _ in range(300)])
        n1 = sum(p.numel() for p in sbn.encoders[0].parameters())
        g[:, :n1] *= rescale[0]
        g[:, n1:] *= rescale[1]
        return g.var(0).sum()

    assert spread(objective, scale) < 0.7 * spread(plain, torch.ones(2))


def test_nvil_elbo_with_user_baselines_in_the_guide():
    sbn, x = _setup(4)
    elbo = NVIL_ELBO()  # no NVIL baselines: plain TraceGraph_ELBO semantics
    loss = elbo.differentiable_loss(sbn.model, sbn.guide, x)
    assert loss.shape == () and torch.isfinite(loss)
    assert isinstance(elbo.loss(sbn.model, sbn.guide, x), float)


def test_bad_configuration():
    sbn, _ = _setup()
    with pytest.raises(ConfigError, match="player"):
        NVIL(sbn.model, sbn.guide).loss("wake", binary(2, 3, 0))
    with pytest.raises(ConfigError, match="decay"):
        NVILBaselines(["h1"], 3, decay=1.0)
    dotted = NVILBaselines(["s.h1", "s/h2"], 3)  # torch's raw KeyError, then a refusal, before: held escaped now
    assert list(dotted.nets) == ["s.h1", "s/h2"] and "s%2Eh1.0.weight" in dotted.nets.state_dict()
    with pytest.raises(ConfigError, match="sites"):
        NVIL(lambda x: None, lambda x: None, module=torch.nn.Linear(1, 1),
             model_parameters=[], guide_parameters=[])


def test_guide_that_sets_its_own_baseline_is_refused():
    import pyro
    import pyro.distributions as dist

    sbn, x = _setup()

    def guide(x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample("h1", dist.Bernoulli(logits=sbn.encoders[0](x)).to_event(1),
                        infer={"baseline": {"use_decaying_avg_baseline": True}})
            pyro.sample("h2", dist.Bernoulli(logits=torch.zeros(x.shape[0], 2)).to_event(1))

    objective = NVIL(sbn.model, guide, sites=["h1", "h2"], input_dim=3, model_parameters=sbn.model_parameters(),
                     guide_parameters=sbn.guide_parameters(), module=sbn)
    with pytest.raises(ObjectiveError, match="h1"):
        objective.loss("elbo", x)


def test_baselines_follow_the_models_dtype():
    sbn, x = _setup(5)
    sbn.double()
    objective = NVIL(sbn.model, sbn.guide, hidden_dim=4)
    assert {p.dtype for p in objective.baselines.parameters()} == {torch.float64}
    assert objective.baselines.mean.dtype == torch.float64
    loss = objective.loss("elbo", x.double())
    assert loss.dtype == torch.float64 and torch.isfinite(loss)
    result = hybridpgm.fit(objective, x.double().repeat(4, 1), epochs=1, batch_size=4, progress=False,
                           device="cpu", seed=0)
    assert all(math.isfinite(v) for v in result.history.loss["elbo"])
    # converted after construction: the model alone (the baselines follow), or the objective's module
    objective = NVIL(sbn.model, sbn.guide, hidden_dim=4)
    sbn.float()
    assert objective.loss("elbo", x).dtype == torch.float32
    assert {p.dtype for p in objective.baselines.parameters()} == {torch.float32}
    objective.module.double()
    assert objective.loss("elbo", x.double()).dtype == torch.float64


def test_baselines_read_the_data_as_the_model_does():
    sbn, x = _setup(6)
    objective = NVIL(sbn.model, sbn.guide, hidden_dim=4)
    torch.manual_seed(0)
    as_bool = objective.loss("elbo", x.bool())
    torch.manual_seed(0)
    torch.testing.assert_close(as_bool, objective.loss("elbo", x))
    with pytest.raises(DataError, match=r"NVIL baseline input \(the guide's first argument\) has dtype "
                                        r"torch.float64, the model computes in torch.float32"):
        objective.loss("elbo", x.double())


def test_guessing_the_plate_nesting_with_vectorized_particles_leaves_no_mark_and_no_pyro_log_line():
    """With several particles NVIL let Pyro guess its plate nesting: a "Guessed max_plate_nesting = 2" line on
    Pyro's logger, and random numbers used up, so a resumed run (which guesses again) drew other particles."""
    import pyro

    from hybridpgm import fit
    from tests.infer.probe_helpers import guessed, pyro_elbo_log, same_state

    x = binary(8, 3, 0)

    def trained(max_plate_nesting):
        with pyro.get_param_store().scope():
            sbn = random_sbn([3, 2, 2], 0, scale=1.0)
            objective = NVIL(sbn.model, sbn.guide, hidden_dim=4, num_particles=3,
                             max_plate_nesting=max_plate_nesting)
            fit(objective, x, epochs=1, batch_size=4, progress=False, device="cpu", seed=0)
        return objective

    with pyro_elbo_log() as records:
        guessing = trained(None)
    given = trained(1)
    assert guessing.elbo.max_plate_nesting == given.elbo.max_plate_nesting == 2
    assert not guessed(records) and same_state(guessing.module, given.module)


def test_options_assigned_after_construction_are_the_elbos_or_refused():
    """Before, ``nvil.variance_normalization = False`` (or ``centering``, ``decay``, ``num_particles``) made a
    new attribute nothing read.  Now the first three are the ELBO's and baselines', validated; num_particles
    (which fixes the vectorized particle plate) is read-only."""
    sbn, _ = _setup()
    objective = NVIL(sbn.model, sbn.guide, hidden_dim=2)
    objective.variance_normalization, objective.centering, objective.decay = False, False, 0.5
    assert (objective.elbo.variance_normalization, objective.elbo.centering, objective.baselines.decay) == \
        (False, False, 0.5)
    for name, value in (("variance_normalization", "no"), ("centering", 1), ("decay", 1.0), ("decay", -0.1)):
        with pytest.raises(ConfigError, match=name):
            setattr(objective, name, value)
    assert objective.num_particles == 1
    with pytest.raises(AttributeError, match=r"NVIL.num_particles is fixed at construction"):
        objective.num_particles = 3
    assert objective.elbo.num_particles == 1
