"""fit warns when switching a model in eval() to training puts a part the caller froze in training too
(hybridpgm/module_modes.py, train_models_in_eval): its batch norm's running statistics move, its dropout is on."""

import re
import warnings

import torch
from pyro.infer import Trace_ELBO
from torch import nn

from hybridpgm import VAE, SVIObjective, fit
from hybridpgm.errors import TrainingWarning
from hybridpgm.module_modes import train_models_in_eval


def _model():
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 3), nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.5)),
                         nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3)))


def test_the_switch_names_each_frozen_part_with_what_changes_and_how_to_keep_it():
    model = _model().eval()
    model[1].requires_grad_(False)
    model[2][1].requires_grad_(False)  # the batch norm alone, inside a trainable block
    note = train_models_in_eval(model)
    assert all(m.training for m in model.modules())  # the switch itself is as before
    assert note.startswith("fit: the model (Sequential) is in eval() as a whole")
    assert "frozen parts '1' (its Dropout will be on); '2.1' (the running statistics of its BatchNorm1d will " \
           "move)" in note
    assert "call model.train(); model.get_submodule('1').eval(); model.get_submodule('2.1').eval() before fit" in note
    container = nn.ModuleDict({"generator": _model().eval(), "critic": _model().eval()})
    container["generator"][2].requires_grad_(False)
    note = train_models_in_eval(container)
    assert note.startswith("fit: the objective's model 'generator' (Sequential) is in eval() as a whole") and \
        "call objective.module['generator'].train(); objective.module['generator'].get_submodule('2').eval() " \
        "before fit (objective being the objective given to fit; " in note and "critic" not in note


def test_no_note_without_a_frozen_part_that_the_mode_changes():
    """A model already in training mode (frozen or not); frozen parts without batch norm or dropout, or with only
    layers the mode does not change (dropout with p=0, batch norm without running statistics); batch norm and
    dropout in trainable parts."""
    model = _model()
    model.requires_grad_(False)
    assert train_models_in_eval(model) is None and model.training
    model = _model().eval()
    model[0].requires_grad_(False)
    assert train_models_in_eval(model) is None
    quiet = nn.Sequential(nn.Sequential(nn.Linear(3, 3), nn.Dropout(0.0), nn.BatchNorm1d(3, track_running_stats=False)),
                          nn.Linear(3, 3)).eval()
    quiet[0].requires_grad_(False)
    assert train_models_in_eval(quiet) is None
    assert train_models_in_eval(_model().eval()) is None


def _vae_and_data():
    x = torch.bernoulli(torch.full((16, 6), 0.4), generator=torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    return VAE(6, 2, (4,), batch_norm=True), x


def _fit_notes(vae, x):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(SVIObjective(vae.model, vae.guide, Trace_ELBO()), x, max_steps=3, batch_size=8, progress=False, seed=0)
    return [w for w in caught if issubclass(w.category, TrainingWarning) and "frozen part" in str(w.message)]


def test_fit_warns_once_at_the_callers_line_and_the_advice_keeps_the_part_in_eval():
    """A loaded VAE (in eval()) whose encoder is frozen for fine-tuning: fit trained the encoder's batch norm
    silently (its running statistics moved).  One warning per fit, pointing at the call; following it, the
    statistics stay."""
    vae, x = _vae_and_data()
    vae.eval()
    vae.encoder.requires_grad_(False)
    notes = _fit_notes(vae, x)
    assert len(notes) == 1 and notes[0].filename == __file__
    assert "'encoder' (the running statistics of its BatchNorm1d will move)" in str(notes[0].message)
    assert "call model.train(); model.encoder.eval() before fit" in str(notes[0].message)
    vae.train()
    vae.encoder.eval()
    statistics = vae.encoder[1].running_mean.clone()
    assert _fit_notes(vae, x) == []
    assert torch.equal(vae.encoder[1].running_mean, statistics)
    assert not any(p.requires_grad for p in vae.encoder.parameters())


def test_fit_does_not_warn_of_a_model_in_eval_with_nothing_frozen_or_a_training_model():
    vae, x = _vae_and_data()
    assert _fit_notes(vae.eval(), x) == []
    vae.encoder.requires_grad_(False)
    assert _fit_notes(vae.train(), x) == []


class _Decoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2, 3), nn.Dropout(0.5))

    def model(self, x):
        pass


class _Encoder(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))

    def guide(self, x):
        pass


def _advice(note):
    """``[(expression, what it calls)]`` of each "call ... before fit" of ``note``."""
    calls = [call for advice in re.findall(r"call (.*?) before fit", note) for call in advice.split("; ")]
    return [call.rsplit(".", 1) for call in calls]


def test_a_model_of_the_objectives_container_is_reached_from_the_objective_given_to_fit():
    """Audit: for a model of an objective's container the advice named a variable after its key ("call
    generator.train(); generator.get_submodule('net.1').eval()"), which fit's caller may not hold, and for a model
    and a guide of two modules (keys 0 and 1) called both of them "model".  Each expression now starts from the
    objective given to fit, and each finds the model or the frozen part it names."""
    from hybridpgm import GAN
    from hybridpgm.generative.gan import MLPDiscriminator, MLPGenerator

    torch.manual_seed(0)
    gan = GAN(MLPGenerator(4, (3,), (8,), batch_norm=True), MLPDiscriminator((3,), (8,)))
    gan.module.eval()
    gan.generator.net[1].requires_grad_(False)
    note = train_models_in_eval(gan.module)
    assert "the objective's model 'generator' (MLPGenerator)" in note and "'discriminator'" not in note
    calls = _advice(note)
    assert [method for _, method in calls] == ["train()", "eval()"]
    assert [eval(expression, {"objective": gan}) for expression, _ in calls] == [gan.generator, gan.generator.net[1]]

    decoder, encoder = _Decoder().eval(), _Encoder().eval()
    decoder.net.requires_grad_(False)
    encoder.net[1].requires_grad_(False)
    objective = SVIObjective(decoder.model, encoder.guide, Trace_ELBO())
    note = train_models_in_eval(objective.module)
    assert "model '0' (_Decoder)" in note and "model '1' (_Encoder)" in note
    reached = [eval(expression, {"objective": objective}) for expression, _ in _advice(note)]
    assert reached == [decoder, decoder.net, encoder, encoder.get_submodule("net.1")]
