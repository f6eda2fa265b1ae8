"""Command-line recipes: ``hybridpgm train <model>``.

A recipe is a module with ``add_arguments(parser, model)`` and ``run(args) ->
metrics``; :data:`RECIPES` maps each model name to its recipe and a
one-line description.  Registration is explicit.
"""

from hybridpgm.recipes import rbm, sbn, vae

#: model name -> (recipe module, description)
RECIPES = {
    "iwae": (vae, "VAE trained with the importance-weighted bound (Burda et al. 2016)"),
    "rbm": (rbm, "restricted Boltzmann machine: CD-k / PCD, log Z by AIS"),
    "sbn": (sbn, "sigmoid belief net: wake-sleep / RWS / NVIL / VIMCO"),
    "vae": (vae, "variational autoencoder trained with the ELBO (Kingma & Welling 2014)"),
}

__all__ = ["RECIPES"]
