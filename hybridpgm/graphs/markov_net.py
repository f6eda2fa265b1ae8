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

**References**

[1] D. Koller, N. Friedman, *Probabilistic Graphical Models: Principles and
Techniques*, 2009, ch. 4.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import math
from collections.abc import Mapping, Sequence

import pyro
import pyro.distributions as dist
import torch
from torch import nn

from hybridpgm.checks import sample_count
from hybridpgm.errors import EvidenceError, ModelSpecError
from hybridpgm.graphs.factor_graph import FactorGraph, greedy_coloring
from hybridpgm.graphs.mrf_compile import assignment_states, compile_factor_graph, unknown_names
from hybridpgm.graphs.mrf_sites import factor_site, factor_what, internal_clash
from hybridpgm.train.deferred_checks import check_or_defer

__all__ = ["MarkovNet"]

_METHODS = ("exact", "bp", "mean_field")


def _no_options(method: str, kwargs: dict) -> None:
    """Raise :class:`ModelSpecError` for options passed to a method that takes none."""
    if kwargs:
        raise ModelSpecError(f"MarkovNet: method={method!r} takes no options, got {sorted(kwargs)}")


def _check_options(method: str, algorithm: type, kwargs: dict) -> None:
    """Raise :class:`ModelSpecError` for options that ``algorithm`` does not take, listing those it does."""
    signature = inspect.signature(algorithm)
    params = signature.parameters
    try:
        signature.bind(**kwargs)
    except TypeError:
        raise ModelSpecError(f"MarkovNet: method {method!r} has no option(s) {sorted(set(kwargs) - set(params))}; "
                             f"its options: {list(params)}") from None


def _names(scope) -> list:
    """A factor's scope as a list of names: a bare string is one name, as a CPD's parents take it."""
    return [scope] if isinstance(scope, str) else list(scope)


class MarkovNet(nn.Module):
    """A Markov random field over named discrete variables.

    :param variables: mapping ``name -> cardinality``, or a sequence of
        ``(name, cardinality)`` pairs (the order is the variable order).
    :raises ModelSpecError: a name given twice, a cardinality that is not an integer ``>= 1``, or a name that
        :meth:`model` uses for a site of its own (``"data"``, its plate; ``"log_partition"``, its
        :math:`-\\log Z` factor; ``"markov_net$$$..."``, its parameters), naming the variable and the site.

    A network of no variables can be declared (and saved), but every query of it raises
    :class:`~hybridpgm.errors.ModelSpecError`: there is nothing to infer.

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
        self.potentials = nn.ModuleDict()  # neural families
        self._colors = None

    def __repr__(self) -> str:
        return f"MarkovNet(variables={self.cards}, factors={list(self.families)})"

    # -- declaration --------------------------------------------------------------
    @property
    def variables(self) -> list[str]:
        return list(self.cards)

    def add_factor(self, name: str, scope: Sequence[str], log_potential) -> "MarkovNet":
        """Add one factor; ``log_potential`` is ``batch_shape + cards`` (a tensor,
        :class:`~torch.nn.Parameter`, or a module ``context -> tensor``).  A bare string ``scope`` is one
        variable's name (``"ab"`` is the variable ``ab``, not ``a`` and ``b``).  In :meth:`model` the factor is
        the site ``name``; one named like a variable serves every query, but :meth:`model` then raises.

        :raises ModelSpecError: a name already defined, or whose site in :meth:`model` is another factor's
            (``"e[0]"``, factor 0 of a family ``"e"``) or one of :meth:`model`'s own (``"data"``,
            ``"log_partition"``, ``"markov_net$$$..."``), naming both; an unknown variable, or bad log-potentials.
        """
        return self._add(name, [_names(scope)], log_potential, single=True)

    def add_factors(self, name: str, scopes: Sequence[Sequence[str]], log_potentials) -> "MarkovNet":
        """Add a family of ``F`` factors of equal arity and cardinalities;
        ``log_potentials`` is ``batch_shape + (F or 1,) + cards``; factor ``f`` is the site ``f"{name}[{f}]"``.

        :raises ModelSpecError: as :meth:`add_factor`; scopes of unequal arities or cardinalities.
        """
        return self._add(name, [_names(s) for s in scopes], log_potentials, single=False)

    def _check_sites(self, name, count, single):
        """Refuse factor sites of :meth:`model` that are another factor's or its own (variables: in ``model``)."""
        for f in range(count):
            site = factor_site(name, f, single)
            clash = internal_clash(site)
            if clash is None and site in self._factor_sites:
                clash = f"{factor_what(*self._factor_sites[site])}, the same Pyro site of MarkovNet.model"
            if clash is not None:
                raise ModelSpecError(f"MarkovNet: {factor_what(name, f, single)} clashes with {clash}; "
                                     f"rename the factor")

    def _add(self, name, scopes, pot, single):
        """Check the whole declaration, then register it: a refused call leaves the net as it was (no buffer,
        parameter, module, family or site of the factor), so the corrected call can follow."""
        if not isinstance(name, str) or not name:
            raise ModelSpecError(f"MarkovNet: a factor needs a non-empty name (a str), got {name!r}")
        if name in self.families:
            raise ModelSpecError(f"MarkovNet: factor {name!r} is already defined")
        if not scopes or not scopes[0]:
            raise ModelSpecError(f"MarkovNet: factor {name!r} has an empty scope")
        arity = len(scopes[0])
        for s in scopes:
            for v in s:
                if not isinstance(v, str) or v not in self.cards:
                    raise ModelSpecError(f"MarkovNet: factor {name!r} uses unknown variable {v!r}")
            if len(s) != arity or len(set(s)) != len(s):
                raise ModelSpecError(f"MarkovNet: factor {name!r} has scope {s}: scopes of a family "
                                     f"need the same arity {arity} and no repeated variable")
        cards = tuple(self.cards[v] for v in scopes[0])
        for s in scopes:
            if tuple(self.cards[v] for v in s) != cards:
                raise ModelSpecError(f"MarkovNet: factor {name!r} mixes cardinalities {cards} and "
                                     f"{tuple(self.cards[v] for v in s)}")
        self._check_sites(name, len(scopes), single)
        fam = {"scopes": scopes, "cards": cards, "single": single}
        if isinstance(pot, nn.Module):
            if "." in name:  # a ModuleDict key cannot hold a dot
                raise ModelSpecError(f"MarkovNet: factor {name!r} has a neural potential, so its name cannot "
                                     f"contain '.' (it names the module in the net's state dict)")
            fam["kind"] = "module"
        elif isinstance(pot, torch.Tensor):
            self._check_table(name, fam, pot)
            fam["kind"], fam["key"] = "tensor", f"_pot_{len(self.families)}"
        else:
            raise ModelSpecError(f"MarkovNet: factor {name!r} needs a Tensor or nn.Module, got {type(pot).__name__}")
        # checked: register.  On the device of a tensor table, so a model built from CUDA tensors is on CUDA
        device = pot.device if isinstance(pot, torch.Tensor) else None
        idx = torch.tensor([[self._index[v] for v in s] for s in scopes], dtype=torch.long, device=device)
        fam["scope_key"] = f"_scope_{len(self.families)}"
        self.register_buffer(fam["scope_key"], idx, persistent=False)
        if fam["kind"] == "module":
            self.potentials[name] = pot
        elif isinstance(pot, nn.Parameter):
            self.register_parameter(fam["key"], pot)
        else:
            self.register_buffer(fam["key"], pot)
        self.families[name] = fam
        self._factor_sites.update({factor_site(name, f, single): (name, f, single) for f in range(len(scopes))})
        self._colors = None
        return self

    def _check_table(self, name, fam, t):
        tail = (() if fam["single"] else (None,)) + fam["cards"]
        ok = t.dim() >= len(tail) and all(
            want is None and got in (1, len(fam["scopes"])) or got == want
            for got, want in zip(t.shape[t.dim() - len(tail):], tail))
        if not ok:
            want = "batch_shape + " + ("" if fam["single"] else f"({len(fam['scopes'])} or 1,) + ") + str(fam["cards"])
            raise ModelSpecError(f"MarkovNet: factor {name!r} has log-potentials of shape {tuple(t.shape)}, "
                                 f"expected {want}")
        if not torch.is_floating_point(t):
            raise ModelSpecError(f"MarkovNet: factor {name!r} has non-float log-potentials ({t.dtype})")
        if not bool(torch.isfinite(t).all()):
            raise ModelSpecError(f"MarkovNet: factor {name!r} has non-finite log-potentials (NaN or inf)")

    def tables(self, context=None) -> dict[str, torch.Tensor]:
        """Evaluate every family: ``name -> batch_shape + (F or 1,) + cards``."""
        out = {}
        for name, fam in self.families.items():
            if fam["kind"] == "module":
                mod = self.potentials[name]
                t = mod() if context is None else mod(context)
                self._check_table(name, fam, t)
            else:  # a stored table can turn NaN after add (a diverged training step): checked on each use
                t = getattr(self, fam["key"])
                check_or_defer(torch.isfinite(t).all(), functools.partial(
                    ModelSpecError, f"MarkovNet: factor {name!r} has non-finite log-potentials (NaN or inf)"))
            out[name] = t.unsqueeze(-len(fam["cards"]) - 1) if fam["single"] else t
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
            a negative value (or NaN in a float tensor) means "unobserved" in that batch entry.
        :param context: passed to neural potentials.
        :raises EvidenceError: an unknown variable, a non-integer value, or a state outside ``0..card-1``
            (``+inf`` included).
        :raises ModelSpecError: a network of no variables.
        """
        return compile_factor_graph(self, evidence, context)

    # -- queries ----------------------------------------------------------------------
    def _run(self, method, fg, **kwargs):
        from hybridpgm.infer.belief_propagation import BeliefPropagation
        from hybridpgm.infer.mean_field import MeanField
        from hybridpgm.infer.mrf_exact import exact_marginals

        if method not in _METHODS:
            raise ModelSpecError(f"MarkovNet: unknown inference method {method!r}; use one of {_METHODS}")
        if method == "exact":
            _no_options(method, kwargs)
            return exact_marginals(fg)
        algorithm = BeliefPropagation if method == "bp" else MeanField
        _check_options(method, algorithm, kwargs)
        res = algorithm(**kwargs)(fg)
        return res.log_z, res.marginals

    def log_partition(self, method: str = "exact", evidence=None, context=None, **kwargs) -> torch.Tensor:
        """:math:`\\log Z` (given evidence: :math:`\\log \\sum_{x \\sim e} e^{\\theta(x)}`), shape ``batch_shape``.

        ``"exact"`` is exact; ``"bp"`` is the Bethe estimate (exact on trees);
        ``"mean_field"`` a lower bound.  ``kwargs`` go to the algorithm
        (``num_iters``, ``damping``, ``tol``).

        :raises EvidenceError: bad evidence (see :meth:`factor_graph`).
        :raises ModelSpecError: an unknown method or option, a network of no variables, or ``method="bp"`` with
            ``max_product=True`` (max-product BP has no :math:`\\log Z` estimate; also what :meth:`log_prob` and
            :meth:`model` with ``log_z_method="bp"`` raise).
        :raises ConfigError: an option's value (``num_iters=2.5``), naming it.
        """
        if method == "bp" and kwargs.get("max_product") is True:
            raise ModelSpecError("MarkovNet.log_partition: method 'bp' with max_product=True runs max-product BP, "
                                 "which gives max-marginals and no log Z estimate; leave max_product out (the Bethe "
                                 "estimate of sum-product BP), or use map_assignment(method='bp') for the MAP")
        fg = self.factor_graph(evidence, context)
        if method == "exact":
            from hybridpgm.infer.mrf_exact import exact_log_partition

            _no_options(method, kwargs)
            return fg.unflatten(exact_log_partition(fg))
        return fg.unflatten(self._run(method, fg, **kwargs)[0])

    def marginals(self, method: str = "exact", evidence=None, context=None, **kwargs) -> dict[str, torch.Tensor]:
        """Single-variable marginals ``name -> batch_shape + (card,)``."""
        fg = self.factor_graph(evidence, context)
        marg = fg.unflatten(self._run(method, fg, **kwargs)[1])
        return {v: marg[..., i, : c] for i, (v, c) in enumerate(self.cards.items())}

    def map_assignment(self, evidence=None, context=None, method: str = "auto", **kwargs) -> dict[str, torch.Tensor]:
        """The most probable assignment, ``name -> batch_shape`` long.

        ``method="exact"``: the max-sum contraction (:func:`~hybridpgm.infer.exact_map`; exact on any graph of
        small treewidth); ``"bp"``: max-product BP (exact on trees; ``kwargs`` go to it; where max-marginals
        tie, the variables are decoded a layer at a time, each given those before it, as
        :attr:`~hybridpgm.infer.belief_propagation.BPResult.decoded_assignment` does); ``"auto"`` (default):
        exact where the contraction costs at most about a second of one CPU thread per model
        (:func:`~hybridpgm.infer.mrf_exact.exact_is_cheap`: grids up to about 18x18), else max-product BP; BP
        options in ``kwargs`` select BP.
        """
        from hybridpgm.infer.belief_propagation import BeliefPropagation
        from hybridpgm.infer.mrf_exact import exact_is_cheap, exact_map

        if method not in ("auto", "bp", "exact"):
            raise ModelSpecError(f"MarkovNet.map_assignment: unknown method {method!r}; use 'auto', 'bp' or 'exact'")
        fg = self.factor_graph(evidence, context)
        if method == "auto":
            method = "bp" if kwargs or not exact_is_cheap(fg) else "exact"
        if method == "exact":
            _no_options(method, kwargs)
            x = exact_map(fg)[0]
        else:
            if "max_product" in kwargs:
                raise ModelSpecError("MarkovNet.map_assignment: method 'bp' runs max-product BP; max_product is not "
                                     "an option here (marginals('bp') runs sum-product)")
            _check_options("bp", BeliefPropagation, kwargs)
            result = BeliefPropagation(max_product=True, **kwargs)(fg)
            tied, x = self._tied_rows(result.marginals), result.assignment
            if bool(tied.any()):  # those rows decoded a layer at a time; the others keep their argmaxes
                x = torch.where(tied[:, None], result.decoded_assignment, x)
        x = fg.unflatten(x)
        return {v: x[..., i] for i, v in enumerate(self.cards)}

    @staticmethod
    def _tied_rows(max_marginals: torch.Tensor, rtol: float = 1e-6) -> torch.Tensor:
        """``[B]`` bool: whether some variable's top two max-marginals ``[B, V, C]`` tie (to ``rtol``) in a row."""
        if max_marginals.shape[-1] < 2:
            return torch.zeros(max_marginals.shape[0], dtype=torch.bool, device=max_marginals.device)
        top = max_marginals.topk(2, dim=-1).values
        return ((top[..., 0] - top[..., 1]) <= rtol * top[..., 0]).any(-1)

    def score(self, values: Mapping[str, torch.Tensor], context=None) -> torch.Tensor:
        """Unnormalised log-density :math:`\\sum_f \\theta_f(x_f)` at full assignments ``name -> LongTensor``
        (or float tensors of whole states, as evidence may be; values broadcast together).

        :raises EvidenceError: a variable without a value, an unknown variable, a value that is not a state
            ``0..card-1``, naming the variable, dtype and values (deferred inside :func:`~hybridpgm.fit`'s step),
            values whose shapes do not broadcast, naming every variable's shape, or values whose batch shape does
            not broadcast with the tables' batch shape, naming both.
        :raises ModelSpecError: a network of no variables, or tables whose batch shapes do not broadcast.
        """
        if not self.cards:
            raise ModelSpecError("MarkovNet.score: the network has no variables; declare at least one")
        missing = [v for v in self.cards if v not in values]
        if missing:
            raise EvidenceError(f"MarkovNet.score: no value for variables {missing}")
        unknown_names("MarkovNet.score", values, self.cards)
        vals = {v: assignment_states(v, values[v], c, "MarkovNet.score") for v, c in self.cards.items()}
        tables = self.tables(context)
        device = next(iter(tables.values())).device if tables else None
        try:
            xs = torch.stack(torch.broadcast_tensors(*[vals[v].to(device) for v in self.cards]), -1)  # [..., V]
        except RuntimeError:
            shapes = {v: tuple(vals[v].shape) for v in self.cards}
            raise EvidenceError(f"MarkovNet.score: the values of the variables must broadcast to one batch shape, "
                                f"got shapes {shapes}") from None
        table_shapes = {n: tuple(t.shape[: t.dim() - len(self.families[n]["cards"]) - 1]) for n, t in tables.items()}
        try:
            batch_shape = torch.broadcast_shapes(*table_shapes.values())
        except RuntimeError:
            raise ModelSpecError(f"MarkovNet.score: the batch shapes of the factors' tables do not broadcast: "
                                 f"{table_shapes}") from None
        try:
            torch.broadcast_shapes(xs.shape[:-1], batch_shape)
        except RuntimeError:
            shapes = {v: tuple(vals[v].shape) for v in self.cards}
            raise EvidenceError(f"MarkovNet.score: the values' batch shape {tuple(xs.shape[:-1])} (shapes {shapes}) "
                                f"does not broadcast with the tables' batch shape {tuple(batch_shape)}") from None
        total = 0.0
        for name, t in tables.items():
            cards = self.families[name]["cards"]
            k = len(cards)
            sel = xs[..., getattr(self, self.families[name]["scope_key"])]  # [..., F, k]
            strides = torch.tensor([math.prod(cards[i + 1:]) for i in range(k)], device=sel.device)
            lin = (sel * strides).sum(-1)  # [..., F]: flat index into the table
            flat = t.flatten(-k)  # batch + (F or 1, prod(cards))
            flat = flat.expand(flat.shape[:-2] + (lin.shape[-1], flat.shape[-1]))
            shape = torch.broadcast_shapes(flat.shape[:-1], lin.shape)
            picked = flat.expand(shape + flat.shape[-1:]).gather(-1, lin.expand(shape).unsqueeze(-1))
            total = total + picked.squeeze(-1).sum(-1)
        return total

    def log_prob(self, values, context=None, method: str = "exact", **kwargs) -> torch.Tensor:
        """:math:`\\log p(x) = \\sum_f \\theta_f(x_f) - \\log Z` (``log Z`` by ``method``).

        :raises EvidenceError: bad values, as :meth:`score` (values that do not broadcast with the tables' batch
            shape included).
        :raises ModelSpecError: as :meth:`log_partition` (``method="bp"`` with ``max_product=True`` included).
        """
        return self.score(values, context) - self.log_partition(method, context=context, **kwargs)

    def sample(self, num_samples: int, method: str = "auto", evidence=None, context=None,
               num_sweeps: int | None = None, generator=None) -> dict[str, torch.Tensor]:
        """Draw ``num_samples`` samples.

        ``method="exact"``: independent exact samples, all from one contraction and backward sampling
        (:func:`~hybridpgm.infer.mrf_exact.exact_sample`; small treewidth only); ``"gibbs"``: the final states of
        ``num_samples`` independent chromatic Gibbs chains run for ``num_sweeps`` sweeps (100 by default;
        approximate); ``"auto"`` (default): exact where the contraction costs at most about a second of one CPU
        thread per model (:func:`~hybridpgm.infer.mrf_exact.exact_is_cheap`), else Gibbs; ``num_sweeps`` selects
        Gibbs.

        :returns: ``name -> (num_samples,) + batch_shape`` long tensors.
        """
        from hybridpgm.infer.mrf_exact import exact_is_cheap, exact_sample
        from hybridpgm.infer.mrf_gibbs import ChromaticGibbs

        num_samples = sample_count(num_samples, "MarkovNet.sample num_samples")
        if method not in ("auto", "exact", "gibbs"):
            raise ModelSpecError(f"MarkovNet.sample: unknown method {method!r}; use 'auto', 'exact' or 'gibbs'")
        fg = self.factor_graph(evidence, context)
        if method == "auto":
            method = "gibbs" if num_sweeps is not None or not exact_is_cheap(fg) else "exact"
        if method == "exact":
            if num_sweeps is not None:
                raise ModelSpecError("MarkovNet.sample: method='exact' takes no num_sweeps")
            x = exact_sample(fg, num_samples, generator=generator)
        else:
            x = ChromaticGibbs(num_sweeps=100 if num_sweeps is None else num_sweeps)(fg, num_samples,
                                                                                     generator=generator)
        x = x.reshape((num_samples,) + fg.batch_shape + (fg.num_vars,))
        return {v: x[..., i] for i, v in enumerate(self.cards)}

    def distribution(self, evidence=None, context=None):
        """The joint over all variables (given evidence) as one Pyro distribution, event shape ``(V,)``: exact
        ``log_prob``, ``sample`` and ``mode``; see :class:`~hybridpgm.graphs.mrf_distribution.MarkovNetDistribution`.
        """
        from hybridpgm.graphs.mrf_distribution import MarkovNetDistribution

        return MarkovNetDistribution(self, evidence, context)

    def model(self, values: Mapping[str, torch.Tensor] | None = None, context=None,
              log_z_method: str = "exact", prefix: str = "", **kwargs):
        """A Pyro program whose joint over the variables is this MRF.

        Each variable is a ``pyro.sample`` site (``obs`` from ``values``;
        latent ones are marked for parallel enumeration), each factor a
        :func:`pyro.factor`, and one more factor carries :math:`-\\log Z`.
        Supports an unbatched model, or a batch of one dimension (``N`` data
        points / contexts) run inside ``pyro.plate(prefix + "data", N)``.

        :param values: ``name -> states`` of the observed variables (integer tensors, or float tensors of whole
            states; a value ``None`` leaves the variable latent).
        :raises EvidenceError: ``values`` that is not a mapping, names an unknown variable, or holds a value that
            is not a state ``0..card-1`` (a check deferred to the one host read of :func:`~hybridpgm.fit`'s step).
        :raises ModelSpecError: more than one batch dimension (tables, or a value of ``dim() > 1``, naming the
            variable and its shape), a network of no variables, or a factor named like a variable (both would be
            the same Pyro site), naming both, before any site is recorded.
        """
        clash = next((v for v in self.cards if v in self._factor_sites), None)
        if clash is not None:
            name, f, single = self._factor_sites[clash]
            raise ModelSpecError(f"MarkovNet.model: {factor_what(name, f, single)} and the variable {clash!r} would "
                                 f"both be the Pyro site {prefix + clash!r}; variables and factors share Pyro's site "
                                 f"names, so rename the {'factor' if single else 'family'} (e.g. {name + '_f'!r})")
        pyro.module(prefix + "markov_net", self)  # plain SVI finds the potentials in the param store
        if values is not None and not isinstance(values, Mapping):
            raise EvidenceError(f"MarkovNet.model: values must be a mapping name -> states, got "
                                f"{type(values).__name__} {values!r:.60}")
        values = dict(values or {})
        unknown_names("MarkovNet.model", values, self.cards)
        values = {v: assignment_states(v, x, self.cards[v], "MarkovNet.model")
                  for v, x in values.items() if x is not None}
        deep = {v: tuple(x.shape) for v, x in values.items() if x.dim() > 1}
        if deep:
            raise ModelSpecError(f"MarkovNet.model: needs at most one batch dimension, got values of shapes {deep}; "
                                 f"give each variable's states as a scalar or an (N,) tensor")
        tables = self.tables(context)
        log_z = self.log_partition(log_z_method, context=context, **kwargs)
        sizes = {t.shape[0] for n, t in tables.items() if t.dim() > len(self.families[n]["cards"]) + 1}
        sizes |= {x.shape[0] for x in values.values() if x.dim()}
        if len(sizes) > 1 or log_z.dim() > 1:
            raise ModelSpecError(f"MarkovNet.model: needs at most one batch dimension, got sizes {sizes} "
                                 f"(the tables' batch shape is {tuple(log_z.shape)})")
        N = sizes.pop() if sizes else None
        with pyro.plate(prefix + "data", N) if N is not None else contextlib.nullcontext():
            xs = {}
            for v, c in self.cards.items():
                logits = torch.zeros(c, dtype=log_z.dtype, device=log_z.device)
                xs[v] = pyro.sample(prefix + v, dist.Categorical(logits=logits), obs=values.get(v),
                                    infer={"enumerate": "parallel"})
            for name, t in tables.items():
                fam = self.families[name]
                k = len(fam["cards"])
                batched = t.dim() > k + 1
                for f, scope in enumerate(fam["scopes"]):
                    tf = t.select(-k - 1, min(f, t.shape[-k - 1] - 1))
                    index = ((torch.arange(N, device=tf.device),) if batched else ()) + tuple(xs[v] for v in scope)
                    pyro.factor(prefix + factor_site(name, f, fam["single"]), tf[index])
            lognorm = sum(math.log(c) for c in self.cards.values())
            pyro.factor(prefix + "log_partition", lognorm - log_z)
        return xs
