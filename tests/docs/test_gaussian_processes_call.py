"""What docs/gaussian_processes.md says of ``model(x)`` for the exact GPs (``DeepKernelGP``, ``GPLSTM``) holds.

The page's DKL example ends with GPyTorch's prediction call, ``model.eval(); model(x_test)`` and
``model.likelihood(...)``; ``tests/test_docs_examples.py`` only runs it.  Here the names it defines are checked
against :meth:`~hybridpgm.gp.DeepKernelGP.posterior` and :meth:`~hybridpgm.gp.DeepKernelGP.predict`, the
calls the page says the train-mode ``ConfigError`` names are looked for in its message, and the page's other
claims (GPyTorch's ``ExactMarginalLogLikelihood`` refuses the model; ``prior_mode`` gives the prior of a
``GPLSTM`` too; ``fit`` keeps the mode; an ``SVDeepKernelGP`` call is q(f) in either mode) are run.
"""

from __future__ import annotations

import re

import gpytorch
import pyro
import pytest
import torch

import hybridpgm
from hybridpgm.errors import ConfigError
from hybridpgm.gp import GPLSTM, DeepKernelGP, ExactMLLObjective, SVDeepKernelGP
from hybridpgm.nn import mlp
from tests.test_docs_examples import ROOT, SETUP, blocks, two_steps

PAGE = "docs/gaussian_processes.md"

pytestmark = pytest.mark.filterwarnings(
    "ignore::linear_operator.utils.warnings.NumericalWarning",  # GPyTorch's numerics: jitter added
    "ignore:Sparse invariant checks are implicitly disabled",  # torch's one-time KISS-GP warning
)


def _page_call_block():
    """The page's python block that calls ``model(x_test)``, and its index."""
    found = [(index, code) for index, _, code in blocks(PAGE) if "model(x_test)" in code]
    assert len(found) == 1, f"{PAGE}: expected one python block calling model(x_test), found {len(found)}"
    return found[0]


def _same(got, expected):
    assert isinstance(got, gpytorch.distributions.MultivariateNormal)
    torch.testing.assert_close(got.mean, expected.mean)
    torch.testing.assert_close(got.covariance_matrix, expected.covariance_matrix)


def test_the_page_example_predicts_the_gpytorch_way(monkeypatch):
    index, code = _page_call_block()
    monkeypatch.setattr(hybridpgm, "fit", two_steps(hybridpgm.fit))
    namespace: dict = {}
    with torch.random.fork_rng(), pyro.get_param_store().scope():
        torch.manual_seed(0)
        exec(SETUP.get((PAGE, index), ""), namespace)
        exec(compile(code, f"{PAGE} block {index}", "exec"), namespace)
    model, x_test = namespace["model"], namespace["x_test"]
    assert not model.training
    _same(namespace["f_test"], model.posterior(x_test))
    expected = model.predict(x_test)
    torch.testing.assert_close(namespace["y_test_dist"].mean.detach(), expected.mean)
    torch.testing.assert_close(namespace["y_test_dist"].variance.detach(), expected.variance)
    torch.testing.assert_close(namespace["pred"].mean, expected.mean)


def _dkl():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(24, 3, generator=g, dtype=torch.float64)
    y = torch.sin(3 * x[:, 0]) + 0.1 * torch.randn(24, generator=g, dtype=torch.float64)
    torch.manual_seed(0)
    return DeepKernelGP(x, y, mlp([3, 8, 2]).double(), grid_size=16), x, y


def test_train_mode_error_names_what_the_page_says():
    text = (ROOT / PAGE).read_text(encoding="utf-8")
    said = re.search(r"`model\(x\)` raises `ConfigError` naming (.*?): a GPyTorch", text, re.S)
    assert said, f"{PAGE}: the train-mode paragraph of model(x) is gone"
    names = re.findall(r"`(?:model\.)?([a-z_]+)\(", said.group(1))
    assert {"eval", "posterior", "predict", "prior", "marginal_log_likelihood"} <= set(names)
    model, x, _ = _dkl()
    assert model.training  # a new model's mode, as the page says
    with pytest.raises(ConfigError) as caught:
        model(x[:4])
    for name in names:
        assert f"{name}(" in str(caught.value), name


def test_fit_keeps_the_mode_and_gpytorch_mll_refuses_the_model():
    for mode in (True, False):
        model, x, y = _dkl()
        model.train(mode)
        hybridpgm.fit(ExactMLLObjective(model), (x, y), batch_size=len(x), max_steps=1, progress=False)
        assert model.training is mode
    with pytest.raises(RuntimeError, match="GP object"):
        gpytorch.mlls.ExactMarginalLogLikelihood(model.likelihood, model)


@pytest.mark.parametrize("mode", [True, False])
def test_prior_mode_gives_the_prior_of_a_gp_lstm_too(mode):
    g = torch.Generator().manual_seed(1)
    torch.manual_seed(0)
    model = GPLSTM(torch.randn(20, 5, 1, generator=g), torch.randn(20, generator=g), hidden_size=4,
                   num_features=2)
    xt = torch.randn(4, 5, 1, generator=g)
    model.train(mode)
    with gpytorch.settings.prior_mode(True):
        got = model(xt)
    _same(got, model.prior(xt))


def test_a_variational_call_is_q_f_in_either_mode():
    torch.manual_seed(0)
    x = torch.rand(32, 3)
    net = mlp([3, 8, 2])
    sv = SVDeepKernelGP(net, num_features=2, num_data=32, inducing_points=net(x[:8]).detach())
    with torch.no_grad():
        trained = sv(x[:5])
        sv.eval()
        evaluated = sv(x[:5])
    torch.testing.assert_close(trained.mean, evaluated.mean)
    torch.testing.assert_close(trained.covariance_matrix, evaluated.covariance_matrix, atol=1e-5, rtol=1e-4)
