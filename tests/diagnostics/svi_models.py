"""Models, guides and data shared by the tests of from_pyro_svi (tests/diagnostics/test_svi_data*.py,
test_masked_data.py): a global Normal, a two-component mixture with an enumerated site, and a three-node
BayesNet with missing entries, and a plain model with deterministic and factor sites."""

import pyro
import pyro.distributions as dist
import torch


X = torch.tensor([0.3, -1.2, 0.8, 2.0, 0.1])


def global_model(x):
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    with pyro.plate("data", x.shape[0]):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


def global_guide(x):
    pyro.sample("mu", dist.Normal(x.mean(), 1.0 / x.shape[0] ** 0.5))


def deterministic_and_factor_model(x):
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    pyro.deterministic("twice_mu", 2 * mu)
    pyro.factor("shrink", -0.5 * mu**2)
    with pyro.plate("data", x.shape[0]):
        pyro.deterministic("residual", x - mu)
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)


LOCS, WEIGHTS, SHIFT_LOC, SHIFT_SCALE = torch.tensor([-2.0, 2.0]), torch.tensor([0.3, 0.7]), 0.3, 0.6


MIXTURE_X = torch.tensor([-1.2, -0.6, 0.0, 0.4, 1.0, 1.4])


def mixture_model(x, record_centre=False):
    """A two-component mixture whose components share a shift; ``z`` is enumerated, not in the guide."""
    shift = pyro.sample("shift", dist.Normal(0.0, 3.0))
    with pyro.plate("data", x.shape[0]):
        z = pyro.sample("z", dist.Categorical(WEIGHTS), infer={"enumerate": "parallel"})
        if record_centre:
            pyro.deterministic("centre", LOCS[z] + shift)
        pyro.sample("x", dist.Normal(LOCS[z] + shift, 1.0), obs=x)


def mixture_guide(x, record_centre=False):
    pyro.sample("shift", dist.Normal(SHIFT_LOC, SHIFT_SCALE))


# ---------------------------------------------------------------- obs_mask splits: a BayesNet with missing entries
PA, PB, PC = torch.tensor([0.3, 0.7]), torch.tensor([[0.8, 0.2], [0.1, 0.9]]), torch.tensor([[0.6, 0.4], [0.25, 0.75]])


BN_DATA = torch.tensor([[-1, 0, 1], [-1, 1, 0], [1, 1, 1], [0, -1, 1], [1, -1, 0]])  # -1: missing


def _chain_net():
    from hybridpgm.graphs import BayesNet, cpd

    bn = BayesNet()
    bn.add("a", cpd.Table(PA.tolist()))
    bn.add("b", cpd.Table(PB.tolist(), ["a"]))
    bn.add("c", cpd.Table(PC.tolist(), ["b"]))
    return bn


def obs_mask_model(y, mask):
    mu = pyro.sample("mu", dist.Normal(0.0, 2.0))
    with pyro.plate("data", y.shape[0]):
        pyro.sample("y", dist.Normal(mu, 1.0), obs=y, obs_mask=mask)


def obs_mask_guide(y, mask):
    mu = pyro.sample("mu", dist.Normal(1.0, 0.1))
    with pyro.plate("data", y.shape[0]):
        pyro.sample("y_unobserved", dist.Normal(mu, 1.0))
