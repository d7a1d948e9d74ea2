"""Run a model from its cut boundary: the frozen prefix stands aside, the boundary returns a given activation.

Shared by the feature cache (the activation recorded for the batch's images, ``cache.py``) and
the prefix engine (the activation a static program or an inference predictor computed,
``prefix_engine.py``). Nothing is wrapped or renamed: for the duration of one call the prefix's
units get an instance-level ``forward`` that shadows their class's, and it is removed afterwards.

How the prefix stands aside. A unit whose output goes straight into the next unit returns its
input unchanged (free: a chain of them hands the model's input to the boundary, which ignores
it). A unit whose output first goes through other code of the model's forward ("glue": a ViT's
``flatten`` / ``transpose`` / ``concat`` with the class token) returns zeros of the shape it
returned when it really ran, so the glue still type-checks. :meth:`PrefixReplay.observe` learns
which units those are, and their shapes per input shape, from one real forward pass.

That all assumes that nothing computed before the boundary reaches the output except through
the boundary, which holds for the models here; :meth:`PrefixReplay.replays_exactly` checks it.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple, Union

import numpy as np
import paddle

from .model_index import ModelIndex, is_batch_norm, unwrap

Shape = Tuple[int, ...]


@dataclass(frozen=True)
class TensorSpec:
    """A tensor in an observed output: its shape without the batch dimension, and its dtype."""
    tail: Tuple[int, ...]
    dtype: Any


# per unit, its observed output with every tensor replaced by a TensorSpec (a tensor, or a
# structure such as Swin's (tokens, (H, W))), for one model-input shape
UnitShapes = Dict[str, Any]


def replay_blocker(plan: Any) -> Optional[str]:
    """Why the current freeze state's prefix output cannot stand in for the prefix (None if it can).

    The prefix must be cut (nothing before the boundary trains), every BN layer in it must have
    frozen statistics (with batch statistics an image's features depend on its batch) and
    nothing in it may be random in training (dropout, stochastic depth).
    """
    boundary = plan.current.cut_boundary
    if boundary is None:
        return "no frozen prefix is cut (method cut / auto with a frozen prefix is required)"
    stats_frozen = set(plan.current.stats_frozen_layers())
    for unit in plan.index.units_through(boundary):
        layer = plan.index.layers.get(unit)
        if layer is None:  # a bare parameter (a ViT's cls_token): used by the model's own code
            continue
        subs = [(unit, layer)] + [(f"{unit}.{n}", sub) for n, sub in layer.named_sublayers()]
        if any(is_random_in_training(sub) for _, sub in subs):
            return f"the frozen prefix has dropout or stochastic depth ({unit})"
        if any(name in plan.index.bn_layers and name not in stats_frozen for name, _ in subs):
            return (f"BN in the frozen prefix ({unit}) normalises with batch statistics, so an image's features "
                    f"depend on its batch (use bn: frozen)")
    return None


def is_random_in_training(layer: paddle.nn.Layer) -> bool:
    """Dropout of any kind with p > 0, or a layer with a positive ``drop_prob`` (DropPath / stochastic depth)."""
    dropout = (paddle.nn.Dropout, paddle.nn.Dropout2D, paddle.nn.Dropout3D, paddle.nn.AlphaDropout)
    if isinstance(layer, dropout):
        return float(layer.p) > 0.0
    return float(getattr(layer, "drop_prob", 0.0) or 0.0) > 0.0


class PrefixReplay:
    """Runs ``model`` with the units through ``boundary`` replaced by a given activation.

    Args:
        model: the model (a DataParallel wrapper is looked through).
        index: its :class:`ModelIndex`.
        boundary: the last unit of the cut prefix (``FreezeState.cut_boundary``).
    """

    def __init__(self, model: paddle.nn.Layer, index: ModelIndex, boundary: str):
        self.model = unwrap(model)
        self.layers = index.layers
        self.boundary = boundary
        position = index.units.index(boundary)
        self.prefix_units = [u for u in index.units[:position + 1] if u in index.layers]
        self.rest_units = [u for u in index.units[position + 1:] if u in index.layers]
        self.glue_after: set = set()          # units whose output goes through the model's own code next
        self.shapes: Dict[Shape, UnitShapes] = {}
        self.calls: Dict[str, int] = {}      # how often each unit ran in the observed pass

    # -- learning the structure ---------------------------------------------------------------
    @contextlib.contextmanager
    def observing(self) -> Iterator[Dict[str, Any]]:
        """Learn, from the model calls inside the context, which units feed glue and their output shapes.

        Yields a dict whose ``activation`` is, after the call, the tensor that left the boundary.
        """
        state: Dict[str, Any] = {"last": None, "last_unit": None, "activation": None, "key": None}
        shapes: UnitShapes = {}
        calls: Dict[str, int] = {}

        def on_model_input(layer, inputs):
            state["key"] = input_key(inputs)

        def before(layer, inputs):
            # glue ran after the previous unit when this unit does not get that unit's output
            if state["last_unit"] is not None and (not inputs or inputs[0] is not state["last"]):
                self.glue_after.add(state["last_unit"])

        def after(unit):
            def hook(layer, inputs, output):
                calls[unit] = calls.get(unit, 0) + 1
                state["last"], state["last_unit"] = output, unit
                shapes[unit] = template_of(output)
                if unit == self.boundary:
                    state["activation"] = output
            return hook

        handles = [self.model.register_forward_pre_hook(on_model_input)]
        for unit in self.prefix_units + self.rest_units:
            handles.append(self.layers[unit].register_forward_pre_hook(before))
            handles.append(self.layers[unit].register_forward_post_hook(after(unit)))
        try:
            yield state
        finally:
            for handle in handles:
                handle.remove()
        if state["last_unit"] is not None:
            self.glue_after.add(state["last_unit"])  # what the model does with its last unit's output
        if state["activation"] is None:
            raise RuntimeError(f"the boundary unit '{self.boundary}' did not run in the forward pass")
        self.shapes[state["key"]] = shapes
        self.calls = calls
        state["last"] = None

    def observe(self, run: Callable[[], Any]) -> Tuple[paddle.Tensor, List[np.ndarray]]:
        """Run the model once more (no gradient; BN statistics and RNG restored) while :meth:`observing`.

        Returns the activation leaving the boundary (a tensor, or the boundary's structure of
        them) and the model's output as numpy arrays.
        """
        with restoring_state(self.model), paddle.no_grad(), self.observing() as seen:
            out = arrays(run())
        return seen["activation"], out

    def stand_in_problem(self, units: List[str]) -> Optional[str]:
        """Why ``units`` cannot stand aside as observed (None when they can)."""
        for unit in units:
            if unit not in self.glue_after:
                continue
            if self.calls.get(unit, 0) > 1:
                return f"unit '{unit}' runs {self.calls[unit]} times in one forward pass"
        return None

    def knows(self, key: Shape) -> bool:
        """True when the units' shapes for model inputs of shape ``[N, *key]`` were observed."""
        return key in self.shapes

    # -- running from the boundary ------------------------------------------------------------
    @contextlib.contextmanager
    def feeding(self, activation: Any) -> Iterator[None]:
        """Inside this context, a call of the model skips the prefix: the boundary returns ``activation``.

        ``activation`` is what the boundary returns: a tensor, or a structure as observed.
        """
        key: Dict[str, Shape] = {}

        def on_model_input(layer, inputs):
            key["shape"] = input_key(inputs)
            if self.glue_after & set(self.prefix_units[:-1]) and not self.knows(key["shape"]):
                raise LookupError(f"no observed forward pass for inputs of shape {list(key['shape'])}")

        def boundary_forward(*args, **kwargs):
            return activation

        batch = int(next(t for t in paddle.utils.flatten(activation) if isinstance(t, paddle.Tensor)).shape[0])

        def stand_in(unit):
            def forward(*args, **kwargs):
                return zeros_of(self.shapes[key["shape"]][unit], batch)
            return forward

        forwards = {u: stand_in(u) if u in self.glue_after else pass_through for u in self.prefix_units[:-1]}
        forwards[self.boundary] = boundary_forward
        handle = self.model.register_forward_pre_hook(on_model_input)
        try:
            with shadowed_forwards(self.layers, forwards):
                yield
        finally:
            handle.remove()

    def replays_exactly(self, run: Callable[[], Any], activation: paddle.Tensor, reference: List[np.ndarray],
                        tolerance: float = 0.0) -> Optional[str]:
        """Run the model from ``activation`` (no gradient, state restored); None if it reproduces ``reference``.

        ``tolerance`` 0 asks for bit-identical outputs, otherwise max |d| / max |x| <= tolerance.
        """
        try:
            with restoring_state(self.model), paddle.no_grad(), self.feeding(activation):
                replayed = arrays(run())
        except Exception as e:  # e.g. a unit that does not take the previous unit's output
            return f"replay failed: {type(e).__name__}: {e}"
        if len(replayed) != len(reference):
            return "replay gave another number of outputs"
        worst = max((relative_difference(a, b) for a, b in zip(replayed, reference)), default=0.0)
        if (tolerance == 0.0 and not all(np.array_equal(a, b) for a, b in zip(replayed, reference))) \
                or not worst <= tolerance:  # NaN fails too
            return f"replay did not reproduce the model output (max |d| / max |x| = {worst:.2e})"
        return None


@contextlib.contextmanager
def shadowed_forwards(layers: Dict[str, paddle.nn.Layer], forwards: Dict[str, Callable]) -> Iterator[None]:
    """Give ``layers[name]`` the instance-level ``forward`` ``forwards[name]`` for the duration of the context."""
    for name, forward in forwards.items():
        layers[name].forward = forward  # shadows the class's forward; hooks still run around it
    try:
        yield
    finally:
        for name in forwards:
            layers[name].__dict__.pop("forward", None)


@contextlib.contextmanager
def restoring_state(model: paddle.nn.Layer) -> Iterator[None]:
    """Undo what an extra forward pass changes: BN running statistics, other buffers, and the RNG.

    Parameters are not copied: a forward pass does not change them.
    """
    tensors = dict(model.named_buffers())
    for name, layer in model.named_sublayers(include_self=True):
        if is_batch_norm(layer):  # paddle keeps running statistics as (non-trainable) parameters
            prefix = f"{name}." if name else ""
            tensors[f"{prefix}_mean"], tensors[f"{prefix}_variance"] = layer._mean, layer._variance
    saved = {name: t.numpy().copy() for name, t in tensors.items()}
    rng = paddle.get_rng_state()
    try:
        yield
    finally:
        for name, t in tensors.items():
            t.set_value(saved[name])
        paddle.set_rng_state(rng)


def template_of(output: Any) -> Any:
    """``output`` with every tensor replaced by its :class:`TensorSpec` (other values kept)."""
    return paddle.utils.map_structure(
        lambda v: TensorSpec(tuple(int(d) for d in v.shape[1:]), v.dtype) if isinstance(v, paddle.Tensor) else v,
        output)


def tensors_of(output: Any, template: Any) -> List[Any]:
    """The tensors of ``output`` (a structure like ``template``), in order."""
    leaves = paddle.utils.flatten(output)
    return [leaf for leaf, spec in zip(leaves, paddle.utils.flatten(template)) if isinstance(spec, TensorSpec)]


def pack(template: Any, tensors: List[Any]) -> Any:
    """``template``'s structure with its tensors taken from ``tensors`` in order."""
    supply = iter(tensors)
    return paddle.utils.pack_sequence_as(
        template, [next(supply) if isinstance(s, TensorSpec) else s for s in paddle.utils.flatten(template)])


def zeros_of(template: Any, batch: Any) -> Any:
    """``template``'s structure with zero tensors of ``batch`` rows (an int, or a static-graph value)."""
    return paddle.utils.map_structure(
        lambda s: paddle.zeros([batch, *s.tail], dtype=s.dtype) if isinstance(s, TensorSpec) else s, template)


def pass_through(x: Any, *args: Any, **kwargs: Any) -> Any:
    """A unit's stand-in forward that hands its input on."""
    return x


def input_key(inputs: Tuple[Any, ...]) -> Shape:
    """The shape of a model's first input without the batch dimension."""
    return tuple(int(d) for d in inputs[0].shape[1:]) if inputs and isinstance(inputs[0], paddle.Tensor) else ()


def arrays(out: Any) -> List[np.ndarray]:
    """Every tensor of a model output (a tensor, a dict or a tuple of them) as numpy, in a stable order."""
    if isinstance(out, dict):
        return [out[k].numpy() for k in sorted(out)]
    if isinstance(out, (tuple, list)):  # GoogLeNet: [logits, aux1, aux2]; nested structures too
        return [a for o in out if isinstance(o, (paddle.Tensor, dict, tuple, list)) for a in arrays(o)]
    return [out.numpy()]


def relative_difference(a: Union[np.ndarray, paddle.Tensor], b: Union[np.ndarray, paddle.Tensor]) -> float:
    """max |a - b| / max |b| (0 for two all-zero arrays; inf for different shapes)."""
    a, b = (np.asarray(v.numpy() if isinstance(v, paddle.Tensor) else v, dtype=np.float64) for v in (a, b))
    if a.shape != b.shape:
        return float("inf")
    scale = float(np.abs(b).max()) if b.size else 0.0
    diff = float(np.abs(a - b).max()) if a.size else 0.0
    return diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))
