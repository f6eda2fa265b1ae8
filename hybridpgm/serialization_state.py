"""Putting the weights of a model file into the module rebuilt from it, without holding them twice.

:func:`hybridpgm.load` reads the file mapped (:func:`~hybridpgm.train.torch_load.read_torch_file` with
``mmap=True``): the tensors of the payload are views of the file's pages, which the system can drop and read again,
not memory of the process.  So loading a model of :math:`w` bytes of weights needs about :math:`w` bytes of the
process's own memory (the rebuilt module, which the constructors allocate), not the :math:`2w` of holding a copy
of the file beside it while the module is built and filled.  What the module keeps must not be a view of the
mapping (a later write to the file would show through it, and the mapping would live as long as the model):

* :func:`owned` copies the tensors that the constructors are given (a GP's training data), which they may keep;
* :func:`load_weights` copies the state dict into the module's own tensors (``load_state_dict``), a module's extra
  state (torch's ``get_extra_state``) after a deep copy of it, and checks the module's weights for NaN and
  infinity *after* the copy, a chunk at a time (:mod:`~hybridpgm.train.chunked_finite`): what is checked is what
  the model holds.

>>> import torch
>>> base = torch.arange(6.0)
>>> kept = owned({"x": base[1:].view(1, 5)})["x"]
>>> torch.equal(kept, base[1:].view(1, 5)), kept.untyped_storage().data_ptr() != base.untyped_storage().data_ptr()
(True, True)
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hybridpgm.checks import shown_items
from hybridpgm.errors import CheckpointError
from hybridpgm.serialization_dtypes import floating, restore_dtypes
from hybridpgm.train.checkpoint import nonfinite_entries

__all__ = ["load_weights", "owned"]


def owned(tensors: dict[str, Any]) -> dict[str, Any]:
    """``tensors`` with each CPU tensor replaced by a copy in the process's own memory, with the same dtype, shape,
    strides, storage offset and ``requires_grad`` (a storage shared by several of them is copied once and stays
    shared); tensors on another device (copies already) and other values are kept as they are.

    :param tensors: name -> tensor, as a model file's ``tensors`` entry holds them.
    :returns: a new dict of the same names.
    """
    copies: dict[int, torch.UntypedStorage] = {}
    return {name: _owned(value, copies) for name, value in tensors.items()}


def _owned(value: Any, copies: dict[int, torch.UntypedStorage]) -> Any:
    """``value`` if it is no CPU tensor, else a tensor like it on a copy of its storage (one copy per storage)."""
    if not isinstance(value, torch.Tensor) or value.device.type != "cpu":
        return value
    if value.layout != torch.strided:  # sparse: no storage of its own to copy
        return value.clone()
    storage = value.untyped_storage()
    if storage.data_ptr() not in copies:
        copies[storage.data_ptr()] = storage.clone()
    kept = torch.empty(0, dtype=value.dtype).set_(copies[storage.data_ptr()], value.storage_offset(), value.shape,
                                                  value.stride())
    return kept.requires_grad_(value.requires_grad)


def load_weights(module: nn.Module, state: dict[str, Any], path: Path) -> None:
    """Copy the state dict ``state`` read from the model file ``path`` into ``module``, in the floating dtypes it
    was saved in (:func:`~hybridpgm.serialization_dtypes.restore_dtypes`), and check the module's parameters for NaN
    and infinity (its buffers for NaN: a GPyTorch constraint's bound may be infinite).

    The tensors of ``state`` are copied into the module's own (``load_state_dict``), the entries that are not
    tensors (a module's extra state) after a deep copy (:func:`copy.deepcopy`), so that nothing of ``module`` is a
    view of ``state``'s storages (which may map the file).  On a refusal the caller drops ``module``.

    :param module: the module rebuilt from the file's spec.
    :param state: the file's ``state_dict`` entry.
    :param path: the file, as messages name it.
    :raises CheckpointError: a parameter holds NaN or infinity, or a buffer NaN (naming the file and the entries).
    :raises RuntimeError: from ``load_state_dict``: weights that do not fit ``module``.
    """
    restore_dtypes(module, {name: t.dtype for name, t in state.items() if floating(t)})
    # an extra state is plain data, small: a deep copy (one per tensor and container, however often reached)
    module.load_state_dict({name: value if isinstance(value, torch.Tensor) else copy.deepcopy(value)
                            for name, value in state.items()})
    buffers = frozenset(f"[{name!r}]" for name, _ in module.named_buffers(remove_duplicate=False))
    bad = nonfinite_entries(module.state_dict(), infinite_ok=buffers)
    if bad:
        raise CheckpointError(f"model file {str(path)!r} holds NaN or infinity in {shown_items(bad, 5, quote=str)}; "
                              "hybridpgm.save never writes such a file, so it was changed or damaged")
