"""A :class:`~hybridpgm.graphs.MarkovNet` as a Pyro program: one enumerated site per variable.

Each variable is a ``pyro.sample`` site (observed from ``values``; latent ones marked for parallel
enumeration) of a uniform placeholder ``Categorical`` marked ``infer={PLACEHOLDER: hint}`` (:data:`PLACEHOLDER`:
the site alone is not the variable's likelihood), each factor a :func:`pyro.factor`, and one more factor carries
:math:`-\\log Z + \\sum_v \\log c_v` (the placeholders' :math:`-\\log c_v` taken back), so under
``TraceEnum_ELBO`` the loss is :math:`-\\log p(\\text{observed})`; :meth:`MarkovNet.model
<hybridpgm.graphs.MarkovNet.model>` is this function.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping

import pyro
import pyro.distributions as dist
import torch

from hybridpgm.checks import site_prefix
from hybridpgm.errors import EvidenceError, ModelSpecError
from hybridpgm.graphs.mrf_compile import assignment_states, compile_factor_graph, unknown_names
from hybridpgm.graphs.mrf_sites import factor_site, factor_what

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


def pyro_model(self, values: Mapping[str, torch.Tensor] | None = None, context=None, log_z_method: str = "exact",
               prefix: str = "", **kwargs):
    """The Pyro program of the MarkovNet ``self``; see :meth:`MarkovNet.model <hybridpgm.graphs.MarkovNet.model>`
    (arguments, errors).  Returns ``name -> states`` of every variable's site."""
    prefix = site_prefix(prefix, "MarkovNet.model")
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
    self._refuse_max_product(log_z_method, kwargs)
    # the networks run once: the factor sites and log Z read the same tables (one dropout mask, one batch-norm
    # update per step, as any forward pass of a training loss)
    tables = self.tables(context)
    log_z = self._log_z(log_z_method, compile_factor_graph(self, None, context, tables=tables), kwargs)
    # int(): under torch.jit.trace (JitTraceEnum_ELBO) a size is a 0-d tensor, hashed by identity
    rows = {int(t.shape[0]) for n, t in tables.items() if t.dim() > len(self.families[n]["cards"]) + 1}
    data_rows = {int(x.shape[0]) for x in values.values() if x.dim()}
    if log_z.dim() > 1 or len(rows) > 1:
        raise ModelSpecError(f"MarkovNet.model: needs at most one batch dimension, got tables of {sorted(rows)} "
                             f"rows (the tables' batch shape is {tuple(log_z.shape)})")
    if len(rows | data_rows) > 1:
        shapes = {v: tuple(x.shape) for v, x in values.items()}
        where = "" if context is None else (f" (from a context of shape {tuple(context.shape)})"
                                            if isinstance(context, torch.Tensor) else " (from the context)")
        raise EvidenceError(f"MarkovNet.model: the values (shapes {shapes}) and the factors' tables{where}, of "
                            f"{sorted(rows) or 'no'} row(s), need one number of rows, got {sorted(rows | data_rows)}; "
                            f"give one context row per data row")
    sizes = rows | data_rows
    N = sizes.pop() if sizes else None
    with pyro.plate(prefix + "data", N) if N is not None else contextlib.nullcontext():
        xs = {}
        for v, c in self.cards.items():
            logits = torch.zeros(c, dtype=log_z.dtype, device=log_z.device)
            xs[v] = pyro.sample(prefix + v, dist.Categorical(logits=logits), obs=values.get(v),
                                infer={"enumerate": "parallel", PLACEHOLDER: _HINT})
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

