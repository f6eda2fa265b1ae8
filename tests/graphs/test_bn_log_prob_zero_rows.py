"""``BayesNet.log_prob`` of 0 complete rows answers ``[0]`` (audit of degenerate sizes, session 37: it raised
``DataError`` "BayesNet.model got data of 0 rows", naming ``model``, where ``log_evidence`` of the same rows,
``MarkovNet.log_prob`` and a network without nodes answer an empty tensor)."""

import pytest
import torch

from hybridpgm.errors import DataError
from hybridpgm.graphs import BayesNet, cpd


def _net(dtype=torch.float32) -> BayesNet:
    return BayesNet().add("a", cpd.Table([0.4, 0.6])).add("b", cpd.Table([[0.3, 0.7], [0.9, 0.1]], ["a"])).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_log_prob_of_zero_rows_is_empty_like_log_evidence(dtype):
    bn = _net(dtype)
    rows = {"a": torch.zeros(0, dtype=torch.long), "b": torch.zeros(0, dtype=torch.long)}
    out = bn.log_prob(rows)
    assert out.shape == (0,) and out.dtype == dtype
    assert out.shape == bn.log_evidence(rows).shape


def test_zero_rows_as_a_tensor_and_the_checks_still_apply():
    bn = _net()
    assert bn.log_prob(torch.zeros(0, 2, dtype=torch.long)).shape == (0,)
    with pytest.raises(DataError, match="missing"):  # a node absent is refused at 0 rows too
        bn.log_prob({"a": torch.zeros(0, dtype=torch.long)})
