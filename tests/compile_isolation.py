"""The isolation of a test of ``torch.compile``: an autouse fixture to import into the test module.

Compiling a Pyro distribution may flip torch's default argument validation, dynamo notes its graph breaks as
warnings, and compiled code is cached per process: each test gets the validation default back, its warnings
ignored and dynamo's caches reset."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch.distributions import Distribution

__all__ = ["keep_validation_default"]


@pytest.fixture(autouse=True)
def keep_validation_default():
    """Restore torch's default argument validation, ignore dynamo's warnings and reset its caches after the test."""
    previous = Distribution._validate_args
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dynamo's graph-break notes
        yield
    Distribution.set_default_validate_args(previous)
    torch._dynamo.reset()
