"""Check a TIPC run's numbers, not only its exit codes.

PaddleClas's ``test_tipc/compare_results.py`` compares logged predictions with stored result
files. Here the reference is recomputed from the weights themselves, so nothing goes stale:

    # every file predict_cls.py / predict_rec.py saved (Global.save_results) against the dygraph
    # model with the same weights and the same preprocessing; takes the export command's -c/-o
    python test_tipc/compare_results.py infer -c configs/quick_start/ResNet18.yaml \
        -o Global.pretrained_model=W -o Global.save_inference_dir=D \
        --results 'test_tipc/output/ResNet18/lite_train_lite_infer/python_infer_*.json' \
        [--gallery "-c deploy/configs/build_gallery.yaml -o IndexProcess.data_file=..."]

    # every tensor the Freeze plan kept fixed, in every checkpoint of a run, against the
    # pretrained file the run started from, bit for bit
    python test_tipc/compare_results.py frozen --train-dir test_tipc/output/ResNet18_freeze/.../ResNet18

``infer`` checks each reported number against the reference within ``atol + rtol * |ref|``
(1e-3 and 1e-3 by default): classification top-k scores at their class ids and the top-k
ranking, raw outputs element by element, retrieval matches (score of the reported gallery id,
its label, and the top-k scores) against cosine similarities of dygraph features. Exit status:
0 all checks passed, 1 a number disagrees or nothing was checked, 2 a usage or config error.
"""
from __future__ import annotations

import argparse
import glob
import json
import logging
import os
import shlex
import sys
from collections import Counter
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), ".."))
sys.path.insert(0, ROOT)

from ppfreeze.cli import build_parser  # noqa: E402
from ppfreeze.config import ConfigError, load_config  # noqa: E402
from ppfreeze.errors import PPFreezeError, report  # noqa: E402

logger = logging.getLogger("ppfreeze")
BATCH = 16


class Mismatch(Exception):
    """A reported number disagrees with the reference."""


def _weights_file(prefix: str) -> str:
    return prefix if prefix.endswith(".pdparams") else prefix + ".pdparams"


def load_weights(prefix: str, key: str) -> Dict[str, np.ndarray]:
    """A ``.pdparams`` file as name -> numpy array."""
    import paddle
    path = _weights_file(prefix)
    if not os.path.isfile(path):
        raise ConfigError(key, f"weights file not found: {path}")
    return {name: np.asarray(value) for name, value in paddle.load(path).items()}


# ----------------------------------------------------------------------------- infer
class DygraphReference:
    """The config's model with ``Global.pretrained_model`` loaded exactly, in eval mode, behind the
    same output selection (``Arch.infer_output_key``, softmax / sigmoid) as the exported program,
    fed by the preprocessing export writes into ``inference.yml``."""

    def __init__(self, config: Dict[str, Any]):
        import paddle
        from ppfreeze.arch import build_model
        from ppfreeze.data import create_operators
        from ppfreeze.export.inference_yml import export_preprocess
        from ppfreeze.export.wrapper import InferenceModel, is_multilabel, split_export_keys

        weights = config["Global"].get("pretrained_model")
        if not weights:
            raise ConfigError("Global.pretrained_model", "not set: no weights to compute the reference with",
                              "pass the export command's -o Global.pretrained_model=...")
        arch_cfg, options = split_export_keys(config["Arch"], is_multilabel(config))
        model = build_model(arch_cfg, class_num=config["Global"].get("class_num"))
        state = load_weights(weights, "Global.pretrained_model")
        expected = model.state_dict()
        missing = [n for n in expected if n not in state]
        wrong = [n for n in expected if n in state and list(state[n].shape) != list(expected[n].shape)]
        if missing or wrong:
            raise ConfigError("Global.pretrained_model", f"{weights} does not fit {arch_cfg['name']}: "
                                                         f"missing {missing[:5]}, other shape {wrong[:5]}")
        model.set_state_dict({n: paddle.to_tensor(state[n]) for n in expected})
        self.model = InferenceModel(model, options)
        self.model.eval()
        ops_cfg, _ = export_preprocess(config)
        self.ops = create_operators(ops_cfg, "preprocess")
        self.options = options
        self._cache: Dict[str, np.ndarray] = {}

    def __call__(self, paths: Sequence[str]) -> np.ndarray:
        """Outputs [len(paths), ...] (cached per image path)."""
        import paddle
        from ppfreeze.data import transform
        from ppfreeze.utils.images import batched, read_bytes
        todo = [p for p in dict.fromkeys(paths) if p not in self._cache]
        for chunk in batched(todo, BATCH):
            batch = np.stack([transform(read_bytes(p), self.ops) for p in chunk]).astype("float32")
            with paddle.no_grad():
                out = self.model(paddle.to_tensor(batch)).numpy()
            self._cache.update(zip(chunk, out))
        return np.stack([self._cache[p] for p in paths])


def _close(reported: np.ndarray, reference: np.ndarray, atol: float, rtol: float) -> Tuple[bool, float]:
    reported, reference = np.asarray(reported, np.float64), np.asarray(reference, np.float64)
    diff = np.abs(reported - reference)
    return bool(np.all(diff <= atol + rtol * np.abs(reference))), float(diff.max()) if diff.size else 0.0


def _check_ranked(ids: Sequence[int], scores: Sequence[float], reference: np.ndarray, higher_is_better: bool,
                  atol: float, rtol: float, what: str) -> float:
    """Reported (id, score) pairs: each score equals the reference at its id, and the scores are
    the reference's best ``len(ids)`` (tie-proof: compared as sorted values). Returns max |diff|."""
    ids = [int(i) for i in ids]
    if len(set(ids)) != len(ids) or any(i < 0 or i >= reference.shape[0] for i in ids):
        raise Mismatch(f"{what}: ids {ids} repeat or fall outside 0..{reference.shape[0] - 1}")
    ok, worst = _close(np.asarray(scores), reference[ids], atol, rtol)
    if not ok:
        raise Mismatch(f"{what}: scores {list(scores)} at ids {ids}, reference {reference[ids].round(6).tolist()}")
    best = np.sort(reference)[::-1] if higher_is_better else np.sort(reference)
    ordered = sorted(scores, reverse=higher_is_better)
    ok, worst_rank = _close(np.asarray(ordered), best[:len(ids)], atol, rtol)
    if not ok:
        raise Mismatch(f"{what}: reported the scores {ordered}, but the best {len(ids)} are "
                       f"{best[:len(ids)].round(6).tolist()}")
    return max(worst, worst_rank)


class Gallery:
    """The gallery ``build_gallery.py`` indexed: ids 0..N-1 in list order, labels, dygraph features."""

    def __init__(self, args_text: str, reference: DygraphReference):
        from ppfreeze.retrieval import read_gallery_file
        args = build_parser("gallery").parse_args(shlex.split(args_text))
        cfg = load_config(args.config, args.override, validate=False)
        ip = cfg.get("IndexProcess") or {}
        entries = read_gallery_file(ip.get("data_file"), ip.get("image_root") or "", ip.get("delimiter", "\t"))
        self.labels = [label for _, label in entries]
        self.dist_type = ip.get("dist_type", "IP")
        self.features = l2_normalize(reference([path for path, _ in entries]))

    def scores(self, query: np.ndarray) -> np.ndarray:
        """IP: cosine similarity to every gallery item; L2: squared distance."""
        q = l2_normalize(query[None])[0]
        cos = self.features @ q
        return cos if self.dist_type == "IP" else 2.0 - 2.0 * cos


def l2_normalize(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def check_results_file(path: str, reference: DygraphReference, gallery: Optional[Gallery],
                       atol: float, rtol: float) -> Tuple[int, float]:
    """Check one saved results file; returns (images, max |diff|). Raises Mismatch."""
    with open(path, encoding="utf-8") as f:   # JSON Lines: one object per image (deploy's save_results)
        results = [json.loads(line) for line in f if line.strip()]
    failed = [r["file_name"] for r in results if "error" in r]
    if failed:
        raise Mismatch(f"{path}: {len(failed)} images failed in the deploy tool, e.g. {failed[0]}")
    if not results:
        raise Mismatch(f"{path}: no results")
    outputs = reference([r["file_name"] for r in results])
    worst = 0.0
    for r, out in zip(results, outputs):
        what = f"{os.path.basename(path)}: {r['file_name']}"
        if "class_ids" in r:
            worst = max(worst, _check_ranked(r["class_ids"], r["scores"], out, True, atol, rtol, what))
        elif "output" in r:
            ok, diff = _close(np.asarray(r["output"]).reshape(out.shape), out, atol, rtol)
            if not ok:
                raise Mismatch(f"{what}: output differs from the reference by up to {diff:.3g}")
            worst = max(worst, diff)
        elif "results" in r:
            if gallery is None:
                raise Mismatch(f"{what}: retrieval results need --gallery (the build_gallery arguments)")
            matches = r["results"]
            if not matches:
                raise Mismatch(f"{what}: no gallery match (set IndexProcess.score_thres=null to keep all)")
            ref = gallery.scores(out)
            worst = max(worst, _check_ranked([m["id"] for m in matches], [m["score"] for m in matches], ref,
                                             gallery.dist_type == "IP", atol, rtol, what))
            for m in matches:
                if m["label"] != gallery.labels[int(m["id"])]:
                    raise Mismatch(f"{what}: gallery id {m['id']} reported as '{m['label']}', "
                                   f"the list says '{gallery.labels[int(m['id'])]}'")
        else:
            raise Mismatch(f"{what}: unknown result format (keys {sorted(r)})")
    return len(results), worst


def run_infer(args: argparse.Namespace) -> int:
    config = load_config(args.config, args.override)
    files = sorted(glob.glob(args.results))
    if not files:
        print(f"compare infer: no results file matches {args.results}")
        return 1
    reference = DygraphReference(config)
    gallery = Gallery(args.gallery, reference) if args.gallery else None
    counts, failed, agreed = set(), 0, 0
    for path in files:
        try:
            images, worst = check_results_file(path, reference, gallery, args.atol, args.rtol)
        except Mismatch as e:
            print(f"FAIL {e}")
            failed += 1
            continue
        counts.add(images)
        agreed += 1
        print(f"OK   {path}: {images} images agree with dygraph (max |diff| {worst:.2e}, "
              f"atol {args.atol:g}, rtol {args.rtol:g})")
    if len(counts) > 1:
        print(f"FAIL the results files cover different numbers of images: {sorted(counts)}")
        failed += 1
    print(f"compare infer: {agreed}/{len(files)} results files agree with dygraph")
    return 1 if failed else 0


# ----------------------------------------------------------------------------- frozen
def _epoch_of(name: str, last_epoch: int) -> Optional[int]:
    stem = os.path.basename(name)[:-len(".pdparams")]
    if stem == "latest":
        return last_epoch
    if stem.startswith("epoch_") and stem[len("epoch_"):].isdigit():
        return int(stem[len("epoch_"):])
    return None


def _by_stage(names: Set[str], model: Any) -> str:
    """``stem 5, stage1 25``: how many of ``names`` lie in each of the model's stages."""
    from ppfreeze.freeze.model_index import is_under
    stages = getattr(model, "stages", None) or {}

    def stage_of(name: str) -> str:
        return next((s for s, units in stages.items() if any(is_under(name, u) for u in units)), name.split(".")[0])
    counts = Counter(stage_of(n) for n in names)
    order = list(stages) + sorted(set(counts) - set(stages))
    return ", ".join(f"{stage} {counts[stage]}" for stage in order if stage in counts)


def run_frozen(args: argparse.Namespace) -> int:
    from ppfreeze.arch import build_model
    from ppfreeze.freeze import build_freeze_plan
    config = load_config(os.path.join(args.train_dir, "config.yaml"))
    pretrained = config["Global"].get("pretrained_model")
    if not pretrained:
        raise ConfigError("Global.pretrained_model", f"not set in {args.train_dir}/config.yaml: "
                                                     f"no pretrained file to compare the frozen tensors with")
    if not config.get("Freeze"):
        print(f"compare frozen: {args.train_dir}/config.yaml has no Freeze section: nothing is frozen")
        return 0
    model = build_model(config["Arch"], class_num=config["Global"].get("class_num"))
    plan = build_freeze_plan(config["Freeze"], model)
    epochs = int(config["Global"]["epochs"])
    frozen_by_epoch = [set(plan.frozen_tensor_names(e)) for e in range(1, epochs + 1)]
    start = load_weights(pretrained, "Global.pretrained_model")
    checkpoints = sorted(glob.glob(os.path.join(args.train_dir, "*.pdparams")))
    checked, failed, changed = 0, 0, False
    for ckpt_path in checkpoints:
        epoch = _epoch_of(ckpt_path, epochs)
        if epoch is None:
            continue
        frozen = set.intersection(*frozen_by_epoch[:epoch])
        state = load_weights(ckpt_path, "checkpoint")
        bad = []
        for name in sorted(frozen):
            a, b = state.get(name), start.get(name)
            if a is None or b is None:
                bad.append(f"{name} (missing from the {'checkpoint' if a is None else 'pretrained file'})")
            elif a.dtype != b.dtype or a.shape != b.shape or a.tobytes() != b.tobytes():
                diff = np.abs(a.astype(np.float64) - b.astype(np.float64)).max() if a.shape == b.shape else "shape"
                bad.append(f"{name} (max |diff| {diff})")
        changed |= any(n in start and state[n].tobytes() != start[n].tobytes() for n in state if n not in frozen)
        checked += 1
        name = os.path.basename(ckpt_path)
        if bad:
            failed += 1
            print(f"FAIL {name}: {len(bad)} of {len(frozen)} tensors frozen through epoch {epoch} differ from "
                  f"{_weights_file(pretrained)}: {', '.join(bad[:10])}")
        else:
            print(f"OK   {name}: the {len(frozen)} tensors frozen through epoch {epoch} ({_by_stage(frozen, model)}) "
                  f"are bit-identical to {_weights_file(pretrained)}")
    if not checked:
        print(f"FAIL no checkpoint (latest / epoch_N .pdparams) in {args.train_dir}")
        return 1
    if not set.intersection(*frozen_by_epoch):
        print("note: no tensor stays frozen for the whole run (the schedule unfreezes everything)")
    if not changed:
        print("FAIL no trainable tensor differs from the pretrained file: training updated nothing")
        failed += 1
    return 1 if failed else 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Check a TIPC run's numbers (inference vs dygraph, frozen tensors).")
    sub = parser.add_subparsers(dest="check", required=True)
    infer = sub.add_parser("infer", help="saved inference results vs the dygraph model (same weights)")
    infer.add_argument("-c", "--config", required=True, help="the export command's config")
    infer.add_argument("-o", "--override", action="append", default=[], help="the export command's overrides")
    infer.add_argument("--results", required=True, help="glob of the JSON files Global.save_results wrote")
    infer.add_argument("--gallery", default="", help="build_gallery.py's arguments as one string (retrieval)")
    infer.add_argument("--atol", type=float, default=1e-3)
    infer.add_argument("--rtol", type=float, default=1e-3)
    frozen = sub.add_parser("frozen", help="frozen tensors in every checkpoint vs the pretrained file, bit for bit")
    frozen.add_argument("--train-dir", required=True, help="Global.output_dir/<Arch.name> of the training run")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return run_infer(args) if args.check == "infer" else run_frozen(args)
    except PPFreezeError as e:
        return report(e)


if __name__ == "__main__":
    sys.exit(main())
