"""observed_shape (hybridpgm/diagnostics/pointwise_log_lik.py) without torch.broadcast_shapes.

Before, observed_shape called torch.broadcast_shapes, whose first call imports sympy (about 0.35 s, and a module
the diagnostics do not need) inside every fresh process's first from_pyro_svi / from_mcmc."""

import subprocess
import sys

import pyro.distributions as dist
import pytest
import torch

from hybridpgm.diagnostics.pointwise_log_lik import observed_shape
from hybridpgm.errors import DataError


def _site(value, fn):
    return {"value": value, "fn": fn}


def test_observed_shape_broadcasts_a_smaller_value_and_refuses_extra_or_clashing_dims():
    """Guard (passes before and after): the pure-Python broadcast gives torch's shapes and refusals."""
    fn = dist.Normal(torch.zeros(4, 3), 1.0)
    assert observed_shape("y", _site(torch.tensor(1.0), fn)) == torch.Size([4, 3])
    assert observed_shape("y", _site(torch.zeros(3), fn)) == torch.Size([4, 3])
    assert observed_shape("y", _site(torch.zeros(1, 3), fn)) == torch.Size([4, 3])
    with pytest.raises(DataError, match=r"observed site 'y': its value of shape \(2, 4, 3\)"):
        observed_shape("y", _site(torch.zeros(2, 4, 3), fn))
    with pytest.raises(DataError, match=r"value of shape \(2,\) does not broadcast"):
        observed_shape("y", _site(torch.zeros(2), fn))
    vector = dist.Normal(torch.zeros(4, 2), 1.0).to_event(1)
    assert observed_shape("z", _site(torch.zeros(2), vector)) == torch.Size([4, 2])


def test_a_first_conversion_imports_no_sympy():
    """Counts the work, not the time: in a fresh process from_pyro_svi leaves sympy unimported."""
    code = """
import sys
import pyro, pyro.distributions as dist, torch
from hybridpgm.diagnostics import from_pyro_svi
def model(x):
    mu = pyro.sample("mu", dist.Normal(0.0, 1.0))
    with pyro.plate("d", 3):
        pyro.sample("x", dist.Normal(mu, 1.0), obs=x)
def guide(x):
    pyro.sample("mu", dist.Normal(0.0, 1.0))
from_pyro_svi(model, guide, torch.zeros(3), num_samples=5)
print("sympy" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False"
