"""BayesNet.model under Pyro's JIT ELBOs: the data checks hold for every batch the compiled ELBO is given (before,
only the batch being traced was checked), the missing-entry pattern that the trace freezes is kept, and the empty
guide's refusal of a non-enumerating ELBO reaches the JIT ELBOs' parameter capture."""

import warnings

import pyro
import pytest
import torch
from pyro.infer import (JitTrace_ELBO, JitTraceEnum_ELBO, JitTraceGraph_ELBO, JitTraceMeanField_ELBO,
                        TraceEnum_ELBO)

from hybridpgm.errors import ConfigError
from hybridpgm.graphs import BayesNet, cpd
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)

DATA = torch.tensor([[0, 1, 1], [1, -1, 0], [-1, 0, 1], [1, 1, -1]])  # -1: missing


def _chain() -> BayesNet:
    bn = BayesNet().add("a", cpd.Table([0.6, 0.4], learnable=True))
    bn.add("b", cpd.Table([[0.8, 0.2], [0.3, 0.7]], ["a"], learnable=True))
    return bn.add("c", cpd.Table([[0.9, 0.1], [0.2, 0.8]], ["b"], learnable=True))


@pytest.fixture(autouse=True)
def param_store():
    with pyro.get_param_store().scope():
        yield


def _compiled(bn, *args, elbo=None):
    """A JitTraceEnum_ELBO compiled on ``args``; returns its loss function (which keeps the bound methods: Pyro
    compiles again for a model or guide of another ``id``)."""
    elbo = elbo or JitTraceEnum_ELBO(max_plate_nesting=1)
    model, guide = bn.model, bn.guide
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings, the deprecation of torch.jit.trace, the TrainingWarning
        elbo.differentiable_loss(model, guide, *args)
    return lambda *data: elbo.differentiable_loss(model, guide, *data)


def test_a_state_outside_the_node_is_refused_in_every_batch():
    """Before: the state 2 of the binary node 'b' was clamped to 1 and scored (loss 8.2377)."""
    loss = _compiled(_chain(), DATA)
    bad = DATA.clone()
    bad[3, 1] = 2
    with pytest.raises(torch.jit.Error, match=r"DataError: BayesNet: column 'b' holds an observed value outside "
                                              r"the states 0\.\.1"):
        loss(bad)


def test_an_integer_mask_other_than_0_and_1_is_refused_in_every_batch():
    bn = _chain()
    values, mask = bn.split_missing(DATA)
    loss = _compiled(bn, values, mask.long())
    bad = mask.long()
    bad[0, 0] = 2
    with pytest.raises(torch.jit.Error, match=r"DataError: mask of column 'a' holds integers other than 0 and 1"):
        loss(values, bad)


def test_a_row_impossible_under_a_structural_zero_is_refused_in_every_batch():
    """Pyro's JIT traces with validation off; before, the check was left out of the trace and the loss was inf."""
    bn = BayesNet().add("a", cpd.Table([0.5, 0.5], learnable=True))
    bn.add("b", cpd.Table([[1.0, 0.0], [0.3, 0.7]], ["a"], learnable=True))
    loss = _compiled(bn, torch.tensor([[0, 0], [1, 1], [1, 0]]))
    with pytest.raises(torch.jit.Error, match=r"DataError: BayesNet\.model: a row of the data is impossible under "
                                              r"the model: node 'b' is observed in a state of probability 0"):
        loss(torch.tensor([[0, 1], [1, 1], [1, 0]]))


def _impossible_row_losses(data):
    """The losses of ``data`` under the eager TraceEnum_ELBO and a JitTraceEnum_ELBO compiled on it, then on
    ``data`` with row 0 made impossible (b = 1 where a = 0 rules b = 1 out), all with Pyro's validation off."""
    bn = BayesNet().add("a", cpd.Table([0.5, 0.5], learnable=True))
    bn.add("b", cpd.Table([[1.0, 0.0], [0.3, 0.7]], ["a"], learnable=True))
    impossible = torch.tensor([[0, 1], [1, 1], [1, 0]])
    with pyro.validation_enabled(False):
        loss = _compiled(bn, data)
        eager = [TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(bn.model, bn.guide, d)
                 for d in (data, impossible)]
        return [loss(d) for d in (data, impossible)], eager


def test_without_validation_an_impossible_row_scores_as_under_the_eager_elbo():
    """Eager code skips the structural-zero check without Pyro's validation; before, the traced code compiled it
    in whatever the flag (Pyro's JIT turns validation off while it traces), refusing with torch.jit.Error a batch
    the eager ELBO scores +inf, and running the check on every step."""
    compiled, eager = _impossible_row_losses(torch.tensor([[0, 0], [1, 1], [1, 0]]))
    assert eager[1].item() == float("inf")
    assert [c.item() for c in compiled] == [e.item() for e in eager]


def test_without_validation_a_traced_impossible_row_scores_as_under_the_eager_elbo():
    """Before: tracing on the impossible row itself raised the eager DataError, which TraceEnum_ELBO does not raise
    without validation."""
    compiled, eager = _impossible_row_losses(torch.tensor([[0, 1], [1, 1], [1, 0]]))
    assert [c.item() for c in compiled] == [e.item() for e in eager] == [float("inf")] * 2


@pytest.mark.parametrize("later, column, effect", [
    ([[-1, 1, -1], [1, -1, -1], [1, 0, -1]], "a", "score its missing entries as observed values"),
    ([[0, 1, 1], [1, -1, -1], [1, 0, -1]], "c", "ignore its observed entries")])
def test_a_column_traced_complete_or_missing_must_stay_so(later, column, effect):
    """The trace freezes which columns are complete ('a'), partly ('b') or wholly ('c') missing; before, a later
    batch with 'a' missing somewhere, or 'c' observed somewhere, was scored with the traced sites (loss 5.1568
    for both, the missing 'a' read as state 0, the observed 'c' ignored)."""
    loss = _compiled(_chain(), torch.tensor([[0, 1, -1], [1, -1, -1], [1, 0, -1]]))
    assert torch.isfinite(loss(torch.tensor([[1, -1, -1], [1, 1, -1], [0, -1, -1]])))  # 'b' takes any pattern
    with pytest.raises(torch.jit.Error, match=f"column '{column}' was .*would {effect}") as refused:
        loss(torch.tensor(later))
    # the batch is valid, the trace out of date: before, "DataError" and "evaluate this batch with the eager ELBO"
    message = str(refused.value)
    assert "hybridpgm.errors.ObjectiveError: BayesNet.model was traced" in message
    assert ("[not a data error: the compiled function was traced on another missing pattern; trace a new JIT ELBO "
            "on such data or use TraceEnum_ELBO]") in message
    assert "DataError" not in message and "evaluate this batch" not in message


@pytest.mark.parametrize("nesting", [{"max_plate_nesting": 1}, {}])
def test_valid_batches_score_as_under_the_eager_elbo(nesting):
    """Exact enumeration: the compiled loss equals the eager one on each batch (a new missing pattern in 'b'
    too).  Without max_plate_nesting Pyro guesses it by a probe run under poutine.block inside the JIT's
    parameter capture, where the empty guide's check must let it through."""
    bn = _chain()
    loss = _compiled(bn, DATA, elbo=JitTraceEnum_ELBO(**nesting))
    for data in (DATA, torch.tensor([[1, 1, 0], [-1, -1, 0], [0, 0, -1], [1, 0, 1]])):
        eager = TraceEnum_ELBO(max_plate_nesting=1).differentiable_loss(bn.model, bn.guide, data)
        assert loss(data).item() == eager.item()


@pytest.mark.parametrize("elbo", [JitTrace_ELBO, JitTraceGraph_ELBO, JitTraceMeanField_ELBO])
def test_a_non_enumerating_jit_elbo_is_refused_on_missing_entries(elbo):
    """Pyro's JIT first runs the whole ELBO under poutine.block to capture its parameters; the empty guide's check
    let every block through, so JitTraceGraph_ELBO and JitTraceMeanField_ELBO failed there with a raw
    KeyError: 'a_unobserved'."""
    bn = _chain()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ConfigError, match=r"BayesNet\.guide is empty.*TraceEnum_ELBO"):
            elbo().loss_and_grads(bn.model, bn.guide, DATA)
