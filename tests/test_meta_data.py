"""Data on the meta device is refused by name, before any value is read (:mod:`hybridpgm.meta_data`).

Found by the INPUTS audit (session 39, finding 8): ``fit`` data on meta ended in torch's raw "Tensor.item() cannot
be called on meta tensors" (an integer tensor: "Cannot copy out of meta tensor"), BayesNet and MarkovNet evidence
in a raw ``NotImplementedError`` / ``RuntimeError``, a validating LinearChainCRF in a raw ``RuntimeError``; RBM,
DBM, SBN and VAE already said DeviceError."""

import pytest
import torch

import hybridpgm
from hybridpgm.errors import DeviceError
from hybridpgm.graphs import BayesNet, LinearChainCRF, MarkovNet, cpd

META = r"\(shape \(2,\)\) is on device meta, whose tensors hold no values to read; make it on a device that holds"


@pytest.mark.parametrize("dtype", [torch.float32, torch.long])
def test_fit_refuses_meta_data(dtype):
    vae = hybridpgm.VAE(6, z_dim=2, hidden=[8])
    objective = hybridpgm.SVIObjective(vae.model, vae.guide)
    data = torch.zeros(8, 6, dtype=dtype, device="meta")
    with pytest.raises(DeviceError, match=r"fit data \(shape \(8, 6\)\) is on device meta"):
        hybridpgm.fit(objective, data, epochs=1, batch_size=4, progress=False, device="cpu")
    with pytest.raises(DeviceError, match=r"fit data field 1 \(shape \(8,\)\) is on device meta"):
        hybridpgm.fit(objective, (torch.zeros(8, 6), torch.zeros(8, device="meta")), epochs=1, batch_size=4,
                      progress=False, device="cpu")


def test_bayes_net_evidence_on_meta_is_refused():
    bn = BayesNet()
    bn.add("a", cpd.Table([0.3, 0.7]))
    bn.add("b", cpd.Table([[0.9, 0.1], [0.2, 0.8]], ["a"]))
    with pytest.raises(DeviceError, match="evidence for 'b' " + META):
        bn.posterior("a", {"b": torch.tensor([0, 1], device="meta")})


def test_markov_net_evidence_and_values_on_meta_are_refused():
    mrf = MarkovNet({"a": 2, "b": 3})
    mrf.add_factor("ab", ["a", "b"], torch.randn(2, 3))
    with pytest.raises(DeviceError, match="the value of 'a' " + META):
        mrf.marginals("exact", evidence={"a": torch.tensor([0, 1], device="meta")})
    with pytest.raises(DeviceError, match="the value of 'a' " + META):
        mrf.score({"a": torch.tensor([0, 1], device="meta"), "b": torch.tensor([0, 1])})


def test_a_validating_crf_on_meta_says_to_build_it_without_validation():
    unary, transition = torch.zeros(2, 3, 2, device="meta"), torch.zeros(2, 2, device="meta")
    with pytest.raises(DeviceError, match=r"unary \(shape \(2, 3, 2\)\) is on device meta.*validate_args=False"):
        LinearChainCRF(unary, transition)
    assert LinearChainCRF(unary, transition, validate_args=False).batch_shape == (2,)  # the advice works
