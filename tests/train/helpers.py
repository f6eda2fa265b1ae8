"""Small objectives for testing the training loop."""

from __future__ import annotations

import os
import signal

import pyro
import pyro.distributions as dist
import torch
from pyro.nn import pyro_method

from hybridpgm import VAE


class LinearRegression:
    """Deterministic one-player objective: mean squared error of a linear map."""

    def __init__(self, d_in: int = 5, d_out: int = 1, seed: int = 0):
        torch.manual_seed(seed)
        self.module = torch.nn.Linear(d_in, d_out)

    def players(self):
        return {"fit": list(self.module.parameters())}

    def loss(self, player, batch):
        x, y = batch
        return ((self.module(x) - y) ** 2).mean()


class TwoPlayer:
    """Two players on one module, the second stepped twice per step."""

    schedule = ["a", "a", "b"]

    def __init__(self, seed: int = 0):
        torch.manual_seed(seed)
        self.module = torch.nn.ModuleDict({"a": torch.nn.Linear(3, 1), "b": torch.nn.Linear(3, 1)})

    def players(self):
        return {"a": list(self.module["a"].parameters()), "b": list(self.module["b"].parameters())}

    def loss(self, player, batch):
        x, y = batch
        other = "b" if player == "a" else "a"
        # the other player's output enters the loss; only `player` may move
        return ((self.module[player](x) + self.module[other](x) - y) ** 2).mean()


class UnusedParameter:
    """One player whose parameters include a layer (``"spare"``) that the loss never reaches."""

    def __init__(self, seed: int = 0):
        torch.manual_seed(seed)
        self.module = torch.nn.ModuleDict({"lin": torch.nn.Linear(3, 1), "spare": torch.nn.Linear(3, 1)})

    def players(self):
        return {"fit": list(self.module.parameters())}

    def loss(self, player, batch):
        x, y = batch
        return ((self.module["lin"](x) - y) ** 2).mean()


class DivergeAt:
    """Wraps an objective; its loss is NaN from the given step on."""

    def __init__(self, inner, step: int):
        self.inner, self.module, self.at, self.calls = inner, inner.module, step, 0

    def players(self):
        return self.inner.players()

    def loss(self, player, batch):
        loss = self.inner.loss(player, batch)
        return loss * float("nan") if self.calls >= self.at else loss

    def train_step_end(self, step):
        self.calls = step + 1


class BatchRecorder:
    """An objective of one player whose loss records the batches it receives (and ignores them)."""

    def __init__(self):
        self.module, self.seen = torch.nn.Linear(1, 1), []

    def players(self):
        return {"main": list(self.module.parameters())}

    def loss(self, player, batch):
        self.seen.append(batch)
        return (self.module.weight ** 2).sum()


def regression_data(n: int = 64, d_in: int = 5, seed: int = 1):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d_in, generator=g)
    y = x @ torch.randn(d_in, 1, generator=g) + 0.1 * torch.randn(n, 1, generator=g)
    return x, y


def host_reads_per_step(monkeypatch, **fit_kwargs) -> int:
    """The host reads (``item``, ``tolist``, ``float``/``bool``/``int`` of a tensor) that each step of a
    :class:`LinearRegression` ``fit`` adds: those of 7 steps less those of 3, over 4 (``fit_kwargs`` passed on)."""
    from hybridpgm import fit

    reads = []
    for method in ("item", "tolist", "__float__", "__bool__", "__int__"):
        original = getattr(torch.Tensor, method)

        def counted(self, *args, _original=original, _method=method, **kwargs):
            reads.append(_method)
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, counted)

    def host_reads(steps):
        reads.clear()
        fit(LinearRegression(), regression_data(), epochs=10, batch_size=16, max_steps=steps, progress=False,
            seed=0, **fit_kwargs)
        return len(reads)

    return (host_reads(7) - host_reads(3)) / 4


class NoiseAsDataVAE(VAE):
    """The VAE with its guide's noise read from the batch ``(x, eps)``: common random
    numbers, so runs that split the data differently draw identical latents."""

    @pyro_method
    def model(self, x, eps):
        return super().model(x)

    @pyro_method
    def guide(self, x, eps):
        self._check(x)
        with self._plate(x, None):
            loc, scale = self._encode(x)
            z = loc + scale * eps  # the reparameterized draw, with the noise given
            log_q = dist.Normal(loc, scale).log_prob(z).sum(-1)
            return pyro.sample("z", dist.Delta(z, log_density=log_q, event_dim=1))


def vae_data(n: int = 64, x_dim: int = 12, z_dim: int = 3, seed: int = 2):
    g = torch.Generator().manual_seed(seed)
    return torch.bernoulli(torch.full((n, x_dim), 0.4), generator=g), torch.randn(n, z_dim, generator=g)


class TermAt:
    """A callback that sends this process SIGTERM at the end of step ``step`` (a scheduler's preemption)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, info) -> None:
        if info.step == self.step:
            os.kill(os.getpid(), signal.SIGTERM)


class KillAt:
    """A callback that ends the run abruptly (as SIGKILL would: no checkpoint is written) at the end of
    step ``step``."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, info) -> None:
        if info.step == self.step:
            raise KeyboardInterrupt("simulated kill")


class NanOnLargeRows:
    """One player ``"m"``: the mean squared distance of a linear map's output from ``target``, NaN for a batch
    holding a row with ``x[0] > 100`` (a step skipped under ``skip_nonfinite``, its NaN loss in the history)."""

    def __init__(self, target: float = 0.0):
        torch.manual_seed(0)
        self.module = torch.nn.Linear(2, 1)
        self.target = target

    def players(self):
        return {"m": list(self.module.parameters())}

    def loss(self, player, batch):
        out = (self.module(batch) - self.target).pow(2).mean()
        return out * float("nan") if bool((batch[:, 0] > 100).any()) else out


def data_with_a_large_row():
    """8 rows of 2 features, the first row's first feature 1000 (see :class:`NanOnLargeRows`)."""
    x = torch.randn(8, 2, generator=torch.Generator().manual_seed(3))
    x[0, 0] = 1000.0
    return x


def rates_of_a_run(ckpt, lr: float, *, momentum: float = 0.0, **fit_options) -> list[float]:
    """The learning rate after each step of a ``fit`` of :class:`LinearRegression` with ``torch.optim.SGD(lr,
    momentum)`` (the rate of the optimizer ``fit`` built last, read by a callback), with ``fit_options``
    (``lr_scheduler``, ``max_steps``, ``override_hyperparameters`` ...) and the checkpoint ``ckpt``."""
    import torch

    from hybridpgm import fit

    seen, made = [], []

    def optim(params):
        made.append(torch.optim.SGD(params, lr=lr, momentum=momentum))
        return made[-1]

    class Record:
        def on_step_end(self, info):
            seen.append(made[-1].param_groups[0]["lr"])

    fit(LinearRegression(), regression_data(), batch_size=16, seed=0, checkpoint=ckpt, progress=False, optim=optim,
        callbacks=[Record()], **fit_options)
    return seen


def cpu_allocations(fn) -> list[int]:
    """The bytes of each CPU allocation of an aten operator while ``fn()`` runs (``torch.profiler`` with
    ``profile_memory``: the allocations an operator makes inside, such as the whole-tensor ``aten::to`` of
    ``t.sum(dtype=torch.float32)`` on a float16 ``t``, which no Python-level patch sees).  Each operator's event
    counts its own and its children's allocations; the leaves ``aten::empty`` / ``aten::empty_strided`` are each
    allocation once."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU], profile_memory=True) as prof:
        fn()
    return [e.cpu_memory_usage for e in prof.events()
            if e.name in ("aten::empty", "aten::empty_strided") and e.cpu_memory_usage > 0]
