import math
import warnings

import numpy as np
import pyro
import pytest
import torch
from pyro.infer import ReweightedWakeSleep, TraceGraph_ELBO

import hybridpgm  # noqa: F401
from hybridpgm.errors import ConfigError, DataError, ModelSpecError
from hybridpgm.generative import SigmoidBeliefNet
from hybridpgm.infer import SVIObjective
from tests import generator_contract as contract
from tests.generative.sbn_brute_force import binary, random_sbn, single_thread  # noqa: F401


def test_importance_log_likelihood_converges_to_exact():
    sbn = random_sbn([5, 3, 2], 2, guide_scale=0.3)  # a broad proposal
    x = binary(6, 5, 2)
    exact = sbn.exact_log_likelihood(x)
    torch.manual_seed(0)
    errors = {}
    for s in (1, 100, 20000):
        est = torch.stack([sbn.log_likelihood(x, num_samples=s, chunk_size=5000) for _ in range(3)])
        assert est.shape == (3, 6)
        errors[s] = (est - exact).abs().mean().item()
    assert errors[20000] < 0.05
    assert errors[20000] < errors[100] < errors[1]


def test_model_guide_shapes_and_samples():
    sbn = SigmoidBeliefNet([6, 4, 3])
    x = binary(5, 6, 0)
    assert sbn.guide(x).shape == (5, 3)
    assert sbn.model(x).shape == (5, 6)
    dreams = sbn.sample(7)
    assert dreams.shape == (7, 6)
    assert ((dreams == 0) | (dreams == 1)).all()
    assert sbn.latent_sites == ["h1", "h2"]
    theta = {id(p) for p in sbn.model_parameters()}
    phi = {id(p) for p in sbn.guide_parameters()}
    assert not theta & phi
    assert theta | phi == {id(p) for p in sbn.parameters()}


def test_num_data_scales_the_plate():
    sbn = random_sbn([4, 2], 3)
    x = binary(4, 4, 3)
    full = TraceGraph_ELBO()
    torch.manual_seed(0)
    small = full.loss(sbn.model, sbn.guide, x)
    torch.manual_seed(0)
    scaled = full.loss(sbn.model, sbn.guide, x, num_data=40)
    assert math.isclose(scaled, 10 * small, rel_tol=1e-5)
    for small in (2, np.int64(2)):
        with pytest.raises(ConfigError, match="num_data=2 is smaller than the batch size 4"):
            sbn.model(x, num_data=small)


def test_works_with_pyro_inference():
    sbn = random_sbn([6, 4, 2], 4)
    x = binary(8, 6, 4)
    loss = TraceGraph_ELBO().loss_and_grads(sbn.model, sbn.guide, x)
    assert math.isfinite(loss)
    assert all(p.grad is not None for p in sbn.parameters())
    wake, phi = ReweightedWakeSleep(num_particles=3, vectorize_particles=True, max_plate_nesting=1).loss(
        sbn.model, sbn.guide, x
    )
    assert torch.isfinite(wake) and torch.isfinite(phi)


@pytest.mark.parametrize(
    "x, match",
    [
        (torch.full((3, 4), 0.5), "binary"),
        (torch.ones(3, 5), r"\[B, 4\]"),
        (torch.ones(5), r"shape.*\(5,\)"),  # one example (4,): tests/generative/test_sbn_batch_shapes.py
        ([[0.0, 1.0, 0.0, 1.0]], "tensor"),
    ],
)
def test_bad_data_raises(x, match):
    sbn = SigmoidBeliefNet([4, 2])
    with pytest.raises(DataError, match=match):
        sbn.model(x)
    with pytest.raises(DataError, match=match):
        sbn.log_likelihood(x, num_samples=2)


@pytest.mark.parametrize("sizes", [[4], [4, 0], [4, -1, 2], [4, 2.5], []])
def test_bad_layer_sizes_raise(sizes):
    with pytest.raises(ModelSpecError, match="layer_sizes"):
        SigmoidBeliefNet(sizes)


def test_concrete_relaxation_trains_with_iwae():
    """With temperature=..., the hidden layers are Concrete variables: IWAE (reparameterized)
    accepts them, gradients reach the guide pathwise, and training improves the discrete model."""
    import functools

    from hybridpgm.infer import IWAE, SVIObjective

    data = hybridpgm.data.load_dataset("digits", binarize="static", seed=0)
    test = data.test.x[:100]
    torch.manual_seed(0)
    sbn = SigmoidBeliefNet([64, 16, 8])
    relaxed = sbn.guide(test[:3], temperature=0.5)
    assert relaxed.shape == (3, 8) and not ((relaxed == 0) | (relaxed == 1)).all()
    objective = SVIObjective(sbn.model, sbn.guide, IWAE(5), temperature=0.5)
    objective.loss("elbo", test[:8]).backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in sbn.guide_parameters())
    sbn.zero_grad()
    before = sbn.log_likelihood(test, num_samples=50).mean().item()
    hybridpgm.fit(objective, data.train.x, batch_size=64, epochs=10, max_steps=30, seed=0, progress=False,
                  optim=functools.partial(torch.optim.Adam, lr=0.03), device="cpu")
    torch.manual_seed(1)
    after = sbn.log_likelihood(test, num_samples=50).mean().item()  # the discrete model
    assert after > before + 5.0, (before, after)


@pytest.mark.parametrize("dtype", [torch.bool, torch.uint8, torch.int64, torch.float16])
def test_data_of_an_exactly_convertible_dtype_gives_the_float_answer(dtype):
    torch.manual_seed(0)
    sbn = SigmoidBeliefNet([6, 3])
    x = torch.bernoulli(torch.full((5, 6), 0.4))
    expected = sbn.exact_log_likelihood(x)
    got = sbn.exact_log_likelihood(x.to(dtype))
    assert got.dtype == expected.dtype
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_float64_data_for_a_float32_sbn_is_refused_by_name():
    sbn = SigmoidBeliefNet([6, 3])
    with pytest.raises(DataError, match=r"SigmoidBeliefNet site 'x' has dtype torch.float64.*torch.float32"):
        sbn.exact_log_likelihood(torch.zeros(2, 6, dtype=torch.float64))


@pytest.mark.parametrize("temperature", [torch.tensor(0.0), torch.tensor(-1.0), torch.tensor(float("nan"))])
def test_a_tensor_temperature_that_is_not_positive_is_named(temperature):
    """Before, a tensor temperature was not checked: 0 and -1 gave NaN log-probabilities without a word."""
    import pyro.poutine as poutine

    sbn = SigmoidBeliefNet([4, 3])
    x = torch.ones(2, 4)
    with pytest.raises(ConfigError, match="SigmoidBeliefNet temperature must be finite numbers > 0"):
        poutine.trace(sbn.model).get_trace(x, temperature=temperature)


def test_model_checks_batch_size_and_the_shape_of_x():
    """Found by an audit: with x given, batch_size was never read (-1, 0, 'seven' and a contradicting 5 all ran),
    and an x of shape [K, B, D] was taken, one hidden draw shared by the K copies (no model's joint)."""
    from pyro import poutine

    sbn = random_sbn([4, 3], 0)
    x = binary(3, 4, 0)
    for bad in (-1, 0, "seven"):
        with pytest.raises(ConfigError, match="batch_size must be a positive integer"):
            sbn.model(x, batch_size=bad)
    with pytest.raises(ConfigError, match="batch_size=5 contradicts x of 3 rows"):
        sbn.model(x, batch_size=5)
    with pytest.raises(DataError, match=r"model expects x of shape \[B, 4\], got \(2, 3, 4\)"):
        sbn.model(x.expand(2, 3, 4))
    trace = poutine.trace(sbn.model).get_trace(x, batch_size=3)
    assert trace.nodes["x"]["value"].shape == (3, 4)


@pytest.mark.parametrize("value", ["no", 1, None])
def test_validate_data_takes_only_true_or_false(value):
    """Found by an audit: validate_data="no" was truthy and switched the check on; 0 or None were taken too."""
    with pytest.raises(ModelSpecError, match=f"SigmoidBeliefNet validate_data must be True or False, got {value!r}"):
        SigmoidBeliefNet([4, 3], validate_data=value)
    assert SigmoidBeliefNet([4, 3], validate_data=False).validate_data is False


def _fit_sgd(sbn, x, steps=3):
    hybridpgm.fit(SVIObjective(sbn.model, sbn.guide, pyro.infer.Trace_ELBO()), x, max_steps=steps, batch_size=8,
                  progress=False, device="cpu", seed=0, optim=lambda ps: torch.optim.SGD(ps, lr=0.5))


def test_fit_leaves_frozen_model_parameters_frozen_and_unmoved():
    """Freezing theta (``model_parameters``) to train the recognition network only: ``prior_logits``, a
    parameter of the PyroModule itself, was unfrozen by Pyro's param store and trained."""
    torch.manual_seed(0)
    sbn = SigmoidBeliefNet([6, 3])
    for p in sbn.model_parameters():
        p.requires_grad_(False)
    before = {n: p.detach().clone() for n, p in sbn.named_parameters()}
    _fit_sgd(sbn, binary(16, 6, 0))
    params = dict(sbn.named_parameters())
    for name in ("prior_logits", "decoders.0.weight", "decoders.0.bias"):
        assert torch.equal(params[name], before[name]) and not params[name].requires_grad, name
    assert not torch.equal(params["encoders.0.weight"], before["encoders.0.weight"])  # phi trains


def test_fit_refuses_a_net_frozen_whole_and_leaves_it_frozen():
    sbn = SigmoidBeliefNet([6, 3])
    sbn.requires_grad_(False)
    with pytest.raises(ConfigError, match="player 'elbo' of SVIObjective has no parameters"):
        _fit_sgd(sbn, binary(16, 6, 0))
    assert not any(p.requires_grad for p in sbn.parameters())


def test_plain_pyro_registers_prior_logits_only_while_they_are_trainable():
    """Under Pyro's global param store a trace of the model leaves a frozen ``prior_logits`` frozen and out of
    the store (as ``pyro.module`` does with a network's frozen weights); trainable, plain SVI trains them."""
    torch.manual_seed(0)
    x = binary(8, 6, 1)
    with pyro.settings.context(module_local_params=False), pyro.get_param_store().scope():
        sbn = SigmoidBeliefNet([6, 3])
        sbn.prior_logits.requires_grad_(False)
        trace = pyro.poutine.trace(sbn.model).get_trace(x)
        assert not sbn.prior_logits.requires_grad
        assert "prior_logits" not in pyro.get_param_store() and "prior_logits" not in trace.nodes
        assert "decoders$$$0.weight" in trace.nodes
        sbn.prior_logits.requires_grad_(True)
        before = sbn.prior_logits.detach().clone()
        svi = pyro.infer.SVI(sbn.model, sbn.guide, pyro.optim.SGD({"lr": 0.5}), pyro.infer.Trace_ELBO())
        svi.step(x)
        assert pyro.get_param_store()["prior_logits"] is sbn.prior_logits
        assert not torch.equal(sbn.prior_logits, before)


def test_frozen_layers_are_not_warned_of_at_every_step():
    """Pyro's "... was not registered in the param store because requires_grad=False" came once per frozen
    parameter per step (pyro.module, run by PyroModule.__getattr__ on ``decoders``); the names of the trainable
    ones in the store are unchanged."""
    torch.manual_seed(0)
    x = binary(8, 6, 1)
    sbn = SigmoidBeliefNet([6, 3, 2], name="s")
    sbn.decoders[0].requires_grad_(False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pyro.settings.context(module_local_params=False), pyro.get_param_store().scope():
            svi = pyro.infer.SVI(sbn.model, sbn.guide, pyro.optim.SGD({"lr": 0.5}), pyro.infer.Trace_ELBO())
            for _ in range(2):
                svi.step(x)
            store = dict(pyro.get_param_store().items())
        _fit_sgd(sbn, x)
    assert [str(w.message) for w in caught if "not registered in the param store" in str(w.message)] == []
    assert sorted(store) == ["s.decoders$$$1.bias", "s.decoders$$$1.weight", "s.encoders$$$0.bias",
                             "s.encoders$$$0.weight", "s.encoders$$$1.bias", "s.encoders$$$1.weight", "s.prior_logits"]
    assert store["s.decoders$$$1.weight"] is sbn.decoders[1].weight and not sbn.decoders[0].weight.requires_grad


def test_a_state_dict_with_the_saved_keys_loads():
    """The keys of a state dict (model files, checkpoints) are the attribute names, ``prior_logits`` included."""
    sbn = SigmoidBeliefNet([4, 2])
    state = {"prior_logits": torch.tensor([0.5, -1.0]),
             "decoders.0.weight": torch.full((4, 2), 0.25), "decoders.0.bias": torch.zeros(4),
             "encoders.0.weight": torch.full((2, 4), -0.5), "encoders.0.bias": torch.ones(2)}
    sbn.load_state_dict(state)
    assert list(sbn.state_dict()) == list(state)
    assert all(torch.equal(sbn.state_dict()[k], v) for k, v in state.items())
    assert isinstance(sbn.prior_logits, torch.nn.Parameter) and torch.equal(sbn.prior_logits, state["prior_logits"])


# -- the generator= argument (the package's RNG contract) -----------------------------------------------------------
_GENERATOR_CALLS = {
    "sample": lambda sbn, x, **kw: sbn.sample(7, **kw),
    "log_likelihood": lambda sbn, x, **kw: sbn.log_likelihood(x, num_samples=6, chunk_size=4, **kw),
}


def _generator_call(method):
    sbn = random_sbn([5, 3, 2], 3)
    x = binary(4, 5, 3)
    return lambda **kw: _GENERATOR_CALLS[method](sbn, x, **kw)


@pytest.mark.parametrize("method", list(_GENERATOR_CALLS))
def test_a_generator_makes_the_draws_a_function_of_its_state(method):
    """``generator=`` (it took none: only ``torch.manual_seed`` made them repeat, moving the caller's stream): the
    Pyro program's sample statements draw from the global streams seeded from the generator, restored after."""
    contract.assert_generator_contract(_generator_call(method), f"SigmoidBeliefNet.{method} generator")


def test_a_generator_keeps_the_empty_cases():
    """No rows, no draws: ``sample(0)`` and an empty batch give empty results with a generator too, and the
    generator is only drawn from when something is drawn (the empty batch leaves it alone)."""
    sbn = random_sbn([5, 3], 0)
    g = torch.Generator().manual_seed(0)
    assert sbn.sample(0, generator=g).shape == (0, 5)
    state = g.get_state()
    assert sbn.log_likelihood(torch.zeros(0, 5), generator=g).shape == (0,)
    assert torch.equal(g.get_state(), state)
