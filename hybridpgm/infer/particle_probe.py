"""Probe traces: run a Pyro program once to learn its structure, leaving no trace behind.

Several objectives need a program's structure before their first step -- the deepest vectorized plate
(``max_plate_nesting``, which places the particle plate of :class:`~hybridpgm.infer.particle_elbo.ParticleELBO`
to its left), its latent sites -- and learn it from one (guide, model) trace pair, as
:meth:`pyro.infer.ELBO._guess_max_plate_nesting` does.  :func:`hybridpgm.fit` runs such a probe once per call,
so a resumed run runs it once more than an uninterrupted one: to keep the two alike, a probe here uses up no
random numbers (:func:`keeping_rng_state`) and changes no module buffer (:func:`keeping_module_state`; batch-norm
statistics, running moments), together :func:`probing`.  :func:`build_autoguides` runs a Pyro autoguide's first
call under the same scope.  When the vectorized pass of the particles does not fit what the probe learnt (a later
batch enters a deeper plate, or the program's control flow needs one particle at a time), :func:`vectorized_pass`
and :func:`nesting_overflow` say so.

Each of these scopes holds hybridpgm's process-wide lock (:func:`~hybridpgm.global_state_lock.holding_global_state`)
from its snapshot to its restore: two threads querying one network at once (two
:meth:`BayesNet.posterior <hybridpgm.graphs.BayesNet.posterior>` calls on a network whose neural CPD is in
training mode) each copied buffers the other's batch norm had just updated, and the last restore left them
changed.
"""

from __future__ import annotations

import contextlib
import contextvars
import functools
import re
from typing import Any, Callable, Iterable, Iterator

import pyro.poutine as poutine
import torch
from pyro.infer.autoguide import AutoGuide
from pyro.infer.util import is_validation_enabled
from pyro.poutine.util import prune_subsample_sites
from pyro.util import check_site_shape

from hybridpgm.errors import ConfigError, HybridPGMError, ObjectiveError
from hybridpgm.global_state_lock import holding_global_state

__all__ = ["build_autoguides", "guess_plate_nesting", "keeping_module_state", "keeping_module_state_once",
           "keeping_rng_state", "nesting_overflow", "probed_modules", "probing", "vectorized_pass"]

#: the keys of the :func:`keeping_module_state_once` contexts open in this thread (or asyncio task), outermost first
_KEPT_FOR: contextvars.ContextVar[tuple] = contextvars.ContextVar("hybridpgm_kept_for", default=())


@contextlib.contextmanager
def keeping_rng_state() -> Iterator[None]:
    """A context whose random draws leave torch's generators (the CPU's and the current CUDA device's) as they
    were: a trace run only to learn the model's structure must not shift the draws of training, or a resumed
    run would differ from an uninterrupted one.  It holds the process-wide lock."""
    with holding_global_state():
        cuda = [torch.cuda.current_device()] if torch.cuda.is_available() and torch.cuda.is_initialized() else []
        with torch.random.fork_rng(devices=cuda):
            yield


def probed_modules(*owners: Any) -> list[torch.nn.Module]:
    """The :class:`torch.nn.Module` s behind ``owners``: a module itself, the module a bound method belongs to
    (``vae.model``), and those found the same way inside :func:`functools.partial` objects and Pyro's handler
    wrappers (``poutine.scale(vae.model, 2.0)``) or behind ``__wrapped__``; each once, in order.

    A plain function that reaches a module through a closure or a global is not seen: pass the module itself
    (as :class:`~hybridpgm.infer.SVIObjective` and the ``fit`` objectives pass their ``module``).
    """
    found: dict[int, torch.nn.Module] = {}

    def visit(obj: Any, depth: int) -> None:
        if obj is None or depth > 8:
            return
        if isinstance(obj, torch.nn.Module):
            found.setdefault(id(obj), obj)
            return
        owner = getattr(obj, "__self__", None)
        if isinstance(owner, torch.nn.Module):
            found.setdefault(id(owner), owner)
        if isinstance(obj, functools.partial):
            for inner in (obj.func, *obj.args, *obj.keywords.values()):
                if callable(inner):
                    visit(inner, depth + 1)
        inner = getattr(obj, "__wrapped__", None)
        if inner is not None and inner is not obj:
            visit(inner, depth + 1)

    for owner in owners:
        visit(owner, 0)
    return list(found.values())


@contextlib.contextmanager
def keeping_module_state(*owners: Any) -> Iterator[None]:
    """A context that leaves the buffers of the modules behind ``owners`` (see :func:`probed_modules`, and
    every submodule of those) exactly as they were: batch-norm running statistics and ``num_batches_tracked``,
    NVIL's running moments, any buffer a forward pass in training mode updates.

    Each buffer is cloned on entry and copied back on exit (also when the body raises), into the same tensor
    object and through ``.data``, so views and references to it stay valid and its autograd version does not
    move (a loss computed in the body, through a batch norm in training mode, still backpropagates after it);
    a buffer the body replaced by another tensor is put back.  The cost is one copy of the buffers, small next
    to the parameters.  A forward pass in :meth:`~torch.nn.Module.eval` mode would also leave them alone, but
    could take other paths (dropout, ``if self.training``) than the training pass whose structure a probe trace
    is meant to learn; restoring is exact whatever the module does.
    Buffers the body registers anew (a lazy module's) are kept.  The whole scope holds the process-wide lock.
    """
    with holding_global_state():  # before the copies, until they are back: no other thread's query in between
        saved = []
        seen: set[int] = set()
        with torch.no_grad():
            for module in probed_modules(*owners):
                for sub in module.modules():
                    if id(sub) in seen:
                        continue
                    seen.add(id(sub))
                    buffers = [(name, buf, None if buf is None else buf.detach().clone())
                               for name, buf in sub._buffers.items()]
                    if buffers:
                        saved.append((sub, buffers))
        try:
            yield
        finally:
            _restore_buffers(saved)


def _restore_buffers(saved: list) -> None:
    """Put back every buffer :func:`keeping_module_state` saved, ``(sub, [(name, buffer, copy), ...])`` each.

    Every restore is idempotent, so an exception that arrives meanwhile (a Ctrl-C) starts them again, and the
    first one is re-raised once all are done: no buffer is left as the body set it.
    """
    error: BaseException | None = None
    for _attempt in range(3):
        interrupted = False  # an exception that is no Exception (KeyboardInterrupt): a buffer may be left over
        try:
            with torch.no_grad():
                for sub, buffers in saved:
                    for name, buf, copy in buffers:
                        try:
                            _restore_buffer(sub, name, buf, copy)
                        except BaseException as e:  # the other buffers first, re-raised below
                            error = e if error is None else error
                            interrupted = interrupted or not isinstance(e, Exception)
        except BaseException as e:
            error, interrupted = (e if error is None else error), True
        if not interrupted:
            break
    if error is not None:
        raise error


def _restore_buffer(sub: torch.nn.Module, name: str, buf: torch.Tensor | None, copy: torch.Tensor | None) -> None:
    """Put ``copy``'s values back into the saved tensor ``buf`` and ``buf`` back as ``sub``'s buffer ``name``."""
    if buf is not None:
        if buf.shape != copy.shape or buf.dtype != copy.dtype or buf.device != copy.device:
            buf.set_(copy)
        else:  # through .data: no autograd version bump, so a graph that saved the buffer (batch norm saves its
            # running statistics in training mode) still backpropagates, and no host read (an equality test
            # would be one per buffer)
            buf.data.copy_(copy)
    sub._buffers[name] = buf


@contextlib.contextmanager
def keeping_module_state_once(key: Any, *owners: Any) -> Iterator[None]:
    """:func:`keeping_module_state` of ``owners``, entered only by the outermost of nested contexts with the same
    ``key`` (compared by identity) in this thread or asyncio task; an inner one does nothing.

    A query method that calls a query function which keeps the same buffers itself
    (``bn.posterior`` -> :func:`hybridpgm.infer.exact.posterior`) thus copies them once, and they are restored
    when the outermost context exits (a body in between sees them as the inner query left them).  Another thread
    keeps its own copy: the contexts are tracked per :mod:`contextvars` context, and the process-wide lock
    (:func:`~hybridpgm.global_state_lock.holding_global_state`, held by the whole context) runs the threads'
    queries one after the other.

    :param key: the object whose queries nest (a :class:`~hybridpgm.graphs.BayesNet`); held while open.
    :param owners: as for :func:`keeping_module_state`.
    """
    with holding_global_state():  # an inner context too: one re-entry, whoever copies the buffers
        open_keys = _KEPT_FOR.get()
        if any(k is key for k in open_keys):
            yield
            return
        token = _KEPT_FOR.set(open_keys + (key,))
        try:
            with keeping_module_state(*owners):
                yield
        finally:
            _KEPT_FOR.reset(token)


@contextlib.contextmanager
def probing(*owners: Any) -> Iterator[None]:
    """A context for a trace run only to learn a program's structure (its plate nesting, its sites): it
    leaves torch's random generators (:func:`keeping_rng_state`) and the buffers of the modules behind
    ``owners`` (:func:`keeping_module_state`) as they were.  Such a trace is run once per
    :func:`hybridpgm.fit` call, so a resumed run runs it once more than an uninterrupted one: anything it
    left behind would make the two differ.  It holds the process-wide lock throughout."""
    with holding_global_state(), keeping_rng_state(), keeping_module_state(*owners):
        yield


def build_autoguides(model: Callable, guide: Callable, args: tuple, kwargs: dict, module: torch.nn.Module,
                     what: str) -> list[AutoGuide]:
    """Create the parameters of each Pyro autoguide among ``model`` and ``guide`` that has not run yet
    (``prototype_trace is None``) by running it once on ``args``, under :func:`probing` and without gradients:
    no random numbers are used up and no module buffer changes, so a resumed run, which runs it again, stays
    alike.  An autoguide makes its parameters on its first call: an objective that listed them before (to
    build its optimizers) would silently never train them.  The objectives' ``setup(batch)`` hooks call this
    (:meth:`SVIObjective.setup <hybridpgm.infer.SVIObjective.setup>`,
    :meth:`ModelGuideObjective.setup <hybridpgm.infer.model_guide_objective.ModelGuideObjective.setup>`).

    :param model: the Pyro model, run as ``model(*args, **kwargs)`` by an autoguide's first call.
    :param guide: the Pyro guide.
    :param tuple args: the programs' positional arguments.
    :param dict kwargs: their keyword arguments.
    :param module: the objective's module, which must hold the parameters made (its buffers are kept too).
    :param str what: the objective, as a refusal names it.
    :returns: the autoguides it ran (empty when none needed to).
    :raises ConfigError: an autoguide's parameters are not in ``module``.
    """
    built = []
    for fn in (model, guide):
        if isinstance(fn, AutoGuide) and getattr(fn, "prototype_trace", None) is None:
            with probing(model, guide, module), torch.no_grad():
                fn(*args, **kwargs)
            owned = {id(p) for p in module.parameters()}
            if any(id(p) not in owned for p in fn.parameters()):
                raise ConfigError(f"{what}: the parameters of the {type(fn).__name__} are not in the objective's "
                                  f"module ({type(module).__name__}), so fit would not train them; pass module= "
                                  "holding both")
            built.append(fn)
    return built


def guess_plate_nesting(model: Callable, guide: Callable, args: tuple, kwargs: dict,
                        modules: Iterable[torch.nn.Module] = ()) -> int:
    """The deepest vectorized plate of one (guide, model) trace pair, as
    :meth:`pyro.infer.ELBO._guess_max_plate_nesting` finds it (the same traces, subsample sites pruned, and
    the same site-shape validation when Pyro's validation is on), without its ``"Guessed max_plate_nesting"``
    log line and without the particle plate that Pyro adds for ``vectorize_particles``.

    The traces run under :func:`probing`: no random numbers are used up and no module buffer changes.

    :param args: the model's and guide's positional arguments.
    :param kwargs: their keyword arguments.
    :param modules: modules whose state must be left alone besides those behind ``model`` and ``guide``
        (see :func:`probed_modules`).
    :returns: ``max_plate_nesting`` (0 for a program without vectorized plates).
    """
    with probing(model, guide, *modules):
        # Ignore validation to allow model-enumerated sites absent from the guide (as Pyro does).
        with poutine.block():
            guide_trace = poutine.trace(guide).get_trace(*args, **kwargs)
            model_trace = poutine.trace(poutine.replay(model, trace=guide_trace)).get_trace(*args, **kwargs)
        guide_trace = prune_subsample_sites(guide_trace)
        model_trace = prune_subsample_sites(model_trace)
        sites = [site for trace in (model_trace, guide_trace) for site in trace.nodes.values()
                 if site["type"] == "sample"]
        if is_validation_enabled():
            guide_trace.compute_log_prob()
            model_trace.compute_log_prob()
            for site in sites:
                check_site_shape(site, max_plate_nesting=float("inf"))
    dims = [frame.dim for site in sites for frame in site["cond_indep_stack"] if frame.vectorized]
    return -min(dims) if dims else 0


def nesting_overflow(what: str, site: str, nesting: int, shape: tuple | None = None) -> ObjectiveError:
    """The refusal of a site in more plate dims than the particle plate and ``nesting`` plate dims allow (a batch
    entered a plate deeper than the ``max_plate_nesting`` guessed on the first batch, or given): Pyro put that
    plate left of the particle plate, where the particles' log-weights would be mixed with its terms.  With the
    log-density's ``shape`` known, the extra dims may also come from a value that broadcasts against the particle
    dim (a sampled ``z`` reshaped as though it had none, ``z.unsqueeze(0)``), for which a larger nesting is no
    cure: the message names both causes.

    :param str what: the objective, as the message names it.
    :param str site: the site's name.
    :param int nesting: the ``max_plate_nesting`` in use (without the particle plate).
    :param shape: the site's log-density's shape, when known.
    :returns: the :class:`~hybridpgm.errors.ObjectiveError` to raise."""
    found = "lies in more plate dims" if shape is None else f"has a log-density of shape {tuple(shape)}, more dims"
    need = nesting + 1 if shape is None else max(len(shape) - 1, nesting + 1)
    deeper = ("this batch entered a deeper plate, which went left of the particle plate; pass max_plate_nesting= "
              f"the deepest plate nesting of any batch, without the particle plate (here at least {need})")
    if shape is not None:
        deeper = (f"either {deeper}, or the program reshaped a sampled value as though it had no particle dim in "
                  "front (z.unsqueeze(0), z[None], z.view(1, -1)) and it broadcast against the particle dim: index "
                  "and reshape sampled values from the right (z.unsqueeze(-2), z[..., None, :]), as under any "
                  "vectorized plate")
    return ObjectiveError(f"{what}: site {site!r} {found} than the particle plate and max_plate_nesting={nesting} "
                          f"(given, or guessed on the first batch) allow: {deeper}")


#: torch's errors for a tensor of several elements used as one number, an index or a branch condition
_SCALAR_ERRORS = ("only one element tensors", "cannot be converted to Scalar", "with more than one value is ambiguous",
                  "only integer tensors of a single element")


@contextlib.contextmanager
def vectorized_pass(what: str, num_particles: int, nesting: int) -> Iterator[None]:
    """A context for running a model and guide once for all ``num_particles`` particles under a particle plate:
    torch's error for a sampled tensor used as a Python number, index or condition (``range(int(n))``,
    ``if z > 0``: stochastic control flow, which needs one particle at a time) becomes an
    :class:`~hybridpgm.errors.ObjectiveError` saying so, and Pyro's validation error for a plate deeper than the
    nesting becomes :func:`nesting_overflow`'s; the original is kept as ``__cause__``.  Other errors pass as
    they are.

    :param str what: the objective, as the message names it.
    :param int num_particles: :math:`K`.
    :param int nesting: the programs' ``max_plate_nesting`` (without the particle plate)."""
    try:
        yield
    except (ValueError, RuntimeError, TypeError) as e:
        if isinstance(e, HybridPGMError):
            raise
        text = str(e)
        overflow = re.match(r'at site "([^"]*)", plate stack overflow', text)
        if overflow is not None:
            raise nesting_overflow(what, overflow.group(1), nesting) from e
        if any(part in text for part in _SCALAR_ERRORS):
            raise ObjectiveError(
                f"{what} runs the model and the guide once for all K={num_particles} particles, vectorized under an "
                "outer pyro.plate (every sampled value carries a particle dim in front), and the program used a "
                f"sampled tensor as one number, index or condition ({text.splitlines()[0]}): stochastic control flow "
                "(a number of sites or a branch decided by a sampled value) needs one particle at a time, which "
                "this objective cannot do.  In hybridpgm.fit, SVIObjective(model, guide) with its default "
                "DirectTrace_ELBO(num_particles=K) draws the particles one by one (the ELBO, not an importance-"
                "weighted bound); under pyro.infer.SVI, pyro.infer.TraceGraph_ELBO and pyro.infer."
                "ReweightedWakeSleep(vectorize_particles=False) do too (fit refuses them: they have no "
                "differentiable_loss)") from e
        raise
