"""The neural CPD :class:`~hybridpgm.graphs.cpd.Neural`: a discrete node whose logits a network computes,

.. math:: \\mathrm{logits} = f_\\phi([\\mathrm{onehot}(\\mathrm{pa}_d), \\mathrm{pa}_c, u]),

from the one-hot discrete parents, the continuous parents and optional continuous *context* inputs :math:`u`
that are not nodes of the graph.  Import it from :mod:`hybridpgm.graphs.cpd` (``cpd.Neural``), the name under
which it is documented and saved in model files.
"""

from __future__ import annotations

import itertools
from typing import Mapping, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from hybridpgm.checks import positive_int
from hybridpgm.errors import DataError, ModelSpecError
from hybridpgm.graphs.cpd_base import CPD
from hybridpgm.module_modes import keeping_modes
from hybridpgm.network_checks import check_network, check_output
from hybridpgm.precision_scope import exact_precision
from hybridpgm.rng_scope import restoring_global_rngs
from hybridpgm.serialization import serializable

__all__ = ["Neural"]


@serializable
class Neural(CPD):
    """A discrete node whose logits come from a network.

    The input of ``net`` is the concatenation (in this order) of the one-hot
    discrete parents, the continuous parents and the ``context`` inputs; its
    output is ``[..., cardinality]`` logits.

    :param nn.Module net: maps ``[M, in_features]`` to ``[M, cardinality]``.
    :param parents: names of the parents (discrete or continuous nodes).
    :param int cardinality: number of states of the node.
    :param context: names of continuous inputs that are not nodes (supplied in
        the data / evidence dict as ``[N]`` or ``[N, d]`` tensors).
    :raises ModelSpecError: ``net`` is not an ``nn.Module`` (a function, a
        :func:`functools.partial`), ``cardinality`` is not a positive integer,
        or the context names are not distinct strings; when the node is added,
        a network whose output is not one ``[M, cardinality]`` tensor (a
        tuple, a wrong shape; checked again on every call when it has context
        inputs, whose sizes are only known then).

    The network may hold no parameters (``nn.Identity``, fixed weights kept as
    buffers): its input is then built in the dtype of its floating buffers,
    else of its continuous inputs, else torch's default dtype.  A lazy network
    (``nn.LazyLinear``) is initialised by the dry run when the node is added;
    with ``context`` inputs it is not run before data comes, and
    :func:`hybridpgm.fit` asks to run it once on a batch first.  A continuous input (parent or context) that
    holds :math:`\\pm\\infty` raises :class:`~hybridpgm.errors.DataError` naming the input and the node (the
    logits would be NaN), as one holding NaN raises :class:`~hybridpgm.errors.EvidenceError` (a missing value).
    """

    # the module named in saved model files and pickles, and where the class is documented: it moved out of
    # :mod:`hybridpgm.graphs.cpd`, which re-exports it, so files saved before the split load unchanged
    __module__ = "hybridpgm.graphs.cpd"
    finite_inputs = True  # an infinite input is a DataError naming it, not NaN logits (torch's raw ValueError)

    def __init__(self, net: nn.Module, parents: Sequence[str] = (), cardinality: int = 2, *,
                 context: Sequence[str] = ()):
        super().__init__(parents)
        cardinality = positive_int(cardinality, "Neural cardinality", error=ModelSpecError)
        self.net = check_network(net, "Neural net")
        self.cardinality = cardinality
        self.context = (context,) if isinstance(context, str) else tuple(context)
        if any(not isinstance(u, str) or not u for u in self.context) or len(set(self.context)) != len(self.context):
            raise ModelSpecError(f"Neural context must be distinct non-empty names, got {list(self.context)!r}")

    @property
    def inputs(self) -> tuple[str, ...]:
        return self.continuous_parents + self.context

    def bind(self, node, parent_cards):
        super().bind(node, parent_cards)
        # a dry run on one input row checks the net's sizes now, not at training time
        if self.context:
            return  # context sizes unknown until data arrives
        cards = [c for c in self.parent_cards.values() if c is not None]
        width = sum(cards) + len(self.continuous_parents)
        dtype, device = self._dtype_device(None)
        x = torch.zeros(1, width, dtype=dtype, device=device)
        try:
            # each layer's own mode after (a frozen one too); a layer drawing in eval mode leaves the caller's streams
            with keeping_modes(self.net), torch.no_grad(), restoring_global_rngs([x.device], numpy_python=False):
                self.net.eval()
                out = self.net(x)
        except Exception as e:  # noqa: BLE001 - any failure means the net does not fit
            raise self._err(f"the network fails on an input of {width} features "
                            f"(one-hot parents {list(self.discrete_parents)} + continuous "
                            f"{list(self.continuous_parents)}): {e}") from e
        self._check_output(out, 1)

    def _dtype_device(self, u: torch.Tensor | None) -> tuple[torch.dtype, torch.device | None]:
        """The floating dtype and the device of the network's input (its one-hot parents, ``[C, sum cards]``).

        Those of the network's first floating parameter, else of its first floating buffer (a fixed network
        holding its weights as buffers), the tensor :func:`~hybridpgm.infer.bn_dtypes.check_one_table_dtype`
        reads as the CPD's dtype.  A network with neither (``nn.Identity``, a function of its input alone)
        computes in the dtype of its continuous inputs ``u`` (``[*B, F]``, in the network's dtype: see
        :meth:`BayesNet.columns <hybridpgm.graphs.BayesNet.columns>`) when it has some, else in torch's default
        dtype, on ``u``'s device (else the default one).  Never an integer dtype: the one-hot rows are
        ``int64`` until cast here."""
        ref = next((t for t in self.net.parameters() if t.is_floating_point()), None)
        if ref is None:
            ref = next((t for t in self.net.buffers() if t.is_floating_point()), None)
        if ref is not None:
            return ref.dtype, ref.device
        if u is not None and u.is_floating_point():
            return u.dtype, u.device
        return torch.get_default_dtype(), None if u is None else u.device

    def _check_output(self, out: torch.Tensor, rows: int) -> None:
        """Type and shape check only (no device read): the net must give one ``[rows, cardinality]`` tensor."""
        check_output(out, f"node '{self.node}': the network")
        if tuple(out.shape) != (rows, self.cardinality):
            raise self._err(f"the network outputs {out.shape[-1] if out.dim() else 0} logits (shape "
                            f"{tuple(out.shape)} for {rows} input row(s)); expected [{rows}, {self.cardinality}] "
                            f"for cardinality {self.cardinality}")

    def log_table(self, values: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """``[(*B,) *discrete_parent_cards, cardinality]`` log-probabilities.

        The leading batch dims ``B`` are present when the CPD has continuous parents or context: ``[N]`` for
        values with one entry per row, every batch dim of the inputs otherwise (``[S, N]`` for continuous
        parents under a particle plate); see :meth:`CPD._input_features`.

        :raises DataError: the network fails on the inputs (a context input of the wrong width).
        """
        cards = [self.parent_cards[p] for p in self.discrete_parents]
        u = self._input_features(values)
        dtype, device = self._dtype_device(u)
        configs = torch.tensor(list(itertools.product(*[range(c) for c in cards])), dtype=torch.long,
                               device=device).reshape(-1, len(cards)) if cards else \
            torch.zeros(1, 0, dtype=torch.long, device=device)
        onehot = [F.one_hot(configs[:, i], c).to(dtype=dtype, device=device) for i, c in enumerate(cards)]
        x = torch.cat(onehot, -1) if onehot else torch.zeros(configs.shape[0], 0, dtype=dtype, device=device)
        if u is None:
            out = self.net(x)
            self._check_output(out, x.shape[0])
            return _log_normalised(out).reshape(*cards, self.cardinality)
        batch = u.shape[:-1]
        u = u.reshape(-1, u.shape[-1])
        n = u.shape[0]
        x = torch.cat([x.expand(n, *x.shape), u.to(x)[:, None, :].expand(n, x.shape[0], u.shape[-1])], -1)
        try:
            out = self.net(x.reshape(-1, x.shape[-1]))
        except RuntimeError as e:  # a context input of the wrong width: name what the input is made of
            if isinstance(e, torch.OutOfMemoryError):  # not the data's fault: a caller's retry catches it as it is
                raise
            raise DataError(f"node '{self.node}': the network fails on inputs of {x.shape[-1]} features "
                            f"({sum(cards)} one-hot for the parents {list(self.discrete_parents)}, {u.shape[-1]} "
                            f"for the continuous parents and context {list(self.continuous_parents)} + "
                            f"{list(self.context)}): {e}") from e
        self._check_output(out, x.shape[0] * x.shape[1])
        return _log_normalised(out).reshape(*batch, *cards, self.cardinality)


def _log_normalised(logits: torch.Tensor) -> torch.Tensor:
    """``logits.log_softmax(-1)``, in at least float32 under autocast (:class:`~hybridpgm.precision_scope.
    exact_precision`): CPU autocast keeps a bfloat16 network output's ``log_softmax`` in bfloat16 (CUDA's runs it
    in float32), so the table's normalisation, and every exact contraction over it, would lose nats."""
    with exact_precision(logits) as (logits,):
        return logits.log_softmax(-1)

