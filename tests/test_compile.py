"""What ``docs/compile.md`` says about ``torch.compile``, ``torch.jit``, ``torch.export`` and
``torch.inference_mode`` (small models, the ``eager`` and ``aot_eager`` backends only).

The first ``torch.compile`` in a process switches torch.distributions' default validation off (torch's own
``TorchPatcher``); every test here puts the default back as it found it, so the tests after it validate as before.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import torch
from torch.distributions import Distribution

import hybridpgm
from hybridpgm.errors import ConfigError, EvidenceError
from hybridpgm.graphs import CRFHead, LinearChainCRF
from hybridpgm.nn import mlp
from tests.compile_isolation import keep_validation_default  # noqa: F401  (an autouse fixture)


def _crf_inputs():
    g = torch.Generator().manual_seed(0)
    head = CRFHead(3)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(generator=g)
    unary = torch.randn(2, 5, 3, generator=g)
    return head, unary, torch.tensor([5, 3]), torch.tensor([[0, 1, 2, 1, 0], [2, 2, 0, 0, 0]])


class _Decode(torch.nn.Module):
    def __init__(self, head):
        super().__init__()
        self.head = head

    def forward(self, unary, lengths):
        return self.head(unary, lengths).argmax()


@pytest.mark.parametrize("backend", ["eager", "aot_eager"])
def test_compiled_crf_and_rbm_queries_equal_eager(backend):
    """Guard (right before and after) of the page's list: compiled CRF and RBM queries equal eager."""
    head, unary, lengths, labels = _crf_inputs()
    queries = {
        "log_prob": lambda u: head(u, lengths).log_prob(labels),
        "argmax": lambda u: head(u, lengths).argmax(),
        "log_partition": lambda u: head(u, lengths).log_partition,
    }
    for name, query in queries.items():
        torch.testing.assert_close(torch.compile(query, backend=backend)(unary), query(unary), rtol=1e-5, atol=1e-5,
                                   msg=name)
    rbm = hybridpgm.RBM(6, 4)
    v = torch.bernoulli(torch.full((5, 6), 0.5), generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(torch.compile(rbm.free_energy, backend=backend)(v), rbm.free_energy(v),
                               rtol=1e-5, atol=1e-5)


def test_the_first_compile_in_a_process_switches_torch_validation_off():
    """Guard: torch's behaviour the page warns about (a fresh process: torch patches once per process)."""
    code = ("import torch\nfrom torch.distributions import Distribution as D\nbefore = D._validate_args\n"
            "torch.compile(lambda x: x + 1, backend='eager')\nprint(before, D._validate_args)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "False"]


def test_after_compile_a_crf_label_outside_the_label_set_is_still_refused():
    """With validation off after a compile, an out-of-range label is still named (torch's raw IndexError before)."""
    head, unary, lengths, labels = _crf_inputs()
    torch.compile(lambda u: head(u, lengths).log_partition, backend="eager")(unary)
    Distribution.set_default_validate_args(False)  # what the first compile of a process leaves
    crf = head(unary, lengths)
    assert not crf._validate_args
    labels[0, 2] = 3
    with pytest.raises(EvidenceError, match=r"label 3 at index \[0, 2\] is outside the label set 0..2"):
        crf.log_prob(labels)


def test_in_place_compile_trains_as_the_plain_model_and_saves_and_loads(tmp_path):
    """Guard: ``module.compile()`` keeps the keys; ``fit`` gives the same losses; save/load round-trips."""
    x = torch.bernoulli(torch.full((32, 6), 0.5), generator=torch.Generator().manual_seed(2))
    losses, states = {}, {}
    for compiled in (False, True):
        torch.manual_seed(0)
        vae = hybridpgm.VAE(6, 2, [8])
        keys = list(vae.state_dict())
        if compiled:
            vae.compile(backend="eager")
            assert list(vae.state_dict()) == keys
        result = hybridpgm.fit(hybridpgm.SVIObjective(vae.model, vae.guide), x, epochs=1, batch_size=16, seed=0,
                               progress=False)
        losses[compiled] = dict(result.history.loss)
        states[compiled] = vae
    assert losses[True] == losses[False]
    hybridpgm.save(states[True], tmp_path / "vae.pt")
    restored = hybridpgm.load(tmp_path / "vae.pt")
    assert type(restored) is hybridpgm.VAE
    for (name, a), (_, b) in zip(states[True].state_dict().items(), restored.state_dict().items()):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("query", ["argmax", "log_prob", "log_partition"])
def test_a_crf_exports_with_validation_off_and_not_with_it_on(query):
    """Guard: export fails on validation's host read and works (and matches eager on new inputs) without it."""
    head, unary, lengths, labels = _crf_inputs()

    class Query(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.head = head

        def forward(self, u, n, y):
            crf = self.head(u, n)
            if query == "log_prob":
                return crf.log_prob(y)
            return crf.argmax() if query == "argmax" else crf.log_partition

    model = Query()
    Distribution.set_default_validate_args(True)
    with pytest.raises(Exception, match="data-dependent"):
        torch.export.export(model, (unary, lengths, labels))
    Distribution.set_default_validate_args(False)
    program = torch.export.export(model, (unary, lengths, labels))
    other = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(3)), torch.tensor([2, 4])
    torch.testing.assert_close(program.module()(*other, labels), model(*other, labels), rtol=0, atol=1e-6)


def test_mlp_networks_trace_script_and_export():
    """Guard: ``mlp`` networks (the VAE's encoder with batch norm) trace, script and export."""
    vae = hybridpgm.VAE(6, 2, [8], batch_norm=True).eval()
    x = torch.randn(4, 6, generator=torch.Generator().manual_seed(4))
    for net in (vae.encoder, mlp([6, 8, 2], batch_norm=True).eval()):
        want = net(x)
        for converted in (torch.jit.trace(net, (x,)), torch.jit.script(net), torch.export.export(net, (x,)).module()):
            torch.testing.assert_close(converted(x), want, rtol=0, atol=1e-6)


def test_a_traced_crf_decode_matches_eager_for_new_lengths_and_batch_and_refuses_a_new_length_t():
    """Guard: the page's TorchScript paragraph."""
    head, unary, lengths, _ = _crf_inputs()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        traced = torch.jit.trace(_Decode(head), (unary, lengths), check_trace=False)
    assert any(issubclass(w.category, torch.jit.TracerWarning) for w in caught)
    g = torch.Generator().manual_seed(5)
    for u, n in ((unary, torch.tensor([2, 4])), (torch.randn(3, 5, 3, generator=g), torch.tensor([5, 1, 4]))):
        assert torch.equal(traced(u, n), _Decode(head)(u, n))
    with pytest.raises(RuntimeError):
        traced(torch.randn(2, 7, 3, generator=g), torch.tensor([7, 6]))
    with pytest.raises(Exception):
        torch.jit.script(CRFHead(3))


def test_inference_mode_outputs_are_data_and_models_train_afterwards():
    """Guard: the page's inference-mode notes (CRF decodes and samples as labels, RBM samples as fit data)."""
    head, unary, lengths, _ = _crf_inputs()
    with torch.inference_mode():
        decoded, drawn = head(unary, lengths).argmax(), head(unary, lengths).sample()
    u = unary.clone().requires_grad_()
    (head(u, lengths).log_prob(decoded).sum() + head(u, lengths).log_prob(drawn).sum()).backward()
    assert u.grad is not None and head.transition.grad is not None
    rbm = hybridpgm.RBM(6, 4)
    with torch.inference_mode():
        v = rbm.sample(16, steps=2)
    hybridpgm.fit(hybridpgm.ContrastiveDivergence(rbm), v, epochs=1, batch_size=8, seed=0, progress=False)
    rbm.free_energy(v).sum().backward()  # cloned once by the input check (raised torch's error before)
    given, rbm.weight.grad = rbm.weight.grad.clone(), None
    rbm.free_energy(v.clone()).sum().backward()
    assert torch.equal(rbm.weight.grad, given)


@pytest.mark.parametrize("mode", [torch.inference_mode, torch.no_grad])
def test_fit_of_an_svi_objective_under_inference_mode_or_no_grad_raises_config_error(mode):
    """Guard: the page's note on ``fit`` inside inference mode or ``no_grad``."""
    vae = hybridpgm.VAE(6, 2, [8])
    x = torch.bernoulli(torch.full((16, 6), 0.5))
    with mode(), pytest.raises(ConfigError, match="without a gradient"):
        hybridpgm.fit(hybridpgm.SVIObjective(vae.model, vae.guide), x, epochs=1, batch_size=8, progress=False)


def test_fit_of_a_model_built_under_inference_mode_raises_config_error():
    """Guard: a model built under inference mode is refused by ``fit``."""
    with torch.inference_mode():
        rbm = hybridpgm.RBM(6, 4)
    v = torch.bernoulli(torch.full((16, 6), 0.5))
    with pytest.raises(ConfigError, match=r"created under torch.inference_mode\(\)"):
        hybridpgm.fit(hybridpgm.ContrastiveDivergence(rbm), v, epochs=1, batch_size=8, progress=False)


def test_the_page_is_in_the_toctree():
    """The new page is listed in the index and its toctree."""
    from pathlib import Path

    index = (Path(__file__).resolve().parents[1] / "docs" / "index.md").read_text(encoding="utf-8")
    assert "\ncompile\n" in index and "(compile.md)" in index


def test_a_crf_with_validate_args_false_builds_in_a_compiled_region():
    """Guard: the CRF's construction checks honour ``validate_args=False`` under compile (no graph break needed)."""
    head, unary, lengths, labels = _crf_inputs()

    def nll(u):
        return -LinearChainCRF(u, head.transition, lengths=lengths, validate_args=False).log_prob(labels).sum()

    torch.testing.assert_close(torch.compile(nll, backend="eager")(unary), nll(unary))
