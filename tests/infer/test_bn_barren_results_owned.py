"""A marginal answered forward owns its memory."""
import pytest
import torch

from hybridpgm.graphs import BayesNet, cpd


def _net(learnable):
    bn = BayesNet()
    bn.add("rain", cpd.Table([0.2, 0.8], learnable=learnable))
    bn.add("wet", cpd.Table([[0.9, 0.1], [0.3, 0.7]], ["rain"], learnable=learnable))
    return bn


@pytest.mark.parametrize("evidence", [None, {"wet": torch.tensor([-1, -1, -1])}])
@pytest.mark.parametrize("learnable", [False, True])
def test_editing_a_root_marginal_changes_no_later_query(learnable, evidence):
    bn = _net(learnable)
    with torch.no_grad():  # a learnable table is cached only without gradients
        p = bn.posterior("rain", evidence)
        p[..., 0] = 1.0  # the caller's own post-processing of their result
        assert bn.posterior("rain", {"wet": 1}).tolist() == pytest.approx([0.02 / 0.58, 0.56 / 0.58], abs=1e-6)
        assert bn.log_evidence({"wet": 1}).item() == pytest.approx(torch.tensor(0.58).log().item(), abs=1e-6)
        assert bn.posterior("rain").tolist() == pytest.approx([0.2, 0.8], abs=1e-6)


def test_rows_of_a_root_marginal_are_not_one_memory():
    bn = _net(False)
    p = bn.posterior("rain", {"wet": torch.tensor([-1, -1])})
    p[0, 0] = 0.5
    assert p[1].tolist() == pytest.approx([0.2, 0.8], abs=1e-6)
