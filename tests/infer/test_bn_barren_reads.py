"""The barren linear Gaussians of ``posterior_sample`` checked once (hybridpgm/infer/bn_barren.py ``draw_barren``),
not by torch's :class:`~torch.distributions.Normal` per node.

Found after b7588d8: ``draw_barren`` built a validated torch ``Normal`` for the log-density of each barren
continuous node (three host reads per node: ``loc``, ``scale`` and the value) and each node with a continuous
parent read its input for NaN: 31 reads for 7 barren nodes.  The parameters are checked in one flag
(``check_gaussian_parameters``) and the inputs' flags join it: one read per call."""

import pytest
import torch

from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer.exact import posterior_sample
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)


def _chain(k: int) -> BayesNet:
    """``a -> y0 -> y1 -> ... -> y{k}``: ``y0`` observed, ``y1..y{k}`` barren (drawn forward)."""
    bn = BayesNet().add("a", cpd.Table([0.3, 0.7])).add("y0", cpd.LinearGaussian([0.0, 1.0], None, 1.0, ["a"]))
    for i in range(1, k + 1):
        bn.add(f"y{i}", cpd.LinearGaussian([0.0, 0.5], [[0.5], [0.8]], [1.0, 0.5], ["a", f"y{i - 1}"]))
    return bn


def _sample(bn: BayesNet, seed: int = 0):
    return posterior_sample(bn, 4, {"y0": torch.tensor([0.5, -1.0, 2.0])},
                            generator=torch.Generator().manual_seed(seed), return_log_prob=True)


def test_the_reads_do_not_grow_with_the_barren_gaussians(host_reads):
    """Fails on 35487d2 and b7588d8 (four more reads per barren continuous node): ``posterior_sample`` reads as
    often for 1, 3 and 6 barren linear Gaussians."""
    counts = []
    for k in (1, 3, 6):
        bn = _chain(k)
        _sample(bn)
        host_reads.clear()
        _sample(bn)
        counts.append(len(host_reads))
    assert counts[0] == counts[1] == counts[2], counts


def test_the_log_density_of_a_barren_draw_is_torchs():
    """A guard (passed before too): the log-probability of the samples is the contraction's part plus each barren
    node's Gaussian log-density at its draw (a validated torch Normal's)."""
    bn = _chain(1)
    samples, log_p = _sample(bn, seed=3)
    a, y0, y1 = samples["a"], samples["y0"], samples["y1"]
    c = bn.cpds["y1"]
    mean = c.bias[a] + c.weight[a][..., 0] * y0
    barren = torch.distributions.Normal(mean, c.scale[a], validate_args=True).log_prob(y1)
    prior = bn.cpds["a"].log_table()[a] + torch.distributions.Normal(bn.cpds["y0"].bias[a], 1.0).log_prob(y0)
    evidence = bn.log_evidence({"y0": torch.tensor([0.5, -1.0, 2.0])})
    torch.testing.assert_close(log_p, prior - evidence + barren)


def test_a_barren_gaussians_bad_scale_is_named():
    """Fails on 35487d2 and b7588d8 (torch's ValueError naming no node): a barren node's zero scale (a diverged
    ``log_scale``) under validation is a ``ModelSpecError`` naming the node."""
    bn = _chain(3)
    with torch.no_grad():
        bn.cpds["y2"].log_scale[1] = -float("inf")
    with pytest.raises(ModelSpecError, match="node 'y2': LinearGaussian scale must be positive and finite"):
        _sample(bn)
