"""Training and evaluation modes, put back as they were.

``module.train(mode)`` sets every sub-module to one mode, so code that
switches a model to ``eval()`` for a moment and then calls ``train()``
unfreezes the parts the user froze (a pretrained batch norm in ``eval()``
inside a model being fine-tuned: its running statistics then move).
:func:`keeping_modes` records each sub-module's own flag and restores it.

It does so holding hybridpgm's process-wide lock
(:func:`~hybridpgm.global_state_lock.holding_global_state`): two threads querying one model at once (a
:class:`~hybridpgm.gp.DeepKernelGP` in training mode) each recorded the modes the other had set for its query,
and the last restore left the model in ``eval()``.  :func:`hybridpgm.fit` keeps the modes of its model for the
whole run and gives the lock up between its steps.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn

from hybridpgm.global_state_lock import holding_global_state

__all__ = ["keeping_modes", "train_models_in_eval"]


@contextlib.contextmanager
def keeping_modes(*modules: nn.Module) -> Iterator[None]:
    """Restore the ``training`` flag of every sub-module of ``modules`` on exit, also by an exception.

    Each module's flag is set directly (``m.training = flag``), so no step of the restore flips a module that is
    to stay as it was (a parent's recursive ``train(True)`` would unfreeze a frozen batch norm until its own turn
    came).  A module whose class overrides :meth:`~torch.nn.Module.train` and whose mode changed first gets its
    own ``train(flag)`` call, while its flag still differs, for its side effects (GPyTorch's modules drop their
    caches on a change of mode), after which every flag is set.  The restore finishes also when one of those
    calls, or an interrupt, raises: the exception is re-raised after it.  The whole scope holds hybridpgm's
    process-wide lock (see the module's docstring).
    """
    with holding_global_state():  # from the snapshot to the restore: no other thread's call in between
        modes = [(m, m.training) for module in modules for m in module.modules()]  # pre-order: parents first
        try:
            yield
        finally:
            _restore(modes)


def _overrides_train(module: nn.Module) -> bool:
    return type(module).train is not nn.Module.train


def _set_flags(modes: list[tuple[nn.Module, bool]]) -> None:
    for m, training in modes:
        m.training = training


def _restore(modes: list[tuple[nn.Module, bool]]) -> None:
    """Put every recorded flag back (see :func:`keeping_modes`); the first exception is re-raised at the end."""
    error: BaseException | None = None
    hooks = [(m, training) for m, training in modes if m.training != training and _overrides_train(m)]
    for _attempt in range(3):  # an interrupt anywhere below: all steps are idempotent, start again
        try:
            # the overriding train() first, while the module's flag still differs: GPyTorch clears its caches
            # (a variational strategy's Cholesky factor) only on a change of mode, which setting the flag
            # first would hide (review C: an SVGP left in eval() predicted from the factor of before fit's step)
            for m, training in hooks:
                if m.training != training:  # not done by an earlier attempt or by a parent's call
                    try:
                        m.train(training)
                    except BaseException as e:  # the other modules first, re-raised below
                        if error is None:
                            error = e
            _set_flags(modes)  # every flag, including what those calls set on their descendants
            break
        except BaseException as e:
            if error is None:
                error = e
    if error is not None:
        raise error


def train_models_in_eval(module: nn.Module) -> None:
    """Switch to training mode a model that is in ``eval()`` as a whole (straight from :func:`hybridpgm.load`, or
    after an evaluation), as :func:`hybridpgm.fit` trains it; a model in training mode keeps the parts the caller
    froze in ``eval()`` (a pretrained batch norm) as they are.  An objective's own container of models (an
    :class:`~torch.nn.ModuleDict` or :class:`~torch.nn.ModuleList` itself, not a subclass, which is a user's model
    whose frozen parts stay frozen: a GAN's generator and discriminator, NVIL's
    model and baselines, a model and a guide of two modules) is not a model: the rule applies to each model it
    holds, each judged as a whole (the container is always in training mode, so a loaded generator inside it
    trained in ``eval()``: batch norm on its running statistics, which never moved, and dropout off).

    :param module: the objective's ``module``.
    """
    if type(module) in (nn.ModuleDict, nn.ModuleList):  # exactly: a user's subclass is a model (review D)
        module.training = True
        for child in module.children():
            train_models_in_eval(child)
    elif not module.training:
        module.train()
