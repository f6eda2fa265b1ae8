"""Names that reach Pyro's param store (hybridpgm/checks_names.py ``module_name``, ``site_prefix``, split out of
hybridpgm/checks.py): a ``name=`` or ``prefix=`` holding ``"$$$"`` -- Pyro's separator between a module's name and
its parameters' names -- is refused where it is given, naming the argument and the value.  It was accepted, then
``pyro.module`` failed at the first plain SVI step with a bare ``AssertionError`` (and under ``python -O`` the name
went into the param store)."""

from __future__ import annotations

import pytest
import torch

import hybridpgm
from hybridpgm.checks import module_name, site_prefix
from hybridpgm.errors import ConfigError, ModelSpecError
from hybridpgm.graphs import BayesNet, MarkovNet, cpd


@pytest.mark.parametrize("value", ["", "left", "left_", "a.b", "$", "$$", "a$$b$$c", "a $$", "é/ü"])
def test_ordinary_names_and_prefixes_pass_as_themselves(value):
    """Guard (passes before and after)."""
    assert module_name(value, "Model") == value and site_prefix(value, "Model.model") == value


@pytest.mark.parametrize("value", ["$$$", "a$$$", "$$$b", "a$$$$b", "m$$$markov_net"])
def test_a_name_or_prefix_holding_the_separator_is_refused_naming_it(value):
    shown = repr(value).replace("$", r"\$")
    with pytest.raises(ModelSpecError, match=rf"^Model name={shown} holds '\$\$\$', Pyro's separator"):
        module_name(value, "Model")
    with pytest.raises(ConfigError, match=rf"^Model.model prefix={shown} holds '\$\$\$', Pyro's separator"):
        site_prefix(value, "Model.model", names_module=True)
    assert site_prefix(value, "Model.model") == value  # sample sites and plates may hold it


def _bayes_net(name=""):
    bn = BayesNet(name=name)
    bn.add("a", cpd.Table([0.5, 0.5], learnable=True))
    return bn


@pytest.mark.parametrize("where, build", [
    ("VAE", lambda name: hybridpgm.VAE(6, z_dim=2, hidden=[4], name=name)),
    ("SigmoidBeliefNet", lambda name: hybridpgm.SigmoidBeliefNet([6, 2], name=name)),
    ("BayesNet", _bayes_net),
])
def test_every_model_name_refuses_the_separator_at_construction(where, build):
    with pytest.raises(ModelSpecError, match=rf"^{where} name='enc\$\$\$1' holds '\$\$\$'"):
        build("enc$$$1")
    assert build("enc$$1") is not None


def test_markov_net_model_refuses_the_separator_before_any_pyro_statement():
    """``prefix`` also names the ``pyro.module`` of the potentials (``prefix + "markov_net"``)."""
    import pyro

    mrf = MarkovNet({"a": 2, "b": 2})
    mrf.add_factor("ab", ["a", "b"], torch.nn.Parameter(torch.zeros(2, 2)))
    with pyro.get_param_store().scope(), pyro.poutine.trace() as tracer:
        with pytest.raises(ConfigError, match=r"^MarkovNet.model prefix='m\$\$\$' holds '\$\$\$'"):
            mrf.model({"a": torch.tensor([0, 1])}, prefix="m$$$")
        assert not pyro.get_param_store().keys()
    assert not tracer.trace.nodes


@pytest.mark.parametrize("call", [
    lambda: hybridpgm.VAE(6, z_dim=2, hidden=[4]).model(torch.zeros(2, 6), prefix="v$$$"),
    lambda: hybridpgm.SigmoidBeliefNet([6, 2]).guide(torch.zeros(2, 6), prefix="v$$$"),
    lambda: _bayes_net().model({"a": torch.tensor([0, 1])}, prefix="v$$$"),
])
def test_a_prefix_of_sample_sites_alone_may_hold_the_separator(call):
    """A review found these refused by the first version of the check: their ``prefix`` names sample sites and
    plates only, which Pyro accepts with ``"$$$"`` (only ``MarkovNet.model``'s names a ``pyro.module`` too).  A
    guard: the code before the check accepted them as well."""
    import pyro

    with pyro.get_param_store().scope(), pyro.poutine.trace() as tracer:
        call()
    assert any(name.startswith("v$$$") for name in tracer.trace.nodes)


def test_checks_gives_the_same_names_and_functions():
    """hybridpgm/checks_names.py was split out of hybridpgm/checks.py, which re-exports it."""
    from hybridpgm import checks, checks_names

    assert (checks.module_name, checks.site_prefix, checks.name_list, checks.PYRO_MODULE_SEPARATOR) == \
        (checks_names.module_name, checks_names.site_prefix, checks_names.name_list, "$$$")
