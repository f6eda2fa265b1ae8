"""The class names a checkpoint records, read as this release writes them.

A checkpoint records the class of each player's optimizer and scheduler (``config["optimizers"][player]["class"]``,
``config["schedulers"][player]["class"]``) and of each stateful callback (``callbacks[i]["class"]``), and a resume
compares them with the run's.  A class of the training script is recorded as ``__main__.<name>`` in every process
(:func:`~hybridpgm.main_module.class_path`); a release before this one wrote ``__mp_main__.<name>`` in a ``spawn`` or
``forkserver`` child (a rank of :func:`torch.multiprocessing.spawn`), which :func:`upgrade_class_names` reads as
``__main__.<name>``, so that such a checkpoint still resumes on the ranks of another ``spawn``.
"""

from __future__ import annotations

from typing import Any

from hybridpgm.main_module import recorded_name

__all__ = ["upgrade_class_names"]


def _upgrade_entry(entry: Any) -> None:
    if isinstance(entry, dict) and "class" in entry:
        entry["class"] = recorded_name(entry["class"])


def upgrade_class_names(state: Any) -> Any:
    """Rewrite, in place, the recorded ``__mp_main__.<name>`` classes of the checkpoint ``state`` (a dict read by
    :func:`~hybridpgm.train.checkpoint.load_checkpoint`) as ``__main__.<name>``; entries of another shape are left
    to the checks that read them.

    :returns: ``state``."""
    if not isinstance(state, dict):
        return state
    config = state.get("config")
    for key in ("optimizers", "schedulers"):
        records = config.get(key) if isinstance(config, dict) else None
        for record in (records.values() if isinstance(records, dict) else ()):
            _upgrade_entry(record)
    callbacks = state.get("callbacks")
    for entry in (callbacks if isinstance(callbacks, list) else ()):
        _upgrade_entry(entry)
    return state
