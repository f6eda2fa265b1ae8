"""BayesNetChecks: rows impossible under the model (structural zeros) are named before any update."""

import functools

import pyro
import pytest
import torch
from pyro import poutine
from pyro.contrib.autoname import scope
from pyro.infer import JitTraceEnum_ELBO, TraceEnum_ELBO

import hybridpgm
from hybridpgm.errors import DataError, TrainingDivergedError
from hybridpgm.graphs import BayesNet, cpd
from hybridpgm.infer import SVIObjective
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)

FIT = dict(epochs=2, batch_size=5, device="cpu", seed=0, progress=False, shuffle=False,
           optim=functools.partial(torch.optim.Adam, lr=0.1))


def _ab(b=((0.5, 0.5), (0.5, 0.5))) -> BayesNet:
    return BayesNet().add("a", cpd.Table([0.5, 0.5])).add("b", cpd.Table(list(map(list, b)), ["a"]))


def _abc() -> BayesNet:
    """a -> c <- b, where c = 1 has probability 0 given a = 0, whatever b is."""
    bn = BayesNet().add("a", cpd.Table([0.5, 0.5])).add("b", cpd.Table([0.5, 0.5]))
    return bn.add("c", cpd.Table([[[1.0, 0.0], [1.0, 0.0]], [[0.5, 0.5], [0.3, 0.7]]], ["a", "b"]))


def _loss(bn, data, elbo=None):
    return (elbo or TraceEnum_ELBO(max_plate_nesting=1)).differentiable_loss(bn.model, bn.guide, data)


def test_a_row_contradicting_a_structural_zero_is_named():
    """Before, fit raised TrainingDivergedError advising skip_nonfinite=True, which then skipped every step."""
    bn = _ab(b=((1.0, 0.0), (0.5, 0.5)))
    data = torch.tensor([[0, 1], [1, 1], [0, 0], [1, 0], [1, 1]])  # row 0: b = 1 given a = 0 has probability 0
    objective = SVIObjective(bn.model, bn.guide, TraceEnum_ELBO(max_plate_nesting=1))
    with pytest.raises(DataError, match=r"row \[0\] of the data .*impossible under the model: node 'b'"):
        hybridpgm.fit(objective, data, **FIT)
    with pytest.raises(DataError, match=r"rows \[0, 2\] of the data"):
        _loss(bn, torch.tensor([[0, 1], [-1, 1], [0, 1]]))
    # a row with a missing parent that some value of the parent makes possible is not refused
    assert torch.isfinite(_loss(bn, torch.tensor([[-1, 1]])))
    assert bn.log_prob(data[:2]).tolist()[0] == float("-inf")  # scoring an impossible row: -inf, no error


def test_a_row_impossible_for_every_value_of_a_missing_parent_is_named_by_fit():
    """Before, the row passed the check (a missing parent left it unjudged) and fit stopped with
    TrainingDivergedError ('loss of player 'elbo' is inf at step 0 ... pass skip_nonfinite=True')."""
    bn = _abc()
    data = torch.tensor([[1, 0, 1], [1, 1, 0], [0, -1, 1], [1, -1, 1], [0, 0, 0]])  # row 2: c = 1, a = 0, b = ?
    assert bn.log_evidence(bn.columns(data)).isinf().tolist() == [False, False, True, False, False]
    objective = SVIObjective(bn.model, bn.guide, TraceEnum_ELBO(max_plate_nesting=1))
    named = (r"row \[2\] of the data .*impossible under the model: node 'c' is observed in a state of probability 0 "
             r".* whatever the values of its missing parent \['b'\]")
    for batch in (data, bn.split_missing(data)):  # -1 markers, and the (values, mask) pair
        with pytest.raises(DataError, match=named):
            hybridpgm.fit(objective, batch, **FIT)


@pytest.mark.parametrize("elbo", [TraceEnum_ELBO(max_plate_nesting=1), JitTraceEnum_ELBO(max_plate_nesting=1),
                                  TraceEnum_ELBO(max_plate_nesting=1, num_particles=2, vectorize_particles=True)])
def test_every_enumerating_elbo_names_rows_open_through_missing_parents(elbo):
    bn = _abc()
    # b missing in every row (one latent site "b"), a in row 1 (possible with a = 1): only row 0 is impossible
    with pyro.get_param_store().scope(), pytest.raises(DataError, match=r"row \[0\] of the data .*node 'c'.*"
                                                                        r"missing parent \['b'\] in that row"):
        _loss(bn, {"a": torch.tensor([0, -1, 1]), "c": torch.tensor([1, 1, 1])}, elbo)
    # a row that a value of the missing parents makes possible is left to the loss, which is finite
    with pyro.get_param_store().scope():
        assert torch.isfinite(_loss(bn, {"a": torch.tensor([-1, 1]), "c": torch.tensor([1, 1])}, elbo))


def test_a_drawn_value_of_a_missing_parent_leaves_the_row_unjudged():
    """A parent whose value is one draw (conditioned, as under Gibbs) is not every value: the row is not refused
    for it (its log-probability under that draw is -inf, what a sampler's conditional sees)."""
    bn = _abc()
    data = {"a": torch.tensor([0]), "c": torch.tensor([1])}
    tr = poutine.trace(poutine.condition(bn.model, {"b": torch.tensor([1])})).get_trace(data)
    tr.compute_log_prob()
    assert tr.nodes["c"]["log_prob"].tolist() == [float("-inf")]


def test_no_check_without_validation():
    bn = _abc()
    with pyro.validation_enabled(False):
        assert _loss(bn, {"a": torch.tensor([0]), "c": torch.tensor([1])}).item() == float("inf")


def _two_children() -> BayesNet:
    """m -> c1, m -> c2, where c1 = 'yes' is impossible given m = 0 and c2 = 1 given m = 1: a row with m missing
    and c1 = 'yes', c2 = 1 has probability 0 through the two tables together, which no one-table check sees."""
    bn = BayesNet().add("m", cpd.Table([0.5, 0.5]))
    bn.add("c1", cpd.Table([[1.0, 0.0], [0.5, 0.5]], ["m"]), states=["no", "yes"])
    return bn.add("c2", cpd.Table([[0.5, 0.5], [1.0, 0.0]], ["m"]))


_TWO_CHILDREN_DATA = torch.tensor([[0, 0, 0], [-1, 1, 0], [-1, 1, 1], [1, 1, 0], [-1, 0, 1]])  # row 2: m = ?


def test_a_row_impossible_only_through_two_tables_is_named_by_fit():
    """Before, fit stopped with a bare TrainingDivergedError ('loss of player 'elbo' is inf at step 0 ... pass
    skip_nonfinite=True'), naming no row: each child's table alone leaves one state of m possible."""
    bn = _two_children()
    assert bn.log_evidence(bn.columns(_TWO_CHILDREN_DATA)).isinf().tolist() == [False, False, True, False, False]
    objective = SVIObjective(bn.model, bn.guide, TraceEnum_ELBO(max_plate_nesting=1))
    named = (r"loss of player 'elbo' is inf at step 0; no update was applied.*SVIObjective\.explain_nonfinite: "
             r"BayesNet: row \[2\] of the data has probability 0 under the network .*row 2 \(c1='yes', c2=1\)")
    for batch in (_TWO_CHILDREN_DATA, bn.split_missing(_TWO_CHILDREN_DATA)):  # -1 markers, and the (values, mask)
        with pytest.raises(TrainingDivergedError, match=named) as caught:
            hybridpgm.fit(objective, batch, **FIT)
        assert caught.value.step == 0 and caught.value.player == "elbo"
    # split into micro-batches of 3 and 2 rows: the row is the third of the first
    with pytest.raises(TrainingDivergedError,
                       match=r"micro-batch 1 of 2 \(rows 0\.\.2 of the batch, numbered from 0 in it\): BayesNet: "
                             r"row \[2\] of the data") as caught:
        hybridpgm.fit(objective, _TWO_CHILDREN_DATA, accumulate=2, **FIT)
    assert "micro-batch 2 of 2" not in str(caught.value)  # the second micro-batch is possible: nothing said


def test_explain_nonfinite_loss_names_only_impossible_rows():
    bn = _two_children()
    assert bn.explain_nonfinite_loss(_TWO_CHILDREN_DATA[[0, 1, 3, 4]]) is None
    assert bn.explain_nonfinite_loss(None) is None
    text = bn.explain_nonfinite_loss(torch.tensor([[-1, 1, 1], [0, 0, 0], [-1, 1, 1], [0, 1, 0]]))
    # rows 0 and 2 through the two tables; row 3 through c1's table alone (named as well: the exact evidence)
    assert "rows [0, 2, 3] of the data have probability 0" in text
    assert "row 0 (c1='yes', c2=1), row 2 (c1='yes', c2=1), row 3 (m=0, c1='yes', c2=0)" in text


def test_a_failing_explanation_still_raises_the_divergence(monkeypatch):
    """The explanation runs on the error path; its own failure is reported, never raised in place of the
    TrainingDivergedError."""
    bn = _two_children()

    def broken(evidence=None):
        raise RuntimeError("exact query out of memory")

    monkeypatch.setattr(bn, "log_evidence", broken)
    objective = SVIObjective(bn.model, bn.guide, TraceEnum_ELBO(max_plate_nesting=1))
    with pytest.raises(TrainingDivergedError,
                       match=r"loss of player 'elbo' is inf at step 0.*could not explain the non-finite loss "
                             r"\(RuntimeError: exact query out of memory\)"):
        hybridpgm.fit(objective, _TWO_CHILDREN_DATA, **FIT)


def test_an_impossible_row_under_accumulation_names_the_step_and_the_micro_batch():
    """The deferred DataError numbered the row within its micro-batch without saying which: under accumulate=2
    the batch's row 4 was reported as "row [0] of the data (of the batch, inside fit)"."""
    bn = _ab(b=((1.0, 0.0), (0.5, 0.5)))
    data = torch.tensor([[1, 1], [0, 0], [1, 0], [0, 0], [0, 1], [1, 1], [0, 0], [1, 0]])  # batch row 4: impossible
    objective = SVIObjective(bn.model, bn.guide, TraceEnum_ELBO(max_plate_nesting=1))
    with pytest.raises(DataError) as caught:
        hybridpgm.fit(objective, data, **{**FIT, "batch_size": 8}, accumulate=2, max_steps=1)
    assert str(caught.value).startswith(
        "BayesNet.model: row [0] of the data (training data, step 0, player 'elbo', micro-batch 2 of 2 (4 rows); "
        "rows numbered from 0 within it) is impossible under the model: node 'b'"), str(caught.value)
    with pytest.raises(DataError, match=r"row \[4\] of the data \(training data, step 0, player 'elbo'; rows"):
        hybridpgm.fit(objective, data, **{**FIT, "batch_size": 8}, max_steps=1)


def _masked_loss(bn, data, keep):
    return TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(poutine.mask(bn.model, mask=keep), bn.guide, data)


def test_rows_masked_out_by_the_callers_poutine_mask_are_not_judged():
    """Before, ``poutine.mask(bn.model, mask=[True, True, False])`` over a padding row of probability 0 raised
    "row [2] ... is impossible under the model", where a hand-written Pyro model (and this one, validation off)
    gives the loss of the kept rows, -(log 0.5 + log 0.35) = 1.7430."""
    bn = _ab(b=((1.0, 0.0), (0.3, 0.7)))
    data = torch.tensor([[0, 0], [1, 1], [0, 1]])  # row 2: b = 1 given a = 0, probability 0
    keep = torch.tensor([True, True, False])
    expected = -(torch.tensor(0.5).log() + torch.tensor(0.5 * 0.7).log())
    assert torch.allclose(_masked_loss(bn, data, keep), expected)
    # a column with missing entries (the "<node>_observed" site, under the model's own obs_mask): row 3 sums b out
    holed = torch.tensor([[0, 0], [1, 1], [0, 1], [1, -1]])
    keep4 = torch.tensor([True, True, False, True])
    assert torch.allclose(_masked_loss(bn, holed, keep4), expected - torch.tensor(0.5).log())
    # a row impossible for every value of a missing, enumerated parent (c = 1 given a = 0, b = ?), masked out
    abc = _abc()
    rows = torch.tensor([[1, 0, 1], [0, -1, 1]])
    assert torch.isfinite(_masked_loss(abc, rows, torch.tensor([True, False])))
    with pytest.raises(DataError, match=r"row \[1\] of the data is impossible .* node 'c'"):
        _masked_loss(abc, rows, torch.tensor([True, True]))
    # sites renamed by the caller's handlers (pyro.contrib.autoname.scope) are known by the model's names
    scoped = TraceEnum_ELBO(max_plate_nesting=1)
    guide = scope(abc.guide, prefix="s")
    model = scope(poutine.mask(abc.model, mask=torch.tensor([True, False])), prefix="s")
    assert torch.allclose(scoped.differentiable_loss(model, guide, rows), -torch.tensor(0.125).log())
    with pytest.raises(DataError, match=r"row \[1\] of the data is impossible .* node 'c'"):
        scoped.differentiable_loss(scope(abc.model, prefix="s"), guide, rows)
    # the kept rows are still judged: a mask keeping row 2 (or nothing masking it) refuses it
    with pytest.raises(DataError, match=r"row \[2\] of the data is impossible .* node 'b'"):
        _masked_loss(bn, data, torch.tensor([False, True, True]))
    # a mask with a dim besides the rows' (a vectorized particle plate): a row counts where any entry keeps it
    def particles(keep2):
        def program(rows):
            with pyro.plate("particles", 2, dim=-2), poutine.mask(mask=keep2):
                bn.model(rows)
        return program

    elbo = TraceEnum_ELBO(max_plate_nesting=2)
    assert torch.allclose(elbo.differentiable_loss(particles(keep.expand(2, 3)), lambda rows: None, data),
                          2 * expected)
    with pytest.raises(DataError, match=r"row \[2\] of the data is impossible"):
        elbo.differentiable_loss(particles(torch.stack([keep, torch.ones(3, dtype=torch.bool)])), lambda rows: None,
                                 data)


def test_an_impossible_row_outside_fit_is_numbered_within_the_data_given():
    """Outside fit the message said "row [2] of the data (of the batch, inside fit)"."""
    bn = _ab(b=((1.0, 0.0), (0.5, 0.5)))
    with pytest.raises(DataError) as caught:
        _loss(bn, torch.tensor([[0, 0], [1, 1], [0, 1]]))
    assert str(caught.value).startswith("BayesNet.model: row [2] of the data is impossible under the model: node "
                                        "'b' is observed in a state of probability 0"), str(caught.value)
