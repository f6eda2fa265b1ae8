"""The checks of a user's network (hybridpgm/network_checks.py) at every entry point that takes one: a plain
function or functools.partial where a module is expected, a network returning a tuple, a lazy module nothing ran.

Before, each of these surfaced as torch's raw AttributeError, ValueError or RuntimeError (''function' object has no
attribute 'parameters'', ''tuple' object has no attribute 'shape'', "Attempted to use an uninitialized parameter",
"Can't access the shape of an uninitialized parameter")."""

import functools

import pytest
import torch
from pyro.infer import TraceEnum_ELBO
from torch import nn

import hybridpgm
from hybridpgm.errors import ConfigError, ModelSpecError
from hybridpgm.network_checks import check_network, check_output, refuse_uninitialized, uninitialized


class Pair(nn.Module):
    """A network returning ``(output, input)``."""

    def __init__(self, i, o):
        super().__init__()
        self.lin = nn.Linear(i, o)

    def forward(self, x):
        return self.lin(x), x


def _lazy(out=2):
    return nn.Sequential(nn.LazyLinear(4), nn.Tanh(), nn.Linear(4, out))


# ---------------------------------------------------------------- the checks themselves
def test_the_checks_pass_what_is_right_and_name_what_is_not():
    net = nn.Linear(2, 2)
    assert check_network(net, "the net") is net
    out = torch.zeros(2)
    assert check_output(out, "the net") is out
    with pytest.raises(ModelSpecError, match=r"^the net must be a torch.nn.Module, got partial: "):
        check_network(functools.partial(torch.nn.functional.linear, weight=net.weight), "the net")
    with pytest.raises(ConfigError, match=r"^the net must return one tensor, got a dict;"):
        check_output({"a": out}, "the net", ConfigError)
    lazy = _lazy()
    assert uninitialized(lazy) == ["0.weight (LazyLinear)", "0.bias (LazyLinear)"]
    with pytest.raises(ModelSpecError, match=r"the net holds parameters of a lazy module that were never initialised "
                                             r"\(0.weight \(LazyLinear\), 0.bias \(LazyLinear\)\).*Run the network "
                                             r"once on a batch"):
        refuse_uninitialized(lazy, "the net")
    lazy(torch.zeros(2, 3))  # a forward pass initialises it
    assert uninitialized(lazy) == []
    refuse_uninitialized(lazy, "the net")
    bn = nn.LazyBatchNorm1d()
    assert uninitialized(bn) == ["weight (LazyBatchNorm1d)", "bias (LazyBatchNorm1d)",
                                 "running_mean (LazyBatchNorm1d)", "running_var (LazyBatchNorm1d)"]


# ---------------------------------------------------------------- a function, or a tuple returned
def test_the_adversarial_objectives_refuse_a_function_for_a_network():
    from hybridpgm.infer.adversarial import ADA, GAN, InfoGAN

    lin = nn.Linear(4, 3)
    for generator in (lambda z: lin(z), functools.partial(torch.nn.functional.linear, weight=lin.weight)):
        with pytest.raises(ModelSpecError, match=r"the generator must be a torch.nn.Module, got (function|partial)"):
            GAN(generator, nn.Linear(3, 1), noise_dim=4)
    with pytest.raises(ModelSpecError, match=r"the discriminator must be a torch.nn.Module, got function"):
        GAN(nn.Linear(4, 3), lambda x: x.sum(-1), noise_dim=4)
    with pytest.raises(ModelSpecError, match=r"the code posterior must be a torch.nn.Module, got function"):
        InfoGAN(nn.Linear(6, 3), nn.Linear(3, 1), lambda x: x, num_categories=2, num_continuous=1)
    with pytest.raises(ModelSpecError, match=r"the classifier must be a torch.nn.Module, got function"):
        ADA(nn.Linear(3, 2), nn.Linear(2, 1), lambda h: h)


def test_a_generator_returning_a_tuple_is_refused():
    from hybridpgm.infer.adversarial import GAN

    with pytest.raises(ModelSpecError, match=r"the generator must return one tensor, got a tuple of Tensor, Tensor"):
        GAN(Pair(4, 3), nn.Linear(3, 1), noise_dim=4)


def test_a_feature_extractor_returning_a_tuple_is_refused():
    """DeepKernelGP at construction (its probe); SVDeepKernelGP, which runs it first in fit, there."""
    from hybridpgm.gp import DeepKernelGP, SVDeepKernelGP

    x = torch.randn(16, 3)
    y = torch.sin(x[:, 0])
    refused = r"the feature extractor must return one tensor, got a tuple of Tensor, Tensor"
    with pytest.raises(ModelSpecError, match=refused):
        DeepKernelGP(x, y, Pair(3, 2))
    sv = SVDeepKernelGP(Pair(3, 2), num_features=2, num_data=16, grid_size=8)
    with pytest.raises(ModelSpecError, match=refused):
        hybridpgm.fit(sv.objective(), (x, y), epochs=1, batch_size=8, progress=False)



def test_a_feature_extractor_given_as_a_function_is_refused_by_name():
    """Old code: DeepKernelGP raised "'function' object has no attribute 'training'" from its probe."""
    from hybridpgm.gp import DeepKernelGP

    x = torch.randn(16, 3)
    with pytest.raises(ModelSpecError, match=r"DeepKernelGP feature_extractor must be a torch.nn.Module, got "
                                             r"function"):
        DeepKernelGP(x, torch.sin(x[:, 0]), lambda t: t[:, :2])


# ---------------------------------------------------------------- lazy modules
def test_lazy_networks_without_data_at_construction_are_refused_there():
    """SVDeepKernelGP and BayesianRegressor have no data to run a lazy network on when built (DeepKernelGP and the
    GANs do, and initialise it); a network run once first is accepted."""
    from hybridpgm.bayesian_nn import BayesianRegressor
    from hybridpgm.gp import SVDeepKernelGP

    with pytest.raises(ModelSpecError, match=r"SVDeepKernelGP feature_extractor holds parameters of a lazy module "
                                             r"that were never initialised \(0.weight \(LazyLinear\)"):
        SVDeepKernelGP(_lazy(), num_features=2, num_data=16, grid_size=8)
    with pytest.raises(ModelSpecError, match=r"the network given to bayesianize \(Sequential\) holds parameters of a "
                                             r"lazy module that were never initialised \(0.weight \(LazyLinear\)"):
        BayesianRegressor(_lazy(1), num_data=16)
    net = _lazy()
    net(torch.zeros(2, 3))
    sv = SVDeepKernelGP(net, num_features=2, num_data=16, grid_size=8)
    x = torch.randn(16, 3)
    assert hybridpgm.fit(sv.objective(), (x, torch.sin(x[:, 0])), epochs=1, batch_size=8, progress=False).steps == 2


def test_fit_refuses_a_lazy_network_nothing_ran():
    """A Neural CPD with context inputs is not run when added (the inputs' widths are unknown then): fit's check of
    its players names the parameters and the way out, before any step; run once, the network trains."""
    from hybridpgm.graphs import BayesNet, cpd
    from hybridpgm.infer import SVIObjective

    net = _lazy()
    bn = BayesNet().add("a", cpd.Table([0.5, 0.5])).add("b", cpd.Neural(net, ["a"], 2, context=["u"]))
    values = torch.randint(0, 2, (8, 2))
    u = torch.randn(8, 3)
    objective = SVIObjective(lambda v, u: bn.model(v, context={"u": u}), lambda v, u: bn.guide(v, context={"u": u}),
                             TraceEnum_ELBO(max_plate_nesting=1), module=bn)
    fit = functools.partial(hybridpgm.fit, objective, (values, u), epochs=1, batch_size=8, progress=False)
    with pytest.raises(ConfigError, match=r"SVIObjective.module holds parameters of a lazy module that were never "
                                          r"initialised \(cpds.b.net.0.weight \(LazyLinear\), cpds.b.net.0.bias "
                                          r"\(LazyLinear\)\)"):
        fit()
    with torch.no_grad():
        net(torch.zeros(2, 5))  # one-hot a (2) + u (3)
    before = net[0].weight.clone()
    assert fit().steps == 1
    assert not torch.equal(net[0].weight, before)
