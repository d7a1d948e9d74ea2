"""Every registered model keeps the model contract (ppfreeze/arch/base.py, docs/contributing.md)."""
import paddle
import pytest

from ppfreeze.arch import MODELS, ArchModel, build_model, contract_violations

# RecModel and DistillationModel are assembled from sections; they are checked with backbones below.
ASSEMBLED = ("RecModel", "DistillationModel")
STANDALONE = [n for n in MODELS.names() if n not in ASSEMBLED and MODELS.get(n).__module__.startswith("ppfreeze.")]


@pytest.mark.parametrize("name", STANDALONE)
def test_registered_model_keeps_the_contract(name):
    with paddle.LazyGuard():  # shapes and names only: no weights are initialised
        model = build_model({"name": name, "class_num": 7})
    assert contract_violations(model) == []
    assert model.class_num == 7


def test_recmodel_keeps_the_contract():
    model = build_model({"name": "RecModel", "Backbone": {"name": "PPLCNet_x0_25"},
                         "BackboneStopLayer": {"name": "flatten"},
                         "Neck": {"name": "FC", "embedding_size": 1280, "class_num": 64},
                         "Head": {"name": "ArcMargin", "embedding_size": 64, "class_num": 5}})
    assert contract_violations(model) == []
    assert (model.num_features, model.class_num, model.needs_label) == (64, 5, True)


def test_distillation_model_keeps_the_contract():
    with paddle.LazyGuard():
        model = build_model({"name": "DistillationModel", "class_num": 7, "freeze_params_list": [True, False],
                             "models": [{"Teacher": {"name": "ResNet18"}}, {"Student": {"name": "PPLCNet_x0_25"}}]})
    assert contract_violations(model) == []
    assert (model.class_num, model.num_features, model.branches) == (7, model.Student.num_features,
                                                                     ["Teacher", "Student"])
    assert list(model.stages)[0] == "Teacher.stem" and list(model.stages)[-1] == "Student.head"


def test_contract_catches_a_model_that_breaks_it():
    class Bad(ArchModel):
        stages = {"stem": ["a"], "head": ["missing"]}

        def __init__(self):
            super().__init__()
            self.a = paddle.nn.Linear(2, 2)
            self.b = paddle.nn.Linear(2, 2)
            self.num_features = 0
    problems = contract_violations(Bad())
    assert any("'missing' is not a sublayer" in p for p in problems)
    assert any("'b.weight' lies under 0 units" in p for p in problems)
    assert any(p.startswith("num_features must be a positive integer") for p in problems)
    assert contract_violations(paddle.nn.Linear(2, 2))[0].endswith("does not derive from ppfreeze.arch.base.ArchModel")


def test_pretrained_keys_are_read_only():
    model = build_model({"name": "ResNet18", "class_num": 3})
    with pytest.raises(AttributeError):
        model.pretrained_keys = {"x"}
    model.mark_pretrained(["fc.weight"])
    assert model.pretrained_keys == {"fc.weight"}
