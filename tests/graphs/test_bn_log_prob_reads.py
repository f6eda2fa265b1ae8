"""``BayesNet.log_prob`` reads the missing-value pattern of its columns from the device once
(:meth:`~hybridpgm.graphs.bn_data.BayesNetData._observed_columns`): its own check that the rows are complete and the
model it traces share the read (``hybridpgm/graphs/bn_log_prob.py``, ``_observed_read``)."""

import pytest
import torch

from hybridpgm.errors import DataError
from hybridpgm.graphs import BayesNet, cpd
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)


def _net() -> BayesNet:
    bn = BayesNet().add("a", cpd.Table([0.5, 0.5])).add("b", cpd.Table([[0.3, 0.7], [0.6, 0.4]], ["a"]))
    return bn.add("y", cpd.LinearGaussian([0.0, 1.0], None, 1.0, ["a"]))


def _rows():
    return {"a": torch.tensor([0, 1, 0]), "b": torch.tensor([1, 1, 0]), "y": torch.tensor([0.1, -2.0, 0.3])}


def test_log_prob_reads_the_missing_pattern_once(host_reads):
    """Fails on the old code: the pattern was read by log_prob's completeness check and again by the model it
    traced (two ``tolist`` reads, on CUDA two synchronisations); now one, and the result is the model's."""
    bn = _net()
    expected = bn.log_prob(_rows())
    host_reads.clear()
    got = bn.log_prob(_rows())
    assert host_reads.count("tolist") == 1, host_reads
    torch.testing.assert_close(got, expected)
    a = torch.tensor([0.5, 0.5]).log()[_rows()["a"]]
    b = torch.tensor([[0.3, 0.7], [0.6, 0.4]]).log()[_rows()["a"], _rows()["b"]]
    y = torch.distributions.Normal(_rows()["a"].float(), 1.0).log_prob(_rows()["y"])
    torch.testing.assert_close(got, a + b + y)


def test_the_model_called_on_its_own_still_reads_its_pattern():
    """A guard: the pattern handed over is taken only for the very tensors it was read from; the model run
    alone (another batch, missing entries) reads and answers as before, and log_prob still refuses incomplete
    rows."""
    bn = _net()
    rows = _rows()
    rows["b"] = torch.tensor([1, -1, 0])
    with pytest.raises(DataError, match=r"log_prob scores complete rows; columns \['b'\] have missing entries"):
        bn.log_prob(rows)
    out = bn.model(rows)
    assert out["b"].shape == (3,) and out["b"][[0, 2]].tolist() == [1, 0]
