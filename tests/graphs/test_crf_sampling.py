"""The backward sampling of :class:`~hybridpgm.graphs.LinearChainCRF` (:mod:`hybridpgm.graphs.crf_sampling`):
Gumbel-max draws, every step's noise drawn up front, no random call or host read a step.

The distribution checks compare the empirical frequencies of ``N`` seeded draws of each sequence with its exact
probabilities, enumerated over all :math:`L^n` labellings from the potentials themselves (float64, not through
``log_prob``), by total variation.  For ``K`` categories the Bretagnolle-Huber-Carol inequality bounds
:math:`P(\\mathrm{TV} \\geq \\delta) \\leq 2^K e^{-2N\\delta^2}`; :func:`_tv_bound` takes the :math:`\\delta`
at which that is :data:`FALSE_FAILURE` = 1e-9 per sequence (some 40 sequences are checked: a false failure
below 1e-7 over the file, for any seed).  With ``N = 40000`` and ``K <= 27`` the bound is ``delta ~ 0.021``,
about twice the typical TV of a correct sampler (0.01): a sampler that reads the transitions the wrong way round
(``A[y_t, i]`` for ``A[i, y_t]``) is off by 0.1 to 0.3 on these CRFs.
"""

import itertools
import math
import warnings

import pytest
import torch
from torch.autograd import forward_ad as fwAD

from hybridpgm.graphs import LinearChainCRF
from hybridpgm.graphs import crf_sampling

from tests.graphs.recorded_ops import RecordedOps

INF = float("inf")
FALSE_FAILURE = 1e-9
RANDOM_OPS = ("exponential", "multinomial", "rand", "uniform", "bernoulli", "normal", "random_")
ONE_DRAW = ["aten.rand.default"]


def _tv_bound(K: int, N: int) -> float:
    """The total variation a correct sampler exceeds with probability at most :data:`FALSE_FAILURE`."""
    return math.sqrt((K * math.log(2) + math.log(1 / FALSE_FAILURE)) / (2 * N))


def _exact(unary, transition, start, end, n):
    """The ``L^n`` probabilities of one sequence of length ``n`` (float64, by enumeration), labellings ordered by
    ``sum_t y_t L^t``."""
    L = unary.shape[-1]
    u, A, s, e = (x.double() for x in (unary, transition, start, end))
    scores = torch.empty(L ** n, dtype=torch.float64)
    for y in itertools.product(range(L), repeat=n):
        score = s[y[0]] + e[y[-1]] + sum(u[t, y[t]] for t in range(n)) + sum(A[y[t - 1], y[t]] for t in range(1, n))
        scores[sum(v * L ** t for t, v in enumerate(y))] = score
    return (scores - torch.logsumexp(scores, 0)).exp()


def _assert_distribution(ys, unary, transition, start, end, lengths):
    """Each sequence's draws (``ys``: ``sample_shape + batch + (T,)``) against its enumerated probabilities."""
    T, L = unary.shape[-2:]
    batch = lengths.shape
    ys = ys.reshape(-1, batch.numel(), T)
    N = ys.shape[0]
    for b in range(batch.numel()):
        index = tuple(int(i) for i in torch.unravel_index(torch.tensor(b), batch)) if batch else ()
        n = int(lengths[index])
        p = _exact(unary[index], transition[index], start[index], end[index], n)
        y = ys[:, b]
        assert bool((y[:, n:] == 0).all()), "padding is 0"
        code = (y[:, :n] * L ** torch.arange(n)).sum(-1)
        freq = torch.bincount(code, minlength=L ** n).double() / N
        assert bool((freq[p == 0] == 0).all()), f"sequence {index}: a labelling of probability 0 drawn"
        tv = 0.5 * float((freq - p).abs().sum())
        assert tv < _tv_bound(L ** n, N), (index, tv, _tv_bound(L ** n, N))


def _potentials(seed, batch, T, L, dtype, shared, forbid=True):
    """Random scores and lengths below ``T`` (padding holds NaN); with ``forbid``, -inf transitions (label ``L-1``
    can only come first, 0 never follows 0) and a -inf end score (no sequence ends in 1)."""
    g = torch.Generator().manual_seed(seed)
    unary = torch.randn(batch + (T, L), generator=g, dtype=dtype) * 1.5
    tshape = (L, L) if shared else batch + (L, L)
    transition = torch.randn(tshape, generator=g, dtype=dtype)
    start, end = torch.randn(L, generator=g, dtype=dtype), torch.randn(L, generator=g, dtype=dtype)
    if forbid:
        transition[..., :, L - 1] = -INF  # label L-1 only ever first
        transition[..., 0, 0] = -INF
        end[1] = -INF
    lengths = torch.randint(1, T + 1, batch, generator=g)
    lengths.view(-1)[0] = 1  # a sequence that may end (and start) in label L-1
    unary = torch.where((torch.arange(T) < lengths[..., None])[..., None], unary, float("nan"))
    return unary, transition.expand(batch + (L, L)), start.expand(batch + (L,)), end.expand(batch + (L,)), lengths


CASES = [  # (batch, sample_shape, shared transition, -inf scores)
    ((4,), (40000,), True, True),
    ((2, 2), (200, 200), False, True),
    ((3,), (40000,), False, False),
]


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("batch, sample_shape, shared, forbid", CASES)
@pytest.mark.parametrize("seed", range(2))
def test_draws_follow_the_enumerated_distribution(seed, batch, sample_shape, shared, forbid, dtype):
    """Masks (lengths 1..T, NaN padding), -inf transition and end scores or none, a shared or per-sequence
    transition, a 1-d or 2-d batch and ``sample_shape``, float64 and float32: every sequence's TV below the bound."""
    unary, transition, start, end, lengths = _potentials(seed, batch, 3, 3, dtype, shared, forbid)
    crf = LinearChainCRF(unary, transition, start, end, lengths=lengths)
    torch.manual_seed(seed)
    ys = crf.sample(sample_shape)
    assert ys.shape == sample_shape + batch + (3,) and ys.dtype == torch.long
    _assert_distribution(ys, unary, transition, start, end, lengths)


def test_draws_follow_the_distribution_when_the_noise_comes_a_step_at_a_time(monkeypatch):
    """A large ``sample_shape`` or label set draws the noise a few steps a call (here: one step a call, T = 4):
    the same distribution, one random call per chunk.  Before: no chunking (one ``multinomial`` a step)."""
    monkeypatch.setattr(crf_sampling, "NOISE_CHUNK_ELEMENTS", 1)
    unary, transition, start, end, lengths = _potentials(5, (3,), 4, 3, torch.float64, False)
    crf = LinearChainCRF(unary, transition, start, end, lengths=lengths)
    torch.manual_seed(5)
    with RecordedOps() as recorded:
        ys = crf.sample((40000,))
    assert [op for op in recorded.ops if any(r in op for r in RANDOM_OPS)] == ONE_DRAW * 4
    _assert_distribution(ys, unary, transition, start, end, lengths)


def test_noise_chunks():
    """All ``T`` steps in one call up to :data:`~hybridpgm.graphs.crf_sampling.NOISE_CHUNK_ELEMENTS`, else as many
    steps as fit, at least one."""
    limit = crf_sampling.NOISE_CHUNK_ELEMENTS
    assert crf_sampling.noise_chunk_steps(50, 64 * 20) == 50
    assert crf_sampling.noise_chunk_steps(512, limit // 100) == 100
    assert crf_sampling.noise_chunk_steps(7, limit * 3) == 1


@pytest.mark.parametrize("validate", [False, True])
def test_one_random_call_and_no_host_read_whatever_the_length(validate, host_reads):
    """The pass draws all ``T`` steps' noise in one ``rand`` and reads nothing on the host (a GPU would
    synchronise); with validation on, the one read is the impossible-sequence check, whatever ``T``.  Before: one
    ``multinomial`` a step (each a host read of its probabilities' validity inside torch, on a GPU)."""
    for T in (5, 40):
        crf = LinearChainCRF(torch.randn(3, T, 4), torch.randn(4, 4), lengths=torch.tensor([T, 2, T - 1]),
                             validate_args=validate)
        host_reads.clear()
        with RecordedOps() as recorded:
            crf.sample((6,))
        assert [op for op in recorded.ops if any(r in op for r in RANDOM_OPS)] == ONE_DRAW
        assert len(host_reads) == int(validate), host_reads
        assert sum("_local_scalar_dense" in op for op in recorded.ops) == int(validate)


def _seeded(crf, seed=3, shape=(50,)):
    torch.manual_seed(seed)
    return crf.sample(shape)


def test_the_same_draws_with_gradients_off_or_on_and_under_forward_mode():
    """Under ``torch.no_grad``, ``torch.inference_mode``, with potentials that require grad and with a forward-mode
    tangent on the unary scores (the in-place adds of the pass must not carry it): the same seeded draws, long,
    without a gradient or a tangent."""
    unary, transition, start, end, lengths = _potentials(2, (3,), 5, 4, torch.float32, True)
    want = _seeded(LinearChainCRF(unary, transition, start, end, lengths=lengths))
    with torch.no_grad():
        assert torch.equal(_seeded(LinearChainCRF(unary, transition, start, end, lengths=lengths)), want)
    with torch.inference_mode():
        assert torch.equal(_seeded(LinearChainCRF(unary, transition, start, end, lengths=lengths)), want)
    leaf = unary.clone().requires_grad_()
    got = _seeded(LinearChainCRF(leaf, transition.clone().requires_grad_(), start, end, lengths=lengths))
    assert torch.equal(got, want) and not got.requires_grad
    with fwAD.dual_level():
        dual = fwAD.make_dual(unary, torch.randn_like(unary))
        got = _seeded(LinearChainCRF(dual, transition, start, end, lengths=lengths, validate_args=False))
        assert torch.equal(fwAD.unpack_dual(got).primal, want) and fwAD.unpack_dual(got).tangent is None


def test_the_draws_repeat_under_a_seed_and_move_the_global_stream():
    """torch's global stream drives the draws (``sample`` takes no generator): the same seed, the same draws; the
    next call, other draws."""
    crf = LinearChainCRF(torch.randn(2, 30, 6), torch.randn(6, 6))
    torch.manual_seed(0)
    a, b = crf.sample((4,)), crf.sample((4,))
    torch.manual_seed(0)
    assert torch.equal(crf.sample((4,)), a) and not torch.equal(a, b)


@pytest.mark.parametrize("sample_shape", [(), (0,), (2, 0)])
def test_sample_shapes(sample_shape):
    """``sample_shape + batch_shape + (T,)``, the empty ones too; a batch of one sequence of one step."""
    crf = LinearChainCRF(torch.randn(2, 3, 5, 4), torch.randn(4, 4), lengths=torch.tensor([5, 1, 3]))
    assert crf.sample(sample_shape).shape == torch.Size(sample_shape) + (2, 3, 5)
    one = LinearChainCRF(torch.randn(1, 3), torch.randn(3, 3))
    assert one.sample(sample_shape).shape == torch.Size(sample_shape) + (1,)


def test_a_sequence_without_a_possible_labelling_is_named_in_one_sentence():
    """With validation on, ``sample`` of a CRF with a sequence whose every labelling meets a -inf score raises
    ``ModelSpecError`` naming it.  Before: the message read "so its sample is is undefined"."""
    from hybridpgm.errors import ModelSpecError

    crf = LinearChainCRF(torch.zeros(2, 3, 2), torch.zeros(2, 2), end=torch.tensor([[0.0, 0.0], [-INF, -INF]]))
    with pytest.raises(ModelSpecError, match=r"batch index \[1\] .* so its sample is undefined; its log_partition"):
        crf.sample()


def test_draws_under_vmap_follow_each_crfs_distribution():
    """``torch.func.vmap(..., randomness="different")`` over the unary scores (and "same"): each CRF's draws follow
    its own enumerated distribution.  The noise is a factory call and out-of-place adds: an in-place draw into an
    unbatched tensor is refused by vmap ("Cannot ask for different inplace randomness"); and no op of the pass
    falls back to vmap's slow loop, which warns (``clamp_`` would: "There is a performance drop ...")."""
    unary, transition, start, end, lengths = _potentials(7, (2,), 3, 3, torch.float64, True, forbid=False)
    unary = unary.nan_to_num()  # full lengths below: no padding
    draw = torch.func.vmap(lambda u: LinearChainCRF(u, transition[0], start[0], end[0], validate_args=False)
                           .sample((40000,)), randomness="different")
    torch.manual_seed(7)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ys = draw(unary)
    assert ys.shape == (2, 40000, 3)
    full = torch.full((2,), 3)
    _assert_distribution(ys.transpose(0, 1), unary, transition, start, end, full)
    same = torch.func.vmap(lambda u: LinearChainCRF(u, transition[0], start[0], end[0], validate_args=False)
                           .sample((4,)), randomness="same")(unary)
    assert same.shape == (2, 4, 3)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("zero", ["everywhere", "on the possible labels"])
def test_a_uniform_of_zero_draws_no_forbidden_label(zero, dtype, monkeypatch):
    """:func:`torch.rand` draws ``U = 0`` (with probability 2^-24 an element in float32 on a CPU: some 2 of the
    4e7 uniforms of ``B=16, T=512, L=50, sample_shape=(100,)``); its noise ``-log(-log U)`` was -inf, and where the
    possible labels of a step drew it a forbidden label won the argmax: a labelling of probability 0.  Here the
    uniforms are 0 everywhere, or on the possible labels only, of a CRF with one possible labelling: it is drawn
    every time.  Before: label 0, forbidden, was drawn (``log_prob`` -inf)."""
    L, T = 3, 4
    transition = torch.full((L, L), -INF, dtype=dtype)
    transition[1, 2] = transition[2, 1] = 0.0  # label 0 is never possible: the one labelling is 1, 2, 1, ...
    start = torch.tensor([-INF, 0.0, -INF], dtype=dtype)
    lengths = torch.tensor([4, 1, 3])
    crf = LinearChainCRF(torch.randn(3, T, L, dtype=dtype), transition, start, lengths=lengths)
    rand = torch.rand

    def zeros(*args, **kwargs):
        u = rand(*args, **kwargs)
        return u.zero_() if zero == "everywhere" else u.index_fill_(-1, torch.tensor([1, 2]), 0.0)

    monkeypatch.setattr(torch, "rand", zeros)
    ys = crf.sample((5,))
    want = torch.where(torch.arange(T) < lengths[:, None], torch.tensor([1, 2, 1, 2]), 0)
    assert torch.equal(ys, want.expand(5, 3, T)), ys
    assert bool(torch.isfinite(crf.log_prob(ys)).all())
