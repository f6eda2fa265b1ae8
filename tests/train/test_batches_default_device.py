"""``fit`` with torch's default device set (``torch.set_default_device``): the batch order, the first batch's
indices, a batch's index of a list and the seed of an unseeded run were made on the default device.  Under
``"meta"`` (the CPU stand-in for ``"cuda"``) fit stopped with torch's raw "Cannot copy out of meta tensor" (or
"Tensor.item() cannot be called on meta tensors" without a seed); under ``"cuda"`` the batch order was a CUDA
``randperm`` with fit's CPU generator (torch's raw "Expected a 'cuda' device type for generator").  They are host
tensors now, so a run trains, the same run as without the default device."""

from __future__ import annotations

import contextlib

import pytest
import torch

import hybridpgm
from hybridpgm.energy import RBM
from hybridpgm.train.batches import BatchStream, TensorData, first_batch
from hybridpgm.train.fit_options import draw_seed


@contextlib.contextmanager
def meta_default():
    torch.set_default_device("meta")
    try:
        yield
    finally:
        torch.set_default_device(None)


def _state(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def _objectives():
    torch.manual_seed(0)
    vae = hybridpgm.VAE(8, z_dim=2, hidden=[6])
    rbm = RBM(8, 4)
    return {"vae": (lambda: hybridpgm.SVIObjective(vae.model, vae.guide, hybridpgm.IWAE(num_particles=2)), vae),
            "rbm": (lambda: hybridpgm.ContrastiveDivergence(rbm, 1), rbm)}


@pytest.mark.parametrize("name", ["vae", "rbm"])
@pytest.mark.parametrize("shuffle", [True, False])
def test_fit_trains_under_a_meta_default_device_as_without_it(name, shuffle):
    x = torch.bernoulli(torch.full((40, 8), 0.3), generator=torch.Generator().manual_seed(1))
    states = []
    for under_meta in (False, True):
        make, module = _objectives()[name]
        with meta_default() if under_meta else contextlib.nullcontext():
            result = hybridpgm.fit(make(), x, epochs=2, batch_size=16, shuffle=shuffle, device="cpu",
                                   progress=False, seed=0)
        assert result.device.type == "cpu"
        states.append(_state(module))
    assert states[0].keys() == states[1].keys()
    assert all(v.device.type == "cpu" and torch.equal(v, states[1][k]) for k, v in states[0].items())


def test_an_unseeded_fit_draws_its_seed_on_the_host_under_a_meta_default_device():
    x = torch.bernoulli(torch.full((20, 8), 0.3), generator=torch.Generator().manual_seed(1))
    torch.manual_seed(5)
    want = draw_seed()
    torch.manual_seed(5)
    with meta_default():
        assert draw_seed() == want  # torch's global CPU stream, whatever the default device
    make, rbm = _objectives()["rbm"]
    torch.manual_seed(5)
    with meta_default():
        hybridpgm.fit(make(), x, epochs=1, batch_size=8, device="cpu", progress=False)
    make, seeded = _objectives()["rbm"]
    hybridpgm.fit(make(), x, epochs=1, batch_size=8, device="cpu", progress=False, seed=want)
    assert all(torch.equal(v, seeded.state_dict()[k]) for k, v in rbm.state_dict().items())  # the run of its seed


def test_batch_order_first_batch_and_a_list_index_are_host_tensors_under_a_meta_default_device():
    data = TensorData(torch.arange(30.0).reshape(10, 3))
    stream = BatchStream(data, 4, seed=2)
    want = [stream.batch(s) for s in range(5)], first_batch(data, 3), data.__getitems__([7, 1]).batch
    with meta_default():
        stream = BatchStream(data, 4, seed=2)
        got = [stream.batch(s) for s in range(5)], first_batch(data, 3), data.__getitems__([7, 1]).batch
    for a, b in zip([*got[0], got[1], got[2]], [*want[0], want[1], want[2]]):
        assert a.device.type == "cpu" and torch.equal(a, b)
