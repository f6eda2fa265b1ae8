"""keeping_modes puts each sub-module back in its own mode (found by an audit: fit, EvaluateEvery and the
dry runs and predictions that switch a model to eval() called train(mode) afterwards, which unfroze the
sub-modules the caller had frozen in eval())."""

import pytest
import torch
from torch import nn

from hybridpgm.module_modes import keeping_modes


class _Counting(nn.Linear):
    """A layer whose train() has a side effect (as GPyTorch's ExactGP drops its predictive cache)."""

    def __init__(self):
        super().__init__(2, 2)
        self.calls = []

    def train(self, mode=True):
        self.calls.append(mode)
        return super().train(mode)


def _model():
    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.BatchNorm1d(2), _Counting()))
    model[1][0].eval()  # frozen
    return model


def test_each_sub_module_gets_its_own_mode_back_also_after_an_error():
    model = _model()
    modes = [m.training for m in model.modules()]
    with keeping_modes(model):
        model.eval()
    assert [m.training for m in model.modules()] == modes
    with pytest.raises(ValueError), keeping_modes(model):
        model.train()
        raise ValueError
    assert [m.training for m in model.modules()] == modes


def test_the_mode_goes_back_through_the_modules_own_train():
    model = _model()
    counting = model[1][1]
    with keeping_modes(model):
        model.eval()
        counting.calls.clear()
    assert counting.calls and counting.calls[-1] is True and counting.training
    counting.calls.clear()
    with keeping_modes(model):  # nothing changed: no call
        pass
    assert counting.calls == []


def test_a_deep_kernel_gp_prediction_keeps_a_frozen_feature_norm_frozen():
    from hybridpgm.gp import DeepKernelGP

    x = torch.linspace(-1, 1, 20).unsqueeze(-1)
    extractor = nn.Sequential(nn.Linear(1, 2), nn.BatchNorm1d(2))
    extractor[1].eval()
    model = DeepKernelGP(x, torch.sin(3 * x).squeeze(-1), extractor)
    model.train()
    extractor[1].eval()
    model.predict(x[:3])
    model.posterior(x[:3])
    assert model.training and extractor[0].training and not extractor[1].training


class _RaisingTrain(nn.Linear):
    """A layer whose train() fails once armed (a side effect that raises, or a Ctrl-C arriving there)."""

    def __init__(self):
        super().__init__(2, 2)
        self.armed = False

    def train(self, mode=True):
        if self.armed:
            self.armed = False
            raise KeyboardInterrupt("Ctrl-C")
        return super().train(mode)


def test_an_exception_during_the_restore_leaves_no_frozen_module_unfrozen():
    """The restore called the parent's recursive train(True), which unfroze the frozen batch norm until its own
    turn came: an exception in between (a Ctrl-C) left it in training mode.  Now each flag is set directly, the
    restore finishes and the exception follows."""
    model = nn.Sequential(nn.Linear(2, 2), nn.Sequential(nn.BatchNorm1d(2), _RaisingTrain()))
    model[1][0].eval()  # frozen
    modes = [m.training for m in model.modules()]
    with pytest.raises(KeyboardInterrupt, match="Ctrl-C"), keeping_modes(model):
        model.eval()
        model[1][1].armed = True
    assert [m.training for m in model.modules()] == modes
    assert not model[1][1].armed  # its own train() was called, for its side effects


def test_an_overriding_train_is_called_while_its_mode_still_differs():
    """Review C: the restore first set every flag, then called the overriding ``train(flag)`` on a module already
    in that mode; GPyTorch clears its caches only on a change of mode, so an SVGP left in ``eval()`` predicted from
    a Cholesky factor of before ``fit``'s last step."""
    calls = []

    class Cached(torch.nn.Linear):
        def train(self, mode=True):
            calls.append((self.training, mode))
            return super().train(mode)

    net = torch.nn.Sequential(Cached(2, 2)).eval()
    with keeping_modes(net):
        net.train()
        calls.clear()
    assert calls == [(True, False)] and not net[0].training


def test_fit_trains_models_in_eval_that_an_objective_holds_in_its_own_container():
    """Audit: a GAN keeps its generator and discriminator in a ModuleDict, always in training mode, so fit's rule
    ("a model in eval() as a whole trains") saw the container, and a generator straight from hybridpgm.load (in
    eval()) trained with its batch norm on running statistics that never moved.  Each model the container holds
    is judged as a whole now; fit still hands them back in the modes they came in."""
    import hybridpgm
    from hybridpgm.generative.gan import MLPDiscriminator, MLPGenerator

    torch.manual_seed(0)
    generator, discriminator = MLPGenerator(4, 2, [16], batch_norm=True).eval(), MLPDiscriminator(2, [16]).eval()
    seen, before = set(), generator.net[1].running_mean.clone()

    class Spy:
        def on_step_end(self, info):
            seen.add(generator.net[1].training)

    hybridpgm.fit(hybridpgm.GAN(generator, discriminator), torch.randn(64, 2), max_steps=2, batch_size=32, seed=1,
                  progress=False, callbacks=[Spy()])
    assert seen == {True}
    assert not torch.equal(generator.net[1].running_mean, before)  # the statistics moved, as in training mode
    assert not generator.training and not discriminator.training  # handed back as they came


def test_a_users_module_dict_subclass_is_a_model_whose_frozen_parts_stay_frozen():
    """Review D: the container rule matched subclasses of ModuleDict, so a user's model written as one had the
    part it froze in eval() switched to training by fit; only the objectives' own containers (the torch classes
    themselves) are looked into."""
    from hybridpgm.module_modes import train_models_in_eval

    class Regressor(nn.ModuleDict):
        pass

    model = Regressor({"features": nn.BatchNorm1d(3), "head": nn.Linear(3, 1)})
    model["features"].eval()
    train_models_in_eval(model)
    assert model.training and not model["features"].training
    container = nn.ModuleDict({"generator": nn.BatchNorm1d(3).eval()})
    train_models_in_eval(container)
    assert container["generator"].training
