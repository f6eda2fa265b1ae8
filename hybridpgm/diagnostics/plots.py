"""Plots written by the command line and used in notebooks (matplotlib)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import matplotlib

matplotlib.use("Agg", force=False)
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402

from hybridpgm.errors import DataError  # noqa: E402
from hybridpgm.train.history import History  # noqa: E402

__all__ = ["plot_image_grid", "plot_loss_curves"]


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
