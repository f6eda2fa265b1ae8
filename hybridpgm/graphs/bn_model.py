"""The Pyro view of a :class:`~hybridpgm.graphs.BayesNet`: :meth:`~BayesNetModel.model`, its empty guide,
ancestral sampling and the joint log-probability of complete rows.

:class:`BayesNetModel` is a mixin of :class:`~hybridpgm.graphs.BayesNet`.  The model is a Pyro program over a
data plate ``"data"`` in which every missing discrete entry is a latent site marked for parallel enumeration,
so :class:`pyro.infer.TraceEnum_ELBO` with the empty guide is the exact negative log-likelihood of the observed
entries,

.. math:: -\\log p(x_{\\rm obs}) = -\\log \\sum_{x_{\\rm mis}} \\prod_v p(x_v \\mid x_{\\mathrm{pa}(v)}),

and gradient steps on it learn the CPDs from incomplete data.  It relies on the declaration
(``cpds``, ``nodes``, ``check``) and on the data view :class:`~hybridpgm.graphs.bn_data.BayesNetData`.
"""

from __future__ import annotations

import contextlib
import contextvars

import numpy as np
import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.distributions.util import scale_and_mask
from pyro.nn import pyro_method

from hybridpgm.checks import generator_or_none, sample_count, site_prefix
from hybridpgm.errors import DataError
from hybridpgm.graphs.bn_barren_rows import BarrenRows
from hybridpgm.graphs.bn_examples import entries, one_row, rows_of_no_node, shared_values, single_example
from hybridpgm.graphs.bn_plate import DataPlate, prior_weight
from hybridpgm.graphs.cpd_gaussian import LinearGaussian, check_gaussian_parameters
from hybridpgm.handler_scope import isolated_from_handlers
from hybridpgm.module_registration import registers_once
from hybridpgm.param_store_scope import own_param_store
from hybridpgm.train.deferred_checks import checks_read_once
from hybridpgm.train.update_scope import weighted_per_update
from hybridpgm.transform_scope import vmap_reads_refused

__all__ = ["BayesNetModel"]

#: (model, columns, their pattern) that log_prob hands to the model it traces (BayesNetModel._observed_read)
_OBSERVED_GIVEN: contextvars.ContextVar[tuple | None] = contextvars.ContextVar("hybridpgm_bn_observed", default=None)


class BayesNetModel:
    """Mixin of :class:`~hybridpgm.graphs.BayesNet`: its Pyro model and guide, sampling and scoring."""

    @pyro_method
    @registers_once("cpds")  # registered on entry, not at each look-up of a node (quadratic in the nodes)
    def model(self, data=None, mask=None, inputs=None, *, num_samples: int | None = None,
              num_data: int | None = None, prefix: str = "") -> dict:
        """Pyro model over a data plate ``"data"`` (``max_plate_nesting=1``).

        Observed entries are conditioned on; missing discrete entries (``NaN``,
        ``-1``, ``mask`` false, or absent columns) are latent sites marked for
        parallel enumeration (``"<node>"`` when the whole column is missing, else
        ``"<node>_unobserved"`` next to ``"<node>_observed"``, as with Pyro's
        ``obs_mask``); continuous entries must be observed when data is given.
        Tables with a Dirichlet ``prior`` add
        :math:`\\tfrac{B}{N_{\\rm data}} \\log \\mathrm{Dir}(\\theta; \\alpha)` so the
        loss per example estimates the full-data MAP objective; without ``num_data`` the batch stands for the
        data set (weight 1; under :func:`hybridpgm.fit` a micro-batch's share of the update, so ``accumulate``
        and ranks change nothing).  A row's enumerated sites where the node and all its descendants are missing
        (barren: they sum to 1) give exactly 0 gradient, not rounding noise (:mod:`~hybridpgm.graphs.bn_barren_rows`),
        for two rows or more: one row's returned values may be read by a site of the caller's outside any plate.

        **Inside a plate of the caller's.**  The rows are the plate at dim ``-1``.  Called inside a caller's
        ``pyro.plate`` at dim ``-1`` (``with pyro.plate("data", N): z = bn.model(...)``), the model joins that plate
        rather than opening its own: its sites are that plate's, so per-row sites of the caller's that read its
        values (a neural decoder under a network prior) or that its context inputs read (an enumerated per-row
        site) are in one plate with them, and enumeration sums each row's latents jointly.  In a sibling plate of
        another name at dim ``-1`` they would be independent of the network's rows to Pyro, a wrong loss.  That
        plate's size is the rows (``num_samples`` by default; data, inputs or ``num_samples`` of another count are
        refused); its subsample scale ``N / B`` weighs the network's rows as the caller's; the priors are spread
        over the rows, :math:`1/B` of the term each, and a subsampled plate's ``N`` is ``num_data`` where none
        is given; no row is barren there (the caller's sites may read any node: every node keeps its gradient).
        A plate over something else (groups, particles) takes ``dim=-2``: a batch dim of every row
        (:mod:`~hybridpgm.graphs.bn_plate`).

        **Only parameters train.**  A :class:`~hybridpgm.graphs.cpd.Table` is learnable by default, but a network
        read by :func:`~hybridpgm.graphs.read_bif`, :func:`~hybridpgm.graphs.load_network` or
        :meth:`from_pgmpy` holds fixed tables (buffers) unless read with ``learnable=True``.  Training such a
        network alone with plain :class:`pyro.infer.SVI` does nothing, silently: each ``svi.step`` returns the
        loss and updates the parameters the step's trace saw, none (Pyro does not warn of an empty set);
        :func:`hybridpgm.fit` stops before its first step with :class:`~hybridpgm.errors.ConfigError`.  This
        model does not warn either: a network with fixed tables is a legitimate part of a program that does
        train (a fixed prior under a learned guide or decoder) and of evaluation (``Predictive``,
        ``infer_discrete``, ``TraceEnum_ELBO().loss``), and from inside the program those calls cannot be told
        from a training step with nothing to train.  ``list(bn.parameters())`` is empty for such a network.

        :param data: see :meth:`columns`; ``None`` to sample ``num_samples`` rows.
            For :func:`hybridpgm.fit` (which rejects NaN) pass integer data with
            ``-1`` for missing entries, or the pair ``(values, mask)`` of
            :meth:`split_missing`.
        :param mask: ``[N, len(nodes)]`` bool (or 0/1 integers; or a dict node -> ``[N]``), true where
            observed; see :meth:`columns`.
        :param inputs: context inputs: dict name -> ``[N, ...]`` (or one tensor if
            there is a single context name).
        :param int num_samples: the rows ``N`` of the plate when neither ``data`` nor ``inputs`` have rows
            (:meth:`sample` passes it with ``data=None``); ``None`` (the default): 1, or the size of the caller's
            plate at dim ``-1`` inside one; 0 is refused
            (:class:`DataError`).  Ignored where the data or the context inputs give the rows.  ``MCMC.run`` keeps
            a keyword of this name for itself (``mcmc.run(None, num_samples=2)`` is Pyro's ``TypeError``: got
            multiple values for argument 'num_samples'): bind it to the model instead,
            ``NUTS(poutine.condition(functools.partial(bn.model, num_samples=2), data=...))``, then
            ``mcmc.run(None)``.
        :param int num_data: size of the full data set (for the prior weight), at least the batch's rows;
            ``None`` (the default): none given, or inside a caller's subsampled plate that plate's size.
        :param str prefix: prepended to the name of every sample site and of its own plate (``prefix + "data"``,
            ``prefix + "<node>"``, ...), so that two networks, even with the same node names, can share one Pyro
            program (see :doc:`/pyro_native`); ``""`` (the default) keeps the names above.  The parameters'
            names in Pyro's param store come from the network's ``name`` (see :class:`BayesNet`), not from it.
        :returns: dict node -> ``[N]`` values (with enumeration dims when enumerated), keyed by node name.
        :raises ConfigError: a ``num_data`` that is not a positive integer, or a ``prefix`` that is not a string.
        :raises DataError: data of 0 rows, context inputs of another number of rows than the data (a context read as one
            row under an enumeration, ``[K, 1, F]``, beside more rows included), rows of another count than a caller's
            plate at dim ``-1`` (naming it), a ``num_data`` smaller than the batch, a mask :meth:`columns` refuses, a
            row whose observed state has probability 0 given its parents' observed values and, under enumeration,
            whatever the values of its missing parents (a structural zero; checked under Pyro's validation, naming the
            rows and the nodes; rows that an enclosing :func:`pyro.poutine.mask` masks out are not judged), a value
            outside a node's states, a continuous node with a missing entry, or continuous data (a continuous node's
            column, a context input) of a floating dtype of higher precision than the network's: float64 data for a
            float32 network is refused, not rounded (the message names the column and both dtypes; convert the data, or
            the network with ``.to``). Discrete columns may have any real dtype.
        :raises ModelSpecError: a node named like a site derived from another node's name for these data
            (``"<node>_prior"``, ``"<node>_observed"``, ``"<node>_unobserved"``), naming both; CPDs of two dtypes
            (a float64 neural CPD beside float32 tables), naming a node of each, as the exact queries do
            (:func:`~hybridpgm.infer.bn_dtypes.check_one_table_dtype`); a site that a :func:`pyro.poutine.block`
            between a caller's plate at dim ``-1`` and the call hides from that plate, or a plate that ``block_plate``
            took off Pyro's stack while it holds dim ``-1``, naming the plate
            (:class:`~hybridpgm.graphs.bn_plate.DataPlate`); under Pyro's validation, a linear Gaussian whose bias
            or weight is not finite or whose scale is not positive, naming the node
            (:func:`~hybridpgm.graphs.cpd_gaussian.check_gaussian_parameters`: one read for all of them).
        """
        prefix = site_prefix(prefix, "BayesNet.model")
        self.check()
        _check_one_dtype(self)
        plate = DataPlate(prefix)  # the caller's plate at dim -1, joined, or one of its own
        cols = self.columns(data, mask)
        num_samples = plate.rows if num_samples is None else num_samples
        ctx = self._inputs(inputs, int(next(iter(cols.values())).shape[0]) if cols else num_samples)
        n = self._rows(cols, ctx, num_samples)
        if n == 0:
            raise DataError("BayesNet.model got data of 0 rows; a Pyro plate cannot be empty")
        plate.check(n)  # refuses a caller's plate of another size
        weight = prior_weight(plate.full_size(num_data), n)
        cpds = self._cpd_map  # registered on entry (registers_once)
        with weighted_per_update():  # weighted here: SVIObjective does not give these its global sites' share too
            for v, c in cpds.items():
                if getattr(c, "prior", None) is not None:
                    pyro.factor(f"{prefix}{v}_prior", plate.prior_factor(c.log_prior() * weight, n))
        x: dict = {}
        enum = {"enumerate": "parallel"}
        observed = self._observed_of(cols)
        self._check_site_names(observed, prefix)
        enumerated = self._zero_checks()  # records the enumerated sites, for the checks of impossible rows
        barren = BarrenRows(self._dag_index().children, self._order, observed, enumerated, prefix)
        # in a caller's plate the caller's per-row sites may read any node (a decoder under the network), and one
        # row's values may be read by a caller's site outside any plate (they broadcast): none barren there
        latent = barren.site if plate.caller is None and n > 1 else _summed_as_is
        # one read for the parameters' check and the continuous inputs' NaN checks of every node (none in fit's step)
        with checks_read_once(), plate.open(n), barren.recorder:
            check_gaussian_parameters(cpds.values())  # the Normals below check no parameter
            for v in self._order:
                c = cpds[v]
                obs, obs_mask = observed.get(v, (None, False))
                if c.cardinality is None:
                    if data is not None and obs_mask is not None:
                        raise DataError(f"continuous node '{v}' must be observed in every row of the data")
                    loc = c.select(c.mean_table({**ctx, **x}), x)
                    scale = c.select(c.scale, x, batched=False)
                    # an observed value was checked with the data (no NaN); a sampled or conditioned one by torch
                    fn = LinearGaussian.normal(loc, scale, value_checked=obs is not None)
                    x[v] = pyro.sample(prefix + v, fn, obs=obs)
                    continue
                fn = dist.Categorical(logits=c.select(c.log_table({**ctx, **x}), x, event_dims=1))
                if obs_mask is None:
                    self._check_possible(v, fn, obs, None, observed, enumerated, prefix)
                    x[v] = pyro.sample(prefix + v, fn, obs=obs, infer=enum)
                elif obs_mask is False:
                    x[v] = pyro.sample(prefix + v, latent(fn, v), infer=enum)
                else:  # Pyro's obs_mask, keeping the enumeration flag on the latent half
                    self._check_possible(v, fn, obs, obs_mask, observed, enumerated, prefix)
                    with poutine.mask(mask=obs_mask):
                        seen = pyro.sample(f"{prefix}{v}_observed", fn, obs=obs)
                    with poutine.mask(mask=~obs_mask):
                        hidden = pyro.sample(f"{prefix}{v}_unobserved", latent(fn, v), infer=enum)
                    x[v] = torch.where(obs_mask, seen, hidden)
        barren.complete = True  # the barren rows of the latent sites are known now (their log_prob, taken later)
        return x

    @pyro_method
    def guide(self, data=None, mask=None, inputs=None, *, prefix: str = "", **kwargs) -> None:
        """The empty guide: every latent site of :meth:`model` is enumerated.

        It is exact only under enumeration (:class:`~pyro.infer.TraceEnum_ELBO`, also jitted or with vectorized
        particles), which sums each missing discrete entry out: an ELBO that samples instead
        (``Trace_ELBO``, :class:`SVIObjective`'s default) would draw the missing entries from the model, ignoring
        the observed entries below them, and fit a biased model; so would ``pyro.infer.Predictive(bn.model,
        guide=bn.guide)`` impute from the prior.  Data with missing discrete entries (or absent discrete
        columns) are therefore refused when no enumeration is active; complete data and ``data=None`` pass.

        :param data: as in :meth:`model`: read by :meth:`columns` (with ``mask``) only for the check above;
            ``None`` passes.
        :param mask: as in :meth:`model`, read with ``data``.
        :param inputs: as in :meth:`model`; not read (the guide takes the model's arguments).
        :param str prefix: as in :meth:`model` (the guide takes the model's arguments); the message of the
            check names the model's prefixed latent sites.
        :raises ConfigError: data with missing discrete entries and no enumeration active, saying to train with
            ``TraceEnum_ELBO`` (for posterior samples of the missing entries: :meth:`sample` with ``evidence``,
            or :func:`pyro.infer.infer_discrete`).
        """
        self._check_enumerated(data, mask, site_prefix(prefix, "BayesNet.guide"))

    @isolated_from_handlers  # a program of its own: the caller's handlers neither see nor alter its sites
    @own_param_store
    def sample(self, num_samples: int, inputs=None, *, evidence=None, generator=None) -> dict:
        """Ancestral samples: dict node -> ``[num_samples]`` (context ``inputs`` sized to match: sample ``s`` is
        drawn given input row ``s``), with or without a ``generator``.

        With ``evidence``: exact samples of the unobserved nodes given each evidence row, dict node ->
        ``[num_samples, N]`` for ``N`` evidence rows (``[num_samples]`` where no value has a row dim); see
        :func:`hybridpgm.infer.exact.posterior_sample` (``inputs`` join the evidence; the continuous ancestors of
        the evidence must be observed).  With a ``generator`` and no evidence, :func:`posterior_sample
        <hybridpgm.infer.exact.posterior_sample>` draws the ancestral samples (one per input row where ``inputs``
        have a row dim), so the shapes do not depend on the generator.  With a ``generator`` the
        samples are a function of its state alone: torch's global streams are seeded from one draw of the generator
        while the CPDs' networks run, whatever their modes, and restored afterwards
        (:func:`~hybridpgm.rng_scope.seeded_from_generator`); without one, the networks draw from the global
        streams, as in Pyro.

        :param int num_samples: the number ``S`` of samples (of each evidence row); 0 gives empty results.
        :param inputs: context inputs, as in :meth:`model`: dict name -> ``[num_samples, ...]`` (or one tensor if
            there is a single context name; a single-feature input may be one 0-d value for all); with
            ``evidence``, joined to the evidence (``[N, ...]``).
        :param evidence: a mapping node -> observed value(s), as :func:`~hybridpgm.infer.exact.posterior_sample`
            reads it (``[N]`` for ``N`` rows, a 0-d value for one), or a pandas DataFrame (read by its columns);
            ``None`` (the default): none.  Without a row dim in any value the results are ``[num_samples]``.
        :param generator: a :class:`torch.Generator` (on the network's device) for the draws, ``None`` (the
            default) for torch's global streams; with it and no evidence, :func:`posterior_sample
            <hybridpgm.infer.exact.posterior_sample>` draws them, ``[num_samples]`` per node as without it.
        :raises EvidenceError: evidence that is neither a mapping node -> value(s) nor a DataFrame (an
            ``[N, len(nodes)]`` tensor: pass :meth:`columns` of it), or evidence the query refuses.
        :raises DataError: continuous data, evidence or context inputs of a floating dtype the network's would
            round (float64 for a float32 network; see :meth:`columns`), or (without evidence) context inputs of
            another number of rows than ``num_samples``.
        :raises ConfigError: ``num_samples`` is not a non-negative integer, or ``generator`` is neither a
            :class:`torch.Generator` nor ``None``.
        """
        num_samples = sample_count(num_samples, "BayesNet.sample num_samples")
        generator = generator_or_none(generator, "BayesNet.sample generator")
        context = self._inputs(inputs)
        rows = {k: int(t.shape[-2 if t.dim() > 1 else 0]) for k, t in context.items() if t.dim() > 0}
        if evidence is None and num_samples and any(n != num_samples for n in rows.values()):  # sets the count
            raise DataError(f"BayesNet.sample: {num_samples} samples asked for, but the context inputs have "
                            f"{', '.join(f'{k!r}: {n} row(s)' for k, n in rows.items())}; give each input "
                            f"{num_samples} rows (a single-feature input may be one 0-d value for all), or, for "
                            f"{num_samples} samples given each input row ([num_samples, rows]), call "
                            f"hybridpgm.infer.exact.posterior_sample(bn, {num_samples}, "
                            f"{{{', '.join(f'{k!r}: <its rows>' for k in rows)}}})")
        if evidence is not None or generator is not None:
            from hybridpgm.infer.exact import posterior_sample

            # the networks' running statistics are left as they were (their dropout draws come from the generator:
            # posterior_sample's scope)
            with self._query():
                if evidence is None and rows:  # sample s given input row s: [num_samples], as the ancestral draws
                    draws = posterior_sample(self.check(), 1, context, generator=generator)
                    return {v: t[0, :num_samples] for v, t in draws.items()}
                # a context input given both in inputs= and in the evidence is refused, as by the exact queries
                return posterior_sample(self.check(), num_samples, self._with_inputs(evidence, context, "sample"),
                                        generator=generator)
        with torch.no_grad(), self._query():  # a Pyro plate cannot be empty: zero samples are one, sliced away
            tr = poutine.trace(self.model).get_trace(None, None, inputs, num_samples=max(num_samples, 1))
        return {v: tr.nodes[v]["value"][:num_samples] for v in self.nodes}

    @isolated_from_handlers
    @own_param_store
    def log_prob(self, values, inputs=None) -> torch.Tensor:
        """``[N]`` joint :math:`\\log p(x)` of complete rows (dict or ``[N, len(nodes)]`` tensor); a 0-d result for
        a single example, a mapping whose every value is 0-d (a 0-d tensor, a number or a state name; a pandas
        ``Series``, one row of a data frame, too), equal to the answer for that one row, as :meth:`MarkovNet.log_prob
        <hybridpgm.graphs.MarkovNet.log_prob>` scores one and as the queries answer 0-d evidence without a row dim.
        A single example's context ``inputs`` are that one row's features (a row dim is put in front: ``[d]``,
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
        :param inputs: context inputs, as in :meth:`model`: dict name -> ``[N, ...]`` (or one tensor if there is a
            single context name).
        :raises DataError: a missing node or entry, columns of several lengths (``[N]`` beside ``[M]``), a column of
            more than one dim (``[N, 1]``, naming the node and the shape), or data :meth:`model` refuses (continuous
            data of a floating dtype the network's would round among them, a NumPy ``float64`` scalar too).
        :raises ConfigError: under :func:`torch.func.vmap` over the rows or the CPDs' weights, which the checks
            of the data read on the host: pass the rows as one batch instead.
        """
        with vmap_reads_refused(_VMAP_LOG_PROB):
            return self._log_prob(values, inputs)

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


def _summed_as_is(fn, v):
    """A missing node's site distribution ``fn`` as it is (no row barren), in a plate of the caller's or for one
    row."""
    return fn


def _check_one_dtype(bn) -> None:
    """The queries' one-dtype check (:func:`~hybridpgm.infer.bn_dtypes.check_one_table_dtype`) on ``bn``: the maps
    holding each CPD's tensor are kept with the network's facts (in ``bn.plan_cache``), so a run of the model pays
    one dtype read per CPD.  Imported here, not at the top: :mod:`hybridpgm.infer` imports :mod:`hybridpgm.graphs`."""
    from hybridpgm.infer.bn_dtypes import check_one_table_dtype
    from hybridpgm.infer.bn_evidence import network_facts

    check_one_table_dtype(network_facts(bn))


#: the error of :meth:`BayesNetModel.log_prob` under ``vmap`` (:func:`~hybridpgm.transform_scope.vmap_reads_refused`)
_VMAP_LOG_PROB = ("BayesNet.log_prob does not support torch.func.vmap: it reads the rows (their states' checks) and "
                  "the tables on the host, which vmap's batched tensors cannot give.  It is batched already: pass the "
                  "rows as one batch, {node: tensor of shape [N]} or an [N, len(nodes)] tensor, and it scores all N "
                  "at once (an [N] result); for several weight sets, loop over them")
