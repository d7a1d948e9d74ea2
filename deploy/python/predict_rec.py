"""Search a gallery with query images: image -> top-k gallery labels and scores.

    python deploy/python/predict_rec.py -c deploy/configs/inference_rec.yaml \
        -o Global.infer_imgs=query.jpg -o IndexProcess.index_dir=./gallery_index

Features come from the exported recognition model (``Global.rec_inference_model_dir``),
L2-normalised like the gallery's; ``IndexProcess.return_k`` matches per image are kept when
they pass ``IndexProcess.score_thres``. The index must have been built with the same model.
Without an ``IndexProcess`` section (PaddleClas's ``inference_rec.yaml``) the tool prints each
image's feature vector instead, as PaddleClas's ``predict_rec.py`` does. PaddleClas's detector
settings (``inference_general.yaml``) are set aside with a warning: each image is searched whole.
``Global.save_results`` is written as JSON Lines, batch by batch; an image that cannot be used
is named (in the log and the results) and the others are still searched; the run then exits 3
saying how many failed.
"""
from __future__ import annotations

import logging
import os
import sys
from typing import Any, Dict, List, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from build_gallery import FeatureExtractor, load_rec_config  # noqa: E402  (also sets sys.path)
from utils import ImageFailures, ResultWriter, run_deploy  # noqa: E402
from ppfreeze.retrieval import Searcher  # noqa: E402
from ppfreeze.utils.images import list_images  # noqa: E402

logger = logging.getLogger("deploy")


def predict(cfg: Dict[str, Any]) -> List[Dict[str, Any]]:
    """Per usable query image ``{"file_name", "results": [{"label", "score", "id"}, ...]}``; without
    an ``IndexProcess`` section (PaddleClas's ``inference_rec.yaml``) ``{"file_name", "features"}``."""
    glob, ip = cfg["Global"], cfg["IndexProcess"]
    extractor = FeatureExtractor(cfg)
    searcher = None if ip is None else Searcher(ip["index_dir"], return_k=ip["return_k"],
                                                score_thres=ip["score_thres"], expected_model_hash=extractor.model_hash)
    paths = list_images(glob["infer_imgs"], "Global.infer_imgs")
    results: List[Dict[str, Any]] = []
    with ResultWriter(glob.get("save_results")) as writer:
        failures = ImageFailures(writer)
        for good, feats, failed in extractor.batches(paths):
            failures.add(failed)
            if not good:
                continue
            batch = _search(searcher, good, feats) if searcher is not None else _features(good, feats)
            writer.write(batch)
            results.extend(batch)
    saved = f", saved to {glob['save_results']}" if glob.get("save_results") else ""
    failures.raise_if_any(len(paths), f"the other {len(results)} were {'searched' if searcher else 'embedded'}{saved}")
    return results


def _search(searcher: Any, paths: List[str], feats: Any) -> List[Dict[str, Any]]:
    batch = [{"file_name": path, "results": matches} for path, matches in zip(paths, searcher.search_features(feats))]
    for r in batch:
        found = ", ".join(f"{m['label']} ({m['score']:.4f})" for m in r["results"]) or "no match above score_thres"
        print(f"{r['file_name']}:\t{found}")
    return batch


def _features(paths: List[str], feats: Any) -> List[Dict[str, Any]]:
    """PaddleClas's predict_rec.py: print each image's (L2-normalised) feature vector."""
    batch = [{"file_name": path, "features": [float(v) for v in feat]} for path, feat in zip(paths, feats)]
    for r in batch:
        print(f"{r['file_name']}:\t{r['features']}")
    return batch


def main(argv: Optional[List[str]] = None) -> int:
    required = ["Global.infer_imgs", "Global.rec_inference_model_dir", "IndexProcess.index_dir"]
    return run_deploy("Retrieve gallery labels for query images (paddle.inference + faiss); without an "
                      "IndexProcess section, print their features.",
                      lambda args: load_rec_config(args.config, args.override, required, "predict_rec",
                                                   index_optional=True), predict, argv)

if __name__ == "__main__":
    sys.exit(main())
