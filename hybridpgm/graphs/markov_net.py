"""Discrete Markov random fields with table or neural log-potentials.

A :class:`MarkovNet` defines

.. math::

    p(x) = \\frac{1}{Z} \\exp\\Big(\\sum_f \\theta_f(x_f)\\Big), \\qquad
    Z = \\sum_x \\exp\\Big(\\sum_f \\theta_f(x_f)\\Big),

over named discrete variables.  A *factor family* is a set of ``F`` factors
of equal arity and cardinalities whose log-potentials are one tensor
``batch_shape + (F,) + cards`` -- a fixed table, a learnable
:class:`~torch.nn.Parameter`, or the output of a neural module applied to a
context (so the same code covers one 3-variable model and a batch of 64 Ising
grids with 8 000 edges each).  Leading batch dimensions mean independent
models; evidence tensors add batch dimensions too.

Inference (``method=``): ``"exact"`` (tensor contraction,
:mod:`hybridpgm.infer.mrf_exact`), ``"bp"`` (loopy belief propagation,
:class:`~hybridpgm.infer.BeliefPropagation`), ``"mean_field"``
(:class:`~hybridpgm.infer.MeanField`); sampling by chromatic Gibbs
(:class:`~hybridpgm.infer.ChromaticGibbs`) or exactly; :meth:`MarkovNet.model` puts the
MRF into a Pyro program with :func:`pyro.factor`, one enumerated site per variable, and
:meth:`MarkovNet.distribution` makes it one Pyro distribution over the joint state.
The declaration checks live in :mod:`~hybridpgm.graphs.mrf_declare`, the inference queries (:math:`\\log Z`,
marginals, the MAP state) in :mod:`~hybridpgm.graphs.mrf_inference`, the score in
:mod:`~hybridpgm.graphs.mrf_score`, sampling in :mod:`~hybridpgm.graphs.mrf_sampling` and the Pyro program in
:mod:`~hybridpgm.graphs.mrf_pyro_model`.

**References**

[1] D. Koller, N. Friedman, *Probabilistic Graphical Models: Principles and
Techniques*, 2009, ch. 4.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from hybridpgm.errors import ModelSpecError
from hybridpgm.export_refusal import export_refused
from hybridpgm.graphs.factor_graph import FactorGraph, greedy_coloring
from hybridpgm.graphs.mrf_compile import compile_factor_graph
from hybridpgm.graphs.mrf_declare import _names, call_potential, check_factor, check_table_form, table_buffer
from hybridpgm.graphs.mrf_finite import check_finite_tables
from hybridpgm.graphs.mrf_inference import MarkovNetInference
from hybridpgm.graphs.mrf_sampling import sample_markov_net
from hybridpgm.graphs.mrf_sites import factor_site, internal_clash
from hybridpgm.graphs.mrf_scopes import ScopeIndices
from hybridpgm.graphs.mrf_tables import LegacyTableNames, TablePotentials
from hybridpgm.graphs.mrf_vmap import vmap_refused
from hybridpgm.keyword_alias import keyword_only_soon
from hybridpgm.network_checks import check_output
from hybridpgm.serialization_structure import record_declared
from hybridpgm.summary_repr import listed

__all__ = ["MarkovNet"]


class MarkovNet(LegacyTableNames, ScopeIndices, MarkovNetInference, nn.Module):
    """A Markov random field over named discrete variables.

    :param variables: mapping ``name -> cardinality``, or a sequence of
        ``(name, cardinality)`` pairs (the order is the variable order).
    :raises ModelSpecError: a name given twice, a cardinality that is not an integer ``>= 1``, or a name that
        :meth:`model` uses for a site of its own (``"data"``, its plate; ``"log_partition"``, its
        :math:`-\\log Z` factor; ``"markov_net$$$..."``, its parameters), naming the variable and the site.

    A network of no variables can be declared (and saved), but every query of it raises
    :class:`~hybridpgm.errors.ModelSpecError`: there is nothing to infer.

    **Names.**  A table factor ``f`` is the entry ``table_potentials.f`` of ``state_dict()`` (escaped where torch
    would refuse the name, :mod:`~hybridpgm.graphs.mrf_tables`), a neural one ``potentials.f``: a state dict loads
    by factor name.  State saved with the former entries ``_pot_i`` (the ``i``-th family) still loads.

    **Neural potentials in training mode.**  Each call evaluates the networks once and takes the score and
    :math:`\\log Z` from those tables (one dropout mask, one batch-norm update per training loss).  The queries
    (:meth:`log_partition`, :meth:`marginals`, :meth:`map_assignment`, :meth:`sample`) in train mode use batch
    statistics but leave running statistics unchanged (every buffer of the potentials is restored); the training
    losses (:meth:`score`, :meth:`log_prob`, :meth:`model`, and :meth:`distribution`, which evaluates the networks
    when built) update them as any forward pass does.

    >>> mrf = MarkovNet({"a": 2, "b": 3})
    >>> mrf.add_factor("ab", ["a", "b"], torch.randn(2, 3))  # returns the net, so calls chain
    MarkovNet(variables={'a': 2, 'b': 3}, factors=['ab'])
    >>> mrf.log_partition(method="exact").shape
    torch.Size([])
    """

    def __init__(self, variables: Mapping[str, int]):
        super().__init__()
        self.cards: dict[str, int] = {}
        pairs = variables.items() if isinstance(variables, Mapping) else variables
        for pair in pairs:
            if not isinstance(pair, (tuple, list)) or len(pair) != 2:
                raise ModelSpecError(f"MarkovNet: variables must be a mapping name -> cardinality or "
                                     f"(name, cardinality) pairs, got the element {pair!r}")
            name, card = pair
            try:
                whole = not isinstance(card, bool) and int(card) == card >= 1
            except (TypeError, ValueError):
                whole = False
            if not isinstance(name, str) or not name or not whole:
                raise ModelSpecError(f"MarkovNet: variable {name!r} needs a name and an integer cardinality >= 1, "
                                     f"got {card!r}")
            if name in self.cards:
                raise ModelSpecError(f"MarkovNet: variable {name!r} is declared twice (cardinalities "
                                     f"{self.cards[name]} and {int(card)}); declare each variable once")
            clash = internal_clash(name)
            if clash is not None:
                raise ModelSpecError(f"MarkovNet: variable {name!r} clashes with {clash} (each variable is the "
                                     f"Pyro site of its name there); rename the variable")
            self.cards[name] = int(card)
        self._index = {n: i for i, n in enumerate(self.cards)}
        self.families: dict[str, dict] = {}
        self._factor_sites: dict[str, tuple] = {}  # site name in model() -> (family, factor index, single)
        self.table_potentials = TablePotentials()  # tensor families by name; first: parameters keep their order
        self.potentials = nn.ModuleDict()  # neural families
        self._colors = None
        record_declared(self)  # what save compares the net with; each factor adds its entries (serialization_structure)

    def __repr__(self) -> str:
        """Every variable and factor family of a small net; beyond 8 of either, their counts, the first and last
        names and the set of cardinalities (a 300 x 300 grid printed all 90000 variables, 1.37 MB)."""
        if len(self.cards) <= 8 and len(self.families) <= 8:
            return f"MarkovNet(variables={self.cards}, factors={list(self.families)})"
        cards = listed(sorted(set(self.cards.values())))
        return (f"MarkovNet(variables={len(self.cards)} [{listed(self.cards)}], cardinalities={{{cards}}}, "
                f"factors={len(self.families)} [{listed(self.families)}])")

    # -- declaration --------------------------------------------------------------
    @property
    def variables(self) -> list[str]:
        return list(self.cards)

    def add_factor(self, name: str, scope: Sequence[str], log_potential) -> "MarkovNet":
        """Add one factor.  In :meth:`model` the factor is the site ``name``; one named like a variable serves
        every query, but :meth:`model` then raises.

        :param str name: the factor's name.
        :param scope: the names of its variables; a bare string is one variable's name (``"ab"`` is the variable
            ``ab``, not ``a`` and ``b``).
        :param log_potential: ``batch_shape + cards`` log-potentials: a tensor (copied into a buffer), a
            :class:`~torch.nn.Parameter` (registered as it is), or a module ``context -> tensor``.
        :returns: the network itself (calls chain).
        :raises ModelSpecError: a name already defined, or whose site in :meth:`model` is another factor's
            (``"e[0]"``, factor 0 of a family ``"e"``) or one of :meth:`model`'s own (``"data"``,
            ``"log_partition"``, ``"markov_net$$$..."``), naming both; an unknown variable, or bad log-potentials
            (of the wrong shape, not floating-point, NaN or infinite, or on the meta device: a tensor made with
            torch's default device set to ``"meta"`` holds no values).
        """
        return self._add(name, [_names(scope)], log_potential, single=True)

    def add_factors(self, name: str, scopes: Sequence[Sequence[str]], log_potentials) -> "MarkovNet":
        """Add a family of ``F`` factors of equal arity and cardinalities; factor ``f`` is the site
        ``f"{name}[{f}]"``.

        :param str name: the family's name.
        :param scopes: ``F`` scopes, each a sequence of variable names (as ``scope`` of :meth:`add_factor`).
        :param log_potentials: ``batch_shape + (F or 1,) + cards`` (a tensor, parameter or module, as for
            :meth:`add_factor`; ``1``: one table shared by every factor).
        :returns: the network itself.
        :raises ModelSpecError: as :meth:`add_factor`; scopes of unequal arities or cardinalities.
        """
        return self._add(name, [_names(s) for s in scopes], log_potentials, single=False)

    def _add(self, name, scopes, pot, single):
        """Check the whole declaration (:func:`~hybridpgm.graphs.mrf_declare.check_factor`), then register it: a
        refused call leaves the net as it was (no buffer, parameter, module, family or site of the factor), so the
        corrected call can follow."""
        fam = check_factor(self, name, scopes, pot, single)
        # checked: register.  On the device of a tensor table, so a model built from CUDA tensors is on CUDA
        self._register_scopes(fam, scopes, pot.device if isinstance(pot, torch.Tensor) else None)
        if fam["kind"] == "module":
            self.potentials[name] = pot
        elif isinstance(pot, nn.Parameter):
            self.table_potentials.register_parameter(fam["key"], pot)
        else:  # a copy (differentiable, dense): the caller's tensor is not the buffer load_state_dict writes into
            self.table_potentials.register_buffer(fam["key"], table_buffer(self, pot, fam["key"]))
        self.families[name] = fam
        self._factor_sites.update({factor_site(name, f, single): (name, f, single) for f in range(len(scopes))})
        self._colors = None
        record_declared(self, f"potentials.{name}" if fam["kind"] == "module" else f"table_potentials.{fam['key']}")
        return self

    def tables(self, context=None) -> dict[str, torch.Tensor]:
        """Evaluate every family: ``name -> batch_shape + (F or 1,) + cards``.

        A family declared by a tensor is returned as the network's own buffer or parameter (a view of it for one
        factor), as ``module.weight`` is: an in-place edit of it changes the network (every cached answer sees the
        new version); ``.clone()`` it to post-process.

        A tensor ``context`` reaches each neural potential in that potential's floating dtype (that of its first
        floating parameter or buffer) where the conversion is exact (:func:`~hybridpgm.data.validation.as_model_dtype`:
        a lower-precision float is widened); any other context is passed as it is (integers or ``bool``: category
        indices for an ``nn.Embedding``; a float of higher precision, which the potential may cast itself).  A NumPy
        array or pandas object is read as a tensor first; a network's ``TypeError`` on any other context is named.

        :param context: the input of the neural potentials (``None``: each is called with no argument).
        :raises DataError: a potential that fails on a context of another dtype than its own, naming the factor
            and both dtypes, or on a context that is no tensor (a list), naming the factor and the type.
        :raises ModelSpecError: a potential returns no single tensor (a tuple, a dict), or a table of the wrong
            shape or dtype, or with NaN or inf entries, naming the factor.
        """
        out, checked, failure = {}, [], None
        try:
            for name, fam in self.families.items():
                if fam["kind"] == "module":
                    mod = self.potentials[name]
                    t = mod() if context is None else call_potential(name, mod, context)
                    if not isinstance(t, torch.Tensor):  # a tuple or dict: named, not torch's AttributeError
                        check_output(t, f"MarkovNet: the neural potential of factor {name!r}")
                    check_table_form(name, fam, t)  # its shape and dtype at once; its values with the others'
                else:  # a stored table can turn NaN after add (a diverged training step): checked on each use
                    t = self.table_potentials.table(fam["key"])
                checked.append((name, t))
                out[name] = t.unsqueeze(-len(fam["cards"]) - 1) if fam["single"] else t
        except Exception as e:  # raised once the tables before it have passed
            failure = e
        check_finite_tables(checked)  # every table, stored or neural, in one host read
        if failure is not None:
            raise failure
        return out

    def colors(self) -> list[int]:
        """A proper colouring of the interaction graph (cached)."""
        if self._colors is None:
            scopes = [[self._index[v] for v in s] for fam in self.families.values() for s in fam["scopes"]]
            self._colors = greedy_coloring(len(self.cards), scopes)
        return self._colors

    # -- compilation ----------------------------------------------------------------
    def factor_graph(self, evidence: Mapping[str, torch.Tensor] | None = None, context=None) -> FactorGraph:
        """Compile to a padded, batched :class:`FactorGraph` (:func:`~.mrf_compile.compile_factor_graph`).

        :param evidence: ``name -> LongTensor`` broadcastable to a batch shape;
            ``-1`` (or NaN in a float tensor) means "unobserved" in that batch entry; any other negative value is
            refused (:func:`~hybridpgm.graphs.mrf_compile.evidence_states`).
        :param context: passed to neural potentials.
        :raises EvidenceError: an unknown variable, a non-integer value, or a state outside ``0..card-1``
            (``+inf`` included).
        :raises ModelSpecError: a network of no variables.
        """
        return compile_factor_graph(self, evidence, context)

    # -- queries ----------------------------------------------------------------------
    @vmap_refused
    def score(self, values: Mapping[str, torch.Tensor], context=None) -> torch.Tensor:
        """Unnormalised log-density :math:`\\sum_f \\theta_f(x_f)` at full assignments ``name -> LongTensor``
        (or float tensors of whole states, as evidence may be; values broadcast together).

        :param values: ``name -> states`` of every variable (a mapping, or a DataFrame of named columns).
        :param context: the neural potentials' input (see :meth:`tables`).
        :raises EvidenceError: values that are no mapping (rows ``[N, V]``: the message gives the conversion), a
            variable without a value, an unknown variable, a value that is not a state
            ``0..card-1``, naming the variable, dtype and values (deferred inside :func:`~hybridpgm.fit`'s step),
            values whose shapes do not broadcast, naming every variable's shape, or values whose batch shape does
            not broadcast with the tables' batch shape, naming both.
        :raises ModelSpecError: a network of no variables, or tables whose batch shapes do not broadcast.
        :raises DataError: a ``context`` a neural potential does not take (see :meth:`tables`), naming the factor.
        """
        from hybridpgm.graphs.mrf_score import score

        return score(self, values, context)

    @export_refused("MarkovNet.log_prob")
    @vmap_refused
    def log_prob(self, values, context=None, method: str = "exact", **kwargs) -> torch.Tensor:
        """:math:`\\log p(x) = \\sum_f \\theta_f(x_f) - \\log Z` (``log Z`` by ``method``).

        :param values: ``name -> states`` of every variable, as for :meth:`score`.
        :param context: the neural potentials' input (see :meth:`tables`).
        :param str method: how :math:`\\log Z` is computed, as :meth:`log_partition`'s ``method``: ``"exact"``
            (default), ``"bp"`` or ``"mean_field"``; ``kwargs`` are that algorithm's options.
        :raises EvidenceError: bad values, as :meth:`score` (values that do not broadcast with the tables' batch
            shape included).
        :raises ModelSpecError: as :meth:`log_partition` (``method="bp"`` with ``max_product=True`` included).
        :raises DataError: as :meth:`score`.

        The networks run once: the score and :math:`\\log Z` come from the same tables, each less its per-factor
        maximum (:func:`~hybridpgm.graphs.mrf_centring.centred_tables`: the difference is the same, and never forms
        at the size of a constant added to a table).
        """
        from hybridpgm.graphs.mrf_centring import centred_tables
        from hybridpgm.graphs.mrf_score import score as score_of

        self._refuse_max_product(method, kwargs)
        tables = self.tables(context)  # one forward pass of the networks for the score and log Z alike
        tables = centred_tables(tables, {n: len(self.families[n]["cards"]) for n in tables})
        score = score_of(self, values, context, tables=tables)
        lp = score - self._log_z(method, compile_factor_graph(self, None, context, tables=tables), kwargs)
        # a value scoring -inf has probability zero: -inf, not -inf - log Z (NaN where every value scores -inf)
        return torch.where(score == -math.inf, torch.full_like(lp, -math.inf), lp)

    @vmap_refused
    @keyword_only_soon("method", "evidence", "context", "num_sweeps", "generator")
    def sample(self, num_samples: int, *, method: str = "auto", evidence=None, context=None,
               num_sweeps: int | None = None, generator=None) -> dict[str, torch.Tensor]:
        """Draw ``num_samples`` samples.

        ``method="exact"``: independent exact samples, all from one contraction and backward sampling
        (:func:`~hybridpgm.infer.mrf_exact.exact_sample`; small treewidth only); ``"gibbs"``: the final states of
        ``num_samples`` independent chromatic Gibbs chains run for ``num_sweeps`` sweeps (100 by default;
        approximate); ``"auto"`` (default): exact where the contraction costs at most about a second of one CPU
        thread per model (:func:`~hybridpgm.infer.mrf_exact.exact_is_cheap`; one model decides, not the number of
        rows), else Gibbs; ``num_sweeps`` selects Gibbs.  Exact draws of a batch over
        :data:`~hybridpgm.infer.mrf_exact.EXACT_MAX_BYTES` are made a chunk of rows at a time: the same law per
        row, but with a ``generator`` other draws than one contraction's.  With a ``generator`` the samples are a
        function of its state alone: torch's global streams are seeded from one draw of the generator while the
        neural potentials run, whatever their modes, and restored afterwards
        (:func:`~hybridpgm.rng_scope.seeded_from_generator`).

        :param int num_samples: the number of draws.
        :param str method: ``"auto"`` (default), ``"exact"`` or ``"gibbs"``; keyword-only, as all below.
        :param evidence: ``name -> states`` (``-1``: unobserved in that row); the draws are of the rest given it.
        :param context: the neural potentials' input (see :meth:`tables`).
        :param num_sweeps: Gibbs sweeps per chain (selects Gibbs).
        :param generator: a :class:`torch.Generator` for the draws; ``None`` draws from torch's global stream.
        :returns: ``name -> (num_samples,) + batch_shape`` long tensors.
        :raises ModelSpecError: an unknown ``method``, or ``num_sweeps`` with ``method="exact"``.
        """
        return sample_markov_net(self, num_samples, method, evidence, context, num_sweeps, generator)

    @vmap_refused
    def distribution(self, evidence=None, context=None, *, validate_args: bool | None = None):
        """The joint over all variables (given evidence) as one Pyro distribution, event shape ``(V,)``: exact
        ``log_prob``, ``sample`` and ``mode``; see :class:`~hybridpgm.graphs.mrf_distribution.MarkovNetDistribution`.

        :param evidence: ``name -> states``, ``-1`` leaving a row's variable unobserved (see :meth:`factor_graph`).
        :param context: the neural potentials' input (see :meth:`tables`); the networks run once, here.
        :param validate_args: as for any :class:`torch.distributions.Distribution` (``None``: torch's default).
        """
        from hybridpgm.graphs.mrf_distribution import MarkovNetDistribution

        return MarkovNetDistribution(self, evidence, context, validate_args=validate_args)

    def model(self, values: Mapping[str, torch.Tensor] | None = None, context=None,
              log_z_method: str = "exact", prefix: str = "", **kwargs):
        """A Pyro program whose joint over the variables is this MRF.

        Each variable is a ``pyro.sample`` site (``obs`` from ``values``;
        latent ones are marked for parallel enumeration), each factor a
        :func:`pyro.factor`, and one more factor carries :math:`-\\log Z`.
        Supports an unbatched model, or a batch of one dimension (``N`` data
        points / contexts) run inside ``pyro.plate(prefix + "data", N, dim=-1)``, or inside a caller's plate at
        dim ``-1``, joined (:mod:`~hybridpgm.graphs.mrf_pyro_model`); a context drawn in the same program
        may carry the enclosing particle plate's dims in front of its rows (``[S, N, d]``: tables and
        :math:`\\log Z` per particle and row).

        **Not a generator.**  A variable's site is a uniform placeholder (``Categorical(logits=0)``), the MRF
        being in the factor sites, which only enumeration (:class:`~pyro.infer.TraceEnum_ELBO`,
        :func:`~pyro.infer.infer_discrete`) or importance weights (:class:`~pyro.infer.Importance`) take in; a plain run
        draws each latent variable uniformly, so ``pyro.infer.Predictive(mrf.model)`` gives uniform states, not
        the MRF's (with ``values`` too: the rest uniform, not given them).  To sample, use :meth:`sample`
        (``evidence=`` for conditionals), ``infer_discrete(program, first_available_dim=-2, temperature=1)`` over
        this model inside a plate of draws, or ``Predictive`` over ``pyro.sample(name, mrf.distribution())``
        (one site of the joint state, exact draws; see :meth:`distribution`).

        :param values: ``name -> states`` of the observed variables (integer tensors, or float tensors of whole
            states; a value ``None`` leaves the variable latent).
        :param context: passed to the neural potentials (see :meth:`tables`).
        :param str log_z_method: how the :math:`-\\log Z` factor is computed, as :meth:`log_partition`'s
            ``method``: ``"exact"`` (default), ``"bp"`` (the Bethe estimate) or ``"mean_field"`` (a lower bound);
            ``kwargs`` are that algorithm's options (none for ``"exact"``).
        :param str prefix: prepended to every site and plate name (two networks in one program).
        :raises EvidenceError: ``values`` that is not a mapping, names an unknown variable, or holds a value that
            is not a state ``0..card-1`` (a check deferred to the one host read of :func:`~hybridpgm.fit`'s step);
            values whose rows differ from the tables' (one context row per data row), naming both.
        :raises DataError: as :meth:`score`; a caller's plate at dim ``-1`` of another number of rows than the
            values or context, naming it.
        :raises ModelSpecError: more than one batch dimension (tables, or a value of ``dim() > 1``, naming the
            variable and its shape), a network of no variables, or a factor named like a variable (both would be
            the same Pyro site), naming both, before any site is recorded; a site that a
            :func:`pyro.poutine.block` between a caller's plate at dim ``-1`` and the call hides from that plate, or
            a plate that ``block_plate`` took off Pyro's stack while it holds dim ``-1``, naming the plate.
        :raises ConfigError: a ``prefix`` that is not a string, or a neural potential holding parameters of a lazy
            module (``nn.LazyLinear``) that nothing has run yet, naming them: run ``mrf.tables(context[:2])`` once
            under :func:`torch.no_grad` first (``fit`` refuses them alike).
        """
        from hybridpgm.graphs.mrf_pyro_model import pyro_model

        return pyro_model(self, values, context, log_z_method, prefix, **kwargs)
