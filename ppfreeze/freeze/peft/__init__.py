"""Parameter-efficient fine-tuning as Freeze methods: LoRA, BitFit, visual prompt tuning.

``Freeze.peft`` does two things, both before the plan indexes the model:

1. :func:`attach_adapters` adds the trainable tensors the method needs (LoRA's ``lora_A`` /
   ``lora_B`` on the selected Linear / Conv2D layers, VPT's ``prompt.tokens``); no existing key
   is renamed, so base weights load as before;
2. :func:`peft_rule` is one ordinary Freeze rule (key ``Freeze.peft``) that freezes the base
   model except the adapters, ``train`` (default: the head stages) and, for BitFit, the biases
   and norm affines. Being a rule, it is reported, audited (the base stays bit-identical),
   checkpointed, and a schedule milestone can unfreeze base blocks later.

See docs/freeze.md ("Parameter-efficient fine-tuning").
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import List, Optional, Sequence, Tuple

import paddle.nn as nn

from ...config.errors import ConfigError
from ..model_index import ModelIndex, unwrap
from ..rules import unmatched_error
from ..spec import FreezeSpec, PeftSpec, RuleSpec
from .lora import ADAPTER_PARAMS, LoRAConv2D, LoRALinear, LoRAMixin, add_lora, why_not_adaptable
from .prompt import VisualPrompt, add_prompts

logger = logging.getLogger("ppfreeze")

RULE_KEY_SUFFIX = "peft"
LORA_TYPES = (nn.Linear, nn.Conv2D)


@dataclass
class Attachment:
    """What one PEFT method added to the model."""
    spec: PeftSpec
    layers: List[str] = field(default_factory=list)        # adapted layers (LoRA) or the prompt layer (VPT)
    added: List[str] = field(default_factory=list)         # parameter names added
    trainable: List[str] = field(default_factory=list)     # patterns the Freeze rule leaves trainable
    skipped: List[Tuple[str, str]] = field(default_factory=list)  # (layer, why) selected but not adaptable


def attach_adapters(model: nn.Layer, specs: Sequence[PeftSpec], frozen_by_arch: Sequence[str] = ()) -> List[Attachment]:
    """Add every method's trainable tensors to ``model`` (in place); ``frozen_by_arch`` patterns
    (a frozen teacher) get none."""
    model = unwrap(model)
    attachments = []
    for spec in specs:
        if spec.method == "lora":
            attachments.append(_attach_lora(model, spec, frozen_by_arch))
        elif spec.method == "vpt":
            layer, added = add_prompts(model, spec.select, spec.num_tokens, spec.deep, spec.dropout, spec.key)
            attachments.append(Attachment(spec, layers=[layer], added=added, trainable=[layer]))
        else:  # bitfit adds nothing: it chooses what trains
            attachments.append(Attachment(spec))
    return attachments


def _attach_lora(model: nn.Layer, spec: PeftSpec, frozen_by_arch: Sequence[str]) -> Attachment:
    index = ModelIndex(model)
    frozen = {n for p in frozen_by_arch for n in index.match_layers(p)}
    excluded = {n for p in spec.exclude for n in _layers_or_fail(index, p, f"{spec.key}.exclude")}
    attachment = Attachment(spec, trainable=[f"*.{name}" for name in ADAPTER_PARAMS])
    for i, pattern in enumerate(spec.select):
        found = [n for n in _layers_or_fail(index, pattern, f"{spec.key}.select.{i}") if n not in excluded and n not in frozen]
        typed = [n for n in found if isinstance(index.layers[n], LORA_TYPES)]
        if not typed:
            kinds = sorted({type(index.layers[n]).__name__ for n in found}) or ["nothing after exclude"]
            raise ConfigError(f"{spec.key}.select.{i}", f"pattern {pattern!r} selects no Linear or Conv2D layer "
                                                        f"(it selects: {', '.join(kinds[:8])})",
                              "LoRA adapts nn.Linear and nn.Conv2D layers; select them or the blocks holding them")
        adaptable = []
        for name in typed:
            reason = why_not_adaptable(index.layers[name])
            if reason:
                attachment.skipped.append((name, reason))
            else:
                adaptable.append(name)
        if not adaptable:
            raise ConfigError(f"{spec.key}.select.{i}", f"pattern {pattern!r} selects only layers LoRA cannot adapt: "
                                                        f"{attachment.skipped[-1][0]} is {attachment.skipped[-1][1]}",
                              "select ordinary (groups=1) Conv2D or Linear layers")
        for name in adaptable:
            if name not in attachment.layers:
                add_lora(index.layers[name], spec.rank, spec.scale, spec.dropout)
                attachment.layers.append(name)
                attachment.added += [f"{name}.{p}" for p in ADAPTER_PARAMS]
    if attachment.skipped:
        logger.info("%s: LoRA skipped %d selected layers it cannot adapt, e.g. %s (%s)", spec.key,
                    len(attachment.skipped), *attachment.skipped[0])
    return attachment


def _layers_or_fail(index: ModelIndex, pattern: str, key: str) -> List[str]:
    layers = index.match_layers(pattern)
    if not layers:
        raise unmatched_error(key, pattern, index, "sublayer or stage")
    return layers


def peft_rule(spec: FreezeSpec, attachments: Sequence[Attachment], index: ModelIndex,
              frozen_by_arch: Sequence[str] = ()) -> Optional[RuleSpec]:
    """The one Freeze rule (``Freeze.peft``) that freezes the base model around the adapters."""
    if not attachments:
        return None
    bitfit = any(a.spec.method == "bitfit" for a in attachments)
    keep: List[str] = list(frozen_by_arch)                     # frozen by their own rule already
    for attachment in attachments:
        keep += attachment.trainable
        keep += _train_patterns(attachment.spec, index)
    if bitfit and index.match_params("*.bias"):
        keep.append("*.bias")
    key = f"{spec.key}.{RULE_KEY_SUFFIX}"
    return RuleSpec(key=key, select=("*",), exclude=tuple(dict.fromkeys(keep)), method=spec.method,
                    bn="freeze_stats" if bitfit else spec.bn, ln="train" if bitfit else spec.ln)


def _train_patterns(spec: PeftSpec, index: ModelIndex) -> List[str]:
    """``train`` (checked against the model), or every head stage by default."""
    if spec.train is None:
        return [s for s in index.stages if s == "head" or s.endswith(".head")]
    for i, pattern in enumerate(spec.train):
        if not index.match_params(pattern) and not index.match_layers(pattern):
            raise unmatched_error(f"{spec.key}.train.{i}", pattern, index)
    return list(spec.train)


def added_parameter_names(attachments: Sequence[Attachment]) -> List[str]:
    """Every parameter PEFT added, in attachment order."""
    return [n for a in attachments for n in a.added]


__all__ = ["Attachment", "attach_adapters", "peft_rule", "added_parameter_names", "LoRALinear", "LoRAConv2D",
           "LoRAMixin", "VisualPrompt"]
