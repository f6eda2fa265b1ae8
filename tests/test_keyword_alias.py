"""renamed_keyword: the old keyword of a renamed parameter still works for one release, with a FutureWarning."""

import inspect
import warnings

import pytest
import torch

from hybridpgm.errors import ConfigError
from hybridpgm.keyword_alias import keyword_only_soon, renamed_keyword


class _Model:
    @renamed_keyword(n="num_samples")
    def sample(self, num_samples, mean=True):
        """Draw ``num_samples``."""
        return num_samples, mean


def test_new_and_positional_calls_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _Model().sample(3) == (3, True) and _Model().sample(num_samples=3, mean=False) == (3, False)


def test_the_old_keyword_warns_naming_the_new_one_at_the_callers_line():
    with pytest.warns(FutureWarning, match=r"_Model\.sample: the keyword n= is renamed num_samples=") as record:
        assert _Model().sample(n=4, mean=False) == (4, False)
    assert [w.filename for w in record] == [__file__]


@pytest.mark.parametrize("args, kwargs", [((3,), {"n": 3}), ((), {"num_samples": 3, "n": 3})])
def test_both_names_at_once_are_refused(args, kwargs):
    with pytest.raises(ConfigError, match=r"_Model\.sample got both num_samples= and its old name n="):
        _Model().sample(*args, **kwargs)


def test_the_wrapper_keeps_name_doc_and_signature():
    assert _Model.sample.__name__ == "sample" and _Model.sample.__doc__ == "Draw ``num_samples``."
    assert list(inspect.signature(_Model.sample).parameters) == ["self", "num_samples", "mean"]


def test_a_keyword_only_new_name_and_a_wrong_declaration():
    @renamed_keyword(num="size")
    def f(*, size):
        return size

    with pytest.warns(FutureWarning):
        assert f(num=2) == 2
    with pytest.raises(TypeError, match="has no parameter 'num_samples'"):
        renamed_keyword(n="num_samples")(lambda count: count)
    with pytest.raises(TypeError, match="still has a parameter 'n'"):
        renamed_keyword(n="num_samples")(lambda n, num_samples: n)


class _Net:
    @keyword_only_soon("evidence", "context")
    def marginals(self, method="exact", *, evidence=None, context=None, **options):
        """Marginals."""
        return method, evidence, context, options


def test_keyword_calls_of_a_soon_keyword_only_parameter_do_not_warn():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert _Net().marginals("bp", evidence=1, num_iters=3) == ("bp", 1, None, {"num_iters": 3})
        assert _Net().marginals() == ("exact", None, None, {})


def test_old_positional_calls_bind_as_before_and_warn_at_the_callers_line():
    with pytest.warns(FutureWarning, match=r"_Net\.marginals: pass evidence=, context= by keyword; passing them by "
                                           r"position will stop") as record:
        assert _Net().marginals("bp", 1, 2, num_iters=3) == ("bp", 1, 2, {"num_iters": 3})
    assert [w.filename for w in record] == [__file__]
    with pytest.warns(FutureWarning, match="pass evidence= by keyword; passing it by"):
        assert _Net().marginals("bp", 1) == ("bp", 1, None, {})


def test_soon_keyword_only_conflicts_and_surplus_are_refused():
    with pytest.raises(ConfigError, match=r"_Net\.marginals got evidence= both by position and by keyword"):
        _Net().marginals("bp", 1, evidence=2)
    with pytest.raises(TypeError, match=r"takes at most 4 positional arguments \(5 given\)"):
        _Net().marginals("bp", 1, 2, 3)


def test_soon_keyword_only_keeps_the_signature_and_checks_its_declaration():
    assert _Net.marginals.__doc__ == "Marginals."
    assert inspect.signature(_Net.marginals).parameters["evidence"].kind is inspect.Parameter.KEYWORD_ONLY
    with pytest.raises(TypeError, match="has no keyword-only parameter 'evidence'"):
        keyword_only_soon("evidence")(lambda method, evidence=None: method)


def _public_soon_keyword_only():
    from hybridpgm.data import data_loader
    from hybridpgm.diagnostics import from_mcmc
    from hybridpgm.energy import DBN, RBM
    from hybridpgm.data import training_data
    from hybridpgm.generative import VAE, MLPGenerator, SigmoidBeliefNet
    from hybridpgm.graphs import CRFHead
    from hybridpgm.infer import BeliefPropagation
    from hybridpgm.graphs import MarkovNet
    from hybridpgm.infer import NVIL_ELBO, RWS, ChromaticGibbs, ReweightedWakeSleepELBO
    from hybridpgm.infer.mrf_exact import exact_sample
    from hybridpgm.data.hmm_tagging import random_hmm, sample_hmm
    from hybridpgm.data.toy import ring_of_gaussians
    from hybridpgm.diagnostics.importance_resampling import resample_indices
    from hybridpgm.generative import SBNGibbs

    return [(ring_of_gaussians, ["generator", "return_modes"]), (random_hmm, ["generator"]),
            (sample_hmm, ["generator"]), (resample_indices, ["generator"]), (SBNGibbs.sweep, ["generator"]),
            (data_loader, ["shuffle", "seed", "drop_last"]), (from_mcmc, ["log_likelihood"]),
            (NVIL_ELBO.__init__, ["variance_normalization", "centering"]),
            (ReweightedWakeSleepELBO.__init__, ["wake_phi", "sleep_phi", "num_sleep_particles"]),
            (RWS.__init__, ["wake_phi", "sleep_phi"]), (ChromaticGibbs.__call__, ["init", "return_trace", "generator"]),
            (exact_sample, ["generator"]), (MarkovNet.sample, ["method", "evidence", "generator"]),
            (MarkovNet.marginals, ["evidence", "context"]), (MarkovNet.map_assignment, ["context", "method"]),
            (DBN.sample, ["mean", "generator"]), (RBM.pseudo_log_likelihood, ["exact", "generator"]),
            (VAE.__init__, ["likelihood", "batch_norm", "name"]), (VAE.sample, ["mean", "generator"]),
            (SigmoidBeliefNet.__init__, ["validate_data", "name"]),
            (BeliefPropagation.__init__, ["max_product", "check_every"]), (MLPGenerator.__init__, ["batch_norm"]),
            (CRFHead.__init__, ["boundary"]), (training_data, ["labels"])]


def test_flags_and_generators_of_the_public_api_are_keyword_only_with_a_deprecation_period():
    """Found by an API audit: these flags and generators could be passed by position where sibling APIs take them
    by keyword only (``data_loader(x, 4, True, True)`` put ``True`` into ``seed``)."""
    for func, names in _public_soon_keyword_only():
        params = inspect.signature(func).parameters
        assert all(params[name].kind is inspect.Parameter.KEYWORD_ONLY for name in names), func.__qualname__
        legacy = getattr(func, "__legacy_positional__", (0, ()))[1]  # set by keyword_only_soon (through no_grad too)
        # every name that was positional before is still accepted by position, with a warning ("generator" is
        # new where it is not in the old order)
        assert legacy and all(name in legacy or name == "generator" for name in names), \
            f"{func.__qualname__} keeps no deprecation period for positional calls"


def test_old_positional_calls_of_data_loader_and_exact_sample_still_answer_with_a_warning():
    from hybridpgm.data import data_loader
    from hybridpgm.graphs import ising_grid
    from hybridpgm.infer.mrf_exact import exact_sample

    x = torch.arange(10.0)
    with pytest.warns(FutureWarning, match=r"data_loader: pass shuffle=, seed=, drop_last= by keyword"):
        old = [b for b in data_loader(x, 4, True, 3, True)]
    assert [torch.equal(a, b) for a, b in zip(old, data_loader(x, 4, shuffle=True, seed=3, drop_last=True))] == \
        [True, True]
    fg = ising_grid(2, 2, 0.3).factor_graph()
    with pytest.warns(FutureWarning, match=r"exact_sample: pass generator= by keyword"):
        old = exact_sample(fg, 5, torch.Generator().manual_seed(1))
    assert torch.equal(old, exact_sample(fg, 5, generator=torch.Generator().manual_seed(1)))
