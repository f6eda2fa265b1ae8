"""NVIL_ELBO (hybridpgm/infer/nvil.py) refuses a baseline whose shape would enlarge its site's cost, and baseline
networks put in place of NVIL's own (``baselines.nets[site] = net``) are taken or refused by name
(hybridpgm/infer/nvil_baselines.py)."""

import pyro
import pyro.distributions as dist
import pytest
import torch
from torch import nn

from hybridpgm.errors import ConfigError, DataError, ObjectiveError
from hybridpgm.generative import SigmoidBeliefNet
from hybridpgm.infer import NVIL, NVIL_ELBO


class _Programs(nn.Module):
    """A one-latent model and guide whose site ``h`` takes ``baseline`` (a module) as Pyro's ``nn_baseline``."""

    def __init__(self, baseline: nn.Module):
        super().__init__()
        self.dec, self.enc, self.baseline = nn.Linear(2, 3), nn.Linear(3, 2), baseline

    def model(self, x):
        pyro.module("programs", self)
        with pyro.plate("data", x.shape[0]):
            h = pyro.sample("h", dist.Bernoulli(logits=torch.zeros(x.shape[0], 2)).to_event(1))
            pyro.sample("x", dist.Bernoulli(logits=self.dec(h)).to_event(1), obs=x)

    def guide(self, x):
        pyro.module("programs", self)
        with pyro.plate("data", x.shape[0]):
            pyro.sample("h", dist.Bernoulli(logits=self.enc(x)).to_event(1),
                        infer={"baseline": {"nn_baseline": self.baseline, "nn_baseline_input": x}})


def _encoder_grad(programs, elbo, x):
    programs.zero_grad()
    torch.manual_seed(1)
    elbo.loss_and_grads(programs.model, programs.guide, x)
    return programs.enc.weight.grad.clone()


def test_a_baseline_of_shape_b_1_for_a_cost_b_is_refused_naming_the_site_and_both_shapes():
    """A network ending in nn.Linear(3, 1) returns [B, 1]; against the cost [B] it broadcast to [B, B], and the
    encoder's gradient was ~B times too large without a word (Pyro's TraceGraph_ELBO refuses it)."""
    pyro.clear_param_store()
    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((4, 3), 0.5))
    programs = _Programs(nn.Linear(3, 1))
    with pytest.raises(ObjectiveError, match=r"baseline of site 'h' has shape \(4, 1\), which does not broadcast to "
                                             r"the shape \(4,\) of the site's downstream cost"):
        NVIL_ELBO().differentiable_loss(programs.model, programs.guide, x)
    # the same network flattened to [B] is taken, and gives exactly Pyro's own estimator's gradient
    programs.baseline = nn.Sequential(programs.baseline, nn.Flatten(-2))
    pyro.clear_param_store()
    ours = _encoder_grad(programs, NVIL_ELBO(), x)
    pyro.clear_param_store()
    theirs = _encoder_grad(programs, pyro.infer.TraceGraph_ELBO(), x)
    assert torch.equal(ours, theirs)
    pyro.clear_param_store()


def test_a_replaced_baseline_network_of_the_wrong_shape_is_refused():
    """``nets[site] = nn.Linear(3, 1)`` (no Flatten): the loss and fit ran silently on [B, B] signals."""
    sbn = SigmoidBeliefNet([3, 2, 2])
    objective = NVIL(sbn.model, sbn.guide, hidden_dim=4)
    objective.baselines.nets["h1"] = nn.Linear(3, 1)
    x = torch.bernoulli(torch.full((4, 3), 0.5))
    with pytest.raises(ObjectiveError, match=r"site 'h1' has shape \(4, 1\), .* shape \(4,\) of the site's"):
        objective.loss("elbo", x)
    objective.baselines.nets["h1"] = nn.Sequential(nn.Flatten(-2))  # [4, 3] -> [12]: not even broadcastable
    with pytest.raises(ObjectiveError, match=r"site 'h1' has shape \(12,\), which does not broadcast"):
        objective.loss("elbo", x)


@pytest.mark.parametrize("baseline, cost", [((4,), (4,)), ((4,), (3, 4)), ((1,), ()), ((), (4,)), ((1, 4), (4,)),
                                            ((1,), (3, 4)), ((0,), (0,))])
def test_a_baseline_that_broadcasts_into_the_cost_is_taken(baseline, cost):
    """[B] against [B] or the vectorized particles' [P, B]; leading dims of size 1 hold the same values."""
    from hybridpgm.infer.nvil_baselines import _check_baseline_shape

    _check_baseline_shape("h", torch.Size(baseline), torch.Size(cost))


@pytest.mark.parametrize("baseline, cost", [((4, 1), (4,)), ((3, 4), (4,)), ((3,), (4,)), ((2,), ()),
                                            ((0, 1), (0,)), ((2, 1, 4), (4,))])
def test_a_baseline_that_enlarges_the_cost_is_refused(baseline, cost):
    from hybridpgm.infer.nvil_baselines import _check_baseline_shape

    with pytest.raises(ObjectiveError, match=rf"site 'h' has shape \({baseline[0]},"):
        _check_baseline_shape("h", torch.Size(baseline), torch.Size(cost))


class _ScaleFirst(nn.Module):
    """A baseline network whose first parameter is 1-d (a scale before the weight matrix)."""

    def __init__(self):
        super().__init__()
        self.scale = nn.Parameter(torch.full((1,), 2.0))
        self.lin = nn.Linear(3, 1)

    def forward(self, x):
        return self.scale * self.lin(x).squeeze(-1)


class _RowMean(nn.Module):
    """A baseline without parameters."""

    def forward(self, x):
        return x.mean(-1)


def _loss_values(objective, x):
    torch.manual_seed(3)
    return objective.loss("elbo", x)


def test_a_replaced_network_whose_first_parameter_is_a_vector_is_used():
    """The input width was read as ``reference().shape[1]``: a raw IndexError for a 1-d first parameter."""
    torch.manual_seed(0)
    sbn = SigmoidBeliefNet([3, 2, 2])
    x = torch.bernoulli(torch.full((4, 3), 0.5))
    plain = NVIL(sbn.model, sbn.guide, hidden_dim=4)
    objective = NVIL(sbn.model, sbn.guide, hidden_dim=4)
    objective.baselines.nets["h1"] = net = _ScaleFirst()
    loss = _loss_values(objective, x)
    assert loss.item() == _loss_values(plain, x).item()  # the value is the ELBO's, whatever the baselines
    loss.backward()
    assert net.scale.grad is not None and net.scale.grad.abs().item() > 0  # its squared error trains it
    with pytest.raises(DataError, match=r"NVIL baselines take inputs of width input_dim=3; the guide's first argument "
                                        r"has shape \(4, 5\)"):
        objective.elbo._attach(sbn.guide, (torch.zeros(4, 5),))


def test_baseline_networks_without_parameters_are_used():
    """Every network parameter-free: ``reference()`` raised a bare StopIteration; the dtype and device are now the
    statistics buffers'."""
    torch.manual_seed(0)
    sbn = SigmoidBeliefNet([3, 2, 2])
    x = torch.bernoulli(torch.full((4, 3), 0.5))
    objective = NVIL(sbn.model, sbn.guide, hidden_dim=4, decay=0.5)
    for site in objective.baselines.sites:
        objective.baselines.nets[site] = _RowMean()
    assert objective.baselines.reference() is objective.baselines.mean
    loss = _loss_values(objective, x)
    assert loss.item() == _loss_values(NVIL(sbn.model, sbn.guide, hidden_dim=4), x).item()
    assert bool((objective.baselines.mean != 0).all())  # both sites' statistics took the signals
    sbn.double()  # the baselines follow the model's dtype; the input is widened to it
    assert _loss_values(objective, x).dtype == torch.float64 and objective.baselines.mean.dtype == torch.float64


def test_a_lazy_replaced_network_is_initialised_by_the_loss_and_refused_by_name_under_plain_svi():
    """A LazyLinear baseline: a raw 'Can't access the shape of an uninitialized parameter' RuntimeError from both.
    NVIL.loss runs the network on its input (the lazy module takes its sizes); plain SVI registers the parameters
    with Pyro's store before the networks run, so it is refused by name, as fit refuses a lazy module."""
    torch.manual_seed(0)
    sbn = SigmoidBeliefNet([3, 2, 2])
    x = torch.bernoulli(torch.full((4, 3), 0.5))
    objective = NVIL(sbn.model, sbn.guide, hidden_dim=4)
    objective.baselines.nets["h2"] = nn.Sequential(nn.LazyLinear(1), nn.Flatten(-2))
    elbo = NVIL_ELBO(objective.baselines)
    pyro.clear_param_store()
    svi = pyro.infer.SVI(sbn.model, sbn.guide, pyro.optim.Adam({"lr": 0.01}), elbo)
    with pytest.raises(ConfigError, match=r"NVIL: baselines.nets \(registered with pyro.param as nvil_baselines\$\$\$"
                                          r"\.\.\. for plain SVI\) holds parameters of a lazy module that were never "
                                          r"initialised \(h2.0.weight \(LazyLinear\), h2.0.bias \(LazyLinear\)\)"):
        svi.step(x)
    pyro.clear_param_store()
    objective.loss("elbo", x).backward()
    assert objective.baselines.nets["h2"][0].weight.shape == (1, 3)
    svi.step(x)  # initialised: plain SVI trains it
    assert "nvil_baselines$$$h2.0.weight" in pyro.get_param_store()
    pyro.clear_param_store()


class _Pair(nn.Module):
    def forward(self, x):
        return x.mean(-1), x.std(-1)


def test_a_baseline_network_returning_a_tuple_is_named():
    """torch's "unsupported operand type(s) for -: 'Tensor' and 'tuple'" before."""
    sbn = SigmoidBeliefNet([3, 2, 2])
    objective = NVIL(sbn.model, sbn.guide, hidden_dim=4)
    objective.baselines.nets["h2"] = _Pair()
    with pytest.raises(ObjectiveError, match=r"NVIL: the baseline network of site 'h2' must return one tensor, got a "
                                             r"tuple of Tensor, Tensor"):
        objective.loss("elbo", torch.bernoulli(torch.full((4, 3), 0.5)))
