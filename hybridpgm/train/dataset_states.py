"""The state of a dataset that keeps its own random streams, checkpointed with a run of :func:`hybridpgm.fit`.

The checkpoint holds the global RNG states (torch, NumPy, Python, Pyro), so a dataset that draws from them (an
augmentation with ``torch.rand``, :class:`~hybridpgm.data.binarize.DynamicBinarized`) resumes exactly.  A dataset
that keeps a generator of its own (``self.generator = torch.Generator().manual_seed(5)``) does too when it has
``state_dict()`` and ``load_state_dict(state)``, as a callback does: ``fit`` saves the dataset's ``state_dict()``
with every checkpoint (each rank's, under ``torchrun``) and hands it back to ``load_state_dict`` on resume, after
an objective's ``setup`` has read its first batch and before the first step.  A dataset without them is not
saved, and its own streams start again from where its constructor puts them.

The state must be tensors or plain data (``None``, ``bool``, ``int``, ``float``, ``str``, ``bytes``, and lists,
tuples and dicts of them: :func:`~hybridpgm.train.checkpoint.plain_data`), which a checkpoint reads back with
``torch.load(weights_only=True)``: ``generator.get_state()`` is, but NumPy's ``RandomState.get_state()`` (it holds
an array) or a ``torch.Generator`` itself is not.  ``fit`` checks the state once when the run starts
(:func:`carried_dataset`); one that is not plain data is warned of and left out of the checkpoints, and the run
goes on as for a dataset without ``state_dict``.  A dataset that is also a :class:`torch.nn.Module` is never
saved: its ``state_dict`` is its parameters and buffers (its data, often), not the state of its draws.

The checkpoint entry ``"dataset"`` is ``{"class": "module.Name", "states": [state of rank 0, rank 1, ...]}``; it
is absent when the dataset's state is not saved.
"""

from __future__ import annotations

import os
import warnings
from typing import Any

import torch
from torch.utils.data import Dataset

from hybridpgm.errors import CheckpointError, TrainingWarning
from hybridpgm.main_module import class_path
from hybridpgm.train.checkpoint import plain_data, unreadable_reason
from hybridpgm.warning_origin import users_stacklevel

__all__ = ["carried_dataset", "dataset_entry", "dataset_state", "load_dataset_state"]


def _is_stateful(dataset: Dataset) -> bool:
    """Whether ``dataset`` has ``state_dict`` and ``load_state_dict`` of its own (an ``nn.Module``'s are its
    parameters and buffers, not the state of its draws: never saved)."""
    return (not isinstance(dataset, torch.nn.Module) and callable(getattr(dataset, "state_dict", None))
            and callable(getattr(dataset, "load_state_dict", None)))


def _class_name(dataset: Dataset) -> str:
    return class_path(type(dataset))  # a class of the script: "__main__." in a spawn child too


def _on_cpu(state: Any) -> Any:
    """``state`` with its tensors on the CPU (through dicts, lists and tuples): a resume reads the checkpoint onto
    the run's device, and a generator takes its state only as a CPU byte tensor."""
    if isinstance(state, torch.Tensor):
        return state.cpu()
    if isinstance(state, dict):
        return {key: _on_cpu(value) for key, value in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_on_cpu(value) for value in state)
    return state


def _lacks(dataset: Dataset) -> str:
    if isinstance(dataset, torch.nn.Module):
        return "is an nn.Module (whose state_dict is its parameters and buffers, never loaded as a dataset's state)"
    return "has no state_dict/load_state_dict"


def dataset_state(dataset: Dataset | None) -> Any:
    """This rank's ``dataset.state_dict()``, or ``None`` for a dataset without ``state_dict`` and
    ``load_state_dict`` (or an ``nn.Module``)."""
    return dataset.state_dict() if dataset is not None and _is_stateful(dataset) else None


def carried_dataset(dataset: Dataset, checkpoint: str | os.PathLike | None, context) -> Dataset | None:
    """The dataset whose state a run's checkpoints save: ``dataset`` when the run writes a ``checkpoint``, the
    dataset has ``state_dict`` and ``load_state_dict`` (and is not an ``nn.Module``), and its ``state_dict()`` as
    it stands at the start is tensors and plain data (:func:`~hybridpgm.train.checkpoint.plain_data`) on every
    rank; else ``None``.  Called once by every rank, at the start of the run (one collective on several ranks).

    :param context: the run's :class:`~hybridpgm.train.distributed.DistributedContext`.
    :warns TrainingWarning: (rank 0) the state is not plain data: naming the dataset's class and the entries, and
        that they are left out of the checkpoints (a resume starts the dataset's own streams afresh).
    """
    if checkpoint is None or not _is_stateful(dataset):
        return None
    refused = plain_data(dataset_state(dataset), f"{type(dataset).__name__}.state_dict()")[1]
    refused = next((ranks for ranks in context.gather_object(refused) if ranks), [])  # every rank decides alike
    if not refused:
        return dataset
    if context.is_main:
        warnings.warn(f"the state of the dataset {_class_name(dataset)} is left out of the checkpoints of "
                      f"{str(checkpoint)!r}, so a resume starts its own random streams afresh: "
                      f"{unreadable_reason(refused)}; to be carried, a dataset's state must be tensors or plain "
                      "data (generator.get_state() is)", TrainingWarning, stacklevel=users_stacklevel())
    return None


def dataset_entry(dataset: Dataset | None, states: list[Any]) -> dict[str, Any]:
    """The checkpoint entries for the dataset: ``{"dataset": {"class": ..., "states": states}}`` for a dataset
    with ``state_dict`` and ``load_state_dict`` (not an ``nn.Module``), else ``{}`` (the checkpoint is as it was
    before datasets were saved).

    :param states: every rank's :func:`dataset_state`, in rank order.
    """
    if dataset is None or not _is_stateful(dataset):
        return {}
    return {"dataset": {"class": _class_name(dataset), "states": list(states)}}


def load_dataset_state(path: str | os.PathLike | None, dataset: Dataset, saved: dict[str, Any] | None, rank: int,
                       world_size: int, carried: bool = False) -> None:
    """Give ``dataset`` the state a checkpoint saved for it: this rank's, or rank 0's on another number of ranks,
    its tensors on the CPU (where a dataset's generator keeps its state, whatever device the checkpoint was read
    onto).

    :param saved: the checkpoint's ``"dataset"`` entry (``None``: it saved none, and nothing is loaded).
    :param carried: this run saves the dataset's state (:func:`carried_dataset` gave it).
    :raises CheckpointError: the entry is malformed, or ``dataset.load_state_dict`` refused the state (naming
        the file, the dataset and its error).
    :warns TrainingWarning: (rank 0) the checkpoint holds a dataset state but this run's dataset has no
        ``load_state_dict`` (or is an ``nn.Module``), or the checkpoint holds none for a ``carried`` dataset (it was
        written by a run whose dataset kept no state, or one that was not plain data): either way its own random
        streams start afresh.
    """
    if saved is None:
        if carried and rank == 0:
            warnings.warn(f"checkpoint {str(path)!r} holds no state of the dataset: this run's dataset "
                          f"{type(dataset).__name__} has state_dict/load_state_dict, but its own random streams "
                          "start afresh, so its draws differ from an uninterrupted run's", TrainingWarning,
                          stacklevel=users_stacklevel())
        return
    states = saved.get("states") if isinstance(saved, dict) else None
    if not isinstance(states, list) or not states:
        raise CheckpointError(f"checkpoint {str(path)!r}: its 'dataset' entry is not a dict with a non-empty list "
                              "of 'states'")
    if not _is_stateful(dataset):
        if rank == 0:
            warnings.warn(f"checkpoint {str(path)!r} holds the state of the dataset {saved.get('class')}, but this "
                          f"run's dataset {type(dataset).__name__} {_lacks(dataset)}: its own random "
                          "streams start afresh, so its draws differ from an uninterrupted run's",
                          TrainingWarning, stacklevel=users_stacklevel())
        return
    state = _on_cpu(states[rank] if len(states) == world_size else states[0])
    try:
        dataset.load_state_dict(state)
    except Exception as error:  # the user's method: any refusal, named with the file
        raise CheckpointError(f"checkpoint {str(path)!r}: {type(dataset).__name__}.load_state_dict refused the "
                              f"saved state of {saved.get('class')}: {type(error).__name__}: {error}") from error
