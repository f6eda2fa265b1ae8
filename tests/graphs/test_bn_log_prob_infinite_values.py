"""``BayesNet.log_prob`` of rows with an infinite continuous value (hybridpgm/graphs/bn_log_prob.py ``_log_prob``).

Found by an audit: a continuous parent ``x = inf`` with an observed child ``y`` gave the child's Gaussian the mean
``inf`` and, at ``y = inf``, the log-density ``inf - inf = NaN``: the row scored NaN (with Pyro's "Encountered NaN"
warning) where its density is 0, as ``x``'s own factor says and as ``log_evidence`` (``-inf``) and ``posterior``
(``EvidenceError``: probability zero) answer.  Such a row now scores ``-inf``."""

import math

import torch

from hybridpgm.graphs import BayesNet, cpd
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)

INF = float("inf")


def _network() -> BayesNet:
    bn = BayesNet().add("a", cpd.Table([0.3, 0.7]))
    bn.add("x", cpd.LinearGaussian([0.0, 1.0], None, [1.0, 0.5], ["a"]))
    return bn.add("y", cpd.LinearGaussian([0.0, 1.0], [[2.0], [1.0]], [1.0, 0.5], ["a", "x"]))


def _by_hand(a: int, x: float, y: float) -> float:
    bn = _network()
    n = torch.distributions.Normal
    mean = bn.cpds["y"].bias[a] + bn.cpds["y"].weight[a, 0] * x
    return float(bn.cpds["a"].log_table()[a] + n(bn.cpds["x"].bias[a], bn.cpds["x"].scale[a]).log_prob(torch.tensor(x))
                 + n(mean, bn.cpds["y"].scale[a]).log_prob(torch.tensor(y)))


def test_a_row_with_an_infinite_continuous_value_scores_minus_inf(recwarn):
    """Fails on 35487d2 and b7588d8 (NaN in the rows where the child's mean is infinite too): every row with an
    infinite continuous value scores ``-inf``, without a NaN warning; the finite rows keep their scores."""
    bn = _network()
    x = torch.tensor([INF, INF, -INF, 1.0, 0.3])
    y = torch.tensor([INF, 0.0, -INF, INF, -0.7])
    got = bn.log_prob({"a": torch.tensor([0, 1, 1, 0, 1]), "x": x, "y": y}).detach()
    assert not [w for w in recwarn if "NaN" in str(w.message)], [str(w.message) for w in recwarn]
    assert got[:4].tolist() == [-INF] * 4, got
    assert math.isclose(float(got[4]), _by_hand(1, 0.3, -0.7), rel_tol=1e-6)


def test_log_prob_agrees_with_the_queries_on_those_rows():
    """Fails on 35487d2 and b7588d8 (``log_prob`` NaN): where ``log_evidence`` of a row is ``-inf`` (an infinite
    continuous value), ``log_prob`` of every completion of it is ``-inf`` too, a single example as well."""
    bn = _network()
    ev = {"x": torch.tensor([INF, 1.0]), "y": torch.tensor([INF, 0.0])}
    assert bn.log_evidence(ev)[0] == -INF
    for a in (0, 1):
        got = bn.log_prob({"a": torch.tensor([a, a]), **ev}).detach()
        assert got[0] == -INF and math.isclose(float(got[1]), _by_hand(a, 1.0, 0.0), rel_tol=1e-6), got
        assert bn.log_prob({"a": a, "x": INF, "y": INF}) == -INF
