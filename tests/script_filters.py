"""The warning filters in force while TorchScript compiles, as another thread of the process would see them.

``warnings.filters`` is one list per process (Python before 3.14): a ``warnings.catch_warnings()`` block around
:func:`torch.jit.script`, in any thread, changes it for every thread.  :func:`filters_while_compiling` records the
list at each entry into torch's compiler (``torch.jit._script._script_impl``, which :func:`torch.jit.script` and
:func:`hybridpgm.torchscript.script_function` both go through), for a test to compare with the list outside."""

import warnings

import torch.jit._script


def filters_while_compiling(monkeypatch) -> list:
    """Patch torch's compiler entry to record ``warnings.filters`` at each call; returns the (growing) list of
    the snapshots, one per compiled function."""
    seen = []
    compile_ = torch.jit._script._script_impl

    def recording(*args, **kwargs):
        seen.append(list(warnings.filters))
        return compile_(*args, **kwargs)

    monkeypatch.setattr(torch.jit._script, "_script_impl", recording)
    return seen
