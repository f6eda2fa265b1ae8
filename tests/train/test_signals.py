"""Graceful stop on SIGTERM/SIGINT (hybridpgm/train/signals.py)."""

import os
import re
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from hybridpgm import fit
from hybridpgm.errors import TrainingInterrupted, TrainingWarning
from hybridpgm.train import load_checkpoint
from tests.train.helpers import LinearRegression, regression_data
from tests.train.vae_fit import _fit_vae, _params

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _signals_not_ignored():
    """Run each test with SIGINT/SIGTERM handled as in a terminal: started under ``nohup`` (SIGINT ignored) ``fit``
    rightly leaves an ignored signal alone, and the tests that send one would see nothing arrive."""
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    if before[signal.SIGINT] is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    if before[signal.SIGTERM] is signal.SIG_IGN:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    yield
    for signum, handler in before.items():
        signal.signal(signum, handler)


class SendAt:
    """Sends this process ``signum`` ``times`` times at the end of step ``step``."""

    def __init__(self, step, signum=signal.SIGTERM, times=1):
        self.step, self.signum, self.times = step, signum, times
        self.handler_during_fit = None

    def on_step_end(self, info):
        self.handler_during_fit = signal.getsignal(self.signum)
        if info.step == self.step:
            for _ in range(self.times):
                os.kill(os.getpid(), self.signum)


def run(ckpt, callbacks=(), **kwargs):
    return fit(LinearRegression(), regression_data(), epochs=4, batch_size=16, checkpoint=ckpt, progress=False,
               seed=0, callbacks=callbacks, **kwargs)


@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_a_signal_finishes_the_step_writes_the_checkpoint_and_raises(tmp_path, capsys, signum, code):
    before = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    ckpt = tmp_path / "s.pt"
    sender = SendAt(5, signum)
    with pytest.raises(TrainingInterrupted) as info:
        run(ckpt, callbacks=[sender], checkpoint_every=4)
    assert isinstance(info.value, KeyboardInterrupt)
    assert (info.value.step, info.value.signum, info.value.exit_code) == (5, signum, code)
    assert load_checkpoint(ckpt)["step"] == 5
    name = signal.Signals(signum).name
    assert capsys.readouterr().err == (f"hybridpgm: interrupted by {name} at step 5; checkpoint written to "
                                       f"{str(ckpt)!r}; run again with the same arguments to resume\n")
    assert sender.handler_during_fit not in (before[signum], signal.SIG_DFL)
    assert {s: signal.getsignal(s) for s in before} == before  # handlers restored


def test_an_interrupted_run_that_would_not_resume_says_how_to_continue(tmp_path, capsys):
    """With ``resume="never"`` (the CLI without ``--resume``) the same arguments would refuse the checkpoint;
    before, the message told the user to run them again."""
    ckpt = tmp_path / "s.pt"
    with pytest.raises(TrainingInterrupted):
        run(ckpt, callbacks=[SendAt(3)], resume="never")
    assert capsys.readouterr().err.endswith(f"checkpoint written to {str(ckpt)!r}; run again with resume=True "
                                            "(CLI: --resume) to continue it\n")
    assert run(ckpt, resume=True).steps > 3


def test_a_second_signal_stops_at_once_without_a_checkpoint(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    ckpt = tmp_path / "s.pt"
    with pytest.raises(TrainingInterrupted, match="second SIGTERM") as info:
        run(ckpt, callbacks=[SendAt(3, times=2)], checkpoint_every=1)
    assert info.value.step is None
    assert load_checkpoint(ckpt)["step"] == 2  # step 3's checkpoint was never written
    assert signal.getsignal(signal.SIGTERM) == before


def test_handlers_are_restored_after_a_normal_run(tmp_path):
    def mine(signum, frame):
        pass

    previous = signal.signal(signal.SIGTERM, mine)
    try:
        run(None)
        assert signal.getsignal(signal.SIGTERM) is mine
    finally:
        signal.signal(signal.SIGTERM, previous)


SCRIPT = textwrap.dedent(
    """
    import sys, time
    sys.path.insert(0, {root!r})
    from hybridpgm.errors import TrainingInterrupted
    from tests.train.vae_fit import _fit_vae

    class Report:
        def on_step_end(self, info):
            print("step", info.step, flush=True)
            time.sleep(0.1)

    try:
        _fit_vae(checkpoint={ckpt!r}, checkpoint_every=4, callbacks=[Report()])
    except TrainingInterrupted as stop:
        sys.exit(stop.exit_code)
    """
)


@pytest.mark.slow  # a subprocess: about 15 s on 2 busy cores
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_from_outside_leaves_a_checkpoint_that_resumes_bit_identically(tmp_path, signum):
    ckpt = tmp_path / "outside.pt"
    proc = subprocess.Popen([sys.executable, "-c", SCRIPT.format(root=str(ROOT), ckpt=str(ckpt))],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, OMP_NUM_THREADS="1"))
    for line in proc.stdout:
        if line.strip() == "step 5":
            proc.send_signal(signum)
            break
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 128 + signum, err
    name = signal.Signals(signum).name
    found = re.findall(rf"hybridpgm: interrupted by {name} at step (\d+); checkpoint written to '(.+)'", err)
    assert len(found) == 1 and found[0][1] == str(ckpt), err
    step = int(found[0][0])
    assert 5 <= step < 18  # not lost: the step reached, not the last periodic checkpoint (4)
    assert load_checkpoint(ckpt)["step"] == step
    assert not [p for p in os.listdir(tmp_path) if p.endswith(".tmp")]
    resumed, result = _fit_vae(checkpoint=ckpt, checkpoint_every=4)
    uninterrupted, _ = _fit_vae()
    assert result.steps == 18
    expected, got = _params(uninterrupted), _params(resumed)
    assert all(torch.equal(expected[k], got[k]) for k in expected)


def test_an_ignored_signal_stays_ignored(tmp_path):
    previous = signal.signal(signal.SIGTERM, signal.SIG_IGN)
    try:
        result = run(tmp_path / "s.pt", callbacks=[SendAt(2)])
        assert result.steps == 16 and signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, previous)


@pytest.mark.parametrize("interrupted_after", [signal.SIGINT, signal.SIGTERM])
def test_a_ctrl_c_while_the_handlers_go_back_leaves_none_of_fits_installed(monkeypatch, interrupted_after):
    """restore() emptied its record first and put SIGINT's handler back before SIGTERM's: a Ctrl-C right after
    Python's default SIGINT handler was back raised there, and fit's SIGTERM handler stayed installed for good
    (a later SIGTERM was swallowed).  Now every handler goes back, SIGINT's last, and the interrupt follows."""
    from hybridpgm.train.signals import StopSignals

    def previous_int(signum, frame):
        pass

    def previous_term(signum, frame):
        pass

    real = signal.signal
    before = {signal.SIGINT: real(signal.SIGINT, previous_int), signal.SIGTERM: real(signal.SIGTERM, previous_term)}
    try:
        stop = StopSignals().__enter__()
        armed = [True]

        def signal_then_ctrl_c(signum, handler):  # a Ctrl-C delivered just after this handler went back
            old = real(signum, handler)
            if armed[0] and signum == interrupted_after:
                armed[0] = False
                raise KeyboardInterrupt("Ctrl-C")
            return old

        monkeypatch.setattr(signal, "signal", signal_then_ctrl_c)
        with pytest.raises(KeyboardInterrupt, match="Ctrl-C"):
            stop.restore()
        monkeypatch.undo()
        assert signal.getsignal(signal.SIGTERM) is previous_term
        assert signal.getsignal(signal.SIGINT) is previous_int
        assert not armed[0]
    finally:
        for signum, handler in before.items():
            real(signum, handler)


class _FailsAfterSignal(SendAt):
    """Sends the signal at the end of ``step``, then fails as a callback whose DataLoader workers the same signal
    killed would (``RuntimeError: DataLoader worker ... exited unexpectedly``)."""

    def on_step_end(self, info):
        super().on_step_end(info)
        if info.step == self.step:
            raise RuntimeError("DataLoader worker (pid 1234) exited unexpectedly")


class _Counts:
    def __init__(self):
        self.steps = []

    def on_step_end(self, info):
        self.steps.append(info.step)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_callback_failing_after_the_signal_still_leaves_the_steps_checkpoint(tmp_path, signum):
    """Found by an audit: a signal sent to the process group also stops the workers of a DataLoader a callback
    iterates (EvaluateEvery on a loader with workers); the callback's error then escaped fit, and every step since
    the last checkpoint was lost.  The error is a warning now, the remaining callbacks of the step are skipped,
    the step's checkpoint is written and TrainingInterrupted raised, as for any signal."""
    ckpt, later = tmp_path / "s.pt", _Counts()
    with pytest.warns(TrainingWarning, match=r"_FailsAfterSignal.on_step_end failed at step 5 after SIG(TERM|INT) "
                                             r"\(RuntimeError: DataLoader worker"):
        with pytest.raises(TrainingInterrupted) as info:
            run(ckpt, callbacks=[_FailsAfterSignal(5, signum), later], checkpoint_every=4)
    assert info.value.step == 5 and load_checkpoint(ckpt)["step"] == 5
    assert later.steps[-1] == 4  # skipped at the failing step


@pytest.mark.parametrize("checkpointed", [True, False])
def test_the_warning_of_a_callback_failing_after_the_signal_says_whether_a_checkpoint_is_written(tmp_path,
                                                                                                checkpointed):
    """Found by an audit of warnings: without a checkpoint path the warning still said "the step's checkpoint is
    written" (TrainingInterrupted then said nothing was saved), and its fixed stacklevel=2 pointed into
    hybridpgm/train/trainer.py instead of the caller's line."""
    ckpt = tmp_path / "s.pt" if checkpointed else None
    saved = (f"the step's checkpoint is written to {str(ckpt)!r}" if checkpointed else
             "no checkpoint is written (fit was given no checkpoint path)")
    with pytest.warns(TrainingWarning, match="skipped, fit stops as the signal asked, and ") as caught:
        with pytest.raises(TrainingInterrupted) as info:
            run(ckpt, callbacks=[_FailsAfterSignal(2)])
    [warning] = [w for w in caught if issubclass(w.category, TrainingWarning)]
    assert str(warning.message).endswith(saved)
    assert warning.filename == __file__  # the line of run() that called fit
    assert info.value.step == 2 and (tmp_path / "s.pt").exists() == checkpointed
    if checkpointed:
        assert load_checkpoint(ckpt)["step"] == 2


def test_a_callback_failing_without_a_signal_still_raises(tmp_path):
    class Fails:
        def on_step_end(self, info):
            if info.step == 2:
                raise RuntimeError("a bug in the callback")

    with pytest.raises(RuntimeError, match="a bug in the callback"):
        run(tmp_path / "s.pt", callbacks=[Fails()])


def test_in_a_run_of_several_processes_a_callback_failing_after_the_signal_raises():
    """Found by a review: in a DDP run, one rank's callback failing after the signal (before a collective the
    other ranks' callbacks join) and going on to the stop agreement paired that agreement with the wrong
    collective (gloo aborted the rank; no checkpoint); with several processes the error propagates as before."""
    from hybridpgm.train.signals import StopSignals, step_callbacks

    class Info:
        step = 3

    class Fails:
        def on_step_end(self, info):
            raise RuntimeError("DataLoader worker exited unexpectedly")

    stop = StopSignals()
    stop.signum = signal.SIGTERM
    with pytest.raises(RuntimeError, match="DataLoader worker"):
        step_callbacks([Fails()], Info(), stop, "s.pt", single_process=False)
    with pytest.warns(TrainingWarning, match="Fails.on_step_end failed at step 3 after SIGTERM"):
        step_callbacks([Fails()], Info(), stop, "s.pt")
