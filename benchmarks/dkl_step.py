"""Training-iteration time of deep kernel learning (KISS-GP): hybridpgm's
:class:`~hybridpgm.gp.DeepKernelGP` through :func:`hybridpgm.fit` against
GPyTorch's documented DKL example.

The reference follows GPyTorch's "Exact DKL (Deep Kernel Learning) Regression
w/ KISS-GP" notebook [1]: an ``ExactGP`` whose ``forward`` runs the feature
extractor ``d -> 1000 -> 500 -> 50 -> 2`` (ReLU), scales the features into
``[-1, 1]`` with ``ScaleToBounds``, and uses
``GridInterpolationKernel(ScaleKernel(RBFKernel(ard_num_dims=2)), grid_size=100)``;
it is trained by ``ExactMarginalLogLikelihood`` and Adam (``lr=0.01``, one
parameter group per part) in the notebook's loop (zero_grad, forward, loss,
backward, ``loss.item()``, step).  One departure: the notebook lets the grid
fit itself to the features; here both sides use the fixed grid over
``[-1, 1]^2`` so that they compute the same marginal likelihood (checked
before timing, at the same weights and the same random probe vectors of
GPyTorch's stochastic log-determinant), and the reference loses the per-call
bounds check of a data-fitted grid (so it can only get faster).

The elevators data of the notebook are not bundled; the inputs are ``n``
uniform points in ``[-1, 1]^18`` (its dimension) with a smooth standardized
target.  The sides alternate iteration by iteration (a ``fit`` callback runs
one reference iteration after each of hybridpgm's), one thread, so a change
of machine load hits both; each round restarts both from the same initial
weights with the same random probes.  The JSON holds the median seconds per
iteration of each side, their ratio, and the median of the paired per-step
ratios.  A third column times the hybridpgm model in the reference's
hand-written loop (no ``fit``), to separate the model from the training loop.

    python benchmarks/dkl_step.py                        # n = 2000, CPU, 5 rounds x 5 steps
    python benchmarks/dkl_step.py --n 64000 --device cuda

References:

1. GPyTorch documentation, examples/06_PyTorch_NN_Integration_DKL,
   ``KISSGP_Deep_Kernel_Regression_CUDA.ipynb``.
2. A. G. Wilson, Z. Hu, R. Salakhutdinov, E. P. Xing, *Deep Kernel Learning*, AISTATS 2016.
"""

from __future__ import annotations

import argparse
import copy
import functools
import math
import statistics
import sys
import time
import warnings
from argparse import Namespace
from pathlib import Path

import gpytorch
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median_ms, prepare_torch, write_result  # noqa: E402

import hybridpgm  # noqa: E402
from hybridpgm.gp import DeepKernelGP, ExactMLLObjective  # noqa: E402


def feature_extractor(data_dim: int, hidden: list[int], features: int) -> torch.nn.Sequential:
    """The notebook's ``LargeFeatureExtractor`` (Linear/ReLU stack, no activation at the end)."""
    net = torch.nn.Sequential()
    sizes = [data_dim, *hidden]
    for i, (a, b) in enumerate(zip(sizes, sizes[1:]), start=1):
        net.add_module(f"linear{i}", torch.nn.Linear(a, b))
        net.add_module(f"relu{i}", torch.nn.ReLU())
    net.add_module(f"linear{len(sizes)}", torch.nn.Linear(sizes[-1], features))
    return net


class DocumentedDKL(gpytorch.models.ExactGP):
    """GPyTorch's KISS-GP deep kernel regression model, as in its DKL example."""

    def __init__(self, train_x, train_y, likelihood, net, features: int, grid_size: int):
        super().__init__(train_x, train_y, likelihood)
        self.mean_module = gpytorch.means.ConstantMean()
        self.covar_module = gpytorch.kernels.GridInterpolationKernel(
            gpytorch.kernels.ScaleKernel(gpytorch.kernels.RBFKernel(ard_num_dims=features)),
            num_dims=features, grid_size=grid_size, grid_bounds=[(-1.0, 1.0)] * features)
        self.feature_extractor = net
        self.scale_to_bounds = gpytorch.utils.grid.ScaleToBounds(-1.0, 1.0)

    def forward(self, x):
        projected = self.scale_to_bounds(self.feature_extractor(x))
        return gpytorch.distributions.MultivariateNormal(self.mean_module(projected), self.covar_module(projected))


def make_data(n: int, dim: int, seed: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(n, dim, generator=g) * 2 - 1
    w = torch.randn(dim, generator=g) / math.sqrt(dim)
    y = torch.sin(3 * x @ w) + 0.5 * x[:, 0] * x[:, 1] + 0.1 * torch.randn(n, generator=g)
    return x.to(device), ((y - y.mean()) / y.std()).to(device)


def _sync(device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class RNGStream:
    """A private torch RNG stream (CPU and the device), so that interleaved
    sides each draw the same random probe vectors as when run alone."""

    def __init__(self, seed: int, device):
        self.device = device
        with self.fork():
            torch.manual_seed(seed)
            self.state = self._get()

    def fork(self):
        return torch.random.fork_rng(devices=[self._cuda_index()] if self.device.type == "cuda" else [])

    def _cuda_index(self) -> int:
        return self.device.index if self.device.index is not None else torch.cuda.current_device()

    def _get(self):
        if self.device.type == "cuda":
            return torch.get_rng_state(), torch.cuda.get_rng_state(self._cuda_index())
        return torch.get_rng_state(), None

    def run(self, fn):
        with self.fork():
            torch.set_rng_state(self.state[0])
            if self.state[1] is not None:
                torch.cuda.set_rng_state(self.state[1], self._cuda_index())
            out = fn()
            self.state = self._get()
        return out


class HandLoop:
    """A model trained by the notebook's hand-written loop, one timed step at a time."""

    def __init__(self, model: torch.nn.Module, loss, param_groups, device):
        self.model, self.loss, self.param_groups, self.device = model, loss, param_groups, device
        self.initial = copy.deepcopy(model.state_dict())

    def start(self, lr: float, seed: int) -> None:
        self.model.load_state_dict(self.initial)
        self.model.train()
        self.optimizer = torch.optim.Adam(self.param_groups(), lr=lr)
        self.rng = RNGStream(seed, self.device)
        self.times, self.losses = [], []

    def step(self) -> None:
        def run():
            _sync(self.device)
            start = time.perf_counter()
            self.optimizer.zero_grad()
            loss = self.loss()
            loss.backward()
            value = loss.item()
            self.optimizer.step()
            _sync(self.device)
            return time.perf_counter() - start, value
        seconds, value = self.rng.run(run)
        self.times.append(seconds)
        self.losses.append(value)


def reference_loop(x, y, net, args) -> HandLoop:
    """The notebook: ``output = model(train_x); loss = -mll(output, train_y)``, Adam over four groups."""
    likelihood = gpytorch.likelihoods.GaussianLikelihood()
    model = DocumentedDKL(x, y, likelihood, net, args.features, args.grid_size).to(x.device)
    mll = gpytorch.mlls.ExactMarginalLogLikelihood(likelihood, model)
    groups = lambda: [{"params": model.feature_extractor.parameters()},  # noqa: E731
                      {"params": model.covar_module.parameters()},
                      {"params": model.mean_module.parameters()},
                      {"params": model.likelihood.parameters()}]
    return HandLoop(model, lambda: -mll(model(x), y), groups, x.device)


def hybridpgm_loop(x, y, net, args) -> HandLoop:
    """The hybridpgm model in the same hand-written loop (no ``fit``)."""
    model = DeepKernelGP(x, y, net, grid_size=args.grid_size).to(x.device)
    return HandLoop(model, lambda: -model.marginal_log_likelihood(x, y), model.parameters, x.device)


class _Interleave:
    """A ``fit`` callback: after each hybridpgm step, one step of every hand loop.  It also times ``fit``'s
    steps: from ``on_fit_start`` (or the previous callback's exit) to the next ``on_step_end``, the device
    synchronised at both ends (``history.examples_per_second`` is read off the host clock without a
    synchronisation, so on CUDA it would leave the step's queued kernels to the next timing).  That is the
    whole loop iteration: batch, update, loss read back, history and the loop's own bookkeeping."""

    def __init__(self, loops, device):
        self.loops, self.device = loops, device
        self.times, self.left = [], None

    def on_fit_start(self, start) -> None:
        _sync(self.device)
        self.left = time.perf_counter()

    def on_step_end(self, info) -> None:
        _sync(self.device)
        self.times.append(time.perf_counter() - self.left)
        for loop in self.loops:
            loop.step()
        _sync(self.device)
        self.left = time.perf_counter()


def run_round(model: DeepKernelGP, initial, loops, x, y, args, seed: int) -> tuple[list[float], list[float]]:
    """``args.steps`` iterations of :func:`hybridpgm.fit` (full batch, as
    :func:`~hybridpgm.gp.train_deep_kernel` runs it), each followed by one step of
    every hand loop: the sides alternate step by step (A, B, A, B ...).  ``fit``
    seeds torch with ``seed``; the hand loops draw from their own streams seeded alike.
    Returns fit's per-step seconds (the step alone, callbacks excluded, synchronised: :class:`_Interleave`)
    and losses."""
    model.load_state_dict(initial)
    for loop in loops:
        loop.start(args.lr, seed)
    interleave = _Interleave(loops, x.device)
    result = hybridpgm.fit(ExactMLLObjective(model), (x, y), batch_size=x.shape[0],
                           max_steps=args.steps, shuffle=False, progress=False, seed=seed, device=x.device,
                           callbacks=[interleave], optim=functools.partial(torch.optim.Adam, lr=args.lr))
    return interleave.times, result.history.loss["mll"]


def check_same_model(ref: HandLoop, ours: DeepKernelGP, x, y, seed: int) -> tuple[float, float]:
    """Both negative marginal likelihoods at the initial weights, with the same random probes."""
    ref.model.train()
    ours.train()
    with torch.no_grad():
        torch.manual_seed(seed)
        a = float(ref.loss())
        torch.manual_seed(seed)
        b = float(-ours.marginal_log_likelihood(x, y))
    if not math.isclose(a, b, rel_tol=1e-4, abs_tol=1e-5):
        raise RuntimeError(f"the two DKL models disagree at the same weights: reference loss {a}, hybridpgm {b}")
    return a, b


def main(args: argparse.Namespace) -> dict:
    prepare_torch(args)
    warnings.simplefilter("ignore")  # GPyTorch's CG-convergence warnings, on both sides alike
    device = torch.device(args.device)
    x, y = make_data(args.n, args.dim, args.seed, device)
    torch.manual_seed(args.seed)
    net = feature_extractor(args.dim, args.hidden, args.features).to(device)
    reference = reference_loop(x, y, copy.deepcopy(net), args)
    plain = hybridpgm_loop(x, y, copy.deepcopy(net), args)
    ours = DeepKernelGP(x, y, copy.deepcopy(net), grid_size=args.grid_size).to(device)
    initial = copy.deepcopy(ours.state_dict())
    ref_loss, our_loss = check_same_model(reference, ours, x, y, args.seed)

    loops = [reference, plain]
    if args.warmup:
        run_round(ours, initial, loops, x, y, Namespace(**{**vars(args), "steps": args.warmup}), args.seed)
    fit_times, ref_times, plain_times, first = [], [], [], []
    for r in range(args.rounds):
        ours_t, ours_losses = run_round(ours, initial, loops, x, y, args, args.seed + r)
        fit_times += ours_t
        ref_times += reference.times
        plain_times += plain.times
        first.append([[reference.losses[i], ours_losses[i], plain.losses[i]] for i in (0, -1)])
    paired = [a / b for a, b in zip(fit_times, ref_times)]
    result = {
        "what": "seconds per DKL training iteration (forward, backward, Adam step, loss to host), KISS-GP",
        "reference": "GPyTorch's documented KISS-GP DKL example (ExactGP + GridInterpolationKernel(ScaleKernel(RBF)) "
                     "on ScaleToBounds'd MLP features, ExactMarginalLogLikelihood, Adam), fixed grid [-1, 1]^F",
        "method": "sides alternate step by step (hybridpgm.fit step, reference step, hybridpgm-model hand-loop "
                  "step, ...); each round restarts all from the same initial weights and seeds",
        "versions": {"torch": torch.__version__, "gpytorch": gpytorch.__version__},
        "config": {"n": args.n, "dim": args.dim, "hidden": args.hidden, "features": args.features,
                   "grid_size": args.grid_size, "lr": args.lr, "rounds": args.rounds, "steps_per_round": args.steps,
                   "threads": torch.get_num_threads(), "device": str(device),
                   "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"},
        "same_model": {"reference_loss_at_init": ref_loss, "hybridpgm_loss_at_init": our_loss,
                       "first_and_last_step_losses_reference_fit_plain": first},
        "reference_median_step_ms": median_ms(ref_times),
        "hybridpgm_fit_median_step_ms": median_ms(fit_times),
        "hybridpgm_model_plain_loop_median_step_ms": median_ms(plain_times),
        "ratio_hybridpgm_fit_over_reference": median_ms(fit_times) / median_ms(ref_times),
        "ratio_hybridpgm_model_over_reference": median_ms(plain_times) / median_ms(ref_times),
        "median_paired_step_ratio_fit_over_reference": statistics.median(paired),
        "target_ratio": 1.05,
    }
    write_result("dkl_step", result, args.out)
    return result


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000, help="training points")
    parser.add_argument("--dim", type=int, default=18, help="input dimension (elevators: 18)")
    parser.add_argument("--hidden", type=int, nargs="+", default=[1000, 500, 50])
    parser.add_argument("--features", type=int, default=2)
    parser.add_argument("--grid-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.01)
    parser.add_argument("--steps", type=int, default=5, help="iterations per round and side")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=1, help="untimed iterations of each side first")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--out", default=None, help="JSON path (default benchmarks/results/dkl_step.json)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
