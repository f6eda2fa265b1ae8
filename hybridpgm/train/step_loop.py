"""The steps of a run of :func:`~hybridpgm.train.trainer.fit`, from its first step to its end-of-run checkpoint.

Under :class:`~hybridpgm.train.signals.StopSignals` (a SIGTERM/SIGINT ends the run after the current step), with
the progress bar and, on several ranks, the heartbeat (:func:`~hybridpgm.train.run_monitors.open_monitors`), the
callbacks' ``on_fit_start`` runs, then each step (:func:`~hybridpgm.train.fit_step.take_step`) with its callbacks
(:func:`~hybridpgm.train.signals.step_callbacks`), one collective on whether to stop
(:meth:`~hybridpgm.train.distributed.DistributedContext.agree_on_stop`) and the periodic checkpoint.  The bar and
the heartbeat are closed before the end-of-run checkpoint and ``on_fit_end``
(:func:`~hybridpgm.train.fit_end.write_end_of_run`); a failure of a step on several ranks is explained by the
heartbeat (:func:`~hybridpgm.train.heartbeat.explain_failure`: the rank that stopped progressing).
"""

from __future__ import annotations

import contextlib
import time
from typing import Any, Callable, NamedTuple

import torch

from hybridpgm.param_store_scope import let_other_threads_in
from hybridpgm.train.batches import BatchStream
from hybridpgm.train.callbacks import FitStart
from hybridpgm.train.distributed import DistributedContext
from hybridpgm.train.fit_end import write_end_of_run
from hybridpgm.train.fit_step import take_step
from hybridpgm.train.heartbeat import explain_failure
from hybridpgm.train.progress import finish
from hybridpgm.train.run_monitors import open_monitors
from hybridpgm.train.run_origin import RunOrigin
from hybridpgm.train.signals import StopSignals, step_callbacks

__all__ = ["LoopEnd", "run_steps"]


class LoopEnd(NamedTuple):
    """How the steps ended: ``steps_done`` (over the whole run), ``stopped`` (a callback asked),
    ``interrupted`` (the signal that stopped the steps, ``0``: none) and ``late_signal`` (a signal that came after
    the last step, ``0``: none)."""

    steps_done: int
    stopped: bool
    interrupted: int
    late_signal: int


def run_steps(on_exit: contextlib.ExitStack, origin: RunOrigin, *, objective: Any, players: dict[str, Any],
              schedule: Any, stream: BatchStream, total_steps: int, device: torch.device,
              context: DistributedContext, accumulate: int, precision: str | None, clip_grad_norm: float | None,
              checkpoint_every: int | None, batch_size: int, callbacks: list[Any], progress: bool,
              write_checkpoint: Callable[..., Any]) -> LoopEnd:
    """Run the steps ``origin.start_step`` to ``total_steps`` (none where ``origin.finished``), then write the
    end-of-run checkpoint and run ``on_fit_end``.

    :param on_exit: ``fit``'s exit stack: the bar and the heartbeat close with it where the steps never begin
        (a callback's ``on_fit_start`` raising).
    :param origin: where the run began (:func:`~hybridpgm.train.run_origin.begin_run`); its ``history`` is
        appended to.
    :param write_checkpoint: :meth:`~hybridpgm.train.run_checkpoint.RunCheckpoint.write` of the run; the other
        arguments are ``fit``'s, checked, and the run's players, schedule and batches.
    :raises CollectiveTimeoutError: a step of a multi-process run timed out (naming the rank that stopped); any
        other error of a step, a callback or the end-of-run checkpoint as it is.
    """
    checkpoint, history, start_step = origin.checkpoint, origin.history, origin.start_step
    running = on_exit.enter_context(contextlib.ExitStack())  # the bar, the heartbeat: closed as the steps end
    info, interrupted, step, stopped = None, 0, start_step, origin.finished
    has_fit_end = any(hasattr(callback, "on_fit_end") for callback in callbacks)
    started = time.perf_counter() - origin.elapsed
    start = FitStart(step=start_step, players=tuple(players), callbacks=tuple(callbacks), history=history)
    with StopSignals() as stop_signals:  # made under the handlers: a Ctrl-C in the bar's first draw is a stop
        bar, heartbeat = open_monitors(running, total=total_steps, initial=start_step, show=progress and
                                       context.is_main, desc=type(objective).__name__, context=context)
        for callback in callbacks:
            if hasattr(callback, "on_fit_start"):
                callback.on_fit_start(start)
        try:
            for step in range(start_step, start_step if origin.finished else total_steps):
                if step > start_step:  # fit holds hybridpgm's process-wide lock (Pyro's handler stack and
                    # param store, torch's streams) for each step with its callbacks: other threads' calls here
                    let_other_threads_in()
                if heartbeat is not None:
                    heartbeat.progress(step)
                info = take_step(step, objective=objective, players=players, schedule=schedule, stream=stream,
                                 device=device, context=context, accumulate=accumulate, precision=precision,
                                 clip_grad_norm=clip_grad_norm, checkpoint=checkpoint, batch_size=batch_size,
                                 history=history, started=started, bar=bar)
                # a callback failing after a signal (one process): warned, and fit stops as the signal asked
                step_callbacks(callbacks, info, stop_signals, checkpoint, single_process=context.world_size == 1)
                # one collective: a callback's stop request and any rank's signal, so all ranks stop together
                stopped, interrupted = context.agree_on_stop(info.stop_requested, stop_signals.signum)
                if stopped or interrupted:
                    break
                if checkpoint_every is not None and (step + 1) % checkpoint_every == 0:
                    # the last step's periodic checkpoint: on_fit_end has yet to run for it
                    write_checkpoint(step + 1, pending=has_fit_end and step + 1 >= total_steps)
            if not interrupted:  # a stop on purpose: a complete bar (a notebook's is red when closed short)
                finish(bar)
        except Exception as error:
            failure = explain_failure(error, heartbeat, context.rank, context.timeout_s, step)
            if failure is error:
                raise
            raise failure from error
        finally:
            running.close()  # the bar is gone before the end-of-run checkpoint and on_fit_end
        steps_done = write_end_of_run(history=history, start_step=start_step, info=info, stopped=stopped,
                                      interrupted=interrupted, fit_end_pending=origin.fit_end_pending,
                                      has_fit_end=has_fit_end, callbacks=callbacks, stream=stream,
                                      objective=objective, device=device, context=context,
                                      write_checkpoint=write_checkpoint)
        late_signal = stop_signals.signum if not interrupted else 0
    return LoopEnd(steps_done, stopped, interrupted, late_signal)
