"""The key of a kept GP state (hybridpgm.gp.prediction_cache.StateKey) after ``.data =`` replacements.

Found by an audit: the key holds each tensor's version counter and data pointer.  ``.data =`` moves no version
counter and frees the old storage, so a second replacement allocated at the old address (CUDA's caching allocator
does that at once; tests/reused_blocks.Blocks does it every time) matched a kept key: features kept by
:class:`~hybridpgm.gp.kept_features.KeptFeatures`, which compares keys without values, were taken for those of the
new weights.  A key holds the storages it read now."""

import copy

import torch
from torch import nn

from hybridpgm.gp import DeepKernelGP
from hybridpgm.gp.kept_features import KeptFeatures
from hybridpgm.gp.prediction_cache import state_key
from hybridpgm.nn import mlp
from tests.reused_blocks import Blocks


def test_kept_features_are_not_valid_for_weights_put_at_the_address_of_theirs():
    net, blocks = nn.Linear(3, 2), Blocks(64)
    x = torch.randn(5, 3)
    net.weight.data = blocks.tensor(torch.ones(2, 3))
    with torch.no_grad():
        kept = KeptFeatures.of(net, x, net(x))
    net.weight.data = blocks.tensor(torch.full((2, 3), 2.0))  # frees the kept weights' storage
    net.weight.data = blocks.tensor(torch.full((2, 3), 3.0))  # (was put at its address)
    assert not kept.key.same_tensors(state_key(net))
    assert not kept.valid_for(net, x)  # before: valid, with the features of the all-ones weights


def test_a_prediction_after_the_same_replacements_conditions_anew():
    """Guard (passed before too): the kept prediction strategy's key also compares the values."""
    g = torch.Generator().manual_seed(0)
    x = torch.rand(40, 3, generator=g, dtype=torch.float64) * 2 - 1
    y = torch.sin(3 * x[:, 0]) + 0.1 * torch.randn(40, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    model = DeepKernelGP(x, y, mlp([3, 8, 2], activation="tanh").double()).eval()
    x_test = torch.rand(5, 3, generator=g, dtype=torch.float64)
    weight, blocks = next(model.parameters()), Blocks(1024)
    weight.data = blocks.tensor(weight.detach().clone())
    model.predict(x_test)
    weight.data = blocks.tensor(weight.detach() * 2)
    weight.data = blocks.tensor(weight.detach() * 3)
    got, want = model.predict(x_test), copy.deepcopy(model).predict(x_test)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
