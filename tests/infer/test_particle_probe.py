"""The probe-trace helpers (hybridpgm/infer/particle_probe.py): module buffers restored in place, modules found
behind methods, wrappers and partials, the random state kept."""

import functools

import pyro.poutine as poutine
import pytest
import torch

from hybridpgm.infer import particle_probe
from tests.infer.probe_helpers import batch_norm_vae


class _Counter(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.register_buffer("count", torch.zeros(()))
        self.register_buffer("empty", None)

    def forward(self, x):
        self.count += 1
        return x


def test_module_state_is_restored_in_place_even_when_the_body_raises():
    counter = _Counter()
    count = counter.count
    with pytest.raises(RuntimeError, match="boom"):
        with particle_probe.keeping_module_state(counter):
            counter(1.0)
            counter.count = torch.full((), 7.0)  # replaced by another tensor
            counter.register_buffer("lazy", torch.ones(2))  # a buffer made in the body stays
            raise RuntimeError("boom")
    assert counter.count is count and count.item() == 0 and counter.empty is None
    assert torch.equal(counter.lazy, torch.ones(2))


def test_untouched_buffers_keep_their_autograd_version():
    counter = _Counter()
    version = counter.count._version
    with particle_probe.keeping_module_state(counter):
        pass
    assert counter.count._version == version


def test_modules_are_found_behind_methods_wrappers_and_partials():
    vae, counter, other = batch_norm_vae(), _Counter(), _Counter()
    wrapped = poutine.scale(vae.model, 2.0)
    partial = functools.partial(counter.forward)
    assert particle_probe.probed_modules(wrapped, vae.guide, partial, other, None, lambda x: x) == [vae, counter, other]
    assert particle_probe.probed_modules(vae.model, vae, vae.guide) == [vae]


def test_probing_keeps_the_random_state_and_the_buffers_of_a_wrapped_module():
    counter = _Counter()
    torch.manual_seed(0)
    with particle_probe.probing(poutine.block(counter)):
        counter(torch.rand(2))
    after = torch.rand(2)
    torch.manual_seed(0)
    assert counter.count.item() == 0 and torch.equal(after, torch.rand(2))
