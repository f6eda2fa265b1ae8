"""fit's bar and heartbeat made under its stop-signal handlers, and its bar's end (:mod:`hybridpgm.train.run_monitors`,
:func:`hybridpgm.train.progress.finish`)."""

import signal

import pytest
import tqdm.auto
import tqdm.std

from hybridpgm import fit
from hybridpgm.errors import TrainingInterrupted
from tests.train.helpers import LinearRegression, regression_data


@pytest.fixture
def default_sigint():
    """SIGINT handled as in a terminal or a kernel (a test run under ``nohup`` ignores it)."""
    before = signal.getsignal(signal.SIGINT)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, before)


def _bars(desc):
    return [bar for bar in list(tqdm.std.tqdm._instances) if getattr(bar, "desc", None) == desc]


def test_a_ctrl_c_in_the_bars_first_draw_stops_after_a_step_and_leaves_no_bar(monkeypatch, default_sigint):
    """A notebook's "interrupt kernel" landed in tqdm's constructor (its first draw), before ``fit`` installed its
    handlers: a bare KeyboardInterrupt, and the half-made bar stayed registered with tqdm, so every later text bar
    drew one row lower (one printed line per refresh in a notebook).  Now the bar is made under the handlers: the
    Ctrl-C is a stop request, one step runs, and fit raises TrainingInterrupted with its bar closed."""
    real, calls = tqdm.std.tqdm.refresh, []

    def refresh(self, *args, **kwargs):
        if not calls:
            calls.append(self.desc)
            signal.raise_signal(signal.SIGINT)
        return real(self, *args, **kwargs)

    monkeypatch.setattr(tqdm.std.tqdm, "refresh", refresh)
    raised = None
    try:
        fit(LinearRegression(), regression_data(), batch_size=16, max_steps=4, seed=0, device="cpu", progress=True)
    except KeyboardInterrupt as error:  # HEAD's was a bare KeyboardInterrupt; pytest.raises would end the session
        raised = error
    assert calls == ["LinearRegression"]
    assert isinstance(raised, TrainingInterrupted) and raised.signum == signal.SIGINT and raised.step == 1
    assert _bars("LinearRegression") == []


def test_a_bar_whose_construction_fails_is_not_left_registered(monkeypatch):
    from hybridpgm.train.progress import progress_bar

    def refresh(self, *args, **kwargs):
        raise RuntimeError("display gone")

    monkeypatch.setattr(tqdm.std.tqdm, "refresh", refresh)
    with pytest.raises(RuntimeError, match="display gone") as raised:
        progress_bar(total=3, initial=0, desc="Broken", show=True)
    assert raised.value.__traceback__ is not None  # the traceback (and its frames) still alive
    assert _bars("Broken") == []


class _Recorded(tqdm.std.tqdm):
    """tqdm's text bar, recording ``(n, total)`` when closed (tqdm.notebook paints a bar closed with
    ``n < total`` red)."""

    closed: list = []

    def close(self):
        if not self.disable:
            _Recorded.closed.append((self.n, self.total))
        super().close()


class _StopAt:
    def __init__(self, step):
        self.step = step

    def on_step_end(self, info):
        if info.step == self.step:
            info.request_stop()


class _FailAt:
    def on_step_end(self, info):
        if info.step == 2:
            raise RuntimeError("callback failed")


class _SignalAt:
    def on_step_end(self, info):
        if info.step == 2:
            signal.raise_signal(signal.SIGINT)


@pytest.fixture
def recorded(monkeypatch):
    monkeypatch.setattr(tqdm.auto, "tqdm", _Recorded)  # the class progress_bar takes for a shown bar
    monkeypatch.setattr(_Recorded, "closed", [])
    return _Recorded.closed


def _fit(**kwargs):
    return fit(LinearRegression(), regression_data(), batch_size=16, max_steps=30, seed=0, device="cpu",
               progress=True, **kwargs)


def test_a_run_a_callback_stopped_closes_its_bar_complete(recorded):
    result = _fit(callbacks=[_StopAt(3)])
    assert result.stopped_early and result.steps == 3
    assert recorded == [(3, 3)]  # HEAD: (3, 30), a red bar in a notebook


def test_a_resumed_run_that_had_stopped_closes_its_bar_complete(recorded, tmp_path):
    checkpoint = tmp_path / "run.pt"
    _fit(callbacks=[_StopAt(4)], checkpoint=checkpoint)
    result = _fit(callbacks=[_StopAt(4)], checkpoint=checkpoint)
    assert result.steps == 4
    assert recorded == [(4, 4), (4, 4)]  # HEAD: (4, 30) twice


def test_a_full_run_closes_its_bar_at_its_total(recorded):
    assert _fit().steps == 30
    assert recorded == [(30, 30)]


def test_an_exception_or_a_stop_signal_leaves_the_bar_short(recorded, default_sigint):
    with pytest.raises(RuntimeError, match="callback failed"):
        _fit(callbacks=[_FailAt()])
    with pytest.raises(TrainingInterrupted):
        _fit(callbacks=[_SignalAt()])
    assert recorded == [(2, 30), (2, 30)]


def test_finish_leaves_a_hidden_bar_and_a_complete_bar_as_they_are():
    from hybridpgm.train.progress import finish, progress_bar

    hidden = progress_bar(total=5, initial=2, desc="Hidden", show=False)
    finish(hidden)
    assert (hidden.n, hidden.total) == (2, 5)
    hidden.close()
    with progress_bar(total=2, initial=2, desc="Done", show=True) as done:
        finish(done)
        assert (done.n, done.total) == (2, 2)


def test_a_bar_factory_put_in_place_of_tqdm_auto_still_makes_fits_bar(monkeypatch):
    """A user (or a notebook extension) may replace ``tqdm.auto.tqdm`` by a function making bars: fit calls it as
    before (review: the two-stage construction called ``function.__new__`` and raised a TypeError)."""
    made = []

    def factory(**options):
        made.append(options["desc"])
        return tqdm.std.tqdm(**{**options, "disable": True})

    monkeypatch.setattr(tqdm.auto, "tqdm", factory)
    result = fit(LinearRegression(), regression_data(), batch_size=16, max_steps=3, progress=True)
    assert result.steps == 3 and made == ["LinearRegression"]
