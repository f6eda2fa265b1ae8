"""Chunked enumeration of binary states, for exact log-partition functions.

Exact log Z of a Boltzmann machine sums over every joint state of one set of
binary units (the other set is summed out analytically).  With ``n`` units that
is ``2**n`` states: :func:`logsumexp_over_states` walks them in chunks so that
``n = 20..24`` fits in memory, never holding more than ``chunk_size`` states.
"""

from __future__ import annotations

import inspect
from typing import Callable

import torch
from torch.utils.checkpoint import checkpoint

from hybridpgm.checks import positive_int
from hybridpgm.errors import ConfigError, ModelSpecError
from hybridpgm.precision_scope import exact_precision

__all__ = ["MAX_ENUMERATED_UNITS", "ais_unless_exact", "binary_states", "logsumexp_over_states"]

#: Largest number of binary units :func:`logsumexp_over_states` agrees to enumerate.
MAX_ENUMERATED_UNITS = 30


def binary_states(start: int, stop: int, num_units: int, *, dtype=None, device=None) -> torch.Tensor:
    """The binary states with indices from ``start`` to ``stop - 1`` (bit ``i`` of the index is unit ``i``).

    :returns: a ``(stop - start) x num_units`` tensor of zeros and ones.
    """
    index = torch.arange(start, stop, device=device, dtype=torch.int64)
    bits = torch.arange(num_units, device=device, dtype=torch.int64)
    return ((index.unsqueeze(-1) >> bits) & 1).to(dtype or torch.get_default_dtype())


def logsumexp_over_states(
    log_f: Callable[[torch.Tensor], torch.Tensor],
    num_units: int,
    *,
    dtype=None,
    device=None,
    chunk_size: int | None = None,
    cost_per_state: int = 1,
    what: str = "model",
) -> torch.Tensor:
    r"""Compute :math:`\log \sum_{x \in \{0,1\}^n} \exp f(x)` by chunked enumeration.

    :param log_f: maps an ``S x n`` batch of states to their ``S`` log-weights.
    :param num_units: ``n``.
    :param chunk_size: states per chunk; by default about ``2**24 / cost_per_state``
        (``cost_per_state`` is the width of the largest intermediate ``log_f``
        builds per state, e.g. the size of the layer it sums out).
    :param what: name used in the error message.
    :returns: a scalar tensor, in ``dtype``: ``log_f`` runs with autocast off (a float32 model's
        :math:`\log Z` is not summed in half precision under ``fit(precision="bf16")``;
        :class:`~hybridpgm.precision_scope.exact_precision`); in grad mode, differentiable through ``log_f``
        (with several chunks, each is recomputed in the backward pass, so the graph never holds more than one
        chunk).
    :raises ModelSpecError: if ``num_units`` exceeds :data:`MAX_ENUMERATED_UNITS`.
    :raises ConfigError: ``chunk_size`` is not a positive integer.
    """
    if chunk_size is not None:
        chunk_size = positive_int(chunk_size, f"exact log-partition of {what}: chunk_size")
    if num_units > MAX_ENUMERATED_UNITS:
        raise ModelSpecError(
            f"exact log-partition of {what} would enumerate 2**{num_units} states "
            f"(limit 2**{MAX_ENUMERATED_UNITS}); use method='ais'"
        )
    total = 2**num_units
    if chunk_size is None:
        chunk_size = max(1, 2**24 // max(1, cost_per_state + num_units))

    def chunk(start: int) -> torch.Tensor:
        states = binary_states(start, min(start + chunk_size, total), num_units, dtype=dtype, device=device)
        with exact_precision(states):
            return torch.logsumexp(log_f(states), dim=0)

    starts = range(0, total, chunk_size)
    if torch.is_grad_enabled() and len(starts) > 1:
        # recompute each chunk in the backward pass: a differentiable log Z keeps one chunk's graph at a time
        parts = [checkpoint(chunk, start, use_reentrant=False, preserve_rng_state=False) for start in starts]
    else:
        parts = [chunk(start) for start in starts]
    return torch.logsumexp(torch.stack(parts), dim=0)


def ais_unless_exact(model, owner: str, method: str, ais_kwargs: dict, chunk_size: int | None = None
                     ) -> torch.Tensor | None:
    """The ``method`` of a Boltzmann machine's ``log_partition``: ``None`` for ``"exact"`` (the caller
    enumerates), the :class:`~hybridpgm.infer.AIS` estimate of :math:`\\log Z` for ``"ais"`` (``ais_kwargs``
    are AIS's options, ``data`` its base-rate data and ``generator`` the :class:`torch.Generator` of its draws).

    :raises ConfigError: another ``method``, AIS options given with ``"exact"``, or a ``chunk_size`` (the
        enumeration's) given with ``"ais"``, naming ``owner``.
    """
    if method == "ais" and chunk_size is not None:  # it would be ignored: AIS enumerates nothing
        raise ConfigError(f"{owner}.log_partition('ais') takes no chunk_size (it sizes the chunks of the "
                          f"exact enumeration), got {chunk_size!r}")
    if method == "exact" and ais_kwargs:
        raise ConfigError(f"{owner}.log_partition('exact') takes no AIS options, got {sorted(ais_kwargs)}; "
                          "pass method='ais' to use them")
    if method == "ais":
        from hybridpgm.infer.ais import AIS

        options = dict(ais_kwargs)
        call = {"data": options.pop("data", None)}
        if "generator" in options:  # no keyword at all without one: the call is the one it always was
            call["generator"] = options.pop("generator")
        known = [n for n in inspect.signature(AIS).parameters if n != "self"]
        if unknown := sorted(set(options) - set(known)):
            raise ConfigError(f"{owner}.log_partition('ais') got unknown option(s) {unknown}; the AIS options are "
                              f"{known + ['data', 'generator']}")
        return AIS(**options)(model, **call).log_z
    if method != "exact":
        raise ConfigError(f"{owner}.log_partition method must be 'exact' or 'ais', got {method!r}")
    return None
