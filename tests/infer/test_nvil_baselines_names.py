"""NVILBaselines (hybridpgm/infer/nvil_baselines.py) keyed by site name: any site name Pyro allows (but ``""`` and
one with ``.``) gets a network, held under the escaped key of :func:`~hybridpgm.graphs.mrf_tables.table_key`
(ordinary names keep their state-dict keys); the empty name and a site named twice are refused by name."""

from __future__ import annotations

import math

import pyro
import pyro.distributions as dist
import pytest
import torch

from hybridpgm.errors import ConfigError
from hybridpgm.infer import NVIL, NVIL_ELBO, NVILBaselines
from hybridpgm.infer.nvil_baselines import BASELINES_MODULE_NAME

#: names torch refused as a ModuleDict key (a bare KeyError: "attribute 'type' already exists"), and names whose
#: escapes must not meet theirs
ODD = ["type", "train", "float", "to", "keys", "update", "training", "_modules", "__init__", "%74ype", "a%b",
       "a$$$b", "a/b", "x y"]


@pytest.mark.parametrize("site", ODD)
def test_any_pyro_site_name_gets_its_own_network(site):
    """The audit: ``NVILBaselines(["type"], ...)`` (and ``NVIL(..., sites=["type"])``) raised torch's KeyError.  The
    names from ``"%74ype"`` on are guards (torch took them before; their keys must stay apart from the escapes)."""
    baselines = NVILBaselines([site, "h1"], input_dim=3, hidden_dim=2)
    assert baselines.sites == [site, "h1"] and list(baselines.nets) == [site, "h1"]
    assert site in baselines.nets and "h1" in baselines.nets and "h2" not in baselines.nets
    assert [name for name, _ in baselines.nets.items()] == [site, "h1"]
    assert baselines.nets[site] is not baselines.nets["h1"]
    assert baselines.nets[site](torch.zeros(4, 3)).shape == (4,)
    fresh = NVILBaselines([site, "h1"], input_dim=3, hidden_dim=2)
    fresh.load_state_dict(baselines.state_dict())  # strict: the same keys
    assert torch.equal(fresh.nets[site][0].weight, baselines.nets[site][0].weight)


def test_escaped_keys_are_one_to_one():
    baselines = NVILBaselines(ODD, input_dim=3, hidden_dim=0)
    keys = list(baselines.nets._modules)
    assert len(set(keys)) == len(ODD) and list(baselines.nets) == ODD
    assert keys[:2] == ["%74ype", "%74rain"] and "%2574ype" in keys  # "type" and the literal "%74ype" apart


def test_ordinary_site_names_keep_their_state_dict_keys():
    """Guard (passes before and after): a state dict of the previous release -- keys ``nets.<site>...`` -- loads
    strictly, and the param store names are ``nvil_baselines$$$<site>.0.weight`` as before."""
    baselines = NVILBaselines(["h1", "layer_2"], input_dim=3, hidden_dim=2)
    expected = ["mean", "var"] + [f"nets.{site}.{layer}.{kind}" for site in ("h1", "layer_2") for layer in (0, 2)
                                  for kind in ("weight", "bias")]
    assert list(baselines.state_dict()) == expected
    old = {key: torch.full_like(value, 0.25) for key, value in baselines.state_dict().items()}
    NVILBaselines(["h1", "layer_2"], input_dim=3, hidden_dim=2).load_state_dict(old)
    assert [name for name, _ in baselines.nets.named_parameters()][0] == "h1.0.weight"


@pytest.mark.parametrize("sites, message", [
    ([""], r"^NVILBaselines: a site name is the empty string ''"),
    (["h1", ""], r"^NVILBaselines: a site name is the empty string '' \(sites: 'h1', ''\)$"),
    (["h1", "h2", "h1"], r"^NVILBaselines: site\(s\) 'h1' named more than once"),
    (["type", "type"], r"^NVILBaselines: site\(s\) 'type' named more than once"),
])
def test_the_empty_name_and_a_site_named_twice_are_refused_by_name(sites, message):
    """The audit: ``""`` gave torch's bare KeyError; ``["h1", "h1"]`` was accepted with one network and a second
    statistics slot never used."""
    with pytest.raises(ConfigError, match=message):
        NVILBaselines(sites, input_dim=3)


class _Mixture(pyro.nn.PyroModule):
    """A user's mixture whose discrete latent is called ``site`` (the audit's model: ``"type"``)."""

    def __init__(self, site):
        super().__init__()
        self.site = site
        self.logit = torch.nn.Parameter(torch.zeros(1))
        self.q = torch.nn.Linear(1, 1)

    def model(self, x):
        with pyro.plate("data", x.shape[0]):
            t = pyro.sample(self.site, dist.Bernoulli(logits=self.logit.expand(x.shape[0])))
            pyro.sample("x", dist.Normal(t, 1.0), obs=x.squeeze(-1))

    def guide(self, x):
        with pyro.plate("data", x.shape[0]):
            pyro.sample(self.site, dist.Bernoulli(logits=self.q(x).squeeze(-1)))


@pytest.mark.parametrize("site, key", [("type", "%74ype"), ("keys", "%6Beys"), ("a$$$b", "a$$$b")])
def test_a_latent_named_like_a_module_attribute_is_tracked_and_trained_under_plain_svi(site, key):
    """The site's network is attached (its running statistics move) and trained through Pyro's param store under
    the escaped name; ``NVIL(..., sites=[site])`` builds.  ``"a$$$b"`` is a guard (it worked before: the baselines
    are registered with ``pyro.param``, not ``pyro.module``)."""
    mix = _Mixture(site)
    x = torch.linspace(-1.0, 2.0, 8).unsqueeze(-1)
    torch.manual_seed(0)
    with pyro.get_param_store().scope():
        baselines = NVILBaselines([site], input_dim=1, hidden_dim=2)
        before = baselines.nets[site][0].weight.detach().clone()
        svi = pyro.infer.SVI(mix.model, mix.guide, pyro.optim.Adam({"lr": 0.05}), NVIL_ELBO(baselines))
        for _ in range(3):
            assert math.isfinite(svi.step(x))
        weight = baselines.nets[site][0].weight
        assert pyro.get_param_store().param_name(weight) == f"{BASELINES_MODULE_NAME}$$${key}.0.weight"
        assert not torch.equal(before, weight.detach())
        assert baselines.mean[0] != 0 and baselines.var[0] != 1  # the site was tracked: its statistics moved
    objective = NVIL(mix.model, mix.guide, sites=[site], input_dim=1, model_parameters=[mix.logit],
                     guide_parameters=list(mix.q.parameters()))
    assert objective.baselines.sites == [site] and site in objective.baselines.nets
