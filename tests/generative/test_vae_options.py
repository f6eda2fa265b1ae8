"""The VAE's options as attributes (hybridpgm.generative.vae_options): ``min_scale`` and ``checkpoint_activations``
set later are checked as the constructor checks them and saved with the model; ``x_dim``, ``z_dim``,
``likelihood`` and ``batch_norm`` are fixed."""

from __future__ import annotations

import copy
import math
import pickle

import pyro
import pytest
import torch

import hybridpgm
from hybridpgm import VAE
from hybridpgm.errors import ConfigError, ModelSpecError

X = torch.bernoulli(torch.full((3, 4), 0.5), generator=torch.Generator().manual_seed(0))


def _round_trip(vae, tmp_path):
    return hybridpgm.load(hybridpgm.save(vae, tmp_path / "vae.pt"))


def _guide_scale(vae):
    vae.eval()
    with torch.no_grad():
        return pyro.poutine.trace(vae.guide).get_trace(X).nodes["z"]["fn"].base_dist.scale


@pytest.mark.parametrize("bad", [-1.0, math.nan, math.inf, "0.5", True, None])
def test_min_scale_set_later_is_checked_as_in_the_constructor(bad):
    """The audit: ``vae.min_scale = -1`` was accepted and every ELBO was NaN."""
    vae = VAE(4, 2, [8])
    with pytest.raises(ModelSpecError, match="VAE min_scale"):
        vae.min_scale = bad
    assert vae.min_scale == 1e-4
    assert bool(vae.elbo(X).isfinite().all())


def test_min_scale_set_later_survives_save_and_load(tmp_path):
    """The audit: a min_scale of 0.5 came back as 1e-4 (the guide's scales below the floor the model was given)."""
    torch.manual_seed(0)
    vae = VAE(4, 2, [8])
    vae.min_scale = 0.5
    loaded = _round_trip(vae, tmp_path)
    assert loaded.min_scale == 0.5
    assert float(_guide_scale(loaded).min()) >= 0.5
    torch.testing.assert_close(_guide_scale(loaded), _guide_scale(vae), rtol=0.0, atol=0.0)


def test_checkpoint_activations_set_later_is_checked_and_survives_save_and_load(tmp_path):
    vae = VAE(4, 2, [8])
    vae.checkpoint_activations = True
    assert _round_trip(vae, tmp_path).checkpoint_activations is True
    with pytest.raises(ModelSpecError, match="VAE checkpoint_activations"):
        vae.checkpoint_activations = "no"
    assert vae.checkpoint_activations is True
    flat = VAE(4, 2, [])  # no hidden layers: the constructor's refusal, on assignment too
    with pytest.raises(ConfigError, match="saves no memory without hidden layers"):
        flat.checkpoint_activations = True
    assert flat.checkpoint_activations is False
    with pytest.raises(ConfigError, match="saves no memory without hidden layers"):
        VAE(4, 2, [], checkpoint_activations=True)


@pytest.mark.parametrize("name, value", [("likelihood", "gaussian"), ("x_dim", 5), ("z_dim", 3),
                                         ("batch_norm", True)])
def test_options_that_decide_the_parameters_are_fixed(name, value):
    """The audit: ``vae.likelihood = 'gaussian'`` on a Bernoulli VAE gave a raw AttributeError (no ``log_scale``)
    at the next ELBO, and ``'bernoulli'`` on a Gaussian one dropped ``log_scale`` from the model parameters."""
    vae = VAE(4, 2, [8])
    before = getattr(vae, name)
    with pytest.raises(AttributeError, match=rf"VAE.{name} is fixed when the model is built.*build a new VAE"):
        setattr(vae, name, value)
    assert getattr(vae, name) == before
    assert vae.elbo(X).shape == (3,)
    gaussian = VAE(4, 2, [8], likelihood="gaussian")
    with pytest.raises(AttributeError, match="VAE.likelihood is fixed"):
        gaussian.likelihood = "bernoulli"
    assert any(p is gaussian.log_scale for p in gaussian.model_parameters())


def test_copies_and_pickles_keep_the_options_in_the_old_layout(tmp_path):
    """The options stay ``__dict__`` entries under their own names, where the plain attributes of earlier releases
    were, so a VAE pickled by them unpickles with its values (that half passes on the old code too); a deep copy
    keeps its own value and saved record (the old code saved the constructor's ``min_scale``)."""
    vae = VAE(4, 2, [8], likelihood="gaussian")
    vae.min_scale = 0.25
    state = vae.__getstate__()
    assert (state["min_scale"], state["likelihood"], state["x_dim"]) == (0.25, "gaussian", 4)
    unpickled, deep = pickle.loads(pickle.dumps(vae)), copy.deepcopy(vae)
    for other in (unpickled, deep):
        assert (other.min_scale, other.likelihood, other.checkpoint_activations) == (0.25, "gaussian", False)
    deep.min_scale = 0.75
    assert vae.min_scale == 0.25 and _round_trip(deep, tmp_path).min_scale == 0.75
    assert _round_trip(vae, tmp_path).min_scale == 0.25
