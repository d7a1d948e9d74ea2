"""Query a saved gallery: features (or images, through a feature extractor) -> top-k labels."""
from __future__ import annotations

from typing import Callable, Dict, List, Optional

import numpy as np

from ..config.errors import ConfigError
from ..config.expr import to_number
from .index import GalleryIndex, check_positive_int

Match = Dict[str, object]  # {"label": str, "score": float, "id": int}


class Searcher:
    """Top-k gallery matches above a score threshold (PaddleClas ``IndexProcess`` semantics).

    Args:
        index_dir: a directory saved by :meth:`GalleryIndex.save`.
        return_k: matches per query before thresholding (``IndexProcess.return_k``).
        score_thres: ``IndexProcess.score_thres``; IP keeps ``score >= thres``, L2 keeps
            ``distance <= thres`` (squared L2); ``None`` keeps all.
        extract_fn: image paths -> features [N, D]; needed only by :meth:`search_images`.
        expected_model_hash, expected_embedding_size: forwarded to :meth:`GalleryIndex.load`.
    """

    def __init__(self, index_dir: str, return_k: int = 5, score_thres: Optional[float] = None,
                 extract_fn: Optional[Callable[[List[str]], np.ndarray]] = None,
                 expected_model_hash: Optional[str] = None, expected_embedding_size: Optional[int] = None):
        check_positive_int(return_k, "IndexProcess.return_k")
        self.index = GalleryIndex.load(index_dir, expected_model_hash, expected_embedding_size)
        self.return_k = return_k
        self.score_thres = None if score_thres is None else to_number(score_thres, "IndexProcess.score_thres")
        self.extract_fn = extract_fn

    def search_features(self, feats: np.ndarray) -> List[List[Match]]:
        """One list of matches per feature row, best first, thresholded."""
        scores, ids, labels = self.index.search(feats, self.return_k)
        keep = ids >= 0
        if self.score_thres is not None:
            keep &= self.index.dist.within(scores, self.score_thres)
        return [[{"label": row_labels[j], "score": float(row_scores[j]), "id": int(row_ids[j])}
                 for j in np.flatnonzero(row_keep)]
                for row_scores, row_ids, row_labels, row_keep in zip(scores, ids, labels, keep)]

    def search_images(self, paths: List[str]) -> List[List[Match]]:
        """Extract features of ``paths`` with ``extract_fn`` and search them."""
        if self.extract_fn is None:
            raise ConfigError("Global.rec_inference_model_dir", "searching images needs a feature extractor",
                              "pass extract_fn (the exported recognition model's predictor) to Searcher")
        feats = np.asarray(self.extract_fn(list(paths)))
        if feats.ndim != 2 or len(feats) != len(paths):
            raise ValueError(f"extract_fn returned shape {feats.shape} for {len(paths)} images; "
                             "expected one feature row per image")
        return self.search_features(feats)
