"""A :class:`~hybridpgm.graphs.MarkovNet` as a Pyro program: one enumerated site per variable.

Each variable is a ``pyro.sample`` site (observed from ``values``; latent ones marked for parallel
enumeration) of a uniform placeholder ``Categorical`` marked ``infer={PLACEHOLDER: hint}`` (:data:`PLACEHOLDER`:
the site alone is not the variable's likelihood), each factor a :func:`pyro.factor`, and one more factor carries
:math:`-\\log Z + \\sum_v \\log c_v` (the placeholders' :math:`-\\log c_v` taken back), so under
``TraceEnum_ELBO`` the loss is :math:`-\\log p(\\text{observed})`; :meth:`MarkovNet.model
<hybridpgm.graphs.MarkovNet.model>` is this function.

The rows ``N`` (of the values, or of the tables a context gives) are the plate at dim ``-1``: the model's own
``pyro.plate(prefix + "data", N, dim=-1)``, or, called inside a caller's vectorized plate at dim ``-1``, that plate,
joined as :meth:`BayesNet.model <hybridpgm.graphs.BayesNet.model>` joins it
(:class:`~hybridpgm.graphs.bn_plate.DataPlate`), so the caller's per-row sites (a decoder reading the variables)
are in one plate with them.  A plate of its own there took the next free dim, ``-2``: a second, independent plate
over the same rows (Pyro's raw 'Shape mismatch' with ``max_plate_nesting=1``; with 2, every row's factors summed
against every row of the caller's).  A caller's plate at dim ``-1`` of another size is refused, and so is a site that
a :func:`pyro.poutine.block` between that plate and the call hides from it (or the plate taken off the stack by
``block_plate``), naming the plate.  Without rows the model opens no plate: its sites are those of any plate around
it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping

import pyro
import pyro.distributions as dist
import torch

from hybridpgm.checks import site_prefix
from hybridpgm.errors import ConfigError, DataError, EvidenceError, ModelSpecError
from hybridpgm.graphs.bn_context_dims import expand_hint
from hybridpgm.graphs.bn_plate import DataPlate
from hybridpgm.graphs.bn_values import outer_batch_dims
from hybridpgm.graphs.mrf_compile import assignment_states, compile_factor_graph, unknown_names
from hybridpgm.graphs.mrf_sites import factor_site, factor_what
from hybridpgm.module_registration import register_module
from hybridpgm.network_checks import refuse_uninitialized, uninitialized

__all__ = ["PLACEHOLDER", "pyro_model"]

#: the ``infer`` key that marks a variable's ``pyro.sample`` site as a placeholder: its ``Categorical(logits=0)``
#: is not the variable's distribution (the factors and :math:`-\log Z` are, as ``pyro.factor`` sites), so the
#: site's own ``log_prob`` is :math:`-\log c` for every state.  The value says what to use where a per-site
#: likelihood is needed; :func:`~hybridpgm.diagnostics.from_pyro_svi` reads it.
PLACEHOLDER = "hybridpgm_placeholder"
_HINT = ("MarkovNet.model's variable sites are placeholders (Categorical(logits=0), the factors are separate "
         "pyro.factor sites): for a pointwise log-likelihood and posterior predictive, observe the variables "
         "jointly as one site, pyro.sample(name, mrf.distribution(context=...), obs=states) with states (N, V) "
         "in mrf.variables order")


def _too_deep(shape: tuple, outer: int, context) -> str:
    """The message for tables of ``shape`` with more batch dims than the rows and the ``outer`` dims of the
    enclosing program (:func:`~hybridpgm.graphs.bn_values.outer_batch_dims`)."""
    ctx = f"a context of shape {tuple(context.shape)}" if isinstance(context, torch.Tensor) else "the context"
    claimed = (f"after the {outer} dim(s) the enclosing Pyro program claims (particle plates, enumeration)"
               if outer else "and no particle dims: the enclosing Pyro program claims none here")
    return (f"MarkovNet.model: the factors' tables (from {ctx}) have batch shape {shape}, but the model takes at "
            f"most {1 + outer} batch dim(s): the rows N last, {claimed}; give one context row per data row, with "
            f"a vectorized ELBO's particle dims in front ([S, N, d]) only inside that ELBO, or observe the "
            f"variables jointly as one site, pyro.sample(name, mrf.distribution(context=...), obs=states)")


def _no_rows(what: str) -> None:
    """Raise the :class:`DataError` of a model run on 0 rows (``what`` holds them, named), as
    :meth:`BayesNet.model <hybridpgm.graphs.BayesNet.model>` raises it: Pyro's plate of size 0 fails with a bare
    ``ZeroDivisionError``."""
    raise DataError(f"MarkovNet.model got data of 0 rows ({what}); a Pyro plate cannot be empty: pass at least one "
                    f"row (the queries, log_partition and marginals, answer 0 rows with empty results)")


def _batch_index(shape, device) -> tuple:
    """Index tensors that pick, for every entry of the batch ``shape`` (``[*B, N]``), that entry's own table:
    ``arange(n_i)`` laid along dim ``i`` (``[n_i, 1, ..., 1]``), so with the variables' states they broadcast to
    the sites' batch shape (the particle dims ``B``, the rows ``N``, and enumeration dims left of them)."""
    b = len(shape)
    return tuple(torch.arange(n, device=device).reshape((-1,) + (1,) * (b - 1 - i)) for i, n in enumerate(shape))


def _register(self, prefix: str) -> None:
    """``pyro.module(prefix + "markov_net", self)``, without its warning of each frozen parameter at every call
    (:func:`~hybridpgm.module_registration.register_module`): plain SVI finds the potentials in the param store.

    :raises ConfigError: a neural potential holds parameters of a lazy module (``nn.LazyLinear``) that nothing has
        run yet, naming them (:func:`~hybridpgm.network_checks.refuse_uninitialized`, as :func:`hybridpgm.fit`
        refuses them; Pyro's store fails on them with torch's raw ``ValueError``).  They are not initialised here:
        that needs a forward pass before the model's own, which would update batch-norm statistics and use up
        random numbers (also inside the probes that ``fit`` runs to learn a program's sites and leave no trace).
    """
    try:
        register_module(prefix + "markov_net", self)
    except ValueError:
        if uninitialized(self):
            refuse_uninitialized(self, "MarkovNet.model: the MarkovNet (registered with pyro.module for plain "
                                 "SVI)", ConfigError)
        raise


def pyro_model(self, values: Mapping[str, torch.Tensor] | None = None, context=None, log_z_method: str = "exact",
               prefix: str = "", **kwargs):
    """The Pyro program of the MarkovNet ``self``; see :meth:`MarkovNet.model <hybridpgm.graphs.MarkovNet.model>`
    (arguments, errors).  Returns ``name -> states`` of every variable's site."""
    prefix = site_prefix(prefix, "MarkovNet.model", names_module=True)  # also the name of its pyro.module
    clash = next((v for v in self.cards if v in self._factor_sites), None)
    if clash is not None:
        name, f, single = self._factor_sites[clash]
        raise ModelSpecError(f"MarkovNet.model: {factor_what(name, f, single)} and the variable {clash!r} would "
                             f"both be the Pyro site {prefix + clash!r}; variables and factors share Pyro's site "
                             f"names, so rename the {'factor' if single else 'family'} (e.g. {name + '_f'!r})")
    _register(self, prefix)
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
    if any(x.dim() and not x.shape[0] for x in values.values()):  # before the networks run
        _no_rows(f"values of shapes { {v: tuple(x.shape) for v, x in values.items()} }")
    self._refuse_max_product(log_z_method, kwargs)
    # the networks run once: the factor sites and log Z read the same tables (one dropout mask, one batch-norm
    # update per step, as any forward pass of a training loss)
    tables = self.tables(context)
    log_z = self._log_z(log_z_method, compile_factor_graph(self, None, context, tables=tables), kwargs)
    # the tables' batch dims: the rows N last, and in front of them at most the `outer` dims the enclosing program
    # claims (a context [S, N, d] drawn under a vectorized ELBO's particle plate gives tables [S, N, ...])
    outer = outer_batch_dims()
    dims = {n: t.dim() - len(self.families[n]["cards"]) - 1 for n, t in tables.items()}
    # int(): under torch.jit.trace (JitTraceEnum_ELBO) a size is a 0-d tensor, hashed by identity
    rows = {int(t.shape[dims[n] - 1]) for n, t in tables.items() if dims[n] > 0}
    data_rows = {int(x.shape[0]) for x in values.values() if x.dim()}
    if log_z.dim() > 1 + outer:
        raise ModelSpecError(_too_deep(tuple(log_z.shape), outer, context))
    if len(rows) > 1:
        raise ModelSpecError(f"MarkovNet.model: the factors' tables hold different numbers of rows {sorted(rows)} "
                             f"(their batch shape is {tuple(log_z.shape)}); give every potential one row per data row")
    if len(rows | data_rows) > 1:
        shapes = {v: tuple(x.shape) for v, x in values.items()}
        where = "" if context is None else (f" (from a context of shape {tuple(context.shape)})"
                                            if isinstance(context, torch.Tensor) else " (from the context)")
        hint = expand_hint("context", context.shape, max(data_rows), "mrf.model(values, context=EXPR)", "context") \
            if rows == {1} and data_rows and \
            isinstance(context, torch.Tensor) else ""
        raise EvidenceError(f"MarkovNet.model: the values (shapes {shapes}) and the factors' tables{where}, of "
                            f"{sorted(rows) or 'no'} row(s), need one number of rows, got {sorted(rows | data_rows)}; "
                            f"give one context row per data row{hint}")
    sizes = rows | data_rows
    N = sizes.pop() if sizes else None
    if N == 0:  # tables of 0 rows, from a context of none
        _no_rows(f"tables of 0 rows from a context of shape {tuple(context.shape)}" if isinstance(context, torch.Tensor)
                 else "tables of 0 rows from the context")
    # the rows are the plate at dim -1: a caller's plate there, joined, or one of the model's own; no rows, no plate
    # (inside a caller's plate the sites are its own, their tables and log Z broadcast over its rows)
    plate = DataPlate(prefix)
    if N is not None:
        plate.check(N, "MarkovNet.model", "values or context")
    with plate.open(N) if N is not None else contextlib.nullcontext():
        xs = {}
        for v, c in self.cards.items():
            logits = torch.zeros(c, dtype=log_z.dtype, device=log_z.device)
            xs[v] = pyro.sample(prefix + v, dist.Categorical(logits=logits), obs=values.get(v),
                                infer={"enumerate": "parallel", PLACEHOLDER: _HINT})
        for name, t in tables.items():
            fam = self.families[name]
            k = len(fam["cards"])
            batch = _batch_index(t.shape[: dims[name]], t.device)
            for f, scope in enumerate(fam["scopes"]):
                tf = t.select(-k - 1, min(f, t.shape[-k - 1] - 1))
                index = batch + tuple(xs[v] for v in scope)
                _factor(prefix + factor_site(name, f, fam["single"]), tf[index])
        lognorm = sum(math.log(c) for c in self.cards.values())
        _factor(prefix + "log_partition", lognorm - log_z)
    return xs


def _factor(name: str, log_factor: torch.Tensor) -> None:
    """:func:`pyro.factor` without the ``Unit``'s validation of ``log_factor``: :meth:`MarkovNet.tables
    <hybridpgm.graphs.MarkovNet.tables>` has checked the tables' finiteness (at once, or inside :func:`hybridpgm.fit`'s
    step with the step's one read), and under Pyro's defaults a NaN factor raised Pyro's ``ValueError`` naming no
    factor before that read named it (a NaN stored table; a neural one's since its check joined that read)."""
    unit = dist.Unit(log_factor, validate_args=False)
    pyro.sample(name, unit, obs=unit.sample(), infer={"is_auxiliary": True})

