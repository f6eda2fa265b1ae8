"""The closure of an optimizer whose ``step`` takes one (:func:`~hybridpgm.train.fit_options.needs_closure`:
:class:`torch.optim.LBFGS`), for a :class:`~hybridpgm.train.player_step.Player`'s update.

L-BFGS evaluates the loss and its gradient at each point of its line search, so its ``step(closure)`` calls the
closure once or more per update.  The first call returns the loss :meth:`~hybridpgm.train.player_step.Player.update`
already computed (its checked, averaged and clipped gradients are in ``.grad``), so the update costs no extra
evaluation where the line search takes its first point; every later call is one more pass over the micro-batches
at the parameters the optimizer tries.

Reference: D. C. Liu, J. Nocedal, *On the Limited Memory BFGS Method for Large Scale Optimization*, Mathematical
Programming 45, 1989.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import torch

from hybridpgm.train.distributed import DistributedContext
from hybridpgm.train.update_scope import one_update

if TYPE_CHECKING:
    from hybridpgm.train.player_step import Player

__all__ = ["optimizer_closure"]


def optimizer_closure(player: Player, evaluate: Callable[[], torch.Tensor], first: torch.Tensor,
                      context: DistributedContext, clip_grad_norm: float | None,
                      trainable: list[torch.nn.Parameter]) -> Callable[[], torch.Tensor]:
    """The closure of ``player``'s optimizer, whose ``step`` takes one.

    Its first call returns ``first``, the loss of the evaluation :meth:`~hybridpgm.train.player_step.Player.update`
    already ran, whose (checked, clipped) gradients are in ``.grad``; each later call clears the gradients and runs
    ``evaluate`` (the micro-batches) again at the parameters the optimizer tries, under a fresh
    :func:`~hybridpgm.train.update_scope.one_update`, clipping to ``clip_grad_norm`` as the first evaluation was.
    Its models' data checks raise at once (the data passed them at the first evaluation); a non-finite
    loss there is the optimizer's to handle (L-BFGS's line search backs off), and parameters that
    overflow are caught by :func:`~hybridpgm.train.finite_checks.check_finite_parameters`.  On several ranks
    (``context``) each evaluation averages the loss and the ``trainable`` parameters' gradients over the ranks in
    one all-reduce, as the first did: every rank's optimizer sees the same numbers, so all take the same
    evaluations in lock-step.  Never with a gradient scaler
    (:func:`~hybridpgm.train.fit_options.check_closure_optimizer`).
    """
    calls = 0

    def closure() -> torch.Tensor:
        nonlocal calls
        calls += 1
        if calls == 1:
            return first
        player.optimizer.zero_grad(set_to_none=True)
        with one_update():
            loss = evaluate()
        loss = context.all_reduce_gradients(trainable, extra=loss)
        if clip_grad_norm is not None:
            torch.nn.utils.clip_grad_norm_(player.params, clip_grad_norm)
        return loss
    return closure
