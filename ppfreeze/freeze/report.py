"""The freeze report: what each rule matched, what is frozen, how, and what it saves.

``build_report`` returns a JSON-able dict (written to ``output_dir/freeze_report.json`` by the
engine, see :func:`write_report`); ``format_report`` turns it into the text printed at start.
"""
from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any, Dict, List, Sequence

import numpy as np
import paddle

from ..utils.io import atomic_write_json
from .flops import count_macs
from .model_index import unwrap
from .state import FreezeState

if TYPE_CHECKING:
    from .plan import FreezePlan

CACHE_FEATURES_NOTE = ("auto: when training starts, a cut prefix with deterministic transforms has its output "
                       "cached per image (train.log says whether and why not); false: never")
PREFIX_ENGINE_NOTE = ("the engine that runs a cut prefix: dygraph (bit-exact), static, inference or auto; "
                      "decided and checked against dygraph on the first batch (train.log and 'used' / 'why' "
                      "here say which and why)")


def _share(part: float, total: float) -> float:
    return float(part) / float(total) if total else 0.0


def build_report(plan: "FreezePlan", model: paddle.nn.Layer, image_shape: Sequence[int],
                 state: FreezeState) -> Dict[str, Any]:
    """Per-rule matches, parameter and FLOP shares, methods used (and why), BN policies, LR multipliers."""
    sizes = {n: int(np.prod(p.shape)) for n, p in unwrap(model).named_parameters() if n in state.params}
    return {
        "epoch": state.epoch,
        "rules": [_rule_entry(m, state, sizes) for m in plan.matches],
        "params": _param_totals(state, sizes),
        "peft": _peft(plan, state, sizes),
        "flops": _flops(model, image_shape, state),
        "method": {"requested": plan.spec.method, "cut_boundary": state.cut_boundary, "notes": list(state.notes),
                   "used": dict(Counter(p.method for p in state.params.values() if p.frozen))},
        "bn": {layer: policy for layer, policy in state.bn.items() if policy != "train"},
        "lr_mult": {p.name: p.lr_mult for p in state.params.values() if not p.frozen and p.lr_mult != 1.0},
        "schedule": [{"epoch": m.epoch, "unfreeze": list(m.unfreeze), "lr_mult": m.lr_mult, "bn": m.bn or "train",
                      "params_unfrozen": _unfrozen_at(plan, m.epoch)} for m in plan.spec.schedule],
        "verify": plan.spec.verify,
        "cache_features": {"value": plan.spec.cache_features, "note": CACHE_FEATURES_NOTE},
        "prefix_engine": {"requested": plan.spec.prefix_engine, "note": PREFIX_ENGINE_NOTE},
    }


def _rule_entry(match, state: FreezeState, sizes: Dict[str, int]) -> Dict[str, Any]:
    rule = match.rule
    return {
        "key": rule.key, "select": list(rule.select), "exclude": list(rule.exclude), "types": list(rule.types),
        "method": rule.method, "bn": rule.bn, "ln": rule.ln,
        "method_used": dict(Counter(state.params[n].method for n in match.params if state.params[n].frozen)),
        "params": list(match.params), "layers": list(match.layers), "bn_layers": list(match.bn_layers),
        "num_params": len(match.params), "num_elements": sum(sizes[n] for n in match.params),
        "frozen_now": sum(state.params[n].frozen for n in match.params),
    }


def _param_totals(state: FreezeState, sizes: Dict[str, int]) -> Dict[str, Any]:
    total = sum(sizes.values())
    frozen = sum(sizes[n] for n, p in state.params.items() if p.frozen)
    return {"total": total, "frozen": frozen, "trainable": total - frozen, "frozen_share": _share(frozen, total),
            "trainable_share": _share(total - frozen, total),
            "tensors_frozen": sum(p.frozen for p in state.params.values()),
            "tensors_trainable": sum(not p.frozen for p in state.params.values()),
            "tensors_in_optimizer": sum(p.in_optimizer for p in state.params.values())}


def _peft(plan: "FreezePlan", state: FreezeState, sizes: Dict[str, int]) -> Dict[str, Any]:
    """What PEFT added and what trains, against the base model's size (empty without PEFT)."""
    if not plan.peft:
        return {}
    added = [n for a in plan.peft for n in a.added]
    total = sum(sizes.values())
    added_values = sum(sizes[n] for n in added)
    trainable = sum(sizes[n] for n, p in state.params.items() if not p.frozen)
    base = total - added_values
    methods = []
    for a in plan.peft:
        entry = {"key": a.spec.key, "method": a.spec.method, "layers": list(a.layers), "num_layers": len(a.layers),
                 "params_added": sum(sizes[n] for n in a.added), "skipped": [f"{n} ({why})" for n, why in a.skipped]}
        if a.spec.method == "lora":
            entry.update(rank=a.spec.rank, alpha=a.spec.alpha, dropout=a.spec.dropout)
        elif a.spec.method == "vpt":
            entry.update(num_tokens=a.spec.num_tokens, deep=a.spec.deep, dropout=a.spec.dropout)
        methods.append(entry)
    return {"methods": methods, "params_base": base, "params_added": added_values, "params_trainable": trainable,
            "added_share_of_base": _share(added_values, base), "trainable_share_of_base": _share(trainable, base),
            "base_trainable": trainable - sum(sizes[n] for n in added if not state.params[n].frozen)}


def _flops(model: paddle.nn.Layer, image_shape: Sequence[int], state: FreezeState) -> Dict[str, Any]:
    macs = count_macs(model, image_shape)
    total = sum(macs.values())

    def params_under(layer: str):
        # a Conv/Linear layer's own weight; an attention layer's projections
        return [p for n, p in state.params.items() if n.startswith(layer + ".")]

    def all_under(layer: str, test) -> bool:
        params = params_under(layer)
        return bool(params) and all(test(p) for p in params)

    frozen = sum(m for layer, m in macs.items() if all_under(layer, lambda p: p.frozen))
    cut = sum(m for layer, m in macs.items() if all_under(layer, lambda p: p.method == "cut"))
    return {"image_shape": list(image_shape), "macs_total": total, "macs_frozen": frozen,
            "frozen_share": _share(frozen, total), "macs_no_backward": cut, "no_backward_share": _share(cut, total)}


def _unfrozen_at(plan: "FreezePlan", epoch: int) -> List[str]:
    before, after = plan.state_at(epoch - 1) if epoch > 1 else None, plan.state_at(epoch)
    if before is None:
        return []
    return [n for n in before.frozen_names() if not after.params[n].frozen]


def format_report(report: Dict[str, Any]) -> str:
    """Human-readable text of a report from :func:`build_report`."""
    p, f = report["params"], report["flops"]
    lines = [f"Freeze plan (epoch {report['epoch']})",
             f"  parameters: {p['frozen']:,} frozen / {p['trainable']:,} trainable of {p['total']:,} "
             f"({p['frozen_share']:.1%} frozen); tensors: {p['tensors_frozen']} frozen, "
             f"{p['tensors_trainable']} trainable, {p['tensors_in_optimizer']} in the optimizer",
             f"  forward FLOPs (Conv/Linear/attention MACs, input {f['image_shape']}): {f['frozen_share']:.1%} frozen, "
             f"{f['no_backward_share']:.1%} with no backward at all (cut)",
             f"  method requested: {report['method']['requested']}; used: "
             f"{_counts(report['method']['used']) or 'nothing frozen'}"]
    lines += [f"  note: {note}" for note in report["method"]["notes"]]
    lines += _peft_lines(report.get("peft") or {})
    for rule in report["rules"]:
        lines.append(f"  rule {rule['key']}: select {_short(rule['select'])}"
                     + (f" exclude {rule['exclude']}" if rule["exclude"] else "")
                     + (f" types {rule['types']}" if rule["types"] else ""))
        lines.append(f"    {rule['num_params']} parameters ({rule['num_elements']:,} values) in "
                     f"{len(rule['layers'])} layers; method {rule['method']} -> {_counts(rule['method_used']) or '-'}; "
                     f"bn {rule['bn']} on {len(rule['bn_layers'])} BN layers")
    if report["bn"]:
        lines.append(f"  BN policies: {_counts(Counter(report['bn'].values()))}")
    if report["lr_mult"]:
        values = sorted(set(report["lr_mult"].values()))
        lines.append(f"  lr multipliers != 1 on {len(report['lr_mult'])} parameters: "
                     f"{', '.join(f'{v:g}' for v in values[:8])}")
    for m in report["schedule"]:
        lines.append(f"  epoch {m['epoch']}: unfreeze {m['unfreeze']} ({len(m['params_unfrozen'])} parameters) "
                     f"lr_mult {m['lr_mult']:g}, bn {m['bn']}")
    lines.append(f"  verify: {report['verify']}; cache_features: {report['cache_features']['value']} "
                 f"({report['cache_features']['note']})")
    engine = report.get("prefix_engine")
    if engine and engine["requested"] != "dygraph":
        lines.append(f"  prefix_engine: {engine['requested']} ({engine['note']})")
    return "\n".join(lines)


def _peft_lines(peft: Dict[str, Any]) -> List[str]:
    if not peft:
        return []
    lines = []
    for m in peft["methods"]:
        how = {"lora": lambda: f" on {m['num_layers']} layers (rank {m['rank']}, alpha {m['alpha']:g})",
               "vpt": lambda: f" ({m['num_tokens']} {'deep' if m['deep'] else 'shallow'} prompt tokens)",
               "bitfit": lambda: " (biases and norm affines train)"}[m["method"]]()
        lines.append(f"  peft {m['key']}: {m['method']}{how}, {m['params_added']:,} parameters added")
    lines.append(f"  peft totals: base {peft['params_base']:,} parameters, added {peft['params_added']:,} "
                 f"({peft['added_share_of_base']:.2%} of the base), trainable {peft['params_trainable']:,} "
                 f"({peft['trainable_share_of_base']:.2%} of the base; {peft['base_trainable']:,} of them base parameters)")
    return lines


def _short(names: List[str], keep: int = 6) -> str:
    if len(names) <= keep:
        return str(names)
    return f"[{', '.join(names[:keep - 1])}, ..., {names[-1]}] ({len(names)} names)"


def _counts(counter: Dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in counter.items())


def write_report(report: Dict[str, Any], path: str) -> None:
    """Write the report as JSON atomically (``output_dir/freeze_report.json``)."""
    atomic_write_json(path, report)
