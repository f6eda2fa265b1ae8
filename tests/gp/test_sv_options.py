"""SVDeepKernelGP's options as attributes (hybridpgm.gp.sv_options): ``name_prefix`` and ``beta`` set later are
checked as the constructor checks them, ``name_prefix`` renames every site (the likelihood's ``f`` and ``y``
too), and both are saved with the model; ``num_features`` is fixed."""

from __future__ import annotations

import pickle

import pyro
import pytest
import torch

import hybridpgm
from hybridpgm.errors import ConfigError
from hybridpgm.gp import SVDeepKernelGP

# a UserWarning not ignored below fails the test (a later filter wins: the ignores, third-party
# warnings seen in this file, come after the errors)
pytestmark = pytest.mark.filterwarnings(
    "error::UserWarning",
)

X = torch.linspace(-1, 1, 6, dtype=torch.float64).unsqueeze(-1)
Y = torch.sin(3 * X[:, 0])


def _model(**options):
    inducing = torch.linspace(-1, 1, 4, dtype=torch.float64).unsqueeze(-1)
    return SVDeepKernelGP(None, num_features=1, num_data=6, inducing_points=inducing, **options)


def _sites(sv, program="model"):
    trace = pyro.poutine.trace(getattr(sv, program)).get_trace(X, Y)
    return [name for name, site in trace.nodes.items() if site["type"] == "sample"]


def _round_trip(sv, tmp_path):
    return hybridpgm.load(hybridpgm.save(sv, tmp_path / "sv.pt"))


@pytest.mark.parametrize("program", ["model", "guide"])
def test_name_prefix_set_later_renames_every_site_and_survives_save_and_load(program, tmp_path):
    """The audit: renaming gave ``second.u`` but still ``gp.f`` / ``gp.y`` (the likelihood's copy), and save/load
    brought back ``gp``."""
    sv = _model()
    sv.name_prefix = "second"
    assert _sites(sv, program) == _sites(_model(name_prefix="second"), program)
    assert not [name for name in _sites(sv, program) if name.startswith("gp.")]
    loaded = _round_trip(sv, tmp_path)
    assert (loaded.name_prefix, loaded.likelihood.name_prefix) == ("second", "second")
    assert _sites(loaded, program) == _sites(sv, program)


@pytest.mark.parametrize("bad", ["", None, 3])
def test_name_prefix_set_later_is_checked_as_in_the_constructor(bad):
    sv = _model()
    with pytest.raises(ConfigError, match="SVDeepKernelGP name_prefix must be a non-empty string"):
        sv.name_prefix = bad
    assert (sv.name_prefix, sv.likelihood.name_prefix) == ("gp", "gp")


def test_beta_set_later_is_checked_and_survives_save_and_load(tmp_path):
    """The audit: ``beta = 0`` came back 1 (the KL term at full weight), and ``beta = -1`` was accepted."""
    sv = _model()
    sv.beta = 0.0
    loaded = _round_trip(sv, tmp_path)
    assert loaded.beta == 0.0
    trace = pyro.poutine.trace(loaded.model).get_trace(X, Y)
    assert trace.nodes["gp.u"]["mask"] is False  # the KL term dropped, as in the model saved
    for bad in (-1.0, float("nan"), "0.5", True):
        with pytest.raises(ConfigError, match=r"SVDeepKernelGP beta \(the KL weight\)"):
            sv.beta = bad
    assert sv.beta == 0.0 and _round_trip(sv, tmp_path).beta == 0.0


def test_num_features_is_fixed_and_options_pickle_as_before():
    """``num_features`` decides the inducing points' shape.  The pickling half is a guard (passes on the old code
    too): ``name_prefix`` and ``beta`` stay ``__dict__`` entries, as in the pickles of earlier releases."""
    sv = _model(name_prefix="a", beta=0.5)
    with pytest.raises(AttributeError, match="SVDeepKernelGP.num_features is fixed"):
        sv.num_features = 2
    assert (vars(sv)["name_prefix"], vars(sv)["beta"], vars(sv)["num_features"]) == ("a", 0.5, 1)
    copy = pickle.loads(pickle.dumps(sv))
    assert (copy.name_prefix, copy.likelihood.name_prefix, copy.beta, copy.num_data) == ("a", "a", 0.5, 6)
    copy.name_prefix = "b"
    assert (copy.likelihood.name_prefix, sv.likelihood.name_prefix) == ("b", "a")


def test_name_prefix_holding_pyro_s_module_separator_is_refused_at_construction_and_on_assignment():
    """The audit: ``name_prefix="gp$$$1"`` was accepted, then ``pyro.module(name_prefix, gp)`` failed at the first
    plain SVI step with a bare AssertionError (accepted silently under ``python -O``)."""
    with pytest.raises(ConfigError, match=r"^SVDeepKernelGP name_prefix='gp\$\$\$1' holds '\$\$\$', Pyro's separator"):
        _model(name_prefix="gp$$$1")
    sv = _model()
    with pytest.raises(ConfigError, match=r"^SVDeepKernelGP name_prefix='\$\$\$' holds '\$\$\$'"):
        sv.name_prefix = "$$$"
    assert (sv.name_prefix, sv.likelihood.name_prefix) == ("gp", "gp")
    sv.name_prefix = "gp$$1"  # two dollars are an ordinary name
    assert _sites(sv) == _sites(_model(name_prefix="gp$$1")) and "gp$$1.u" in _sites(sv)
