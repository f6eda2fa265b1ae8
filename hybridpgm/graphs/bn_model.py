"""The Pyro view of a :class:`~hybridpgm.graphs.BayesNet`: :meth:`~BayesNetModel.model`, its empty guide,
ancestral sampling (:mod:`~hybridpgm.graphs.bn_sampling`) and the joint log-probability of complete rows
(:mod:`~hybridpgm.graphs.bn_log_prob`).

:class:`BayesNetModel` is a mixin of :class:`~hybridpgm.graphs.BayesNet`.  The model is a Pyro program over a
data plate ``"data"`` in which every missing discrete entry is a latent site marked for parallel enumeration,
so :class:`pyro.infer.TraceEnum_ELBO` with the empty guide is the exact negative log-likelihood of the observed
entries,

.. math:: -\\log p(x_{\\rm obs}) = -\\log \\sum_{x_{\\rm mis}} \\prod_v p(x_v \\mid x_{\\mathrm{pa}(v)}),

and gradient steps on it learn the CPDs from incomplete data.  It relies on the declaration
(``cpds``, ``nodes``, ``check``) and on the data view :class:`~hybridpgm.graphs.bn_data.BayesNetData`.
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import pyro_method

from hybridpgm.checks import site_prefix
from hybridpgm.errors import DataError
from hybridpgm.graphs.bn_barren_rows import BarrenRows
from hybridpgm.graphs.bn_log_prob import BayesNetLogProb
from hybridpgm.graphs.bn_plate import DataPlate, prior_weight
from hybridpgm.graphs.bn_sampling import BayesNetSampling
from hybridpgm.graphs.cpd_gaussian import LinearGaussian, check_gaussian_parameters
from hybridpgm.keyword_alias import renamed_keyword
from hybridpgm.module_registration import registers_once
from hybridpgm.train.deferred_checks import checks_read_once
from hybridpgm.train.update_scope import weighted_per_update

__all__ = ["BayesNetModel"]


class BayesNetModel(BayesNetSampling, BayesNetLogProb):
    """Mixin of :class:`~hybridpgm.graphs.BayesNet`: its Pyro model and guide, sampling
    (:class:`~hybridpgm.graphs.bn_sampling.BayesNetSampling`) and scoring
    (:class:`~hybridpgm.graphs.bn_log_prob.BayesNetLogProb`)."""

    @renamed_keyword(inputs="context")  # MarkovNet's and cpd.Neural's name; inputs= warns for a release
    @pyro_method
    @registers_once("cpds")  # registered on entry, not at each look-up of a node (quadratic in the nodes)
    def model(self, data=None, mask=None, context=None, *, num_samples: int | None = None,
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
        values (a neural decoder under a network prior) or that its ``context`` inputs read (an enumerated per-row
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
        :param context: the context inputs of neural CPDs: dict name -> ``[N, ...]`` (or one tensor if there is a
            single context name); ``inputs=``, its name before, is accepted for one release with a
            :class:`FutureWarning`.
        :param int num_samples: the rows ``N`` of the plate when neither ``data`` nor ``context`` have rows
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
        ctx = self._inputs(context, int(next(iter(cols.values())).shape[0]) if cols else num_samples)
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

    @renamed_keyword(inputs="context")
    @pyro_method
    def guide(self, data=None, mask=None, context=None, *, prefix: str = "", **kwargs) -> None:
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
        :param context: as in :meth:`model`; not read (the guide takes the model's arguments).
        :param str prefix: as in :meth:`model` (the guide takes the model's arguments); the message of the
            check names the model's prefixed latent sites.
        :raises ConfigError: data with missing discrete entries and no enumeration active, saying to train with
            ``TraceEnum_ELBO`` (for posterior samples of the missing entries: :meth:`sample` with ``evidence``,
            or :func:`pyro.infer.infer_discrete`).
        """
        self._check_enumerated(data, mask, site_prefix(prefix, "BayesNet.guide"))


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
