import re

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


# -- activation checkpointing: what is kept for the backward pass ----------------------------------

def _saved_bytes(fn, monkeypatch):
    """Run ``fn`` and return ``(result, bytes)``: the bytes of every distinct
    storage kept for the backward pass, i.e. the tensors autograd saves
    (``saved_tensors_hooks``) plus the inputs a checkpointed segment holds."""
    import hybridpgm.nn as hnn

    storages: dict[int, int] = {}

    def record(t):
        if isinstance(t, torch.Tensor):
            storage = t.untyped_storage()
            storages[storage.data_ptr()] = storage.nbytes()

    def pack(t):
        record(t)
        return t

    real_checkpoint = hnn.checkpoint

    def recording_checkpoint(fn_, *args, **kwargs):
        for a in args:
            record(a)
        return real_checkpoint(fn_, *args, **kwargs)

    monkeypatch.setattr(hnn, "checkpoint", recording_checkpoint)
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    monkeypatch.setattr(hnn, "checkpoint", real_checkpoint)
    return out, sum(storages.values())


def _cli_default_vae_sizes():
    import argparse

    from hybridpgm.recipes.vae import add_arguments

    parser = argparse.ArgumentParser()
    add_arguments(parser, "vae")
    return parser.parse_args([])


def test_checkpointing_lowers_saved_bytes_of_the_cli_default_vae(monkeypatch):
    import pyro

    from hybridpgm.data import load_dataset
    from hybridpgm.generative import VAE

    args = _cli_default_vae_sizes()
    x_dim = load_dataset(args.dataset).num_features
    generator = torch.Generator().manual_seed(0)
    x = torch.bernoulli(torch.rand(args.batch_size, x_dim, generator=generator), generator=generator)
    saved, grads = {}, {}
    for enabled in (False, True):
        torch.manual_seed(0)
        vae = VAE(x_dim, args.latent_dim, args.hidden, checkpoint_activations=enabled)

        def loss():
            pyro.set_rng_seed(1)
            return pyro.infer.Trace_ELBO().differentiable_loss(vae.model, vae.guide, x)

        value, saved[enabled] = _saved_bytes(loss, monkeypatch)
        value.backward()
        grads[enabled] = [p.grad.clone() for p in vae.parameters()]
    for a, b in zip(grads[False], grads[True]):
        torch.testing.assert_close(a, b)
    # the hidden activations (batch x 400 floats, several tensors per network) are gone
    hidden = args.batch_size * args.hidden[0] * 4
    print(f"saved for backward: {saved[False]} bytes without, {saved[True]} with checkpointing")
    assert saved[True] <= saved[False] - 2 * hidden, saved


def test_checkpointing_checkpoints_the_last_segment_and_keeps_batch_norm_statistics(monkeypatch):
    from hybridpgm.nn import checkpointed_call

    torch.manual_seed(0)
    net, x = mlp([8, 64, 3], batch_norm=True), torch.randn(32, 8)  # one segment: the last
    reference = mlp([8, 64, 3], batch_norm=True)
    reference.load_state_dict(net.state_dict())
    out, saved_on = _saved_bytes(lambda: checkpointed_call(net, x), monkeypatch)
    ref_out, saved_off = _saved_bytes(lambda: checkpointed_call(reference, x, enabled=False), monkeypatch)
    torch.testing.assert_close(out, ref_out)
    assert saved_on == x.untyped_storage().nbytes() < saved_off
    out.square().sum().backward()  # recomputes the forward pass
    ref_out.square().sum().backward()
    for (name, a), b in zip(net.state_dict().items(), reference.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)  # running statistics updated once, not twice
    for a, b in zip(net.parameters(), reference.parameters()):
        torch.testing.assert_close(a.grad, b.grad)


def test_checkpointing_that_saves_nothing_is_refused():
    from hybridpgm.errors import ConfigError
    from hybridpgm.generative import VAE
    from hybridpgm.nn import checkpointing_saves_memory

    assert not checkpointing_saves_memory(mlp([5, 3]))
    assert not checkpointing_saves_memory(torch.nn.Linear(5, 3))
    assert checkpointing_saves_memory(mlp([5, 4, 3]))
    # one linear map of another kind keeps only its input too; a one-module Sequential is that module
    assert not checkpointing_saves_memory(torch.nn.Conv1d(2, 3, 3))
    assert not checkpointing_saves_memory(torch.nn.Embedding(4, 3))
    assert not checkpointing_saves_memory(torch.nn.Sequential(torch.nn.Linear(5, 3)))
    assert not checkpointing_saves_memory(torch.nn.Sequential())
    assert checkpointing_saves_memory(torch.nn.Sequential(mlp([5, 4, 3])))
    with pytest.raises(ConfigError, match="checkpoint_activations.*hidden"):
        VAE(10, 2, hidden=[], checkpoint_activations=True)
    VAE(10, 2, hidden=[], checkpoint_activations=False)


@pytest.mark.parametrize("depth,segments", [(1, 0), (2, 1), (4, 2), (9, 3), (10, 3)])
def test_checkpointing_cuts_sqrt_n_segments_and_checkpoints_every_one(depth, segments, monkeypatch):
    import hybridpgm.nn as hnn

    torch.manual_seed(0)
    net, x = mlp([5] + [7] * (depth - 1) + [3], activation="tanh"), torch.randn(4, 5)
    calls = []
    real = hnn.checkpoint
    monkeypatch.setattr(hnn, "checkpoint", lambda fn, *a, **k: calls.append(fn) or real(fn, *a, **k))
    out = hnn.checkpointed_call(net, x)
    assert len(calls) == segments
    # every layer is in a checkpointed segment, the last included (a lone linear layer is called directly)
    assert sum(sum(isinstance(m, torch.nn.Linear) for m in seg) for seg in calls) == (depth if segments else 0)
    out.sum().backward()
    grads = [p.grad.clone() for p in net.parameters()]
    net.zero_grad()
    net(x).sum().backward()
    for a, b in zip(grads, net.parameters()):
        torch.testing.assert_close(a, b.grad)


@pytest.mark.parametrize("sizes,entry", [([4, 8.0, 2], "mlp sizes[1]"), ([4.0, 2], "mlp sizes[0]"),
                                         ([4, True, 2], "mlp sizes[1]"), ([4, None, 2], "mlp sizes[1]"),
                                         ([4, float("nan"), 2], "mlp sizes[1]"),
                                         ([4, float("inf"), 2], "mlp sizes[1]")])
def test_mlp_refuses_non_integer_widths_naming_the_entry(sizes, entry):
    given = sizes[int(entry[-2])]
    with pytest.raises(ModelSpecError, match=re.escape(f"{entry} must be a positive integer, got {given!r}")):
        mlp(sizes)


@pytest.mark.parametrize("sizes", [5, None])
def test_mlp_refuses_sizes_that_are_not_a_sequence(sizes):
    with pytest.raises(ModelSpecError, match=f"mlp sizes must be a sequence of positive integers, got {sizes!r}"):
        mlp(sizes)


def test_mlp_accepts_integer_scalars():
    net = mlp([4, torch.tensor(8), __import__("numpy").int64(2)])
    assert net[0].out_features == 8 and net[-1].out_features == 2


@pytest.mark.parametrize("kwargs,word", [(dict(activation=None), "activation None"),
                                         (dict(activation=["relu"]), r"activation \['relu'\]"),
                                         (dict(out_activation=["relu"]), r"out_activation \['relu'\]")])
def test_mlp_refuses_non_string_activations_listing_the_choices(kwargs, word):
    with pytest.raises(ModelSpecError, match=rf"unknown {word}; choose from \['elu', 'gelu'"):
        mlp([4, 8, 2], **kwargs)


@pytest.mark.parametrize("training", [True, False])
def test_on_rows_runs_a_batch_norm_mlp_on_all_batch_dimensions_as_one_batch(training):
    """``on_rows(net, x)`` for ``x`` of shape ``S x B x d`` is ``net`` on the ``S*B x d`` rows, reshaped back;
    in training mode the batch statistics are those of all ``S*B`` rows (``BatchNorm1d`` alone reads a 3-d
    input as ``N x C x L``)."""
    import copy

    from hybridpgm.nn import on_rows

    torch.manual_seed(0)
    net = mlp([3, 6, 2], batch_norm=True)
    with torch.no_grad():
        net[1].running_mean.normal_(), net[1].running_var.uniform_(0.5, 2.0)
    ref = copy.deepcopy(net)
    net.train(training), ref.train(training)
    x = torch.randn(4, 5, 3)
    out = on_rows(net, x)
    torch.testing.assert_close(out, ref(x.reshape(20, 3)).reshape(4, 5, 2))
    torch.testing.assert_close(net[1].running_mean, ref[1].running_mean)
    torch.testing.assert_close(net[1].running_var, ref[1].running_var)
    assert on_rows(net, torch.randn(2, 3, 4, 3)).shape == (2, 3, 4, 2)
    x2 = torch.randn(7, 3)
    torch.testing.assert_close(on_rows(net.eval(), x2), net(x2))
    torch.testing.assert_close(on_rows(net, x2[0]), net(x2[:1])[0])  # a 1-d input is one row
    assert on_rows(net, torch.randn(3, 0, 3)).shape == (3, 0, 2)


def test_batch_norm_must_be_true_or_false():
    """Found by an audit: mlp(batch_norm="no") built a BatchNorm1d ("no" is truthy)."""
    with pytest.raises(ModelSpecError, match="mlp batch_norm must be True or False, got 'no'"):
        mlp([3, 4, 2], batch_norm="no")
    assert any(isinstance(m, torch.nn.BatchNorm1d) for m in mlp([3, 4, 2], batch_norm=True))


@pytest.mark.parametrize("norm", ["parametrize", "hook"])
def test_a_checkpointed_recomputation_starts_from_the_buffers_the_forward_pass_read(norm):
    """Spectral norm in training mode reads its vector ``u`` and advances it in place.  The recomputation of a
    checkpointed segment used to start from the advanced ``u`` (a second power iteration): the output was the
    plain call's but the gradient that of another normalised weight (about 10% off with the hook-based
    ``spectral_norm``).  Now gradients and buffers equal the plain call's bit for bit."""
    import copy

    from torch import nn

    from hybridpgm.nn import checkpointed_call
    wrap = nn.utils.parametrizations.spectral_norm if norm == "parametrize" else nn.utils.spectral_norm
    torch.manual_seed(0)
    net = nn.Sequential(wrap(nn.Linear(4, 6)), nn.Tanh(), wrap(nn.Linear(6, 6)), nn.Tanh(), nn.Linear(6, 2)).train()
    plain = copy.deepcopy(net)
    x = torch.randn(5, 4)
    (plain(x) ** 2).sum().backward()
    (checkpointed_call(net, x) ** 2).sum().backward()
    for (name, a), b in zip(plain.named_parameters(), net.parameters()):
        assert torch.equal(b.grad, a.grad), name
    for (name, a), b in zip(plain.named_buffers(), net.buffers()):  # advanced once, as by the plain call
        assert torch.equal(b, a), name
