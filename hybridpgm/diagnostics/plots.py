"""Plots written by the command line and used in notebooks (matplotlib).

Every helper builds a :class:`matplotlib.figure.Figure` with the object-oriented
API (no pyplot state, no backend change) and returns it; it is written to disk
only when ``path`` is given (at 100 dpi, in the format its suffix names: ``.png``,
``.pdf``, ``.svg`` ...; missing folders of ``path`` are created).  A ``path`` that is
a folder, has no suffix or one matplotlib does not write, or exists as something
other than a regular file (a FIFO, a symbolic link) is refused with
:class:`~hybridpgm.errors.DataError` naming it, as is a write the OS refuses; the
figure is written to a temporary file and renamed, so a full disk leaves no
partial image.  A notebook shows the returned figure inline as a PNG, with or without
``%matplotlib inline`` (:func:`~hybridpgm.diagnostics.figure_display.displayable`;
where the inline backend is active, its own printer draws it).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence

import numpy as np  # noqa: E402
import torch  # noqa: E402

from matplotlib.figure import Figure  # noqa: E402

from hybridpgm.checks import positive_int, torch_readable  # noqa: E402
from hybridpgm.diagnostics.check_vi import BAD, good_khat  # noqa: E402
from hybridpgm.diagnostics.figure_files import figure_formats, figure_path, save_figure  # noqa: E402,F401 (re-exported)
from hybridpgm.diagnostics.host_arrays import as_host_array  # noqa: E402
from hybridpgm.diagnostics.image_tiles import separator_width, tile_images  # noqa: E402
from hybridpgm.errors import ConfigError, DataError, DiagnosticsWarning  # noqa: E402
from hybridpgm.train.history import History  # noqa: E402
from hybridpgm.warning_origin import users_stacklevel  # noqa: E402

__all__ = ["plot_coverage", "plot_image_grid", "plot_khat", "plot_log_weights", "plot_loss_curves",
           "plot_sequence_marginals"]


def _loss_label(player: str) -> str:
    """The legend label of ``player``'s loss curve when the caller gives none: the player's name and nothing
    about the quantity, which a player's name does not tell (the ``"elbo"`` player of an ``SVIObjective``
    records the negative ELBO per example, or for the whole data set with ``per_example=False``; that of
    ``IWAE``, ``VIMCO`` and the ``"rws"`` player the negative importance-weighted bound; a sleep player a
    surrogate that bounds nothing).

    :param str player: the player's name (a key of ``History.loss``)."""
    return f"{player} loss (as recorded by fit)"


def plot_loss_curves(history: History, path: str | os.PathLike | None = None, title: str = "training loss",
                     labels: dict[str, str] | None = None) -> Figure:
    """One curve per player: its loss (the quantity minimized, as the objective's ``loss`` returned it)
    against step, and the metrics callbacks logged.

    :param history: a :class:`~hybridpgm.train.history.History` (``fit(...).history``).
    :param path: an image file to write the figure to (its folder is created; format from the suffix), or
        ``None`` to write nothing.
    :param str title: the axes' title.
    :param labels: player -> legend label, for the caller who knows what its objective records (``{"elbo":
        "-ELBO, nats per example"}``); a player left out is labelled ``"<player> loss (as recorded by fit)"``
        (:func:`_loss_label`), which names the player and not the quantity.
    :returns: the :class:`matplotlib.figure.Figure` (shown by itself in a notebook).
    :raises DataError: the history holds no loss and no metric (a run of no steps): nothing to plot.
    """
    if not any(history.loss.values()) and not any(history.metrics.values()):
        raise DataError(f"plot_loss_curves got a history of no steps ({history!r}): no loss or metric to plot")
    labels = labels or {}
    fig = Figure(figsize=(6, 4))
    ax = fig.add_subplot()
    for player, values in history.loss.items():  # a loss of one step is a point: a line of one point draws nothing
        ax.plot(history.step[: len(values)], values, marker="o" if len(values) == 1 else None,
                label=labels.get(player, _loss_label(player)))
    for name, points in history.metrics.items():
        if points:
            steps, values = zip(*points)
            ax.plot(steps, values, "o--", label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("loss (lower is better)")
    ax.set_title(title)
    ax.legend()
    return save_figure(fig, path)


def plot_image_grid(images, image_shape: tuple[int, int], path: str | os.PathLike | None = None,
                    title: str = "", columns: int | None = None) -> Figure:
    """Grid of ``N x (H * W)`` images in [0, 1] (grey scale, drawn with 0 black and 1 white).

    The images are tiled row by row into one array (:func:`~hybridpgm.diagnostics.image_tiles.tile_images`: image
    :math:`i` in row :math:`\\lfloor i / C \\rfloor` and column :math:`i \\bmod C` of ``C = columns``) and drawn
    with one ``imshow`` (of float32 grey levels) on one axes with its axis off, separated by masked gaps of an
    eighth of an image's longer side (:func:`~hybridpgm.diagnostics.image_tiles.separator_width`) drawn in the
    figure's background colour, as NaN pixels are; the figure is 0.8 inch per image.  So its cost grows with the
    pixels, not with an axes per image (about 20 ms each: 1024 images of 28 x 28 took 9-14 s to a PNG before,
    about 2 s now).

    :param images: ``N x (H * W)`` grey levels in [0, 1], a tensor or an array-like (:func:`torch.as_tensor`);
        8-bit pixels (``uint8`` 0..255, as IDX files and PIL give them) are refused rather than drawn clipped:
        pass ``images / 255``.
    :param image_shape: ``(H, W)``, two positive integers (a square image is ``(H, H)``).
    :param path: an image file to write the figure to (its folder is created), or ``None``.
    :param str title: the figure's title.
    :param columns: images per row, a positive integer (default: about :math:`\\sqrt N`).
    :returns: the :class:`matplotlib.figure.Figure`.
    :raises ConfigError: ``image_shape`` is not a pair of positive integers, or ``columns`` not a positive
        integer.
    :raises DataError: for images that are not real numbers, hold a value outside [0, 1], do not match
        ``image_shape``, or no images.
    """
    if isinstance(image_shape, (str, bytes)) or not isinstance(image_shape, Sequence) or len(image_shape) != 2:
        raise ConfigError(f"plot_image_grid image_shape must be a pair (H, W) of positive integers, got "
                          f"{image_shape!r}")
    image_shape = tuple(positive_int(side, f"plot_image_grid image_shape[{i}]") for i, side in enumerate(image_shape))
    if columns is not None:
        columns = positive_int(columns, "plot_image_grid columns")
    images = torch_readable(images, "plot_image_grid images")
    try:
        images = torch.as_tensor(images).detach().cpu()
    except (TypeError, ValueError, RuntimeError) as err:
        raise DataError(f"plot_image_grid images must be a tensor or an array of numbers, got "
                        f"{type(images).__name__} ({err})") from None
    if images.dtype == torch.bool:
        images = images.to(torch.float32)  # exact: 0 and 1
    if images.dim() != 2 or images.shape[1] != image_shape[0] * image_shape[1]:
        raise DataError(f"images of shape {tuple(images.shape)} do not match image_shape {image_shape}")
    if images.shape[0] == 0:
        raise DataError(f"plot_image_grid needs at least one image, got shape {tuple(images.shape)}")
    _check_grey_levels(images)
    n = images.shape[0]
    columns = columns or math.ceil(math.sqrt(n))
    rows = math.ceil(n / columns)
    mosaic = tile_images(images.to(torch.float32).reshape((n,) + image_shape).numpy(), columns,
                         separator_width(image_shape))
    width, height = columns * 0.8, rows * 0.8 + (0.4 if title else 0)
    fig = Figure(figsize=(width, height))
    # laid out here: tight_layout would draw the whole mosaic once more just to find an axes without ticks
    fig.subplots_adjust(left=_GRID_MARGIN / width, right=1 - _GRID_MARGIN / width, bottom=_GRID_MARGIN / height,
                        top=1 - (0.4 if title else _GRID_MARGIN) / height)
    ax = fig.add_subplot()
    ax.axis("off")
    # resampled as grey levels, then coloured: a canvas-sized float array, not four (RGBA)
    ax.imshow(mosaic, cmap="gray", vmin=0, vmax=1, interpolation_stage="data")
    if title:
        fig.suptitle(title)
    return save_figure(fig, path, layout=False)


#: the white margin around :func:`plot_image_grid`'s mosaic, in inches
_GRID_MARGIN = 0.1


def _check_grey_levels(images: torch.Tensor) -> None:
    """Refuse images that are not real grey levels in [0, 1] (``NaN`` passes: drawn as a gap): imshow with
    ``vmin=0, vmax=1`` would draw every pixel >= 1 white, a thresholded silhouette of a 0..255 image.  The range
    is that of the pixels other than NaN (a NaN minimum or maximum compares false with 0 and 1, which let a
    0..255 image with one NaN pixel through before).

    :raises DataError: for complex images or a value outside [0, 1], naming the range found (and ``/ 255``
        when it looks like 8-bit pixels).
    """
    if images.is_complex():
        raise DataError(f"plot_image_grid images must be real grey levels in [0, 1], got dtype {images.dtype}")
    if images.is_floating_point():
        images = images[~torch.isnan(images)]
        if images.numel() == 0:
            return  # every pixel NaN: all gaps
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 1:
        hint = "; 8-bit pixels 0..255? pass images / 255" if 0 <= low and high <= 255 else ""
        raise DataError(f"plot_image_grid images must be grey levels in [0, 1], got values in [{low}, {high}] "
                        f"(dtype {images.dtype}){hint}")


def plot_khat(khat, path: str | os.PathLike | None = None, title: str = "PSIS k-hat per data point",
              num_samples: int | None = None) -> Figure:
    """Pareto :math:`\\hat k` per data point with the thresholds of :func:`hybridpgm.diagnostics.check_vi`:
    green up to :math:`\\min(1 - 1/\\log_{10} S,\\ 0.7)` for ``num_samples`` :math:`S` draws (ArviZ's
    ``good_k``, Vehtari et al. 2024: :func:`~hybridpgm.diagnostics.check_vi.good_khat`), orange above it up to
    0.7 (unreliable at this :math:`S`), red above 0.7; dotted and dashed lines mark the two.  Without
    ``num_samples`` the lower line is Yao et al. (2018)'s fixed 0.5, which is ArviZ's at :math:`S = 100` only.

    :math:`\\hat k = -\\infty` (:func:`~hybridpgm.diagnostics.pareto_khat`'s answer for equal weights) and
    :math:`+\\infty` are drawn as triangles at the bottom and top edges.  NaN k-hats among others are not
    drawn: a :class:`~hybridpgm.errors.DiagnosticsWarning` and the axis label give their count.

    :param khat: the k-hats, one per data point (a tensor, array or list of numbers, any shape: flattened).
    :param path: an image file to write the figure to (its folder is created; format from the suffix), or ``None``.
    :param title: the axes' title.
    :param num_samples: the draws per point behind the k-hats (:attr:`VICheck.num_samples
        <hybridpgm.diagnostics.check_vi.VICheck.num_samples>`).
    :raises DataError: for no k-hats, values that are not numbers, or only NaN k-hats.
    :raises ConfigError: for ``num_samples`` that is not an integer of at least 2.
    """
    good = 0.5 if num_samples is None else good_khat(positive_int(num_samples, "plot_khat num_samples", minimum=2))
    try:
        khat = as_host_array(khat, float).ravel()
    except (TypeError, ValueError) as err:
        raise DataError(f"plot_khat needs numbers, got {type(khat).__name__} ({err})") from None
    if khat.size == 0:
        raise DataError("plot_khat needs at least one k-hat, got none")
    nan = np.isnan(khat)
    if nan.all():
        raise DataError(f"plot_khat got {khat.size} k-hat(s), all NaN; nothing to plot")
    xlabel = "data point"
    if nan.any():
        note = f"{int(nan.sum())} of {khat.size} k-hats are NaN (first at index {int(np.argmax(nan))})"
        warnings.warn(f"plot_khat: {note}; they are not drawn", DiagnosticsWarning, stacklevel=users_stacklevel())
        xlabel += f" ({int(nan.sum())} NaN k-hat(s) not drawn)"
    index = np.arange(khat.size)
    finite = np.isfinite(khat)
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    colors = np.where(khat <= good, "tab:green", np.where(khat <= BAD, "tab:orange", "tab:red"))
    ax.scatter(index[finite], khat[finite], c=colors[finite], s=12)
    values = np.concatenate([khat[finite], [0.0, 0.7]])
    for sign, marker, color, label in ((-1, "v", "tab:green", "k-hat = -inf (equal weights)"),
                                       (1, "^", "tab:red", "k-hat = +inf")):
        edge = khat == sign * np.inf
        if edge.any():
            level = values.max() + 0.1 if sign > 0 else values.min() - 0.1
            ax.scatter(index[edge], np.full(int(edge.sum()), level), marker=marker, color=color, s=20, label=label)
    for level, style in ((good, ":"), (BAD, "--")):
        ax.axhline(level, color="grey", linestyle=style, linewidth=1)
    if np.isinf(khat).any():
        ax.legend(loc="best")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("k-hat")
    ax.set_title(title)
    return save_figure(fig, path)


def plot_log_weights(log_weights, path: str | os.PathLike | None = None,
                     title: str = "importance log-weights") -> Figure:
    """Histogram of importance or AIS log-weights (``K``), with the effective
    sample size :math:`(\\sum w)^2 / \\sum w^2` in the legend.

    :param log_weights: the log-weights (a tensor, array or list of numbers, any shape: flattened).
    :param path: an image file to write the figure to (its folder is created; format from the suffix), or ``None``.
    :param title: the axes' title.
    :raises DataError: for fewer than two log-weights, NaN or :math:`+\\infty` ones (:math:`-\\infty` is a zero
        weight), or all of them :math:`-\\infty`.
    """
    lw = torch.as_tensor(torch_readable(log_weights), dtype=torch.float64).detach().cpu().reshape(-1)
    if lw.numel() < 2:
        raise DataError(f"need at least 2 log-weights, got {lw.numel()}")
    if bool((torch.isnan(lw) | (lw == float("inf"))).any()) or not bool(torch.isfinite(lw).any()):
        raise DataError(f"log-weights must be finite or -inf (a zero weight), with at least one finite; got "
                        f"{int(torch.isnan(lw).sum())} NaN, {int((lw == float('inf')).sum())} +inf and "
                        f"{int(torch.isfinite(lw).sum())} finite of {lw.numel()}")
    ess = float(torch.exp(2 * torch.logsumexp(lw, 0) - torch.logsumexp(2 * lw, 0)))
    fig = Figure(figsize=(6, 3.5))
    ax = fig.add_subplot()
    ax.hist(lw.numpy(), bins=min(50, max(5, lw.numel() // 5)), color="tab:blue", alpha=0.8,
            label=f"ESS {ess:.1f} of {lw.numel()}")
    ax.set_xlabel("log-weight")
    ax.set_ylabel("count")
    ax.set_title(title)
    ax.legend()
    return save_figure(fig, path)


def plot_coverage(y, mean, std, path: str | os.PathLike | None = None, title: str = "interval calibration") -> Figure:
    """Calibration of Gaussian predictive intervals: empirical coverage of the
    central intervals against their nominal level, for 30 levels from 0.05 to 0.99.

    :param y: the observed values, ``N`` (a tensor, array or list; flattened).
    :param mean: the predictive means, ``N``.
    :param std: the predictive standard deviations, ``N`` (positive).
    :param path: an image file to write the figure to (its folder is created; format from the suffix), or ``None``.
    :param title: the axes' title.
    :raises DataError: for lengths that differ, no points, ``y`` or ``mean`` holding NaN/inf, or a standard
        deviation that is not positive and finite.
    """
    from scipy.stats import norm

    y, mean, std = (torch.as_tensor(torch_readable(a), dtype=torch.float64).detach().cpu().reshape(-1).numpy()
                    for a in (y, mean, std))
    if not (len(y) == len(mean) == len(std)):
        raise DataError(f"y, mean and std must have one length; got {len(y)}, {len(mean)}, {len(std)}")
    if len(y) == 0:
        raise DataError("plot_coverage needs at least one point, got none")
    for name, values in (("y", y), ("mean", mean)):  # a NaN would count as a point outside every interval
        bad = ~np.isfinite(values)
        if bad.any():
            raise DataError(f"{name} must be finite; {int(bad.sum())} of {len(values)} are not (first at index "
                            f"{int(np.argmax(bad))}: {values[np.argmax(bad)]})")
    bad = ~(np.isfinite(std) & (std > 0))
    if bad.any():
        raise DataError(f"std must be positive and finite; {int(bad.sum())} of {len(std)} are not (first at "
                        f"index {int(np.argmax(bad))}: {std[np.argmax(bad)]})")
    levels = np.linspace(0.05, 0.99, 30)
    z = np.abs(y - mean) / std
    empirical = [(z <= norm.ppf(0.5 + level / 2)).mean() for level in levels]
    fig = Figure(figsize=(4, 4))
    ax = fig.add_subplot()
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="ideal")
    ax.plot(levels, empirical, marker="o", markersize=3, label="model")
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("empirical coverage")
    ax.set_title(title)
    ax.legend()
    return save_figure(fig, path)


def _integer_labels(labels) -> torch.Tensor:
    """``labels`` as a flat CPU integer tensor; :class:`DataError` for anything else (strings, floats)."""
    try:
        y = torch.as_tensor(torch_readable(labels)).reshape(-1).cpu()
    except (TypeError, ValueError, RuntimeError) as err:
        raise DataError(f"labels must be integers, got {type(labels).__name__} ({err})") from None
    if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
        raise DataError(f"labels must be integers, got dtype {y.dtype}")
    return y


#: the largest width and height in inches of :func:`plot_sequence_marginals`' figure (2400 pixels at 100 dpi)
MAX_INCHES = 24.0


def plot_sequence_marginals(marginals, labels=None, path: str | os.PathLike | None = None,
                            title: str = "posterior marginals p(y_t | x)") -> Figure:
    """Heat map of a chain's label marginals (``T x L``), with the true labels
    (``T`` ints in ``[0, L)``, optional) marked.

    The figure is :math:`\\max(4,\\ 0.25\\,T + 1.5)` inches wide and :math:`0.35\\,L + 1.5` high, each
    capped at :data:`MAX_INCHES`: past :math:`T = 90` positions (or :math:`L = 64` labels) they share the
    pixels of the capped figure (``imshow`` resamples the ``L x T`` image to its axes), so a long chain costs
    memory in proportion to its ``T x L`` marginals rather than to a canvas 25 pixels per position
    (6.6 GB at :math:`T = 16000` before).

    :param marginals: the label marginals, ``T x L`` (a tensor or array).
    :param labels: the true labels, ``T`` integers in ``[0, L)``, marked with crosses; ``None`` (the default): none.
    :param path: an image file to write the figure to (its folder is created; format from the suffix), or ``None``.
    :param title: the axes' title.
    :raises DataError: for marginals that are not ``T x L`` with ``T, L >= 1`` (nothing to draw), or labels that
        are not ``T`` integers in ``[0, L)``.
    """
    m = torch.as_tensor(torch_readable(marginals), dtype=torch.float64).detach().cpu()
    if m.dim() != 2 or m.numel() == 0:
        raise DataError(f"marginals must be T x L with at least one position and one label, got shape "
                        f"{tuple(m.shape)}")
    fig = Figure(figsize=(min(max(4, 0.25 * m.shape[0] + 1.5), MAX_INCHES), min(0.35 * m.shape[1] + 1.5, MAX_INCHES)))
    ax = fig.add_subplot()
    image = ax.imshow(m.T.numpy(), aspect="auto", origin="lower", cmap="viridis", vmin=0, vmax=1)
    if labels is not None:
        y = _integer_labels(labels)
        if y.shape[0] != m.shape[0]:
            raise DataError(f"labels of length {y.shape[0]} do not match {m.shape[0]} positions")
        if y.numel() and (int(y.min()) < 0 or int(y.max()) >= m.shape[1]):
            raise DataError(f"labels must lie in [0, {m.shape[1]}) (the marginals' {m.shape[1]} labels), got "
                            f"values from {int(y.min())} to {int(y.max())}")
        ax.scatter(np.arange(len(y)), y.numpy(), marker="x", color="red", label="true label")
        ax.legend(loc="upper right")
    ax.set_xlabel("position t")
    ax.set_ylabel("label")
    ax.set_title(title)
    fig.colorbar(image, ax=ax)
    return save_figure(fig, path)
