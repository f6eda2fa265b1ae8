"""``global_factor`` is exported from ``hybridpgm.infer``, and the step's refusal of IWAE calls a ``global_factor``
a site, not a latent site (hybridpgm/infer/global_share.py, ``GlobalSites``; the early check of split_refusal.py
already did).  Before, the step said "the latent site(s) ['ridge']" of a regulariser."""

import pytest

import hybridpgm.infer
from hybridpgm import SVIObjective
from hybridpgm.errors import ConfigError
from hybridpgm.infer import IWAE
from hybridpgm.infer.global_share import global_factor
from hybridpgm.train.update_scope import micro_batch
from tests.infer.global_share_cases import BayesRegression, regression
from tests.infer.test_global_share_factor import Regularised, _data


def test_global_factor_is_exported_from_hybridpgm_infer():
    assert hybridpgm.infer.global_factor is global_factor
    assert "global_factor" in hybridpgm.infer.__all__


def test_the_step_refusal_of_iwae_calls_a_global_factor_a_site():
    m = Regularised(True)
    objective = SVIObjective(m.model, m.guide, IWAE(num_particles=2))
    x, y = _data(8)
    with micro_batch(0.5), pytest.raises(ConfigError, match=r"IWAE: the site\(s\) \['ridge'\] lie outside"):
        objective.loss("elbo", (x[:4], y[:4]))
    assert objective._global_sites.factors == {"ridge"}


def test_the_step_refusal_of_iwae_calls_a_global_latent_a_latent_site():
    m = BayesRegression()
    objective = SVIObjective(m.model, m.guide, IWAE(num_particles=2))
    x, y = regression(8)
    with micro_batch(0.5), pytest.raises(ConfigError, match=r"IWAE: the latent site\(s\) \['w'\] lie outside"):
        objective.loss("elbo", (x[:4], y[:4]))


def test_global_sites_keep_their_factors_through_a_copy():
    import copy
    import pickle

    from hybridpgm.infer.global_share import GlobalSites

    sites = GlobalSites({"w", "l2"}, {"l2"})
    for clone in (pickle.loads(pickle.dumps(sites)), copy.deepcopy(sites)):
        assert clone == {"w", "l2"} and clone.factors == {"l2"} and isinstance(clone, GlobalSites)
