"""VAE's evaluation methods run their Pyro programs isolated from the caller's effect handlers
(hybridpgm/generative/vae.py with hybridpgm/handler_scope.py)."""

import pyro
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Trace_ELBO

from hybridpgm.generative import VAE

X = torch.tensor([[1.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 0.0], [1.0, 1.0, 1.0, 0.0]])

HANDLERS = [
    lambda: poutine.scale(scale=5.0),
    lambda: poutine.condition(data={"z": torch.full((3, 2), 4.0)}),
    lambda: pyro.plate("rows", 3, dim=-1),
    lambda: pyro.plate("particles", 2, dim=-2),
    lambda: poutine.trace(),
]
IDS = ["scale", "condition", "user_plate", "outer_plate", "trace"]
METHODS = {
    "log_weights": lambda vae: vae.log_weights(X, 5),
    "log_likelihood": lambda vae: vae.log_likelihood(X, num_samples=5),
    "elbo": lambda vae: vae.elbo(X, num_samples=3),
}


def _vae():
    torch.manual_seed(0)
    return VAE(4, z_dim=2, hidden=[4])


@pytest.mark.parametrize("method", list(METHODS))
@pytest.mark.parametrize("handler", HANDLERS, ids=IDS)
def test_the_value_is_the_same_under_any_handler(handler, method):
    vae, call = _vae(), METHODS[method]
    pyro.set_rng_seed(1)
    plain = call(vae)
    pyro.set_rng_seed(1)
    with poutine.trace() as outer, handler():
        got = call(vae)
    torch.testing.assert_close(got, plain)
    assert not {"data", "z", "x"} & set(outer.trace.nodes)


@pytest.mark.parametrize("method", list(METHODS))
def test_a_factor_of_the_value_inside_a_user_model(method):
    """Before: 'Multiple sample sites named data' under Trace_ELBO's trace."""
    vae, call = _vae(), METHODS[method]
    pyro.set_rng_seed(3)
    value = call(vae).sum()

    def model():
        pyro.set_rng_seed(3)
        pyro.factor("ll", call(vae).sum())

    trace = poutine.trace(model).get_trace()
    assert [n for n, s in trace.nodes.items() if s["type"] == "sample"] == ["ll"]
    assert Trace_ELBO().loss(model, lambda: None) == pytest.approx(-value.item(), rel=1e-6)
