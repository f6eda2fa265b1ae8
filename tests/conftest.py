"""Fixtures of the whole suite."""

from __future__ import annotations

import pytest
from torch.distributions import Distribution


@pytest.fixture(autouse=True)
def torch_distribution_validation_restored():
    """Put torch.distributions' default validation back after each test.

    The first :func:`torch.compile` call in a process switches it off for good (dynamo's ``TorchPatcher`` calls
    ``Distribution.set_default_validate_args(False)``, even for a function never run), and Pyro's validation
    switches set it too: a test that compiles, or turns validation off, must not leave every later test of the
    process running without torch's checks (a ``LinearChainCRF`` built afterwards skips its potential checks).
    """
    before = Distribution._validate_args
    yield
    Distribution.set_default_validate_args(before)
