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


def cache_blocker(plan: Any, random_ops: List[str]) -> Optional[str]:
    """Why the current freeze state's prefix output cannot be cached (None if it can).

    ``random_ops``: names of the training transforms that differ between epochs
    (``ppfreeze.data.loader.random_transforms``).
    """
    if plan.spec.cache_features is False:
        return "cache_features: false"
    boundary = plan.current.cut_boundary
    if boundary is None:
        return "no frozen prefix is cut (method cut / auto with a frozen prefix is required)"
    if random_ops:
        return f"training transforms are random ({', '.join(random_ops)}): each epoch sees new pixels"
    stats_frozen = set(plan.current.stats_frozen_layers())
    for unit in plan.index.units_through(boundary):
        layer = plan.index.layers.get(unit)
        if layer is None:
            return f"the frozen prefix has a bare parameter ({unit}) instead of a layer"
        subs = [(unit, layer)] + [(f"{unit}.{n}", sub) for n, sub in layer.named_sublayers()]
        if any(_is_random_layer(sub) for _, sub in subs):
            return f"the frozen prefix has dropout or drop-path ({unit})"
        if any(name in plan.index.bn_layers and name not in stats_frozen for name, _ in subs):
            return (f"BN in the frozen prefix ({unit}) normalises with batch statistics, so an image's features "
                    f"depend on its batch (use bn: frozen to allow caching)")
    return None


def _is_random_layer(layer: paddle.nn.Layer) -> bool:
    """Layers whose training-mode output is random: dropout and stochastic depth with a rate > 0."""
    if isinstance(layer, paddle.nn.Dropout):
        return float(getattr(layer, "p", 0.0)) > 0.0
    return float(getattr(layer, "drop_prob", 0.0) or 0.0) > 0.0


class FeatureCache:
    """Records and replays the activation leaving the cut prefix, keyed by dataset index."""

    def __init__(self, model: paddle.nn.Layer, plan: Any):
        self.model = model
        self.boundary = plan.current.cut_boundary
        self.layers = plan.index.layers
        self.units = plan.index.units_through(self.boundary)
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

    def forward(self, run: Callable[[], Any], indices: Optional[paddle.Tensor]) -> Any:
        """``run()`` the model, replaying recorded activations when every image in the batch has one."""
        if not self.enabled or indices is None:
            return run()
        keys = [int(i) for i in np.asarray(indices).reshape(-1)]
        if any(k not in self.store for k in keys):
            with self._recording(keys):
                return run()
        cached = paddle.to_tensor(np.stack([self.store[k] for k in keys]))
        if self.verified:
            self.replays += 1
            with self._replaying(cached):
                return run()
        return self._verify(run, cached)

    def _verify(self, run: Callable[[], Any], cached: paddle.Tensor) -> Any:
        """Replay once beside a normal run; keep caching only if the outputs are bit-identical."""
        model_state = {k: v.numpy().copy() for k, v in self.model.state_dict().items()}
        rng = paddle.get_rng_state()
        try:
            with paddle.no_grad(), self._replaying(cached):
                replayed = _arrays(run())
        except Exception as e:  # e.g. a unit that does not take the previous unit's output
            replayed, error = None, e
        finally:
            self.model.set_state_dict(model_state)  # undo the BN statistics the replay moved
            paddle.set_rng_state(rng)
        out = run()
        self.verified = replayed is not None and len(replayed) == len(_arrays(out)) and all(
            np.array_equal(a, b) for a, b in zip(replayed, _arrays(out)))
        self.replays += int(self.verified)
        if not self.verified:
            self.enabled = False
            self.store.clear()
            why = f"replay failed: {error}" if replayed is None else "replay did not reproduce the model output"
            logger.warning("Freeze: %s; caching is off (the model's units may not run one after the other, or "
                           "the prefix is not deterministic)", why)
        return out

    @contextlib.contextmanager
    def _recording(self, keys: List[int]) -> Iterator[None]:
        def record(layer, inputs, output):
            if self.nbytes > MAX_CACHE_BYTES or not self.enabled:
                return None
            if not isinstance(output, paddle.Tensor):  # e.g. an HRNet stage hands on a list of branches
                self.enabled = False
                self.store.clear()
                logger.warning("Freeze: '%s' returns a %s, not one tensor; caching is off", self.boundary,
                               type(output).__name__)
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


def _arrays(out: Any) -> List[np.ndarray]:
    """Every tensor of a model output (a tensor, a dict or a list of them) as numpy, in a stable order."""
    if isinstance(out, dict):
        return [out[k].numpy() for k in sorted(out)]
    if isinstance(out, (list, tuple)):  # GoogLeNet: [logits, aux1, aux2]
        return [a for o in out for a in _arrays(o)]
    return [out.numpy()]
