"""hybridpgm.load inside ``torch.inference_mode()``: the model it gives is an ordinary one after the block."""

import pytest
import torch

import hybridpgm
from hybridpgm.energy import RBM
from hybridpgm.generative import VAE
from hybridpgm.graphs import MarkovNet
from hybridpgm.infer import SVIObjective


def _binary(n, d, seed=0):
    return torch.bernoulli(torch.full((n, d), 0.5), generator=torch.Generator().manual_seed(seed))


def _saved(tmp_path, name, module):
    return hybridpgm.save(module, tmp_path / f"{name}.pt")


def test_a_markov_net_loaded_in_inference_mode_computes_after_it(tmp_path):
    torch.manual_seed(0)
    mrf = MarkovNet({"a": 2, "b": 3})
    mrf.add_factor("ab", ["a", "b"], torch.nn.Parameter(torch.randn(2, 3)))
    path = _saved(tmp_path, "mrf", mrf)
    with torch.inference_mode():
        loaded = hybridpgm.load(path)
    assert not any(t.is_inference() for t in loaded.state_dict().values())
    assert all(p.requires_grad for p in loaded.parameters())
    torch.testing.assert_close(loaded.log_partition("exact"), mrf.log_partition("exact"))
    torch.testing.assert_close(loaded.marginals("exact")["a"], mrf.marginals("exact")["a"])


def test_an_rbm_loaded_in_inference_mode_scores_after_it(tmp_path):
    torch.manual_seed(0)
    rbm = RBM(6, 3)
    path = _saved(tmp_path, "rbm", rbm)
    with torch.inference_mode():
        loaded = hybridpgm.load(path)
    x = _binary(4, 6)
    torch.testing.assert_close(loaded.log_likelihood(x), rbm.log_likelihood(x))


def test_a_vae_loaded_in_inference_mode_scores_and_trains_after_it(tmp_path):
    torch.manual_seed(0)
    vae = VAE(6, 2, hidden=[4])
    path = _saved(tmp_path, "vae", vae)
    with torch.inference_mode():
        loaded = hybridpgm.load(path)
        inside = loaded.decoder(torch.ones(1, 2))  # it works inside the block too
    assert not inside.requires_grad
    x = _binary(8, 6, 1)
    torch.manual_seed(1)
    expected = vae.log_likelihood(x, num_samples=5)
    torch.manual_seed(1)
    torch.testing.assert_close(loaded.log_likelihood(x, num_samples=5), expected)
    before = loaded.decoder[0].weight.detach().clone()
    hybridpgm.fit(SVIObjective(loaded.model, loaded.guide), x, max_steps=2, batch_size=4, progress=False,
                  device="cpu", seed=0)
    assert not torch.equal(loaded.decoder[0].weight, before)


@pytest.mark.parametrize("grad", [True, False])
def test_loading_outside_inference_mode_keeps_the_caller_s_grad_mode(tmp_path, grad):
    path = _saved(tmp_path, "rbm", RBM(3, 2))
    with torch.set_grad_enabled(grad):
        hybridpgm.load(path)
        assert torch.is_grad_enabled() is grad and not torch.is_inference_mode_enabled()
    with torch.inference_mode():
        hybridpgm.load(path)
        assert torch.is_inference_mode_enabled() and not torch.is_grad_enabled()
