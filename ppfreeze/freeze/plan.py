"""The resolved freeze plan and the API the training engine calls.

``build_freeze_plan`` validates the ``Freeze`` section, resolves it against the model and
precomputes the state of epoch 1 and of every schedule milestone, so every configuration
mistake surfaces before training starts.  The engine then calls:

- ``plan.apply(model, epoch)`` at the start and at each milestone (``plan.milestone_at``),
  then rebuilds its optimizer from ``plan.optimizer_parameters(model)``;
- ``plan.after_backward(model)`` between ``backward()`` and ``step()``;
- ``plan.state_dict()`` / ``plan.set_state_dict()`` in checkpoints.
"""
from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import paddle

from ..config.errors import ConfigError
from .apply import ModelDefaults, apply_state, remove_hooks
from .lr import LrMultipliers
from .methods import resolve_methods
from .model_index import ModelIndex, unwrap
from .peft import Attachment, attach_adapters, peft_rule
from .rules import Decision, arch_rules, decide
from .schedule import replay
from .spec import FreezeSpec, parse_freeze_spec
from .state import FreezeState, ParamState

logger = logging.getLogger("ppfreeze")

STATE_VERSION = 1


class FreezePlan:
    """Per-parameter freeze decisions for every epoch, and how to put a model into them."""

    def __init__(self, spec: FreezeSpec, model: paddle.nn.Layer):
        self.spec = spec
        model_rules = dict(getattr(unwrap(model), "frozen_by_arch", None) or {})
        arch_patterns = [p for patterns in model_rules.values() for p in patterns]
        # PEFT adds its tensors (LoRA, prompts) first: they are parameters the plan indexes
        self.peft: List[Attachment] = attach_adapters(model, spec.peft, arch_patterns)
        self.index = ModelIndex(model)
        self.defaults = ModelDefaults.capture(model, self.index)
        self.lr = LrMultipliers(spec, self.index)
        peft = [r for r in [peft_rule(spec, self.peft, self.index, arch_patterns)] if r is not None]
        self._decisions, self._bn, self.matches = decide(spec, self.index, arch_rules(model_rules), peft)
        # Epoch 1 and each milestone epoch: every state the run can be in.
        self._states: Dict[int, FreezeState] = {e: self._resolve(e) for e in self._state_epochs()}
        self._hooks: List[Any] = []
        self.applied_epoch: Optional[int] = None
        self._warn_if_nothing_trains()

    # -- resolution --------------------------------------------------------------------------
    def _state_epochs(self) -> List[int]:
        return sorted({1} | {m.epoch for m in self.spec.schedule})

    def _resolve(self, epoch: int) -> FreezeState:
        decisions, bn = replay(self.spec, self.index, self._decisions, self._bn, epoch)
        resolution = resolve_methods(decisions, bn, self.index, epoch)
        policies = {layer: bn.get(layer, ("train", None))[0] for layer in self.index.bn_layers}
        params = {n: self._param_state(n, decisions[n], resolution.methods.get(n), policies)
                  for n in self.index.param_names}
        return FreezeState(epoch=epoch, params=params, bn=policies,
                           cut_boundary=resolution.cut_boundary, notes=resolution.notes,
                           bn_rules={layer: rule for layer, (_, rule) in bn.items()})

    def _param_state(self, name: str, d: Decision, method: Optional[str], policies: Dict[str, str]) -> ParamState:
        owner = self.index.owner[name]
        lr_mult = 0.0 if d.frozen else self.lr.effective(name, d.mult)
        in_optimizer = (not d.frozen or method in ("lr_zero", "clear_grad")) and not self.defaults.stop_gradient[name]
        return ParamState(name=name, frozen=d.frozen, method=method if d.frozen else None,
                          bn=policies.get(owner), lr_mult=lr_mult, in_optimizer=in_optimizer, rule=d.rule)

    def _warn_if_nothing_trains(self) -> None:
        for epoch, state in self._states.items():
            if self.index.param_names and all(p.frozen for p in state.params.values()):
                logger.warning("Freeze: every parameter is frozen from epoch %d: nothing will train", epoch)

    # -- queries -----------------------------------------------------------------------------
    def state_at(self, epoch: int) -> FreezeState:
        """The freeze state in force during (1-based) ``epoch``."""
        if epoch < 1:
            raise ValueError(f"epochs are 1-based, got {epoch}")
        return self._states[max(e for e in self._states if e <= epoch)]

    @property
    def current(self) -> FreezeState:
        """The state last applied (epoch 1 before any apply)."""
        return self.state_at(self.applied_epoch or 1)

    @property
    def params(self) -> List[ParamState]:
        """Per-parameter decisions of the current state, in model order."""
        return list(self.current.params.values())

    def state_epochs(self) -> List[int]:
        """Epoch 1 and every milestone epoch, ascending: the epochs at which the state changes."""
        return sorted(self._states)

    def milestone_at(self, epoch: int) -> bool:
        """True when the frozen set or the LR multipliers change at the start of ``epoch``."""
        return epoch > 1 and any(m.epoch == epoch for m in self.spec.schedule)

    # -- engine API --------------------------------------------------------------------------
    def apply(self, model: paddle.nn.Layer, epoch: int = 1) -> None:
        """Put ``model`` into the state of ``epoch`` (milestones with epoch <= it applied); idempotent."""
        remove_hooks(self._hooks)
        self._hooks = apply_state(model, self.state_at(epoch), self.defaults)
        self.applied_epoch = epoch

    def restore(self, model: paddle.nn.Layer) -> None:
        """Undo all freezing: the model is as it was built (hooks removed, BN and LR restored)."""
        remove_hooks(self._hooks)
        self._hooks = []
        nothing = FreezeState(epoch=0, params={n: ParamState(n, False, None, None, 1.0, True, None)
                                               for n in self.index.param_names}, bn={})
        apply_state(model, nothing, self.defaults)
        self.applied_epoch = None

    def optimizer_parameters(self, model: paddle.nn.Layer) -> List[Tuple[str, paddle.Tensor]]:
        """(name, parameter) pairs the optimizer must hold now, in model order.

        Trainable parameters plus ``lr_zero`` and ``clear_grad`` frozen ones (they keep
        ``stop_gradient=False``); never ``stop_gradient``/``cut`` frozen ones.
        """
        state = self.current
        return [(n, p) for n, p in unwrap(model).named_parameters() if n in state.params and state.params[n].in_optimizer]

    def after_backward(self, model: paddle.nn.Layer) -> None:
        """Clear gradients of ``clear_grad``-frozen parameters to None (not zero) before ``step()``.

        A zero gradient is not "no update": weight decay and momentum would still move the
        parameter; the optimizer skips parameters whose gradient is None.  Paddle 3.3's
        ``clear_gradient`` takes ``set_to_zero`` positionally only: the keyword form
        ``clear_gradient(set_to_zero=False)`` is silently ignored and zeroes the gradient.
        """
        state = self.current
        for name, param in unwrap(model).named_parameters():
            if name in state.params and state.params[name].method == "clear_grad":
                param.clear_gradient(False)  # positional: see docstring

    # -- checkpoints -------------------------------------------------------------------------
    def fingerprint(self) -> str:
        """sha256 of every resolved state: differs when the Freeze config or the model differs."""
        signature: List[Any] = [s.signature() for s in self._states.values()]
        if self.peft:  # adapter shapes and scales (LoRA rank / alpha, prompt count) are part of the plan
            signature.append([repr(a.spec) for a in self.peft])
        blob = json.dumps(signature, sort_keys=True, default=str)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()

    def state_dict(self) -> Dict[str, Any]:
        """What a checkpoint stores to resume: applied epoch, plan fingerprint, frozen names."""
        return {"version": STATE_VERSION, "epoch": self.applied_epoch or 1, "fingerprint": self.fingerprint(),
                "frozen": self.current.frozen_names()}

    def set_state_dict(self, state: Dict[str, Any]) -> int:
        """Check a checkpoint's freeze state against this plan; returns the epoch it was in.

        The engine applies that epoch (``plan.apply(model, epoch)``) and builds the optimizer
        for it before loading the optimizer's accumulators.
        """
        if not isinstance(state, dict) or "fingerprint" not in state:
            raise ConfigError(self.spec.key, "the checkpoint has no valid freeze state",
                              "it was not written by ppfreeze's engine; resume from a ppfreeze checkpoint")
        if state["fingerprint"] != self.fingerprint():
            raise ConfigError(self.spec.key, "the checkpoint was trained with a different Freeze plan "
                                             "(config or model changed since it was saved)",
                              "resume with the Freeze section the run started with, or start a new run "
                              "loading the checkpoint as Global.pretrained_model")
        self.applied_epoch = int(state["epoch"])
        return self.applied_epoch

    # -- pretrained guard --------------------------------------------------------------------
    def frozen_tensor_names(self, epoch: int = 1) -> List[str]:
        """State-dict keys that stay fixed in ``epoch``: frozen parameters and frozen BN statistics."""
        state = self.state_at(epoch)
        buffers = [b for layer in state.stats_frozen_layers() for b in self.index.bn_buffers(layer)]
        return state.frozen_names() + buffers

    def trained_tensor_names(self, model: paddle.nn.Layer) -> List[str]:
        """State-dict keys training may change: all but those frozen in every state of the plan.

        With PEFT these are the adapters, the head and whatever a milestone unfreezes: saved
        alone (``tools/export_weights.py --adapters``) they turn the base weights into the
        fine-tuned model.
        """
        always = set.intersection(*(set(self.frozen_tensor_names(e)) for e in self.state_epochs()))
        return [k for k in unwrap(model).state_dict() if k not in always]

    def frozen_tensor_rules(self, epoch: int = 1) -> Dict[str, Optional[str]]:
        """Each of :meth:`frozen_tensor_names` -> the config key (rule, milestone) that froze it."""
        state = self.state_at(epoch)
        rules: Dict[str, Optional[str]] = {n: state.params[n].rule for n in state.frozen_names()}
        for layer in state.stats_frozen_layers():
            rules.update({b: state.bn_rules.get(layer) for b in self.index.bn_buffers(layer)})
        return rules

    def check_pretrained(self, loaded_keys: Set[str], allow_random_frozen: Optional[bool] = None) -> List[str]:
        """Refuse to freeze tensors the pretrained weights did not provide (they would stay random).

        Returns the missing names (empty when all were loaded); raises ConfigError unless
        ``allow_random_frozen`` (default: ``Freeze.allow_random_frozen``) is true.
        """
        allowed = self.spec.allow_random_frozen if allow_random_frozen is None else allow_random_frozen
        missing = [n for n in self.frozen_tensor_names(1) if n not in loaded_keys]
        if missing and not allowed:
            shown = ", ".join(missing[:10]) + (f" ... ({len(missing)} in all)" if len(missing) > 10 else "")
            raise ConfigError(f"{self.spec.key}.allow_random_frozen",
                              f"{len(missing)} frozen tensors were not in the pretrained weights and would stay "
                              f"at their random initialisation: {shown}",
                              "load weights that contain them (Global.pretrained_model), freeze less, or set "
                              "Freeze.allow_random_frozen: true if that is intended")
        if missing:
            logger.warning("Freeze: %d frozen tensors keep their random initialisation (allow_random_frozen)",
                           len(missing))
        return missing

    # -- report ------------------------------------------------------------------------------
    def report(self, model: paddle.nn.Layer, image_shape: Sequence[int], epoch: Optional[int] = None) -> Dict[str, Any]:
        """The freeze report (see ``report.build_report``) for ``epoch`` (default: current)."""
        from .report import build_report
        return build_report(self, model, image_shape, self.state_at(epoch or self.applied_epoch or 1))

    def unfrozen_later(self) -> List[str]:
        """Parameters frozen at epoch 1 that a milestone unfreezes (DataParallel must see them trainable)."""
        last = self.state_at(max(self._states))
        return [n for n in self.state_at(1).frozen_names() if not last.params[n].frozen]


def build_freeze_plan(freeze_cfg: Optional[Dict[str, Any]], model: paddle.nn.Layer, key: str = "Freeze") -> FreezePlan:
    """Validate ``freeze_cfg`` (the ``Freeze`` section; None or {} freezes nothing) against ``model``."""
    return FreezePlan(parse_freeze_spec(freeze_cfg, key), model)
