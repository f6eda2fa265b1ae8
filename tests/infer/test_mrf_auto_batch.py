"""A row's exact answer does not depend on its batch: ``"auto"`` decides from one model, and a batch over
:data:`~hybridpgm.infer.mrf_exact.EXACT_MAX_BYTES` is contracted in chunks of rows (:mod:`hybridpgm.infer.mrf_rows`).

Found by an audit (audit_batch2 finding 1): ``exact_is_cheap`` checked the memory limit against the whole evidence
batch, so an 18x18 spin glass row alone got the exact MAP (score 628.7) and the same row in a batch of 300 got
max-product BP's (56.9; 149 of 324 variables different), and ``sample()`` switched from exact draws to Gibbs alike.
Here the limit is lowered so that a 5x5 grid (64 elements per model, 512 bytes in float64) shows the same.
"""

import contextlib
import math
from unittest import mock

import pytest
import torch
from scipy import stats

from hybridpgm.errors import EvidenceError, ModelSpecError
from hybridpgm.graphs import MarkovNet, ising_grid
from hybridpgm.graphs.contraction import ContractionPlan
from hybridpgm.infer import mrf_exact
from tests.graphs.mrf_brute_force import assignments

#: a 5x5 model's largest intermediate (64 elements) in float64 is 512 bytes: 8 models per contraction
LIMIT = 8 * 512


@contextlib.contextmanager
def _contractions():
    """``[(semiring, rows)]`` of every contraction the MRF plans run (a spy on :class:`ContractionPlan`)."""
    seen, real = [], ContractionPlan.__call__

    def spy(plan, operands, semiring="log", step_args=None):
        seen.append((semiring, operands[0].shape[0]))
        return real(plan, operands, semiring, step_args)

    with mock.patch.object(ContractionPlan, "__call__", spy):
        yield seen


def _spin_glass_tables(batch: tuple = (), seed: int = 0) -> tuple:
    """The audit's couplings ``batch + (40,)`` and fields ``batch + (25,)`` of a 5x5 grid, float64: 1.5 N(0, 1)
    and 0.3 N(0, 1)."""
    g = torch.Generator().manual_seed(seed)
    return (1.5 * torch.randn(batch + (40,), generator=g, dtype=torch.float64),
            0.3 * torch.randn(batch + (25,), generator=g, dtype=torch.float64))


def _spin_glass(batch: tuple = (), dtype=torch.float64, seed: int = 0) -> MarkovNet:
    """The audit's model, 5x5 (seed 0: max-product BP's MAP scores -0.62, the exact MAP 42.68)."""
    J, h = _spin_glass_tables(batch, seed)
    return ising_grid(5, 5, coupling=J.to(dtype), field=h.to(dtype))


def _unobserved(mrf: MarkovNet, rows: int) -> dict:
    """Evidence of ``rows`` rows that observes nothing: every row is the same model."""
    return {next(iter(mrf.cards)): torch.full((rows,), -1, dtype=torch.long)}


def test_row_chunks_split_a_batch_evenly():
    from hybridpgm.infer.mrf_rows import row_chunks

    assert row_chunks(20, 8) == [slice(0, 7), slice(7, 14), slice(14, 20)]
    assert row_chunks(16, 8) == [slice(0, 8), slice(8, 16)]
    assert row_chunks(3, 8) == [slice(0, 3)]
    assert row_chunks(5, 1) == [slice(i, i + 1) for i in range(5)]
    assert row_chunks(10, 4) == [slice(0, 4), slice(4, 7), slice(7, 10)]
    assert row_chunks(300, 256) == [slice(0, 150), slice(150, 300)]


def test_auto_map_of_a_row_is_the_exact_map_in_any_batch(monkeypatch):
    """Fails before: the batch of 20 identical rows was over the limit, so ``"auto"`` took max-product BP for all
    of them (score -0.62 instead of 42.68).  Now every row gets the row's exact MAP, in three contractions of
    7, 7 and 6 rows."""
    mrf = _spin_glass()
    monkeypatch.setattr(mrf_exact, "EXACT_MAX_BYTES", LIMIT)
    alone = mrf.map_assignment(_unobserved(mrf, 1))
    assert mrf_exact.exact_is_cheap(mrf.factor_graph(_unobserved(mrf, 20)))
    with _contractions() as seen:
        batch = mrf.map_assignment(_unobserved(mrf, 20))
    assert seen == [("max", 7), ("max", 7), ("max", 6)]
    best = mrf.score({v: x[0] for v, x in alone.items()})
    assert float(best) == pytest.approx(42.68018385856974, abs=1e-9)
    for v in mrf.cards:
        assert torch.equal(batch[v], alone[v].expand(20)), v
    assert torch.equal(mrf.score(batch), best.expand(20))


def test_auto_map_of_each_evidence_row_is_its_own_exact_map(monkeypatch):
    """A batch of 12 models (own couplings) under 12 different evidence rows: in chunks of at most 8 rows, each
    row's ``"auto"`` MAP is the one it gets asked alone (its own couplings and evidence).  Fails before (BP for the
    batch)."""
    J, h = _spin_glass_tables(batch=(12,), seed=1)
    mrf = ising_grid(5, 5, coupling=J, field=h)
    g = torch.Generator().manual_seed(1)
    ev = {v: torch.randint(-1, 2, (12,), generator=g) for v in ("x_0_0", "x_2_2", "x_4_1")}
    monkeypatch.setattr(mrf_exact, "EXACT_MAX_BYTES", LIMIT)
    with _contractions() as seen:
        batch = mrf.map_assignment(ev)
    assert seen == [("max", 6), ("max", 6)]
    for b in range(12):
        alone = ising_grid(5, 5, coupling=J[b], field=h[b]).map_assignment({v: e[b] for v, e in ev.items()})
        assert all(torch.equal(batch[v][b], alone[v]) for v in mrf.cards), b


def test_a_batch_that_fits_is_one_contraction_as_before():
    """Guard (passes before and after): under the default limit a batch of 20 is one contraction of 20 rows for
    every exact query, with the answers of the chunked run of the next test."""
    mrf = _spin_glass()
    ev = _unobserved(mrf, 20)
    with _contractions() as seen:
        mrf.log_partition(evidence=ev)
        mrf.marginals(evidence=ev)
        mrf.map_assignment(ev)
        mrf.sample(3, evidence=ev, generator=torch.Generator().manual_seed(0))
    assert seen == [("prob", 20), ("prob", 20), ("max", 20), ("prob", 20)]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_log_z_marginals_and_map_in_chunks_are_those_of_one_contraction(monkeypatch, dtype):
    """Fails before: over the limit every exact query raised ModelSpecError.  Now the batch of 20 models (own
    couplings, evidence on two variables) runs in chunks of at most 8 rows (float32 counted as float64, which it
    may run in) and gives one contraction's answers."""
    mrf = _spin_glass(batch=(20,), dtype=dtype, seed=2)
    g = torch.Generator().manual_seed(2)
    ev = {v: torch.randint(-1, 2, (20,), generator=g) for v in ("x_1_1", "x_3_4")}
    whole = mrf.log_partition(evidence=ev), mrf.marginals(evidence=ev), mrf.map_assignment(ev, method="exact")
    monkeypatch.setattr(mrf_exact, "EXACT_MAX_BYTES", LIMIT)
    with _contractions() as seen:
        log_z, marg, x = mrf.log_partition(evidence=ev), mrf.marginals(evidence=ev), mrf.map_assignment(ev)
    assert seen == [(s, n) for s in ("prob", "prob", "max") for n in (7, 7, 6)]
    tol = 1e-12 if dtype == torch.float64 else 1e-6
    assert torch.allclose(log_z, whole[0], rtol=0, atol=tol)
    for v in mrf.cards:
        assert torch.allclose(marg[v], whole[1][v], rtol=0, atol=tol)
        assert torch.equal(x[v], whole[2][v])


def test_auto_samples_of_each_row_follow_its_exact_law_in_chunks(monkeypatch):
    """Fails before: over the limit ``sample()``'s ``"auto"`` took 100-sweep Gibbs (no contraction).  Now the
    draws come from the exact sampler in chunks of at most 4 rows, and every row's draws follow its exact
    conditional: a chi-square test against brute force per row (2^8 states given one observed variable; seeded)."""
    H = 3
    g = torch.Generator().manual_seed(3)
    mrf = ising_grid(H, H, 0.8 * torch.randn(10, 12, generator=g, dtype=torch.float64),
                     0.5 * torch.randn(10, 9, generator=g, dtype=torch.float64))
    fg = mrf.factor_graph()
    per_model = mrf_exact._structure(fg).plan.largest_intermediate * 8
    monkeypatch.setattr(mrf_exact, "EXACT_MAX_BYTES", 4 * per_model)
    ev = {"x_1_1": torch.tensor([0, 1] * 5)}
    n = 4000
    with _contractions() as seen:
        x = mrf.sample(n, evidence=ev, generator=torch.Generator().manual_seed(0))
    assert seen == [("prob", 4), ("prob", 3), ("prob", 3)]
    joint, rows = assignments(mrf, 1)
    score = mrf.score(joint)  # [512, 10]
    names = list(mrf.cards)
    centre = names.index("x_1_1")
    code = sum(x[v] * 2 ** (len(names) - 1 - i) for i, v in enumerate(names))  # [n, 10], row-major like ``rows``
    for b in range(10):
        allowed = rows[:, centre] == ev["x_1_1"][b]
        p = torch.softmax(score[allowed, b], 0)
        states = allowed.nonzero().flatten()
        counts = torch.stack([(code[:, b] == s).sum() for s in states]).double()
        assert int(counts.sum()) == n, b  # no draw breaks the evidence
        keep = p * n >= 5  # the chi-square approximation's cells; the rest pooled
        observed = torch.cat([counts[keep], counts[~keep].sum(0, keepdim=True)])
        expected = torch.cat([p[keep] * n, (p[~keep] * n).sum(0, keepdim=True)])
        if float(expected[-1]) < 5:
            observed, expected = observed[:-1], expected[:-1] * (n / float(expected[:-1].sum()))
        assert stats.chisquare(observed.numpy(), expected.numpy()).pvalue > 1e-4, b


def test_a_gradient_through_a_batch_over_the_limit_raises_and_no_grad_runs_in_chunks(monkeypatch):
    """With potentials that require a gradient, log Z and the marginals of the whole batch must stay one
    contraction (autograd would keep every chunk's intermediates): over the limit they raise, naming the
    gradient; under ``torch.no_grad()`` the same queries run in chunks (fails before: they raised there too)."""
    J = (1.5 * torch.randn(16, 40, dtype=torch.float64)).requires_grad_()
    mrf = ising_grid(5, 5, coupling=J)
    monkeypatch.setattr(mrf_exact, "EXACT_MAX_BYTES", LIMIT)
    message = r"for 16 model\(s\)\), more than .*EXACT_MAX_BYTES.*differentiates through the whole batch"
    with pytest.raises(ModelSpecError, match=message):
        mrf.log_partition()
    with pytest.raises(ModelSpecError, match=message):
        mrf.marginals()
    with torch.no_grad(), _contractions() as seen:
        mrf.log_partition()
        mrf.marginals()
    assert seen == [("prob", 8), ("prob", 8)] * 2


def test_evidence_of_probability_zero_in_a_later_chunk_is_named_by_its_batch_row(monkeypatch):
    """Row 5 of six (its chunk's row 1) has evidence of probability zero: the errors of the marginals, the MAP and
    the samples name model 5, not the chunk's row; log Z is -inf there and finite (``finfo.min``) elsewhere."""
    neg = torch.finfo(torch.float64).min
    differ = torch.tensor([[neg, 0.0], [0.0, neg]], dtype=torch.float64)
    mrf = MarkovNet({"a": 2, "b": 2, "c": 2})
    for name, scope in (("ab", "ab"), ("bc", "bc"), ("ac", "ac"), ("ab2", "ab"), ("bc2", "bc")):
        mrf.add_factor(name, list(scope), differ)
    ev = {"a": torch.tensor([0, 0, 0, 0, 0, 0]), "c": torch.tensor([0, 0, 0, 0, 0, 1])}
    per_model = mrf_exact._structure(mrf.factor_graph(ev)).plan.largest_intermediate * 8
    monkeypatch.setattr(mrf_exact, "EXACT_MAX_BYTES", 4 * per_model)
    with _contractions() as seen:
        log_z = mrf.log_partition(evidence=ev)
    assert seen == [("prob", 3), ("log", 3)] * 2  # each chunk, all its rows under the floor redone in log space
    assert log_z[5] == -math.inf and bool(log_z[:5].isfinite().all())
    for query in (lambda: mrf.marginals(evidence=ev), lambda: mrf.map_assignment(ev, method="exact"),
                  lambda: mrf.sample(2, evidence=ev)):
        with pytest.raises(EvidenceError, match=r"model\(s\) \[5\]"):
            query()


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode"])
def test_marginals_of_a_graph_compiled_with_grad_run_in_chunks_without_grad(monkeypatch, mode):
    """Fails before: ``exact_marginals(fg)`` of a factor graph compiled with grad on (its tables require a
    gradient) read the grad mode inside ``with_autograd``'s ``enable_grad``, so under ``torch.no_grad()`` or
    ``inference_mode`` it raised "differentiates through the whole batch" where ``exact_log_partition(fg)`` ran in
    chunks.  Now both run in two chunks of 8 and give the whole batch's answers, as plain tensors."""
    J = (1.5 * torch.randn(16, 40, generator=torch.Generator().manual_seed(4), dtype=torch.float64)).requires_grad_()
    fg = ising_grid(5, 5, coupling=J).factor_graph()
    log_z, marg = mrf_exact.exact_marginals(fg)
    monkeypatch.setattr(mrf_exact, "EXACT_MAX_BYTES", LIMIT)
    with torch.no_grad() if mode == "no_grad" else torch.inference_mode(), _contractions() as seen:
        got = [t.clone() for t in (mrf_exact.exact_log_partition(fg), *mrf_exact.exact_marginals(fg))]
    assert seen == [("prob", 8), ("prob", 8)] * 2
    for g, want in zip(got, (log_z, log_z, marg)):
        assert not g.requires_grad and g.grad_fn is None
        assert torch.equal(g, want.detach())
    with pytest.raises(ModelSpecError, match="differentiates through the whole batch"):
        mrf_exact.exact_marginals(fg)  # autograd on: one contraction, over the limit


def test_marginals_under_no_grad_are_plain_tensors_equal_to_the_differentiable_ones():
    """Fails before: under ``torch.no_grad()`` the marginals of tables that require a gradient came back requiring
    one, holding a double-backward graph (``create_graph`` was decided inside ``with_autograd``).  Now they are
    plain tensors with the same bits (the batch fits: one contraction)."""
    J = (1.5 * torch.randn(4, 40, generator=torch.Generator().manual_seed(5), dtype=torch.float64)).requires_grad_()
    fg = ising_grid(5, 5, coupling=J).factor_graph()
    want = mrf_exact.exact_marginals(fg)
    assert all(w.requires_grad for w in want)
    with torch.no_grad():
        got = mrf_exact.exact_marginals(fg)
    for g, w in zip(got, want):
        assert not g.requires_grad and g.grad_fn is None
        assert torch.equal(g, w.detach())


@pytest.mark.parametrize("rows", [1, 2])
def test_one_model_over_the_limit_with_grad_is_named_as_one_model_not_the_batch(monkeypatch, rows):
    """Fails before for two rows: one 5x5 model (512 bytes) over a limit of 511 with couplings that require a
    gradient raised "... for 2 model(s) ...; this query differentiates through the whole batch ..., use ... fewer
    models per call", which cannot help.  Now the error names one model's contraction and the remedies that do
    (an approximate method, a higher limit), whatever the batch and grad mode; for one row it no longer advises
    fewer models (fails before too)."""
    J = (1.5 * torch.randn(rows, 40, dtype=torch.float64)).requires_grad_()
    monkeypatch.setattr(mrf_exact, "EXACT_MAX_BYTES", 511)
    message = (r"needs an intermediate of 64 elements \(4.77e-07 GiB for 1 model\(s\)\), more than .*EXACT_MAX_BYTES"
               r".*one model's contraction alone is over the limit.*method='bp'.*'gibbs'.*raise the limit$")
    for query in (lambda m: m.log_partition(), lambda m: m.marginals(), lambda m: m.distribution().entropy()):
        for mrf in (ising_grid(5, 5, coupling=J), ising_grid(5, 5, coupling=J.detach())):
            with pytest.raises(ModelSpecError, match=message) as err:
                query(mrf)
            assert "whole batch" not in str(err.value) and "fewer models" not in str(err.value)


def test_a_batch_over_the_limit_with_grad_says_one_model_fits_and_how_to_run_in_chunks(monkeypatch):
    """Fails before (the message did not say that one model fits nor name ``torch.no_grad()``): 16 models that
    require a gradient, 8 of which fit, raise naming the batch, the one model's size and the remedies."""
    J = (1.5 * torch.randn(16, 40, dtype=torch.float64)).requires_grad_()
    monkeypatch.setattr(mrf_exact, "EXACT_MAX_BYTES", LIMIT)
    message = (r"\(7.63e-06 GiB for 16 model\(s\)\), more than .*EXACT_MAX_BYTES \(3.81e-06 GiB\); one model fits "
               r"\(4.77e-07 GiB\), but this query differentiates through the whole batch.*torch\.no_grad\(\) \(chunks "
               r"of rows\).*fewer models per call")
    with pytest.raises(ModelSpecError, match=message):
        ising_grid(5, 5, coupling=J).log_partition()
