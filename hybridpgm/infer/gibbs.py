"""Gibbs sampling of the discrete latent sites of any Pyro model, as a Pyro MCMC kernel.

Each sweep visits the blocks of latent sites in order and draws a block from
its full conditional given every other site,

.. math::

    p(z_B \\mid z_{-B}, x) \\propto \\prod_{s} p(s \\mid \\mathrm{pa}(s))
    \\quad (\\text{the factors that involve } z_B),

computed exactly by running the model once with the block's sites enumerated
in parallel (:class:`pyro.poutine.enum`) and every other site conditioned [1, 2].
Inside a ``pyro.plate`` the elements of a site are conditionally independent
given the other sites when every site that reads them lies inside the plate too
and reads one element (Pyro's plate semantics), so all of them are resampled at
once; a site outside the plate that reads them (a count ``y ~ Normal(z.sum(-1),
s)``) couples them, and the sweep raises
:class:`~hybridpgm.errors.ModelSpecError` naming the site and the plate (sample
one site per element instead, in a sequential ``pyro.plate``; see
:mod:`hybridpgm.infer.gibbs_sites`).  A subsampled plate is refused, as by
Pyro's HMC/NUTS (``subsample=`` indices too, unless a permutation of the rows, the same at every run for a plate
holding a latent site).  A block of
several sites (``blocks=[["tub", "lung", "either"]]``) is drawn jointly, which
keeps the chain ergodic when a node is a deterministic function of others.
The kernel plugs into :class:`pyro.infer.MCMC` (``num_chains``, progress,
``get_samples(group_by_chain=True)``); :func:`hybridpgm.diagnostics.from_mcmc`
turns the run into ArviZ data under ArviZ 0.x and 1.x alike (ArviZ 1.x has no
``arviz.from_pyro``).

>>> kernel = Gibbs(bn.model, blocks=[["tub", "lung", "either"]])     # doctest: +SKIP
>>> mcmc = pyro.infer.MCMC(kernel, num_samples=1000, warmup_steps=100, num_chains=4)  # doctest: +SKIP
>>> mcmc.run({"asia": torch.tensor([0])})                          # doctest: +SKIP
>>> arviz.rhat(hybridpgm.diagnostics.from_mcmc(mcmc))                # doctest: +SKIP

Samples are returned as floating point (Pyro's and ArviZ's diagnostics need
it); the model sees each site's own dtype.

The kernel samples, it does not train: the networks behind the model run in
the mode they are in (in training mode a batch norm normalises with the batch's
statistics), but their buffers (running statistics, ``num_batches_tracked``) are
left as they were after every model run -- for a
:class:`~hybridpgm.graphs.BayesNet`'s :meth:`~hybridpgm.graphs.BayesNet.model`
in the network's query context, as its exact queries do.

**References**

[1] S. Geman, D. Geman, *Stochastic Relaxation, Gibbs Distributions, and the
Bayesian Restoration of Images*, 1984.

[2] A. E. Gelfand, A. F. M. Smith, *Sampling-Based Approaches to Calculating
Marginal Densities*, 1990.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterator, Sequence

import torch
from pyro import poutine
from pyro.infer.mcmc.mcmc_kernel import MCMCKernel
from pyro.poutine.messenger import Messenger
from pyro.poutine.util import site_is_subsample

from hybridpgm.checks import positive_int
from hybridpgm.errors import ConfigError, ModelSpecError
from hybridpgm.infer.gibbs_sites import (check_batch_dims_in_plates, check_block_plates, check_full_plate,
                                         check_same_rows, check_site_shape_in_sweep)
from hybridpgm.infer.particle_probe import keeping_module_state, probed_modules
from hybridpgm.options import Option

__all__ = ["Gibbs"]


class _EnumerateOnly(Messenger):
    """Mark the given sample sites (only those) for parallel enumeration."""

    def __init__(self, names):
        super().__init__()
        self.names = set(names)

    def _pyro_sample(self, msg):
        if msg["name"] in self.names and not msg["is_observed"]:
            msg["infer"] = dict(msg["infer"], enumerate="parallel", expand=False)
        elif msg["infer"].get("enumerate"):
            msg["infer"] = {k: v for k, v in msg["infer"].items() if k != "enumerate"}


def _check_blocks(blocks) -> list[list[str]]:
    """``blocks`` as a list of lists of site names, each non-empty, no site twice."""
    if blocks is None:
        return []
    if isinstance(blocks, (str, bytes)) or not isinstance(blocks, Sequence):
        raise ConfigError(f"Gibbs blocks must be a list of lists of site names, got {blocks!r}")
    out, seen = [], set()
    for b in blocks:
        if isinstance(b, (str, bytes)) or not isinstance(b, Sequence) or not b \
                or not all(isinstance(s, str) for s in b):
            hint = f" (e.g. [[{b!r}]] for one site)" if isinstance(b, str) else ""
            raise ConfigError(f"each Gibbs block must be a non-empty list of site names{hint}, got {b!r} "
                              f"in blocks={blocks!r}")
        twice = sorted({s for s in b if s in seen or list(b).count(s) > 1})
        if twice:
            raise ConfigError(f"Gibbs blocks name site(s) {twice} more than once; each site belongs to one block")
        seen.update(b)
        out.append(list(b))
    return out


def _support_text(support: torch.Tensor) -> str:
    values = support.tolist()
    return str(values) if len(values) <= 8 else f"{values[0]}..{values[-1]} ({len(values)} values)"


def _check_initial_params(params: dict, latent: list[str], shapes: dict, fns: dict) -> None:
    """A user's ``initial_params``: one tensor per latent site, none for another site, each of the shape the model
    gives the site, every entry in the site's support (a whole number in ``0..K-1`` for a categorical)."""
    missing = [s for s in latent if s not in params]
    unknown = sorted(str(k) for k in params if k not in shapes)
    if missing or unknown:
        raise ConfigError(f"Gibbs initial_params must give exactly the latent sites {latent}; "
                          + (f"missing: {missing}" if missing else "") + ("; " if missing and unknown else "")
                          + (f"not latent sites of the model: {unknown}" if unknown else ""))
    for s in latent:
        value = params[s]
        if not torch.is_tensor(value):
            raise ConfigError(f"Gibbs initial_params['{s}'] is a {type(value).__name__}, expected a tensor of "
                              f"shape {tuple(shapes[s])}")
        if value.shape != shapes[s]:
            raise ConfigError(f"Gibbs initial_params['{s}'] has shape {tuple(value.shape)}, expected "
                              f"{tuple(shapes[s])} (the shape the model gives site '{s}')")
        support = fns[s].enumerate_support(expand=False).reshape(-1)
        common = torch.promote_types(value.dtype, support.dtype)
        inside = (value.detach().reshape(-1, 1).to(common) == support.to(common)).any(-1)
        if not bool(inside.all()):
            bad = value.detach().reshape(-1)[~inside]
            raise ConfigError(f"Gibbs initial_params['{s}'] has {len(bad)} value(s) outside the site's support "
                              f"{_support_text(support)} ({type(fns[s]).__name__}), e.g. {bad[:3].tolist()}")


class Gibbs(MCMCKernel):
    """Block Gibbs sampler over the discrete latent sites of a Pyro model.

    :param callable model: a Pyro model; every latent site must be discrete with
        enumerable support (e.g. ``Categorical``, ``Bernoulli``), and every
        batch dim of every sample site -- latent, observed or :func:`pyro.factor` --
        must be declared by a ``pyro.plate`` (the dims of one observation go in its
        event shape, ``.to_event(...)``); else :meth:`setup` raises
        :class:`~hybridpgm.errors.ModelSpecError` naming the site, its batch shape and the dim.  A site that
        reads a plated latent must lie inside its plates (else a sweep raises ``ModelSpecError`` naming the site
        and the plate), and no plate may subsample (:meth:`setup` raises it, naming the plate); a
        :class:`pyro.poutine.scale` is kept (the chain targets the scaled density).  The buffers
        of the modules behind it (a bound method's module, see
        :func:`~hybridpgm.infer.particle_probe.probed_modules`) are left as they were by every model run.
    :param blocks: optional list of lists of site names drawn jointly; sites not
        listed form one block each, in model order.
    :param int max_plate_nesting: number of plate dims (found by tracing if ``None``).
    :raises ConfigError: ``model`` is not callable; ``blocks`` is not a list of non-empty lists of site
        names (a string is not a block), or names a site twice; ``max_plate_nesting`` is not ``None`` or
        a non-negative integer.  (:meth:`setup` raises it too for block sites that are not latent, and for
        an ``initial_params`` -- ``MCMC(kernel, initial_params=...)`` -- that misses a latent site, names
        another site, or gives a site a value of another shape than the model's or outside its support.)
    """

    max_plate_nesting = Option(
        lambda gibbs, value: None if value is None else positive_int(value, "Gibbs max_plate_nesting", minimum=0),
        """The number of plate dims, read by every sweep (enumeration starts left of them); ``None`` until
        :meth:`setup` finds it by tracing.  An assignment is checked as the constructor checks it (a refused value
        leaves the old one; ``None`` is found again by the next :meth:`setup`).

        :raises ConfigError: (on assignment) a value that is neither ``None`` nor a non-negative integer.""")

    def __init__(self, model: Callable, *, blocks: Sequence[Sequence[str]] | None = None,
                 max_plate_nesting: int | None = None):
        if not callable(model):
            raise ConfigError(f"Gibbs model must be a callable (a Pyro program), got {type(model).__name__}")
        self.model = model
        self.blocks_arg = _check_blocks(blocks)
        self.max_plate_nesting = max_plate_nesting  # checked by the option
        self.transforms: dict = {}  # discrete sites: no unconstraining transforms
        self._initial_params = None
        self._user_init = False
        self._args, self._kwargs = (), {}
        self.blocks: list[list[str]] = []

    # ------------------------------------------------------------------ MCMCKernel API
    @property
    def initial_params(self):
        return self._initial_params

    @initial_params.setter
    def initial_params(self, params):
        if params is not None and not isinstance(params, dict):
            raise ConfigError(f"Gibbs initial_params must be a dict of site name -> tensor (or None), "
                              f"got {type(params).__name__}")
        self._initial_params = params
        self._user_init = params is not None

    def setup(self, warmup_steps, *args, **kwargs):
        """Trace the model once to find its latent sites and blocks (called by :class:`pyro.infer.MCMC`).

        :param int warmup_steps: warmup iterations MCMC will run (Gibbs has nothing to adapt).
        :param args: the model's positional arguments, passed on to it at every sweep.
        :param kwargs: the model's keyword arguments, passed on to it at every sweep.
        :raises ConfigError: the user's ``initial_params`` misses a latent site or names another one, or gives a
            site a non-tensor, a tensor of another shape than the traced value's, or a value outside the site's
            enumerable support (NaN, a fraction, a negative or too large state); the message names the site.
        :raises ModelSpecError: a sample site has a batch dim no plate declares, a latent site is not discrete, a
            plate subsamples or its ``subsample=`` indices are not a permutation of its rows (naming the plate;
            Pyro's HMC/NUTS refuse a ``subsample_size`` too), or the model has no latent site.  (A sweep raises it
            where a plate holding latent sites is given other indices than here: a permutation the model draws
            afresh, :func:`~hybridpgm.infer.gibbs_sites.check_same_rows`.)
        """
        self._args, self._kwargs = args, kwargs
        with poutine.block(), self._leaving_module_state():
            tr = poutine.trace(self.model).get_trace(*args, **kwargs)
        latent = []
        plates, frames = {}, {}
        for name, site in tr.nodes.items():
            if site["type"] != "sample":
                continue
            if site_is_subsample(site):
                check_full_plate(name, site)  # a subsampled plate scales its terms: refused, as by HMC/NUTS
                continue
            check_batch_dims_in_plates(name, site)  # every sample site: latent, observed, pyro.factor
            if site["is_observed"]:
                continue
            fn = site["fn"]
            if not getattr(fn, "has_enumerate_support", False) or fn.event_dim != 0:
                raise ModelSpecError(f"Gibbs samples discrete scalar sites only; site '{name}' "
                                     f"({type(fn).__name__}) is not")
            latent.append(name)
            plates[name] = frozenset(f.dim for f in site["cond_indep_stack"] if f.vectorized)
            frames[name] = {f.dim: (f.name, f.size) for f in site["cond_indep_stack"] if f.vectorized and f.size > 1}
        if not latent:
            raise ModelSpecError("the model has no latent sites to sample")
        if self.max_plate_nesting is None:
            dims = [-f.dim for s in tr.nodes.values() if s["type"] == "sample"
                    for f in s["cond_indep_stack"] if f.vectorized and f.dim is not None]
            self.max_plate_nesting = max(dims, default=0)
        listed = [s for b in self.blocks_arg for s in b]
        unknown = [s for s in listed if s not in latent]
        if unknown:
            raise ConfigError(f"blocks name sites that are not latent discrete sites: {unknown} (latent: {latent})")
        for b in self.blocks_arg:
            if len({plates[s] for s in b}) > 1 or len({tr.nodes[s]["value"].shape for s in b}) > 1:
                raise ConfigError(f"the sites of block {b} must share their plates and shapes")
        self.blocks = [list(b) for b in self.blocks_arg] + [[s] for s in latent if s not in listed]
        self._plates = {tuple(b): plates[b[0]] for b in self.blocks}
        self._frames = {tuple(b): frames[b[0]] for b in self.blocks}  # {dim: (name, size)}, for the sweep's checks
        self._shapes = {s: tr.nodes[s]["value"].shape for s in latent}
        # the indices of each plate holding latent sites, which every run must give again (check_same_rows); a
        # copy: a model may reshuffle one index tensor in place at every run
        held = {f.name: [s for s in latent if f in tr.nodes[s]["cond_indep_stack"]]
                for s in latent for f in tr.nodes[s]["cond_indep_stack"] if f.vectorized and f.size > 1}
        self._rows = {name: (tr.nodes[name]["value"].clone(), sites) for name, sites in held.items()
                      if name in tr.nodes and site_is_subsample(tr.nodes[name])}
        self._dtypes = {s: tr.nodes[s]["value"].dtype for s in latent}
        self._out_dtype = next((t.dtype for t in args if torch.is_tensor(t) and t.is_floating_point()),
                               torch.get_default_dtype())
        if not self._user_init or self._initial_params is None:
            self._initial_params = {s: tr.nodes[s]["value"].detach().to(self._out_dtype) for s in latent}
            self._user_init = False
        else:
            _check_initial_params(self._initial_params, latent, self._shapes, {s: tr.nodes[s]["fn"] for s in latent})

    def cleanup(self):
        """Forget the initial values found by :meth:`setup` (kept when the user gave ``initial_params``)."""
        if not self._user_init:
            self._initial_params = None

    def logging(self):
        """Nothing to log: every move is accepted (an empty dict for Pyro's progress bar)."""
        return {}

    def diagnostics(self):
        """``{"divergences": []}``: Gibbs moves are always accepted and never diverge."""
        # Gibbs moves are always accepted and never diverge; ArviZ's from_pyro reads this key
        return {"divergences": []}

    def sample(self, params):
        """One sweep.  Values are passed in and out as floating point (so that Pyro's
        and ArviZ's diagnostics apply); the model sees each site's own dtype.

        :param dict params: site name -> the chain's current value of every latent site.
        :returns: the same keys with the values after the sweep."""
        params = {k: v.to(self._dtypes[k]) if k in self._dtypes else v for k, v in params.items()}
        for block in self.blocks:
            params.update(self._resample(block, params))
        return {k: v.to(self._out_dtype) for k, v in params.items()}

    @contextlib.contextmanager
    def _leaving_module_state(self) -> Iterator[None]:
        """The context of a model run: the buffers of the modules behind the model are left as they were, by a
        :class:`~hybridpgm.graphs.BayesNet`'s own query context (its networks' buffers, copied once when the run
        is nested in another query of the network), else by
        :func:`~hybridpgm.infer.particle_probe.keeping_module_state` (restored through ``.data``: no autograd
        version moves)."""
        from hybridpgm.graphs.bayes_net import BayesNet

        with contextlib.ExitStack() as stack:
            for module in probed_modules(self.model):
                stack.enter_context(module._query() if isinstance(module, BayesNet) else keeping_module_state(module))
            yield

    # ------------------------------------------------------------------ the full conditional
    def log_conditional(self, block: Sequence[str], params: dict) -> tuple[torch.Tensor, list]:
        """Joint log full conditional of a block (up to a constant).

        :param block: the names of the block's (discrete) sites.
        :param dict params: site name -> current value of every latent site (the others condition the block).
        :returns: ``(logits [*plate_shape, K], supports)`` where ``K`` is the
            product of the block sites' support sizes (the last site varies fastest)
            and ``supports`` lists each site's ``[k_s]`` support values.
        :raises ModelSpecError: a site reads the block across one of the block's plates (its log-density does not
            fit its plates, or varies with the block but lies outside the plate), naming the site and the plate.
            Also where ``pyro.markov`` gives two of the block's sites one enumeration dim (sites further
            apart than its history), naming them.
        """
        mpn = self.max_plate_nesting
        others = {k: v for k, v in params.items() if k not in block}
        model = poutine.condition(self.model, data=others)
        model = poutine.enum(_EnumerateOnly(block)(model), first_available_dim=-1 - mpn)
        with poutine.block(), self._leaving_module_state():
            tr = poutine.trace(model).get_trace(*self._args, **self._kwargs)
            tr.compute_log_prob()
        for name, (rows, sites) in self._rows.items():
            check_same_rows(name, tr.nodes.get(name), rows, sites)
        keep = self._plates[tuple(block)]
        enum_dims = [tr.nodes[s]["infer"].get("_enumerate_dim") for s in block]
        shared = [s for s, d in zip(block, enum_dims) if enum_dims.count(d) > 1]
        if shared:  # pyro.markov recycles the dims of sites out of its history: no joint table of the block
            raise ModelSpecError(f"Gibbs: the sites {shared} of block {list(block)} share an enumeration dim "
                                 f"(pyro.markov recycles the dims of sites further apart than its history), so "
                                 f"the block cannot be enumerated jointly; draw them in separate blocks, or raise "
                                 f"pyro.markov's history to the block's span")
        num_enum = -min(enum_dims) - mpn  # enum dims in use: -mpn-1 .. -mpn-num_enum
        frames = self._frames[tuple(block)]
        total = None
        for name, site in tr.nodes.items():
            if site["type"] != "sample" or "log_prob" not in site or site_is_subsample(site):
                continue
            # shapes only: a site that reads the block across one of its plates is refused, not mis-scored
            check_site_shape_in_sweep(name, site, block, mpn, frames)
            check_block_plates(name, site, block, enum_dims, frames)
            lp = site["log_prob"]
            if lp.dim() <= mpn:
                continue  # no enum dim: does not involve the block (a size-1 enum dim does: one state)
            lp = lp.reshape((1,) * (mpn + num_enum - lp.dim()) + lp.shape)
            sum_dims = [lp.dim() - 1 - i for i in range(mpn) if -(i + 1) not in keep]
            if sum_dims:
                lp = lp.sum(sum_dims, keepdim=True)
            total = lp if total is None else total + lp
        supports = [tr.nodes[s]["value"].reshape(-1) for s in block]
        sizes = [len(v) for v in supports]
        total = total.reshape((1,) * (mpn + num_enum - total.dim()) + total.shape)
        axes = [total.dim() + d for d in enum_dims]  # the enum axis of each block site
        plate_shape = total.shape[num_enum:]
        full = [1] * num_enum
        for ax, k in zip(axes, sizes):
            full[ax] = k
        total = total.expand(*full, *plate_shape)
        perm = list(range(num_enum, total.dim())) + axes
        logits = total.permute(perm).reshape(*plate_shape, -1)
        return logits, supports

    def _resample(self, block, params):
        logits, supports = self.log_conditional(block, params)
        if not torch.isfinite(logits.logsumexp(-1)).all():
            raise ModelSpecError(f"the full conditional of {block} has no support: the evidence is impossible, or the "
                                 "chain's state has probability zero (a deterministic node that single-site moves "
                                 "cannot leave: sample it with its parents in one block, blocks=[[...]])")
        idx = torch.distributions.Categorical(logits=logits).sample()
        out = {}
        for s, vals in zip(reversed(block), reversed(supports)):
            k = len(vals)
            out[s] = vals[idx % k].reshape(self._shapes[s])
            idx = torch.div(idx, k, rounding_mode="floor")
        return out
