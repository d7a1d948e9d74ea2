"""The augmentation ops and batch ops PaddleClas configs name: shapes, dtypes, ranges, a value
checked by hand per op, argument errors, reproducibility (also across num_workers), and mixup /
cutmix soft labels through the loader and the losses.

Bit-exact agreement with PaddleClas's own ops (same input, same seeded draws) is checked by
``tools/dev/compare_ops_with_paddleclas.py``, which needs a PaddleClas checkout.
"""
import logging
import random

import cv2
import numpy as np
import pytest
import yaml

from ppfreeze.config.errors import ConfigError
from ppfreeze.data.batch_ops import build_batch_op
from ppfreeze.data.preprocess import create_operators, outputs_channel_first, transform
from ppfreeze.data.registry import BATCH_OPS, OPS


def _img(h=24, w=32, seed=0):
    """A textured uint8 RGB image."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 // (w - 1), yy * 255 // (h - 1), (xx + yy) * 9 % 256], -1)
    return np.clip(base + rng.integers(-15, 16, base.shape), 0, 255).astype(np.uint8)


def _op(name, **kwargs):
    return create_operators([{name: kwargs}], "T")[0]


def _seeded(seed):
    random.seed(seed)
    np.random.seed(seed)


def _run(op, img, seed):
    _seeded(seed)
    return op(img.copy())


def _check_reproducible(op, img, seeds=range(4)):
    """Same seed, same output; some seed changes the image (for random ops)."""
    outs = [_run(op, img, s) for s in seeds]
    for s, out in zip(seeds, outs):
        np.testing.assert_array_equal(out, _run(op, img, s))
    return outs


# ----------------------------------------------------------------------------- registry
PADDLECLAS_OPS = ["RandomErasing", "TimmAutoAugment", "AutoAugment", "ToTensor", "Normalize", "Padv2",
                  "RandomCropImage", "RandCropImageV2", "ColorJitter", "Cutout", "AugMix", "Pad", "RandAugmentV3",
                  "RandAugmentV4", "Pad_paddle_vision", "RandomResizedCrop", "RandomHorizontalFlip", "RandomRotation",
                  "Resize", "CenterCrop", "GridMask", "HideAndSeek", "RandAugment", "RandAugmentV2",
                  "CropImageAtRatio", "PCALighting", "BlurImage", "RandomRot90", "RandomCrop", "DecodeImage",
                  "ResizeImage", "CropImage", "RandCropImage", "RandFlipImage", "NormalizeImage", "ToCHWImage"]
MINIMAL_ARGS = {"Padv2": {"size": 8}, "RandomCropImage": {"size": 4}, "RandCropImageV2": {"size": 4},
                "Pad": {"padding": 1}, "Pad_paddle_vision": {"padding": 1}, "RandomResizedCrop": {"size": 4},
                "RandomRotation": {"degrees": 10}, "Resize": {"size": 4}, "CenterCrop": {"size": 4},
                "CropImageAtRatio": {"size": 4, "pad": 1}, "RandomCrop": {"size": 4}, "ResizeImage": {"size": 4},
                "CropImage": {"size": 4}, "RandCropImage": {"size": 4}}


def test_every_op_paddleclas_configs_name_is_registered_with_an_is_random_flag():
    assert set(PADDLECLAS_OPS) <= set(OPS.names())
    assert {"OpSampler", "MixupOperator", "CutmixOperator", "MixupCutmixHybrid"} <= set(BATCH_OPS.names())
    for name in PADDLECLAS_OPS:
        op = _op(name, **MINIMAL_ARGS.get(name, {}))
        assert isinstance(op.is_random, bool), name
    for name, cfg in (("OpSampler", {"MixupOperator": {"alpha": 0.2, "prob": 0.5}}), ("MixupOperator", {}),
                      ("CutmixOperator", {}), ("MixupCutmixHybrid", {"num_classes": 3})):
        assert build_batch_op({name: cfg}, "B", 3).is_random is True
    # probability-0 settings that PaddleClas configs use are deterministic (Freeze may cache features)
    assert not _op("RandomErasing", EPSILON=0.0).is_random
    assert not _op("TimmAutoAugment", prob=0.0).is_random
    assert _op("ResizeImage", size=4, interpolation="random").is_random
    assert not _op("ResizeImage", size=4, interpolation="bicubic").is_random


def test_argument_mistakes_are_config_errors_naming_the_argument():
    bad = [("RandomErasing", {"EPSILON": 1.5}, "EPSILON"), ("RandomErasing", {"mode": "noise"}, "mode"),
           ("TimmAutoAugment", {"config_str": "rand-q9"}, "config_str"),
           ("TimmAutoAugment", {"config_str": None}, "config_str"),
           ("TimmAutoAugment", {"interpolation": "lanczos"}, "interpolation"),
           ("ColorJitter", {"hue": 0.7}, "hue"), ("ColorJitter", {"contrast": -1}, "contrast"),
           ("Padv2", {"pad_mode": -1}, "offsets"), ("Padv2", {"pad_mode": 3}, "pad_mode"),
           ("RandomRotation", {}, "degrees"), ("GridMask", {"d1": 50, "d2": 40}, "d2"),
           ("Cutout", {"length": 0}, "length"), ("Pad", {"padding": 2, "backend": "skimage"}, "backend"),
           ("RandCropImage", {"size": 8, "progress_size": "big"}, "progress_size"),
           ("AugMix", {"mixture_depth": 0}, "mixture_depth"), ("BlurImage", {"gaussian_max_ksize": 5},
                                                               "gaussian_max_ksize"),
           ("ToTensor", {"data_format": "NCHW"}, "data_format"), ("RandAugmentV4", {"magnitude": 3}, "magnitude")]
    for name, kwargs, key in bad:
        with pytest.raises(ConfigError) as e:
            create_operators([{name: kwargs}], "DataLoader.Train.dataset.transform_ops")
        assert e.value.key == f"DataLoader.Train.dataset.transform_ops[0].{name}.{key}", (name, e.value.key)


# ----------------------------------------------------------------------------- core-op options
def test_decode_image_to_np_false_returns_what_the_pil_image_holds():
    bgr = _img(5, 7)
    png = cv2.imencode(".png", bgr)[1].tobytes()
    np.testing.assert_array_equal(_op("DecodeImage", to_np=False, backend="pil")(png), bgr[:, :, ::-1])
    np.testing.assert_array_equal(_op("DecodeImage", to_np=False, channel_first=True)(png), bgr)  # cv2: BGR, HWC


def test_resize_and_crop_with_random_interpolation_draw_bilinear_or_bicubic():
    img = _img()
    op = _op("ResizeImage", size=[16, 12], interpolation="random", return_numpy=False)
    outs = _check_reproducible(op, img, range(8))
    choices = [cv2.resize(img, (16, 12), interpolation=f) for f in (cv2.INTER_LINEAR, cv2.INTER_CUBIC)]
    assert all(any(np.array_equal(o, c) for c in choices) for o in outs)
    for choice in choices:  # both are drawn in 8 tries
        assert any(np.array_equal(o, choice) for o in outs)
    crop = _op("RandCropImage", size=8, interpolation="random", backend="pil", progress_size=[6, 8])
    assert _run(crop, img, 0).shape == (8, 8, 3)


# ----------------------------------------------------------------------------- geometry
def test_random_crop_image_and_rand_crop_image_v2():
    img = _img(10, 12)
    crop = _op("RandomCropImage", size=[5, 4])  # [w, h]
    out = _run(crop, img, 3)
    _seeded(3)
    top, left = random.randint(0, 6), random.randint(0, 7)
    np.testing.assert_array_equal(out, img[top:top + 4, left:left + 5])
    v2 = _op("RandCropImageV2", size=[12, 9])
    edge_rows = 0
    for seed in range(12):  # offsets are drawn up to image - crop + 1: the last row may lie outside (zero)
        out = _run(v2, img, seed)
        _seeded(seed)
        top, left = random.randint(0, 2), random.randint(0, 1)
        assert out.shape == (9, 12, 3) and out.dtype == np.uint8
        inside = img[top:top + 9, left:left + 12]
        np.testing.assert_array_equal(out[:inside.shape[0], :inside.shape[1]], inside)
        if top == 2:
            edge_rows += 1
            assert not out[-1].any()
    assert edge_rows > 0
    assert v2(img[:9]) is not None and _op("RandCropImageV2", size=[12, 10])(img) is img


def test_crop_image_at_ratio_pad_and_padv2():
    img = _img(6, 10)
    # pad 0: the centre square of the short side, resized to its own size (no change)
    np.testing.assert_array_equal(_op("CropImageAtRatio", size=6, pad=0)(img), img[:, 2:8])
    assert _op("CropImageAtRatio", size=8, pad=8)(_img(20, 30)).shape == (8, 8, 3)  # side int(0.5 * 20) = 10 -> 8
    padded = _op("Pad", padding=2, fill=7)(img)
    assert padded.shape == (10, 14, 3) and (padded[0, 0] == 7).all()
    np.testing.assert_array_equal(padded[2:-2, 2:-2], img)
    canvas = _op("Padv2", size=[14, 9], pad_mode=1, fill_value=0)(img)  # [w, h]
    assert canvas.shape == (9, 14, 3) and canvas.dtype == np.float32
    np.testing.assert_array_equal(canvas[1:7, 2:12], img)  # offsets ((9 - 6) // 2, (14 - 10) // 2)
    assert not canvas[0].any() and not canvas[:, :2].any()
    assert _op("Padv2", size_divisor=8)(img).shape == (8, 16, 3)
    shifted = _op("Padv2", size=[12, 8], pad_mode=-1, offsets=[1, 2], fill_value=[1, 2, 3])(img)
    np.testing.assert_array_equal(shifted[2:8, 1:11], img)
    np.testing.assert_array_equal(shifted[0, 0], [1, 2, 3])


def test_random_rot90_labels_its_rotation_and_random_rotation_fills_the_corners():
    img = _img(6, 8).astype(np.float32)
    op = _op("RandomRot90")
    for seed in range(4):
        _seeded(seed)
        out, extra = op.augment_with_labels(img)
        np.testing.assert_array_equal(out, np.rot90(img, extra["random_rot90_orientation"]))
    sample = transform({"img": img}, [op])  # PaddleClas's dict samples carry the label on
    assert sample["random_rot90_orientation"] in (0, 1, 2, 3)
    flat = np.full((9, 9, 3), 100, np.uint8)
    rotated = _op("RandomRotation", prob=1.0, degrees=[45, 45], fill=9)(flat)
    assert rotated.shape == (9, 9, 3) and rotated.dtype == np.uint8
    assert (rotated[0, 0] == 9).all() and (rotated[4, 4] == 100).all()
    still = _op("RandomRotation", prob=0.0, degrees=90)
    assert still(flat) is flat and not still.is_random


# ----------------------------------------------------------------------------- paddle.vision ops
def test_to_tensor_normalize_and_chw_layout_downstream():
    img = np.zeros((2, 3, 3), np.uint8)
    img[0, 0] = (255, 51, 0)
    ops = create_operators([{"ToTensor": None}, {"Normalize": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]}},
                            {"RandomErasing": {"EPSILON": 1.0}}, {"RandomHorizontalFlip": {"prob": 1.0}}], "T")
    assert outputs_channel_first(ops) and ops[2].channel_first and ops[3].channel_first
    chw = ops[1](ops[0](img))
    assert chw.shape == (3, 2, 3) and chw.dtype == np.float32
    np.testing.assert_allclose(chw[:, 0, 0], [1.0, -0.6, -1.0], rtol=1e-6)  # (255/255 - .5)/.5, (51/255 - .5)/.5
    np.testing.assert_array_equal(ops[3](chw), chw[:, :, ::-1])
    assert _op("ToTensor", data_format="HWC")(img).shape == (2, 3, 3)


def test_resize_center_crop_random_resized_crop_random_crop_and_pad_vision():
    img = _img(30, 70)
    assert _op("Resize", size=20)(img).shape == (20, 46, 3)  # int(20 * 70 / 30) = 46: truncated, not rounded
    assert _op("Resize", size=[10, 12])(img).shape == (10, 12, 3)  # [h, w]
    six = _img(6, 6)
    np.testing.assert_array_equal(_op("CenterCrop", size=3)(six), six[2:5, 2:5])  # round(1.5) = 2
    crop = _op("RandomResizedCrop", size=[8, 10], scale=[0.2, 1])
    assert _run(crop, img, 0).shape == (8, 10, 3)
    # no draw fits a 3:1 box with 95% of the area: the fallback is the centre crop clamped to ratio 3
    fallback = _op("RandomResizedCrop", size=16, scale=[0.95, 1], ratio=[3.0, 4.0], interpolation="nearest")
    wide = _img(48, 64)
    expected = cv2.resize(wide[13:34], (16, 16), interpolation=cv2.INTER_NEAREST)  # h = round(64 / 3) = 21
    np.testing.assert_array_equal(_run(fallback, wide, 1), expected)
    assert _op("RandomCrop", size=[10, 12])(_img(10, 12)).shape == (10, 12, 3)
    assert _run(_op("RandomCrop", size=[34, 40], pad_if_needed=True), _img(30, 36), 0).shape == (34, 40, 3)
    with pytest.raises(ValueError, match="pad_if_needed"):
        _op("RandomCrop", size=[40, 40])(_img(30, 36))
    row = np.array([[[1], [2], [3], [4]]], np.uint8)
    assert _op("Pad_paddle_vision", padding=[2, 0], padding_mode="reflect")(row)[0, :, 0].tolist() == \
        [3, 2, 1, 2, 3, 4, 3, 2]
    assert _op("Pad_paddle_vision", padding=[2, 0], padding_mode="symmetric")(row)[0, :, 0].tolist() == \
        [2, 1, 1, 2, 3, 4, 4, 3]


# ----------------------------------------------------------------------------- colour
def test_color_jitter_pca_lighting_and_blur():
    flat = np.full((4, 4, 3), 100, np.uint8)
    half = _op("ColorJitter", brightness=[0.5, 0.5])
    assert (half(flat) == 50).all()  # brightness factor 0.5
    jitter = _op("ColorJitter", brightness=0.4, contrast=0.4, saturation=0.4, hue=0.1)
    outs = _check_reproducible(jitter, _img())
    assert all(o.dtype == np.uint8 and o.shape == (24, 32, 3) for o in outs)
    assert not _op("ColorJitter", prob=0.0, brightness=0.4).is_random
    lit = _run(_op("PCALighting"), flat, 5)
    _seeded(5)
    alpha = np.random.normal(0, 0.1, size=3).astype(np.float32)
    eigval = np.array([0.2175, 0.0188, 0.0045], np.float32)
    eigvec = np.array([[-0.5675, 0.7192, 0.4009], [-0.5808, -0.0045, -0.8140], [-0.5836, -0.6948, 0.4203]], np.float32)
    assert lit.dtype == np.float32
    np.testing.assert_allclose(lit[0, 0], 100 + eigvec @ (alpha * eigval), rtol=1e-6)
    img = _img()
    _seeded(0)
    same, label = _op("BlurImage", ratio=0.0).augment_with_labels(img)
    assert same is img and label == {"blur_image": 0}
    for seed in range(3):
        _seeded(seed)
        blurred, label = _op("BlurImage", ratio=1.0).augment_with_labels(img)
        assert label == {"blur_image": 1} and blurred.dtype == np.uint8 and blurred.shape == img.shape
        assert not np.array_equal(blurred, img)


def test_augmix_keeps_the_centre_of_a_flat_image():
    flat = np.full((32, 32, 3), 128, np.uint8)
    op = _op("AugMix", prob=1.0, mixture_width=1)
    for seed in range(5):  # every AugMix operation moves the centre by a few pixels at most
        out = _run(op, flat, seed)
        assert out.dtype == np.uint8 and out.shape == flat.shape and out[16, 16].tolist() == [128, 128, 128]
    _check_reproducible(_op("AugMix", prob=0.5), _img())
    assert np.array_equal(_run(_op("AugMix", prob=0.0), flat, 0), flat) and not _op("AugMix", prob=0.0).is_random


# ----------------------------------------------------------------------------- erasing
def test_random_erasing_erases_the_drawn_area_in_hwc_and_chw():
    ones = np.ones((16, 16, 3), np.float32)
    op = _op("RandomErasing", EPSILON=1.0, sl=0.25, sh=0.25, r1=1.0)  # a quarter of the area, square: 8 x 8
    for seed in range(3):
        out = _run(op, ones, seed)
        assert out.dtype == np.float32 and (out == 0).all(axis=2).sum() == 64
    chw = ones.transpose(2, 0, 1).copy()
    op_chw = create_operators([{"ToCHWImage": None}, {"RandomErasing": {"EPSILON": 1.0, "sl": 0.25, "sh": 0.25,
                                                                        "r1": 1.0, "mean": [0.5, 0.5, 0.5]}}], "T")[1]
    out = _run(op_chw, chw, 0)
    assert out.shape == (3, 16, 16) and (out == 0.5).all(axis=0).sum() == 64
    pixel = _op("RandomErasing", EPSILON=0.25, sh="1.0/3.0", attempt=10, use_log_aspect=True, mode="pixel")
    outs = _check_reproducible(pixel, ones, range(10))
    assert any(not np.array_equal(o, ones) for o in outs) and any(np.array_equal(o, ones) for o in outs)
    assert ones.sum() == 16 * 16 * 3  # the input is not modified


def test_cutout_fills_the_clipped_square():
    ones = np.ones((32, 32, 3), np.uint8)
    op = _op("Cutout", length=4, fill_value=0)
    for seed in range(5):
        out = _run(op, ones, seed)
        _seeded(seed)
        y, x = np.random.randint(32), np.random.randint(32)
        rows = min(y + 2, 31) - max(y - 2, 0) + 1  # corners at centre -/+ 2, both included
        cols = min(x + 2, 31) - max(x - 2, 0) + 1
        assert (out == 0).all(axis=2).sum() == rows * cols
    coloured = _op("Cutout", length=8, fill_value="none")
    outs = _check_reproducible(coloured, ones)
    assert all(o.dtype == np.uint8 and o.shape == ones.shape for o in outs)


def test_hide_and_seek_hides_whole_patches():
    ones = np.ones((3, 32, 32), np.float32)
    op = create_operators([{"ToCHWImage": None}, {"HideAndSeek": None}], "T")[1]
    for seed in range(6):
        out = _run(op, ones, seed)
        _seeded(seed)
        grid = [0, 16, 32, 44, 56][np.random.choice(5)]
        if grid == 0:
            assert (out == 1).all()
            continue
        expected = np.ones((32, 32), np.float32)
        for top in range(0, 32, grid):
            for left in range(0, 32, grid):
                if random.random() <= 0.5:
                    expected[top:top + grid, left:left + grid] = 0
        np.testing.assert_array_equal(out, np.broadcast_to(expected, (3, 32, 32)))


def test_grid_mask_keeps_a_quarter_with_half_period_squares(caplog):
    with caplog.at_level(logging.WARNING):
        op = _op("GridMask", d1=8, d2=9, rotate=1, ratio=0.5)  # period 8, masked bands 4 wide
    assert "never masks" in caplog.text
    ones = np.ones((32, 32, 3), np.float32)
    for seed in range(3):
        out = _run(op, ones, seed)
        assert out.shape == ones.shape and (out[..., 0] == 1).sum() == 16 * 16  # (4/8)^2 of the pixels
        assert np.array_equal(out[..., 0], out[..., 2])


# ----------------------------------------------------------------------------- policies
@pytest.mark.parametrize("name, kwargs", [
    ("AutoAugment", {}), ("RandAugment", {"num_layers": 2, "magnitude": 5}),
    ("RandAugmentV2", {"num_layers": 2, "magnitude": 5.0, "progress_magnitude": [5.0, 8.3, 11.7, 15.0]}),
    ("RandAugmentV3", {"num_layers": 2, "interpolation": "bicubic"}), ("RandAugmentV4", {}),
    ("TimmAutoAugment", {"config_str": "rand-m9-mstd0.5-inc1", "interpolation": "bicubic", "img_size": 32}),
    ("TimmAutoAugment", {"config_str": "rand-m7-mstd0.5-inc1", "interpolation": "random", "img_size": [32, 24]}),
    ("TimmAutoAugment", {"config_str": "augmix-m3-w3-d2", "img_size": 32}),
    ("TimmAutoAugment", {"config_str": "v0r-mstd0.5", "img_size": 32}),
])
def test_policy_augmentations_are_seeded_uint8_images(name, kwargs):
    img = _img()
    outs = _check_reproducible(_op(name, **kwargs), img, range(6))
    assert all(o.dtype == np.uint8 and o.shape == img.shape for o in outs)
    assert any(not np.array_equal(o, img) for o in outs)


def test_policy_levels_by_hand():
    from ppfreeze.data.preprocess import pil_ops
    from ppfreeze.data.preprocess.timm_autoaugment import _level_args
    v2 = _op("RandAugmentV2", magnitude=5)
    assert v2.levels["translateX"] == 50.0 and v2.levels["cutout"] == 20 and v2.levels["solarize_add"] == 55
    assert abs(v2.levels["color"] - 1.0) < 1e-12  # 1.8 * 0.5 + 0.1
    v3 = _op("RandAugmentV3", magnitude=3)
    assert v3.levels["posterize"] == 7 and v3.levels["solarize"] == pytest.approx(178.5)
    assert _level_args("SolarizeIncreasing", 9, {}) == (26,)  # 256 - int(0.9 * 256)
    assert _level_args("PosterizeIncreasing", 10, {}) == (0,)
    assert _level_args("TranslateX", 5, {"translate_const": 100})[0] in (50.0, -50.0)
    from PIL import Image
    arr = np.array([[[100, 200, 127]]], np.uint8)
    assert np.asarray(pil_ops.solarize_add(Image.fromarray(arr), 50)).tolist() == [[[150, 200, 177]]]
    assert not np.asarray(pil_ops.posterize(Image.fromarray(arr), 0)).any()  # 0 bits: black (not an error)
    stays = _op("TimmAutoAugment", prob=0.0)
    assert stays(arr) is arr


# ----------------------------------------------------------------------------- batch ops
def _batch(n=4, classes=3, size=8):
    return [(np.full((3, size, size), i, np.float32), np.int64(i % classes)) for i in range(n)]


def test_mixup_and_cutmix_operators_by_hand():
    batch = _batch()
    mixup = build_batch_op({"MixupOperator": {"alpha": 0.2}}, "B", 3)
    _seeded(1)
    out = mixup(batch)
    _seeded(1)
    partner = np.random.permutation(4)
    lam = np.random.beta(0.2, 0.2)
    for i, (img, target) in enumerate(out):
        assert img.dtype == np.float32 and target.dtype == np.float32 and target.shape == (3,)
        np.testing.assert_allclose(img, lam * i + (1 - lam) * partner[i], rtol=1e-6)
        expected = np.zeros(3)
        expected[i % 3] += lam
        expected[partner[i] % 3] += 1 - lam
        np.testing.assert_allclose(target, expected, rtol=1e-6)
    cutmix = build_batch_op({"CutmixOperator": {"alpha": 1.0}}, "B", 3)
    for seed in range(3):
        _seeded(seed)
        out = cutmix(batch)
        for i, (img, target) in enumerate(out):
            pasted = (img[0] != i).mean()  # share of the image that came from another sample
            if target.max() < 1:  # the partner differs: the soft label is the area share kept
                np.testing.assert_allclose(target[i % 3], 1 - pasted, rtol=1e-6)
            np.testing.assert_allclose(target.sum(), 1.0, rtol=1e-6)


def test_op_sampler_and_hybrid_targets():
    always_mixup = build_batch_op({"OpSampler": {"MixupOperator": {"alpha": 0.2, "prob": 1.0}}}, "B", 3)
    _seeded(0)
    assert all(t.dtype == np.float32 for _, t in always_mixup(_batch()))
    never = build_batch_op({"OpSampler": {"MixupOperator": {"alpha": 0.2, "prob": 0.0}}}, "B", 3)
    assert never(_batch())[1][1] == 1  # "no op" keeps the hard label
    hybrid = build_batch_op({"MixupCutmixHybrid": {"prob": 0.0, "num_classes": 3}}, "B", 3)
    _seeded(0)
    targets = np.stack([t for _, t in hybrid(_batch())])
    np.testing.assert_allclose(targets[0], [1 - 0.1 + 0.1 / 3, 0.1 / 3, 0.1 / 3], rtol=1e-6)  # smoothed one-hot
    mixed = build_batch_op({"MixupCutmixHybrid": {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "num_classes": 3}}, "B", 3)
    for seed in range(4):
        _seeded(seed)
        out = mixed(_batch())
        np.testing.assert_allclose(np.stack([t for _, t in out]).sum(1), 1.0, rtol=1e-5)
    with pytest.raises(ValueError, match="even batch"):
        mixed(_batch(3))


def test_batch_op_config_errors():
    key = "DataLoader.Train.dataset.batch_transform_ops[0]"
    with pytest.raises(ConfigError) as e:
        build_batch_op({"OpSampler": {"MixupOperator": {"alpha": 0.2}}}, key, 3)
    assert e.value.key == f"{key}.OpSampler.MixupOperator.prob"
    with pytest.raises(ConfigError) as e:
        build_batch_op({"OpSampler": {"MixupOperator": {"alpha": 0.2, "prob": 0.7},
                                      "CutmixOperator": {"prob": 0.7}}}, key, 3)
    assert "more than 1" in str(e.value)
    with pytest.raises(ConfigError, match="Did you mean: MixupOperator"):
        build_batch_op({"OpSampler": {"MixupOperater": {"prob": 0.5}}}, key, 3)
    with pytest.raises(ConfigError) as e:
        build_batch_op({"MixupOperator": {"alpha": 0}}, key, 3)
    assert e.value.key == f"{key}.MixupOperator.alpha"
    with pytest.raises(ConfigError) as e:
        build_batch_op({"MixupOperator": {"alpha": 0.2}}, key, None)
    assert e.value.key == "Arch.class_num"
    with pytest.raises(ConfigError) as e:
        build_batch_op({"MixupCutmixHybrid": {"num_classes": 1000}}, key, 3)
    assert e.value.key == f"{key}.MixupCutmixHybrid.num_classes"


# ----------------------------------------------------------------------------- loader + loss
@pytest.fixture
def tiny(tmp_path):
    """10 random 20x20 PNGs in 3 classes and their label file."""
    rng = np.random.default_rng(0)
    (tmp_path / "img").mkdir()
    lines = []
    for i in range(10):
        cv2.imwrite(str(tmp_path / "img" / f"{i}.png"), rng.integers(0, 256, (20, 20, 3), dtype=np.uint8))
        lines.append(f"img/{i}.png {i % 3}")
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n")
    return tmp_path


def _mix_loader_cfg(root, workers, batch_ops):
    ops = [{"DecodeImage": {"to_rgb": True}}, {"RandCropImage": {"size": 12}},
           {"NormalizeImage": {"scale": "1.0/255.0", "order": ""}},
           {"RandomErasing": {"EPSILON": 0.5, "mode": "pixel"}}]
    return {"Train": {"dataset": {"name": "ImageNetDataset", "image_root": str(root),
                                  "cls_label_path": str(root / "train.txt"), "transform_ops": ops,
                                  "batch_transform_ops": batch_ops},
                      "sampler": {"name": "DistributedBatchSampler", "batch_size": 4, "shuffle": True,
                                  "drop_last": True},
                      "loader": {"num_workers": workers, "use_shared_memory": False}}}


def _batches(loader, epoch):
    from ppfreeze.data.loader import set_loader_epoch
    set_loader_epoch(loader, epoch)
    return [(x.numpy(), y.numpy()) for x, y in loader]


SAMPLER = [{"OpSampler": {"MixupOperator": {"alpha": 0.8, "prob": 0.5}, "CutmixOperator": {"alpha": 1.0, "prob": 0.5}}}]


def test_batch_ops_are_a_function_of_seed_epoch_and_batch_whatever_num_workers(tiny):
    from ppfreeze.data.loader import build_dataloader
    serial = build_dataloader(_mix_loader_cfg(tiny, 0, SAMPLER), "Train", seed=5, class_num=3)
    epoch1 = _batches(serial, 1)
    random.seed(123)  # other code moving the global RNGs must not matter
    np.random.seed(123)
    workers = _batches(build_dataloader(_mix_loader_cfg(tiny, 2, SAMPLER), "Train", seed=5, class_num=3), 1)
    assert len(epoch1) == len(workers) == 2
    for (x0, y0), (x2, y2) in zip(epoch1, workers):
        np.testing.assert_array_equal(x0, x2)
        np.testing.assert_array_equal(y0, y2)
    for x, y in epoch1:
        assert x.shape == (4, 3, 12, 12) and x.dtype == np.float32
        assert y.shape == (4, 3) and y.dtype == np.float32 and np.allclose(y.sum(1), 1.0)
    assert not np.array_equal(_batches(serial, 2)[0][0], epoch1[0][0])
    np.testing.assert_array_equal(_batches(serial, 1)[1][0], epoch1[1][0])


def test_mixup_soft_labels_through_the_loader_and_both_losses(tiny):
    import paddle
    from ppfreeze.data.loader import build_dataloader
    from ppfreeze.loss import build_loss
    hybrid = [{"MixupCutmixHybrid": {"mixup_alpha": 0.8, "cutmix_alpha": 1.0, "num_classes": 3}}]
    loader = build_dataloader(_mix_loader_cfg(tiny, 0, hybrid), "Train", seed=0, class_num=3)
    images, targets = next(iter(loader))
    assert list(targets.shape) == [4, 3] and targets.dtype == paddle.float32
    logits = paddle.to_tensor(np.random.default_rng(0).normal(size=(4, 3)).astype(np.float32))
    manual = float((-targets * paddle.nn.functional.log_softmax(logits, axis=-1)).sum(1).mean())
    soft = build_loss([{"SoftTargetCrossEntropy": {"weight": 1.0}}], "Loss.Train")(logits, targets)
    assert float(soft["loss"]) == pytest.approx(manual, rel=1e-6)
    plain = build_loss([{"CELoss": {"weight": 1.0}}], "Loss.Train")(logits, targets)
    assert float(plain["loss"]) == pytest.approx(manual, rel=1e-6)
    smoothed = build_loss([{"CELoss": {"weight": 1.0, "epsilon": 0.1}}], "Loss.Train")(logits, targets)
    expected = float((-(0.9 * targets + 0.1 / 3) * paddle.nn.functional.log_softmax(logits, axis=-1)).sum(1).mean())
    assert float(smoothed["loss"]) == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="do not fit 5 classes"):  # soft labels of another class count
        build_loss([{"CELoss": {}}], "Loss.Train")(paddle.zeros([4, 5]), targets)
    hard = paddle.to_tensor(np.array([0, 2, 1, 1], np.int64))
    one_hot = paddle.nn.functional.one_hot(hard, 3)
    assert float(soft["loss"]) != pytest.approx(float(build_loss([{"SoftTargetCrossEntropy": {}}], "L")(logits, hard)
                                                      ["loss"]))
    np.testing.assert_allclose(float(build_loss([{"SoftTargetCrossEntropy": {}}], "L")(logits, hard)["loss"]),
                               float(build_loss([{"SoftTargetCrossEntropy": {}}], "L")(logits, one_hot)["loss"]),
                               rtol=1e-6)


def test_loader_checks_batch_op_needs(tiny):
    from ppfreeze.data.loader import build_dataloader
    hybrid = [{"MixupCutmixHybrid": {"num_classes": 3}}]
    cfg = _mix_loader_cfg(tiny, 0, hybrid)
    cfg["Train"]["sampler"]["drop_last"] = False
    cfg["Train"]["sampler"]["batch_size"] = 3  # 10 = 3 + 3 + 3 + 1
    with pytest.raises(ConfigError) as e:
        build_dataloader(cfg, "Train", class_num=3)
    assert e.value.key == "DataLoader.Train.sampler.batch_size"
    cfg["Train"]["sampler"]["batch_size"] = 4  # 10 = 4 + 4 + 2: even
    build_dataloader(cfg, "Train", class_num=3)
    cfg["Train"]["sampler"]["batch_size"] = 6  # 10 = 6 + 4
    build_dataloader(cfg, "Train", class_num=3)
    with pytest.raises(ConfigError) as e:
        build_dataloader(_mix_loader_cfg(tiny, 0, [{"MixupOperator": {"alpha": 0.2}}]), "Train")
    assert e.value.key == "Arch.class_num"


def test_custom_label_dataset_learns_the_rotation_random_rot90_made(tiny):
    from ppfreeze.data.loader import build_dataloader
    (tiny / "list.txt").write_text("".join(f"img/{i}.png\n" for i in range(10)))
    ops = [{"DecodeImage": {"to_rgb": True}}, {"RandCropImage": {"size": 12}},
           {"NormalizeImage": {"scale": "1.0/255.0", "order": ""}}]
    dataset = {"name": "CustomLabelDataset", "image_root": str(tiny), "sample_list_path": str(tiny / "list.txt"),
               "transform_ops": ops + [{"RandomRot90": None}], "label_key": "random_rot90_orientation"}
    cfg = {"Train": {"dataset": dataset, "sampler": {"batch_size": 5, "shuffle": False, "drop_last": False}}}
    images, labels = next(iter(build_dataloader(cfg, "Train", seed=2)))
    assert list(images.shape) == [5, 3, 12, 12] and labels.numpy().dtype == np.int64
    assert set(labels.numpy().tolist()) <= {0, 1, 2, 3} and len(set(labels.numpy().tolist())) > 1
    unrotated = dict(dataset, transform_ops=ops + [{"BlurImage": {"ratio": 0.0}}], label_key="blur_image")
    base, blur = next(iter(build_dataloader({"Train": dict(cfg["Train"], dataset=unrotated)}, "Train", seed=2)))
    assert not blur.numpy().any()  # ratio 0: never blurred (and the same crops: same draws before it)
    for img, k, ref in zip(images.numpy(), labels.numpy(), base.numpy()):
        np.testing.assert_array_equal(img, np.rot90(ref, k, axes=(1, 2)))
    with pytest.raises(ConfigError) as e:
        build_dataloader({"Train": dict(cfg["Train"], dataset=dict(dataset, label_key="blur_image"))}, "Train")
    assert e.value.key == "DataLoader.Train.dataset.label_key" and "random_rot90_orientation" in str(e.value)


def test_engine_drops_train_accuracy_under_batch_ops_and_does_not_cache(make_config, caplog):
    from ppfreeze.config import load_config
    from ppfreeze.engine import Engine
    cfg, path = make_config(epochs=2, max_train_steps=1)  # the cache is considered for states of 2+ epochs
    train = cfg["DataLoader"]["Train"]["dataset"]
    train["transform_ops"] = cfg["DataLoader"]["Eval"]["dataset"]["transform_ops"]  # deterministic per image
    train["batch_transform_ops"] = SAMPLER
    with open(path, "w") as f:
        yaml.safe_dump(cfg, f)
    engine = Engine(load_config(path, ["Freeze.until=stage1", "Freeze.allow_random_frozen=true"]), "train")
    with caplog.at_level(logging.INFO):
        engine.train()
    assert "Metric.Train: TopkAcc not computed in training" in caplog.text
    assert engine.train_metrics is None and engine.freezer.feature_cache is None
    assert "training transforms are random (OpSampler)" in caplog.text


# ----------------------------------------------------------------------------- PaddleClas config sections
# The DataLoader.Train.dataset.transform_ops and batch_transform_ops of PaddleClas's
# ppcls/configs/ImageNet/DeiT/DeiT_tiny_patch16_224.yaml, copied as they are.
DEIT_TRAIN_OPS = """
transform_ops:
  - DecodeImage:
      to_rgb: True
      channel_first: False
  - RandCropImage:
      size: 224
      interpolation: bicubic
      backend: pil
  - RandFlipImage:
      flip_code: 1
  - TimmAutoAugment:
      config_str: rand-m9-mstd0.5-inc1
      interpolation: bicubic
      img_size: 224
  - NormalizeImage:
      scale: 1.0/255.0
      mean: [0.485, 0.456, 0.406]
      std: [0.229, 0.224, 0.225]
      order: ''
  - RandomErasing:
      EPSILON: 0.25
      sl: 0.02
      sh: 1.0/3.0
      r1: 0.3
      attempt: 10
      use_log_aspect: True
      mode: pixel
batch_transform_ops:
  - OpSampler:
      MixupOperator:
        alpha: 0.8
        prob: 0.5
      CutmixOperator:
        alpha: 1.0
        prob: 0.5
"""

# The transform_ops of PaddleClas's ppcls/configs/reid/strong_baseline/softmax_triplet_with_center.yaml
# (DataLoader.Train.dataset), copied as they are: paddle.vision ops with CHW erasing.
REID_TRAIN_OPS = """
- ResizeImage:
    size: [128, 256]
    return_numpy: False
    interpolation: "bilinear"
    backend: "pil"
- RandFlipImage:
    flip_code: 1
- Pad:
    padding: 10
- RandCropImageV2:
    size: [128, 256]
- ToTensor:
- Normalize:
    mean: [0.485, 0.456, 0.406]
    std: [0.229, 0.224, 0.225]
- RandomErasing:
    EPSILON: 0.5
    sl: 0.02
    sh: 0.4
    r1: 0.3
    mean: [0.485, 0.456, 0.406]
"""


def test_paddleclas_config_sections_build_and_run():
    section = yaml.safe_load(DEIT_TRAIN_OPS)
    ops = create_operators(section["transform_ops"], "DataLoader.Train.dataset.transform_ops")
    png = cv2.imencode(".png", _img(40, 48))[1].tobytes()
    images = [transform(png, ops) for _ in range(2)]
    assert all(img.shape == (224, 224, 3) and img.dtype == np.float32 for img in images)
    sampler = build_batch_op(section["batch_transform_ops"][0], "DataLoader.Train.dataset.batch_transform_ops[0]",
                             1000)
    _seeded(0)
    batch = sampler([(img.transpose(2, 0, 1), np.int64(label)) for img, label in zip(images, (3, 999))])
    assert batch[0][0].shape == (3, 224, 224) and batch[1][1].shape in ((1000,), ())
    reid = create_operators(yaml.safe_load(REID_TRAIN_OPS), "DataLoader.Train.dataset.transform_ops")
    assert outputs_channel_first(reid) and reid[-1].channel_first
    out = transform(_img(60, 50), reid)
    assert out.shape == (3, 256, 128) and out.dtype == np.float32


def test_sample_pipelines_run_ops_whose_own_methods_are_named_augment():
    """CustomLabelDataset's sample dicts (PULC image_orientation): TimmAutoAugment there, whose
    ``augment`` is its PIL step, once broke the pipeline's label-giving-op protocol."""
    random.seed(0)
    np.random.seed(0)
    img = np.random.RandomState(0).randint(0, 255, (40, 40, 3), dtype=np.uint8)
    ops = [_op("TimmAutoAugment", prob=1.0, config_str="rand-m9-mstd0.5-inc1", img_size=40),
           _op("RandomRot90")]
    out = transform({"img": img}, ops)
    assert out["img"].shape == (40, 40, 3) and out["img"].dtype == np.uint8 and not np.array_equal(out["img"], img)
    assert out["random_rot90_orientation"] in (0, 1, 2, 3)
