"""Which feature extractors give the same features twice (hybridpgm.gp.kept_features), and when kept features
are still valid."""

import torch
from torch import nn

from hybridpgm.gp import LSTMFeatures
from hybridpgm.gp.kept_features import KeptFeatures, deterministic


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
