"""The MAP assignment and exact samples of an observed node are the result's own memory, not the caller's
evidence (whatever its dtype)."""
import numpy as np
import pytest
import torch

from hybridpgm.graphs import BayesNet, cpd


def _net():
    bn = BayesNet()
    bn.add("rain", cpd.Table([0.2, 0.8]))
    bn.add("wet", cpd.Table([[0.9, 0.1], [0.3, 0.7]], ["rain"]))
    return bn


@pytest.mark.parametrize("make", [lambda: torch.tensor([0, 1, 1]), lambda: np.array([0, 1, 1])])
def test_map_result_does_not_write_into_the_evidence(make):
    evidence = make()
    out = _net().map({"wet": evidence})
    out["wet"][0] = 1
    assert evidence.tolist() == [0, 1, 1]


def test_sample_of_an_observed_node_is_its_own_memory():
    evidence = torch.tensor([0, 1, 1])
    out = _net().sample(4, evidence={"wet": evidence}, generator=torch.Generator().manual_seed(0))
    out["wet"][0, 0] = 1
    assert evidence.tolist() == [0, 1, 1]
    assert out["wet"][1:].tolist() == [[0, 1, 1]] * 3
