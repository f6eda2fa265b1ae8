"""Which parameters each player's optimizer holds: recorded in a checkpoint, compared when a run resumes.

An optimizer's ``state_dict`` keeps each parameter's state (Adam's moments, SGD's momentum buffer) by the
parameter's *position* in its param groups, not by its name.  Which parameters a player trains may depend on
which ones are frozen (:class:`~hybridpgm.infer.SVIObjective`'s players hold only those with
``requires_grad``), so a run resumed after ``vae.decoder.requires_grad_(False)`` would give the checkpoint's
optimizer state to other parameters: torch refuses it when the counts differ, and with equal counts the state of
one parameter lands on another (a shape error at the first step, or silently wrong moments where the shapes
agree).

So the run configuration records, per player, the names of the parameters in each param group of its optimizer,
in order (:func:`optimizer_parameter_names`, plain lists of ``str``, which load with ``weights_only=True``), and
:func:`check_parameter_layout` compares them with the resuming run's before anything is loaded into the model.
A checkpoint written before the names were recorded is checked by the sizes of its param groups
(:func:`check_optimizer_sizes`).  ``override_hyperparameters`` does not lift either check: the state cannot be
restored onto another set of parameters.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import torch

from hybridpgm.checks import shown_items
from hybridpgm.errors import CheckpointError

__all__ = ["check_optimizer_sizes", "check_parameter_layout", "optimizer_parameter_names"]

#: the entry of a player's optimizer record (in the run configuration) that holds its parameters' names
NAMES = "param_names"

_ADVICE = ("The optimizer's state (Adam's moments, SGD's momentum ...) is kept by the parameters' positions, so it "
           "cannot be restored onto another set of parameters: freeze and unfreeze the parameters (requires_grad_) "
           "as in the checkpoint's run, or pass overwrite=True (CLI: --overwrite) to start afresh")


def optimizer_parameter_names(optimizer: torch.optim.Optimizer, names: Mapping[int, str]) -> list[list[str]]:
    """The names of the parameters in each of ``optimizer``'s param groups, in order.

    :param names: ``id(parameter) -> name`` over the model (from :meth:`~torch.nn.Module.named_parameters`); a
        parameter outside it is named by its place (``"<param group 0, #3: outside the model>"``).
    :returns: one list of names per param group.
    """
    return [[names.get(id(p), f"<param group {g}, #{i}: outside the model>") for i, p in enumerate(group["params"])]
            for g, group in enumerate(optimizer.param_groups)]


def _names_of(config: Any, player: str) -> list[list[str]] | None:
    """The recorded names of ``player``'s parameters in a run configuration, or ``None`` when it has none."""
    optimizers = config.get("optimizers") if isinstance(config, Mapping) else None
    record = optimizers.get(player) if isinstance(optimizers, Mapping) else None
    names = record.get(NAMES) if isinstance(record, Mapping) else None
    return names if isinstance(names, list) and all(isinstance(g, list) for g in names) else None


def _differences(player: str, was: list[list[str]], now: list[list[str]], saved_config: Mapping[str, Any],
                 module: torch.nn.Module) -> list[str]:
    """How ``player``'s parameters now (``now``) differ from the checkpoint's (``was``), in the model's order."""
    flat_was, flat_now = [n for g in was for n in g], [n for g in now for n in g]
    set_was, set_now = set(flat_was), set(flat_now)
    params = dict(module.named_parameters())
    order = {name: i for i, name in enumerate(params)}
    found: list[tuple[int, str]] = []
    for name in dict.fromkeys(n for n in flat_was if n not in set_now):
        p = params.get(name)
        if p is not None and not p.requires_grad:
            found.append((order[name], f"{name!r} is trained in the checkpoint but frozen now"))
        elif p is None:
            found.append((len(order), f"{name!r} is trained in the checkpoint but is no parameter of the model now"))
        else:
            found.append((order[name], f"{name!r} is trained by this player in the checkpoint but not now"))
    others = {n: other for other in (saved_config.get("optimizers") or {}) if other != player
              for n in (n for g in (_names_of(saved_config, other) or []) for n in g)}
    for name in dict.fromkeys(n for n in flat_now if n not in set_was):
        then = f"trained by player {others[name]!r}" if name in others else "frozen"
        found.append((order.get(name, len(order)), f"{name!r} is {then} in the checkpoint but trained now"))
    if found:
        return [text for _, text in sorted(found, key=lambda item: item[0])]
    if len(was) != len(now):  # the same parameters, grouped otherwise
        return [f"its optimizer has {len(was)} param group(s) in the checkpoint, {len(now)} now"]
    for g, (a, b) in enumerate(zip(was, now)):
        for i in range(max(len(a), len(b))):
            x, y = (a[i] if i < len(a) else None), (b[i] if i < len(b) else None)
            if x != y:
                return [f"param group {g} holds {x!r} at position {i} in the checkpoint, {y!r} now"]
    return []


def check_parameter_layout(path: str | os.PathLike, saved_config: Any, requested: Mapping[str, Any],
                           module: torch.nn.Module) -> None:
    """Refuse to resume when a player's optimizer holds other parameters, or the same ones in another order or
    grouping, than in the checkpoint (a parameter frozen or unfrozen since, moved to another player).

    :param saved_config: the checkpoint's run configuration (``None``, or one without the names: nothing is
        compared for that player; :func:`check_optimizer_sizes` checks the sizes).
    :param requested: the resuming run's configuration (:func:`~hybridpgm.train.resume.run_config`).
    :param module: the model (read, not changed: which parameters are frozen now).
    :raises CheckpointError: naming the file, the player and the parameters that differ (the first in the model's
        order first), e.g. ``'decoder.0.weight' is trained in the checkpoint but frozen now``.
    """
    for player in (requested.get("optimizers") or {}):
        was, now = _names_of(saved_config, player), _names_of(requested, player)
        if was is None or now is None or was == now:
            continue
        found = _differences(player, was, now, saved_config, module)
        raise CheckpointError(f"checkpoint {str(path)!r}: player {player!r} trains other parameters than in the "
                              f"checkpoint: {shown_items(found, 5, quote=str)}. {_ADVICE}")


def check_optimizer_sizes(path: str | os.PathLike, saved_players: Mapping[str, Any], players: Mapping[str, Any]) \
        -> None:
    """Refuse to resume when a player's optimizer has another number of param groups, or of parameters in one,
    than the checkpoint's optimizer state (what torch's ``load_state_dict`` would refuse with a ``ValueError``
    after the model's weights had been replaced).  A state of another form is left to that ``load_state_dict``.

    :param saved_players: the checkpoint's ``"players"`` (each one's ``"optimizer"`` state).
    :param players: the run's :class:`~hybridpgm.train.player_step.Player` objects, by name.
    :raises CheckpointError: naming the file, the player and both sizes.
    """
    for name, player in players.items():
        state = saved_players.get(name) if isinstance(saved_players, Mapping) else None
        groups = state.get("optimizer", {}).get("param_groups") if isinstance(state, Mapping) and isinstance(
            state.get("optimizer"), Mapping) else None
        if not isinstance(groups, list) or not all(isinstance(g, Mapping) and isinstance(g.get("params"), list)
                                                   for g in groups):
            continue
        was = [len(g["params"]) for g in groups]
        now = [len(g["params"]) for g in player.optimizer.param_groups]
        if was != now:
            raise CheckpointError(f"checkpoint {str(path)!r}: player {name!r}'s optimizer holds {was} parameter(s) "
                                  f"(per param group) in the checkpoint, {now} now; were parameters frozen or "
                                  f"unfrozen since? {_ADVICE}")
