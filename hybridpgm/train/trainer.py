"""``fit``: train any objective of the training contract.

One *step* takes one batch.  For each player of the objective's schedule it
clears that player's gradients, splits the batch into ``accumulate``
micro-batches, back-propagates each micro-batch's loss (weighted by its share
of the batch) into that player's parameters only, optionally clips, and steps
the player's optimizer once (:mod:`hybridpgm.train.fit_step`, :class:`~hybridpgm.train.player_step.Player`).
Where a run begins (afresh or from its checkpoint) is :mod:`hybridpgm.train.run_origin`'s, its loop of steps
:mod:`hybridpgm.train.step_loop`'s and its end :mod:`hybridpgm.train.fit_end`'s.  See
:mod:`hybridpgm.train.objective` for the contract and :mod:`hybridpgm.train.distributed` for multi-process runs.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from typing import Any, Callable, Iterable, Mapping

import pyro
import torch

from hybridpgm.checks import flag
from hybridpgm.errors import TrainingWarning
from hybridpgm.interrupt_scope import restores_on_error
from hybridpgm.module_modes import train_models_in_eval
from hybridpgm.param_store_scope import own_param_store
from hybridpgm.train import distributed
from hybridpgm.train.batch_split_checks import batch_norm_warning, check_decomposable
from hybridpgm.train.batches import BatchStream, first_batch, move_to, num_steps
from hybridpgm.train.callers_context import check_callers_context
from hybridpgm.train.checkpoint import set_rng_state
from hybridpgm.train.data_inputs import as_dataset, check_shards
from hybridpgm.train.distributed_checks import DATA_KEY, data_fingerprint, rank_device, refuse_sparse_gradients
from hybridpgm.train.checkpoint_lock import checkpoint_lock
from hybridpgm.train.fit_end import _clear_gradients, fit_outcome
from hybridpgm.train.fit_options import (
    callback_list,
    check_config,
    check_counts,
    check_factory,
    check_objective,
    keeps_callers_rngs_when_unseeded,
    keeps_module_modes,
    rng_seed,
)
from hybridpgm.train.history import FitResult
from hybridpgm.train.objective import Objective, player_schedule, set_up
from hybridpgm.train.one_row_batches import refusing_one_row_last_batch
from hybridpgm.train.precision import autocast_for
from hybridpgm.train.resume import resume_mode, run_config
from hybridpgm.train.run_checkpoint import RunCheckpoint
from hybridpgm.train.run_origin import begin_run
from hybridpgm.train.run_start import build_players
from hybridpgm.train.step_loop import run_steps
from hybridpgm.warning_origin import users_stacklevel

__all__ = ["fit"]

OptimFactory = Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer]
SchedulerFactory = Callable[[torch.optim.Optimizer], Any]


@restores_on_error  # an interrupted fit leaves no grad mode, autocast nesting or Pyro plate dimension behind
@keeps_callers_rngs_when_unseeded  # fit(seed=None) leaves the caller's NumPy and Python RNG streams as they were
@own_param_store  # two models trained side by side never share a name in Pyro's param store
@keeps_module_modes  # each sub-module's train/eval mode as the caller left it (a frozen batch norm stays frozen)
def fit(
    objective: Objective,
    data: Any,
    *,
    epochs: int | None = None,
    batch_size: int = 128,
    accumulate: int = 1,
    optim: OptimFactory | Mapping[str, OptimFactory] | None = None,
    clip_grad_norm: float | None = None,
    lr_scheduler: SchedulerFactory | Mapping[str, SchedulerFactory] | None = None,
    precision: str | None = None,
    device: str | torch.device = "auto",
    seed: int | None = None,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int | None = None,
    resume: bool | str = "auto",
    overwrite: bool = False,
    override_hyperparameters: bool = False,
    skip_nonfinite: bool = False,
    collective_timeout: float | None = None,
    progress: bool = True,
    callbacks: Iterable[Any] = (),
    max_steps: int | None = None,
    shuffle: bool = True,
    drop_last: bool = False,
    config: Mapping[str, Any] | None = None,
) -> FitResult:
    """Train ``objective`` on ``data``.

    However it ends -- a return, an exception, a :class:`KeyboardInterrupt` (also one between a micro-batch's
    ``backward`` and the optimizer's step) -- once its players are built ``fit`` leaves every player's parameter
    with ``.grad`` ``None`` (``zero_grad(set_to_none=True)``): a plain ``pyro.infer.SVI.step`` afterwards adds to
    ``.grad`` and zeroes it only after stepping, so a gradient left behind would move its first step.
    Parameters in no player keep their ``.grad``, which ``fit`` never writes.  The progress bar and the
    heartbeat thread of a ``torchrun`` run are closed however the call ends (a callback's ``on_fit_start``
    raising included).

    :param objective: an :class:`~hybridpgm.train.objective.Objective`.
    :param data: a tensor ``N x ...``, a tuple (or list) of tensors sharing ``N`` (fields of one example), or a
        map-style :class:`torch.utils.data.Dataset` (one with ``state_dict``/``load_state_dict`` has its state
        checkpointed and restored on resume).  Under ``torchrun`` every rank passes the *whole* data set: ``fit``
        shards it (ranks whose data differ: ``ConfigError``, :mod:`hybridpgm.train.distributed_checks`).
    :param epochs: passes over the data (per rank).  ``None`` (the default) is one pass without ``max_steps``,
        and no bound with it: ``fit(..., max_steps=1000)`` runs 1000 steps however many epochs that takes (as
        PyTorch Lightning's ``max_epochs`` does when ``max_steps`` is set).  Given with ``max_steps``, the run
        ends at whichever bound comes first.
    :param batch_size: examples per optimizer step (per rank).
    :param shuffle: draw each epoch's batches in a new random order (from ``seed`` and the epoch); else in
        the data's order.
    :param drop_last: leave out each epoch's last, incomplete batch (it needs at least one full batch).
    :param accumulate: micro-batches the batch is split into; gradients are accumulated over them and the optimizer
        steps once, so peak activation memory falls by about that factor.  For a loss that is a mean of per-example
        terms the update does not depend on ``accumulate`` (nor on the number of ranks, for the same global batch).
        It does where the loss of an example depends on the others of its batch: batch normalisation in training mode
        normalises each micro-batch (and each rank's shard) with its own statistics, so ``fit`` warns
        (:class:`~hybridpgm.errors.TrainingWarning`, a :class:`UserWarning`, once per call) when ``accumulate > 1`` or
        several ranks meet a model holding a torch batch norm in training mode; an objective marked
        ``decomposable = False`` (the exact GP marginal likelihood) is refused with :class:`ConfigError`.  A
        micro-batch of one row under batch norm is a :class:`ConfigError` naming the micro-batch, the batch size and
        ``accumulate``.
    :param optim: a factory called with a player's parameters (for example
        ``functools.partial(torch.optim.SGD, lr=0.1, momentum=0.9, nesterov=True)``),
        or a dict player -> factory.  Default: Adam with ``lr=1e-3``.
    :param clip_grad_norm: clip each player's gradient norm to this value.
    :param lr_scheduler: a factory called with an optimizer (stepped once per
        optimizer step that is taken), or a dict player -> factory that may leave players out (or map them
        to ``None``): those train without a schedule.
        :class:`~torch.optim.lr_scheduler.ReduceLROnPlateau` is stepped with the
        player's loss of the step.
    :param precision: ``None``/``"fp32"``, ``"bf16"`` (autocast) or ``"fp16"`` (autocast and a gradient scaler per
        player, whose skipped steps count in ``FitResult.skipped_steps``: :mod:`hybridpgm.train.scaler_step`).
    :param device: ``"auto"``, ``"cpu"``, ``"cuda"`` or ``"cuda:N"``; under ``torchrun`` each rank uses
        ``cuda:LOCAL_RANK`` (the CPU with gloo), which ``device`` may name (another: ``ConfigError``).
    :param seed: seeds Pyro/torch/NumPy/Python RNGs and the data order; a run is reproducible given the seed.  An
        integer in ``[0, 2**32)``: ``fit`` seeds the global torch (CPU and CUDA), NumPy and Python RNGs from it
        (``pyro.set_rng_seed``, with the rank and the starting step mixed in) and leaves them where training left them
        -- nothing is restored on exit.  ``None``: the seed is one draw from torch's global generator (so a caller's
        ``torch.manual_seed``/``pyro.set_rng_seed`` makes the run reproducible) in ``[0, 2**31)``, used in the same
        way, recorded in the checkpoint; on exit, also by an exception, the caller's NumPy and Python RNG states are
        put back, and torch's global generator is left where training left it.  A resumed run takes the checkpoint's
        seed and RNG states (a new seed under ``override_hyperparameters`` changes only the data order).  Under
        ``torchrun`` every rank takes rank 0's ``seed`` (or its ``None``) before the epochs are laid out from it.
    :param checkpoint: path of the checkpoint, written atomically every ``checkpoint_every`` steps, at the end and
        on SIGTERM/SIGINT (by rank 0).  The end-of-run checkpoint is written before the callbacks' ``on_fit_end``
        runs and again after it, so a failing ``on_fit_end`` loses no step; the next run with the same arguments
        resumes and runs it again.  Temporary files a killed write left beside it are removed at the start.  Only a
        regular file is replaced: a path that is a directory, a symbolic link, a device node or a FIFO is refused
        before the first step.
    :param checkpoint_every: the number of steps between checkpoint writes (a positive integer); ``None`` (the
        default): the checkpoint is written only at the end and on SIGTERM/SIGINT.
    :param resume: what to do with an existing ``checkpoint`` (:mod:`hybridpgm.train.resume`): ``"auto"``/``True``
        resumes when it exists (same seed, data order and RNG states, and under ``torchrun`` each rank's own buffers
        and objective state, see :mod:`hybridpgm.train.rank_states`; on another number of ranks the RNGs are
        reseeded and every rank takes rank 0's buffers, with a :class:`~hybridpgm.errors.TrainingWarning` naming
        those that differed between the saved ranks) and starts afresh otherwise; ``"require"`` makes a missing
        checkpoint an error; ``"never"``/``False`` starts afresh and refuses to replace an existing checkpoint.
        Resuming prints one line (file and step), and is refused with :class:`~hybridpgm.errors.CheckpointError`
        naming every difference when the checkpoint holds another model or other hyperparameters.
    :param overwrite: start afresh, deleting an existing checkpoint (a regular file) first.
    :param override_hyperparameters: resume even though the recorded
        hyperparameters (learning rates and other optimizer settings,
        ``batch_size``, ``accumulate``, the objective's class, the callbacks' settings ...) differ; the requested
        ones apply.  One that changes the steps of an epoch (another batch size, data size or ``drop_last``) or
        the order of its examples (another ``shuffle``, or another ``seed`` while shuffling) starts a new layout
        of the epochs at the next epoch boundary, skipping the rest of the interrupted epoch, so no example is
        seen twice in an epoch; the resume line says so (:func:`~hybridpgm.train.resume.epoch_layout`).  A new
        ``seed`` changes only the data order (and the seed recorded from then on): the RNG streams go on from
        the checkpoint's states (reseeded from the new seed only on another number of ranks).  A new ``lr``
        under a scheduler scales the scheduled rate by new / recorded, ``ReduceLROnPlateau``'s reduced rate
        too, which is then kept at or above its ``min_lr``
        (:func:`~hybridpgm.train.resume.override_hyperparameters`).
    :param config: the caller's own settings that define the run beyond ``fit``'s arguments (a model's
        widths, an objective's number of particles, the data set and how it was drawn): a mapping of ``str``
        to JSON-like values (``None``, ``bool``, ``int``, finite ``float``, ``str``, or lists of these).  It
        is recorded in the checkpoint's run configuration and compared on resume exactly like the
        hyperparameters: a resume whose ``config`` differs (an entry changed, added or left out) raises
        :class:`~hybridpgm.errors.CheckpointError` listing each difference as ``config['key']: checkpoint X,
        requested Y``, unless ``override_hyperparameters=True``, after which the requested ``config`` is the
        one recorded.  ``None`` records ``{}``; a checkpoint written before ``config`` was recorded resumes
        without the comparison.  ``fit`` itself only records and compares it: the caller builds the model
        and the data from these settings.
    :param skip_nonfinite: skip (and count, in ``FitResult.skipped_steps``, with the steps fp16's gradient scaler
        skips) a player's step whose loss or averaged gradient is NaN/inf, as AMP's gradient scaler does,
        instead of raising :class:`TrainingDivergedError`.
    :param collective_timeout: seconds a collective of a multi-process run may
        wait (default 60 s on gloo/CPU, 300 s on NCCL, or
        ``HYBRIDPGM_DIST_TIMEOUT``); on a timeout, the error names the rank
        that stopped progressing.
    :param progress: show a tqdm progress bar (rank 0 only; notebook or text, :mod:`hybridpgm.train.progress`).
        A run a callback stopped (or resumed after that) ends with its bar complete at the step it stopped at; an
        exception or a stop signal leaves it short (red in a notebook).
    :param callbacks: objects with ``on_step_end(info)`` / ``on_fit_end(info)``, see :mod:`hybridpgm.train.callbacks`;
        the state of those with ``state_dict()``/``load_state_dict()`` is checkpointed and restored on resume.  A run
        a callback stopped is finished: resuming it runs no step.
    :param max_steps: stop after this many steps (over the whole run, a resumed one included); with the default
        ``epochs=None`` it alone bounds the run.
    :returns: a :class:`~hybridpgm.train.history.FitResult`; its
        ``loss_explosions`` names players whose loss rose by orders of
        magnitude (a :class:`~hybridpgm.errors.DivergenceWarning`, a :class:`RuntimeWarning`, is issued
        too; a loss falling far below zero is no explosion).
    :raises TrainingDivergedError: a loss or gradient became NaN/inf (the failing player's update of that step
        is not applied; players before it in the step's schedule, a GAN's discriminator, keep theirs) or the
        parameters overflowed; no checkpoint is ever written with non-finite values, so the one on disk is the
        last good state (before the first checkpoint, the module in memory keeps the updates made so far).
    :raises TrainingInterrupted: on SIGTERM/SIGINT, after finishing the current
        step and writing the checkpoint (a :class:`KeyboardInterrupt`; its
        ``exit_code`` is 143 or 130).  A second signal raises it at once.
    :raises CheckpointError: a checkpoint cannot be read or written (the
        message names the file and the OS reason, or says it is empty,
        truncated or not a torch file), belongs to another run, holds NaN or
        infinity (naming the entries: module, optimizer or other state), or
        the path exists and is not a regular file (a directory, a symbolic
        link, a device node, a FIFO).
    :raises ConfigError: ``fit`` called with autograd off (:func:`torch.no_grad`, :func:`torch.inference_mode`),
        inside :func:`torch.autocast` (ask for it with ``precision``; a region opened with ``enabled=False`` is
        refused only with ``precision="bf16"``/``"fp16"``) or inside Pyro effect handlers (``poutine.scale``,
        ``trace``, ``condition``, a ``pyro.plate`` ...), each of which would reach every step
        (:mod:`hybridpgm.train.callers_context`, checked first); a ``config`` that is not a mapping of ``str`` to
        JSON-like values, an on/off option (``overwrite``, ``override_hyperparameters``, ``skip_nonfinite``,
        ``progress``, ``shuffle``, ``drop_last``) that is not ``True`` or ``False`` (checked before the checkpoint is
        touched), a count that is not a positive integer (``epochs``, ``batch_size``, ``accumulate``,
        ``checkpoint_every``, ``max_steps``; ``bool`` and fractional values are refused, NumPy integers accepted), a
        seed outside ``[0, 2**32)``, a ``clip_grad_norm`` or ``collective_timeout`` that is not a positive finite
        number, an optimizer or scheduler instance where a factory is expected, a single callback not in a list, a
        loss that is not a scalar tensor with a gradient, ``accumulate > 1`` or several ranks for an objective that is
        not decomposable, or a micro-batch of one row under batch norm.  A callback's own error (an
        :class:`EarlyStopping` monitor that was never logged, an :class:`EvaluateEvery` whose ``fn`` returns no
        number) raised by ``on_fit_end`` comes after the end-of-run checkpoint is written.
    :raises CollectiveTimeoutError: a collective of a multi-process run timed
        out; the message names the rank that stopped.
    :raises DataError: data with no examples (or fewer than the ranks), a list of per-example tensors (pass
        ``torch.stack(data)``), tensors of different lengths, or examples that cannot be collated into a batch
        (naming the dataset and the indices); a model's own data checks raise theirs at the step.
    """
    check_callers_context(precision)  # grad mode off, an open torch.autocast, Pyro handlers: refused first
    unbounded = epochs is None  # one epoch without max_steps, none (max_steps bounds the run) with it
    epochs, batch_size, accumulate, checkpoint_every, max_steps, clip_grad_norm, seed, collective_timeout = \
        check_counts(1 if unbounded else epochs, batch_size, accumulate, checkpoint_every, max_steps, clip_grad_norm,
                     seed, collective_timeout)
    epochs = None if unbounded and max_steps is not None else epochs
    # on/off options are bools, checked before anything touches a file ("no" is truthy: overwrite="no" would
    # delete the checkpoint)
    overwrite, override_hyperparameters, skip_nonfinite, progress, shuffle, drop_last = (
        flag(value, f"fit {name}") for name, value in (
            ("overwrite", overwrite), ("override_hyperparameters", override_hyperparameters),
            ("skip_nonfinite", skip_nonfinite), ("progress", progress), ("shuffle", shuffle),
            ("drop_last", drop_last)))
    user_config = check_config(config)  # checked before anything touches a file
    check_objective(objective)
    for option, what in ((optim, "optim"), (lr_scheduler, "lr_scheduler")):
        if option is not None:
            check_factory(option, what)
    callbacks = callback_list(callbacks)
    mode = resume_mode(resume, overwrite, checkpoint)
    context = distributed.current(collective_timeout)
    check_decomposable(objective, accumulate, context.world_size)
    device = rank_device(device, context.device, context.world_size)  # validated on every rank, as in one process
    autocast_for(precision, device)  # validates the name
    schedule = player_schedule(objective)
    module = objective.module.to(device)
    refuse_sparse_gradients(module, f"{type(objective).__name__}.module", context.world_size)
    # a model in eval() as a whole trains (a warning names its frozen parts that switch); a training one's stay
    for note in (train_models_in_eval(module), batch_norm_warning(module, accumulate, context.world_size)):
        if note is not None and context.is_main:
            warnings.warn(note, TrainingWarning, stacklevel=users_stacklevel())
    dataset = as_dataset(data)
    unseen = check_shards(dataset, context.world_size, shuffle)  # an empty dataset: before setup reads a batch
    if unseen is not None and context.is_main:
        warnings.warn(unseen, TrainingWarning, stacklevel=users_stacklevel())
    set_up(objective, lambda: move_to(first_batch(dataset, batch_size), device), num_examples=len(dataset),
           shuffle=shuffle, accumulate=accumulate, world_size=context.world_size)  # an autoguide's parameters
    players, hyperparameters, schedulers = build_players(objective, optim, lr_scheduler, precision, device,
                                                         skip_nonfinite)
    # whatever ends the call from here on (a return, any exception, a KeyboardInterrupt), on_exit releases what fit
    # holds, in reverse order: the heartbeat thread, the progress bar, and every player's gradients
    with contextlib.ExitStack() as on_exit:
        on_exit.callback(_clear_gradients, players)
        config = run_config(hyperparameters, batch_size=batch_size, world_size=context.world_size,
                            accumulate=accumulate, precision=precision, clip_grad_norm=clip_grad_norm,
                            shuffle=shuffle, drop_last=drop_last, num_examples=len(dataset), schedulers=schedulers,
                            config=user_config, objective=objective, settings=checkpoint is not None)
        context.check_same("configuration", {  # skip_nonfinite too: the error path of a step is collective
            **config, "batch_size": batch_size, "epochs": epochs, "max_steps": max_steps,
            "skip_nonfinite": skip_nonfinite, DATA_KEY: data_fingerprint(dataset, context.world_size),
            "players": {p: sum(x.numel() for x in pl.params) for p, pl in players.items()},
        })

        on_exit.enter_context(checkpoint_lock(checkpoint, context))  # one run per checkpoint, until fit ends
        origin = begin_run(checkpoint, mode=mode, overwrite=overwrite,  # afresh, or from the checkpoint
                           override_hyperparameters=override_hyperparameters, seed=seed, context=context,
                           device=device, dataset=dataset, module=module, objective=objective, players=players,
                           hyperparameters=hyperparameters, schedulers=schedulers, callbacks=callbacks,
                           config=config)
        checkpoint, resumed, seed, layout = origin.checkpoint, origin.resumed, origin.seed, origin.layout

        stream = BatchStream(dataset, batch_size, seed=seed, shuffle=shuffle, drop_last=drop_last,
                             rank=context.rank, world_size=context.world_size, layout=layout)
        total_steps = num_steps(stream.batches_per_epoch, epochs, max_steps, layout)
        if resumed is not None and len(resumed["rng"]) == context.world_size:
            set_rng_state(resumed["rng"][context.rank])
        else:  # a fresh run, or a resume on another number of ranks
            pyro.set_rng_seed(rng_seed(seed, context.rank, origin.start_step))

        on_exit.enter_context(refusing_one_row_last_batch(  # a batch norm meeting a one-row last batch: at step 0
            module, stream, num_examples=len(dataset), accumulate=accumulate, drop_last=drop_last,
            start=origin.start_step, stop=origin.start_step if origin.finished else total_steps))
        write_checkpoint = RunCheckpoint(checkpoint, module=module, objective=objective, players=players,
                                         callbacks=callbacks, history=origin.history, seed=seed, config=config,
                                         context=context, layout=layout, dataset=origin.carried).write
        end = run_steps(on_exit, origin, objective=objective, players=players, schedule=schedule, stream=stream,
                        total_steps=total_steps, device=device, context=context, accumulate=accumulate,
                        precision=precision, clip_grad_norm=clip_grad_norm, checkpoint_every=checkpoint_every,
                        batch_size=batch_size, callbacks=callbacks, progress=progress,
                        write_checkpoint=write_checkpoint)
    return fit_outcome(history=origin.history, players=players, steps_done=end.steps_done, stopped=end.stopped,
                       interrupted=end.interrupted, late_signal=end.late_signal, checkpoint=checkpoint, mode=mode,
                       context=context, device=device)
