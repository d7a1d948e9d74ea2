"""Feature distillation with trainable parts: ``DistillationPairLoss`` and its base losses.

``DistillationPairLoss`` (PaddleClas's name and arguments) reads one feature of each model of a
pair (``s_key`` from the first, ``t_key`` from the second; the models return them through
``return_patterns``) and hands the two to a base loss named by ``base_loss_name``; the other
keyword arguments go to the base loss. The base losses here hold parameters of their own (a
generator, projectors) that train with the student:

- ``MGDLoss`` (Yang et al. 2022, arXiv:2205.01529): masked generative distillation;
- ``PEFDLoss`` (Chen et al. 2022, arXiv:2210.15274): a projector ensemble and a cosine loss.

The engine adds the loss's parameters to the optimizer and saves them in the checkpoint's
``.pdparams`` next to the model's, under PaddleClas's keys (``loss_func.<i>.loss_func.<...>``),
see docs/distillation.md. The math equals PaddleClas's on the same inputs, parameters and random
mask (``tools/dev/compare_distillation_losses.py``).
"""
from __future__ import annotations

from typing import Any, List, Optional, Union

import paddle
import paddle.nn as nn
import paddle.nn.functional as F
from paddle.nn.initializer import KaimingNormal

from ..config.errors import ConfigError
from ..utils.builder import Registry
from .distillation import _checked_pairs, model_output
from .registry import LOSSES

# base losses of DistillationPairLoss: ``loss(student_feature, teacher_feature) -> scalar``
PAIR_LOSSES = Registry("DistillationPairLoss base loss")

Key = Union[None, str, List[Optional[str]]]


@PAIR_LOSSES.register
class MGDLoss(nn.Layer):
    """Masked generative distillation: drop random channels of the student's feature map, let a
    two-conv generator rebuild the teacher's map from what is left, and take the MSE.

    Args:
        student_channels, teacher_channels: channels of the two maps (a 1x1 ``align`` conv maps
            the student's to the teacher's when they differ).
        alpha_mgd: weight of the MSE.
        lambda_mgd: probability that a channel is masked (drawn per sample and channel each call).
    """

    def __init__(self, student_channels: int, teacher_channels: int, alpha_mgd: float = 1.756,
                 lambda_mgd: float = 0.15):
        super().__init__()
        self.alpha_mgd, self.lambda_mgd = float(alpha_mgd), float(lambda_mgd)
        self.align = _conv(student_channels, teacher_channels, 1) if student_channels != teacher_channels else None
        self.generation = nn.Sequential(_conv(teacher_channels, teacher_channels, 3), nn.ReLU(),
                                        _conv(teacher_channels, teacher_channels, 3))

    def forward(self, student: paddle.Tensor, teacher: paddle.Tensor) -> paddle.Tensor:
        if student.ndim != 4 or teacher.ndim != 4 or student.shape[-2:] != teacher.shape[-2:]:
            raise ValueError(f"MGDLoss needs two [N, C, H, W] feature maps of the same size, got "
                             f"{list(student.shape)} and {list(teacher.shape)}: pick s_key / t_key at matching stages")
        if self.align is not None:
            student = self.align(student)
        n, c = teacher.shape[:2]
        # one draw of [N, C, 1, 1] uniforms per call, as PaddleClas draws it (same seed -> same mask)
        keep = (paddle.rand([n, c, 1, 1]) >= self.lambda_mgd).astype(student.dtype)
        return F.mse_loss(self.generation(student * keep), teacher) * self.alpha_mgd


def _conv(in_channels: int, out_channels: int, kernel: int) -> nn.Conv2D:
    """A conv with He-normal (fan-out) weights and a zero bias, MGD's initialisation."""
    return nn.Conv2D(in_channels, out_channels, kernel, padding=kernel // 2,
                     weight_attr=paddle.ParamAttr(initializer=KaimingNormal(mode="fan_out", nonlinearity="relu")))


class _Projector(nn.Layer):
    """Linear + ReLU (the sublayer is called ``conv``, PaddleClas's key)."""

    def __init__(self, dim_in: int, dim_out: int):
        super().__init__()
        self.conv = nn.Linear(dim_in, dim_out)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return F.relu(self.conv(x))


@PAIR_LOSSES.register
class PEFDLoss(nn.Layer):
    """Projector-ensemble feature distillation: the student's flattened feature goes through
    ``num_projectors`` Linear+ReLU projectors, their mean is compared with the teacher's feature
    by ``mean(1 - cosine)``.

    Args:
        student_channel, teacher_channel: feature sizes (after flattening).
        num_projectors: how many projectors are averaged (>= 1).
        mode: ``flatten`` (use the features as they are) | ``gap`` (global-average-pool maps first).
    """

    def __init__(self, student_channel: int, teacher_channel: int, num_projectors: int = 3, mode: str = "flatten"):
        super().__init__()
        if isinstance(num_projectors, bool) or not isinstance(num_projectors, int) or num_projectors < 1:
            raise ConfigError("num_projectors", f"expected an integer >= 1, got {num_projectors!r}")
        if mode not in ("flatten", "gap"):
            raise ConfigError("mode", f"expected flatten or gap, got {mode!r}")
        self.mode = mode
        self.projectors = nn.LayerList([_Projector(student_channel, teacher_channel) for _ in range(num_projectors)])

    def forward(self, student: paddle.Tensor, teacher: paddle.Tensor) -> paddle.Tensor:
        if self.mode == "gap":
            student, teacher = F.adaptive_avg_pool2d(student, 1), F.adaptive_avg_pool2d(teacher, 1)
        student, teacher = student.flatten(1), teacher.flatten(1)
        projected = paddle.add_n([projector(student) for projector in self.projectors]) / len(self.projectors)
        # normalize's epsilon only matters for an all-zero projection (PaddleClas divides by 0 there)
        cosine = (F.normalize(projected, axis=1) * F.normalize(teacher, axis=1)).sum(axis=1)
        return (1 - cosine).mean()


@LOSSES.register
class DistillationPairLoss(nn.Layer):
    """``base_loss_name`` (``MGDLoss``, ``PEFDLoss``) between the ``s_key`` feature of the first
    model of each pair and the ``t_key`` feature of the second, summed over the pairs.

    Args:
        base_loss_name: the base loss; every extra keyword argument is its argument.
        model_name_pairs: ``[[Student, Teacher], ...]``.
        s_key, t_key: the entry of each model's dict output (``return_patterns``); both strings,
            both lists (the base loss gets lists of entries; a null entry is the whole output),
            or both null (the whole outputs).
        name: accepted for PaddleClas compatibility.
    """

    def __init__(self, base_loss_name: str = None, model_name_pairs: Any = None, s_key: Key = None,
                 t_key: Key = None, name: str = "loss", **kwargs: Any):
        super().__init__()
        if not isinstance(base_loss_name, str):
            raise ConfigError("base_loss_name", f"expected the name of a base loss, got {base_loss_name!r}",
                              f"one of {', '.join(PAIR_LOSSES.names())}")
        if type(s_key) is not type(t_key) or not isinstance(s_key, (type(None), str, list)):
            raise ConfigError("s_key", f"{s_key!r}, and t_key {t_key!r}: expected both strings, both lists or "
                                       f"both null", 'e.g. s_key: "blocks[7]", t_key: "blocks[15]"')
        self.model_name_pairs = _checked_pairs(model_name_pairs)
        self.s_key, self.t_key = s_key, t_key
        # attribute name kept from PaddleClas: its checkpoints store these weights as loss_func.*
        PAIR_LOSSES.get(base_loss_name, "base_loss_name")
        self.loss_func = PAIR_LOSSES.build({base_loss_name: kwargs}, "")

    def forward(self, predicts: Any, label: paddle.Tensor) -> paddle.Tensor:
        losses = [self.loss_func(_feature(predicts, first, self.s_key), _feature(predicts, second, self.t_key))
                  for first, second in self.model_name_pairs]
        return paddle.add_n(losses) if len(losses) > 1 else losses[0]


def _feature(predicts: Any, model: str, key: Key) -> Any:
    if isinstance(key, list):
        return [model_output(predicts, model, k, "model_name_pairs") for k in key]
    return model_output(predicts, model, key, "model_name_pairs")
