"""The name a class of the running script is recorded under, the same in a ``spawn`` or ``forkserver`` child.

Under the ``spawn`` and ``forkserver`` start methods of :mod:`multiprocessing` (so under
:func:`torch.multiprocessing.spawn`, a ``ProcessPoolExecutor(mp_context=...)`` and a ``DataLoader``'s workers
started that way), the child runs the parent's script (or ``python -m`` module) again under the module name
``__mp_main__``, and points ``sys.modules["__main__"]`` at it.  A class ``Net`` of the script is then
``__main__.Net`` in the parent and ``__mp_main__.Net`` in the child, although both are the same source.

Wherever hybridpgm records a class by its qualified name to compare it later (a model file's class, a checkpoint's
callbacks, optimizers and schedulers), it writes ``__main__`` for ``__mp_main__`` (:func:`class_path`), and reads
a name an older release wrote in a child as the same (:func:`recorded_name`): the same script saves in one
process and loads or resumes in the other.  Python 3.14 makes ``forkserver`` the default start method on Linux.
"""

from __future__ import annotations

__all__ = ["MAIN", "MP_MAIN", "class_path", "recorded_module", "recorded_name"]

#: the module name of the script a process runs
MAIN = "__main__"
#: the module name the same script has in a ``spawn`` / ``forkserver`` child of :mod:`multiprocessing`
MP_MAIN = "__mp_main__"


def recorded_module(module: str) -> str:
    """``module`` as recorded: ``"__main__"`` for ``"__mp_main__"``, any other name unchanged.

    :param str module: a ``__module__`` attribute."""
    return MAIN if module == MP_MAIN else module


def class_path(cls: type) -> str:
    """The qualified name ``module.qualname`` that records ``cls``, with the script's module as ``__main__``
    whichever process defines it (:func:`recorded_module`).

    >>> class Net: ...
    >>> Net.__module__ = "__mp_main__"
    >>> class_path(Net)
    '__main__.Net'

    :param type cls: the class."""
    return f"{recorded_module(cls.__module__)}.{cls.__qualname__}"


def recorded_name(name: object) -> object:
    """A qualified class name read from a file, as :func:`class_path` writes it now: ``"__mp_main__.Net"`` (a
    file an older release wrote in a ``spawn`` child) reads ``"__main__.Net"``; any other value unchanged.

    :param name: the recorded name (anything: a damaged file's value is left to its reader to refuse)."""
    if isinstance(name, str) and name.startswith(MP_MAIN + "."):
        return MAIN + name[len(MP_MAIN):]
    return name
