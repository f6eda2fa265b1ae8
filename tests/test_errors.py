"""The exception and warning classes of :mod:`hybridpgm.errors` as objects: built-in bases, pickling and copying
(a worker process's error reaches its parent as itself), "does not exist" as a :class:`FileNotFoundError`, and
filtering hybridpgm's warnings by category."""

import concurrent.futures
import copy
import multiprocessing
import pickle
import warnings

import pytest
import torch

import hybridpgm
from hybridpgm import errors

#: keyword arguments each class needs beyond its message (the others take the message alone)
_KEYWORDS = {
    "TrainingDivergedError": {"step": 7, "player": "elbo"},
    "CollectiveTimeoutError": {"ranks": [1, 3]},
    "TrainingInterrupted": {"signum": 15, "step": 152, "checkpoint": "run.pt"},
}


def _sample(name):
    cls = getattr(errors, name)
    return cls(f"{name}: at 'run\\n.pt', node 'a b'", **_KEYWORDS.get(name, {}))


def _same(a, b):
    assert type(a) is type(b)
    assert str(a) == str(b) and a.args == b.args
    assert vars(a) == vars(b)


@pytest.mark.parametrize("name", errors.__all__)
def test_every_class_round_trips_through_pickle_copy_and_deepcopy(name):
    """Before, TrainingDivergedError, CollectiveTimeoutError and TrainingInterrupted raised TypeError (their
    keyword-only arguments missing) when rebuilt; the others are guards."""
    original = _sample(name)
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        _same(original, pickle.loads(pickle.dumps(original, protocol)))
    _same(original, copy.copy(original))
    _same(original, copy.deepcopy(original))
    for key, value in _KEYWORDS.get(name, {}).items():
        assert getattr(pickle.loads(pickle.dumps(original)), key) == value


def test_attributes_and_notes_survive_pickling():
    error = errors.TrainingInterrupted("stopped", signum=2, step=None)
    error.__notes__ = ["a note"]  # what add_note (Python 3.11+) sets
    back = pickle.loads(pickle.dumps(error))
    assert (back.signum, back.step, back.checkpoint, back.exit_code) == (2, None, None, 130)
    assert back.__notes__ == ["a note"]
    deep = copy.deepcopy(errors.CollectiveTimeoutError("timed out", ranks=[2]))
    assert deep.ranks == [2]


@pytest.mark.parametrize("name", [n for n in errors.__all__ if isinstance(getattr(errors, n), type)
                                  and issubclass(getattr(errors, n), errors.HybridPGMError)])
def test_every_error_is_a_value_error_or_a_runtime_error(name):
    """Guard: the promise of the module docstring."""
    cls = getattr(errors, name)
    assert issubclass(cls, (ValueError, RuntimeError)) or cls is errors.HybridPGMError


@pytest.mark.parametrize("name, family", [("CheckpointNotFoundError", "CheckpointError"),
                                          ("DataNotFoundError", "DataError")])
def test_the_not_found_errors_are_file_not_found_errors_of_their_family(name, family):
    cls = getattr(errors, name)
    error = cls("no model file at '/no/such.pt'")
    assert isinstance(error, getattr(errors, family)) and isinstance(error, FileNotFoundError)
    assert isinstance(error, OSError) and isinstance(error, errors.HybridPGMError)
    assert str(error) == "no model file at '/no/such.pt'" and error.args == ("no model file at '/no/such.pt'",)
    assert error.errno is None and error.filename is None
    assert isinstance(error, ValueError if family == "DataError" else RuntimeError)


def _missing_model_file(tmp_path):
    hybridpgm.load(tmp_path / "none.pt")


def _missing_bif(tmp_path):
    from hybridpgm.graphs import read_bif
    read_bif(tmp_path / "none.bif")


def _missing_network(tmp_path):
    from hybridpgm.graphs.bif import load_network
    load_network(str(tmp_path / "none.bif"))


def _missing_fashion_root(tmp_path):
    from hybridpgm.data import find_fashion_mnist
    find_fashion_mnist(tmp_path / "none")


def _fashion_root_lacking_files(tmp_path):
    from hybridpgm.data import find_fashion_mnist
    find_fashion_mnist(tmp_path)


def _missing_dataset(tmp_path):
    from hybridpgm.data import load_dataset
    load_dataset("fashion-mnist", root=tmp_path / "none")


def _missing_idx(tmp_path):
    from hybridpgm.data import read_idx
    read_idx(tmp_path / "none.gz")


def _missing_checkpoint(tmp_path):
    from hybridpgm.train.checkpoint import load_checkpoint
    load_checkpoint(tmp_path / "none.pt")


def _missing_checkpoint_to_resume(tmp_path):
    import pyro.infer

    from hybridpgm.generative import VAE
    from hybridpgm.infer import SVIObjective

    vae = VAE(4, 2, hidden=(4,))
    hybridpgm.fit(SVIObjective(vae.model, vae.guide, pyro.infer.Trace_ELBO()), torch.rand(8, 4).round(),
                  batch_size=4, epochs=1, checkpoint=tmp_path / "none.pt", resume="require", progress=False)


@pytest.mark.parametrize("call, family", [
    (_missing_model_file, errors.CheckpointError), (_missing_checkpoint, errors.CheckpointError),
    (_missing_checkpoint_to_resume, errors.CheckpointError),
    (_missing_bif, errors.DataError), (_missing_network, errors.DataError), (_missing_fashion_root, errors.DataError),
    (_fashion_root_lacking_files, errors.DataError), (_missing_dataset, errors.DataError),
    (_missing_idx, errors.DataError)])
def test_a_file_that_does_not_exist_is_a_file_not_found_error_of_its_family(tmp_path, call, family):
    """Before, these were a CheckpointError (a RuntimeError) or a DataError (a ValueError) only: ``except
    FileNotFoundError`` / ``except OSError`` missed every one."""
    with pytest.raises(FileNotFoundError) as caught:
        call(tmp_path)
    assert isinstance(caught.value, family) and caught.value.errno is None
    assert "\n" not in str(caught.value)
    _same(caught.value, pickle.loads(pickle.dumps(caught.value)))


def test_a_missing_model_file_is_named_quoted_on_one_line(tmp_path):
    """Before: ``no model file at /.../no\\nsuch.pt``, two lines and unquoted."""
    path = tmp_path / "no\nsuch.pt"
    with pytest.raises(errors.CheckpointNotFoundError) as caught:
        hybridpgm.load(path)
    assert str(caught.value) == f"no model file at {str(path)!r}"


def test_a_folder_given_as_a_data_root_file_is_not_a_file_not_found_error(tmp_path):
    """Guard: a root that exists as a file is a plain DataError, not a FileNotFoundError."""
    from hybridpgm.data import find_fashion_mnist
    (tmp_path / "afile").write_text("x")
    with pytest.raises(errors.DataError, match="is a file, not a folder") as caught:
        find_fashion_mnist(tmp_path / "afile")
    assert not isinstance(caught.value, OSError)


class _NanLoss:
    """An objective whose loss is NaN from the first step."""

    def __init__(self):
        self.module = torch.nn.Linear(2, 1)

    def players(self):
        return {"elbo": list(self.module.parameters())}

    def loss(self, player, batch):
        return self.module(batch).mean() * float("nan")


def _diverging_fit(_):
    torch.set_num_threads(1)
    hybridpgm.fit(_NanLoss(), torch.zeros(8, 2), epochs=1, batch_size=4, progress=False)


def test_a_fit_that_diverges_in_a_process_pool_worker_reaches_the_parent_as_itself():
    """Before, the parent got BrokenProcessPool ("terminated abruptly"): unpickling the worker's
    TrainingDivergedError raised TypeError, which killed the pool."""
    spawn = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=spawn) as pool:
        future = pool.submit(_diverging_fit, 0)
        with pytest.raises(errors.TrainingDivergedError, match="player 'elbo'") as caught:
            future.result()
        assert pool.submit(int, "3").result() == 3  # the pool still works
    assert (caught.value.step, caught.value.player) == (0, "elbo")


class _Explodes:
    """An objective whose loss grows tenfold at every step: ``fit`` warns that it exploded."""

    def __init__(self):
        self.module = torch.nn.Linear(1, 1)
        self.calls = 0

    def players(self):
        return {"elbo": list(self.module.parameters())}

    def loss(self, player, batch):
        self.calls += 1
        return self.module.weight.sum() * 0 + 10.0 ** self.calls


def _exploding_fit():
    torch.manual_seed(0)
    return hybridpgm.fit(_Explodes(), torch.zeros(40, 1), epochs=1, batch_size=4, progress=False)


def test_filtering_hybridpgm_warning_silences_hybridpgm_and_no_one_else():
    """Before, there was no hybridpgm warning category: the loss explosion was a plain RuntimeWarning."""
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=errors.HybridPGMWarning)
        result = _exploding_fit()
        warnings.warn("the user's own warning", UserWarning)
    assert result.loss_explosions  # hybridpgm did warn, and the filter hid it
    assert [(w.category, str(w.message)) for w in shown] == [(UserWarning, "the user's own warning")]


def test_the_divergence_warning_keeps_its_builtin_category_and_points_at_the_caller():
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        _exploding_fit()
    [warning] = shown
    assert warning.category is errors.DivergenceWarning
    assert issubclass(warning.category, RuntimeWarning) and issubclass(warning.category, errors.HybridPGMWarning)
    assert warning.filename == __file__
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=RuntimeWarning)  # an existing filter keeps working
        _exploding_fit()
    assert shown == []


_BUILTIN_CATEGORY = {"TrainingWarning": UserWarning, "DivergenceWarning": RuntimeWarning,
                     "EstimateWarning": UserWarning, "DiagnosticsWarning": UserWarning}


@pytest.mark.parametrize("name", [n for n in errors.__all__ if n.endswith("Warning") and n != "HybridPGMWarning"])
def test_every_warning_is_a_hybridpgm_warning_and_its_one_former_builtin_category(name):
    """Each category is the built-in one its warnings had before, and not the other: a first version made the
    loss-explosion warning (a RuntimeWarning) a UserWarning too, so ``ignore::UserWarning`` hid it and
    ``error::UserWarning`` raised at the end of a fit that used to return."""
    cls = getattr(errors, name)
    assert issubclass(cls, errors.HybridPGMWarning)
    builtin = _BUILTIN_CATEGORY[name]
    other = RuntimeWarning if builtin is UserWarning else UserWarning
    assert issubclass(cls, builtin) and not issubclass(cls, other)


def test_a_user_warning_filter_does_not_hide_the_loss_explosion():
    with warnings.catch_warnings(record=True) as shown:
        warnings.simplefilter("always")
        warnings.filterwarnings("ignore", category=UserWarning)
        _exploding_fit()
    assert [w.category for w in shown] == [errors.DivergenceWarning]
