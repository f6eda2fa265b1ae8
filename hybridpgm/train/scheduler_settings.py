"""A learning-rate scheduler's settings: what a run records of them, and how a resume puts requested ones back.

:func:`scheduler_settings` records a scheduler's class and the settings in its ``state_dict`` (its progress left
out), as :func:`~hybridpgm.train.resume.check_resumable` compares them.  Two of torch's schedulers keep settings
elsewhere, which the record adds:

* :class:`~torch.optim.lr_scheduler.OneCycleLR` writes its bounds into the optimizer's param groups when it is
  built: ``initial_lr`` (``max_lr / div_factor``), ``max_lr``, ``min_lr`` (``initial_lr / final_div_factor``)
  and, while it cycles the momentum, ``max_momentum`` and ``base_momentum``.  They are recorded, per param
  group, as ``"param_groups"`` (where a ``SequentialLR`` or ``ChainedScheduler`` holds a ``OneCycleLR`` too);
* :class:`~torch.optim.lr_scheduler.CyclicLR` keeps its ``base_lr`` as its base rates (``base_lrs``, which are
  progress for the other schedulers: their base is the optimizer's ``lr``, recorded with the optimizer), recorded
  as ``settings["base_lrs"]``.

A checkpoint written before these were recorded resumes without comparing them.  Under
``override_hyperparameters`` a top-level ``OneCycleLR`` or ``CyclicLR`` whose recorded settings differ from the
requested ones, or that starts afresh (the checkpoint had a scheduler of another class), becomes the requested
scheduler at the checkpoint's step (:func:`apply_requested_schedule`): its rates and momenta from the resumed step
on are exactly those of a run that had the requested settings from the start (it has no other state), whatever
``lr`` is asked for beside them (a new ``lr`` alone scales the schedule instead:
:func:`~hybridpgm.train.resume.override_hyperparameters`).  One held by a ``SequentialLR`` or
``ChainedScheduler`` keeps the checkpoint's settings, as the other settings of the schedulers they hold do.
Such a scheduler sets the momentum (or Adam's ``betas[0]``) at every step while ``cycle_momentum=True``, so an
override of it is refused (:func:`check_scheduler_override`): it would be overwritten at the next step.  So is a
``OneCycleLR`` whose ``total_steps`` end before the checkpoint's step (torch refuses to compute a rate there).
"""

from __future__ import annotations

import copy
import math
from typing import Any, Iterator

import torch

from hybridpgm.errors import CheckpointError
from hybridpgm.main_module import class_path
from hybridpgm.train.distributed import differences

__all__ = ["apply_requested_schedule", "check_scheduler_override", "requested_schedule", "scheduler_settings"]

_S = torch.optim.lr_scheduler

#: entries of a scheduler's state that are its progress, not its settings (torch's schedulers, including
#: ReduceLROnPlateau's counters and CosineAnnealingWarmRestarts' position in its cycle)
_SCHEDULER_PROGRESS = {"last_epoch", "_step_count", "_last_lr", "_get_lr_called_within_step", "base_lrs", "verbose",
                       "best", "num_bad_epochs", "cooldown_counter", "T_cur", "_is_initial"}

#: the bounds OneCycleLR keeps in the optimizer's param groups (CyclicLR's ``initial_lr`` is its ``base_lr``)
_GROUP_BOUNDS = ("initial_lr", "max_lr", "min_lr", "max_momentum", "base_momentum")

#: the schedulers whose rates are a closed form of their step and settings, settings partly kept outside their state
_CLOSED_FORM = (_S.OneCycleLR, _S.CyclicLR)


def _settings_of(value: Any) -> Any:
    """A scheduler state's settings as plain values: nested states (SequentialLR's) filtered alike, anything
    else that is not plain (a lambda, a scale function) named by its type, never by its address."""
    if isinstance(value, dict):
        return {str(k): _settings_of(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))
                if k not in _SCHEDULER_PROGRESS}
    if isinstance(value, (list, tuple)):
        return [_settings_of(v) for v in value]
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)  # ReduceLROnPlateau's mode_worse: a checkpoint holds no non-finite number
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return f"<{type(value).__name__}>"


def _tree(scheduler: Any) -> Iterator[Any]:
    """``scheduler`` and, depth first, those a ``SequentialLR`` or ``ChainedScheduler`` holds."""
    yield scheduler
    for inner in getattr(scheduler, "_schedulers", None) or ():
        yield from _tree(inner)


def _with_base_rates(scheduler: Any, settings: Any) -> Any:
    """``settings`` (of ``scheduler``) with a ``CyclicLR``'s base rates, its own and those it holds."""
    if isinstance(scheduler, _S.CyclicLR) and isinstance(settings, dict):
        settings["base_lrs"] = _settings_of(list(scheduler.base_lrs))
    inner, states = getattr(scheduler, "_schedulers", None) or (), (settings or {}).get("_schedulers")
    if isinstance(states, list) and len(states) == len(inner):
        for held, state in zip(inner, states):
            _with_base_rates(held, state)
    return settings


def scheduler_settings(scheduler: Any) -> dict[str, Any] | None:
    """A scheduler's class and settings (``gamma``, ``step_size``, ``T_max``, ``patience`` ...; a ``CyclicLR``'s
    ``base_lrs``), and, where it is or holds a ``OneCycleLR``, the bounds that keeps in each param group as
    ``"param_groups"`` (see the module docstring); read when it is built, before any step moves it; ``None``
    without a scheduler."""
    if scheduler is None:
        return None
    record = {"class": class_path(type(scheduler)),  # the script's class: __main__ in a spawn child too
              "settings": _with_base_rates(scheduler, _settings_of(scheduler.state_dict()))}
    if any(isinstance(s, _S.OneCycleLR) for s in _tree(scheduler)):
        record["param_groups"] = [{k: _settings_of(group[k]) for k in _GROUP_BOUNDS if k in group}
                                  for group in scheduler.optimizer.param_groups]
    return record


def _same(a: Any, b: Any) -> bool:
    return (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or a == b


def _changed(recorded: dict[str, Any] | None, requested: dict[str, Any] | None) -> bool:
    """Whether the requested scheduler record differs from the recorded one in what the checkpoint records."""
    if recorded is None or requested is None:
        return False
    return any(not _same(a, b) and a != "<absent>" for _, a, b in differences(recorded, requested))


def _cycling(scheduler: Any) -> Any:
    """The first scheduler of ``scheduler``'s tree that sets the momentum at every step, or ``None``."""
    return next((s for s in _tree(scheduler) if getattr(s, "cycle_momentum", False)), None)


def check_scheduler_override(path: Any, player: str, scheduler: Any, requested: dict[str, Any],
                             recorded: dict[str, Any] | None, saved_state: dict[str, Any] | None) -> None:
    """Under ``override_hyperparameters``, before anything is loaded: refuse what the requested ``scheduler``
    would not honour.

    :param path: the checkpoint, named in the error.
    :param player: the player's name.
    :param scheduler: the player's scheduler as requested (``None``: nothing to refuse).
    :param requested: the player's optimizer hyperparameters as requested
        (:func:`~hybridpgm.train.resume.optimizer_hyperparameters`).
    :param recorded: the same as the checkpoint recorded them (``None`` for a checkpoint without a record: the
        momentum is not compared).
    :param saved_state: the scheduler state the checkpoint holds for the player, ``None`` when the requested
        scheduler starts afresh.
    :raises CheckpointError: naming the file and the player: the momentum (``betas[0]`` for Adam) differs from the
        recorded one while the scheduler cycles it (``cycle_momentum=True``: it sets the momentum from its
        ``base_momentum`` and ``max_momentum`` at every step); or a ``OneCycleLR``'s ``total_steps`` ends before
        the checkpoint's step.
    """
    cycling = _cycling(scheduler)
    if cycling is not None and recorded is not None:
        key = "betas" if getattr(cycling, "use_beta1", False) else "momentum"
        for i, (now, was) in enumerate(zip(requested["param_groups"], recorded.get("param_groups") or ())):
            a, b = (was or {}).get(key), now.get(key)
            if key == "betas" and isinstance(a, list) and isinstance(b, list) and a and b:
                a, b = a[0], b[0]
            if a is not None and b is not None and not _same(a, b):
                name = f"{key}[0]" if key == "betas" else key
                raise CheckpointError(
                    f"checkpoint {str(path)!r}: player {player!r} asks for {name} {b!r} in param group {i} (checkpoint "
                    f"{a!r}), but its {type(cycling).__name__} cycles the momentum (cycle_momentum=True) between its "
                    f"base_momentum and max_momentum and would set it back at the next step; change those of the "
                    f"scheduler instead (override_hyperparameters applies them), or pass cycle_momentum=False")
    step = (saved_state or {}).get("last_epoch")
    total = getattr(scheduler, "total_steps", None)
    if isinstance(scheduler, _S.OneCycleLR) and isinstance(step, int) and isinstance(total, int) and step > total:
        raise CheckpointError(f"checkpoint {str(path)!r}: player {player!r}'s OneCycleLR asks for total_steps={total}, "
                              f"but the checkpoint's schedule is at step {step}; ask for at least {step}")


def requested_schedule(scheduler: Any) -> tuple[dict[str, Any], list[dict[str, Any]]] | None:
    """Before a checkpoint is loaded over it: a top-level ``OneCycleLR``'s or ``CyclicLR``'s state and the bounds
    it keeps in the param groups, as requested (for :func:`apply_requested_schedule`); ``None`` for any other
    scheduler."""
    if not isinstance(scheduler, _CLOSED_FORM):
        return None
    bounds = [{k: group[k] for k in _GROUP_BOUNDS if k in group} for group in scheduler.optimizer.param_groups]
    return copy.deepcopy(scheduler.state_dict()), copy.deepcopy(bounds)


def apply_requested_schedule(scheduler: Any, snapshot: tuple[dict[str, Any], list[dict[str, Any]]] | None,
                             requested: dict[str, Any] | None, recorded: dict[str, Any] | None,
                             afresh: bool) -> None:
    """Under ``override_hyperparameters``, after the checkpoint and the other overrides are applied: make a
    top-level ``OneCycleLR`` or ``CyclicLR`` the requested one (``snapshot``, from :func:`requested_schedule`)
    where the checkpoint ``recorded`` other settings than ``requested`` (on what it records), or where it starts
    afresh (the checkpoint's optimizer state replaced the bounds its constructor wrote).  Its settings and bounds
    become the requested ones, its step stays (the checkpoint's, or 0 afresh), and each param group's ``lr`` and,
    while it cycles the momentum, momentum become those of that step, as :meth:`get_lr` gives them; its base
    rates and ``get_last_lr()`` follow.  An ``lr`` scaled by :func:`~hybridpgm.train.resume.override_hyperparameters`
    is replaced: the requested schedule is taken as asked.

    :param scheduler: the player's scheduler, the checkpoint's state loaded into it (unless it starts afresh).
    :param snapshot: :func:`requested_schedule`'s, taken before the checkpoint was loaded (``None``: nothing to do).
    :param requested: the requested scheduler's :func:`scheduler_settings`.
    :param recorded: the checkpoint's record of its scheduler (``None``: nothing compared).
    :param afresh: the scheduler starts afresh (the checkpoint had one of another class, or none)."""
    if snapshot is None or not (afresh or _changed(recorded, requested)):
        return
    state, bounds = copy.deepcopy(snapshot)
    progress = {k: v for k, v in scheduler.state_dict().items() if k in _SCHEDULER_PROGRESS and k != "base_lrs"}
    scheduler.load_state_dict({**state, **progress})  # CyclicLR's pops its scale function: a copy is passed
    for group, wanted in zip(scheduler.optimizer.param_groups, bounds):
        group.update(wanted)
    scheduler._get_lr_called_within_step = True  # as torch's step does: get_lr warns when called outside one
    try:
        rates = scheduler.get_lr()  # also sets the momentum of this step, while it cycles it
    finally:
        scheduler._get_lr_called_within_step = False
    for group, rate in zip(scheduler.optimizer.param_groups, rates):
        if isinstance(group["lr"], torch.Tensor):
            group["lr"].fill_(rate)
        else:
            group["lr"] = rate
    scheduler._last_lr = [g["lr"].clone() if isinstance(g["lr"], torch.Tensor) else g["lr"]
                          for g in scheduler.optimizer.param_groups]
