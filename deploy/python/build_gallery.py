"""Build, extend or prune a retrieval gallery index with an exported recognition model.

    python deploy/python/build_gallery.py -c deploy/configs/build_gallery.yaml \
        -o Global.rec_inference_model_dir=./inference/rec -o IndexProcess.index_operation=new

``IndexProcess.data_file`` lists ``image_path<TAB>label`` lines (paths relative to
``image_root``). ``index_operation``: ``new`` builds ``index_dir`` from scratch, ``append``
adds the listed images to it, ``remove`` drops every item whose label is listed. Features
are L2-normalised; the index records a hash of the model's weights, so searching it with
another model is refused. This module also holds the config loading and feature extraction
that ``predict_rec.py`` shares.

Concurrent runs on one index take turns: features are extracted first, then the index's write
lock (``<index_dir>.lock``, waited for up to ``IndexProcess.lock_timeout`` seconds) is held
from loading the index to saving it, so no run's items are lost. An image that cannot be used
is named in the log and left out; the others are indexed and saved, then the run exits 3
saying how many failed.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Any, Dict, Iterator, List, Optional, Tuple

import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # first: our utils.py / predictor.py

from ppfreeze.config.errors import ConfigError, did_you_mean  # noqa: E402
from ppfreeze.config.loader import load_config  # noqa: E402
from ppfreeze.config.expr import to_number  # noqa: E402
from ppfreeze.retrieval import GalleryIndex, read_gallery_file  # noqa: E402
from ppfreeze.retrieval.lock import DEFAULT_LOCK_TIMEOUT, index_lock  # noqa: E402
from ppfreeze.utils.images import batched, preprocess_images  # noqa: E402
from ppfreeze.utils.io import file_sha256  # noqa: E402
from utils import ImageFailures, build_pipeline, decide_cpu_threads, run_deploy  # noqa: E402

logger = logging.getLogger("deploy")

# PaddleClas deploy keys (inference_general.yaml / build_gallery yaml) -> default
GLOBAL_DEFAULTS: Dict[str, Any] = {
    "rec_inference_model_dir": None, "infer_imgs": None, "batch_size": 32, "use_gpu": False, "gpu_mem": 8000,
    "gpu_id": 0, "enable_mkldnn": True, "cpu_num_threads": None, "use_fp16": False, "use_tensorrt": False,
    "use_onnx": False, "ir_optim": True, "save_results": None,
}
INDEX_DEFAULTS: Dict[str, Any] = {
    "image_root": "", "data_file": None, "index_dir": None, "index_method": "HNSW32", "dist_type": "IP",
    "embedding_size": None, "delimiter": "\t", "index_operation": "new", "return_k": 5, "score_thres": None,
    # PaddleClas: the batch size of gallery feature extraction (default: Global.batch_size)
    "batch_size": None,
    # ours: seconds to wait for another writer of index_dir (0: fail at once)
    "lock_timeout": DEFAULT_LOCK_TIMEOUT,
}
OPERATIONS = ("new", "append", "remove")
SECTIONS = ("Global", "IndexProcess", "RecPreProcess", "RecPostProcess")
# PaddleClas's main-body detector (its predict_system.py); ppfreeze has none
DETECTOR_SECTIONS = ("DetPreProcess", "DetPostProcess")
DETECTOR_GLOBAL_KEYS = ("det_inference_model_dir", "rec_nms_thresold", "threshold", "max_det_results",
                        "labe_list", "label_list", "image_shape")
IGNORED_GLOBAL_KEYS = ("enable_benchmark", "enable_profile", "benchmark")
# evaluation_general.yaml's dataset for PaddleClas's retrieval evaluation: no effect on these tools
IGNORED_SECTIONS = ("Eval",)
# PaddleClas keys of binary (Hamming) retrieval, which ppfreeze does not implement
BINARY_INDEX_KEYS = ("hamming_radius",)
# PaddleClas 2.2's gallery configs (its own vector-search engine, before faiss)
OLD_INDEX_PATH = "index_path"
OLD_ENGINE_KEYS = ("pq_size",)


# ----------------------------------------------------------------------------- shared with predict_rec
def load_rec_config(path: str, overrides: Optional[List[str]], required: List[str],
                    tool: str = "build_gallery", index_optional: bool = False) -> Dict[str, Any]:
    """Load a PaddleClas-style recognition deploy yaml; check its keys, fill defaults.

    PaddleClas's detector parts (``DetPreProcess``, ``det_inference_model_dir`` ...) are set
    aside: gallery building never uses them (nor does PaddleClas's), and ``predict_rec`` searches
    each image whole (a warning says so). What would change the results is refused: a detector-only
    config, ``RecPostProcess`` steps, binary (Hamming) search.

    Args:
        required: ``Section.key`` names that must be set (e.g. ``IndexProcess.index_dir``).
        tool: ``build_gallery`` or ``predict_rec`` (what the detector's absence means).
        index_optional: without an ``IndexProcess`` section, ``cfg["IndexProcess"]`` is None
            (``predict_rec`` then extracts features, as PaddleClas's ``predict_rec.py`` does) and
            the ``IndexProcess.*`` names of ``required`` are not required.
    """
    cfg = load_config(path, overrides, validate=False)
    _set_detector_aside(cfg, path, tool)
    for section in list(cfg):
        if section in IGNORED_SECTIONS:
            logger.warning("%s: PaddleClas's retrieval-evaluation section has no effect on %s; ignored", section, tool)
            cfg.pop(section)
        elif section not in SECTIONS:
            raise ConfigError(section, f"unknown section in {path}",
                              f"known: {', '.join(SECTIONS)}.{did_you_mean(section, SECTIONS)}")
    _refuse_rec_postprocess(cfg.pop("RecPostProcess", None))
    index = cfg.get("IndexProcess")
    if isinstance(index, dict):
        for key in BINARY_INDEX_KEYS:
            if key in index:
                raise ConfigError(f"IndexProcess.{key}", "binary features searched by Hamming distance are not "
                                                         "implemented in ppfreeze's recognition tools",
                                  "use float features: dist_type IP (cosine) or L2, without hamming_radius")
        if index.get("dist_type") == "hamming":
            raise ConfigError("IndexProcess.dist_type", "hamming (binary features) is not implemented in ppfreeze's "
                                                        "recognition tools", "use IP (cosine) or L2")
        _adopt_old_index_keys(index)
    cfg["Global"] = _with_defaults(cfg.get("Global"), GLOBAL_DEFAULTS, "Global", path, IGNORED_GLOBAL_KEYS)
    if index is None and index_optional:
        cfg["IndexProcess"] = None
        return _check_required(cfg, [n for n in required if not n.startswith("IndexProcess.")], path)
    cfg["IndexProcess"] = _with_defaults(index, INDEX_DEFAULTS, "IndexProcess", path)
    _check_required(cfg, required, path)
    value = cfg["IndexProcess"]["batch_size"]
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError("IndexProcess.batch_size", f"expected an integer >= 1, got {value!r}")
    timeout = to_number(cfg["IndexProcess"]["lock_timeout"], "IndexProcess.lock_timeout")
    if not timeout >= 0:
        raise ConfigError("IndexProcess.lock_timeout", f"expected seconds >= 0, got {timeout!r}")
    cfg["IndexProcess"]["lock_timeout"] = timeout
    decide_cpu_threads(cfg["Global"])
    return cfg


def _check_required(cfg: Dict[str, Any], required: List[str], path: str) -> Dict[str, Any]:
    for name in required:
        section, key = name.split(".")
        if cfg[section].get(key) in (None, ""):
            raise ConfigError(name, f"not set in {path}", f"add -o {name}=...")
    value = cfg["Global"]["batch_size"]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError("Global.batch_size", f"expected an integer >= 1, got {value!r}")
    return cfg


def _adopt_old_index_keys(index: Dict[str, Any]) -> None:
    """PaddleClas 2.2's ``index_path`` is today's ``index_dir``; its engine's ``pq_size`` has no faiss
    meaning (``index_method`` picks the faiss index, HNSW32 by default): both said once in the log."""
    if OLD_INDEX_PATH in index:
        if index.get("index_dir") not in (None, "", index[OLD_INDEX_PATH]):
            raise ConfigError("IndexProcess.index_path", f"is {index[OLD_INDEX_PATH]!r} and index_dir is "
                                                         f"{index['index_dir']!r}: they name the same thing",
                              "keep index_dir only")
        index["index_dir"] = index.pop(OLD_INDEX_PATH)
        logger.warning("IndexProcess.index_path: PaddleClas 2.2's name for index_dir; used as index_dir")
    for key in OLD_ENGINE_KEYS:
        if key in index:
            index.pop(key)
            logger.warning("IndexProcess.%s: a setting of PaddleClas 2.2's own search engine; ppfreeze builds the "
                           "faiss index IndexProcess.index_method (%s): ignored", key,
                           index.get("index_method", INDEX_DEFAULTS["index_method"]))


def _set_detector_aside(cfg: Dict[str, Any], path: str, tool: str) -> None:
    """Remove PaddleClas's detector sections and keys; refuse a config that is only a detector's."""
    glob = cfg.get("Global") if isinstance(cfg.get("Global"), dict) else {}
    found = [s for s in DETECTOR_SECTIONS if s in cfg] + [f"Global.{k}" for k in DETECTOR_GLOBAL_KEYS if k in glob]
    if not found:
        return
    if glob.get("det_inference_model_dir") and not glob.get("rec_inference_model_dir"):
        raise ConfigError("Global.det_inference_model_dir", f"{path} runs PaddleClas's main-body detector only, and "
                                                            f"ppfreeze has no detector",
                          "ppfreeze's recognition tools need Global.rec_inference_model_dir (a model exported by "
                          "tools/export_model.py)")
    for section in DETECTOR_SECTIONS:
        cfg.pop(section, None)
    for key in DETECTOR_GLOBAL_KEYS:
        glob.pop(key, None)
    if tool == "predict_rec":
        logger.warning("%s: no main-body detector runs here: each image is searched whole (PaddleClas's "
                       "predict_system.py searches the whole image too, plus every box its detector finds)",
                       ", ".join(found))
    else:
        logger.info("%s: detector settings, not used to build a gallery (as in PaddleClas)", ", ".join(found))


def _refuse_rec_postprocess(post: Any) -> None:
    """``RecPostProcess: null`` is what PaddleClas's float-feature configs say; steps are refused."""
    if not post:
        return
    name = post.get("main_indicator") if isinstance(post, dict) else None
    what = ("Binarize (binary features searched by Hamming distance)" if name == "Binarize"
            else f"{name or post!r}")
    raise ConfigError("RecPostProcess", f"{what} is not implemented in ppfreeze's recognition tools (features are "
                                        f"L2-normalised and searched as they are)", "set RecPostProcess: null")


def _with_defaults(section: Any, defaults: Dict[str, Any], name: str, path: str,
                   ignored: tuple = ()) -> Dict[str, Any]:
    section = section or {}
    if not isinstance(section, dict):
        raise ConfigError(name, f"expected a mapping in {path}, got {type(section).__name__}")
    for key in list(section):
        if key in ignored:
            logger.warning("%s.%s is a PaddleClas key that ppfreeze ignores", name, key)
            section.pop(key)
        elif key not in defaults:
            raise ConfigError(f"{name}.{key}", f"unknown key in {path}",
                              did_you_mean(key, defaults).strip() or f"known: {', '.join(defaults)}")
    return {**defaults, **{k: v for k, v in section.items() if v is not None}}


class FeatureExtractor:
    """Image paths -> L2-normalised features with the exported model and its preprocessing.

    Args:
        batch_size: images per predictor run (default ``Global.batch_size``).
    """

    def __init__(self, cfg: Dict[str, Any], batch_size: Optional[int] = None):
        from predictor import Predictor
        glob = cfg["Global"]
        model_dir = glob["rec_inference_model_dir"]
        self.batch_size = batch_size or glob["batch_size"]
        self.pipeline = build_pipeline({"RecPreProcess": cfg.get("RecPreProcess")}, model_dir, "RecPreProcess")
        self.predictor = Predictor(model_dir, use_gpu=glob["use_gpu"], gpu_mem=glob["gpu_mem"], gpu_id=glob["gpu_id"],
                                   enable_mkldnn=glob["enable_mkldnn"], cpu_num_threads=glob["cpu_num_threads"],
                                   use_fp16=glob["use_fp16"], use_tensorrt=glob["use_tensorrt"],
                                   use_onnx=glob["use_onnx"], ir_optim=glob["ir_optim"],
                                   max_batch_size=self.batch_size)
        self.model_hash = weights_hash(self.predictor.files)
        logger.info("backend: %s", self.predictor.backend)

    def batches(self, paths: List[str]) -> Iterator[Tuple[List[str], np.ndarray, List[Tuple[str, str]]]]:
        """Per batch: ``(paths used, their features [n, D], [(path, what was wrong), ...])``.

        An image that cannot be used is reported and left out; the others go on.
        """
        for chunk in batched(list(paths), self.batch_size):
            arrays, good, failed = preprocess_images(chunk, self.pipeline.ops)
            feats = np.empty((0, 0), np.float32)
            if arrays:
                self.pipeline.check_input(arrays[0])
                feats = np.asarray(self.predictor.run(np.stack(arrays)), dtype=np.float32).reshape(len(good), -1)
                feats = l2_normalize(feats)
            yield good, feats, failed

    def __call__(self, paths: List[str]) -> np.ndarray:
        """Features of every path, in order (``Searcher.search_images``); any unusable image raises."""
        feats = []
        for _, batch_feats, failed in self.batches(paths):
            if failed:
                path, reason = failed[0]
                raise ValueError(f"cannot use image {path}: {reason}")
            feats.append(batch_feats)
        return np.concatenate(feats) if feats else np.empty((0, 0), np.float32)


def l2_normalize(feats: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero)."""
    norms = np.linalg.norm(feats, axis=1, keepdims=True)
    return feats / np.maximum(norms, 1e-12)


def weights_hash(files: Any) -> str:
    """sha256 of the exported weights (or ONNX file): ties an index to the model that built it."""
    return file_sha256(files.params_file or files.onnx_file)



# ----------------------------------------------------------------------------- gallery building
def progress_bar(done: int, total: int, width: int = 30) -> None:
    """One self-overwriting line on stderr: ``[=====>    ] 120/240 images``."""
    filled = width * done // max(total, 1)
    sys.stderr.write(f"\r[{'=' * filled}{'>' if filled < width else ''}{' ' * (width - filled - 1)}] "
                     f"{done}/{total} images")
    if done >= total:
        sys.stderr.write("\n")
    sys.stderr.flush()


def build_gallery(cfg: Dict[str, Any]) -> GalleryIndex:
    """Run ``IndexProcess.index_operation`` and save the index; returns it."""
    ip = cfg["IndexProcess"]
    operation = ip["index_operation"]
    if operation not in OPERATIONS:
        raise ConfigError("IndexProcess.index_operation", f"expected one of {OPERATIONS}, got {operation!r}",
                          did_you_mean(str(operation), OPERATIONS).strip() or None)
    entries = read_gallery_file(ip["data_file"], ip["image_root"], ip["delimiter"],
                                check_images=operation != "remove")
    if not entries:
        raise ConfigError("IndexProcess.data_file", f"{ip['data_file']} lists no images")
    extractor = FeatureExtractor(cfg, ip["batch_size"])
    failures = ImageFailures()
    if operation != "remove":   # the slow part, before taking the lock
        feats, labels = _extract(extractor, entries, failures)
        if not labels:
            failures.raise_if_any(len(entries), f"{ip['index_dir']} was left as it was")
    with index_lock(ip["index_dir"], ip["lock_timeout"]):   # load -> change -> save: one writer at a time
        if operation == "new":
            index = GalleryIndex.create(ip["embedding_size"], ip["index_method"], ip["dist_type"])
        else:
            index = GalleryIndex.load(ip["index_dir"], extractor.model_hash, ip["embedding_size"])
        if operation == "remove":
            removed = index.remove(labels=[label for _, label in entries])
            logger.info("removed %d items (%d labels listed)", removed, len({label for _, label in entries}))
        else:
            index.add(feats, labels)
        index.save(ip["index_dir"], model_hash=extractor.model_hash, lock_timeout=ip["lock_timeout"])
    logger.info("%s: %d items in %s (%s, %s)", operation, len(index), ip["index_dir"], ip["index_method"],
                ip["dist_type"])
    failures.raise_if_any(len(entries), f"the other {len(entries) - len(failures.failed)} were indexed and "
                                        f"{ip['index_dir']} saved")
    return index


def _extract(extractor: FeatureExtractor, entries: List[Tuple[str, str]],
             failures: ImageFailures) -> Tuple[np.ndarray, List[str]]:
    """Features and labels of the usable gallery images (the others go to ``failures``)."""
    feats, labels, done = [], [], 0
    for chunk in batched(entries, extractor.batch_size):
        for good, batch_feats, failed in extractor.batches([path for path, _ in chunk]):
            failures.add(failed)
            bad = {path for path, _ in failed}
            if good:
                feats.append(batch_feats)
                labels.extend(label for path, label in chunk if path not in bad)
        done += len(chunk)
        progress_bar(done, len(entries))
    if not feats:
        return np.empty((0, 0), np.float32), []
    return np.concatenate(feats), labels


def main(argv: Optional[List[str]] = None) -> int:
    required = ["Global.rec_inference_model_dir", "IndexProcess.data_file", "IndexProcess.index_dir",
                "IndexProcess.embedding_size"]
    return run_deploy("Build / append to / remove from a retrieval gallery index.",
                      lambda args: load_rec_config(args.config, args.override, required), build_gallery, argv)

if __name__ == "__main__":
    sys.exit(main())
