"""Which feature extractors give the same features twice (hybridpgm.gp.kept_features), and when kept features
are still valid."""

import torch
from torch import nn

from hybridpgm.gp import LSTMFeatures
from hybridpgm.gp.kept_features import KeptFeatures, KeptGradient, deterministic
from hybridpgm.train.update_scope import one_update


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
