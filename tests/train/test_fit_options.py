"""The options of fit (:mod:`hybridpgm.train.fit_options`); fit's refusals of them are in test_trainer_refusals.py."""

import numpy as np
import pytest
import torch

from hybridpgm.errors import ConfigError
from hybridpgm.train.fit_options import callback_list, check_counts, check_factory, per_player


def test_rng_seed_stays_below_numpys_bound():
    """A run resumed on another number of ranks reseeds from seed, rank and step: past 2**32 NumPy refused the
    seed (a resume after about 270,000 steps failed)."""
    from hybridpgm.train.fit_options import SEED_BOUND, rng_seed

    assert rng_seed(5, 0, 0) == 5  # a fresh single-process run is seeded with its seed
    for seed, rank, step in [(2**31, 3, 300_000), (2**32 - 1, 7, 10**9), (2**32 - 1, 0, 0)]:
        value = rng_seed(seed, rank, step)
        assert 0 <= value < SEED_BOUND and type(value) is int
        np.random.seed(value)


def test_rng_seeds_of_runs_ranks_and_restarts_are_distinct():
    """Before, the seed was seed + rank + 7919 * step: rank 1 of the run of seed 0 drew the random numbers of rank
    0 of the run of seed 1, so a sweep over seeds on several ranks trained on correlated streams."""
    from hybridpgm.train.fit_options import rng_seed

    triples = [(seed, rank, step) for seed in range(20) for rank in range(8) for step in (0, 1, 7919, 10**6)]
    seeds = {rng_seed(*t) for t in triples}
    assert len(seeds) == len(triples)
    assert rng_seed(3, 1, 0) == rng_seed(3, 1, 0)  # a function of its arguments


def test_check_counts_returns_plain_ints():
    counts = check_counts(np.int64(3), np.int32(8), 2, None, np.int64(10), np.float32(1.5), np.int64(7), None)
    assert counts == (3, 8, 2, None, 10, 1.5, 7, None)
    assert all(type(c) is int for c in counts[:2] + counts[4:5] + counts[6:7])


def test_per_player_names_missing_and_unknown_players():
    assert per_player(1, ["a", "b"], "optim") == {"a": 1, "b": 1}
    with pytest.raises(ConfigError, match=r"missing \['b'\], unknown \['c'\]"):
        per_player({"a": 1, "c": 2}, ["a", "b"], "optim")


def test_an_lr_scheduler_dict_may_leave_players_out():
    """Before, an ``lr_scheduler`` dict had to name every player, so scheduling only the discriminator of a GAN
    needed a do-nothing scheduler for the generator; an optimizer dict must still name them all."""
    import functools

    from hybridpgm import fit
    from tests.train.helpers import TwoPlayer

    assert per_player({"a": 1, "b": None}, ["a", "b"], "lr_scheduler", optional=True) == {"a": 1}
    assert per_player({}, ["a", "b"], "lr_scheduler", optional=True) == {}
    with pytest.raises(ConfigError, match=r"may name only the players \['a', 'b'\]; unknown \['c'\]"):
        per_player({"c": 1}, ["a", "b"], "lr_scheduler", optional=True)
    with pytest.raises(ConfigError, match=r"missing \['b'\]"):
        per_player({"a": 1}, ["a", "b"], "optim")
    check_factory({"a": torch.optim.lr_scheduler.StepLR, "b": None}, "lr_scheduler")
    with pytest.raises(ConfigError, match="got an instance of NoneType"):
        check_factory({"a": None}, "optim")

    g = torch.Generator().manual_seed(0)
    data = (torch.randn(32, 3, generator=g), torch.randn(32, 1, generator=g))
    halve = functools.partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)
    for schedules in ({"a": halve}, {"a": halve, "b": None}):
        result = fit(TwoPlayer(), data, batch_size=32, max_steps=3, seed=0, progress=False,
                     optim=functools.partial(torch.optim.SGD, lr=0.1), lr_scheduler=schedules)
        assert result.optimizers["a"].param_groups[0]["lr"] == pytest.approx(0.1 * 0.5 ** 6)  # stepped twice a step
        assert result.optimizers["b"].param_groups[0]["lr"] == 0.1


def test_factories_and_callback_lists():
    check_factory({"a": torch.optim.SGD}, "optim")
    assert callback_list(()) == []
    with pytest.raises(ConfigError, match="instance of Adam"):
        check_factory(torch.optim.Adam(torch.nn.Linear(1, 1).parameters()), "optim")
    with pytest.raises(ConfigError, match="got int"):
        callback_list(3)


def test_a_pyro_optim_wrapper_is_refused_with_the_factory_to_pass():
    """``pyro.optim.Adam({"lr": 0.01})`` is what ``pyro.infer.SVI`` takes.  Before, fit called it with the
    parameters (which stepped them and returned None) and failed on ``None.param_groups``."""
    import pyro.optim

    from hybridpgm import SVIObjective, VAE, fit

    vae = VAE(6, 2, (4,))
    before = [p.detach().clone() for p in vae.parameters()]
    x = torch.bernoulli(torch.full((8, 6), 0.5), generator=torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match=r"not a pyro.optim wrapper .*functools.partial\(torch.optim.Adam, "
                                          r"lr=0.01\)"):
        fit(SVIObjective(vae.model, vae.guide), x, epochs=1, batch_size=4, progress=False,
            optim=pyro.optim.Adam({"lr": 0.01}))
    assert all(torch.equal(a, b) for a, b in zip(before, vae.parameters()))  # refused before any step


def test_a_factory_that_returns_no_optimizer_is_named():
    from hybridpgm import SVIObjective, VAE, fit

    vae = VAE(6, 2, (4,))
    x = torch.bernoulli(torch.full((8, 6), 0.5), generator=torch.Generator().manual_seed(0))
    with pytest.raises(ConfigError, match="optim factory of player 'elbo' returned NoneType, not a torch.optim"):
        fit(SVIObjective(vae.model, vae.guide), x, epochs=1, batch_size=4, progress=False, optim=lambda params: None)


@pytest.mark.parametrize("family", ["VAE", "SigmoidBeliefNet", "RBM"])
def test_a_model_given_to_fit_in_place_of_its_objective_is_named(family):
    """Before: a raw ``AttributeError: 'VAE' object has no attribute 'players'`` from inside the trainer."""
    import hybridpgm
    from hybridpgm.errors import ObjectiveError

    model = {"VAE": lambda: hybridpgm.VAE(6, 2, (4,)), "SigmoidBeliefNet": lambda: hybridpgm.SigmoidBeliefNet([6, 3]),
             "RBM": lambda: hybridpgm.RBM(6, 3)}[family]()
    objective = "ContrastiveDivergence" if family == "RBM" else "SVIObjective"
    with pytest.raises(ObjectiveError, match=f"fit takes an objective .*got a {family}.*{objective}"):
        hybridpgm.fit(model, torch.zeros(8, 6), epochs=1, batch_size=4, progress=False)


@pytest.mark.parametrize("lr", [float("nan"), float("inf"), torch.tensor(float("nan"))],
                         ids=["nan", "inf", "nan-tensor"])
def test_a_non_finite_or_negative_lr_is_refused_before_any_step(lr):
    """Before, fit stepped with lr=nan and turned every parameter into NaN."""
    import functools

    from hybridpgm import fit
    from tests.train.helpers import LinearRegression, regression_data

    objective = LinearRegression()
    before = [p.detach().clone() for p in objective.module.parameters()]
    with pytest.raises(ConfigError, match=r"the lr of player 'fit' must be a finite number >= 0, got "):
        fit(objective, regression_data(16), batch_size=4, progress=False, seed=0,
            optim=functools.partial(torch.optim.SGD, lr=lr))
    assert all(torch.equal(a, b) for a, b in zip(before, objective.module.parameters()))


def test_the_lr_check_names_the_param_group_and_accepts_zero():
    from hybridpgm.train.fit_options import check_optimizer

    a, b = torch.nn.Parameter(torch.zeros(2)), torch.nn.Parameter(torch.zeros(2))
    with pytest.raises(ConfigError, match=r"the lr of player 'gen' \(param group 1\) must be .* got nan"):
        check_optimizer(torch.optim.SGD([{"params": [a]}, {"params": [b], "lr": float("nan")}], lr=0.1), "gen")
    optimizer = torch.optim.SGD([a], lr=0.0)
    assert check_optimizer(optimizer, "gen") is optimizer
    optimizer.param_groups[0]["lr"] = -0.1  # torch's own optimizers refuse it when built; others may not
    with pytest.raises(ConfigError, match=r"the lr of player 'gen' must be a finite number >= 0, got -0.1"):
        check_optimizer(optimizer, "gen")


GRID = "the model scales its features onto the KISS-GP grid with the batch's range"


def _grid_sv_dkl():
    from hybridpgm.gp import SVDeepKernelGP

    torch.manual_seed(0)
    return SVDeepKernelGP(torch.nn.Sequential(torch.nn.Linear(3, 2)), num_features=2, num_data=16, grid_size=8)


@pytest.mark.parametrize("accumulate", [1, 2])
def test_fit_warns_when_accumulation_splits_the_grid_range_of_an_sv_dkl(accumulate):
    """RunningScaleToGrid maps a training batch with a range that includes the batch's own minimum and maximum:
    with accumulate=2 each micro-batch sees its own range, so the update is not that of one pass over the
    batch.  Before, fit warned for batch norm only and trained such a model silently."""
    import warnings

    from hybridpgm import fit

    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, generator=g) * torch.linspace(0.2, 3, 16)[:, None]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fit(_grid_sv_dkl().objective(num_particles=2), (x, x.sum(-1)), batch_size=16, accumulate=accumulate,
            max_steps=1, seed=0, progress=False)
    ours = [str(w.message) for w in caught if GRID in str(w.message)]
    if accumulate == 1:
        assert not ours
        return
    assert len(ours) == 1, [str(w.message) for w in caught]
    assert "'scale_to_bounds'" in ours[0] and "RunningScaleToGrid" in ours[0] and "accumulate=2" in ours[0]
    assert "batch normalisation" not in ours[0]


def test_the_grid_warning_names_ranks_and_spares_eval_mode_and_one_process():
    from hybridpgm.train.batch_split_checks import batch_norm_warning

    sv = _grid_sv_dkl().train()
    message = batch_norm_warning(sv, 1, 2)
    assert GRID in message and "with 2 ranks each rank maps its own shard" in message
    assert "micro-batch" not in message
    assert batch_norm_warning(sv, 1, 1) is None
    assert batch_norm_warning(sv.eval(), 2, 2) is None  # the recorded range: no batch's own range
    both = batch_norm_warning(torch.nn.ModuleDict({"bn": torch.nn.BatchNorm1d(2), "gp": _grid_sv_dkl()}), 2, 1)
    assert "('bn')" in both and "('gp.scale_to_bounds'" in both  # both causes in one warning


def test_a_module_made_under_inference_mode_is_refused_naming_its_tensors():
    """Before, fit failed inside the first backward pass with torch's "Inference tensors cannot be saved for
    backward", naming no tensor."""
    from hybridpgm.train.fit_options import check_players
    from tests.train.helpers import LinearRegression

    objective = LinearRegression()
    assert check_players(objective)  # built normally: accepted
    with torch.inference_mode():
        objective.module = torch.nn.Linear(5, 1)
    with pytest.raises(ConfigError, match=r"inference_mode\(\) \('weight', 'bias'\)"):
        check_players(objective)
    objective.module = torch.nn.Linear(5, 1)
    with torch.inference_mode():  # a buffer alone: fit would fail updating it in place
        objective.module.register_buffer("scale", torch.ones(1))
    with pytest.raises(ConfigError, match=r"inference_mode\(\) \('scale'\)"):
        check_players(objective)


class _Listed:
    """A one-player objective over a module, listing the parameters ``listed`` gives."""

    def __init__(self, listed):
        self.module = torch.nn.Linear(3, 1)
        self.listed = listed

    def players(self):
        return {"fit": self.listed(self.module)}

    def loss(self, player, batch):
        return self.module(batch).pow(2).mean()


def test_a_parameter_listed_twice_in_a_player_is_refused_naming_it():
    """Before, the optimizer stepped it twice per step (SGD: exactly twice the update), with only torch's warning."""
    from hybridpgm.train.fit_options import check_players

    assert check_players(_Listed(lambda m: [m.weight, m.bias]))
    with pytest.raises(ConfigError, match=r"player 'fit' of _Listed lists \['weight'\] more than once"):
        check_players(_Listed(lambda m: [m.weight, m.bias, m.weight]))


def test_an_objective_state_dict_without_its_pair_is_refused():
    """Before, an objective with ``state_dict()`` but no ``load_state_dict`` was saved in every checkpoint and
    silently never restored."""
    from hybridpgm.train.fit_options import check_players

    objective = _Listed(lambda m: list(m.parameters()))
    objective.state_dict = lambda: {"count": 3}
    with pytest.raises(ConfigError, match=r"_Listed has state_dict\(\) but not its pair"):
        check_players(objective)
    objective.load_state_dict = lambda state: None
    assert check_players(objective)


def test_a_callback_without_on_step_end_is_refused_before_any_step():
    """Before, a callback with only ``on_fit_end`` (or a plain function) raised a raw AttributeError after the
    first optimizer step had already changed the parameters."""
    from hybridpgm.train import Callback

    class EndOnly:
        def on_fit_end(self, info):
            pass

    class Kept(Callback):
        def on_fit_end(self, info):
            pass

    with pytest.raises(ConfigError, match=r"callbacks\[1\] \(EndOnly\) has no on_step_end"):
        callback_list([Kept(), EndOnly()])
    with pytest.raises(ConfigError, match=r"callbacks\[0\] \(function\) has no on_step_end"):
        callback_list([lambda info: None])
    assert len(callback_list([Kept()])) == 1


def test_a_frozen_part_made_under_inference_mode_is_accepted():
    """The review of the first version of the check found it refusing a frozen backbone built under inference mode
    (plain torch trains the head through it): only trained parameters and the buffers of modules in training mode
    count."""
    from hybridpgm.train.fit_options import check_players
    from tests.train.helpers import LinearRegression

    objective = LinearRegression()
    with torch.inference_mode():
        backbone = torch.nn.Sequential(torch.nn.Linear(5, 5), torch.nn.BatchNorm1d(5)).requires_grad_(False).eval()
    objective.module = torch.nn.Sequential(backbone, torch.nn.Linear(5, 1))
    objective.players = lambda: {"fit": (p for p in objective.module.parameters() if p.requires_grad)}
    assert [p.shape for p in check_players(objective)["fit"]] == [(1, 5), (1,)]
    backbone.train()  # its batch norm would now update its inference-mode statistics in place
    with pytest.raises(ConfigError, match=r"\('0.1.running_mean', '0.1.running_var', '0.1.num_batches_tracked'\)"):
        check_players(objective)


def test_needs_closure_tells_lbfgs_from_the_optimizers_whose_step_takes_none():
    from hybridpgm.train.fit_options import needs_closure

    params = [torch.nn.Parameter(torch.zeros(2))]

    class Custom(torch.optim.SGD):
        def step(self, closure):
            return super().step(closure)

    assert needs_closure(torch.optim.LBFGS(params)) and needs_closure(Custom(params, lr=0.1))
    assert not any(needs_closure(cls(params, lr=0.1)) for cls in (torch.optim.SGD, torch.optim.Adam))


def test_an_optimizer_needing_a_closure_is_refused_with_fp16_only():
    """torch's GradScaler cannot step an optimizer with a closure: refused, naming the player and the optimizer;
    fp32 or bf16 is accepted, on one rank or several (each evaluation of the closure all-reduces, in lock-step:
    tests/train/test_distributed.py), and an optimizer whose step takes no closure is never refused here."""
    from hybridpgm.train.fit_options import check_closure_optimizer

    params = [torch.nn.Parameter(torch.zeros(2))]
    lbfgs = torch.optim.LBFGS(params)
    with pytest.raises(ConfigError, match=r"player 'elbo' \(LBFGS\) needs a closure.*fp16 gradient scaler"):
        check_closure_optimizer(lbfgs, "elbo", precision="fp16")
    for precision in (None, "fp32", "bf16"):
        assert check_closure_optimizer(lbfgs, "elbo", precision=precision) is lbfgs
    adam = torch.optim.Adam(params)
    assert check_closure_optimizer(adam, "elbo", precision="fp16") is adam


def test_fit_refuses_lbfgs_in_fp16_before_any_step():
    """Before, the first step failed with a raw TypeError (step() missing its closure)."""
    import functools

    from hybridpgm import fit
    from tests.train.helpers import LinearRegression, regression_data

    objective = LinearRegression()
    before = [p.detach().clone() for p in objective.module.parameters()]
    with pytest.raises(ConfigError, match=r"player 'fit' \(LBFGS\) needs a closure.*fp16"):
        fit(objective, regression_data(), batch_size=16, max_steps=2, seed=0, progress=False, precision="fp16",
            device="cpu", optim=functools.partial(torch.optim.LBFGS, lr=1))
    assert all(torch.equal(p, b) and p.grad is None for p, b in zip(objective.module.parameters(), before))


def test_a_player_all_of_whose_parameters_are_frozen_passes_unless_every_player_is():
    """A frozen player is accepted (fit does not step it; found by an audit of WakeSleep with theta frozen), but an
    objective none of whose parameters is trainable is refused with a message that says they are all frozen
    (before, the first step's message blamed no_grad or detaching)."""
    from hybridpgm.train.fit_options import check_players
    from tests.train.helpers import TwoPlayer

    objective = TwoPlayer()
    objective.module["a"].requires_grad_(False)
    assert list(check_players(objective)) == ["a", "b"]
    objective.module["b"].requires_grad_(False)
    with pytest.raises(ConfigError, match=r"every parameter of every player of TwoPlayer \(a, b\) is frozen "
                                          r"\(requires_grad=False\)"):
        check_players(objective)


def test_a_bayes_net_with_fixed_tables_says_to_read_it_learnable():
    """Found by a task walkthrough of the docs: fitting a network read from a BIF file (fixed tables, buffers)
    said only 'has no parameters'; the message now says why and names learnable=True."""
    from hybridpgm import fit
    from hybridpgm.graphs import load_network
    from hybridpgm.infer import SVIObjective

    bn = load_network("asia")
    data = torch.zeros(4, len(bn.nodes), dtype=torch.long)
    with pytest.raises(ConfigError, match=r"player 'elbo' of SVIObjective has no parameters: its module \(BayesNet\) "
                                          r"holds fixed values \(buffers\) and no parameters.*learnable=True"):
        fit(SVIObjective(bn.model, bn.guide, module=bn), data, max_steps=1, progress=False, seed=0)
    learnable = load_network("asia", learnable=True)
    fit(SVIObjective(learnable.model, learnable.guide, module=learnable), data, max_steps=1, progress=False, seed=0)
