"""Make the embedded demo dataset: 12 procedurally drawn classes of 64x64 JPEGs.

    python tools/make_demo_data.py                          # -> ./dataset/ppfreeze_demo
    python tools/make_demo_data.py --root /tmp/ppfreeze_demo --train-per-class 4 --val-per-class 2

``tools/train.py`` and ``tools/eval.py`` run it on first use when a config's data paths point
into a missing ``ppfreeze_demo`` directory (the quick-start configs do), and log that they did.

No download and no third-party images: every picture is drawn from a fixed seed (shape or
texture, colours, position, size, rotation, background, clutter, noise), so the files are
byte-identical on every run with the same OpenCV/libjpeg. Classes 0-7 train retrieval
models; 8-11 are held out as query/gallery identities.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
from typing import Any, Callable, Dict, List, Optional, Tuple

import argparse
import sys

import cv2
import numpy as np

sys.path.insert(0, os.path.abspath(os.path.join(os.path.dirname(__file__), "..")))

from ppfreeze.config.errors import ConfigError  # noqa: E402

DEMO_ROOT_NAME = "ppfreeze_demo"
CLASS_NAMES = ["circle", "square", "triangle", "plus", "star", "ring",
               "stripes", "checkerboard", "dots", "zigzag", "crescent", "arrow"]
REC_TRAIN_CLASSES = range(0, 8)
REC_HELD_OUT_CLASSES = range(8, 12)
IMAGE_SIZE = 64
JPEG_QUALITY = 90
_SEED = 20240611
_FORMAT_VERSION = 1
_INFO_FILE = "demo_info.json"
_PATH_KEYS = ("image_root", "cls_label_path", "infer_imgs", "class_id_map_file")
_SPLITS = {"train": 0, "val": 1}
_SS = 4  # supersampling factor for anti-aliased masks

logger = logging.getLogger("ppfreeze")


# ----------------------------------------------------------------------------- drawing
def _grid(rng: np.random.Generator) -> Tuple[np.ndarray, np.ndarray]:
    """Supersampled pixel coordinates centred on a random point, rotated by a random angle."""
    n = IMAGE_SIZE * _SS
    ys, xs = np.mgrid[0:n, 0:n].astype(np.float32) / _SS
    cx, cy = rng.uniform(20, 44, size=2)
    angle = rng.uniform(0, np.pi)
    dx, dy = xs - cx, ys - cy
    u = dx * np.cos(angle) + dy * np.sin(angle)
    v = -dx * np.sin(angle) + dy * np.cos(angle)
    return u, v


def _polygon_mask(rng: np.random.Generator, unit_points: np.ndarray, radius: float) -> np.ndarray:
    """Fill a polygon given in unit coordinates, scaled, rotated and placed at random."""
    angle = rng.uniform(0, 2 * np.pi)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    margin = radius + 2
    centre = rng.uniform(margin, IMAGE_SIZE - margin, size=2) if margin < IMAGE_SIZE / 2 else np.full(2, 32.0)
    pts = (unit_points @ rot.T) * radius + centre
    mask = np.zeros((IMAGE_SIZE * _SS, IMAGE_SIZE * _SS), np.uint8)
    cv2.fillPoly(mask, [np.round(pts * _SS).astype(np.int32)], 255)
    return mask.astype(np.float32) / 255.0


def _regular(n: int) -> np.ndarray:
    t = np.arange(n) * 2 * np.pi / n
    return np.stack([np.cos(t), np.sin(t)], axis=1)


def _circle(rng):
    u, v = _grid(rng)
    return (u ** 2 + v ** 2 <= rng.uniform(9, 20) ** 2).astype(np.float32)


def _square(rng):
    return _polygon_mask(rng, _regular(4), rng.uniform(11, 24))


def _triangle(rng):
    return _polygon_mask(rng, _regular(3), rng.uniform(13, 26))


def _plus(rng):
    u, v = _grid(rng)
    arm, width = rng.uniform(10, 22), rng.uniform(3, 6)
    bar = lambda a, b: (np.abs(a) <= arm) & (np.abs(b) <= width)  # noqa: E731
    return (bar(u, v) | bar(v, u)).astype(np.float32)


def _star(rng):
    outer = _regular(10)
    outer[1::2] *= rng.uniform(0.38, 0.5)  # inner vertices
    return _polygon_mask(rng, outer, rng.uniform(13, 25))


def _ring(rng):
    u, v = _grid(rng)
    r = np.sqrt(u ** 2 + v ** 2)
    radius = rng.uniform(10, 21)
    return (np.abs(r - radius) <= rng.uniform(2, 4.5)).astype(np.float32)


def _patch(rng, u, v) -> np.ndarray:
    """Textures fill a random rectangle (the u/v frame is already rotated)."""
    half_w, half_h = rng.uniform(16, 40, size=2)
    return (np.abs(u) <= half_w) & (np.abs(v) <= half_h)


def _stripes(rng):
    u, v = _grid(rng)
    period = rng.uniform(5, 11)
    return (_patch(rng, u, v) & ((v % period) < period * 0.5)).astype(np.float32)


def _checkerboard(rng):
    u, v = _grid(rng)
    cell = rng.uniform(4, 9)
    parity = (np.floor(u / cell) + np.floor(v / cell)) % 2 == 0
    return (_patch(rng, u, v) & parity).astype(np.float32)


def _dots(rng):
    u, v = _grid(rng)
    spacing = rng.uniform(7, 12)
    du = (u % spacing) - spacing / 2
    dv = (v % spacing) - spacing / 2
    return (_patch(rng, u, v) & (du ** 2 + dv ** 2 <= (spacing * rng.uniform(0.22, 0.33)) ** 2)).astype(np.float32)


def _zigzag(rng):
    u, v = _grid(rng)
    period, amp = rng.uniform(8, 14), rng.uniform(2, 5)
    wave = amp * (2 * np.abs(2 * ((u / period) % 1) - 1) - 1)  # triangle wave
    spacing = rng.uniform(8, 13)
    return (_patch(rng, u, v) & (((v - wave) % spacing) < spacing * 0.4)).astype(np.float32)


def _crescent(rng):
    u, v = _grid(rng)
    radius = rng.uniform(11, 21)
    shift = radius * rng.uniform(0.35, 0.6)
    outer = u ** 2 + v ** 2 <= radius ** 2
    bite = (u - shift) ** 2 + v ** 2 <= (radius * rng.uniform(0.8, 0.95)) ** 2
    return (outer & ~bite).astype(np.float32)


def _arrow(rng):
    shaft, head = rng.uniform(0.18, 0.3), rng.uniform(0.45, 0.6)
    unit = np.array([[-1, -shaft], [0.2, -shaft], [0.2, -head], [1, 0], [0.2, head], [0.2, shaft], [-1, shaft]])
    return _polygon_mask(rng, unit, rng.uniform(15, 27))


_DRAWERS: List[Callable[[np.random.Generator], np.ndarray]] = [
    _circle, _square, _triangle, _plus, _star, _ring,
    _stripes, _checkerboard, _dots, _zigzag, _crescent, _arrow]


def _luma(bgr: np.ndarray) -> float:
    return float(bgr @ np.array([0.114, 0.587, 0.299]))


def _background(rng: np.random.Generator) -> np.ndarray:
    """Solid, gradient or blotchy background, float32 BGR, muted so the object's colour stands out."""
    kind = rng.integers(3)
    if kind == 0:
        bg = np.broadcast_to(rng.uniform(0, 255, size=3).astype(np.float32), (IMAGE_SIZE, IMAGE_SIZE, 3)).copy()
    elif kind == 1:
        c1, c2 = rng.uniform(0, 255, size=(2, 3)).astype(np.float32)
        t = np.linspace(0, 1, IMAGE_SIZE, dtype=np.float32)
        ramp = t[None, :, None] if rng.integers(2) else t[:, None, None]
        bg = c1 + (c2 - c1) * np.broadcast_to(ramp, (IMAGE_SIZE, IMAGE_SIZE, 1))
    else:
        coarse = rng.uniform(0, 255, size=(4, 4, 3)).astype(np.float32)
        bg = cv2.resize(coarse, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_CUBIC)
    grey = bg.mean(axis=2, keepdims=True)
    return grey + (bg - grey) * rng.uniform(0.15, 0.6)


def _class_colour(rng: np.random.Generator, class_id: int, background: np.ndarray) -> np.ndarray:
    """A foreground colour whose hue leans towards the class (neighbours overlap) and that
    stands out from the background's brightness.

    The hue tendency gives networks an early, partial cue, so a short CPU run learns well
    above chance; shape is still needed to tell neighbouring classes apart.
    """
    hue = (class_id * 15 + rng.normal(0, 10)) % 180  # OpenCV hue units: 0-180
    base = _luma(background.reshape(-1, 3).mean(axis=0))
    for _ in range(20):  # bounded: a draw this far from the background's brightness stays visible
        hsv = np.array([[[hue, rng.uniform(140, 255), rng.uniform(90, 255)]]], np.float32)
        colour = cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)
        if abs(_luma(colour) - base) >= 45:
            break
    return colour


def _add_clutter(rng: np.random.Generator, img: np.ndarray) -> None:
    """A few small blobs and lines that belong to no class."""
    for _ in range(int(rng.integers(0, 3))):
        colour = tuple(float(c) for c in rng.uniform(0, 255, size=3))
        x, y = (int(c) for c in rng.integers(0, IMAGE_SIZE, size=2))
        if rng.integers(2):
            cv2.circle(img, (x, y), int(rng.integers(2, 4)), colour, -1, cv2.LINE_AA)
        else:
            x2, y2 = (int(c) for c in rng.integers(0, IMAGE_SIZE, size=2))
            cv2.line(img, (x, y), (x2, y2), colour, 1, cv2.LINE_AA)


def render_image(class_id: int, rng: np.random.Generator) -> np.ndarray:
    """Draw one 64x64 BGR uint8 image of ``class_id``."""
    img = _background(rng)
    mask = cv2.resize(_DRAWERS[class_id](rng), (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA)
    colour = _class_colour(rng, class_id, img)
    img = img * (1 - mask[..., None]) + colour * mask[..., None]
    _add_clutter(rng, img)
    if rng.random() < 0.3:
        img = cv2.GaussianBlur(img, (3, 3), 0)
    img = img + rng.normal(0, rng.uniform(2, 14), size=img.shape).astype(np.float32)
    return np.clip(img, 0, 255).astype(np.uint8)


# ----------------------------------------------------------------------------- files
def _demo_paths(root: str) -> Dict[str, str]:
    names = ["train_list", "val_list", "label_list", "rec_train_list", "rec_query_list",
             "rec_gallery_list", "gallery_label"]
    paths = {name: os.path.join(root, f"{name}.txt") for name in names}
    return {"root": root, "image_root": root, **paths}


def _write_images(root: str, split: str, per_class: int) -> Dict[int, List[str]]:
    """Write ``per_class`` JPEGs per class; return relative paths by class id."""
    rel_paths: Dict[int, List[str]] = {}
    for class_id, name in enumerate(CLASS_NAMES):
        folder = os.path.join("images", split, name)
        os.makedirs(os.path.join(root, folder), exist_ok=True)
        rel_paths[class_id] = []
        for index in range(per_class):
            # Seed per image, so an image does not depend on how many others are drawn.
            rng = np.random.default_rng([_SEED, _SPLITS[split], class_id, index])
            ok, encoded = cv2.imencode(".jpg", render_image(class_id, rng), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
            if not ok:
                raise RuntimeError(f"OpenCV could not encode a demo JPEG for {name}")
            rel = f"{folder}/{name}_{index:04d}.jpg"
            with open(os.path.join(root, rel), "wb") as f:
                f.write(encoded.tobytes())
            rel_paths[class_id].append(rel)
    return rel_paths


def _list_lines(rel_paths: Dict[int, List[str]], classes, fmt: Callable[[str, int], str]) -> str:
    return "".join(fmt(p, c) + "\n" for c in classes for p in rel_paths[c])


def _write_lists(root: str, train: Dict[int, List[str]], val: Dict[int, List[str]]) -> None:
    paths = _demo_paths(root)
    labelled = lambda p, c: f"{p} {c}"  # noqa: E731
    texts = {
        "train_list": _list_lines(train, range(len(CLASS_NAMES)), labelled),
        "val_list": _list_lines(val, range(len(CLASS_NAMES)), labelled),
        "label_list": "".join(f"{i} {n}\n" for i, n in enumerate(CLASS_NAMES)),
        "rec_train_list": _list_lines(train, REC_TRAIN_CLASSES, labelled),
        "rec_query_list": _list_lines(val, REC_HELD_OUT_CLASSES, labelled),
        "rec_gallery_list": _list_lines(train, REC_HELD_OUT_CLASSES, labelled),
        "gallery_label": _list_lines(train, REC_HELD_OUT_CLASSES, lambda p, c: f"{p}\t{CLASS_NAMES[c]}"),
    }
    for name, text in texts.items():
        with open(paths[name], "w", encoding="utf-8", newline="\n") as f:
            f.write(text)


def _info(train_per_class: int, val_per_class: int) -> Dict[str, Any]:
    return {"format_version": _FORMAT_VERSION, "classes": CLASS_NAMES,
            "train_per_class": train_per_class, "val_per_class": val_per_class}


def _is_same_demo(root: str, info: Dict[str, Any]) -> bool:
    try:
        with open(os.path.join(root, _INFO_FILE), encoding="utf-8") as f:
            return json.load(f) == info
    except (OSError, ValueError):
        return False


def make_demo_dataset(root: str, train_per_class: int = 60, val_per_class: int = 20) -> Dict[str, str]:
    """Generate the demo dataset under ``root`` and return its paths.

    Files: ``images/{train,val}/<class>/*.jpg``, ``train_list.txt`` / ``val_list.txt``
    (``rel/path label``, classes 0-11), ``label_list.txt`` (``id name``),
    ``rec_train_list.txt`` (classes 0-7), ``rec_query_list.txt`` (val images of 8-11),
    ``rec_gallery_list.txt`` (train images of 8-11) and ``gallery_label.txt``
    (``rel/path<TAB>name`` for the gallery). The tree is built in a temporary sibling
    directory and renamed into place, so a half-written demo never appears. An existing
    identical demo is reused; any other existing ``root`` is an error.
    """
    for key, value in (("train_per_class", train_per_class), ("val_per_class", val_per_class)):
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ConfigError(key, f"expected a positive integer, got {value!r}")
    root = os.path.normpath(root)
    info = _info(train_per_class, val_per_class)
    if os.path.exists(root):
        if _is_same_demo(root, info):
            return _demo_paths(root)
        raise ConfigError("root", f"{root} exists but is not a demo dataset with these settings ({info})",
                          "remove it or choose another directory")
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = os.path.join(parent, f".{os.path.basename(root)}.tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        train = _write_images(tmp, "train", train_per_class)
        val = _write_images(tmp, "val", val_per_class)
        _write_lists(tmp, train, val)
        with open(os.path.join(tmp, _INFO_FILE), "w", encoding="utf-8") as f:
            json.dump(info, f, indent=2)
        os.rename(tmp, root)
    except OSError:
        # Another process (e.g. a second training rank) may have finished first.
        shutil.rmtree(tmp, ignore_errors=True)
        if not _is_same_demo(root, info):
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return _demo_paths(root)


def _demo_root_of(path: str) -> Optional[str]:
    """The ancestor directory named ``ppfreeze_demo`` of ``path`` (or ``path`` itself), if any."""
    head = os.path.normpath(path)
    while head:
        if os.path.basename(head) == DEMO_ROOT_NAME:
            return head
        parent = os.path.dirname(head)
        if parent == head:
            return None
        head = parent
    return None


def _path_values(node: Any):
    """Yield the string values of ``_PATH_KEYS`` anywhere in a config tree."""
    if isinstance(node, dict):
        for k, v in node.items():
            if k in _PATH_KEYS:
                values = v if isinstance(v, list) else [v]  # infer_imgs may be a list
                yield from (p for p in values if isinstance(p, str))
            else:
                yield from _path_values(v)
    elif isinstance(node, list):
        for item in node:
            yield from _path_values(item)


def ensure_demo_data(cfg: Dict[str, Any]) -> Optional[str]:
    """Generate the demo dataset if the config points into a missing ``ppfreeze_demo`` directory.

    Looks at ``image_root``, ``cls_label_path``, ``infer_imgs`` and ``class_id_map_file``
    values anywhere in ``cfg``. Returns the root it generated, or None when nothing was needed.
    """
    generated = None
    for value in _path_values(cfg):
        root = _demo_root_of(value)
        if root is not None and not os.path.exists(root):
            logger.info("generating the embedded demo dataset in %s (first use)", root)
            make_demo_dataset(root)
            generated = generated or root
    return generated


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Generate the embedded demo dataset (no download).")
    parser.add_argument("--root", default=os.path.join(".", "dataset", DEMO_ROOT_NAME), help="target directory")
    parser.add_argument("--train-per-class", type=int, default=60)
    parser.add_argument("--val-per-class", type=int, default=20)
    args = parser.parse_args(argv)
    try:
        paths = make_demo_dataset(args.root, args.train_per_class, args.val_per_class)
    except ConfigError as e:
        print(f"make_demo_data: {e}", file=sys.stderr)
        return 2
    print(json.dumps(paths, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
