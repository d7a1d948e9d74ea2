"""What ``DecodeImage(strict=True)`` costs and what it catches, on the demo images.

Cost: decoding every demo JPEG with ``strict`` false and true (cv2 backend), alone and inside
the demo's eval pipeline (decode, resize, crop, normalise), median of several passes.
Catch rate: damaged copies of the demo images (truncated at a random byte; 1 or 20 bytes in the
middle overwritten with random bytes or zeros), counted as refused by the marker-structure
check, by libjpeg's damage warnings, and by either (= strict decoding). Damage that libjpeg
decodes without any warning cannot be told from a real image without a checksum.

    python benchmarks/jpeg_checks.py                 # generates the demo set if needed
    python benchmarks/jpeg_checks.py --trials 300 --passes 7
"""
from __future__ import annotations

import argparse
import glob
import os
import statistics
import sys
import time

import cv2
import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)
sys.path.insert(0, os.path.join(ROOT, "tools"))

from ppfreeze.data.preprocess import create_operators, transform  # noqa: E402
from ppfreeze.data.preprocess.jpeg_integrity import decode_with_libjpeg_warnings, jpeg_structure_problem  # noqa: E402

EVAL_OPS = [{"ResizeImage": {"resize_short": 36}}, {"CropImage": {"size": 32}},
            {"NormalizeImage": {"scale": "1.0/255.0", "mean": [0.485, 0.456, 0.406],
                                "std": [0.229, 0.224, 0.225], "order": ""}}]
DAMAGE = ("truncated", "1 random byte", "20 random bytes", "20 zero bytes")


def per_image_us(images, fns, passes):
    """Median over ``passes`` of the mean microseconds per image, for each of ``fns``.

    The functions take turns pass by pass, so a change in machine load hits them alike.
    """
    runs = [[] for _ in fns]
    for _ in range(passes):
        for fn, times in zip(fns, runs):
            tic = time.perf_counter()
            for data in images:
                fn(data)
            times.append((time.perf_counter() - tic) / len(images) * 1e6)
    return [statistics.median(times) for times in runs]


def damaged(data: bytes, kind: str, rng: np.random.Generator) -> bytes:
    if kind == "truncated":
        return data[:int(rng.integers(2, len(data) - 1))]
    n = 1 if kind.startswith("1 ") else 20
    out = bytearray(data)
    at = int(rng.integers(len(out) // 4, 3 * len(out) // 4))
    out[at:at + n] = bytes(n) if "zero" in kind else rng.integers(0, 256, n, dtype=np.uint8).tobytes()
    return bytes(out)


def catch_rates(images, trials, seed=0):
    rng = np.random.default_rng(seed)
    rows = []
    for kind in DAMAGE:
        structure = warning = either = 0
        for i in range(trials):
            data = damaged(images[i % len(images)], kind, rng)
            s = jpeg_structure_problem(data) is not None
            img, w = decode_with_libjpeg_warnings(lambda: cv2.imdecode(np.frombuffer(data, np.uint8), 1))
            w = w is not None or img is None
            structure, warning, either = structure + s, warning + w, either + (s or w)
        rows.append((kind, structure, warning, either))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", default=os.path.join(ROOT, "dataset", "ppfreeze_demo"))
    parser.add_argument("--passes", type=int, default=5)
    parser.add_argument("--trials", type=int, default=200)
    args = parser.parse_args()
    if not glob.glob(os.path.join(args.root, "images", "**", "*.jpg"), recursive=True):
        from make_demo_data import make_demo_dataset
        make_demo_dataset(args.root)
    paths = sorted(glob.glob(os.path.join(args.root, "images", "**", "*.jpg"), recursive=True))
    images = [open(p, "rb").read() for p in paths]
    cv2.setNumThreads(1)
    print(f"{len(images)} demo JPEGs, {np.mean([len(d) for d in images]):.0f} bytes on average; "
          f"median of {args.passes} passes, us per image")
    print(f"{'':28s}{'strict: false':>14s}{'strict: true':>14s}{'extra':>9s}")
    for label, pipeline in (("DecodeImage", []), ("DecodeImage + eval ops", EVAL_OPS)):
        pipelines = [create_operators([{"DecodeImage": {"to_rgb": True, "strict": strict}}] + pipeline)
                     for strict in (False, True)]
        times = per_image_us(images, [lambda data, ops=ops: transform(data, ops) for ops in pipelines], args.passes)
        print(f"{label:28s}{times[0]:14.1f}{times[1]:14.1f}{(times[1] / times[0] - 1) * 100:8.0f}%")
    print(f"\ndamaged copies refused, of {args.trials} each")
    print(f"{'damage':18s}{'structure':>11s}{'libjpeg':>9s}{'strict':>8s}")
    for kind, structure, warning, either in catch_rates(images, args.trials):
        print(f"{kind:18s}{structure:11d}{warning:9d}{either:8d}")


if __name__ == "__main__":
    main()
