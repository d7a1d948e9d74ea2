"""``Freeze.cache_features: auto``: reuse the frozen prefix's output across epochs.

When the frozen layers form a prefix that is ``cut`` (no backward, BN statistics frozen) and
every training transform is deterministic, the activation leaving the prefix is the same for a
given image in every epoch. The first time an image is seen its activation is recorded; later
batches whose images are all recorded skip the prefix: its units pass their input through and
the boundary unit returns the recorded activation.

That replay assumes the model runs its units one after the other (true for the ResNet / PPLCNet
/ RecModel units ppfreeze declares). It is checked, not trusted: the first replayed batch is
also run normally and the outputs must be bit-identical, or caching switches itself off.
"""
from __future__ import annotations

import contextlib
import logging
from typing import Any, Callable, Dict, Iterator, List, Optional

import numpy as np
import paddle

logger = logging.getLogger("ppfreeze")

MAX_CACHE_BYTES = 2 * 1024 ** 3  # past this the cache stops growing (batches with new images run in full)


def cache_blocker(engine: Any) -> Optional[str]:
    """Why the features of ``engine``'s current freeze state cannot be cached (None if they can)."""
    plan = engine.freeze
    if plan.spec.cache_features is False:
        return "cache_features: false"
    boundary = plan.current.cut_boundary
    if boundary is None:
        return "no frozen prefix is cut (method cut / auto with a frozen prefix is required)"
    random_ops = [type(op).__name__ for op in _train_ops(engine) if _is_random(op)]
    if random_ops:
        return f"training transforms are random ({', '.join(random_ops)}): each epoch sees new pixels"
    layers = dict(engine._bare_model().named_sublayers())
    for unit in prefix_units(plan, boundary):
        subs = [layers[unit], *layers[unit].sublayers()]
        if any(isinstance(sub, paddle.nn.Dropout) for sub in subs):
            return f"the frozen prefix has dropout ({unit})"
        if any(hasattr(sub, "_use_global_stats") and sub._use_global_stats is not True for sub in subs):
            return (f"BN in the frozen prefix ({unit}) normalises with batch statistics, so an image's features "
                    f"depend on its batch (use bn: frozen or freeze_stats to allow caching)")
    return None


def prefix_units(plan: Any, boundary: str) -> List[str]:
    """The units that run up to and including ``boundary``, in forward order."""
    units = plan.index.units
    return units[: units.index(boundary) + 1]


def _train_ops(engine: Any) -> List[Any]:
    dataset = getattr(engine.train_loader.dataset, "dataset", engine.train_loader.dataset)
    return list(getattr(dataset, "_ops", None) or [None])


def _is_random(op: Any) -> bool:
    # unknown ops (no _ops list, user ops without the flag) count as random unless they say otherwise
    return op is None or bool(getattr(op, "is_random", type(op).__name__.startswith("Rand")))


class FeatureCache:
    """Records and replays the activation leaving the cut prefix, keyed by dataset index."""

    def __init__(self, model: paddle.nn.Layer, plan: Any):
        self.model = model
        self.boundary = plan.current.cut_boundary
        self.layers = dict(model.named_sublayers())
        self.units = prefix_units(plan, self.boundary)
        self.store: Dict[int, np.ndarray] = {}
        self.nbytes = 0
        self.verified = False
        self.enabled = True

    @classmethod
    def for_engine(cls, engine: Any) -> Optional["FeatureCache"]:
        """A cache for the engine's current freeze state, or None (the reason is logged)."""
        if not engine.freeze.current.frozen_names():
            return None  # nothing frozen: nothing to say
        reason = cache_blocker(engine)
        if reason is not None:
            logger.info("Freeze: frozen features are not cached: %s", reason)
            return None
        engine.train_loader.dataset.return_index = True
        cache = cls(engine._bare_model(), engine.freeze)
        logger.info("Freeze: caching the output of '%s' per image; later epochs skip %d frozen units",
                    cache.boundary, len(cache.units))
        return cache

    def forward(self, run: Callable[[], Any], indices: Optional[paddle.Tensor]) -> Any:
        """``run()`` the model, replaying recorded activations when every image in the batch has one."""
        keys = [int(i) for i in np.asarray(indices).reshape(-1)] if indices is not None else []
        if not self.enabled or not keys or any(k not in self.store for k in keys):
            with self._recording(keys):
                return run()
        cached = paddle.to_tensor(np.stack([self.store[k] for k in keys]))
        if self.verified:
            with self._replaying(cached):
                return run()
        return self._verify(run, cached)

    def _verify(self, run: Callable[[], Any], cached: paddle.Tensor) -> Any:
        """Replay once beside a normal run; keep caching only if the outputs are bit-identical."""
        model_state = {k: v.numpy().copy() for k, v in self.model.state_dict().items()}
        rng = paddle.get_rng_state()
        with paddle.no_grad(), self._replaying(cached):
            replayed = _first_tensor(run()).numpy()
        self.model.set_state_dict(model_state)  # undo the BN statistics the replay moved
        paddle.set_rng_state(rng)
        out = run()
        self.verified = np.array_equal(replayed, _first_tensor(out).numpy())
        if not self.verified:
            self.enabled = False
            logger.warning("Freeze: replaying cached features did not reproduce the model output; caching is "
                           "off (the model's units may not run one after the other, or the prefix is not deterministic)")
        return out

    @contextlib.contextmanager
    def _recording(self, keys: List[int]) -> Iterator[None]:
        def record(layer, inputs, output):
            if self.nbytes > MAX_CACHE_BYTES:
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

    @contextlib.contextmanager
    def _replaying(self, cached: paddle.Tensor) -> Iterator[None]:
        # instance attributes shadow the class's forward for this call only; restored below
        for unit in self.units:
            self.layers[unit].forward = (lambda *a, **k: cached) if unit == self.boundary else _pass_through
        try:
            yield
        finally:
            for unit in self.units:
                del self.layers[unit].forward


def _pass_through(x: Any, *args: Any, **kwargs: Any) -> Any:
    return x


def _first_tensor(out: Any) -> paddle.Tensor:
    if isinstance(out, dict):
        return out.get("logits", out.get("features", next(iter(out.values()))))
    return out
