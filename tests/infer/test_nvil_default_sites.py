"""NVIL's default sites follow the prefix the model and guide are bound with (hybridpgm/infer/nvil.py)."""

import math

import pytest
import torch

import hybridpgm  # noqa: F401
from hybridpgm.errors import ConfigError
from hybridpgm.infer import NVIL
from tests.generative.sbn_brute_force import (binary, deterministic_guide_sbn, flat_grads, mc_check,  # noqa: F401
                                             random_sbn, single_thread)
from tests.infer.nvil_helpers import _setup


def _fit_default_sites(make):
    """The default ``sites`` and ``fit``'s per-step losses of ``make(sbn)``, an NVIL objective of a seeded SBN."""
    from hybridpgm.generative import SigmoidBeliefNet

    torch.manual_seed(0)
    objective = make(SigmoidBeliefNet([6, 4, 3]))
    result = hybridpgm.fit(objective, binary(24, 6, 3), epochs=2, batch_size=8, progress=False, device="cpu",
                           seed=0)
    return objective.baselines.sites, result.history.loss["elbo"]


@pytest.mark.parametrize("how", ["model_kwargs", "partial"])
def test_prefixed_sbn_trains_with_default_sites_as_the_unprefixed_one(how):
    """The default sites follow the ``prefix=`` the model and guide are called with (``model_kwargs`` or a
    ``functools.partial`` of both), so a prefixed SBN trains -- before, the unprefixed ``latent_sites`` made the
    first loss an ObjectiveError -- and its losses are the unprefixed run's at the same seed, step for step."""
    import functools

    def partial(sbn):
        return NVIL(functools.partial(sbn.model, prefix="a/"), functools.partial(sbn.guide, prefix="a/"),
                    hidden_dim=5, module=sbn, model_parameters=sbn.model_parameters(),
                    guide_parameters=sbn.guide_parameters())

    def keyword(sbn):
        return NVIL(sbn.model, sbn.guide, hidden_dim=5, model_kwargs={"prefix": "a/"})

    plain_sites, plain = _fit_default_sites(lambda sbn: NVIL(sbn.model, sbn.guide, hidden_dim=5))
    sites, losses = _fit_default_sites(partial if how == "partial" else keyword)
    assert plain_sites == ["h1", "h2"] and sites == ["a/h1", "a/h2"]
    assert len(plain) == 6 and all(math.isfinite(v) for v in plain)
    assert losses == plain


def test_default_sites_refuse_a_bad_or_disagreeing_prefix():
    import functools

    sbn, _ = _setup()
    parameters = {"module": sbn, "model_parameters": sbn.model_parameters(),
                  "guide_parameters": sbn.guide_parameters()}
    with pytest.raises(ConfigError, match=r"model is bound with prefix='a/' and the guide with prefix='b/'"):
        NVIL(functools.partial(sbn.model, prefix="a/"), functools.partial(sbn.guide, prefix="b/"), **parameters)
    with pytest.raises(ConfigError, match=r"NVIL model/guide prefix must be a string.*int 3"):
        NVIL(sbn.model, sbn.guide, model_kwargs={"prefix": 3})
    explicit = NVIL(functools.partial(sbn.model, prefix="a/"), functools.partial(sbn.guide, prefix="b/"),
                    sites=["b/h1"], **parameters)  # explicit sites are taken as given
    assert explicit.baselines.sites == ["b/h1"]
