"""A quadrature size a model file names is bounded before the Gauss-Hermite rule is made
(hybridpgm/serialization_specs.py)."""

import gpytorch
import pytest
import torch
from gpytorch.utils.quadrature import GaussHermiteQuadrature1D

import hybridpgm
from hybridpgm.errors import CheckpointError
from hybridpgm.serialization_specs import MAX_QUADRATURE_LOCS


def _write(path, model, state_dict):
    torch.save({"format": "hybridpgm-model", "format_version": 1, "model": model, "tensors": {},
                "state_dict": state_dict, "meta": {"__dict__": {}}, "versions": {}}, path)


@pytest.mark.parametrize("num_locs", [MAX_QUADRATURE_LOCS + 1, 400, 0, True, 20.0])
def test_a_quadrature_size_out_of_bounds_is_refused_before_the_rule_is_made(tmp_path, num_locs):
    """Found by an audit: ``num_locs=6000`` spent 40 s in GPyTorch's O(n^3) Gauss-Hermite rule (and from about
    380 points NumPy's rule is NaN); before, 400 points loaded with NaN weights."""
    _write(tmp_path / "m.pt", {"class": "gpytorch.likelihoods.bernoulli_likelihood.BernoulliLikelihood",
                               "spec": {"__dict__": {"max_plate_nesting": 1, "num_locs": num_locs}}}, {})
    with pytest.raises(CheckpointError, match="num_locs") as raised:
        hybridpgm.load(tmp_path / "m.pt")
    assert str(tmp_path / "m.pt") in str(raised.value)


def test_a_likelihood_with_more_points_than_a_file_holds_is_refused_at_save(tmp_path):
    likelihood = gpytorch.likelihoods.BernoulliLikelihood()
    likelihood.quadrature = GaussHermiteQuadrature1D(MAX_QUADRATURE_LOCS + 1)
    with pytest.raises(CheckpointError, match="num_locs=257"):
        hybridpgm.save(likelihood, tmp_path / "m.pt")
    assert not (tmp_path / "m.pt").exists()
    likelihood.quadrature = GaussHermiteQuadrature1D(MAX_QUADRATURE_LOCS)
    hybridpgm.save(likelihood, tmp_path / "m.pt")
    assert hybridpgm.load(tmp_path / "m.pt").quadrature.num_locs == MAX_QUADRATURE_LOCS
