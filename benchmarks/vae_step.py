"""Training-step time of hybridpgm's VAE against a hand-written PyTorch VAE of
the same architecture computing the same single-sample ELBO, interleaved.

All sides use Adam, the same MLPs (x -> hidden -> 2z, z -> hidden -> x), a
Bernoulli likelihood and a reparameterized Gaussian guide, and read the loss
back every step.  The rows:

* ``reference``: the hand-written step (:class:`PlainVAE`, one ``torch.optim.Adam``) on contiguous batches
  (views of the data, the same order every epoch);
* ``reference_shuffled``: the same step on batches gathered in a fresh random order each epoch, as ``fit``
  makes them (its ``shuffle=True`` default) and as a hand-written loop over ``x[perm[i:i + B]]`` does: the
  like-for-like reference for the data work (``fit_over_shuffled_reference`` in the JSON); the goal is stated
  against ``reference``;
* ``fit``: ``hybridpgm.fit`` with ``SVIObjective(vae.model, vae.guide)``, whose
  default ELBO is :class:`~hybridpgm.infer.DirectTrace_ELBO` (shuffled
  batches, the finite guard, history);
* ``svi_direct``: plain ``pyro.infer.SVI`` with ``DirectTrace_ELBO`` and
  ``pyro.optim.Adam`` (which keeps one torch optimizer per parameter);
* ``svi_direct_fused``: the same with ``pyro.optim.Adam({"lr": 1e-3, "fused": True})``:
  each per-parameter optimizer updates its tensor in one fused kernel, which
  takes back what the per-parameter optimizers cost;
* ``svi_direct_grouped``: the same with ``hybridpgm.infer.GroupedAdam({"lr": 1e-3})``:
  one torch Adam (the reference's for-loop algorithm) for all parameters and
  no zero-gradient tensors left for ``SVI`` to allocate;
* ``svi_trace``: plain ``SVI`` with Pyro's ``Trace_ELBO`` (the traced program);
* ``loop_direct``: ``DirectTrace_ELBO().differentiable_loss`` with one
  ``torch.optim.Adam`` over ``vae.parameters()`` -- what ``svi_direct`` costs
  without Pyro's per-parameter optimizers.

Interleaving is per step: each round is one ``fit`` call of ``--steps``
steps, and after every ``fit`` step a callback runs one step of each other
row (in alternating order), so all rows see the same machine load; one
thread.  Every row starts each round with a fresh optimizer, as ``fit`` does
at each call, so at every step all optimizers are equally old: Adam's early
steps cost more than later ones where ``sqrt(0)`` is slow (on an AVX-512 AMD
EPYC, 0.6-1.1 ms for 313,600 zeros against 0.12 ms for positive values), and its
second-moment estimate stays exactly 0 for weights whose gradient is exactly 0
(those of dead ReLU units) until they get one; with long-lived optimizers in
the other rows, ``fit`` measured about 0.5 ms per step slower for that
alone (the fused Adam of ``svi_direct_fused`` takes the same time either way).
Per-step times are medians over all steps of all ``--rounds`` rounds
(``fit``'s step: the whole loop iteration, batch gather, update, finite guard,
history; its per-call setup is reported apart), ratios are over
``reference``.  Before the rounds, the reference and ``fit``'s objective are evaluated on the same batch with
the same weights (``fit``'s copied into the reference) and the same noise; the script raises unless the two
losses agree to float32's relative tolerance (1e-4).  Results go to ``results/vae_step.json``.

    python benchmarks/vae_step.py                                   # 784-400-50, batch 128
    python benchmarks/vae_step.py --rounds 2 --steps 20             # quick
    python benchmarks/vae_step.py --interleave run                  # whole runs -> results/vae_step_runs.json

``--interleave run`` times whole runs instead: each round runs every row for ``--run-steps`` steps in a row
(the order rotating from round to round), each with a fresh optimizer, as a user times a training loop;
every row then runs with the caches as it leaves them itself, as in real training, where the per-step
protocol runs every row's step right after the other rows' (which sweeps the caches between steps and
weighs most on the rows with the most Python per step).  A row's step time is its run's time from the end
of its first step (the optimizer's state allocation) to the end of its last, over ``--run-steps - 1``;
``fit``'s is measured the same way, from its callback, and its whole call (setup and end included) is
reported beside it.
"""

from __future__ import annotations

import argparse
import copy
import functools
import statistics
import time

import pyro
import torch
import torch.nn.functional as F
from pyro.infer import SVI, Trace_ELBO
from pyro.nn import PyroModule

import hybridpgm
from hybridpgm.infer import DirectTrace_ELBO, GroupedAdam
from hybridpgm.nn import mlp

from common import check_agreement, tolerance, write_result


class PlainVAE(torch.nn.Module):
    """Reference: the same VAE written directly in PyTorch."""

    def __init__(self, x_dim: int, z_dim: int, hidden: int):
        super().__init__()
        self.encoder = mlp([x_dim, hidden, 2 * z_dim])
        self.decoder = mlp([z_dim, hidden, x_dim])

    def loss(self, x: torch.Tensor) -> torch.Tensor:
        loc, raw = self.encoder(x).chunk(2, dim=-1)
        scale = F.softplus(raw) + 1e-4
        z = loc + scale * torch.randn_like(loc)
        log_q = torch.distributions.Normal(loc, scale).log_prob(z).sum(-1)
        log_prior = torch.distributions.Normal(0.0, 1.0).log_prob(z).sum(-1)
        log_lik = -F.binary_cross_entropy_with_logits(self.decoder(z), x, reduction="none").sum(-1)
        return -(log_lik + log_prior - log_q).mean()


def check_same_objective(plain: PlainVAE, vae, x: torch.Tensor, seed: int) -> dict:
    """The reference's loss and ``fit``'s (``SVIObjective(vae.model, vae.guide)``) on the same batch ``x``, the
    reference given ``vae``'s weights (on a copy: the rows keep their own) and both the same noise (seeded
    alike: both draw ``z`` from one ``randn`` of the guide's shape).  Raises ``RuntimeError`` unless they agree
    to the dtype's relative tolerance: otherwise the rows time different objectives."""
    ref = copy.deepcopy(plain)
    ref.load_state_dict(vae.state_dict())
    with torch.no_grad():
        torch.manual_seed(seed)
        a = float(ref.loss(x))
        torch.manual_seed(seed)
        b = float(hybridpgm.SVIObjective(vae.model, vae.guide).loss("elbo", x))
    tol = tolerance(x.dtype)
    check_agreement("relative difference of the reference's loss and fit's at the same weights, batch and noise "
                    f"(reference {a:.6g}, fit {b:.6g})", abs(a - b) / max(abs(a), 1e-30), tol)
    return {"reference_loss": a, "fit_loss": b, "tolerance_relative": tol}


def _setup_fields(args: argparse.Namespace, device: torch.device) -> dict:
    """The JSON fields that describe the run's setup, the same in both interleavings."""
    return {"architecture": f"{args.x_dim}-{args.hidden}-{args.z_dim}", "batch_size": args.batch_size,
            "device": str(device), "threads": torch.get_num_threads(), "rounds": args.rounds}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class _Batches:
    """Cycles through ``x`` in contiguous batches (views, no copy)."""

    def __init__(self, x: torch.Tensor, batch: int):
        self.x, self.batch, self.step = x, batch, 0

    def __call__(self) -> torch.Tensor:
        xb = self.x[(self.step * self.batch) % len(self.x):][:self.batch]
        self.step += 1
        return xb


class _ShuffledBatches:
    """Batches of ``x`` in a fresh random order each epoch, gathered (a copy), as ``fit`` (``shuffle=True``) and
    a hand-written loop over ``x[perm[i:i + batch]]`` make them; its own generator, so no row's draws move."""

    def __init__(self, x: torch.Tensor, batch: int, seed: int):
        self.x, self.batch, self.step = x, batch, 0
        self.generator = torch.Generator().manual_seed(seed)
        self.per_epoch = len(x) // batch
        self.order = None

    def __call__(self) -> torch.Tensor:
        if self.step % self.per_epoch == 0:
            self.order = torch.randperm(len(self.x), generator=self.generator).to(self.x.device)
        start = (self.step % self.per_epoch) * self.batch
        self.step += 1
        return self.x.index_select(0, self.order[start:start + self.batch])


def reference_step(batches, model, opt) -> None:
    opt.zero_grad(set_to_none=True)
    loss = model.loss(batches())
    loss.backward()
    opt.step()
    loss.item()  # fit reads the loss back every step too


def svi_step(batches, svi) -> None:
    svi.step(batches())  # returns the loss as a float: one read per step


def loop_direct_step(batches, vae, opt, elbo) -> None:
    xb = batches()
    opt.zero_grad(set_to_none=True)
    loss = elbo.differentiable_loss(vae.model, vae.guide, xb) / xb.shape[0]
    loss.backward()
    opt.step()
    loss.item()


class Interleave:
    """A ``fit`` callback: after each step of ``fit``, one step of every other
    row, each timed; the time between the callback's exit and its next entry
    is ``fit``'s step (the whole loop iteration: batch, update, history)."""

    def __init__(self, rows: dict, device: torch.device):
        self.rows, self.device = rows, device
        self.times = {"fit": [], **{name: [] for name in rows}}
        self.left = None

    def on_step_end(self, info) -> None:
        _sync(self.device)
        now = time.perf_counter()
        if self.left is not None:  # the first step of a call includes the optimizer's state allocation
            self.times["fit"].append(now - self.left)
        names = list(self.rows) if info.step % 2 else list(reversed(self.rows))  # no row always right after fit
        for name in names:
            start = time.perf_counter()
            self.rows[name]()
            _sync(self.device)
            self.times[name].append(time.perf_counter() - start)
        self.left = time.perf_counter()


def main(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    device = hybridpgm.train.device.resolve_device(args.device)
    torch.manual_seed(args.seed)
    x = torch.bernoulli(torch.full((args.batch_size * 8, args.x_dim), 0.3)).to(device)
    sizes = (args.x_dim, args.z_dim, args.hidden)

    boxes = []

    def vae():
        """A VAE of its own under Pyro's defaults: VAEs of one class name their parameters alike
        in the global param store, so each sits in a uniquely named PyroModule (as a user keeping
        several models in one process would; otherwise the SVI rows would share one set of weights)."""
        boxes.append(PyroModule(f"row{len(boxes)}"))
        boxes[-1].vae = hybridpgm.VAE(args.x_dim, args.z_dim, [args.hidden]).to(device)
        return boxes[-1].vae

    plain = PlainVAE(*sizes).to(device)
    shuffled_plain = copy.deepcopy(plain)
    direct_vae, fused_vae, grouped_vae, trace_vae, loop_vae, fit_vae = vae(), vae(), vae(), vae(), vae(), vae()

    def batches():
        return _Batches(x, args.batch_size)

    def fresh_rows():
        """Every row's step with a fresh optimizer (the models keep training across rounds)."""
        return {
            "reference": functools.partial(reference_step, batches(), plain,
                                           torch.optim.Adam(plain.parameters(), lr=1e-3)),
            "reference_shuffled": functools.partial(reference_step, _ShuffledBatches(x, args.batch_size, args.seed),
                                                    shuffled_plain,
                                                    torch.optim.Adam(shuffled_plain.parameters(), lr=1e-3)),
            "svi_direct": functools.partial(svi_step, batches(), SVI(direct_vae.model, direct_vae.guide,
                                                                     pyro.optim.Adam({"lr": 1e-3}),
                                                                     loss=DirectTrace_ELBO())),
            "svi_direct_fused": functools.partial(svi_step, batches(), SVI(fused_vae.model, fused_vae.guide,
                                                                           pyro.optim.Adam({"lr": 1e-3, "fused": True}),
                                                                           loss=DirectTrace_ELBO())),
            "svi_direct_grouped": functools.partial(svi_step, batches(), SVI(grouped_vae.model, grouped_vae.guide,
                                                                             GroupedAdam({"lr": 1e-3}),
                                                                             loss=DirectTrace_ELBO())),
            "svi_trace": functools.partial(svi_step, batches(), SVI(trace_vae.model, trace_vae.guide,
                                                                    pyro.optim.Adam({"lr": 1e-3}), loss=Trace_ELBO())),
            "loop_direct": functools.partial(loop_direct_step, batches(), loop_vae,
                                             torch.optim.Adam(loop_vae.parameters(), lr=1e-3), DirectTrace_ELBO()),
        }

    if args.interleave == "run":
        with pyro.get_param_store().scope():
            same_objective = check_same_objective(plain, fit_vae, x[:args.batch_size], args.seed)
            return _run_interleaved(args, x, fit_vae, fresh_rows, device, same_objective)
    calls = []
    with pyro.get_param_store().scope():  # SVI registers its parameters under the default settings
        same_objective = check_same_objective(plain, fit_vae, x[:args.batch_size], args.seed)
        for row in fresh_rows().values():  # warm-up: lazy imports, allocator
            for _ in range(3):
                row()
        for r in range(args.rounds):  # one fit call per round, its steps interleaved with the other rows'
            interleave = Interleave(fresh_rows(), device)  # every optimizer as old as fit's
            start = time.perf_counter()
            hybridpgm.fit(hybridpgm.SVIObjective(fit_vae.model, fit_vae.guide), x, batch_size=args.batch_size,
                          max_steps=args.steps, device=device, progress=False, seed=args.seed + r,
                          optim=functools.partial(torch.optim.Adam, lr=1e-3), callbacks=[interleave])
            total = time.perf_counter() - start
            calls.append((total, interleave.times))
    times = {name: [t for _, ts in calls for t in ts[name]] for name in calls[0][1]}
    median = {name: 1000.0 * statistics.median(t) for name, t in times.items()}
    in_steps = [total - sum(t for ts in times_.values() for t in ts) for total, times_ in calls]
    result = {
        **_setup_fields(args, device),
        "steps_per_round": args.steps,
        "steps_timed_each": {name: len(t) for name, t in times.items()},
        "reference": "hand-written PyTorch VAE, same architecture and single-sample ELBO, one torch.optim.Adam",
        "interleaving": "per step: each fit step is followed by one step of every other row (order alternating); "
                        "every row starts each round (fit call) with a fresh optimizer, as fit does",
        "same_objective_at_start": same_objective,
        "median_step_ms": median,
        "ratio_over_reference": {name: median[name] / median["reference"] for name in times if name != "reference"},
        "fit_over_shuffled_reference": median["fit"] / median["reference_shuffled"],
        "fit_call_overhead_ms": {
            "what": "per fit call: setup, the first step (optimizer state allocation) and the end (checks, "
                    "result), i.e. call time minus the timed steps of all rows",
            "median": 1000.0 * statistics.median(in_steps),
        },
        "target_ratio": 1.10,
    }
    write_result("vae_step", result, args.out)
    return result


class _StepClock:
    """A ``fit`` callback keeping the time of every ``on_step_end``."""

    def __init__(self, device: torch.device):
        self.device, self.ends = device, []

    def on_step_end(self, info) -> None:
        _sync(self.device)
        self.ends.append(time.perf_counter())


def _run_interleaved(args, x, fit_vae, fresh_rows, device, same_objective) -> dict:
    """``--interleave run``: each round runs every row for ``args.run_steps`` steps in a row, the order rotating
    from round to round, each row with a fresh optimizer; per row and round the mean step time from the end of
    its first step to the end of its last; medians over the rounds."""
    steps = args.run_steps

    def fit_run(r: int) -> tuple[float, float]:
        clock = _StepClock(device)
        start = time.perf_counter()
        hybridpgm.fit(hybridpgm.SVIObjective(fit_vae.model, fit_vae.guide), x, batch_size=args.batch_size,
                      max_steps=steps, device=device, progress=False, seed=args.seed + r,
                      optim=functools.partial(torch.optim.Adam, lr=1e-3), callbacks=[clock])
        whole = time.perf_counter() - start
        return (clock.ends[-1] - clock.ends[0]) / (steps - 1), whole / steps

    def row_run(row) -> tuple[float, float]:
        start = time.perf_counter()
        row()
        _sync(device)
        first = time.perf_counter()
        for _ in range(steps - 1):
            row()
        _sync(device)
        end = time.perf_counter()
        return (end - first) / (steps - 1), (end - start) / steps

    for row in fresh_rows().values():  # warm-up: lazy imports, allocator
        for _ in range(3):
            row()
    fit_run(args.rounds)  # warm-up, on a seed no round uses
    names = ["fit", *fresh_rows()]
    per_step = {name: [] for name in names}
    whole_fit = []
    for r in range(args.rounds):
        rows = fresh_rows()  # every optimizer fresh, as fit's at each call
        for name in names[r % len(names):] + names[:r % len(names)]:
            step_s, whole_s = fit_run(r) if name == "fit" else row_run(rows[name])
            per_step[name].append(step_s)
            if name == "fit":
                whole_fit.append(whole_s)
    median = {name: 1000.0 * statistics.median(t) for name, t in per_step.items()}
    result = {
        **_setup_fields(args, device),
        "run_steps": steps,
        "reference": "hand-written PyTorch VAE, same architecture and single-sample ELBO, one torch.optim.Adam",
        "interleaving": "per run: each round runs every row for run_steps steps in a row, the order rotating from "
                        "round to round, every row with a fresh optimizer; step time from the end of the first step "
                        "to the end of the last",
        "same_objective_at_start": same_objective,
        "median_step_ms": median,
        "per_round_step_ms": {name: [1000.0 * t for t in ts] for name, ts in per_step.items()},
        "ratio_over_reference": {name: median[name] / median["reference"] for name in names if name != "reference"},
        "fit_over_shuffled_reference": median["fit"] / median["reference_shuffled"],
        "fit_whole_call_ms_per_step": 1000.0 * statistics.median(whole_fit),
        "ratio_fit_whole_call_over_reference": 1000.0 * statistics.median(whole_fit) / median["reference"],
        "target_ratio": 1.10,
    }
    write_result("vae_step_runs", result, args.out)
    return result


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--x-dim", type=int, default=784)
    parser.add_argument("--hidden", type=int, default=400)
    parser.add_argument("--z-dim", type=int, default=50)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--interleave", choices=("step", "run"), default="step",
                        help="step: every fit step followed by one step of each other row (results/vae_step.json); "
                             "run: whole runs of --run-steps steps in rotating order (results/vae_step_runs.json)")
    parser.add_argument("--run-steps", type=int, default=200, help="steps per row and round with --interleave run")
    parser.add_argument("--out", default=None)
    return parser.parse_args(argv)


if __name__ == "__main__":
    main(parse_args())
