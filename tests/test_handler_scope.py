"""Pyro programs run internally, isolated from the caller's effect handlers (hybridpgm/handler_scope.py)."""

import pyro
import pyro.distributions as dist
import pyro.poutine as poutine
import pytest
import torch
from pyro.infer import Trace_ELBO, TraceEnum_ELBO, config_enumerate
from pyro.poutine.runtime import _DIM_ALLOCATOR, _ENUM_ALLOCATOR, _PYRO_STACK

from hybridpgm.bayesian_nn import BayesianRegressor, predictive_samples
from hybridpgm.handler_scope import isolated_from_handlers, outside_handlers
from hybridpgm.infer.particle_elbo import importance_log_likelihood

Y = torch.tensor([0.5, -1.0, 2.0])


def program(y):
    """A latent ``z`` and three observations in a plate at dim -1; returns ``log p(y, z)`` and ``z``."""
    with poutine.trace() as tr:
        z = pyro.sample("z", dist.Normal(0.0, 1.0))
        with pyro.plate("data", 3, dim=-1):
            pyro.sample("y", dist.Normal(z, 1.0), obs=y)
    return tr.trace.log_prob_sum(), z


isolated_program = isolated_from_handlers(program)


def _plain(y, z):
    return dist.Normal(0.0, 1.0).log_prob(z) + dist.Normal(z, 1.0).log_prob(y).sum()


@pytest.mark.parametrize("handler", [
    lambda: poutine.scale(scale=5.0),
    lambda: poutine.mask(mask=False),
    lambda: poutine.condition(data={"z": torch.tensor(3.0)}),
    lambda: poutine.do(data={"z": torch.tensor(3.0)}),
    lambda: pyro.plate("rows", 3, dim=-1),
    lambda: pyro.plate("particles", 4, dim=-2),
    lambda: poutine.block(),
], ids=["scale", "mask", "condition", "do", "plate_dim1", "plate_dim2", "block"])
def test_no_outer_handler_alters_an_isolated_program(handler):
    pyro.set_rng_seed(0)
    with poutine.trace() as outer, handler():
        log_p, z = isolated_program(Y)
    assert z.shape == () and float(z) != 3.0  # a draw from the prior, not the conditioned value
    torch.testing.assert_close(log_p, _plain(Y, z))  # unscaled, unmasked, not broadcast to an outer plate
    assert not {"z", "y", "data"} & set(outer.trace.nodes)  # the outer trace holds only the caller's own sites


def test_the_same_program_unisolated_is_altered():
    """What the isolation prevents: the same program without it is scaled and conditioned by the caller."""
    with poutine.scale(scale=5.0), poutine.condition(data={"z": torch.tensor(3.0)}):
        log_p, z = program(Y)
    assert float(z) == 3.0
    torch.testing.assert_close(log_p, 5.0 * _plain(Y, z))
    with pyro.plate("rows", 3, dim=-1), pytest.raises(ValueError, match="collide at dim=-1"):
        program(Y)


def test_replay_does_not_reach_an_isolated_program():
    recorded = poutine.trace(lambda: pyro.sample("z", dist.Normal(10.0, 1e-3))).get_trace()
    pyro.set_rng_seed(0)
    with poutine.replay(trace=recorded):
        _, z = isolated_program(Y)
    assert abs(float(z)) < 5.0


def test_a_factor_of_an_isolated_value_is_the_model_s_only_site():
    pyro.set_rng_seed(0)
    log_p, _ = isolated_program(Y)

    def model():
        pyro.set_rng_seed(0)
        pyro.factor("ll", isolated_program(Y)[0])

    trace = poutine.trace(model).get_trace()
    assert [n for n, s in trace.nodes.items() if s["type"] == "sample"] == ["ll"]
    assert Trace_ELBO().loss(model, lambda: None) == pytest.approx(-float(log_p), rel=1e-6)


def test_the_handler_stack_and_the_dimension_allocators_are_restored_also_by_an_exception():
    def broken():
        with pyro.plate("inner", 2, dim=-1), poutine.trace():
            raise RuntimeError("boom")

    with pyro.plate("outer", 3, dim=-1), poutine.enum(first_available_dim=-3):
        _ENUM_ALLOCATOR.allocate()  # an enumeration dim already given out by the caller's enum
        stack, dims = list(_PYRO_STACK), list(_DIM_ALLOCATOR._stack)
        enum = (_ENUM_ALLOCATOR.next_available_dim, _ENUM_ALLOCATOR.next_available_id,
                dict(_ENUM_ALLOCATOR.dim_to_id))
        with pytest.raises(RuntimeError, match="boom"):
            with outside_handlers():
                assert _PYRO_STACK == [] and _DIM_ALLOCATOR._stack == []
                with poutine.enum(first_available_dim=-2):  # resets the global enumeration allocator
                    pass
                broken()
        assert _PYRO_STACK == stack and _DIM_ALLOCATOR._stack == dims
        assert (_ENUM_ALLOCATOR.next_available_dim, _ENUM_ALLOCATOR.next_available_id,
                dict(_ENUM_ALLOCATOR.dim_to_id)) == enum
    assert _PYRO_STACK == [] and _DIM_ALLOCATOR._stack == []


def test_an_enumerating_caller_keeps_its_enumeration_dims():
    """An isolated program that enumerates (``poutine.enum`` resets Pyro's global allocator) inside a model that
    TraceEnum_ELBO enumerates: the model's own enumeration is what it was without the call."""
    @config_enumerate
    def inner():
        c = pyro.sample("c", dist.Categorical(torch.tensor([0.5, 0.5])))
        pyro.sample("y", dist.Normal(c.float(), 1.0), obs=torch.tensor(0.3))

    @isolated_from_handlers
    def inner_log_p():
        trace = poutine.trace(poutine.enum(inner, first_available_dim=-1)).get_trace()
        return torch.logsumexp(sum(s["fn"].log_prob(s["value"]) for s in trace.nodes.values()
                                   if s["type"] == "sample"), 0)

    def model(call):
        a = pyro.sample("a", dist.Categorical(torch.tensor([0.3, 0.7])), infer={"enumerate": "parallel"})
        a2 = pyro.sample("a2", dist.Categorical(torch.tensor([0.5, 0.5])), infer={"enumerate": "parallel"})
        if call:  # a reset allocator would give b the dim of a2 (-2) again
            pyro.factor("f", inner_log_p().detach() * 0)
        b = pyro.sample("b", dist.Categorical(torch.tensor([0.6, 0.4])), infer={"enumerate": "parallel"})
        pyro.sample("x", dist.Normal(a.float() + 2 * a2.float() + 4 * b.float(), 1.0), obs=torch.tensor(1.0))

    elbo = TraceEnum_ELBO(max_plate_nesting=0)
    assert elbo.loss(model, lambda call: None, True) == pytest.approx(elbo.loss(model, lambda call: None, False))


def test_importance_log_likelihood_inside_a_user_plate():
    def model(y):
        with pyro.plate("data", 3, dim=-1):
            z = pyro.sample("z", dist.Normal(0.0, 1.0))
            pyro.sample("y", dist.Normal(z, 1.0), obs=y)

    def guide(y):
        with pyro.plate("data", 3, dim=-1):
            pyro.sample("z", dist.Normal(y / 2, 0.5 ** 0.5))  # the exact posterior: every weight is log p(y)

    exact = dist.Normal(0.0, 2.0 ** 0.5).log_prob(Y)
    with pyro.plate("rows", 3, dim=-1), poutine.scale(scale=7.0), poutine.trace() as outer:
        got = importance_log_likelihood(model, guide, Y, num_samples=4)
    torch.testing.assert_close(got, exact)
    assert list(outer.trace.nodes) == []


def test_predictive_samples_is_isolated():
    pyro.set_rng_seed(0)
    reg = BayesianRegressor(torch.nn.Linear(2, 1), num_data=4)
    x = torch.randn(4, 2)

    def guide(x, y=None):  # weights held at zero: every output is the bias-free zero
        pyro.sample("net.weight", dist.Delta(torch.zeros(1, 2)).to_event(2))
        pyro.sample("net.bias", dist.Delta(torch.zeros(1)).to_event(1))

    with pyro.plate("rows", 4, dim=-1), poutine.trace() as outer, \
            poutine.condition(data={"net.weight": torch.ones(1, 2)}):
        out = predictive_samples(reg, guide, x, num_samples=3)
    torch.testing.assert_close(out, torch.zeros(3, 4))
    assert set(outer.trace.nodes) == set()
