"""Queries that :func:`torch.export.export` cannot capture refuse it by name.

The exact queries of :class:`~hybridpgm.graphs.MarkovNet` and :class:`~hybridpgm.graphs.BayesNet` read their
evidence and table checks on the host (the evidence pattern chooses the contraction) and key caches by a tensor's
storage; under :func:`torch.export.export` those reads fail deep inside the query with a raw torch error
(``GuardOnDataDependentSymNode``, ``Cannot access data pointer of Tensor``, ``unhashable type: non-nested
SymInt``).  :func:`export_refused` raises :class:`~hybridpgm.errors.UnsupportedQueryError` at the query's entry
instead, naming the query and what works: :func:`torch.compile` (graph breaks at the reads) or eager calls.  Outside
an export the wrapper costs one flag read (:func:`torch.compiler.is_exporting`; a torch release without it, such as
2.5, gives no refusal: its own error stands).
"""

from __future__ import annotations

import functools
from typing import Callable, TypeVar

import torch

from hybridpgm.errors import UnsupportedQueryError

__all__ = ["export_refused"]

#: whether :func:`torch.export.export` is tracing (always False on a torch without the flag, such as 2.5)
_exporting = getattr(torch.compiler, "is_exporting", lambda: False)

F = TypeVar("F", bound=Callable)


def export_refused(query: str) -> Callable[[F], F]:
    """Decorate the query method ``query`` (``"BayesNet.posterior"``, as messages name it) so that it raises
    :class:`~hybridpgm.errors.UnsupportedQueryError` while :func:`torch.export.export` traces it.

    :param query: the query's name in messages.
    """
    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def refusing(*args, **kwargs):
            if _exporting():
                raise UnsupportedQueryError(
                    f"{query} does not export with torch.export: it reads its evidence and table checks on the "
                    "host and keys caches by tensor storage, which an exported program cannot hold; compile it "
                    "with torch.compile (default options, without fullgraph=True) or call it eagerly; see "
                    "docs/compile.md ('Exact queries and torch.export')")
            return fn(*args, **kwargs)

        return refusing  # type: ignore[return-value]

    return decorate
