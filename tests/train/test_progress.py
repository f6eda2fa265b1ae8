"""fit's progress bar and notices (:mod:`hybridpgm.train.progress`)."""

from hybridpgm import fit
from hybridpgm.train.progress import advance, progress_bar, say
from tests.train.helpers import LinearRegression, regression_data


def test_a_shown_bar_counts_steps_and_shows_each_players_loss(capsys):
    with progress_bar(total=3, initial=1, desc="Demo", show=True) as bar:
        for _ in range(2):
            advance(bar, {"elbo": 1.5, "critic": -0.25})
        assert bar.n == 3
    err = capsys.readouterr().err
    assert "Demo" in err and "3/3" in err and "elbo_loss=1.5" in err and "critic_loss=-0.25" in err


def test_a_hidden_bar_counts_nothing_and_prints_nothing(capsys):
    bar = progress_bar(total=2, initial=0, desc="Hidden", show=False)
    advance(bar, {"elbo": 1.0})
    bar.close()
    assert bar.disable and bar.n == 0
    assert capsys.readouterr().err == ""


def test_fit_shows_its_bar_only_when_asked(capsys):
    fit(LinearRegression(), regression_data(16), epochs=1, batch_size=8, seed=0, device="cpu", progress=True)
    shown = capsys.readouterr().err
    fit(LinearRegression(), regression_data(16), epochs=1, batch_size=8, seed=0, device="cpu", progress=False)
    assert "LinearRegression" in shown and "2/2" in shown
    assert "LinearRegression" not in capsys.readouterr().err


def test_say_prints_one_prefixed_line_on_stderr(capsys):
    say("resuming X from 'run.pt' at step 100")
    out = capsys.readouterr()
    assert out.err == "hybridpgm: resuming X from 'run.pt' at step 100\n" and out.out == ""


def test_fit_without_a_bar_starts_no_tqdm_monitor_thread(monkeypatch):
    """Before, ``fit(progress=False)`` made a disabled ``tqdm.std`` bar, and tqdm starts its ``tqdm_monitor`` thread
    (which never ends) for any bar of a class with a ``monitor_interval``.  tqdm's own setting stays as it is."""
    import tqdm.auto
    import tqdm.std

    started = []

    class Monitor:  # records what tqdm would start (no monitor is taken as running)
        def __init__(self, cls, interval):
            started.append((cls, interval))

        def report(self):
            return True

    monkeypatch.setattr(tqdm.std, "TMonitor", Monitor)
    for cls in (tqdm.std.tqdm, tqdm.auto.tqdm):  # no monitor running yet, whatever ran before
        monkeypatch.setattr(cls, "monitor", None)
    interval = tqdm.std.tqdm.monitor_interval
    fit(LinearRegression(), regression_data(16), epochs=1, batch_size=8, seed=0, device="cpu", progress=False)
    bar = progress_bar(total=2, initial=0, desc="Hidden", show=False)
    bar.close()
    assert started == [] and type(bar).monitor is None
    assert tqdm.std.tqdm.monitor_interval == interval
    with progress_bar(total=1, initial=0, desc="Shown", show=True) as bar:  # a shown bar: tqdm's monitor
        assert type(bar).monitor_interval == interval
    assert [cls for cls, _ in started] == ([type(bar)] if interval else [])
