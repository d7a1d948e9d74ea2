"""Deploy-side config: PaddleClas's deploy keys, and the pre/post-processing to run.

By default the PreProcess / PostProcess sections come from the exported ``inference.yml``, so
deploy runs exactly the preprocessing the model was evaluated with; a deploy yaml that has
these sections overrides them (a log line says so). Pure Python: no paddle, no training stack.
"""
from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))

from ppfreeze.config.errors import ConfigError, did_you_mean  # noqa: E402
from ppfreeze.config.loader import load_config  # noqa: E402
from ppfreeze.config.schema import check_typed_keys  # noqa: E402
from ppfreeze.errors import DataIntegrityError, PPFreezeError, report  # noqa: E402
from ppfreeze.data import POSTPROCESS, create_operators  # noqa: E402
from ppfreeze.export.inference_yml import read_inference_yml  # noqa: E402
from ppfreeze.runtime_env import configure_threads, current_choice  # noqa: E402
from ppfreeze.utils.builder import split_component  # noqa: E402

logger = logging.getLogger("deploy")

_OPT_STR = (str, type(None))
# key -> (accepted types, default); PaddleClas's deploy Global keys plus use_onnx / save_results.
GLOBAL_DEFAULTS: Dict[str, Tuple[tuple, Any]] = {
    "infer_imgs": ((str,), None), "inference_model_dir": ((str,), None), "batch_size": ((int,), 1),
    "use_gpu": ((bool,), False), "gpu_mem": ((int,), 8000), "gpu_id": ((int,), 0),
    "enable_mkldnn": ((bool,), True), "cpu_num_threads": ((int, type(None)), None), "use_fp16": ((bool,), False),
    "use_tensorrt": ((bool,), False), "use_onnx": ((bool,), False), "ir_optim": ((bool,), True),
    "enable_benchmark": ((bool,), False), "save_results": (_OPT_STR, None),
}
# PaddleClas keys without an effect here (``benchmark``: its auto_log timing, see enable_benchmark)
IGNORED_GLOBAL_KEYS = ("enable_profile", "enable_calib", "benchmark")
SECTIONS = ("Global", "PreProcess", "PostProcess")
REQUIRED = ("infer_imgs", "inference_model_dir")


def load_deploy_config(path: str, overrides: Optional[List[str]] = None) -> Dict[str, Any]:
    """Load a deploy yaml (``-c``/``-o`` as in training), check its keys, fill defaults."""
    cfg = load_config(path, overrides, validate=False)
    for section in cfg:
        if section not in SECTIONS:
            raise ConfigError(section, f"unknown section in {path}",
                              f"known: {', '.join(SECTIONS)}.{did_you_mean(section, SECTIONS)}")
    glob = cfg.get("Global") or {}
    if not isinstance(glob, dict):
        raise ConfigError("Global", f"expected a mapping in {path}, got {type(glob).__name__}")
    check_typed_keys(glob, {k: types for k, (types, _) in GLOBAL_DEFAULTS.items()}, "Global", f" in {path}",
                     IGNORED_GLOBAL_KEYS, program="ppfreeze deploy")
    for key in REQUIRED:
        if not glob.get(key):
            raise ConfigError(f"Global.{key}", f"not set in {path}", f"add -o Global.{key}=...")
    if glob.get("batch_size", 1) < 1:
        raise ConfigError("Global.batch_size", f"must be >= 1, got {glob['batch_size']}")
    defaults = {k: d for k, (_, d) in GLOBAL_DEFAULTS.items()}
    cfg["Global"] = {**defaults, **{k: v for k, v in glob.items() if v is not None}}
    decide_cpu_threads(cfg["Global"])
    return cfg


def decide_cpu_threads(glob: Dict[str, Any]) -> int:
    """``Global.cpu_num_threads`` decided before paddle is imported (``ppfreeze/runtime_env.py``):
    the given count, else the user's OMP_NUM_THREADS, else every available core; written back."""
    glob["cpu_num_threads"] = configure_threads(glob.get("cpu_num_threads"), "Global.cpu_num_threads")
    logger.info("CPU threads: %d (%s)", glob["cpu_num_threads"], current_choice().source)
    return glob["cpu_num_threads"]


def _postprocess_component(post: Dict[str, Any], key: str) -> Tuple[Dict[str, Any], Optional["SavePreLabel"]]:
    """The post-process to run and PaddleClas's ``SavePreLabel`` (or None), from ``{name: X, ...}``,
    ``{X: {...}}`` or PaddleClas's ``{main_indicator: X, X: {...}, SavePreLabel: {save_dir}}``."""
    if "main_indicator" not in post:
        name, kwargs = split_component(post, key)
        return {"name": name, **kwargs}, None
    name = post["main_indicator"]
    if name not in post:
        raise ConfigError(f"{key}.main_indicator", f"{name!r} has no section {key}.{name}",
                          f"add {key}.{name}: {{...}} (its arguments), or name one of: "
                          f"{', '.join(k for k in post if k != 'main_indicator')}")
    save = post.get("SavePreLabel")
    saver = SavePreLabel(**_save_pre_label_args(save, f"{key}.SavePreLabel")) if "SavePreLabel" in post else None
    others = [k for k in post if k not in ("main_indicator", name, "SavePreLabel")]
    if others:   # PaddleClas runs them too, but prints only main_indicator's result
        logger.warning("%s: only main_indicator %s is reported; not run: %s", key, name, ", ".join(others))
    return {"name": name, **(post.get(name) or {})}, saver


def _save_pre_label_args(section: Any, key: str) -> Dict[str, Any]:
    if not isinstance(section, dict) or not isinstance(section.get("save_dir"), str) or set(section) != {"save_dir"}:
        raise ConfigError(key, f"expected {{save_dir: <folder>}}, got {section!r}",
                          "SavePreLabel copies each image into <save_dir>/<predicted class id>/")
    return section


class SavePreLabel:
    """PaddleClas's ``SavePreLabel``: copy each image into ``<save_dir>/<predicted class id>/``
    (the arg-max of the model's output), e.g. to sort images for labelling."""

    def __init__(self, save_dir: str):
        self.save_dir = save_dir

    def __call__(self, output: Any, paths: List[str]) -> None:
        import numpy as np
        import shutil
        for path, row in zip(paths, np.asarray(output)):
            folder = os.path.join(self.save_dir, str(int(np.argmax(row))))
            os.makedirs(folder, exist_ok=True)
            shutil.copy(path, folder)


class Pipeline:
    """Preprocessing ops, post-process and what the model takes, for one deploy run.

    Attributes:
        ops: the preprocess ops (decoding first).
        post: ``post(output, paths) -> [result, ...]``, or None (raw outputs).
        channels: the model's input channels (``inference.yml`` image_shape), if known.
        ops_key: where the ops came from, for messages.
    """

    def __init__(self, ops: List[Callable], post: Optional[Callable], channels: Optional[int], ops_key: str,
                 saver: Optional[SavePreLabel] = None):
        self.ops, self.post, self.channels, self.ops_key, self.saver = ops, post, channels, ops_key, saver

    def check_input(self, array: Any) -> None:
        """A preprocessed image must be CHW with the model's channel count (a ConfigError otherwise;
        Paddle would stop in the middle of the convolution)."""
        shape = list(getattr(array, "shape", []))
        if self.channels is None or len(shape) != 3 or shape[0] == self.channels:
            return
        hint = ("add ToCHWImage after NormalizeImage" if shape[-1] == self.channels else
                f"give NormalizeImage channel_num: {self.channels}, or use the model exported for "
                f"{shape[0]}-channel input")
        raise ConfigError(self.ops_key, f"gives images of shape {shape}, but the model takes "
                                        f"{self.channels}-channel CHW input (its inference.yml image_shape)", hint)

    def postprocess(self, output: Any, paths: List[str]) -> List[Dict[str, Any]]:
        if self.saver is not None:
            self.saver(output, paths)
        if self.post is not None:
            return self.post(output, paths)
        return [{"file_name": p, "output": o.tolist()} for p, o in zip(paths, output)]


def build_pipeline(cfg: Dict[str, Any], model_dir: str, section: str = "PreProcess") -> Pipeline:
    """The ops and post-process of a deploy run: the deploy yaml's ``section`` (``PreProcess`` /
    ``RecPreProcess``) and ``PostProcess`` if given, else the model's ``inference.yml``.

    PaddleClas deploy ops start after decoding (``cv2.imread`` + BGR->RGB): that step is added
    in front unless the list starts with ``DecodeImage``; messages index the user's list as written.
    """
    meta = read_inference_yml(model_dir)
    if cfg.get(section):
        logger.info("%s from the deploy config overrides the exported inference.yml", section)
        ops_cfg, ops_key = (cfg[section] or {}).get("transform_ops"), f"{section}.transform_ops"
    elif meta.get("PreProcess"):
        ops_cfg, ops_key = meta["PreProcess"].get("transform_ops"), f"{model_dir}/inference.yml PreProcess"
    else:
        raise ConfigError(section, f"{model_dir} has no inference.yml and the deploy config no {section}",
                          f"re-export with tools/export_model.py, or add {section}: {{transform_ops: [...]}}")
    if not ops_cfg:
        raise ConfigError(ops_key, "no transform_ops", "list the preprocess ops, e.g. ResizeImage, NormalizeImage")
    ops = create_operators(ops_cfg, ops_key)
    if split_component(ops_cfg[0], f"{ops_key}[0]")[0] != "DecodeImage":
        ops = create_operators([{"DecodeImage": {"to_rgb": True}}], "(decoding added in front)") + ops
    shape = (meta.get("Global") or {}).get("image_shape")
    channels = shape[0] if isinstance(shape, list) and len(shape) == 3 else None
    if cfg.get("PostProcess"):
        logger.info("PostProcess from the deploy config overrides the exported inference.yml")
        post, post_key, base = cfg["PostProcess"], "PostProcess", os.getcwd()
    else:
        post, post_key, base = meta.get("PostProcess"), f"{model_dir}/inference.yml PostProcess", model_dir
    if not post:
        return Pipeline(ops, None, channels, ops_key)
    component, saver = _postprocess_component(post, post_key)
    id_map = component.get("class_id_map_file")
    if id_map and not os.path.isabs(id_map):
        component["class_id_map_file"] = os.path.join(base, id_map)
    return Pipeline(ops, POSTPROCESS.build(component, post_key), channels, ops_key, saver)


def run_deploy(description: str, load: Callable[[Any], Dict[str, Any]], job: Callable[[Dict[str, Any]], Any],
               argv: Optional[List[str]] = None) -> int:
    """Shared ``main`` of the deploy scripts: -c/-o, logging, a config mistake exits 2 with one line.

    ``load(args)`` turns the parsed arguments into the checked config; ``job(cfg)`` runs.
    """
    from ppfreeze.cli import build_parser
    args = build_parser(description).parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s] %(levelname)s: %(message)s")
    try:
        job(load(args))
    except PPFreezeError as e:
        return report(e)
    return 0


class ResultWriter:
    """``Global.save_results``: JSON Lines, one object per image, flushed to disk after every batch.

    A failure later in the run (a bad image, a crash, Ctrl-C) never discards what was already
    written. An existing file is replaced (a warning says so). ``path`` None writes nothing.
    """

    def __init__(self, path: Optional[str]):
        self.path = path
        self.count = 0
        self._file = None
        if path:
            if os.path.exists(path):
                logger.warning("Global.save_results: %s exists and is overwritten", path)
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
            self._file = open(path, "w", encoding="utf-8")

    def write(self, records: Iterable[Dict[str, Any]]) -> None:
        """Append ``records`` and push them to disk."""
        if self._file is None:
            return
        for record in records:
            self._file.write(json.dumps(record, ensure_ascii=False) + "\n")
            self.count += 1
        self._file.flush()
        os.fsync(self._file.fileno())

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None
            logger.info("results saved to %s (%d lines, JSON Lines)", self.path, self.count)

    def __enter__(self) -> "ResultWriter":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class ImageFailures:
    """Images a deploy tool could not use: each is logged (and written to the results) as it
    happens; :meth:`raise_if_any` ends the run non-zero once the others are done."""

    def __init__(self, writer: Optional[ResultWriter] = None):
        self.writer = writer
        self.failed: List[Tuple[str, str]] = []

    def add(self, failed: List[Tuple[str, str]]) -> None:
        for path, reason in failed:
            logger.error("%s: cannot use this image: %s", path, reason)
        self.failed.extend(failed)
        if self.writer is not None:
            self.writer.write({"file_name": path, "error": reason} for path, reason in failed)

    def raise_if_any(self, total: int, done: str) -> None:
        """Raise a DataIntegrityError naming the first failed image and how many failed of ``total``."""
        if not self.failed:
            return
        path, reason = self.failed[0]
        others = f" and {len(self.failed) - 1} more" if len(self.failed) > 1 else ""
        raise DataIntegrityError(path, f"{reason}{others}: {len(self.failed)} of {total} images could not be "
                                       f"used; {done}", "the log names every failed image")
