import math

import pytest
import torch

import hybridpgm  # noqa: F401
from hybridpgm.errors import ConfigError
from hybridpgm.infer import VIMCO, VIMCO_ELBO
from hybridpgm.infer.vimco import leave_one_out_bounds
from tests.generative import sbn_brute_force as bf
from tests.generative.sbn_brute_force import binary, flat_grads, mc_check, random_sbn, single_thread  # noqa: F401


def test_leave_one_out_bounds_by_hand():
    log_w = torch.tensor([[0.0], [1.0], [3.0]])
    loo = leave_one_out_bounds(log_w)
    for k in range(3):
        others = [log_w[j, 0].item() for j in range(3) if j != k]
        mean = sum(others) / 2
        expected = math.log((math.exp(mean) + sum(math.exp(o) for o in others)) / 3)
        assert math.isclose(loo[k, 0].item(), expected, rel_tol=1e-6)


def test_vimco_gradient_is_unbiased_for_the_iw_bound():
    sbn = random_sbn([3, 2, 2], 0, scale=1.0)
    x = binary(2, 3, 0)
    objective = VIMCO(sbn.model, sbn.guide, num_particles=2)
    params = list(sbn.parameters())
    exact = flat_grads(-bf.iw_bound_2(sbn, x).mean(), params)
    batch = x.repeat(1000, 1)
    torch.manual_seed(1)
    estimates = torch.stack([flat_grads(objective.loss("elbo", batch), params) for _ in range(25)])
    mc_check(estimates, exact)


def test_value_and_errors():
    sbn = random_sbn([3, 2, 2], 1)
    x = binary(2, 3, 1)
    torch.manual_seed(2)
    value = VIMCO_ELBO(2).differentiable_loss(sbn.model, sbn.guide, x.repeat(20000, 1)) / 40000
    assert math.isclose(value.item(), -bf.iw_bound_2(sbn, x).mean().item(), abs_tol=0.03)
    with pytest.raises(ConfigError, match="num_particles >= 2"):
        VIMCO_ELBO(1)
    with pytest.raises(ConfigError, match="player"):
        VIMCO(sbn.model, sbn.guide).loss("wake", x)


def test_reparameterized_iwae_refuses_sbn_latents():
    """The IWAE objective needs reparameterized sites: for an SBN use VIMCO (or RWS)."""
    from hybridpgm.errors import ObjectiveError
    from hybridpgm.infer import IWAE

    sbn = random_sbn([3, 2], 2)
    with pytest.raises(ObjectiveError, match="'h1'"):
        IWAE(3).differentiable_loss(sbn.model, sbn.guide, binary(2, 3, 2))


def test_num_particles_takes_integer_scalars_and_refuses_bool():
    import numpy as np

    assert VIMCO_ELBO(np.int64(3)).num_particles == 3
    for bad in (True, 2.0, 1):
        with pytest.raises(ConfigError, match=rf"num_particles >= 2.*got {bad}"):
            VIMCO_ELBO(bad)


def _vimco(vae, max_plate_nesting=None):
    return VIMCO(vae.model, vae.guide, num_particles=3, max_plate_nesting=max_plate_nesting)


def test_guessing_the_plate_nesting_leaves_no_mark_and_no_pyro_log_line():
    """VIMCO guessed its plate nesting with Pyro's guess: a "Guessed max_plate_nesting = 1" line on Pyro's
    logger, and one batch more counted by every batch-norm layer."""
    from tests.infer.probe_helpers import batches_tracked, guessed, guessing_matches_given, same_state

    guessing, given, records = guessing_matches_given(_vimco)
    assert not guessed(records)
    assert set(batches_tracked(guessing).values()) == {4} and same_state(guessing, given)


def test_a_resumed_batch_norm_run_ends_with_the_buffers_of_an_uninterrupted_one(tmp_path):
    from tests.infer.probe_helpers import batches_tracked, same_state, whole_and_resumed

    whole, resumed = whole_and_resumed(_vimco, tmp_path)
    assert set(batches_tracked(resumed).values()) == {8} and same_state(whole, resumed)


def test_num_particles_assigned_later_is_the_elbos_and_validated():
    """Before, ``vimco.num_particles = 50`` made a new attribute; the ELBO kept 3 particles."""
    sbn = random_sbn([4, 2], 0)
    objective = VIMCO(sbn.model, sbn.guide, num_particles=3)
    objective.num_particles = 5
    assert objective.elbo.num_particles == 5 and objective.settings()["num_particles"] == 5
    assert objective.elbo.log_weights(sbn.model, sbn.guide, binary(2, 4, 0)).log_p.shape == (5, 2)
    for bad in (1, 2.5, True):
        with pytest.raises(ConfigError, match="num_particles >= 2"):
            objective.num_particles = bad
    assert objective.num_particles == 5
