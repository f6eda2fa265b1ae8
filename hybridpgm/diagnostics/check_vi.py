"""Did the variational approximation work?  Pareto-smoothed importance sampling.

For each data point :math:`x_n` with a local latent :math:`z_n` and guide
:math:`q(z_n \\mid x_n)`, draw :math:`S` samples from the guide and form the
importance ratios :math:`r_s = p(x_n, z_s) / q(z_s \\mid x_n)`.  Fitting a
generalized Pareto distribution to the largest ratios gives the shape
:math:`\\hat k` [1, 2]: below 0.5 the guide is a good proposal and the
importance-sampled :math:`\\log p(x_n)` is reliable; between 0.5 and 0.7 it is
usable; above 0.7 the guide misses mass of the posterior (it is typically too
narrow) and neither it nor the estimate should be trusted.

References:

1. Y. Yao, A. Vehtari, D. Simpson, A. Gelman, *Yes, but Did It Work?:
   Evaluating Variational Inference*, ICML 2018.
2. A. Vehtari, D. Simpson, A. Gelman, Y. Yao, J. Gabry, *Pareto Smoothed
   Importance Sampling*, JMLR 25(72), 2024.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable

import arviz as az
import numpy as np
import torch

from hybridpgm.errors import ConfigError
from hybridpgm.infer.iwae import importance_log_weights

__all__ = ["BAD", "GOOD", "VICheck", "check_vi", "pareto_khat"]

#: ArviZ's thresholds on k-hat
GOOD, BAD = 0.5, 0.7


def pareto_khat(log_weights: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """PSIS on ``... x S`` log-weights: ``(smoothed unnormalized log-weights, k-hat)``."""
    psislw = getattr(az, "psislw", None)
    if psislw is None:  # ArviZ >= 1.0 moved it to arviz_stats
        from arviz_stats import psislw  # type: ignore[no-redef]
    return psislw(log_weights, normalize=False)


@dataclass
class VICheck:
    """Result of :func:`check_vi`.

    :ivar khat: ``N`` Pareto shape estimates, one per data point.
    :ivar log_likelihood: ``N`` PSIS estimates of :math:`\\log p(x_n)`.
    :ivar num_samples: draws from the guide per data point.
    """

    khat: np.ndarray
    log_likelihood: np.ndarray
    num_samples: int

    @property
    def counts(self) -> dict[str, int]:
        """How many points are good (< 0.5), ok (< 0.7) and bad (>= 0.7)."""
        k = self.khat
        return {"good": int((k < GOOD).sum()), "ok": int(((k >= GOOD) & (k < BAD)).sum()), "bad": int((k >= BAD).sum())}

    @property
    def verdict(self) -> str:
        """``"good"``, ``"ok"`` or ``"bad"``: the class of the worst point."""
        worst = float(np.max(self.khat))
        return "good" if worst < GOOD else ("ok" if worst < BAD else "bad")

    def summary(self) -> str:
        c = self.counts
        return (f"PSIS k-hat over {len(self.khat)} points ({self.num_samples} draws each): "
                f"{c['good']} good (<{GOOD}), {c['ok']} ok (<{BAD}), {c['bad']} bad; max {np.max(self.khat):.3f}; "
                f"mean log p(x) {np.mean(self.log_likelihood):.4f}")


def check_vi(model: Callable, guide: Callable, *args: Any, num_samples: int = 1000, chunk_size: int = 250,
             **kwargs: Any) -> VICheck:
    """Per-data-point PSIS diagnostic of a guide [1].

    :param model: Pyro model with its data plate, run as ``model(*args, **kwargs)``.
    :param guide: its (amortized) guide; latents must be local to the plate
        and reparameterizable (as for :class:`~hybridpgm.infer.IWAE`).
    :param num_samples: :math:`S`, draws per point (>= 100 for a stable
        :math:`\\hat k`).
    :returns: a :class:`VICheck` with :math:`\\hat k` per point and the PSIS
        estimate :math:`\\log \\frac1S \\sum_s \\tilde r_s` of :math:`\\log p(x_n)`.
    """
    if num_samples < 10:
        raise ConfigError(f"check_vi needs num_samples >= 10 for a Pareto fit, got {num_samples}")
    chunks = []
    with torch.no_grad():
        for start in range(0, num_samples, chunk_size):
            k = min(chunk_size, num_samples - start)
            log_w, _ = importance_log_weights(model, guide, *args, num_particles=k, **kwargs)
            chunks.append(log_w.reshape(k, -1))
    log_w = torch.cat(chunks).double().cpu().numpy().T  # N x S
    smoothed, khat = pareto_khat(log_w)
    estimate = torch.logsumexp(torch.as_tensor(np.asarray(smoothed)), dim=-1).numpy() - math.log(num_samples)
    return VICheck(khat=np.asarray(khat), log_likelihood=np.asarray(estimate), num_samples=num_samples)
