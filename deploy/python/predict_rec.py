"""Search a gallery with query images: image -> top-k gallery labels and scores.

    python deploy/python/predict_rec.py -c deploy/configs/inference_rec.yaml \
        -o Global.infer_imgs=query.jpg -o IndexProcess.index_dir=./gallery_index

Features come from the exported recognition model (``Global.rec_inference_model_dir``),
L2-normalised like the gallery's; ``IndexProcess.return_k`` matches per image are kept when
they pass ``IndexProcess.score_thres``. The index must have been built with the same model.
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
    """One ``{"file_name", "results": [{"label", "score", "id"}, ...]}`` per usable query image."""
    glob, ip = cfg["Global"], cfg["IndexProcess"]
    extractor = FeatureExtractor(cfg)
    searcher = Searcher(ip["index_dir"], return_k=ip["return_k"], score_thres=ip["score_thres"],
                        expected_model_hash=extractor.model_hash)
    paths = list_images(glob["infer_imgs"], "Global.infer_imgs")
    results: List[Dict[str, Any]] = []
    with ResultWriter(glob.get("save_results")) as writer:
        failures = ImageFailures(writer)
        for good, feats, failed in extractor.batches(paths):
            failures.add(failed)
            if not good:
                continue
            batch = [{"file_name": path, "results": matches}
                     for path, matches in zip(good, searcher.search_features(feats))]
            for r in batch:
                found = ", ".join(f"{m['label']} ({m['score']:.4f})" for m in r["results"]) or \
                    "no match above score_thres"
                print(f"{r['file_name']}:\t{found}")
            writer.write(batch)
            results.extend(batch)
    saved = f", saved to {glob['save_results']}" if glob.get("save_results") else ""
    failures.raise_if_any(len(paths), f"the other {len(results)} were searched{saved}")
    return results


def main(argv: Optional[List[str]] = None) -> int:
    required = ["Global.infer_imgs", "Global.rec_inference_model_dir", "IndexProcess.index_dir"]
    return run_deploy("Retrieve gallery labels for query images (paddle.inference + faiss).",
                      lambda args: load_rec_config(args.config, args.override, required), predict, argv)

if __name__ == "__main__":
    sys.exit(main())
