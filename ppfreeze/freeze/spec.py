"""Parse and validate the ``Freeze`` config section into plain dataclasses.

This module knows nothing about models or paddle: it checks the shape and the values of
what the user wrote.  Whether a pattern matches anything in the model is checked later,
when the plan is resolved against a real model (see ``plan.py``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Optional, Sequence, Tuple, Union

from ..config.errors import ConfigError, did_you_mean
from ..config.expr import to_number

METHODS = ("auto", "cut", "stop_gradient", "lr_zero", "clear_grad")
BN_POLICIES = ("frozen", "freeze_stats", "freeze_affine", "train")
# LayerNorm / GroupNorm have no running statistics: only their affine weight and bias
LN_POLICIES = ("frozen", "train")
VERIFY_MODES = ("never", "end", "epoch")
PREFIX_ENGINES = ("dygraph", "static", "inference", "auto")
PREFIX_ENGINE_KEYS = ("name", "use_tensorrt")

TOP_KEYS = ("until", "stages", "method", "bn", "ln", "rules", "peft", "lr_mult", "layer_decay", "schedule", "strict",
            "verify", "allow_random_frozen", "cache_features", "prefix_engine")
RULE_KEYS = ("select", "exclude", "types", "method", "bn", "ln", "lr_mult")
MILESTONE_KEYS = ("epoch", "unfreeze", "lr_mult", "bn")
# parameter-efficient fine-tuning methods and the keys each one takes (docs/freeze.md, "PEFT")
PEFT_KEYS = {
    "lora": ("method", "select", "exclude", "rank", "alpha", "dropout", "train"),
    "bitfit": ("method", "train"),
    "vpt": ("method", "select", "num_tokens", "deep", "dropout", "train"),
}


@dataclass(frozen=True)
class RuleSpec:
    """One freezing rule: which parameters/sublayers, how to freeze them, which BN policy.

    ``key`` is the config path reported in errors (``Freeze.rules.1`` or ``Freeze.until``).
    ``lr_mult`` applies to the parameters the rule matches that stay trainable (BN affine
    parameters under ``bn: freeze_stats`` or ``bn: train``, LayerNorm affine parameters under
    ``ln: train``).
    """
    key: str
    select: Tuple[str, ...]
    exclude: Tuple[str, ...] = ()
    types: Tuple[str, ...] = ()
    method: str = "auto"
    bn: str = "frozen"
    lr_mult: Optional[float] = None
    ln: str = "frozen"


@dataclass(frozen=True)
class MilestoneSpec:
    """Gradual unfreezing: at the start of (1-based) ``epoch`` unfreeze ``unfreeze``."""
    key: str
    epoch: int
    unfreeze: Tuple[str, ...]
    lr_mult: float = 1.0
    bn: Optional[str] = None  # BN policy for unfrozen BN layers; None means "train"


@dataclass(frozen=True)
class PeftSpec:
    """One parameter-efficient fine-tuning method (``Freeze.peft``).

    ``lora``: low-rank adapters on the Linear / Conv2D layers ``select`` matches (minus
    ``exclude``), ``W x + (alpha / rank) * B A dropout(x)``; ``bitfit``: biases and norm affines
    train; ``vpt``: ``num_tokens`` prompt tokens inserted after the class token of a ViT-family
    model (``deep``: new ones before every block). Everything else of the base model is frozen,
    except ``train`` (default: the head stages).
    """
    key: str
    method: str
    select: Tuple[str, ...] = ()
    exclude: Tuple[str, ...] = ()
    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    num_tokens: int = 10
    deep: bool = False
    train: Optional[Tuple[str, ...]] = None  # None: every head stage

    @property
    def scale(self) -> float:
        """LoRA's scaling of the low-rank update, ``alpha / rank``."""
        return self.alpha / self.rank


@dataclass(frozen=True)
class FreezeSpec:
    """The validated ``Freeze`` section (shortcuts not yet expanded: that needs the model)."""
    key: str = "Freeze"
    until: Optional[str] = None
    stages: Optional[int] = None
    method: str = "auto"
    bn: str = "frozen"
    ln: str = "frozen"
    rules: Tuple[RuleSpec, ...] = ()
    peft: Tuple[PeftSpec, ...] = ()
    lr_mult: Tuple[Tuple[str, float], ...] = ()
    layer_decay: Optional[float] = None
    schedule: Tuple[MilestoneSpec, ...] = ()
    strict: bool = True
    verify: Union[str, int] = "epoch"
    allow_random_frozen: bool = False
    cache_features: Union[str, bool] = "auto"
    prefix_engine: str = "dygraph"
    prefix_engine_tensorrt: bool = False

    @property
    def is_empty(self) -> bool:
        """True when the section freezes nothing and changes no learning rate."""
        return (self.until is None and self.stages is None and not self.rules and not self.peft and not self.lr_mult
                and self.layer_decay is None and not self.schedule)


def parse_freeze_spec(cfg: Optional[Dict[str, Any]], key: str = "Freeze") -> FreezeSpec:
    """Validate a ``Freeze`` mapping (or None) and return a :class:`FreezeSpec`.

    Every mistake raises :class:`ConfigError` naming the key path, the value found and the fix.
    """
    if cfg is None:
        return FreezeSpec(key=key)
    if not isinstance(cfg, dict):
        raise ConfigError(key, f"expected a mapping, got {type(cfg).__name__} {cfg!r}",
                          "write e.g. 'Freeze: {until: stage2}' or leave the section out")
    _check_keys(cfg, TOP_KEYS, key)
    method = _choice(cfg.get("method", "auto"), METHODS, f"{key}.method")
    bn = _choice(cfg.get("bn", "frozen"), BN_POLICIES, f"{key}.bn")
    ln = _choice(cfg.get("ln", "frozen"), LN_POLICIES, f"{key}.ln")
    until = cfg.get("until")
    stages = cfg.get("stages")
    if until is not None and stages is not None:
        raise ConfigError(f"{key}.until", f"both until ({until!r}) and stages ({stages!r}) are set",
                          "use one of them; both describe the same frozen prefix")
    if until is not None and (not isinstance(until, str) or not until):
        raise ConfigError(f"{key}.until", f"expected a stage or sublayer name, got {until!r}",
                          "e.g. until: stage2 or until: blocks.6")
    if stages is not None and (isinstance(stages, bool) or not isinstance(stages, int) or stages < 0):
        raise ConfigError(f"{key}.stages", f"expected an integer >= 0, got {stages!r}",
                          "stages: N freezes the stem and the first N stages")
    return FreezeSpec(
        key=key, until=until, stages=stages, method=method, bn=bn, ln=ln,
        rules=_parse_rules(cfg.get("rules"), f"{key}.rules", method, bn, ln),
        peft=_parse_peft(cfg.get("peft"), f"{key}.peft"),
        lr_mult=_parse_lr_mult(cfg.get("lr_mult"), f"{key}.lr_mult"),
        layer_decay=_parse_layer_decay(cfg.get("layer_decay"), f"{key}.layer_decay"),
        schedule=_parse_schedule(cfg.get("schedule"), f"{key}.schedule"),
        strict=_bool(cfg.get("strict", True), f"{key}.strict"),
        verify=_parse_verify(cfg.get("verify", "epoch"), f"{key}.verify"),
        allow_random_frozen=_bool(cfg.get("allow_random_frozen", False), f"{key}.allow_random_frozen"),
        cache_features=_parse_cache_features(cfg.get("cache_features", "auto"), f"{key}.cache_features"),
        **_parse_prefix_engine(cfg.get("prefix_engine", "dygraph"), f"{key}.prefix_engine"),
    )


def _check_keys(cfg: Dict[str, Any], known: Sequence[str], key: str) -> None:
    for k in cfg:
        if k not in known:
            raise ConfigError(f"{key}.{k}", "unknown key",
                              f"known keys: {', '.join(known)}.{did_you_mean(str(k), known)}")


def _choice(value: Any, choices: Sequence[Any], key: str) -> Any:
    if not isinstance(value, str) or value not in choices:
        raise ConfigError(key, f"got {value!r}, expected one of {', '.join(map(str, choices))}",
                          did_you_mean(str(value), [str(c) for c in choices]).strip() or None)
    return value


def _bool(value: Any, key: str) -> bool:
    if not isinstance(value, bool):
        raise ConfigError(key, f"expected true or false, got {value!r}")
    return value


def _patterns(value: Any, key: str, required: bool = True) -> Tuple[str, ...]:
    """A glob or a list of globs -> tuple of non-empty strings."""
    if value is None:
        if required:
            raise ConfigError(key, "missing", "give a glob or a list of globs, e.g. [\"stem.*\", \"blocks.0\"]")
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or (required and not items):
        raise ConfigError(key, f"expected a glob or a non-empty list of globs, got {value!r}",
                          "e.g. [\"stem.*\", \"stage1\"]")
    for i, item in enumerate(items):
        if not isinstance(item, str) or not item:
            raise ConfigError(f"{key}.{i}", f"expected a non-empty string, got {item!r}")
    return tuple(items)


def _mult(value: Any, key: str) -> float:
    number = float(to_number(value, key))
    if number < 0:
        raise ConfigError(key, f"a learning-rate multiplier must be >= 0, got {number}")
    return number


def _parse_rules(value: Any, key: str, method: str, bn: str, ln: str) -> Tuple[RuleSpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(key, f"expected a list of rules, got {type(value).__name__}",
                          "write each rule as '- select: [...]'")
    return tuple(_parse_rule(rule, f"{key}.{i}", method, bn, ln) for i, rule in enumerate(value))


def _parse_rule(rule: Any, key: str, method: str, bn: str, ln: str) -> RuleSpec:
    if not isinstance(rule, dict):
        raise ConfigError(key, f"expected a mapping with 'select', got {rule!r}")
    _check_keys(rule, RULE_KEYS, key)
    types = _patterns(rule.get("types"), f"{key}.types", required=False)
    select = _patterns(rule.get("select"), f"{key}.select", required=not types) or ("*",)
    return RuleSpec(
        key=key, select=select,
        exclude=_patterns(rule.get("exclude"), f"{key}.exclude", required=False),
        types=types,
        method=_choice(rule.get("method", method), METHODS, f"{key}.method"),
        bn=_choice(rule.get("bn", bn), BN_POLICIES, f"{key}.bn"),
        lr_mult=None if rule.get("lr_mult") is None else _mult(rule["lr_mult"], f"{key}.lr_mult"),
        ln=_choice(rule.get("ln", ln), LN_POLICIES, f"{key}.ln"),
    )


def _parse_peft(value: Any, key: str) -> Tuple[PeftSpec, ...]:
    """``peft: bitfit`` | ``peft: {method: lora, ...}`` | ``peft: [{method: lora, ...}, {method: vpt, ...}]``."""
    if value is None:
        return ()
    items = [(value, key)] if isinstance(value, (str, dict)) else None
    if isinstance(value, list):
        items = [(item, f"{key}.{i}") for i, item in enumerate(value)]
    if not items:
        raise ConfigError(key, f"expected a method name, a mapping or a list of mappings, got {value!r}",
                          "e.g. peft: bitfit, or peft: {method: lora, rank: 8, alpha: 16, select: [\"blocks.*.attn.qkv\"]}")
    specs = [_parse_one_peft(item, item_key) for item, item_key in items]
    seen: Dict[str, str] = {}
    for spec in specs:
        if spec.method in seen:
            raise ConfigError(f"{spec.key}.method", f"{spec.method} is already configured at {seen[spec.method]}",
                              "give each method once")
        seen[spec.method] = spec.key
    return tuple(specs)


def _parse_one_peft(cfg: Any, key: str) -> PeftSpec:
    if isinstance(cfg, str):
        cfg = {"method": cfg}
    if not isinstance(cfg, dict):
        raise ConfigError(key, f"expected a mapping with 'method', got {cfg!r}")
    method = _choice(cfg.get("method"), tuple(PEFT_KEYS), f"{key}.method")
    _check_keys(cfg, PEFT_KEYS[method], key)
    if method == "lora" and "select" not in cfg:
        raise ConfigError(f"{key}.select", "missing: LoRA needs the layers to adapt",
                          "e.g. select: [\"blocks.*.attn.qkv\"] (Linear / Conv2D layers, stage names or globs)")
    train = cfg.get("train")
    return PeftSpec(
        key=key, method=method,
        select=_patterns(cfg.get("select"), f"{key}.select", required=False),
        exclude=_patterns(cfg.get("exclude"), f"{key}.exclude", required=False),
        rank=_positive_int(cfg.get("rank", 8), f"{key}.rank"),
        alpha=_positive(cfg.get("alpha", 16), f"{key}.alpha"),
        dropout=_probability(cfg.get("dropout", 0.0), f"{key}.dropout"),
        num_tokens=_positive_int(cfg.get("num_tokens", 10), f"{key}.num_tokens"),
        deep=_bool(cfg.get("deep", False), f"{key}.deep"),
        train=None if train is None else (() if train == [] else _patterns(train, f"{key}.train")),
    )


def _positive_int(value: Any, key: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(key, f"expected an integer >= 1, got {value!r}")
    return value


def _positive(value: Any, key: str) -> float:
    number = float(to_number(value, key))
    if number <= 0:
        raise ConfigError(key, f"expected a number > 0, got {number}")
    return number


def _probability(value: Any, key: str) -> float:
    number = float(to_number(value, key))
    if not 0.0 <= number < 1.0:
        raise ConfigError(key, f"expected a probability in [0, 1), got {number}")
    return number


def _parse_lr_mult(value: Any, key: str) -> Tuple[Tuple[str, float], ...]:
    if value is None:
        return ()
    if not isinstance(value, dict):
        raise ConfigError(key, f"expected a mapping pattern -> multiplier, got {value!r}",
                          "e.g. lr_mult: {\"blocks.*\": 0.1}")
    return tuple((str(p), _mult(m, f"{key}.{p}")) for p, m in value.items())


def _parse_layer_decay(value: Any, key: str) -> Optional[float]:
    if value is None:
        return None
    number = float(to_number(value, key))
    if not 0.0 < number <= 1.0:
        raise ConfigError(key, f"expected a number in (0, 1], got {number}", "typical values are 0.65-0.9")
    return number


def _parse_schedule(value: Any, key: str) -> Tuple[MilestoneSpec, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise ConfigError(key, f"expected a list of milestones, got {type(value).__name__}",
                          "e.g. schedule: [{epoch: 3, unfreeze: [stage4], lr_mult: 0.1}]")
    milestones = [_parse_milestone(m, f"{key}.{i}") for i, m in enumerate(value)]
    seen: Dict[int, str] = {}
    for m in milestones:
        if m.epoch in seen:
            raise ConfigError(f"{m.key}.epoch", f"epoch {m.epoch} already has a milestone ({seen[m.epoch]})",
                              "merge their unfreeze lists into one milestone")
        seen[m.epoch] = m.key
    return tuple(sorted(milestones, key=lambda m: m.epoch))


def _parse_milestone(m: Any, key: str) -> MilestoneSpec:
    if not isinstance(m, dict):
        raise ConfigError(key, f"expected a mapping with epoch and unfreeze, got {m!r}")
    _check_keys(m, MILESTONE_KEYS, key)
    epoch = m.get("epoch")
    if isinstance(epoch, bool) or not isinstance(epoch, int) or epoch < 1:
        raise ConfigError(f"{key}.epoch", f"expected an epoch number >= 1 (epochs are 1-based), got {epoch!r}")
    bn = m.get("bn")
    return MilestoneSpec(
        key=key, epoch=epoch,
        unfreeze=_patterns(m.get("unfreeze"), f"{key}.unfreeze"),
        lr_mult=_mult(m.get("lr_mult", 1.0), f"{key}.lr_mult"),
        bn=None if bn is None else _choice(bn, BN_POLICIES, f"{key}.bn"),
    )


def _parse_verify(value: Any, key: str) -> Union[str, int]:
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int) and not isinstance(value, bool):
        if value < 1:
            raise ConfigError(key, f"a step interval must be >= 1, got {value}")
        return value
    if value not in VERIFY_MODES:
        raise ConfigError(key, f"got {value!r}, expected never, end, epoch or a number of steps",
                          did_you_mean(str(value), VERIFY_MODES).strip() or None)
    return value


def _parse_cache_features(value: Any, key: str) -> Union[str, bool]:
    if not (value == "auto" or isinstance(value, bool)):
        raise ConfigError(key, f"got {value!r}, expected auto or false")
    if value is True:  # "always" cannot be promised: the conditions are checked at run time
        raise ConfigError(key, "true is not a mode: caching happens whenever it is safe",
                          "use auto (cache when the frozen prefix is cut and transforms are deterministic) or false")
    return value


def _parse_prefix_engine(value: Any, key: str) -> Dict[str, Any]:
    """``dygraph | static | inference | auto``, or ``{name: ..., use_tensorrt: bool}`` (GPU hosts)."""
    options = value if isinstance(value, dict) else {"name": value}
    _check_keys(options, PREFIX_ENGINE_KEYS, key)
    name = _choice(options.get("name"), PREFIX_ENGINES, f"{key}.name" if isinstance(value, dict) else key)
    return {"prefix_engine": name,
            "prefix_engine_tensorrt": _bool(options.get("use_tensorrt", False), f"{key}.use_tensorrt")}
