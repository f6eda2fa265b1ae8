"""A Gaussian RBM's ``sigma`` does not depend on whether a state dict is loaded before or after the model is cast to
another dtype (energy/rbm_sigma.py, ``GaussianSigma._load_from_state_dict``).

Before: a float32 state dict of ``sigma=0.3`` loaded and then ``.double()`` gave 0.3, but ``.double()`` and then the
same load gave 0.30000001192092896 (the file's rounding widened); and a float64 state dict holding that widened
value gave 0.3 when loaded into a float32 model then cast, the file's value the other way round.
"""

from __future__ import annotations

import pytest
import torch

from hybridpgm.energy import RBM

F32_03 = torch.tensor(0.3, dtype=torch.float32).item()  # 0.30000001192092896


def _rbm(sigma=0.3, seed=0):
    torch.manual_seed(seed)
    return RBM(3, 4, visible="gaussian", sigma=sigma)


def _load_then_cast(state, dtype):
    rbm = _rbm(seed=1)
    rbm.load_state_dict(state)
    return rbm.to(dtype)


def _cast_then_load(state, dtype):
    rbm = _rbm(seed=1).to(dtype)
    rbm.load_state_dict(state)
    return rbm


def _file(dtype, sigma=None):
    """The state dict of a model built with sigma=0.3 and cast to ``dtype`` (``sigma``: its value edited)."""
    state = _rbm().to(dtype).state_dict()
    if sigma is not None:
        state["sigma"] = torch.tensor(sigma, dtype=dtype)
    return state


@pytest.mark.parametrize("file_dtype,sigma,expected", [
    (torch.float32, None, [0.3] * 3),  # the number asked, at float32: 0.3 in the float64 model
    (torch.float64, None, [0.3] * 3),
    (torch.float64, [F32_03] * 3, [F32_03] * 3),  # a float64 file holding the widened rounding keeps it
    (torch.float32, [0.75] * 3, [0.75] * 3),  # another value: the file's
    (torch.float16, None, [0.3] * 3),
], ids=["f32-asked", "f64-asked", "f64-widened", "f32-other", "f16-asked"])
def test_load_and_cast_commute(file_dtype, sigma, expected):
    state = _file(file_dtype, sigma)
    one, other = _load_then_cast(state, torch.float64), _cast_then_load(state, torch.float64)
    assert one.sigma.dtype == other.sigma.dtype == torch.float64
    assert one.sigma.tolist() == other.sigma.tolist() == expected
    assert torch.equal(one.log_partition("exact"), other.log_partition("exact"))


def test_a_float64_file_into_a_float32_model_is_rounded_once():
    for state in (_file(torch.float64), _file(torch.float64, [F32_03] * 3)):
        one, other = _load_then_cast(state, torch.float32), _cast_then_load(state, torch.float32)
        assert one.sigma.dtype == other.sigma.dtype == torch.float32
        assert torch.equal(one.sigma, torch.full((3,), 0.3)) and torch.equal(other.sigma, one.sigma)


def test_a_float64_value_a_float32_model_cannot_hold_is_its_rounding_widened():
    """Loaded into a float32 model the file's 0.3 + 1e-12 is rounded (as torch rounds any buffer); that rounding is
    not taken for the number asked: ``.double()`` widens it.  Cast first, the model keeps the file's value."""
    state = _file(torch.float64, [0.3, 0.3, 0.3 + 1e-12])
    assert _cast_then_load(state, torch.float64).sigma.tolist() == [0.3, 0.3, 0.3 + 1e-12]
    assert _load_then_cast(state, torch.float64).sigma.tolist() == [F32_03] * 3


def test_the_loaded_weights_are_the_files_and_the_file_is_untouched():
    state = _file(torch.float32)
    before = {k: v.clone() for k, v in state.items()}
    rbm = _cast_then_load(state, torch.float64)
    assert all(torch.equal(state[k], before[k]) for k in state)
    assert torch.equal(rbm.weight, before["weight"].double())
    rbm = _rbm(seed=1).double()
    rbm.load_state_dict(state, assign=True)  # the file's tensors themselves: float32 as given
    assert rbm.sigma.dtype == torch.float32 and torch.equal(rbm.sigma, before["sigma"])
    assert torch.equal(state["sigma"], before["sigma"])


def test_a_load_of_another_value_forgets_the_number_asked():
    """After loading 0.75 into a float64 model, a float32 file of 0.3's rounding is the file's value widened."""
    rbm = _rbm().double()
    rbm.load_state_dict(_file(torch.float32, [0.75] * 3))
    rbm.load_state_dict(_file(torch.float32))
    assert rbm.sigma.tolist() == [F32_03] * 3
    rbm = _rbm()
    rbm.load_state_dict(_file(torch.float32, [0.75] * 3))
    rbm.load_state_dict(_file(torch.float32))
    assert rbm.double().sigma.tolist() == [F32_03] * 3
