"""Where hybridpgm's warnings point: at the line of the user's code that called into hybridpgm.

:func:`warnings.warn` attributes a warning to the frame ``stacklevel`` levels up; a fixed level is right only for
one call path (``fit`` called by the user, not by :func:`hybridpgm.gp.fit_validated`; ``estimate_log_z`` called
by the user, not by ``log_likelihood_bounds``).  :func:`users_stacklevel` counts the levels to the first frame
outside the package (and outside :mod:`contextlib`, whose frames sit between a ``with`` statement and the
context manager's generator, and torch's decorator wrappers: a public method under ``@torch.no_grad()`` is called
through a frame of ``torch/utils/_contextlib.py``), as pandas' ``find_stack_level`` does, so that Python's default
filter shows a warning once per line of the user's code, at that line.
"""

from __future__ import annotations

import contextlib
import os
import sys

import torch

__all__ = ["users_stacklevel"]

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep
#: torch's ``no_grad``/``enable_grad``/``inference_mode`` decorators, read by path (the module is private)
_TORCH_DECORATORS = os.path.join(os.path.dirname(os.path.abspath(torch.__file__)), "utils", "_contextlib.py")
_INSIDE = (_PACKAGE, os.path.abspath(contextlib.__file__), _TORCH_DECORATORS)


def users_stacklevel(past_libraries: bool = False) -> int:
    """The ``stacklevel`` that makes a :func:`warnings.warn` in the function calling this point at the first frame
    outside hybridpgm (``1`` when the caller is itself outside it).

    :param past_libraries: skip Pyro's and torch's frames too: for a warning raised while Pyro or torch runs
        hybridpgm's code for the user (a model traced by a Pyro JIT ELBO is called through ``pyro/nn/module.py``
        and ``torch/jit``), which would otherwise point at a line of theirs.
    """
    inside = _INSIDE
    if past_libraries:
        inside += tuple(os.path.dirname(os.path.abspath(m.__file__)) + os.sep
                        for m in (torch, sys.modules.get("pyro")) if m is not None)
    frame, level = sys._getframe(1), 1
    while frame.f_back is not None and os.path.abspath(frame.f_code.co_filename).startswith(inside):
        frame, level = frame.f_back, level + 1
    return level
