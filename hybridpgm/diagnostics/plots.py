"""Plots written by the command line and used in notebooks (matplotlib)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from hybridpgm.errors import DataError  # noqa: E402
from hybridpgm.train.history import History  # noqa: E402

__all__ = ["plot_coverage", "plot_image_grid", "plot_khat", "plot_log_weights", "plot_loss_curves"]


def plot_loss_curves(history: History, path: str | os.PathLike, title: str = "training loss") -> Path:
    """One curve per player: loss against step.  Returns the PNG's path."""
    fig, ax = plt.subplots(figsize=(6, 4))
    for player, values in history.loss.items():
        ax.plot(history.step[: len(values)], values, label=player)
    for name, points in history.metrics.items():
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, "o--", label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_image_grid(images: torch.Tensor, image_shape: tuple[int, int], path: str | os.PathLike,
                    title: str = "", columns: int | None = None) -> Path:
    """Grid of ``N x (H * W)`` images in [0, 1] (grey scale).  Returns the PNG's path."""
    images = images.detach().cpu()
    if images.dim() != 2 or images.shape[1] != image_shape[0] * image_shape[1]:
        raise DataError(f"images of shape {tuple(images.shape)} do not match image_shape {image_shape}")
    n = images.shape[0]
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    fig, axes = plt.subplots(rows, columns, figsize=(columns * 0.8, rows * 0.8 + (0.4 if title else 0)),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.axis("off")
        if i < n:
            ax.imshow(images[i].reshape(image_shape).numpy(), cmap="gray", vmin=0, vmax=1)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _save(fig, path) -> Path:
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def plot_khat(khat, path: str | os.PathLike, title: str = "PSIS k-hat per data point") -> Path:
    """Pareto :math:`\\hat k` per data point with ArviZ's 0.5 / 0.7 thresholds
    (see :func:`hybridpgm.diagnostics.check_vi`)."""
    khat = np.asarray(khat, dtype=float).ravel()
    fig, ax = plt.subplots(figsize=(6, 3.5))
    colors = np.where(khat < 0.5, "tab:green", np.where(khat < 0.7, "tab:orange", "tab:red"))
    ax.scatter(np.arange(len(khat)), khat, c=colors, s=12)
    for level, style in ((0.5, ":"), (0.7, "--")):
        ax.axhline(level, color="grey", linestyle=style, linewidth=1)
    ax.set_xlabel("data point")
    ax.set_ylabel("k-hat")
    ax.set_title(title)
    return _save(fig, path)


def plot_log_weights(log_weights, path: str | os.PathLike, title: str = "importance log-weights") -> Path:
    """Histogram of importance or AIS log-weights (``K``), with the effective
    sample size :math:`(\\sum w)^2 / \\sum w^2` in the legend."""
    lw = torch.as_tensor(log_weights, dtype=torch.float64).reshape(-1)
    if lw.numel() < 2:
        raise DataError(f"need at least 2 log-weights, got {lw.numel()}")
    ess = float(torch.exp(2 * torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0)))
    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.hist(lw.numpy(), bins=min(50, max(5, lw.numel() // 5)), color="tab:blue", alpha=0.8,
            label=f"ESS {ess:.1f} of {lw.numel()}")
    ax.set_xlabel("log-weight")
    ax.set_ylabel("count")
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)


def plot_coverage(y, mean, std, path: str | os.PathLike, title: str = "interval calibration") -> Path:
    """Calibration of Gaussian predictive intervals: empirical coverage of the
    central intervals against their nominal level (``y``, ``mean``, ``std``: ``N``)."""
    from scipy.stats import norm

    y, mean, std = (torch.as_tensor(a, dtype=torch.float64).reshape(-1).numpy() for a in (y, mean, std))
    if not (len(y) == len(mean) == len(std)):
        raise DataError(f"y, mean and std must have one length; got {len(y)}, {len(mean)}, {len(std)}")
    levels = np.linspace(0.05, 0.99, 30)
    z = np.abs(y - mean) / std
    empirical = [(z <= norm.ppf(0.5 + level / 2)).mean() for level in levels]
    fig, ax = plt.subplots(figsize=(4, 4))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="ideal")
    ax.plot(levels, empirical, marker="o", markersize=3, label="model")
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("empirical coverage")
    ax.set_title(title)
    ax.legend()
    return _save(fig, path)
