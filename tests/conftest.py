"""Fixtures of the whole suite."""

from __future__ import annotations

import contextlib
from typing import Iterator

import pyro
import pyro.distributions.util as pyro_distributions
import pyro.infer.util as pyro_infer
import pyro.poutine.util as pyro_poutine
import pytest
from torch.distributions import Distribution


@contextlib.contextmanager
def validation_restored() -> Iterator[None]:
    """Put Pyro's three validation switches and torch.distributions' default validation back as they were.

    The first :func:`torch.compile` call in a process switches torch's off for good (dynamo's ``TorchPatcher``
    calls ``Distribution.set_default_validate_args(False)``, even for a function never run), and
    :func:`pyro.enable_validation` sets all four: a test that compiles, or turns validation off, must not leave
    every later test of its process running without the checks (a ``LinearChainCRF`` built afterwards skips its
    potential checks).
    """
    pyro_flags = (pyro_distributions.is_validation_enabled(), pyro_infer.is_validation_enabled(),
                  pyro_poutine.is_validation_enabled())
    torch_flag = Distribution._validate_args
    try:
        yield
    finally:
        pyro.distributions.enable_validation(pyro_flags[0])
        pyro_infer.enable_validation(pyro_flags[1])
        pyro_poutine.enable_validation(pyro_flags[2])
        Distribution.set_default_validate_args(torch_flag)


@pytest.fixture(autouse=True)
def validation_kept():
    """Every test leaves the validation switches as it found them (:func:`validation_restored`)."""
    with validation_restored():
        yield


#: the ``torch.Tensor`` methods that hand a tensor's values to Python: on a GPU each waits for the device
HOST_READS = ("item", "tolist", "__float__", "__bool__", "__int__", "__index__", "cpu", "numpy")


@pytest.fixture
def host_reads(monkeypatch):
    """Every read of a tensor's values by the host during the test, by the method's name (:data:`HOST_READS`
    patched to count): on the CPU the calls are counted where a GPU would synchronise (the tests of the
    one-read-per-query promises)."""
    import torch

    reads = []
    for method in HOST_READS:
        original = getattr(torch.Tensor, method)

        def counted(self, *args, _original=original, _method=method, **kwargs):
            reads.append(_method)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, counted)
    return reads
