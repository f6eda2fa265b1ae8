"""Conditional maximum likelihood for a neural linear-chain CRF, as a :func:`hybridpgm.fit` objective.

A tagger maps a batch of padded sequences to a
:class:`~hybridpgm.graphs.LinearChainCRF` over their labels; the loss is the
negative conditional log-likelihood per sequence [1]

.. math::

    \\ell(\\theta) = -\\frac1B \\sum_{b=1}^B \\log p_\\theta(y_b \\mid x_b)
    = \\frac1B \\sum_b \\big(\\log Z_\\theta(x_b) - s_\\theta(x_b, y_b)\\big),

with the partition function from the forward algorithm.

References:

1. J. Lafferty, A. McCallum, F. Pereira, *Conditional Random Fields:
   Probabilistic Models for Segmenting and Labeling Sequence Data*, ICML 2001.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from hybridpgm.checks import check_player
from hybridpgm.errors import ConfigError, DataError, ModelSpecError
from hybridpgm.graphs.crf import LinearChainCRF
from hybridpgm.graphs.mrf_declare import call_in_dtype

__all__ = ["CRFLikelihood", "token_accuracy"]


class CRFLikelihood:
    """One player, ``"crf"``, training every parameter of ``tagger``.

    :param tagger: a module called as ``tagger(x, lengths)`` returning a
        :class:`~hybridpgm.graphs.LinearChainCRF` with batch shape ``B``
        (e.g. a network ending in a :class:`~hybridpgm.graphs.CRFHead`).
    :raises ConfigError: ``tagger`` is not a :class:`torch.nn.Module`.

    Batches are ``(x, y, lengths)``: inputs ``B x T x ...``, labels ``B x T`` (long) and true lengths ``B``.

    A floating ``x`` of lower precision than the tagger's floating dtype (its first floating parameter's or
    buffer's) is widened to it, which is exact; any other ``x`` reaches the tagger as it is
    (:func:`~hybridpgm.graphs.mrf_declare.call_in_dtype`, as a :class:`~hybridpgm.graphs.MarkovNet` calls its neural
    potentials).

    :meth:`loss` raises :class:`~hybridpgm.errors.ConfigError` for a player other than ``"crf"``,
    :class:`~hybridpgm.errors.DataError` for a batch that is not ``(x, y, lengths)`` of tensors or has no
    sequences, or an ``x`` of another dtype the tagger fails on (naming both dtypes), and
    :class:`~hybridpgm.errors.ModelSpecError` for a tagger that returns anything but a
    :class:`~hybridpgm.graphs.LinearChainCRF` of batch shape ``B`` (a tuple, a tensor, another distribution, a
    chain of batch shape ``()``), naming what it returned.
    """

    def __init__(self, tagger: nn.Module):
        if not isinstance(tagger, nn.Module):
            raise ConfigError(f"CRFLikelihood tagger must be a torch.nn.Module returning a LinearChainCRF, "
                              f"got {type(tagger).__name__}")
        self.module = tagger

    def players(self) -> dict[str, list[nn.Parameter]]:
        """``"crf"``: every parameter of the tagger."""
        return {"crf": list(self.module.parameters())}

    def loss(self, player: str, batch: Any) -> torch.Tensor:
        """The mean negative log-likelihood :math:`-\\frac1B \\sum_b \\log p(y_b \\mid x_b)` (0-d).

        :param str player: ``"crf"``.
        :param batch: ``(x, y, lengths)`` (see the class docstring).
        :raises ConfigError: another player.
        :raises DataError: a bad batch, or an ``x`` of another dtype than the tagger's that it fails on.
        :raises ModelSpecError: the tagger returns no :class:`~hybridpgm.graphs.LinearChainCRF` of batch shape
            ``B`` (``y.shape[:1]``), naming the type or batch shape it returned."""
        check_player(player, ("crf",), "CRFLikelihood")
        if not isinstance(batch, (tuple, list)) or len(batch) != 3:
            raise DataError(f"CRFLikelihood batches are (x, y, lengths), got {type(batch).__name__} "
                            f"of {len(batch) if isinstance(batch, (tuple, list)) else 1} element(s)")
        x, y, lengths = batch
        kinds = [type(t).__name__ for t in batch if not isinstance(t, torch.Tensor)]
        if kinds:
            raise DataError(f"CRFLikelihood batches are (x, y, lengths) of tensors, got {kinds} among them")
        if y.dim() == 0 or y.shape[0] == 0:
            raise DataError(f"CRFLikelihood got labels of shape {tuple(y.shape)}; a batch needs at least one sequence")
        crf = call_in_dtype(self.module, x, lengths, what="CRFLikelihood: the tagger", arg="inputs x")
        if not isinstance(crf, LinearChainCRF) or crf.batch_shape != y.shape[:1]:
            raise ModelSpecError(_not_a_chain_per_sequence(crf, y))
        return -crf.log_prob(y).mean()


def _not_a_chain_per_sequence(crf: Any, y: torch.Tensor) -> str:
    """The message for a tagger that returned ``crf``, not a :class:`~hybridpgm.graphs.LinearChainCRF` of batch shape
    ``y.shape[:1]`` (one chain per sequence of the batch's labels ``y``)."""
    want = f"a LinearChainCRF of batch shape {tuple(y.shape[:1])}, one chain per sequence of the batch (labels " \
           f"{tuple(y.shape)})"
    if isinstance(crf, LinearChainCRF):
        return (f"CRFLikelihood: the tagger returned a LinearChainCRF of batch shape {tuple(crf.batch_shape)}, "
                f"expected {want}: its log_prob would score every sequence under other potentials; give the "
                f"CRFHead the unary scores of the whole batch (B x T x L)")
    kinds = f" of {', '.join(type(o).__name__ for o in crf)}" if isinstance(crf, (tuple, list)) else ""
    kind = type(crf).__name__ if type(crf).__module__ == "builtins" else f"{type(crf).__module__}.{type(crf).__name__}"
    return (f"CRFLikelihood: the tagger returned a {kind}{kinds}, expected "
            f"{want}: end the tagger with a CRFHead (another distribution's log_prob is not this objective's "
            f"likelihood)")


def token_accuracy(pred: torch.Tensor, y: torch.Tensor, lengths: torch.Tensor) -> float:
    """Fraction of the real (unpadded) tokens whose label ``pred`` gets right.

    :param pred: ``B x T`` predicted labels.
    :param y: ``B x T`` true labels.
    :param lengths: ``B`` integer sequence lengths in ``0..T`` (positions past them are padding).
    :raises DataError: ``pred`` and ``y`` that are not tensors of one ``B x T`` shape, ``lengths`` that is not
        an integer tensor of shape ``B`` or holds a length outside ``0..T``, or no real token at all (every
        length zero: the accuracy is undefined); the message names the argument, shape, dtype or value.
    """
    _check_tokens(pred, y, lengths)
    mask = torch.arange(y.shape[1], device=y.device) < lengths[:, None]
    return float(((pred == y) & mask).sum() / mask.sum())


def _check_tokens(pred, y, lengths) -> None:
    """Raise :class:`DataError` unless :func:`token_accuracy`'s arguments describe at least one real token."""
    kinds = {n: type(t).__name__ for n, t in (("pred", pred), ("y", y), ("lengths", lengths))
             if not isinstance(t, torch.Tensor)}
    if kinds:
        raise DataError(f"token_accuracy takes tensors pred, y and lengths, got {kinds}")
    if y.dim() != 2 or pred.shape != y.shape:
        raise DataError(f"token_accuracy needs pred and y of one shape B x T, got pred {tuple(pred.shape)} "
                        f"and y {tuple(y.shape)}")
    B, T = y.shape
    if lengths.dtype == torch.bool or lengths.is_floating_point() or lengths.is_complex() \
            or tuple(lengths.shape) != (B,):
        raise DataError(f"token_accuracy needs integer lengths of shape ({B},), got shape {tuple(lengths.shape)} "
                        f"and dtype {lengths.dtype}")
    outside = (lengths < 0) | (lengths > T)
    if bool(outside.any()):
        raise DataError(f"token_accuracy lengths must lie in 0..{T} (the sequences have T={T} positions), got "
                        f"{lengths[outside][:3].tolist()}")
    if not bool((lengths > 0).any()):
        raise DataError(f"token_accuracy got no real token (lengths {lengths.tolist()[:8]}, y of shape "
                        f"{tuple(y.shape)}): the accuracy of zero tokens is undefined")
