"""DBN: greedy pretraining, unrolling into an autoencoder and a classifier, fine-tuning, sampling."""

from __future__ import annotations

import functools

import pytest
import torch

from hybridpgm.energy import DBM, DBN, ClassificationObjective, ReconstructionObjective
from hybridpgm.errors import ConfigError, DataError, ModelSpecError
from hybridpgm.train import fit
from tests.energy.brute_force import all_states, single_thread  # noqa: F401
from tests.generator_contract import assert_generator_contract

SGD = functools.partial(torch.optim.SGD, lr=0.1, momentum=0.5)


def _data(n=200, seed=0):
    torch.manual_seed(seed)
    prototypes = torch.tensor([[1, 1, 1, 1, 0, 0, 0, 0, 1, 0], [0, 0, 0, 0, 1, 1, 1, 1, 0, 1]],
                              dtype=torch.float32)
    y = torch.arange(n) % 2
    x = (prototypes[y] - torch.bernoulli(torch.full((n, 10), 0.05))).abs()
    return x, y


@pytest.mark.parametrize("persistent", [False, True])
def test_greedy_pretraining_trains_each_rbm_on_the_layer_below(persistent):
    x, _ = _data()
    dbn = DBN([10, 6, 3])
    results = dbn.pretrain(x, epochs=3, batch_size=20, optim=SGD, progress=False, seed=0, persistent=persistent)
    assert len(results) == 2 and all(r.steps == 30 for r in results)
    assert dbn.rbms[1].probabilities  # upper RBMs read probabilities
    top = dbn.transform(x)
    assert top.shape == (200, 3)
    torch.testing.assert_close(top, dbn.rbms[1].transform(dbn.rbms[0].transform(x)))
    # the pretrained first RBM reconstructs better than an untrained one
    assert float(dbn.rbms[0].reconstruction_error(x)) < float(DBN([10, 6, 3]).rbms[0].reconstruction_error(x))


@pytest.mark.parametrize("visible", ["bernoulli", "gaussian"])
def test_unrolled_autoencoder_equals_the_mean_field_up_down_pass(visible):
    torch.manual_seed(1)
    dbn = DBN([5, 4, 3], visible=visible, init_scale=0.5)
    if visible == "gaussian":
        dbn.rbms[0].sigma.fill_(0.7)
    x = torch.bernoulli(torch.full((6, 5), 0.5))
    ae = dbn.to_autoencoder()
    code = dbn.transform(x)
    torch.testing.assert_close(ae.encoder(x), code)
    h1 = torch.sigmoid(dbn.rbms[1].visible_param(code))
    expected = dbn.rbms[0].visible_param(h1)  # logits (Bernoulli) or means (Gaussian)
    torch.testing.assert_close(ae(x), expected.detach())


def test_autoencoder_fine_tuning_with_fit_reduces_reconstruction_loss():
    x, _ = _data()
    dbn = DBN([10, 6, 3])
    dbn.pretrain(x, epochs=3, batch_size=20, optim=SGD, progress=False, seed=0)
    objective = ReconstructionObjective(dbn.to_autoencoder())
    before = float(objective.loss("model", x).detach())
    fit(objective, x, epochs=10, batch_size=20, progress=False, seed=0,
        optim=functools.partial(torch.optim.Adam, lr=1e-2))
    assert float(objective.loss("model", x).detach()) < 0.7 * before


def test_classifier_fine_tuning_with_fit():
    x, y = _data()
    dbn = DBN([10, 6, 3])
    dbn.pretrain(x, epochs=3, batch_size=20, optim=SGD, progress=False, seed=0)
    classifier = dbn.to_classifier(2)
    torch.testing.assert_close(classifier[:-1](x), dbn.transform(x))
    fit(ClassificationObjective(classifier), (x, y), epochs=10, batch_size=20, progress=False, seed=0,
        optim=functools.partial(torch.optim.Adam, lr=1e-2))
    accuracy = float((classifier(x).argmax(-1) == y).float().mean())
    assert accuracy > 0.95


def test_generative_sampling_runs_top_gibbs_then_top_down_pass():
    x, _ = _data()
    dbn = DBN([10, 6, 3])
    dbn.pretrain(x, epochs=5, batch_size=20, optim=SGD, progress=False, seed=0)
    means = dbn.sample(500, steps=200)
    assert means.shape == (500, 10) and bool(((means >= 0) & (means <= 1)).all())
    binary = dbn.sample(5, steps=10, mean=False)
    assert bool(((binary == 0) | (binary == 1)).all())
    # samples look like the data: pixel marginals close to the data's
    assert float((means.mean(0) - x.mean(0)).abs().max()) < 0.25


def test_bad_input_raises():
    with pytest.raises(ModelSpecError, match="sizes"):
        DBN([10])
    dbn = DBN([10, 6, 3])
    with pytest.raises(DataError, match="binary"):
        dbn.pretrain(torch.full((4, 10), 0.5), progress=False)
    with pytest.raises(DataError, match=r"\(4, 9\)"):
        dbn.transform(torch.zeros(4, 9))
    with pytest.raises(ConfigError, match="num_classes"):
        dbn.to_classifier(1)
    with pytest.raises(DataError, match=r"\(x, y\)"):
        ClassificationObjective(dbn.to_classifier(2)).loss("model", torch.zeros(4, 10))


def test_pretrain_checkpoints_must_be_one_path_per_layer(tmp_path):

    dbn = DBN([6, 4, 3])
    with pytest.raises(ConfigError, match="2 paths, one per layer"):
        dbn.pretrain(torch.zeros(4, 6), checkpoints=[tmp_path / "only-one.pt"], batch_size=2, progress=False)
    with pytest.raises(ConfigError, match="one per layer"):
        dbn.pretrain(torch.zeros(4, 6), checkpoints=str(tmp_path / "a-string.pt"), batch_size=2, progress=False)


@pytest.mark.parametrize("kind", ["DBN", "DBM"])
def test_pretrain_refuses_one_checkpoint_for_every_layer(tmp_path, kind):
    """Before, ``checkpoint=`` went to every layer's fit: layer 2 resumed layer 1's finished run and became
    a copy of it (with ``checkpoints=`` as well: a raw TypeError).  Both use ``layer_checkpoints``."""
    x, _ = _data(40)
    model = DBN([10, 6, 6]) if kind == "DBN" else DBM([10, 6, 6])

    def weights():
        return [rbm.weight for rbm in model.rbms] if kind == "DBN" else list(model.weights)

    before = [w.detach().clone() for w in weights()]
    with pytest.raises(ConfigError, match=kind + r".pretrain .*checkpoints=\[\.\.\.\] \(2 paths, one per layer\), "
                                          r"not checkpoint="):
        model.pretrain(x, batch_size=10, progress=False, seed=0, checkpoint=tmp_path / "run.pt")
    with pytest.raises(ConfigError, match="not checkpoint="):
        model.pretrain(x, batch_size=10, progress=False, seed=0, checkpoint=tmp_path / "c.pt",
                       checkpoints=[tmp_path / "a.pt", tmp_path / "b.pt"])
    assert not list(tmp_path.iterdir())  # refused before any training
    assert all(torch.equal(w, b) for w, b in zip(weights(), before))
    paths = [tmp_path / "a.pt", tmp_path / "b.pt"]
    results = model.pretrain(x, batch_size=10, epochs=2, progress=False, seed=0, checkpoints=paths)
    assert all(p.exists() for p in paths) and all(r.steps == 8 for r in results)
    assert not torch.equal(weights()[0], weights()[1])


@pytest.mark.parametrize("steps", [1, 3])
def test_one_rbm_dbn_sample_mean_gives_the_visible_probabilities(steps):
    """Before, ``DBN([V, H]).sample(mean=True)`` ignored ``mean`` and returned binary samples."""
    torch.manual_seed(0)
    dbn = DBN([6, 4], init_scale=1.0)
    rbm = dbn.rbms[0]
    with torch.no_grad():  # the hidden units are certain whatever v is: h = (1, 0, 1, 0)
        rbm.hidden_bias.copy_(torch.tensor([100.0, -100.0, 100.0, -100.0]))
        rbm.visible_bias.copy_(torch.linspace(-1, 1, 6))
    h = torch.tensor([1.0, 0.0, 1.0, 0.0]).expand(5, 4)
    means = dbn.sample(5, steps=steps, mean=True)
    assert means.shape == (5, 6)
    assert bool(((means > 0) & (means < 1)).all()) and not bool(((means == 0) | (means == 1)).all())
    torch.testing.assert_close(means, torch.sigmoid(rbm.visible_param(h)).detach())
    binary = dbn.sample(200, steps=steps, mean=False)
    assert bool(((binary == 0) | (binary == 1)).all())
    assert float((binary.mean(0) - means[0]).abs().max()) < 0.15  # the samples' frequencies are those means


def test_classifier_objective_names_the_input_width():
    """Before, data of the wrong width gave torch's raw 'mat1 and mat2 shapes cannot be multiplied'."""
    dbn = DBN([5, 3])
    x, y = torch.rand(8, 6), torch.arange(8) % 2
    objective = ClassificationObjective(dbn.to_classifier(2))
    match = r"ClassificationObjective input 'x' must have shape \(batch, 5\).*got \(8, 6\)"
    with pytest.raises(DataError, match=match):
        objective.loss("model", (x, y))
    with pytest.raises(DataError, match=r"must have shape \(batch, 5\).*got \(4, 6\)"):
        fit(objective, (x, y), batch_size=4, progress=False)
    assert torch.isfinite(objective.loss("model", (x[:, :5], y)))


def test_sample_mean_of_a_three_rbm_dbn_averages_to_the_exact_visible_mean():
    """``sample(mean=True)`` gives :math:`E[v \\mid x_1]` for a *sample* :math:`x_1`, so its average over draws is
    :math:`E[v]` (enumerated: top RBM marginal, then the sigmoid layers).  Before, the middle layer went down
    as probabilities, and the average missed :math:`E[v]` by 40 to 350 standard errors."""
    torch.manual_seed(0)
    dbn = DBN([3, 2, 2, 2], init_scale=3.0).double()
    with torch.no_grad():
        for rbm in dbn.rbms:
            rbm.visible_bias.normal_()
            rbm.hidden_bias.normal_()
        states = all_states(2)

        def layer_given(rbm, above):  # p(x_l = s | x_{l+1} = above), rows: above, columns: states s
            p = torch.sigmoid(rbm.visible_param(above)).unsqueeze(1)
            return (p ** states * (1 - p) ** (1 - states)).prod(-1)

        p2 = torch.exp(dbn.rbms[2].log_likelihood(states))
        p1 = p2 @ layer_given(dbn.rbms[1], states)
        expected = p1 @ torch.sigmoid(dbn.rbms[0].visible_param(states))
    torch.manual_seed(1)
    num = 10000
    means = dbn.sample(num, steps=30, mean=True)
    stderr = means.std(0) / num**0.5
    assert bool(((means.mean(0) - expected).abs() < 4 * stderr).all()), ((means.mean(0) - expected) / stderr)


def test_unrolling_does_not_touch_the_global_rng():
    """Before, each new ``nn.Linear`` drew its (then overwritten) initial weights from the global RNG."""
    dbn = DBN([4, 3, 2], visible="gaussian")
    torch.manual_seed(0)
    state = torch.get_rng_state()
    encoder, autoencoder = dbn.encoder(), dbn.to_autoencoder()
    assert torch.equal(torch.get_rng_state(), state)
    torch.testing.assert_close(encoder[0].weight.detach(), (dbn.rbms[0].weight / dbn.rbms[0].sigma[:, None]).T.detach())
    torch.testing.assert_close(autoencoder.decoder[0].bias.detach(), dbn.rbms[1].visible_bias.detach())


def test_to_classifier_head_from_a_generator_is_reproducible_and_leaves_the_global_rng():
    """Before, the head came from ``nn.Linear``'s init on the global RNG: no ``generator`` keyword, the global
    stream advanced, and two calls gave different heads unless the caller reseeded the whole process."""
    dbn = DBN([6, 5, 4])
    torch.manual_seed(0)
    state = torch.get_rng_state()
    first = dbn.to_classifier(3, generator=torch.Generator().manual_seed(7))
    second = dbn.to_classifier(3, generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.get_rng_state(), state)
    head, other = first[-1], second[-1]
    assert torch.equal(head.weight, other.weight) and torch.equal(head.bias, other.bias)
    assert head.weight.shape == (3, 4) and head.bias.shape == (3,)
    bound = 1 / 4**0.5  # nn.Linear's init: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    assert bool((head.weight.abs() <= bound).all()) and bool((head.bias.abs() <= bound).all())
    assert head.weight.std() > 0.1 * bound  # drawn, not zeros
    third = dbn.to_classifier(3, generator=torch.Generator().manual_seed(8))
    assert not torch.equal(third[-1].weight, head.weight)


def test_to_classifier_without_a_generator_draws_from_the_global_rng_like_nn_linear():
    dbn = DBN([6, 5, 4])
    torch.manual_seed(3)
    head = dbn.to_classifier(3)[-1]
    torch.manual_seed(3)
    reference = torch.nn.Linear(4, 3)
    assert torch.equal(head.weight, reference.weight) and torch.equal(head.bias, reference.bias)


def test_to_classifier_generator_matches_the_model_dtype_and_refuses_non_generators():
    dbn = DBN([6, 5, 4]).double()
    head = dbn.to_classifier(2, generator=torch.Generator().manual_seed(0))[-1]
    assert head.weight.dtype == torch.float64
    with pytest.raises(ConfigError, match="generator must be a torch.Generator"):
        dbn.to_classifier(2, generator=0)


def test_pretrain_with_max_steps_runs_that_many_steps_per_layer_as_fit_does():
    from hybridpgm.energy import DBM

    torch.manual_seed(0)
    x = torch.bernoulli(torch.full((16, 6), 0.5))
    for model in (DBN([6, 4, 3]), DBM([6, 4, 3])):
        results = model.pretrain(x, max_steps=10, batch_size=4, progress=False, seed=0)
        assert [r.steps for r in results] == [10, 10]
        assert [r.steps for r in model.pretrain(x, batch_size=4, progress=False, seed=0)] == [4, 4]


@pytest.mark.parametrize("sizes, visible, mean", [([5, 3], "bernoulli", True), ([5, 3], "bernoulli", False),
                                                  ([5, 3, 2], "bernoulli", True), ([5, 3, 2], "gaussian", False)])
def test_dbn_sample_draws_from_the_generator_given(sizes, visible, mean):
    """``generator=`` (keyword-only) on DBN.sample: the top RBM's chains and every layer below draw from it,
    the caller's stream untouched, ``None`` the old call (tests/energy/generator_contract.py).  Before: no
    such argument."""
    torch.manual_seed(0)
    dbn = DBN(sizes, visible=visible, init_scale=1.0).double()
    assert_generator_contract(lambda **kw: dbn.sample(4, steps=2, mean=mean, **kw), "DBN.sample generator")
