"""Run a function outside ``torch.compile`` without importing ``torch._dynamo`` where nothing compiles.

:func:`torch.compiler.disable` imports ``torch._dynamo`` (seconds on the first import of a process, and
hybridpgm's import loads no more of torch than it uses), so it is not applied when a module is imported.
:func:`eagerly` gives the function itself while ``torch._dynamo`` has not been imported (then nothing can be
compiling), and otherwise its :func:`torch.compiler.disable` d wrapper, made once per function: a call of it in a
compiled region is a graph break, and the function runs eagerly.
"""

from __future__ import annotations

import sys
from typing import Callable

__all__ = ["eagerly"]

_DISABLED: dict = {}


def eagerly(fn: Callable) -> Callable:
    """``fn``, to be run outside ``torch.compile`` (see the module docstring).

    :param fn: a module-level function (kept, with its wrapper, for the process's life).
    :returns: ``fn`` while ``torch._dynamo`` is not imported, else ``torch.compiler.disable(fn)``."""
    if "torch._dynamo" not in sys.modules:
        return fn
    wrapped = _DISABLED.get(fn)
    if wrapped is None:
        import torch

        wrapped = _DISABLED[fn] = torch.compiler.disable(fn)
    return wrapped
