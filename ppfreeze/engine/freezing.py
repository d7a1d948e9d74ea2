"""The one owner of freezing at run time.

The decisions live in :mod:`ppfreeze.freeze` (spec -> rules -> plan). :class:`FreezeController`
carries them out during a run, in the manner of Lightning's finetuning callback: it puts the
model into the plan's state at the start, at a resume and at each schedule milestone (asking the
engine for an optimizer that holds exactly the parameters that train), clears gradients of
``clear_grad``-frozen parameters after ``backward()``, audits the frozen tensors, owns the
feature cache and the prefix engine (``Freeze.prefix_engine``), registers later-unfrozen
parameters with DataParallel, writes ``freeze_report.json`` and saves / restores its state in
checkpoints. The engine knows none of these details: it calls the controller's hooks and two
public engine methods, ``rebuild_optimizer`` and ``unwrapped_model``.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Callable, Dict, Optional, Sequence, Set

import paddle

from ..freeze import FreezeAudit, FreezePlan, format_report
from ..freeze.cache import FeatureCache
from ..freeze.prefix_engine import PrefixEngine
from ..utils.io import atomic_write_json
from .callbacks import Callback

logger = logging.getLogger("ppfreeze")

REPORT_FILE = "freeze_report.json"


class FreezeController(Callback):
    """Carries out a :class:`FreezePlan` during training (see the module docstring).

    Args:
        plan: the resolved plan of the model being trained.
        image_shape: ``[C, H, W]`` used for the report's FLOPs shares.
    """

    def __init__(self, plan: FreezePlan, image_shape: Sequence[int]):
        self.plan = plan
        self.image_shape = list(image_shape)
        self.audit: Optional[FreezeAudit] = None
        self.feature_cache: Optional[FeatureCache] = None
        self.prefix_engine: Optional[PrefixEngine] = None
        self.report: Optional[Dict[str, Any]] = None
        self._report_path: Optional[str] = None

    # -- state --------------------------------------------------------------------------------
    @property
    def epoch(self) -> int:
        """The epoch whose freeze state the model is in (0 before the first :meth:`enter`)."""
        return self.plan.applied_epoch or 0

    def state_dict(self) -> Dict[str, Any]:
        """What a checkpoint stores: the plan's fingerprint, the applied epoch, the frozen names."""
        return self.plan.state_dict()

    def load_state_dict(self, engine: Any, state: Dict[str, Any]) -> None:
        """Resume: check ``state`` against the plan and enter the freeze state it was saved in."""
        self.enter(engine, self.plan.set_state_dict(state))

    # -- entering a state ---------------------------------------------------------------------
    def check_pretrained(self, loaded_keys: Set[str]) -> None:
        """Refuse to freeze tensors no weights file provided (unless ``allow_random_frozen``)."""
        self.plan.check_pretrained(loaded_keys)

    def enter(self, engine: Any, epoch: int, carry_optimizer_state: bool = False) -> None:
        """Put the model in the freeze state of ``epoch`` and give the engine a matching optimizer.

        A changed frozen set needs a new optimizer (multi-tensor kernels break otherwise, see
        docs/design.md); with ``carry_optimizer_state`` the accumulators of parameters that
        train before and after are carried over.
        """
        carried = engine.optimizer_state() if carry_optimizer_state else None
        self.plan.apply(engine.model, epoch)
        engine.rebuild_optimizer(self.plan.optimizer_parameters(engine.model), carried)
        # recorded prefix activations belong to one freeze state; worth it only if it lasts 2+ epochs
        lasting = self._epochs_in_state(epoch, engine.epochs) >= 2
        self.feature_cache = (FeatureCache.for_state(engine.unwrapped_model, self.plan, engine.train_loader)
                              if lasting else None)
        # an unchanged boundary means an unchanged (frozen) prefix: its engine is kept
        if self.prefix_engine is None or self.prefix_engine.boundary != self.plan.current.cut_boundary:
            self.prefix_engine = PrefixEngine.for_state(engine.unwrapped_model, self.plan)
        if self.audit is not None:
            self.audit.snapshot()

    def _epochs_in_state(self, epoch: int, last_epoch: int) -> int:
        """How many epochs from ``epoch`` on train in the freeze state of ``epoch``."""
        n = 1
        while epoch + n <= last_epoch and not self.plan.milestone_at(epoch + n):
            n += 1
        return n

    def wrap_data_parallel(self, model: paddle.nn.Layer, wrap: Callable[[paddle.nn.Layer], Any]) -> Any:
        """Build the DataParallel wrapper with every eventually-trainable parameter registered.

        Parameters frozen when the wrapper is built are never all-reduced after a milestone
        unfreezes them (ranks drift apart silently; docs/design.md), so the wrapper is built in the
        most unfrozen state and the current state is restored afterwards.
        """
        current = self.epoch
        self.plan.apply(model, self.plan.state_epochs()[-1])
        wrapped = wrap(model)
        self.plan.apply(model, current)
        return wrapped

    # -- the forward pass ---------------------------------------------------------------------
    def forward(self, run: Callable[[], Any], indices: Optional[paddle.Tensor],
                inputs: Optional[paddle.Tensor] = None) -> Any:
        """``run()`` the model (on ``inputs``), through the prefix engine and the feature cache when active."""
        fresh = run
        prefix = self.prefix_engine
        if prefix is not None and inputs is not None:
            if prefix.prepare(run, inputs):  # first batch of an input shape: engines checked / timed
                self._update_report("prefix_engine", {**(self.report or {}).get("prefix_engine", {}),
                                                      **prefix.decision})
            fresh = lambda: prefix.run(run, inputs)  # noqa: E731
        if self.feature_cache is not None:
            return self.feature_cache.forward(run, indices, fresh)
        return fresh()

    # -- the report ---------------------------------------------------------------------------
    def build_report(self, model: paddle.nn.Layer) -> Dict[str, Any]:
        """The plan's report for the current state (entering epoch 1 first if nothing was applied)."""
        if self.epoch == 0:
            self.plan.apply(model, 1)
        self.report = self.plan.report(model, self.image_shape)
        return self.report

    def write_report(self, output_dir: str) -> None:
        """Log the report and write ``freeze_report.json`` (updated with the audit at the end)."""
        self._report_path = os.path.join(output_dir, REPORT_FILE)
        logger.info("Freeze plan:\n%s", format_report(self.report))
        atomic_write_json(self._report_path, self.report)

    # -- the schedule ------------------------------------------------------------------------
    def warn_unreached_milestones(self, last_epoch: int) -> None:
        """A schedule milestone after the last epoch never applies: say so instead of ignoring it."""
        for milestone in self.plan.spec.schedule:
            if milestone.epoch > last_epoch:
                logger.warning("%s: the milestone at epoch %d (unfreeze %s) comes after the last epoch "
                               "(Global.epochs: %d) and will never apply", milestone.key, milestone.epoch,
                               ", ".join(milestone.unfreeze), last_epoch)

    # -- callback hooks -----------------------------------------------------------------------
    def on_train_begin(self, engine: Any) -> None:
        self.warn_unreached_milestones(engine.epochs)
        self.audit = FreezeAudit(engine.unwrapped_model, self.plan)
        self.audit.snapshot()
        if engine.is_main:
            self.build_report(engine.model)
            self.write_report(engine.output_dir)

    def on_epoch_begin(self, engine: Any, epoch: int) -> None:
        if epoch > self.epoch and self.plan.milestone_at(epoch):
            self.enter(engine, epoch, carry_optimizer_state=True)
            logger.info("Freeze schedule: epoch %d milestone applied, optimizer rebuilt with %d parameters",
                        epoch, len(self.plan.optimizer_parameters(engine.model)))

    def after_backward(self, engine: Any) -> None:
        self.plan.after_backward(engine.model)

    def on_step_end(self, engine: Any, step: Dict[str, Any]) -> None:
        if self.audit.should_check(engine.global_step, epoch_end=False, train_end=False):
            self.audit.check(f"epoch {step['epoch']} step {engine.global_step}")

    def on_epoch_end(self, engine: Any, epoch: int, eval_metrics: Optional[Dict[str, float]]) -> None:
        if self.audit.should_check(engine.global_step, epoch_end=True, train_end=False):
            self.audit.check(f"end of epoch {epoch}")

    def on_train_end(self, engine: Any) -> None:
        self.audit.check("end of training")
        summary = self.audit.summary()
        logger.info(summary)
        self._update_report("audit", summary)

    def _update_report(self, key: str, value: Any) -> None:
        """Add ``key`` to the report and rewrite ``freeze_report.json`` (main rank only)."""
        if self.report is not None and self._report_path:
            self.report[key] = value
            atomic_write_json(self._report_path, self.report)

    @property
    def audit_summary(self) -> Optional[str]:
        """The audit's one-line summary (None before training started)."""
        return self.audit.summary() if self.audit is not None else None
