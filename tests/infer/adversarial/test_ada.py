"""ADA: losses, pairing of domains, checks, and the gain over source-only training on rotated digits."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import hybridpgm
from hybridpgm.diagnostics.gan_metrics import target_accuracy
from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.generative.gan import MLPDiscriminator
from hybridpgm.infer.adversarial import ADA, adversarial_optim
from hybridpgm.nn import mlp
from tests.infer.adversarial.conftest import assert_finite_history


def make(weight=1.0, d=5, f=4, c=3):
    torch.manual_seed(0)
    return ADA(mlp([d, 8, f]), MLPDiscriminator(f, (8,)), nn.Linear(f, c), adversarial_weight=weight, input_shape=(d,))


def batch(n=6, d=5, c=3):
    g = torch.Generator().manual_seed(1)
    return torch.randn(n, d, generator=g), torch.randint(c, (n,), generator=g), torch.randn(n, d, generator=g) + 1


def test_losses_match_the_formulas():
    ada = make(weight=0.7)
    xs, ys, xt = batch()
    hs, ht = ada.feature_extractor(xs), ada.feature_extractor(xt)
    ds, dt = ada.discriminator(hs), ada.discriminator(ht)
    disc = 0.5 * (F.binary_cross_entropy_with_logits(ds, torch.ones(6))
                  + F.binary_cross_entropy_with_logits(dt, torch.zeros(6)))
    assert torch.allclose(ada.loss("discriminator", (xs, ys, xt)), disc, atol=1e-6)
    flipped = 0.5 * (F.binary_cross_entropy_with_logits(ds, torch.zeros(6))
                     + F.binary_cross_entropy_with_logits(dt, torch.ones(6)))
    gen = F.cross_entropy(ada.classifier(hs), ys) + 0.7 * flipped
    assert torch.allclose(ada.loss("generator", (xs, ys, xt)), gen, atol=1e-6)


def test_source_only_is_cross_entropy():
    ada = make(weight=0.0)
    xs, ys, xt = batch()
    expected = F.cross_entropy(ada.classifier(ada.feature_extractor(xs)), ys)
    assert torch.allclose(ada.loss("generator", (xs, ys, xt)), expected)


def test_paired_data():
    xs, ys, xt = torch.randn(10, 2), torch.arange(10), torch.arange(4.0)[:, None].repeat(1, 2)
    a, b, t = ADA.paired_data(xs, ys, xt, seed=0)
    assert a is xs and b is ys and t.shape == (10, 2)
    assert set(t[:, 0].tolist()) == {0.0, 1.0, 2.0, 3.0}


def test_players_and_schedule():
    ada = make()
    players = {k: {id(p) for p in v} for k, v in ada.players().items()}
    assert players["discriminator"] == {id(p) for p in ada.discriminator.parameters()}
    assert players["generator"] == {id(p) for m in (ada.feature_extractor, ada.classifier) for p in m.parameters()}


def test_bad_configuration_and_data():
    with pytest.raises(ModelSpecError, match=r"feature shape \(4,\).*\(3,\)"):
        ADA(mlp([5, 4]), MLPDiscriminator(3), nn.Linear(4, 2), input_shape=(5,))
    with pytest.raises(ModelSpecError, match="classifier cannot take features"):
        ADA(mlp([5, 4]), MLPDiscriminator(4), nn.Linear(3, 2), input_shape=(5,))
    with pytest.raises(ModelSpecError, match=r"inputs of shape \(7,\)"):
        ADA(mlp([5, 4]), MLPDiscriminator(4), nn.Linear(4, 2), input_shape=(7,))
    with pytest.raises(DataError, match="x_source, y_source, x_target"):
        make().loss("generator", torch.zeros(3, 5))
    xs, ys, _ = batch()
    with pytest.raises(DataError, match="event shape"):
        make().loss("generator", (xs, ys, torch.zeros(6, 4)))


def rotate(x):
    return torch.rot90(x.reshape(-1, 8, 8), 1, (1, 2)).reshape(-1, 64)


def train_digits(digits, weight, steps, seed=0):
    torch.manual_seed(seed)
    ada = ADA(mlp([64, 128, 64]), MLPDiscriminator(64, (64,)), nn.Linear(64, 10), adversarial_weight=weight,
              input_shape=(64,))
    data = ADA.paired_data(digits.train.x, digits.train.y, rotate(digits.train.x), seed=seed)
    result = hybridpgm.fit(ada, data, batch_size=128, max_steps=steps, epochs=10**6, seed=seed, progress=False,
                           device="cpu", optim=adversarial_optim())
    assert_finite_history(result)
    return target_accuracy(ada.predict, rotate(digits.test.x), digits.test.y)


def test_improves_target_accuracy_over_source_only(digits):
    """Source: digits; target: the same digits rotated by 90 degrees (labels unseen)."""
    source_only = train_digits(digits, 0.0, 200)
    adapted = train_digits(digits, 1.0, 200)
    assert adapted > source_only + 0.05, (adapted, source_only)


def test_paired_data_names_an_empty_domain_and_a_label_count():
    """Before, an empty target domain raised a bare ZeroDivisionError (an empty source, torch's RuntimeError)."""
    xs, ys = torch.randn(5, 3), torch.zeros(5, dtype=torch.long)
    with pytest.raises(DataError, match=r"ADA.paired_data x_target of shape \(0, 3\) is empty"):
        ADA.paired_data(xs, ys, torch.randn(0, 3))
    with pytest.raises(DataError, match=r"ADA.paired_data x_source of shape \(0, 3\) is empty"):
        ADA.paired_data(torch.randn(0, 3), torch.zeros(0, dtype=torch.long), torch.randn(4, 3))
    with pytest.raises(DataError, match=r"y_source must have shape \(5,\).*got \(4,\)"):
        ADA.paired_data(xs, ys[:4], torch.randn(4, 3))
    a, b, t = ADA.paired_data(xs, ys, torch.randn(1, 3))  # one target example is repeated
    assert t.shape == (5, 3) and bool((t == t[0]).all())


@pytest.mark.parametrize("label", [3, 7, -1, -100])
def test_labels_outside_the_classes_are_named(label):
    """Before, -100 was silently dropped by cross_entropy (all -100: a NaN loss) and other labels out of range
    raised torch's raw IndexError."""
    ada = make()
    xs, ys, xt = batch()
    ys[2] = label
    with pytest.raises(DataError, match=f"0..2 \\(the classifier's 3 outputs\\); row 2 of the batch holds {label} "
                                        f"\\(1 label"):
        ada.loss("generator", (xs, ys, xt))
    with pytest.raises(DataError, match=f"row 0 of the batch holds {label} \\(6 label"):
        ada.loss("generator", (xs, torch.full((6,), label), xt))


def test_label_check_waits_for_the_steps_host_read():
    """Inside fit the label check is deferred (no host read of its own) and raises before the generator's update."""
    from hybridpgm.train.deferred_checks import deferring_checks

    ada = make()
    xs, ys, xt = batch()
    ys[4] = -100
    with deferring_checks() as pending:
        loss = ada.loss("generator", (xs, ys, xt))  # no raise yet
    assert torch.isfinite(loss) and not bool(pending.all_passed(torch.device("cpu")))
    with pytest.raises(DataError, match="row 4 of the batch holds -100"):
        pending.raise_first_failure()
    before = [p.detach().clone() for p in ada.players()["generator"]]
    with pytest.raises(DataError, match="holds -100"):
        hybridpgm.fit(ada, (xs, ys, xt), batch_size=6, max_steps=1, progress=False, seed=0, device="cpu")
    assert all(torch.equal(a, p) for a, p in zip(before, ada.players()["generator"]))


def test_inputs_are_checked_like_the_other_objectives_data():
    """Before, ADA passed its inputs to the networks unchecked: float64 inputs met float32 networks in a raw matmul
    error and NaN inputs gave a NaN loss."""
    ada = make()
    xs, ys, xt = batch()
    for player in ("discriminator", "generator"):
        with pytest.raises(DataError, match="ADA x_source has dtype torch.float64.*torch.float32"):
            ada.loss(player, (xs.double(), ys, xt.double()))
        bad = xt.clone()
        bad[3, 1] = float("nan")
        with pytest.raises(DataError, match=r"ADA x_target \(shape \(6, 5\)\) holds 1 NaN/inf value\(s\), the first "
                                            r"in row 3"):
            ada.loss(player, (xs, ys, bad))
        xi, ti = xs.round().to(torch.int64), xt.round().to(torch.int64)
        torch.testing.assert_close(ada.loss(player, (xi, ys, ti)), ada.loss(player, (xi.float(), ys, ti.float())),
                                   rtol=0, atol=0)


def test_predict_checks_its_inputs():
    ada = make()
    with pytest.raises(DataError, match=r"ADA.predict x must be a tensor of shape \(batch, 5\), got shape \(3, 4\)"):
        ada.predict(torch.zeros(3, 4))
    with pytest.raises(DataError, match="ADA.predict x has dtype torch.float64"):
        ada.predict(torch.zeros(3, 5, dtype=torch.float64))
    assert torch.equal(ada.predict(torch.ones(3, 5, dtype=torch.int64)), ada.predict(torch.ones(3, 5)))


def test_predict_runs_the_networks_in_eval_mode():
    """Before, predict ran in the networks' training mode: batch norm moved its running statistics, a row's label
    depended on the other rows, and one row raised a raw ValueError."""
    torch.manual_seed(0)
    features = nn.Sequential(nn.Linear(5, 4), nn.BatchNorm1d(4), nn.ReLU())
    ada = ADA(features, MLPDiscriminator(4, (8,)), nn.Linear(4, 3), input_shape=(5,))
    with torch.no_grad():
        features[1].running_mean.fill_(0.5)
    x = torch.randn(6, 5, generator=torch.Generator().manual_seed(2)) * 3
    labels = ada.predict(x)
    assert torch.equal(features[1].running_mean, torch.full((4,), 0.5)) and features.training
    assert torch.equal(ada.predict(x[:1]), labels[:1]) and torch.equal(ada.predict(x[3:]), labels[3:])
    features.eval()
    assert torch.equal(ada.classifier(features(x)).argmax(-1), labels)


@pytest.mark.parametrize("seed", [1.5, 2**70, True, "0"])
def test_paired_data_seed_is_checked(seed):
    """Before, a float seed raised torch's raw TypeError, and one beyond torch's range a raw RuntimeError."""
    from hybridpgm.errors import ConfigError

    with pytest.raises(ConfigError, match="ADA.paired_data seed must be an integer"):
        ADA.paired_data(torch.randn(4, 2), torch.zeros(4, dtype=torch.long), torch.randn(3, 2), seed=seed)


def make_without_input_shape(d=5, f=4, c=3):
    torch.manual_seed(0)
    return ADA(mlp([d, 8, f]), MLPDiscriminator(f, (8,)), nn.Linear(f, c))


@pytest.mark.parametrize("player", ["discriminator", "generator"])
def test_without_input_shape_a_wrong_width_is_named_in_every_players_loss(player):
    """Before, without ``input_shape`` inputs of the wrong width reached the feature extractor's matmul: a raw
    RuntimeError, in the discriminator's step first."""
    ada = make_without_input_shape()
    xs, ys, xt = batch(d=7)
    with pytest.raises(DataError, match=r"ADA x_source has shape \(6, 7\): the feature extractor cannot take "
                                        r"inputs of event shape \(7,\)"):
        ada.loss(player, (xs, ys, xt))
    with pytest.raises(DataError, match=r"ADA.predict x has shape \(6, 7\)"):
        ada.predict(xs)
    good = batch()
    torch.testing.assert_close(ada.loss(player, good), make(weight=1.0).loss(player, good), rtol=0, atol=0)


def test_without_input_shape_the_chain_is_dry_run_once_per_event_shape():
    ada = make_without_input_shape()
    calls = []
    ada.feature_extractor.register_forward_hook(lambda module, args, out: calls.append(tuple(args[0].shape)))
    data = batch()
    ada.loss("discriminator", data)
    assert calls == [(2, 5), (6, 5), (6, 5)]  # the dry run on two rows of zeros, then the two domains
    calls.clear()
    ada.loss("generator", data), ada.loss("discriminator", data)
    assert calls == [(6, 5)] * 4


@pytest.mark.parametrize("shaped", [True, False])
@pytest.mark.parametrize("label", [3, -100])
def test_labels_outside_the_classes_are_named_in_the_discriminators_loss(shaped, label):
    """Before, only the generator's loss checked the labels: the discriminator's steps, which come first, trained
    on the bad batch (and without ``input_shape`` nothing knew the number of classes before the classifier ran)."""
    ada = make() if shaped else make_without_input_shape()
    xs, ys, xt = batch()
    ys[2] = label
    with pytest.raises(DataError, match=f"0..2 \\(the classifier's 3 outputs\\); row 2 of the batch holds {label}"):
        ada.loss("discriminator", (xs, ys, xt))


def test_discriminator_label_check_waits_for_the_steps_host_read_and_raises_before_its_update():
    from hybridpgm.train.deferred_checks import deferring_checks

    ada = make_without_input_shape()
    xs, ys, xt = batch()
    ys[1] = 5
    with deferring_checks() as pending:
        loss = ada.loss("discriminator", (xs, ys, xt))  # no host read of its own: no raise yet
    assert torch.isfinite(loss) and not bool(pending.all_passed(torch.device("cpu")))
    with pytest.raises(DataError, match="row 1 of the batch holds 5"):
        pending.raise_first_failure()
    before = [p.detach().clone() for p in ada.module.parameters()]
    with pytest.raises(DataError, match="row 1 of the batch holds 5"):
        hybridpgm.fit(ada, (xs, ys, xt), batch_size=6, max_steps=1, shuffle=False, progress=False, seed=0,
                      device="cpu")
    assert all(torch.equal(a, p) for a, p in zip(before, ada.module.parameters()))


def test_repr_shows_the_weight_and_the_input_shape():
    assert repr(make(weight=0.25)) == "ADA(k=1, adversarial_weight=0.25, input_shape=(5,))"
    assert repr(make_without_input_shape()) == "ADA(k=1, adversarial_weight=1.0, input_shape=None)"
