"""Inference algorithms and training objectives, one per module.

Registration is an explicit import; ``__all__`` is kept alphabetical.
"""

from hybridpgm.infer.adversarial import AAVAE, ADA, GAN, IWGAN, InfoGAN
from hybridpgm.infer.ais import AIS, AISResult
from hybridpgm.infer.belief_propagation import BeliefPropagation, BPResult
from hybridpgm.infer.contrastive_divergence import ContrastiveDivergence, PersistentCD
from hybridpgm.infer.crf_likelihood import CRFLikelihood, token_accuracy
from hybridpgm.infer.direct_trace_elbo import DirectTrace_ELBO
from hybridpgm.infer.evidence_table import EvidenceTable
from hybridpgm.infer.gibbs import Gibbs
from hybridpgm.infer.global_share import global_factor
from hybridpgm.infer.grouped_optim import GroupedAdam, GroupedOptim
from hybridpgm.infer.iwae import IWAE
from hybridpgm.infer.log_z import LogZEstimate, estimate_log_z
from hybridpgm.infer.mean_field import MeanField, MeanFieldResult
from hybridpgm.infer.mrf_exact import exact_log_partition, exact_map, exact_marginals, exact_sample
from hybridpgm.infer.mrf_gibbs import ChromaticGibbs
from hybridpgm.infer.nvil import NVIL, NVIL_ELBO, NVILBaselines
from hybridpgm.infer.raise_ais import RAISE, LikelihoodBounds, RAISEResult, log_likelihood_bounds
from hybridpgm.infer.rws import RWS, ReweightedWakeSleepELBO
from hybridpgm.infer.svi import SVIObjective
from hybridpgm.infer.vimco import VIMCO, VIMCO_ELBO
from hybridpgm.infer.wake_sleep import WakeSleep, WakeSleepELBO

__all__ = [
    "AAVAE",
    "ADA",
    "AIS",
    "AISResult",
    "BPResult",
    "BeliefPropagation",
    "CRFLikelihood",
    "ChromaticGibbs",
    "ContrastiveDivergence",
    "DirectTrace_ELBO",
    "EvidenceTable",
    "GAN",
    "Gibbs",
    "GroupedAdam",
    "GroupedOptim",
    "IWAE",
    "IWGAN",
    "InfoGAN",
    "LikelihoodBounds",
    "LogZEstimate",
    "MeanField",
    "MeanFieldResult",
    "NVIL",
    "NVILBaselines",
    "NVIL_ELBO",
    "PersistentCD",
    "RAISE",
    "RAISEResult",
    "RWS",
    "ReweightedWakeSleepELBO",
    "SVIObjective",
    "VIMCO",
    "VIMCO_ELBO",
    "WakeSleep",
    "WakeSleepELBO",
    "estimate_log_z",
    "exact_log_partition",
    "exact_map",
    "exact_marginals",
    "exact_sample",
    "global_factor",
    "log_likelihood_bounds",
    "token_accuracy",
]
