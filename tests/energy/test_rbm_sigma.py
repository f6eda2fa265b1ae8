"""A Gaussian RBM's ``sigma`` follows the module's dtype at the precision asked for (energy/rbm_sigma.py).

Before: ``RBM(3, 4, visible="gaussian", sigma=0.3).double().sigma`` held 0.30000001192092896 (the float32 rounding
widened), so the float64 model's exact log Z was 1.2e-7 off the closed form at sigma = 0.3 (FUZZ finding 1).
"""

from __future__ import annotations

import copy
import itertools
import math
import pickle

import torch
from torch import nn

import hybridpgm
from hybridpgm.energy import DBN, RBM

F32_03 = torch.tensor(0.3, dtype=torch.float32).item()  # 0.30000001192092896


def _gaussian(sigma=0.3, visible=3, hidden=4, seed=0):
    torch.manual_seed(seed)
    rbm = RBM(visible, hidden, visible="gaussian", sigma=sigma)
    with torch.no_grad():
        rbm.weight.normal_(0, 1.0)
        rbm.visible_bias.normal_(0, 1.0)
        rbm.hidden_bias.normal_(0, 1.0)
    return rbm


def _closed_form_log_z(rbm, sigma):
    """log Z of a Gaussian RBM with every sigma_i = ``sigma`` (a Python float), in float64."""
    W, b, c = (t.detach().double() for t in (rbm.weight, rbm.visible_bias, rbm.hidden_bias))
    hs = torch.tensor(list(itertools.product([0.0, 1.0], repeat=rbm.num_hidden)), dtype=torch.float64)
    m = b + sigma * (hs @ W.T)
    terms = hs @ c + ((m ** 2 - b ** 2) / (2 * sigma * sigma)).sum(1)
    return torch.logsumexp(terms, 0) + rbm.num_visible * math.log(math.sqrt(2 * math.pi) * sigma)


def test_double_holds_the_sigma_asked_and_the_exact_log_z_of_that_model():
    rbm = _gaussian().double()
    assert rbm.sigma.dtype == torch.float64
    assert rbm.sigma.tolist() == [0.3] * 3
    got = rbm.log_partition("exact")
    assert abs(got.item() - _closed_form_log_z(rbm, 0.3).item()) < 1e-12  # was 1.2e-7


def test_every_conversion_to_float64_and_through_half_refills_from_the_number_asked():
    for convert in (lambda m: m.to(torch.float64), lambda m: m.to("cpu", torch.float64),
                    lambda m: m.to(dtype=torch.float64), lambda m: m.half().double(),
                    lambda m: m.bfloat16().double(), lambda m: m.double().float().double()):
        assert convert(_gaussian()).sigma.tolist() == [0.3] * 3
    half = _gaussian().half()
    assert half.sigma.dtype == torch.float16 and torch.equal(half.sigma, torch.full((3,), 0.3, dtype=torch.float16))
    assert _gaussian().double().float().sigma.tolist() == [F32_03] * 3


def test_float32_users_keep_the_same_buffer_and_state_dict():
    rbm = _gaussian()
    assert torch.equal(rbm.sigma, torch.full((3,), 0.3)) and rbm.state_dict()["sigma"].dtype == torch.float32
    buffer = rbm.sigma
    rbm.float()  # no change of dtype: torch's conversion alone, the same tensor
    assert rbm.sigma is buffer
    rbm.to("cpu")
    assert rbm.sigma is buffer


def test_an_edited_or_learned_sigma_is_converted_as_torch_converts_never_overwritten():
    rbm = _gaussian()
    with torch.no_grad():
        rbm.sigma.fill_(0.25 + 2 ** -20)
    assert rbm.double().sigma.tolist() == [0.25 + 2 ** -20] * 3
    rbm = _gaussian()
    with torch.no_grad():
        rbm.sigma[1] = 0.5  # one entry edited: the buffer is not the constructor's any more
    assert rbm.double().sigma.tolist() == [F32_03, 0.5, F32_03]
    rbm = _gaussian().double()
    with torch.no_grad():
        rbm.sigma.fill_(0.3 + 1e-12)
    # the float32 rounding of 0.3 + 1e-12 is that of 0.3, but the buffer was edited: it stays an ordinary buffer
    assert rbm.float().double().sigma.tolist() == [F32_03] * 3


def test_load_state_dict_keeps_the_values_of_the_file():
    old_file = {k: v.double() for k, v in _gaussian().state_dict().items()}  # what a float64 model saved before
    assert old_file["sigma"].tolist() == [F32_03] * 3
    rbm = _gaussian(seed=1).double()
    rbm.load_state_dict(old_file)
    assert rbm.sigma.tolist() == [F32_03] * 3
    rbm = _gaussian(seed=1)
    rbm.load_state_dict({**_gaussian().state_dict(), "sigma": torch.full((3,), 0.75)})
    assert rbm.double().sigma.tolist() == [0.75] * 3


def test_hybridpgm_load_of_float64_files_keeps_their_sigma(tmp_path):
    rbm = _gaussian().double()
    hybridpgm.save(rbm, tmp_path / "new.pt")
    loaded = hybridpgm.load(tmp_path / "new.pt")
    assert loaded.sigma.dtype == torch.float64 and loaded.sigma.tolist() == [0.3] * 3
    assert torch.equal(loaded.log_partition("exact"), rbm.log_partition("exact"))
    edited = _gaussian().double()
    with torch.no_grad():
        edited.sigma.copy_(torch.tensor([F32_03, 0.3, 0.3 + 1e-12], dtype=torch.float64))
    hybridpgm.save(edited, tmp_path / "edited.pt")
    assert hybridpgm.load(tmp_path / "edited.pt").sigma.tolist() == [F32_03, 0.3, 0.3 + 1e-12]
    hybridpgm.save(_gaussian(), tmp_path / "f32.pt")
    loaded = hybridpgm.load(tmp_path / "f32.pt")
    assert torch.equal(loaded.sigma, torch.full((3,), 0.3))
    assert loaded.double().sigma.tolist() == [0.3] * 3  # the constructor's value, at float32: a float64 0.3


def test_modules_holding_an_rbm_copies_and_pickles_convert_it_too():
    assert nn.ModuleList([_gaussian()]).double()[0].sigma.tolist() == [0.3] * 3
    assert copy.deepcopy(_gaussian()).double().sigma.tolist() == [0.3] * 3
    assert pickle.loads(pickle.dumps(_gaussian())).double().sigma.tolist() == [0.3] * 3
    unpickled_old = _gaussian()
    del unpickled_old._sigma_asked  # pickled by a release that did not keep the number: torch's conversion alone
    assert unpickled_old.double().sigma.tolist() == [F32_03] * 3
    dbn = DBN([3, 4, 2], visible="gaussian").double()  # the DBN's bottom RBM: sigma 1.0
    assert dbn.rbms[0].sigma.dtype == torch.float64 and dbn.rbms[0].sigma.tolist() == [1.0] * 3
    meta = _gaussian().to(device="meta", dtype=torch.float64)
    assert meta.sigma.is_meta and meta.sigma.dtype == torch.float64


def test_float64_samples_and_likelihoods_use_the_sigma_asked():
    rbm = _gaussian().double()
    h = torch.tensor([[1.0, 0.0, 1.0, 1.0]], dtype=torch.float64)
    normal = rbm.visible(h).base_dist
    assert normal.scale.tolist() == [[0.3] * 3]
    expected = rbm.visible_bias.detach() + 0.3 * (h @ rbm.weight.detach().T)
    assert torch.equal(normal.loc, expected)
    v = torch.randn(5, 3, dtype=torch.float64)
    b, W, c = rbm.visible_bias.detach(), rbm.weight.detach(), rbm.hidden_bias.detach()
    free = ((v - b) ** 2).sum(-1) / (2 * 0.3 ** 2) - torch.nn.functional.softplus(c + (v / 0.3) @ W).sum(-1)
    torch.testing.assert_close(rbm.free_energy(v).detach(), free, rtol=1e-14, atol=1e-13)
