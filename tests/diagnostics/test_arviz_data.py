"""make_inference_data: arviz.from_dict for both ArviZ generations, with its checks
(hybridpgm/diagnostics/arviz_data.py)."""

import re

import numpy as np
import pytest

from hybridpgm.errors import DataError


def test_make_inference_data_names_a_surplus_dim():
    from hybridpgm.diagnostics import make_inference_data

    with pytest.raises(DataError, match="variable 'x' in group 'posterior'.*\\(2, 10, 3\\) has 1 after"):
        make_inference_data({"posterior": {"x": np.zeros((2, 10, 3))}}, dims={"x": ["a", "b"]})
    with pytest.raises(DataError, match="group 'observed_data'.*\\(3,\\) has 1 after none"):
        make_inference_data({"observed_data": {"y": np.zeros(3)}}, dims={"y": ["a", "b"]})
    data = make_inference_data({"posterior": {"x": np.zeros((2, 10, 3))}}, dims={"x": ["a"]})
    assert "a" in data["posterior"]["x"].dims


def _variables(data, group: str) -> list[str]:
    return sorted(data[group].data_vars)


@pytest.mark.parametrize("groups, dims, match", [
    ({"posterior": {"a": np.zeros((1, 4, 3)), "obs": np.zeros((1, 4))}}, {"a": ["obs"]},
     "variable 'obs' in group 'posterior' has the name of a dim of variable 'a'"),
    ({"posterior": {"a": np.zeros((1, 4, 3)), "a_dim_0": np.zeros((1, 4))}}, None,
     "variable 'a_dim_0' in group 'posterior' has the name of a dim of variable 'a'"),
    ({"observed_data": {"y": np.zeros(3), "y_dim_0": np.zeros(3)}}, None, "variable 'y_dim_0' in group "),
    ({"sample_stats": {"chain": np.zeros((1, 4))}}, None, "variable 'chain' in group 'sample_stats'"),
], ids=["named-dim", "default-dim", "observed-default-dim", "chain"])
def test_make_inference_data_refuses_a_variable_named_like_a_dim_of_its_group(groups, dims, match):
    from hybridpgm.diagnostics import make_inference_data

    with pytest.raises(DataError, match=match):
        make_inference_data(groups, dims=dims)


def test_make_inference_data_allows_sample_dim_names_in_unsampled_groups():
    from hybridpgm.diagnostics import make_inference_data

    data = make_inference_data({"posterior": {"a": np.zeros((1, 4))}, "constant_data": {"draw": np.arange(3.0)}})
    assert _variables(data, "constant_data") == ["draw"]


def test_make_inference_data_takes_dims_of_predictions_constant_data():
    """Its arrays have no (chain, draw) dims, but it was missing from the unsampled groups, so valid dims were
    refused; and ArviZ 1.x took the predictions groups' dims from pred_dims only, dropping them."""
    from hybridpgm.diagnostics import make_inference_data

    groups = {"predictions": {"y": np.zeros((1, 4, 5))}, "predictions_constant_data": {"x": np.arange(5.0)}}
    data = make_inference_data(groups, dims={"x": ["obs"], "y": ["obs"]}, coords={"obs": np.arange(10, 15)})
    assert data["predictions_constant_data"]["x"].dims == ("obs",)
    assert data["predictions"]["y"].dims == ("chain", "draw", "obs")
    np.testing.assert_array_equal(data["predictions"]["obs"].values, np.arange(10, 15))


@pytest.mark.parametrize("group", ["posteriour", "log_prior", "samples"])
def test_make_inference_data_refuses_a_group_arviz_0_would_drop(group):
    """ArviZ 0.x's from_dict dropped an unknown (or misspelt) group without a word; ArviZ 1.x kept it."""
    from hybridpgm.diagnostics import make_inference_data
    from hybridpgm.errors import ConfigError

    with pytest.raises(ConfigError, match=f"unknown ArviZ group\\(s\\) \\['{group}'\\]"):
        make_inference_data({group: {"a": np.zeros((1, 5))}})


def test_make_inference_data_keeps_warmup_groups():
    """Both ArviZ generations drop warmup_* groups unless told to save them."""
    from hybridpgm.diagnostics import make_inference_data

    data = make_inference_data({"posterior": {"a": np.zeros((1, 5))}, "warmup_posterior": {"a": np.ones((1, 3))}})
    assert data["warmup_posterior"]["a"].shape == (1, 3)


@pytest.mark.parametrize("group", ["posterior", "log_likelihood", "sample_stats"])
@pytest.mark.parametrize("shape", [(), (5,)])
def test_make_inference_data_refuses_a_sampled_array_without_chain_and_draw(group, shape):
    """ArviZ 0.x read a K array as one chain of K draws (a scalar as one draw), ArviZ 1.x raised a bare
    ValueError."""
    from hybridpgm.diagnostics import make_inference_data

    with pytest.raises(DataError, match=f"variable 'a' in group '{group}' has shape {re.escape(str(shape))}"):
        make_inference_data({group: {"a": np.zeros(shape)}})


def test_a_slash_in_a_name_is_refused_by_name_under_arviz_1(monkeypatch):
    """ArviZ 1.x's DataTree takes '/' as a path separator (xarray raised a bare ValueError for a prefixed site
    such as "mrf/b"); the names are refused with what to do.  The check runs before ArviZ is called, so the
    ArviZ 1.x branch is exercised here by its flag."""
    import numpy as np

    from hybridpgm.diagnostics import arviz_data
    from hybridpgm.errors import DataError

    monkeypatch.setattr(arviz_data, "_KEYWORD_STYLE", False)
    with pytest.raises(DataError, match=r"cannot hold '/'.*\['left/a', 'left/d'\].*prefix='left_'"):
        arviz_data.make_inference_data({"posterior": {"left/a": np.zeros((1, 3, 2)), "b": np.zeros((1, 3))}},
                                       dims={"left/a": ["left/d"]})


@pytest.mark.parametrize("groups, message", [
    ({"posterior": np.zeros((1, 3))}, "group 'posterior' must be a mapping variable -> array, got ndarray"),
    ({"posterior": [1.0, 2.0]}, "group 'posterior' must be a mapping variable -> array, got list"),
    (np.zeros((1, 3)), "needs a mapping group -> \\(variable -> array\\), got ndarray"),
])
def test_groups_that_are_not_mappings_are_a_data_error_naming_the_type(groups, message):
    """An array in place of a group's mapping raised NumPy's ``The truth value of an array with more than one
    element is ambiguous``."""
    from hybridpgm.diagnostics import make_inference_data

    with pytest.raises(DataError, match=f"make_inference_data {message}"):
        make_inference_data(groups)
