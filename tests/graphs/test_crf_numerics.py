"""LinearChainCRF: float32 precision of the gradient queries, -inf scores (forbidden labels and transitions),
non-finite padding, sequences with no allowed labelling, and the docs' CRF snippet trained with plain SVI."""

import itertools
import re
from pathlib import Path

import pyro
import pytest
import torch

from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs import LinearChainCRF

INF = float("inf")


# -- float32 ---------------------------------------------------------------------------------------------
def test_float32_entropy_and_marginals_of_a_confident_crf_match_float64():
    """The forward messages grew to ~T x score (~8000): float32 marginals exceeded 1 and entropies were off by
    nats (negative for some sequences), the errors of ulp(8000) amplified by H = log Z - sum theta * marginals."""
    torch.manual_seed(0)
    u, A = 30 * torch.randn(16, 100, 10), 30 * torch.randn(10, 10)
    c32, c64 = LinearChainCRF(u, A), LinearChainCRF(u.double(), A.double())
    H32, H64 = c32.entropy(), c64.entropy()
    assert (H32.double() - H64).abs().max() < 0.05
    assert H32.min() >= 0
    m32 = c32.marginals
    assert m32.max() <= 1 + 1e-5
    assert (m32.double() - c64.marginals).abs().max() < 1e-5
    assert (c32.pairwise_marginals.double() - c64.pairwise_marginals).abs().max() < 1e-3  # counts up to 99
    torch.testing.assert_close(c32.log_partition.double(), c64.log_partition, rtol=1e-6, atol=0)


def test_float32_gradient_of_log_prob_is_the_marginals_minus_the_labels():
    torch.manual_seed(1)
    u, A = (30 * torch.randn(4, 100, 10)).requires_grad_(), 30 * torch.randn(10, 10)
    y = torch.randint(0, 10, (4, 100))
    (g,) = torch.autograd.grad(LinearChainCRF(u, A).log_prob(y).sum(), u)
    want = torch.nn.functional.one_hot(y, 10).double() - LinearChainCRF(u.double().detach(), A.double()).marginals
    assert (g.double() - want).abs().max() < 1e-4


# -- -inf scores ------------------------------------------------------------------------------------------
def _brute_force(u, A, s, e, n):
    """log Z, marginals, entropy, best labelling and every labelling's score, of one sequence of length n,
    by enumeration from the scores written out (no forward algorithm, -inf kept)."""
    L = u.shape[-1]
    ys = torch.tensor(list(itertools.product(range(L), repeat=n)), dtype=torch.long).reshape(-1, n)
    steps = torch.arange(n)
    scores = s[ys[:, 0]] + u[steps, ys].sum(-1) + A[ys[:, :-1], ys[:, 1:]].sum(-1) + e[ys[:, -1]]
    log_z = torch.logsumexp(scores, 0)
    p = torch.softmax(scores, 0)
    marg = torch.einsum("k,ktl->tl", p, torch.nn.functional.one_hot(ys, L).double())
    lp = scores - log_z
    entropy = -(p[p > 0] * lp[p > 0]).sum()
    return log_z, marg, entropy, ys[scores.argmax()], ys, scores


def _forbidding_crf(seed, validate_args=None):
    """B = 3 sequences, T = 4, L = 3 with -inf transitions (0 -> 2 and 2 -> 2, BIO-like), a -inf start (label 1),
    a -inf end (label 0), a -inf unary inside a length, and padding full of -inf, +inf and NaN."""
    g = torch.Generator().manual_seed(seed)
    u = torch.randn(3, 4, 3, generator=g, dtype=torch.double)
    A, s, e = (torch.randn(*shape, generator=g, dtype=torch.double) for shape in [(3, 3), (3,), (3,)])
    A[0, 2] = A[2, 2] = -INF
    s[1] = -INF
    e[0] = -INF
    u[0, 1, 1] = -INF
    u[1, 3] = torch.tensor([-INF, INF, float("nan")])  # padding of sequence 1 (length 3)
    u[2, 2:] = -INF                                    # padding of sequence 2 (length 2)
    lengths = torch.tensor([4, 3, 2])
    return (u, A, s, e), lengths, LinearChainCRF(u, A, s, e, lengths, validate_args=validate_args)


@pytest.mark.parametrize("validate_args", [True, False])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_minus_inf_scores_match_brute_force(seed, validate_args):
    (u, A, s, e), lengths, crf = _forbidding_crf(seed, validate_args)
    log_z, marg, ent, best = crf.log_partition, crf.marginals, crf.entropy(), crf.argmax()
    pair = crf.pairwise_marginals
    for b, n in enumerate(lengths.tolist()):
        want_z, want_m, want_h, want_best, ys, scores = _brute_force(u[b, :n], A, s, e, n)
        torch.testing.assert_close(log_z[b], want_z)
        torch.testing.assert_close(marg[b, :n], want_m)
        assert torch.equal(marg[b, n:], torch.zeros(4 - n, 3, dtype=torch.double))
        torch.testing.assert_close(ent[b], want_h)
        assert torch.equal(best[b, :n], want_best) and not best[b, n:].any()
        assert pair[b, 0, 2] == 0 and pair[b, 2, 2] == 0  # forbidden transitions are never taken
        # log_prob of every labelling (padding filled with 0): exact, -inf for the forbidden ones
        full = torch.cat([ys, ys.new_zeros(ys.shape[0], 4 - n)], 1)[:, None].expand(-1, 3, 4)
        lp = crf.log_prob(full)[:, b]
        torch.testing.assert_close(lp, scores - want_z)
        assert torch.isfinite(lp).sum() > 0 and not torch.isnan(lp).any()


def test_minus_inf_scores_give_finite_gradients_equal_to_brute_force():
    (u, A, s, e), lengths, _ = _forbidding_crf(3)
    params = [p.clone().requires_grad_() for p in (u, A, s, e)]
    crf = LinearChainCRF(*params, lengths=lengths)
    y = crf.argmax()  # an allowed labelling of each sequence
    got = torch.autograd.grad(crf.log_prob(y).sum() + crf.entropy().sum() + crf.marginals[:, :, 1].sum(), params)
    ref = 0
    for b, n in enumerate(lengths.tolist()):
        log_z, marg, ent, _, ys, scores = _brute_force(params[0][b, :n], *params[1:], n)
        match = (ys == y[b, :n]).all(-1)
        ref = ref + scores[match][0] - log_z + ent + marg[:, 1].sum()
    want = torch.autograd.grad(ref, params, allow_unused=True)
    for g, w, p in zip(got, want, params):
        assert torch.isfinite(g).all()
        w = torch.zeros_like(p) if w is None else w
        w = torch.where(torch.isfinite(w), w, 0.0)  # the reference has NaN at the non-finite padding
        torch.testing.assert_close(g, w)


def test_sampling_never_draws_a_forbidden_labelling():
    torch.manual_seed(0)
    (u, A, s, e), lengths, crf = _forbidding_crf(4)
    ys = crf.sample((4000,))
    assert torch.isfinite(crf.score(ys)).all()
    freq = torch.nn.functional.one_hot(ys, 3).double().mean(0)
    marg = crf.marginals
    se = (marg * (1 - marg) / 4000).sqrt()
    inside = (torch.arange(4) < lengths[:, None])[..., None].expand_as(marg)
    assert ((freq - marg).abs() <= 5 * se + 1e-12)[inside].all()
    assert not ys[:, 2, 2:].any()


def test_a_forbidden_transition_leaves_sequences_that_never_use_it_finite_with_validation_off():
    """-inf x 0 at the padding gave NaN (the audit's repro): sequence [2, 1] pads with 0 -> 0."""
    torch.manual_seed(0)
    u, A = torch.randn(2, 4, 3), torch.randn(3, 3)
    A[0, 0] = -INF
    y = torch.tensor([[0, 1, 2, 1], [2, 1, 0, 0]])
    lengths = torch.tensor([4, 2])
    lp = LinearChainCRF(u, A, lengths=lengths, validate_args=False).log_prob(y)
    short = LinearChainCRF(u[1:, :2], A).log_prob(y[1:, :2])
    assert torch.isfinite(lp).all()
    torch.testing.assert_close(lp[1:], short)


@pytest.mark.parametrize("validate_args", [True, False])
@pytest.mark.parametrize("pad", [-INF, INF, float("nan")])
def test_non_finite_padding_is_ignored(pad, validate_args):
    torch.manual_seed(0)
    u, A = torch.randn(2, 4, 3), torch.randn(3, 3)
    lengths = torch.tensor([4, 2])
    y = torch.tensor([[0, 1, 2, 1], [2, 1, 0, 0]])
    clean = LinearChainCRF(u, A, lengths=lengths)
    dirty_u = u.clone()
    dirty_u[1, 2:] = pad
    dirty = LinearChainCRF(dirty_u, A, lengths=lengths, validate_args=validate_args)
    torch.testing.assert_close(dirty.log_prob(y), clean.log_prob(y))
    torch.testing.assert_close(dirty.marginals, clean.marginals)
    torch.testing.assert_close(dirty.entropy(), clean.entropy())
    assert torch.equal(dirty.argmax(), clean.argmax())
    leaf = dirty_u.clone().requires_grad_()
    (g,) = torch.autograd.grad(LinearChainCRF(leaf, A, lengths=lengths, validate_args=validate_args)
                               .log_prob(y).sum(), leaf)
    assert torch.isfinite(g).all() and not g[1, 2:].any()


@pytest.mark.parametrize("where, match", [
    ("unary", r"unary log-potentials contain NaN or inf: nan at index \[1, 1, 2\]"),
    ("transition", r"transition log-potentials contain NaN or inf: inf at index \[0, 1\]"),
])
def test_nan_or_plus_inf_inside_a_length_still_raises(where, match):
    u, A = torch.zeros(2, 3, 3), torch.zeros(3, 3)
    lengths = torch.tensor([3, 2])
    if where == "unary":
        u[1, 1, 2] = float("nan")
    else:
        A[0, 1] = INF
    with pytest.raises(ModelSpecError, match=match):
        LinearChainCRF(u, A, lengths=lengths)


def _impossible(validate_args=None):
    """Sequence 1 has no allowed labelling: label 0 must follow label 1, which is forbidden at step 1."""
    u, A = torch.zeros(2, 3, 2), torch.zeros(2, 2)
    A[0, :] = -INF   # nothing follows label 0 ...
    u[1, 0, 1] = -INF  # ... and sequence 1 cannot start with label 1
    return LinearChainCRF(u, A, validate_args=validate_args)


def test_a_sequence_with_no_allowed_labelling_has_log_z_minus_inf_and_raises_with_validation_on():
    crf = _impossible()
    log_z = crf.log_partition
    assert log_z[1] == -INF and torch.isfinite(log_z[0])
    y = torch.tensor([[1, 1, 1], [0, 1, 1]])
    for query in (lambda: crf.log_prob(y), lambda: crf.marginals, lambda: crf.pairwise_marginals,
                  crf.entropy, crf.argmax, crf.sample):
        with pytest.raises(ModelSpecError, match=r"sequence at batch index \[1\] has no labelling of finite score"):
            query()
    off = _impossible(validate_args=False)
    assert off.log_partition[1] == -INF
    m = off.marginals  # the other sequence's are exact: [1, 1, 0 or 1]
    torch.testing.assert_close(m[0], torch.tensor([[0.0, 1.0], [0.0, 1.0], [0.5, 0.5]]))


# -- the docs' CRF snippet --------------------------------------------------------------------------------
def test_the_docs_crf_snippet_trains_under_plain_svi():
    """The snippet called its modules without registering them: plain SVI's param store stayed empty and the
    loss constant.  Run the snippet as the docs give it; it trains the transition matrix."""
    text = (Path(__file__).parents[2] / "docs" / "markov_nets.md").read_text(encoding="utf-8")
    blocks = [b for b in re.findall(r"^```python\n(.*?)^```", text, re.S | re.M) if "CRFHead(" in b]
    assert len(blocks) == 1
    namespace = {}
    with torch.random.fork_rng(), pyro.get_param_store().scope():
        torch.manual_seed(0)
        exec(blocks[0], namespace)
        assert any(name.startswith("tagger$$$") for name in pyro.get_param_store().keys())
    losses, head = namespace["losses"], namespace["head"]
    assert head.transition.abs().sum() > 0  # CRFHead starts from zeros
    assert losses[-1] < losses[0]


# -- mixed and half precision -------------------------------------------------------------------------------
def _long_crf_scores(dtype):
    """T = 600 steps of scores around -10 (log Z about -4800, beyond float16's stand-in for -inf, about -8188/2)."""
    g = torch.Generator().manual_seed(0)
    return (-10 + torch.randn(2, 600, 5, generator=g, dtype=torch.float64)).to(dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
def test_scores_of_another_dtype_than_the_heads_give_the_promoted_answer(dtype):
    """Found by a review: float64 scores into a float32 CRFHead raised "value cannot be converted to type float
    without overflow" (float64's -inf stand-in clamped onto float32 transitions), and float16 scores gave log Z
    = -inf and "no labelling of finite score" once a sum passed float16's stand-in; the recursion now runs in the
    promoted dtype, half precisions in float32."""
    from hybridpgm.graphs.crf import CRFHead

    torch.manual_seed(0)
    head = CRFHead(5)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_()
    unary = _long_crf_scores(dtype)
    crf = head(unary)
    reference = LinearChainCRF(unary.double(), *(p.double() for p in (head.transition, head.start, head.end)))
    log_z = crf.log_partition
    assert log_z.dtype == torch.promote_types(dtype, torch.float32)
    torch.testing.assert_close(log_z.double(), reference.log_partition, atol=0.05, rtol=0)
    y = reference.argmax()
    torch.testing.assert_close(crf.log_prob(y).double(), reference.log_prob(y), atol=2.0, rtol=0)
    assert torch.isfinite(crf.entropy()).all() and (crf.marginals.sum(-1) - 1).abs().max() < 1e-2
