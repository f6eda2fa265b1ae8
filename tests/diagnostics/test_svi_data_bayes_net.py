"""from_pyro_svi on a BayesNet with missing entries (hybridpgm/diagnostics/svi_data.py): the net's own guide,
each node's posterior, and a masked entry with no log-likelihood."""

import pyro
import pytest
import torch

from hybridpgm.diagnostics import from_pyro_svi
from hybridpgm.errors import DataError
from tests.diagnostics.svi_models import BN_DATA, PA, PB, _chain_net, obs_mask_guide, obs_mask_model


@pytest.mark.slow  # statistical: 800 draws against the exact posterior
@pytest.mark.filterwarnings("ignore:from_pyro_svi. every posterior draw has the same")  # no continuous latent
def test_from_pyro_svi_takes_a_bayes_net_s_own_guide_and_reports_each_node_s_posterior():
    """Before: bn.guide refused the data ('BayesNet.guide is empty ...'), and with an empty guide the posterior
    held 'a_unobserved', whose entries in the rows where 'a' is observed were uniform noise."""
    bn = _chain_net()
    pyro.set_rng_seed(0)
    num_samples = 800
    idata = from_pyro_svi(bn.model, bn.guide, BN_DATA, num_samples=num_samples)
    assert set(idata.posterior.data_vars) == {"a", "b"}
    exact = bn.posterior(["a", "b"], evidence=bn.columns(BN_DATA))
    for node in ("a", "b"):
        draws = torch.as_tensor(idata.posterior[node].values[0])  # S x N
        assert draws.shape == (num_samples, len(BN_DATA))
        observed = BN_DATA[:, "abc".index(node)] >= 0
        assert (draws[:, observed] == BN_DATA[observed, "abc".index(node)]).all()  # the observed value, always
        frequency = draws.double().mean(0)
        p = exact[node][:, 1].double().detach()
        tolerance = 4 * (p * (1 - p) / num_samples).sqrt() + 1e-9  # 4 standard errors
        assert ((frequency - p).abs() <= tolerance).all(), (node, frequency, p)


@pytest.mark.filterwarnings("ignore:from_pyro_svi. every posterior draw has the same")  # no continuous latent
def test_from_pyro_svi_gives_a_masked_entry_no_log_likelihood():
    """Before: the missing entries of 'a_observed' scored log p(a = placeholder), as if observed; then 0, which
    az.loo still counted as a data point.  Now the log-likelihood of node 'a' lists its observed rows only."""
    bn = _chain_net()
    pyro.set_rng_seed(0)
    idata = from_pyro_svi(bn.model, bn.guide, BN_DATA, num_samples=20)
    log_lik = torch.as_tensor(idata.log_likelihood["a"].values[0])
    observed = BN_DATA[:, 0] >= 0
    torch.testing.assert_close(log_lik, PA.log()[BN_DATA[observed, 0]].expand(20, -1))
    # b's pointwise log-likelihood sums its missing parent out: log p(b_n) where a_n is missing
    log_lik_b = torch.as_tensor(idata.log_likelihood["b"].values[0])
    assert log_lik_b.shape == (20, 3)  # b is missing in rows 3 and 4
    torch.testing.assert_close(log_lik_b[0, 0], (PA @ PB[:, 0]).log())


def test_from_pyro_svi_reports_a_pyro_obs_mask_site_as_its_node():
    y, mask = torch.tensor([0.5, 9.0, 1.5]), torch.tensor([True, False, True])  # 9.0: a placeholder
    pyro.set_rng_seed(0)
    idata = from_pyro_svi(obs_mask_model, obs_mask_guide, y, mask, num_samples=200)
    assert set(idata.posterior.data_vars) == {"mu", "y"}
    draws = torch.as_tensor(idata.posterior["y"].values[0])
    assert (draws[:, mask] == y[mask]).all()
    assert abs(float(draws[:, 1].mean()) - 1.0) < 0.3 and float(draws[:, 1].std()) > 0.5  # drawn, ~N(mu, 1)
    assert torch.as_tensor(idata.log_likelihood["y"].values[0]).shape == (200, 2)  # the observed entries
    with pytest.raises(DataError, match=r"'y_unobserved' \(the missing entries of 'y': ask for 'y'\)"):
        from_pyro_svi(obs_mask_model, obs_mask_guide, y, mask, num_samples=5, return_sites=["y_unobserved"])
