"""The Engine: builds everything from one config, then trains, evaluates or predicts.

The train step (``Engine.train_step``) is deliberately short; freezing, logging,
VisualDL, checkpoints and the freeze audit hook in through callbacks.
"""
from __future__ import annotations

import logging
import math
import os
import time
from typing import Any, Dict, List, Optional, Tuple

import paddle

from ..arch import build_model
from ..arch.pretrained import load_pretrained
from ..config.errors import ConfigError
from ..config.loader import format_config, save_config
from ..freeze import FreezeAudit, build_freeze_plan, format_report
from ..freeze.cache import FeatureCache
from ..loss import build_loss
from ..metric import build_metrics, drop_accuracy_for_mixed_labels
from ..optim import build_optimizer
from ..utils.io import atomic_write_json
from . import checkpoint as ckpt
from .amp import Amp
from .callbacks import (CallbackList, CheckpointCallback, EMACallback, FreezeCallback, LogCallback,
                        RankConsistencyCallback, VisualDLCallback, values_of)
from .ema import ModelEMA
from .evaluation import evaluate
from .logger import setup_logger
from .runtime import is_main_process, seed_everything, setup_device, world_size

logger = logging.getLogger("ppfreeze")


class TrainingDiverged(RuntimeError):
    """The loss became NaN/Inf; the last good checkpoint is kept."""


class Engine:
    """Build model, Freeze plan, data, loss, metrics and optimizer from ``config``.

    Args:
        config: the merged, validated config dict.
        mode: ``train`` | ``eval`` | ``infer`` | ``export`` (what gets built).
    """

    def __init__(self, config: Dict[str, Any], mode: str = "train"):
        self.config = config
        self.mode = mode
        g = config["Global"]
        self.glob = g
        self.epochs = g.get("epochs", 1)
        self.output_dir = os.path.join(g.get("output_dir", "./output"), config["Arch"]["name"])
        self.is_main = is_main_process()
        setup_logger(os.path.join(self.output_dir, f"{mode}.log"), rank=0 if self.is_main else 1)
        self.device = setup_device(g.get("device", "auto"))
        self.seed = g.get("seed") if g.get("seed") is not None else 0
        seed_everything(self.seed)
        self.model = build_model(config["Arch"], class_num=g.get("class_num"))
        self.freeze = build_freeze_plan(config.get("Freeze"), self.model)
        self.freeze_epoch = 0
        self.global_step = 0
        self.best_metric, self.best_epoch = -math.inf, 0
        self.best_metric_ema = -math.inf
        self.ema: Optional[ModelEMA] = None
        self.feature_cache: Optional[FeatureCache] = None
        self.metric_key: Optional[str] = None
        self.optimizer = self.lr_scheduler = None
        self.freeze_summary: Optional[str] = None
        self.pretrained_report = None
        if g.get("pretrained_model"):
            self.load_pretrained(g["pretrained_model"])
        if mode == "train":  # frozen tensors must come from pretrained weights (or be allowed random)
            self.freeze.check_pretrained(self._loaded_keys())

    # ----------------------------------------------------------------- building blocks
    def load_pretrained(self, path: str) -> None:
        """Load weights for fine-tuning / eval; report what did not load; guard frozen params."""
        report = load_pretrained(self.model, path)
        self.pretrained_report = report
        logger.info("Pretrained weights %s: %s", path, report.summary())

    def _loaded_keys(self) -> set:
        """State-dict keys that came from a file: Global.pretrained_model and Arch(.Backbone).pretrained."""
        keys = set(getattr(self.model, "pretrained_keys", ()))
        if self.pretrained_report is not None:
            keys |= set(self.pretrained_report.loaded)
        return keys

    def apply_freeze(self, epoch: int, carry_optimizer_state: bool = False) -> None:
        """Put the model in the freeze state of ``epoch`` and (re)build the optimizer for it.

        A changed frozen set needs a new optimizer (multi-tensor kernels break otherwise,
        DESIGN §4); accumulators of parameters trainable before and after are carried over.
        """
        old = (self.optimizer, self.lr_scheduler)
        carried = ckpt.optimizer_state(old[0], self.model, old[1]) if carry_optimizer_state and old[0] else None
        self.freeze.apply(self.model, epoch)
        self.freeze_epoch = epoch
        named = self.freeze.optimizer_parameters(self.model)
        if not named:
            raise ConfigError("Freeze", "every parameter is frozen: nothing would be trained",
                              "leave at least the head trainable (e.g. Freeze.until: stage4)")
        self.optimizer, self.lr_scheduler = build_optimizer(self.config["Optimizer"], named, self.epochs,
                                                            self.iters_per_epoch)
        if carried is not None:
            ckpt.load_optimizer_state(self.optimizer, self.model, carried, self.lr_scheduler, strict=False)
        # recorded prefix activations belong to one freeze state; worth it only if it lasts 2+ epochs
        self.feature_cache = (FeatureCache.for_state(self._bare_model(), self.freeze, self.train_loader)
                              if self._epochs_in_state(epoch) >= 2 else None)

    def _epochs_in_state(self, epoch: int) -> int:
        """How many epochs from ``epoch`` on train in the freeze state of ``epoch``."""
        n = 1
        while epoch + n <= self.epochs and not self.freeze.milestone_at(epoch + n):
            n += 1
        return n

    def _build_train_parts(self) -> None:
        from ..data import batch_ops_of, build_dataloader
        cfg = self.config
        if "Optimizer" not in cfg:
            raise ConfigError("Optimizer", "missing section", "training needs an Optimizer section")
        if "Loss" not in cfg or not cfg["Loss"].get("Train"):
            raise ConfigError("Loss.Train", "missing", "training needs e.g. Loss: {Train: [{CELoss: {weight: 1.0}}]}")
        self.train_loader = build_dataloader(cfg["DataLoader"], "Train", seed=self.seed,
                                             class_num=getattr(self._bare_model(), "class_num", None))
        self._check_labels(self.train_loader.dataset)
        self.iters_per_epoch = len(self.train_loader)
        max_steps = self.glob.get("max_train_steps")
        if max_steps:
            self.iters_per_epoch = min(self.iters_per_epoch, max_steps)
        self.train_loss = build_loss(cfg["Loss"]["Train"], "Loss.Train")
        train_metric_cfgs = (cfg.get("Metric") or {}).get("Train")
        if batch_ops_of(self.train_loader):  # mixed labels: no accuracy in training (as PaddleClas)
            train_metric_cfgs = drop_accuracy_for_mixed_labels(train_metric_cfgs, "Metric.Train")
        self.train_metrics = build_metrics(train_metric_cfgs, "Metric.Train")
        self.amp = Amp(cfg.get("AMP"), self.device)
        self.ema = ModelEMA.from_config(cfg.get("EMA"), self._bare_model())

    def _check_labels(self, dataset: Any) -> None:
        """Labels outside [0, class_num) crash deep inside one_hot; say it in config terms."""
        class_num = getattr(self._bare_model(), "class_num", None)
        labels = getattr(dataset, "labels", None)
        if class_num and labels is not None and len(labels) and max(labels) >= class_num:
            raise ConfigError("Arch.class_num", f"is {class_num} but DataLoader.Train has label {max(labels)}",
                              f"set Arch.class_num to at least {max(labels) + 1}")

    # ----------------------------------------------------------------- training
    def forward(self, images: paddle.Tensor, labels: paddle.Tensor, indices: Optional[paddle.Tensor] = None) -> Any:
        """Model forward; retrieval models with margin heads also take the labels.

        ``indices`` (dataset positions of the batch) let the Freeze feature cache skip the frozen prefix.
        """
        args = (images, labels) if getattr(self._bare_model(), "needs_label", False) else (images,)
        if self.feature_cache is not None:
            return self.feature_cache.forward(lambda: self.model(*args), indices)
        return self.model(*args)

    def train_step(self, images: paddle.Tensor, labels: paddle.Tensor,
                   indices: Optional[paddle.Tensor] = None) -> Tuple[Any, Dict[str, paddle.Tensor]]:
        """One optimisation step; returns the model output and the loss dict."""
        with self.amp.autocast():
            out = self.forward(images, labels, indices)
            losses = self.train_loss(out, labels)
        self._check_finite(losses["loss"])
        self.amp.backward(losses["loss"])
        self.callbacks.after_backward(self)        # e.g. clear frozen grads to None
        self.amp.step(self.optimizer)
        self.optimizer.clear_grad(set_to_zero=False)
        if not getattr(self.lr_scheduler, "by_epoch", False):
            self.lr_scheduler.step()
        return out, losses

    def train(self) -> Dict[str, Any]:
        """Train for ``Global.epochs`` epochs (resuming from ``Global.checkpoints`` if set)."""
        from ..data import set_loader_epoch
        self._build_train_parts()
        start_epoch = self._resume_or_start()
        self._wrap_distributed()
        self._write_run_files()
        self.callbacks = self._build_callbacks()
        self.callbacks.on_train_begin(self)
        for epoch in range(start_epoch, self.epochs + 1):
            self.callbacks.on_epoch_begin(self, epoch)
            set_loader_epoch(self.train_loader, epoch)
            self.model.train()
            self._train_one_epoch(epoch)
            if getattr(self.lr_scheduler, "by_epoch", False):
                self.lr_scheduler.step()
            metrics = self._maybe_eval(epoch)
            self.callbacks.on_epoch_end(self, epoch, metrics)
        self.callbacks.on_train_end(self)
        self._finish_report()
        return {"best_metric": self.best_metric, "best_epoch": self.best_epoch, "metric_key": self.metric_key}

    def _train_one_epoch(self, epoch: int) -> None:
        tic = time.time()
        for it, batch in enumerate(self.train_loader):
            if it >= self.iters_per_epoch:
                break
            images, labels = batch[0], batch[1]
            indices = batch[-1] if self.train_loader.dataset.return_index else None
            reader_cost = time.time() - tic
            out, losses = self.train_step(images, labels, indices)
            self.global_step += 1
            batch_cost = time.time() - tic
            values = values_of(losses, self.train_metrics(out, labels) if self.train_metrics else {})
            values.update(batch_cost=batch_cost, reader_cost=reader_cost, ips=images.shape[0] / max(batch_cost, 1e-9))
            self.callbacks.on_step_end(self, {"epoch": epoch, "iter": it, "iters_per_epoch": self.iters_per_epoch,
                                              "values": values})
            tic = time.time()

    def _check_finite(self, loss: paddle.Tensor) -> None:
        value = float(loss)
        if not math.isfinite(value):
            raise TrainingDiverged(
                f"loss is {value} at global step {self.global_step + 1}: training stopped. The last good "
                f"checkpoint in {self.output_dir} was kept. Lower Optimizer.lr.learning_rate (or add warmup_epoch), "
                f"check Global.pretrained_model matches Arch, and check the input normalisation.")

    def _maybe_eval(self, epoch: int) -> Optional[Dict[str, float]]:
        g = self.glob
        if not g.get("eval_during_train", False) or epoch % g.get("eval_interval", 1) != 0:
            return None
        if epoch < g.get("start_eval_epoch", 0):
            return None
        metrics = self.eval(epoch)
        self.update_best(epoch, metrics)
        return metrics

    # ----------------------------------------------------------------- eval
    def eval(self, epoch: int = 0) -> Dict[str, float]:
        """Evaluate on ``DataLoader.Eval`` (classification or retrieval, ``Global.eval_mode``)."""
        metrics = evaluate(self, epoch)
        if self.metric_key is None and metrics:
            self.metric_key = next(iter(k for k in metrics if k != "loss"), next(iter(metrics)))
        return metrics

    def update_best(self, epoch: int, metrics: Dict[str, float]) -> bool:
        """Record a new best ``metric_key``; True if this epoch is the best so far."""
        value = metrics.get(self.metric_key)
        if value is None or value <= self.best_metric:
            return False
        self.best_metric, self.best_epoch = value, epoch
        return True

    # ----------------------------------------------------------------- checkpoints
    def save(self, name: str, epoch: int) -> None:
        """Write ``<output_dir>/<name>.pdparams/.pdopt/.pdstates`` atomically."""
        states = {"epoch": epoch, "global_step": self.global_step, "best_metric": self.best_metric,
                  "best_epoch": self.best_epoch, "metric_key": self.metric_key,
                  "rng_state": paddle.get_rng_state(), "freeze": self.freeze.state_dict(),
                  "freeze_epoch": self.freeze_epoch, "best_metric_ema": self.best_metric_ema}
        extra = {".pdema": self.ema.state_dict()} if self.ema is not None else None
        ckpt.save_checkpoint(os.path.join(self.output_dir, name), self._bare_model().state_dict(),
                             ckpt.optimizer_state(self.optimizer, self._bare_model(), self.lr_scheduler), states,
                             extra)

    def _resume_or_start(self) -> int:
        path = self.glob.get("checkpoints")
        if not path:
            self.apply_freeze(1)
            return 1
        data = ckpt.load_checkpoint(path)
        states = data["states"]
        self.model.set_state_dict(data["model"])
        self.freeze.set_state_dict(states["freeze"])
        self.apply_freeze(states["freeze_epoch"])
        if "optimizer" not in data:
            raise ConfigError("Global.checkpoints", f"{path}.pdopt is missing: cannot resume the optimizer",
                              "to fine-tune from weights only, use Global.pretrained_model instead")
        ckpt.load_optimizer_state(self.optimizer, self.model, data["optimizer"], self.lr_scheduler, source=path)
        paddle.set_rng_state(states["rng_state"])
        self._resume_ema(data, path)
        self.global_step = states["global_step"]
        self.best_metric, self.best_epoch = states["best_metric"], states["best_epoch"]
        self.metric_key = states.get("metric_key")
        logger.info("Resumed from %s: epoch %d done, global step %d, best %s %.5f (epoch %d)", path,
                    states["epoch"], self.global_step, self.metric_key, self.best_metric, self.best_epoch)
        return states["epoch"] + 1

    def _resume_ema(self, data: Dict[str, Any], path: str) -> None:
        if self.ema is None:
            return
        if "ema" in data:
            self.ema.set_state_dict(data["ema"])
            self.best_metric_ema = data["states"].get("best_metric_ema", -math.inf)
        else:
            self.ema = ModelEMA(self._bare_model(), self.ema.decay)
            logger.warning("%s has no EMA weights: the EMA restarts from the resumed weights", path)

    # ----------------------------------------------------------------- plumbing
    def _bare_model(self) -> paddle.nn.Layer:
        return self.model._layers if isinstance(self.model, paddle.DataParallel) else self.model

    def _wrap_distributed(self) -> None:
        """DataParallel with every eventually-trainable parameter registered (DESIGN §4)."""
        if world_size() <= 1:
            return
        paddle.distributed.init_parallel_env()
        self.freeze.apply(self.model, self.epochs + 1)   # final (most unfrozen) state for the reducer
        self.model = paddle.DataParallel(self.model, find_unused_parameters=True)
        self.freeze.apply(self._bare_model(), self.freeze_epoch)

    def _build_callbacks(self) -> CallbackList:
        g = self.glob
        callbacks: List[Any] = [FreezeCallback(self.freeze, FreezeAudit(self._bare_model(), self.freeze))]
        if self.ema is not None:  # before checkpoints, so they record this epoch's EMA best
            callbacks.append(EMACallback(self.ema))
        callbacks += [LogCallback(g.get("print_batch_step", 10), self.epochs),
                      CheckpointCallback(g.get("save_interval", 1))]
        if world_size() > 1:
            callbacks.append(RankConsistencyCallback())
        if g.get("use_visualdl") and self.is_main:
            callbacks.append(VisualDLCallback(os.path.join(self.output_dir, "vdl")))
        return CallbackList(callbacks)

    def freeze_report(self) -> Dict[str, Any]:
        """The Freeze plan's report for the current state (dry run friendly)."""
        if self.freeze_epoch == 0:
            self.freeze.apply(self.model, 1)
            self.freeze_epoch = 1
        return self.freeze.report(self._bare_model(), self.glob.get("image_shape", [3, 224, 224]))

    def _write_run_files(self) -> None:
        if not self.is_main:
            return
        logger.info("Config:\n%s", format_config(self.config))
        save_config(self.config, os.path.join(self.output_dir, "config.yaml"))
        self.report = self.freeze_report()
        logger.info("Freeze plan:\n%s", format_report(self.report))
        atomic_write_json(os.path.join(self.output_dir, "freeze_report.json"), self.report)

    def _finish_report(self) -> None:
        if self.is_main and self.freeze_summary:
            self.report["audit"] = self.freeze_summary
            atomic_write_json(os.path.join(self.output_dir, "freeze_report.json"), self.report)
