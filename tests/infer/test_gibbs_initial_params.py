"""Gibbs' ``initial_params`` (``MCMC(kernel, initial_params=...)``, hybridpgm/infer/gibbs.py): a bad one is a
ConfigError naming the site at :meth:`Gibbs.setup`, a good one starts the chain as before."""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import pytest
import torch
from pyro.infer import MCMC

from hybridpgm.errors import ConfigError
from hybridpgm.infer import Gibbs

GOOD = {"a": torch.tensor(1.0), "b": torch.tensor([2.0, 2.0, 1.0])}


def model():
    a = pyro.sample("a", dist.Bernoulli(0.5))
    with pyro.plate("p", 3):
        b = pyro.sample("b", dist.Categorical(torch.tensor([0.2, 0.3, 0.5])))
    pyro.sample("y", dist.Normal(a + b.float().sum(), 1.0), obs=torch.tensor(4.0))


def _samples(initial_params, num_samples=4):
    pyro.set_rng_seed(0)
    mcmc = MCMC(Gibbs(model), num_samples=num_samples, warmup_steps=0, initial_params=initial_params,
                disable_progbar=True)
    mcmc.run()
    return mcmc.get_samples()


def _with(site, value):
    return {**GOOD, site: torch.tensor(value)}


@pytest.mark.parametrize("initial_params, match", [
    ({"a": torch.tensor(1.0)}, r"latent sites \['a', 'b'\]; missing: \['b'\]"),
    ({**GOOD, "c": torch.tensor(0.0)}, r"not latent sites of the model: \['c'\]"),
    ({**GOOD, "y": torch.tensor(0.0)}, r"not latent sites of the model: \['y'\]"),  # would replace the data
    (_with("b", [2.0, 2.0]), r"initial_params\['b'\] has shape \(2,\), expected \(3,\)"),
    (_with("b", 2.0), r"initial_params\['b'\] has shape \(\), expected \(3,\)"),
    (_with("b", [2.0, 9.0, 1.0]), r"initial_params\['b'\] has 1 value\(s\) outside the site's support \[0, 1, 2\]"),
    (_with("b", [2.0, -1.0, 1.0]), r"initial_params\['b'\] .* outside .* e\.g\. \[-1\.0\]"),
    (_with("b", [2.0, float("nan"), 1.0]), r"initial_params\['b'\] .* outside .* e\.g\. \[nan\]"),
    (_with("b", [2.0, 1.5, 1.0]), r"initial_params\['b'\] .* outside .* e\.g\. \[1\.5\]"),
    (_with("a", 7.0), r"initial_params\['a'\] has 1 value\(s\) outside the site's support \[0\.0, 1\.0\] "
                      r"\(Bernoulli\)"),
    (_with("a", 0.5), r"initial_params\['a'\] .* outside"),
    (_with("a", float("nan")), r"initial_params\['a'\] .* outside"),
])
def test_a_bad_initial_params_is_a_config_error_naming_the_site(initial_params, match):
    """Before: a bare KeyError (missing site), raw RuntimeErrors from indexing (shape, 9, -1, NaN in ``b``), or
    nothing at all (an unknown site, a fraction, ``a = 7`` or NaN read as a state)."""
    with pytest.raises(ConfigError, match=match):
        _samples(initial_params)


def test_a_non_tensor_value_and_a_non_dict_are_config_errors():
    """Before: an AttributeError in the first sweep, and a non-dict was kept as it was."""
    kernel = Gibbs(model)
    kernel.initial_params = {**GOOD, "a": 1.0}  # accepted here, refused by setup (the shapes need the model)
    with pytest.raises(ConfigError, match=r"initial_params\['a'\] is a float, expected a tensor of shape \(\)"):
        kernel.setup(0)
    with pytest.raises(ConfigError, match="initial_params must be a dict of site name -> tensor .* got list"):
        Gibbs(model).initial_params = [GOOD]


def test_a_good_initial_params_starts_the_chain_as_before():
    """Guard (passes before and after): the chain from ``initial_params`` is the kernel's own sweeps from it,
    bit for bit, in any dtype the support holds (integer and boolean states too)."""
    pyro.set_rng_seed(0)
    kernel = Gibbs(model)
    kernel.setup(0)
    state, expected = dict(GOOD), []
    for _ in range(4):
        state = kernel.sample(state)
        expected.append(state)
    for init in (GOOD, {"a": torch.tensor(True), "b": torch.tensor([2, 2, 1])}):
        samples = _samples(init)
        for site in ("a", "b"):
            assert torch.equal(samples[site], torch.stack([s[site] for s in expected])), site
