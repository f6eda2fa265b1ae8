"""The RBM's contrastive-divergence chain protocol (hybridpgm.energy.rbm_chains) under autocast and fit."""

from __future__ import annotations

import pytest
import torch

from hybridpgm.energy import DBM, RBM
from tests.generator_contract import assert_generator_contract


def _rbm_far_from_zero(visible: str = "bernoulli"):
    """A 64 x 32 RBM whose free energies are about -35 (digits-sized), data ``v`` and a chain sample ``v_neg``
    (5% of ``v``'s units flipped; Gaussian units: ``v`` plus noise)."""
    gen = torch.Generator().manual_seed(0)
    rbm = RBM(64, 32, visible=visible)
    with torch.no_grad():
        for p in (rbm.weight, rbm.hidden_bias, rbm.visible_bias):
            p.copy_(torch.randn(p.shape, generator=gen) * (0.5 if p is rbm.weight else 1.0))
    if visible == "gaussian":
        v = torch.randn(100, 64, generator=gen)
        return rbm, v, v + 0.3 * torch.randn(100, 64, generator=gen)
    v = torch.bernoulli(torch.full((100, 64), 0.4), generator=gen)
    flip = torch.rand(100, 64, generator=gen) < 0.05
    return rbm, v, torch.where(flip, 1 - v, v)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_contrastive_gap_under_autocast_is_the_float32_one(dtype, visible):
    """Before, under bf16 autocast the CD/PCD surrogate (free energies about -35) read -0.5 for a float32 -0.3164
    and the hidden-bias gradient was 14% off: the RBM computes it with autocast off, in its parameters' dtype."""
    rbm, v, v_neg = _rbm_far_from_zero(visible)
    params = [rbm.weight, rbm.visible_bias, rbm.hidden_bias]
    want = rbm.contrastive_gap(v, (v_neg,), rbm.clamped_state(v)[1])
    want_grads = torch.autograd.grad(want, params)
    with torch.autocast("cpu", dtype=dtype):
        got = rbm.contrastive_gap(v, (v_neg,), rbm.clamped_state(v)[1])
    assert got.dtype == torch.float32
    assert abs(got.item() - want.item()) < 1e-3
    for g, w in zip(torch.autograd.grad(got, params), want_grads):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_gradients_are_written_out_under_autocast_too(dtype):
    """Before, ``contrastive_gap_and_gradients`` returned ``None`` under autocast (fit fell back to autograd through
    the quantised bfloat16 surrogate); now the closed form holds there as well, with the float32 numbers."""
    rbm, v, v_neg = _rbm_far_from_zero()
    want_value, want_grads = rbm.contrastive_gap_and_gradients(v, (v_neg,))
    with torch.autocast("cpu", dtype=dtype):
        cache = rbm.clamped_state(v)[1]
        written = rbm.contrastive_gap_and_gradients(v, (v_neg,), cache)
    assert written is not None
    value, grads = written
    assert value.dtype == torch.float32 and abs(value.item() - want_value.item()) < 1e-3
    for p in (rbm.weight, rbm.visible_bias, rbm.hidden_bias):
        assert grads[p].dtype == p.dtype
        torch.testing.assert_close(grads[p], want_grads[p])


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_cd_under_fit_precision_reports_the_float32_loss(precision):
    """At ``fit`` level (CD-1, learning rate 0, the same seed): the losses of the steps are those of float32; before,
    bf16's were quantised (and the chains ran in bfloat16)."""
    import copy
    import functools

    import hybridpgm
    from hybridpgm.infer import ContrastiveDivergence

    rbm, v, _ = _rbm_far_from_zero()
    runs = {}
    for prec in ("fp32", precision):
        result = hybridpgm.fit(ContrastiveDivergence(copy.deepcopy(rbm), k=1), v, batch_size=100, max_steps=2,
                               precision=prec, progress=False, seed=0,
                               optim=functools.partial(torch.optim.SGD, lr=0.0))
        runs[prec] = result.history.loss["model"]
    assert len(runs[precision]) == 2
    for got, want in zip(runs[precision], runs["fp32"]):
        assert abs(got - want) < 1e-3


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("method", ["init_chains", "gibbs_chain"])
def test_the_chain_protocol_draws_from_the_generator_given(method, visible):
    """``generator=`` (keyword-only) on the chain protocol's init_chains and gibbs_chain (what a caller running
    chains by hand uses); the objectives pass none (tests/energy/generator_contract.py).  Before: no argument."""
    torch.manual_seed(0)
    rbm = RBM(5, 3, visible=visible, init_scale=0.5).double()
    state = (torch.ones(4, 5, dtype=torch.float64),)
    draw = {"init_chains": lambda **kw: rbm.init_chains(4, **kw),
            "gibbs_chain": lambda **kw: rbm.gibbs_chain(state, 2, **kw)}[method]
    what = "RBM.random_visible generator" if method == "init_chains" else "RBM.gibbs_chain generator"
    assert_generator_contract(draw, what)


class DataStartRBM(RBM):
    """Overrides ``random_visible`` with the signature of older releases (no ``generator``)."""

    def random_visible(self, num_samples):
        return torch.ones(num_samples, self.num_visible)


class ZeroStartDBM(DBM):
    """Overrides ``init_chains`` with the signature of older releases (no ``generator``)."""

    def init_chains(self, num_chains):
        return tuple(torch.zeros(num_chains, s) for s in self.sizes)


def test_overrides_of_the_chain_methods_with_the_signatures_of_older_releases_still_run():
    """Found by a review: ``sample``, ``init_chains`` (the start of PCD) and ``DBM.sample`` passed ``generator=``
    even when it is None, so a subclass overriding ``random_visible(self, n)`` or ``init_chains(self, n)`` as older
    releases declared them raised TypeError; without a generator they are called as before."""
    from hybridpgm.energy import DBN

    class OldSampleRBM(RBM):
        def sample(self, num_samples, steps=1000, init=None):
            return super().sample(num_samples, steps, init)

    torch.manual_seed(0)
    assert DataStartRBM(6, 3).sample(3, 2).shape == (3, 6)
    assert torch.equal(DataStartRBM(6, 3).init_chains(4)[0], torch.ones(4, 6))
    assert ZeroStartDBM([6, 4, 3]).sample(3, 2).shape == (3, 6)
    dbn = DBN([6, 4, 3])
    dbn.rbms[-1].__class__ = OldSampleRBM
    assert dbn.sample(3, steps=2).shape == (3, 6)


def test_a_generator_for_an_override_that_takes_none_is_refused_by_name():
    """Found by an audit: with ``generator=``, an override of an older release (``random_visible(self, n)``,
    ``init_chains(self, n)``, ``log_weights`` without ``generator``) raised a raw TypeError from inside the
    sampler; it is a ConfigError naming the method and the argument now, before anything is drawn (as AIS and
    RAISE refuse such an annealing path)."""
    from hybridpgm.errors import ConfigError
    from hybridpgm.generative import VAE
    from hybridpgm.infer import estimate_log_z

    class OldVAE(VAE):
        def log_weights(self, x, num_samples, chunk_size=128):
            return super().log_weights(x, num_samples, chunk_size)

    g = torch.Generator().manual_seed(0)
    x = torch.ones(4, 6)
    for call, what in ((lambda: DataStartRBM(6, 3).sample(3, 2, generator=g), "RBM.sample generator"),
                       (lambda: DataStartRBM(6, 3).init_chains(3, generator=g), "DataStartRBM.init_chains generator"),
                       (lambda: ZeroStartDBM([6, 4, 3]).sample(3, 2, generator=g), "DBM.sample generator"),
                       (lambda: estimate_log_z(DataStartRBM(6, 3), x, num_chains=4, num_steps=3, generator=g),
                        "model_samples generator"),
                       (lambda: OldVAE(6, z_dim=2, hidden=(4,)).log_likelihood(x, 4, generator=g),
                        "VAE.log_likelihood generator")):
        state = g.get_state()
        with pytest.raises(ConfigError, match=rf"^{what}: .*(random_visible|init_chains|log_weights) take\(s\) no "
                                              r"generator= keyword"):
            call()
        assert torch.equal(g.get_state(), state)  # nothing drawn before the refusal


@pytest.mark.parametrize("bad", [-1, 2.5, True, "3", None])
def test_gibbs_chain_checks_its_step_count_as_the_dbm_does(bad):
    """Before, ``RBM.gibbs_chain`` took ``steps`` unchecked: ``-1`` and ``True`` ran zero or one sweep silently, a
    float or string reached Python as a raw ``TypeError``."""
    import re

    from hybridpgm.errors import ConfigError

    rbm = RBM(4, 3)
    state = rbm.init_chains(2)
    with pytest.raises(ConfigError, match=rf"^RBM\.gibbs_chain steps must be an integer >= 0, got "
                                          rf"{re.escape(repr(bad))}$"):
        rbm.gibbs_chain(state, bad)


def test_gibbs_chain_takes_zero_and_integer_scalars():
    """Guard (passes before and after): zero sweeps return the visible states; a 0-d tensor counts sweeps."""
    import numpy as np

    rbm = RBM(4, 3)
    state = rbm.init_chains(2)
    assert torch.equal(rbm.gibbs_chain(state, 0)[0], state[0])
    g = torch.Generator().manual_seed(0)
    one = rbm.gibbs_chain(state, torch.tensor(2), generator=g)[0]
    assert torch.equal(one, rbm.gibbs_chain(state, np.int64(2), generator=g.manual_seed(0))[0])


@pytest.mark.parametrize("api", ["gibbs_chain", "gibbs"])
def test_a_given_hidden_sample_serves_the_first_sweep_only(api):
    """``k`` sweeps from ``(v, h)`` are one sweep from ``(v, h)`` followed by ``k - 1`` sweeps from its visible
    result, draw for draw under one generator: the later sweeps draw their own hidden samples.  A mutation that
    reused ``h`` on every sweep survived the suite; CD-k from :meth:`clamped_state` then silently became CD-1."""
    rbm, v, _ = _rbm_far_from_zero()
    (v, h), _ = rbm.clamped_state(v)

    def sweeps(start, steps, gen):
        if api == "gibbs":
            return rbm.gibbs(start[0], steps, h=start[1] if len(start) > 1 else None, generator=gen)
        return rbm.gibbs_chain(start, steps, generator=gen)[0]

    three = sweeps((v, h), 3, torch.Generator().manual_seed(5))
    gen = torch.Generator().manual_seed(5)
    chained = sweeps((sweeps((v, h), 1, gen),), 2, gen)
    assert torch.equal(three, chained)
    assert not torch.equal(three, sweeps((v, h), 1, torch.Generator().manual_seed(5)))
