"""Put a model into a :class:`FreezeState`: stop_gradient, per-parameter LR, BN policy, cut hook.

Nothing here wraps or renames a layer, so state_dict keys never change.  Every setting is
written from the recorded model defaults, which makes applying idempotent and lets a later
state (a schedule milestone) undo an earlier one exactly.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List

import paddle

from .model_index import ModelIndex, unwrap
from .state import STATS_FROZEN, FreezeState, ParamState


@dataclass(frozen=True)
class ModelDefaults:
    """What the model looked like before any freezing (restored for trainable parts)."""
    stop_gradient: Dict[str, bool]
    learning_rate: Dict[str, float]
    use_global_stats: Dict[str, Any]
    need_clip: Dict[str, bool]

    @classmethod
    def capture(cls, model: paddle.nn.Layer, index: ModelIndex) -> "ModelDefaults":
        """Record stop_gradient, base LR and BN ``_use_global_stats`` of an unfrozen model."""
        params = dict(unwrap(model).named_parameters())
        params = {n: params[n] for n in index.param_names}
        return cls(
            stop_gradient={n: bool(p.stop_gradient) for n, p in params.items()},
            learning_rate={n: float(p.optimize_attr.get("learning_rate", 1.0)) for n, p in params.items()},
            use_global_stats={n: index.layers[n]._use_global_stats for n in index.bn_layers},
            need_clip={n: bool(getattr(p, "need_clip", True)) for n, p in params.items()},
        )


def detach_output(layer: paddle.nn.Layer, inputs: Any, output: Any) -> Any:
    """Forward post-hook: cut the graph at the frozen prefix's boundary."""
    if isinstance(output, paddle.Tensor):
        return output.detach()
    if isinstance(output, (tuple, list)):
        return type(output)(o.detach() if isinstance(o, paddle.Tensor) else o for o in output)
    return output


def apply_state(model: paddle.nn.Layer, state: FreezeState, defaults: ModelDefaults) -> List[Any]:
    """Set parameters, BN layers and the cut hook of ``model``; returns the new hook handles."""
    model = unwrap(model)
    params = dict(model.named_parameters())
    for name, p in state.params.items():
        _apply_param(params[name], p, defaults, name)
    layers = dict(model.named_sublayers())
    for name, original in defaults.use_global_stats.items():
        # use_global_stats is read by BN's forward in train mode too, so it survives model.train().
        layers[name]._use_global_stats = True if state.bn.get(name) in STATS_FROZEN else original
    if state.cut_boundary is None:
        return []
    return [layers[state.cut_boundary].register_forward_post_hook(detach_output)]


def _apply_param(param: paddle.Tensor, p: ParamState, defaults: ModelDefaults, name: str) -> None:
    param.stop_gradient = defaults.stop_gradient[name] or p.stop_gradient
    # gradients of frozen parameters (lr_zero / clear_grad still compute them) must not shrink
    # the trainable ones through a global-norm clip
    param.need_clip = defaults.need_clip[name] and not p.frozen
    base = defaults.learning_rate[name]
    if not p.frozen:
        param.optimize_attr["learning_rate"] = base * p.lr_mult
    elif p.method == "lr_zero":
        param.optimize_attr["learning_rate"] = 0.0
    else:
        param.optimize_attr["learning_rate"] = base


def remove_hooks(handles: List[Any]) -> None:
    """Remove forward hooks registered by :func:`apply_state`."""
    for handle in handles:
        handle.remove()
