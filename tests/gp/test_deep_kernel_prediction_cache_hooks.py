"""A kept prediction strategy is not used after a hook or a class change moves what the modules compute (audit:
caches): before, ``predict`` after a forward hook on the feature extractor combined training features computed
without the hook with test features computed with it (means 0.17 off conditioning from scratch)."""

from __future__ import annotations

import pytest
import torch

from tests.gp.test_deep_kernel_prediction_cache import _data, _fresh, _model, _same


def _tripled(module, inputs, output):
    return 3 * output


def _halved_input(module, inputs):
    return (inputs[0] / 2,)


@pytest.mark.parametrize("register", ["forward_hook", "forward_pre_hook"])
def test_a_hook_on_the_feature_extractor_is_seen(register):
    x, y = _data()
    model = _model(None, x, y).eval()
    x_test = _data(n=4, seed=1)[0]
    before = model.predict(x_test)
    handle = getattr(model.feature_extractor, "register_" + register)(
        _tripled if register == "forward_hook" else _halved_input)
    got = model.predict(x_test)
    assert _same(got, _fresh(model, x_test)) and not torch.equal(got.mean, before.mean)
    handle.remove()
    assert _same(model.predict(x_test), before)


def test_a_global_forward_hook_is_seen():
    x, y = _data()
    model = _model(None, x, y).eval()
    x_test = _data(n=4, seed=1)[0]
    model.predict(x_test)
    handle = torch.nn.modules.module.register_module_forward_hook(
        lambda module, inputs, output: 3 * output if isinstance(module, torch.nn.BatchNorm1d) else None)
    try:
        got = model.predict(x_test)
        assert _same(got, _fresh(model, x_test))
    finally:
        handle.remove()


def test_a_sub_module_s_class_change_is_seen():
    class Doubled(torch.nn.Tanh):
        def forward(self, x):
            return 2 * super().forward(x)

    x, y = _data()
    model = _model(None, x, y).eval()
    x_test = _data(n=4, seed=1)[0]
    model.predict(x_test)
    tanh = next(m for m in model.feature_extractor.modules() if isinstance(m, torch.nn.Tanh))
    tanh.__class__ = Doubled
    assert _same(model.predict(x_test), _fresh(model, x_test))
