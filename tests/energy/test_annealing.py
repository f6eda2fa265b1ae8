"""Annealing paths (hybridpgm.energy.annealing) kept across a change of their model: they answer for the model as
it is when AIS runs, as a path built then does."""

import math

import pytest
import torch

from hybridpgm.energy import DBM, RBM
from hybridpgm.infer import AIS


def _ais(path_or_model, chains=200, steps=100):
    return AIS(num_chains=chains, num_steps=steps)(path_or_model, generator=torch.Generator().manual_seed(1))


def test_a_gaussian_path_kept_across_a_new_sigma_gives_the_fresh_paths_log_z():
    """``log_z0`` follows ``sigma`` as ``sample0`` and ``step`` do (it was the old sigma's: log Z off by 3 log 2
    after sigma 1 -> 2 for V = 3, the base model's normaliser being prod_i sqrt(2 pi) sigma_i)."""
    torch.manual_seed(0)
    rbm = RBM(3, 2, visible="gaussian", sigma=1.0, init_scale=0.3)
    data = torch.randn(20, 3, generator=torch.Generator().manual_seed(2))
    kept = rbm.annealing_path(data)
    state = {k: v.clone() for k, v in rbm.state_dict().items()}
    state["sigma"] = torch.full((3,), 2.0)
    rbm.load_state_dict(state)
    fresh = rbm.annealing_path(data)
    assert float(kept.log_z0) == float(fresh.log_z0)
    assert float(fresh.log_z0) == pytest.approx(1.5 * math.log(2 * math.pi) + 3 * math.log(2.0) + 2 * math.log(2.0))
    a, b = _ais(kept), _ais(fresh)
    assert float(a.log_z) == float(b.log_z)
    assert torch.equal(a.log_weights, b.log_weights)


def test_a_gaussian_path_without_data_kept_across_new_visible_biases_gives_the_fresh_paths_log_z():
    """Without data a Gaussian path's base is the RBM's visible biases as they are when AIS runs: a copy taken
    when the path was built gave log Z tens of thousands of nats low (-36331 against 2633) after a state dict with
    biases of 1000 was loaded (review F)."""
    torch.manual_seed(0)
    rbm = RBM(3, 2, visible="gaussian", sigma=1.0, init_scale=0.3)
    kept = rbm.annealing_path()
    state = {k: v.clone() for k, v in rbm.state_dict().items()}
    state["visible_bias"] = torch.full((3,), 1000.0)
    rbm.load_state_dict(state)
    a, b = _ais(kept), _ais(rbm.annealing_path())
    assert float(a.log_z) == float(b.log_z)
    assert torch.equal(a.log_weights, b.log_weights)
    assert float(b.log_z) == pytest.approx(float(rbm.log_partition()), abs=3 * float(b.stderr) + 1e-3)


@pytest.mark.parametrize("model", [lambda: RBM(4, 2, init_scale=0.3), lambda: DBM([4, 3, 2])],
                         ids=["rbm", "dbm"])
def test_a_path_kept_across_model_double_runs_in_float64(model):
    """After ``model.double()`` a kept path samples and steps in float64, as a fresh one does, with the same
    answer (it raised torch's RuntimeError "mat1 and mat2 must have the same dtype")."""
    torch.manual_seed(0)
    m = model()
    kept = m.annealing_path()
    m.double()
    assert kept.dtype == torch.float64
    a, b = _ais(kept, 20, 10), _ais(m.annealing_path(), 20, 10)
    assert kept.base.dtype == torch.float64
    assert float(a.log_z) == float(b.log_z)
    assert torch.equal(a.log_weights, b.log_weights)


def test_data_base_rates_follow_the_model_with_their_values():
    """The base rates from data are the path's own: after ``rbm.double()`` they are the float32 ones, converted,
    and ``log_z0`` is theirs (the base model's normaliser), so the estimate stays unbiased."""
    torch.manual_seed(0)
    rbm = RBM(4, 2, init_scale=0.3)
    data = torch.bernoulli(torch.full((30, 4), 0.3), generator=torch.Generator().manual_seed(3))
    kept = rbm.annealing_path(data)
    base = kept.base.clone()
    rbm.double()
    result = _ais(kept, 20, 10)
    assert kept.base.dtype == torch.float64 and torch.equal(kept.base, base.double())
    expected = torch.nn.functional.softplus(base.double()).sum() + 2 * math.log(2.0)
    assert float(result.log_z0) == float(expected)


def test_a_path_used_as_built_keeps_its_base_rates_uncopied():
    """A guard (as before): where the model did not move, the path works on its own base-rate tensor, no copy."""
    rbm = RBM(4, 2)
    path = rbm.annealing_path()
    base = path.base
    _ais(path, 4, 3)
    assert path.base is base


def test_a_subclass_that_sets_log_z0_as_older_releases_did_keeps_its_value():
    """Found by a review: ``log_z0``, ``dtype`` and ``device`` became read-only properties (read from the model when
    used), so a path subclass setting ``self.log_z0 = ...`` in its ``__init__`` raised AttributeError; a value set
    on the path is used as it is, and a path that sets none follows the model."""
    from hybridpgm.energy.annealing import RBMAnnealingPath

    class FixedBase(RBMAnnealingPath):
        def __init__(self, rbm):
            super().__init__(rbm)
            self.log_z0 = torch.tensor(1.25, dtype=torch.float64)
            self.dtype = rbm.weight.dtype

    rbm = RBM(6, 3)
    path = FixedBase(rbm)
    assert float(path.log_z0) == 1.25 and path.dtype == torch.float32
    assert float(AIS(num_chains=4, num_steps=3)(path).log_z0) == 1.25
    assert float(RBMAnnealingPath(rbm).log_z0) == pytest.approx(6 * math.log(2) + 3 * math.log(2))
