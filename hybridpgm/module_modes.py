"""Training and evaluation modes, put back as they were.

``module.train(mode)`` sets every sub-module to one mode, so code that
switches a model to ``eval()`` for a moment and then calls ``train()``
unfreezes the parts the user froze (a pretrained batch norm in ``eval()``
inside a model being fine-tuned: its running statistics then move).
:func:`keeping_modes` records each sub-module's own flag and restores it.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn

__all__ = ["keeping_modes"]


@contextlib.contextmanager
def keeping_modes(*modules: nn.Module) -> Iterator[None]:
    """Restore the ``training`` flag of every sub-module of ``modules`` on exit, also by an exception."""
    modes = [(m, m.training) for module in modules for m in module.modules()]  # pre-order: parents first
    try:
        yield
    finally:
        # through each module's own train(), parents before their children (train() recurses, so each child's
        # call comes last for it): side effects run, such as GPyTorch's ExactGP dropping its cached predictive
        # strategy when it goes back to training, which setting the flag would skip
        for m, training in modes:
            if m.training != training:  # a parent's call set its descendants: theirs come after it
                m.train(training)
