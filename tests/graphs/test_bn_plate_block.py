"""A caller's plate at dim ``-1`` with a :func:`pyro.poutine.block` between it and ``BayesNet.model`` /
``MarkovNet.model`` (:class:`hybridpgm.graphs.bn_plate.DataPlate`).

Before, the model found the caller's plate with :func:`pyro.poutine.runtime.get_plates`, whose message a block may
stop where the sites pass, or pass where the sites stop:

* ``poutine.block()`` (or ``block_plate``) inside the plate hid it from the call, and the model's own plate collided
  with it at dim ``-1`` (Pyro's raw ``ValueError: at plates "data" and "rows", collide at dim=-1``), as it did under
  ``poutine.block(expose_types=["sample", "observe"])``, which hides nothing of the sites;
* ``poutine.block(hide_types=["sample"])`` inside the plate let the model join it while its latent sites never
  reached it: ``bn.model(num_samples=3)`` drew one value for all 3 rows, without a word.

Now the model joins the caller's plate wherever it is on the stack and refuses a latent site that a block hides from
it without rows of its own (a ``ModelSpecError`` naming the plate, the site and the remedy); where the sites reach
it, or a hidden site has its rows (observed, or from observed parents), the loss is exact.
"""

import math

import pyro
import pytest
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO
from pyro.poutine.plate_messenger import block_plate

from hybridpgm.errors import ModelSpecError
from hybridpgm.graphs import BayesNet, MarkovNet, cpd
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)

F64 = torch.float64
A = torch.tensor([0.0, 1.0, float("nan"), 1.0])  # a missing in row 2, b in rows 0 and 3
B = torch.tensor([float("nan"), 2.0, 0.0, float("nan")])


def _bn():
    bn = BayesNet(name="blocked").add("a", cpd.Table(torch.tensor([0.6, 0.4], dtype=F64), learnable=True))
    return bn.add("b", cpd.Table(torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]], dtype=F64), ["a"], learnable=True))


def _mrf():
    g = torch.Generator().manual_seed(0)
    mrf = MarkovNet({"a": 2, "b": 3, "c": 2})
    mrf.add_factor("ab", ["a", "b"], torch.nn.Parameter(torch.randn(2, 3, generator=g, dtype=F64)))
    return mrf.add_factor("bc", ["b", "c"], torch.nn.Parameter(torch.randn(3, 2, generator=g, dtype=F64)))


def _bn_call(bn):
    return lambda: bn.model({"a": A, "b": B}, prefix="bn/")


def _mrf_call(mrf):
    return lambda: mrf.model({"a": torch.tensor([0, 1, 1, 0]), "c": torch.tensor([1, 1, 0, 0])}, prefix="m/")


def _bn_exact(bn):
    """``-sum_n log sum_{a, b allowed in row n} p(a) p(b | a)``."""
    la, lb = torch.log_softmax(bn.cpds["a"].logits, -1), torch.log_softmax(bn.cpds["b"].logits, -1)
    joint = la[:, None] + lb
    rows = []
    for a, b in zip(A.tolist(), B.tolist()):
        keep = torch.ones(2, 3, dtype=torch.bool)
        if a == a:
            keep[[i for i in range(2) if i != a]] = False
        if b == b:
            keep[:, [j for j in range(3) if j != b]] = False
        rows.append(torch.logsumexp(joint[keep], 0))
    return -torch.stack(rows).sum()


def _mrf_exact(mrf):
    """``-sum_n [log sum_b exp(ab[a_n, b] + bc[b, c_n]) - log Z]``."""
    ab, bc = mrf.table_potentials.ab, mrf.table_potentials.bc
    a, c = torch.tensor([0, 1, 1, 0]), torch.tensor([1, 1, 0, 0])
    log_z = torch.logsumexp((ab[:, :, None] + bc[None]).reshape(-1), 0)
    return -(torch.logsumexp(ab[a] + bc[:, c].T, -1) - log_z).sum()


NETS = {"BayesNet": (_bn, _bn_call, _bn_exact), "MarkovNet": (_mrf, _mrf_call, _mrf_exact)}


def _loss(call, inner):
    def model():
        with pyro.plate("rows", 4), inner():
            call()

    return TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(model, lambda: None)


@pytest.mark.parametrize("kind", list(NETS))
@pytest.mark.parametrize("inner", ["block", "block_plate"])
def test_a_plate_hidden_from_the_call_is_refused_naming_it(kind, inner):
    """``poutine.block()`` or ``block_plate("rows")`` inside the caller's plate ``rows`` (HEAD: Pyro's raw 'plates
    collide at dim=-1')."""
    build, call, _ = NETS[kind]
    hide = poutine.block if inner == "block" else lambda: block_plate("rows")
    what = r"BayesNet\.model" if kind == "BayesNet" else r"MarkovNet\.model"
    remedy = r"put the block outside the plate" if inner == "block" else r"call the model outside the plate 'rows'"
    with pytest.raises(ModelSpecError, match=rf"{what} is called inside the plate 'rows'.*{remedy}"):
        _loss(call(build()), hide)


@pytest.mark.parametrize("kind", list(NETS))
def test_a_block_inside_the_plate_that_lets_the_sites_through_joins_it_with_the_exact_loss(kind):
    """``poutine.block(expose_types=["sample", "observe"])`` hides the plate from ``get_plates`` but not from the
    sites: the model joins it, and the loss and gradients are those of exact enumeration (HEAD: the plates
    collide)."""
    build, call, exact = NETS[kind]
    net = build()
    loss = _loss(call(net), lambda: poutine.block(expose_types=["sample", "observe"]))
    want = exact(net)
    assert loss.item() == pytest.approx(want.item(), rel=1e-12)
    params = list(net.parameters())
    for got, ref in zip(torch.autograd.grad(loss, params), torch.autograd.grad(want, params)):
        torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)


def test_a_block_inside_the_plate_hiding_the_latent_sites_from_it_is_refused_naming_the_site():
    """``poutine.block(hide_types=["sample"])`` inside the plate: ``get_plates`` sees the plate, the latent sites do
    not reach it (HEAD: ``num_samples=3`` drew one value of ``a`` and of ``b`` for all 3 rows)."""
    bn = _bn()
    with pyro.plate("rows", 3), poutine.block(hide_types=["sample"]):
        with pytest.raises(ModelSpecError, match=r"plate 'rows' of 3 rows.*hides its latent site 'a' from that plate"):
            bn.model(num_samples=3)


def test_a_block_outside_the_plate_leaves_the_sites_in_it():
    """The other way round, ``poutine.block()`` around the plate: the sites are the plate's, one draw per row, and a
    trace inside the block scores them exactly."""
    bn = _bn()
    with poutine.block(), pyro.plate("rows", 4):
        tr = poutine.trace(bn.model).get_trace({"a": torch.tensor([0, 1, 1, 0])}, num_samples=4)
        draws = bn.model(num_samples=4)
    assert {k: tuple(v.shape) for k, v in draws.items()} == {"a": (4,), "b": (4,)}
    assert [f.name for f in tr.nodes["b"]["cond_indep_stack"]] == ["rows"]
    la, lb = torch.log_softmax(bn.cpds["a"].logits, -1), torch.log_softmax(bn.cpds["b"].logits, -1)
    a, b = tr.nodes["a"]["value"], tr.nodes["b"]["value"]
    assert tr.log_prob_sum().item() == pytest.approx((la[a] + lb[a, b]).sum().item(), rel=1e-12)


def test_a_block_inside_the_plate_hiding_an_observed_site_scores_the_others_as_before():
    """Review: the first version refused every site a block hid from the plate, also an observed one (scored at
    its values, one per row), which the model scored exactly before: the loss is -sum_n log p(a_n)."""
    bn = _bn()
    data = {"a": torch.tensor([0.0, 1.0, 1.0, 1.0]), "b": torch.tensor([0.0, 2.0, 0.0, 1.0])}

    def model():
        with pyro.plate("rows", 4), poutine.block(hide=["b"]):
            bn.model(data)

    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(model, lambda: None)
    assert loss == pytest.approx(-(math.log(0.6) + 3 * math.log(0.4)), rel=1e-12)


def test_a_hidden_latent_site_with_rows_from_its_parents_is_drawn_per_row():
    """A latent ``b`` hidden from the plate whose parent ``a`` is observed in every row has one distribution per
    row: drawn once per row, as before (only a latent without rows of its own is refused)."""
    bn = _bn()
    with pyro.plate("rows", 4), poutine.block(hide=["b"]):
        draws = bn.model({"a": torch.tensor([0, 1, 1, 0])}, num_samples=4)
    assert tuple(draws["b"].shape) == (4,)
