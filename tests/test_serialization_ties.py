"""A model that shares a parameter, buffer or sub-module between several places comes back from a model file
sharing it the same way (hybridpgm/serialization_ties.py)."""

import pytest
import torch
from torch import nn

import hybridpgm
from hybridpgm.errors import CheckpointError
from hybridpgm.gp import DeepKernelGP
from hybridpgm.graphs import BayesNet, MarkovNet, cpd


def _markov_net():
    torch.manual_seed(0)
    coupling = nn.Parameter(torch.randn(2, 2))  # an Ising-style coupling on every edge
    field = torch.randn(2)  # a fixed table (a buffer) on two variables
    mrf = MarkovNet({"a": 2, "b": 2, "c": 2})
    mrf.add_factor("ab", ["a", "b"], coupling)
    mrf.add_factor("bc", ["b", "c"], coupling)
    mrf.add_factor("a", ["a"], field)
    mrf.add_factor("c", ["c"], field)
    mrf.add_factor("ca", ["c", "a"], nn.Parameter(torch.randn(2, 2)))

    def loss(m):
        x = {"a": torch.tensor([0, 1]), "b": torch.tensor([1, 1]), "c": torch.tensor([1, 0])}
        return -m.log_prob(x).sum()

    def shared(m):
        tables = m.table_potentials
        return [(tables.ab, tables.bc), (tables.a, tables.c)]

    return mrf, loss, shared


def _bayes_net():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 2))
    bn = BayesNet()
    bn.add("a", cpd.Table([0.4, 0.6]))
    bn.add("b", cpd.Neural(net, parents=["a"]))
    bn.add("c", cpd.Neural(net, parents=["b"]))  # one network for two CPDs

    def loss(m):
        return -m.log_evidence({"c": torch.tensor([1, 0, 1])}).sum()

    def shared(m):
        return [(m.cpds["b"].net, m.cpds["c"].net)]

    return bn, loss, shared


def _deep_kernel():
    torch.manual_seed(0)
    x = torch.randn(10, 3)
    first, middle = nn.Linear(3, 3), nn.Linear(3, 3)
    tail = nn.Linear(3, 2)
    middle.weight = first.weight  # one parameter in two layers
    net = nn.Sequential(first, nn.Tanh(), middle, nn.Tanh(), middle, tail)  # and one layer twice
    gp = DeepKernelGP(x, torch.randn(10), net)

    def loss(m):
        return -m.marginal_log_likelihood()

    def shared(m):
        fe = m.feature_extractor
        return [(fe[0].weight, fe[2].weight), (fe[2], fe[4]), (m.likelihood, m.gp.likelihood)]

    return gp, loss, shared


@pytest.mark.parametrize("build", [_markov_net, _bayes_net, _deep_kernel], ids=["markov-net", "bayes-net", "dkl"])
def test_shared_parameters_stay_shared_after_load_and_train_alike(build, tmp_path):
    """Before, each use of a shared parameter or network came back as its own copy: the loaded model had more
    parameters, and training it moved the copies apart, away from how the saved model trains."""
    model, loss, shared = build()
    model.train()
    loaded = hybridpgm.load(hybridpgm.save(model, tmp_path / "model.pt")).train()
    for a, b in shared(loaded):
        assert a is b
    assert len(list(loaded.parameters())) == len(list(model.parameters()))
    names = [n for n, _ in model.named_parameters(remove_duplicate=False)]
    assert [n for n, _ in loaded.named_parameters(remove_duplicate=False)] == names
    assert [n for n, _ in loaded.named_parameters()] == [n for n, _ in model.named_parameters()]
    for m in (model, loaded):  # one optimizer step on each gives the same model
        optim = torch.optim.SGD(m.parameters(), lr=0.5)
        optim.zero_grad()
        loss(m).backward()
        optim.step()
    for a, b in shared(loaded):
        assert a is b
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name


def test_the_tie_record_is_plain_data_and_optional(tmp_path):
    model, _, _ = _markov_net()
    path = hybridpgm.save(model, tmp_path / "mrf.pt")
    payload = torch.load(path, weights_only=True)
    assert payload["ties"] == {"modules": [], "parameters": [["table_potentials.ab", "table_potentials.bc"]],
                               "buffers": [["table_potentials.a", "table_potentials.c"]]}
    # a file written before ties were recorded loads as it did (one copy per use)
    del payload["ties"]
    torch.save(payload, path)
    loaded = hybridpgm.load(path)
    tables = loaded.table_potentials
    assert tables.ab is not tables.bc and torch.equal(tables.ab, tables.bc)


@pytest.mark.parametrize("ties, match", [
    ({"modules": [], "parameters": [["table_potentials.ab", "table_potentials.zz"]], "buffers": []},
     r"shares parameters under the name 'table_potentials.zz', which the rebuilt MarkovNet does not have"),
    ({"modules": [], "parameters": [["table_potentials.ab"]], "buffers": []}, "malformed record of shared parameters"),
    ([["table_potentials.ab", "table_potentials.bc"]], "malformed record of shared parameters"),
])
def test_a_damaged_tie_record_is_named(ties, match, tmp_path):
    model, _, _ = _markov_net()
    path = hybridpgm.save(model, tmp_path / "mrf.pt")
    payload = torch.load(path, weights_only=True)
    payload["ties"] = ties
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"model file '.*mrf.pt'.*" + match):
        hybridpgm.load(path)
