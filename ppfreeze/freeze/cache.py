"""``Freeze.cache_features: auto``: reuse the frozen prefix's output across epochs.

When the frozen layers form a prefix that is ``cut`` (no backward, BN statistics frozen) and
every training transform is deterministic, the activation leaving the prefix is the same for a
given image in every epoch. The first time an image is seen its activation is recorded; later
batches whose images are all recorded skip the prefix: its units stand aside and the boundary
unit returns the recorded activation (``replay.py``, shared with the prefix engine).

That replay assumes that nothing computed before the boundary reaches the output except through
it (true for the ResNet / PPLCNet / RecModel / ViT units ppfreeze declares). It is checked, not
trusted: the first replayed batch is also run normally and the outputs must be bit-identical,
or caching switches itself off. With a prefix engine (``Freeze.prefix_engine``) the recorded
activation is the engine's output.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np
import paddle

from .replay import PrefixReplay, arrays, replay_blocker, restoring_state

logger = logging.getLogger("ppfreeze")

MAX_CACHE_BYTES = 2 * 1024 ** 3  # past this the cache stops growing (batches with new images run in full)


def cache_blocker(plan: Any, random_ops: List[str]) -> Optional[str]:
    """Why the current freeze state's prefix output cannot be cached (None if it can).

    ``random_ops``: names of the training transforms that differ between epochs
    (``ppfreeze.data.loader.random_transforms``).
    """
    if plan.spec.cache_features is False:
        return "cache_features: false"
    if plan.current.cut_boundary is not None and random_ops:
        return f"training transforms are random ({', '.join(random_ops)}): each epoch sees new pixels"
    return replay_blocker(plan)


class FeatureCache:
    """Records and replays the activation leaving the cut prefix, keyed by dataset index."""

    def __init__(self, model: paddle.nn.Layer, plan: Any):
        self.model = model
        self.boundary = plan.current.cut_boundary
        self.layers = plan.index.layers
        self.units = plan.index.units_through(self.boundary)
        self.replay = PrefixReplay(model, plan.index, self.boundary)
        self.store: Dict[int, np.ndarray] = {}
        self.nbytes = 0
        self.verified = False
        self.enabled = True
        self.replays = 0  # batches whose prefix output came from the cache

    @classmethod
    def for_state(cls, model: paddle.nn.Layer, plan: Any, loader: Any) -> Optional["FeatureCache"]:
        """A cache for ``plan``'s current state, or None (the reason is logged).

        Makes the loader return sample indices exactly when a cache is built: it keys
        activations by index.
        """
        from ..data.loader import random_transforms, set_return_index
        reason = cache_blocker(plan, random_transforms(loader)) if plan.current.frozen_names() else ""
        set_return_index(loader, reason is None)
        if reason:
            logger.info("Freeze: frozen features are not cached: %s", reason)
        if reason is not None:
            return None
        cache = cls(model, plan)
        logger.info("Freeze: caching the output of '%s' per image; later epochs skip %d frozen units",
                    cache.boundary, len(cache.units))
        return cache

    def forward(self, run: Callable[[], Any], indices: Optional[paddle.Tensor],
                fresh: Optional[Callable[[], Any]] = None) -> Any:
        """``run()`` the model, replaying recorded activations when every image in the batch has one.

        ``fresh`` computes a batch whose activations are not all recorded (default ``run``; the
        prefix engine passes a call that runs the prefix on it): its boundary output is recorded.
        """
        fresh = fresh or run
        if not self.enabled or indices is None:
            return fresh()
        keys = [int(i) for i in np.asarray(indices).reshape(-1)]
        if any(k not in self.store for k in keys):
            # observing: which units feed the model's own code, and their shapes for this input shape
            with self._recording(keys), self.replay.observing():
                return fresh()
        cached = paddle.to_tensor(np.stack([self.store[k] for k in keys]))
        if self.verified:
            self.replays += 1
            with self.replay.feeding(cached):
                return run()
        return self._verify(run, fresh, cached)

    def _verify(self, run: Callable[[], Any], fresh: Callable[[], Any], cached: paddle.Tensor) -> Any:
        """Replay once beside a normal run; keep caching only if the outputs are bit-identical."""
        problem = self.replay.stand_in_problem(self.replay.prefix_units[:-1])
        try:
            with restoring_state(self.model), paddle.no_grad(), self.replay.feeding(cached):  # BN stats, RNG undone
                replayed = None if problem else arrays(run())
        except Exception as e:  # e.g. a unit that does not take the previous unit's output
            replayed, problem = None, f"replay failed: {e}"
        out = fresh()
        self.verified = replayed is not None and len(replayed) == len(arrays(out)) and all(
            np.array_equal(a, b) for a, b in zip(replayed, arrays(out)))
        self.replays += int(self.verified)
        if not self.verified:
            self._switch_off(f"{problem or 'replay did not reproduce the model output'} (the model's units may not "
                             f"run one after the other, or the prefix is not deterministic)")
        return out

    def _switch_off(self, why: str) -> None:
        self.enabled = False
        self.store.clear()
        logger.warning("Freeze: %s; caching is off", why)

    @contextlib.contextmanager
    def _recording(self, keys: List[int]) -> Iterator[None]:
        def record(layer, inputs, output):
            if self.nbytes > MAX_CACHE_BYTES or not self.enabled:
                return None
            if not isinstance(output, paddle.Tensor):  # e.g. Swin's (tokens, (H, W))
                self._switch_off(f"'{self.boundary}' returns a {type(output).__name__}, not one tensor")
                return None
            values = output.numpy()
            for k, v in zip(keys, values):
                if k not in self.store:
                    self.store[k] = v.copy()
                    self.nbytes += v.nbytes
            return None
        handle = self.layers[self.boundary].register_forward_post_hook(record) if keys else None
        try:
            yield
        finally:
            if handle is not None:
                handle.remove()
