"""``Freeze.prefix_engine``: run the frozen, cut prefix as its own program while the rest trains.

A prefix that is ``cut`` needs no gradient, no autograd graph and no eager dispatch: it is an
inference workload. With ``static`` it runs as a ``paddle.jit.to_static`` program, with
``inference`` on a ``paddle.inference`` predictor (oneDNN on CPU; GPU, and TensorRT when asked
for, on a GPU host: that path is untested), built from the current prefix weights. Its output
enters the trainable rest as a tensor with no gradient, through the same replay as the feature
cache (``replay.py``): the prefix's units stand aside and the boundary returns that output.

The program is the model's own forward traced in eval mode with the units after the boundary
standing aside, returning what left the boundary, so models whose forward has code between the
units (a ViT's patch flattening and class token) work too. BN is not folded here: the
predictor's passes already fold it into the convolutions (``conv2d_bn_onednn_fuse_pass``; no
``batch_norm`` op is left in its optimised program), and the ``static`` program gained nothing
from folding in our measurements (docs/freeze.md).

On the first batch of each input shape the prefix is also run in dygraph: the engine's output
must be within ``TOLERANCE`` (max |d| / max |x|) of it, and the model run from the boundary must
reproduce the model's output, or the run falls back to dygraph with a log line. ``auto`` times
every engine that passes on that batch and keeps the fastest. Results are close to, not
bit-identical with, a dygraph run; ``dygraph`` (the default) keeps runs and resumes bit-exact.
"""
from __future__ import annotations

import contextlib
import logging
import os
import tempfile
import time
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import numpy as np
import paddle

from .model_index import unwrap
from .replay import (PrefixReplay, Shape, pack, pass_through, relative_difference, replay_blocker, shadowed_forwards,
                     tensors_of, zeros_of)

logger = logging.getLogger("ppfreeze")

ENGINES = ("inference", "static")       # besides dygraph, the model itself
TOLERANCE = 1e-4                        # max |d| / max |x| between an engine's prefix output and dygraph's
TIMED_RUNS = 2                          # auto: timed runs per engine after the checked one (the fastest counts)

Program = Callable[[paddle.Tensor], List[paddle.Tensor]]   # the boundary's output tensors, in order


class PrefixProgram(paddle.nn.Layer):
    """The model's forward up to the cut boundary, as a layer ``paddle.jit.to_static`` can trace.

    Calls the whole model with the units after the boundary standing aside (as observed by
    ``replay``) and returns the tensor that left the boundary.
    """

    def __init__(self, model: paddle.nn.Layer, replay: PrefixReplay, key: Shape):
        super().__init__()
        self.model = model  # a sublayer, so that jit.save finds the prefix's parameters
        self._replay = replay
        self._key = key

    def forward(self, x: paddle.Tensor) -> List[paddle.Tensor]:
        replay = self._replay
        shapes = replay.shapes[self._key]
        captured: List[Any] = []

        def stand_in(unit):
            def forward(*args, **kwargs):
                # never used: only the boundary's output leaves the program (dead code is dropped)
                return zeros_of(shapes[unit], paddle.shape(x)[0])
            return forward

        forwards = {u: stand_in(u) if u in replay.glue_after else pass_through for u in replay.rest_units}
        handle = replay.layers[replay.boundary].register_forward_post_hook(lambda l, i, o: captured.append(o))
        try:
            with shadowed_forwards(replay.layers, forwards):
                self.model(x)
        finally:
            handle.remove()
        return tensors_of(captured[0], shapes[replay.boundary])


class PrefixEngine:
    """Runs the cut prefix of the current freeze state on the requested engine (see the module doc).

    Args:
        model: the model (a DataParallel wrapper is looked through).
        plan: the freeze plan, already in the state whose prefix is run.
        requested: ``static`` | ``inference`` | ``auto``.
        use_tensorrt: TensorRT subgraphs for the ``inference`` engine on a GPU host.
    """

    def __init__(self, model: paddle.nn.Layer, plan: Any, requested: str, use_tensorrt: bool = False):
        self.model = unwrap(model)
        self.requested = requested
        self.use_tensorrt = use_tensorrt
        self.boundary = plan.current.cut_boundary
        self.replay = PrefixReplay(self.model, plan.index, self.boundary)
        self.used: Optional[str] = None                 # decided on the first batch
        self.programs: Dict[Shape, Program] = {}         # one per input shape (batch dimension free)
        self.decision: Dict[str, Any] = {"requested": requested, "used": None, "boundary": self.boundary,
                                         "tolerance": TOLERANCE}

    @classmethod
    def for_state(cls, model: paddle.nn.Layer, plan: Any) -> Optional["PrefixEngine"]:
        """The engine ``Freeze.prefix_engine`` asks for in the plan's current state, or None (dygraph)."""
        requested = plan.spec.prefix_engine
        if requested == "dygraph" or not plan.current.frozen_names():
            return None
        reason = replay_blocker(plan)
        if reason is not None:
            logger.info("Freeze: prefix_engine %s: the frozen prefix runs in dygraph: %s", requested, reason)
            return None
        return cls(model, plan, requested, plan.spec.prefix_engine_tensorrt)

    # -- the train step -----------------------------------------------------------------------
    def prepare(self, run: Callable[[], Any], x: paddle.Tensor) -> bool:
        """Before a batch's forward: check (and for ``auto`` time) the engines on a new input shape.

        ``run`` runs the model on ``x``. Returns True when a decision was made now (the report
        should be updated from :attr:`decision`).
        """
        key = tuple(int(d) for d in x.shape[1:])
        if self.used == "dygraph" or key in self.programs:
            return False
        if self.used is None:
            self._decide(run, x, key)
        else:
            self._add_shape(run, x, key)
        return True

    def run(self, run: Callable[[], Any], x: paddle.Tensor) -> Any:
        """``run()`` the model with the prefix's output computed by the engine (dygraph: unchanged)."""
        key = tuple(int(d) for d in x.shape[1:])
        program = self.programs.get(key)
        if program is None:
            return run()
        with paddle.no_grad():
            activation = pack(self.replay.shapes[key][self.boundary], program(x))
        with self.replay.feeding(activation):
            return run()

    # -- deciding -----------------------------------------------------------------------------
    def _decide(self, run: Callable[[], Any], x: paddle.Tensor, key: Shape) -> None:
        auto = self.requested == "auto"
        reference, problem = self._reference(run, key)
        candidates = list(ENGINES) if auto else [self.requested]
        results: Dict[str, Dict[str, Any]] = {}
        programs: Dict[str, Program] = {}
        if problem is None:
            for name in candidates:
                try:
                    programs[name] = self._build(name, key, x)
                    results[name] = self._measure(programs[name], x, reference, timed=auto)
                except Exception as e:  # an op Paddle cannot export or run: that engine is out
                    results[name] = {"error": f"could not be built: {type(e).__name__}: {_first_line(e)}"}
            if auto:
                try:
                    results["dygraph"] = self._measure(self._eager_program(key), x, reference, check=False)
                except Exception as e:  # the program's stand-ins broke the model's code after the boundary
                    results["dygraph"] = {"error": f"could not be timed alone: {type(e).__name__}: {_first_line(e)}"}
        names = candidates + ["dygraph"]
        # a passed engine scores its time (0 when not timed), a failed one inf; all ranks must agree
        scores = _agree([results[n].get("seconds", 0.0) if n in results and "error" not in results[n]
                         else float("inf") for n in names])
        self.used, why = self._choose(names, results, scores, problem)
        if self.used != "dygraph":
            self.programs[key] = programs[self.used]
        self.decision.update(used=self.used, why=why, candidates=results)
        log = logger.info if self.used != "dygraph" or auto else logger.warning
        log("Freeze: prefix_engine %s: %s", self.requested, why)

    def _choose(self, names: List[str], results: Dict[str, Dict[str, Any]], scores: List[float],
                problem: Optional[str]) -> Tuple[str, str]:
        span = f"the frozen prefix through '{self.boundary}'"
        if problem is not None:
            return "dygraph", f"{span} stays in dygraph: {problem}"
        passed = {n: s for n, s in zip(names, scores) if np.isfinite(s)}
        if self.requested != "auto":
            name, result = self.requested, results[self.requested]
            if name not in passed:
                why = result.get("error") or "it failed on another rank"
                return "dygraph", f"falls back to dygraph for {span}: {why}"
            return name, (f"{span} runs on {name}; its output is within {result['difference']:.1e} of dygraph "
                          f"(max |d| / max |x|, tolerance {TOLERANCE:g})")
        out = [f"{n} {r['error']}" for n, r in results.items() if "error" in r]
        if not passed:
            return "dygraph", f"falls back to dygraph for {span}: {'; '.join(out) or 'every engine failed on a rank'}"
        best = min(passed, key=passed.get)
        times = ", ".join(f"{n} {1000 * s:.1f} ms" for n, s in sorted(passed.items(), key=lambda kv: kv[1]))
        return best, (f"chose {best} for {span}, the fastest of the engines that match dygraph within "
                      f"{TOLERANCE:g} (prefix time on the first batch, slowest rank: {times})"
                      + (f"; ruled out: {'; '.join(out)}" if out else ""))

    def _add_shape(self, run: Callable[[], Any], x: paddle.Tensor, key: Shape) -> None:
        """A new input shape after the decision: build and check the chosen engine for it."""
        reference, problem = self._reference(run, key)
        if problem is None:
            try:
                program = self._build(self.used, key, x)
                problem = self._measure(program, x, reference, timed=False).get("error")
            except Exception as e:
                problem = f"could not be built: {type(e).__name__}: {_first_line(e)}"
        if problem is None:
            self.programs[key] = program
            return
        logger.warning("Freeze: prefix_engine %s falls back to dygraph for inputs of shape %s: %s", self.used,
                       list(key), problem)
        self.used, self.programs = "dygraph", {}
        self.decision.update(used="dygraph", why=f"inputs of shape {list(key)}: {problem}")

    def _reference(self, run: Callable[[], Any], key: Shape) -> Tuple[List[paddle.Tensor], Optional[str]]:
        """The dygraph prefix output's tensors for this batch, and why the model cannot run from the boundary."""
        try:
            activation, output = self.replay.observe(run)
        except Exception as e:
            return [], f"the model's forward could not be observed: {type(e).__name__}: {_first_line(e)}"
        problem = self.replay.stand_in_problem(self.replay.prefix_units[:-1] + self.replay.rest_units)
        problem = problem or self.replay.replays_exactly(run, activation, output, TOLERANCE)
        reference = tensors_of(activation, self.replay.shapes[key][self.boundary])
        return reference, problem and f"the model cannot run from its cut boundary ({problem})"

    def _measure(self, program: Program, x: paddle.Tensor, reference: List[paddle.Tensor], check: bool = True,
                 timed: bool = True) -> Dict[str, Any]:
        """Run ``program`` on ``x``: compare with ``reference``, then time ``TIMED_RUNS`` more runs."""
        with paddle.no_grad():
            out = program(x)
            difference = (max(relative_difference(o, r) for o, r in zip(out, reference))
                          if len(out) == len(reference) else float("inf")) if check else 0.0
            if not difference <= TOLERANCE:  # NaN fails too
                return {"error": f"its output differs from dygraph's by {difference:.1e} (max |d| / max |x|, "
                                 f"tolerance {TOLERANCE:g})", "difference": difference}
            times = []
            for _ in range(TIMED_RUNS if timed else 0):
                tic = time.perf_counter()
                [o.numpy() for o in program(x)]  # a host copy: waits for a device too
                times.append(time.perf_counter() - tic)
        return {"difference": difference, **({"seconds": min(times)} if times else {})}

    # -- building -----------------------------------------------------------------------------
    def _eager_program(self, key: Shape) -> Program:
        program = PrefixProgram(self.model, self.replay, key)
        return lambda x: program(x)

    def _build(self, name: str, key: Shape, x: paddle.Tensor) -> Program:
        """The prefix for inputs of shape ``[N, *key]`` on engine ``name``."""
        from paddle.static import InputSpec
        program = PrefixProgram(self.model, self.replay, key)
        static = paddle.jit.to_static(program, input_spec=[InputSpec([None, *key], x.dtype, name="x")],
                                      full_graph=True)
        if name == "inference":
            return self._predictor(static, x)  # jit.save traces it; running it here would only cost memory
        with eval_mode(program), paddle.no_grad():
            static(x)  # traced now, in eval mode
        program.training = False  # the wrapper stays in eval: its calls run the inference program
        return static

    def _predictor(self, static: paddle.nn.Layer, x: paddle.Tensor) -> Program:
        """The traced prefix saved to a temporary directory and loaded into a ``paddle.inference`` predictor."""
        from paddle import inference
        from ..export.model_files import PARAMS, PIR_MODEL, PREFIX
        from ..export.predictor_config import inference_config
        device = paddle.device.get_device()
        use_gpu = device.startswith("gpu")
        with tempfile.TemporaryDirectory(prefix="ppfreeze-prefix-") as tmp, eval_mode(static):
            paddle.jit.save(static, os.path.join(tmp, PREFIX))
            model_file = os.path.join(tmp, PIR_MODEL)
            if not os.path.exists(model_file):  # FLAGS_enable_pir_api=0: the legacy program format
                model_file = os.path.join(tmp, f"{PREFIX}.pdmodel")
            config = inference_config(model_file, os.path.join(tmp, PARAMS), use_gpu=use_gpu, gpu_mem=256,
                                      gpu_id=int(device.split(":")[1]) if ":" in device else 0,
                                      cpu_num_threads=int(os.environ.get("OMP_NUM_THREADS") or 1),
                                      use_tensorrt=self.use_tensorrt and use_gpu, max_batch_size=int(x.shape[0]))
            predictor = inference.create_predictor(config)  # reads both files now

        def run(inputs: paddle.Tensor) -> List[paddle.Tensor]:
            # the predictor may write every run into the same output buffers: the step keeps its own copy
            return [out.clone() for out in predictor.run([inputs])]
        return run


@contextlib.contextmanager
def eval_mode(layer: paddle.nn.Layer) -> Iterator[None]:
    """``layer.eval()`` for the context; every sublayer's ``training`` flag is restored afterwards."""
    flags = [(sub, sub.training) for sub in [layer] + layer.sublayers()]
    layer.eval()
    try:
        yield
    finally:
        for sub, training in flags:
            sub.training = training


def _agree(seconds: List[float]) -> List[float]:
    """Under DataParallel every rank must pick the same engine: the slowest rank's times count (inf: failed)."""
    if paddle.distributed.get_world_size() <= 1:
        return seconds
    values = paddle.to_tensor(np.array([s if np.isfinite(s) else np.inf for s in seconds], dtype="float32"))
    paddle.distributed.all_reduce(values, op=paddle.distributed.ReduceOp.MAX)
    return [float(v) for v in values.numpy()]


def _first_line(error: Exception) -> str:
    text = str(error).strip().splitlines()
    return text[0][:300] if text else ""
