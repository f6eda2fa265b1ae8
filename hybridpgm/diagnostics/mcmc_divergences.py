"""The divergent draws of a :class:`pyro.infer.MCMC` run, for :func:`~hybridpgm.diagnostics.from_mcmc`'s
``sample_stats``.

Pyro's kernels report their diagnostics per chain at the end of a run (HMC and NUTS: ``"divergences"``, the
indices of the divergent transitions counted from the end of warmup, so warmup ones are negative); the MCMC
object keeps one such dict per chain.  Its public :meth:`pyro.infer.MCMC.diagnostics` returns them along with
the split R-hat and the effective sample size of every site, which Pyro computes first and which need at least
4 draws per chain (a run of 1 to 3 draws raised Pyro's bare ``AssertionError``).  :func:`divergent_draws` reads
the kept per-chain dicts instead, and takes the public route only where this Pyro version does not keep them.
"""

from __future__ import annotations

from typing import Mapping

import pyro
import torch

from hybridpgm.errors import DataError

#: Draws per chain Pyro's :meth:`pyro.infer.MCMC.diagnostics` needs (its split R-hat asserts as many).
PYRO_DIAGNOSTICS_MIN_DRAWS = 4


def divergent_draws(mcmc: pyro.infer.MCMC, chains: int, draws: int) -> torch.Tensor | None:
    """``chains x draws`` bool: the post-warmup draws the kernel reported divergent (warmup ones left out; all
    ``False`` for a kernel reporting an empty list, as hybridpgm's :class:`~hybridpgm.infer.Gibbs` does), or
    ``None`` for a kernel whose diagnostics have no ``"divergences"`` entry (the base ``MCMCKernel``'s ``{}``).

    :param mcmc: a run MCMC object.
    :param int chains: its number of chains.
    :param int draws: its number of post-warmup draws per chain.
    :raises DataError: the MCMC object keeps no per-chain diagnostics (a Pyro version other than the one this
        library was written against) and the run has fewer than :data:`PYRO_DIAGNOSTICS_MIN_DRAWS` draws per
        chain, so Pyro's :meth:`~pyro.infer.MCMC.diagnostics` cannot give them either.
    """
    per_chain = getattr(mcmc, "_diagnostics", None)
    if isinstance(per_chain, (list, tuple)) and len(per_chain) == chains and all(
            isinstance(d, Mapping) for d in per_chain):
        if not any("divergences" in d for d in per_chain):
            return None
        reported = dict(enumerate(d.get("divergences", ()) for d in per_chain))
    elif draws >= PYRO_DIAGNOSTICS_MIN_DRAWS:
        reported = mcmc.diagnostics().get("divergences")
        if reported is None:
            return None
        reported = {int(str(key).split()[-1]): v for key, v in reported.items()}  # "chain 10" is chain 10
    else:
        raise DataError(f"from_mcmc cannot read the divergences of a run of {draws} draw(s) per chain: this Pyro "
                        f"version ({pyro.__version__}) keeps no per-chain diagnostics on the MCMC object, and "
                        f"mcmc.diagnostics() needs at least {PYRO_DIAGNOSTICS_MIN_DRAWS} draws per chain; run "
                        f"with num_samples >= {PYRO_DIAGNOSTICS_MIN_DRAWS}")
    diverging = torch.zeros(chains, draws, dtype=torch.bool)
    for chain, indices in reported.items():
        kept = [int(i) for i in indices if 0 <= i < draws]
        diverging[chain, kept] = True
    return diverging
