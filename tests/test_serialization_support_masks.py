"""The structural zeros of a table CPD's support mask through hybridpgm.save / hybridpgm.load
(hybridpgm/serialization.py), and model files written before the masks were saved."""

import torch

import hybridpgm
from hybridpgm.graphs import BayesNet, cpd


def _zeros_skeleton():
    """The learn-then-reload pattern: a skeleton network (uniform table, no zeros) given a trained table's
    state dict, whose B | A = 0 row has structural zeros."""
    def network(table):
        return BayesNet().add("A", cpd.Table([0.5, 0.5])).add("B", table)

    trained = network(cpd.Table([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]], ["A"]))
    skeleton = network(cpd.Table.uniform(3, [2], ["A"]))
    skeleton.load_state_dict(trained.state_dict())
    return trained, skeleton


def test_structural_zeros_loaded_into_a_skeleton_survive_save_and_load(tmp_path):
    """The file's constructor arguments say 'uniform'; the zeros are in the state dict.  Before, they were lost
    at the first load_state_dict already (the mask was not saved)."""
    trained, skeleton = _zeros_skeleton()
    loaded = hybridpgm.load(hybridpgm.save(skeleton, tmp_path / "bn.pt"))
    assert torch.equal(loaded.cpds["B"].probs, trained.cpds["B"].probs)
    evidence = {"A": torch.tensor([0, 0]), "B": torch.tensor([0, 1])}
    assert loaded.log_evidence(evidence)[1].item() == float("-inf")
    torch.testing.assert_close(loaded.log_evidence(evidence), trained.log_evidence(evidence))


def test_a_model_file_without_the_support_masks_still_loads(tmp_path):
    """A file written before the tables' masks were in the state dict loads (weights_only) with the masks of
    the tables its constructor arguments build."""
    trained, _ = _zeros_skeleton()
    path = hybridpgm.save(trained, tmp_path / "bn.pt")
    payload = torch.load(path, weights_only=True)
    assert payload["state_dict"]["cpds.B.support"].dtype == torch.bool
    payload["state_dict"] = {k: v for k, v in payload["state_dict"].items() if not k.endswith(".support")}
    torch.save(payload, path)
    loaded = hybridpgm.load(path)
    assert torch.equal(loaded.cpds["B"].probs, trained.cpds["B"].probs)
