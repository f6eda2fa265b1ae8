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
