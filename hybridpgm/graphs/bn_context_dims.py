"""The sizes of the batch dims that an enclosing Pyro program claims left of a :class:`~hybridpgm.graphs.BayesNet`'s
data plate, and what they tell of a context input's leading dims.

A context input of :meth:`BayesNet.model <hybridpgm.graphs.BayesNet.model>` is ``[*B, N, F]`` under the batch dims
``B`` of the enclosing program (:func:`~hybridpgm.graphs.bn_values.outer_batch_dims`: particle plates, enumerated
sites).  Where that reading puts one row at the data plate, ``[K, 1, F]``, while the data have ``N = K`` rows, the
shape alone cannot tell it from ``N`` rows of features ``[N, 1, d...]`` (a single-channel image ``[N, 1, H, W]``).
The sizes can: the dim the first entry would take holds ``K`` entries in the program, and where it cannot hold
``N``, the input is rows first.  :func:`outer_dim_sizes` reads those sizes off Pyro's handler stack:

* a vectorized plate at the dim (a particle plate of a vectorized ELBO, IWAE or ``Predictive(..., parallel=True)``,
  a caller's plate, also one a :func:`pyro.poutine.block` hides): its size, the batch's where it subsamples;
* an enumeration dim (one allocated by Pyro's enumeration, global, or local under ``pyro.markov``): the sizes at
  that dim of the values of the sites that hold it, read from the traces on the stack -- the partial trace of the
  program being recorded and the trace it replays (a guide's, under ``TraceEnum_ELBO``).  Every site that an
  active ``poutine.enum`` records as holding the dim (``_value_dims``), and for a global dim the site enumerated
  there, must be found, else the sizes cannot be told (a ``poutine.block`` between the enumeration and the trace,
  ``poutine.enum`` run without a trace): ``None``, and the input stays refused.

Only the ambiguous case reads the sizes; every other input costs nothing more.
"""

from __future__ import annotations

import torch

__all__ = ["could_be_batch_dims", "expand_hint", "one_row_or_rows_first", "outer_dim_sizes"]


def outer_dim_sizes(dim: int) -> frozenset[int] | None:
    """The sizes that tensor dim ``dim`` (``<= -2``, counted like Pyro's plate dims) may hold in the enclosing Pyro
    program: 1 (a value that does not vary there), the size of a vectorized plate at ``dim`` and those of the values
    enumerated at ``dim``; ``None`` where they cannot be told (see the module's docstring)."""
    from pyro.poutine import runtime
    from pyro.poutine.enum_messenger import EnumMessenger
    from pyro.poutine.indep_messenger import IndepMessenger
    from pyro.poutine.trace_struct import Trace

    from hybridpgm.graphs.bn_plate import plate_holding

    sizes, traces, enums, plated = {1}, [], [], False
    for m in runtime._PYRO_STACK:
        if isinstance(m, IndepMessenger) and m.dim == dim:
            sizes.add(int(getattr(m, "subsample_size", None) or m.size))  # pyro.plate: the batch's size
            plated = True
        elif isinstance(m, EnumMessenger):
            enums.append(m)
        trace = getattr(m, "trace", None)  # a trace being recorded, or one replayed
        if isinstance(trace, Trace):
            traces.append(trace)
    if not plated and plate_holding(dim) is not None:
        return None  # a plate holds the dim but is not on the stack (block_plate): its size is not known
    if not enums:
        return frozenset(sizes)
    wanted = {name for m in enums for name, dims in getattr(m, "_value_dims", {}).items() if dim in dims}
    unfound = set(wanted)
    for name in wanted:
        for trace in traces:
            site = trace.nodes.get(name)
            if site is not None and site["type"] == "sample":
                sizes.add(_size_at(site, dim))
                unfound.discard(name)
    if unfound:
        return None
    if dim in getattr(runtime._ENUM_ALLOCATOR, "dim_to_id", {}):  # a global dim: the site enumerated there
        there = [s for trace in traces for s in trace.nodes.values()
                 if s["type"] == "sample" and s["infer"].get("_enumerate_dim") == dim]
        if not there:
            return None
        sizes.update(_size_at(s, dim) for s in there)
    return frozenset(sizes)


def _size_at(site: dict, dim: int) -> int:
    """The size at batch dim ``dim`` of a trace site's value (1 where its batch shape is shorter)."""
    value = site["value"]
    batch = value.shape[:value.dim() - getattr(site["fn"], "event_dim", 0)]
    return int(batch[dim]) if len(batch) >= -dim else 1


def could_be_batch_dims(shape: torch.Size | tuple) -> bool:
    """Whether ``shape`` (a context's leading dims, aligned at the right with dim ``-2``, left of the data plate)
    may be batch dims of the enclosing program: each entry 1 or a size its dim may hold (or holds sizes that cannot
    be told)."""
    k = len(shape)
    for i, s in enumerate(shape):
        if s != 1:
            sizes = outer_dim_sizes(i - k - 1)
            if sizes is not None and int(s) not in sizes:
                return False
    return True


def one_row_or_rows_first(name: str, t: torch.Tensor, batched: torch.Tensor, rows: int) -> str:
    """The refusal of a context input ``t`` that reads as one row (``batched``, ``[*B, 1, F]``) under the enclosing
    program's dims, which may hold its leading dims, and whose first dim holds the data's ``rows``: neither reading is
    taken."""
    feats = int(batched.shape[-1])
    per_row = (*batched.shape[:-2], rows, feats)
    return (f"context input '{name}' of shape {tuple(t.shape)} is ambiguous: under the batch dims the enclosing "
            f"Pyro program claims left of the data plate (an enumerated site, a particle plate; dim "
            f"{1 - batched.dim()} may hold {rows} entries there) it reads as one row {tuple(batched.shape)} (batch "
            f"dims, 1 row, {feats} feature(s)), which the network does not broadcast over the data's {rows} rows, "
            f"and read rows first (its first dim holds {rows} entries) row n would take entry n.  For one context "
            f"per batch value and row, give it shape {per_row} (batch dims, rows, features; e.g. "
            f"z[..., None].expand(*z.shape[:-1], {rows}, 1) for an enumerated z); for {rows} rows of features, "
            f"flatten them: shape ({rows}, {t[0].numel()}), .reshape({rows}, -1)")


def expand_hint(what: str, shape: tuple, rows: int, call: str = "EXPR", var: str = "ctx") -> str:
    """The remedy, for a refusal's message, of a context ``what`` of ``shape`` that reads as one row (``[*B, 1, F]``:
    under enumeration one row per value of the enumerated site, Pyro's ``[K, 1]`` shape) beside ``rows > 1`` rows of
    data, which a :class:`~hybridpgm.graphs.BayesNet` or :class:`~hybridpgm.graphs.MarkovNet` does not broadcast:
    expand it to the rows, ``x.expand(*x.shape[:-2], N, x.shape[-1])``, and pass that (the call and argument named
    in full: found by session 38, whose message named only ``ctx.expand(...)``).  ``""`` for any other shape.

    :param str what: the context as the message names it (``"context input 'k'"``).
    :param shape: its shape, ``[*B, 1, F]`` as the model reads it.
    :param int rows: the data's rows ``N``.
    :param str call: the call that passes it, ``EXPR`` standing for the expanded tensor
        (``"bn.model(data, context={'k': EXPR})"``, ``"mrf.model(values, context=EXPR)"``).
    :param str var: the name the message gives the one-row tensor (``k``, ``context``)."""
    shape = tuple(int(n) for n in shape)
    if len(shape) < 2 or shape[-2] != 1 or rows <= 1:
        return ""
    expanded = call.replace("EXPR", f"{var}.expand{(*shape[:-2], rows, shape[-1])}")
    return (f"; the {what} of shape {shape} is one row (under enumeration, one per value of the enumerated site), "
            f"which is not broadcast over the {rows} data rows: expand it to them and call {expanded} "
            f"(in general {var}.expand(*{var}.shape[:-2], N, {var}.shape[-1]), N = {rows} the data plate's rows)")
