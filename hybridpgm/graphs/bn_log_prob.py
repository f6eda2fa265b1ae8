"""The joint log-probability of complete rows of a :class:`~hybridpgm.graphs.BayesNet` (a mixin of the network:
:class:`BayesNetLogProb`),

.. math:: \\log p(x) = \\sum_v \\log p(x_v \\mid x_{\\mathrm{pa}(v)}),

scored by tracing the network's Pyro :meth:`~hybridpgm.graphs.BayesNet.model` on the rows.  The missing-value
pattern of the rows, read once here, is handed to the model it traces (:meth:`BayesNetLogProb._observed_read`, a
context variable: another thread's call neither sees it nor restores it), so a call pays one host read of it.
"""

from __future__ import annotations

import contextlib
import contextvars

import numpy as np
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask

from hybridpgm.errors import DataError
from hybridpgm.export_refusal import export_refused
from hybridpgm.graphs.bn_examples import entries, one_row, rows_of_no_node, shared_values, single_example
from hybridpgm.handler_scope import isolated_from_handlers
from hybridpgm.keyword_alias import renamed_keyword
from hybridpgm.param_store_scope import own_param_store
from hybridpgm.transform_scope import vmap_reads_refused

__all__ = ["BayesNetLogProb"]

#: (model, columns, their pattern) that log_prob hands to the model it traces (BayesNetLogProb._observed_read)
_OBSERVED_GIVEN: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("hybridpgm_bn_observed", default=None)


class BayesNetLogProb:
    """Mixin of :class:`~hybridpgm.graphs.BayesNet`: :meth:`log_prob` (and the pattern it hands to the model)."""

    @export_refused("BayesNet.log_prob")
    @renamed_keyword(inputs="context")
    @isolated_from_handlers
    @own_param_store
    def log_prob(self, values, context=None) -> torch.Tensor:
        """``[N]`` joint :math:`\\log p(x)` of complete rows (dict or ``[N, len(nodes)]`` tensor); a 0-d result for
        a single example, a mapping whose every value is 0-d (a 0-d tensor, a number or a state name; a pandas
        ``Series``, one row of a data frame, too), equal to the answer for that one row, as :meth:`MarkovNet.log_prob
        <hybridpgm.graphs.MarkovNet.log_prob>` scores one and as the queries answer 0-d evidence without a row dim.
        A single example's ``context`` inputs are that one row's features (a row dim is put in front: ``[d]``,
        ``[1, d]`` and, for a single-feature input, a 0-d value all describe one row).  Beside ``[N]`` columns a
        0-d value is that node's value in every row, as in the queries' evidence (``{"a": 1, "b": tensor([0, 1])}``
        scores two rows, as :meth:`~hybridpgm.graphs.BayesNet.log_evidence` of them does).  A NumPy scalar is data of
        its dtype, read as a one-entry array of it (a pandas ``Series`` of a NumPy dtype gives its entries so), and
        a Python number as a one-entry list: ``np.float64(0.1)`` for a float32 network's continuous node is refused
        as a float64 column is, ``0.1`` is built in the network's dtype as a list of numbers is.  A network without
        nodes scores every row 0 (:math:`\\log 1`), in its dtype: ``[N]`` zeros for ``[N, 0]`` data (a tensor or
        array, a list of ``N`` empty rows, a data frame of ``N`` rows), a 0-d zero for a mapping without entries
        or ``None``, as :meth:`~hybridpgm.graphs.BayesNet.log_evidence` answers ``{}`` there.  A row with an infinite
        continuous value scores ``-inf`` (its density is 0: a Gaussian of finite parameters vanishes there), where a
        child's mean at an infinite parent would give ``inf - inf``; :meth:`~hybridpgm.graphs.BayesNet.log_evidence`
        answers ``-inf`` for it too.

        :param values: complete rows in any form of :meth:`columns` (every node present, no missing entry).
        :param context: the context inputs of neural CPDs, as in :meth:`model`: dict name -> ``[N, ...]`` (or one
            tensor if there is a single context name; ``inputs=``, its name before, is accepted for one release with
            a :class:`FutureWarning`).
        :raises DataError: a missing node or entry, columns of several lengths (``[N]`` beside ``[M]``), a column of
            more than one dim (``[N, 1]``, naming the node and the shape), or data :meth:`model` refuses (continuous
            data of a floating dtype the network's would round among them, a NumPy ``float64`` scalar too).
        :raises ConfigError: under :func:`torch.func.vmap` over the rows or the CPDs' weights, which the checks
            of the data read on the host: pass the rows as one batch instead.
        """
        with vmap_reads_refused(_VMAP_LOG_PROB):
            return self._log_prob(values, context)

    def _log_prob(self, values, inputs) -> torch.Tensor:
        if not self._cpd_map:  # no node, nothing to trace: the rows' shape is read from the data themselves
            self.columns(values)  # refuses a column or an array shape of no such network
            self._inputs(inputs)  # refuses any input: the network has none
            return torch.zeros(rows_of_no_node(values), dtype=self.dtype, device=self.device)
        single = single_example(values)
        if single:
            values = {v: one_row(x) for v, x in entries(values)}
            if hasattr(inputs, "items"):  # input name -> that row's features
                inputs = {k: one_row(x) for k, x in inputs.items()}
            elif torch.is_tensor(inputs) or isinstance(inputs, np.ndarray):
                inputs = one_row(inputs)  # anything else goes on as given, to be read (or refused) as a batch's
        else:
            values = shared_values(values)
        cols = self.columns(values)
        missing = [v for v in self.nodes if v not in cols]
        if missing:
            raise DataError(f"log_prob needs every node; missing {missing}")
        observed = self._observed_columns(cols)  # the one read of the pattern: the model below reuses it
        incomplete = [v for v, (_, seen) in observed.items() if seen is not None]
        if incomplete:
            raise DataError(f"log_prob scores complete rows; columns {incomplete} have missing entries "
                            "(NaN or -1): log_evidence sums them out")
        rows = int(next(iter(cols.values())).shape[0])
        if rows == 0:  # no row to score (a Pyro plate cannot be empty): [0], as log_evidence and MarkovNet answer
            self._rows(cols, self._inputs(inputs, rows), None)  # refuses context inputs of another row count
            return torch.zeros(0, dtype=self.dtype, device=self.device)
        with self._scoring(), self._observed_read(cols, observed):  # a row of probability 0 scores -inf
            tr = poutine.trace(self.model).get_trace(cols, None, inputs)
        # each site's log-density as Pyro's compute_log_prob takes it, without its per-site NaN/inf warnings (two
        # host reads per node): the values were checked, and a row with an infinite continuous value is -inf below
        out = sum(scale_and_mask(site["fn"].log_prob(site["value"]), site["scale"], site["mask"])
                  for site in (tr.nodes[v] for v in self.nodes))
        infinite = [cols[v].isinf() for v in self.nodes if self._cpd_map[v].cardinality is None]
        if infinite:  # density 0 there (a child's mean at an infinite parent would give inf - inf = NaN)
            out = torch.where(torch.stack(infinite).any(0), out.new_tensor(-float("inf")), out)
        return out[..., 0] if single else out

    @contextlib.contextmanager
    def _observed_read(self, cols: dict, observed: dict):
        """Within it, :meth:`model` of the very tensors ``cols`` takes ``observed`` (their
        :meth:`_observed_columns`, read once by :meth:`_log_prob`) instead of reading the pattern again (in a context
        variable, not on the instance: another thread's call neither sees it nor restores it after its own)."""
        reset = _OBSERVED_GIVEN.set((self, cols, observed))
        try:
            yield
        finally:
            _OBSERVED_GIVEN.reset(reset)

    def _observed_of(self, cols: dict) -> dict:
        """:meth:`_observed_columns` of ``cols``; the pattern :meth:`_observed_read` hands over where ``cols`` holds
        the very tensors it was read from (no second host read), else read here."""
        given = _OBSERVED_GIVEN.get()
        if given is not None and given[0] is self and given[1].keys() == cols.keys() \
                and all(given[1][v] is t for v, t in cols.items()):
            return given[2]
        return self._observed_columns(cols)


#: the error of :meth:`BayesNetLogProb.log_prob` under ``vmap`` (:func:`~hybridpgm.transform_scope.vmap_reads_refused`)
_VMAP_LOG_PROB = ("BayesNet.log_prob does not support torch.func.vmap: it reads the rows (their states' checks) and "
                  "the tables on the host, which vmap's batched tensors cannot give.  It is batched already: pass the "
                  "rows as one batch, {node: tensor of shape [N]} or an [N, len(nodes)] tensor, and it scores all N "
                  "at once (an [N] result); for several weight sets, loop over them")
