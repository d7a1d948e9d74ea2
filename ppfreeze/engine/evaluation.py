"""Evaluation loops: classification (loss + metrics such as Top-k, multi-label, attribute) and
retrieval (Recall@k, mAP).

Retrieval layout (PaddleClas): ``DataLoader.Eval.Query`` and ``DataLoader.Eval.Gallery`` are
loader sections; ``Metric.Eval`` lists ``Recallk`` (``topk``) and ``mAP``. Every query is
ranked against the gallery by the similarity of the model's ``Global.retrieval_feature_from``
output (default ``features``), as PaddleClas computes it: features L2-normalised unless
``Global.feature_normalize: false``, then binarised with ``Global.feature_binarize`` (``round``:
``round(f) * 2 - 1``, ``sign``: ``sign(f)``), compared by inner product (cosine by default).
When Query and Gallery describe the same dataset, each image is its own best match, so it is
excluded from its own ranking (by index).
"""
from __future__ import annotations

import logging
from typing import Any, Dict, Tuple

import numpy as np
import paddle

from ..arch.outputs import primary_output
from ..config.errors import ConfigError
from ..retrieval.evaluation import EmbeddedSet, build_retrieval_metrics

logger = logging.getLogger("ppfreeze")

EVAL_MODES = ("classification", "retrieval")
EVAL_KEY = "DataLoader.Eval"
SIDES = ("Query", "Gallery")
# PaddleClas modes we do not run, with why
UNSUPPORTED_EVAL_MODES = {"adaface": "face verification on LFW / CFP / AgeDB pairs (AdaFace) is not implemented"}


def _eval_mode(engine) -> str:
    mode = engine.glob.get("eval_mode", "classification")
    if mode in UNSUPPORTED_EVAL_MODES:
        raise ConfigError("Global.eval_mode", f"{mode!r}: {UNSUPPORTED_EVAL_MODES[mode]}",
                          f"use one of {', '.join(EVAL_MODES)}")
    if mode not in EVAL_MODES:
        raise ConfigError("Global.eval_mode", f"expected one of {EVAL_MODES}, got {mode!r}")
    return mode


def prepare_evaluation(engine) -> None:
    """Build (and keep) every evaluation part now: loaders, their list files, metrics, losses.

    Called before the first training step when ``eval_during_train`` is on, so a mistake in
    ``DataLoader.Eval`` or ``Metric.Eval`` stops the run at once instead of after an epoch.
    """
    if _eval_mode(engine) == "retrieval":
        _similarity(engine.glob)
        build_retrieval_metrics((engine.config.get("Metric") or {}).get("Eval"), "Metric.Eval")
        _eval_sections(engine.config.get("DataLoader") or {})
        for side in SIDES:
            eval_loader(engine, ("Eval", side), single_process=True)
    else:
        _classification_parts(engine)
        eval_loader(engine)


def evaluate(engine, epoch: int = 0) -> Dict[str, float]:
    """Run the evaluation selected by ``Global.eval_mode`` and log the averages."""
    mode = _eval_mode(engine)
    engine.model.eval()
    try:
        with paddle.no_grad(), engine.amp.autocast(evaluating=True):
            if mode == "retrieval":
                return eval_retrieval(engine)
            return eval_classification(engine)
    finally:
        engine.model.train()


def eval_loader(engine, path: Tuple[str, ...] = ("Eval",), single_process: bool = False):
    """The (cached) loader of ``DataLoader.<path>``, e.g. ``("Eval",)`` or ``("Eval", "Query")``.

    ``single_process``: every rank reads the whole set (retrieval ranks against all of it)
    instead of its DistributedBatchSampler shard.
    """
    from ..data import build_dataloader
    cache = engine.__dict__.setdefault("_eval_loaders", {})
    if path not in cache:
        parent_key = ".".join(("DataLoader",) + path[:-1])
        parent = engine.config["DataLoader"]
        for part in path[:-1]:
            parent = parent[part]
        if single_process and paddle.distributed.get_world_size() > 1:
            parent = {**parent, path[-1]: _single_process_section(parent[path[-1]], f"{parent_key}.{path[-1]}")}
        cache[path] = build_dataloader(parent, path[-1], seed=engine.seed, key=parent_key)
    return cache[path]


def _single_process_section(section: Any, key: str) -> Dict[str, Any]:
    sampler = section.get("sampler") if isinstance(section, dict) else None
    if not isinstance(sampler, dict):
        raise ConfigError(f"{key}.sampler", f"expected a mapping with batch_size, got {sampler!r}")
    return {**section, "sampler": {"name": "BatchSampler", "batch_size": sampler.get("batch_size", 64),
                                   "shuffle": False}}


def eval_classification(engine) -> Dict[str, float]:
    """Loss.Eval and Metric.Eval over ``DataLoader.Eval``.

    Per-batch metrics and losses are averaged weighted by batch size; epoch metrics
    (TprAtFpr, MultiLabelMAP, ATTRMetric) are computed from every sample. Labels reach the
    metrics as the dataset yields them: class ids, or ``[N, C]`` / ``[N, 2, C]`` multi-label
    targets (``Global.use_multilabel`` needs no reshaping here). Metrics come first, in
    list order (the first one picks the best model), then the losses.
    """
    metric_fn, loss_fn = _classification_parts(engine)
    metric_fn.reset()
    metric_sums: Dict[str, float] = {}
    loss_sums: Dict[str, float] = {}
    count = 0
    max_steps = engine.glob.get("max_eval_steps")
    loader = eval_loader(engine)
    for it, batch in enumerate(loader):
        if max_steps and it >= max_steps:
            break
        images, labels = batch[0], batch[1]
        out = engine.model(images)
        n = images.shape[0]
        _add_weighted(metric_sums, metric_fn.update(out, labels), n)
        if loss_fn is not None:
            _add_weighted(loss_sums, loss_fn(out, labels), n)
        count += n
    sums, count = _sum_over_ranks({**metric_sums, **loss_sums}, count)
    if count == 0:
        raise ConfigError("DataLoader.Eval.dataset", "the evaluation set is empty")
    _merge_epoch_metrics(metric_fn, len(loader.dataset))
    averages = {k: v / count for k, v in sums.items()}
    results = metric_fn.results(averages)
    results.update({k: averages[k] for k in loss_sums})
    return results


def _classification_parts(engine):
    """(Metric.Eval, Loss.Eval or None), built once per engine."""
    from ..loss import build_loss
    from ..metric import build_metrics
    cache = engine.__dict__
    if "_eval_parts" not in cache:
        cfg = engine.config
        if "Eval" not in (cfg.get("DataLoader") or {}):
            raise ConfigError("DataLoader.Eval", "missing", "evaluation needs a DataLoader.Eval section")
        metric_cfg = (cfg.get("Metric") or {}).get("Eval")
        if not metric_cfg:
            raise ConfigError("Metric.Eval", "missing", "add e.g. Metric: {Eval: [{TopkAcc: {topk: [1, 5]}}]}")
        cache["_eval_parts"] = (build_metrics(metric_cfg, "Metric.Eval"),
                                build_loss((cfg.get("Loss") or {}).get("Eval"), "Loss.Eval", required=False))
    return cache["_eval_parts"]


def _add_weighted(sums: Dict[str, float], values: Dict[str, Any], n: int) -> None:
    for k, v in values.items():
        sums[k] = sums.get(k, 0.0) + float(v) * n


def _merge_epoch_metrics(metric_fn, num_samples: int) -> None:
    """Data parallel: every rank's epoch metrics get all ranks' batches, padding dropped."""
    if paddle.distributed.get_world_size() <= 1:
        return
    for metric in metric_fn.epoch_metrics:
        per_rank: list = []
        paddle.distributed.all_gather_object(per_rank, metric.batches)
        metric.merge_ranks(per_rank, num_samples)


def _sum_over_ranks(sums: Dict[str, float], count: int):
    """Each rank evaluated its shard (DistributedBatchSampler): add the shards up."""
    if paddle.distributed.get_world_size() <= 1:
        return sums, count
    keys = list(sums)  # same insertion order on every rank
    t = paddle.to_tensor([sums[k] for k in keys] + [float(count)], dtype="float64")
    paddle.distributed.all_reduce(t)
    values = t.numpy().tolist()
    return dict(zip(keys, values[:-1])), int(values[-1])


def eval_retrieval(engine: Any) -> Dict[str, float]:
    """Embed ``DataLoader.Eval.Query`` / ``Gallery`` with ``engine.model`` and compute ``Metric.Eval``.

    Returns e.g. ``{"recall1": .., "recall5": .., "mAP": ..}`` in the order of the metric
    list (the engine picks the best model by the first key). Call under ``paddle.no_grad()``
    with the model in eval mode (``ppfreeze.engine.evaluation.evaluate`` does).
    """
    cfg = engine.config
    metrics = build_retrieval_metrics((cfg.get("Metric") or {}).get("Eval"), "Metric.Eval")
    eval_cfg = _eval_sections(cfg.get("DataLoader") or {})
    same_set = eval_cfg["Query"]["dataset"] == eval_cfg["Gallery"]["dataset"]
    similarity = _similarity(engine.glob)
    query = embed_dataset(engine, "Query")
    gallery = query if same_set else embed_dataset(engine, "Gallery")
    results: Dict[str, float] = {}
    for metric in metrics:
        results.update(metric.compute(query, gallery, exclude_self=same_set, similarity=similarity))
    if any(np.isnan(v) for v in results.values()):
        raise ConfigError(EVAL_KEY, "no query has an image of its label in the gallery, so recall and mAP "
                                    "are undefined", "Query and Gallery must share labels (identities)")
    return results


def embed_dataset(engine: Any, side: str) -> EmbeddedSet:
    """Run ``engine.model`` over ``DataLoader.Eval.<side>`` and collect features, labels (and cameras)."""
    feat_from = engine.glob.get("retrieval_feature_from", "features")
    max_steps = engine.glob.get("max_eval_steps")
    features, labels, cameras = [], [], []
    for step, batch in enumerate(eval_loader(engine, ("Eval", side), single_process=True)):
        if max_steps and step >= max_steps:
            break
        features.append(retrieval_features(_features_of(engine.model(batch[0]), feat_from).numpy(), engine.glob))
        labels.append(np.asarray(batch[1]).reshape(-1))
        if len(batch) >= 3:   # (image, label, camera) items
            cameras.append(np.asarray(batch[2]).reshape(-1))
    if not features:
        raise ConfigError(f"{EVAL_KEY}.{side}.dataset", "the evaluation set is empty")
    return EmbeddedSet(np.concatenate(features), np.concatenate(labels),
                       np.concatenate(cameras) if cameras else None)


def _eval_sections(loader_cfg: Dict[str, Any]) -> Dict[str, Any]:
    eval_cfg = loader_cfg.get("Eval")
    if not isinstance(eval_cfg, dict):
        raise ConfigError(EVAL_KEY, "missing: retrieval evaluation needs DataLoader.Eval.Query and .Gallery",
                          "see configs/retrieval/quick_start_rec.yaml")
    for side in SIDES:
        section = eval_cfg.get(side)
        if not isinstance(section, dict) or not isinstance(section.get("dataset"), dict):
            present = ", ".join(k for k in eval_cfg if isinstance(eval_cfg[k], dict)) or "none"
            raise ConfigError(f"{EVAL_KEY}.{side}", f"missing (or without a dataset); sections present: {present}",
                              "retrieval evaluation ranks DataLoader.Eval.Query against DataLoader.Eval.Gallery; "
                              "give both (the same dataset twice for leave-one-out evaluation)")
    return eval_cfg


def _features_of(output: Any, feat_from: str) -> paddle.Tensor:
    output = primary_output(output)  # a DistillationModel: its deployed model's output
    if not isinstance(output, dict):
        raise ConfigError("Arch.name", f"retrieval evaluation needs a model that returns a dict of outputs, "
                                       f"got {type(output).__name__}", "use Arch.name: RecModel")
    if feat_from not in output:
        raise ConfigError("Global.retrieval_feature_from", f"the model output has no '{feat_from}'",
                          f"choose one of: {', '.join(sorted(output))}")
    return output[feat_from]


BINARIZE = ("round", "sign")


def _similarity(glob: Dict[str, Any]) -> str:
    """How ``eval_retrieval`` compares the features :func:`retrieval_features` made.

    Raises:
        ConfigError: for ``re_ranking: true`` (not implemented) and a ``feature_binarize`` that is
            neither ``round`` nor ``sign``.
    """
    if glob.get("re_ranking"):
        raise ConfigError("Global.re_ranking", "k-reciprocal re-ranking is not implemented in ppfreeze",
                          "set re_ranking: false (the ranking is then by feature similarity, as without it)")
    binarize = glob.get("feature_binarize")
    if binarize is not None and binarize not in BINARIZE:
        raise ConfigError("Global.feature_binarize", f"expected round, sign or null, got {binarize!r}")
    # binarised or unnormalised features are compared as they are, as PaddleClas does
    if binarize is None and glob.get("feature_normalize", True):
        return "cosine"
    return "inner_product"


def retrieval_features(features: np.ndarray, glob: Dict[str, Any]) -> np.ndarray:
    """PaddleClas's retrieval features: L2-normalised (``Global.feature_normalize``, default true),
    then binarised (``Global.feature_binarize``: ``round`` gives ``round(f) * 2 - 1``, ``sign`` gives
    ``sign(f)``); float32."""
    features = np.asarray(features, dtype=np.float32)
    if glob.get("feature_normalize", True):
        norms = np.linalg.norm(features, axis=1, keepdims=True)
        features = features / np.maximum(norms, 1e-12)   # paddle.nn.functional.normalize's epsilon
    binarize = glob.get("feature_binarize")
    if binarize == "round":   # paddle.round: halves away from zero (np.round goes to even)
        features = np.sign(features) * np.floor(np.abs(features) + 0.5) * 2.0 - 1.0
    elif binarize == "sign":
        features = np.sign(features)
    return features.astype(np.float32)
