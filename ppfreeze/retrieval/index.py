"""Gallery index: a faiss index with stable ids, a JSON id -> label map, checked atomic files.

``index_dir`` holds three files, replaced together (see :meth:`GalleryIndex.save`):

- ``vector.index``  -- ``faiss.write_index`` of the index; ids survive append/remove.
- ``id_map.json``   -- ``{"format_version": 1, "labels": {"<id>": "<label>"}}`` (never pickle).
- ``manifest.json`` -- format version, model hash, sizes, options and the sha256 of both files.

Scores (``dist_type``):

- ``IP``: inner product of L2-normalised vectors, i.e. cosine.  :meth:`add` and :meth:`search`
  normalise their inputs, so callers may pass raw features.  Higher is closer.
- ``L2``: squared Euclidean distance (faiss's value, as PaddleClas reports it); vectors are
  used as given.  Lower is closer.

Ids: Flat and HNSW sit inside a ``faiss.IndexIDMap2``.  IVF and IVFPQ do not: their inverted
lists store the ids themselves, and faiss's IDMap assumes that removing from the inner index
renumbers the rest like Flat does -- over IVF it silently shifts every later id (and asserts
on the next remove).

Writers: :meth:`GalleryIndex.save` holds the index's write lock (``lock.py``) and refuses to
replace an index that another writer saved after this one was loaded; a writer that loads,
changes and saves holds :func:`ppfreeze.retrieval.lock.index_lock` throughout, so concurrent
writers take turns and no update is lost.

HNSW and removal: faiss's HNSW graph cannot delete nodes.  A removed HNSW id leaves the id
map at once and becomes a tombstone that searches exclude *inside* faiss (an ``IDSelector``,
so a search still returns k live results); :meth:`save` compacts by rebuilding the graph from
the stored vectors, so files on disk never contain removed items.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field, replace
from typing import Callable, Dict, Iterable, List, Optional, Tuple

import faiss
import numpy as np

from .. import __version__
from ..config.errors import ConfigError
from ..errors import DataIntegrityError
from ..utils.builder import Registry
from ..utils.io import atomic_write, atomic_write_json, backup_path, file_sha256, staged_directory
from .lock import DEFAULT_LOCK_TIMEOUT, index_lock

FORMAT_VERSION = 1
INDEX_FILE = "vector.index"
ID_MAP_FILE = "id_map.json"
MANIFEST_FILE = "manifest.json"
PADDLECLAS_ID_MAP = "id_map.pkl"
INDEX_DIR_KEY = "IndexProcess.index_dir"
REBUILD_HINT = "rebuild the gallery with IndexProcess.index_operation: new"

logger = logging.getLogger("ppfreeze")

HNSW_M = 32
DEFAULT_EF_SEARCH = 64  # faiss's 16: recall@1 0.905 vs 0.974 on 100k x 512 (benchmarks/retrieval.py data)
MIN_POINTS_PER_CENTROID = 39  # below this faiss k-means warns and centroids are unreliable


class IndexMismatchError(DataIntegrityError):
    """An index on disk is missing, corrupted, or does not belong to the current model."""

    def __init__(self, path: str, message: str, hint: Optional[str] = REBUILD_HINT):
        super().__init__(path, message, hint)


# --------------------------------------------------------------------------- dist types

@dataclass(frozen=True)
class DistType:
    """How one ``dist_type`` scores: faiss metric, input normalisation, direction."""

    name: str
    faiss_metric: int
    normalise: bool
    higher_is_closer: bool

    def within(self, scores: np.ndarray, threshold: float) -> np.ndarray:
        """Mask of scores passing ``threshold`` (IP: ``>=``; L2: ``<=``)."""
        return scores >= threshold if self.higher_is_closer else scores <= threshold


DIST_TYPES = Registry("dist_type")
DIST_TYPES.register(DistType("IP", faiss.METRIC_INNER_PRODUCT, normalise=True, higher_is_closer=True), name="IP")
DIST_TYPES.register(DistType("L2", faiss.METRIC_L2, normalise=False, higher_is_closer=False), name="L2")


# --------------------------------------------------------------------------- index methods

@dataclass
class IndexOptions:
    """Tuning knobs; ``None`` means "pick from the data" at the first :meth:`GalleryIndex.add`."""

    nlist: Optional[int] = None      # IVF / IVFPQ coarse clusters
    pq_m: Optional[int] = None       # IVFPQ sub-quantizers (must divide embedding_size)
    pq_nbits: Optional[int] = None   # IVFPQ bits per code (8 unless the training set is tiny)
    nprobe: Optional[int] = None     # IVF / IVFPQ clusters visited per query
    ef_search: int = DEFAULT_EF_SEARCH  # HNSW search breadth


@dataclass(frozen=True)
class IndexMethod:
    """One ``index_method``: how to build (and train) the faiss index that holds the vectors.

    ``build(dim, metric, train_vectors, options)`` writes the values it resolves (nlist,
    pq_m, pq_nbits, nprobe) back into ``options`` so the manifest records what was used.
    """

    name: str
    build: Callable[[int, int, np.ndarray, IndexOptions], faiss.Index]
    faiss_class: type
    supports_remove: bool
    native_ids: bool  # the index stores ids itself (IVF); otherwise wrap it in IndexIDMap2
    uses: Tuple[str, ...] = field(default=())  # option names that mean something here


def _build_flat(dim: int, metric: int, train: np.ndarray, opts: IndexOptions) -> faiss.Index:
    return faiss.IndexFlat(dim, metric)


def _build_hnsw(dim: int, metric: int, train: np.ndarray, opts: IndexOptions) -> faiss.Index:
    index = faiss.IndexHNSWFlat(dim, HNSW_M, metric)
    index.hnsw.efSearch = opts.ef_search
    return index


def _build_ivf(dim: int, metric: int, train: np.ndarray, opts: IndexOptions) -> faiss.Index:
    opts.nlist = _resolve_nlist(opts.nlist, len(train))
    return _train_ivf(faiss.index_factory(dim, f"IVF{opts.nlist},Flat", metric), train, opts)


def _build_ivfpq(dim: int, metric: int, train: np.ndarray, opts: IndexOptions) -> faiss.Index:
    opts.nlist = _resolve_nlist(opts.nlist, len(train))
    opts.pq_m = _resolve_pq_m(opts.pq_m, dim)
    opts.pq_nbits = _resolve_pq_nbits(len(train))
    # "np": skip polysemous training (3x the build time here; only polysemous search uses it).
    spec = f"IVF{opts.nlist},PQ{opts.pq_m}x{opts.pq_nbits}np"
    return _train_ivf(faiss.index_factory(dim, spec, metric), train, opts)


def _train_ivf(index: faiss.Index, train: np.ndarray, opts: IndexOptions) -> faiss.Index:
    index.train(train)
    opts.nprobe = min(opts.nprobe or _default_nprobe(opts.nlist), opts.nlist)
    faiss.extract_index_ivf(index).nprobe = opts.nprobe
    return index


INDEX_METHODS = Registry("index_method")
for _method in (
    IndexMethod("Flat", _build_flat, faiss.IndexFlat, supports_remove=True, native_ids=False),
    IndexMethod("HNSW32", _build_hnsw, faiss.IndexHNSWFlat, supports_remove=False, native_ids=False,
                uses=("ef_search",)),
    IndexMethod("IVF", _build_ivf, faiss.IndexIVFFlat, supports_remove=True, native_ids=True,
                uses=("nlist", "nprobe")),
    IndexMethod("IVFPQ", _build_ivfpq, faiss.IndexIVFPQ, supports_remove=True, native_ids=True,
                uses=("nlist", "nprobe", "pq_m")),
):
    INDEX_METHODS.register(_method, name=_method.name)


def _resolve_nlist(nlist: Optional[int], n_train: int) -> int:
    """Default ``4*sqrt(n)``; never more than one cluster per 39 training vectors."""
    if n_train < 1:
        raise ConfigError("IndexProcess.index_method", "IVF indexes are trained on the first add, "
                          "which had no vectors", "add at least one feature vector")
    limit = max(1, n_train // MIN_POINTS_PER_CENTROID)
    if nlist is None:
        return max(1, min(int(4 * np.sqrt(n_train)), limit))
    if nlist > limit:
        logger.warning("IndexProcess.nlist=%d is too many clusters for %d training vectors; using %d (at most "
                       "one per %d vectors)", nlist, n_train, limit, MIN_POINTS_PER_CENTROID)
        return limit
    return nlist


def _resolve_pq_m(pq_m: Optional[int], dim: int) -> int:
    """Default: the largest divisor of ``dim`` giving at least 8 dimensions per sub-quantizer."""
    if pq_m is None:
        return max(m for m in _divisors(dim) if m <= max(1, dim // 8))
    if dim % pq_m:
        near = sorted(_divisors(dim), key=lambda m: abs(m - pq_m))[:3]
        raise ConfigError("IndexProcess.pq_m", f"pq_m={pq_m} does not divide embedding_size {dim}",
                          f"use a divisor of {dim}, e.g. {', '.join(map(str, sorted(near)))}")
    return pq_m


def _resolve_pq_nbits(n_train: int) -> int:
    """8 bits per code; fewer when there are not enough vectors to train 256 centroids."""
    if n_train < 2:
        raise ConfigError("IndexProcess.index_method", f"IVFPQ needs at least 2 training vectors, got {n_train}",
                          "use index_method: Flat for tiny galleries")
    nbits = min(8, int(np.log2(n_train)))
    if nbits < 8:
        logger.warning("IVFPQ: %d training vectors are too few for 8-bit codes; using %d bits", n_train, nbits)
    return nbits


def _default_nprobe(nlist: int) -> int:
    """sqrt(nlist), at least 8: the usual speed/recall middle ground (all lists when few)."""
    return min(nlist, max(8, int(np.sqrt(nlist))))


def _divisors(n: int) -> List[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


# --------------------------------------------------------------------------- the index

class GalleryIndex:
    """A faiss gallery index whose integer ids never change and each map to a label string.

    Build one with :meth:`create` or :meth:`load`; ids are handed out in order and never
    reused, so an id seen in an old search result still means the same gallery item.
    """

    def __init__(self, embedding_size: int, method: IndexMethod, dist: DistType, options: IndexOptions,
                 faiss_index: Optional[faiss.Index] = None,
                 labels: Optional[Dict[int, str]] = None, next_id: int = 0):
        self.embedding_size = embedding_size
        self.method = method
        self.dist = dist
        self.options = options
        self._index = faiss_index
        self._labels: Dict[int, str] = dict(labels or {})
        self._next_id = next_id
        self._tombstones: set = set()  # HNSW ids removed from _labels but still in the graph
        self._params_cache: Optional[tuple] = None
        self._label_lookup: Optional[np.ndarray] = None  # id -> label array, rebuilt after changes
        self._origin: Optional[Tuple[str, str]] = None    # (index_dir, manifest sha256) it was loaded from

    # ---- construction

    @classmethod
    def create(cls, embedding_size: int, index_method: str = "HNSW32", dist_type: str = "IP",
               nlist: Optional[int] = None, pq_m: Optional[int] = None, nprobe: Optional[int] = None,
               ef_search: Optional[int] = None) -> "GalleryIndex":
        """An empty index; IVF / IVFPQ train on the first :meth:`add`.

        Args:
            embedding_size: feature dimension (``IndexProcess.embedding_size``).
            index_method: ``Flat`` | ``HNSW32`` | ``IVF`` | ``IVFPQ``.
            dist_type: ``IP`` (cosine on normalised features) | ``L2`` (squared distance).
            nlist: IVF clusters; default ``4*sqrt(n)``, capped at ``n // 39`` (with a warning).
            pq_m: IVFPQ sub-quantizers, a divisor of ``embedding_size`` (default: ``D/8``-ish).
            nprobe: IVF clusters searched per query (default ``max(8, sqrt(nlist))``).
            ef_search: HNSW search breadth (default 64).
        """
        method = INDEX_METHODS.get(index_method, "IndexProcess.index_method")
        dist = DIST_TYPES.get(dist_type, "IndexProcess.dist_type")
        check_positive_int(embedding_size, "IndexProcess.embedding_size")
        given = {"nlist": nlist, "pq_m": pq_m, "nprobe": nprobe, "ef_search": ef_search}
        for name, value in given.items():
            if value is None:
                continue
            check_positive_int(value, f"IndexProcess.{name}")
            if name not in method.uses:
                logger.warning("IndexProcess.%s has no effect with index_method %s", name, method.name)
        if pq_m is not None and method.name == "IVFPQ":
            _resolve_pq_m(pq_m, embedding_size)  # fail now, not after extracting features
        options = IndexOptions(nlist=nlist, pq_m=pq_m, nprobe=nprobe,
                               ef_search=ef_search or DEFAULT_EF_SEARCH)
        return cls(embedding_size, method, dist, options)

    # ---- queries about the content

    def __len__(self) -> int:
        return len(self._labels)

    @property
    def next_id(self) -> int:
        """The id the next added vector will get."""
        return self._next_id

    def id_to_label(self) -> Dict[int, str]:
        """A copy of the live ``id -> label`` map."""
        return dict(self._labels)

    # ---- mutation

    def add(self, features: np.ndarray, labels: List[str]) -> np.ndarray:
        """Add ``features`` [N, D] with one label each; return their new int64 ids.

        The first add of an IVF / IVFPQ index trains it on these features.
        """
        feats = self._prepare(features, "features")
        labels = _check_labels(labels, len(feats))
        if len(feats) == 0:
            return np.empty(0, dtype=np.int64)
        if self._index is None:
            inner = self.method.build(self.embedding_size, self.dist.faiss_metric, feats, self.options)
            self._index = inner if self.method.native_ids else faiss.IndexIDMap2(inner)
        ids = np.arange(self._next_id, self._next_id + len(feats), dtype=np.int64)
        self._index.add_with_ids(feats, ids)
        self._labels.update(zip(ids.tolist(), labels))
        self._next_id += len(feats)
        self._label_lookup = None
        return ids

    def remove(self, ids: Optional[Iterable[int]] = None, labels: Optional[Iterable[str]] = None) -> int:
        """Remove the given ids and every item carrying one of ``labels``; return how many.

        Unknown ids and labels are ignored (the return value tells how many were found).
        """
        if ids is None and labels is None:
            raise ValueError("remove() needs ids= or labels=")
        targets = {int(i) for i in (ids if ids is not None else ())}
        if labels is not None:
            wanted = {labels} if isinstance(labels, str) else set(labels)
            targets |= {i for i, label in self._labels.items() if label in wanted}
        targets &= self._labels.keys()
        if not targets:
            return 0
        if self.method.supports_remove:
            self._index.remove_ids(np.fromiter(sorted(targets), dtype=np.int64))
        else:
            self._tombstones |= targets
            self._params_cache = None
        for i in targets:
            del self._labels[i]
        self._label_lookup = None
        return len(targets)

    def compact(self) -> None:
        """Drop tombstoned HNSW vectors for good by rebuilding the graph from stored vectors."""
        if not self._tombstones:
            return
        inner = faiss.downcast_index(self._index.index)
        vectors = inner.reconstruct_n(0, inner.ntotal)
        ids = faiss.vector_to_array(self._index.id_map)
        keep = ~np.isin(ids, np.fromiter(self._tombstones, dtype=np.int64))
        options = replace(self.options, ef_search=inner.hnsw.efSearch)
        rebuilt = faiss.IndexIDMap2(self.method.build(self.embedding_size, self.dist.faiss_metric,
                                                      vectors[keep], options))
        rebuilt.add_with_ids(np.ascontiguousarray(vectors[keep]), ids[keep])  # already normalised
        self._index = rebuilt
        self._tombstones.clear()
        self._params_cache = None

    # ---- search

    def search(self, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray, List[List[Optional[str]]]]:
        """Top-``k`` gallery items per query: ``(scores [Q,k], ids [Q,k], labels)``.

        Rows are best first (IP: highest score; L2: lowest distance).  When fewer than k
        items exist the tail holds id -1 and label None.
        """
        check_positive_int(k, "IndexProcess.return_k")
        queries = self._prepare(queries, "queries")
        if self._index is None or len(self) == 0:
            return _empty_result(len(queries), k, self.dist)
        scores, ids = self._index.search(queries, k, params=self._search_params())
        return scores, ids, self._lookup_labels(ids)

    def _lookup_labels(self, ids: np.ndarray) -> List[List[Optional[str]]]:
        """Labels for an id matrix; one numpy gather instead of a dict lookup per result."""
        if self._label_lookup is None:
            # One slot more than any id: that last slot stays None and is where id -1 (padding) lands.
            lookup = np.full(self._next_id + 1, None, dtype=object)
            lookup[list(self._labels)] = list(self._labels.values())
            self._label_lookup = lookup
        return self._label_lookup[ids].tolist()

    def _search_params(self) -> Optional[faiss.SearchParameters]:
        """HNSW parameters excluding tombstones (cached: rebuilt only when tombstones change)."""
        if not self._tombstones:
            return None
        if self._params_cache is None:
            removed = faiss.IDSelectorBatch(np.fromiter(self._tombstones, dtype=np.int64))
            keep = faiss.IDSelectorNot(removed)
            # efSearch must be repeated: HNSW parameters replace the index's own value.
            ef = faiss.downcast_index(self._index.index).hnsw.efSearch
            # The C++ objects do not own their operands: hold the Python ones alongside.
            self._params_cache = (faiss.SearchParametersHNSW(sel=keep, efSearch=ef), keep, removed)
        return self._params_cache[0]

    def _prepare(self, x: np.ndarray, what: str) -> np.ndarray:
        """Validated C-contiguous float32 copy (the caller's array is never touched), L2-normalised for IP."""
        arr = np.array(x, dtype=np.float32, order="C")
        if arr.ndim != 2:
            raise ValueError(f"{what} must be a 2-D array [N, {self.embedding_size}], got shape {arr.shape}")
        if arr.shape[1] != self.embedding_size:
            raise ConfigError("IndexProcess.embedding_size",
                              f"{what} have {arr.shape[1]} dimensions but the index holds {self.embedding_size}",
                              "set embedding_size to the model's feature size, or rebuild the index")
        bad = np.flatnonzero(~np.isfinite(arr).all(axis=1))
        if len(bad):
            raise ValueError(f"{what} rows {bad[:5].tolist()} contain NaN or inf (broken feature extraction?)")
        if self.dist.normalise:
            faiss.normalize_L2(arr)
        return arr

    # ---- persistence

    def save(self, index_dir: str, model_hash: str = "", lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
        """Write the three index files into ``index_dir``, all or nothing, under its write lock.

        Files are written to a fresh sibling directory which then replaces ``index_dir``
        with two renames; if the process dies between them, the previous index stays
        complete in ``<index_dir>.previous`` and :meth:`load` says so. An index loaded from
        ``index_dir`` is not saved over a newer save by another writer (that would drop its
        update): that is an :class:`IndexMismatchError`; hold ``index_lock`` from load to save.
        """
        if self._index is None:
            raise ValueError("nothing to save: add features before saving the index")
        with index_lock(index_dir, lock_timeout):
            self._check_unchanged_since_load(index_dir)
            self.compact()
            with staged_directory(index_dir, check=_check_dir_is_replaceable) as staging:
                self._write_files(staging, model_hash)
            self._origin = (os.path.abspath(index_dir), _manifest_digest(index_dir))

    def _check_unchanged_since_load(self, index_dir: str) -> None:
        if self._origin is None or self._origin[0] != os.path.abspath(index_dir):
            return   # a new index, or saved elsewhere: replacing the target is what was asked
        if _manifest_digest(index_dir) != self._origin[1]:
            raise IndexMismatchError(index_dir, "another writer saved this index after it was loaded here; "
                                     "saving would discard that writer's items",
                                     "load it again and redo the change, holding "
                                     "ppfreeze.retrieval.lock.index_lock from load to save (build_gallery.py does)")

    def _write_files(self, directory: str, model_hash: str) -> None:
        index_path = os.path.join(directory, INDEX_FILE)
        id_map_path = os.path.join(directory, ID_MAP_FILE)
        atomic_write(index_path, lambda tmp: _write_faiss_index(self._index, tmp))
        atomic_write_json(id_map_path, {"format_version": FORMAT_VERSION,
                                        "labels": {str(i): label for i, label in sorted(self._labels.items())}})
        manifest = {
            "format_version": FORMAT_VERSION,
            "created_by": f"ppfreeze {__version__}",
            "faiss_version": faiss.__version__,
            "model_hash": model_hash,
            "embedding_size": self.embedding_size,
            "index_method": self.method.name,
            "dist_type": self.dist.name,
            "count": len(self._labels),
            "next_id": self._next_id,
            "options": asdict(self.options),
            "sha256": {INDEX_FILE: file_sha256(index_path), ID_MAP_FILE: file_sha256(id_map_path)},
        }
        atomic_write_json(os.path.join(directory, MANIFEST_FILE), manifest)

    @classmethod
    def load(cls, index_dir: str, expected_model_hash: Optional[str] = None,
             expected_embedding_size: Optional[int] = None) -> "GalleryIndex":
        """Load and verify an index saved by :meth:`save`.

        Checksums are verified before faiss reads anything, so a damaged file gives an
        :class:`IndexMismatchError` naming it, never a faiss crash.  ``expected_*`` values
        (the current model's hash and feature size) must match what the index was built with.
        """
        digest = _manifest_digest(index_dir)
        manifest = _read_manifest(index_dir)
        for name in (INDEX_FILE, ID_MAP_FILE):
            _verify_checksum(os.path.join(index_dir, name), manifest["sha256"].get(name))
        labels = _read_id_map(os.path.join(index_dir, ID_MAP_FILE))
        faiss_index = _read_faiss_index(os.path.join(index_dir, INDEX_FILE))
        method = INDEX_METHODS.get(manifest["index_method"])
        dist = DIST_TYPES.get(manifest["dist_type"])
        _check_consistency(index_dir, manifest, labels, faiss_index, method, dist)
        _check_expectations(index_dir, manifest, expected_model_hash, expected_embedding_size)
        known = {k: v for k, v in manifest.get("options", {}).items() if k in IndexOptions.__dataclass_fields__}
        index = cls(manifest["embedding_size"], method, dist, IndexOptions(**known),
                    faiss_index=faiss_index, labels=labels, next_id=manifest["next_id"])
        index._origin = (os.path.abspath(index_dir), digest)
        return index


# --------------------------------------------------------------------------- helpers: arguments

def check_positive_int(value, key: str) -> None:
    """Raise a ConfigError naming ``key`` unless ``value`` is an int >= 1."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ConfigError(key, f"expected a positive integer, got {value!r}")


def _check_labels(labels: List[str], n: int) -> List[str]:
    if isinstance(labels, str):
        raise ValueError("labels must be a list with one string per feature row, got a single string")
    labels = list(labels)
    if len(labels) != n:
        raise ValueError(f"got {n} feature rows but {len(labels)} labels")
    not_str = [i for i, label in enumerate(labels) if not isinstance(label, str)]
    if not_str:
        raise ValueError(f"labels must be strings; entries {not_str[:5]} are not")
    return labels


def _empty_result(n_queries: int, k: int, dist: DistType):
    worst = -np.inf if dist.higher_is_closer else np.inf
    return (np.full((n_queries, k), worst, dtype=np.float32), np.full((n_queries, k), -1, dtype=np.int64),
            [[None] * k for _ in range(n_queries)])


# --------------------------------------------------------------------------- helpers: files

def _write_faiss_index(index: faiss.Index, path: str) -> None:
    faiss.write_index(index, path)
    with open(path, "rb+") as f:  # faiss does not fsync; the rename must not outrun the data
        os.fsync(f.fileno())


def _check_dir_is_replaceable(index_dir: str) -> None:
    """Saving replaces the whole directory: refuse one that holds anything but an index."""
    if not os.path.exists(index_dir):
        return
    if not os.path.isdir(index_dir):
        raise ConfigError(INDEX_DIR_KEY, f"'{index_dir}' exists and is not a directory")
    ours = {INDEX_FILE, ID_MAP_FILE, MANIFEST_FILE, PADDLECLAS_ID_MAP}
    foreign = sorted(set(os.listdir(index_dir)) - ours)
    if foreign:
        raise ConfigError(INDEX_DIR_KEY, f"'{index_dir}' holds other files ({', '.join(foreign[:5])}); "
                          "saving replaces the whole directory", "use a directory dedicated to the index")


_MANIFEST_FIELDS = {"format_version": int, "model_hash": str, "embedding_size": int, "index_method": str,
                    "dist_type": str, "count": int, "next_id": int, "sha256": dict}


def _read_manifest(index_dir: str) -> dict:
    path = os.path.join(index_dir, MANIFEST_FILE)
    if not os.path.isdir(index_dir):
        backup = backup_path(index_dir)
        if os.path.isdir(backup):
            raise IndexMismatchError(index_dir, f"missing, but an interrupted save left the previous index in "
                                     f"'{backup}'", f"rename '{backup}' to '{index_dir}'")
        raise IndexMismatchError(index_dir, "index directory does not exist",
                                 "build it first with IndexProcess.index_operation: new")
    if not os.path.isfile(path):
        if os.path.isfile(os.path.join(index_dir, PADDLECLAS_ID_MAP)):
            raise IndexMismatchError(path, "missing; this looks like a PaddleClas index (id_map.pkl), which is "
                                     "not loaded because unpickling can run arbitrary code")
        raise IndexMismatchError(path, "missing (not an index saved by ppfreeze, or an incomplete copy)")
    manifest = _read_json(path)
    if not isinstance(manifest, dict):
        raise IndexMismatchError(path, "expected a JSON object")
    for name, kind in _MANIFEST_FIELDS.items():
        if not isinstance(manifest.get(name), kind):
            raise IndexMismatchError(path, f"field '{name}' is missing or not a {kind.__name__}")
    if manifest["format_version"] != FORMAT_VERSION:
        raise IndexMismatchError(path, f"format_version {manifest['format_version']} is not supported "
                                 f"(this ppfreeze reads {FORMAT_VERSION})")
    for name, registry in (("index_method", INDEX_METHODS), ("dist_type", DIST_TYPES)):
        if manifest[name] not in registry:
            raise IndexMismatchError(path, f"unknown {name} {manifest[name]!r} (known: {', '.join(registry.names())})")
    return manifest


def _manifest_digest(index_dir: str) -> Optional[str]:
    """sha256 of ``manifest.json`` (it holds the other files' digests: it changes with every save)."""
    path = os.path.join(index_dir, MANIFEST_FILE)
    return file_sha256(path) if os.path.isfile(path) else None


def _read_json(path: str):
    try:
        with open(path, "r", encoding="utf-8") as f:
            return json.load(f)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IndexMismatchError(path, f"not valid JSON ({e})") from e


def _verify_checksum(path: str, expected: Optional[str]) -> None:
    if not os.path.isfile(path):
        raise IndexMismatchError(path, "missing")
    actual = file_sha256(path)
    if actual != expected:
        raise IndexMismatchError(path, f"sha256 {actual[:12]}... differs from manifest.json's "
                                 f"{str(expected)[:12]}...: the file was modified or damaged")


def _read_id_map(path: str) -> Dict[int, str]:
    data = _read_json(path)
    raw = data.get("labels") if isinstance(data, dict) else None
    if not isinstance(raw, dict):
        raise IndexMismatchError(path, "expected an object with a 'labels' mapping")
    labels = {}
    for key, label in raw.items():
        if not key.lstrip("-").isdigit() or not isinstance(label, str):
            raise IndexMismatchError(path, f"bad entry {key!r}: {label!r} (expected \"<int id>\": \"<label>\")")
        labels[int(key)] = label
    return labels


def _read_faiss_index(path: str) -> faiss.Index:
    try:
        return faiss.read_index(path)
    except RuntimeError as e:
        raise IndexMismatchError(path, f"faiss cannot read it ({str(e).splitlines()[-1]})") from e


def _core_index(index: faiss.Index, method: IndexMethod) -> Optional[faiss.Index]:
    """The index that holds the vectors, or None when ``index`` is not shaped like ``method``'s."""
    if method.native_ids:
        core = index
    elif isinstance(index, faiss.IndexIDMap2):
        core = faiss.downcast_index(index.index)
    else:
        return None
    return core if isinstance(core, method.faiss_class) else None


def _stored_ids(index: faiss.Index) -> np.ndarray:
    """Every id held by an IndexIDMap2 or by the inverted lists of an IVF index."""
    if isinstance(index, faiss.IndexIDMap2):
        return faiss.vector_to_array(index.id_map)
    lists = faiss.extract_index_ivf(index).invlists
    chunks = [np.empty(0, dtype=np.int64)]
    for list_no in range(lists.nlist):
        size = lists.list_size(list_no)
        if size:
            ptr = lists.get_ids(list_no)
            chunks.append(faiss.rev_swig_ptr(ptr, size).copy())
            lists.release_ids(list_no, ptr)
    return np.concatenate(chunks)


def _check_consistency(index_dir: str, manifest: dict, labels: Dict[int, str], index: faiss.Index,
                       method: IndexMethod, dist: DistType) -> None:
    """The three files must describe the same gallery."""
    manifest_path = os.path.join(index_dir, MANIFEST_FILE)
    index_path = os.path.join(index_dir, INDEX_FILE)
    if len(labels) != manifest["count"]:
        raise IndexMismatchError(os.path.join(index_dir, ID_MAP_FILE),
                                 f"holds {len(labels)} labels, manifest.json says {manifest['count']}")
    if index.ntotal != manifest["count"]:
        raise IndexMismatchError(index_path, f"holds {index.ntotal} vectors, manifest.json says {manifest['count']}")
    if index.d != manifest["embedding_size"]:
        raise IndexMismatchError(index_path, f"has dimension {index.d}, manifest.json says "
                                 f"{manifest['embedding_size']}")
    if _core_index(index, method) is None or index.metric_type != dist.faiss_metric:
        raise IndexMismatchError(index_path, f"holds a {type(index).__name__} (metric {index.metric_type}), "
                                 f"manifest.json says {method.name} / {dist.name}")
    ids = _stored_ids(index)
    if set(ids.tolist()) != labels.keys():
        raise IndexMismatchError(index_path, "its ids differ from the ids in id_map.json")
    if len(ids) and manifest["next_id"] <= int(ids.max()):
        raise IndexMismatchError(manifest_path, f"next_id {manifest['next_id']} is not above the largest id "
                                 f"{int(ids.max())}")


def _check_expectations(index_dir: str, manifest: dict, model_hash: Optional[str],
                        embedding_size: Optional[int]) -> None:
    """The index must belong to the model that will produce the query features."""
    path = os.path.join(index_dir, MANIFEST_FILE)
    if embedding_size is not None and embedding_size != manifest["embedding_size"]:
        raise IndexMismatchError(path, f"index holds {manifest['embedding_size']}-d features, the model "
                                 f"produces {embedding_size}-d")
    if not model_hash:
        return
    if not manifest["model_hash"]:
        logger.warning("%s: saved without a model hash; cannot check it matches model %s", path, model_hash)
    elif manifest["model_hash"] != model_hash:
        raise IndexMismatchError(path, f"built with model {manifest['model_hash']}, the current model is "
                                 f"{model_hash}; features of different models are not comparable")
