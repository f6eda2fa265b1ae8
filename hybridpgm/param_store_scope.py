"""Keep hybridpgm's own calls out of Pyro's global param store.

Under Pyro's default (global) parameter mode, running a :class:`pyro.nn.PyroModule`'s Pyro method
registers its parameters by name in the global param store.  A later module with the same names (a second
network with the same node names, a second VAE) is then handed the first one's tensors by Pyro, and
silently does not train.  hybridpgm's models keep their parameters as module attributes, which Pyro uses
under either mode, so hybridpgm's own calls -- :func:`hybridpgm.fit`, sampling, scoring, estimating a
likelihood -- run in a fresh scope of the store that is restored afterwards; what the user runs themselves
(plain ``SVI``, ``Predictive``, a guide's first call) registers as Pyro always does.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, TypeVar

import pyro

__all__ = ["own_param_store"]

F = TypeVar("F", bound=Callable[..., Any])


def own_param_store(fn: F) -> F:
    """Run ``fn`` in a fresh scope of Pyro's param store (``pyro.get_param_store().scope()``), restored
    afterwards, so that nothing it registers reaches the user's store."""
    @functools.wraps(fn)
    def scoped(*args: Any, **kwargs: Any) -> Any:
        with pyro.get_param_store().scope():
            return fn(*args, **kwargs)
    return scoped  # type: ignore[return-value]
