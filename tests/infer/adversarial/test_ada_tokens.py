"""ADA on integer inputs: token ids go to an ``nn.Embedding`` feature extractor as they are.

Before, the dry run fed the feature extractor float zeros and the data were cast to the networks' floating dtype, so
an extractor starting with an embedding (text domain adaptation) could not be built with ``input_shape`` nor
trained without it."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hybridpgm
from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.infer.adversarial import ADA, adversarial_optim
from hybridpgm.nn import mlp

VOCAB, LENGTH, FEATURES, CLASSES = 11, 6, 4, 3


class MeanPooledEmbedding(nn.Module):
    """Token ids ``batch x LENGTH`` -> the mean of their embeddings ``batch x FEATURES``; records the dtypes of
    the inputs it is given."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(VOCAB, FEATURES)
        self.seen: list[torch.dtype] = []

    def forward(self, tokens):
        self.seen.append(tokens.dtype)
        return self.embed(tokens).mean(-2)


def make(input_shape=None):
    torch.manual_seed(0)
    return ADA(MeanPooledEmbedding(), nn.Linear(FEATURES, 1), nn.Linear(FEATURES, CLASSES), input_shape=input_shape)


def tokens(dtype=torch.int64, n=16):
    g = torch.Generator().manual_seed(1)
    return (torch.randint(VOCAB, (n, LENGTH), generator=g).to(dtype), torch.randint(CLASSES, (n,), generator=g),
            torch.randint(VOCAB, (n, LENGTH), generator=g).to(dtype))


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32])
@pytest.mark.parametrize("input_shape", [None, (LENGTH,)])
def test_an_embedding_extractor_trains_on_token_ids_through_fit(input_shape, dtype):
    ada = make(input_shape)
    ada.feature_extractor.seen.clear()  # construction's dry run with input_shape: float zeros refused, then int64
    before = ada.feature_extractor.embed.weight.detach().clone()
    result = hybridpgm.fit(ada, tokens(dtype), batch_size=8, max_steps=3, optim=adversarial_optim(lr=1e-2),
                           progress=False, seed=0, device="cpu")
    for player, losses in result.history.loss.items():
        assert len(losses) == 3 and all(torch.isfinite(torch.tensor(losses))), player
    assert not torch.equal(ada.feature_extractor.embed.weight, before)
    assert set(ada.feature_extractor.seen) == {dtype}  # any dry run's zeros and the data: ids, never floats


def test_token_losses_match_the_formulas():
    ada = make((LENGTH,))
    xs, ys, xt = tokens(n=6)
    hs, ht = ada.feature_extractor(xs), ada.feature_extractor(xt)
    ds, dt = ada.discriminator(hs).squeeze(-1), ada.discriminator(ht).squeeze(-1)
    disc = 0.5 * (F.binary_cross_entropy_with_logits(ds, torch.ones(6))
                  + F.binary_cross_entropy_with_logits(dt, torch.zeros(6)))
    torch.testing.assert_close(ada.loss("discriminator", (xs, ys, xt)), disc, rtol=0, atol=1e-7)
    flipped = 0.5 * (F.binary_cross_entropy_with_logits(ds, torch.zeros(6))
                     + F.binary_cross_entropy_with_logits(dt, torch.ones(6)))
    gen = F.cross_entropy(ada.classifier(hs), ys) + flipped
    torch.testing.assert_close(ada.loss("generator", (xs, ys, xt)), gen, rtol=0, atol=1e-7)


def test_predict_takes_token_ids():
    ada = make()
    xs = tokens()[0]
    expected = ada.classifier(ada.feature_extractor(xs)).argmax(-1)
    assert torch.equal(ada.predict(xs), expected)


@pytest.mark.parametrize("input_shape", [None, (LENGTH,)])
def test_ids_of_a_dtype_the_embedding_refuses_are_named(input_shape):
    """``nn.Embedding`` takes int64 and int32 ids only: uint8 ids are refused as they are and converted to
    float32, and the message names the data's dtype and both failures."""
    ada = make(input_shape)
    xs, ys, xt = tokens(torch.uint8)
    with pytest.raises(DataError, match=r"ADA x_source has shape \(16, 6\): the feature extractor cannot take inputs "
                                        r"of event shape \(6,\) and dtype torch.uint8 \(torch.uint8 inputs: .*; "
                                        r"torch.float32 inputs: .*int64 ids for an nn.Embedding"):
        ada.loss("discriminator", (xs, ys, xt))
    with pytest.raises(DataError, match=r"ADA x_source has .*dtype torch.float32 \(torch.float32 inputs"):
        ada.loss("generator", (xs.float(), ys, xt.float()))


def test_an_extractor_taking_neither_floats_nor_ids_is_refused_at_construction():
    with pytest.raises(ModelSpecError, match=r"cannot take inputs of shape \(5,\) \(torch.float32 inputs: .*; "
                                             r"torch.int64 inputs: "):
        ADA(nn.Sequential(nn.Embedding(VOCAB, FEATURES), nn.Flatten(), nn.Linear(4 * FEATURES, FEATURES)),
            nn.Linear(FEATURES, 1), nn.Linear(FEATURES, CLASSES), input_shape=(5,))


def test_integer_inputs_an_extractor_passes_on_are_converted_as_before():
    """Guard (passes on the old code too): integers go as they are only to an extractor that makes floating
    features of them; a pass-through extractor (``nn.Identity``) or one that fails on them (an MLP) gets them
    converted exactly to the networks' floating dtype, as floating inputs are."""
    g = torch.Generator().manual_seed(0)
    xs, ys, xt = torch.randint(-3, 4, (6, 5), generator=g), torch.randint(3, (6,), generator=g), \
        torch.randint(-3, 4, (6, 5), generator=g)
    for extractor, f in ((nn.Identity(), 5), (mlp([5, 8, 4]), 4)):
        torch.manual_seed(0)
        ada = ADA(extractor, nn.Linear(f, 1), nn.Linear(f, 3))
        for player in ("discriminator", "generator"):
            torch.testing.assert_close(ada.loss(player, (xs, ys, xt)),
                                       ada.loss(player, (xs.float(), ys, xt.float())), rtol=0, atol=0)


def test_floating_inputs_reach_the_extractor_unconverted():
    """Guard (passes on the old code too): inputs of the networks' dtype are the tensors given, not copies."""
    torch.manual_seed(0)
    got = []
    extractor = mlp([5, 8, 4])
    extractor.register_forward_pre_hook(lambda module, args: got.append(args[0]))
    ada = ADA(extractor, nn.Linear(4, 1), nn.Linear(4, 3), input_shape=5)
    xs, xt = torch.randn(6, 5), torch.randn(6, 5)
    got.clear()
    ada.loss("discriminator", (xs, torch.zeros(6, dtype=torch.long), xt))
    assert got[0] is xs and got[1] is xt
