"""The Engine: builds everything from one config, then trains, evaluates or predicts.

The train step (``Engine.train_step``) is deliberately short. Features hook in through
callbacks (``callbacks.py``): freezing through the one :class:`FreezeController`
(``freezing.py``), plus EMA, logging, VisualDL, checkpoints and rank consistency. The host
reads device values only on log steps (``print_batch_step``) and at epoch ends.
"""
from __future__ import annotations

import logging
import math
import os
import time
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import paddle

from ..arch import build_model, model_attr
from ..arch.pretrained import coverage_shortfall, load_pretrained, parse_coverage
from ..config.errors import ConfigError
from ..config.loader import format_config, save_config
from ..errors import DataIntegrityError, TrainingError
from ..freeze import FreezePlan, build_freeze_plan
from ..loss import build_loss
from ..metric import build_metrics, drop_accuracy_for_mixed_labels
from ..optim import build_optimizer
from . import checkpoint as ckpt
from .amp import Amp
from .callbacks import (CallbackList, CheckpointCallback, EMACallback, LogCallback, RankConsistencyCallback,
                        VisualDLCallback)
from .ema import ModelEMA
from .evaluation import evaluate, prepare_evaluation
from .freezing import FreezeController
from .logger import setup_logger
from .meters import DivergenceGuard, StepMeter
from .run_dir import claim_output_dir
from .runtime import configure_threads, is_main_process, seed_everything, setup_device, world_size

logger = logging.getLogger("ppfreeze")


class TrainingDiverged(TrainingError):
    """The loss became NaN/Inf."""


class CheckpointSaveFailed(TrainingError):
    """A checkpoint could not be written (e.g. a full disk); the committed ones are intact."""


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training; the message says which checkpoint a resume would continue from."""


class Engine:
    """Build model, Freeze plan, data, loss, metrics and optimizer from ``config``.

    Args:
        config: the merged, validated config dict.
        mode: ``train`` | ``eval`` | ``infer`` | ``export`` | ``report`` (what gets built).
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
        configure_threads(g)   # Global.num_threads (library use: paddle came first); logs the count read back
        self.seed = g.get("seed") if g.get("seed") is not None else 0
        seed_everything(self.seed)
        self.model = self.build_arch(config["Arch"])
        self.amp = Amp(config.get("AMP"), self.device)
        self.freezer = FreezeController(build_freeze_plan(config.get("Freeze"), self.model),
                                        g.get("image_shape", [3, 224, 224]))
        self.global_step = 0
        self.best_metric, self.best_epoch = -math.inf, 0
        self.best_metric_ema = -math.inf
        self.metric_key: Optional[str] = None
        self.ema: Optional[ModelEMA] = None
        self.optimizer = self.lr_scheduler = None
        self.train_loader = None
        self.train_loss = None
        self.last_checkpoint: Optional[Tuple[str, int]] = None   # (prefix, epoch) of the newest save
        self.checkpoints = ckpt.CheckpointStore(self.output_dir)
        self.pretrained_report = None
        if g.get("pretrained_model"):
            self.load_pretrained(g["pretrained_model"])
        if mode == "train":  # frozen tensors must come from pretrained weights (or be allowed random)
            self.freezer.check_pretrained(self._loaded_keys())

    # ----------------------------------------------------------------- public helpers
    @property
    def freeze(self) -> FreezePlan:
        """The resolved Freeze plan (owned by :attr:`freezer`)."""
        return self.freezer.plan

    @property
    def unwrapped_model(self) -> paddle.nn.Layer:
        """The model itself, without a ``paddle.DataParallel`` wrapper."""
        return self.model._layers if isinstance(self.model, paddle.DataParallel) else self.model

    def build_arch(self, arch_cfg: Dict[str, Any]) -> paddle.nn.Layer:
        """A model from an ``Arch`` section, built as this run builds its own (``Global.class_num``
        as the fallback, the ``MLDecoder`` section with ``Arch.use_ml_decoder``)."""
        return build_model(arch_cfg, class_num=self.glob.get("class_num"), ml_decoder=self.config.get("MLDecoder"))

    def load_pretrained(self, path: str) -> None:
        """Load weights for fine-tuning / eval and report what did not load.

        Weights covering less than ``Global.min_weights_coverage`` of the model are an error
        when they are what gets evaluated, exported or predicted with, a loud warning in training.
        """
        self.pretrained_report = load_pretrained(self.model, path)
        logger.info("Pretrained weights %s: %s", path, self.pretrained_report.summary())
        problem = coverage_shortfall(self.model, self.pretrained_report,
                                     parse_coverage(self.glob.get("min_weights_coverage")))
        if problem is None:
            return
        if self.mode in ("train", "report"):
            logger.warning("WEIGHTS DO NOT FIT THE MODEL: Global.pretrained_model: %s. Training continues from "
                           "partly random weights; are these weights for another architecture?", problem)
            return
        raise ConfigError("Global.pretrained_model", problem,
                          "use weights trained for this Arch (same model), or lower Global.min_weights_coverage")

    def _loaded_keys(self) -> set:
        """State-dict keys that came from a file: Global.pretrained_model and Arch(.Backbone).pretrained."""
        keys = set(self.model.pretrained_keys)
        if self.pretrained_report is not None:
            keys |= set(self.pretrained_report.loaded)
        return keys

    def rebuild_optimizer(self, named_params: List[Tuple[str, paddle.Tensor]],
                          carried_state: Optional[Dict[str, Any]] = None) -> None:
        """Build the optimizer and LR schedule for exactly ``named_params`` (the model's, chosen by
        the Freeze plan) plus the train loss's own parameters, which always train (as PaddleClas
        optimizes ``[model, train_loss]``; e.g. MGD's generator).

        ``carried_state`` (from :meth:`optimizer_state`) restores the accumulators of parameters
        that were trainable before; newly trainable ones start fresh.
        """
        if not named_params:
            raise ConfigError("Freeze", "every parameter is frozen: nothing would be trained",
                              "leave at least the head trainable (e.g. Freeze.until: stage4)")
        named_params = list(named_params) + self._loss_parameters()
        self.optimizer, self.lr_scheduler = build_optimizer(self.config["Optimizer"], named_params, self.epochs,
                                                            self.iters_per_epoch // self.update_freq)
        if carried_state is not None:
            ckpt.load_optimizer_state(self.optimizer, self.parameter_owners, carried_state, self.lr_scheduler,
                                      strict=False)

    def optimizer_state(self) -> Optional[Dict[str, Any]]:
        """The optimizer's accumulators and LR state keyed by parameter names (None before training)."""
        if self.optimizer is None:
            return None
        return ckpt.optimizer_state(self.optimizer, self.parameter_owners, self.lr_scheduler)

    @property
    def parameter_owners(self) -> List[paddle.nn.Layer]:
        """The layers whose parameters the optimizer may hold: the model, and the train loss when
        it has parameters of its own. Their state-dict keys name optimizer and checkpoint entries."""
        owners = [self.unwrapped_model]
        if self.train_loss is not None and self.train_loss.parameters():
            owners.append(self.train_loss)
        return owners

    def _loss_parameters(self) -> List[Tuple[str, paddle.Tensor]]:
        if self.train_loss is None:
            return []
        return [(name, p) for name, p in self.train_loss.named_parameters() if not p.stop_gradient]

    def weights_state(self) -> Dict[str, Any]:
        """What ``.pdparams`` holds: the model's state dict, and the train loss's (PaddleClas's keys,
        ``loss_func.<i>.<...>``) when the loss has parameters, as PaddleClas saves them."""
        state = self.unwrapped_model.state_dict()
        if len(self.parameter_owners) > 1:
            loss_state = self.train_loss.state_dict()
            clash = sorted(set(state) & set(loss_state))
            if clash:   # a bug (the loss's keys all start with loss_func.), not a user mistake
                raise RuntimeError(f"the train loss's state-dict keys collide with the model's: {clash[:3]}")
            state.update(loss_state)
        return state

    # ----------------------------------------------------------------- building blocks
    def _build_train_parts(self) -> None:
        from ..data import batch_ops_of, build_dataloader
        cfg = self.config
        if "Optimizer" not in cfg:
            raise ConfigError("Optimizer", "missing section", "training needs an Optimizer section")
        if "Loss" not in cfg or not cfg["Loss"].get("Train"):
            raise ConfigError("Loss.Train", "missing", "training needs e.g. Loss: {Train: [{CELoss: {weight: 1.0}}]}")
        self.train_loader = build_dataloader(cfg.get("DataLoader"), "Train", seed=self.seed,
                                             class_num=model_attr(self.model, "class_num"))
        self._check_labels(self.train_loader.dataset)
        self.update_freq, self.iters_per_epoch = self._iterations(len(self.train_loader))
        if self.glob.get("eval_during_train", False):
            prepare_evaluation(self)   # a bad Eval section fails now, not after the first epoch
        self.train_loss = build_loss(cfg["Loss"]["Train"], "Loss.Train")
        loss_parameters = self._loss_parameters() if world_size() > 1 else []
        if loss_parameters:   # DataParallel wraps the model only: they would drift apart across ranks
            raise ConfigError("Loss.Train", f"has trainable parameters ({loss_parameters[0][0]}, ...), "
                              "which data-parallel training does not synchronise across ranks yet",
                              "train this config in one process")
        self.semi_supervised = None
        if self.glob.get("train_mode"):   # fixmatch / fixmatch_ccssl (the schema refuses other trainers)
            from .semi_supervised import build_semi_supervised
            self.semi_supervised = build_semi_supervised(cfg, self.seed)
        train_metric_cfgs = (cfg.get("Metric") or {}).get("Train")
        if batch_ops_of(self.train_loader):  # mixed labels: no accuracy in training (as PaddleClas)
            train_metric_cfgs = drop_accuracy_for_mixed_labels(train_metric_cfgs, "Metric.Train")
        self.train_metrics = build_metrics(train_metric_cfgs, "Metric.Train")
        self.ema = ModelEMA.from_config(cfg.get("EMA"), self.unwrapped_model)
        self.divergence = DivergenceGuard()

    def _iterations(self, loader_len: int) -> Tuple[int, int]:
        """(Global.update_freq, iterations per epoch) as PaddleClas counts them.

        ``iter_per_epoch`` fixes the count (the loader is cycled when it is longer than a pass);
        ``max_train_steps`` (ours) caps it; the count is rounded down to whole accumulation steps.
        """
        g = self.glob
        update_freq = g.get("update_freq") or 1
        if isinstance(update_freq, bool) or not isinstance(update_freq, int) or update_freq < 1:
            raise ConfigError("Global.update_freq", f"expected an integer >= 1, got {update_freq!r}")
        iters = g.get("iter_per_epoch") or loader_len
        if g.get("max_train_steps"):
            iters = min(iters, g["max_train_steps"])
        if iters < update_freq:
            logger.warning("Global.update_freq %d is more than the %d iterations per epoch: set to 1",
                           update_freq, iters)
            update_freq = 1
        return update_freq, iters // update_freq * update_freq

    def _check_labels(self, dataset: Any) -> None:
        """Labels outside [0, class_num) crash deep inside one_hot; say it in config terms."""
        class_num = model_attr(self.model, "class_num")
        labels = getattr(dataset, "labels", None)
        if class_num and labels is not None and len(labels) and max(labels) >= class_num:
            raise ConfigError("Arch.class_num", f"is {class_num} but DataLoader.Train has label {max(labels)}",
                              f"set Arch.class_num to at least {max(labels) + 1}")

    # ----------------------------------------------------------------- training
    def forward(self, images: paddle.Tensor, labels: paddle.Tensor, indices: Optional[paddle.Tensor] = None) -> Any:
        """Model forward; retrieval models with margin heads also take the labels.

        ``indices`` (dataset positions of the batch) let the Freeze feature cache skip the frozen prefix.
        """
        args = (images, labels) if model_attr(self.model, "needs_label", False) else (images,)
        return self.freezer.forward(lambda: self.model(*args), indices, images)

    def train_step(self, images: paddle.Tensor, labels: paddle.Tensor, indices: Optional[paddle.Tensor] = None,
                   update: bool = True, unlabeled: Optional[List[paddle.Tensor]] = None
                   ) -> Tuple[Any, Dict[str, paddle.Tensor]]:
        """Forward and backward; the optimizer steps when ``update`` (``Global.update_freq``
        accumulates gradients over several calls). Returns the output and the loss dict (device tensors).
        ``unlabeled``: the unlabeled batch of a semi-supervised step (``Global.train_mode: fixmatch``)."""
        with self.amp.autocast():
            if unlabeled is None:
                out = self.forward(images, labels, indices)
                losses = self.train_loss(out, labels)
            else:
                out, losses = self.semi_supervised.forward_and_loss(
                    lambda x: self.freezer.forward(lambda: self.model(x), None), self.train_loss, images, labels,
                    unlabeled)
        self.divergence.observe(losses["loss"], self.global_step + 1)   # no host sync
        self.amp.backward(losses["loss"] / self.update_freq if self.update_freq > 1 else losses["loss"])
        if update:
            self.callbacks.after_backward(self)        # e.g. clear frozen grads to None
            self.amp.step(self.optimizer)
            self.optimizer.clear_grad(set_to_zero=False)
            if not getattr(self.lr_scheduler, "by_epoch", False):
                self.lr_scheduler.step()
        return out, losses

    def train(self) -> Dict[str, Any]:
        """Train for ``Global.epochs`` epochs (resuming from ``Global.checkpoints``: a path or ``auto``).

        The output directory is locked for the run and not reused silently (``run_dir.py``).
        """
        with claim_output_dir(self.output_dir, self.glob, self.is_main) as store:
            self.checkpoints = store
            try:
                return self._train()
            except KeyboardInterrupt as e:
                raise TrainingInterrupted(self.checkpoint_kept_message()) from e

    def _train(self) -> Dict[str, Any]:
        self._build_train_parts()
        start_epoch = self._resume_or_start()
        if start_epoch > self.epochs:   # Global.checkpoints: auto found a finished run
            return self._result()
        self._wrap_distributed()
        self._write_run_files()
        self.callbacks = self._build_callbacks()
        self.callbacks.on_train_begin(self)
        for epoch in range(start_epoch, self.epochs + 1):
            self.callbacks.on_epoch_begin(self, epoch)
            self.model.train()
            self._train_one_epoch(epoch)
            on_metric = getattr(self.lr_scheduler, "steps_on_metric", False)   # ReduceOnPlateau
            if getattr(self.lr_scheduler, "by_epoch", False) and not on_metric:
                self.lr_scheduler.step()
            metrics = self._maybe_eval(epoch)
            if on_metric and metrics:   # as PaddleClas: stepped on the metric that picks the best model
                self.lr_scheduler.step(metrics[self.metric_key])
            self.callbacks.on_epoch_end(self, epoch, metrics)
        self.callbacks.on_train_end(self)
        return self._result()

    def _result(self) -> Dict[str, Any]:
        return {"best_metric": self.best_metric, "best_epoch": self.best_epoch, "metric_key": self.metric_key}

    def _train_one_epoch(self, epoch: int) -> None:
        from ..data.loader import epoch_batches
        meter = StepMeter()
        log_every = self.glob.get("print_batch_step", 10)
        tic = time.time()
        unlabeled = self.semi_supervised.batches(epoch, self.iters_per_epoch) if self.semi_supervised else None
        for it, batch in enumerate(epoch_batches(self.train_loader, epoch, self.iters_per_epoch)):
            images, labels = batch[0], batch[1]
            indices = batch[-1] if self.train_loader.dataset.return_index else None
            extra = next(unlabeled) if unlabeled is not None else None
            meter.add_reader_time(time.time() - tic)
            update = (it + 1) % self.update_freq == 0
            out, losses = self.train_step(images, labels, indices, update, unlabeled=extra)
            self.global_step += 1
            meter.add(losses, images.shape[0])
            if self.train_metrics is not None:
                meter.add(self.train_metrics(out, labels))
            step = {"epoch": epoch, "iter": it, "iters_per_epoch": self.iters_per_epoch, "update": update}
            self.callbacks.on_step_end(self, step)
            if it % log_every == 0 or it == self.iters_per_epoch - 1:
                self._stop_if_diverged()                 # one host read per log step
                self.callbacks.on_log(self, step, meter.read())
            tic = time.time()
        self._stop_if_diverged()

    def _stop_if_diverged(self) -> None:
        bad = self.divergence.first_bad()
        if bad is None:
            return
        step, value = bad
        raise TrainingDiverged(
            f"loss is {value} at global step {step}: training stopped. {self.checkpoint_kept_message()}. Lower "
            f"Optimizer.lr.learning_rate (or add warmup_epoch), check Global.pretrained_model matches Arch, "
            f"and check the input normalisation.")

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
    def save(self, names: Union[str, Sequence[str]], epoch: int, commit: bool = True, ema_weights: bool = False) -> None:
        """Write one checkpoint set and point ``names`` (e.g. ``latest``, ``epoch_3``) at it.

        With ``commit`` every name staged since the last commit becomes visible at once
        (``checkpoint_store.py``); ``ema_weights`` marks a set whose model weights are the EMA's
        (``best_model_ema``: not resumable). A failed write (a full disk) leaves the committed
        checkpoints intact and says which one is the newest.
        """
        names = [names] if isinstance(names, str) else list(names)
        states = {"format_version": ckpt.FORMAT_VERSION, "arch": self.config["Arch"].get("name"), "epoch": epoch,
                  "global_step": self.global_step, "best_metric": self.best_metric, "best_epoch": self.best_epoch,
                  "metric_key": self.metric_key, "rng_state": ckpt.rng_state_data(),
                  "freeze": self.freezer.state_dict(), "best_metric_ema": self.best_metric_ema,
                  "weights": "ema" if ema_weights else "model"}
        extra = {".pdema": self.ema.state_dict()} if self.ema is not None else None
        try:
            set_id = ckpt.write_checkpoint(self.checkpoints, epoch, self.weights_state(),
                                           self.optimizer_state(), states, extra)
            self.checkpoints.stage(names, set_id)
            if commit:
                self.checkpoints.commit()
        except OSError as e:
            raise CheckpointSaveFailed(f"could not save checkpoint {', '.join(names)} of epoch {epoch} in "
                                       f"{self.output_dir}: {e}. {self.checkpoint_kept_message()}") from e
        if commit and not ema_weights:
            name = "latest" if "latest" in names else names[0]
            self.last_checkpoint = (self.checkpoints.prefix(name), epoch)

    def checkpoint_kept_message(self) -> str:
        """Which checkpoint a resume would continue from, read from disk (so it is true after any failure)."""
        newest = ckpt.newest_checkpoint(self.output_dir)
        if newest is None:
            return "No checkpoint had been saved yet"
        return f"The newest complete checkpoint on disk is {newest[0]} (epoch {newest[1]}; -o Global.checkpoints=auto " \
               f"resumes from it)"

    def _resume_or_start(self) -> int:
        """The first epoch to train: 1, or the one after the checkpoint ``Global.checkpoints`` names."""
        path = self.glob.get("checkpoints")
        if path == "auto":
            return self._resume_newest()
        if not path:
            self.freezer.enter(self, 1)
            return 1
        data = ckpt.load_checkpoint(path)
        if ckpt.is_paddleclas_states(data["states"]):   # written by PaddleClas's trainer
            from .paddleclas_ckpt import resume
            return resume(self, path, data)
        return self._resume(path, data)

    def _resume_newest(self) -> int:
        for prefix, _ in ckpt.resumable_checkpoints(self.output_dir):
            try:
                data = ckpt.load_checkpoint(prefix)
            except DataIntegrityError as e:
                logger.warning("Global.checkpoints=auto: skipping %s: %s", prefix, e)
                continue
            if data["states"]["epoch"] >= self.epochs:
                logger.info("Global.checkpoints=auto: %s already finished epoch %d of Global.epochs %d: nothing "
                            "left to train (raise Global.epochs to train more)", prefix, data["states"]["epoch"],
                            self.epochs)
                self._restore_progress(data["states"])
                return data["states"]["epoch"] + 1
            return self._resume(prefix, data)
        logger.info("Global.checkpoints=auto: no complete checkpoint in %s: starting a new run", self.output_dir)
        self.freezer.enter(self, 1)
        return 1

    def _resume(self, path: str, data: Dict[str, Any]) -> int:
        states = data["states"]
        ckpt.check_resumable(path, data, self.config["Arch"].get("name"), self.weights_state(), self.epochs)
        model_keys = set(self.unwrapped_model.state_dict())
        self.model.set_state_dict({k: v for k, v in data["model"].items() if k in model_keys})
        if len(self.parameter_owners) > 1:
            self.train_loss.set_state_dict({k: v for k, v in data["model"].items() if k not in model_keys})
        self.freezer.load_state_dict(self, states["freeze"])
        ckpt.load_optimizer_state(self.optimizer, self.parameter_owners, data["optimizer"], self.lr_scheduler,
                                  source=path)
        ckpt.restore_rng_state(states["rng_state"])
        self._resume_ema(data, path)
        self._restore_progress(states)
        logger.info("Resumed from %s: epoch %d done, global step %d, best %s %.5f (epoch %d)", path,
                    states["epoch"], self.global_step, self.metric_key, self.best_metric, self.best_epoch)
        return states["epoch"] + 1

    def _restore_progress(self, states: Dict[str, Any]) -> None:
        self.global_step = states["global_step"]
        self.best_metric, self.best_epoch = states["best_metric"], states["best_epoch"]
        self.metric_key = states.get("metric_key")

    def _resume_ema(self, data: Dict[str, Any], path: str) -> None:
        if self.ema is None:
            return
        if "ema" in data:
            self.ema.set_state_dict(data["ema"])
            self.best_metric_ema = data["states"].get("best_metric_ema", -math.inf)
        else:
            self.ema = ModelEMA(self.unwrapped_model, self.ema.decay)
            logger.warning("%s has no EMA weights: the EMA restarts from the resumed weights", path)

    # ----------------------------------------------------------------- plumbing
    def _wrap_distributed(self) -> None:
        if world_size() <= 1:
            return
        paddle.distributed.init_parallel_env()
        self.model = self.freezer.wrap_data_parallel(
            self.model, lambda model: paddle.DataParallel(model, find_unused_parameters=True))

    def _build_callbacks(self) -> CallbackList:
        g = self.glob
        callbacks: List[Any] = [self.freezer]
        if self.ema is not None:  # before checkpoints, so they record this epoch's EMA best
            callbacks.append(EMACallback(self.ema))
        callbacks += [LogCallback(self.epochs), CheckpointCallback(g.get("save_interval", 1))]
        if world_size() > 1:
            callbacks.append(RankConsistencyCallback())
        if g.get("use_visualdl") and self.is_main:
            callbacks.append(VisualDLCallback(os.path.join(self.output_dir, "vdl")))
        return CallbackList(callbacks)

    def freeze_report(self) -> Dict[str, Any]:
        """The Freeze plan's report for the current state (dry run friendly)."""
        return self.freezer.build_report(self.model)

    def _write_run_files(self) -> None:
        if not self.is_main:
            return
        logger.info("Config:\n%s", format_config(self.config))
        save_config(self.config, os.path.join(self.output_dir, "config.yaml"))
