"""The interface every CPD of a :class:`~hybridpgm.graphs.BayesNet` node shares: :class:`CPD`.

A CPD names the parents of its node and says its cardinality (``None`` for a continuous node).  It is
*bound* to its node by :meth:`BayesNet.add <hybridpgm.graphs.BayesNet.add>` /
:meth:`BayesNet.check <hybridpgm.graphs.BayesNet.check>`, which tell it the cardinality of every parent;
from then on it splits its parents into discrete ones (the leading dims of its tables, in order) and
continuous ones, and gathers the continuous values its table depends on (continuous parents, then any
context inputs) from a dict name -> ``[N]`` or ``[N, d]`` tensor into one ``[N, sum d]`` feature matrix
(``[*B, sum d]`` when a value has more batch dims, e.g. a continuous parent's ``[S, N]`` or a context input's
``[S, N, d]`` under the particle plate of a vectorized ELBO or of ``pyro.infer.Predictive(..., parallel=True)``:
the CPDs keep every leading batch dim; a context input's features are its last dim).
The kinds of CPD (:class:`~hybridpgm.graphs.cpd.Table`, :class:`~hybridpgm.graphs.cpd.Neural`,
:class:`~hybridpgm.graphs.cpd.LinearGaussian`) live in :mod:`hybridpgm.graphs.cpd`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from hybridpgm.checks import torch_readable
from hybridpgm.errors import DataError, EvidenceError, ModelSpecError
from hybridpgm.train.deferred_checks import check_or_defer

__all__ = ["CPD"]


def _set_plain(module: nn.Module, **values) -> None:
    """Set attributes of ``module`` that are neither parameters, buffers nor submodules (names none of them holds),
    as :meth:`torch.nn.Module.__setattr__` would, without its look-ups of each name among them (a large part of
    building a network of many small tables, :func:`~hybridpgm.graphs.read_bif`)."""
    for name, value in values.items():
        object.__setattr__(module, name, value)


class CPD(nn.Module):
    """Base class: the parents of a node and its cardinality (``None`` if continuous).

    A CPD is *bound* to its node by :meth:`BayesNet.add` / :meth:`BayesNet.check`,
    which tells it the cardinality of every parent (``None`` for continuous ones).
    """

    cardinality: int | None = None
    #: whether an infinite continuous input is refused (a network's: its logits would be NaN), where a linear
    #: Gaussian's mean takes it (the row's density is 0, its log_prob -inf)
    finite_inputs: bool = False
    parents: tuple[str, ...]
    node: str | None
    parent_cards: dict[str, int | None]

    def __init__(self, parents: Sequence[str] = ()):
        super().__init__()
        if isinstance(parents, str):
            parents = [parents]
        try:
            parents = tuple(parents)
        except TypeError:
            raise ModelSpecError(f"parents must be a sequence of node names, got {parents!r}") from None
        bad = [p for p in parents if not isinstance(p, str) or not p]
        if bad:
            raise ModelSpecError(f"parents {list(parents)!r}: every parent must be a non-empty node name "
                                 f"(a str), got {bad!r}")
        if len(set(parents)) != len(parents):
            raise ModelSpecError(f"duplicate parents {list(parents)}")
        _set_plain(self, parents=parents, node=None, parent_cards={})

    # -- binding -----------------------------------------------------------------
    @property
    def discrete_parents(self) -> tuple[str, ...]:
        return tuple(p for p in self.parents if self.parent_cards.get(p) is not None)

    @property
    def continuous_parents(self) -> tuple[str, ...]:
        return tuple(p for p in self.parents if p in self.parent_cards and self.parent_cards[p] is None)

    @property
    def inputs(self) -> tuple[str, ...]:
        """Names of continuous values (continuous parents and context) the table depends on."""
        return self.continuous_parents

    def validate(self, node: str) -> None:
        """Raise :class:`ModelSpecError` naming ``node`` if the CPD's own
        values are malformed (called by :meth:`BayesNet.add`)."""

    def bind(self, node: str, parent_cards: Mapping[str, int | None]) -> None:
        """Check the CPD against its parents' cardinalities; raise :class:`ModelSpecError`."""
        self.node = node
        self.parent_cards = {p: parent_cards[p] for p in self.parents}

    def _has_zero(self) -> bool:
        """Whether :meth:`log_table` can hold ``-inf`` (a structural zero); the kinds of CPD with such zeros
        (:class:`~hybridpgm.graphs.cpd.Table`) say so, for the data checks of :meth:`BayesNet.model`."""
        return False

    def _err(self, msg: str) -> ModelSpecError:
        return ModelSpecError(f"node '{self.node}': {msg}")

    @property
    def is_batched(self) -> bool:
        """Whether the table depends on per-row continuous inputs."""
        return bool(self.inputs)

    def _input_features(self, values: Mapping[str, torch.Tensor] | None) -> torch.Tensor | None:
        """``[*B, F]`` features of the continuous inputs (``None`` without any), continuous parents first.

        A continuous parent holds one value per row, so every dim of its value is a batch dim: ``[N]``, or
        ``[S, N]`` under a particle plate (Pyro's ``Predictive(..., parallel=True)`` adds one), gives one
        feature.  A context input is ``[N]`` (one feature) or ``[*B, N, d]`` (``d`` features, the last dim; ``B``
        the particle dims, e.g. ``[S, N, d]`` for a VAE's latent drawn under a vectorized ELBO's particle plate):
        :meth:`BayesNet.model <hybridpgm.graphs.BayesNet.model>` hands it over in this form, its feature dims
        flattened.  The batch shapes of the inputs broadcast (aligned at the right, the data plate's dim) into
        ``B``; a 0-dim value is one row.

        The ``NaN`` check of each input is a flag handed to
        :func:`~hybridpgm.train.deferred_checks.check_or_defer`: inside a
        :class:`~hybridpgm.train.deferred_checks.checks_read_once` block (:meth:`BayesNet.model
        <hybridpgm.graphs.BayesNet.model>`'s nodes, an exact query's factors, the barren draws of
        :func:`~hybridpgm.infer.exact.posterior_sample`) the flags of all the nodes cost one host read, inside
        :func:`hybridpgm.fit`'s step none; alone, one read per input.

        :raises EvidenceError: an input that is absent or holds NaN, or inputs whose batch shapes do not
            broadcast (naming the node and the shapes).
        :raises DataError: where :attr:`finite_inputs` (a network's CPD), an input that holds :math:`\\pm\\infty`,
            naming the input, the node and the first such entry (its flag joins the NaN check's read).
        """
        if not self.inputs:
            return None
        parents = set(self.continuous_parents)
        cols = []
        for name in self.inputs:
            if values is None or name not in values:
                raise EvidenceError(f"node '{self.node}' needs the continuous input '{name}'")
            v = torch.as_tensor(torch_readable(values[name]))
            if torch.is_floating_point(v):  # its flag joins the caller's one read (or fit's step's)
                check_or_defer(~torch.isnan(v).any(), self._missing_input(name), "a continuous input has NaN",
                               EvidenceError)
                if self.finite_inputs:  # a second flag, joining the same read
                    check_or_defer(~torch.isinf(v).any(), self._infinite_input(name, v),
                                   "a continuous input of a network is infinite", DataError)
            if v.dim() == 0:
                v = v.reshape(1, 1)
            elif name in parents or v.dim() == 1:
                v = v[..., None]
            cols.append(v)
        if len(cols) == 1:
            return cols[0]
        try:
            batch = torch.broadcast_shapes(*(c.shape[:-1] for c in cols))
        except RuntimeError:
            shapes = {name: tuple(c.shape[:-1]) for name, c in zip(self.inputs, cols)}
            raise EvidenceError(f"node '{self.node}': the batch shapes of its continuous inputs {shapes} do not "
                                "broadcast") from None
        return torch.cat([c.to(cols[0].dtype).expand(*batch, c.shape[-1]) for c in cols], dim=-1)

    def _missing_input(self, name: str):
        """The error of a continuous input ``name`` that holds NaN (built only on failure)."""
        def error() -> EvidenceError:
            return EvidenceError(f"continuous input '{name}' of node '{self.node}' has missing (NaN) values")
        return error

    def _infinite_input(self, name: str, value: torch.Tensor):
        """The error of a continuous input ``name`` of a network that holds :math:`\\pm\\infty` (built only on
        failure, when it reads ``value`` to name the first such entry)."""
        def error() -> DataError:
            bad = torch.isinf(value)
            at = bad.nonzero()[0].tolist()
            first = float(value[tuple(at)])
            return DataError(f"continuous input '{name}' of node '{self.node}' holds {first} at index {at} "
                             f"({int(bad.sum())} of {value.numel()} entries infinite): its network's logits "
                             f"would be NaN; clip or drop such rows")
        return error

    def select(self, table: torch.Tensor, values: Mapping[str, torch.Tensor], event_dims: int = 0,
               batched: bool | None = None) -> torch.Tensor:
        """Index a ``[(*B,) *discrete_parent_cards, *event]`` table by the discrete parents' ``values``.

        ``B`` (present when the table is batched, by default when the CPD has continuous inputs) is the batch
        shape of the continuous inputs, ``[N]`` or e.g. ``[S, N]`` under the particle plate of
        ``Predictive(..., parallel=True)``; it broadcasts with the parents' values (enumeration dims included),
        both aligned at the right (the data plate's dim), so the result is
        ``[*broadcast(B, parents' shapes), *event]``.
        """
        batched = self.is_batched if batched is None else batched
        idx = tuple(values[p] for p in self.discrete_parents)
        if batched and idx:  # row r of B pairs with row r of the parents' values: index B by broadcast aranges
            nb = table.dim() - len(idx) - event_dims
            idx = tuple(torch.arange(size, device=table.device).reshape(size, *([1] * (nb - 1 - i)))
                        for i, size in enumerate(table.shape[:nb])) + idx
        return table[idx] if idx else table

    def extra_repr(self) -> str:
        return f"node={self.node!r}, parents={list(self.parents)}, cardinality={self.cardinality}"
