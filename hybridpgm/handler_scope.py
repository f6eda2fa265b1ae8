"""Keep the Pyro programs that hybridpgm runs internally out of the caller's effect handlers.

Several methods run a Pyro program to *compute* something -- a log-likelihood, an ELBO, importance weights,
ancestral samples -- and return a tensor: :meth:`SigmoidBeliefNet.exact_log_likelihood
<hybridpgm.generative.SigmoidBeliefNet.exact_log_likelihood>`, :meth:`VAE.log_likelihood
<hybridpgm.generative.VAE.log_likelihood>`, ``sample`` ...  Their sites are an implementation detail, not part
of the caller's program.  Yet Pyro's handlers live on one global stack, so a method called inside a user's
model, under ``poutine.scale`` (KL annealing), ``poutine.condition``, an outer ``pyro.plate`` or the trace of
``Trace_ELBO`` would have its internal sites scaled, conditioned, broadcast and recorded there:
``pyro.factor("ll", sbn.exact_log_likelihood(x).sum())`` inside a model counted the likelihood twice (once as
the factor, once through the leaked sites), and ``sbn.sample`` under ``poutine.condition(data={"x": ...})``
returned the conditioned value.

:func:`isolated_from_handlers` runs such a method as a program of its own:

* Pyro's handler stack (``pyro.poutine.runtime._PYRO_STACK``) is emptied for the call and restored afterwards
  (also by an exception), so **no** handler of the caller -- ``trace``, ``scale``, ``mask``, ``condition``,
  ``do``, ``plate``, ``enum``, ``replay``, ``block``, ``lift`` -- sees or alters a message of the internal
  program.  (``poutine.block()`` alone hides the messages from the handlers outside it too -- a message
  travels from the innermost handler outwards and the block stops it, so an outer ``scale`` or ``condition``
  never sees it -- but it leaves the plate dimensions of the next point shared.)
* Plate dimensions are allocated afresh (``_DIM_ALLOCATOR``): Pyro allocates them globally, so with a mere
  ``poutine.block`` the internal ``pyro.plate("data", dim=-1)`` collided with a user's ``pyro.plate`` at
  ``dim=-1`` (``ValueError: at plates "data" and "rows", collide at dim=-1``).  Inside, the method sees no
  outer plate: its result has its own shape (``[B]`` for ``B`` rows), never broadcast to the caller's plates.
* The enumeration-dimension allocator (``_ENUM_ALLOCATOR``), which an internal ``poutine.enum`` resets, is
  restored, so an enclosing ``TraceEnum_ELBO`` keeps allocating where it was.

The whole region, from the snapshot to the restore, runs while holding hybridpgm's process-wide lock
(:func:`~hybridpgm.global_state_lock.holding_global_state`): the stack and allocators are Pyro's module globals,
one per process, so two threads emptying and refilling them at once wiped each other's handlers and wrote back
snapshots that held the other thread's (``Messenger is not on the bottom of the stack``, a ``TraceMessenger``
left on the stack after both calls returned).

The returned tensor stays differentiable: used as ``pyro.factor("ll", value)`` in a model, the factor is the
caller's one site.  Since the internal ``pyro.param`` sites are hidden as well, a ``pyro.infer.SVI`` that should
*train* the network through such a factor must see its parameters, e.g. with ``pyro.module("sbn", sbn)`` in the
model (or train with :func:`hybridpgm.fit`, which optimizes the module's parameters directly).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator, TypeVar

from pyro.poutine import runtime
from pyro.poutine.messenger import Messenger

from hybridpgm.global_state_lock import holding_global_state
from hybridpgm.interrupt_scope import restored_on_error

__all__ = ["DiscreteSitesDrawnExactly", "isolated_from_handlers", "outside_handlers"]

F = TypeVar("F", bound=Callable[..., Any])


@contextlib.contextmanager
def outside_handlers() -> Iterator[None]:
    """A context in which Pyro code runs as if no effect handler were active: an empty handler stack, a fresh
    plate-dimension allocator and, on exit (also by an exception), the caller's stack, plate dimensions and
    enumeration allocator restored exactly as they were.  It holds hybridpgm's process-wide lock throughout
    (:func:`~hybridpgm.global_state_lock.holding_global_state`): no other thread's hybridpgm call changes the
    stack between the snapshot and the restore."""
    with holding_global_state():
        stack = runtime._PYRO_STACK  # the one list every Messenger pushes onto: emptied and refilled in place
        saved_stack = list(stack)
        dims = runtime._DIM_ALLOCATOR
        saved_dims = dims._stack
        enum = runtime._ENUM_ALLOCATOR
        saved_enum = dict(vars(enum))
        if "dim_to_id" in saved_enum:
            saved_enum["dim_to_id"] = dict(saved_enum["dim_to_id"])
        stack.clear()
        dims._stack = []
        try:
            yield
        finally:
            stack[:] = saved_stack
            dims._stack = saved_dims
            vars(enum).clear()
            vars(enum).update(saved_enum)


def isolated_from_handlers(fn: F) -> F:
    """Decorate ``fn`` (a method that runs a Pyro program internally and returns a value) to run
    :func:`outside_handlers`: the caller's effect handlers neither see nor alter its sites."""
    @functools.wraps(fn)
    def isolated(*args: Any, **kwargs: Any) -> Any:
        # the lock first (restored_on_error's snapshot then sees no other thread's call); an interrupt leaves no
        # grad/autocast state behind
        with holding_global_state(), restored_on_error(), outside_handlers():
            return fn(*args, **kwargs)
    return isolated  # type: ignore[return-value]


class DiscreteSitesDrawnExactly(Messenger):
    """A handler that changes nothing and marks a run in which the *caller* draws every discrete site that the
    model enumerates and the guide lacks from its exact conditional posterior (with
    :func:`pyro.infer.infer_discrete`) and sums the local ones out of the pointwise likelihood, as
    :func:`~hybridpgm.diagnostics.from_pyro_svi` does.  An empty guide is then right, so
    :meth:`BayesNet.guide <hybridpgm.graphs.BayesNet.guide>`, which refuses data with missing entries when no
    enumeration is active (a plain ``Predictive`` or ``Trace_ELBO`` would draw them from the prior), runs under
    it."""
