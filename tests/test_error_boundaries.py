"""Error boundaries: user mistakes are one-line ConfigErrors naming the key; bugs keep their traceback."""
import pytest

from ppfreeze.config.errors import ConfigError
from ppfreeze.errors import DataIntegrityError, PPFreezeError, TrainingError, report
from ppfreeze.utils.builder import Registry


def test_registering_a_name_twice_is_refused():
    reg = Registry("thing")

    @reg.register
    class Thing:
        pass

    reg.register(Thing)  # the same object again is harmless
    with pytest.raises(KeyError, match="'Thing' is registered twice"):
        @reg.register(name="Thing")
        class Other:
            pass


def test_a_bug_inside_a_component_is_not_reported_as_a_config_mistake():
    reg = Registry("thing")

    @reg.register
    def Broken(size: int = 1):
        return [][size]  # IndexError: a bug, not the user's doing

    @reg.register
    def Picky(size: int = 1):
        raise TypeError("unsupported operand")  # also a bug

    with pytest.raises(IndexError):
        reg.build({"name": "Broken"}, "Arch")
    with pytest.raises(TypeError):
        reg.build({"name": "Picky"}, "Arch")


def test_component_argument_errors_are_placed_under_the_component_key():
    reg = Registry("thing")

    @reg.register
    def Checked(ratio: float = 0.5):
        if not 0 <= ratio <= 1:
            raise ConfigError("ratio", f"must be in [0, 1], got {ratio}")
        return ratio

    with pytest.raises(ConfigError) as err:
        reg.build({"Checked": {"ratio": 2}}, "Loss.Train.0.Checked")
    assert err.value.key == "Loss.Train.0.Checked.ratio"
    # numbers may be written as PaddleClas arithmetic strings; anything else names the argument
    assert reg.build({"Checked": {"ratio": "1/4"}}, "X") == 0.25
    with pytest.raises(ConfigError, match=r"X.ratio: expected a number or an arithmetic expression"):
        reg.build({"Checked": {"ratio": "half"}}, "X")


def test_integer_arguments_refuse_fractions():
    reg = Registry("thing")

    @reg.register
    def Sized(size: int = 1):
        return size

    assert reg.build({"Sized": {"size": "2*8"}}, "X") == 16
    with pytest.raises(ConfigError, match="X.size: expected an integer, got 2.5"):
        reg.build({"Sized": {"size": 2.5}}, "X")


def test_error_kinds_and_exit_codes(capsys):
    assert issubclass(ConfigError, PPFreezeError) and issubclass(ConfigError, ValueError)
    assert report(ConfigError("Global.epochs", "must be >= 1")) == 2
    assert report(DataIntegrityError("out/latest.pdopt", "digest mismatch", "resume from epoch_3")) == 3
    assert report(TrainingError("loss is nan")) == 1
    err = capsys.readouterr().err.splitlines()
    assert err == ["ppfreeze: configuration error: Global.epochs: must be >= 1",
                   "ppfreeze: data integrity error: out/latest.pdopt: digest mismatch (resume from epoch_3)",
                   "ppfreeze: training stopped: loss is nan"]


def test_runaway_config_expression_is_refused_quickly():
    from ppfreeze.config.expr import to_number
    with pytest.raises(ConfigError, match="Optimizer.lr.learning_rate"):
        to_number("9**9**9", "Optimizer.lr.learning_rate")
