"""The forward and Viterbi recursions of the linear-chain CRF against brute-force enumeration."""

import itertools

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from hybridpgm.graphs import LinearChainCRF
from hybridpgm.graphs.crf_recursions import forbidden, forward, viterbi, working


def _scores(seed, B=3, T=4, L=3):
    g = torch.Generator().manual_seed(seed)
    unary = torch.randn(B, T, L, generator=g, dtype=torch.float64)
    transition = torch.randn(L, L, generator=g, dtype=torch.float64).expand(B, L, L)
    start, end = torch.randn(B, L, generator=g, dtype=torch.float64), torch.randn(B, L, generator=g,
                                                                                dtype=torch.float64)
    return unary, transition, start, end


def _all_scores(unary, transition, start, end, n):
    """``{labelling: s(y)}`` of one sequence of length ``n``."""
    L = unary.shape[-1]
    out = {}
    for y in itertools.product(range(L), repeat=n):
        s = start[y[0]] + sum(unary[t, y[t]] for t in range(n)) + end[y[-1]]
        out[y] = s + sum(transition[y[t - 1], y[t]] for t in range(1, n))
    return out


@pytest.mark.parametrize("seed", [0, 1])
def test_forward_and_viterbi_match_enumeration_with_padding_and_a_forbidden_pair(seed):
    unary, transition, start, end = _scores(seed)
    transition = transition.clone()
    transition[:, 0, 1] = float("-inf")  # label 0 never followed by 1
    unary = unary.clone()
    lengths = torch.tensor([4, 2, 1])
    unary[1, 2:] = float("nan")  # padding may hold anything
    log_z, alphas = forward(unary, transition, start, end, lengths, keep=True)
    score, path = viterbi(unary, transition, start, end, lengths)
    assert alphas.shape == (4, 3, 3)
    for b, n in enumerate(lengths.tolist()):
        table = _all_scores(unary[b], transition[b], start[b], end[b], n)
        expected = torch.stack(list(table.values())).logsumexp(0)
        torch.testing.assert_close(log_z[b], expected)
        best = max(table, key=lambda y: float(table[y]))
        torch.testing.assert_close(score[b], table[best])
        assert tuple(path[b, :n].tolist()) == best
        assert bool((path[b, n:] == best[-1]).all())  # padding repeats the last label


def test_a_sequence_with_no_finite_labelling_has_minus_inf_log_z():
    unary, transition, start, end = _scores(2, B=1, T=2, L=2)
    transition = torch.full_like(transition, float("-inf"))
    log_z, _ = forward(unary, transition, start, end, torch.tensor([2]))
    score, _ = viterbi(unary, transition, start, end, torch.tensor([2]))
    assert log_z.item() == float("-inf") and score.item() < forbidden(torch.float64) / 2


def test_working_promotes_to_at_least_float32():
    half, double = torch.zeros(2, dtype=torch.float16), torch.zeros(2, dtype=torch.float64)
    assert working(half, None)[0].dtype == torch.float32 and working(half, None)[1] is None
    assert {t.dtype for t in working(half, double)} == {torch.float64}
    assert forbidden(torch.float32) == torch.finfo(torch.float32).min / 8


class _ElementCount(TorchDispatchMode):
    """Counts the elements of every tensor the operations inside it return (``.elements``): the work and the
    allocations of, e.g., a backward pass, independent of the machine's speed."""

    def __init__(self):
        super().__init__()
        self.elements = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        self.elements += sum(t.numel() for t in torch.utils._pytree.tree_leaves(result)
                             if isinstance(t, torch.Tensor))
        return result


def _elements(query, T, B=2, L=3):
    """Elements created by ``query`` (``"log_prob backward"``, ``"marginals"`` or ``"marginals backward"``) on a
    CRF of ``B`` sequences of ``T`` (one of them of length T // 2) and ``L`` labels; only the counted part runs
    inside the counter."""
    g = torch.Generator().manual_seed(T)
    params = [torch.randn(s, generator=g, dtype=torch.float64, requires_grad=True)
              for s in [(B, T, L), (L, L), (L,), (L,)]]
    crf = LinearChainCRF(*params, lengths=torch.tensor([T, T // 2]))
    if query == "log_prob backward":
        loss = crf.log_prob(torch.randint(L, (B, T), generator=g)).sum()
        with _ElementCount() as count:
            torch.autograd.grad(loss, params)
    elif query == "marginals":
        with _ElementCount() as count:
            crf.marginals
    else:  # the gradient of a loss on the differentiable marginals: a double backward through the recursion
        loss = (crf.marginals * torch.randn(B, T, L, generator=g, dtype=torch.float64)).sum()
        with _ElementCount() as count:
            torch.autograd.grad(loss, params[0])
    return count.elements


@pytest.mark.parametrize("query", ["log_prob backward", "marginals", "marginals backward"])
def test_the_backward_of_the_forward_recursion_is_linear_in_the_sequence_length(query):
    """Before, each step read ``unary[..., t, :]``, whose backward materialises a zero tensor of the whole
    ``B x T x L`` unary: the training step's backward and the marginals created O(T^2) elements (at B=32, L=16
    and T=4096: 6.7 s for the backward, against 0.2 s for the forward; the marginals ran out of 20 GB).  And
    ``torch.stack``'s backward reads each step as ``grad.select(0, t)``, whose own backward is a zero tensor of
    all ``T`` steps: the gradient of the marginals (or of the entropy) stayed O(T^2).  Four times the length
    must cost about four times the elements (3.9x to 4.05x; it was 10.7x to 12.3x)."""
    short, long = _elements(query, 32), _elements(query, 128)
    assert long <= 4.5 * short, (short, long)


@pytest.mark.parametrize("attach", [False, True])
def test_the_gradients_of_log_z_are_the_enumerated_marginals_and_their_derivatives(attach):
    """Guard (passes before and after the one-split change): the first and second derivatives of the forward
    recursion's log Z, with padding, a forbidden pair and a forbidden label, equal those of the brute-force
    log-sum-exp over every labelling, for the detached (``log_prob``) and attached (marginals) shifts."""
    unary, transition, start, end = (p.clone() for p in _scores(3, B=3, T=4, L=3))
    transition[:, 0, 1] = float("-inf")
    unary[0, 1, 2] = float("-inf")
    lengths = torch.tensor([4, 3, 1])
    unary[1, 3:], unary[2, 1:] = float("nan"), float("inf")  # padding may hold anything
    params = [p.requires_grad_() for p in (unary, transition, start, end)]
    log_z, _ = forward(*params, lengths, attach=attach)
    reference = torch.stack([torch.stack(list(_all_scores(unary[b], transition[b], start[b], end[b], n).values()))
                             .logsumexp(0) for b, n in enumerate(lengths.tolist())])
    torch.testing.assert_close(log_z, reference, rtol=0, atol=1e-12)
    weights = torch.randn(unary.shape, generator=torch.Generator().manual_seed(4), dtype=torch.float64)
    inside = (torch.arange(4) < lengths[:, None])[..., None]
    got, want = (torch.autograd.grad(z.sum(), params, create_graph=True) for z in (log_z, reference))
    for g, w in zip(got, want):
        torch.testing.assert_close(g.nan_to_num(), w.nan_to_num(), rtol=0, atol=1e-12)
        assert bool(torch.isfinite(g).all())
    # second derivatives: the gradient of a weighted sum of the unary marginals (padding left out)
    second_got, second_want = (torch.autograd.grad(torch.where(inside, weights * m, 0.0).sum(), params,
                                                   allow_unused=True)
                               for m in (got[0], want[0]))
    for g, w in zip(second_got, second_want):
        torch.testing.assert_close(torch.where(inside, g, 0.0) if g.shape == unary.shape else g,
                                   torch.where(inside, w, 0.0) if w.shape == unary.shape else w,
                                   rtol=0, atol=1e-12)


def test_torch_func_transforms_go_through_the_stacked_steps():
    """``torch.func`` (``hessian`` is forward-over-reverse, ``vmap`` of ``grad``, ``jvp``) through the recursion's
    custom stack (its vmap rule and jvp): equal to ``torch.autograd``'s.  A first version of the O(T) stack had no
    ``setup_context``/``jvp`` and broke every one of them, which worked through ``torch.stack``."""
    g = torch.Generator().manual_seed(0)
    unary = torch.randn(2, 5, 3, generator=g, dtype=torch.float64)
    transition, start, end = (torch.randn(*s, generator=g, dtype=torch.float64) for s in ((3, 3), (3,), (3,)))
    lengths = torch.tensor([5, 3])

    for attach in (False, True):
        def log_z(t):
            return forward(unary, t, start, end, lengths, attach=attach)[0].sum()

        torch.testing.assert_close(torch.func.hessian(log_z)(transition),
                                   torch.autograd.functional.hessian(log_z, transition), rtol=1e-12, atol=1e-12)
        both = torch.stack([transition, transition + 1])
        torch.testing.assert_close(torch.func.vmap(torch.func.grad(log_z))(both),
                                   torch.stack([torch.func.grad(log_z)(t) for t in both]), rtol=1e-12, atol=1e-12)
        direction = torch.randn(3, 3, generator=g, dtype=torch.float64)
        _, tangent = torch.func.jvp(log_z, (transition,), (direction,))
        t = transition.clone().requires_grad_()
        (grad,) = torch.autograd.grad(log_z(t), t)
        torch.testing.assert_close(tangent, (grad * direction).sum(), rtol=1e-12, atol=1e-12)


def test_a_step_where_every_label_is_forbidden_leaves_the_other_sequences_alone():
    """One sequence of the batch meets a step whose unary scores are all -inf (a tagger that masks every label): its
    log Z is -inf, and the other sequence's log Z, log_prob and gradient are those it has alone.  Without the clamp
    of -inf unary scores to ``forbidden(dtype)`` (a mutation that survived the suite: the test above forbids
    through the transitions), log Z was NaN and the NaN reached the other sequence's gradient."""
    unary, transition, _, _ = _scores(4, B=2)
    unary = unary.clone()
    unary[1, 2, :] = float("-inf")
    unary[0, 1, 0] = float("-inf")  # a single forbidden label is no obstacle
    y = torch.tensor([[1, 2, 1, 0]])
    alone = unary[:1].clone().requires_grad_(True)
    single = LinearChainCRF(alone, transition[0])
    grad_alone, = torch.autograd.grad(single.log_prob(y)[0], alone)
    batch = unary.clone().requires_grad_(True)
    crf = LinearChainCRF(batch, transition[0], validate_args=False)
    log_z = crf.log_partition
    assert log_z[1].item() == float("-inf")
    assert log_z[0].item() == single.log_partition[0].item()
    log_prob = crf.log_prob(y.expand(2, 4))[0]
    assert torch.isfinite(log_prob) and log_prob.item() == pytest.approx(single.log_prob(y)[0].item(), abs=1e-12)
    grad, = torch.autograd.grad(log_prob, batch)
    assert torch.isfinite(grad).all()
    torch.testing.assert_close(grad[0], grad_alone[0], rtol=0, atol=1e-12)
    assert not grad[1].any()
