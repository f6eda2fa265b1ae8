"""The ``generator=`` of :func:`~hybridpgm.diagnostics.importance_resampling.resample_indices`, and the shapes it
refuses."""

import inspect
import re

import pytest
import torch

from hybridpgm.diagnostics.importance_resampling import resample_indices
from hybridpgm.errors import DataError
from tests import generator_contract as contract

_LOG_WEIGHTS = torch.randn(20, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.mark.parametrize("method", ["systematic", "multinomial"])
def test_the_generator_contract(method):
    """Found by an audit of the samplers: ``resample_indices(lw, "systematic", 3)`` (a seed for the generator)
    ended in torch's raw TypeError."""
    contract.assert_generator_contract(lambda **kw: resample_indices(_LOG_WEIGHTS, method, **kw),
                                       "resample_indices generator")


@pytest.mark.parametrize("method", ["systematic", "multinomial"])
def test_the_generator_is_keyword_only_with_a_deprecation_period(method):
    """Found by an API audit: ``resample_indices(lw, method, generator)`` took the generator by position, where
    every other sampler takes it by keyword only.  The old call still answers, the same pick, with a
    FutureWarning."""
    param = inspect.signature(resample_indices).parameters["generator"]
    assert param.kind is inspect.Parameter.KEYWORD_ONLY and param.default is None
    with pytest.warns(FutureWarning, match=r"^resample_indices: pass generator= by keyword"):
        old = resample_indices(_LOG_WEIGHTS, method, torch.Generator().manual_seed(1))
    assert torch.equal(old, resample_indices(_LOG_WEIGHTS, method, generator=torch.Generator().manual_seed(1)))


@pytest.mark.parametrize("method", ["systematic", "multinomial"])
def test_log_weights_that_are_not_k_by_n_are_refused_naming_the_shape(method):
    """audit_empty: ``(0,)`` was told "every log-weight is -inf in column(s) []", ``(3,)`` raised a bare IndexError
    (systematic), ``(0, 0)`` torch's errors; reviewB: one column of ``K`` draws as a 1-D tensor is taken, as the
    multinomial pick took it before, giving the ``K`` indices of ``log_weights[:, None]``'s pick."""
    column = torch.tensor([0.0, -1.0, -2.0, 0.5])
    picked = resample_indices(column, method, generator=torch.Generator().manual_seed(3))
    as_column = resample_indices(column[:, None], method, generator=torch.Generator().manual_seed(3))
    assert picked.shape == (4,) and torch.equal(picked, as_column[:, 0])
    for shape in [(), (2, 3, 1)]:
        with pytest.raises(DataError, match=rf"K x N log-weights .*got shape {re.escape(str(shape))}"):
            resample_indices(torch.zeros(shape), method)
    for shape in [(0, 3), (0, 0), (0,)]:
        shown = (0, 1) if shape == (0,) else shape
        with pytest.raises(DataError, match=rf"log-weights of shape {re.escape(str(shown))}: no draws \(K = 0\)"):
            resample_indices(torch.zeros(shape), method)


@pytest.mark.parametrize("method", ["systematic", "multinomial"])
def test_the_pick_ignores_torch_s_default_device(method):
    """Found by a review: the systematic pick drew its uniform (and its grid of points) on torch's default device,
    so under ``torch.set_default_device("meta")`` (or ``"cuda"``, with a CPU generator) it failed in torch where
    the picking, on the CPU, was unaffected.  Now the same indices as on the default CPU."""
    expected = resample_indices(_LOG_WEIGHTS, method, generator=torch.Generator().manual_seed(3))
    with torch.device("meta"):
        got = resample_indices(_LOG_WEIGHTS, method, generator=torch.Generator().manual_seed(3))
    assert got.device.type == "cpu" and torch.equal(got, expected)
