"""``to``/``cpu``/``to_dict`` of every result that holds tensors (:mod:`hybridpgm.portable_result`).

Before, only :class:`LogZEstimate` and :class:`LikelihoodBounds` had ``to_dict`` and no result had ``to`` or
``cpu``: a GPU run's results needed per-field moves before plotting, pickling for a CPU machine or writing JSON.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle

import numpy as np
import pytest
import torch

from hybridpgm.diagnostics.check_vi import VICheck
from hybridpgm.errors import ConfigError, DeviceError
from hybridpgm.generative.sbn_gibbs import GibbsSamples
from hybridpgm.gp.feature_gp import GPPrediction
from hybridpgm.gp.gp_lstm import Forecast
from hybridpgm.graphs import ising_grid
from hybridpgm.infer import BeliefPropagation, MeanField
from hybridpgm.infer.ais import AISResult
from hybridpgm.infer.belief_propagation import BPResult
from hybridpgm.infer.log_z import LogZEstimate
from hybridpgm.infer.mean_field import MeanFieldResult
from hybridpgm.infer.raise_ais import LikelihoodBounds, RAISEResult


def _ais(seed: int = 0) -> AISResult:
    g = torch.Generator().manual_seed(seed)
    return AISResult(log_z=torch.randn((), generator=g) + 5, stderr=torch.rand((), generator=g),
                     log_weights=torch.randn(6, generator=g), log_z0=torch.tensor(2.0), num_steps=10)


def _raise() -> RAISEResult:
    g = torch.Generator().manual_seed(1)
    return RAISEResult(log_likelihood=torch.randn(4, generator=g) - 20, log_z=torch.randn(4, generator=g) + 5,
                       log_weights=torch.randn(4, 3, generator=g), num_steps=7)


def _log_z() -> LogZEstimate:
    return LogZEstimate(log_z=torch.tensor(5.5), stderr=torch.tensor(0.25), starts={"data": _ais(0),
                        "model": _ais(1)}, spread=0.4, reliable=False, reasons=["starts disagree"])


def _bounds() -> LikelihoodBounds:
    return LikelihoodBounds(lower=-21.0, upper=-19.5, estimate=-20.0, log_z=_log_z(), raise_result=_raise())


def _graph():
    g = torch.Generator().manual_seed(2)
    return ising_grid(2, 3, 0.5 * torch.randn(7, generator=g), torch.randn(6, generator=g)).factor_graph()


def _bp(max_product: bool = False) -> BPResult:
    return BeliefPropagation(num_iters=30, max_product=max_product)(_graph())


def _mean_field() -> MeanFieldResult:
    return MeanField(num_iters=20)(_graph())


def _gibbs() -> GibbsSamples:
    g = torch.Generator().manual_seed(3)
    return GibbsSamples([torch.bernoulli(torch.full((2, 3, 4, 5), 0.5), generator=g),
                         torch.bernoulli(torch.full((2, 3, 4, 2), 0.5), generator=g)])


def _gp() -> GPPrediction:
    return GPPrediction(mean=torch.linspace(-1, 1, 5), variance=torch.linspace(0.1, 0.5, 5))


def _forecast() -> Forecast:
    g = torch.Generator().manual_seed(4)
    return Forecast(mean=torch.randn(3, generator=g), lower=torch.randn(3, generator=g) - 2,
                    upper=torch.randn(3, generator=g) + 2, samples=torch.randn(8, 3, generator=g))


def _vi() -> VICheck:
    return VICheck(khat=np.array([0.1, 0.9, -np.inf]), log_likelihood=np.array([-3.0, -4.5, -2.0]), num_samples=100)


FACTORIES = {"AISResult": _ais, "RAISEResult": _raise, "LogZEstimate": _log_z, "LikelihoodBounds": _bounds,
             "BPResult": _bp, "BPResult-max-product": lambda: _bp(True), "MeanFieldResult": _mean_field,
             "GibbsSamples": _gibbs, "GPPrediction": _gp, "Forecast": _forecast, "VICheck": _vi}


def _fields(obj) -> dict:
    """The public fields of a result, read independently of the module under test."""
    if isinstance(obj, BPResult):
        return {name: getattr(obj, name) for name in ("marginals", "assignment", "log_z", "decoded_assignment",
                                                      "converged", "num_iters")}
    if isinstance(obj, tuple):
        return obj._asdict()
    return {f.name: getattr(obj, f.name) for f in dataclasses.fields(obj)}


def _leaves(obj, path="") -> dict:
    """path -> leaf value (tensors, arrays, numbers, ...) through results, dicts and lists."""
    if isinstance(obj, (AISResult, RAISEResult, LogZEstimate, LikelihoodBounds, BPResult, MeanFieldResult,
                        GibbsSamples, GPPrediction, Forecast, VICheck)):
        out = {}
        for name, value in _fields(obj).items():
            out.update(_leaves(value, f"{path}.{name}"))
        return out
    if isinstance(obj, dict):
        return {k: v for key, value in obj.items() for k, v in _leaves(value, f"{path}[{key!r}]").items()}
    if isinstance(obj, list):
        return {k: v for i, value in enumerate(obj) for k, v in _leaves(value, f"{path}[{i}]").items()}
    return {path: obj}


@pytest.mark.parametrize("name", FACTORIES)
def test_to_float64_casts_floating_tensors_and_leaves_the_original(name):
    """``to(torch.float64)``: a new result of the class, its floating tensors float64 with equal values, integer
    tensors (BP's assignments) keeping their dtype, other values shared; the original's tensors are the same
    objects as before, still float32."""
    original = FACTORIES[name]()
    before = _leaves(original)
    moved = original.to(torch.float64)
    assert type(moved) is type(original) and moved is not original
    after, again = _leaves(moved), _leaves(original)
    assert after.keys() == before.keys()
    for path, value in before.items():
        assert again[path] is value, path  # the original is untouched
        new = after[path]
        if isinstance(value, torch.Tensor):
            if value.is_floating_point():
                assert value.dtype == torch.float32 and new.dtype == torch.float64, path
                assert torch.equal(new, value.to(torch.float64)), path
            else:
                assert new.dtype == value.dtype and torch.equal(new, value), path
        else:
            assert new is value, path  # numbers, strings, arrays, None: shared
    assert any(isinstance(v, torch.Tensor) for v in before.values()) or name == "VICheck"


@pytest.mark.parametrize("name", FACTORIES)
def test_to_dict_is_plain_json(name):
    """``to_dict()`` goes through ``json.dumps`` and back, tensors and arrays as nested lists or numbers (for
    :class:`LogZEstimate` and :class:`LikelihoodBounds`, which had their ``to_dict`` before, a guard)."""
    result = FACTORIES[name]()
    text = json.dumps(result.to_dict())
    back = json.loads(text)
    if name in ("LogZEstimate", "LikelihoodBounds"):
        return  # their own summary reports (test_existing_to_dict_reports_are_unchanged)
    fields = _fields(result)
    assert back.keys() == fields.keys()
    for key, value in fields.items():
        if isinstance(value, (torch.Tensor, np.ndarray)):
            assert np.array_equal(np.asarray(back[key], dtype=np.asarray(value).dtype), np.asarray(value)), key
        elif isinstance(value, list):
            assert [np.asarray(v).tolist() for v in value] == back[key], key
        else:
            assert back[key] == value, key


def test_to_dict_scalars_are_numbers_and_nested_results_are_dicts():
    report = _ais().to_dict()
    assert isinstance(report["log_z"], float) and report["num_steps"] == 10 and len(report["log_weights"]) == 6
    bp = _bp().to_dict()
    assert isinstance(bp["assignment"][0][0], int) and isinstance(bp["converged"], bool)


def test_existing_to_dict_reports_are_unchanged():
    """Guard (passes before and after): the summary reports of :class:`LogZEstimate` and
    :class:`LikelihoodBounds` (the CLI's JSON reads them) keep their keys and values."""
    est = _log_z()
    a0, a1 = est.starts["data"], est.starts["model"]
    start = lambda r: {"log_z": float(r.log_z), "stderr": float(r.stderr), "ess": r.ess, "num_chains": 6,  # noqa: E731
                       "num_steps": 10}
    expected = {"log_z": 5.5, "stderr": 0.25, "spread": 0.4, "reliable": False, "reasons": ["starts disagree"],
                "best_start": est.best_start, "starts": {"data": start(a0), "model": start(a1)}}
    assert est.to_dict() == expected
    bounds = _bounds()
    report = bounds.to_dict()
    assert list(report) == ["lower_raise", "upper_ais", "estimate_ais", "lower_mc_stderr", "upper_mc_stderr",
                            "raise_gap_stderr", "gap_stderr", "test_set_stderr", "lower_stderr", "raise_steps",
                            "raise_chains", "num_test", "reliable", "ais"]
    assert report["ais"] == expected and report["raise_steps"] == 7 and report["raise_chains"] == 3
    assert report["num_test"] == 4 and report["lower_raise"] == -21.0
    json.dumps(report)


def test_nested_results_move_with_their_parent():
    bounds = _bounds().to(torch.float64)
    assert bounds.raise_result.log_weights.dtype == torch.float64
    assert all(r.log_weights.dtype == torch.float64 for r in bounds.log_z.starts.values())
    assert isinstance(bounds.log_z, LogZEstimate) and isinstance(bounds.log_z.starts["data"], AISResult)
    assert bounds.log_z.reasons == ["starts disagree"] and bounds.lower == -21.0


def test_to_keeps_the_autograd_graph():
    log_weights = torch.randn(5, requires_grad=True)
    res = AISResult(log_weights.logsumexp(0), torch.ones(()), log_weights * 1, torch.zeros(()), 3)
    moved = res.to(torch.float64)
    assert moved.log_weights.requires_grad
    moved.log_weights.sum().backward()
    assert torch.equal(log_weights.grad, torch.ones(5))
    json.dumps(res.to_dict())  # detached for the report


def test_bp_lazy_parts_are_computed_then_moved():
    """Sum-product's Bethe log Z and max-product's decoded assignment are computed at ``to``; the copy holds
    values (it pickles), equal to the original's, and its repr keeps the kind."""
    for max_product in (False, True):
        res = _bp(max_product)
        moved = res.to(torch.float64)
        assert moved._log_z_fn is None and moved._decode_fn is None and not callable(moved._assignment)
        if max_product:
            assert moved.log_z is None and torch.equal(moved.decoded_assignment, res.decoded_assignment)
            assert "max-product" in repr(moved)
        else:
            assert moved.decoded_assignment is None and "sum-product" in repr(moved)
            assert moved.log_z.dtype == torch.float64 and torch.equal(moved.log_z, res.log_z.double())
        back = pickle.loads(pickle.dumps(moved))
        assert torch.equal(back.marginals, moved.marginals)


def test_cpu_is_to_cpu():
    for name, make in FACTORIES.items():
        res = make()
        moved = res.cpu()
        assert type(moved) is type(res) and moved is not res
        assert all(v.device.type == "cpu" for v in _leaves(moved).values() if isinstance(v, torch.Tensor)), name


def test_every_tensor_result_has_the_methods():
    """The results a GPU run returns: each answers ``to``, ``cpu`` and ``to_dict``."""
    for cls in (AISResult, RAISEResult, LogZEstimate, LikelihoodBounds, BPResult, MeanFieldResult, GibbsSamples,
                GPPrediction, Forecast, VICheck):
        assert callable(getattr(cls, "to", None)) and callable(getattr(cls, "cpu", None)), cls
        assert callable(getattr(cls, "to_dict", None)), cls


def test_dataclasses_with_init_false_and_frozen_fields():
    """``copy.copy`` plus the moved fields: an ``init=False`` field is moved too (``dataclasses.replace`` would
    refuse it, or reset it to its default), a frozen dataclass and ``__post_init__`` state are kept."""
    from hybridpgm.portable_result import PortableResult

    @dataclasses.dataclass(eq=False, frozen=True)
    class Frozen(PortableResult):
        a: torch.Tensor
        b: torch.Tensor = dataclasses.field(init=False)

        def __post_init__(self):
            object.__setattr__(self, "b", self.a * 2)

    res = Frozen(torch.arange(3.0))
    with pytest.raises((ValueError, TypeError)):  # ValueError up to Python 3.12, TypeError from 3.13
        dataclasses.replace(res, b=torch.zeros(3))
    moved = res.to(torch.float64)
    assert moved.a.dtype == moved.b.dtype == torch.float64 and torch.equal(moved.b, torch.tensor([0.0, 2, 4]).double())
    assert res.b.dtype == torch.float32
    assert moved.to_dict() == {"a": [0.0, 1.0, 2.0], "b": [0.0, 2.0, 4.0]}


def test_bad_arguments_are_refused():
    res = _ais()
    with pytest.raises(ConfigError, match="floating point.*torch.int64"):
        res.to(torch.long)
    with pytest.raises(ConfigError, match="AISResult.to\\('gpu'\\)"):
        res.to("gpu")
    with pytest.raises(ConfigError, match="1.5 is neither a device nor a dtype"):
        res.to(1.5)  # torch itself would read the number as a float64 tensor to match


def test_a_positional_non_blocking_is_taken_as_module_to_takes_it():
    """Found by a review: ``res.to("cpu", torch.float64, True)`` (``nn.Module.to``'s positional ``non_blocking``)
    was refused as "True is neither a device nor a dtype"; only the device's place is checked for numbers now."""
    res = _ais()
    for args in (("cpu", torch.float64, True), (torch.float64, True), (torch.zeros((), dtype=torch.float64), True)):
        moved = res.to(*args)
        assert moved.log_weights.dtype == torch.float64 and torch.equal(moved.log_weights, res.log_weights.double())


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_cuda_is_a_device_error():
    with pytest.raises(DeviceError, match="CUDA is not available"):
        _gp().to("cuda")
    with pytest.raises(DeviceError, match="'cuda:0'.*CUDA is not available"):
        _gp().to(0)


def test_results_still_pickle_and_copy():
    """Guard (passes before and after): the mixin adds no state, so pickling and copying are as before."""
    for name, make in FACTORIES.items():
        res = make()
        for other in (pickle.loads(pickle.dumps(res)), copy.deepcopy(res)):
            before, after = _leaves(res), _leaves(other)
            assert before.keys() == after.keys(), name
            for path, value in before.items():
                if isinstance(value, torch.Tensor):
                    assert torch.equal(after[path], value), (name, path)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_round_trip():
    for name, make in FACTORIES.items():
        res = make()
        on_gpu = res.to("cuda", non_blocking=True)
        gpu_leaves = _leaves(on_gpu)
        assert all(v.is_cuda for v in gpu_leaves.values() if isinstance(v, torch.Tensor)), name
        back = on_gpu.cpu()
        for path, value in _leaves(res).items():
            if isinstance(value, torch.Tensor):
                assert back is not on_gpu and not _leaves(back)[path].is_cuda, (name, path)
                assert torch.equal(_leaves(back)[path], value), (name, path)
        if name in ("LogZEstimate", "LikelihoodBounds"):  # their summaries compute ESS etc. on the device
            json.dumps(on_gpu.to_dict())
        else:
            assert json.dumps(on_gpu.to_dict()) == json.dumps(res.to_dict()), name
