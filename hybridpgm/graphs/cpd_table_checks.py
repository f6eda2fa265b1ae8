"""The checks of a :class:`~hybridpgm.graphs.cpd.Table`'s probabilities, made when it is built.

:func:`table_problem` says what is wrong with one table (or ``None``), :func:`screened` screens the tables of
:meth:`Table.many <hybridpgm.graphs.cpd.Table.many>` in a few vectorised passes, and :func:`table_shape` checks the
sizes given to the factories :meth:`~hybridpgm.graphs.cpd.Table.uniform` and
:meth:`~hybridpgm.graphs.cpd.Table.random`.

The checks read the table on the host (whether an entry is negative, how far a row's sum is from 1), so a table
cannot be built inside :func:`torch.func.vmap`, whose batched tensors hold no one value: :func:`built_outside_vmap`
turns torch's refusal of such a read into a :class:`~hybridpgm.errors.ConfigError` that says so and what to do
instead.  (A table built from a batched ``probs`` would not be one CPD anyway: its logits, a parameter, would be a
wrapper of that one ``vmap`` call.)  Nor can a table on the meta device (torch's default device set to ``"meta"``)
be checked: :func:`table_problem` reports it as the table's problem (:data:`META_TABLE`), raised, as the others,
when the table is declared as a node or used.
"""

from __future__ import annotations

import contextlib
from typing import Iterator

import torch

from hybridpgm.checks import layer_sizes, positive_int
from hybridpgm.errors import ModelSpecError
from hybridpgm.transform_scope import vmap_reads_refused

__all__ = ["META_TABLE", "built_outside_vmap", "screened", "table_problem", "table_shape"]

#: the error of a :class:`~hybridpgm.graphs.cpd.Table` built under ``vmap`` (:func:`built_outside_vmap`)
VMAP_REFUSED = ("{what}: a table CPD cannot be built inside torch.func.vmap: its checks read the table on the host "
                "(non-negative entries, rows that sum to 1), which vmap's batched tensors cannot give, and a batched "
                "table would not be one CPD (its logits are a parameter of the network).  Build the tables outside "
                "vmap, one Table per probability table (Table.many builds several, their checks vectorised), and "
                "query the network with its evidence as one batch of rows, which every exact query answers at once")

#: the problem of a table on the meta device (:func:`table_problem`), reported when it is declared as a node
META_TABLE = ("table is on the meta device, whose tensors hold no values, so its probabilities cannot be checked or "
              "used (torch.set_default_device('meta') or a torch.device('meta') block puts there a table given as a "
              "list or array, and moves a given tensor there); build the Table with torch's default device one that "
              "holds data (torch.set_default_device(None) restores the CPU)")


@contextlib.contextmanager
def built_outside_vmap(what: str) -> Iterator[None]:
    """Run a table's checks; where torch refuses their host read under :func:`torch.func.vmap`, raise
    :class:`~hybridpgm.errors.ConfigError` naming ``what`` (``"Table"``, ``"Table.many"``) instead.

    :param str what: the call, as the message names it.
    :raises ConfigError: as above (:func:`~hybridpgm.transform_scope.vmap_reads_refused`)."""
    with vmap_reads_refused(VMAP_REFUSED.format(what=what)):
        yield


def table_problem(probs: torch.Tensor, parents: tuple, prior, atol: float) -> str | None:
    """What is wrong with the table ``probs`` of a node with ``parents`` (``None`` if nothing): a number of dims
    other than ``len(parents) + 1``, a dim of size 0, a negative, NaN or infinite entry, a row whose sum is more than
    :math:`\\max(\\mathrm{atol}, K\\epsilon)` from 1, or a Dirichlet ``prior`` that is not finite and positive or does
    not broadcast to the table.

    :param probs: ``[*parent_cards, K]`` floating-point probabilities.
    :param parents: the parents' names, in the order of the leading dims.
    :param prior: the Dirichlet concentration, or ``None``.
    :param float atol: the row-sum tolerance.
    :returns: the problem, as :meth:`Table.validate <hybridpgm.graphs.cpd.Table.validate>` reports it with the
        node's name, or ``None``."""
    if probs.is_meta:
        return META_TABLE
    if probs.dim() != len(parents) + 1:
        return (f"table of shape {tuple(probs.shape)} needs {len(parents) + 1} dims "
                f"([*parent_cards, cardinality]) for parents {list(parents)}")
    if 0 in probs.shape:
        return (f"table of shape {tuple(probs.shape)} has a dim of size 0; every variable needs at least "
                "one state")
    wrong = ~torch.isfinite(probs) | (probs < 0)
    if wrong.any():
        at = _index(int(wrong.flatten().nonzero()[0]), probs.shape)
        return (f"table has negative, NaN or infinite entries (parents {list(parents)}), first at "
                f"{list(at)}: {probs[at].item():.6g}")
    sums = probs.sum(-1)
    atol = max(atol, torch.finfo(probs.dtype).eps * probs.shape[-1])
    if ((sums - 1).abs() > atol).any():
        bad = int((sums - 1).abs().argmax())
        row = f"row {list(_index(bad, sums.shape))} (the parents' states)" if sums.dim() else "the row"
        return f"table rows must sum to 1; {row} sums to {sums.flatten()[bad].item():.6g}"
    if prior is not None:
        try:
            alpha = torch.as_tensor(prior, dtype=probs.dtype)
            torch.broadcast_shapes(alpha.shape, probs.shape)
        except (TypeError, ValueError, RuntimeError):
            shape = tuple(getattr(prior, "shape", ())) or prior
            return f"Dirichlet prior {shape!r} must be a number or broadcast to the table's {tuple(probs.shape)}"
        if alpha.dim() > probs.dim() or not bool((torch.isfinite(alpha) & (alpha > 0)).all()):
            return ("Dirichlet prior concentration must be positive and finite and broadcast to the table's "
                    f"shape {tuple(probs.shape)}")
    return None


def _index(flat: int, shape) -> tuple[int, ...]:
    """The index of entry ``flat`` of a C-ordered array of ``shape``."""
    out = []
    for size in reversed(tuple(shape)):
        flat, i = divmod(flat, size)
        out.append(i)
    return tuple(reversed(out))


def screened(tables: list, atol: float) -> dict:
    """``(id(probs), parents) -> (probs, atol)`` of the tables of :meth:`Table.many
    <hybridpgm.graphs.cpd.Table.many>` whose every row passes its screen
    (floating-point tensors whose dims match their parents; rows grouped by dtype, device and cardinality, each
    group screened in one pass, the row sums in the tables' dtype)."""
    groups: dict[tuple, list] = {}
    for probs, parents in tables:
        if not isinstance(probs, torch.Tensor) or not torch.is_floating_point(probs):
            continue
        if not isinstance(parents, (str, list, tuple)):
            continue
        parents = (parents,) if isinstance(parents, str) else tuple(parents)  # as CPD holds them
        if not all(isinstance(p, str) for p in parents) or probs.dim() != len(parents) + 1 or 0 in probs.shape \
                or probs.is_meta:  # no values to screen: checked alone, which reports it
            continue
        groups.setdefault((probs.dtype, probs.device, probs.shape[-1]), []).append((probs, parents))
    out = {}
    for (dtype, _, k), members in groups.items():
        rows = torch.cat([p.detach().reshape(-1, k) for p, _ in members])
        eps = torch.finfo(dtype).eps * k
        ok = (rows >= 0).all(-1) & ((rows.sum(-1) - 1).abs() <= max(atol, eps) - eps)
        if bool(ok.all()):
            passed = members
        else:
            counts = torch.tensor([p.numel() // k for p, _ in members], device=rows.device)
            owner = torch.repeat_interleave(torch.arange(len(members), device=rows.device), counts)
            failed = set(owner[~ok].tolist())
            passed = [p for i, p in enumerate(members) if i not in failed]
        out.update(((id(p), parents), (p, atol)) for p, parents in passed)
    return out


def table_shape(cardinality, parent_cards, where: str) -> tuple[int, ...]:
    """``(*parent_cards, cardinality)`` of a table factory, every size checked a positive integer.

    :raises ModelSpecError: naming ``where``'s argument and the value.
    """
    if not isinstance(parent_cards, (list, tuple)) and hasattr(parent_cards, "tolist"):  # a NumPy array, a tensor
        parent_cards = parent_cards.tolist()
    cards = layer_sizes(parent_cards, f"{where} parent_cards", error=ModelSpecError)
    return (*cards, positive_int(cardinality, f"{where} cardinality", error=ModelSpecError))
