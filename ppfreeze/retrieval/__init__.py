"""Image retrieval, deploy half: gallery list files, the faiss gallery index, search, metrics.

numpy + faiss only (no paddle), so deploy tools can use it without the training stack.
"""
from .gallery_file import normalize_delimiter, read_gallery_file
from .index import DIST_TYPES, INDEX_METHODS, GalleryIndex, IndexMismatchError
from .lock import IndexBusyError, index_lock
from .metrics import mean_average_precision, recall_at_k
from .searcher import Searcher

__all__ = ["normalize_delimiter", "read_gallery_file", "GalleryIndex", "IndexMismatchError", "INDEX_METHODS",
           "DIST_TYPES", "Searcher", "index_lock", "IndexBusyError", "recall_at_k", "mean_average_precision"]
