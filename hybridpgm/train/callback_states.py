"""The checkpointed state of :func:`hybridpgm.fit`'s callbacks (:mod:`hybridpgm.train.callbacks`).

**Stateful callbacks resume.**  A callback with ``state_dict()`` and ``load_state_dict(state)`` (as
:class:`~hybridpgm.train.callbacks.EvaluateEvery` and :class:`~hybridpgm.train.callbacks.EarlyStopping` have) is
saved in ``fit``'s checkpoint, under ``"callbacks"``, and restored when the run resumes, so a preempted run with
early stopping continues with the same best value and patience counter.  A state must load with
``torch.load(weights_only=True)`` (tensors, dicts, lists, strings, ints, finite floats, ``None``): store an
infinite "best so far" as ``None``.  A state may keep a copy of the module's ``state_dict`` under the key
``"module"``; its buffers may hold infinity as the module's may (a GPyTorch constraint's bound).  On resume the
stateful callbacks are matched in order and by class with those in the checkpoint; a mismatch is a
:class:`~hybridpgm.errors.CheckpointError`.

**Settings that define a state.**  A callback may also have ``settings()``, a dict of the plain values its state
only makes sense under (``EvaluateEvery``'s ``every``; ``EarlyStopping``'s ``monitor``, ``mode``, ``min_delta``
and ``patience``); they are saved next to the state, and a resume whose callback has other settings is refused
(:func:`check_callback_settings`) unless ``override_hyperparameters=True``: then the state is loaded as the
callback's ``state_for_settings(state, saved_settings)`` gives it, if it has that method (an ``EarlyStopping``
that watches another monitor, or in another mode, starts afresh).  A state that its callback's
``shaped_by_settings(state)`` says owes nothing to them (an ``EarlyStopping`` that has not observed a value yet:
a misspelt monitor, corrected to resume) and a checkpoint written before settings were saved are not compared.
"""

from __future__ import annotations

import math
import os
from typing import Any

from hybridpgm.errors import CheckpointError
from hybridpgm.main_module import class_path

__all__ = ["callback_buffer_paths", "callback_states", "check_callback_settings", "load_callback_states"]


def _is_stateful(callback: Any) -> bool:
    return callable(getattr(callback, "state_dict", None)) and callable(getattr(callback, "load_state_dict", None))


def _class_name(callback: Any) -> str:
    """The recorded class of ``callback``: one of the script's is ``__main__.<name>`` in a ``spawn`` child too
    (:func:`~hybridpgm.main_module.class_path`), so that a run resumes across that boundary."""
    return class_path(type(callback))


def _nonfinite_floats(state: Any, prefix: str = "") -> list[str]:
    """Paths of Python floats in ``state`` that are NaN or infinite (tensors are checked when saving)."""
    if isinstance(state, float):
        return [] if math.isfinite(state) else [prefix or "<state>"]
    items = state.items() if isinstance(state, dict) else enumerate(state) if isinstance(state, (list, tuple)) else ()
    return [bad for key, value in items for bad in _nonfinite_floats(value, f"{prefix}[{key!r}]")]


def _settings(callback: Any) -> dict[str, Any] | None:
    return callback.settings() if callable(getattr(callback, "settings", None)) else None


def callback_states(callbacks: list[Any]) -> list[dict[str, Any] | None]:
    """What ``fit`` saves under ``"callbacks"``: per callback, ``None`` when it has no
    ``state_dict``, else ``{"class": "module.Name", "state": callback.state_dict()}``, with
    ``"settings": callback.settings()`` where it has them.

    :raises CheckpointError: a state holds a non-finite float (naming the callback and the entry).
    """
    out: list[dict[str, Any] | None] = []
    for callback in callbacks:
        if not _is_stateful(callback):
            out.append(None)
            continue
        state = callback.state_dict()
        bad = _nonfinite_floats(state)
        if bad:
            raise CheckpointError(f"{type(callback).__name__}.state_dict() holds a non-finite float at "
                                  f"{', '.join(bad)}; checkpoints hold finite values only (store None instead)")
        entry = {"class": _class_name(callback), "state": state}
        settings = _settings(callback)
        if settings is not None:
            entry["settings"] = settings
        out.append(entry)
    return out


def callback_buffer_paths(states: list[dict[str, Any] | None], module_buffers: frozenset[str],
                          key: str = "callbacks") -> frozenset[str]:
    """Checkpoint paths (see :func:`~hybridpgm.train.checkpoint.nonfinite_entries`) of the module
    buffers inside the callback states that keep a module ``state_dict`` under ``"module"``.

    :param module_buffers: :func:`~hybridpgm.train.checkpoint.buffer_paths` of the module (key ``"module"``).
    """
    paths = set()
    for index, entry in enumerate(states):
        if entry is not None and isinstance(entry["state"], dict) and entry["state"].get("module") is not None:
            paths.update(f"[{key!r}][{index!r}]['state']{path}" for path in module_buffers)
    return frozenset(paths)


def load_callback_states(path: str | os.PathLike | None, callbacks: list[Any],
                         saved: list[dict[str, Any] | None] | None) -> None:
    """Restore the stateful callbacks from a checkpoint's ``"callbacks"`` entry (``None``: a
    checkpoint written before callbacks were saved; nothing is restored).

    :raises CheckpointError: the stateful callbacks differ, in class or order, from the saved ones.
    """
    if saved is None:
        return
    entries = [entry for entry in saved if entry is not None]
    stateful = [callback for callback in callbacks if _is_stateful(callback)]
    have, want = [_class_name(c) for c in stateful], [entry["class"] for entry in entries]
    if have != want:
        raise CheckpointError(f"checkpoint {str(path)!r} holds the state of the callbacks {want}, but this run has "
                              f"the stateful callbacks {have}; pass the same callbacks to resume, or overwrite=True "
                              "(CLI: --overwrite) to start afresh")
    for callback, entry in zip(stateful, entries):
        callback.load_state_dict(entry["state"])


def check_callback_settings(path: str | os.PathLike | None, callbacks: list[Any],
                            saved: list[dict[str, Any] | None] | None,
                            override: bool = False) -> list[dict[str, Any] | None] | None:
    """Compare the settings saved with each stateful callback's state (see the module docstring) with those of
    the run's callback matched to it, before :func:`load_callback_states` loads them.

    A saved entry without settings (an older checkpoint), a callback without ``settings()``, and a state its
    callback's ``shaped_by_settings(state)`` finds blank are not compared; nor is anything when the stateful
    callbacks differ in class or order (:func:`load_callback_states` refuses that).

    :param override: ``override_hyperparameters``: accept other settings; the state to load is then what the
        callback's ``state_for_settings(state, saved_settings)`` gives, where it has that method.
    :returns: ``saved``, with the states to load (a new list; ``saved`` itself is not changed).
    :raises CheckpointError: without ``override``, a callback's settings differ from the saved ones (naming the
        file, the callback, and each setting with its value in the checkpoint and the requested one).
    """
    if saved is None:
        return None
    out = list(saved)
    indices = [index for index, entry in enumerate(saved) if entry is not None]
    stateful = [callback for callback in callbacks if _is_stateful(callback)]
    if [_class_name(c) for c in stateful] != [saved[i]["class"] for i in indices]:
        return out
    found = []
    for callback, index in zip(stateful, indices):
        was, now = saved[index].get("settings"), _settings(callback)
        shaped = getattr(callback, "shaped_by_settings", None)
        if was is None or now is None or (callable(shaped) and not shaped(saved[index]["state"])):
            continue
        differing = [(key, was.get(key, "<absent>"), value) for key, value in now.items()
                     if was.get(key, "<absent>") != value]
        if not differing:
            continue
        found += [f"{type(callback).__name__} {key}: checkpoint {a!r}, requested {b!r}" for key, a, b in differing]
        if override and callable(getattr(callback, "state_for_settings", None)):
            out[index] = {**saved[index], "state": callback.state_for_settings(saved[index]["state"], was)}
    if found and not override:
        raise CheckpointError(f"checkpoint {str(path)!r} holds callback states kept under other settings: "
                              f"{'; '.join(found)}. Pass the same callbacks, override_hyperparameters=True (CLI: "
                              "--override-hyperparameters) to resume with the requested settings, or overwrite=True "
                              "(CLI: --overwrite) to start afresh")
    return out
