"""The scope of the tests of Pyro's JIT ELBOs under hybridpgm (:mod:`hybridpgm.infer.jit_shapes`): one torch
thread (traced and eager runs then sum in one order), a param store of their own, and the tracer's own warnings
silenced."""

import warnings

import pyro
import pytest
import torch


@pytest.fixture(autouse=True)
def quiet_and_scoped():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    with pyro.get_param_store().scope(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings, the deprecation of torch.jit.trace, the TrainingWarning
        yield
    torch.set_num_threads(n)
