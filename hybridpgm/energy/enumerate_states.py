"""Chunked enumeration of binary states, for exact log-partition functions.

Exact log Z of a Boltzmann machine sums over every joint state of one set of
binary units (the other set is summed out analytically).  With ``n`` units that
is ``2**n`` states: :func:`logsumexp_over_states` walks them in chunks so that
``n = 20..24`` fits in memory, never holding more than ``chunk_size`` states.

In grad mode with several chunks each chunk is checkpointed (:func:`torch.utils.checkpoint.checkpoint`): the
backward pass recomputes it, so the graph holds one chunk at a time.  The recomputation reads the parameters and
buffers of the forward pass, not the module's attributes at backward time: those of the ``module`` that ``log_f``
reads are copied once per call (a copy of the parameters, not of a chunk) and rebound inside each chunk with
:func:`torch.func.functional_call`, so a :func:`~torch.func.functional_call` that has put the module's own
parameters back, or an in-place edit before ``backward()``, changes nothing.  Other tensors ``log_f`` reads (a
DBM's clamped data) are given as ``inputs`` and held the same way: copied once per call where chunks are
recomputed (in grad mode, with several chunks; never without a gradient) and passed to each checkpoint, so an
in-place edit of the data before ``backward()`` changes nothing either.  Under :mod:`torch.func` transforms
(whose ``grad`` refuses checkpointing) and inside a forward-mode AD level the chunks are computed plainly, one
after the other, their graphs all kept.
"""

from __future__ import annotations

import inspect
from typing import Callable, Sequence

import torch
import torch.autograd.forward_ad as forward_ad
from torch.func import functional_call
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
    module: torch.nn.Module | None = None,
    inputs: Sequence[torch.Tensor] = (),
) -> torch.Tensor:
    r"""Compute :math:`\log \sum_{x \in \{0,1\}^n} \exp f(x)` by chunked enumeration.

    :param log_f: maps an ``S x n`` batch of states to their ``S`` log-weights: ``log_f(states, *inputs)``.
    :param num_units: ``n``.
    :param chunk_size: states per chunk; by default about ``2**24 / cost_per_state``
        (``cost_per_state`` is the width of the largest intermediate ``log_f``
        builds per state, e.g. the size of the layer it sums out).
    :param what: name used in the error message.
    :param module: the :class:`torch.nn.Module` whose parameters and buffers ``log_f`` reads (e.g. the RBM of a
        bound method): where chunks are recomputed in the backward pass, they are recomputed with the tensors of
        the forward pass (see the module docstring).  ``None``: ``log_f`` reads no module's state.
    :param inputs: the other tensors ``log_f`` reads (a DBM's clamped data), passed to it after the states: where
        chunks are recomputed in the backward pass, ``log_f`` gets a copy taken in the forward pass (one per call,
        differentiable), so the recomputation reads the forward pass's values; elsewhere (no gradient, one chunk,
        a transform) the tensors themselves, not copied.
    :returns: a scalar tensor, in ``dtype``: ``log_f`` runs with autocast off (a float32 model's
        :math:`\log Z` is not summed in half precision under ``fit(precision="bf16")``;
        :class:`~hybridpgm.precision_scope.exact_precision`); in grad mode, differentiable through ``log_f``
        (with several chunks, each is recomputed in the backward pass, so the graph never holds more than one
        chunk; not under :mod:`torch.func` transforms or forward-mode AD, see the module docstring).
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

    def chunk(start: int, *held: torch.Tensor) -> torch.Tensor:
        states = binary_states(start, min(start + chunk_size, total), num_units, dtype=dtype, device=device)
        with exact_precision(states):
            return torch.logsumexp(log_f(states, *held), dim=0)

    starts = range(0, total, chunk_size)
    if torch.is_grad_enabled() and len(starts) > 1 and not _transformed():
        # recompute each chunk in the backward pass: a differentiable log Z keeps one chunk's graph at a time
        parts = _checkpointed(chunk, starts, module, tuple(inputs))
    else:
        parts = [chunk(start, *inputs) for start in starts]
    return torch.logsumexp(torch.stack(parts), dim=0)


def _transformed() -> bool:
    """Whether a :mod:`torch.func` transform (whose ``grad``/``vjp`` refuse checkpointing's saved-tensor hooks)
    or a forward-mode AD level is active (a recomputation after the level is left saves no tangents' tensors, and
    the checkpoint refuses a recomputation that saves fewer tensors than the forward pass)."""
    return torch._C._are_functorch_transforms_active() or forward_ad._current_level >= 0


class _Rebound(torch.nn.Module):
    """Calls ``fn`` with ``module`` as a submodule, so that :func:`torch.func.functional_call` on it rebinds the
    module's parameters and buffers (names prefixed ``"module."``) for the duration of the call."""

    def __init__(self, module: torch.nn.Module, fn: Callable[[int], torch.Tensor]) -> None:
        super().__init__()
        self.module = module
        self.fn = fn

    def forward(self, start: int, *held: torch.Tensor) -> torch.Tensor:
        return self.fn(start, *held)


def _checkpointed(chunk: Callable[..., torch.Tensor], starts: range, module: torch.nn.Module | None,
                  inputs: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """``chunk(start, *inputs)`` for each start, each checkpointed, with ``inputs`` copied once (differentiably)
    and passed as the checkpoint's inputs; with a ``module``, its parameters and buffers too, rebound inside the
    chunk, so the backward pass recomputes each chunk from the forward pass's values."""
    held = [tensor.clone() for tensor in inputs]  # immune to in-place edits of the data before backward
    if module is None:
        return [checkpoint(chunk, start, *held, use_reentrant=False, preserve_rng_state=False) for start in starts]
    named = [*module.named_parameters(), *module.named_buffers()]
    names = [f"module.{name}" for name, _ in named]
    tensors = [tensor.clone() for _, tensor in named]  # immune to in-place edits of the originals before backward
    rebound = _Rebound(module, chunk)

    def run(start: int, *values: torch.Tensor) -> torch.Tensor:
        params, data = values[:len(names)], values[len(names):]
        return functional_call(rebound, dict(zip(names, params, strict=True)), (start, *data))

    return [checkpoint(run, start, *tensors, *held, use_reentrant=False, preserve_rng_state=False)
            for start in starts]


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
