"""Data checks deferred to the step's one host read (hybridpgm/train/deferred_checks.py),
and the count of host reads per step of ``fit`` on real models."""

import functools
import sys
import traceback

import pytest
import torch

from hybridpgm import SVIObjective, VAE, fit
from hybridpgm.energy import RBM
from hybridpgm.errors import DataError
from hybridpgm.infer import ContrastiveDivergence
from hybridpgm.train.deferred_checks import check_or_defer, deferring_checks

READS = ("item", "tolist", "__float__", "__bool__", "__int__", "__index__", "cpu", "numpy")


def test_check_or_defer_raises_at_once_outside_a_step():
    check_or_defer(torch.tensor(True), lambda: DataError("never"))
    with pytest.raises(DataError, match="bad batch"):
        check_or_defer(torch.tensor(False), lambda: DataError("bad batch"))


def test_inside_a_step_the_checks_wait_and_the_first_failure_raises():
    with deferring_checks() as pending:
        check_or_defer(torch.tensor(True), lambda: DataError("first"))
        check_or_defer(torch.tensor(False), lambda: DataError("second"))
        check_or_defer(torch.tensor(False), lambda: DataError("third"))
    assert not bool(pending.all_passed(torch.device("cpu")))
    with pytest.raises(DataError, match="second"):
        pending.raise_first_failure()
    with deferring_checks() as empty:
        pass
    assert bool(empty.all_passed(torch.device("cpu")))


def test_an_exception_leaving_a_step_comes_after_the_checks_that_failed_before_it():
    """Fails on the reviewed code (0a172ad): an exception inside the step dropped the deferred checks, so a NaN
    neural table, deferred there, was reported as the NaN message of the belief propagation that met it.  The first
    failed check is raised in its place, unchained; an exception after passed checks, and a KeyboardInterrupt,
    are raised as they are."""
    with pytest.raises(DataError, match="second") as raised:
        with deferring_checks():
            check_or_defer(torch.tensor(True), lambda: DataError("first"))
            check_or_defer(torch.tensor(False), lambda: DataError("second"))
            check_or_defer(torch.tensor(False), lambda: DataError("third"))
            raise ValueError("later")
    assert raised.value.__suppress_context__
    with pytest.raises(ValueError, match="later"):
        with deferring_checks():
            check_or_defer(torch.tensor(True), lambda: DataError("first"))
            raise ValueError("later")
    with pytest.raises(KeyboardInterrupt):
        with deferring_checks():
            check_or_defer(torch.tensor(False), lambda: DataError("first"))
            raise KeyboardInterrupt


def _binary(n=64, d=12, seed=0):
    return torch.bernoulli(torch.full((n, d), 0.4), generator=torch.Generator().manual_seed(seed))


def test_fit_raises_the_models_data_error_before_any_update():
    torch.manual_seed(0)
    vae = VAE(12, 3, (8,))
    x = _binary()
    x[20, 3] = 0.5  # in the first batch of the unshuffled order
    before = [p.detach().clone() for p in vae.parameters()]
    with pytest.raises(DataError, match=r"binary data.*training data, step 0"):
        fit(SVIObjective(vae.model, vae.guide), x, batch_size=32, shuffle=False, progress=False, seed=0)
    assert all(torch.equal(a, p) for a, p in zip(before, vae.parameters()))


def test_fit_names_nan_data_of_an_rbm():
    x = _binary()
    x[5, 0] = float("nan")
    with pytest.raises(DataError, match="NaN or inf"):
        # TensorData refuses NaN up front; a Dataset of its own reaches the model's deferred check
        fit(ContrastiveDivergence(RBM(12, 4)), _RawDataset(x), batch_size=16, shuffle=False, progress=False, seed=0)


class _RawDataset(torch.utils.data.Dataset):
    def __init__(self, x):
        self.x = x

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i]


@pytest.fixture
def host_reads(monkeypatch):
    """Counts reads of tensor values by the host outside torch.optim (whose
    step counters live on the host by design, so reading them syncs nothing)."""
    reads = []
    for method in READS:
        original = getattr(torch.Tensor, method)

        def counted(self, *args, _original=original, _method=method, **kwargs):
            caller = traceback.extract_stack(limit=2)[0].filename
            if "/torch/optim/" not in caller:
                reads.append((_method, caller))
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, method, counted)
    return reads


def _vae_objective():
    torch.manual_seed(0)
    vae = VAE(12, 3, (8,))
    return SVIObjective(vae.model, vae.guide)


def _cd_objective():
    torch.manual_seed(0)
    return ContrastiveDivergence(RBM(12, 5), check_data=True)


@pytest.mark.parametrize("make", [_vae_objective, _cd_objective], ids=["vae-svi", "rbm-cd"])
def test_fit_reads_from_the_device_once_per_step(host_reads, make):
    """The loss, the finiteness of loss and gradients and the models' data checks
    come back in one read per step (on CUDA, one synchronisation)."""
    def count(steps):
        host_reads.clear()
        fit(make(), _binary(), batch_size=8, epochs=100, max_steps=steps, progress=False, seed=0,
            optim=functools.partial(torch.optim.Adam, lr=1e-3))
        return len(host_reads)

    assert count(8) - count(3) == 5


@pytest.fixture
def pyro_validation_off():
    """Pyro's and torch's own argument validation off (each of their checks reads a flag back), so that
    what is counted is hybridpgm's reads."""
    import pyro

    from pyro.infer.util import is_validation_enabled

    was_pyro, was_torch = is_validation_enabled(), torch.distributions.Distribution._validate_args
    pyro.enable_validation(False)
    torch.distributions.Distribution.set_default_validate_args(False)
    yield
    pyro.enable_validation(was_pyro)
    torch.distributions.Distribution.set_default_validate_args(was_torch)


def _families():
    import pyro

    from hybridpgm import IWAE
    from hybridpgm.bayesian_nn import BayesianRegressor
    from hybridpgm.energy import DBN, ClassificationObjective, ReconstructionObjective
    from hybridpgm.generative import MLPDiscriminator, MLPGenerator, SigmoidBeliefNet
    from hybridpgm.gp import GPLSTM, DeepKernelGP, ExactMLLObjective, SemiStochasticObjective, SVDeepKernelGP
    from hybridpgm.infer import NVIL, RWS, VIMCO, CRFLikelihood, PersistentCD, WakeSleep
    from hybridpgm.infer.adversarial import AAVAE, GAN
    from hybridpgm.nn import mlp
    from hybridpgm.recipes.models import CRFTagger

    def sbn(make):
        return lambda: (make(SigmoidBeliefNet([12, 6, 3])), _binary())

    def bnn():
        reg = BayesianRegressor(mlp([1, 8, 1]), num_data=64)
        guide = pyro.infer.autoguide.AutoNormal(reg)
        x, y = torch.rand(64, 1), torch.rand(64)
        guide(x, y)
        return SVIObjective(reg, guide, per_example=False), (x, y)

    def windows():
        w = torch.rand(40, 5, 1)
        objective = SemiStochasticObjective(GPLSTM(w, w[:, -1, 0], hidden_size=3))
        return objective, objective.dataset()

    xg = torch.rand(64, 2)
    yg = torch.sin(3 * xg[:, 0])
    return {
        "vae-iwae": lambda: (SVIObjective(*(lambda v: (v.model, v.guide))(VAE(12, 3, (8,))), IWAE(3)), _binary()),
        "rbm-pcd": lambda: (PersistentCD(RBM(12, 5), num_chains=8), _binary()),
        "dbn-reconstruction": lambda: (ReconstructionObjective(DBN([12, 6, 4]).to_autoencoder()), _binary()),
        "dbn-classifier": lambda: (ClassificationObjective(DBN([12, 6, 4]).to_classifier(3)),
                                   (_binary(), torch.randint(0, 3, (64,)))),
        "sbn-rws": sbn(lambda s: RWS(s.model, s.guide, 3)),
        "sbn-vimco": sbn(lambda s: VIMCO(s.model, s.guide, 3)),
        "sbn-nvil": sbn(lambda s: NVIL(s.model, s.guide)),
        "sbn-wake-sleep": sbn(lambda s: WakeSleep(s.model, s.guide)),
        "gan": lambda: (GAN(MLPGenerator(4, (2,), (16,)), MLPDiscriminator((2,), (16,))), torch.randn(64, 2)),
        "aavae": lambda: (AAVAE(VAE(12, z_dim=2, hidden=(8,)), MLPDiscriminator(12, (8,))), _binary()),
        "crf": lambda: (CRFLikelihood(CRFTagger(10, 4, hidden=8)),
                        (torch.randint(0, 10, (64, 7)), torch.randint(0, 4, (64, 7)), torch.full((64,), 7))),
        "bayesian-regressor": bnn,
        "dkl": lambda: (ExactMLLObjective(DeepKernelGP(xg, yg, mlp([2, 8, 2]), grid_size=16)), (xg, yg)),
        "sv-dkl": lambda: (SVDeepKernelGP(mlp([2, 8, 2]), num_features=2, num_data=64,
                                          inducing_points=torch.rand(8, 2)).objective(num_particles=2), (xg, yg)),
        "gp-lstm": windows,
    }


@pytest.mark.parametrize("family", list(_families()))
def test_hybridpgm_reads_once_per_player_update(host_reads, pyro_validation_off, family):
    """Across the model families, hybridpgm's own code reads from the device once per player update
    (the loss, the finiteness guard and the models' deferred data checks together); what Pyro and
    GPyTorch read themselves is not counted.  Before, the SBN, the VAE's guide, the Bayesian regressor
    and the AAVAE each added reads of their own data checks."""
    import pyro

    def count(steps):
        torch.manual_seed(0)
        with pyro.get_param_store().scope():  # an autoguide's parameters stay out of the global store
            objective, data = _families()[family]()
            schedule = list(getattr(objective, "schedule", None) or objective.players())
            host_reads.clear()
            fit(objective, data, batch_size=16, epochs=100, max_steps=steps, progress=False, seed=0)
        return sum("/hybridpgm/" in caller for _, caller in host_reads), len(schedule)

    (few, players), (more, _) = count(2), count(5)
    assert more - few == 3 * players


class _Rows(torch.utils.data.Dataset):
    """Rows of one or more tensors, unchecked (fit's TensorData would refuse NaN up front)."""

    def __init__(self, *tensors):
        self.tensors = tensors

    def __len__(self):
        return len(self.tensors[0])

    def __getitem__(self, i):
        rows = tuple(t[i] for t in self.tensors)
        return rows if len(rows) > 1 else rows[0]


def _bad_data_cases():
    import pyro

    from hybridpgm import IWAE
    from hybridpgm.bayesian_nn import BayesianRegressor
    from hybridpgm.generative import SigmoidBeliefNet
    from hybridpgm.graphs import BayesNet, cpd
    from hybridpgm.infer import RWS
    from hybridpgm.nn import mlp

    def with_value(x, value):
        x = x.clone()
        x[3, 2] = value
        return x

    def sbn(value):
        s = SigmoidBeliefNet([12, 6, 3])
        return RWS(s.model, s.guide, 3), _Rows(with_value(_binary(), value))

    def vae(likelihood="bernoulli"):
        v = VAE(12, 3, (8,), likelihood=likelihood)
        return SVIObjective(v.model, v.guide, IWAE(3)), _Rows(with_value(_binary(), float("nan")))

    def regressor():
        reg = BayesianRegressor(mlp([1, 8, 1]), num_data=64)
        guide = pyro.infer.autoguide.AutoNormal(reg)
        x, y = torch.rand(64, 1), torch.rand(64)
        guide(x, y)
        y[3] = float("inf")
        return SVIObjective(reg, guide, per_example=False), _Rows(x, y)

    def bayes_net():
        bn = BayesNet()
        bn.add("a", cpd.Table([0.5, 0.5]))
        bn.add("b", cpd.Table([[0.3, 0.7], [0.6, 0.4]], ["a"]))
        data = torch.randint(0, 2, (64, 2)).double()
        data[3, 1] = 5
        from pyro.infer import TraceEnum_ELBO
        return SVIObjective(bn.model, bn.guide, TraceEnum_ELBO(max_plate_nesting=1)), data

    return {
        "sbn-half": (lambda: sbn(0.5), r"SigmoidBeliefNet site 'x' expects binary data .* such as \[0.5\]"),
        "sbn-nan": (lambda: sbn(float("nan")), r"SigmoidBeliefNet site 'x' expects binary data .* such as \[nan\]"),
        "vae-guide-nan": (vae, r"VAE argument 'x'.* 1 NaN/inf"),
        "gaussian-vae-nan": (lambda: vae("gaussian"), r"VAE argument 'x'.* 1 NaN/inf"),
        "regressor-inf": (regressor, r"BayesianRegressor y .*1 NaN/inf"),
        "bayes-net-range": (bayes_net, r"column 'b' holds a value outside 0..1"),
    }


@pytest.mark.parametrize("case", list(_bad_data_cases()))
@pytest.mark.parametrize("validation", [True, False], ids=["pyro-validation", "no-validation"])
def test_deferred_data_checks_name_bad_data_before_any_update(case, validation):
    """The checks that now wait for the step's read still raise their own DataError, before the first
    update, whether or not Pyro validates (with it on, Pyro's and torch's checks must not raise first)."""
    import pyro

    torch.manual_seed(0)
    make, match = _bad_data_cases()[case]
    with pyro.validation_enabled(validation), pyro.get_param_store().scope():
        objective, data = make()  # inside the scope: an autoguide's parameters stay out of the global store
        before = [p.detach().clone() for p in objective.module.parameters()]
        with pytest.raises(DataError, match=match):
            fit(objective, data, batch_size=64, shuffle=False, max_steps=1, progress=False, seed=0)
    assert all(torch.equal(a, p) for a, p in zip(before, objective.module.parameters()))


def _chain_net(k):
    from hybridpgm.graphs import BayesNet, cpd

    bn = BayesNet()
    bn.add("x0", cpd.Table([0.4, 0.6]))
    for i in range(1, k):
        bn.add(f"x{i}", cpd.Table([[0.3, 0.7], [0.8, 0.2]], [f"x{i - 1}"]))
    return bn


@pytest.mark.parametrize("columns_with_missing", [1, 6])
def test_a_bayes_nets_missing_entries_are_read_once_per_step(host_reads, pyro_validation_off,
                                                             columns_with_missing):
    """Which columns of a batch have missing entries decides the model's Pyro sites, so the model reads
    it from the device: once for all columns together (before, once or twice per column).  With the
    step's read that is two reads per step, whatever the number of columns with missing entries."""
    import pyro
    from pyro.infer import TraceEnum_ELBO

    def count(steps):
        torch.manual_seed(0)
        with pyro.get_param_store().scope():
            bn = _chain_net(6)
            data = torch.bernoulli(torch.full((64, 6), 0.5))
            data[::3, :columns_with_missing] = float("nan")
            objective = SVIObjective(bn.model, bn.guide, TraceEnum_ELBO(max_plate_nesting=1))
            host_reads.clear()
            fit(objective, bn.split_missing(data), batch_size=16, epochs=100, max_steps=steps, progress=False,
                seed=0)
        return sum("/hybridpgm/" in caller for _, caller in host_reads)

    assert count(5) - count(2) == 3 * 2


@pytest.mark.parametrize("on_accelerator", [False, True])
def test_a_dbms_mean_field_reads_its_tolerance_only_where_reading_is_free(host_reads, pyro_validation_off,
                                                                          monkeypatch, on_accelerator):
    """The DBM's positive phase stops its mean-field sweeps at a tolerance, one read per sweep.  On the
    CPU, where a read costs no synchronisation, it still does (fewer sweeps early in training); on an
    accelerator (simulated) it runs all ``mean_field_steps`` sweeps and the step keeps its one read."""
    import hybridpgm.energy.dbm as dbm_module
    from hybridpgm.energy import DBM

    monkeypatch.setattr(dbm_module, "reading_is_free", lambda t: not on_accelerator)
    sweeps = []
    layer_logits = DBM.layer_logits

    def counted(self, x, layer):
        if sys._getframe(1).f_code.co_name == "_mean_field":
            sweeps.append(layer)
        return layer_logits(self, x, layer)

    monkeypatch.setattr(DBM, "layer_logits", counted)

    def count(steps):
        torch.manual_seed(0)
        model = DBM([12, 6, 4], mean_field_steps=10)
        host_reads.clear()
        sweeps.clear()
        fit(ContrastiveDivergence(model), _binary(), batch_size=16, epochs=100, max_steps=steps, progress=False,
            seed=0)
        return sum("/hybridpgm/" in caller for _, caller in host_reads), len(sweeps)

    (reads_few, sweeps_few), (reads_more, sweeps_more) = count(2), count(5)
    mean_field_sweeps = (sweeps_more - sweeps_few) / 3 / 2  # per step; a sweep updates the two hidden layers
    if on_accelerator:
        assert reads_more - reads_few == 3
        assert mean_field_sweeps == 10
    else:
        assert reads_more - reads_few > 3
        assert mean_field_sweeps < 10
