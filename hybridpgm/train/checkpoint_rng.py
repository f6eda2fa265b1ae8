"""The global RNG states a checkpoint holds (torch's CPU and CUDA generators, Python's ``random``, NumPy's legacy
global generator), in the types ``torch.load(weights_only=True)`` reads back, and their restoration.

Python's state, ``random.getstate()``, is a tuple ``(version, internal, gauss_next)`` whose ``internal`` holds 625
integers (the Mersenne Twister's 624 32-bit words and its position).  It is stored with ``internal`` as one int64
tensor (checkpoint format 4), as NumPy's 624 keys are: kept as a tuple of ints, the checkpoint's three walks
(finiteness, plain data, non-finite floats) and the pickler went through it value by value, a third of a small
model's write.  :func:`set_rng_state` takes either form, so a checkpoint of an earlier format (the tuple) resumes
as it did, bit for bit.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
import torch

__all__ = ["rng_state", "set_rng_state"]


def rng_state() -> dict[str, Any]:
    """Every global RNG state, in types ``weights_only`` loading accepts.

    :returns: ``{"torch": ByteTensor, "python": (version, int64 tensor [625], gauss_next), "numpy": {...}}`` and,
        where CUDA is initialised, ``"cuda"``: the list of each device's state."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {
        "torch": torch.get_rng_state(),
        "python": (version, torch.from_numpy(np.array(internal, dtype=np.int64)), gauss),
        "numpy": {
            "kind": kind,
            "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "cached": float(cached),
        },
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    """Restore what :func:`rng_state` captured (its tensors may have been mapped to another device, as
    :func:`~hybridpgm.train.checkpoint.load_checkpoint` does with ``map_location``: torch takes RNG states only as
    CPU byte tensors).

    :param state: what :func:`rng_state` returned, or read back from a checkpoint; Python's ``internal`` state as
        the int64 tensor of format 4 or the tuple of ints of earlier formats."""
    torch.set_rng_state(state["torch"].cpu())
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal.tolist() if isinstance(internal, torch.Tensor) else internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["keys"].cpu().numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached"]))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([s.cpu() for s in state["cuda"]])
