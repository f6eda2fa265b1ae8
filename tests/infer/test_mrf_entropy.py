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
    # given a = 0 in row 0, b = 0 pays the penalty in bc and b = 1 in ab: every assignment pays it (no table's
    # maximum over the allowed states does, so centring the tables cannot take it out)
    conflicting = (MarkovNet({"a": 2, "b": 2, "c": 2})
                   .add_factor("ab", ["a", "b"], torch.tensor([[0.3, penalty], [0.1, -0.2]], dtype=dtype))
                   .add_factor("bc", ["b", "c"], torch.tensor([[penalty, penalty], [0.2, 0.0]], dtype=dtype)))
    ev = {"a": torch.tensor([0, -1])}
    with pytest.raises(ModelSpecError, match=r"exact entropy: model\(s\) \[0\] have log Z = -1e\+[0-9]+ .*no "
                                             r"significant digit"):
        conflicting.distribution(ev).entropy()


#: a 5x5 grid's largest intermediate (64 elements) in float64 is 512 bytes: 8 models per contraction
_EIGHT_MODELS = 8 * 512


def _grid_batch(rows: int, seed: int, requires_grad: bool = False):
    """A batch of ``rows`` 5x5 grids with couplings 1.5 N(0, 1) and fields 0.3 N(0, 1) of their own (float64), and
    evidence on two variables (``-1``: unobserved in that row)."""
    g = torch.Generator().manual_seed(seed)
    J = (1.5 * torch.randn(rows, 40, generator=g, dtype=torch.float64)).requires_grad_(requires_grad)
    h = 0.3 * torch.randn(rows, 25, generator=g, dtype=torch.float64)
    ev = {v: torch.randint(-1, 2, (rows,), generator=g) for v in ("x_1_1", "x_3_4")}
    return J, h, ev


def test_the_entropy_of_a_batch_that_fits_is_one_contraction_of_brute_force_values():
    """Guard (passes before and after): the entropy of 20 models (3x4 grids, 4096 states each) that fit is one
    contraction of 20 rows, the brute-force entropies given each row's evidence; the old and the new code give it
    bit for bit (audit22/fix_mrf_exact bitident.py), and a chunked run gives one contraction's bits (next test)."""
    g = torch.Generator().manual_seed(5)
    mrf = ising_grid(3, 4, 1.5 * torch.randn(20, 17, generator=g, dtype=torch.float64),
                     0.3 * torch.randn(20, 12, generator=g, dtype=torch.float64))
    ev = {v: torch.randint(-1, 2, (20,), generator=g) for v in ("x_1_1", "x_2_3")}
    with _contractions() as seen:
        got = exact_entropy(mrf.factor_graph(ev))
    assert seen == [("prob", 20, torch.float64)]
    assert torch.allclose(got, _brute_entropy_given(mrf, ev), atol=1e-10, rtol=0)


def _brute_entropy_given(mrf, ev) -> torch.Tensor:
    """Brute-force entropy of each row given its evidence (``[B]``)."""
    values, rows = assignments(mrf, 1)
    score = mrf.score(values)  # [M, B]
    names = list(mrf.cards)
    for v, e in ev.items():
        allowed = (rows[:, names.index(v), None] == e) | (e == -1)  # [M, B]
        score = score.masked_fill(~allowed, -torch.inf)
    log_p = score.log_softmax(0)
    return -(log_p.exp() * log_p.nan_to_num(0.0)).sum(0)


@pytest.mark.parametrize("query", ["exact_entropy", "distribution"])
def test_the_entropy_of_a_batch_over_the_limit_runs_in_chunks_with_each_rows_answer(monkeypatch, query):
    """Fails before: a batch that ``exact_log_partition`` and ``exact_marginals`` ran in chunks raised
    ModelSpecError ("differentiates through the whole batch") in the entropy, whose scale :math:`\\beta` always
    required a gradient.  Now 20 models run in chunks of 7, 7 and 6 rows and give the bits of one contraction
    (computed first, at the default limit) and of each row asked alone."""
    J, h, ev = _grid_batch(20, seed=5)
    mrf = ising_grid(5, 5, coupling=J, field=h)
    whole = exact_entropy(mrf.factor_graph(ev))
    alone = torch.stack([exact_entropy(ising_grid(5, 5, coupling=J[b], field=h[b]).factor_graph(
        {v: e[b] for v, e in ev.items()})).reshape(()) for b in range(20)])
    monkeypatch.setattr(mrf_exact, "EXACT_MAX_BYTES", _EIGHT_MODELS)
    with _contractions() as seen:
        got = exact_entropy(mrf.factor_graph(ev)) if query == "exact_entropy" else mrf.distribution(ev).entropy()
    assert seen == [("prob", n, torch.float64) for n in (7, 7, 6)]
    assert torch.equal(got, whole)
    assert torch.equal(got, alone)


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_a_differentiable_entropy_over_the_limit_raises_and_without_grad_runs_in_chunks(monkeypatch, mode):
    """Couplings that require a gradient: with autograd on, the entropy must stay differentiable through the
    whole batch (one contraction), so 16 models over the limit raise, naming the batch, the one model that fits and
    ``torch.no_grad()``; under ``torch.no_grad()`` / ``inference_mode`` the same call runs in two chunks of 8 and
    equals the whole batch's answer (fails before: it raised there too)."""
    J, h, ev = _grid_batch(16, seed=6, requires_grad=True)
    whole = exact_entropy(ising_grid(5, 5, coupling=J, field=h).factor_graph(ev))
    assert whole.requires_grad
    monkeypatch.setattr(mrf_exact, "EXACT_MAX_BYTES", _EIGHT_MODELS)
    fg = ising_grid(5, 5, coupling=J, field=h).factor_graph(ev)  # compiled with grad on: its tables require it
    message = (r"for 16 model\(s\)\), more than .*EXACT_MAX_BYTES.*one model fits.*differentiates through the whole "
               r"batch.*torch\.no_grad\(\)")
    with pytest.raises(ModelSpecError, match=message):
        exact_entropy(fg)
    with torch.no_grad() if mode == "no_grad" else torch.inference_mode(), _contractions() as seen:
        got = exact_entropy(fg).clone()
    assert seen == [("prob", 8, torch.float64)] * 2
    assert not got.requires_grad
    assert torch.equal(got, whole.detach())


def test_an_entropy_error_in_a_later_chunk_names_its_batch_row(monkeypatch):
    """Chunks of 3 rows: row 4 (its chunk's row 1) has evidence of probability zero, and the error names model 4,
    not the chunk's row (the check runs once, on the joined log Z)."""
    from hybridpgm.errors import EvidenceError
    from tests.infer.test_mrf_exact import _impossible_triangle

    mrf, _ = _impossible_triangle(torch.float64)
    ev = {"a": torch.zeros(6, dtype=torch.long), "c": torch.tensor([0, 0, 0, 0, 1, 0])}
    per_model = mrf_exact._structure(mrf.factor_graph(ev)).plan.largest_intermediate * 8
    monkeypatch.setattr(mrf_exact, "EXACT_MAX_BYTES", 3 * per_model)
    with pytest.raises(EvidenceError, match=r"exact entropy: the evidence of model\(s\) \[4\]"):
        exact_entropy(mrf.factor_graph(ev))


def test_bfloat16_potentials_under_autocast_are_chunked_as_the_float32_they_run_in(monkeypatch):
    """Under autocast the contraction runs in float32 (counted as float64, 512 bytes a 5x5 model): the chunks are
    sized for that, not for bfloat16's 2 bytes (which would put all 20 rows in one over-limit call that raises).
    Fails before: the entropy never ran in chunks."""
    J = (1.5 * torch.randn(20, 40, generator=torch.Generator().manual_seed(8))).bfloat16()
    fg = ising_grid(5, 5, coupling=J).factor_graph()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        whole = exact_entropy(fg)
    monkeypatch.setattr(mrf_exact, "EXACT_MAX_BYTES", _EIGHT_MODELS)
    with torch.autocast("cpu", dtype=torch.bfloat16), _contractions() as seen:
        got = exact_entropy(fg)
    assert seen == [("prob", n, torch.float32) for n in (7, 7, 6)]
    assert torch.equal(got, whole)
