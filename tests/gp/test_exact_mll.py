"""The exact marginal-likelihood objective and the DKL recipe (hybridpgm.gp.exact_mll)."""

from __future__ import annotations

import copy

import pytest
import torch

import hybridpgm
from hybridpgm.errors import ConfigError, DataError
from hybridpgm.gp import DeepKernelGP, ExactMLLObjective, train_deep_kernel

# a UserWarning or RuntimeWarning not ignored below fails the test (a later filter wins: the ignores, third-party
# warnings seen in this file, come after the errors)
pytestmark = pytest.mark.filterwarnings(
    "error::UserWarning",
    "error::RuntimeWarning",
    "ignore::linear_operator.utils.warnings.NumericalWarning",  # GPyTorch's numerics: CG not converged, jitter added
)


def test_the_objective_and_recipe_keep_their_former_import_path():
    import hybridpgm.gp.deep_kernel as deep_kernel
    import hybridpgm.gp.exact_mll as exact_mll

    assert deep_kernel.ExactMLLObjective is exact_mll.ExactMLLObjective is ExactMLLObjective
    assert deep_kernel.train_deep_kernel is exact_mll.train_deep_kernel is train_deep_kernel
    assert {"ExactMLLObjective", "train_deep_kernel"} <= set(deep_kernel.__all__)


def test_a_batch_that_is_not_a_pair_is_a_named_data_error():
    x = torch.linspace(0, 1, 10).unsqueeze(-1)
    objective = ExactMLLObjective(DeepKernelGP(x, torch.sin(6 * x[:, 0])))
    with pytest.raises(DataError, match=r"^ExactMLLObjective batches are \(x, y\), got a tensor of shape \(10, 1\)"):
        objective.loss("mll", x)
    with pytest.raises(DataError, match=r"got a tuple of 3 element\(s\)"):
        objective.loss("mll", (x, x[:, 0], x))
    with pytest.raises(ConfigError):
        objective.loss("elbo", (x, x[:, 0]))
    assert objective.players().keys() == {"mll"}


@pytest.mark.parametrize("accumulate, world_size, split", [(2, 1, r"accumulate=2 would split each batch into 2 "
                                                                  r"micro-batches"),
                                                           (1, 2, r"2 ranks \(torchrun\) would each take a shard")])
def test_the_exact_marginal_likelihood_is_not_split_over_micro_batches_or_ranks(monkeypatch, accumulate, world_size,
                                                                                 split):
    from hybridpgm.train import distributed

    monkeypatch.setattr(distributed, "current",
                        lambda timeout_s=None: distributed.DistributedContext(rank=0, world_size=world_size))
    g = torch.Generator().manual_seed(0)
    x = torch.rand(20, 1, generator=g)
    y = torch.sin(6 * x[:, 0])
    model = DeepKernelGP(x, y)
    before = copy.deepcopy(model.state_dict())
    assert ExactMLLObjective.decomposable is False
    with pytest.raises(ConfigError, match=rf"^ExactMLLObjective is not decomposable .*{split}"):
        hybridpgm.fit(ExactMLLObjective(model), (x, y), batch_size=20, accumulate=accumulate, progress=False, seed=0)
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())  # refused before any step


def test_train_deep_kernel_recipe_holds_out_and_refits():
    torch.manual_seed(1)
    x = torch.rand(80, 2) * 2 - 1
    y = torch.sin(3 * x[:, 0]) + 0.1 * torch.randn(80)
    model, run = train_deep_kernel(x, y, torch.nn.Sequential(torch.nn.Linear(2, 8), torch.nn.Tanh(),
                                                             torch.nn.Linear(8, 2)), max_steps=10, eval_every=5)
    assert model.train_x.shape[0] == 80 and run.best_step in (5, 10)
    pred = model.predict(x[:5])
    assert pred.mean.shape == (5,) and bool((pred.variance > 0).all())
