"""Explicit resume: what a checkpoint was trained with, and whether a request matches it.

``fit(checkpoint=path)`` records, next to the state, the *run configuration*: the objective's class (its
qualified name, without the module) and its ``settings()`` (contrastive divergence's ``k``, an ELBO's class and
number of particles, a GAN's ``k``: :func:`~hybridpgm.train.objective.objective_settings`), global batch size,
accumulation, precision, clipping, data-order options, data-set size, seed and, per player, the optimizer's class
and hyperparameters as requested (``lr``, ``momentum``, ``betas``, ``weight_decay`` ... before any scheduler moved
them), its learning-rate scheduler's class and settings (``gamma``, ``step_size`` ..., or none; ``OneCycleLR``'s
bounds and momenta, which it keeps in the param groups, and ``CyclicLR``'s base rate too:
:mod:`~hybridpgm.train.scheduler_settings`), and the caller's
own ``config`` (the settings that define the run beyond ``fit``'s: a model's width, an objective's number of
particles, the data set; ``{}`` when none is given).  A later ``fit`` on the same path resumes only when its
request agrees:

* the module's ``state_dict`` keys and shapes must match the checkpoint's (otherwise
  :class:`~hybridpgm.errors.CheckpointError` lists the missing, unexpected and reshaped entries;
  ``overwrite=True`` starts afresh instead);
* each player's optimizer must hold the same parameters, by name, in the same param groups and order
  (:mod:`~hybridpgm.train.checkpoint_parameters`: its state is kept by position), whatever
  ``override_hyperparameters`` says (otherwise the error names the player and the parameters, such as
  ``'decoder.0.weight' is trained in the checkpoint but frozen now``);
* every recorded hyperparameter and ``config`` entry must match (otherwise the error lists each difference as
  ``name: checkpoint X, requested Y``, a ``config`` entry as ``config['key']``), unless
  ``override_hyperparameters=True``, in which case the requested values replace the saved ones after the
  optimizer state is loaded (a scheduler of another class, or one where the checkpoint had none, starts afresh;
  without one, the saved schedule is dropped) and the requested ``config`` is the one recorded from then on.

A checkpoint written before ``config`` (or the objective's class or settings) was recorded resumes without that
comparison.  ``epochs`` and ``max_steps`` are not compared: extending a run is what resuming is for.  The modes of
``fit``'s ``resume`` argument are:

``"auto"`` (or ``True``, the default)
    resume when the checkpoint exists, start afresh when it does not.
``"require"``
    the checkpoint must exist (the CLI's ``--resume``).
``"never"`` (or ``False``)
    start afresh; an existing checkpoint is an error unless ``overwrite=True``
    (which deletes it before training starts).
"""

from __future__ import annotations

import math
import os
from typing import Any, Mapping

import torch

from hybridpgm.checks import flag
from hybridpgm.errors import CheckpointError, ConfigError
from hybridpgm.main_module import class_path
from hybridpgm.train.batches import steps_per_epoch
from hybridpgm.train.checkpoint_parameters import NAMES, check_parameter_layout, optimizer_parameter_names
from hybridpgm.train.distributed import differences
from hybridpgm.train.objective import objective_settings
from hybridpgm.train.recorded_objective import upgrade_objective_name
from hybridpgm.train.scheduler_settings import scheduler_settings

__all__ = ["RESUME_MODES", "check_resumable", "epoch_layout", "optimizer_hyperparameters",
           "override_hyperparameters", "override_scheduler", "resume_mode", "run_config", "scheduler_settings"]

RESUME_MODES = ("auto", "require", "never")

#: param-group entries that are not hyperparameters: the parameters themselves, a
#: scheduler's bookkeeping, and implementation switches that leave the maths unchanged
_NOT_HYPERPARAMETERS = {"params", "initial_lr", "foreach", "fused", "capturable", "differentiable"}


def resume_mode(resume: bool | str, overwrite: bool, checkpoint: Any) -> str:
    """Normalise ``fit``'s ``resume``/``overwrite`` pair (see the module docstring).

    :raises ConfigError: ``resume`` is not one of the modes, ``overwrite`` is not ``True`` or ``False``, or the
        pair contradicts itself.
    """
    overwrite = flag(overwrite, "fit overwrite")
    mode = {True: "auto", False: "never"}.get(resume, resume) if isinstance(resume, bool) else resume
    if mode not in RESUME_MODES:
        raise ConfigError(f"resume must be True, False or one of {RESUME_MODES}, got {resume!r}")
    if overwrite and mode == "require":
        raise ConfigError("overwrite=True starts afresh and cannot be combined with resume='require'")
    if mode == "require" and checkpoint is None:
        raise ConfigError("resume='require' needs a checkpoint path")
    return "never" if overwrite else mode


def _plain(value: Any) -> Any:
    """A hyperparameter as a plain, comparable, ``weights_only``-loadable value."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def optimizer_hyperparameters(optimizer: torch.optim.Optimizer,
                              names: Mapping[int, str] | None = None) -> dict[str, Any]:
    """The optimizer's class and, per parameter group, its hyperparameters; with ``names`` (``id(parameter) ->
    name`` over the model) also the names of the parameters in each group, in order, as ``"param_names"``
    (:func:`~hybridpgm.train.checkpoint_parameters.optimizer_parameter_names`)."""
    record = {
        "class": class_path(type(optimizer)),  # the script's class: __main__ in a spawn child too
        "param_groups": [{k: _plain(v) for k, v in sorted(group.items()) if k not in _NOT_HYPERPARAMETERS}
                         for group in optimizer.param_groups],
    }
    if names is not None:
        record[NAMES] = optimizer_parameter_names(optimizer, names)
    return record


def _numbers(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)


def override_scheduler(scheduler: Any, requested: dict[str, Any] | None, recorded: dict[str, Any] | None) -> None:
    """Under ``override_hyperparameters``, after the checkpoint's scheduler state is loaded into a scheduler of
    the same class: put back the requested top-level settings that differ from those recorded (loading the
    state replaced them with the checkpoint's), a public list of numbers one per param group too
    (``ReduceLROnPlateau``'s ``min_lrs``, ``CyclicLR``'s ``max_lrs``); a mapping (``MultiStepLR``'s milestones),
    a private list (``SequentialLR``'s ``_milestones``) or any other list is left as the checkpoint has it."""
    if scheduler is None or requested is None or recorded is None:
        return
    was = recorded.get("settings") or {}
    for key, value in (requested.get("settings") or {}).items():
        if key not in was or _same(was[key], value) or not hasattr(scheduler, key):
            continue
        now = getattr(scheduler, key)
        groups = len(getattr(getattr(scheduler, "optimizer", None), "param_groups", ()))
        if _numbers(now) and _numbers(value) and len(now) == len(value) == groups and not key.startswith("_"):
            setattr(scheduler, key, list(value))
        elif not isinstance(now, (dict, list)):
            setattr(scheduler, key, value)


def run_config(optimizers: Mapping[str, dict[str, Any]], *, batch_size: int, world_size: int, accumulate: int,
               precision: str | None, clip_grad_norm: float | None, shuffle: bool, drop_last: bool,
               num_examples: int, schedulers: Mapping[str, dict[str, Any] | None] | None = None,
               config: Mapping[str, Any] | None = None, objective: Any = None,
               settings: bool = True) -> dict[str, Any]:
    """The recorded configuration of a run (``optimizers`` from :func:`optimizer_hyperparameters`, ``schedulers``
    per player from :func:`scheduler_settings`, ``config`` the caller's own settings, already checked by
    :func:`~hybridpgm.train.fit_options.check_config`; recorded as ``{}`` when ``None``).  ``objective`` (the
    objective trained) is recorded by its class's qualified name without the module (a GAN's checkpoint does not
    resume as an IWGAN's; one written by ``python train.py`` resumes where ``train`` is imported); ``None`` when not
    given.  Its ``settings()`` are recorded as ``"objective_settings"`` (``None`` for an objective without them, or
    without ``settings``: a run without a checkpoint compares nothing, and a ``settings`` method of the caller's that
    means something else is then not called).

    The batch is recorded as the global batch ``batch_size * world_size``, so a
    run may resume on another number of ranks with the same global batch; so are the steps of an epoch,
    which the number of ranks can change (each rank takes ``floor(N / world_size)`` examples), and which map
    a step to its epoch and batch.
    """
    return {
        # the qualified name without the module: a run started as ``python train.py`` (``__main__``) resumes from a
        # notebook importing ``train``, and a class moved between modules keeps its checkpoints
        "objective": None if objective is None else type(objective).__qualname__,
        "objective_settings": objective_settings(objective) if objective is not None and settings else None,
        "global_batch_size": batch_size * world_size, "accumulate": accumulate, "precision": precision or "fp32",
        "clip_grad_norm": clip_grad_norm, "shuffle": shuffle, "drop_last": drop_last,
        "num_examples": num_examples, "optimizers": dict(optimizers),
        "steps_per_epoch": steps_per_epoch(num_examples, batch_size, world_size, drop_last),
        "schedulers": dict(schedulers or {}), "config": dict(config or {}),
    }


def _same(a: Any, b: Any) -> bool:
    return (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or a == b


def _model_differences(saved: Mapping[str, Any], current: Mapping[str, Any], parameters: frozenset = frozenset()
                       ) -> list[str]:
    """How the state dict ``saved`` does not fit the model's ``current`` one: a name only in one of them, a
    tensor of another shape, a parameter (one of ``parameters``) of another dtype (``load_state_dict`` would cast
    it; a buffer may follow its model's dtype lazily, as PCD's chains do), or a tensor in one where the other
    holds plain data (a module's extra state from torch's ``get_extra_state``, such as ``{"updates": 7}``: its
    value is state, which the resume restores, so two plain values never differ here)."""
    out = [f"{k!r} is in the checkpoint but not in the model" for k in saved if k not in current]
    out += [f"{k!r} is in the model but not in the checkpoint" for k in current if k not in saved]
    for k in (k for k in saved if k in current):
        was, now = saved[k], current[k]
        if isinstance(was, torch.Tensor) and isinstance(now, torch.Tensor):
            if tuple(was.shape) != tuple(now.shape):
                out.append(f"{k!r} has shape {tuple(was.shape)} in the checkpoint, {tuple(now.shape)} in the model")
            elif was.dtype != now.dtype and k in parameters:  # load_state_dict would cast it silently
                out.append(f"{k!r} is {was.dtype} in the checkpoint, {now.dtype} in the model")
        elif isinstance(was, torch.Tensor) or isinstance(now, torch.Tensor):
            out.append(f"{k!r} is a {type(was).__name__} in the checkpoint, a {type(now).__name__} in the model")
    return out


#: entries of the run configuration that older checkpoints do not record (not compared for those files)
_RECORDED_LATER = ("steps_per_epoch", "schedulers", "config", "objective", "objective_settings")


def _recorded_later(where: str) -> bool:
    """Whether a checkpoint may lack the entry ``where`` of the run configuration because it was written before
    hybridpgm recorded it (an objective's setting included: a later version may record one more)."""
    return where in _RECORDED_LATER or where.startswith("objective_settings[") or \
        (where.startswith("optimizers[") and where.endswith(f"[{NAMES!r}]")) or \
        (where.startswith("schedulers[") and where.endswith(("['param_groups']", "['base_lrs']")))


def check_resumable(path: str | os.PathLike, saved: Mapping[str, Any], module: torch.nn.Module,
                    requested: dict[str, Any], seed: int | None, override: bool, objective_module: str | None = None
                    ) -> None:
    """Refuse to resume ``saved`` into a run that asked for something else.

    :param requested: the request's :func:`run_config`.
    :param seed: the seed the caller passed (``None``: take the checkpoint's).
    :param override: accept hyperparameter differences (not model differences).
    :param objective_module: the ``__module__`` of the objective's class, by which a format-1 record of the class
        with its module is read (:func:`~hybridpgm.train.recorded_objective.upgrade_objective_name`).
    :raises CheckpointError: naming the file and every difference; a player whose parameters differ (frozen or
        unfrozen since) is refused whatever ``override`` says
        (:func:`~hybridpgm.train.checkpoint_parameters.check_parameter_layout`).
    """
    where = f"checkpoint {str(path)!r}"
    model = _model_differences(saved["module"], module.state_dict(),
                               frozenset(name for name, _ in module.named_parameters(remove_duplicate=False)))
    if model:
        raise CheckpointError(f"{where} holds another model: " + "; ".join(model)
                              + ". Pass overwrite=True (CLI: --overwrite) to start afresh, or another checkpoint path")
    check_parameter_layout(path, saved.get("config"), requested, module)  # the optimizers' state is by position
    if override:
        return
    recorded = saved.get("config")
    if isinstance(recorded, dict) and "objective" in recorded:  # a format-1 file's "module.Class" is "Class"
        recorded = {**recorded, "objective": upgrade_objective_name(recorded["objective"], requested.get("objective"),
                                                                    saved.get("format_version"), objective_module)}
    found = [] if recorded is None else [(w, a, b) for w, a, b in differences(recorded, requested) if not _same(a, b)
                                         and not (a == "<absent>" and _recorded_later(w))]  # older files
    if seed is not None and int(saved["seed"]) != int(seed):
        found.append(("seed", int(saved["seed"]), int(seed)))
    if found:
        listed = "; ".join(f"{w}: checkpoint {a!r}, requested {b!r}" for w, a, b in found)
        raise CheckpointError(f"{where} was trained with other hyperparameters: {listed}. Pass "
                              "override_hyperparameters=True (CLI: --override-hyperparameters) to resume with the "
                              "requested values, or overwrite=True (CLI: --overwrite) to start afresh")


#: the run configuration's entries that lay out the steps of an epoch, or the order of its examples
_LAYOUT = ("global_batch_size", "num_examples", "drop_last", "steps_per_epoch", "shuffle")


def _layout_changes(saved: Mapping[str, Any], requested: Mapping[str, Any], seed: int | None) -> list[str]:
    """The changes, ``"name old -> new"``, that lay out the epochs of a resumed run anew: a :data:`_LAYOUT`
    entry, or a seed (``seed`` against ``saved["seed"]``) that draws another order of the examples, that is while
    both runs shuffle."""
    recorded = saved.get("config") or {}
    changed = [f"{k} {recorded.get(k)!r} -> {requested.get(k)!r}" for k in _LAYOUT
               if not _same(recorded.get(k), requested.get(k))]
    was, now = saved.get("seed"), seed
    if recorded.get("shuffle") and requested.get("shuffle") and was is not None and now is not None \
            and int(was) != int(now):
        changed.append(f"seed {int(was)} -> {int(now)}")
    return changed


def epoch_layout(saved: Mapping[str, Any], requested: Mapping[str, Any], start_step: int, *,
                 seed: int | None = None) -> tuple[tuple[int, int], str | None]:
    """Where the epochs of a resumed run are laid out from: ``((step, epoch), note)``.

    The checkpoint ``saved`` records (``"epoch_layout"``, ``(0, 0)`` when absent) the step at which its
    layout of the epochs began and that epoch.  A resume with the same global batch size, data size,
    ``drop_last``, steps per epoch and order of the examples (``shuffle``, and the seed while shuffling) keeps it
    (``note`` ``None``): step ``s`` takes the same batch as without the interruption.  One that changes them
    (``override_hyperparameters=True``) starts a new layout at the next epoch boundary: at ``start_step`` with the
    epoch the old layout would have started there, or, when the checkpoint is in the middle of an epoch, with the
    next one; the rest of the interrupted epoch is skipped (its order is the checkpoint's, which the new seed or
    ``shuffle`` no longer draws), so no example is seen twice in an epoch and ``epochs`` counts whole epochs
    (:func:`~hybridpgm.train.batches.num_steps`).  ``note`` says so, naming the changes
    (``seed 1 -> 2``), for the resume message.  A checkpoint without ``"steps_per_epoch"`` (written before it
    was recorded) keeps its layout.

    :param saved: the checkpoint state.
    :param requested: the request's :func:`run_config`.
    :param int start_step: the step the resumed run starts at.
    :param seed: the seed the resumed run goes on with (:func:`~hybridpgm.train.run_start.restore`'s: the
        checkpoint's, or the one requested under ``override_hyperparameters``); ``None``: taken as unchanged.
    """
    origin, first_epoch = (int(v) for v in saved.get("epoch_layout", (0, 0)))
    recorded = saved.get("config") or {}
    changed = ", ".join(_layout_changes(saved, requested, seed)) if "steps_per_epoch" in recorded else ""
    if not changed:
        return (origin, first_epoch), None  # a checkpoint without a record resumes as it always did
    old = int(recorded["steps_per_epoch"])
    epoch, position = divmod(start_step - origin, old)
    epoch += first_epoch
    if position == 0:
        return (start_step, epoch), f"the epochs are laid out anew ({changed}); epoch {epoch} starts at step " \
            f"{start_step}"
    return (start_step, epoch + 1), (f"the epochs are laid out anew ({changed}): the last {old - position} of the "
                                     f"{old} steps of epoch {epoch} are skipped, and epoch {epoch + 1} starts at "
                                     f"step {start_step}")


def _rescale(group: dict[str, Any], factor: float, floor: float | None, new: float) -> None:
    """Scale the param group's scheduled ``lr`` by ``factor``, then, under ``ReduceLROnPlateau``, keep it at or
    above ``min(floor, new)``: the scheduler's ``min_lr``, which its reductions keep, but never above the new rate
    itself."""
    if isinstance(lr := group["lr"], torch.Tensor):
        lr.mul_(factor)
        if floor is not None:
            lr.clamp_(min=min(floor, new))
    else:
        group["lr"] = lr * factor if floor is None else max(lr * factor, min(floor, new))


def override_hyperparameters(optimizer: torch.optim.Optimizer, scheduler: Any, requested: dict[str, Any],
                             recorded: dict[str, Any] | None = None) -> None:
    """After loading a checkpoint's optimizer state, put back the requested hyperparameters that differ from
    those the checkpoint ``recorded`` (all of them for a checkpoint without a record).

    A value the run's scheduler has moved since (``lr``) keeps its scheduled value unless a new one is asked
    for; a new ``lr`` under a scheduler scales the scheduled rate by new / recorded and becomes the scheduler's
    base rate, so the schedule goes on from where it was, at the new scale: rate :math:`\\eta_t` becomes
    :math:`\\eta_t \\cdot \\eta'_0 / \\eta_0`.  Under :class:`~torch.optim.lr_scheduler.ReduceLROnPlateau` (which
    has no base rate) the rate its reductions reached is scaled alike, then floored at the scheduler's ``min_lr``
    for the group (an absolute floor, not scaled: the requested one, which :func:`override_scheduler` puts back
    and which must therefore be applied first), as its reductions are, though never above the new ``lr``:
    :math:`\\max(\\eta_t \\eta'_0 / \\eta_0, \\min(\\eta_{\\min}, \\eta'_0))`; ``factor``, ``patience`` and its
    counters go on unchanged.  A raised ``min_lr`` alone floors the rate too (torch's reductions never raise
    it).  The scheduler's ``get_last_lr()`` then reports the rates in use, and its base rates, those of the
    schedulers a ``SequentialLR`` or ``ChainedScheduler`` holds, and the bounds ``OneCycleLR`` keeps in the param
    groups (``initial_lr``, ``max_lr``, ``min_lr``) are scaled alike (:func:`_follow_rates`, :func:`_followed`),
    unless the request changes that ``OneCycleLR``'s or a ``CyclicLR``'s own settings too: the requested schedule
    then replaces the scaled one (:func:`~hybridpgm.train.scheduler_settings.apply_requested_schedule`, applied
    after this)."""
    plateau = isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau)
    floors = list(scheduler.min_lrs) if plateau else [None] * len(optimizer.param_groups)
    was_groups = (recorded or {}).get("param_groups") or [None] * len(optimizer.param_groups)
    scales: list[tuple[float, Any, Any] | None] = [None] * len(optimizer.param_groups)  # (new / was, was, new)
    for i, (group, wanted, was, floor) in enumerate(zip(optimizer.param_groups, requested["param_groups"],
                                                        was_groups, floors)):
        for key, value in wanted.items():
            if key not in group or (was is not None and key in was and _same(was[key], value)):
                continue
            if key == "lr" and ("initial_lr" in group or plateau) and was is not None and was.get("lr"):
                _rescale(group, value / was["lr"], floor, value)  # the schedule, rescaled
                scales[i] = (value / was["lr"], was["lr"], value)
            elif not isinstance(group[key], torch.Tensor):
                group[key] = tuple(value) if isinstance(group[key], tuple) else value
            else:
                group[key].fill_(value)
            if key == "lr" and "initial_lr" in group:  # and OneCycleLR's bounds, which it keeps in the groups
                for k in [k for k in ("initial_lr", "max_lr", "min_lr") if k in group]:
                    group[k] = _followed(group[k], value, scales[i], k == "initial_lr")
        if plateau and floor is not None and "lr" in wanted:  # a raised min_lr with the lr as it was
            _rescale(group, 1.0, floor, wanted["lr"])
    _follow_rates(scheduler, optimizer, scales)


def _follow_rates(scheduler: Any, optimizer: torch.optim.Optimizer, scales: list, top: bool = True) -> None:
    """Make ``scheduler`` and the ones a ``SequentialLR`` or ``ChainedScheduler`` holds agree with the optimizer
    after an override: ``get_last_lr()`` (torch's ``_last_lr``) gives the groups' ``lr``, and the base rates
    (``base_lrs``, a ``CyclicLR``'s ``max_lrs`` too) are scaled as the group's ``lr`` was (:func:`_followed`), so a
    schedule whose base is not the group's ``lr`` (``CyclicLR(base_lr=0.01)``) keeps its shape."""
    if scheduler is None:
        return
    for inner in getattr(scheduler, "_schedulers", None) or ():
        _follow_rates(inner, optimizer, scales, top=False)
    initial = _rates(optimizer, "initial_lr")
    names = ("base_lrs", "max_lrs") if isinstance(scheduler, torch.optim.lr_scheduler.CyclicLR) else ("base_lrs",)
    for name in (n for n in names if hasattr(scheduler, n)):
        setattr(scheduler, name, [_followed(rate, new, scale, top and name == "base_lrs")
                                  for rate, new, scale in zip(getattr(scheduler, name), initial, scales)])
    if hasattr(scheduler, "_last_lr"):
        scheduler._last_lr = _rates(optimizer, "lr")


def _followed(rate: Any, new: Any, scale: tuple[float, Any, Any] | None, reset: bool) -> Any:
    """A scheduler's base ``rate`` for a group after an override (or OneCycleLR's bound in the group): times
    ``scale = (requested / recorded, recorded, requested)`` (the requested ``lr`` exactly where ``rate`` was the
    recorded one); for a group whose ``lr`` was not scaled, ``new`` where ``reset``, else ``rate`` as it was."""
    if scale is None:
        return new if reset else rate
    return scale[2] if _same(float(rate), scale[1]) else rate * scale[0]


def _rates(optimizer: torch.optim.Optimizer, key: str) -> list[Any]:
    """Each param group's ``key`` (its ``lr`` where it has none), a tensor copied: torch's schedulers keep
    copies, never the groups' own tensors."""
    rates = [group.get(key, group["lr"]) for group in optimizer.param_groups]
    return [rate.clone() if isinstance(rate, torch.Tensor) else rate for rate in rates]
