"""One player's update: accumulate micro-batch gradients, check, sync, step.

Kept apart from :func:`hybridpgm.fit` so the update rule -- the part that
must be exactly right for accumulation, mixed precision and data parallelism
-- reads in one place.  The finiteness tests it reads with the loss are
:mod:`hybridpgm.train.finite_checks`'s, the autocast context of each micro-batch
:mod:`hybridpgm.train.precision`'s, the written-out gradients it may take instead of autograd's
:mod:`hybridpgm.train.written_gradients`'s, and the closure of an L-BFGS step :mod:`hybridpgm.train.closure_step`'s.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field
from typing import Any

import torch

from hybridpgm.data.validation import batch_origin
from hybridpgm.errors import ConfigError
from hybridpgm.train.closure_step import optimizer_closure
from hybridpgm.train.micro_batches import micro_batch_origin, one_row_micro_batch_error
from hybridpgm.train.update_scope import micro_batch, one_update
from hybridpgm.train.deferred_checks import deferring_checks
from hybridpgm.train.distributed import DistributedContext
from hybridpgm.train.divergence import diverged_error, failed_elsewhere
from hybridpgm.train.finite_checks import _all_finite, _sums, stacked_in
from hybridpgm.train.fit_options import inference_mode_error, needs_closure
from hybridpgm.train.precision import PRECISIONS, autocast_for
from hybridpgm.train.scaler_step import scaled_step, unscaled_overflow
from hybridpgm.train.written_gradients import _writes_its_loss_gradients  # noqa: F401  (tests import it here)
from hybridpgm.train.written_gradients import add_written_gradients, takes_written_gradients

# PRECISIONS, autocast_for: hybridpgm.train.precision's
__all__ = ["PRECISIONS", "Player", "autocast_for", "clear_optimizer_gradients"]

#: the dtypes of a loss kept as it is (at least float32)
_WIDE = (torch.float32, torch.float64)


def _check_loss(objective, player: str, loss, needs_graph: bool) -> None:
    """Raise :class:`ConfigError` unless ``loss`` is a scalar tensor that (when the objective does not write its
    own gradients) carries a gradient to differentiate: a check of attributes only, no device synchronisation."""
    what = f"{type(objective).__name__}.loss({player!r})"
    if not isinstance(loss, torch.Tensor):
        raise ConfigError(f"{what} returned {type(loss).__name__}, expected a scalar tensor")
    if loss.dim() != 0:
        raise ConfigError(f"{what} returned shape {tuple(loss.shape)}, expected a scalar")
    if needs_graph and not loss.requires_grad:
        raise ConfigError(f"{what} returned a tensor without a gradient (requires_grad=False): was it computed "
                          f"under torch.no_grad(), detached, or from none of the player's parameters?")


#: torch's own ``Optimizer.zero_grad``, which :func:`clear_optimizer_gradients` stands for
_ZERO_GRAD = torch.optim.Optimizer.zero_grad


def clear_optimizer_gradients(optimizer: torch.optim.Optimizer) -> None:
    """``optimizer.zero_grad(set_to_none=True)``: every ``.grad`` of its parameter groups set to ``None``.

    Where the optimizer's class keeps torch's ``zero_grad`` and no profiler is recording, the loop is run here:
    torch's opens a profiler range and leaves TorchDynamo, about 15 us a call on a CPU, a tenth of the fixed
    cost of a step of a tiny model.  An optimizer whose class defines its own ``zero_grad``, or a run under a
    profiler (which shows the ``Optimizer.zero_grad`` range), gets ``optimizer.zero_grad`` itself, as does one
    given a ``zero_grad`` of its own as an instance attribute (a wrapper patched onto it)."""
    if type(optimizer).zero_grad is not _ZERO_GRAD or "zero_grad" in optimizer.__dict__ \
            or torch.autograd._profiler_enabled():
        optimizer.zero_grad(set_to_none=True)
        return
    for group in optimizer.param_groups:
        for p in group["params"]:
            p.grad = None


@dataclass(eq=False)
class Player:
    """A player's parameters, optimizer, scheduler and (fp16) gradient scaler.

    :ivar names: the parameters' names in the module (for error messages).
    :ivar skip_nonfinite: skip (and count in :attr:`skipped`) a step whose loss
        or gradient is not finite, instead of raising.
    :ivar skipped: the steps skipped, under ``skip_nonfinite`` or by the fp16 gradient scaler
        (:mod:`hybridpgm.train.scaler_step`, with ``overflows_in_a_row``, also checkpointed: a resumed run's first
        warning comes at an uninterrupted run's step; ``warned_overflow`` is not: it may warn again).
    :ivar closure_step: whether the optimizer's ``step`` needs a closure
        (:func:`~hybridpgm.train.fit_options.needs_closure`), read once here rather than at every step.
    """

    name: str
    params: list[torch.nn.Parameter]
    optimizer: torch.optim.Optimizer
    scheduler: Any = None
    scaler: Any = None
    names: list[str] = field(default_factory=list)
    skip_nonfinite: bool = False
    skipped: int = 0
    closure_step: bool = field(init=False, default=False)
    overflows_in_a_row: int = field(init=False, default=0)
    warned_overflow: bool = field(init=False, default=False)

    def __post_init__(self):
        self.closure_step = needs_closure(self.optimizer)

    def update(self, objective: Any, micro_batches: list[tuple[Any, float]], *, step: int,
               context: DistributedContext, precision: str | None, device: torch.device,
               clip_grad_norm: float | None, checkpoint: Any = None, accumulate: int | None = None,
               batch_size: int | None = None) -> float:
        """Run the micro-batches, then one optimizer step.  Returns the loss.

        Micro-batch ``i`` with weight ``m_i / B`` contributes
        ``m_i / B * loss_i`` to the gradient; the gradients (and the loss) are
        averaged over ranks once, after the last micro-batch, in one bucket.
        Before the optimizer steps, the averaged loss and gradients are checked
        to be finite (a float32 sum per gradient, which any NaN/inf reaches; a
        sum that overflows is settled exactly); the loss, those sums and the data checks the models
        deferred (:mod:`hybridpgm.train.deferred_checks`) reach the host
        together, in the one device-host synchronisation a step already needs
        to report its loss.  They are stacked in ``promote_types(loss dtype, float32)``, so the
        returned loss of a float64 objective is its float64 value (not rounded to float32, and
        finite above float32's largest value, about ``3.4e38``).  A failed data check raises its own error, before
        any update.
        On several ranks each rank's failed check and non-finite loss ride in the one all-reduce of the
        gradients (:meth:`~hybridpgm.train.distributed.DistributedContext.in_rank_slots`), so a rank whose
        own data passed raises a :class:`~hybridpgm.errors.DataError`, or a :class:`TrainingDivergedError`,
        that names the rank at fault ("see rank r's error") rather than a bare non-finite loss or gradient.
        Whose own gradient was not finite is asked only when the averaged gradients are (:meth:`_gradient_ranks`,
        the error path): each rank keeps a reference to its own gradients, which the all-reduce replaces
        without writing into them, so the steps that do not diverge pay no pass over them and no collective.
        With an fp16 gradient scaler, non-finite gradients are the scaler's to
        skip (it lowers its scale), so only the loss is checked; the gradients are unscaled before the read, which
        takes the scaler's overflow flag along, and a step the scaler skips is counted in :attr:`skipped`, its
        loss (at the parameters the step left unchanged) returned as any other
        (:mod:`hybridpgm.train.scaler_step`, which warns once when many steps in a row are skipped).

        The models' messages name the step, the player and, when the batch was
        split, the micro-batch (:func:`~hybridpgm.train.micro_batches.micro_batch_origin`).
        Each micro-batch's loss runs under its share ``m_i / (B R)`` of the update over ``R`` ranks
        (:func:`~hybridpgm.train.update_scope.micro_batch_share`), for terms a model adds once per step.

        A player all of whose parameters are frozen (``requires_grad=False``: the generative model of a wake-sleep
        objective frozen to train its recognition network alone) has its loss computed, checked and returned
        for the history like any other, but nothing is back-propagated and neither its optimizer nor its
        scheduler steps: the random numbers its loss draws are drawn as when it trains, so the other players
        see the same stream.  An optimizer whose ``step`` needs a closure
        (:func:`~hybridpgm.train.fit_options.needs_closure`: :class:`torch.optim.LBFGS`) is stepped with one
        (:func:`~hybridpgm.train.closure_step.optimizer_closure`) that re-runs the micro-batches; the returned
        loss is the one at the parameters before the step.

        :param accumulate: ``fit``'s ``accumulate`` (default: the number of micro-batches) and
            ``batch_size`` its batch size, for the message of a micro-batch of one row under batch norm.
        :raises TrainingDivergedError: the loss or a gradient is NaN/inf (unless
            ``skip_nonfinite``); this player's update has not been applied.  For a non-finite loss the message ends
            with the objective's ``explain_nonfinite`` of the micro-batches, where it has one (the error path only).
        :raises DataError: (several ranks) another rank's data failed a deferred check; no update applied.
        :raises ConfigError: accumulation left a micro-batch of one row, which the model's batch
            normalisation refused (:func:`~hybridpgm.train.micro_batches.one_row_micro_batch_error`).
        """
        clear_optimizer_gradients(self.optimizer)
        written = takes_written_gradients(objective, self.params, self.scaler)
        # a frozen parameter (requires_grad=False) gets no gradient: autograd refuses it as an input
        trainable = self.params if written else [p for p in self.params if p.requires_grad]
        evaluate = functools.partial(self._evaluate, objective, micro_batches, written=written, trainable=trainable,
                                     step=step, context=context, precision=precision, device=device,
                                     accumulate=accumulate, batch_size=batch_size)
        with deferring_checks() as pending, one_update():
            total = evaluate()
        ranks = context.world_size
        own: list[torch.Tensor] = []  # this rank's own gradients (several ranks), read on the error path only
        if ranks > 1:  # this rank's failed data check and non-finite loss ride in the gradients' bucket
            # references, no copy: the all-reduce gives each parameter a new .grad and leaves these unwritten
            own = [] if self.scaler else [p.grad for p in trainable if p.grad is not None]
            faults = torch.stack([~pending.all_passed(device), ~torch.isfinite(total)]).to(total.dtype)
            # only the trainable parameters: a frozen one has no gradient on any rank, so it would ride as zeros
            total, faults = context.all_reduce_gradients(
                trainable, extra=torch.cat([total.reshape(1), context.in_rank_slots(faults)])).split([1, 2 * ranks])
            total = total.reshape(())
        else:
            total = context.all_reduce_gradients(self.params, extra=total)
        grads = [] if self.scaler else [p.grad for p in self.params if p.grad is not None]
        # fp16: unscaled now, so that the scaler's overflow flag rides in the one read below (nothing trainable,
        # nothing scaled: no flag)
        overflow = unscaled_overflow(self.scaler, self.optimizer, device) if self.scaler and trainable else None
        # read in the loss's own precision (at least float32): a float64 loss reaches the history, the callbacks
        # and ReduceLROnPlateau unrounded, and a finite one above 3.4e38 does not read as inf; the float32 sums
        # convert exactly, so the finiteness test of the gradients is unchanged
        dtype = torch.promote_types(total.dtype, torch.float32)
        checked = [pending.all_passed(device)] if ranks == 1 and pending.flags else []  # the models' deferred
        flags = stacked_in(dtype, [total, *_sums(grads), *checked])  # data checks ride along in the same read
        if ranks > 1:  # every rank's faults (failed check: slot r, non-finite loss: W + r)
            flags = torch.cat([flags, faults.to(dtype)])
        if overflow is not None:
            flags = torch.cat([flags, overflow.to(dtype)])
        value, *read = flags.tolist()
        overflowed = overflow is not None and read.pop() > 0
        diverged: list[int] = []
        if ranks > 1:
            read, faults = read[:-2 * ranks], read[-2 * ranks:]
            failed = [r for r in range(ranks) if faults[r] > 0]
            diverged = [r for r in range(ranks) if faults[ranks + r] > 0]
            if failed:
                self.optimizer.zero_grad(set_to_none=True)
                if context.rank in failed:
                    pending.raise_first_failure()
                raise failed_elsewhere(failed, context, self.name, step)
        elif pending.flags and not read.pop():
            self.optimizer.zero_grad(set_to_none=True)
            pending.raise_first_failure()
        # every sum finite: every gradient is; else (NaN/inf, or a rare overflow of huge finite
        # values) the exact check decides, on that abnormal path only, with a second read
        finite = (math.isfinite(value) and all(map(math.isfinite, read))) \
            or bool(_all_finite([total, *grads], device))
        if not finite:
            if self.skip_nonfinite:
                self.optimizer.zero_grad(set_to_none=True)
                self.skipped += 1
                if overflow is not None:  # the scaler unscaled: it takes the skip (lowering its scale on overflow)
                    self.scaler.update()
                return value
            raise diverged_error(self, value, step, checkpoint, objective, micro_batches, context, diverged,
                                 self._gradient_ranks(value, own, context, device))
        del own  # this rank's own gradients: freed before the optimizer allocates its own
        if not trainable:  # every parameter frozen: nothing to step, and no step for its scheduler to follow
            return value
        if clip_grad_norm is not None and not overflowed:  # (an overflowed step is skipped: nothing to clip)
            torch.nn.utils.clip_grad_norm_(self.params, clip_grad_norm)
        if self.closure_step:  # L-BFGS: re-evaluates the loss and gradients as it searches
            self.optimizer.step(optimizer_closure(self, evaluate, total, context, clip_grad_norm, trainable))
        elif self.scaler:  # skipped where the gradients overflowed; the schedule follows the steps taken
            if not scaled_step(self, overflowed, step, warn=context.is_main):
                return value
        else:
            self.optimizer.step()
        if isinstance(self.scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
            self.scheduler.step(value)  # on the step's loss, already on the host
        elif self.scheduler is not None:
            self.scheduler.step()
        return value

    @staticmethod
    def _gradient_ranks(value: float, own: list[torch.Tensor], context: DistributedContext,
                        device: torch.device) -> list[int]:
        """The ranks whose own gradients ``own`` (before the average over ranks) hold a NaN or infinity, for the
        message of a non-finite averaged gradient; ``[]`` on one rank, or where the loss ``value`` is not finite
        (that message names the ranks of the loss instead).

        The error path only, where every rank arrives together: the averaged loss and gradients, and so the
        decision that they are not finite, are the same on every rank.  Each rank's flag is exact
        (:func:`~hybridpgm.train.finite_checks._all_finite`: a sum of huge finite values that overflows is
        no fault of the rank's), and one all-reduce of the flags in rank slots
        (:meth:`~hybridpgm.train.distributed.DistributedContext.flagged_ranks`) tells every rank all of them.
        """
        if context.world_size == 1 or not math.isfinite(value):
            return []
        return context.flagged_ranks(~_all_finite(own, device))

    def _evaluate(self, objective: Any, micro_batches: list[tuple[Any, float]], *, written: bool,
                  trainable: list[torch.nn.Parameter], step: int, context: DistributedContext,
                  precision: str | None, device: torch.device, accumulate: int | None,
                  batch_size: int | None) -> torch.Tensor:
        """Run the micro-batches once: return :math:`\\sum_i \\frac{m_i}{B}\\,\\ell_i` (detached, at least float32)
        and add :math:`\\frac{m_i}{B} \\nabla \\ell_i` to the ``trainable`` parameters' ``.grad`` (autograd, or the
        objective's written-out gradients when ``written``).  A player none of whose parameters is trainable
        gets its loss only (no graph is asked of it, none is back-propagated)."""
        total = None
        for index, (micro, weight) in enumerate(micro_batches):
            try:
                with autocast_for(precision, device), micro_batch(weight / context.world_size), \
                        batch_origin(micro_batch_origin(step, self.name, index, micro_batches)):
                    loss, grads = objective.loss_and_gradients(self.name, micro) if written \
                        else (objective.loss(self.name, micro), None)
            except ValueError as error:  # a batch norm that cannot take a micro-batch of one row?
                better = one_row_micro_batch_error(error, objective.module, micro_batches, index, step=step,
                                                   accumulate=accumulate or len(micro_batches),
                                                   batch_size=batch_size)
                if better is None:
                    raise
                raise better from error
            except RuntimeError as error:  # autograd met a frozen layer made under inference mode
                named = inference_mode_error(objective) if "Inference tensors cannot be saved for backward" \
                    in str(error) else None
                if named is None:  # another error, or an inference tensor of the loss's own, not the module's
                    raise
                raise named from error
            _check_loss(objective, self.name, loss, grads is None and bool(trainable))
            # in at least float32 (a float64 loss keeps its precision: the weights m_i / B are not rounded); no .to
            loss = loss if loss.dtype in _WIDE else loss.to(torch.promote_types(loss.dtype, torch.float32))  # (3 us)
            weighted = loss if weight == 1.0 else loss * weight
            if grads is None:
                if trainable:
                    (self.scaler.scale(weighted) if self.scaler else weighted).backward(inputs=trainable)
            else:
                add_written_gradients(objective, self.name, self.params, self.names, grads, weight)
            total = weighted.detach() if total is None else total + weighted.detach()
        return total

    def clear_gradients(self) -> None:
        """Set every parameter's ``.grad`` to ``None`` (``zero_grad(set_to_none=True)`` over :attr:`params`,
        whatever the optimizer holds): no device work and no host synchronisation.

        :func:`~hybridpgm.train.trainer.fit` calls it for every player when it returns or raises, so no
        gradient of a step -- the last one's, or the partial sum of an interrupted one -- outlives the run: a
        plain ``pyro.infer.SVI.step`` afterwards, which adds to ``.grad`` and zeroes it only after stepping,
        starts from its own gradient alone.
        """
        for p in self.params:
            p.grad = None

    def state_dict(self) -> dict[str, Any]:
        return {
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict() if self.scheduler is not None else None,
            "scaler": self.scaler.state_dict() if self.scaler else None,
            "skipped": self.skipped,
            "overflows_in_a_row": self.overflows_in_a_row,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.optimizer.load_state_dict(state["optimizer"])
        if self.scheduler is not None and state["scheduler"] is not None:
            self.scheduler.load_state_dict(state["scheduler"])
        if self.scaler and state["scaler"] is not None:
            self.scaler.load_state_dict(state["scaler"])
        self.skipped = int(state.get("skipped", 0))
        self.overflows_in_a_row = int(state.get("overflows_in_a_row", 0))  # 0 from a checkpoint older than it
