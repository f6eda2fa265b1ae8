"""The paths of the files hybridpgm reads and writes, as the caller gives them.

Every function that takes the path of a file (:func:`hybridpgm.save` and :func:`hybridpgm.load`, ``fit``'s
``checkpoint``, :func:`~hybridpgm.graphs.bif.read_bif` and :func:`~hybridpgm.graphs.bif.write_bif`, the plot helpers'
``path``) reads it through :func:`file_path`, so that they agree on one policy:

* a path is a ``str`` or an :class:`os.PathLike` of one; ``bytes`` and other values are refused by name (not with
  pathlib's raw ``TypeError``);
* a leading ``~`` is the user's home folder (:meth:`pathlib.Path.expanduser`), as in a shell: ``"~/runs/ck.pt"``
  never creates a folder named ``~``;
* a path that ends with a separator names a folder, not a file, and is refused (:mod:`pathlib` would drop the
  separator and write a file named after the folder).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from hybridpgm.errors import DataError, HybridPGMError

__all__ = ["file_path"]


def file_path(path: Any, what: str, error: type[HybridPGMError] = DataError) -> Path:
    """``path`` as a :class:`~pathlib.Path` of a file, ``~`` expanded (see the module docstring).

    :param what: the file's role, as messages name it (``"checkpoint"``, ``"model file"``, ``"BIF file"``).
    :param error: the exception class raised (the caller's module's kind of error).
    :raises HybridPGMError: (``error``) ``path`` is not a ``str`` or ``os.PathLike`` of one, is empty, or ends
        with a path separator.
    """
    if not isinstance(path, (str, os.PathLike)) or not isinstance(os.fspath(path), str):
        raise error(f"the {what} path must be a str or os.PathLike, got {type(path).__name__} {path!r}")
    text = os.fspath(path)
    if not text:
        raise error(f"the {what} path is empty")
    if text.endswith(os.sep) or (os.altsep and text.endswith(os.altsep)):
        raise error(f"the {what} path {text!r} ends with a separator, so it names a folder; pass the path of a "
                    "file in it")
    try:
        return Path(text).expanduser()
    except RuntimeError:  # no home folder to expand to: keep the path as given
        return Path(text)
