"""The temporaries of hybridpgm's atomic writer (hybridpgm/train/stale_temporaries.py, atomic_write.py): hidden,
named after the target and the writing process (``.NAME.HOST-PID.XXXXXXXX.tmp``), and removed by the next write of
the same target once their writer has ended (a write killed mid-way: SIGKILL, the OOM killer), never while it lives.

Before, only ``fit`` removed temporaries, only its checkpoint's, and all of them whoever wrote them: a killed
``hybridpgm.save``, metrics report or figure left its ``.model.pt.XXXX.tmp`` for good, one more per killed write.
A dead writer is simulated by a name carrying a PID no process can have (above Linux's ``PID_MAX_LIMIT``, 2**22);
one test kills a real writer with SIGKILL.
"""

import hashlib
import os
import re
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import hybridpgm
from hybridpgm import fit
from hybridpgm.diagnostics.plots import plot_khat
from hybridpgm.energy import RBM
from hybridpgm.graphs.bif import load_network, write_bif
from hybridpgm.train import stale_temporaries
from hybridpgm.train.atomic_write import remove_stale_temporaries, write_atomically, write_text_atomically
from hybridpgm.train.stale_temporaries import writing_in
from hybridpgm.train.checkpoint import load_checkpoint
from tests.train.helpers import LinearRegression, regression_data

ROOT = Path(__file__).resolve().parents[2]
DEAD_PID = 2 ** 22 + 1  # above PID_MAX_LIMIT: never a live process on Linux

pytestmark = pytest.mark.skipif(sys.platform != "linux", reason="process ids as Linux gives them")


def _host():
    """This host as temporaries' names record it: 8 hex digits of the BLAKE2s hash of its name."""
    return hashlib.blake2s(socket.gethostname().encode("utf-8", "surrogateescape"), digest_size=4).hexdigest()


def _name(target, pid, host=None, tail="k1ll3d00"):
    """The temporary's name a writer ``pid`` of ``host`` (this host by default) gives ``target``."""
    return f".{target}.{host or _host()}-{pid}.{tail}.tmp"


WRITES = {
    "model.pt": lambda p: hybridpgm.save(RBM(4, 3), p),
    "metrics.json": lambda p: write_text_atomically(p, "{}\n", "metrics file"),
    "loss.png": lambda p: plot_khat(torch.rand(10), p),
    "asia.bif": lambda p: write_bif(load_network("asia"), p),
    "ck.pt": lambda p: write_atomically(p, {"step": 1}, "checkpoint"),
}


@pytest.mark.parametrize("target", sorted(WRITES))
def test_a_write_removes_what_dead_writers_of_its_target_left(tmp_path, target):
    """Old code: the dead writers' temporaries stayed (only fit's start removed a checkpoint's)."""
    stale = [tmp_path / _name(target, DEAD_PID), tmp_path / _name(target, DEAD_PID, tail="abc_1234")]
    for path in stale:
        path.write_bytes(b"half a file")
    WRITES[target](tmp_path / target)
    assert sorted(os.listdir(tmp_path)) == [target]


def test_a_temporary_a_live_writer_may_still_be_writing_is_never_removed(tmp_path):
    """Only a temporary whose writer, a process of this host, has ended is removed.  Old code: fit removed every
    ``.c.pt.*.tmp`` at its start, also one a live process was writing (this test failed there on the fit)."""
    writing = tmp_path / _name("c.pt", os.getpid(), tail="writing0")  # this process writes it (another thread)
    live = [writing.name, _name("c.pt", os.getppid()),  # this process's own, its parent's: alive
            _name("c.pt", DEAD_PID, host="0badc0de")]  # another host's: whether it lives cannot be told
    others = [".c.pt.abcd1234.tmp.keep", "c.pt.tmp"]  # not names of hybridpgm's temporaries: never touched
    dead_elsewhere = [_name("d.pt", DEAD_PID), _name("c.pt.x", DEAD_PID)]  # other targets' killed writes: removed
    for name in live + others + dead_elsewhere:
        (tmp_path / name).write_bytes(b"x")
    os.mkdir(tmp_path / _name("c.pt", DEAD_PID, tail="afolder0"))  # not a file a write left: never removed
    with writing_in(tmp_path):  # the other thread's write, under way
        write_atomically(tmp_path / "c.pt", {"step": 1}, "checkpoint")
        fit(LinearRegression(), regression_data(), checkpoint=tmp_path / "c.pt", progress=False, seed=0,
            max_steps=1, overwrite=True)
    assert load_checkpoint(tmp_path / "c.pt")["step"] == 1
    assert sorted(os.listdir(tmp_path)) == sorted(live + others + ["c.pt", _name("c.pt", DEAD_PID, tail="afolder0")])


def test_a_temporary_of_this_process_id_that_it_is_not_writing_is_removed(tmp_path):
    """A process killed mid-write whose id the next run gets again (a restarted container's PID 1, same host name):
    its temporary names this process, which is not writing it.  Found by a review: it stayed for good, while the
    code before named temporaries removed every checkpoint temporary at fit's start."""
    stale = tmp_path / _name("c.pt", os.getpid())
    stale.write_bytes(b"\0" * 1000)
    fit(LinearRegression(), regression_data(), checkpoint=tmp_path / "c.pt", progress=False, seed=0, max_steps=1)
    assert sorted(os.listdir(tmp_path)) == ["c.pt"]
    again = tmp_path / _name("m.pt", os.getpid())
    again.write_bytes(b"x")
    hybridpgm.save(RBM(4, 3), tmp_path / "m.pt")
    assert sorted(os.listdir(tmp_path)) == ["c.pt", "m.pt"]


def test_repeated_writes_list_the_folder_only_when_something_else_changed_it(tmp_path, monkeypatch):
    """A review measured a folder listing per write (O(N) in a folder of N files): the listing is skipped while the
    folder is as this process's last write there left it, also when the writes alternate between targets (a
    second review: a checkpoint and a report in turn listed it every time)."""
    listed = []
    real = os.listdir
    monkeypatch.setattr(stale_temporaries.os, "listdir", lambda d: listed.append(d) or real(d))
    for _ in range(3):
        write_text_atomically(tmp_path / "r.json", "{}", "report")
        write_text_atomically(tmp_path / "m.json", "{}", "report")
    assert len(listed) == 1
    (tmp_path / _name("r.json", DEAD_PID)).write_bytes(b"x")  # a killed writer's: the folder changed
    write_text_atomically(tmp_path / "r.json", "{}", "report")
    assert len(listed) == 2 and sorted(os.listdir(tmp_path)) == ["m.json", "r.json"]


@pytest.mark.parametrize("relative", [True, False])
def test_threads_writing_one_file_never_remove_each_others_temporary(tmp_path, monkeypatch, relative):
    """Found by a review: with a relative path, 60 of 120 writes of two threads to one file failed with ENOENT
    (one thread's cleanup took the other's temporary, named with the same process id, for a killed writer's)."""
    import threading

    monkeypatch.chdir(tmp_path)
    target = "c.json" if relative else tmp_path / "c.json"
    failures = []

    def write(n):
        for i in range(30):
            try:
                write_text_atomically(target, f"{n} {i}", "report")
            except Exception as error:  # the test counts every failure
                failures.append(error)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == [] and sorted(os.listdir(tmp_path)) == ["c.json"]


def test_a_write_leaves_a_temporary_named_without_a_writer_and_fit_removes_its_own(tmp_path):
    """A temporary named as hybridpgm named them before (``.NAME.XXXXXXXX.tmp``) cannot tell whether its writer
    lives: a write leaves it; ``fit`` removes its checkpoint's when it starts, as it always did (those two held
    before too; ``remove_stale_temporaries``'s ``unnamed`` is new: a TypeError on old code)."""
    (tmp_path / ".m.pt.abcd1234.tmp").write_bytes(b"x")
    (tmp_path / ".c.pt.abcd1234.tmp").write_bytes(b"x")
    hybridpgm.save(RBM(4, 3), tmp_path / "m.pt")
    fit(LinearRegression(), regression_data(), checkpoint=tmp_path / "c.pt", progress=False, seed=0, max_steps=1)
    assert sorted(os.listdir(tmp_path)) == [".m.pt.abcd1234.tmp", "c.pt", "m.pt"]
    assert remove_stale_temporaries(tmp_path / "m.pt", unnamed=False) == []
    assert remove_stale_temporaries(tmp_path / "m.pt") == [tmp_path / ".m.pt.abcd1234.tmp"]


def test_a_temporary_is_hidden_and_names_its_target_and_writer(tmp_path):
    """Old code: ``.model.pt.XXXXXXXX.tmp``, with nothing to tell a live writer's from a dead one's."""
    seen = []

    def save(payload, file):
        seen.extend(os.listdir(tmp_path))
        file.write(payload)
    write_atomically(tmp_path / "model.pt", b"data", "model file", save=save)
    write_atomically(tmp_path / "model.pt", b"data", "model file", save=save)
    temporaries = [name for name in seen if name != "model.pt"]
    assert len(temporaries) == 2 and temporaries[0] != temporaries[1]  # one while each write lasts, a new name
    for name in temporaries:
        assert re.fullmatch(rf"\.model\.pt\.{_host()}-{os.getpid()}\.[^.]+\.tmp", name), name
    assert os.listdir(tmp_path) == ["model.pt"]


_KILLED = r"""
import os, signal, sys
import hybridpgm
from hybridpgm.energy import RBM
os.fsync = lambda fd: os.kill(os.getpid(), signal.SIGKILL)  # killed with the temporary written, not renamed
hybridpgm.save(RBM(4, 3), sys.argv[1])
"""


def test_a_save_killed_mid_write_leaves_a_temporary_the_next_save_removes(tmp_path):
    """A real SIGKILL during ``hybridpgm.save`` (at its fsync).  Old code: the ``.model.pt.*.tmp`` stayed."""
    target = tmp_path / "model.pt"
    hybridpgm.save(RBM(4, 3), target)
    before = target.read_bytes()
    proc = subprocess.run([sys.executable, "-c", _KILLED, str(target)], capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT)))
    assert proc.returncode == -9, proc.stderr
    left = sorted(p for p in os.listdir(tmp_path) if p != "model.pt")
    assert len(left) == 1 and left[0].startswith(".model.pt.") and target.read_bytes() == before
    hybridpgm.save(RBM(4, 3), target)
    assert os.listdir(tmp_path) == ["model.pt"]


def test_a_write_through_a_symbolic_link_counts_the_folder_it_leads_to(tmp_path):
    """Found by a review: the writes in progress were counted by the folder's path as given, so a write through
    a link to the folder took another thread's temporary there (named with this process's id) for stale and
    removed it: that thread's write failed with ENOENT."""
    real = tmp_path / "real"
    real.mkdir()
    (tmp_path / "link").symlink_to(real, target_is_directory=True)
    writing = real / _name("a.pt", os.getpid(), tail="writing0")
    with writing_in(real):  # another thread's write into the folder, under way
        writing.write_bytes(b"half")
        write_text_atomically(tmp_path / "link" / "b.json", "{}", "report")
        assert writing.exists()
    assert sorted(os.listdir(real)) == sorted([writing.name, "b.json"])


def test_the_folders_remembered_are_the_most_recently_written_few_hundred(tmp_path, monkeypatch):
    """Found by an audit (LONGRUN): one entry per folder ever written, kept after the folder was gone (a service
    writing each run's checkpoint into a folder of its own).  Fails before: all 12 kept.  Now the least recently
    written go first; a folder dropped is listed once more at its next write, and still cleaned."""
    monkeypatch.setattr(stale_temporaries, "_MAX_LOOKED", 4, raising=False)
    monkeypatch.setattr(stale_temporaries, "_LOOKED", type(stale_temporaries._LOOKED)())
    monkeypatch.setattr(stale_temporaries.time, "time_ns", lambda: 10 ** 30)  # every mtime old enough to trust
    folders = [tmp_path / f"run{i}" for i in range(12)]
    for folder in folders:
        folder.mkdir()
        write_text_atomically(folder / "r.json", "{}", "report")
    write_text_atomically(folders[8] / "r.json", "{}", "report")  # the most recent again
    kept = [os.path.realpath(f) for f in (folders[9], folders[10], folders[11], folders[8])]
    assert list(stale_temporaries._LOOKED) == kept
    (folders[0] / _name("r.json", DEAD_PID)).write_bytes(b"x")
    listed = []
    real = os.listdir
    monkeypatch.setattr(stale_temporaries.os, "listdir", lambda d: listed.append(d) or real(d))
    write_text_atomically(folders[0] / "r.json", "{}", "report")
    assert listed == [folders[0]] and os.listdir(folders[0]) == ["r.json"]
    assert len(stale_temporaries._LOOKED) == 4


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_process_forked_while_another_thread_counts_a_write_can_write(tmp_path):
    """Before, a child forked while another thread held the lock of the write counts (entering or leaving a write,
    recording a folder) inherited it held by a thread it does not have: its first write waited forever."""
    from tests.forks import exit_code_of_fork_while_held

    stale = tmp_path / _name("c.pt", DEAD_PID)
    stale.write_bytes(b"half a file")

    def child_writes():
        write_atomically(tmp_path / "c.pt", {"step": 7}, "checkpoint")
        return sorted(os.listdir(tmp_path)) == ["c.pt"]

    assert exit_code_of_fork_while_held(lambda: stale_temporaries._LOCK, child_writes) == 0
    assert torch.load(tmp_path / "c.pt", weights_only=True) == {"step": 7}
