"""A synthetic tagging task: label sequences from a sticky hidden Markov model.

Labels :math:`y_t` follow a Markov chain with transition matrix :math:`A`
(heavy on the diagonal) and each emits a symbol :math:`x_t \\sim B_{y_t}`; the
symbols overlap between labels, so even the Bayes-optimal tagger, the HMM's
exact posterior :math:`p(y \\mid x)` (a linear-chain CRF with unary scores
:math:`\\log B_{y_t x_t}` and transition scores :math:`\\log A` [1]), is below
100% accurate.  The tagging CLI recipe and ``examples/crf_tagger.py`` use it.

References:

1. L. R. Rabiner, *A Tutorial on Hidden Markov Models and Selected
   Applications in Speech Recognition*, Proc. IEEE 77(2), 1989.
"""

from __future__ import annotations

import math

import torch

from hybridpgm.checks import as_integer, generator_or_none, positive_int
from hybridpgm.errors import DataError
from hybridpgm.graphs.crf import LinearChainCRF
from hybridpgm.keyword_alias import keyword_only_soon
from hybridpgm.sequence_lengths import lengths_tensor
from hybridpgm.tensor_arguments import require_tensor

__all__ = ["hmm_posterior", "random_hmm", "sample_hmm"]


@keyword_only_soon("generator")
def random_hmm(num_labels: int, num_symbols: int, *,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, ...]:
    """A random sticky HMM ``(log_pi [L], log_A [L, L], log_B [L, V])`` with a uniform start.

    :param generator: the draws' CPU :class:`torch.Generator` (``None``, the default: torch's global stream);
        keyword-only, as every sampler's (the third positional argument of older releases, which still works for
        one release, with a :class:`FutureWarning`).
    :raises DataError: ``num_labels`` or ``num_symbols`` is not an integer >= 2 (``bool`` and floats refused).
    :raises ConfigError: ``generator`` is neither a :class:`torch.Generator` nor ``None`` (a seed).
    """
    if not all(as_integer(n) is not None and n >= 2 for n in (num_labels, num_symbols)):
        raise DataError(f"an HMM tagging task needs integer numbers >= 2 of labels and symbols, got {num_labels!r} "
                        f"and {num_symbols!r}")
    generator = generator_or_none(generator, "random_hmm generator")
    with torch.device("cpu"):  # host tables, drawn from a CPU generator, whatever torch's default device
        log_a = torch.log_softmax(torch.randn(num_labels, num_labels, generator=generator)
                                  + 2.0 * torch.eye(num_labels), -1)
        log_b = torch.log_softmax(2.0 * torch.randn(num_labels, num_symbols, generator=generator), -1)
        log_pi = torch.full((num_labels,), -math.log(num_labels))
    return log_pi, log_a, log_b


def _tolerance(dtype: torch.dtype) -> float:
    """How far a normalised table's log-sums may sit from 0 in ``dtype``: :math:`\\sqrt{\\varepsilon}`,
    at least ``1e-6`` (a float32 table widened to float64 keeps float32's rounding)."""
    return max(torch.finfo(dtype).eps ** 0.5, 1e-6)


def _check_hmm(hmm, caller: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``hmm`` as ``(log_pi [L], log_A [L, L], log_B [L, V])``, checked to be a normalised HMM.

    Each table must be a floating tensor of its shape (``L, V >= 1``), and each of its rows a log-distribution:
    :math:`|\\log\\sum_j \\exp(\\text{row}_j)| \\le \\sqrt{\\varepsilon}` of its dtype (at least ``1e-6``);
    ``-inf`` entries (probability 0) are allowed, NaN and ``+inf`` are not.

    :param str caller: the function, for the message.
    :raises DataError: not three tensors, a non-floating table, shapes that disagree (a transposed ``log_B``, a
        ``log_pi`` of another length), or a table whose rows are not normalised (raw scores, or probabilities
        given instead of log-probabilities); the message names the table, its shape and the largest
        :math:`|\\mathrm{logsumexp}|` of its rows.
    """
    names = ("log_pi", "log_A", "log_B")
    if not isinstance(hmm, (tuple, list)) or len(hmm) != 3 or not all(isinstance(t, torch.Tensor) for t in hmm):
        got = (f"a {type(hmm).__name__} of {len(hmm)}" if isinstance(hmm, (tuple, list)) else f"a {type(hmm).__name__}")
        raise DataError(f"{caller}: the HMM must be three tensors (log_pi [L], log_A [L, L], log_B [L, V]), got {got}")
    for name, table in zip(names, hmm):
        if not table.is_floating_point():
            raise DataError(f"{caller}: the HMM's {name} has dtype {table.dtype}, expected floating log-probabilities")
    log_pi, log_a, log_b = hmm
    if log_a.dim() != 2 or log_a.shape[0] != log_a.shape[1] or not log_a.shape[0]:
        raise DataError(f"{caller}: the HMM's log_A has shape {tuple(log_a.shape)}, expected (L, L) with L >= 1 labels")
    num_labels = log_a.shape[0]
    if tuple(log_pi.shape) != (num_labels,):
        raise DataError(f"{caller}: the HMM's log_pi has shape {tuple(log_pi.shape)}, expected ({num_labels},): "
                        f"L = {num_labels} labels, as log_A {tuple(log_a.shape)} has")
    if log_b.dim() != 2 or log_b.shape[0] != num_labels or not log_b.shape[1]:
        hint = " (transposed? log_B is labels x symbols)" if log_b.dim() == 2 and log_b.shape[1] == num_labels else ""
        raise DataError(f"{caller}: the HMM's log_B has shape {tuple(log_b.shape)}, expected ({num_labels}, V): "
                        f"L = {num_labels} labels, as log_A {tuple(log_a.shape)} has, by V >= 1 symbols{hint}")
    for name, table in zip(names, hmm):
        worst = float(torch.logsumexp(table, -1).abs().max())  # NaN or +inf propagate; a row of -inf gives inf
        tolerance = _tolerance(table.dtype)
        if not worst <= tolerance:
            looks = bool(((table >= 0) & (table <= 1)).all()) and abs(float(table.sum(-1).max()) - 1) <= tolerance
            hint = ("; its rows sum to 1: probabilities? pass their log (table.log())" if looks else
                    "; normalise the scores (torch.log_softmax(scores, -1))")
            size = (f"is {worst:.4g}, above the tolerance {tolerance:.2g}" if math.isfinite(worst) else
                    f"is {worst} (NaN or +inf entries, or a row of -inf)")
            raise DataError(f"{caller}: the HMM's {name} (shape {tuple(table.shape)}, {table.dtype}) is not a table of "
                            f"normalised log-probabilities: the largest |logsumexp| of its rows {size}{hint}")
    return log_pi, log_a, log_b


@keyword_only_soon("generator")
def sample_hmm(hmm: tuple[torch.Tensor, ...], num_seqs: int, min_len: int, max_len: int, *,
               generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``num_seqs`` sequences padded with zeros to ``max_len``: ``(x [N, T], y [N, T], lengths [N])``,
    lengths uniform in ``min_len..max_len``.

    :param hmm: ``(log_pi [L], log_A [L, L], log_B [L, V])`` as from :func:`random_hmm`: normalised
        log-probabilities (each row's ``logsumexp`` is 0).
    :param generator: the draws' CPU :class:`torch.Generator` (``None``, the default: torch's global stream);
        keyword-only (the fifth positional argument of older releases, which still works for one release, with a
        :class:`FutureWarning`).
    :raises DataError: ``num_seqs`` is not an integer >= 0, the lengths are not integers with
        ``1 <= min_len <= max_len`` (``bool`` and floats refused), or ``hmm`` is not a normalised HMM of
        consistent shapes (the message names the table, its shape and its rows' largest ``|logsumexp|``).
    :raises ConfigError: ``generator`` is neither a :class:`torch.Generator` nor ``None`` (a seed).
    """
    num_seqs = positive_int(num_seqs, "sample_hmm num_seqs", error=DataError, minimum=0)
    if as_integer(min_len) is None or as_integer(max_len) is None or not 1 <= min_len <= max_len:
        raise DataError(f"sequence lengths need integers 1 <= min_len <= max_len, got {min_len!r} and {max_len!r}")
    log_pi, log_a, log_b = _check_hmm(hmm, "sample_hmm")
    generator = generator_or_none(generator, "sample_hmm generator")
    with torch.device("cpu"):  # host data, drawn from a CPU generator, whatever torch's default device
        lengths = torch.randint(min_len, max_len + 1, (num_seqs,), generator=generator)
        y = torch.zeros(num_seqs, max_len, dtype=torch.long)
        x = torch.zeros(num_seqs, max_len, dtype=torch.long)
        state = torch.multinomial(log_pi.exp().expand(num_seqs, -1), 1, generator=generator).squeeze(-1)
        for t in range(max_len):
            if t > 0:
                state = torch.multinomial(log_a.exp()[state], 1, generator=generator).squeeze(-1)
            y[:, t] = state
            x[:, t] = torch.multinomial(log_b.exp()[state], 1, generator=generator).squeeze(-1)
        mask = torch.arange(max_len) < lengths[:, None]
    return x * mask, y * mask, lengths


def hmm_posterior(hmm: tuple[torch.Tensor, ...], x: torch.Tensor,
                  lengths: torch.Tensor | None = None) -> LinearChainCRF:
    """The HMM's exact posterior :math:`p(y \\mid x)` as a :class:`LinearChainCRF`
    (batch ``N``, ``T`` steps, ``L`` labels): the Bayes-optimal tagger.

    :param hmm: ``(log_pi [L], log_A [L, L], log_B [L, V])`` as from :func:`random_hmm`: normalised
        log-probabilities (each row's ``logsumexp`` is 0), or the CRF would not be the HMM's posterior.
    :param x: ``N x T`` integer symbols (any integer dtype), each in ``0..V-1`` at positions ``t < lengths``; the
        padding beyond a sequence's length may hold anything (it is ignored, as by :class:`LinearChainCRF`).
    :param lengths: ``N`` sequence lengths (see :class:`LinearChainCRF`); None (the default): every sequence has
        the full length ``T``.
    :raises DataError: ``hmm`` is not a normalised HMM of consistent shapes (as for :func:`sample_hmm`), ``x`` is
        not an integer tensor with a time dimension, ``lengths`` is not numbers (an object array) or a masked
        array with masked entries, or does not broadcast with its batch shape or would enlarge it (a column ``[N, 1]``:
        one length per sequence, :func:`~hybridpgm.sequence_lengths.lengths_tensor`), or a symbol within a sequence's
        length is outside ``0..V-1`` (named with its index).
    :raises ModelSpecError: lengths that :class:`LinearChainCRF` refuses (not integers in ``1..T``).
    """
    log_pi, log_a, log_b = _check_hmm(hmm, "hmm_posterior")
    num_symbols = log_b.shape[-1]
    require_tensor(x, "hmm_posterior: x", arg="x")
    if x.dim() < 1:
        raise DataError(f"hmm_posterior: x must be an N x T tensor of integer symbols, got shape {tuple(x.shape)}")
    if x.is_floating_point() or x.is_complex() or x.dtype == torch.bool:
        raise DataError(f"hmm_posterior: x must hold integer symbols 0..{num_symbols - 1} (V = {num_symbols}), "
                        f"got dtype {x.dtype}")
    # int64 indices: torch reads a uint8 index as a boolean mask, refuses int8/int16 ones, and has no comparisons
    # for uint16/32/64 (a uint64 symbol >= 2**63 wraps negative here, and is refused as outside 0..V-1)
    x = x.to(torch.int64)
    # None: every sequence full length, as LinearChainCRF takes it
    lengths = lengths_tensor(lengths, x.shape[:-1], x.shape[-1], x.device, "hmm_posterior", DataError)
    try:
        inside = torch.arange(x.shape[-1], device=x.device) < lengths[..., None]  # positions t < lengths
        x, inside = torch.broadcast_tensors(x, inside)
    except RuntimeError:
        raise DataError(f"hmm_posterior: lengths of shape {tuple(lengths.shape)} do not broadcast with the batch "
                        f"shape of x {tuple(x.shape[:-1])}") from None
    bad = inside & ((x < 0) | (x >= num_symbols))
    if bool(bad.any()):
        pos = bad.nonzero()[0].tolist()
        raise DataError(f"hmm_posterior: x holds symbol {int(x[tuple(pos)])} at index {pos}, outside the HMM's "
                        f"symbols 0..{num_symbols - 1} (V = {num_symbols})")
    symbols = torch.where(inside, x, torch.zeros_like(x))  # any padding value reads symbol 0, then is ignored
    return LinearChainCRF(log_b.T[symbols], log_a, start=log_pi, lengths=lengths)
