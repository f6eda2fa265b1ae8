"""Per-rank state in the checkpoints of a multi-process run.

Under ``torchrun`` the parameters are the same on every rank (each optimizer
step applies the rank-averaged gradient), but a module's *buffers* need not
be: a :class:`~hybridpgm.infer.PersistentCD`'s persistent chains, NVIL's
running baseline statistics or a batch norm's running statistics are updated
by each rank from its own shard and its own random numbers.  So that a resume
continues bit for bit, every checkpoint of a run on ``W > 1`` ranks holds,
under ``"rank_states"``, one entry per rank (gathered to rank 0, which writes
the file atomically with the rest): the rank's persistent buffers and its
objective's extra state (:func:`rank_state`).

On resume:

* on the same number of ranks, every rank loads the module's state, then puts
  back its own buffers and objective state (:func:`load_rank_state`), and
  ``fit`` broadcasts only rank 0's parameters, not its buffers;
* on another number of ranks (or from a checkpoint without ``"rank_states"``,
  written by an earlier hybridpgm), the ranks cannot be matched: every rank
  starts from rank 0's buffers, broadcast as at a fresh start, and
  :func:`resume_plan` gives a warning that names the buffers which differed
  between the saved ranks (none when they agreed: nothing is lost then).

The entries are plain tensors and dicts, so the checkpoint still loads with
``weights_only=True``; a NaN in any rank's state keeps the checkpoint from
being written, and infinity is allowed only in the buffers
(:func:`rank_buffer_paths`), as in the module's own.
"""

from __future__ import annotations

import os
from typing import Any, Mapping

import torch

from hybridpgm.errors import CheckpointError

__all__ = ["load_rank_state", "rank_buffer_paths", "rank_state", "rank_state_differences", "resume_plan"]

#: the checkpoint entry holding the per-rank states
KEY = "rank_states"


def _on_cpu(value: Any) -> Any:
    """A copy of a nested state (dicts, lists, tuples of tensors and plain values), every tensor detached
    and copied to the CPU (a gathered object travels pickled: a CUDA tensor would land on another rank's
    device)."""
    if isinstance(value, torch.Tensor):
        return value.detach().to("cpu", copy=True)
    if isinstance(value, dict):
        return {k: _on_cpu(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_on_cpu(v) for v in value)
    return value


def rank_state(module: torch.nn.Module, objective: Any) -> dict[str, Any]:
    """This rank's own state, on the CPU: the module's persistent buffers (those in its ``state_dict``) and
    the objective's extra state (its ``state_dict()``; ``None`` without one)."""
    names = {name for name, _ in module.named_buffers(remove_duplicate=False)}
    return {"buffers": {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items() if k in names},
            "objective": _on_cpu(objective.state_dict()) if hasattr(objective, "state_dict") else None}


def load_rank_state(path: str | os.PathLike, module: torch.nn.Module, objective: Any,
                    state: Mapping[str, Any]) -> None:
    """Put back what :func:`rank_state` saved: the buffers in place, the objective's state through its
    ``load_state_dict``.

    :raises CheckpointError: a saved buffer the module lacks, or one of another shape (naming the file)."""
    buffers = dict(module.named_buffers(remove_duplicate=False))
    wrong = [f"{name!r} is not a buffer of the model" for name in state["buffers"] if name not in buffers]
    wrong += [f"{name!r} has shape {tuple(value.shape)} in the checkpoint, {tuple(buffers[name].shape)} in the model"
              for name, value in state["buffers"].items() if name in buffers and value.shape != buffers[name].shape]
    if wrong:
        raise CheckpointError(f"checkpoint {str(path)!r} holds per-rank buffers that do not fit the model: "
                              + "; ".join(wrong))
    with torch.no_grad():
        for name, value in state["buffers"].items():
            buffers[name].copy_(value)
    if state.get("objective") is not None and hasattr(objective, "load_state_dict"):
        objective.load_state_dict(state["objective"])


def rank_buffer_paths(module: torch.nn.Module, ranks: int) -> frozenset[str]:
    """The :func:`~hybridpgm.train.checkpoint.nonfinite_entries` paths of the module's buffers inside the
    ``ranks`` per-rank states of a checkpoint: they may hold infinity (a constraint's bound), as the
    module's own buffers may; never NaN."""
    names = [name for name, _ in module.named_buffers(remove_duplicate=False)]
    return frozenset(f"[{KEY!r}][{rank!r}]['buffers'][{name!r}]" for rank in range(ranks) for name in names)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor):
        return a.shape == b.shape and a.dtype == b.dtype and bool(torch.equal(a, b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


def rank_state_differences(states: list[Mapping[str, Any]]) -> list[str]:
    """What differs from rank 0's among the saved per-rank states: the names of the buffers, and
    ``"the objective's state"``; empty when every rank holds rank 0's state."""
    first = states[0]
    names = [repr(name) for name in first["buffers"]
             if any(not _same(s["buffers"].get(name), first["buffers"][name]) for s in states[1:])]
    if any(not _same(s.get("objective"), first.get("objective")) for s in states[1:]):
        names.append("the objective's state")
    return names


def resume_plan(path: str | os.PathLike, saved: Mapping[str, Any], world_size: int, module: torch.nn.Module,
                objective: Any) -> tuple[Any, str | None]:
    """How a run on ``world_size`` ranks resumes the per-rank state of the checkpoint ``saved``.

    :returns: the saved per-rank states when each rank restores its own (a run on ``W > 1`` ranks resuming a
        checkpoint written by ``W`` ranks; ``None`` otherwise: every rank takes rank 0's), and the text of a
        warning when per-rank state is lost (``None`` when nothing is)."""
    states = saved.get(KEY)
    written_by = int(saved.get("world_size", 1))
    if states is not None and len(states) == world_size == written_by and world_size > 1:
        return states, None
    if written_by == 1:
        return None, None  # one rank's state: the same as a fresh multi-process start from it
    where = f"checkpoint {str(path)!r} was written by {written_by} ranks"
    if states is None:
        has_state = any(True for _ in module.buffers()) or hasattr(objective, "state_dict")
        if not has_state:
            return None, None
        lost = (f"{where} and holds only rank 0's buffers and objective state (an earlier hybridpgm wrote it): "
                "every rank resumes from rank 0's")
    else:
        differing = rank_state_differences(states)
        if not differing:
            return None, None
        lost = (f"{where} and this run has {world_size}: the ranks' own buffers and objective state cannot be "
                f"matched to the ranks, so every rank resumes from rank 0's, and what differed between the saved "
                f"ranks ({', '.join(differing[:5])}{' ...' if len(differing) > 5 else ''}) is lost")
    return None, (f"{lost}; the run does not continue exactly as it would have on {written_by} ranks (resume on "
                  f"{written_by} ranks to continue it bit for bit)")
