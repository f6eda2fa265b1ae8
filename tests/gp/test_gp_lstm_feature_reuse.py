"""The semi-stochastic objective of a GP-LSTM (hybridpgm.gp.gp_lstm) reuses its full-data features and its
full-data gradient :math:`G` between its players and micro-batches only while nothing they depend on changed (the
weights, the modes, the training data, hooks, an optimizer's closure evaluations)."""

import functools

import pytest
import torch

import hybridpgm
from hybridpgm.gp import GPLSTM, DeepKernelGP, LSTMFeatures, SemiStochasticObjective
from tests.gp.gp_lstm_helpers import GP_LSTM_WARNINGS, small_objective, windows

pytestmark = pytest.mark.filterwarnings(*GP_LSTM_WARNINGS)


def _count_full_passes(objective, n):
    """A list that the extractor's forward appends each call's batch rows to, split as (full, batch) (a wrapper of
    the instance's ``forward``, not a forward hook: a module with a hook is not reused, as it may do anything)."""
    rows = []
    extractor = objective.model.feature_extractor
    forward = extractor.forward

    def counted(x, *args, **kwargs):
        rows.append(x.shape[0])
        return forward(x, *args, **kwargs)

    extractor.forward = counted
    return lambda: (sum(r == n for r in rows), sum(r != n for r in rows))


def test_semi_stochastic_step_runs_the_full_data_lstm_once():
    """Both players need the features of all windows; the "network" player ran the LSTM over them again with the
    weights the "gp" player had just used (6 full-data passes in 3 steps, now 3; the mini-batch passes stay)."""
    objective = small_objective()
    passes = _count_full_passes(objective, 30)
    hybridpgm.fit(objective, objective.dataset(), batch_size=8, max_steps=3, seed=0, progress=False)
    assert passes() == (3, 3)


class _RecomputingLSTMFeatures(LSTMFeatures):
    """An extractor type the reuse does not know (matched exactly): its features are computed by each player."""


def test_reused_features_train_bit_for_bit_as_recomputed_ones():
    """The run with the features reused (3 full-data passes in 3 steps; 6 before the reuse) equals, bit for bit,
    the same run whose extractor is of a type not known to be deterministic (both players compute them, 6 passes).
    The equality alone is a guard: it held before the reuse too."""
    runs = []
    for recompute in (False, True):
        torch.manual_seed(0)  # the same initial weights for both runs (the LSTM draws them from the global stream)
        objective = small_objective()
        if recompute:
            objective.model.feature_extractor.__class__ = _RecomputingLSTMFeatures
        passes = _count_full_passes(objective, 30)
        result = hybridpgm.fit(objective, objective.dataset(), batch_size=8, max_steps=3, seed=0, progress=False)
        runs.append((result.history.loss, [p.detach().clone() for p in objective.model.parameters()]))
        assert passes()[0] == (6 if recompute else 3)
    assert runs[0][0] == runs[1][0]
    assert all(torch.equal(a, b) for a, b in zip(runs[0][1], runs[1][1]))


def test_a_dropout_extractor_in_train_mode_is_run_by_both_players():
    """A second pass of a dropout network draws another mask (and moves the global stream), so its features are
    not reused (a guard: as before); in eval mode they are (before: computed twice there too)."""
    torch.manual_seed(0)
    x = torch.randn(30, 3)
    net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Tanh(), torch.nn.Dropout(0.2), torch.nn.Linear(8, 2))
    objective = SemiStochasticObjective(DeepKernelGP(x, x[:, 0], net))
    passes = _count_full_passes(objective, 30)
    batch = tuple(t[:5] for t in objective.dataset())
    objective.loss("gp", batch)
    objective.loss("network", batch)
    assert passes()[0] == 2
    net.eval()
    objective.loss("gp", batch)
    objective.loss("network", batch)
    assert passes()[0] == 3


def test_features_are_computed_anew_after_the_network_or_the_data_changed():
    """Between the players, an in-place edit of a weight, a mode change or new training data make the "network"
    player compute the features again (its gradient is then the one at the current weights)."""
    objective = small_objective()
    model = objective.model
    passes = _count_full_passes(objective, 30)
    batch = tuple(t[:5] for t in objective.dataset())
    objective.loss("gp", batch)
    with torch.no_grad():
        model.feature_extractor.head.bias.add_(0.5)
    loss = objective.loss("network", batch)
    assert passes()[0] == 2
    objective.train_step_end(0)
    torch.testing.assert_close(loss, -model.marginal_log_likelihood())  # a full-data pass of its own (3)
    objective.loss("gp", batch)
    model.feature_extractor.lstm.eval()
    objective.loss("network", batch)
    assert passes()[0] == 5
    objective.train_step_end(1)
    objective.loss("gp", batch)
    x, y = model.training_data()
    model.set_train_data(x.clone(), y)
    objective.loss("network", batch)
    assert passes()[0] == 7


def _moved(objective, scale=0.3):
    """Move every weight of the objective's extractor in place (as an optimizer's step does)."""
    with torch.no_grad():
        for p in objective.model.feature_extractor.parameters():
            p.add_(scale * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel()), dtype=p.dtype))


def test_network_loss_outside_fit_follows_weights_moved_after_the_first_call():
    """The network player's full loss and G are kept between its calls only while the weights are those they were
    computed at: after an in-place step of the extractor, the loss and its gradient are those of a fresh objective
    (they were the old weights' loss and G: 1.3195 for 1.3049, gradients off by up to 0.09)."""
    torch.manual_seed(0)
    x, y = windows(40)
    objective = SemiStochasticObjective(GPLSTM(x, y, hidden_size=3, num_features=2))
    batch = objective.dataset()
    objective.loss("gp", batch)
    before = objective.loss("network", batch)
    _moved(objective)
    after = objective.loss("network", batch)
    fresh = SemiStochasticObjective(objective.model)
    expected = fresh.loss("network", batch)
    assert float(after) != float(before)
    assert float(after) == float(expected)
    network = objective.players()["network"]
    for a, b in zip(torch.autograd.grad(after, network), torch.autograd.grad(expected, network)):
        assert torch.equal(a, b)


def _network_losses_in_one_step(network_optimizer):
    """One ``fit`` step of a small float64 GP-LSTM with Adam for the gp player and ``network_optimizer`` for the
    network player: the model, the objective, its data, the network's parameters, and each network-player loss
    with the weights it was computed at."""
    torch.manual_seed(0)
    x, y = windows(40)
    model = GPLSTM(x, y, hidden_size=3, num_features=2).double()
    objective = SemiStochasticObjective(model)
    data = objective.dataset()
    network = objective.players()["network"]
    seen, original = [], objective.loss

    def spy(player, batch):
        out = original(player, batch)
        if player == "network":
            seen.append((out.detach().clone(), [p.detach().clone() for p in network]))
        return out

    objective.loss = spy
    hybridpgm.fit(objective, data, batch_size=x.shape[0], max_steps=1, progress=False, seed=0,
                  optim={"gp": functools.partial(torch.optim.Adam, lr=0.01), "network": network_optimizer})
    return model, data, network, seen


def test_network_player_under_lbfgs_sees_the_loss_at_the_weights_it_tries():
    """L-BFGS for the "network" player re-runs the loss at the weights of its line search, each evaluation an
    update of its own: each one reports the full-data loss at those weights (the first one's, kept, was reported
    again, and L-BFGS stopped at its second evaluation with an unchanged loss)."""
    model, data, network, seen = _network_losses_in_one_step(
        functools.partial(torch.optim.LBFGS, lr=1.0, max_iter=4))
    assert len(seen) > 2
    assert len({float(loss) for loss, _ in seen}) == len(seen)
    for loss, weights in seen:  # the hyperparameters are those after the gp player's step throughout
        with torch.no_grad():
            for p, w in zip(network, weights):
                p.copy_(w)
        torch.testing.assert_close(loss, SemiStochasticObjective(model).loss("network", data).detach())


def test_micro_batches_of_one_network_update_share_one_full_data_gradient():
    """Under accumulate=2 the network player's two micro-batches share one full-data loss and G a step (the gp
    player's two micro-batches take one each): 9 full-data GP losses in 3 steps, not 12.  A guard: as before."""
    objective = small_objective()
    calls, original = [], objective._full_loss
    objective._full_loss = lambda h: calls.append(1) or original(h)
    hybridpgm.fit(objective, objective.dataset(), batch_size=8, accumulate=2, max_steps=3, seed=0, progress=False)
    assert len(calls) == 9


def test_network_loss_reuses_its_full_data_gradient_while_nothing_changed():
    """Outside fit, calls at unchanged weights share one computation of G (the kept features' pass included); an
    edit of a GP hyperparameter, a mode change or new training data make the next call compute it again."""
    objective = small_objective()
    model = objective.model
    batch = tuple(t[:5] for t in objective.dataset())
    calls = []
    original = objective._full_loss
    objective._full_loss = lambda h: calls.append(1) or original(h)
    first = objective.loss("network", batch)
    assert float(objective.loss("network", batch)) == float(first) and len(calls) == 1
    with torch.no_grad():
        model.likelihood.raw_noise.add_(0.5)
    assert float(objective.loss("network", batch)) != float(first) and len(calls) == 2
    model.feature_extractor.lstm.eval()
    objective.loss("network", batch)
    assert len(calls) == 3
    x, y = model.training_data()
    model.set_train_data(x.clone(), y)
    objective.loss("network", batch)
    objective.loss("network", batch)
    assert len(calls) == 4


class _DataWritingClosureOptimizer(torch.optim.Optimizer):
    """A closure optimizer that steps through ``tensor.data``, as a fused one does: no version counter moves."""

    def __init__(self, params, lr):
        super().__init__(params, {"lr": lr})

    def step(self, closure):
        closure()
        for group in self.param_groups:
            for p in group["params"]:
                p.data.add_(p.grad, alpha=-group["lr"])
        return closure()


def test_a_closure_evaluation_after_a_step_that_moves_no_version_counter_is_at_the_new_weights():
    """The second evaluation of the closure runs at weights moved through ``tensor.data``: its loss is the full-data
    loss there -- neither the first evaluation's G (kept by update, not by version) nor the gp player's features
    (read once by the network player) are used again."""
    model, data, network, seen = _network_losses_in_one_step(functools.partial(_DataWritingClosureOptimizer, lr=0.5))
    assert len(seen) == 2
    loss, weights = seen[1]
    with torch.no_grad():
        for p, w in zip(network, weights):
            p.copy_(w)
    torch.testing.assert_close(loss, SemiStochasticObjective(model).loss("network", data).detach())
    assert float(loss) != float(seen[0][0])


def test_an_extractor_with_a_forward_hook_is_run_by_both_players():
    """Found by a review: an extractor under ``nn.utils.spectral_norm`` (a forward pre-hook that advances its power
    iteration at every call in train mode) or with any hook counted as deterministic, so the second full-data pass,
    and the hook's work in it, was skipped and training changed; a module with a hook is now run by both."""
    objective = small_objective()
    passes = _count_full_passes(objective, 30)
    objective.model.feature_extractor.register_forward_pre_hook(lambda module, args: None)
    hybridpgm.fit(objective, objective.dataset(), batch_size=8, max_steps=3, seed=0, progress=False)
    assert passes() == (6, 3)
