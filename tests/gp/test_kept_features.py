"""Which feature extractors give the same features twice (hybridpgm.gp.kept_features), and when kept features
are still valid."""

import torch
from torch import nn

from hybridpgm.gp import GPLSTM, LSTMFeatures, SemiStochasticObjective
from hybridpgm.gp.kept_features import KeptFeatures, KeptGradient, deterministic
from hybridpgm.train.update_scope import one_update
from tests.reused_blocks import Blocks


def test_deterministic_extractors():
    assert deterministic(nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.LayerNorm(4), nn.Linear(4, 2)))
    assert deterministic(nn.LSTM(2, 3, num_layers=2))  # no dropout between the layers
    assert not deterministic(LSTMFeatures(1, 3))  # a type not named...
    assert deterministic(LSTMFeatures(1, 3), (LSTMFeatures,))  # ...and named


def test_dropout_batch_norm_and_recurrent_dropout_only_in_eval_mode():
    for net in (nn.Sequential(nn.Linear(3, 4), nn.Dropout(0.1)), nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4)),
                nn.LSTM(2, 3, num_layers=2, dropout=0.1)):
        assert not deterministic(net)
        assert deterministic(net.eval())


def test_unknown_types_and_subclasses_are_taken_to_be_random():
    class Noisy(nn.Linear):
        def forward(self, x):
            return super().forward(x) + torch.randn(())

    assert not deterministic(nn.Sequential(Noisy(3, 2)))
    assert not deterministic(nn.Sequential(nn.Linear(3, 2), nn.RReLU()))


def test_kept_features_are_valid_until_the_weights_modes_or_inputs_change():
    net = nn.Linear(3, 2)
    x = torch.randn(5, 3)
    with torch.no_grad():
        kept = KeptFeatures.of(net, x, net(x))
    assert kept.valid_for(net, x)
    assert not kept.valid_for(net, x.clone())
    with torch.no_grad():
        net.bias.add_(1.0)
    assert not kept.valid_for(net, x)
    kept = KeptFeatures.of(net, x, net(x).detach())
    net.eval()
    assert not kept.valid_for(net, x)
    net.train()
    x.mul_(2.0)
    assert not kept.valid_for(net, x)
    kept = KeptFeatures.of(net, x, net(x).detach())
    kept.features.add_(1.0)  # the features edited in place
    assert not kept.valid_for(net, x)


def _kept_gradient(net, data):
    return KeptGradient.of(net, data, torch.zeros(()), torch.zeros(5, 2))


def test_a_kept_gradient_inside_fit_is_valid_within_its_update_only():
    """Inside fit the micro-batches of one update share it; another update (the next one, an L-BFGS closure's
    further evaluation) does not, even where no version counter moved (a fused optimizer's step moves none)."""
    net, data = nn.Linear(3, 2), (torch.randn(5, 3), torch.randn(5))
    with one_update():
        kept = _kept_gradient(net, data)
        assert kept.valid_for(net, data)
    with one_update():
        assert not kept.valid_for(net, data)
    assert not kept.valid_for(net, data)  # outside fit


def test_a_kept_gradient_outside_fit_is_valid_until_the_weights_modes_or_data_change():
    net, data = nn.Linear(3, 2), (torch.randn(5, 3), torch.randn(5))
    kept = _kept_gradient(net, data)
    assert kept.valid_for(net, data)
    assert not kept.valid_for(net, (data[0], data[1].clone()))
    with one_update():
        assert not kept.valid_for(net, data)  # computed outside fit: not an update's
    with torch.no_grad():
        net.weight.add_(1.0)
    assert not kept.valid_for(net, data)
    kept = _kept_gradient(net, data)
    net.eval()
    assert not kept.valid_for(net, data)
    kept = _kept_gradient(net, data)
    data[0].mul_(2.0)
    assert not kept.valid_for(net, data)


def test_kept_features_are_not_valid_after_a_data_replacement():
    """The audit: the inputs were keyed on their version counter only, which ``x.data = other`` does not move (nor
    ``x.data = x.t()``: the same storage and address, other values); the features came back for the old inputs."""
    net = nn.Linear(3, 3)
    for replace in (lambda x: torch.randn(3, 3), lambda x: x.t(), lambda x: x[:1].expand(3, 3)):
        x = torch.randn(3, 3)
        with torch.no_grad():
            kept = KeptFeatures.of(net, x, net(x))
        x.data = replace(x.data)
        assert not kept.valid_for(net, x)
    kept = KeptFeatures.of(net, x, net(x).detach())
    kept.features.data = torch.zeros(3, 3)  # the features replaced
    assert not kept.valid_for(net, x)


def test_kept_features_hold_the_storage_of_the_inputs():
    """A replacement put at the address of the inputs' first data (as CUDA's caching allocator does) is not taken
    for them: the entry holds that storage, so no allocation lands there while it lives."""
    net, blocks = nn.Linear(3, 2), Blocks(64)
    x = torch.empty(0)
    x.data = blocks.tensor(torch.ones(5, 3))
    with torch.no_grad():
        kept = KeptFeatures.of(net, x, net(x))
    x.data = blocks.tensor(torch.full((5, 3), 2.0))  # frees the first block, unless the entry holds it
    x.data = blocks.tensor(torch.full((5, 3), 3.0))
    assert not kept.valid_for(net, x)


def test_the_network_player_after_train_x_data_is_replaced_sees_the_new_inputs():
    """``model.train_x.data = other`` between the players of a step: the ``"network"`` player's loss is that of the
    new inputs, as a fresh objective gives it (before: the ``"gp"`` player's features of the old inputs)."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(12, 4, 1, generator=g, dtype=torch.float64), torch.randn(12, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    model = GPLSTM(x, y, hidden_size=3, num_features=2).double()
    objective = SemiStochasticObjective(model)
    objective.loss("gp", objective.dataset())
    model.train_x.data = torch.randn(12, 4, 1, generator=g, dtype=torch.float64)
    got = objective.loss("network", objective.dataset())
    want = SemiStochasticObjective(model).loss("network", objective.dataset())
    torch.testing.assert_close(got, want, rtol=0, atol=0)
