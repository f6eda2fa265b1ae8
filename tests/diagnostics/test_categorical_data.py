"""ArviZ data of exact categorical posteriors (hybridpgm/diagnostics/categorical_data.py)."""

import numpy as np
import pytest
import torch

from hybridpgm.diagnostics import from_categorical
from hybridpgm.errors import DataError


def test_categorical_posteriors_with_named_dims():
    probs = {"rain": torch.tensor([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]]),
             "wet": torch.tensor([[0.1, 0.3, 0.6], [0.2, 0.2, 0.6], [1.0, 0.0, 0.0]])}
    idata = from_categorical(probs)
    assert idata.posterior["rain"].dims == ("chain", "draw", "row", "rain_state")
    assert idata.posterior["rain"].shape == (1, 1, 3, 2) and idata.posterior["wet"].shape == (1, 1, 3, 3)
    np.testing.assert_allclose(idata.posterior["rain"].values[0, 0], probs["rain"].numpy())
    assert from_categorical({"rain": torch.tensor([0.3, 0.7])}).posterior["rain"].shape == (1, 1, 1, 2)
    with pytest.raises(DataError, match="same number of evidence rows"):
        from_categorical({"rain": probs["rain"], "wet": torch.tensor([0.1, 0.3, 0.6])})
    with pytest.raises(DataError, match="'bad'"):
        from_categorical({"bad": torch.zeros(2, 2, 2)})


@pytest.mark.parametrize("probabilities, match", [
    ({"a": torch.tensor([[0.5, 0.6], [0.5, 0.5]])}, "row\\(s\\) \\[0\\] sum to \\[1.1\\]"),
    ({"a": torch.tensor([[1.5, -0.5]])}, "negative or NaN probabilities in row\\(s\\) \\[0\\]"),
    ({"a": torch.tensor([[float("nan"), 1.0]])}, "negative or NaN"),
    ({"a": torch.tensor([[0, 1]])}, "floating-point probabilities, got dtype torch.int64"),
    ({}, "at least one variable"),
])
def test_from_categorical_refuses_rows_that_are_not_probability_vectors(probabilities, match):
    with pytest.raises(DataError, match=match):
        from_categorical(probabilities)


def test_from_categorical_accepts_float32_rounding():
    probs = torch.softmax(torch.randn(4, 1000, generator=torch.Generator().manual_seed(0)), -1)
    assert probs.dtype == torch.float32
    data = from_categorical({"a": probs})
    np.testing.assert_allclose(np.asarray(data["posterior"]["a"]).reshape(4, 1000), probs.numpy())


def _variables(data, group: str) -> list[str]:
    return sorted(data[group].data_vars)


@pytest.mark.parametrize("probabilities, dims", [
    ({"x": [[0.3, 0.7]], "x_state": [[0.2, 0.3, 0.5]]},
     {"x": ("row", "x_state_"), "x_state": ("row", "x_state_state")}),
    ({"row": [[0.3, 0.7]]}, {"row": ("row_", "row_state")}),
    ({"result": [[0.2, 0.8]], "row_": [[0.5, 0.5]], "row": [[1.0, 0.0]]},
     {"result": ("row__", "result_state"), "row_": ("row__", "row__state"), "row": ("row__", "row_state")}),
], ids=["x-and-x_state", "row", "row-and-row_"])
def test_from_categorical_keeps_every_node_whatever_its_name(probabilities, dims):
    """A node named like a dim of another ('x_state' beside 'x', or 'row') became a coordinate and was lost."""
    data = from_categorical({k: torch.tensor(v) for k, v in probabilities.items()})
    assert _variables(data, "posterior") == sorted(probabilities)
    for name, values in probabilities.items():
        assert data["posterior"][name].dims == ("chain", "draw") + dims[name]
        np.testing.assert_allclose(data["posterior"][name].values[0, 0], values)


@pytest.mark.parametrize("name", ["chain", "draw"])
def test_from_categorical_refuses_a_node_named_like_a_sample_dim(name):
    with pytest.raises(DataError, match=f"variable '{name}' in group 'posterior'.*sample dim"):
        from_categorical({name: torch.tensor([[0.3, 0.7]])})


@pytest.mark.parametrize("value", [torch.tensor([[0.2, 0.8], [0.6, 0.4]]), np.array([[0.2, 0.8]]), [0.2, 0.8]])
def test_a_posterior_that_is_not_a_mapping_is_a_data_error_naming_its_type(value):
    """``BayesNet.posterior`` with one name returns a tensor; passed on directly it raised torch's ``Boolean
    value of Tensor with more than one value is ambiguous`` (NumPy's truth-value ValueError for an array)."""
    with pytest.raises(DataError, match=rf"from_categorical needs a mapping .* got {type(value).__name__}"):
        from_categorical(value)


def test_what_arviz_gives_on_exact_probabilities_is_what_the_docstring_says():
    """A named guard of from_categorical's docstring (the layout is unchanged, so it passes on the old code too):
    the probabilities are selected by chain 0 / draw 0 and listed in az.summary's mean column, and the
    across-draw statistics are NaN, under ArviZ 0.x and 1.x."""
    import warnings

    import arviz as az

    probs = torch.tensor([[0.2, 0.8], [0.6, 0.4]], dtype=torch.float64)
    idata = from_categorical({"rain": probs})
    np.testing.assert_array_equal(idata.posterior["rain"].sel(chain=0, draw=0).values, probs.numpy())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        table = az.summary(idata, kind="stats", round_to="none")
    np.testing.assert_allclose(table["mean"].to_numpy(), probs.reshape(-1).numpy())
    assert table["sd"].isna().all()
