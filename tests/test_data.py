"""Tests for ppfreeze.data: ops, datasets, samplers, loaders, post-processing, demo data."""
import hashlib
import os
import random
import subprocess
import sys

import cv2
import numpy as np
import pytest

from ppfreeze.config.errors import ConfigError
from make_demo_data import CLASS_NAMES, ensure_demo_data, make_demo_dataset
from ppfreeze.data.postprocess import Topk
from ppfreeze.data.preprocess import (CropImage, DecodeImage, NormalizeImage, RandCropImage, RandFlipImage,
                                      ResizeImage, ToCHWImage, create_operators, transform)


def _img(h, w):
    """uint8 HWC image whose pixels encode their position."""
    return (np.arange(h * w * 3).reshape(h, w, 3) % 251).astype(np.uint8)


# ----------------------------------------------------------------------------- ops
def test_decode_image_rgb_bgr_and_channel_first():
    bgr = _img(5, 7)
    png = cv2.imencode(".png", bgr)[1].tobytes()  # lossless, so values compare exactly
    np.testing.assert_array_equal(DecodeImage()(png), bgr[:, :, ::-1])
    np.testing.assert_array_equal(DecodeImage(to_rgb=False)(png), bgr)
    assert DecodeImage(channel_first=True)(png).shape == (3, 5, 7)
    np.testing.assert_array_equal(DecodeImage(backend="pil")(png), bgr[:, :, ::-1])
    with pytest.raises(ValueError, match="not a decodable image"):
        DecodeImage()(b"definitely not an image")


def test_resize_image_short_side_and_fixed_size():
    img = _img(20, 40)
    assert ResizeImage(resize_short=10)(img).shape == (10, 20, 3)
    assert ResizeImage(resize_short=15)(_img(21, 40)).shape == (15, 29, 3)  # round(40 * 15 / 21) = 29
    assert ResizeImage(size=[16, 8])(img).shape == (8, 16, 3)  # [w, h], like cv2
    assert ResizeImage(size=12)(img).shape == (12, 12, 3)
    flat = np.full((4, 4, 3), 77, np.uint8)
    np.testing.assert_array_equal(ResizeImage(size=8, interpolation="bicubic")(flat), 77)
    with pytest.raises(ConfigError) as e:
        ResizeImage()
    assert e.value.key == "size"
    with pytest.raises(ConfigError, match="interpolation"):
        ResizeImage(size=4, interpolation="cubicle")


def test_crop_image_takes_the_centre():
    img = _img(4, 6)
    np.testing.assert_array_equal(CropImage(2)(img), img[1:3, 2:4])
    np.testing.assert_array_equal(CropImage([3, 2])(img), img[1:3, 1:4])  # [w, h]
    with pytest.raises(ValueError, match="larger than the image"):
        CropImage(8)(img)


def test_rand_crop_image_shape_bounds_and_full_crop():
    img = _img(30, 40)
    op = RandCropImage(size=16)
    random.seed(0)
    for _ in range(200):
        left, top, w, h = op.sample_box(40, 30)
        assert 0 <= left and left + w <= 40 and 0 <= top and top + h <= 30 and w >= 1 and h >= 1
    assert op(img).shape == (16, 16, 3)
    assert RandCropImage(size=[12, 8])(img).shape == (8, 12, 3)
    square = _img(20, 20)
    full = RandCropImage(size=10, scale=[1.0, 1.0], ratio=[1.0, 1.0])(square)
    np.testing.assert_array_equal(full, cv2.resize(square, (10, 10), interpolation=cv2.INTER_LINEAR))
    random.seed(3)
    a = op(img)
    random.seed(3)
    np.testing.assert_array_equal(a, op(img))
    with pytest.raises(ConfigError, match="scale"):
        RandCropImage(size=8, scale=[0.5])


def test_rand_flip_image_flips_about_half_the_time():
    img = _img(3, 4)
    random.seed(1)
    outs = [RandFlipImage()(img) for _ in range(200)]
    flipped = sum(np.array_equal(o, img[:, ::-1]) for o in outs)
    kept = sum(np.array_equal(o, img) for o in outs)
    assert flipped + kept == 200 and 60 < flipped < 140
    random.seed(1)
    vertical = [RandFlipImage(flip_code=0)(img) for _ in range(20)]
    assert any(np.array_equal(o, img[::-1]) for o in vertical)
    with pytest.raises(ConfigError) as e:
        RandFlipImage(flip_code=2)
    assert e.value.key == "flip_code"


def test_normalize_image_math_string_scale_and_layouts():
    img = np.array([[[0, 255, 51]]], np.uint8)  # 1x1 HWC
    out = NormalizeImage(scale="1.0/255.0", mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.25], order="")(img)
    np.testing.assert_allclose(out[0, 0], [-1.0, 1.0, (0.2 - 0.5) / 0.25], rtol=1e-6)
    assert out.dtype == np.float32
    default = NormalizeImage(order="hwc")(img)
    np.testing.assert_allclose(default[0, 0, 0], (0 - 0.485) / 0.229, rtol=1e-6)
    chw = NormalizeImage(scale=1, mean=[1, 2, 3], std=[1, 1, 1], order="chw")(np.ones((3, 2, 2), np.uint8))
    np.testing.assert_allclose(chw[:, 0, 0], [0, -1, -2])
    four = NormalizeImage(order="", channel_num=4, output_fp16=True)(_img(2, 2))
    assert four.shape == (2, 2, 4) and four.dtype == np.float16 and not four[..., 3].any()
    with pytest.raises(ValueError, match="order: ''"):
        NormalizeImage(order="chw")(_img(8, 8))  # HWC image with the CHW default
    with pytest.raises(ConfigError) as e:
        NormalizeImage(scale="1.0/zero")
    assert e.value.key == "scale"
    with pytest.raises(ConfigError, match="order"):
        NormalizeImage(order="nchw")


def test_to_chw_image():
    img = _img(2, 5)
    out = ToCHWImage()(img)
    assert out.shape == (3, 2, 5)
    np.testing.assert_array_equal(out[1], img[:, :, 1])


def test_create_operators_builds_paddleclas_lists_and_reports_mistakes():
    ops = create_operators([{"DecodeImage": {"to_rgb": True}}, {"ResizeImage": {"size": 4}},
                            {"NormalizeImage": {"scale": "1./255.", "order": ""}}, {"ToCHWImage": None}], "T")
    png = cv2.imencode(".png", _img(6, 6))[1].tobytes()
    assert transform(png, ops).shape == (3, 4, 4)
    with pytest.raises(ConfigError) as e:
        create_operators([{"DecodeImage": None}, {"DecodImage": None}], "DataLoader.Train.dataset.transform_ops")
    assert e.value.key == "DataLoader.Train.dataset.transform_ops[1]"
    assert "Did you mean: DecodeImage" in str(e.value)
    with pytest.raises(ConfigError) as e:
        create_operators([{"DecodeImage": {"to_rgbb": True}}], "T")
    assert e.value.key == "T[0].DecodeImage.to_rgbb" and "to_rgb" in str(e.value)
    with pytest.raises(ConfigError) as e:
        create_operators([{"RandFlipImage": {"flip_code": 5}}], "T")
    assert e.value.key == "T[0].RandFlipImage.flip_code"


def test_data_package_import_does_not_import_paddle():
    code = "import sys, ppfreeze.data, ppfreeze.data.preprocess; assert 'paddle' not in sys.modules"
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    subprocess.run([sys.executable, "-c", code], check=True, cwd=root)


# ----------------------------------------------------------------------------- datasets
EVAL_OPS = [{"DecodeImage": {"to_rgb": True}}, {"ResizeImage": {"resize_short": 24}},
            {"CropImage": {"size": 16}}, {"NormalizeImage": {"scale": "1.0/255.0", "order": ""}}]
TRAIN_OPS = [{"DecodeImage": {"to_rgb": True}}, {"RandCropImage": {"size": 16}},
             {"RandFlipImage": {"flip_code": 1}}, {"NormalizeImage": {"scale": "1.0/255.0", "order": ""}}]


@pytest.fixture
def tiny(tmp_path):
    """12 random 32x32 JPEGs in 3 classes (labels 3, 5, 9) and their label file."""
    rng = np.random.default_rng(0)
    lines = []
    for i in range(12):
        rel = f"img/{i}.jpg"
        os.makedirs(tmp_path / "img", exist_ok=True)
        cv2.imwrite(str(tmp_path / rel), rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
        lines.append(f"{rel} {(3, 5, 9)[i % 3]}")
    (tmp_path / "train.txt").write_text("\n".join(lines) + "\n\n")
    return tmp_path


def _dataset(root, label_file="train.txt", ops=EVAL_OPS, **kw):
    from ppfreeze.data.dataset import ImageNetDataset
    return ImageNetDataset(str(root), str(root / label_file), ops, **kw)


def test_imagenet_dataset_items_labels_and_relabel(tiny):
    ds = _dataset(tiny)
    img, label = ds[4]
    assert img.shape == (3, 16, 16) and img.dtype == np.float32 and label.dtype == np.int64 and label == 5
    assert len(ds) == 12 and ds.labels[:3] == [3, 5, 9] and ds.class_num == 3
    assert _dataset(tiny, relabel=True).labels[:4] == [0, 1, 2, 0]
    chw_ops = EVAL_OPS + [{"ToCHWImage": None}]
    np.testing.assert_array_equal(_dataset(tiny, ops=chw_ops)[4][0], img)  # not transposed twice


def test_malformed_label_line_names_file_and_line(tiny):
    (tiny / "bad.txt").write_text("img/0.jpg 3\nimg/1.jpg 5 extra\n")
    with pytest.raises(ConfigError) as e:
        _dataset(tiny, "bad.txt")
    assert f"{tiny / 'bad.txt'}:2" in str(e.value) and "img/1.jpg 5 extra" in str(e.value)
    (tiny / "bad2.txt").write_text("img/0.jpg 3\n\nimg/1.jpg cat\n")
    with pytest.raises(ConfigError, match=r"bad2.txt:3: label 'cat' is not an integer"):
        _dataset(tiny, "bad2.txt")


def test_missing_label_file_and_missing_or_broken_images(tiny):
    with pytest.raises(ConfigError) as e:
        _dataset(tiny, "nope.txt")
    assert e.value.key == "cls_label_path" and "nope.txt" in str(e.value)
    (tiny / "missing.txt").write_text("img/0.jpg 3\nimg/404.jpg 5\n")
    with pytest.raises(ConfigError) as e:
        _dataset(tiny, "missing.txt")
    assert str(tiny / "img" / "404.jpg") in str(e.value) and "missing.txt:2" in str(e.value)
    (tiny / "img" / "broken.jpg").write_bytes(b"\xff\xd8 garbage")
    (tiny / "broken.txt").write_text("img/broken.jpg 1\n")
    ds = _dataset(tiny, "broken.txt")
    with pytest.raises(ValueError, match=str(tiny / "img" / "broken.jpg")):
        ds[0]


# ----------------------------------------------------------------------------- samplers
def test_samplers_reshuffle_deterministically_per_epoch():
    from ppfreeze.data.sampler import BatchSampler, DistributedBatchSampler

    def order(epoch, seed=7):
        s = DistributedBatchSampler(list(range(20)), 4, shuffle=True, seed=seed)
        s.set_epoch(epoch)
        return list(s)

    assert order(1) == order(1)
    assert order(1) != order(2) and order(1) != order(1, seed=8)
    assert sorted(i for b in order(3) for i in b) == list(range(20))
    s = DistributedBatchSampler(list(range(20)), 4, shuffle=True, seed=7)
    s.set_epoch(1)
    assert list(s) == order(1) and list(s) == order(2)  # advances by itself without set_epoch
    plain = BatchSampler(list(range(10)), 4, drop_last=True)
    assert list(plain) == [[0, 1, 2, 3], [4, 5, 6, 7]] and len(plain) == 2
    shards = [DistributedBatchSampler(list(range(10)), 5, shuffle=True, num_replicas=2, rank=r) for r in (0, 1)]
    assert sorted(i for s in shards for b in s for i in b) == list(range(10))
    with pytest.raises(ConfigError) as e:
        BatchSampler([1, 2], batch_size=0)
    assert e.value.key == "batch_size"


# ----------------------------------------------------------------------------- loader
def _loader_cfg(root, workers=0):
    dataset = {"name": "ImageNetDataset", "image_root": str(root), "cls_label_path": str(root / "train.txt")}
    return {
        "Train": {"dataset": {**dataset, "transform_ops": TRAIN_OPS},
                  "sampler": {"name": "DistributedBatchSampler", "batch_size": 4, "shuffle": True,
                              "drop_last": False},
                  "loader": {"num_workers": workers, "use_shared_memory": False}},
        "Eval": {"dataset": {**dataset, "transform_ops": EVAL_OPS},
                 "sampler": {"batch_size": 8, "shuffle": False, "drop_last": False}},
    }


def _epoch(loader, epoch):
    from ppfreeze.data.loader import set_loader_epoch
    set_loader_epoch(loader, epoch)
    return [(img.numpy(), label.numpy()) for img, label in loader]


def test_build_dataloader_batches(tiny):
    from ppfreeze.data.loader import build_dataloader
    train = _epoch(build_dataloader(_loader_cfg(tiny), "Train", seed=1), 0)
    assert len(train) == 3
    img, label = train[0]
    assert img.shape == (4, 3, 16, 16) and img.dtype == np.float32
    assert label.shape == (4,) and label.dtype == np.int64
    evaluation = _epoch(build_dataloader(_loader_cfg(tiny), "Eval"), 0)
    assert [b[0].shape[0] for b in evaluation] == [8, 4]
    np.testing.assert_array_equal(evaluation[0][1], [3, 5, 9, 3, 5, 9, 3, 5])


def test_build_dataloader_config_errors_name_the_key(tiny):
    from ppfreeze.data.loader import build_dataloader
    cfg = _loader_cfg(tiny)
    with pytest.raises(ConfigError) as e:
        build_dataloader({"Train": cfg["Train"]}, "Eval")
    assert e.value.key == "DataLoader.Eval" and "Train" in str(e.value)
    cfg["Train"]["dataset"]["cls_label_path"] = str(tiny / "absent.txt")
    with pytest.raises(ConfigError) as e:
        build_dataloader(cfg, "Train")
    assert e.value.key == "DataLoader.Train.dataset.cls_label_path"
    cfg = _loader_cfg(tiny)
    cfg["Train"]["dataset"]["transform_ops"] = [{"DecodeImage": None}, {"NormalizeImage": {"order": "xyz"}}]
    with pytest.raises(ConfigError) as e:
        build_dataloader(cfg, "Train")
    assert e.value.key == "DataLoader.Train.dataset.transform_ops[1].NormalizeImage.order"
    cfg = _loader_cfg(tiny)
    cfg["Train"]["loader"]["num_worker"] = 2
    with pytest.raises(ConfigError, match="Did you mean: num_workers"):
        build_dataloader(cfg, "Train")
    cfg = _loader_cfg(tiny)
    cfg["Train"]["sampler"]["batch_sise"] = 2
    with pytest.raises(ConfigError) as e:
        build_dataloader(cfg, "Train")
    assert e.value.key == "DataLoader.Train.sampler.batch_sise"


def test_augmentation_and_order_are_a_function_of_seed_and_epoch(tiny):
    from ppfreeze.data.loader import build_dataloader
    a = build_dataloader(_loader_cfg(tiny), "Train", seed=3)
    b = build_dataloader(_loader_cfg(tiny), "Train", seed=3)
    epoch1 = _epoch(a, 1)
    random.seed(999)  # other code touching the global RNGs must not matter
    np.random.seed(999)
    for (xa, ya), (xb, yb) in zip(epoch1, _epoch(b, 1)):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    epoch2 = _epoch(a, 2)
    assert not np.array_equal(epoch1[0][0], epoch2[0][0])
    # Same samples in the same order but another epoch's augmentation -> different pixels.
    again = _epoch(a, 1)
    np.testing.assert_array_equal(again[2][0], epoch1[2][0])
    workers = _epoch(build_dataloader(_loader_cfg(tiny, workers=2), "Train", seed=3), 1)
    for (xa, _), (xw, _) in zip(epoch1, workers):
        np.testing.assert_array_equal(xa, xw)


def test_loader_defaults_decode_in_workers_with_the_same_batches(tiny, caplog):
    from ppfreeze.data.loader import _shared_memory_fits, build_dataloader
    from ppfreeze.runtime_env import default_num_workers
    cfg = _loader_cfg(tiny)
    del cfg["Train"]["loader"]
    with caplog.at_level("INFO", logger="ppfreeze"):
        loader = build_dataloader(cfg, "Train", seed=3)
    workers = default_num_workers()
    assert loader.num_workers == workers
    assert loader.use_shared_memory == (workers > 0 and _shared_memory_fits())
    assert f"DataLoader.Train.loader: num_workers {workers}, use_shared_memory" in caplog.text
    single = _epoch(build_dataloader(_loader_cfg(tiny, workers=0), "Train", seed=3), 1)
    for (xd, yd), (xs, ys) in zip(_epoch(loader, 1), single):
        np.testing.assert_array_equal(xd, xs)
        np.testing.assert_array_equal(yd, ys)


# ----------------------------------------------------------------------------- postprocess
def test_topk_on_logits_probabilities_and_label_map(tmp_path):
    (tmp_path / "labels.txt").write_text("0 tench fish\n1 goldfish\n2 great white shark\n")
    topk = Topk(topk=2, class_id_map_file=str(tmp_path / "labels.txt"))
    logits = np.array([[1.0, 3.0, 2.0], [0.0, 0.0, 5.0]], np.float32)
    out = topk(logits, file_names=["a.jpg", "b.jpg"])
    e = np.exp([1.0, 3.0, 2.0])
    assert out[0]["class_ids"] == [1, 2] and out[0]["file_name"] == "a.jpg"
    np.testing.assert_allclose(out[0]["scores"], np.round(e[[1, 2]] / e.sum(), 5))
    assert out[0]["label_names"] == ["goldfish", "great white shark"]
    assert out[1]["class_ids"] == [2, 0]  # ties keep the lower id first
    probs = np.array([[0.1, 0.6, 0.3]])
    assert Topk(topk=5)(probs)[0] == {"class_ids": [1, 2, 0], "scores": [0.6, 0.3, 0.1],
                                      "label_names": [], "file_name": None}


def test_topk_label_map_errors(tmp_path):
    (tmp_path / "bad.txt").write_text("0 cat\nthree dog\n")
    with pytest.raises(ConfigError, match=r"bad.txt:2"):
        Topk(class_id_map_file=str(tmp_path / "bad.txt"))
    with pytest.raises(ConfigError) as e:
        Topk(class_id_map_file=str(tmp_path / "absent.txt"))
    assert e.value.key == "class_id_map_file"


# ----------------------------------------------------------------------------- demo data
def _tree_digest(root):
    digest = hashlib.sha256()
    for folder, dirs, files in sorted(os.walk(root)):
        dirs.sort()
        for name in sorted(files):
            path = os.path.join(folder, name)
            digest.update(os.path.relpath(path, root).encode())
            with open(path, "rb") as f:
                digest.update(f.read())
    return digest.hexdigest()


def test_demo_dataset_is_deterministic_and_well_formed(tmp_path):
    a = make_demo_dataset(str(tmp_path / "a" / "ppfreeze_demo"), train_per_class=3, val_per_class=2)
    b = make_demo_dataset(str(tmp_path / "b" / "ppfreeze_demo"), train_per_class=3, val_per_class=2)
    assert _tree_digest(a["root"]) == _tree_digest(b["root"])
    train = open(a["train_list"]).read().splitlines()
    assert len(train) == 36 and {int(l.split()[1]) for l in train} == set(range(12))
    assert {int(l.split()[1]) for l in open(a["rec_train_list"])} == set(range(8))
    assert {int(l.split()[1]) for l in open(a["rec_query_list"])} == set(range(8, 12))
    gallery = open(a["gallery_label"]).read().splitlines()
    assert len(gallery) == 12 and all(l.split("\t")[1] in CLASS_NAMES[8:] for l in gallery)
    assert open(a["label_list"]).readline() == "0 circle\n"
    from ppfreeze.data.dataset import ImageNetDataset
    ds = ImageNetDataset(a["image_root"], a["val_list"], EVAL_OPS)
    assert len(ds) == 24 and ds[0][0].shape == (3, 16, 16)
    img = cv2.imread(os.path.join(a["root"], train[0].split()[0]))
    assert img.shape == (64, 64, 3) and img.std() > 10  # drawn, not blank
    assert make_demo_dataset(a["root"], 3, 2) == a  # an identical demo is reused
    with pytest.raises(ConfigError, match="exists"):
        make_demo_dataset(a["root"], 4, 2)


def test_ensure_demo_data_generates_once(tmp_path):
    root = tmp_path / "data" / "ppfreeze_demo"
    cfg = {"DataLoader": {"Train": {"dataset": {"image_root": str(root),
                                                "cls_label_path": str(root / "train_list.txt")}}}}
    assert ensure_demo_data(cfg) == str(root)
    assert len(open(root / "train_list.txt").read().splitlines()) == 12 * 60
    assert ensure_demo_data(cfg) is None
    assert ensure_demo_data({"DataLoader": {"Train": {"dataset": {"image_root": str(tmp_path)}}}}) is None
