"""Model files of a MarkovNet written before its tables were named by their factor (entries ``_pot_i``) load into
today's net, whose tables are ``table_potentials.<factor>`` (:mod:`hybridpgm.graphs.mrf_tables`)."""

import json
from pathlib import Path

import torch
from torch import nn

import hybridpgm
from hybridpgm.graphs import MarkovNet

GOLDEN = Path(__file__).parent / "golden"
CONTEXT = torch.tensor([[0.3, -1.2], [2.0, 0.5]])


def _net():
    """A neural family first (so the tables were ``_pot_1``, ``_pot_2``, ``_pot_3``), a learnable table, a
    fixed one and a family, two of whose factors share one fixed table."""
    torch.manual_seed(0)
    shared = torch.randn(2, 2)
    mrf = MarkovNet({"a": 2, "b": 2, "c": 2})
    mrf.add_factor("n", ["c"], nn.Sequential(nn.Linear(2, 2)))
    mrf.add_factor("ab", ["a", "b"], nn.Parameter(torch.randn(2, 2)))
    mrf.add_factor("bc", ["b", "c"], shared)
    mrf.add_factors("pairs", [["a", "c"], ["c", "b"]], torch.randn(2, 2, 2))
    mrf.add_factor("ca", ["c", "a"], shared)
    return mrf.eval()


#: today's entry -> the one the code before wrote (the i-th family's table was _pot_i)
LEGACY = {"table_potentials.ab": "_pot_1", "table_potentials.bc": "_pot_2", "table_potentials.pairs": "_pot_3",
          "table_potentials.ca": "_pot_4"}


def _outputs(mrf):
    with torch.no_grad():
        return [mrf.log_partition(context=CONTEXT), mrf.marginals(context=CONTEXT)["b"]]


def _as_written_before(path):
    """Rewrite the model file at ``path`` as the code before wrote it: table entries (and their record of
    shared tables) under ``_pot_i``."""
    payload = torch.load(path, weights_only=True)
    payload["state_dict"] = {LEGACY.get(k, k): v for k, v in payload["state_dict"].items()}
    payload["ties"] = {kind: [[LEGACY.get(n, n) for n in group] for group in groups]
                       for kind, groups in payload["ties"].items()}
    torch.save(payload, path)
    return payload


def test_the_golden_markov_net_file_loads_answers_as_recorded_and_is_named_by_factor():
    """The golden file (written with ``_pot_0``/``_pot_1``) is left as it is; loaded, its tables are named by
    their factors and it answers as when it was written."""
    want = json.loads((GOLDEN / "answers.json").read_text())["markov_net_ising"]
    assert want["state_dict"] == {"_pot_0": [1, 2, 2], "_pot_1": [1, 2]}  # the old layout
    model = hybridpgm.load(GOLDEN / "models" / "markov_net_ising.pt")
    assert {k: list(v.shape) for k, v in model.state_dict().items()} == {"table_potentials.coupling": [1, 2, 2],
                                                                          "table_potentials.field": [1, 2]}
    with torch.no_grad():
        got = model.log_partition("exact").reshape(-1).double()
    torch.testing.assert_close(got, torch.tensor(want["query"]["log_partition"], dtype=torch.float64),
                               rtol=1e-5, atol=1e-6)


def test_a_model_file_round_trip_keeps_the_factor_names(tmp_path):
    model = _net()
    loaded = hybridpgm.load(hybridpgm.save(model, tmp_path / "mrf.pt"))
    assert list(loaded.state_dict()) == list(model.state_dict())
    assert set(LEGACY) <= set(loaded.state_dict())
    assert loaded.table_potentials.bc is loaded.table_potentials.ca  # still one table
    for a, b in zip(_outputs(loaded), _outputs(model)):
        assert torch.equal(a, b)


def test_an_old_model_file_without_shared_tables_loads_with_identical_outputs(tmp_path):
    model = _net()
    path = hybridpgm.save(model, tmp_path / "mrf.pt")
    payload = _as_written_before(path)
    assert "_pot_4" in payload["state_dict"]
    payload["ties"] = {"modules": [], "parameters": [], "buffers": []}  # as a file of unshared tables holds
    torch.save(payload, path)
    loaded = hybridpgm.load(path)
    assert list(loaded.state_dict()) == list(model.state_dict())
    for a, b in zip(_outputs(loaded), _outputs(model)):
        assert torch.equal(a, b)


def test_an_old_model_file_with_shared_tables_loads_them_shared(tmp_path):
    model = _net()
    path = hybridpgm.save(model, tmp_path / "mrf.pt")
    assert _as_written_before(path)["ties"]["buffers"] == [["_pot_2", "_pot_4"]]
    loaded = hybridpgm.load(path)
    assert loaded.table_potentials.bc is loaded.table_potentials.ca
    for a, b in zip(_outputs(loaded), _outputs(model)):
        assert torch.equal(a, b)
