"""Exact samples of a discrete MRF from one contraction: forward filtering, backward sampling on the cached plan.

Split from :mod:`hybridpgm.infer.mrf_exact`, which re-exports :func:`exact_sample` (and the spaces, batches and
limits it describes hold here too).  The forward contraction runs in probability space where the queries use it
(:func:`~hybridpgm.infer.mrf_operands.probability_dtype`), the models under the floor (or underflowing in a
conditional) sampled again, alone, in log space, on max-shifted operands and renormalised steps
(:mod:`hybridpgm.infer.mrf_log_space`; backward sampling conditions on those steps' arguments,
:mod:`hybridpgm.graphs.plan_sampling`).
"""

from __future__ import annotations

import math

import torch

from hybridpgm.checks import sample_count
from hybridpgm.errors import EvidenceError
from hybridpgm.graphs.factor_graph import FactorGraph
from hybridpgm.graphs.plan_sampling import sample_plan
from hybridpgm.infer.mrf_log_space import _log_operands
from hybridpgm.infer.mrf_operands import _exactly, _folded, _prob_operands, probability_dtype, probability_floor
from hybridpgm.infer.mrf_plan import _Structure, _structure
from hybridpgm.infer.mrf_rows import in_row_chunks
from hybridpgm.keyword_alias import keyword_only_soon

__all__ = ["exact_sample"]


@keyword_only_soon("generator")
def exact_sample(fg: FactorGraph, num_samples: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Independent exact samples (given evidence), all drawn from one contraction (per chunk of rows).

    Forward filtering, backward sampling on the cached plan (:func:`~hybridpgm.graphs.plan_sampling.sample_plan`):
    one contraction of the batch (in probability space where :func:`~hybridpgm.infer.mrf_exact.exact_log_partition`
    contracts in it, the models under the floor redone in log space), then the variables each step summed out,
    drawn in reverse step order given those already drawn.  A batch over
    :data:`~hybridpgm.infer.mrf_exact.EXACT_MAX_BYTES` is sampled a chunk of rows at a time: each row's samples
    still follow its exact conditional, but with a ``generator`` its draws differ from those of one call over the
    whole batch (the uniforms are consumed chunk by chunk).

    :param FactorGraph fg: the model, batch size ``B``.
    :param int num_samples: ``N``.
    :param generator: the source of randomness (on the model's device).
    :returns: ``[N, B, V]`` long.
    :raises EvidenceError: when the evidence of a model has probability zero.
    """
    return _sample(fg, sample_count(num_samples, "exact_sample num_samples"), generator)[0]


def _sample(fg: FactorGraph, num_samples: int, generator: torch.Generator | None = None,
            with_log_prob: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(samples [N, B, V], log p(x | evidence) [N, B] or None)``: the forward contraction in probability space
    where queries use it (:func:`probability_dtype`), the models under the floor (or underflowing in a conditional)
    sampled again, alone, in log space; under autocast in at least float32 (as
    :func:`~hybridpgm.infer.mrf_exact._log_partition`)."""
    return _exactly(_sample_exact, fg, num_samples, generator, with_log_prob)


def _sample_exact(fg: FactorGraph, num_samples: int, generator: torch.Generator | None,
                  with_log_prob: bool) -> tuple[torch.Tensor, torch.Tensor | None]:
    from hybridpgm.infer.mrf_exact import _rows_per_call  # its limit is read (and patched) there

    st = _structure(fg)
    rows = _rows_per_call(st, fg.batch_size, fg.unary.dtype)
    if rows < fg.batch_size:
        x, log_z, log_p = in_row_chunks(fg, rows, lambda sub, _: _sample_rows(sub, st, num_samples, generator,
                                                                              with_log_prob), (1, 0, 1))
    else:
        x, log_z, log_p = _sample_rows(fg, st, num_samples, generator, with_log_prob)
    impossible = (log_z == -math.inf).nonzero().flatten().tolist()
    if impossible:
        raise EvidenceError(f"exact sampling: the evidence of model(s) {impossible} has probability zero")
    return x, log_p


def _in_log_space(st: _Structure, stacks: list, alone: list, num_samples: int, generator: torch.Generator | None,
                  with_log_prob: bool):
    """:func:`~hybridpgm.graphs.plan_sampling.sample_plan` in log space on the max-shifted operands
    (:func:`~hybridpgm.infer.mrf_log_space._log_operands`), its ``log_z`` with their maxima added back."""
    ops, shift = _log_operands(st, stacks, alone)
    got = sample_plan(st.plan, ops, range(len(st.cards)), num_samples, generator, with_log_prob)
    return got._replace(log_z=(got.log_z.to(torch.float64) + shift).to(got.log_z.dtype))


def _sample_rows(fg: FactorGraph, st: _Structure, num_samples: int, generator: torch.Generator | None,
                 with_log_prob: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """``(samples [N, B, V], log Z [B], log p [N, B] or None)`` of a batch that fits, from one contraction."""
    with torch.no_grad():
        stacks, alone = _folded(fg, st, fg.unary)
        work = probability_dtype(fg.unary.dtype, st.log_states)
        if work is None:
            x, log_z, log_p, _ = _in_log_space(st, stacks, alone, num_samples, generator, with_log_prob)
        else:
            ops, _ = _prob_operands(st, [t.to(work) for t in stacks], [t.to(work) for t in alone])
            x, log_z, log_p, ok = sample_plan(st.plan, ops, range(fg.num_vars), num_samples, generator,
                                              with_log_prob, "prob")
            ok &= log_z > math.log(probability_floor(work, st.log_states))
            if not bool(ok.all()):
                bad = (~ok).nonzero().flatten()
                again = _in_log_space(st, [t.index_select(0, bad) for t in stacks],
                                      [t.index_select(0, bad) for t in alone], num_samples, generator, with_log_prob)
                x[:, bad], log_z[bad] = again.x, again.log_z.to(log_z.dtype)
                if log_p is not None:
                    log_p[:, bad] = again.log_p.to(log_p.dtype)
            log_p = log_p.to(fg.unary.dtype) if log_p is not None else None
    return x, log_z, log_p
