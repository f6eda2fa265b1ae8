"""Memory and answers of :class:`LinearChainCRF`'s marginals, pairwise marginals and entropy where no graph is
wanted (``torch.no_grad()``, ``torch.inference_mode()``, or no potential requiring grad).

Before, they were ``torch.autograd.grad`` of the forward recursion's log Z in every case, and its graph saved every
step's ``L x L`` weights: ``B * T * L * L`` floats alive at once (1.9 GB of peak memory for the marginals at
``B = 16, T = 1000, L = 100`` in float32, for 6 MB of marginals).  The explicit forward-backward recursion keeps
``O(B * T * L)``.  The tensors alive at once are counted by a dispatch mode (every storage an operation creates,
until it is freed), independent of the allocator and the machine.
"""

import itertools
import weakref

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from hybridpgm.graphs import LinearChainCRF
from hybridpgm.graphs.crf_recursions import forward

B, T, L = 2, 100, 64
QUERIES = {
    "marginals": lambda crf: crf.marginals,
    "pairwise_marginals": lambda crf: crf.pairwise_marginals,
    "entropy": lambda crf: crf.entropy(),
}


class LiveBytes(TorchDispatchMode):
    """The most bytes of storage created by the operations run inside it that are alive at once (``.peak``)."""

    def __init__(self):
        super().__init__()
        self.live = self.peak = 0
        self.seen = set()

    def _freed(self, key, size):
        self.live -= size
        self.seen.discard(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        for t in torch.utils._pytree.tree_leaves(result):
            if isinstance(t, torch.Tensor):
                try:
                    storage = t.untyped_storage()
                    key, size = storage.data_ptr(), storage.nbytes()
                except (RuntimeError, NotImplementedError):  # a wrapper (torch.func): its storage is its inner one's
                    continue
                if size and key not in self.seen:
                    self.seen.add(key)
                    self.live += size
                    self.peak = max(self.peak, self.live)
                    weakref.finalize(storage, self._freed, key, size)
        return result


def _crf(dtype=torch.float32, requires_grad=False, seed=0):
    g = torch.Generator().manual_seed(seed)
    unary = torch.randn(B, T, L, generator=g, dtype=dtype).requires_grad_(requires_grad)
    transition = torch.randn(L, L, generator=g, dtype=dtype).requires_grad_(requires_grad)
    return LinearChainCRF(unary, transition, lengths=torch.tensor([T, T // 2]))


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode", "nothing_requires_grad"])
@pytest.mark.parametrize("name", list(QUERIES))
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_without_a_graph_no_step_weights_are_kept(mode, name, dtype):
    """Audit (memory): every step's ``L x L`` weights were alive at once, ``B T L^2`` floats (108,000 here, the
    peak was 1.1 to 1.2 times that); the forward-backward recursion holds at most a quarter of it (``O(B T L)``:
    the messages, the marginals, a step's weights)."""
    crf = _crf(dtype, requires_grad=mode != "nothing_requires_grad")
    context = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode}.get(mode, torch.enable_grad)
    with context(), LiveBytes() as seen:
        out = QUERIES[name](crf)
    assert not out.requires_grad
    weights = B * T * L * L * dtype.itemsize
    assert seen.peak < weights / 4, seen.peak / weights


@pytest.mark.parametrize("mode", ["forward_ad", "vmap"])
@pytest.mark.parametrize("name", list(QUERIES))
def test_forward_mode_and_vmap_keep_no_step_weights(mode, name):
    """Forward mode and ``vmap`` record no graph: no step's weights are kept for one (review: the list of every
    step's weights was filled under them, 2.2 and 1.1 times ``B T L^2`` floats).  Forward mode carries a tangent
    beside each value, twice what no graph keeps: under half of ``B T L^2`` (0.27 measured), a quarter under vmap."""
    from torch.autograd import forward_ad

    g = torch.Generator().manual_seed(0)
    unary, transition = torch.randn(B, T, L, generator=g), torch.randn(L, L, generator=g)
    with LiveBytes() as seen:
        if mode == "vmap":
            torch.func.vmap(lambda u: QUERIES[name](LinearChainCRF(u[None], transition, validate_args=False)))(unary)
        else:
            with forward_ad.dual_level():
                dual = forward_ad.make_dual(transition, torch.randn(L, L, generator=g))
                QUERIES[name](LinearChainCRF(unary, dual, lengths=torch.tensor([T, T // 2])))
    assert seen.peak < B * T * L * L * 4 / (2 if mode == "forward_ad" else 4), seen.peak / (B * T * L * L * 4)


@pytest.mark.parametrize("name", list(QUERIES))
def test_with_a_graph_the_step_weights_are_kept_once(name):
    """Guard: with a graph the derivatives of the outputs need each step's weights, and they are those the forward
    recursion's graph keeps, not a second copy (a forward-backward that computed its own held twice as much)."""
    crf = _crf(requires_grad=True)
    with LiveBytes() as seen:
        out = QUERIES[name](crf)
    assert out.requires_grad
    assert seen.peak < 1.5 * B * T * L * L * 4, seen.peak / (B * T * L * L * 4)


def _brute_force(unary, transition, start, end, n):
    """Unary marginals (``n x L``), expected transition counts (``L x L``) and entropy of one sequence of length
    ``n``, by enumerating its ``L^n`` labellings from the scores written out (no recursion)."""
    labels = unary.shape[-1]
    ys = torch.tensor(list(itertools.product(range(labels), repeat=n)), dtype=torch.long)
    score = start[ys[:, 0]] + unary[torch.arange(n), ys].sum(-1) + transition[ys[:, :-1], ys[:, 1:]].sum(-1) + end[
        ys[:, -1]]
    log_p = score.log_softmax(0)
    p = log_p.exp()
    onehot = torch.nn.functional.one_hot(ys, labels).to(p.dtype)
    marginals = torch.einsum("k,ktl->tl", p, onehot)
    pairwise = torch.einsum("k,kti,ktj->ij", p, onehot[:, :-1], onehot[:, 1:])
    entropy = -(torch.where(p > 0, p * log_p, 0.0)).sum()
    return marginals, pairwise, entropy


def _small(seed=3):
    """float64 scores of 3 sequences (lengths 4, 2, 1) of 3 labels, padding holding NaN, a forbidden pair, a
    forbidden label and a forbidden start."""
    g = torch.Generator().manual_seed(seed)
    unary = torch.randn(3, 4, 3, generator=g, dtype=torch.float64)
    transition, start, end = (torch.randn(s, generator=g, dtype=torch.float64) for s in ((3, 3), (3,), (3,)))
    transition[0, 1] = float("-inf")
    unary[0, 2, 1] = float("-inf")
    start[2] = float("-inf")
    unary[1, 2:] = float("nan")
    return unary, transition, start, end, torch.tensor([4, 2, 1])


@pytest.mark.parametrize("mode", ["no_grad", "inference_mode", "nothing_requires_grad"])
def test_without_a_graph_the_answers_are_those_of_brute_force_enumeration(mode):
    """Guard: the marginals, expected transition counts and entropies without a graph equal those of every
    labelling enumerated (float64, 1e-12), padding (NaN there) and -inf scores included."""
    unary, transition, start, end, lengths = _small()
    context = {"no_grad": torch.no_grad, "inference_mode": torch.inference_mode}.get(mode, torch.enable_grad)
    with context():
        crf = LinearChainCRF(unary, transition, start, end, lengths)
        got = crf.marginals, crf.pairwise_marginals, crf.entropy()
    for b, n in enumerate(lengths.tolist()):
        marginals, pairwise, entropy = _brute_force(unary[b, :n], transition, start, end, n)
        torch.testing.assert_close(got[0][b, :n], marginals, rtol=0, atol=1e-12)
        assert torch.equal(got[0][b, n:], torch.zeros_like(got[0][b, n:]))
        torch.testing.assert_close(got[1][b], pairwise, rtol=0, atol=1e-12)
        torch.testing.assert_close(got[2][b], entropy, rtol=0, atol=1e-12)


def test_without_a_graph_the_answers_are_the_gradients_of_log_z():
    """Guard: on 4 sequences of up to 40 steps and 5 labels (lengths 40, 31, 7, 1; -inf scores; float64) the
    marginals, expected transition counts and entropy equal the gradients of the forward recursion's log Z taken by
    ``torch.autograd.grad`` (and log Z minus the expected score) to 1e-12."""
    g = torch.Generator().manual_seed(5)
    unary = 3 * torch.randn(4, 40, 5, generator=g, dtype=torch.float64)
    transition, start, end = (2 * torch.randn(s, generator=g, dtype=torch.float64) for s in ((5, 5), (5,), (5,)))
    transition[1, 3] = transition[4, 0] = float("-inf")
    unary[1, 5, 2] = float("-inf")
    lengths = torch.tensor([40, 31, 7, 1])
    with torch.no_grad():
        crf = LinearChainCRF(unary, transition, start, end, lengths)
        got = crf.marginals, crf.pairwise_marginals, crf.entropy()
    batched = [unary, transition.expand(4, 5, 5), start.expand(4, 5), end.expand(4, 5)]
    leaves = [p.clone().requires_grad_() for p in batched]
    log_z = forward(*leaves, lengths, wide=True)[0]
    grads = torch.autograd.grad(log_z.sum(), leaves)  # per sequence: d log Z_b / d (its potentials)
    inside = (torch.arange(40) < lengths[:, None])[..., None]
    # E[s] = sum_theta theta * d log Z / d theta, a -inf score (probability 0) and padding left out
    finite = [torch.where(inside, unary, 0.0)] + batched[1:]
    expected = sum((torch.where(d > 0, p, 0.0) * d).flatten(1).sum(-1) for p, d in zip(finite, grads))
    torch.testing.assert_close(got[0], grads[0], rtol=0, atol=1e-12)
    torch.testing.assert_close(got[1], grads[1], rtol=0, atol=1e-12)
    torch.testing.assert_close(got[2], log_z.detach() - expected, rtol=0, atol=1e-12)
