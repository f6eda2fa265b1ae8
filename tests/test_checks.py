"""Argument checks (:mod:`hybridpgm.checks`).  Sample counts across the library: zero gives empty results of the
right shape and dtype; a negative count, a bool or a float raises ConfigError naming the method (before, some were
coerced: BayesNet.sample(2.5) drew 3 samples and sample(0) one; others failed inside torch or Pyro)."""

import re

import numpy as np
import pytest
import torch

from hybridpgm import checks
from hybridpgm.checks import sample_count
from hybridpgm.energy import DBM, DBN, RBM
from hybridpgm.errors import ConfigError
from hybridpgm.generative import VAE, SigmoidBeliefNet, gan_networks
from hybridpgm.graphs import LinearChainCRF, ising_grid, load_network
from hybridpgm.infer.adversarial import GAN
from hybridpgm.infer.exact import posterior_sample
from hybridpgm.infer.mrf_exact import exact_sample


def _first(out) -> torch.Tensor:
    return next(iter(out.values())) if isinstance(out, dict) else out


SAMPLERS = {
    "BayesNet.sample": (lambda n: load_network("asia").sample(n), ()),
    "BayesNet.sample (evidence)": (lambda n: load_network("asia").sample(n, evidence={"smoke": 1}), ()),
    "posterior_sample": (lambda n: posterior_sample(load_network("asia"), n, {"smoke": torch.tensor([0, 1])}),
                         (2,)),
    "MarkovNet.sample": (lambda n: ising_grid(2, 2, 0.5).sample(n, method="exact"), ()),
    "MarkovNet.sample (gibbs)": (lambda n: ising_grid(2, 2, 0.5).sample(n, num_sweeps=2), ()),
    "exact_sample": (lambda n: exact_sample(ising_grid(2, 2, 0.5).factor_graph(), n), (1, 4)),
    "MarkovNetDistribution.sample": (lambda n: ising_grid(2, 2, 0.5).distribution().sample((n, 2)), (2, 4)),
    "RBM.sample": (lambda n: RBM(6, 3).sample(n, steps=2), (6,)),
    "DBN.sample": (lambda n: DBN([6, 4, 3]).sample(n, steps=2), (6,)),
    "DBM.sample": (lambda n: DBM([6, 4, 3]).sample(n, steps=2), (6,)),
    "VAE.sample": (lambda n: VAE(6, 2).sample(n), (6,)),
    "SigmoidBeliefNet.sample": (lambda n: SigmoidBeliefNet([6, 4, 3]).sample(n), (6,)),
    "GAN.sample": (lambda n: GAN(*gan_networks("mlp", 2, noise_dim=3, hidden=(8,))).sample(n), (2,)),
    "LinearChainCRF.sample": (lambda n: LinearChainCRF(torch.randn(2, 5, 3), torch.randn(3, 3)).sample((n,)), (2, 5)),
}


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_zero_samples_are_empty_and_bad_counts_are_named(name):
    draw, trailing = SAMPLERS[name]
    one, none = _first(draw(1)), _first(draw(0))
    assert none.shape == (0,) + one.shape[1:] and one.shape[0] == 1 and none.dtype == one.dtype
    assert one.shape[1:1 + len(trailing)] == trailing
    for bad in (-1, 2.5, True, "3"):
        with pytest.raises(ConfigError, match=rf"{name.split()[0]}.* must be a non-negative integer, "
                                              rf"got {bad!r}"):
            draw(bad)


def test_integer_scalars_pass_as_themselves():
    assert sample_count(torch.tensor(3), "n") == 3 and type(sample_count(torch.tensor(3), "n")) is int
    with pytest.raises(ConfigError, match=r"^n must be a non-negative integer, got tensor\(1.5000\)$"):
        sample_count(torch.tensor(1.5), "n")


@pytest.mark.parametrize("value, expected", [(1, 1), (np.int64(3), 3), (torch.tensor(2), 2)])
def test_positive_int_accepts_integers_of_at_least_one(value, expected):
    from hybridpgm.checks import positive_int

    assert positive_int(value, "epochs") == expected and type(positive_int(value, "epochs")) is int


@pytest.mark.parametrize("value", [0, -2, 2.0, True, "3", None])
def test_positive_int_refuses_the_rest(value):
    from hybridpgm.checks import positive_int

    with pytest.raises(ConfigError, match=f"epochs must be a positive integer, got {re.escape(repr(value))}"):
        positive_int(value, "epochs")


@pytest.mark.parametrize("value, expected", [(1, 1.0), (0.25, 0.25), (np.float32(2.5), 2.5)])
def test_positive_real_accepts_finite_positive_reals(value, expected):
    from hybridpgm.checks import positive_real

    assert positive_real(value, "clip") == expected


@pytest.mark.parametrize("value", [0, -1.0, float("nan"), float("inf"), True, "1", None])
def test_positive_real_refuses_the_rest(value):
    from hybridpgm.checks import positive_real

    with pytest.raises(ConfigError, match="clip must be a finite number > 0"):
        positive_real(value, "clip")


@pytest.mark.parametrize("value", [0, -5, np.int64(7), 2**40])
def test_seed_of_accepts_any_integer(value):
    from hybridpgm.checks import seed_of

    assert seed_of(value, "seed") == int(value)


@pytest.mark.parametrize("value", [-2**63, 2**64 - 1])
def test_seed_of_accepts_the_ends_of_torch_s_range(value):
    from hybridpgm.checks import seed_of

    assert seed_of(value, "seed") == value
    torch.Generator().manual_seed(value)


@pytest.mark.parametrize("value", [2**64, -2**63 - 1, 10**30])
def test_seed_of_refuses_a_seed_torch_refuses(value):
    """Before, such a seed passed and torch.Generator.manual_seed raised a bare ValueError ('Overflow ...')."""
    from hybridpgm.checks import seed_of

    with pytest.raises(ConfigError, match=rf"data_loader seed must be an integer in \[-2\*\*63, 2\*\*64 - 1\] "
                                          rf".*got {value}$"):
        seed_of(value, "data_loader seed")
    with pytest.raises(ConfigError, match=r"load_dataset seed must be an integer in \[-2\*\*63, 2\*\*64 - 3\]"):
        seed_of(2**64 - 2, "load_dataset seed", draws=3)


@pytest.mark.parametrize("value", [1.5, True, "3", None])
def test_seed_of_refuses_the_rest(value):
    from hybridpgm.checks import seed_of

    with pytest.raises(ConfigError, match=f"load_dataset seed must be an integer, got {re.escape(repr(value))}"):
        seed_of(value, "load_dataset seed")


@pytest.mark.parametrize("value", [0, 1, 1.5, -0.1, float("nan"), True, "0.5", None])
def test_unit_fraction_refuses_what_is_not_strictly_between_0_and_1(value):
    from hybridpgm.checks import unit_fraction

    with pytest.raises(ConfigError, match=f"level must lie in \\(0, 1\\), got {re.escape(repr(value))}"):
        unit_fraction(value, "level")


def test_unit_fraction_accepts_numbers_in_the_open_interval():
    from hybridpgm.checks import unit_fraction

    assert unit_fraction(0.25, "level") == 0.25 and unit_fraction(np.float32(0.5), "level") == 0.5


def test_check_player_names_the_owner_and_its_players():
    from hybridpgm.checks import check_player

    check_player("elbo", ("elbo",), "SVIObjective")
    with pytest.raises(ConfigError, match="^SVIObjective has one player 'elbo', got 'wake'$"):
        check_player("wake", ("elbo",), "SVIObjective")
    with pytest.raises(ConfigError, match="^GAN has players 'discriminator' and 'generator', got 'critic'$"):
        check_player("critic", ("discriminator", "generator"), "GAN")
    with pytest.raises(ConfigError, match="^X has players 'a', 'b' and 'c', got None$"):
        check_player(None, ("a", "b", "c"), "X")


def _objectives():
    from hybridpgm.energy import ClassificationObjective, ReconstructionObjective
    from hybridpgm.gp import GPLSTM, DeepKernelGP, ExactMLLObjective, SemiStochasticObjective
    from hybridpgm.infer import NVIL, RWS, VIMCO, ContrastiveDivergence, CRFLikelihood, SVIObjective, WakeSleep
    from hybridpgm.nn import mlp

    sbn = SigmoidBeliefNet([6, 3])
    vae = VAE(6, 2)
    dbn = DBN([6, 4, 3])
    x = torch.rand(8, 2)
    windows = torch.rand(12, 4, 1)
    return {
        "SVIObjective": lambda: SVIObjective(vae.model, vae.guide),
        "VIMCO": lambda: VIMCO(sbn.model, sbn.guide, 2),
        "NVIL": lambda: NVIL(sbn.model, sbn.guide),
        "RWS": lambda: RWS(sbn.model, sbn.guide, 2),
        "WakeSleep": lambda: WakeSleep(sbn.model, sbn.guide),
        "ContrastiveDivergence": lambda: ContrastiveDivergence(RBM(6, 3)),
        "ReconstructionObjective": lambda: ReconstructionObjective(dbn.to_autoencoder()),
        "ClassificationObjective": lambda: ClassificationObjective(dbn.to_classifier(3)),
        "CRFLikelihood": lambda: CRFLikelihood(mlp([4, 3])),
        "GAN": lambda: GAN(*gan_networks("mlp", 2, noise_dim=3, hidden=(8,))),
        "ExactMLLObjective": lambda: ExactMLLObjective(DeepKernelGP(x, x[:, 0])),
        "SemiStochasticObjective": lambda: SemiStochasticObjective(GPLSTM(windows, windows[:, -1, 0], hidden_size=2)),
    }


@pytest.mark.parametrize("name", list(_objectives()))
def test_every_objective_refuses_an_unknown_player_with_a_config_error(name):
    """One class for one fault: the GP objectives raised ModelSpecError and the adversarial ones
    ObjectiveError, the others ConfigError."""
    objective = _objectives()[name]()
    assert "bogus" not in objective.players()
    with pytest.raises(ConfigError, match=rf"{type(objective).__name__} has (one player|players) .*got 'bogus'"):
        objective.loss("bogus", None)


@pytest.mark.parametrize("value", [None, torch.Generator(), torch.Generator().manual_seed(3)])
def test_generator_or_none_passes_a_generator_or_none(value):
    from hybridpgm.checks import generator_or_none

    assert generator_or_none(value, "f generator") is value


@pytest.mark.parametrize("value", [3, np.int64(3), 1.5, "g", torch.tensor(3), True])
def test_generator_or_none_refuses_the_rest(value):
    from hybridpgm.checks import generator_or_none

    with pytest.raises(ConfigError, match=rf"f generator must be a torch.Generator or None, got "
                                          rf"{type(value).__name__}"):
        generator_or_none(value, "f generator")


def _generator_entry_points():
    from hybridpgm import BayesNet
    from hybridpgm.generative import SBNGibbs
    from hybridpgm.gp import GPLSTM
    from hybridpgm.graphs.cpd import Table
    from hybridpgm.infer import ChromaticGibbs

    bn = BayesNet({"a": Table([0.3, 0.7]), "b": Table([[0.9, 0.1], [0.2, 0.8]], parents=["a"])})
    mn = ising_grid(2, 2, 0.5)
    sbn = SigmoidBeliefNet([3, 2])
    g = torch.Generator().manual_seed(0)
    lstm = GPLSTM(torch.randn(5, 3, 1, generator=g), torch.randn(5, generator=g), hidden_size=2, num_features=1)
    return {
        "GPLSTM.forecast": lambda gen: lstm.forecast(torch.zeros(3), 2, generator=gen),
        "MarkovNet.sample(gibbs)": lambda gen: mn.sample(3, method="gibbs", generator=gen),
        "MarkovNet.sample(exact)": lambda gen: mn.sample(3, method="exact", generator=gen),
        "ChromaticGibbs": lambda gen: ChromaticGibbs(num_sweeps=2)(mn.factor_graph(), 3, generator=gen),
        "exact_sample": lambda gen: exact_sample(mn.factor_graph(), 3, generator=gen),
        "BayesNet.sample": lambda gen: bn.sample(3, generator=gen),
        "BayesNet.sample(evidence)": lambda gen: bn.sample(3, evidence={"b": torch.tensor([0, 1])}, generator=gen),
        "posterior_sample": lambda gen: posterior_sample(bn, 3, {"b": torch.tensor([0, 1])}, generator=gen),
        "Table.random": lambda gen: Table.random(2, concentration=0.5, generator=gen),
        "SBNGibbs.sweep": lambda gen: SBNGibbs(sbn).sweep(torch.zeros(2, 3), [torch.zeros(2, 2)], generator=gen),
    }


_GENERATOR_NAMES = {"GPLSTM.forecast": "GPLSTM.forecast", "MarkovNet.sample(gibbs)": "MarkovNet.sample",
                    "MarkovNet.sample(exact)": "MarkovNet.sample", "ChromaticGibbs": "ChromaticGibbs",
                    "exact_sample": "generator of the exact sampler", "BayesNet.sample": "BayesNet.sample",
                    "BayesNet.sample(evidence)": "BayesNet.sample", "posterior_sample": "generator",
                    "Table.random": "Table.random", "SBNGibbs.sweep": "SBNGibbs.sweep"}


@pytest.mark.parametrize("name", list(_GENERATOR_NAMES))
def test_every_sampler_refuses_a_seed_given_as_its_generator(name):
    """A seed passed as ``generator=`` raised torch's TypeError (``rand() received an invalid combination of
    arguments``) or an AttributeError (GPLSTM.forecast) from inside the sampler; it is a ConfigError naming the
    argument and the type, and a real generator still works."""
    call = _generator_entry_points()[name]
    what = re.escape(_GENERATOR_NAMES[name])
    for seed in (3, np.int64(3)):
        with pytest.raises(ConfigError, match=rf"{what}( generator)? must be a torch.Generator or None, got "
                                              rf"{type(seed).__name__}"):
            call(seed)
    call(torch.Generator().manual_seed(1))


def test_type_name_leaves_out_private_modules():
    """Python 3.13 defines ``PosixPath`` in ``pathlib._local``: messages name ``pathlib.PosixPath`` on every
    version (CI's 3.13 run caught the first version naming the private module)."""
    from hybridpgm.checks import type_name

    local = type("PosixPath", (), {"__module__": "pathlib._local"})
    assert type_name(local()) == "pathlib.PosixPath"
    assert type_name(np.zeros(2)) == "numpy.ndarray" and type_name(3) == "int"
    assert type_name(type("Cls", (), {"__module__": "_private"})()) == "Cls"


@pytest.mark.parametrize("items, limit, quote, expected", [
    (["a", "b"], 10, repr, "'a', 'b'"),
    ([], 10, repr, ""),
    (["a", "b", "c"], 3, repr, "'a', 'b', 'c'"),
    (["a", "b", "c", "d"], 3, repr, "'a', 'b', 'c' and 1 more"),
    ((f"n{i}" for i in range(2000)), 2, repr, "'n0', 'n1' and 1998 more"),
    (["x\ny", "it's"], 10, repr, "'x\\ny', \"it's\""),
    (["['w']", "['b']"], 1, str, "['w'] and 1 more"),
])
def test_shown_items_gives_the_first_items_and_a_count(items, limit, quote, expected):
    assert checks.shown_items(items, limit, quote=quote) == expected


def test_shown_items_keeps_a_long_list_short():
    names = [f"node_{i:04d}" for i in range(100_000)]
    text = checks.shown_items(names)
    assert text.endswith("'node_0009' and 99990 more") and len(text) < 200


def test_close_match_suggests_the_nearest_name_or_nothing():
    assert checks.close_match("rian", ["rain", "sprinkler", "wet"]) == "; did you mean 'rain'?"
    assert checks.close_match("zzz", ["rain", "wet"]) == ""
    assert checks.close_match(3, ["rain"]) == ""
    assert checks.close_match("a", [1, 2]) == ""


def test_generator_or_none_names_a_network_given_for_the_generator_by_its_type_not_its_lines_cut_off():
    """Review: a network passed as ``generator=`` put its multi-line repr, cut off mid-line at 60 characters,
    into the message ("Linear(in_featur (for a seed, ...")."""
    from hybridpgm.checks import generator_or_none

    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU())
    with pytest.raises(ConfigError) as refused:
        generator_or_none(net, "GAN.sample generator")
    assert str(refused.value) == ("GAN.sample generator must be a torch.Generator or None, got Sequential (for a "
                                  "seed, pass torch.Generator().manual_seed(seed))")
    with pytest.raises(ConfigError, match=r"got int 3 \(for a seed"):
        generator_or_none(3, "GAN.sample generator")
