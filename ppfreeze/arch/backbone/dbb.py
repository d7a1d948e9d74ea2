"""Diverse Branch Block (Ding et al. 2021): a KxK conv trained as four parallel branches and fused
into one conv for deployment.  PaddleClas builds it for ``ResNet*(layer_type="DiverseBranchBlock")``
(``ppcls/arch/backbone/base/dbb/``); names follow it:

    dbb_origin.conv / .bn                     KxK conv + BN
    dbb_avg.[conv, bn.bn,] avg, avgbn         [1x1 conv + BN with BN-valued padding,] KxK average pool, BN
    dbb_1x1.conv / .bn                        1x1 conv + BN (only when groups < out_channels)
    dbb_1x1_kxk.idconv1 | conv1, bn1.bn, conv2, bn2   1x1 conv (identity-initialised) + BN, KxK conv + BN
    dbb_reparam.weight / .bias                the fused conv (after :meth:`DiverseBranchBlock.re_parameterize`)

Branch outputs are summed, then the activation.  The BN in front of a padded KxK op pads with the
value BN gives a zero input, so that the fused single conv (zero padding) is exact.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from .common import param_attr


def conv_bn(in_channels: int, out_channels: int, kernel_size: int, stride=1, padding: int = 0, groups: int = 1,
            lr_mult: float = 1.0) -> nn.Sequential:
    """``conv`` + ``bn`` as a two-entry Sequential."""
    block = nn.Sequential()
    block.add_sublayer("conv", nn.Conv2D(in_channels, out_channels, kernel_size, stride=stride, padding=padding,
                                         groups=groups, weight_attr=param_attr(lr_mult), bias_attr=False))
    block.add_sublayer("bn", _bn(out_channels, lr_mult))
    return block


def _bn(channels: int, lr_mult: float) -> nn.BatchNorm2D:
    return nn.BatchNorm2D(channels, weight_attr=param_attr(lr_mult), bias_attr=param_attr(lr_mult))


class IdentityBasedConv1x1(nn.Conv2D):
    """A 1x1 conv computed as ``weight + identity``; ``weight`` starts at zero, so the branch starts
    as the identity.  The identity is a non-persistable buffer (not in the state dict)."""

    def __init__(self, channels: int, groups: int = 1, lr_mult: float = 1.0):
        super().__init__(channels, channels, 1, groups=groups, bias_attr=False,
                         weight_attr=param_attr(lr_mult, initializer=nn.initializer.Constant(0.0)))
        input_dim = channels // groups
        identity = np.zeros((channels, input_dim, 1, 1), dtype="float32")
        identity[np.arange(channels), np.arange(channels) % input_dim] = 1.0
        self.register_buffer("id_tensor", paddle.to_tensor(identity), persistable=False)

    def kernel(self) -> paddle.Tensor:
        return self.weight + self.id_tensor

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return F.conv2d(x, self.kernel(), None, stride=1, padding=0, groups=self._groups)


class BNAndPad(nn.Layer):
    """BN (``bn``), then ``pad`` pixels on each side filled with BN's output for a zero input.

    The BN has momentum 0.1 (PaddleClas's value, kept from PyTorch; in paddle it weights the old
    running statistics, so they follow the batch closely) and the fill reads the running mean.
    """

    def __init__(self, pad: int, channels: int, lr_mult: float = 1.0):
        super().__init__()
        self.bn = nn.BatchNorm2D(channels, momentum=0.1, weight_attr=param_attr(lr_mult),
                                 bias_attr=param_attr(lr_mult))
        self.pad = pad

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        out = self.bn(x)
        if self.pad == 0:
            return out
        bn = self.bn
        fill = bn.bias + bn.weight * (-bn._mean / paddle.sqrt(bn._variance + bn._epsilon))
        border = F.pad(paddle.zeros_like(out), [self.pad] * 4, value=1.0)  # 1 on the border, 0 inside
        return F.pad(out, [self.pad] * 4) + border * fill.reshape([1, -1, 1, 1])


class DiverseBranchBlock(nn.Layer):
    """A KxK ConvBN(+ReLU) replacement with PaddleClas's ``ConvBNLayer`` arguments.

    Args:
        num_channels, num_filters, filter_size, stride, groups: the conv it stands for.
        act: "relu" or None.
        lr_mult: learning-rate multiplier of its parameters (PaddleClas's DBB ignores it; we apply
            the stage's multiplier as ResNet's ``lr_mult_list`` means).
    """

    def __init__(self, num_channels: int, num_filters: int, filter_size: int, stride=1, groups: int = 1,
                 act: Optional[str] = None, lr_mult: float = 1.0):
        super().__init__()
        in_channels, out_channels, k = num_channels, num_filters, filter_size
        padding = (k - 1) // 2
        self.nonlinear = nn.ReLU() if act else nn.Identity()
        self.kernel_size, self.out_channels, self.groups = k, out_channels, groups
        self.is_repped = False

        self.dbb_origin = conv_bn(in_channels, out_channels, k, stride, padding, groups, lr_mult)
        self.dbb_avg = nn.Sequential()
        if groups < out_channels:
            self.dbb_avg.add_sublayer("conv", nn.Conv2D(in_channels, out_channels, 1, groups=groups,
                                                        weight_attr=param_attr(lr_mult), bias_attr=False))
            self.dbb_avg.add_sublayer("bn", BNAndPad(padding, out_channels, lr_mult))
            self.dbb_avg.add_sublayer("avg", nn.AvgPool2D(kernel_size=k, stride=stride, padding=0))
            self.dbb_1x1 = conv_bn(in_channels, out_channels, 1, stride, 0, groups, lr_mult)
        else:
            self.dbb_avg.add_sublayer("avg", nn.AvgPool2D(kernel_size=k, stride=stride, padding=padding))
            self.dbb_1x1 = None
        self.dbb_avg.add_sublayer("avgbn", _bn(out_channels, lr_mult))

        # depthwise-like blocks (groups == out_channels) get a 2x wider internal 1x1
        internal = in_channels if groups < out_channels else 2 * in_channels
        self.dbb_1x1_kxk = nn.Sequential()
        if internal == in_channels:
            self.dbb_1x1_kxk.add_sublayer("idconv1", IdentityBasedConv1x1(in_channels, groups, lr_mult))
        else:
            self.dbb_1x1_kxk.add_sublayer("conv1", nn.Conv2D(in_channels, internal, 1, groups=groups,
                                                             weight_attr=param_attr(lr_mult), bias_attr=False))
        self.dbb_1x1_kxk.add_sublayer("bn1", BNAndPad(padding, internal, lr_mult))
        self.dbb_1x1_kxk.add_sublayer("conv2", nn.Conv2D(internal, out_channels, k, stride=stride, padding=0,
                                                         groups=groups, weight_attr=param_attr(lr_mult),
                                                         bias_attr=False))
        self.dbb_1x1_kxk.add_sublayer("bn2", _bn(out_channels, lr_mult))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        if self.is_repped:
            return self.nonlinear(self.dbb_reparam(x))
        out = self.dbb_origin(x)
        if self.dbb_1x1 is not None:
            out = out + self.dbb_1x1(x)
        out = out + self.dbb_avg(x)
        out = out + self.dbb_1x1_kxk(x)
        return self.nonlinear(out)

    @paddle.no_grad()
    def equivalent_kernel_bias(self) -> Tuple[paddle.Tensor, paddle.Tensor]:
        """The single KxK conv (weight, bias) that computes the four branches (eval-mode BN)."""
        k = self.kernel_size
        kernel, bias = _fuse_bn(self.dbb_origin.conv.weight, self.dbb_origin.bn)
        if self.dbb_1x1 is not None:
            k1, b1 = _fuse_bn(self.dbb_1x1.conv.weight, self.dbb_1x1.bn)
            kernel, bias = kernel + F.pad(k1, [(k - 1) // 2] * 4), bias + b1

        seq = self.dbb_1x1_kxk
        first = seq.idconv1.kernel() if "idconv1" in seq._sub_layers else seq.conv1.weight
        first = _fuse_bn(first, seq.bn1.bn)
        second = _fuse_bn(seq.conv2.weight, seq.bn2)
        k2, b2 = _merge_1x1_kxk(first, second, self.groups)
        kernel, bias = kernel + k2, bias + b2

        avg = _fuse_bn(_avg_kernel(self.out_channels, k, self.groups), self.dbb_avg.avgbn)
        if "conv" in self.dbb_avg._sub_layers:
            avg = _merge_1x1_kxk(_fuse_bn(self.dbb_avg.conv.weight, self.dbb_avg.bn.bn), avg, self.groups)
        return kernel + avg[0], bias + avg[1]

    def re_parameterize(self) -> None:
        """Replace the branches by ``dbb_reparam``, one KxK conv with bias (same eval outputs)."""
        if self.is_repped:
            return
        kernel, bias = self.equivalent_kernel_bias()
        conv = self.dbb_origin.conv
        self.dbb_reparam = nn.Conv2D(conv._in_channels, conv._out_channels, conv._kernel_size, stride=conv._stride,
                                     padding=conv._padding, groups=conv._groups)
        self.dbb_reparam.weight.set_value(kernel)
        self.dbb_reparam.bias.set_value(bias)
        for name in ("dbb_origin", "dbb_avg", "dbb_1x1", "dbb_1x1_kxk"):
            delattr(self, name)
        self.dbb_1x1 = None
        self.is_repped = True

    def fused(self) -> "DiverseBranchBlock":
        """The export form (``ArchModel.export_model`` calls this on a copy): re-parameterised in place."""
        self.re_parameterize()
        return self


def _fuse_bn(kernel: paddle.Tensor, bn: nn.BatchNorm2D) -> Tuple[paddle.Tensor, paddle.Tensor]:
    """Fold an eval-mode BN into the conv before it."""
    scale = bn.weight / paddle.sqrt(bn._variance + bn._epsilon)
    return kernel * scale.reshape([-1, 1, 1, 1]), bn.bias - bn._mean * scale


def _merge_1x1_kxk(first: Tuple[paddle.Tensor, paddle.Tensor], second: Tuple[paddle.Tensor, paddle.Tensor],
                   groups: int) -> Tuple[paddle.Tensor, paddle.Tensor]:
    """One KxK conv equal to a 1x1 conv (k1, b1) followed by a KxK conv (k2, b2), group by group."""
    (k1, b1), (k2, b2) = first, second
    k1_width, k2_width = k1.shape[0] // groups, k2.shape[0] // groups
    kernels, biases = [], []
    for g in range(groups):
        k1_g = k1[g * k1_width:(g + 1) * k1_width].transpose([1, 0, 2, 3])
        k2_g = k2[g * k2_width:(g + 1) * k2_width]
        kernels.append(F.conv2d(k2_g, k1_g))
        biases.append((k2_g * b1[g * k1_width:(g + 1) * k1_width].reshape([1, -1, 1, 1])).sum((1, 2, 3)))
    return paddle.concat(kernels, axis=0), paddle.concat(biases) + b2


def _avg_kernel(channels: int, kernel_size: int, groups: int) -> paddle.Tensor:
    """The KxK average pool as a grouped conv kernel."""
    input_dim = channels // groups
    kernel = np.zeros((channels, input_dim, kernel_size, kernel_size), dtype="float32")
    kernel[np.arange(channels), np.tile(np.arange(input_dim), groups)] = 1.0 / kernel_size ** 2
    return paddle.to_tensor(kernel)
