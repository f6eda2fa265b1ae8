"""Inference algorithms and training objectives, one per module.

Registration is an explicit import; ``__all__`` is kept alphabetical.
"""

from hybridpgm.infer.belief_propagation import BeliefPropagation, BPResult
from hybridpgm.infer.gibbs import Gibbs
from hybridpgm.infer.iwae import IWAE
from hybridpgm.infer.mean_field import MeanField, MeanFieldResult
from hybridpgm.infer.mrf_exact import exact_log_partition, exact_marginals, exact_sample
from hybridpgm.infer.mrf_gibbs import ChromaticGibbs
from hybridpgm.infer.svi import SVIObjective

__all__ = [
    "BPResult",
    "BeliefPropagation",
    "ChromaticGibbs",
    "Gibbs",
    "IWAE",
    "MeanField",
    "MeanFieldResult",
    "SVIObjective",
    "exact_log_partition",
    "exact_marginals",
    "exact_sample",
]
