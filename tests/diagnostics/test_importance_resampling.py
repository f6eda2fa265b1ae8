"""The ``generator=`` of :func:`~hybridpgm.diagnostics.importance_resampling.resample_indices`."""

import pytest
import torch

from hybridpgm.diagnostics.importance_resampling import resample_indices
from tests import generator_contract as contract

_LOG_WEIGHTS = torch.randn(20, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)


@pytest.mark.parametrize("method", ["systematic", "multinomial"])
def test_the_generator_contract(method):
    """Found by an audit of the samplers: ``resample_indices(lw, "systematic", 3)`` (a seed for the generator)
    ended in torch's raw TypeError."""
    contract.assert_generator_contract(lambda **kw: resample_indices(_LOG_WEIGHTS, method, **kw),
                                       "resample_indices generator")
