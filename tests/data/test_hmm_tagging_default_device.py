"""``random_hmm`` and ``sample_hmm`` with torch's default device set: their draws from a CPU generator (or
torch's global CPU stream) were made on the default device.  Under ``"meta"`` the tables held no values (and
``sample_hmm``'s ``multinomial`` stopped with torch's raw error); under ``"cuda"``, torch's raw "Expected a 'cuda'
device type for generator".  The task is host data now, the same draws as without the default device."""

from __future__ import annotations

import torch

from hybridpgm.data.hmm_tagging import random_hmm, sample_hmm


def _task():
    hmm = random_hmm(3, 5, generator=torch.Generator().manual_seed(1))
    return hmm, sample_hmm(hmm, 6, 2, 7, generator=torch.Generator().manual_seed(2))


def test_the_tagging_task_is_the_same_cpu_data_under_a_meta_default_device():
    want_hmm, want = _task()
    torch.set_default_device("meta")
    try:
        got_hmm, got = _task()
    finally:
        torch.set_default_device(None)
    for a, b in zip([*got_hmm, *got], [*want_hmm, *want]):
        assert a.device.type == "cpu" and torch.equal(a, b)


def test_the_global_stream_gives_the_same_task_under_a_meta_default_device():
    hmm = random_hmm(3, 5, generator=torch.Generator().manual_seed(1))
    torch.manual_seed(4)
    want = sample_hmm(hmm, 6, 2, 7)
    torch.manual_seed(4)
    torch.set_default_device("meta")
    try:
        got = sample_hmm(hmm, 6, 2, 7)
    finally:
        torch.set_default_device(None)
    assert all(a.device.type == "cpu" and torch.equal(a, b) for a, b in zip(got, want))
