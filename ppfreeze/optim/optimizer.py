"""Optimizers and regularizers of the ``Optimizer`` section (PaddleClas names and keys).

``build_optimizer`` takes the model's *named* parameters so that name-based choices
(``no_weight_decay_name``) use structured names such as ``blocks.0.conv.bias`` rather than
Paddle's generated ``param.name``.  Per-parameter rate multipliers live on
``param.optimize_attr['learning_rate']`` (set elsewhere, e.g. by the Freeze section); Paddle's
optimizers honour them and nothing here overrides them.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple, Union

import paddle
from paddle.nn.clip import ClipGradBase
from paddle.optimizer.lr import LRScheduler
from paddle.regularizer import L1Decay, L2Decay, WeightDecayRegularizer

from ..config.errors import ConfigError
from ..config.expr import to_number
from ..utils.builder import split_component
from .clip import build_grad_clip
from .lr import build_lr_scheduler
from .registry import OPTIMIZERS, REGULARIZERS

logger = logging.getLogger(__name__)

NamedParams = List[Tuple[str, paddle.Tensor]]
WeightDecay = Union[None, float, WeightDecayRegularizer]

# Keys whose YAML value may be a string such as '1e-8' (PyYAML reads 1e-8 without a dot as text).
NUMERIC_KEYS = ("momentum", "beta1", "beta2", "epsilon", "rho", "weight_decay")
# Optimizers whose weight_decay is decoupled from the gradient and takes a number, not a regularizer.
DECOUPLED_DECAY = ("AdamW", "AdamWDL")


# --------------------------------------------------------------------------- regularizers

@REGULARIZERS.register
def L2(coeff: float = 0.0) -> L2Decay:
    """L2 penalty ``coeff * sum(w^2) / 2`` added to the gradient as ``coeff * w``."""
    return L2Decay(coeff=_non_negative(coeff, "coeff"))


@REGULARIZERS.register
def L1(coeff: float = 0.0) -> L1Decay:
    """L1 penalty added to the gradient as ``coeff * sign(w)``."""
    return L1Decay(coeff=_non_negative(coeff, "coeff"))


# --------------------------------------------------------------------------- optimizers

@OPTIMIZERS.register
def SGD(learning_rate: LRScheduler, named_params: NamedParams, grad_clip: Optional[ClipGradBase] = None,
        weight_decay: WeightDecay = None, multi_precision: bool = False) -> paddle.optimizer.SGD:
    """Plain stochastic gradient descent."""
    return paddle.optimizer.SGD(learning_rate=learning_rate, parameters=_tensors(named_params),
                                weight_decay=weight_decay, grad_clip=grad_clip,
                                multi_precision=multi_precision)


@OPTIMIZERS.register
def Momentum(learning_rate: LRScheduler, named_params: NamedParams, grad_clip: Optional[ClipGradBase] = None,
             momentum: float = 0.9, use_nesterov: bool = False, weight_decay: WeightDecay = None,
             multi_precision: bool = False, use_multi_tensor: bool = False,
             no_weight_decay_name: Union[None, str, Sequence[str]] = None,
             one_dim_param_no_weight_decay: bool = False) -> paddle.optimizer.Momentum:
    """SGD with (optionally Nesterov) momentum.

    ``no_weight_decay_name`` (space-separated fragments such as ``"bn bias"``) and
    ``one_dim_param_no_weight_decay`` exempt parameters from ``weight_decay`` (PaddleClas's
    Momentum: a parameter group with no decay).
    """
    exempt = exempt_from_decay(named_params, _fragments(no_weight_decay_name), one_dim_param_no_weight_decay)
    return paddle.optimizer.Momentum(learning_rate=learning_rate, momentum=momentum,
                                     parameters=_decay_groups(named_params, exempt, weight_decay),
                                     use_nesterov=use_nesterov,
                                     weight_decay=weight_decay, grad_clip=grad_clip,
                                     multi_precision=multi_precision, use_multi_tensor=use_multi_tensor)


@OPTIMIZERS.register
def Adam(learning_rate: LRScheduler, named_params: NamedParams, grad_clip: Optional[ClipGradBase] = None,
         beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8, weight_decay: WeightDecay = None,
         lazy_mode: bool = False, multi_precision: bool = False,
         use_multi_tensor: bool = False) -> paddle.optimizer.Adam:
    """Adam; ``weight_decay`` here is an L2 penalty on the gradient (see AdamW for decoupled decay)."""
    return paddle.optimizer.Adam(learning_rate=learning_rate, beta1=beta1, beta2=beta2, epsilon=epsilon,
                                 parameters=_tensors(named_params), weight_decay=weight_decay,
                                 grad_clip=grad_clip, lazy_mode=lazy_mode, multi_precision=multi_precision,
                                 use_multi_tensor=use_multi_tensor)


@OPTIMIZERS.register
def AdamW(learning_rate: LRScheduler, named_params: NamedParams, grad_clip: Optional[ClipGradBase] = None,
          beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8, weight_decay: Optional[float] = 0.01,
          no_weight_decay_name: Union[None, str, Sequence[str]] = None,
          one_dim_param_no_weight_decay: bool = False, multi_precision: bool = False) -> paddle.optimizer.AdamW:
    """Adam with decoupled weight decay.

    ``no_weight_decay_name`` (space-separated fragments, e.g. ``"pos_embed cls_token .bias"``)
    exempts every parameter whose structured name contains one of them;
    ``one_dim_param_no_weight_decay`` exempts every 1-D parameter (biases, norm scales).
    """
    exempt = exempt_from_decay(named_params, _fragments(no_weight_decay_name), one_dim_param_no_weight_decay)
    return paddle.optimizer.AdamW(learning_rate=learning_rate, beta1=beta1, beta2=beta2, epsilon=epsilon,
                                  parameters=_tensors(named_params), weight_decay=float(weight_decay or 0.0),
                                  apply_decay_param_fun=_decays_unless(exempt), grad_clip=grad_clip,
                                  multi_precision=multi_precision)


class _LayerwiseDecayAdamW(paddle.optimizer.AdamW):
    """Paddle's AdamW with a fixed learning-rate ratio per parameter, applied the way PaddleClas's
    ``AdamWDL`` applies it on Paddle 3: each decayed parameter is first multiplied by
    ``1 - lr * weight_decay`` at its own (unscaled) rate, then AdamW steps at ``ratio * lr``, which
    decays it again by ``1 - ratio * lr * weight_decay``."""

    def __init__(self, ratios: Dict[str, float], decays: Callable[[str], bool], **kwargs: Any):
        super().__init__(apply_decay_param_fun=decays, **kwargs)
        self._ratios = ratios
        self._decays = decays

    def _append_optimize_op(self, block: Any, param_and_grad: Any) -> Any:
        param = param_and_grad[0]
        if self._weight_decay and self._decays(param.name):
            rate = self._create_param_lr(param_and_grad)
            paddle.assign(param * (1.0 - rate * self._weight_decay), output=param)
        base = param.optimize_attr["learning_rate"]
        param.optimize_attr["learning_rate"] = base * self._ratios.get(param.name, 1.0)
        try:
            return super()._append_optimize_op(block, param_and_grad)
        finally:
            param.optimize_attr["learning_rate"] = base


def layerwise_ratios(names: Sequence[str], decay: float) -> Dict[str, float]:
    """PaddleClas's layer-wise rate ratios for ViT-style names, by structured name.

    ``blocks.<i>...`` gets ``decay ** (n - i)`` with ``n`` blocks; names containing ``embed``,
    ``token``, ``conv1`` or ``ln_pre`` (patch / position embeddings, class token, CLIP's stem)
    get ``decay ** (n + 1)``; everything else (final norm, head) 1.
    """
    layers = [int(name[name.find("blocks.") + 7:].split(".")[0]) for name in names if "blocks." in name]
    n_layers = max(layers) + 1 if layers else 0
    ratios = {}
    for name in names:
        if "blocks." in name:
            ratios[name] = decay ** (n_layers - int(name[name.find("blocks.") + 7:].split(".")[0]))
        elif any(key in name for key in ("embed", "token", "conv1", "ln_pre")):
            ratios[name] = decay ** (n_layers + 1)
        else:
            ratios[name] = 1.0
    return ratios


@OPTIMIZERS.register
def AdamWDL(learning_rate: LRScheduler, named_params: NamedParams, grad_clip: Optional[ClipGradBase] = None,
            beta1: float = 0.9, beta2: float = 0.999, epsilon: float = 1e-8, weight_decay: Optional[float] = None,
            layerwise_decay: Optional[float] = None, filter_bias_and_bn: bool = True,
            multi_precision: bool = False) -> paddle.optimizer.AdamW:
    """AdamW with layer-wise learning-rate decay (PaddleClas ``AdamWDL``, for ViT-style models).

    Each parameter's rate is scaled by :func:`layerwise_ratios` (``layerwise_decay`` in (0, 1];
    null means 1). With ``filter_bias_and_bn`` 1-D parameters, biases, ``pos_embed`` and ``cls_token``
    are not decayed. The weight decay is applied as PaddleClas's class applies it on Paddle 3 (see
    :class:`_LayerwiseDecayAdamW`): twice per step, at the base and at the layer's rate; the
    updates equal PaddleClas's.
    """
    decay = 1.0 if layerwise_decay is None else float(layerwise_decay)
    if not 0 < decay <= 1:
        raise ConfigError("layerwise_decay", f"must be in (0, 1], got {layerwise_decay}")
    by_name = {param.name: name for name, param in named_params}
    ratios = {param_name: ratio for param_name, ratio in
              zip(by_name, layerwise_ratios(list(by_name.values()), decay).values())}
    coeff = float(weight_decay or 0.0)
    exempt = set()
    if coeff and filter_bias_and_bn:
        exempt = {param.name for name, param in named_params
                  if len(param.shape) == 1 or name.endswith(".bias") or name in ("pos_embed", "cls_token")}
    return _LayerwiseDecayAdamW(ratios, _decays_unless(exempt), learning_rate=learning_rate, beta1=beta1,
                                beta2=beta2, epsilon=epsilon, parameters=_tensors(named_params),
                                weight_decay=coeff, grad_clip=grad_clip, multi_precision=multi_precision)


@OPTIMIZERS.register
def RMSProp(learning_rate: LRScheduler, named_params: NamedParams, grad_clip: Optional[ClipGradBase] = None,
            rho: float = 0.95, epsilon: float = 1e-6, momentum: float = 0.0, centered: bool = False,
            weight_decay: WeightDecay = None, multi_precision: bool = False) -> paddle.optimizer.RMSProp:
    """RMSProp.  ``multi_precision`` is accepted for PaddleClas configs; Paddle's RMSProp has none."""
    if multi_precision:
        logger.warning("Optimizer.multi_precision is not supported by Paddle's RMSProp and is ignored")
    return paddle.optimizer.RMSProp(learning_rate=learning_rate, rho=rho, epsilon=epsilon, momentum=momentum,
                                    centered=centered, parameters=_tensors(named_params),
                                    weight_decay=weight_decay, grad_clip=grad_clip)


# --------------------------------------------------------------------------- builder

def build_optimizer(opt_cfg: Dict[str, Any], named_params: NamedParams, epochs: int, step_each_epoch: int,
                    key: str = "Optimizer") -> Tuple[paddle.optimizer.Optimizer, LRScheduler]:
    """Build the optimizer and its learning-rate schedule from the ``Optimizer`` section.

    Args:
        opt_cfg: ``{name: Momentum, momentum: 0.9, lr: {...}, regularizer: {...}, clip_norm: ...}``.
        named_params: ``(structured_name, parameter)`` pairs, e.g. ``list(model.named_parameters())``;
            exactly these parameters are optimized (the caller leaves out what must hold no state).
        epochs: ``Global.epochs``.
        step_each_epoch: iterations per epoch of the train loader.
        key: config path for error messages.

    Returns:
        ``(optimizer, scheduler)``; step the scheduler as ``scheduler.by_epoch`` says.
    """
    cfg = _section(opt_cfg, key)
    named_params = list(named_params)
    if not named_params:
        raise ConfigError(key, "there are no parameters to optimize",
                          "check the Freeze section: it may freeze every parameter")
    scheduler = build_lr_scheduler(cfg.pop("lr", None), epochs, step_each_epoch, f"{key}.lr")
    grad_clip = build_grad_clip(cfg, key)
    if "clip_grad" in cfg and cfg.get("name") in ("AdamW", "AdamWDL"):
        # PaddleClas's AdamW / AdamWDL take it into **args and drop it: its configs that say
        # clip_grad (MobileNetV4, StarNet, FasterNet...) train without clipping
        logger.warning("%s.clip_grad (%s) is ignored, as PaddleClas's %s ignores it; clip with %s.clip_norm "
                       "or %s.grad_clip", key, cfg.pop("clip_grad"), cfg["name"], key, key)
    regularizer = build_regularizer(cfg.pop("regularizer", None), f"{key}.regularizer")
    cfg = {k: (to_number(v, f"{key}.{k}") if k in NUMERIC_KEYS and v is not None else v) for k, v in cfg.items()}
    if cfg.get("weight_decay") is not None:   # a negative decay pushes weights away from zero
        _non_negative(cfg["weight_decay"], f"{key}.weight_decay")
    if regularizer is not None:
        if cfg["name"] in DECOUPLED_DECAY:
            raise ConfigError(f"{key}.regularizer", f"{cfg['name']} decays weights itself",
                              f"remove the regularizer and set {key}.weight_decay to a number, e.g. 0.05")
        if cfg.get("weight_decay") is not None:
            logger.warning("%s: both regularizer and weight_decay are set; weight_decay is ignored "
                           "(as in PaddleClas)", key)
        cfg["weight_decay"] = regularizer
    optimizer = OPTIMIZERS.build(cfg, key, learning_rate=scheduler, named_params=named_params,
                                 grad_clip=grad_clip)
    return optimizer, scheduler


def build_regularizer(reg_cfg: Any, key: str = "Optimizer.regularizer") -> Optional[WeightDecayRegularizer]:
    """Build ``{name: L2, coeff: 1e-4}`` (or ``None`` when not set)."""
    if reg_cfg is None:
        return None
    name, kwargs = split_component(reg_cfg, key)
    numbers = {k: to_number(v, f"{key}.{k}") for k, v in kwargs.items()}
    return REGULARIZERS.build({name: numbers}, key)


def exempt_from_decay(named_params: NamedParams, fragments: Sequence[str], one_dim: bool) -> Set[str]:
    """Paddle names (``param.name``) of the parameters exempt from weight decay.

    The decision is made on the structured name; Paddle's callback later receives ``param.name``.
    """
    return {param.name for name, param in named_params
            if any(fragment in name for fragment in fragments) or (one_dim and len(param.shape) == 1)}


def _section(opt_cfg: Any, key: str) -> Dict[str, Any]:
    if isinstance(opt_cfg, list):
        raise ConfigError(key, "a list of optimizers (per-scope optimizers) is not supported",
                          "use one optimizer; per-layer rates come from Freeze.lr_mult")
    if not isinstance(opt_cfg, dict) or "name" not in opt_cfg:
        raise ConfigError(key, f"expected a mapping with 'name' (e.g. Momentum), got {opt_cfg!r}")
    if "learning_rate" in opt_cfg:
        raise ConfigError(f"{key}.learning_rate", "the rate belongs to the lr section",
                          f"write it as {key}.lr.learning_rate")
    return dict(opt_cfg)


def _tensors(named_params: NamedParams) -> List[paddle.Tensor]:
    return [param for _, param in named_params]


def _decay_groups(named_params: NamedParams, exempt: Set[str], weight_decay: WeightDecay) -> List[Any]:
    """The parameters, or two parameter groups (decayed, exempt) when some are exempt from decay."""
    if not exempt or not weight_decay:
        return _tensors(named_params)
    decayed = [p for _, p in named_params if p.name not in exempt]
    kept = [p for _, p in named_params if p.name in exempt]
    groups = [{"params": decayed, "weight_decay": weight_decay}] if decayed else []
    return groups + [{"params": kept, "weight_decay": 0.0}]


def _fragments(no_weight_decay_name: Union[None, str, Sequence[str]]) -> List[str]:
    if not no_weight_decay_name:
        return []
    if isinstance(no_weight_decay_name, str):
        return no_weight_decay_name.split()
    return [str(fragment) for fragment in no_weight_decay_name]


def _decays_unless(exempt: Set[str]) -> Callable[[str], bool]:
    return lambda param_name: param_name not in exempt


def _non_negative(value: float, name: str) -> float:
    if value < 0:  # the registry places the argument name under the component's key path
        raise ConfigError(name, f"must be >= 0, got {value}")
    return float(value)
