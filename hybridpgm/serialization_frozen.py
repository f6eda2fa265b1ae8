"""Frozen parameters in a model file: which parameters were not trained (``requires_grad=False``) is recorded.

A model rebuilt by :func:`~hybridpgm.serialization.load` gets its parameters from its constructors, trainable,
and :meth:`~torch.nn.Module.load_state_dict` copies values, not ``requires_grad``: a VAE saved with a frozen
decoder layer (``vae.decoder[0].requires_grad_(False)``) came back with every parameter trainable, and
fine-tuning it trained that layer too.  So :func:`~hybridpgm.serialization.save` writes the names of the
frozen parameters (:func:`frozen_names`, entry ``"frozen"``, a list of strings) and ``load`` gives each
parameter the ``requires_grad`` it had (:func:`refreeze`): the listed ones frozen, the others trainable.  A file
written before the entry existed loads as it did (every parameter as its constructor made it).
"""

from __future__ import annotations

from typing import Any, Callable

from torch import nn

from hybridpgm.checks import shown_items
from hybridpgm.errors import CheckpointError

__all__ = ["FROZEN", "frozen_names", "refreeze"]

#: the entry of a model file that lists the frozen parameters
FROZEN = "frozen"


def frozen_names(model: nn.Module, plain: Callable[[str], str]) -> list[str]:
    """The names (every name of a shared one, as the plain model has them: ``plain``, from
    :func:`~hybridpgm.serialization_compiled.plain_names`) of the parameters of ``model`` that do not require
    gradients, sorted."""
    return sorted({plain(name) for name, p in model.named_parameters(remove_duplicate=False) if not p.requires_grad})


def refreeze(module: nn.Module, names: Any, path: Any) -> None:
    """Give each parameter of ``module`` the ``requires_grad`` its file records: frozen where one of its names is
    in ``names``, trainable otherwise; nothing when ``names`` is ``None`` (a file written before the record).

    :param names: the file's ``"frozen"`` entry.
    :param path: the file, for messages.
    :raises CheckpointError: naming the file: ``names`` is not a list of strings, or names a parameter the module
        does not have (the file was changed).
    """
    if names is None:
        return
    if not (isinstance(names, list) and all(isinstance(name, str) for name in names)):
        raise CheckpointError(f"model file {str(path)!r} holds a {type(names).__name__} as its {FROZEN!r} entry, not "
                              "a list of parameter names")
    parameters = dict(module.named_parameters(remove_duplicate=False))
    if unknown := sorted(set(names) - set(parameters)):
        raise CheckpointError(f"model file {str(path)!r} lists {shown_items(unknown, 5)} as frozen parameters, which "
                              f"the rebuilt {type(module).__name__} does not have; the file was changed")
    frozen = {id(parameters[name]) for name in names}
    for parameter in parameters.values():
        if parameter.requires_grad == (id(parameter) in frozen):
            parameter.requires_grad_(id(parameter) not in frozen)
