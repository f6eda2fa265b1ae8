"""CD-k and PCD objectives: the surrogate's gradient, persistent chains, training through ``fit``."""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from threadpoolctl import threadpool_limits

from hybridpgm.energy import DBM, RBM
from hybridpgm.errors import ConfigError, DataError, ModelSpecError
from hybridpgm.infer import ContrastiveDivergence, PersistentCD
from hybridpgm.train import fit
from tests.energy.brute_force import all_states, random_dbm, random_rbm, single_thread  # noqa: F401


class _Recording(ContrastiveDivergence):
    def negative_samples(self, start):
        self.recorded = super().negative_samples(start)
        return self.recorded


@pytest.mark.parametrize("k", [1, 3])
@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_surrogate_gradient_is_the_cd_gradient(k, visible):
    rbm = random_rbm(6, 4, seed=0, scale=0.5, visible=visible)
    v = torch.bernoulli(torch.full((8, 6), 0.5, dtype=torch.float64))
    objective = _Recording(rbm, k)
    objective.loss("model", v).backward()
    neg = objective.recorded[0]
    s = rbm.sigma
    sv, sn = v / s if visible == "gaussian" else v, neg / s if visible == "gaussian" else neg
    with torch.no_grad():
        ph = torch.sigmoid(sv @ rbm.weight + rbm.hidden_bias)
        nh = torch.sigmoid(sn @ rbm.weight + rbm.hidden_bias)
        # CD update direction (to ascend): <v h>_data - <v h>_model; the loss gradient is its negative
        d_w = sv.T @ ph / 8 - sn.T @ nh / 8
        d_c = ph.mean(0) - nh.mean(0)
        if visible == "gaussian":
            d_b = ((v - rbm.visible_bias) / s**2).mean(0) - ((neg - rbm.visible_bias) / s**2).mean(0)
        else:
            d_b = v.mean(0) - neg.mean(0)
    torch.testing.assert_close(rbm.weight.grad, -d_w)
    torch.testing.assert_close(rbm.hidden_bias.grad, -d_c)
    torch.testing.assert_close(rbm.visible_bias.grad, -d_b)


@pytest.mark.parametrize("make", [lambda m: ContrastiveDivergence(m, 1), lambda m: ContrastiveDivergence(m, 3),
                                  lambda m: PersistentCD(m, 2, num_chains=5)], ids=["cd1", "cd3", "pcd2"])
def test_loss_and_gradients_give_what_loss_and_autograd_give(make):
    """The same draws (same seed), the same loss and gradients, and the persistent chains advanced alike."""
    rbm = random_rbm(6, 4, seed=0, scale=0.5)
    v = torch.bernoulli(torch.full((8, 6), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(1))
    objective = make(rbm)
    chains = [b.clone() for b in objective.buffers()]
    torch.manual_seed(2)
    loss, grads = objective.loss_and_gradients("model", v)
    after_written = [b.clone() for b in objective.buffers()]
    for b, saved in zip(objective.buffers(), chains):
        b.copy_(saved)
    torch.manual_seed(2)
    expected = objective.loss("model", v)
    expected_grads = torch.autograd.grad(expected, objective.players()["model"])
    assert loss.grad_fn is None and list(grads) == objective.players()["model"]
    torch.testing.assert_close(loss, expected.detach())
    for g, e in zip(grads.values(), expected_grads):
        torch.testing.assert_close(g, e)
    for a, b in zip(after_written, objective.buffers()):
        assert torch.equal(a, b)


def test_loss_and_gradients_leave_models_without_written_gradients_to_autograd():
    dbm = random_dbm([5, 4, 3], seed=0, scale=0.5)
    loss, grads = PersistentCD(dbm, 1, num_chains=4).loss_and_gradients("model", torch.ones(2, 5, dtype=torch.float64))
    assert grads is None and loss.requires_grad
    gaussian = RBM(6, 4, visible="gaussian")
    loss, grads = ContrastiveDivergence(gaussian, 1).loss_and_gradients("model", torch.randn(3, 6))
    assert grads is None and loss.requires_grad


def test_pcd_gradient_approaches_exact_log_likelihood_gradient():
    """With many well-mixed chains the PCD gradient is the exact gradient of -mean log p(v)."""
    rbm = random_rbm(5, 3, seed=1, scale=0.7)
    data = all_states(5)[torch.tensor([0, 3, 7, 12, 19, 25, 31])]
    exact_loss = -rbm.log_likelihood(data, rbm.log_partition(differentiable=True)).mean()
    exact = torch.autograd.grad(exact_loss, list(rbm.parameters()))
    objective = PersistentCD(rbm, k=30, num_chains=40000)
    estimate = torch.autograd.grad(objective.loss("model", data), list(rbm.parameters()))
    for e, g in zip(exact, estimate):
        torch.testing.assert_close(g, e, atol=0.03, rtol=0)


def test_dbm_pcd_negative_phase_estimates_grad_log_z():
    """For a DBM, -mean F_even(chains) has gradient E_model[-grad E] = grad log Z."""
    dbm = random_dbm([4, 3, 3], seed=2, scale=0.7)
    exact = torch.autograd.grad(dbm.log_partition(differentiable=True), list(dbm.parameters()))
    objective = PersistentCD(dbm, k=30, num_chains=40000, check_data=False)
    chains = dbm.gibbs_chain(objective.chains, 30)
    estimate = torch.autograd.grad(-dbm.negative_phase(chains).mean(), list(dbm.parameters()))
    for e, g in zip(exact, estimate):
        torch.testing.assert_close(g, e, atol=0.03, rtol=0)


def test_dbm_positive_phase_is_energy_at_mean_field():
    dbm = random_dbm([4, 3, 2], seed=3, scale=0.7)
    v = all_states(4)[:5]
    energy, state = dbm.positive_phase(v)
    mu = dbm.mean_field(v)
    torch.testing.assert_close(energy, dbm.energy(mu))
    assert [s.shape for s in state] == [(5, 4), (5, 3), (5, 2)]


def test_persistent_chains_are_buffers_in_checkpoints():
    rbm = RBM(6, 4)
    objective = PersistentCD(rbm, k=2, num_chains=5)
    assert "chain_0" in objective.state_dict() and "model.weight" in objective.state_dict()
    before = objective.chain_0.clone()
    objective.loss("model", torch.ones(3, 6))
    assert not torch.equal(before, objective.chain_0)
    state = {k: v.clone() for k, v in objective.state_dict().items()}
    other = PersistentCD(RBM(6, 4), k=2, num_chains=5)
    other.load_state_dict(state)
    assert torch.equal(other.chain_0, objective.chain_0)
    assert objective.module.double().chain_0.dtype == torch.float64  # chains move with the module


def test_pcd_chains_survive_fit_checkpoint(tmp_path):
    data = torch.bernoulli(torch.full((40, 6), 0.3))
    path = tmp_path / "pcd.pt"
    objective = PersistentCD(RBM(6, 4), k=1, num_chains=7)
    fit(objective, data, epochs=1, batch_size=10, checkpoint=path, progress=False, seed=0)
    resumed = PersistentCD(RBM(6, 4), k=1, num_chains=7)
    fit(resumed, data, epochs=1, batch_size=10, checkpoint=path, progress=False, seed=0)  # nothing left to do
    assert torch.equal(resumed.chain_0, objective.chain_0)
    assert torch.equal(resumed.model.weight, objective.model.weight)


@pytest.mark.parametrize("make", [lambda: RBM(6, 3), lambda: DBM([6, 3, 2])], ids=["rbm", "dbm"])
def test_pcd_chains_follow_the_model_moved_by_itself(make):
    """``model.double()`` after building the objective -- what the float64-data DataError advises -- leaves the
    chains (the objective's buffers) behind: they follow the model, values kept, in fit and outside it."""
    torch.manual_seed(0)
    model = make()
    objective = PersistentCD(model, k=1, num_chains=4)
    before = [c.clone() for c in objective.chains]
    model.double()
    assert all(c.dtype == torch.float64 and torch.equal(c, b.double()) for c, b in zip(objective.chains, before))
    x = torch.bernoulli(torch.full((16, 6), 0.5, dtype=torch.float64))
    fit(objective, x, batch_size=8, epochs=1, progress=False, seed=0)
    assert objective.chain_0.dtype == torch.float64
    assert all(getattr(objective, f"chain_{i}").dtype == torch.float64 for i in range(objective.num_states))
    assert torch.isfinite(objective.loss("model", x))
    states = [getattr(objective, f"chain_{i}").clone() for i in range(objective.num_states)]
    model.float()  # and back to float32: binary states are exact there too
    assert all(c.dtype == torch.float32 and torch.equal(c.double(), s) for c, s in zip(objective.chains, states))
    assert torch.isfinite(objective.loss("model", x.float()))


def test_pcd_resumes_exactly_after_model_double(tmp_path):
    """Gaussian visible chains of a model moved to float64 are saved in float64 and load into float64 chains of a
    fresh objective whose model was moved the same way: not rounded through the float32 the buffers were built in."""
    torch.manual_seed(1)
    data = torch.randn(40, 5, dtype=torch.float64)
    path = tmp_path / "pcd64.pt"
    objective = PersistentCD(RBM(5, 3, visible="gaussian"), k=1, num_chains=6)
    objective.model.double()
    fit(objective, data, epochs=1, batch_size=10, checkpoint=path, progress=False, seed=0)
    chain = objective.chain_0
    assert chain.dtype == torch.float64 and not torch.equal(chain, chain.float().double())  # float32 would round
    resumed = PersistentCD(RBM(5, 3, visible="gaussian"), k=1, num_chains=6)
    resumed.model.double()
    fit(resumed, data, epochs=1, batch_size=10, checkpoint=path, progress=False, seed=0)  # nothing left to do
    assert resumed.chain_0.dtype == torch.float64 and torch.equal(resumed.chain_0, chain)
    other = PersistentCD(RBM(5, 3, visible="gaussian"), k=1, num_chains=6)
    other.model.double()
    other.load_state_dict(objective.state_dict())
    assert torch.equal(other.chain_0, chain)


class _L2RBM(RBM):
    """A positive phase with a weight-decay term: the surrogate gains ``||W||^2``."""

    def positive_phase(self, v):
        free, state = super().positive_phase(v)
        return free + (self.weight ** 2).sum(), state


class _DoubledNegativeRBM(RBM):
    def negative_phase(self, state):
        return 2.0 * super().negative_phase(state)


class _GapL2RBM(RBM):
    """Overrides the closed-form surrogate alone; ``contrastive_gap_and_gradients`` is inherited."""

    def contrastive_gap(self, v, negative, cache=None):
        return super().contrastive_gap(v, negative, cache) + (self.weight ** 2).sum()


def _like(cls, rbm):
    """A ``cls`` instance with ``rbm``'s parameters (float64)."""
    model = cls(rbm.num_visible, rbm.num_hidden).double()
    model.load_state_dict(rbm.state_dict())
    return model


def _gradients(objective, v, seed):
    """``loss_and_gradients``' value and gradients (autograd of its value where it writes none out)."""
    torch.manual_seed(seed)
    loss, grads = objective.loss_and_gradients("model", v)
    params = objective.players()["model"]
    return loss.detach(), list(grads.values()) if grads is not None else torch.autograd.grad(loss, params)


@pytest.mark.parametrize("cls", [_L2RBM, _DoubledNegativeRBM, _GapL2RBM])
@pytest.mark.parametrize("make", [lambda m: ContrastiveDivergence(m, 1), lambda m: PersistentCD(m, 2, num_chains=5)],
                         ids=["cd1", "pcd2"])
def test_an_rbm_subclass_is_trained_on_the_loss_it_defines(cls, make):
    """Before, any RBM subclass took the RBM's closed-form surrogate and its written-out gradients, bypassing an
    overridden ``positive_phase`` / ``negative_phase`` / ``contrastive_gap``: ``fit`` trained the plain RBM's
    loss (and for a ``contrastive_gap`` override, another loss than ``loss()`` reported)."""
    base = random_rbm(6, 4, seed=0, scale=0.5)
    model = _like(cls, base)
    v = torch.bernoulli(torch.full((8, 6), 0.5, dtype=torch.float64), generator=torch.Generator().manual_seed(1))
    objective = make(model)
    chains = [b.clone() for b in objective.buffers()]
    loss, grads = _gradients(objective, v, seed=2)
    for b, saved in zip(objective.buffers(), chains):
        b.copy_(saved)
    torch.manual_seed(2)
    expected = objective.loss("model", v)
    for g, e in zip(grads, torch.autograd.grad(expected, objective.players()["model"])):
        torch.testing.assert_close(g, e)
    torch.testing.assert_close(loss, expected.detach())
    # the loss the subclass defines, on the same draws
    for b, saved in zip(objective.buffers(), chains):
        b.copy_(saved)
    torch.manual_seed(2)
    if cls is _GapL2RBM:
        start = objective.chains if isinstance(objective, PersistentCD) else model.clamped_state(v)[0]
        defined = model.contrastive_gap(v, objective.negative_samples(start))
    else:
        positive, start = model.positive_phase(v)
        start = objective.chains if isinstance(objective, PersistentCD) else start
        defined = positive.mean() - model.negative_phase(objective.negative_samples(start)).mean()
    torch.testing.assert_close(loss, defined.detach())
    plain, _ = _gradients(make(_like(RBM, base)), v, seed=2)
    assert not torch.allclose(loss, plain)


def test_an_rbm_subclass_with_weight_decay_in_its_positive_phase_ends_fit_with_smaller_weights():
    data = torch.bernoulli(torch.full((32, 6), 0.5), generator=torch.Generator().manual_seed(0))

    def trained(cls):
        torch.manual_seed(1)
        model = cls(6, 4)
        fit(ContrastiveDivergence(model), data, max_steps=20, batch_size=8, seed=0, progress=False,
            optim=functools.partial(torch.optim.SGD, lr=0.05))
        return model.weight.detach().norm()

    plain, decayed = trained(RBM), trained(_L2RBM)
    assert decayed < 0.5 * plain, (decayed, plain)


def test_the_plain_rbm_keeps_its_written_gradients_and_instance_overrides_count():
    from hybridpgm.infer.contrastive_divergence import _closed_form

    rbm = RBM(6, 4)
    assert _closed_form(rbm) == (True, True)
    assert _closed_form(_GapL2RBM(6, 4)) == (True, False)
    assert _closed_form(_L2RBM(6, 4)) == (False, False) == _closed_form(_DoubledNegativeRBM(6, 4))
    assert _closed_form(random_dbm([5, 4, 3])) == (False, False)
    rbm.negative_phase = lambda state: 2.0 * RBM.negative_phase(rbm, state)
    assert _closed_form(rbm) == (False, False)
    del rbm.negative_phase
    rbm.contrastive_gap = lambda v, negative, cache=None: RBM.contrastive_gap(rbm, v, negative, cache)
    assert _closed_form(rbm) == (True, False)


@pytest.mark.parametrize("make", [lambda m: ContrastiveDivergence(m, 1), lambda m: PersistentCD(m, 1, 50)],
                         ids=["cd1", "pcd"])
def test_training_with_fit_improves_exact_log_likelihood(make):
    torch.manual_seed(4)
    prototypes = torch.tensor([[1, 1, 1, 0, 0, 0, 1, 0], [0, 0, 0, 1, 1, 1, 0, 1]], dtype=torch.float32)
    flips = torch.bernoulli(torch.full((400, 8), 0.05))
    data = (prototypes[torch.arange(400) % 2] - flips).abs()
    rbm = RBM(8, 4)
    before = float(rbm.log_likelihood(data).mean().detach())
    objective = make(rbm)
    fit(objective, data, epochs=15, batch_size=20, optim=functools.partial(torch.optim.SGD, lr=0.1, momentum=0.5),
        progress=False, seed=0)
    after = float(rbm.log_likelihood(data).mean().detach())
    assert after > before + 1.5, (before, after)
    if isinstance(objective, PersistentCD):
        assert objective.last_reconstruction_error is None
    else:
        assert 0 <= float(objective.last_reconstruction_error) < 8
    monitors = objective.monitor(data)
    assert monitors["reconstruction_error"] < float(((data - 0.5) ** 2).sum(-1).mean())
    assert monitors["pseudo_log_likelihood"] > 8 * np.log(0.5)


def test_rbm_features_with_logistic_regression_on_digits():
    """scikit-learn's RBM example protocol (no nudging): RBM features + logistic regression >= 0.93."""
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    x = ((x - x.min(0)) / (x.max(0) + 1e-4)).astype(np.float32)
    x_train, x_test, y_train, y_test = train_test_split(x, y, test_size=0.2, random_state=0)
    torch.manual_seed(0)
    rbm = RBM(64, 100, probabilities=True)
    fit(PersistentCD(rbm, k=1, num_chains=20), torch.from_numpy(x_train), epochs=20, batch_size=20,
        optim=functools.partial(torch.optim.SGD, lr=0.1), progress=False, seed=0)
    features = lambda a: rbm.transform(torch.from_numpy(a)).numpy()  # noqa: E731
    with threadpool_limits(1):
        classifier = LogisticRegression(C=100.0, max_iter=1000).fit(features(x_train), y_train)
    accuracy = classifier.score(features(x_test), y_test)
    print(f"digits: RBM features + logistic regression accuracy {accuracy:.4f}")
    assert accuracy >= 0.93


def test_bad_configuration_raises():
    with pytest.raises(ConfigError, match="k must be"):
        ContrastiveDivergence(RBM(4, 2), k=0)
    with pytest.raises(ConfigError, match="num_chains"):
        PersistentCD(RBM(4, 2), num_chains=0)
    with pytest.raises(ModelSpecError, match="positive_phase"):
        ContrastiveDivergence(torch.nn.Linear(4, 2))
    objective = ContrastiveDivergence(RBM(4, 2))
    with pytest.raises(ConfigError, match="player"):
        objective.loss("generator", torch.ones(2, 4))
    with pytest.raises(DataError, match="binary"):
        objective.loss("model", torch.full((2, 4), 0.5))
    with pytest.raises(DataError, match=r"\(2, 3\)"):
        objective.loss("model", torch.ones(2, 3))
    with pytest.raises(DataError, match="binary"):
        PersistentCD(DBM([4, 3, 2])).loss("model", (torch.full((2, 4), 0.5), torch.zeros(2)))


@pytest.mark.parametrize("objective", [ContrastiveDivergence, PersistentCD])
@pytest.mark.parametrize("bad", ["no", 0, 1, None])
def test_check_data_must_be_a_bool(objective, bad):
    """``check_data`` was taken as it came: ``check_data="no"`` (truthy) checked every batch, ``0`` or ``None``
    silently switched the checks off; like every other on/off option it must be True or False."""
    with pytest.raises(ConfigError, match=rf"^{objective.__name__} check_data must be True or False, got "
                                          rf"{bad!r}$"):
        objective(RBM(4, 2), check_data=bad)
    assert objective(RBM(4, 2), check_data=False).check_data is False


@pytest.mark.parametrize("make, exact", [(lambda: RBM(12, 6).double(), True),
                                         (lambda: DBM([12, 6, 4]).double(), False)], ids=["rbm", "dbm"])
def test_pcd_under_accumulation_advances_the_chains_k_sweeps_per_step(make, exact):
    """Found by an audit: fit calls loss once per micro-batch, and each call advanced the persistent chains, so
    accumulate=4 made 4k sweeps a step and averaged the negative phase over 4 chain states.  Now the
    micro-batches of a step share one negative phase: for the RBM (a positive phase without draws) the same
    update as one step on the whole batch, to rounding."""
    x = torch.bernoulli(torch.full((32, 12), 0.3, dtype=torch.float64), generator=torch.Generator().manual_seed(1))
    sweeps = {}
    runs = {}
    for accumulate in (1, 4):
        torch.manual_seed(0)
        model = make()
        objective = PersistentCD(model, k=2, num_chains=10)
        calls = []
        original = objective.negative_samples
        objective.negative_samples = lambda start: calls.append(1) or original(start)
        fit(objective, x, epochs=1, batch_size=16, accumulate=accumulate, seed=0, progress=False, shuffle=False,
            optim=functools.partial(torch.optim.SGD, lr=0.1))
        sweeps[accumulate] = len(calls)
        runs[accumulate] = [p.detach() for p in model.parameters()] + [c.clone() for c in objective.chains]
    assert sweeps == {1: 2, 4: 2}  # one negative phase (k sweeps) per optimizer step, 2 steps
    if exact:  # a DBM's positive phase draws per call: other random numbers, the same count of sweeps
        for a, b in zip(runs[1], runs[4]):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-12)
    # outside fit, every call is a step of its own
    objective = PersistentCD(RBM(12, 6).double(), k=1, num_chains=10)
    before = [c.clone() for c in objective.chains]
    objective.loss("model", x[:4])
    after_one = [c.clone() for c in objective.chains]
    objective.loss("model", x[:4])
    assert any(not torch.equal(a, b) for a, b in zip(before, after_one))
    assert any(not torch.equal(a, b) for a, b in zip(after_one, objective.chains))
