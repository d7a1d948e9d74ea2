"""Learning-rate schedules of ``Optimizer.lr`` (PaddleClas names and keys).

Every schedule is counted in scheduler steps.  With ``by_epoch: False`` (the PaddleClas
default) the engine calls ``scheduler.step()`` after every iteration and epochs are turned
into iterations with ``step_each_epoch``; with ``by_epoch: True`` it steps once per epoch.
The returned scheduler carries that choice as ``scheduler.by_epoch``.

``warmup_epoch`` wraps the schedule in a linear warmup from ``warmup_start_lr`` to the base
rate.  As in PaddleClas, the wrapped schedule starts counting after the warmup, so decay
epochs/milestones are measured from the end of the warmup.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Dict, List, Optional, Sequence

from paddle.optimizer import lr as paddle_lr

from ..config.errors import ConfigError
from ..config.expr import to_number
from ..utils.builder import split_component
from .registry import LR_SCHEDULERS

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Timeline:
    """Length of training, used to turn epochs into scheduler steps."""

    epochs: int
    step_each_epoch: int
    key: str  # config path of the lr section, for error messages

    def steps(self, n_epochs: float, by_epoch: bool) -> int:
        """Scheduler steps covering ``n_epochs`` epochs."""
        return int(round(n_epochs if by_epoch else n_epochs * self.step_each_epoch))


class ConstantLR(paddle_lr.LRScheduler):
    """A schedule that keeps ``learning_rate`` (Paddle has no constant LRScheduler)."""

    def get_lr(self) -> float:
        return self.base_lr


# --------------------------------------------------------------------------- schedules

@LR_SCHEDULERS.register
@LR_SCHEDULERS.register(name="ConstLR")   # PaddleClas has both names for a constant rate
def Constant(learning_rate: float, warmup_epoch: float = 0, warmup_start_lr: float = 0.0,
             by_epoch: bool = False, *, timeline: Timeline) -> paddle_lr.LRScheduler:
    """Fixed learning rate (after the optional warmup)."""
    base = _rate(learning_rate, timeline, "learning_rate")
    return _finish(ConstantLR(base), base, warmup_epoch, warmup_start_lr, by_epoch, timeline)


@LR_SCHEDULERS.register
def Cosine(learning_rate: float, eta_min: float = 0.0, warmup_epoch: float = 0,
           warmup_start_lr: float = 0.0, by_epoch: bool = False, *,
           timeline: Timeline) -> paddle_lr.LRScheduler:
    """Cosine annealing from ``learning_rate`` to ``eta_min`` over the epochs after warmup."""
    base = _rate(learning_rate, timeline, "learning_rate")
    eta_min = _rate(eta_min, timeline, "eta_min")
    if eta_min > base:
        raise ConfigError(f"{timeline.key}.eta_min", f"eta_min {eta_min} is above learning_rate {base}")
    warmup_epoch = _warmup_epochs(warmup_epoch, timeline)
    t_max = timeline.steps(timeline.epochs - warmup_epoch, by_epoch)
    schedule = (paddle_lr.CosineAnnealingDecay(base, T_max=t_max, eta_min=eta_min)
                if t_max > 0 else ConstantLR(base))
    return _finish(schedule, base, warmup_epoch, warmup_start_lr, by_epoch, timeline)


@LR_SCHEDULERS.register
def Linear(learning_rate: float, end_lr: float = 0.0, power: float = 1.0, cycle: bool = False,
           warmup_epoch: float = 0, warmup_start_lr: float = 0.0, by_epoch: bool = False, *,
           timeline: Timeline) -> paddle_lr.LRScheduler:
    """Polynomial decay (linear for ``power: 1``) to ``end_lr`` over the epochs after warmup."""
    base = _rate(learning_rate, timeline, "learning_rate")
    end_lr = _rate(end_lr, timeline, "end_lr")
    _positive(power, timeline, "power")
    warmup_epoch = _warmup_epochs(warmup_epoch, timeline)
    decay_steps = timeline.steps(timeline.epochs - warmup_epoch, by_epoch)
    schedule = (paddle_lr.PolynomialDecay(base, decay_steps=decay_steps, end_lr=end_lr, power=power,
                                          cycle=bool(cycle))
                if decay_steps > 0 else ConstantLR(base))
    return _finish(schedule, base, warmup_epoch, warmup_start_lr, by_epoch, timeline)


@LR_SCHEDULERS.register
def Step(learning_rate: float, step_size: float, gamma: float = 0.1, warmup_epoch: float = 0,
         warmup_start_lr: float = 0.0, by_epoch: bool = False, *,
         timeline: Timeline) -> paddle_lr.LRScheduler:
    """Multiply the rate by ``gamma`` every ``step_size`` epochs."""
    base = _rate(learning_rate, timeline, "learning_rate")
    _positive(step_size, timeline, "step_size")
    _decay_factor(gamma, timeline)
    step_steps = max(1, timeline.steps(step_size, by_epoch))
    schedule = paddle_lr.StepDecay(base, step_size=step_steps, gamma=gamma)
    return _finish(schedule, base, warmup_epoch, warmup_start_lr, by_epoch, timeline)


@LR_SCHEDULERS.register
def MultiStepDecay(learning_rate: float, milestones: Sequence[float], gamma: float = 0.1,
                   warmup_epoch: float = 0, warmup_start_lr: float = 0.0, by_epoch: bool = False, *,
                   timeline: Timeline) -> paddle_lr.LRScheduler:
    """Multiply the rate by ``gamma`` at each epoch in ``milestones``."""
    base = _rate(learning_rate, timeline, "learning_rate")
    _increasing(milestones, timeline, "milestones")
    _decay_factor(gamma, timeline)
    steps = [timeline.steps(m, by_epoch) for m in milestones]
    schedule = paddle_lr.MultiStepDecay(base, milestones=steps, gamma=gamma)
    return _finish(schedule, base, warmup_epoch, warmup_start_lr, by_epoch, timeline)


@LR_SCHEDULERS.register
def Piecewise(decay_epochs: Optional[Sequence[float]] = None, values: Optional[Sequence[float]] = None,
              learning_rate: Optional[float] = None, warmup_epoch: float = 0,
              warmup_start_lr: float = 0.0, by_epoch: bool = False, *,
              timeline: Timeline) -> paddle_lr.LRScheduler:
    """``values[i]`` until ``decay_epochs[i]``, then ``values[-1]``.

    ``values`` as long as ``decay_epochs`` is accepted with Paddle's meaning (PaddleClas's):
    ``values[-1]`` applies from ``decay_epochs[-2]`` on, the last decay epoch has no effect.

    With ``learning_rate`` (PaddleClas's rule, which then ignores ``decay_epochs`` / ``values``):
    divide it by 10 every 30 epochs (``decay_epochs`` 30, 60, ...; one constant value under 30 epochs).
    """
    if learning_rate is not None:
        decay_epochs, values = _paddleclas_piecewise(float(learning_rate), timeline.epochs)
        logger.info("%s: learning_rate %s set, so decay_epochs %s and values %s (divide by 10 every 30 epochs, "
                    "as PaddleClas does)", timeline.key, learning_rate, decay_epochs, values)
    elif decay_epochs is None or values is None:
        raise ConfigError(timeline.key, "Piecewise needs decay_epochs and values (or a learning_rate)",
                          "e.g. {name: Piecewise, decay_epochs: [30, 60], values: [0.1, 0.01, 0.001]}")
    _increasing(decay_epochs, timeline, "decay_epochs")
    if len(values) == len(decay_epochs):
        # Paddle's PiecewiseDecay (PaddleClas's) keeps values[-1] once past the second-to-last
        # boundary, so the last decay epoch changes nothing: drop it, as the result is the same
        logger.warning("%s: %d values for %d decay_epochs: the last decay epoch (%s) has no effect (values[-1] "
                       "applies from decay epoch %s on, as in PaddleClas)", timeline.key, len(values),
                       len(decay_epochs), decay_epochs[-1], decay_epochs[-2] if len(decay_epochs) > 1 else 0)
        decay_epochs = decay_epochs[:-1]
        if not decay_epochs:
            decay_epochs, values = [timeline.epochs], [values[0], values[0]]
    if len(values) != len(decay_epochs) + 1:
        raise ConfigError(f"{timeline.key}.values",
                          f"needs one more entry than decay_epochs: got {len(values)} values for "
                          f"{len(decay_epochs)} decay_epochs",
                          "values[i] applies before decay_epochs[i], values[-1] after the last one")
    rates = [_rate(v, timeline, f"values.{i}") for i, v in enumerate(values)]
    boundaries = [timeline.steps(e, by_epoch) for e in decay_epochs]
    schedule = paddle_lr.PiecewiseDecay(boundaries=boundaries, values=rates)
    return _finish(schedule, rates[0], warmup_epoch, warmup_start_lr, by_epoch, timeline)


@LR_SCHEDULERS.register
def OneCycleLR(max_learning_rate: float, divide_factor: float = 25.0, end_learning_rate: float = 1e-10,
               phase_pct: float = 0.3, anneal_strategy: str = "cos", three_phase: bool = False,
               warmup_epoch: float = 0, warmup_start_lr: float = 0.0, by_epoch: bool = False, *,
               timeline: Timeline) -> paddle_lr.LRScheduler:
    """Paddle's one-cycle schedule: up from ``max_learning_rate / divide_factor`` to the maximum over
    ``phase_pct`` of the run, then down to ``end_learning_rate`` (``anneal_strategy``: cos or linear;
    ``three_phase``: back to the start rate before the final decay). As in PaddleClas, the cycle spans
    every step of the run (warmup included) and the warmup ends at ``max_learning_rate``."""
    top = _rate(max_learning_rate, timeline, "max_learning_rate")
    end = _rate(end_learning_rate, timeline, "end_learning_rate")
    _positive(divide_factor, timeline, "divide_factor")
    if not 0 < phase_pct < 1:
        raise ConfigError(f"{timeline.key}.phase_pct", f"must be in (0, 1), got {phase_pct}")
    if anneal_strategy not in ("cos", "linear"):
        raise ConfigError(f"{timeline.key}.anneal_strategy", f"expected cos or linear, got {anneal_strategy!r}")
    total = max(2, timeline.steps(timeline.epochs, by_epoch))   # Paddle needs two steps to make a cycle
    schedule = paddle_lr.OneCycleLR(top, total_steps=total, divide_factor=divide_factor, end_learning_rate=end,
                                    phase_pct=phase_pct, anneal_strategy=anneal_strategy,
                                    three_phase=bool(three_phase))
    return _finish(schedule, top, warmup_epoch, warmup_start_lr, by_epoch, timeline)


@LR_SCHEDULERS.register
def CosineFixmatch(learning_rate: float, num_warmup_steps: int = 0, num_cycles: float = 7 / 16,
                   by_epoch: bool = False, *, timeline: Timeline) -> paddle_lr.LRScheduler:
    """FixMatch's schedule: linear from 0 over ``num_warmup_steps`` steps, then
    ``learning_rate * max(0, cos(pi * num_cycles * progress))``, progress going 0 -> 1 over the
    remaining steps of the run (``num_cycles`` 7/16 ends at cos(7 pi / 16) ~ 0.2 of the rate)."""
    base = _rate(learning_rate, timeline, "learning_rate")
    warmup = int(num_warmup_steps)
    if warmup < 0:
        raise ConfigError(f"{timeline.key}.num_warmup_steps", f"must be >= 0, got {num_warmup_steps}")
    total = timeline.steps(timeline.epochs, by_epoch)

    def factor(step: int) -> float:
        if step < warmup:
            return step / max(1, warmup)
        progress = (step - warmup) / max(1, total - warmup)
        return max(0.0, math.cos(math.pi * num_cycles * progress))

    schedule = paddle_lr.LambdaDecay(base, lr_lambda=factor)
    schedule.by_epoch = bool(by_epoch)
    return schedule


@LR_SCHEDULERS.register
def ReduceOnPlateau(learning_rate: float, mode: str = "min", factor: float = 0.1, patience: int = 10,
                    threshold: float = 1e-4, threshold_mode: str = "rel", cooldown: int = 0, min_lr: float = 0.0,
                    epsilon: float = 1e-8, warmup_epoch: float = 0, warmup_start_lr: float = 0.0,
                    by_epoch: bool = False, *, timeline: Timeline) -> paddle_lr.LRScheduler:
    """Multiply the rate by ``factor`` when the evaluation metric stops improving (Paddle's
    ``ReduceOnPlateau``). As in PaddleClas it steps once per evaluation, on the metric that picks the
    best model (``mode: max`` for accuracy-like metrics); so it needs ``by_epoch: true`` and
    evaluation during training, and takes no warmup (PaddleClas would then never step it)."""
    base = _rate(learning_rate, timeline, "learning_rate")
    if not by_epoch:
        raise ConfigError(f"{timeline.key}.by_epoch", "ReduceOnPlateau steps on the evaluation metric, once per "
                                                       "evaluation", "set by_epoch: true")
    if warmup_epoch:
        raise ConfigError(f"{timeline.key}.warmup_epoch", "ReduceOnPlateau takes no warmup (PaddleClas never "
                                                           "steps a warmed-up ReduceOnPlateau)", "remove warmup_epoch")
    if mode not in ("min", "max") or threshold_mode not in ("rel", "abs"):
        raise ConfigError(f"{timeline.key}.mode", f"expected mode min|max and threshold_mode rel|abs, got "
                                                  f"{mode!r}, {threshold_mode!r}")
    _decay_factor(factor, timeline, "factor")
    schedule = paddle_lr.ReduceOnPlateau(base, mode=mode, factor=factor, patience=int(patience),
                                         threshold=threshold, threshold_mode=threshold_mode,
                                         cooldown=int(cooldown), min_lr=_rate(min_lr, timeline, "min_lr"),
                                         epsilon=epsilon)
    schedule.by_epoch = True
    schedule.steps_on_metric = True   # the engine steps it with the evaluation metric
    return schedule


def _paddleclas_piecewise(learning_rate: float, epochs: int):
    """PaddleClas's Piecewise from ``learning_rate`` alone: x0.1 at every 30th epoch."""
    boundaries = list(range(0, epochs, 30))[1:]
    if not boundaries:  # paddle's PiecewiseDecay needs a boundary: one past the end
        return [epochs], [learning_rate, learning_rate]
    return boundaries, [learning_rate * 0.1 ** i for i in range(len(boundaries) + 1)]


# --------------------------------------------------------------------------- builder

def build_lr_scheduler(lr_cfg: Any, epochs: int, step_each_epoch: int,
                       key: str = "Optimizer.lr") -> paddle_lr.LRScheduler:
    """Build the schedule of ``Optimizer.lr``.

    Accepts ``{name: Cosine, learning_rate: 0.1, ...}``, the one-key form, a mapping without
    ``name`` (a constant ``learning_rate``, as PaddleClas reads it) or a bare number.
    """
    timeline = _timeline(epochs, step_each_epoch, key)
    if lr_cfg is None:
        raise ConfigError(key, "no learning-rate section", "add e.g. 'lr: {name: Cosine, learning_rate: 0.1}'")
    if isinstance(lr_cfg, (int, float, str)) and not isinstance(lr_cfg, bool):
        lr_cfg = {"name": "Constant", "learning_rate": lr_cfg}
    elif isinstance(lr_cfg, dict) and "name" not in lr_cfg and "learning_rate" in lr_cfg:
        lr_cfg = {"name": "Constant", **lr_cfg}
    name, kwargs = split_component(lr_cfg, key)
    _drop_timeline_keys(kwargs, key)
    last_epoch = kwargs.pop("last_epoch", -1)
    if kwargs.pop("verbose", False):   # Paddle's scheduler would print the rate at every step
        logger.warning("%s.verbose: ignored; the learning rate is in train.log at every logged step", key)
    schedule = LR_SCHEDULERS.build({name: _numbers(kwargs, key)}, key, timeline=timeline)
    _start_after(schedule, last_epoch, key)
    return schedule


def _drop_timeline_keys(kwargs: Dict[str, Any], key: str) -> None:
    """``epochs`` / ``step_each_epoch`` written in ``lr`` are ignored, as PaddleClas ignores them (its
    builder overwrites both with ``Global.epochs`` and the train loader's length); some of its configs
    carry ``step_each_epoch: 1``."""
    for name in ("epochs", "step_each_epoch"):
        if name in kwargs:
            logger.info("%s.%s: %r ignored; the schedule uses %s (as PaddleClas does)", key, name, kwargs.pop(name),
                        "Global.epochs" if name == "epochs" else "the train loader's batches per epoch")


def _start_after(schedule: paddle_lr.LRScheduler, last_epoch: Any, key: str) -> None:
    """PaddleClas's ``last_epoch``: the schedule is built as if ``last_epoch`` steps had been taken,
    so it starts at step ``last_epoch + 1`` (Paddle's meaning; the default -1 starts at step 0)."""
    if isinstance(last_epoch, bool) or not isinstance(last_epoch, int) or last_epoch < -1:
        raise ConfigError(f"{key}.last_epoch", f"expected an integer >= -1, got {last_epoch!r}")
    if last_epoch == -1:
        return
    if getattr(schedule, "steps_on_metric", False):
        raise ConfigError(f"{key}.last_epoch", "ReduceOnPlateau has no step count to start from",
                          "remove last_epoch")
    schedule.step(last_epoch + 1)


def _timeline(epochs: int, step_each_epoch: int, key: str) -> Timeline:
    if not isinstance(epochs, int) or epochs < 1:
        raise ConfigError("Global.epochs", f"must be a positive integer, got {epochs!r}")
    if not isinstance(step_each_epoch, int) or step_each_epoch < 1:
        raise ConfigError(key, f"the train loader yields {step_each_epoch!r} batches per epoch",
                          "the dataset may be smaller than batch_size with drop_last: True")
    return Timeline(epochs, step_each_epoch, key)


def _numbers(kwargs: Dict[str, Any], key: str) -> Dict[str, Any]:
    """Turn YAML strings such as '1e-4' or '0.1/4' into numbers; every lr key is numeric."""
    out: Dict[str, Any] = {}
    for name, value in kwargs.items():
        if name in ("by_epoch", "cycle", "three_phase"):
            if not isinstance(value, bool):
                raise ConfigError(f"{key}.{name}", f"expected true or false, got {value!r}")
            out[name] = value
        elif name in ("mode", "threshold_mode", "anneal_strategy"):
            out[name] = value
        elif value is None:
            out[name] = None
        elif isinstance(value, (list, tuple)):
            out[name] = [to_number(v, f"{key}.{name}.{i}") for i, v in enumerate(value)]
        else:
            out[name] = to_number(value, f"{key}.{name}")
    return out


# --------------------------------------------------------------------------- shared steps

def _finish(schedule: paddle_lr.LRScheduler, base: float, warmup_epoch: float, warmup_start_lr: float,
            by_epoch: bool, timeline: Timeline) -> paddle_lr.LRScheduler:
    """Add the optional linear warmup and record ``by_epoch`` for the engine."""
    warmup_steps = timeline.steps(_warmup_epochs(warmup_epoch, timeline), by_epoch)
    if warmup_steps > 0:
        start = _rate(warmup_start_lr, timeline, "warmup_start_lr")
        if start >= base:
            raise ConfigError(f"{timeline.key}.warmup_start_lr",
                              f"warmup must rise: warmup_start_lr {start} is not below the base rate {base}",
                              "lower warmup_start_lr or set warmup_epoch: 0")
        schedule = paddle_lr.LinearWarmup(schedule, warmup_steps=warmup_steps, start_lr=start, end_lr=base)
    schedule.by_epoch = bool(by_epoch)
    return schedule


def _warmup_epochs(warmup_epoch: float, timeline: Timeline) -> float:
    if warmup_epoch < 0:
        raise ConfigError(f"{timeline.key}.warmup_epoch", f"must be >= 0, got {warmup_epoch}")
    if warmup_epoch > timeline.epochs:
        logger.warning("%s.warmup_epoch (%s) exceeds Global.epochs (%s); warming up for %s epochs",
                       timeline.key, warmup_epoch, timeline.epochs, timeline.epochs)
        return timeline.epochs
    return warmup_epoch


def _rate(value: float, timeline: Timeline, name: str) -> float:
    if value < 0 or math.isnan(value):
        raise ConfigError(f"{timeline.key}.{name}", f"a learning rate must be >= 0, got {value}")
    return float(value)


def _positive(value: float, timeline: Timeline, name: str) -> None:
    if not value > 0:
        raise ConfigError(f"{timeline.key}.{name}", f"must be > 0, got {value}")


def _decay_factor(gamma: float, timeline: Timeline, name: str = "gamma") -> None:
    if not 0 < gamma < 1:
        raise ConfigError(f"{timeline.key}.{name}", f"must be in (0, 1), got {gamma}",
                          "the rate is multiplied by gamma at each decay")


def _increasing(epochs: List[float], timeline: Timeline, name: str) -> None:
    if not isinstance(epochs, list) or not epochs or any(b <= a for a, b in zip(epochs, epochs[1:])) or epochs[0] < 0:
        raise ConfigError(f"{timeline.key}.{name}",
                          f"expected a non-empty, strictly increasing list of epochs >= 0, got {epochs}")
