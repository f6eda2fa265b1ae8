"""Command-line recipes: ``hybridpgm train <model>``.

A recipe is a module with ``add_arguments(parser, model)``, ``run(args) ->
metrics`` and, for the commands that work from a run folder,
``evaluate(saved, run_dir, args)`` and ``sample(saved, run_dir, args)``;
:data:`RECIPES` maps each model name to its recipe and a one-line
description.  Registration is explicit.  Every recipe writes the run folder
layout of :mod:`hybridpgm.recipes.common`.
"""

from hybridpgm.recipes import bayes_net, crf, deep_energy, gan, gp, rbm, sbn, vae

#: model name -> (recipe module, description)
RECIPES = {
    "aavae": (gan, "adversary-activated VAE (Hu et al. 2018)"),
    "bayes-net": (bayes_net, "Bayesian network (pgmpy/BIF) learned from incomplete data, exact queries"),
    "crf": (crf, "linear-chain CRF tagger on a generated HMM tagging task (Lafferty et al. 2001)"),
    "dbm": (deep_energy, "deep Boltzmann machine: pretraining, PCD, log Z by AIS (Salakhutdinov & Hinton 2009)"),
    "dbn": (deep_energy, "deep belief net: greedy layer-wise CD-k (Hinton et al. 2006)"),
    "dkl": (gp, "deep kernel learning: an MLP under an exact GP (Wilson et al. 2016)"),
    "gan": (gan, "generative adversarial network (Goodfellow et al. 2014) as variational EM"),
    "gp-lstm": (gp, "GP-LSTM on a statsmodels time series (Al-Shedivat et al. 2017)"),
    "infogan": (gan, "InfoGAN: a GAN with an interpretable code (Chen et al. 2016)"),
    "iwae": (vae, "VAE trained with the importance-weighted bound (Burda et al. 2016)"),
    "iwgan": (gan, "importance-weighted GAN (Hu et al. 2018)"),
    "rbm": (rbm, "restricted Boltzmann machine: CD-k / PCD, log Z by AIS"),
    "sbn": (sbn, "sigmoid belief net: wake-sleep / RWS / NVIL / VIMCO"),
    "vae": (vae, "variational autoencoder trained with the ELBO (Kingma & Welling 2014)"),
}

__all__ = ["RECIPES"]
