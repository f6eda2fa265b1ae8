"""Whether this torch's autocast hands a gradient pass a weight cast made under ``torch.no_grad()``.

Inside one :func:`torch.autocast` region torch caches the low-precision copy of each float32 leaf that requires
grad (a weight), so a layer used several times in a step is cast once.  In older torch (pytorch issue 112583,
any device type; torch 2.5 here) a cast made under ``torch.no_grad()`` entered that cache too, without a graph,
and a later use of the weight with grad on received it: the result did not require grad.
``fit(precision="bf16"|"fp16")`` of an :class:`~hybridpgm.infer.SVIObjective` meets exactly that (its plate-scale
check traces the guide under no_grad before the loss) and was refused with "returned a tensor without a
gradient" on torch 2.5.  torch 2.13 keeps no graphless cast there.

:func:`autocast_cache_drops_grad` asks the running torch once per process, with the smallest case of it; where it
finds the bug :func:`hybridpgm.train.precision.autocast_for` opens autocast with ``cache_enabled=False`` (each
use of a weight casts again: a cost where a weight is used several times per step, paid only on such a torch).
The autocast regions hybridpgm opens inside fit's own (a GP's network, the traces of an enumerated ELBO) inherit
the setting: :func:`torch.autocast` takes ``cache_enabled`` from the region it is opened in.
"""

from __future__ import annotations

import threading

import torch

__all__ = ["autocast_cache_drops_grad"]

#: the probe's answer, once per process (``None``: not asked yet)
_FOUND: bool | None = None


def _probe() -> bool:
    """One ``mm`` of a leaf weight under no_grad, then one with grad, in one CPU autocast region with the cache
    on: ``True`` where the second result does not require grad.  Deterministic tensors (no random draws), in
    float32 on the CPU whatever the defaults; run in a thread of its own (:func:`autocast_cache_drops_grad`)."""
    weight = torch.ones(2, 2, dtype=torch.float32, device="cpu", requires_grad=True)
    x = torch.ones(1, 2, dtype=torch.float32, device="cpu")
    with torch.enable_grad(), torch.autocast("cpu", dtype=torch.bfloat16, cache_enabled=True):
        with torch.no_grad():
            torch.mm(x, weight)
        return not torch.mm(x, weight).requires_grad


def autocast_cache_drops_grad() -> bool:
    """Whether this torch's autocast reuses, with grad on, a weight cast cached under ``torch.no_grad()`` (so
    that a loss computed after a no-grad pass in the same region has no gradient); asked once per process.

    The probe runs in a thread of its own: autocast's state (on/off, dtype, cache flag, nesting) and its cache
    of casts, grad mode, inference mode and torch-function modes (``with torch.device(...)``) are per thread, so
    the caller's are neither read nor changed, whatever region it is called in.  It draws no random numbers.  A
    probe that cannot run (an error inside it) counts as the bug: the cache is then left off, which costs time,
    never a gradient.

    :returns: ``True`` where autocast's cache must be off for training (torch 2.5), ``False`` where it is safe
        (torch 2.13).
    """
    global _FOUND
    if _FOUND is None:
        answer = [True]

        def run() -> None:
            try:
                answer[0] = _probe()
            except Exception:  # noqa: BLE001 -- no answer: keep the cache off (safe, slower)
                answer[0] = True

        thread = threading.Thread(target=run, name="hybridpgm-autocast-probe", daemon=True)
        thread.start()
        thread.join()
        _FOUND = answer[0]
    return _FOUND
