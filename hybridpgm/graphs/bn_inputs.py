"""The context inputs of a :class:`~hybridpgm.graphs.BayesNet`'s neural CPDs, as its model and queries read them.

:class:`BayesNetInputs` is a mixin of :class:`~hybridpgm.graphs.bn_data.BayesNetData`:
:meth:`~BayesNetInputs._inputs` turns what a user passes as ``context=`` (``inputs=`` before) into a dict name ->
``[N]`` or ``[*B, N, F]`` tensor (particle dims ``B`` in front, features flat), :meth:`~BayesNetInputs._rows` reads
the rows of the model's plate from the data and the inputs, and :meth:`~BayesNetInputs._with_inputs` joins
``context=`` to the evidence of the exact queries (``posterior``, ``log_evidence``, ``map``), which read the context
inputs among the evidence.
"""

from __future__ import annotations

import numpy as np
import torch

from hybridpgm.errors import DataError, EvidenceError
from hybridpgm.graphs.bn_context_dims import could_be_batch_dims, expand_hint, one_row_or_rows_first
from hybridpgm.graphs.bn_values import _continuous, context_batch_features, outer_batch_dims
from hybridpgm.train.deferred_checks import read_checks_once

__all__ = ["BayesNetInputs"]


class BayesNetInputs:
    """Mixin of :class:`~hybridpgm.graphs.bn_data.BayesNetData`: the context inputs of the neural CPDs."""

    def _input_dict(self, inputs) -> dict:
        """``inputs`` (not ``None``) as a dict name -> value, as given: one tensor or array is the network's one
        context input.

        :raises DataError: inputs that are neither a dict of known context names nor one tensor or array for the
            single one (naming the network's context inputs)."""
        names = self.input_names
        if torch.is_tensor(inputs) or isinstance(inputs, np.ndarray):
            if len(names) != 1:
                raise DataError(f"pass inputs as a dict; the network has context inputs {names}")
            return {names[0]: inputs}
        if not hasattr(inputs, "items"):
            raise DataError(f"context inputs must be a tensor or array (a network's one context input) or a dict "
                            f"name -> tensor, got {type(inputs).__name__}; the network's context inputs: {names}")
        unknown = set(inputs) - set(names)
        if unknown:
            raise DataError(f"unknown context input(s) {sorted(unknown, key=str)}; expected {names}")
        return dict(inputs.items())

    def _with_inputs(self, evidence, inputs, query: str):
        """The evidence of the exact query ``query`` (``"log_evidence"``, ...) with the context ``inputs`` joined to
        it: the queries read context inputs among the evidence, as :meth:`~hybridpgm.graphs.BayesNet.model` and
        :meth:`~hybridpgm.graphs.BayesNet.log_prob` read ``context=``.  ``evidence`` as given where ``inputs`` is
        ``None``.

        :raises DataError: ``inputs`` :meth:`_input_dict` refuses.
        :raises EvidenceError: a context input given both in the evidence and in ``context=`` (naming it), or evidence
            that is not a mapping (:func:`~hybridpgm.infer.bn_evidence.evidence_mapping`)."""
        if inputs is None:
            return evidence
        from hybridpgm.infer.bn_evidence import evidence_mapping

        inputs = self._input_dict(inputs)
        evidence = evidence_mapping(self, evidence)
        both = sorted((k for k in inputs if k in evidence), key=str)
        if both:
            raise EvidenceError(f"BayesNet.{query}: the context input(s) {both} are given both in the evidence and "
                                f"in context=; give each one once (context={{...}}, as in log_prob and model)")
        return {**evidence, **inputs}

    @read_checks_once  # the inputs' integer ranges: one host read
    def _inputs(self, inputs, rows: int | None = None) -> dict:
        """The context inputs as a dict name -> ``[N]`` or ``[*B, N, F]`` tensor in the network's dtype.

        A context input is ``batch_shape + feature_shape``: its leading dims are the batch dims the enclosing Pyro
        program claims left of the data plate (:func:`~hybridpgm.graphs.bn_values.outer_batch_dims`: the particle plate
        of a vectorized ELBO, IWAE or ``Predictive(..., parallel=True)``), then the row dim ``N``; the trailing dims are
        features, flattened to ``F`` (:func:`~hybridpgm.graphs.bn_values.context_batch_features`).  The batch dims
        broadcast with those of the continuous parents in the CPDs.  Where the data's row count ``rows`` is known, that
        reading is taken only when the dim it puts at the data plate holds ``rows`` entries; else the input is
        ``[N, d...]`` (its first dim the rows, as outside any plate): an image ``[N, d1, d2]`` under an enumeration or a
        plate of the caller's keeps its ``d1 * d2`` features.  Where that reading puts one row at the data plate
        (``[K, 1, F]``: one row per value of an enumerated site) the network does not broadcast it over ``rows`` (an
        input of ``[K, 1, F]`` for ``K != rows`` is refused by :meth:`_rows`); where ``K == rows`` the shape alone
        cannot tell it from ``rows`` rows of features ``[N, 1, d...]`` (a single-channel image ``[N, 1, H, W]``).
        The sizes of the enclosing dims tell them apart
        (:func:`~hybridpgm.graphs.bn_context_dims.could_be_batch_dims`): where the dim its first entry would take
        cannot hold ``rows`` entries (an enumerated site of another number of values, a particle plate of another
        size), the input is rows first; where it may (``K == rows``), or its sizes cannot be told, the input is
        refused: read rows first it would score row ``n`` with the context of value ``n``.

        :raises DataError: inputs that are not a dict of known context names (or one tensor or array for the
            single one), values :func:`~hybridpgm.graphs.bn_values._continuous` refuses, or an input read as one
            row where ``rows`` are more, whose first dim holds ``rows`` and whose enclosing dim may hold them too
            (naming it, its shape and both fixes).
        """
        if inputs is None:
            return {}
        inputs = self._input_dict(inputs)
        dtype, device, outer = self.dtype, self.device, outer_batch_dims()
        out = {}
        for k, t in inputs.items():
            t = _continuous(t, dtype, device, f"context input '{k}'")
            batched = context_batch_features(t, outer)
            if rows is not None and t.dim() > 2 and batched.shape[-2] != rows and t.shape[0] == rows:
                # one row under the enclosing dims where they may hold its leading dims, or rows first: not guessed
                if batched.shape[-2] == 1 and could_be_batch_dims(batched.shape[:-2]):
                    raise DataError(one_row_or_rows_first(k, t, batched, rows))
                batched = context_batch_features(t, 0)  # [N, d...]: the rows first, the features flattened
            out[k] = batched
        return out

    def _rows(self, cols: dict, ctx: dict, num_samples: int | None) -> int:
        """The number of rows ``N`` of :meth:`model`'s plate: that of the data and of the context inputs (a 0-d
        input broadcasts), else ``num_samples`` (1 by default).  A context input's rows are read at the data
        plate's dim, the last of its batch dims (``[N]``, or ``[*B, N, F]`` as :meth:`_inputs` gives it): particle
        dims (an ``[S, N, d]`` latent of a vectorized ELBO) are not rows.

        :raises DataError: context inputs with another number of rows than the data or each other (all named); for
            an input of one row (``[K, 1, F]`` under enumeration) the message gives the ``expand`` to the rows.
        """
        sizes = {f"data ({len(cols)} column{'s' if len(cols) != 1 else ''})": int(t.shape[0])
                 for t in list(cols.values())[:1]}
        sizes.update({f"context input '{k}'": int(t.shape[-2 if t.dim() > 1 else 0]) for k, t in ctx.items()
                      if t.dim() > 0})  # [N] or [*B, N, F] (_inputs): the rows at the data plate's dim
        if len(set(sizes.values())) > 1:
            counts = ", ".join(f"{what}: {n}" for what, n in sizes.items())
            most = max(sizes.values())
            hints = "".join(expand_hint(f"context input '{k}'", t.shape, most,
                                        f"bn.model(data, context={{{k!r}: EXPR}})", k if k.isidentifier() else "x")
                            for k, t in ctx.items() if t.dim() > 1)
            raise DataError(f"BayesNet.model: the data and the context inputs must have one row each per example, "
                            f"got different row counts ({counts}){hints}")
        return next(iter(sizes.values()), 1 if num_samples is None else num_samples)

