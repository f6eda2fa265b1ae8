"""Option: a constructor option kept as a public attribute, checked when assigned as its constructor checks it
(hybridpgm/options.py), on toy classes; each class's own options are tested beside it.  It replaced three
implementations (``CheckedOption``, ``forwarded_option``, ``recorded_option``/``fixed_option``) whose fixed
options raised either ConfigError or AttributeError: now FixedOptionError, both."""

import copy
import pickle
from types import SimpleNamespace

import pytest
from torch import nn

import hybridpgm
from hybridpgm.checks import positive_int
from hybridpgm.errors import ConfigError, FixedOptionError, ModelSpecError
from hybridpgm.options import PARAMETERS_BUILT, Option
from hybridpgm.serialization import serializable


class Engine:
    steps = Option(lambda self, value: positive_int(value, "Engine steps"))
    low = Option(lambda self, value: _below(value, self.high, "low"))
    high = Option(lambda self, value: _below(self.low, value, "high"))
    size = Option(lambda self, value: positive_int(value, "Engine size"),
                  fixed=lambda self, value: f"Engine size is fixed at {self.size}, not {value}")

    def __init__(self, steps=3, size=2):
        self.steps, self.size = steps, size
        vars(self).update(low=0, high=10)  # a joint pair: set together


def _below(low, high, which):
    if not low < high:
        raise ConfigError(f"Engine needs low < high, got low={low}, high={high} (setting {which})")
    return low if which == "low" else high


class Module(nn.Module):
    k = Option(lambda self, value: positive_int(value, "Module k"))

    def __init__(self, k=1):
        super().__init__()
        self.k = k
        self.linear = nn.Linear(2, 1)


class Objective:
    """Options held by a part of the object (``elbo``), as the model/guide objectives forward theirs."""

    num_particles = Option(lambda self, value: positive_int(value, "Objective num_particles"), "K.", owner="elbo")
    vectorized = Option(doc="Fixed.", owner="elbo", fixed="at construction (it decides the particle plate)")

    def __init__(self, num_particles=2):
        self.elbo = SimpleNamespace(num_particles=positive_int(num_particles, "Objective num_particles"),
                                    vectorized=True)


@serializable
class Toy(nn.Module):
    """A model with one option read at call time (``steps``) and one that decides a shape (``width``)."""

    steps = Option(lambda toy, value: positive_int(value, "Toy steps", error=ModelSpecError), "Steps.")
    width = Option(fixed=PARAMETERS_BUILT, doc="Width.")

    def __init__(self, width: int = 2, *, steps: int = 3):
        super().__init__()
        self.width, self.steps = width, steps
        self.linear = nn.Linear(width, 1)


def test_assignment_runs_the_check_and_keeps_the_old_value_on_refusal():
    engine = Engine()
    with pytest.raises(ConfigError, match=r"Engine steps must be a positive integer, got 0"):
        engine.steps = 0
    assert engine.steps == 3
    engine.steps = 7
    assert engine.steps == 7 and vars(engine)["steps"] == 7  # held under its own name, where a plain attribute was


def test_the_constructor_runs_the_same_check():
    with pytest.raises(ConfigError, match=r"Engine steps must be a positive integer, got 2.5"):
        Engine(steps=2.5)


def test_a_joint_rule_is_checked_whichever_option_is_set():
    engine = Engine()
    with pytest.raises(ConfigError, match="setting low"):
        engine.low = 10
    with pytest.raises(ConfigError, match="setting high"):
        engine.high = 0
    engine.high = 5
    engine.low = 4
    assert (engine.low, engine.high) == (4, 5)


def test_a_fixed_option_is_set_once_and_refused_as_a_config_error_and_an_attribute_error():
    engine = Engine(size=4)
    for caught in (FixedOptionError, ConfigError, AttributeError, ValueError):
        with pytest.raises(caught, match="Engine size is fixed at 4, not 5"):
            engine.size = 5
    assert engine.size == 4
    with pytest.raises(ConfigError, match="Engine size must be a positive integer"):
        Engine(size=0)


def test_a_fixed_option_with_a_reason_composes_the_message():
    toy = Toy(width=3)
    with pytest.raises(FixedOptionError) as caught:
        toy.width = 4
    assert str(caught.value) == ("Toy.width is fixed when the model is built (it decides the model's parameters): "
                                 "it is 3, 4 was assigned; build a new Toy with the other value instead")
    assert toy.width == 3 and toy.linear.in_features == 3
    assert isinstance(caught.value, AttributeError) and isinstance(caught.value, ConfigError)


def test_unset_and_deleted_options():
    engine = Engine.__new__(Engine)
    with pytest.raises(AttributeError, match="steps"):
        engine.steps  # noqa: B018
    assert not hasattr(engine, "steps")
    with pytest.raises(AttributeError, match="cannot be deleted"):
        del Engine().steps


def test_the_class_attribute_is_the_descriptor_with_a_docstring():
    assert isinstance(Engine.steps, Option) and Engine.steps.name == "steps"
    assert "steps" in Engine.steps.__doc__ and "checks it" in Engine.steps.__doc__
    assert "fixed at construction" in Engine.size.__doc__
    assert Objective.num_particles.__doc__ == "K." and Toy.width.__doc__ == "Width."


def test_pickle_and_copy_keep_the_values_and_the_checks():
    engine = Engine(steps=5)
    for other in (pickle.loads(pickle.dumps(engine)), copy.copy(engine), copy.deepcopy(engine)):
        assert (other.steps, other.size, other.low, other.high) == (5, 2, 0, 10)
        with pytest.raises(ConfigError):
            other.steps = 0
        with pytest.raises(FixedOptionError):
            other.size = 3


def test_an_instance_pickled_with_plain_attributes_loads():
    """An earlier release's pickle holds the options as plain ``__dict__`` entries: the same place."""
    engine = Engine.__new__(Engine)
    engine.__dict__.update({"steps": 9, "size": 2, "low": 1, "high": 3})
    assert (engine.steps, engine.low, engine.high) == (9, 1, 3)
    with pytest.raises(ConfigError):
        engine.steps = -1
    with pytest.raises(FixedOptionError):
        engine.size = 1


def test_an_nn_module_option():
    module = Module(k=2)
    with pytest.raises(ConfigError, match="Module k must be a positive integer, got 0"):
        module.k = 0
    module.k = 3
    assert module.k == 3 and "k" not in dict(module.named_parameters())
    assert copy.deepcopy(module).k == 3 and pickle.loads(pickle.dumps(module)).k == 3
    with pytest.raises(AttributeError, match="has no attribute 'k'"):
        Module.__new__(Module).k  # noqa: B018 -- read before the constructor set it


def test_an_option_held_by_an_owner_reads_and_writes_the_owners_attribute():
    objective = Objective()
    assert objective.num_particles == 2
    objective.num_particles = 5
    assert objective.elbo.num_particles == 5 and "num_particles" not in vars(objective)
    with pytest.raises(ConfigError, match="Objective num_particles must be a positive integer, got 0"):
        objective.num_particles = 0
    assert objective.elbo.num_particles == 5


def test_a_fixed_option_held_by_an_owner_refuses_every_assignment():
    objective = Objective()
    with pytest.raises(FixedOptionError) as caught:
        objective.vectorized = False
    assert str(caught.value) == ("Objective.vectorized is fixed at construction (it decides the particle plate): "
                                 "it is True, False was assigned; build a new Objective with the other value instead")
    assert objective.elbo.vectorized is True


def _round_trip(module, tmp_path):
    return hybridpgm.load(hybridpgm.save(module, tmp_path / "m.pt"))


def test_an_assignment_is_recorded_for_save(tmp_path):
    toy = Toy(steps=4)
    toy.steps = 7
    assert _round_trip(toy, tmp_path).steps == 7
    with pytest.raises(ModelSpecError, match="Toy steps must be"):
        toy.steps = 0
    assert toy.steps == 7 and _round_trip(toy, tmp_path).steps == 7  # a refused value changes nothing


def test_objects_that_are_not_serializable_models_record_nothing():
    """record_argument is a no-op for them (and before a model's constructor returns)."""
    engine, objective = Engine(), Objective()
    engine.steps, objective.num_particles = 4, 3
    assert "_hybridpgm_init" not in vars(engine) and "_hybridpgm_init" not in vars(objective)
    half_built = Toy.__new__(Toy)
    nn.Module.__init__(half_built)
    half_built.steps = 2
    assert "_hybridpgm_init" not in vars(half_built)


def _fixed_options():
    from hybridpgm.energy import RBM
    from hybridpgm.generative import VAE, SigmoidBeliefNet
    from hybridpgm.infer import NVIL, PersistentCD

    sbn = SigmoidBeliefNet([3, 2])
    return [(RBM(4, 2), "num_visible", 5), (VAE(4, 2, hidden=(4,)), "x_dim", 5), (sbn, "layer_sizes", [3, 3]),
            (PersistentCD(RBM(4, 2), num_chains=3), "num_chains", 4),
            (NVIL(sbn.model, sbn.guide, hidden_dim=2), "num_particles", 3)]


def test_every_fixed_option_is_both_a_config_error_and_an_attribute_error():
    """Before, a model's fixed option (``vae.x_dim = 5``) raised a plain AttributeError (``except ConfigError``
    missed it) and ``PersistentCD.num_chains`` a ConfigError (``except AttributeError`` missed it)."""
    for obj, name, value in _fixed_options():
        before = getattr(obj, name)
        for caught in (ConfigError, AttributeError):
            with pytest.raises(caught, match=rf"{name} is fixed"):
                setattr(obj, name, value)
        assert getattr(obj, name) == before


def test_subclasses_may_set_options_before_or_after_the_base_constructor():
    """Subclasses of the previous release set these attributes in their own ``__init__`` (review E): a fixed
    option set before the base constructor (or set again after it) to the value the base sets is accepted, and a
    checked option set first is checked against the defaults of the options not set yet (these raised
    FixedOptionError, or a raw AttributeError from a check that read an option the base had not set)."""
    from hybridpgm.energy import RBM
    from hybridpgm.infer import AIS
    from hybridpgm.infer.mrf_gibbs import ChromaticGibbs

    class SizedFirst(RBM):
        def __init__(self, v, h):
            self.num_hidden = h
            super().__init__(v, h)
            self.visible_type = "bernoulli"

    class ThinFirst(ChromaticGibbs):
        def __init__(self):
            self.thin = 2
            super().__init__(num_sweeps=10, thin=2)

    class StepsFirst(AIS):
        def __init__(self):
            self.num_steps = 50
            super().__init__(num_chains=4, num_steps=50)

    assert SizedFirst(4, 3).num_hidden == 3
    assert ThinFirst().thin == 2
    assert StepsFirst().num_steps == 50
    with pytest.raises(FixedOptionError, match="num_hidden"):
        SizedFirst(4, 3).num_hidden = 5


def test_the_held_value_of_a_fixed_option_may_be_assigned_again_in_any_equal_form():
    """Review F: a list held and a tuple assigned, a NumPy integer for an int, an option forwarded to an owner
    (NVIL's ``num_particles`` on its ELBO): the same value is accepted, another one refused."""
    import numpy as np

    from hybridpgm.energy import DBM, RBM
    from hybridpgm.generative import SigmoidBeliefNet
    from hybridpgm.infer import NVIL

    dbm, rbm = DBM([6, 4, 3]), RBM(6, 3)
    dbm.sizes = (6, 4, 3)
    rbm.num_visible = np.int64(6)
    sbn = SigmoidBeliefNet([3, 2])
    nvil = NVIL(sbn.model, sbn.guide)
    nvil.num_particles = nvil.num_particles
    with pytest.raises(FixedOptionError):
        dbm.sizes = (6, 4, 2)
    with pytest.raises(FixedOptionError):
        rbm.num_visible = True  # not the integer 1 (nor 6) under another name
    with pytest.raises(FixedOptionError):
        nvil.num_particles = nvil.num_particles + 1


def test_options_set_by_a_subclass_before_the_base_constructor_are_the_constructors_to_check():
    """Review F: a joint rule is checked once all its options are set (a subclass setting ``burn_in = 150`` before
    ``super().__init__(num_sweeps=300, burn_in=150)`` was checked against the default 100 and refused), and an
    option that lives in an owner the constructor has not built yet is held until it does."""
    from hybridpgm.generative import SigmoidBeliefNet
    from hybridpgm.infer import AIS, NVIL
    from hybridpgm.infer.mrf_gibbs import ChromaticGibbs

    class LongBurnIn(ChromaticGibbs):
        def __init__(self):
            self.burn_in = 150
            super().__init__(num_sweeps=300, burn_in=150)

    class LinearFirst(AIS):
        def __init__(self):
            self.schedule = "linear"
            super().__init__(num_chains=4, num_steps=20, schedule="linear")

    sbn = SigmoidBeliefNet([3, 2])

    class ParticlesFirst(NVIL):
        def __init__(self):
            self.num_particles = 2
            super().__init__(sbn.model, sbn.guide, num_particles=2)

    assert LongBurnIn().burn_in == 150
    assert LinearFirst().schedule == "linear"
    assert ParticlesFirst().num_particles == 2
    with pytest.raises(ConfigError, match="burn_in"):
        LongBurnIn().burn_in = 300


def test_equal_only_in_value_is_not_the_same_for_a_fixed_option():
    """Review G: a subclass setting ``num_visible = 6.0`` before the base constructor kept the float (and sampling
    failed later); a float, a bool or a one-element tensor is not the integer the option holds."""
    import torch

    from hybridpgm.energy import RBM

    class FloatFirst(RBM):
        def __init__(self):
            self.num_visible = 6.0
            super().__init__(6, 4)

    with pytest.raises(FixedOptionError, match="num_visible"):
        FloatFirst()
    rbm = RBM(6, 4)
    for other in (6.0, torch.tensor(6), True):
        with pytest.raises(FixedOptionError):
            rbm.num_visible = other


def test_a_count_of_none_is_refused_and_keeps_the_joint_check():
    """Review G: ``burn_in = None`` read as "not set yet" switched the joint check off for good (then
    ``num_sweeps = 0`` was accepted and the sampler ran no sweep)."""
    from hybridpgm.infer.mrf_gibbs import ChromaticGibbs

    sampler = ChromaticGibbs(num_sweeps=10, burn_in=2)
    with pytest.raises(ConfigError, match="burn_in=None"):
        sampler.burn_in = None
    with pytest.raises(ConfigError, match="num_sweeps=0"):
        sampler.num_sweeps = 0
    assert (sampler.num_sweeps, sampler.burn_in) == (10, 2)
