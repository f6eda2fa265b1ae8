"""A checkpoint of an objective class of hybridpgm renamed since resumes into a run of the class it became
(hybridpgm/train/recorded_objective.py ``RENAMED``).

``SVDeepKernelGP.objective()`` was a ``hybridpgm.gp.sv_deep_kernel._SVDKLObjective`` until 82e8bc4 and is a
``hybridpgm.gp.sv_objective.SVDKLObjective`` since: before, its checkpoints of release 9c5327f (format 1,
``"hybridpgm.gp.sv_deep_kernel._SVDKLObjective"``) and of the releases after it (``"_SVDKLObjective"``) were refused
as "trained with other hyperparameters: objective", with nothing else changed."""

import functools

import pytest
import torch

from hybridpgm import SVDeepKernelGP, fit
from hybridpgm.train import load_checkpoint
from hybridpgm.train.recorded_objective import upgrade_objective_name
from tests.train.test_recorded_objective import as_written_by_d83471e


def _run(ckpt, max_steps, **kwargs):
    torch.manual_seed(0)
    x = torch.randn(40, 3)
    gp = SVDeepKernelGP(torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.Tanh()), num_features=2, num_data=40,
                        grid_size=8)
    return fit(gp.objective(num_particles=2), torch.utils.data.TensorDataset(x, x.sum(1)), max_steps=max_steps,
               batch_size=20, seed=0, checkpoint=ckpt, progress=False, device="cpu",
               optim=functools.partial(torch.optim.Adam, lr=1e-2), **kwargs)


@pytest.mark.parametrize("old", ["format 1", "format 2+"])
def test_a_checkpoint_of_the_sv_dkl_objective_before_its_rename_resumes(old, tmp_path):
    ckpt = tmp_path / "run.pt"
    _run(ckpt, 2)
    if old == "format 1":
        as_written_by_d83471e(ckpt, "hybridpgm.gp.sv_deep_kernel._SVDKLObjective")
    else:
        state = load_checkpoint(ckpt)
        state["config"]["objective"] = "_SVDKLObjective"
        torch.save(state, ckpt)
    assert _run(ckpt, 4, resume=True).steps == 4


def test_the_old_name_is_read_only_for_the_class_it_became():
    assert upgrade_objective_name("_SVDKLObjective", "SVDKLObjective", 2, "hybridpgm.gp.sv_objective") == \
        "SVDKLObjective"
    assert upgrade_objective_name("_SVDKLObjective", "SVDKLObjective", 2, "my_script") == "_SVDKLObjective"
    assert upgrade_objective_name("_SVDKLObjective", "SVIObjective", 2, "hybridpgm.infer.svi") == "_SVDKLObjective"
    assert upgrade_objective_name("hybridpgm.gp.sv_deep_kernel._SVDKLObjective", "SVDKLObjective", 1,
                                  "hybridpgm.gp.sv_objective") == "SVDKLObjective"
