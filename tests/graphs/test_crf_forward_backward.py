"""Forward-mode AD and ``torch.func`` transforms of :class:`LinearChainCRF`'s gradient queries (marginals, pairwise
marginals, entropy), which the CRF computes by the explicit forward-backward recursion of
:mod:`hybridpgm.graphs.crf_forward_backward` under a transform.

Before, the marginals were the gradient of log Z taken with ``torch.autograd.grad`` of detached potentials whenever
none required grad, as under ``torch.func.jvp``: the tangents of the marginals and the entropy were wrong (entropy
0.43 off, marginals 0.74, pairwise marginals 1.9 for the CRF below), and ``torch.func.vmap`` raised.  The
references are central finite differences and the reverse-mode Jacobian (``torch.autograd``, the unchanged path).
"""

import pytest
import torch
from torch.autograd import forward_ad

from hybridpgm.errors import ConfigError
from hybridpgm.graphs import LinearChainCRF
from hybridpgm.graphs.crf_recursions import forward

B, T, L = 3, 4, 3
H = 1e-6  # central differences: truncation ~H^2 |f'''| ~ 1e-11, rounding ~eps |f| / H ~ 1e-9
FD_TOL = 1e-7
LENGTHS = torch.tensor([4, 2, 1])


def _potentials(seed=0):
    """float64 potentials with padding (lengths 4, 2, 1) holding NaN, a forbidden pair and a forbidden label."""
    g = torch.Generator().manual_seed(seed)
    unary = torch.randn(B, T, L, generator=g, dtype=torch.float64)
    transition = torch.randn(L, L, generator=g, dtype=torch.float64)
    start, end = (torch.randn(L, generator=g, dtype=torch.float64) for _ in range(2))
    transition[0, 1] = float("-inf")
    unary[0, 2, 1] = float("-inf")
    unary[1, 2:] = float("nan")  # padding may hold anything
    return unary, transition, start, end


def _directions(params, seed=1):
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(p.shape, generator=g, dtype=p.dtype) for p in params)


LABELS = torch.tensor([[0, 0, 2, 1], [1, 2, 0, 0], [2, 0, 0, 0]])
QUERIES = {
    "entropy": lambda crf: crf.entropy(),
    "marginals": lambda crf: crf.marginals,
    "pairwise_marginals": lambda crf: crf.pairwise_marginals,
    "log_prob": lambda crf: crf.log_prob(LABELS),  # guard: right before and after
    "log_partition": lambda crf: crf.log_partition,  # guard: right before and after
}


def _query(name):
    return lambda u, a, s, e: QUERIES[name](LinearChainCRF(u, a, s, e, LENGTHS))


def _central_difference(f, params, directions):
    plus = f(*(p + H * d for p, d in zip(params, directions)))
    minus = f(*(p - H * d for p, d in zip(params, directions)))
    return (plus - minus) / (2 * H)


@pytest.mark.parametrize("name", list(QUERIES))
def test_jvp_matches_central_differences_and_the_reverse_mode_jacobian(name):
    """``torch.func.jvp`` in every potential at once.  Failed before for entropy, marginals and pairwise marginals
    (tangent errors 0.1 .. 2); ``log_prob`` and ``log_partition`` are guards (no gradient query inside)."""
    params = _potentials()
    directions = _directions(params)
    f = _query(name)
    value, tangent = torch.func.jvp(f, params, directions)
    torch.testing.assert_close(value, f(*params), rtol=0, atol=1e-12)
    torch.testing.assert_close(tangent, _central_difference(f, params, directions), rtol=0, atol=FD_TOL)
    jacobians = torch.autograd.functional.jacobian(f, params)  # reverse mode, the gradient-of-log-Z path
    exact = sum((j * d.nan_to_num()).flatten(value.dim()).sum(-1) for j, d in zip(jacobians, directions))
    torch.testing.assert_close(tangent, exact, rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["entropy", "marginals", "pairwise_marginals"])
def test_jacfwd_equals_the_reverse_mode_jacobian(name):
    """``torch.func.jacfwd`` (in the transition and the unary scores) against ``torch.autograd``'s reverse-mode
    Jacobian and a central difference of one entry; failed before (off by up to 2.4)."""
    unary, transition, start, end = _potentials()
    f = _query(name)
    got = torch.func.jacfwd(f, argnums=(0, 1))(unary, transition, start, end)
    want = torch.autograd.functional.jacobian(lambda u, a: f(u, a, start, end), (unary, transition))
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-12)
    bump = torch.zeros_like(transition)
    bump[2, 0] = 1.0
    fd = _central_difference(lambda a: f(unary, a, start, end), (transition,), (bump,))
    torch.testing.assert_close(got[1][..., 2, 0], fd, rtol=0, atol=FD_TOL)


def test_forward_ad_dual_tensors_give_the_directional_derivative():
    """Plain :mod:`torch.autograd.forward_ad` (no ``torch.func``): a dual transition's tangent reaches the entropy
    and the marginals; before, it was dropped with the detached potentials (wrong tangents)."""
    unary, transition, start, end = _potentials()
    (direction,) = _directions((transition,))
    for name in ("entropy", "marginals", "pairwise_marginals"):
        f = _query(name)
        with forward_ad.dual_level():
            tangent = forward_ad.unpack_dual(f(unary, forward_ad.make_dual(transition, direction), start,
                                               end)).tangent
        fd = _central_difference(lambda a: f(unary, a, start, end), (transition,), (direction,))
        torch.testing.assert_close(tangent, fd, rtol=0, atol=FD_TOL, msg=name)


def test_hessian_of_the_entropy_is_that_of_torch_autograd():
    """Guard (right before and after): ``torch.func.hessian`` (forward over reverse) of the summed entropy in the
    transition equals ``torch.autograd.functional.hessian``'s."""
    unary, transition, start, end = _potentials()

    def total(a):
        return LinearChainCRF(unary, a, start, end, LENGTHS).entropy().sum()

    torch.testing.assert_close(torch.func.hessian(total)(transition),
                               torch.autograd.functional.hessian(total, transition), rtol=0, atol=1e-12)


@pytest.mark.parametrize("name", ["entropy", "marginals", "pairwise_marginals"])
def test_vmap_over_a_batch_of_potentials_equals_a_loop(name):
    """``torch.func.vmap`` over 5 sets of unary scores (validation off: it reads values, which vmap cannot) equals
    the queries one by one; raised before (``torch.autograd.grad`` of tensors vmap had batched)."""
    unary, transition, start, end = _potentials()
    many = torch.randn((5,) + unary.shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)

    def f(u):
        return QUERIES[name](LinearChainCRF(u, transition, start, end, LENGTHS, validate_args=False))

    torch.testing.assert_close(torch.func.vmap(f)(many), torch.stack([f(u) for u in many]), rtol=0, atol=1e-12)


@pytest.mark.parametrize("T_", [1, 4])
def test_forward_backward_equals_the_gradient_of_log_z(T_):
    """The explicit recursion's log Z, marginals, pairwise marginals, first and last marginals and expected
    transition score against the gradient of the forward recursion's log Z (``T = 1``: no pairs)."""
    from hybridpgm.graphs.crf_forward_backward import forward_backward  # new module: the others run on old code

    unary, transition, start, end = _potentials()
    unary = unary[:, :T_].contiguous()
    lengths = LENGTHS.clamp(max=T_)
    params = [p.expand(s) for p, s in zip((unary, transition, start, end),
                                          ((B, T_, L), (B, L, L), (B, L), (B, L)))]

    def run(u, a, s, e, keep=False, wide=False):
        return forward(u, a, s, e, lengths, keep=keep, wide=wide)

    log_z, grads, per_step = forward_backward(run, *params, lengths)
    leaves = [p.clone().requires_grad_() for p in params]
    want_z = run(*leaves, wide=True)[0]
    want = torch.autograd.grad(want_z.sum(), leaves, allow_unused=True)
    want = [torch.zeros_like(p) if w is None else w for p, w in zip(params, want)]  # T = 1: no transition
    torch.testing.assert_close(log_z, want_z.detach(), rtol=0, atol=1e-12)
    for g, w in zip(grads, want):
        torch.testing.assert_close(g, w, rtol=0, atol=1e-12)
    A = transition.clamp(min=-1e300)
    torch.testing.assert_close(per_step, (A * want[1]).flatten(-2).sum(-1), rtol=0, atol=1e-12)


def test_a_validating_crf_under_vmap_names_validate_args():
    """Validation reads values, which vmap cannot: a validating CRF built, or asked for ``log_prob`` of labels,
    under vmap raises ``ConfigError`` naming ``validate_args=False`` (torch's raw "data-dependent control flow"
    ``RuntimeError`` before); with ``validate_args=False`` the same vmap runs and equals a loop, and a vmap that
    batches nothing the CRF reads keeps validation."""
    torch.manual_seed(0)
    unary, transition = torch.randn(3, 2, 5, 4, dtype=torch.float64), torch.randn(4, 4, dtype=torch.float64)
    labels = torch.zeros(2, 5, dtype=torch.long)
    with pytest.raises(ConfigError, match="validate_args=False"):
        torch.func.vmap(lambda u: LinearChainCRF(u, transition).entropy())(unary)
    built = LinearChainCRF(unary[0], transition)  # validation at construction passed: labels checked under vmap
    with pytest.raises(ConfigError, match="validate_args=False"):
        torch.func.vmap(lambda y: built.log_prob(y))(labels[None].expand(3, 2, 5))
    plain = torch.func.vmap(lambda u: LinearChainCRF(u, transition, validate_args=False).entropy())(unary)
    loop = torch.stack([LinearChainCRF(u, transition).entropy() for u in unary])
    assert torch.allclose(plain, loop, rtol=1e-12, atol=1e-12)
    scaled = torch.func.vmap(lambda c: c * LinearChainCRF(unary[0], transition).log_partition)(torch.ones(3))
    assert torch.allclose(scaled, LinearChainCRF(unary[0], transition).log_partition.expand(3, 2))


def test_the_pairwise_marginals_are_summed_step_by_step_not_stacked():
    """Audit (memory): the recursion kept every step's ``L x L`` pair and stacked them, ``(T - 1) x L x L`` floats
    (1.3 GB under vmap at B=16, T=1000, L=100); a running sum keeps one.  No tensor as large is made."""
    from hybridpgm.graphs.crf_forward_backward import forward_backward
    from tests.graphs.largest_tensor import LargestTensor

    T, L = 40, 6
    g = torch.Generator().manual_seed(0)
    crf = LinearChainCRF(torch.randn(T, L, generator=g), torch.randn(L, L, generator=g))
    with LargestTensor() as seen:
        pairwise = forward_backward(crf._forward, crf.unary, crf.transition, crf.start, crf.end, crf.lengths)[1][1]
    torch.testing.assert_close(pairwise, crf.pairwise_marginals, rtol=1e-5, atol=1e-6)
    assert seen.largest < (T - 1) * L * L
