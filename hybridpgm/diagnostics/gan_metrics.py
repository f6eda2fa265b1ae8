"""Evaluation of the adversarial models: sample quality, mode coverage, adaptation.

* :func:`inception_score` [1] with a classifier the library trains on the real
  data (:func:`train_classifier`), in place of the ImageNet Inception network:
  :math:`\\mathrm{IS} = \\exp \\mathbb E_x \\mathrm{KL}\\big(p(c \\mid x) \\,\\|\\, p(c)\\big)`,
  between 1 and the number of classes; high when every sample is classified
  confidently and the classes are balanced.
* :func:`ring_coverage`: on the ring of Gaussians
  (:func:`hybridpgm.data.toy.ring_of_gaussians`), a sample is *high quality*
  when it lies within ``num_std`` standard deviations of its nearest mode, and
  a mode is *covered* when it holds at least ``min_fraction`` of the samples as
  high-quality ones [2, 3].
* :func:`target_accuracy` for domain adaptation, :func:`clustering_accuracy`
  (best one-to-one map of clusters to classes, the Hungarian algorithm) for
  InfoGAN's categorical code.

References:

1. T. Salimans, I. Goodfellow, W. Zaremba, V. Cheung, A. Radford, X. Chen,
   *Improved Techniques for Training GANs*, NeurIPS 2016.
2. L. Metz, B. Poole, D. Pfau, J. Sohl-Dickstein, *Unrolled Generative
   Adversarial Networks*, ICLR 2017.
3. A. Srivastava, L. Valkov, C. Russell, M. U. Gutmann, C. Sutton, *VEEGAN*, NeurIPS 2017.
"""

from __future__ import annotations

import contextlib
import functools
from dataclasses import dataclass
from typing import Callable, Iterator, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.optimize import linear_sum_assignment
from torch import nn

from hybridpgm.checks import torch_readable
from hybridpgm.data.toy import ring_centers
from hybridpgm.data.validation import as_model_dtype
from hybridpgm.errors import DataError
from hybridpgm.infer.particle_probe import keeping_module_state, probed_modules
from hybridpgm.module_modes import keeping_modes
from hybridpgm.network_checks import check_output
from hybridpgm.nn import mlp

__all__ = ["RingCoverage", "clustering_accuracy", "inception_score", "ring_coverage", "target_accuracy",
           "train_classifier"]


class _CrossEntropy:
    """A one-player objective of :func:`hybridpgm.fit`: mean cross-entropy of ``net`` on ``(x, y)``."""

    def __init__(self, net: nn.Module):
        self.module = net

    def players(self):
        return {"classifier": list(self.module.parameters())}

    def loss(self, player, batch):
        x, y = batch
        return F.cross_entropy(self.module(x), y)


def train_classifier(x: torch.Tensor, y: torch.Tensor, num_classes: int | None = None,
                     hidden: Sequence[int] = (256,), num_steps: int = 500, batch_size: int = 128,
                     lr: float = 1e-3, seed: int = 0, device: str = "auto") -> nn.Module:
    """Train an MLP classifier ``batch x D`` -> logits ``batch x C`` on real data
    with :func:`hybridpgm.fit`; the reference network of :func:`inception_score`.

    :param x: ``N x D`` floating-point inputs: a tensor or an array-like (a NumPy array, a pandas DataFrame), read
        as :func:`clustering_accuracy` reads them; the network is built and trained in their dtype (NumPy's
        default float64 gives a float64 network).
    :param y: ``N`` integer labels in ``[0, num_classes)`` (any integer dtype; the loss reads them as int64), of the
        same kinds as ``x``.
    :param int num_classes: ``C``; ``None``: one more than the largest label.
    :param hidden: the widths of the MLP's hidden layers (ReLU, He initialisation), ``D -> *hidden -> C``.
    :param int num_steps: optimizer steps (:func:`hybridpgm.fit`'s ``max_steps``) of the cross-entropy loss.
    :param int batch_size: examples per step.
    :param float lr: the learning rate of :class:`torch.optim.Adam`.
    :param seed: the network's initialisation and the data order (an integer in ``[0, 2**32)``, as
        :func:`hybridpgm.fit` takes); the caller's global RNGs (torch, NumPy, Python) are left as they were
        (:func:`~hybridpgm.rng_scope.keeping_global_rngs`).
    :param str device: where to train, as :func:`hybridpgm.fit`'s ``device`` (``"auto"``: CUDA when available).
    :returns: the trained network, in ``x``'s dtype and in eval mode.
    :raises ConfigError: a ``seed`` that is not an integer torch or :func:`hybridpgm.fit` accepts, or a bad
        option of :func:`hybridpgm.fit` (``num_steps``, ``batch_size``, ``device``).
    :raises DataError: for shapes other than ``(N, D)`` and ``(N,)`` with ``N >= 1``, inputs or labels that are
        not numbers, non-float inputs, labels that are not integers, or labels outside ``[0, num_classes)``.
    """
    from hybridpgm.rng_scope import keeping_global_rngs
    from hybridpgm.train.trainer import fit

    x = _as_tensor(x, "train_classifier inputs x")
    y = _as_tensor(y, "train_classifier labels y")
    if x.dim() != 2 or y.shape != x.shape[:1]:
        raise DataError(f"train_classifier needs x (N, D) and y (N,), got {tuple(x.shape)} and {tuple(y.shape)}")
    if x.shape[0] == 0:
        raise DataError(f"train_classifier needs at least one example, got x of shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise DataError(f"train_classifier needs floating-point inputs x, got dtype {x.dtype}")
    _check_labels(y, "train_classifier labels y")
    num_classes = int(y.max()) + 1 if num_classes is None else num_classes
    if int(y.min()) < 0 or int(y.max()) >= num_classes:
        raise DataError(f"train_classifier labels y must lie in [0, {num_classes}), got values from {int(y.min())} "
                        f"to {int(y.max())}")
    with keeping_global_rngs(seed, what="train_classifier seed"):
        net = mlp([x.shape[1], *hidden, num_classes], "relu", "he").to(x.dtype)
        fit(_CrossEntropy(net), (x, y.long()), batch_size=batch_size, max_steps=num_steps, seed=seed,
            device=device, progress=False, optim=functools.partial(torch.optim.Adam, lr=lr))
    return net.eval()


def _as_tensor(value, what: str) -> torch.Tensor:
    """``value`` as a tensor, as the other diagnostics read array-likes
    (``torch.as_tensor(torch_readable(value))``: a tensor as it is, a NumPy array without a copy where torch can
    view it, a pandas object by its values); :class:`DataError` naming ``what`` for anything that is not numbers."""
    value = torch_readable(value, what)  # its own DataError for a masked array with masked entries
    try:
        return torch.as_tensor(value)
    except (TypeError, ValueError, RuntimeError) as error:
        raise DataError(f"{what} must be a tensor or an array of numbers, got {type(value).__name__} "
                        f"({error})") from None


def _check_labels(values: torch.Tensor, what: str) -> None:
    """Raise :class:`DataError` unless ``values`` is an integer tensor (class labels, cluster ids)."""
    if values.is_floating_point() or values.is_complex() or values.dtype == torch.bool:
        raise DataError(f"{what} must be integers, got dtype {values.dtype}")


@torch.no_grad()
def inception_score(classifier: Callable[[torch.Tensor], torch.Tensor], samples: torch.Tensor,
                    batch_size: int = 1000) -> float:
    """:math:`\\exp \\frac1N \\sum_n \\mathrm{KL}(p(c \\mid x_n) \\| \\bar p(c))`,
    :math:`\\bar p(c) = \\frac1N \\sum_n p(c \\mid x_n)` [1].

    :param classifier: maps ``batch x D`` to class logits ``batch x C`` (2-D: a binary classifier's one logit
        per sample, shape ``batch``, is refused, since softmax would normalise it across the batch; give it as
        ``torch.stack([torch.zeros_like(l), l], -1)``).  A network (or a bound method of one, or a
        :func:`functools.partial` of either: :func:`~hybridpgm.infer.particle_probe.probed_modules`) is scored in
        :meth:`~torch.nn.Module.eval` mode, each sub-module's own mode put back after
        (:func:`~hybridpgm.module_modes.keeping_modes`), and keeps its buffers
        (:func:`~hybridpgm.infer.particle_probe.keeping_module_state`): a dropout layer draws nothing (the score
        of a fixed classifier is one number, and torch's global stream does not move), a batch norm normalises
        with its running statistics, which do not move (not with each chunk's statistics, which made the score
        depend on ``batch_size``).  A plain function that reaches a network through a closure is called as it
        is: put that network in ``eval()`` yourself.
    :param samples: ``N x D`` samples to score: a tensor, or an array-like (a NumPy array) read as
        :func:`ring_coverage` reads them and, when floating, in the dtype of the classifier's weights (NumPy's
        default float64 for a float32 network).  A floating tensor of another dtype than the classifier's weights
        follows the data rule (:func:`~hybridpgm.data.validation.as_model_dtype`): widened where that is exact
        (float32 samples, float64 network), else refused (float64 samples, float32 network).
    :param int batch_size: samples per call of ``classifier`` (bounds the memory, not the score).
    :returns: the score; a class the classifier rules out for a sample (logit :math:`-\\infty`) adds
        :math:`0 \\log 0 = 0` to that sample's divergence.
    :raises DataError: for no samples (the score of none is undefined), samples that are not numbers, a
        classifier that does not return one tensor of logits ``batch x C`` per chunk (naming the shape; one
        example without its batch dimension is named as such), logits of one class (``C = 1``: the softmax
        of one class is 1 and the score would be 1 whatever the samples), or floating samples finer than the
        classifier's weights (naming both dtypes).
    """
    given_as_tensor = isinstance(samples, torch.Tensor)
    samples = _as_tensor(samples, "inception_score samples")
    weights = next((p for p in getattr(classifier, "parameters", lambda: ())() if p.is_floating_point()), None)
    if weights is not None and samples.is_floating_point():
        if given_as_tensor:  # the data rule: widened where exact, else a DataError naming both dtypes
            samples = as_model_dtype(samples, weights.dtype, "inception_score samples")
        else:  # NumPy's float64 by default: an array is read in the classifier's dtype
            samples = samples.to(weights.dtype)
    if samples.dim() == 0 or samples.shape[0] == 0:
        raise DataError(f"inception_score needs at least one sample, got shape {tuple(samples.shape)}")
    with _evaluating(classifier):
        logp = torch.cat([_log_probs(classifier, s, samples.shape) for s in samples.split(batch_size)]).double()
    log_marginal = torch.logsumexp(logp, dim=0) - np.log(logp.shape[0])
    p = logp.exp()
    kl = torch.where(p > 0, p * (logp - log_marginal), 0.0).sum(-1)  # 0 log 0 = 0 (xlogy's convention)
    return float(kl.mean().exp())


@contextlib.contextmanager
def _evaluating(owner: Callable) -> Iterator[None]:
    """A context in which the networks behind ``owner`` (:func:`~hybridpgm.infer.particle_probe.probed_modules`)
    are in :meth:`~torch.nn.Module.eval` mode; each sub-module's mode (:func:`~hybridpgm.module_modes.keeping_modes`)
    and every buffer (:func:`~hybridpgm.infer.particle_probe.keeping_module_state`) are put back on exit."""
    modules = probed_modules(owner)
    with keeping_modes(*modules), keeping_module_state(*modules):
        for module in modules:
            module.eval()
        yield


def _log_probs(classifier: Callable[[torch.Tensor], torch.Tensor], s: torch.Tensor,
               samples_shape: torch.Size) -> torch.Tensor:
    """``len(s) x C`` log-probabilities of the classes, from the logits ``classifier(s)``.

    :param s: a chunk of the samples, whose shape is ``samples_shape`` (named in the errors).
    :raises DataError: the classifier returns something other than one tensor ``len(s) x C`` with ``C >= 2``."""
    out = check_output(classifier(s), "inception_score classifier", DataError)
    shape = tuple(samples_shape)
    one_example = (f"samples of shape {shape} have no batch dimension if they are one example: give it as x[None] "
                   f"(x.unsqueeze(0))")
    if out.dim() == 1 and out.shape[0] == s.shape[0]:
        raise DataError(f"inception_score classifier must return class logits (batch, C), got shape "
                        f"{tuple(out.shape)} for a batch of {s.shape[0]}; give a binary classifier's one logit per "
                        f"sample l (shape (batch,)) as the two classes' logits "
                        f"torch.stack([torch.zeros_like(l), l], -1)" + (f"; {one_example}" if s.dim() == 1 else ""))
    if out.dim() != 2 or out.shape[0] != s.shape[0]:
        missing = f"; {one_example}" if s.dim() == 1 else ""
        raise DataError(f"inception_score classifier must return class logits (batch, C), got shape "
                        f"{tuple(out.shape)} for a batch of {s.shape[0]}{missing}")
    if out.shape[1] == 1:
        raise DataError(f"inception_score classifier returned logits of one class, shape {tuple(out.shape)}: the "
                        f"softmax of one class is 1, so the score would be 1 whatever the samples; give a binary "
                        f"classifier's logit l = out[:, 0] as the two classes' logits "
                        f"torch.stack([torch.zeros_like(l), l], -1)")
    return F.log_softmax(out, dim=-1)


@dataclass
class RingCoverage:
    """Mode coverage on the ring, as :func:`ring_coverage` gives it.

    :param modes_covered: the number of modes with at least ``max(1, min_fraction * N)`` high-quality samples
        near them.
    :param num_modes: the number of modes of the ring.
    :param high_quality_rate: the fraction of the samples that are of high quality (near a mode).
    :param counts: the number of high-quality samples near each mode (``num_modes`` ints).
    """

    modes_covered: int
    num_modes: int
    high_quality_rate: float
    counts: list[int]


@torch.no_grad()
def ring_coverage(samples: torch.Tensor, num_modes: int = 8, radius: float = 2.0, std: float = 0.05,
                  num_std: float = 3.0, min_fraction: float = 0.01) -> RingCoverage:
    """Mode coverage and high-quality-sample rate of ``N x 2`` ``samples`` on the ring [2, 3].

    :param samples: ``N x 2`` floating-point samples: a tensor or an array-like (a NumPy array, flipped or
        read-only ones too, a DataFrame, a list), read as the other diagnostics read them
        (:func:`~hybridpgm.checks.torch_readable`).
    :param num_modes: the number of Gaussian modes, evenly spaced on the circle.
    :param radius: the circle's radius (the modes' distance from the origin).
    :param std: the modes' standard deviation.
    :param num_std: a sample is of high quality within ``num_std * std`` of its nearest mode.
    :param min_fraction: a mode is covered by at least this fraction of the samples (and at least one) of high
        quality near it.
    :raises DataError: for samples that are not ``N x 2`` floats with ``N >= 1``, or not numbers.
    """
    samples = _as_tensor(samples, "ring_coverage samples")
    if samples.dim() != 2 or samples.shape[1] != 2 or samples.shape[0] == 0:
        raise DataError(f"ring_coverage needs samples of shape (N, 2) with N >= 1, got {tuple(samples.shape)}")
    if not samples.is_floating_point():
        raise DataError(f"ring_coverage needs floating-point samples, got dtype {samples.dtype}")
    centers = ring_centers(num_modes, radius, dtype=samples.dtype, device=samples.device)
    dist, mode = torch.cdist(samples, centers).min(dim=1)
    good = dist < num_std * std
    counts = torch.bincount(mode[good], minlength=num_modes)
    covered = int((counts >= max(1.0, min_fraction * samples.shape[0])).sum())
    return RingCoverage(covered, num_modes, float(good.float().mean()), counts.tolist())


@torch.no_grad()
def target_accuracy(predict: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, y: torch.Tensor) -> float:
    """Accuracy of ``predict`` (labels ``batch``, or logits ``batch x C``) on target-domain ``(x, y)``; a network
    ``predict`` (or a bound method of one) runs in ``eval()`` mode, its modes and buffers put back after, as in
    :func:`inception_score` (a dropout layer in training mode drew from torch's global stream, and the accuracy
    of a fixed network changed from call to call).

    :param predict: maps ``x`` to integer labels ``batch`` or to logits ``batch x C`` with ``C >= 2`` (the label
        is their argmax).  A binary classifier's one logit per sample (``nn.Linear(h, 1)``: ``batch x 1``, or
        squeezed to floats ``batch``) is refused, not read: the argmax of one column is always 0, and floats that
        are not whole numbers are no labels (whole-number floats are read as labels).  Give it as labels,
        ``(logit > 0).long()``, or as two logits, ``torch.stack([torch.zeros_like(logit), logit], -1)``.
    :param x: the target-domain inputs, ``batch x ...``, given to ``predict`` in one call.
    :param y: the target-domain labels, ``batch`` ints: a tensor or an array-like (a NumPy array), read as
        :func:`clustering_accuracy` reads them.
    :raises DataError: when the predictions do not give one label per entry of ``y``, or there is none, or ``y``
        is not numbers, or the predictions are one logit per sample (``batch x 1``) or floats that are not whole
        numbers.
    """
    y = _as_tensor(y, "target_accuracy labels y")
    with _evaluating(predict):
        out = check_output(predict(x), "target_accuracy predict", DataError)
    binary = ("a binary classifier's one logit per sample: give labels, (logit > 0).long(), or two logits, "
              "torch.stack([torch.zeros_like(logit), logit], -1)")
    if out.dim() == 2 and out.shape[-1] == 1:  # argmax over one column: always class 0
        raise DataError(f"target_accuracy predict returned logits of shape {tuple(out.shape)}, one class: if this is "
                        f"{binary}")
    if out.dim() == 1 and (out.is_complex() or out.is_floating_point() and not bool((out == out.round()).all())):
        # no labels (squeezed logits): compared with y, never equal; whole-number floats are labels (argmax().float())
        raise DataError(f"target_accuracy predict returned labels of dtype {out.dtype} (shape {tuple(out.shape)}): "
                        f"labels must be integers; if these are {binary}")
    labels = out.argmax(-1) if out.dim() == 2 else out
    if labels.shape != y.shape or y.numel() == 0:
        raise DataError(f"target_accuracy needs one prediction per label: predictions of shape {tuple(out.shape)} "
                        f"against labels y of shape {tuple(y.shape)}")
    return float((labels == y.to(labels.device)).float().mean())


def clustering_accuracy(clusters: torch.Tensor, labels: torch.Tensor) -> float:
    """Accuracy of ``clusters`` (``N`` ints) as labels (``N`` ints) under the best
    one-to-one map of clusters to labels (Hungarian algorithm); chance is about
    ``1 / num_classes`` for balanced classes.

    The ids need not be ``0..K-1``: with :math:`K_c` distinct cluster ids and :math:`K_y` distinct labels,
    however large or sparse, the map is found on their :math:`K_c \\times K_y` table of co-occurrence counts
    (the ids renumbered in order with :func:`numpy.unique`): :math:`O(N \\log N + K_c K_y \\min(K_c, K_y))` time
    and :math:`O(N + K_c K_y)` memory (a table sized by the largest ids took 11 GB for ids up to 27,000 before).

    :param clusters: ``N`` cluster ids: a tensor or an array-like (a NumPy array, a pandas Series, a list), read
        as the other diagnostics read them (:func:`~hybridpgm.checks.torch_readable`).
    :param labels: ``N`` class labels, of the same kinds as ``clusters``.
    :raises DataError: for inputs that are not 1-D, shapes that differ, no items, or values that are not
        non-negative integers.
    """
    clusters = _as_tensor(clusters, "clustering_accuracy clusters")
    labels = _as_tensor(labels, "clustering_accuracy labels")
    _check_labels(clusters, "clustering_accuracy clusters")
    _check_labels(labels, "clustering_accuracy labels")
    if clusters.dim() != 1 or labels.dim() != 1:
        raise DataError(f"clustering_accuracy needs 1-D clusters and labels (N,), got shapes "
                        f"{tuple(clusters.shape)} and {tuple(labels.shape)}")
    c, y = np.asarray(clusters.cpu()), np.asarray(labels.cpu())
    if c.shape != y.shape:
        raise DataError(f"clusters {c.shape} and labels {y.shape} must have the same shape")
    if c.size == 0:
        raise DataError("clustering_accuracy needs at least one item, got none")
    if c.min() < 0 or y.min() < 0:
        raise DataError(f"clustering_accuracy needs non-negative clusters and labels, got minima {c.min()} and "
                        f"{y.min()}")
    # the ids renumbered 0..K-1 in order: the K_c x K_y table of the ids that occur, not one sized by the largest
    cluster_ids, c = np.unique(c, return_inverse=True)
    label_ids, y = np.unique(y, return_inverse=True)
    table = np.bincount(c.reshape(-1) * len(label_ids) + y.reshape(-1), minlength=len(cluster_ids) * len(label_ids))
    table = table.reshape(len(cluster_ids), len(label_ids))
    rows, cols = linear_sum_assignment(-table)
    return float(table[rows, cols].sum() / len(y))
