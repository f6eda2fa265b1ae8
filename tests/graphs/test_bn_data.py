"""BayesNetData: the dtypes of data columns and context inputs (continuous values are never rounded)."""

import pytest
import torch
from pyro import poutine
from pyro.infer import TraceEnum_ELBO

from hybridpgm.errors import DataError
from hybridpgm.graphs import BayesNet, cpd
from tests.graphs.bn_helpers import single_thread  # noqa: F401 (autouse fixture)


def _hybrid(context: bool = False) -> BayesNet:
    bn = BayesNet()
    bn.add("A", cpd.Table([0.5, 0.5]))
    bn.add("X", cpd.LinearGaussian(bias=[0.0, 1.0], parents=["A"]))
    if context:
        torch.manual_seed(0)
        bn.add("E", cpd.Neural(torch.nn.Linear(3, 2), ["A"], cardinality=2, context=["u"]))
    return bn


X64 = torch.tensor([0.1, 0.7], dtype=torch.float64)
ROUNDS = r"data column 'X' \(a continuous node\) has dtype torch.float64, the model computes in torch.float32"


def test_float64_continuous_data_for_a_float32_network_is_refused_not_rounded():
    """Before, the model used X = 0.10000000149 for the float64 datum 0.1 without a word."""
    bn = _hybrid()
    a = torch.tensor([1, 0])
    mask = {"A": torch.tensor([True, False]), "X": torch.tensor([True, True])}
    for call in (lambda: bn.columns({"A": a, "X": X64}),
                 lambda: poutine.trace(bn.model).get_trace({"A": a, "X": X64}),
                 lambda: bn.log_prob({"A": a, "X": X64}),
                 lambda: bn.model(torch.stack([a.double(), X64], -1)),  # [N, V] tensor data
                 lambda: bn.model({"A": a, "X": X64}, mask),
                 lambda: bn.split_missing({"A": a, "X": X64})):
        with pytest.raises(DataError, match=ROUNDS + r".*x.to\(torch.float32\).*model.to\(torch.float64\)"):
            call()


def test_exact_conversions_and_discrete_columns_are_unaffected():
    bn = _hybrid()
    # integer and float16 continuous data convert exactly; a list is built in the network's dtype
    for x in (torch.tensor([1, 2]), torch.tensor([0.5, 1.5], dtype=torch.float16), [0.5, 1.5]):
        assert bn.columns({"X": x})["X"].dtype == torch.float32
    # discrete states in float64 or int64 columns: unchanged rules
    for a in (torch.tensor([1.0, 0.0], dtype=torch.float64), torch.tensor([1, 0])):
        lp = bn.log_prob({"A": a, "X": X64.float()})
        assert lp.dtype == torch.float32 and lp.shape == (2,)
    loss = TraceEnum_ELBO(max_plate_nesting=1).loss(
        bn.model, bn.guide, torch.tensor([[float("nan"), 0.1], [1.0, 0.7]], dtype=torch.float32))
    assert torch.isfinite(torch.tensor(loss))


def test_a_float64_network_takes_float64_data_exactly():
    bn = _hybrid().double()
    tr = poutine.trace(bn.model).get_trace({"A": torch.tensor([1, 0]), "X": X64})
    assert torch.equal(tr.nodes["X"]["value"], X64)
    assert bn.columns({"X": [0.1]})["X"].item() == 0.1  # not rounded through float32 first


def test_float64_context_inputs_for_a_float32_network_are_refused():
    bn = _hybrid(context=True)
    data = {"A": torch.tensor([1, 0]), "X": X64.float(), "E": torch.tensor([0, 1])}
    with pytest.raises(DataError, match=r"context input 'u' has dtype torch.float64, the model computes in "
                                        r"torch.float32"):
        bn.log_prob(data, {"u": torch.zeros(2, 1, dtype=torch.float64)})
    assert bn.log_prob(data, {"u": torch.zeros(2, 1)}).shape == (2,)
    assert bn.log_prob(data, torch.zeros(2, 1, dtype=torch.int64)).shape == (2,)  # integers convert exactly


def test_a_discrete_column_may_hold_state_names():
    """Evidence took state names; data columns gave a raw ``ValueError: too many dimensions 'str'``."""
    from hybridpgm.errors import DataError

    bn = BayesNet().add("rain", cpd.Table([0.2, 0.8]), states=["no", "yes"])
    assert torch.equal(bn.columns({"rain": ["yes", None, "no"]})["rain"], torch.tensor([1, -1, 0]))
    torch.testing.assert_close(bn.log_prob({"rain": ["no", "yes"]}), torch.tensor([0.2, 0.8]).log())
    with pytest.raises(DataError, match="data column 'rain' holds 'maybe', which is not a state of 'rain'"):
        bn.columns({"rain": ["no", "maybe"]})
    with pytest.raises(DataError, match="data column 'rain' must hold states"):
        bn.columns({"rain": [{"no": 1}]})
