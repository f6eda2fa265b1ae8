"""Diagnostics: ArviZ conversion, the PSIS check of variational inference, plots.

Names resolve lazily, so ``import hybridpgm.diagnostics`` loads neither ArviZ
nor matplotlib until a converter or a plot is first used.  The entry point for
a trained Pyro guide is :func:`from_pyro_svi` (named like ArviZ's
``from_numpyro_svi``).
"""

from hybridpgm._lazy import lazy_exports
# eager: the function check_vi shares its module's name
from hybridpgm.diagnostics.check_vi import VICheck, check_vi, good_khat, pareto_khat  # noqa: F401 (re-exported)

_MODULES = {
    "gan_metrics": ("RingCoverage", "clustering_accuracy", "inception_score", "ring_coverage", "target_accuracy",
                    "train_classifier"),
    "arviz_data": ("make_inference_data",),
    "categorical_data": ("from_categorical",),
    "sampler_data": ("from_importance", "from_mcmc"),
    "svi_data": ("from_pyro_svi", "from_svi"),
    "plots": ("plot_coverage", "plot_image_grid", "plot_khat", "plot_log_weights", "plot_loss_curves",
              "plot_sequence_marginals"),
}
__getattr__, __dir__ = lazy_exports(
    __name__, {name: f"{__name__}.{module}" for module, names in _MODULES.items() for name in names}, globals())

__all__ = sorted(["VICheck", "check_vi", "good_khat", "pareto_khat"]
                 + [name for names in _MODULES.values() for name in names])
