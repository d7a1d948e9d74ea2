"""Classify images with an exported model on paddle.inference (no training code involved).

    python deploy/python/predict_cls.py -c deploy/configs/inference_cls.yaml \
        -o Global.infer_imgs=img.jpg -o Global.inference_model_dir=./inference

Preprocessing and Top-k post-processing come from the model's inference.yml unless the deploy
config has PreProcess / PostProcess sections. Prints one line per image; Global.save_results
writes them as JSON Lines, batch by batch. An image that cannot be used (unreadable, damaged)
is named in the log (and in the results, with its "error"), the others are still predicted,
and the run exits 3 at the end, saying how many failed.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any, Callable, Dict, List, Optional

import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # first: our utils.py / predictor.py

from ppfreeze.utils.images import batched, list_images, preprocess_images  # noqa: E402
from utils import ImageFailures, ResultWriter, build_pipeline, load_deploy_config, run_deploy  # noqa: E402

logger = logging.getLogger("deploy")



def build_predictor(glob: Dict[str, Any]):
    """A :class:`predictor.Predictor` from the deploy ``Global`` section."""
    from predictor import Predictor
    return Predictor(glob["inference_model_dir"], use_gpu=glob["use_gpu"], gpu_mem=glob["gpu_mem"],
                     gpu_id=glob["gpu_id"], enable_mkldnn=glob["enable_mkldnn"],
                     cpu_num_threads=glob["cpu_num_threads"], use_fp16=glob["use_fp16"],
                     use_tensorrt=glob["use_tensorrt"], use_onnx=glob["use_onnx"], ir_optim=glob["ir_optim"],
                     max_batch_size=glob["batch_size"])


def _format(result: Dict[str, Any]) -> str:
    if "class_ids" in result:
        return (f"{result['file_name']}:\tclass id(s): {result['class_ids']}, score(s): {result['scores']}, "
                f"label_name(s): {result['label_names']}")
    if "output" in result:
        return f"{result['file_name']}:\toutput shape {np.shape(result['output'])}"
    # other post-processes (attributes, thresholds, scores): what they return
    return f"{result['file_name']}:\t" + ", ".join(f"{k}: {v}" for k, v in result.items() if k != "file_name")


def predict(cfg: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Run preprocess -> predictor -> post-process over ``Global.infer_imgs``; returns one dict per image.

    Images that cannot be used are skipped (and reported); a DataIntegrityError at the end
    says how many, after every other image was predicted and saved.
    """
    glob = cfg["Global"]
    pipeline = build_pipeline(cfg, glob["inference_model_dir"])
    predictor = build_predictor(glob)
    logger.info("backend: %s", predictor.backend)
    paths = list_images(glob["infer_imgs"], "Global.infer_imgs")
    results: List[Dict[str, Any]] = []
    timer = _Timer()
    with ResultWriter(glob.get("save_results")) as writer:
        failures = ImageFailures(writer)
        for chunk in batched(paths, glob["batch_size"]):
            arrays, good, failed = timer.time("preprocess", lambda: preprocess_images(chunk, pipeline.ops))
            failures.add(failed)
            if not arrays:
                continue
            pipeline.check_input(arrays[0])
            output = timer.time("inference", lambda: predictor.run(np.stack(arrays)))
            batch_results = timer.time("postprocess", lambda: _postprocess(pipeline, output, good))
            for r in batch_results:
                print(_format(r))
            writer.write(batch_results)
            results.extend(batch_results)
    if glob["enable_benchmark"]:
        print(timer.summary(len(results)))
    saved = f", saved to {glob['save_results']}" if glob.get("save_results") else ""
    failures.raise_if_any(len(paths), f"the other {len(results)} were predicted{saved}")
    return results


def _postprocess(pipeline: Any, output: np.ndarray, paths: List[str]) -> List[Dict[str, Any]]:
    return pipeline.postprocess(output, paths)


class _Timer:
    """Accumulated seconds per stage, for ``Global.enable_benchmark``."""

    def __init__(self):
        self.seconds: Dict[str, float] = {}

    def time(self, stage: str, fn: Callable[[], Any]) -> Any:
        tic = time.perf_counter()
        out = fn()
        self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - tic
        return out

    def summary(self, images: int) -> str:
        per_image = ", ".join(f"{k} {1000 * v / max(images, 1):.2f} ms" for k, v in self.seconds.items())
        return f"benchmark over {images} images, per image: {per_image}"


def main(argv: Optional[List[str]] = None) -> int:
    return run_deploy("Classify images with an exported model (paddle.inference).",
                      lambda args: load_deploy_config(args.config, args.override), predict, argv)

if __name__ == "__main__":
    sys.exit(main())
