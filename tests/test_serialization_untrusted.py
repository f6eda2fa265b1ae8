"""Model files from untrusted sources: what loading a changed or crafted file imports and raises
(hybridpgm/serialization.py, serialization_registry.py, serialization_payload.py, serialization_ties.py)."""

import os
import subprocess
import sys

import pytest
import torch

import hybridpgm
from hybridpgm.errors import CheckpointError


def _payload(**entries):
    base = {"format": "hybridpgm-model", "format_version": 1,
            "model": {"class": "hybridpgm.energy.rbm.RBM", "spec": {"num_visible": 3, "num_hidden": 2}},
            "tensors": {}, "state_dict": {}, "meta": {"__dict__": {}}, "versions": {}}
    return {k: v for k, v in {**base, **entries}.items() if v is not _DROP}


_DROP = object()


def test_a_file_naming_a_module_outside_the_model_modules_imports_nothing(tmp_path):
    """Found by an audit: a file naming class ``hybridpgm.__main__.Anything`` made load import
    ``hybridpgm.__main__``, whose body ran the command line on the caller's ``sys.argv`` and raised SystemExit
    (which ``except Exception`` does not catch).  Run in a fresh process, so that no module is imported
    already."""
    path = str(tmp_path / "model.pt")
    torch.save(_payload(model={"class": "hybridpgm.__main__.Anything", "spec": {}}), path)
    code = ("import sys, hybridpgm\n"
            "try:\n"
            f"    hybridpgm.load({path!r})\n"
            "except BaseException as e:\n"
            f"    print(type(e).__name__, {path!r} in str(e), 'hybridpgm.__main__.Anything' in str(e))\n"
            "print(sorted(m for m in ('hybridpgm.__main__', 'hybridpgm.cli') if m in sys.modules))\n")
    done = subprocess.run([sys.executable, "-c", code, "list"], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[:2] == ["CheckpointError True True", "[]"], done.stdout + done.stderr


def test_every_hybridpgm_class_a_file_names_is_in_a_module_load_may_import():
    """The modules load imports (:data:`MODEL_MODULES` and ``_CLASS_MODULES``) hold every serializable class of
    hybridpgm, so that a file of any of them loads in a fresh process by importing its module alone."""
    import importlib

    from hybridpgm.serialization_registry import _CLASS_MODULES, _REGISTRY, MODEL_MODULES

    for module in MODEL_MODULES:
        importlib.import_module(module)
    outside = sorted(name for name, cls in _REGISTRY.items() if cls.__module__.startswith("hybridpgm.")
                     and cls.__module__ not in MODEL_MODULES + _CLASS_MODULES)
    assert outside == []


_RBM = "hybridpgm.energy.rbm.RBM"
_LAYER = {"layer": "Linear", "args": {"in_features": 2, "out_features": 2, "bias": True}}

#: files a caller may be handed, each missing or mistyping one entry; before, each raised a raw KeyError or
#: TypeError (or, for the layers, a CheckpointError that did not name the file)
MALFORMED = {
    "no tensors": _payload(tensors=_DROP),
    "no model": _payload(model=_DROP),
    "no state_dict": _payload(state_dict=_DROP),
    "no meta": _payload(meta=_DROP, state_dict=hybridpgm.RBM(3, 2).state_dict()),
    "no versions": _payload(versions=_DROP, state_dict=hybridpgm.RBM(3, 2).state_dict()),
    "model is a string": _payload(model="RBM"),
    "model without class": _payload(model={"spec": {}}),
    "model without spec": _payload(model={"class": _RBM}),
    "unknown tensor in the spec": _payload(model={"class": _RBM, "spec": {"num_visible": {"__tensor__": "t9"},
                                                                          "num_hidden": 2}}),
    "tensor named in the meta": _payload(meta={"__dict__": {"note": {"__tensor__": "t0"}}},
                                         state_dict=hybridpgm.RBM(3, 2).state_dict()),
    "Sequential without layers": _payload(model={"class": "torch.nn.Sequential"}),
    "layer without args": _payload(model={"class": "torch.nn.Linear", "layer": {"layer": "Linear"}}),
    "layer args a list": _payload(model={"class": "torch.nn.Linear", "layer": {"layer": "Linear", "args": [1, 2]}}),
    "layer of a Sequential without args": _payload(model={"class": "torch.nn.Sequential",
                                                          "layers": [_LAYER, {"layer": "Tanh"}]}),
    "BayesNet without cpds": _payload(model={"class": "hybridpgm.graphs.bayes_net.BayesNet",
                                             "spec": {"__dict__": {}}}),
    "MarkovNet factor without potential": _payload(model={
        "class": "hybridpgm.graphs.markov_net.MarkovNet",
        "spec": {"__dict__": {"variables": {"__dict__": {"a": 2}}, "factors": [{"__dict__": {"name": "f"}}]}}}),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_a_malformed_model_file_is_a_checkpoint_error_naming_it(tmp_path, case):
    path = tmp_path / "m.pt"
    torch.save(MALFORMED[case], path)
    with pytest.raises(CheckpointError) as raised:
        hybridpgm.load(path)
    assert str(path) in str(raised.value)


def test_an_entry_missing_deep_in_a_spec_keeps_the_key_error_as_its_cause(tmp_path):
    path = tmp_path / "m.pt"
    torch.save(MALFORMED["BayesNet without cpds"], path)
    with pytest.raises(CheckpointError, match="KeyError 'cpds'") as raised:
        hybridpgm.load(path)
    assert isinstance(raised.value.__cause__, KeyError)


def test_a_meta_nested_past_the_recursion_limit_is_a_checkpoint_error(tmp_path):
    """Before: a raw RecursionError, from decoding the meta outside the guarded build.  The file's ``data.pkl``
    is rewritten by hand, its meta a list nested past the recursion limit (as an attacker writes it: no deep
    stack needed; Python 3.12's pickler cannot write it, whatever ``sys.setrecursionlimit`` says)."""
    import zipfile

    source, path = tmp_path / "source.pt", tmp_path / "m.pt"
    torch.save(_payload(meta={"__dict__": {"note": "PLACEHOLDER"}}, state_dict=hybridpgm.RBM(3, 2).state_dict()),
               source)
    depth = sys.getrecursionlimit() + 200
    deep = b"]" * depth + b"G" + b"\x00" * 8 + b"a" * depth  # EMPTY_LIST x depth, a float, APPEND x depth
    with zipfile.ZipFile(source) as old, zipfile.ZipFile(path, "w") as new:
        for info in old.infolist():
            data = old.read(info)
            if info.filename.endswith("/data.pkl"):
                assert data.count(b"X\x0b\x00\x00\x00PLACEHOLDER") == 1  # BINUNICODE 'PLACEHOLDER'
                data = data.replace(b"X\x0b\x00\x00\x00PLACEHOLDER", deep)
            new.writestr(info.filename, data)
    assert isinstance(torch.load(path, weights_only=True)["meta"]["__dict__"]["note"], list)  # torch reads it
    with pytest.raises(CheckpointError, match="RecursionError") as raised:
        hybridpgm.load(path)
    assert str(path) in str(raised.value) and isinstance(raised.value.__cause__, RecursionError)


@pytest.mark.parametrize("group, reason", [(["encoder", ""], "name no module"), (["", "encoder"], "name no module"),
                                           (["encoder", "encoder.0"], "lies inside 'encoder'"),
                                           (["encoder.", "decoder"], "name no module")])
def test_a_ties_record_naming_the_model_itself_or_a_module_inside_its_partner_is_refused(tmp_path, group, reason):
    """Before: ``["encoder", ""]`` raised a raw KeyError from torch (a module named ""), and a group of a module
    and one inside it made a cyclic model, refused only by the RecursionError its state dict ran into."""
    vae = hybridpgm.VAE(4, 2, [3])
    hybridpgm.save(vae, tmp_path / "v.pt")
    payload = torch.load(tmp_path / "v.pt", weights_only=True)
    payload["ties"] = {"modules": [group], "parameters": [], "buffers": []}
    torch.save(payload, tmp_path / "t.pt")
    with pytest.raises(CheckpointError, match=reason) as raised:
        hybridpgm.load(tmp_path / "t.pt")
    assert str(tmp_path / "t.pt") in str(raised.value)


def test_a_training_checkpoint_given_to_load_is_named_as_one(tmp_path):
    """Audit: ``hybridpgm.load("checkpoint.pt")`` said only "is not a hybridpgm model file"; it now says the file is
    fit's training checkpoint and how to make a model file of its weights."""
    from tests.train.helpers import LinearRegression, regression_data

    ckpt = tmp_path / "checkpoint.pt"
    hybridpgm.fit(LinearRegression(), regression_data(), max_steps=1, batch_size=16, checkpoint=ckpt, progress=False,
                  seed=0)
    with pytest.raises(CheckpointError, match=r"is a training checkpoint written by hybridpgm.fit, not a model file: "
                                              r"resume it with fit\(\.\.\., checkpoint=path\)"):
        hybridpgm.load(ckpt)
