"""Resuming after changing which parameters are frozen (hybridpgm/train/checkpoint_parameters.py).

An optimizer's state is kept by position, and :class:`~hybridpgm.infer.SVIObjective`'s players hold only the
parameters with ``requires_grad``.  Before, a resume with another frozen set raised torch's bare ``ValueError``
("loaded state dict contains a parameter group that doesn't match ..."), or, with as many trained tensors as
before, was accepted and crashed at the first step with a shape error; either way the model held the
checkpoint's weights by then.  Now the checkpoint records the names of each player's parameters and the resume
is refused, naming the file, the player and the parameters, before the model is touched.
"""

import functools

import pytest
import torch

from hybridpgm import fit
from hybridpgm.energy import RBM
from hybridpgm.errors import CheckpointError
from hybridpgm.generative import VAE
from hybridpgm.infer import ContrastiveDivergence, SVIObjective
from hybridpgm.train import load_checkpoint, save_checkpoint


def _data():
    return torch.bernoulli(torch.rand(32, 4, generator=torch.Generator().manual_seed(0)),
                           generator=torch.Generator().manual_seed(1))


def _vae(frozen=()):
    torch.manual_seed(0)
    vae = VAE(4, 2, [8])
    params = dict(vae.named_parameters())
    for name in frozen:
        params[name].requires_grad_(False)
    return vae


def _fit_vae(vae, ckpt, epochs, **kwargs):
    return fit(SVIObjective(vae.model, vae.guide), _data(), epochs=epochs, batch_size=8, seed=0, progress=False,
               checkpoint=ckpt, optim=functools.partial(torch.optim.Adam, lr=0.05), **kwargs)


def _decoder(vae):
    return [n for n, _ in vae.named_parameters() if n.startswith("decoder.")]


def _refused(vae, ckpt, **kwargs):
    """The error of a resume of ``ckpt`` into ``vae``, checking that it left ``vae``'s weights as they were."""
    before = {k: v.clone() for k, v in vae.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        _fit_vae(vae, ckpt, 2, **kwargs)
    assert all(torch.equal(before[k], v) for k, v in vae.state_dict().items())  # nothing was loaded
    message = str(info.value)
    assert str(ckpt) in message and "player 'elbo'" in message
    return message


def test_a_part_frozen_since_the_checkpoint_is_refused_naming_it_and_the_model_is_untouched(tmp_path):
    ckpt = tmp_path / "c.pt"
    _fit_vae(_vae(), ckpt, 1)
    vae = _vae()
    vae.decoder.requires_grad_(False)
    message = _refused(vae, ckpt)
    assert "'decoder.0.weight' is trained in the checkpoint but frozen now" in message
    assert "requires_grad" in message and "overwrite=True" in message
    assert load_checkpoint(ckpt)["config"]["optimizers"]["elbo"]["param_names"] == [  # the record, in order
        [n for n, _ in _vae().named_parameters()]]


def test_a_part_unfrozen_since_the_checkpoint_is_refused_naming_it(tmp_path):
    ckpt = tmp_path / "c.pt"
    encoder = [n for n, _ in _vae().named_parameters() if n.startswith("encoder.")]
    _fit_vae(_vae(frozen=encoder), ckpt, 1)
    message = _refused(_vae(), ckpt)
    assert "'encoder.0.weight' is frozen in the checkpoint but trained now" in message


@pytest.mark.parametrize("override", [False, True])
def test_as_many_trained_tensors_but_other_ones_are_refused_whatever_override_says(tmp_path, override):
    """Before, this was accepted: the Adam state of ``encoder.0.bias`` went to another tensor by position and
    the first step failed with a shape error."""
    ckpt = tmp_path / "c.pt"
    _fit_vae(_vae(frozen=["encoder.0.bias"]), ckpt, 1)
    message = _refused(_vae(frozen=["decoder.0.bias"]), ckpt, override_hyperparameters=override)
    assert message.index("'encoder.0.bias' is frozen in the checkpoint but trained now") < \
        message.index("'decoder.0.bias' is trained in the checkpoint but frozen now")  # in the model's order


def test_a_checkpoint_without_the_names_is_refused_by_its_sizes_before_the_model_is_touched(tmp_path):
    ckpt = tmp_path / "c.pt"
    _fit_vae(_vae(), ckpt, 1)
    state = load_checkpoint(ckpt)
    state["config"]["optimizers"]["elbo"].pop("param_names", None)  # as written before the names were recorded
    save_checkpoint(ckpt, state)
    vae = _vae()
    vae.decoder.requires_grad_(False)
    message = _refused(vae, ckpt)
    assert f"holds [{len(list(vae.parameters()))}] parameter(s)" in message
    assert f"[{len(list(vae.parameters())) - len(_decoder(vae))}] now" in message


def test_a_checkpoint_without_the_names_resumes_as_before(tmp_path):
    """Guard (passes on the code before the names were recorded, where deleting them changes nothing): an
    older checkpoint with the same frozen set resumes, and the absent record is no hyperparameter difference."""
    ckpt = tmp_path / "c.pt"
    _fit_vae(_vae(frozen=["decoder.0.bias"]), ckpt, 1)
    state = load_checkpoint(ckpt)
    state["config"]["optimizers"]["elbo"].pop("param_names", None)
    save_checkpoint(ckpt, state)
    result = _fit_vae(_vae(frozen=["decoder.0.bias"]), ckpt, 2)
    assert result.steps == 8


def test_contrastive_divergence_keeps_frozen_parameters_and_resumes_with_another_frozen_set(tmp_path):
    """ContrastiveDivergence's optimizer holds every parameter, frozen or not, so the recorded names do not depend
    on what is frozen and such a resume goes on (its Adam state is by name and by shape the same)."""
    ckpt = tmp_path / "c.pt"
    x = _data()

    def run(frozen, epochs):
        torch.manual_seed(0)
        rbm = RBM(4, 4)
        getattr(rbm, frozen).requires_grad_(False)
        return fit(ContrastiveDivergence(rbm), x, epochs=epochs, batch_size=8, seed=0, progress=False,
                   checkpoint=ckpt, optim=functools.partial(torch.optim.Adam, lr=0.05)), rbm

    run("visible_bias", 1)
    result, rbm = run("hidden_bias", 2)
    assert result.steps == 8
    assert rbm.hidden_bias.requires_grad is False and torch.isfinite(rbm.weight).all()
    names = load_checkpoint(ckpt)["config"]["optimizers"]  # every parameter, the frozen ones included
    assert [n for groups in names.values() for g in groups["param_names"] for n in g] == \
        ["model." + n for n, _ in RBM(4, 4).named_parameters()]  # the objective's module holds the RBM


def _config(*groups):
    return {"optimizers": {"p": {"param_names": [list(g) for g in groups]}}}


@pytest.mark.parametrize("was, now, expected", [
    ([["a", "b"]], [["b", "a"]], "param group 0 holds 'a' at position 0 in the checkpoint, 'b' now"),
    ([["a"], ["b"]], [["a", "b"]], "its optimizer has 2 param group(s) in the checkpoint, 1 now"),
])
def test_the_same_parameters_in_another_order_or_grouping_are_refused(tmp_path, was, now, expected):
    from hybridpgm.train.checkpoint_parameters import check_parameter_layout  # here: the other tests run without it

    module = torch.nn.ParameterDict({"a": torch.nn.Parameter(torch.zeros(2)),
                                     "b": torch.nn.Parameter(torch.zeros(3))})
    with pytest.raises(CheckpointError, match="player 'p'") as info:
        check_parameter_layout(tmp_path / "c.pt", _config(*was), _config(*now), module)
    assert expected in str(info.value)
    check_parameter_layout(tmp_path / "c.pt", _config(*was), _config(*was), module)  # the same: accepted
    check_parameter_layout(tmp_path / "c.pt", {"optimizers": {"p": {}}}, _config(*now), module)  # no record
