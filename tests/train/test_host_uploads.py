"""Python numbers turned into device tensors inside ``fit``'s steps.

``torch.tensor(1.0, device="cuda")`` copies a host value to the device, and torch makes that copy blocking
(``non_blocking=False``): the step waits for the GPU as it does at a read.  A step that builds such a tensor every
time -- ``dist.Normal(loc, 1.0)`` does, through ``torch.distributions.utils.broadcast_all``, as does
``torch.as_tensor(0, device=...)`` -- synchronises beyond the one read per step of
:mod:`hybridpgm.train.deferred_checks`.  On the CPU nothing waits, so the count is of the calls: a
:class:`~torch.overrides.TorchFunctionMode` records every ``torch.tensor`` / ``torch.as_tensor`` /
``torch.scalar_tensor`` of a Python number whose nearest caller outside torch and Pyro's distribution wrappers is
hybridpgm's code (what Pyro and GPyTorch make themselves is theirs)."""

import numbers
import sys

import pytest
import torch
from torch.overrides import TorchFunctionMode

import pyro.distributions

from hybridpgm import fit
from tests.train.test_deferred_checks import _binary, _families, _vae_objective, pyro_validation_off  # noqa: F401

_FACTORIES = {torch.tensor, torch.as_tensor, torch.scalar_tensor}
_PASSED_THROUGH = (f"{torch.__path__[0]}/", f"{pyro.distributions.__path__[0]}/")


class _NumberUploads(TorchFunctionMode):
    """Records the hybridpgm file and line of each factory call on a Python number."""

    def __init__(self):
        super().__init__()
        self.calls = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        if func in _FACTORIES and args and isinstance(args[0], numbers.Number):
            frame = sys._getframe(1)
            while frame is not None and frame.f_code.co_filename.startswith(_PASSED_THROUGH):
                frame = frame.f_back
            if frame is not None and "/hybridpgm/" in frame.f_code.co_filename:
                self.calls.append(f"{frame.f_code.co_filename}:{frame.f_lineno}")
        return func(*args, **(kwargs or {}))


def _families_with_the_vae():
    return {"vae-svi": lambda: (_vae_objective(), _binary()), **_families()}


@pytest.mark.parametrize("family", list(_families_with_the_vae()))
def test_no_python_number_becomes_a_device_tensor_per_step(pyro_validation_off, family):  # noqa: F811
    """Five steps make no more such tensors than two: none of them per step (before, the VAE's prior made one
    per step, ``Normal(zeros, 1.0)``, the GAN's domain labels three, the AAVAE's six)."""
    def count(steps):
        torch.manual_seed(0)
        with pyro.get_param_store().scope():  # an autoguide's parameters stay out of the global store
            objective, data = _families_with_the_vae()[family]()
            with _NumberUploads() as uploads:
                fit(objective, data, batch_size=16, epochs=100, max_steps=steps, progress=False, seed=0)
        return uploads.calls

    few, more = count(2), count(5)
    extra = list(more)
    for call in few:
        extra.remove(call) if call in extra else None
    assert not extra, f"{len(extra)} more in 3 more steps: {sorted(set(extra))}"

