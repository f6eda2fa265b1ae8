import functools
import warnings

import pyro
import pytest
import torch
from pyro.infer import SVI, Trace_ELBO

import hybridpgm

from hybridpgm import IWAE, SVIObjective, VAE, fit
from hybridpgm.errors import ConfigError, DataError, ModelSpecError
from tests import generator_contract as contract
from tests.keyword_checks import assert_renamed


@pytest.fixture
def binary():
    return torch.bernoulli(torch.full((40, 16), 0.3, dtype=torch.float32), generator=torch.Generator().manual_seed(0))


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_shapes_of_samples_reconstructions_and_estimates(likelihood, binary):
    torch.manual_seed(0)
    vae = VAE(16, 4, (12, 8), likelihood=likelihood)
    assert vae.sample(5).shape == (5, 16) and vae.reconstruct(binary[:3]).shape == (3, 16)
    assert vae.log_weights(binary[:3], 7, chunk_size=3).shape == (7, 3)
    ll, elbo = vae.log_likelihood(binary[:3], 50), vae.elbo(binary[:3], 50)
    assert ll.shape == elbo.shape == (3,) and bool((ll >= elbo - 1e-4).all())
    if likelihood == "bernoulli":
        s = vae.sample(20, mean=False)
        assert set(s.unique().tolist()) <= {0.0, 1.0}


def test_training_with_fit_improves_the_likelihood(binary):
    torch.manual_seed(0)
    vae = VAE(16, 2, (16,))
    before = vae.log_likelihood(binary, 200).mean()
    fit(SVIObjective(vae.model, vae.guide, IWAE(5)), binary, epochs=60, batch_size=20, progress=False, seed=0,
        optim=functools.partial(torch.optim.Adam, lr=1e-2))
    after = vae.log_likelihood(binary, 200).mean()
    assert after > before + 1.0


def test_trains_with_plain_pyro_svi(binary):
    torch.manual_seed(0)
    vae = VAE(16, 2, (16,))
    before = vae.elbo(binary, 20).mean()
    with pyro.settings.context(module_local_params=False):
        pyro.clear_param_store()
        svi = SVI(vae.model, vae.guide, pyro.optim.Adam({"lr": 1e-2}), Trace_ELBO())
        for _ in range(100):
            svi.step(binary)
    assert vae.elbo(binary, 20).mean() > before + 1.0


def test_two_vaes_side_by_side_keep_their_own_parameters(binary):
    torch.manual_seed(0)
    a, b = VAE(16, 2, (8,)), VAE(16, 2, (8,))
    b_before = {k: v.clone() for k, v in b.state_dict().items()}
    fit(SVIObjective(a.model, a.guide), binary, epochs=2, batch_size=20, progress=False, seed=0)
    assert all(torch.equal(v, b.state_dict()[k]) for k, v in b_before.items())


def test_num_data_scales_the_loss(binary):
    torch.manual_seed(0)
    vae = VAE(16, 2, (8,))
    pyro.set_rng_seed(1)
    small = Trace_ELBO().differentiable_loss(vae.model, vae.guide, binary[:10])
    pyro.set_rng_seed(1)
    scaled = Trace_ELBO().differentiable_loss(vae.model, vae.guide, binary[:10], num_data=40)
    torch.testing.assert_close(scaled, 4 * small)


@pytest.mark.parametrize("x, message", [
    (torch.zeros(3, 15), r"\(batch, 16\)"),
    (torch.zeros(16), r"\(batch, 16\)"),
    (torch.full((3, 16), 0.5), "binary"),
])
def test_bad_data_is_named(x, message):
    vae = VAE(16, 2)
    with pytest.raises(DataError, match=message):
        vae.model(x)
    if message != "binary":
        with pytest.raises(DataError, match=message):
            vae.guide(x)


@pytest.mark.parametrize("value", [0.5, 1 - 2.0**-24, 1 + 2.0**-23, 2.0**-149, -2.0**-149, -1.0, 2.0, 3e38,
                                   float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_one_non_binary_value_anywhere_is_refused(value, dtype):
    """Values next to 0 and 1, the smallest denormals, overflowing squares and NaN/inf
    are all caught by the model's binary check; exact 0/1 data pass."""
    vae = VAE(16, 2).to(dtype)
    x = torch.bernoulli(torch.full((4, 16), 0.5), generator=torch.Generator().manual_seed(0)).to(dtype)
    vae.model(x)
    x[2, 7] = value
    with pytest.raises(DataError, match="binary|NaN/inf"):
        vae.model(x)


def test_bad_declarations():
    with pytest.raises(ModelSpecError, match="likelihood"):
        VAE(16, 2, likelihood="poisson")
    with pytest.raises(ModelSpecError, match="z_dim"):
        VAE(16, 0)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_a_float64_vae_samples_in_float64(likelihood):
    torch.manual_seed(0)
    vae = VAE(4, 2, [5], likelihood=likelihood).double()
    for mean in (True, False):
        s = vae.sample(3, mean=mean)
        assert s.shape == (3, 4) and s.dtype == torch.float64 and bool(torch.isfinite(s).all())


def test_the_guide_takes_leading_particle_dimensions(binary):
    """[..., B, D] (a wake-sleep dream) gives z [..., B, z_dim]: row for row what the batch alone gives."""
    torch.manual_seed(0)
    for batch_norm in (False, True):
        vae = VAE(16, 3, (8,), batch_norm=batch_norm).eval()
        x = binary[:5]
        trace = pyro.poutine.trace(vae.guide).get_trace(x.expand(2, 5, 16))
        site = trace.nodes["z"]
        assert site["value"].shape == (2, 5, 3) and site["fn"].batch_shape == (2, 5)
        torch.testing.assert_close(site["fn"].base_dist.loc[1], vae._encode(x)[0])


def test_a_batch_norm_vae_trains_with_particles(binary):
    """IWAE's particles reach the decoder as [K, B, z]: batch norm normalises all K * B rows."""
    torch.manual_seed(0)
    vae = VAE(16, 2, (8,), batch_norm=True)
    result = fit(SVIObjective(vae.model, vae.guide, IWAE(3)), binary, epochs=2, batch_size=20, progress=False,
                 seed=0)
    assert all(torch.isfinite(torch.tensor(result.history.loss["elbo"])))


def _buffers(module):
    return {name: buf.clone() for name, buf in module.named_buffers()}


def test_evaluation_methods_leave_a_batch_norm_s_running_statistics_alone():
    """Before, log_likelihood, elbo, sample and reconstruct in training mode each counted their batch as a
    training batch of the batch norms (running mean and variance, num_batches_tracked)."""
    torch.manual_seed(0)
    vae = VAE(6, 2, hidden=[5], batch_norm=True)
    x = torch.rand(10, 6).bernoulli()
    before = _buffers(vae)
    vae.log_likelihood(x, num_samples=4)
    vae.elbo(x)
    vae.sample(3)
    vae.reconstruct(x)
    after = _buffers(vae)
    assert vae.training and all(torch.equal(before[k], after[k]) for k in before)
    SVIObjective(vae.model, vae.guide).loss("elbo", x)  # a training pass still updates them
    assert not torch.equal(_buffers(vae)["encoder.1.num_batches_tracked"], before["encoder.1.num_batches_tracked"])


def test_batch_norm_without_hidden_layers_takes_a_one_row_batch():
    """Found by an audit: VAE(hidden=[], batch_norm=True) holds no batch norm (mlp normalises hidden layers
    only), yet a one-row training batch was refused as if it did."""
    torch.manual_seed(0)
    plain = VAE(4, 2, hidden=[])
    normed = VAE(4, 2, hidden=[], batch_norm=True)
    normed.load_state_dict(plain.state_dict())
    x = torch.tensor([[1.0, 0.0, 1.0, 1.0]])
    torch.testing.assert_close(normed.reconstruct(x), plain.reconstruct(x))
    assert normed.sample(1).shape == (1, 4)


@pytest.mark.parametrize("make", [lambda: VAE(4, 2, batch_norm="no"), lambda: VAE(4, 2, checkpoint_activations="no"),
                                  lambda: VAE(4, 2).sample(3, mean="False")],
                         ids=["batch_norm", "checkpoint_activations", "sample mean"])
def test_switches_must_be_true_or_false(make):
    """Found by an audit: "no" (truthy) built batch norm layers and turned checkpointing on, and
    sample(mean="False") returned means."""
    from hybridpgm.errors import ConfigError

    with pytest.raises((ModelSpecError, ConfigError), match="must be True or False, got '"):
        make()


def test_fit_leaves_a_frozen_decoder_and_log_scale_frozen_and_unmoved():
    """Training a Gaussian VAE's encoder only: ``log_scale``, a parameter of the PyroModule itself, was
    unfrozen by Pyro's param store and trained with it."""
    torch.manual_seed(0)
    x = torch.randn(16, 6, generator=torch.Generator().manual_seed(1))
    vae = VAE(6, 2, hidden=[4], likelihood="gaussian")
    for p in vae.model_parameters():
        p.requires_grad_(False)
    before = {n: p.detach().clone() for n, p in vae.named_parameters()}
    fit(SVIObjective(vae.model, vae.guide, Trace_ELBO()), x, max_steps=3, batch_size=8, progress=False,
        device="cpu", seed=0, optim=lambda ps: torch.optim.SGD(ps, lr=0.1))
    params = dict(vae.named_parameters())
    frozen = ["log_scale"] + [n for n in params if n.startswith("decoder")]
    for name in frozen:
        assert torch.equal(params[name], before[name]) and not params[name].requires_grad, name
    assert not torch.equal(params["encoder.0.weight"], before["encoder.0.weight"])
    vae.requires_grad_(False)
    with pytest.raises(ConfigError, match="player 'elbo' of SVIObjective has no parameters"):
        fit(SVIObjective(vae.model, vae.guide, Trace_ELBO()), x, max_steps=1, batch_size=8, progress=False,
            device="cpu", seed=0)
    assert not vae.log_scale.requires_grad


def test_plain_pyro_registers_log_scale_only_while_it_is_trainable():
    torch.manual_seed(0)
    x = torch.randn(8, 6, generator=torch.Generator().manual_seed(2))
    with pyro.settings.context(module_local_params=False), pyro.get_param_store().scope():
        vae = VAE(6, 2, hidden=[4], likelihood="gaussian")
        vae.log_scale.requires_grad_(False)
        pyro.poutine.trace(vae.model).get_trace(x)
        assert not vae.log_scale.requires_grad and "log_scale" not in pyro.get_param_store()
        vae.log_scale.requires_grad_(True)
        before = vae.log_scale.detach().clone()
        SVI(vae.model, vae.guide, pyro.optim.SGD({"lr": 0.1}), Trace_ELBO()).step(x)
        assert pyro.get_param_store()["log_scale"] is vae.log_scale
        assert not torch.equal(vae.log_scale, before)


@pytest.mark.parametrize("frozen, trained", [("decoder", "encoder"), ("encoder", "decoder")])
def test_a_frozen_half_is_not_warned_of_at_every_step(frozen, trained):
    """Fine-tuning one half: Pyro's "... was not registered in the param store because requires_grad=False"
    came once per frozen parameter per step (plain SVI and fit), advising train(False), which would stop the frozen
    half's batch norm.  The trainable half keeps its param-store names; the frozen one stays frozen, unregistered,
    and in training mode (its running statistics move)."""
    x = torch.bernoulli(torch.full((16, 6), 0.4), generator=torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    vae = VAE(6, 2, (4,), batch_norm=True)
    getattr(vae, frozen).requires_grad_(False)
    before = {n: p.detach().clone() for n, p in vae.named_parameters()}
    statistics = getattr(vae, frozen)[1].running_mean.clone()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pyro.settings.context(module_local_params=False), pyro.get_param_store().scope():
            svi = SVI(vae.model, vae.guide, pyro.optim.SGD({"lr": 0.1}), Trace_ELBO())
            for _ in range(3):
                svi.step(x)
            store = dict(pyro.get_param_store().items())
        fit(SVIObjective(vae.model, vae.guide, Trace_ELBO()), x, max_steps=3, batch_size=8, progress=False,
            device="cpu", seed=0, optim=lambda ps: torch.optim.SGD(ps, lr=0.1))
    assert [str(w.message) for w in caught if "not registered in the param store" in str(w.message)] == []
    assert sorted(store) == sorted(f"{trained}$$${n}" for n in ("0.weight", "0.bias", "1.weight", "1.bias",
                                                                 "3.weight", "3.bias"))
    assert all(store[f"{trained}$$${n}"] is p for n, p in getattr(vae, trained).named_parameters())
    for name, p in vae.named_parameters():
        assert torch.equal(p, before[name]) != name.startswith(trained) and p.requires_grad != name.startswith(frozen)
    assert not torch.equal(getattr(vae, frozen)[1].running_mean, statistics)


def test_a_state_dict_with_the_saved_keys_loads_log_scale():
    vae = VAE(3, 1, hidden=[], likelihood="gaussian")
    state = {"encoder.0.weight": torch.full((2, 3), 0.5), "encoder.0.bias": torch.zeros(2),
             "decoder.0.weight": torch.full((3, 1), -0.5), "decoder.0.bias": torch.ones(3),
             "log_scale": torch.tensor([0.1, 0.2, 0.3])}
    vae.load_state_dict(state)
    assert sorted(vae.state_dict()) == sorted(state)
    assert isinstance(vae.log_scale, torch.nn.Parameter) and torch.equal(vae.log_scale, state["log_scale"])
    assert not hasattr(VAE(3, 1, hidden=[]), "log_scale")  # a Bernoulli VAE has none


@pytest.mark.parametrize("mean", [True, False])
def test_sample_count_is_num_samples_and_n_warns(mean):
    """``num_samples`` as in ``VAE.log_likelihood`` and every other family (``vae.sample(num_samples=3)`` raised a
    TypeError); ``n=`` still works for a release, with a FutureWarning."""
    torch.manual_seed(0)
    assert_renamed(functools.partial(VAE(6, 2, [4]).sample, mean=mean), "n")


# -- the generator= argument (the package's RNG contract) -----------------------------------------------------------
def _vae(likelihood="bernoulli", dropout=False):
    torch.manual_seed(0)
    vae = VAE(6, 2, [5], likelihood=likelihood)
    if dropout:  # in training mode (a VAE's default): its masks are draws too
        vae.decoder = torch.nn.Sequential(torch.nn.Linear(2, 5), torch.nn.Dropout(0.5), torch.nn.Linear(5, 6))
    return vae


_X = torch.tensor([[0.0, 1.0, 1.0, 0.0, 1.0, 0.0], [1.0, 1.0, 0.0, 0.0, 0.0, 1.0]])
_GENERATOR_CALLS = {  # case -> (the generator's name in messages, vae -> call)
    "sample means": ("VAE.sample", lambda vae, **kw: vae.sample(4, **kw)),
    "sample bernoulli draws": ("VAE.sample", lambda vae, **kw: vae.sample(4, mean=False, **kw)),
    "sample gaussian draws": ("VAE.sample", lambda vae, **kw: vae.sample(4, mean=False, **kw)),
    "sample through dropout": ("VAE.sample", lambda vae, **kw: vae.sample(4, **kw)),
    # found by an audit of the samplers: reconstruct took no generator, its networks' dropout drew from the global
    # stream (the encoder too: the dropout decoder's case replaces the decoder only)
    "reconstruct through dropout": ("VAE.reconstruct", lambda vae, **kw: vae.reconstruct(_X, **kw)),
    "reconstruct through an encoder's dropout": ("VAE.reconstruct", lambda vae, **kw: vae.reconstruct(_X, **kw)),
    "log_weights": ("VAE", lambda vae, **kw: vae.log_weights(_X, 5, chunk_size=2, **kw)),
    "log_likelihood": ("VAE", lambda vae, **kw: vae.log_likelihood(_X, 5, chunk_size=2, **kw)),
    "elbo": ("VAE", lambda vae, **kw: vae.elbo(_X, 3, **kw)),
}


def _generator_call(case):
    vae = _vae("gaussian" if "gaussian" in case else "bernoulli", dropout="dropout" in case and "encoder" not in case)
    if "encoder" in case:  # in training mode, its masks move the mean the decoder reads
        vae.encoder = torch.nn.Sequential(torch.nn.Dropout(0.5), *vae.encoder)
    return lambda **kw: _GENERATOR_CALLS[case][1](vae, **kw)


@pytest.mark.parametrize("case", list(_GENERATOR_CALLS))
def test_a_generator_makes_the_draws_a_function_of_its_state(case):
    """``generator=`` (they took none): ``sample``'s noise, Bernoulli and Gaussian draws take it, a training-mode
    decoder's dropout draws from the global streams seeded from it; the importance estimates' guide draws
    (Pyro sample statements) run under the global streams seeded from it; the caller's streams do not move."""
    contract.assert_generator_contract(_generator_call(case), f"{_GENERATOR_CALLS[case][0]} generator")


def test_options_passed_by_position_as_before_build_the_same_model_and_save_with_a_warning(tmp_path):
    """The options after ``hidden`` are keyword-only (an API audit: ``VAE(6, 2, (8,), 'bernoulli', 'relu', 'xavier',
    True)`` built a batch-norm VAE); a positional call still builds what it did, with a FutureWarning, and its
    constructor arguments are recorded by name, so it saves and loads (the record bound the call to the new
    signature and raised TypeError)."""
    with pytest.warns(FutureWarning, match=r"VAE.__init__: pass likelihood=, activation=, init=, batch_norm= by "):
        old = VAE(6, 2, (8,), "gaussian", "tanh", "he", True)
    new = VAE(6, 2, (8,), likelihood="gaussian", activation="tanh", init="he", batch_norm=True)
    assert old.likelihood == new.likelihood == "gaussian" and repr(old) == repr(new)
    hybridpgm.save(old, tmp_path / "vae.pt")
    loaded = hybridpgm.load(tmp_path / "vae.pt")
    assert loaded.likelihood == "gaussian" and repr(loaded) == repr(old)
    with pytest.warns(FutureWarning, match=r"VAE.sample: pass mean= by keyword"):
        torch.manual_seed(0)
        draws = old.sample(3, False)
    torch.manual_seed(0)
    assert torch.equal(draws, old.sample(3, mean=False))


def test_an_override_of_log_weights_with_the_signature_of_older_releases_still_runs():
    """Found by a review: ``log_likelihood`` and ``elbo`` passed ``generator=`` to ``log_weights`` even when it is
    None, so a subclass overriding ``log_weights(self, x, num_samples, chunk_size=128)`` raised TypeError."""

    class OldVAE(VAE):
        def log_weights(self, x, num_samples, chunk_size=128):
            return super().log_weights(x, num_samples, chunk_size)

    torch.manual_seed(0)
    vae, x = OldVAE(6, z_dim=2, hidden=(4,)), (torch.rand(3, 6) < 0.5).float()
    plain = VAE(6, z_dim=2, hidden=(4,))
    plain.load_state_dict(vae.state_dict())
    torch.manual_seed(1)
    got = vae.log_likelihood(x, num_samples=4), vae.elbo(x, num_samples=2)
    torch.manual_seed(1)
    want = plain.log_likelihood(x, num_samples=4), plain.elbo(x, num_samples=2)
    assert got[0].shape == got[1].shape == (3,)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
