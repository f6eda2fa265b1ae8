"""RBM pseudo-log-likelihood (``exact=True``): equal to the flip-each-unit definition, and O(batch V H) in the
work and the memory of its operations (no ``batch x V x V`` flipped copies)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from hybridpgm.energy import RBM, rbm_likelihood
from hybridpgm.errors import ModelSpecError
from tests.energy.brute_force import random_rbm, single_thread  # noqa: F401
from tests.generator_contract import assert_generator_contract


def _free_energy(rbm: RBM, u: torch.Tensor) -> torch.Tensor:
    """:math:`F(u) = -b^\\top u - \\sum_j \\operatorname{softplus}(c_j + u^\\top W_{:j})`, from the formula."""
    w, b, c = rbm.weight.detach(), rbm.visible_bias.detach(), rbm.hidden_bias.detach()
    return -(u @ b) - F.softplus(u @ w + c).sum(-1)


def _reference_pll(rbm: RBM, v: torch.Tensor) -> torch.Tensor:
    """:math:`\\sum_i \\log \\sigma(F(\\tilde v^{(i)}) - F(v))` by flipping each unit (:math:`v_i \\to 1 - v_i`) of
    a full copy of ``v`` and computing both free energies from the formula."""
    total = torch.zeros(v.shape[:-1], dtype=v.dtype)
    for i in range(v.shape[-1]):
        flipped = v.clone()
        flipped[..., i] = 1 - flipped[..., i]
        total = total + F.logsigmoid(_free_energy(rbm, flipped) - _free_energy(rbm, v))
    return total


def _tolerance(rbm: RBM, extra: float = 0.0) -> float:
    """A bound on the float64 rounding of either computation.

    Each gap is a difference of two sums of ``V + H`` terms (the implementation's: ``H`` term-by-term
    differences and one product), every term at most :math:`M = \\sum_i |b_i| + \\sum_j (|c_j| + \\sum_i |W_{ij}|
    + \\log 2)` in size for data in :math:`[0, 1]` (:math:`\\operatorname{softplus}(a) \\le |a| + \\log 2`); recursive
    summation of ``n`` terms errs by at most :math:`n \\epsilon` times their absolute sum, softplus/logsigmoid add a
    few :math:`\\epsilon` relative (factor 4 for those, both sides), logsigmoid is 1-Lipschitz, and the ``V`` terms
    are summed once more: :math:`4 V (V + H + 2) \\epsilon M`.  ``extra`` bounds the size of one more term that
    a subclass adds to the free energy (the ``+ 2`` terms of the count leave room for it)."""
    w, b, c = rbm.weight.detach(), rbm.visible_bias.detach(), rbm.hidden_bias.detach()
    size = float(b.abs().sum() + (c.abs() + w.abs().sum(0)).sum()) + rbm.num_hidden * 0.6931471805599453 + extra
    num_visible, num_hidden = w.shape
    return 4 * num_visible * (num_visible + num_hidden + 2) * torch.finfo(torch.float64).eps * size


@pytest.mark.parametrize("num_visible,num_hidden,shape,probabilities", [
    (1, 1, (3,), False),
    (5, 3, (7,), False),
    (6, 9, (2, 4), False),  # leading batch shape
    (4, 2, (), False),  # one example without a batch dimension
    (7, 5, (0,), False),  # an empty batch
    (6, 4, (5,), True),  # grey levels in [0, 1] flip to 1 - v_i
])
def test_exact_pll_matches_flip_definition(num_visible, num_hidden, shape, probabilities):
    """A guard (the ``batch x V x V`` implementation passed it too): the gaps from the moved pre-activations
    are the definition's, to float64 rounding, for any batch shape and for grey-level data."""
    rbm = random_rbm(num_visible, num_hidden, seed=num_visible + 10 * num_hidden, scale=1.5,
                     probabilities=probabilities)
    gen = torch.Generator().manual_seed(3)
    data = torch.rand(*shape, num_visible, generator=gen, dtype=torch.float64)
    v = data if probabilities else (data < 0.5).to(torch.float64)
    got = rbm.pseudo_log_likelihood(v, exact=True)
    expected = _reference_pll(rbm, v)
    assert got.shape == shape and got.dtype == torch.float64 and not got.requires_grad
    torch.testing.assert_close(got, expected, rtol=0, atol=_tolerance(rbm))


def test_exact_pll_in_chunks_matches_flip_definition(monkeypatch):
    """Chunks of a few units each (and single units, when one unit's ``batch x H`` is over the budget) give the
    same gaps as the definition."""
    rbm = random_rbm(11, 6, seed=5, scale=1.5)
    v = (torch.rand(4, 11, generator=torch.Generator().manual_seed(1), dtype=torch.float64) < 0.5).double()
    expected = _reference_pll(rbm, v)
    for budget in (1, 4 * 6 * 3, 4 * 6 * 3 + 5, 10**6):
        monkeypatch.setattr(rbm_likelihood, "_FLIP_CHUNK_ELEMENTS", budget)
        torch.testing.assert_close(rbm.pseudo_log_likelihood(v, exact=True), expected, rtol=0,
                                   atol=_tolerance(rbm))


class _Outputs(TorchDispatchMode):
    """Records, over the operations run inside it, the largest new tensor one returns (``largest``; views of
    their inputs are not new memory) and the elements all of them write (``written``, a clock-free count of the
    work)."""

    def __init__(self):
        super().__init__()
        self.largest = self.written = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        result = func(*args, **(kwargs or {}))
        views = [r.alias_info is not None for r in func._schema.returns]
        outs = result if isinstance(result, (tuple, list)) else (result,)
        for out, view in zip(outs, views + [False] * len(outs)):
            if isinstance(out, torch.Tensor) and not view:
                self.largest = max(self.largest, out.numel())
                self.written += out.numel()
        return result


@pytest.mark.parametrize("cls", ["RBM", "subclass overriding nothing"])
def test_exact_pll_work_and_memory_are_linear_in_visible_units(cls):
    """No operation returns more than ``batch x V x H`` elements and all of them write ``O(batch V H)``; the
    flipped copies of every example (``batch x V x V``, 5x ``batch x V x H`` here) are gone.  A subclass that
    overrides none of the free energy's methods keeps this shortcut too (a guard: it passes on the code before
    the check of overrides)."""
    batch, num_visible, num_hidden = 3, 200, 40
    rbm = (RBM if cls == "RBM" else _SameRBM)(num_visible, num_hidden).double()
    v = (torch.rand(batch, num_visible, generator=torch.Generator().manual_seed(0)) < 0.5).double()
    with _Outputs() as outputs:
        rbm.pseudo_log_likelihood(v, exact=True)
    cube = batch * num_visible * num_hidden
    assert outputs.largest <= cube, (outputs.largest, cube)
    # the moved pre-activations, their softplus (the difference is in place) and a few batch x V / batch x H
    assert outputs.written <= 3 * cube, (outputs.written, cube)


def test_exact_pll_memory_is_bounded_by_the_chunk_budget(monkeypatch):
    """With a budget of 60 elements a chunk holds ``60 // (batch x H)`` units: no tensor is larger than the
    budget or the ``batch x V`` / ``batch x H`` ones the result needs anyway."""
    batch, num_visible, num_hidden = 3, 50, 7
    # raising=False: were the budget renamed, the default (2**18 elements, one chunk of 1050) fails the bound
    monkeypatch.setattr(rbm_likelihood, "_FLIP_CHUNK_ELEMENTS", 60, raising=False)
    rbm = RBM(num_visible, num_hidden).double()
    v = (torch.rand(batch, num_visible, generator=torch.Generator().manual_seed(0)) < 0.5).double()
    with _Outputs() as outputs:
        rbm.pseudo_log_likelihood(v, exact=True)
    assert outputs.largest <= max(60, batch * num_visible, batch * num_hidden), outputs.largest


# ------------------------------------------------- subclasses that override the free energy (or what it uses)
#: The weight of a lateral term :math:`L v_0 v_1` that two of the subclasses add to :math:`-F` (bounded by
#: :math:`|L|` for data in :math:`[0, 1]`).
_LATERAL = 2.0


class _LateralFreeEnergyRBM(RBM):
    """Lateral visible connection :math:`L v_0 v_1` added to :math:`-F` through ``_free_energy``."""

    def _free_energy(self, v):
        return super()._free_energy(v) - _LATERAL * v[..., 0] * v[..., 1]


class _LateralVisibleTermRBM(RBM):
    """The same model through ``_visible_term`` (the RBM's ``_free_energy`` calls it)."""

    def _visible_term(self, v):
        return super()._visible_term(v) + _LATERAL * v[..., 0] * v[..., 1]


class _HalvedLogitsRBM(RBM):
    """Pre-activations :math:`(c + v^\\top W) / 2` through ``hidden_logits`` (halved: no larger, exactly)."""

    def hidden_logits(self, v):
        return super().hidden_logits(v) / 2


class _HalvedInputRBM(RBM):
    """Input :math:`v / 2` to the hidden units through ``_scaled`` (as a fixed :math:`\\sigma = 2` would)."""

    def _scaled(self, v):
        return v / 2


class _SameRBM(RBM):
    """A subclass that overrides none of the free energy's methods."""


def _instance_override(rbm: RBM) -> RBM:
    """``rbm`` with the lateral term set on the instance (``rbm._free_energy = ...``), not on a class."""
    plain = rbm._free_energy
    rbm._free_energy = lambda v: plain(v) - _LATERAL * v[..., 0] * v[..., 1]
    return rbm


def _subclass_rbm(make, num_visible: int, num_hidden: int, seed: int, probabilities: bool = False) -> RBM:
    """``make`` (a subclass, or :func:`_instance_override` of an RBM) with :func:`random_rbm`'s parameters."""
    rbm = random_rbm(num_visible, num_hidden, seed=seed, scale=1.5, probabilities=probabilities)
    if isinstance(make, type):
        subclassed = make(num_visible, num_hidden, probabilities=probabilities).double()
        subclassed.load_state_dict(rbm.state_dict())
        return subclassed
    return make(rbm)


def _reference_pll_through(rbm: RBM, v: torch.Tensor) -> torch.Tensor:
    """:math:`\\sum_i \\log \\sigma(F(\\tilde v^{(i)}) - F(v))` by flipping each unit of a full copy of ``v``, with
    ``rbm``'s own :meth:`free_energy` (whatever its class or instance overrides)."""
    total = torch.zeros(v.shape[:-1], dtype=v.dtype)
    for i in range(v.shape[-1]):
        flipped = v.clone()
        flipped[..., i] = 1 - flipped[..., i]
        total = total + F.logsigmoid(rbm.free_energy(flipped) - rbm.free_energy(v))
    return total


_OVERRIDES = [_LateralFreeEnergyRBM, _LateralVisibleTermRBM, _HalvedLogitsRBM, _HalvedInputRBM, _instance_override]


@pytest.mark.parametrize("make", _OVERRIDES, ids=lambda m: m.__name__)
@pytest.mark.parametrize("shape,probabilities", [((5,), False), ((2, 3), False), ((), False), ((0,), False),
                                                 ((4,), True)])
def test_exact_pll_of_an_overridden_free_energy_is_the_flip_definition(make, shape, probabilities):
    """A subclass that overrides ``_free_energy`` (or ``_visible_term``, ``hidden_logits``, ``_scaled``, which the
    RBM's uses), or an instance given its own ``_free_energy``, gets the flip definition with *its* free energy,
    the one ``exact=False`` samples from (the shortcut wrote out the plain RBM's free energy for them).  The empty
    batch cases are guards (nothing to differ on; they passed before the fix too) of the copies' shapes."""
    rbm = _subclass_rbm(make, 6, 4, seed=7, probabilities=probabilities)
    data = torch.rand(*shape, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    v = data if probabilities else (data < 0.5).to(torch.float64)
    got = rbm.pseudo_log_likelihood(v, exact=True)
    expected = _reference_pll_through(rbm, v)
    assert got.shape == shape and got.dtype == torch.float64 and not got.requires_grad
    torch.testing.assert_close(got, expected, rtol=0, atol=_tolerance(rbm, extra=_LATERAL))


def test_exact_pll_of_an_overridden_free_energy_differs_from_the_plain_rbm():
    """A guard of the tests above (it passed before the fix too): their models are other models, whose PLL is not
    the plain RBM's (else those tests could not fail)."""
    plain = random_rbm(6, 4, seed=7, scale=1.5)
    v = (torch.rand(5, 6, generator=torch.Generator().manual_seed(2), dtype=torch.float64) < 0.5).double()
    for make in _OVERRIDES:
        gap = (_reference_pll_through(_subclass_rbm(make, 6, 4, seed=7), v) - _reference_pll(plain, v)).abs().max()
        assert gap > 0.1, (make.__name__, float(gap))


def test_exact_pll_of_an_overridden_free_energy_in_chunks_of_the_budget(monkeypatch):
    """The flipped copies come in chunks of units under the fast path's budget (one unit per chunk below
    ``batch x max(V, H)``): the same PLL for every budget, and no tensor larger than the budget or the
    ``batch x V`` / ``batch x H`` ones the result needs anyway (no ``batch x V x V`` copies)."""
    batch, num_visible, num_hidden = 3, 20, 7
    rbm = _subclass_rbm(_LateralFreeEnergyRBM, num_visible, num_hidden, seed=4)
    v = (torch.rand(batch, num_visible, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
         < 0.5).double()
    expected = _reference_pll_through(rbm, v)
    for budget in (1, 60, batch * num_visible * 3 + 5, 10**6):
        monkeypatch.setattr(rbm_likelihood, "_FLIP_CHUNK_ELEMENTS", budget)
        with _Outputs() as outputs:
            got = rbm.pseudo_log_likelihood(v, exact=True)
        torch.testing.assert_close(got, expected, rtol=0, atol=_tolerance(rbm, extra=_LATERAL))
        if budget < batch * num_visible * num_visible:
            assert outputs.largest <= max(budget, batch * num_visible, batch * num_hidden), (budget, outputs.largest)


def test_the_one_unit_pseudo_log_likelihood_draws_its_units_from_the_generator_given():
    """``generator=`` (keyword-only) on ``pseudo_log_likelihood(exact=False)``: the random unit of each example
    comes from it, the caller's stream untouched, ``None`` the old call (tests/energy/generator_contract.py).
    Before: no such argument."""
    rbm = random_rbm(6, 3, seed=0)
    v = torch.bernoulli(torch.full((8, 6), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(1))
    assert_generator_contract(lambda **kw: rbm.pseudo_log_likelihood(v, **kw), "RBM.pseudo_log_likelihood generator")


@pytest.mark.parametrize("sizes", [(6, 3), (3, 6)])
@pytest.mark.parametrize("hook", ["_free_energy", "hidden_logits"])
def test_the_exact_log_z_of_an_overridden_free_energy_is_that_of_the_override(hook, sizes):
    """Found by an audit: with ``num_hidden <= num_visible`` the exact log Z summed the RBM's own energy over the
    hidden states, ignoring an override of ``_free_energy`` (or of ``hidden_logits``...), so that ``exp(log p(v))``
    summed to 10.96 over all states; an overridden free energy is enumerated over the visible states now."""
    import itertools

    class Override(RBM):
        pass

    if hook == "_free_energy":
        Override._free_energy = lambda self, v: RBM._free_energy(self, v) - 0.7 * v.sum(-1)
    else:
        Override.hidden_logits = lambda self, v: 0.5 * RBM.hidden_logits(self, v)
    torch.manual_seed(0)
    model = Override(*sizes).double()
    with torch.no_grad():
        for p in model.parameters():
            p.normal_()
    states = torch.tensor(list(itertools.product([0.0, 1.0], repeat=sizes[0])), dtype=torch.float64)
    with torch.no_grad():
        brute = torch.logsumexp(-model._free_energy(states), 0)
        torch.testing.assert_close(model.log_partition("exact"), brute, rtol=1e-12, atol=0)
        torch.testing.assert_close(torch.logsumexp(model.log_likelihood(states), 0), brute.new_zeros(()),
                                   rtol=0, atol=1e-12)


def test_a_gaussian_rbm_with_an_overridden_free_energy_has_no_exact_log_z():
    class Override(RBM):
        def _free_energy(self, v):
            return super()._free_energy(v) - 0.7 * v.sum(-1)

    with pytest.raises(ModelSpecError, match=r"Override overrides the free energy \(_free_energy\) of a Gaussian"):
        Override(3, 2, visible="gaussian").log_partition("exact")
    # too many visible states to sum through the override: named, and AIS is not offered as an equivalent
    with pytest.raises(ModelSpecError, match=r"overrides the free energy \(_free_energy\) so its exact log Z sums "
                                             r"over the 2\*\*40 visible states"):
        Override(40, 4).log_partition("exact")
