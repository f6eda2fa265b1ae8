"""fit with an optimizer whose step takes a closure, torch.optim.LBFGS (hybridpgm/train/closure_step.py): the
closure's evaluations counted, clipped, accumulated over micro-batches, and resumed from a checkpoint."""

import functools

import pytest
import torch

from hybridpgm import fit
from tests.train.helpers import LinearRegression, regression_data


class _Counted(LinearRegression):
    """Least squares in float64, counting its loss's calls."""

    def __init__(self):
        super().__init__(d_in=5)
        self.module.double()
        self.calls = 0

    def loss(self, player, batch):
        self.calls += 1
        return super().loss(player, batch)


LBFGS = functools.partial(torch.optim.LBFGS, lr=1, max_iter=40, line_search_fn="strong_wolfe", tolerance_grad=1e-12,
                          tolerance_change=1e-15)


@pytest.mark.parametrize("accumulate", [1, 3])
def test_lbfgs_reaches_the_least_squares_solution_and_evaluates_once_per_closure_call(accumulate):
    """Found by an audit: optim=torch.optim.LBFGS failed at the first step with a raw TypeError (step() missing
    its closure).  fit steps it with a closure over the player's micro-batches (accumulation included): one
    step lands on the least-squares solution, the history's first loss is the one at the starting parameters,
    and the loss runs accumulate times per function evaluation L-BFGS counts (the first evaluation is the one
    fit ran already, not repeated)."""
    x, y = (t.double() for t in regression_data(48))
    objective = _Counted()
    start = ((objective.module(x) - y) ** 2).mean().item()
    result = fit(objective, (x, y), batch_size=48, accumulate=accumulate, max_steps=2, seed=0, shuffle=False,
                 progress=False, optim=LBFGS, device="cpu")
    design = torch.cat([x, torch.ones(48, 1, dtype=torch.float64)], 1)
    solution = torch.linalg.lstsq(design, y).solution.reshape(-1)
    found = torch.cat([objective.module.weight.detach().reshape(-1), objective.module.bias.detach()])
    assert (found - solution).abs().max().item() < 1e-8
    optimum = ((design @ solution - y.reshape(-1)) ** 2).mean().item()
    assert result.history.loss["fit"][0] == pytest.approx(start, rel=1e-12)
    assert result.history.loss["fit"][1] == pytest.approx(optimum, rel=1e-10)
    state = result.optimizers["fit"].state_dict()["state"][0]
    assert objective.calls == state["func_evals"] * accumulate > 2 * accumulate


def test_lbfgs_with_clipping_clips_every_evaluation():
    """Each evaluation of the closure is clipped as the first one is: with a tiny clip_grad_norm every gradient
    L-BFGS sees has that norm at most (recorded from inside the optimizer's step)."""
    x, y = (t.double() for t in regression_data(32))
    seen = []

    class Recording(torch.optim.LBFGS):
        def step(self, closure):
            def recorded():
                loss = closure()
                seen.append(torch.cat([p.grad.reshape(-1) for p in self.param_groups[0]["params"]]).norm().item())
                return loss
            return super().step(recorded)

    fit(_Counted(), (x, y), batch_size=32, max_steps=1, seed=0, progress=False, clip_grad_norm=1e-3, device="cpu",
        optim=functools.partial(Recording, lr=1e-3, max_iter=5))
    assert len(seen) > 1 and max(seen) <= 1e-3 * (1 + 1e-9)


def test_lbfgs_trains_a_bayes_net_to_its_table_mle():
    """Found by an audit: optim=torch.optim.LBFGS failed with a raw TypeError.  A Bayesian network with table CPDs
    and complete data, trained by fit with L-BFGS through SVIObjective (with accumulation too), reaches its
    maximum-likelihood tables, the normalised counts, to 1e-6."""
    from hybridpgm.graphs import BayesNet, cpd
    from hybridpgm.infer import SVIObjective

    g = torch.Generator().manual_seed(0)
    a = torch.multinomial(torch.tensor([0.5, 0.3, 0.2]), 60, replacement=True, generator=g)
    b = torch.bernoulli(torch.tensor([0.2, 0.7, 0.5])[a], generator=g).long()
    counts_a = torch.bincount(a, minlength=3).double()
    counts_ab = torch.zeros(3, 2, dtype=torch.float64).index_put_((a, b), torch.ones(60, dtype=torch.float64),
                                                                  accumulate=True)
    for accumulate in (1, 3):
        bn = BayesNet()
        bn.add("a", cpd.Table(torch.full((3,), 1 / 3, dtype=torch.float64)))
        bn.add("b", cpd.Table(torch.full((3, 2), 0.5, dtype=torch.float64), ["a"]))
        fit(SVIObjective(bn.model, bn.guide), torch.stack([a, b], 1), batch_size=60, accumulate=accumulate,
            max_steps=3, seed=0, progress=False, device="cpu",
            optim=functools.partial(torch.optim.LBFGS, lr=1, max_iter=50, line_search_fn="strong_wolfe",
                                    tolerance_grad=1e-9, tolerance_change=1e-12))
        assert (bn.cpds["a"].probs - counts_a / counts_a.sum()).abs().max().item() < 1e-6
        assert (bn.cpds["b"].probs - counts_ab / counts_ab.sum(-1, keepdim=True)).abs().max().item() < 1e-6


def test_an_lbfgs_run_resumed_from_its_checkpoint_ends_as_an_uninterrupted_one(tmp_path):
    """L-BFGS's state (its curvature pairs, the last direction and step) is checkpointed and restored: a run stopped
    after 2 steps and resumed to 4 ends bit for bit where 4 uninterrupted steps end."""
    x, y = regression_data(48)
    lbfgs = functools.partial(torch.optim.LBFGS, lr=1, max_iter=5)
    options = dict(batch_size=16, seed=0, progress=False, optim=lbfgs, device="cpu")
    fit(LinearRegression(), (x, y), max_steps=2, checkpoint=tmp_path / "c.pt", **options)
    resumed = LinearRegression()
    result = fit(resumed, (x, y), max_steps=4, checkpoint=tmp_path / "c.pt", **options)
    assert len(result.history.loss["fit"]) == 4
    straight = LinearRegression()
    fit(straight, (x, y), max_steps=4, **options)
    assert all(torch.equal(p, q) for p, q in zip(resumed.module.parameters(), straight.module.parameters()))


#: reductions that pass over a whole tensor, and the calls that read a tensor on the host
