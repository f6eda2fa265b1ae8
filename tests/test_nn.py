import pytest
import torch

from hybridpgm.errors import ModelSpecError
from hybridpgm.nn import mlp


@pytest.mark.parametrize("init", ["xavier", "he", "default"])
def test_mlp_shapes_and_init(init):
    torch.manual_seed(0)
    net = mlp([20, 300, 7], init=init, batch_norm=True, out_activation="sigmoid")
    out = net(torch.randn(5, 20))
    assert out.shape == (5, 7) and bool(((out > 0) & (out < 1)).all())
    assert isinstance(net[1], torch.nn.BatchNorm1d)
    std = net[0].weight.std().item()
    expected = {"xavier": (2 / 320) ** 0.5, "he": (2 / 20) ** 0.5, "default": (1 / 60) ** 0.5}[init]
    assert std == pytest.approx(expected, rel=0.1)


@pytest.mark.parametrize("kwargs", [dict(sizes=[3]), dict(sizes=[3, 0]), dict(sizes=[3, 2], activation="swishy"),
                                    dict(sizes=[3, 2], init="orthogonal")])
def test_mlp_bad_declarations(kwargs):
    with pytest.raises(ModelSpecError):
        mlp(**kwargs)


def test_checkpointed_call_gives_the_same_gradients():
    torch.manual_seed(0)
    from hybridpgm.nn import checkpointed_call

    net, x = mlp([6, 32, 32, 2]), torch.randn(4, 6)
    grads = []
    for enabled in (False, True):
        net.zero_grad()
        checkpointed_call(net, x, enabled=enabled).pow(2).sum().backward()
        grads.append([p.grad.clone() for p in net.parameters()])
    for a, b in zip(*grads):
        torch.testing.assert_close(a, b)
