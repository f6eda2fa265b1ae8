"""Exact computations in at least float32, also under :func:`torch.autocast`.

``fit(precision="bf16")`` (or ``"fp16"``) runs every loss under :func:`torch.autocast`, which casts the
operands of matmuls and einsums (``torch.bmm``, ``torch.einsum``, ``@``) to the half precision and lets
networks return half-precision outputs.  That is what a network's forward pass wants, but not an exact
contraction: a log-partition function :math:`\\log Z = \\log \\sum_x e^{s(x)}` summed over a long chain or
many joint states loses nats in bfloat16 (8 bits of mantissa: one unit in the last place of 128 is 1) and
overflows float16 (largest value 65504).  :class:`exact_precision` is the one helper the exact entry points
(MRF log-partition, marginals, MAP and samples; Bayesian-network contractions; the sigmoid belief net's
enumeration; Boltzmann machines' enumerated :math:`\\log Z`; the steps of a contraction plan) run under:

* where autocast is on for the device type of the operands, it turns autocast off for that device type inside
  its block and promotes the floating operands to their common dtype, at least float32 (the standard of
  :func:`hybridpgm.graphs.crf_recursions.working`): under autocast, exact quantities are computed, and
  returned, in at least float32, and a float64 model stays float64;
* where autocast is off it does nothing: the operands are returned as they are (a bfloat16 model, made with
  ``model.to(torch.bfloat16)``, keeps computing in its own dtype), at the cost of one
  :func:`torch.is_autocast_enabled` call, and no host synchronisation in either case.

>>> with torch.autocast("cpu", dtype=torch.bfloat16):
...     with exact_precision(torch.ones(2, dtype=torch.bfloat16)) as (t,):
...         (t @ t).dtype
torch.float32
"""

from __future__ import annotations

import contextlib

import torch

__all__ = ["any_autocast", "autocast_dtype", "autocast_states", "autocast_switched", "exact_dtype", "exact_precision"]

#: the device types whose autocast state :func:`autocast_states` reads
_AUTOCAST_KINDS = ("cpu", "cuda", "xpu", "mps")


def _any_autocast_fallback() -> bool:
    return any(torch.is_autocast_enabled(kind) for kind in _AUTOCAST_KINDS)


#: ``any_autocast()``: whether autocast is on for any device type, in one C call (torch's
#: ``torch._C._is_any_autocast_enabled``, or a loop over the device types where a torch lacks it): the fast path
#: of :class:`exact_precision` and of the contraction steps, which run it at every step.
any_autocast = getattr(torch._C, "_is_any_autocast_enabled", _any_autocast_fallback)


def exact_dtype(*tensors: torch.Tensor | None) -> torch.dtype:
    """The common dtype of the floating ``tensors`` and float32: at least float32 (``None`` entries, integer
    and ``bool`` tensors are ignored).

    :returns: ``torch.promote_types`` of float32 and every floating tensor's dtype (float64 if any is float64).
    """
    dtype = torch.float32
    for t in tensors:
        if t is not None and (t.is_floating_point() or t.is_complex()):
            dtype = torch.promote_types(dtype, t.dtype)
    return dtype


class exact_precision:
    """A context for an exact computation: autocast off, floating operands in at least float32, where autocast
    is on; nothing otherwise (see the module docstring).

    ``with exact_precision(a, b) as (a, b): ...`` gives back the operands (promoted, under autocast) and runs
    the block with autocast disabled for their device type.

    :param tensors: the operands (tensors, or ``None``; integer and ``bool`` tensors pass unchanged); they
        should be on one device type.
    :param device: the device whose autocast is turned off, where no operand is given (by default the first
        tensor's, else the CPU).
    """

    __slots__ = ("_scope", "tensors")

    def __init__(self, *tensors: torch.Tensor | None, device: torch.device | str | None = None):
        self._scope = None
        self.tensors = tensors
        if not any_autocast():
            return
        if device is not None:
            kind = device.type if isinstance(device, torch.device) else torch.device(device).type
        elif tensors and tensors[0] is not None:
            kind = tensors[0].device.type  # the common case, kept cheap: this runs at every contraction step
        else:
            kind = next((t.device.type for t in tensors if t is not None), "cpu")
        if torch.is_autocast_enabled(kind):
            self._scope = torch.autocast(kind, enabled=False)
            dtype = exact_dtype(*tensors)
            self.tensors = tuple(t.to(dtype) if t is not None and t.is_floating_point() else t for t in tensors)

    @property
    def active(self) -> bool:
        """Whether autocast was on (the block runs with it off and the operands promoted)."""
        return self._scope is not None

    def __enter__(self) -> tuple:
        if self._scope is not None:
            self._scope.__enter__()
        return self.tensors

    def __exit__(self, *exc) -> None:
        if self._scope is not None:
            self._scope.__exit__(*exc)


def autocast_dtype(kind: str) -> torch.dtype | None:
    """The dtype autocast computes in on device type ``kind`` (``"cpu"``, ``"cuda"``), or ``None`` where autocast
    is off there.

    :param str kind: a device type."""
    return torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else None


def autocast_states() -> tuple[tuple[str, torch.dtype], ...]:
    """The device types with autocast on, each with its autocast dtype (``()`` outside autocast): what
    :func:`autocast_switched` turns back on, or off, elsewhere."""
    if not any_autocast():
        return ()
    return tuple((kind, torch.get_autocast_dtype(kind)) for kind in _AUTOCAST_KINDS
                 if torch.is_autocast_enabled(kind))


@contextlib.contextmanager
def autocast_switched(states: tuple[tuple[str, torch.dtype], ...], enabled: bool):
    """Autocast turned on (``enabled=True``, with each state's dtype) or off for the device types of ``states``
    (:func:`autocast_states`) inside the block, as they were after it."""
    with contextlib.ExitStack() as stack:
        for kind, dtype in states:
            stack.enter_context(torch.autocast(kind, dtype=dtype, enabled=enabled))
        yield
