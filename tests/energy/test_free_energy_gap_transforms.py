"""``free_energy_gap`` under :mod:`torch.func` (grad, vmap, jacrev, jvp, hessian) and torch's gradient checks
(hybridpgm/energy/free_energy_gap.py), against a plain autograd reference written here from the maths.

The old ``_FreeEnergyGap`` had no ``setup_context``: every :mod:`torch.func` transform refused it with
"In order to use an autograd.Function with functorch transforms ... it must override the setup_context
staticmethod", and it had no forward-mode rule."""

import pytest
import torch
from torch.func import grad, hessian, jacfwd, jacrev, jvp, vmap

from hybridpgm.energy.free_energy_gap import free_energy_gap

ARGS = (0, 1, 2)
CLOSE = dict(rtol=1e-10, atol=1e-12)  # float64: the closed form and autograd order the same sums differently


def reference(w, b, c, v, v_neg):
    r""":math:`\frac1B \sum_b F(v_b) - \frac1S \sum_s F(\tilde v_s)`, :math:`F(x) = -b^\top x - \sum_j
    \operatorname{softplus}(c_j + x^\top W_{:j})`, with plain operations."""
    def free_energy(x):
        return -(x @ b) - torch.nn.functional.softplus(x @ w + c).sum(-1)

    return free_energy(v).mean() - free_energy(v_neg).mean()


def _problem(batch=5, chains=6, visible=4, hidden=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    params = (torch.randn(visible, hidden, generator=g, dtype=torch.float64),
              torch.randn(visible, generator=g, dtype=torch.float64),
              torch.randn(hidden, generator=g, dtype=torch.float64))
    v = torch.bernoulli(torch.full((batch, visible), 0.4, dtype=torch.float64), generator=g)
    v_neg = torch.bernoulli(torch.full((chains, visible), 0.6, dtype=torch.float64), generator=g)
    return params, v, v_neg


def _assert_trees_close(got, want):
    if isinstance(want, torch.Tensor):
        torch.testing.assert_close(got, want, **CLOSE)
        return
    assert len(got) == len(want)
    for a, b in zip(got, want):
        _assert_trees_close(a, b)


def _gap_and_reference(v, v_neg, given_logits):
    """``free_energy_gap`` as a function of the parameters (with the data's pre-activations and probabilities
    passed in, detached, when ``given_logits``), and the reference."""
    def gap(w, b, c):
        if not given_logits:
            return free_energy_gap(w, b, c, v, v_neg)
        logits = torch.addmm(c, v, w).detach()
        return free_energy_gap(w, b, c, v, v_neg, logits, torch.sigmoid(logits))

    return gap, lambda w, b, c: reference(w, b, c, v, v_neg)


@pytest.mark.parametrize("given_logits", [False, True])
@pytest.mark.parametrize("transform", ["grad", "jacrev", "hessian", "jacfwd(jacrev)", "jacrev(jacrev)"])
def test_torch_func_transforms_equal_the_reference(transform, given_logits):
    """(Forward over forward, ``jacfwd(jacfwd)``, is left out: PyTorch runs an autograd.Function's ``jvp``
    with forward mode off, so no Function has second forward-mode derivatives; see the module docstring.)"""
    params, v, v_neg = _problem()
    gap, ref = _gap_and_reference(v, v_neg, given_logits)
    make = {"grad": lambda f: grad(f, argnums=ARGS), "jacrev": lambda f: jacrev(f, argnums=ARGS),
            "hessian": lambda f: hessian(f, argnums=ARGS),
            "jacfwd(jacrev)": lambda f: jacfwd(jacrev(f, argnums=ARGS), argnums=ARGS),
            "jacrev(jacrev)": lambda f: jacrev(jacrev(f, argnums=ARGS), argnums=ARGS)}[transform]
    want = make(ref)(*params)
    if transform not in ("grad", "jacrev"):  # second derivatives: not all zero (true entries up to ~0.1)
        assert max(float(h.abs().max()) for row in want for h in row) > 0.01
    _assert_trees_close(make(gap)(*params), want)


def test_torch_func_jvp_equals_the_reference():
    params, v, v_neg = _problem()
    tangents = _problem(seed=7)[0]
    gap, ref = _gap_and_reference(v, v_neg, False)
    _assert_trees_close(jvp(gap, params, tangents), jvp(ref, params, tangents))
    only_c = (torch.zeros_like(params[0]), torch.zeros_like(params[1]), tangents[2])
    _assert_trees_close(jvp(gap, params, only_c), jvp(ref, params, only_c))


@pytest.mark.parametrize("batched", ["data", "samples", "weight", "all"])
def test_vmap_and_per_example_gradients_equal_the_reference_in_a_loop(batched):
    """``vmap`` over data sets, chain samples, weights, or all at once; ``vmap(grad)`` gives per-example
    gradients.  The reference is evaluated one batch element at a time, without vmap."""
    n = 3
    stacked = [_problem(seed=s) for s in range(n)]
    (w0, b0, c0), v0, v_neg0 = stacked[0]
    w = torch.stack([p[0][0] for p in stacked]) if batched in ("weight", "all") else w0
    v = torch.stack([p[1] for p in stacked]) if batched in ("data", "all") else v0
    v_neg = torch.stack([p[2] for p in stacked]) if batched in ("samples", "all") else v_neg0
    in_dims = (0 if batched in ("weight", "all") else None, None, None,
               0 if batched in ("data", "all") else None, 0 if batched in ("samples", "all") else None)

    def pick(x, dim, i):
        return x if dim is None else x[i]

    args = (w, b0, c0, v, v_neg)
    rows = [[pick(x, d, i) for x, d in zip(args, in_dims)] for i in range(n)]
    want_values = torch.stack([reference(*r) for r in rows])
    want_grads = [torch.stack(g) for g in zip(*(grad(reference, argnums=ARGS)(*r) for r in rows))]
    assert len(set(want_values.tolist())) == n  # the batch elements differ
    torch.testing.assert_close(vmap(free_energy_gap, in_dims=in_dims)(*args), want_values, **CLOSE)
    _assert_trees_close(vmap(grad(free_energy_gap, argnums=ARGS), in_dims=in_dims)(*args), want_grads)


def test_autograd_through_vmap_equals_the_reference():
    """Plain ``torch.autograd.grad`` of a vmapped gap (data sets batched, parameters shared): the parameters'
    gradient sums the data sets'."""
    params, v0, v_neg = _problem()
    params = tuple(p.requires_grad_() for p in params)
    v = torch.stack([v0, _problem(seed=3)[1], _problem(seed=4)[1]])
    out = vmap(free_energy_gap, in_dims=(None, None, None, 0, None))(*params, v, v_neg)
    want = torch.stack([reference(*params, x, v_neg) for x in v])
    torch.testing.assert_close(out, want, **CLOSE)
    weights = torch.tensor([0.5, -1.0, 2.0], dtype=torch.float64)
    _assert_trees_close(torch.autograd.grad(out @ weights, params), torch.autograd.grad(want @ weights, params))


def test_gradcheck_with_forward_mode_and_batched_gradients():
    """First derivatives against finite differences in float64, reverse and forward mode, and the backward
    pass under vmap (``check_batched_grad``)."""
    params, v, v_neg = _problem(4, 3)
    params = tuple(p.requires_grad_() for p in params)
    assert torch.autograd.gradcheck(lambda w, b, c: free_energy_gap(w, b, c, v, v_neg), params,
                                    check_forward_ad=True, check_batched_grad=True)
    assert torch.autograd.gradgradcheck(lambda w, b, c: free_energy_gap(w, b, c, v, v_neg), params,
                                        check_fwd_over_rev=True, check_batched_grad=True)


def test_the_plain_autograd_hessian_still_equals_the_reference():
    """Guard (passes before and after): ``create_graph=True`` in plain autograd was already exact."""
    params, v, v_neg = _problem()
    gap, ref = _gap_and_reference(v, v_neg, True)
    _assert_trees_close(torch.autograd.functional.hessian(gap, params),
                        torch.autograd.functional.hessian(ref, params))
