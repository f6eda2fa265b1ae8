"""Exact MRF entropy from d log Z(beta) / d beta: brute force on the probability-space path and on a model redone
in log space, and its error for a contraction too large."""

import pytest
import torch

from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs import ising_grid
from hybridpgm.infer import mrf_exact
from hybridpgm.infer.mrf_entropy import exact_entropy
from tests.graphs.mrf_brute_force import assignments
from tests.infer.test_mrf_exact import _contractions, _frustrated


def _brute_entropy(mrf) -> torch.Tensor:
    values, _ = assignments(mrf, 1)
    log_p = mrf.score(values).log_softmax(0)  # [M, B]
    return -(log_p.exp() * log_p).sum(0)


def test_a_model_under_the_floor_keeps_its_entropy_in_log_space():
    """A batch of three 2x2 grids, the middle one frustrated (couplings 300: its shifted sum underflows, so it is
    contracted again alone in log space): every entropy is brute force's, the frustrated one's a difference of
    two numbers near 600."""
    J = torch.stack([0.3 * torch.ones(4, dtype=torch.float64), _frustrated(300.0), -0.2 * torch.ones(4,
                                                                                                 dtype=torch.float64)])
    mrf = ising_grid(2, 2, J, torch.linspace(-0.5, 0.5, 4, dtype=torch.float64).expand(3, 4))
    with _contractions() as seen:
        got = exact_entropy(mrf.factor_graph())
    assert seen == [("prob", 3, torch.float64), ("log", 1, torch.float64)]
    assert torch.allclose(got, _brute_entropy(mrf), atol=1e-10, rtol=0)


def test_too_large_a_contraction_is_refused(monkeypatch):
    monkeypatch.setattr(mrf_exact, "EXACT_MAX_BYTES", 64)
    with pytest.raises(ModelSpecError, match="EXACT_MAX_BYTES"):
        exact_entropy(ising_grid(3, 3, 0.5).factor_graph())


def test_the_entropy_under_inference_mode_is_brute_forces():
    """The entropy is a gradient of log Z; before, ``MarkovNet.distribution().entropy()`` under
    ``torch.inference_mode()`` failed (autograd cannot record there)."""
    mrf = ising_grid(2, 3, 0.4 * torch.ones(7, dtype=torch.float64),
                     torch.linspace(-0.5, 0.5, 6, dtype=torch.float64))
    with torch.inference_mode():
        got = mrf.distribution().entropy()
    assert torch.allclose(got.clone(), _brute_entropy(mrf), atol=1e-10, rtol=0)


def test_the_entropy_of_impossible_evidence_raises():
    """Found by an audit: the entropy given evidence every allowed assignment of which scores -inf was -inf."""
    from hybridpgm.errors import EvidenceError
    from tests.infer.test_mrf_exact import _impossible_triangle

    mrf, ev = _impossible_triangle()
    with pytest.raises(EvidenceError, match=r"exact entropy.*a=0, c=1"):
        mrf.distribution(evidence=ev).entropy()


@pytest.mark.parametrize("dtype, penalty", [(torch.float32, -1e30), (torch.float64, -1e30), (torch.float64, -1e300)])
def test_huge_penalties_give_the_minus_inf_entropy_or_a_named_error(dtype, penalty):
    """Found by an audit: where every allowed assignment pays a huge finite penalty, H = log Z - E[score] kept no
    digit and came back as any number (-1.5e284); that raises now, naming the model, and where some assignment
    pays none the entropy is the one of the -inf model (brute force at -1e4 in float64, exp(-1e4) = 0)."""
    from hybridpgm.graphs import MarkovNet

    def net(h, dt):
        return MarkovNet({"a": 2, "b": 2}).add_factor("ab", ["a", "b"], torch.tensor([[0.3, h], [h, -0.2]], dtype=dt))

    got = net(penalty, dtype).distribution().entropy()
    want = _brute_entropy(net(-1e4, torch.float64))
    assert torch.allclose(got.double(), want.reshape(()), atol=1e-6, rtol=0)
    ev = {"a": torch.tensor([0, -1]), "b": torch.tensor([1, -1])}  # row 0 allows only (0, 1), which pays it
    with pytest.raises(ModelSpecError, match=r"exact entropy: model\(s\) \[0\] have log Z = -1e\+[0-9]+ .*no "
                                             r"significant digit"):
        net(penalty, dtype).distribution(ev).entropy()
