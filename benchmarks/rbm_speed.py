"""Speed of CD-1 training of an RBM: hybridpgm (``ContrastiveDivergence`` through
``fit``) against a minimal hand-written PyTorch CD-1 loop and scikit-learn's
``BernoulliRBM``, in the same run.

All train a 784 x 500 RBM (by default) with batch 100 and plain SGD on
statically binarized Fashion-MNIST.  The hand-written loop computes the CD-1
update in closed form (five matrix products per batch, no autograd); hybridpgm
minimises the free-energy surrogate, whose value and gradient the RBM writes out
(:mod:`hybridpgm.energy.free_energy_gap`: the same five products, the second
weight product accumulated in place into the first), which ``fit`` takes
without autograd (``ContrastiveDivergence.loss_and_gradients``), and goes
through ``fit`` (shuffled batches, the finite guard with its one host read per
step, history); a third row runs the same objective in a bare loop to separate
the cost of ``fit``, and a fourth applies the hand-written loop's gradient
with ``torch.optim.SGD`` (``zero_grad``, ``step``), as ``fit`` must apply the
optimizer it is given: the like-for-like reference for what hybridpgm adds.
scikit-learn's ``BernoulliRBM`` trains with PCD-1 (its only algorithm): the
same number of products per batch.

Interleaving is per step, so that the four loops see the same machine load:
each round is one ``fit`` epoch, and after every ``fit`` step a callback runs
one step of each hand-written loop and one of the bare loop (the order
alternating); scikit-learn's epoch follows each ``fit`` epoch.  Medians over all
steps of ``--rounds`` rounds, ``--threads`` threads (default one, NumPy's
BLAS included); ``fit``'s per-call overhead (setup, first step, end) is
measured apart and added to its epoch-equivalent time.  Results go to
``results/rbm_speed.json``.  ``--interleave epoch`` times whole epochs instead,
one of each loop per round in rotating order (``fit``'s with its setup and
end), so that every loop runs with the caches it leaves itself, as in real
training; results go to ``results/rbm_speed_epochs.json``.

    python benchmarks/rbm_speed.py                                   # full epoch, 50,000 images
    python benchmarks/rbm_speed.py --num-examples 5000 --rounds 3    # quick
    python benchmarks/rbm_speed.py --interleave epoch                # whole epochs -> results/rbm_speed_epochs.json
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time

import numpy as np
import torch
from threadpoolctl import threadpool_limits

import hybridpgm
from hybridpgm.data import load_dataset
from hybridpgm.energy import RBM
from hybridpgm.infer import ContrastiveDivergence
from hybridpgm.train.device import resolve_device

from common import write_result


class HandWrittenCD1:
    """The reference: CD-1 with the update written out, no autograd, no optimizer object.
    Each call is one batch (the data are visited in a random order, cyclically)."""

    def __init__(self, x: torch.Tensor, hidden: int, batch_size: int, lr: float, seed: int):
        torch.manual_seed(seed)
        self.x, self.batch_size, self.lr, self.position = x, batch_size, lr, 0
        self.w = torch.randn(x.shape[1], hidden, device=x.device) * 0.01
        self.b = torch.zeros(x.shape[1], device=x.device)
        self.c = torch.zeros(hidden, device=x.device)
        self.order = torch.randperm(x.shape[0], device=x.device)

    def chain(self) -> tuple[torch.Tensor, ...]:
        """The next batch ``v``, its hidden probabilities ``ph``, and the CD-1 sample ``v1`` with its ``ph1``."""
        w, b, c = self.w, self.b, self.c
        v = self.x[self.order[self.position:self.position + self.batch_size]]
        self.position = (self.position + self.batch_size) % self.x.shape[0]
        ph = torch.sigmoid(v @ w + c)
        h = (torch.rand_like(ph) < ph).to(v.dtype)
        pv = torch.sigmoid(h @ w.T + b)
        v1 = (torch.rand_like(pv) < pv).to(v.dtype)
        ph1 = torch.sigmoid(v1 @ w + c)
        return v, ph, v1, ph1

    def __call__(self) -> None:
        v, ph, v1, ph1 = self.chain()
        scale = self.lr / v.shape[0]
        self.w += scale * (v.T @ ph - v1.T @ ph1)
        self.b += scale * (v - v1).sum(0)
        self.c += scale * (ph - ph1).sum(0)


class HandWrittenCD1WithOptimizer(HandWrittenCD1):
    """The same closed-form CD-1 gradient, stored in ``.grad`` and applied by ``torch.optim.SGD``
    (``zero_grad`` and ``step``), as ``fit`` must apply any optimizer it is given: the like-for-like
    reference for what the objective and ``fit`` add to a step."""

    def __init__(self, x: torch.Tensor, hidden: int, batch_size: int, lr: float, seed: int):
        super().__init__(x, hidden, batch_size, lr, seed)
        self.params = [torch.nn.Parameter(t) for t in (self.w, self.b, self.c)]
        self.w, self.b, self.c = (p.detach() for p in self.params)  # the chain reads the parameters' storage
        self.optimizer = torch.optim.SGD(self.params, lr=lr)

    def __call__(self) -> None:
        v, ph, v1, ph1 = self.chain()
        self.optimizer.zero_grad(set_to_none=True)
        inv = 1.0 / v.shape[0]
        gw, gb, gc = self.params
        gw.grad = inv * (v1.T @ ph1 - v.T @ ph)
        gb.grad = inv * (v1 - v).sum(0)
        gc.grad = inv * (ph1 - ph).sum(0)
        self.optimizer.step()


class HybridpgmLoop:
    """The same objective as ``fit`` trains, in a bare loop (no ``fit``): the loss and gradients it
    writes out, applied by ``torch.optim.SGD``, as ``fit`` applies them; one batch per call."""

    def __init__(self, x: torch.Tensor, hidden: int, batch_size: int, lr: float, seed: int):
        torch.manual_seed(seed)
        self.objective = ContrastiveDivergence(RBM(x.shape[1], hidden).to(x.device), k=1, check_data=False)
        self.params = self.objective.players()["model"]
        self.optimizer = torch.optim.SGD(self.params, lr=lr)
        self.x, self.batch_size, self.position = x, batch_size, 0
        self.order = torch.randperm(x.shape[0], device=x.device)

    def __call__(self) -> None:
        v = self.x[self.order[self.position:self.position + self.batch_size]]
        self.position = (self.position + self.batch_size) % self.x.shape[0]
        self.optimizer.zero_grad(set_to_none=True)
        _, grads = self.objective.loss_and_gradients("model", v)  # written out, as fit takes them
        for p in self.params:
            p.grad = grads[p]
        self.optimizer.step()


class Interleave:
    """A ``fit`` callback: after each step of ``fit``, one step of every other
    method, each timed; the time from the callback's exit to its next entry is
    ``fit``'s step (the whole loop iteration)."""

    def __init__(self, methods: dict, device: torch.device):
        self.methods, self.device = methods, device
        self.times = {"hybridpgm_fit": [], **{name: [] for name in methods}}
        self.left = None

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def on_step_end(self, info) -> None:
        self._sync()
        now = time.perf_counter()
        if self.left is not None:
            self.times["hybridpgm_fit"].append(now - self.left)
        for name in (list(self.methods) if info.step % 2 else list(reversed(self.methods))):
            start = time.perf_counter()
            self.methods[name]()
            self._sync()
            self.times[name].append(time.perf_counter() - start)
        self.left = time.perf_counter()


def fit_epoch(x: torch.Tensor, hidden: int, batch_size: int, lr: float, seed: int, callbacks=()) -> None:
    torch.manual_seed(seed)
    rbm = RBM(x.shape[1], hidden)
    hybridpgm.fit(ContrastiveDivergence(rbm, k=1, check_data=False), x, epochs=1, batch_size=batch_size,
                  optim=functools.partial(torch.optim.SGD, lr=lr), device=x.device, seed=seed, progress=False,
                  callbacks=callbacks)


def sklearn_rbm(x: np.ndarray, hidden: int, batch_size: int, lr: float, seed: int) -> None:
    from sklearn.neural_network import BernoulliRBM

    BernoulliRBM(n_components=hidden, learning_rate=lr, batch_size=batch_size, n_iter=1, random_state=seed).fit(x)


def _config(args: argparse.Namespace, x: torch.Tensor, device, steps: int) -> dict:
    return {"dataset": args.dataset, "num_examples": x.shape[0], "visible": x.shape[1], "hidden": args.hidden,
            "batch_size": args.batch_size, "rounds": args.rounds, "device": str(device),
            "threads": torch.get_num_threads(), "steps_per_epoch": steps}


def main(args: argparse.Namespace) -> dict:
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    data = load_dataset(args.dataset, binarize="static", seed=args.seed).train.x[: args.num_examples]
    x = data.to(device)
    x_np = data.numpy()
    steps = -(-x.shape[0] // args.batch_size)
    step_methods = {
        "hand_written_torch": HandWrittenCD1(x, args.hidden, args.batch_size, args.lr, args.seed),
        "hand_written_torch_optim": HandWrittenCD1WithOptimizer(x, args.hidden, args.batch_size, args.lr, args.seed),
        "hybridpgm_loop": HybridpgmLoop(x, args.hidden, args.batch_size, args.lr, args.seed),
    }
    step_times = {"hybridpgm_fit": [], **{name: [] for name in step_methods}}
    fit_calls, sklearn_epochs = [], []
    with threadpool_limits(torch.get_num_threads()):  # same thread count for NumPy's BLAS
        fit_epoch(x[:1000], args.hidden, args.batch_size, args.lr, args.seed)  # warm-up: lazy imports,
        for method in step_methods.values():  # allocator, BLAS init
            method()
        if not args.skip_sklearn:
            sklearn_rbm(x_np[:1000], args.hidden, args.batch_size, args.lr, args.seed)
        if args.interleave == "epoch":
            return _epoch_interleaved(args, x, x_np, step_methods, steps, device)
        for r in range(args.rounds):  # a fit epoch with the other loops' steps interleaved, then sklearn's epoch
            interleave = Interleave(step_methods, device)
            start = time.perf_counter()
            fit_epoch(x, args.hidden, args.batch_size, args.lr, args.seed + r, callbacks=[interleave])
            total = time.perf_counter() - start
            fit_calls.append(total - sum(t for ts in interleave.times.values() for t in ts))  # setup, first step, end
            for name, ts in interleave.times.items():
                step_times[name] += ts
            if not args.skip_sklearn:
                start = time.perf_counter()
                sklearn_rbm(x_np, args.hidden, args.batch_size, args.lr, args.seed + r)
                sklearn_epochs.append(time.perf_counter() - start)
    step_median = {name: statistics.median(t) for name, t in step_times.items()}
    hand = step_median["hand_written_torch"]
    call_overhead = statistics.median(fit_calls)
    # an epoch of each loop as if run alone: its median step times the steps; for fit, the steps the callback
    # times (all but the first: steps - 1) plus the per-call overhead, which already holds the first step
    epoch = {name: steps * t for name, t in step_median.items()}
    epoch["hybridpgm_fit"] = (steps - 1) * step_median["hybridpgm_fit"] + call_overhead
    payload = {
        "config": _config(args, x, device, steps),
        "interleaving": "per step: each fit step is followed by one step of each hand-written loop and one of "
                        "the bare hybridpgm loop (order alternating); scikit-learn's epoch runs after each fit epoch",
        "step_ms_median": {name: 1000.0 * t for name, t in step_median.items()},
        "steps_timed_each": {name: len(t) for name, t in step_times.items()},
        "fit_call_overhead_s_median": call_overhead,
        "epoch_seconds_equivalent": epoch,
        "ratio_hybridpgm_fit_over_hand_written_step": step_median["hybridpgm_fit"] / hand,
        "ratio_hybridpgm_loop_over_hand_written_step": step_median["hybridpgm_loop"] / hand,
        "ratio_hybridpgm_fit_over_hand_written_epoch": epoch["hybridpgm_fit"] / epoch["hand_written_torch"],
        "ratio_hand_written_optim_over_hand_written_step": step_median["hand_written_torch_optim"] / hand,
        "ratio_hybridpgm_fit_over_hand_written_optim_step":
            step_median["hybridpgm_fit"] / step_median["hand_written_torch_optim"],
    }
    if sklearn_epochs:
        payload["sklearn_epoch_seconds"] = {"median": statistics.median(sklearn_epochs), "all": sklearn_epochs}
        payload["speedup_hybridpgm_fit_over_sklearn_epoch"] = statistics.median(sklearn_epochs) / epoch["hybridpgm_fit"]
    write_result("rbm_speed", payload, args.out)
    return payload


def _epoch_interleaved(args, x, x_np, step_methods: dict, steps: int, device) -> dict:
    """Whole epochs, one of each loop per round (the order rotating from round to round), each timed
    as a user would time it: ``fit``'s epoch with its setup and end, a hand-written epoch as ``steps``
    calls in a row.  Each loop then runs with the caches as it leaves them itself, as in real training;
    the per-step protocol runs every loop's step right after the other loops' steps."""
    runs = {"hybridpgm_fit": lambda r: fit_epoch(x, args.hidden, args.batch_size, args.lr, args.seed + r)}
    for name, method in step_methods.items():
        runs[name] = lambda r, method=method: [method() for _ in range(steps)]
    if not args.skip_sklearn:
        runs["sklearn"] = lambda r: sklearn_rbm(x_np, args.hidden, args.batch_size, args.lr, args.seed + r)
    times, names = {name: [] for name in runs}, list(runs)
    for r in range(args.rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            start = time.perf_counter()
            runs[name](r)
            if device.type == "cuda":
                torch.cuda.synchronize(device)
            times[name].append(time.perf_counter() - start)
    epoch = {name: statistics.median(t) for name, t in times.items()}
    hand = epoch["hand_written_torch"]
    payload = {
        "config": _config(args, x, device, steps),
        "interleaving": "per epoch: each round runs one whole epoch of every loop (fit's with its setup and end), "
                        "the order rotating from round to round",
        "epoch_seconds_median": epoch,
        "epoch_seconds_all": times,
        "ratio_hybridpgm_fit_over_hand_written_epoch": epoch["hybridpgm_fit"] / hand,
        "ratio_hybridpgm_loop_over_hand_written_epoch": epoch["hybridpgm_loop"] / hand,
        "ratio_hand_written_optim_over_hand_written_epoch": epoch["hand_written_torch_optim"] / hand,
        "ratio_hybridpgm_fit_over_hand_written_optim_epoch":
            epoch["hybridpgm_fit"] / epoch["hand_written_torch_optim"],
    }
    if "sklearn" in epoch:
        payload["speedup_hybridpgm_fit_over_sklearn_epoch"] = epoch["sklearn"] / epoch["hybridpgm_fit"]
    write_result("rbm_speed_epochs", payload, args.out)
    return payload


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=("fashion-mnist", "digits"), default="fashion-mnist",
                        help="the training images (digits: the bundled 8x8 set, for dry runs without Debian's data)")
    parser.add_argument("--num-examples", type=int, default=50000)
    parser.add_argument("--hidden", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch/BLAS threads (0: torch's default)")
    parser.add_argument("--skip-sklearn", action="store_true")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--interleave", choices=("step", "epoch"), default="step",
                        help="step: every fit step followed by one step of each other loop (results/rbm_speed.json); "
                             "epoch: whole epochs in rotating order (results/rbm_speed_epochs.json)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="JSON path (default results/rbm_speed.json)")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
