"""Features that hook into the training loop instead of sprawling inside it.

Each callback sees the engine and may act at: train begin/end, epoch begin/end, right after
``backward()``, after each step (device values only: no host sync) and on log steps
(``on_log``: the window's averaged values, already read from the device).
"""
from __future__ import annotations

import logging
import math
import os
from typing import Any, Dict, List, Optional

import paddle

from ..errors import TrainingError
from .logger import format_eta

logger = logging.getLogger("ppfreeze")


class Callback:
    """Base class: every hook is optional."""

    def on_train_begin(self, engine) -> None: ...
    def on_epoch_begin(self, engine, epoch: int) -> None: ...
    def after_backward(self, engine) -> None: ...
    def on_step_end(self, engine, step: Dict[str, Any]) -> None: ...
    def on_log(self, engine, step: Dict[str, Any], values: Dict[str, float]) -> None: ...
    def on_epoch_end(self, engine, epoch: int, eval_metrics: Optional[Dict[str, float]]) -> None: ...
    def on_train_end(self, engine) -> None: ...


class CallbackList(Callback):
    """Call a hook on every callback, in order."""

    def __init__(self, callbacks: List[Callback]):
        self.callbacks = callbacks

    def _each(self, hook: str, *args) -> None:
        for cb in self.callbacks:
            getattr(cb, hook)(*args)

    def on_train_begin(self, engine) -> None: self._each("on_train_begin", engine)
    def on_epoch_begin(self, engine, epoch: int) -> None: self._each("on_epoch_begin", engine, epoch)
    def after_backward(self, engine) -> None: self._each("after_backward", engine)
    def on_step_end(self, engine, step) -> None: self._each("on_step_end", engine, step)
    def on_log(self, engine, step, values) -> None: self._each("on_log", engine, step, values)
    def on_epoch_end(self, engine, epoch: int, eval_metrics) -> None: self._each("on_epoch_end", engine, epoch, eval_metrics)
    def on_train_end(self, engine) -> None: self._each("on_train_end", engine)


class RankConsistencyCallback(Callback):
    """Under data parallel, every rank must hold the same weights after each epoch.

    A parameter left out of DataParallel's gradient reduction (e.g. one that was frozen when the
    wrapper was built and unfrozen later, see docs/design.md) makes the ranks drift apart silently; this
    compares per-parameter checksums across ranks and stops with the parameter's name. BN
    running statistics are left out: without SyncBN each rank keeps its own, as in PaddleClas.
    """

    def on_epoch_end(self, engine, epoch: int, eval_metrics) -> None:
        names, sums = [], []
        for name, p in engine.unwrapped_model.named_parameters():
            if not p.trainable:  # BN running statistics: per-rank by design (no SyncBN)
                continue
            names.append(name)
            sums.append(p.astype("float64").abs().sum())
        local = paddle.stack(sums)
        low, high = local.clone(), local.clone()
        paddle.distributed.all_reduce(low, op=paddle.distributed.ReduceOp.MIN)
        paddle.distributed.all_reduce(high, op=paddle.distributed.ReduceOp.MAX)
        differ = (high - low).numpy() != 0
        if differ.any():
            bad = [n for n, d in zip(names, differ) if d]
            raise RanksDiverged(f"after epoch {epoch} the ranks hold different values for {len(bad)} parameters, "
                                f"e.g. {', '.join(bad[:3])}: they are not being synchronised")


class RanksDiverged(TrainingError):
    """Data-parallel ranks no longer hold the same weights."""


class EMACallback(Callback):
    """Updates the weight EMA each step; evaluates it after each eval and keeps ``best_model_ema``."""

    def __init__(self, ema):
        self.ema = ema

    def on_step_end(self, engine, step: Dict[str, Any]) -> None:
        if step.get("update", True):  # once per optimizer step (Global.update_freq accumulates)
            self.ema.update(engine.unwrapped_model)

    def on_epoch_end(self, engine, epoch: int, eval_metrics) -> None:
        if not eval_metrics:
            return
        model = engine.unwrapped_model
        with self.ema.applied(model):
            metrics = engine.eval(epoch)
            value = metrics.get(engine.metric_key, -math.inf)
            logger.info("[Eval][Epoch %d][EMA]%s", epoch, ", ".join(f"{k}: {v:.5f}" for k, v in metrics.items()))
            if value > engine.best_metric_ema:
                engine.best_metric_ema = value
                if engine.is_main:  # the EMA weights are loaded right now: save them as a plain model,
                    # committed with this epoch's other checkpoints (CheckpointCallback)
                    engine.save("best_model_ema", epoch, commit=False, ema_weights=True)
                    logger.info("Saved best EMA model (%s %.5f)", engine.metric_key, value)


class LogCallback(Callback):
    """PaddleClas-style progress lines with ips and ETA on each log step (``Global.print_batch_step``)."""

    def __init__(self, epochs: int):
        self.epochs = epochs

    def on_log(self, engine, step: Dict[str, Any], values: Dict[str, float]) -> None:
        it, n_iter = step["iter"], step["iters_per_epoch"]
        done = (step["epoch"] - 1) * n_iter + it + 1
        eta = values["batch_cost"] * max(self.epochs * n_iter - done, 0)
        shown = ", ".join(f"{k}: {v:.5f}" for k, v in values.items() if k not in ("batch_cost", "reader_cost", "ips"))
        logger.info("[Train][Epoch %d/%d][Iter: %d/%d]lr(%s): %.8f, %s, batch_cost: %.5fs, reader_cost: %.5fs, "
                    "ips: %.5f samples/s, eta: %s", step["epoch"], self.epochs, it, n_iter,
                    type(engine.lr_scheduler).__name__, engine.lr_scheduler.last_lr, shown, values["batch_cost"],
                    values["reader_cost"], values["ips"], format_eta(eta))

    def on_epoch_end(self, engine, epoch: int, eval_metrics) -> None:
        if eval_metrics:
            text = ", ".join(f"{k}: {v:.5f}" for k, v in eval_metrics.items())
            logger.info("[Eval][Epoch %d][Avg]%s", epoch, text)
            logger.info("[Eval][Epoch %d][best metric: %.5f (epoch %d)]", epoch, engine.best_metric, engine.best_epoch)


class VisualDLCallback(Callback):
    """Scalars (train losses/metrics/lr, eval metrics) and the freeze summary as text."""

    def __init__(self, logdir: str):
        from visualdl import LogWriter
        os.makedirs(logdir, exist_ok=True)
        self.writer = LogWriter(logdir=logdir)

    def on_log(self, engine, step: Dict[str, Any], values: Dict[str, float]) -> None:
        for k, v in values.items():
            if math.isfinite(v):
                self.writer.add_scalar(tag=f"train/{k}", value=v, step=engine.global_step)
        self.writer.add_scalar(tag="train/lr", value=engine.lr_scheduler.last_lr, step=engine.global_step)

    def on_epoch_end(self, engine, epoch: int, eval_metrics) -> None:
        for k, v in (eval_metrics or {}).items():
            self.writer.add_scalar(tag=f"eval/{k}", value=v, step=epoch)
        self.writer.flush()

    def on_train_end(self, engine) -> None:
        summary = engine.freezer.audit_summary
        if summary:
            self.writer.add_text(tag="freeze/audit", text_string=summary, step=engine.global_step)
        self.writer.close()


class CheckpointCallback(Callback):
    """``latest`` every epoch, ``epoch_N`` every ``save_interval``, ``best_model`` on improvement.

    They hold the same state at the end of an epoch, so it is written once and every name of
    the epoch (with a staged ``best_model_ema``) is committed in one atomic step.
    """

    def __init__(self, save_interval: int):
        self.save_interval = save_interval

    def on_epoch_end(self, engine, epoch: int, eval_metrics) -> None:
        if not engine.is_main:
            return
        names = ["latest"]
        if epoch % self.save_interval == 0 or epoch == engine.epochs:
            names.append(f"epoch_{epoch}")
        best = bool(eval_metrics) and engine.best_epoch == epoch
        if best:
            names.append("best_model")
        engine.save(names, epoch)
        if best:
            logger.info("Saved best model (%s %.5f) to %s", engine.metric_key, engine.best_metric,
                        os.path.join(engine.output_dir, "best_model"))
