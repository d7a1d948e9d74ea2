"""Gallery index benchmark: GalleryIndex against raw faiss on the same vectors, in one run.

For each index method (Flat, HNSW32, IVF, IVFPQ) it reports build time (train + add), search
throughput with one thread and with all threads, the ratio ours/raw (target >= 0.9), and the
recall of the exact (brute-force) nearest neighbour at ranks 1 and 10.  Data: seeded clustered vectors, so nearest
neighbours are meaningful.

    python benchmarks/retrieval.py                      # 100k x 512, 1000 queries
    python benchmarks/retrieval.py --n 20000 --dim 128  # quicker
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Callable, Dict, List, Tuple

import faiss
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from ppfreeze.retrieval.index import GalleryIndex  # noqa: E402

METHODS = ["Flat", "HNSW32", "IVF", "IVFPQ"]


def make_data(n: int, dim: int, n_queries: int, n_clusters: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Gallery and query vectors drawn around the same random centres, L2-normalised."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((n_clusters, dim), dtype=np.float32)

    def sample(count: int) -> np.ndarray:
        points = centres[rng.integers(0, n_clusters, count)]
        points += 0.5 * rng.standard_normal((count, dim), dtype=np.float32)
        faiss.normalize_L2(points)
        return points

    return sample(n), sample(n_queries)


def timed(fn: Callable[[], object]) -> Tuple[object, float]:
    start = time.perf_counter()
    result = fn()
    return result, time.perf_counter() - start


def build_ours(method: str, gallery: np.ndarray) -> Tuple[GalleryIndex, float]:
    labels = [f"item {i}" for i in range(len(gallery))]  # the caller's data: made outside the timing

    def build() -> GalleryIndex:
        index = GalleryIndex.create(gallery.shape[1], method, "IP")
        index.add(gallery, labels)
        return index
    return timed(build)


def build_raw(method: str, gallery: np.ndarray, ours: GalleryIndex) -> Tuple[faiss.Index, float]:
    """Plain faiss with the parameters GalleryIndex resolved, so both do the same work."""
    opts, dim = ours.options, gallery.shape[1]
    specs = {"Flat": "Flat", "HNSW32": "HNSW32", "IVF": f"IVF{opts.nlist},Flat",
             "IVFPQ": f"IVF{opts.nlist},PQ{opts.pq_m}x{opts.pq_nbits}np"}

    def build() -> faiss.Index:
        index = faiss.index_factory(dim, specs[method], faiss.METRIC_INNER_PRODUCT)
        if method == "HNSW32":
            index.hnsw.efSearch = opts.ef_search
        if method.startswith("IVF"):
            index.train(gallery)
            faiss.extract_index_ivf(index).nprobe = opts.nprobe
        index.add(gallery)
        return index
    return timed(build)


def best_qps(searches: Dict[str, Callable[[], np.ndarray]], n_queries: int, threads: int,
             repeats: int) -> Dict[str, Tuple[float, np.ndarray]]:
    """Queries per second of each search's fastest run; runs alternate (and swap order) so
    background load and cache warmth hit both alike."""
    faiss.omp_set_num_threads(threads)
    best = {name: float("inf") for name in searches}
    ids = {}
    for repeat in range(repeats):
        order = list(searches) if repeat % 2 == 0 else list(reversed(searches))
        for name in order:
            search = searches[name]
            ids[name], seconds = timed(search)
            best[name] = min(best[name], seconds)
    return {name: (n_queries / best[name], ids[name]) for name in searches}


def bench_method(method: str, gallery: np.ndarray, queries: np.ndarray, k: int, repeats: int,
                 all_threads: int) -> Dict[str, object]:
    faiss.omp_set_num_threads(all_threads)
    ours, ours_build = build_ours(method, gallery)
    raw, raw_build = build_raw(method, gallery, ours)
    row: Dict[str, object] = {"method": method, "build_ours": ours_build, "build_raw": raw_build}
    searches = {"ours": lambda: ours.search(queries, k)[1], "raw": lambda: raw.search(queries, k)[1]}
    for name, threads in (("1t", 1), ("all", all_threads)):
        for who, (qps, ids) in best_qps(searches, len(queries), threads, repeats).items():
            row[f"qps_{who}_{name}"], row[f"ids_{who}"] = qps, ids
    return row


def recall_of_exact_top1(ids: np.ndarray, exact: np.ndarray, at: int) -> float:
    """Share of queries whose exact nearest neighbour is among the first ``at`` results."""
    return float((ids[:, :at] == exact[:, :1]).any(axis=1).mean())


def print_table(rows: List[Dict[str, object]], all_threads: int) -> None:
    header = (f"{'method':<7} {'build s ours':>12} {'raw':>7} {'raw/ours':>8} | "
              f"{'QPS 1t ours':>11} {'raw':>8} {'ratio':>6} | "
              f"{f'QPS {all_threads}t ours':>11} {'raw':>8} {'ratio':>6} | {'R@1 ours':>8} {'raw':>6} {'R@10 ours':>9}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['method']:<7} {r['build_ours']:>12.2f} {r['build_raw']:>7.2f} "
              f"{r['build_raw'] / r['build_ours']:>8.2f} | "
              f"{r['qps_ours_1t']:>11.0f} {r['qps_raw_1t']:>8.0f} {r['qps_ours_1t'] / r['qps_raw_1t']:>6.2f} | "
              f"{r['qps_ours_all']:>11.0f} {r['qps_raw_all']:>8.0f} {r['qps_ours_all'] / r['qps_raw_all']:>6.2f} | "
              f"{r['r1_ours']:>8.3f} {r['r1_raw']:>6.3f} {r['r10_ours']:>9.3f}")
    print("ratio = ours / raw throughput (>= 0.9 wanted); raw/ours build = raw time / our time; "
          "R@1 / R@10 = share of queries whose exact (brute-force) nearest neighbour is ranked 1st / in the top 10.")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000, help="gallery vectors")
    parser.add_argument("--dim", type=int, default=512, help="embedding size")
    parser.add_argument("--queries", type=int, default=1000, help="query vectors")
    parser.add_argument("--clusters", type=int, default=1000, help="centres the vectors are drawn around")
    parser.add_argument("--k", type=int, default=10, help="neighbours per query")
    parser.add_argument("--repeats", type=int, default=5, help="search runs per setting (best is kept)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--methods", nargs="+", default=METHODS, choices=METHODS)
    args = parser.parse_args()

    all_threads = os.cpu_count() or 1
    gallery, queries = make_data(args.n, args.dim, args.queries, args.clusters, args.seed)
    print(f"gallery {args.n} x {args.dim}, {args.queries} queries, k={args.k}, {args.clusters} clusters, "
          f"faiss {faiss.__version__}, {all_threads} cores, build with {all_threads} threads")
    rows = [bench_method(m, gallery, queries, args.k, args.repeats, all_threads) for m in args.methods]
    exact = faiss.IndexFlatIP(args.dim)
    exact.add(gallery)
    _, exact_ids = exact.search(queries, 1)
    for r in rows:
        ours_ids, raw_ids = r.pop("ids_ours"), r.pop("ids_raw")
        r["r1_ours"] = recall_of_exact_top1(ours_ids, exact_ids, 1)
        r["r1_raw"] = recall_of_exact_top1(raw_ids, exact_ids, 1)
        r["r10_ours"] = recall_of_exact_top1(ours_ids, exact_ids, 10)
    print_table(rows, all_threads)


if __name__ == "__main__":
    main()
