"""PaddleClas dataset formats and samplers: multi-label, CIFAR, re-id folders and lists, multi-scale."""
import io
import os
import pickle
import tarfile

import cv2
import numpy as np
import paddle
import pytest

from ppfreeze.config.errors import ConfigError
from ppfreeze.data import DATASETS, OPS
from ppfreeze.data.loader import build_dataloader, set_loader_epoch

NORM = {"NormalizeImage": {"scale": "1.0/255.0", "mean": [0, 0, 0], "std": [1, 1, 1], "order": ""}}
OPS_BYTES = [{"DecodeImage": {"to_rgb": True}}, {"ResizeImage": {"size": [8, 6]}}, NORM]   # 8 wide, 6 high
OPS_DECODED = OPS_BYTES[1:]


def write_image(path, color=(10, 20, 30), size=(12, 16)):
    """A flat BGR image of ``size`` (h, w)."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    cv2.imwrite(str(path), np.full((*size, 3), color, np.uint8))


def build(name, **kwargs):
    import ppfreeze.data.loader  # noqa: F401  (registers every dataset)
    return DATASETS.build({name: kwargs}, name)


# ----------------------------------------------------------------------------- MultiLabelDataset
@pytest.fixture
def multilabel(tmp_path):
    labels = [[1, 0, 1], [0, 0, 1], [1, 1, 1], [0, 0, 0]]
    for i in range(4):
        write_image(tmp_path / "img" / f"{i}.jpg")
    (tmp_path / "list.txt").write_text("".join(f"img/{i}.jpg\t{','.join(map(str, l))}\n" for i, l in enumerate(labels)))
    return tmp_path


def test_multilabel_dataset_targets_and_label_ratio(multilabel):
    ds = build("MultiLabelDataset", image_root=str(multilabel), cls_label_path=str(multilabel / "list.txt"),
               transform_ops=OPS_BYTES)
    img, target = ds[0]
    assert img.shape == (3, 6, 8) and img.dtype == np.float32
    assert target.dtype == np.float32 and target.tolist() == [1, 0, 1]
    assert ds.class_num == 3 and len(ds) == 4 and not hasattr(ds, "labels")
    with_ratio = build("MultiLabelDataset", image_root=str(multilabel), cls_label_path=str(multilabel / "list.txt"),
                       transform_ops=OPS_BYTES, label_ratio=True)
    target = with_ratio[1][1]
    assert target.shape == (2, 3)
    np.testing.assert_allclose(target, [[0, 0, 1], [0.5, 0.25, 0.75]])   # row 1: positive share per class


@pytest.mark.parametrize("content, match", [
    ("img/0.jpg\t1,0,1\nimg/1.jpg 1,0,1\n", r"list.txt:2: expected 'image_path<TAB>l0,l1,...'"),
    ("img/0.jpg\t1,0,1\nimg/1.jpg\t1,x,1\n", r"list.txt:2: label 'x' is not an integer"),
    ("img/0.jpg\t1,0,1\n\nimg/1.jpg\t1,0\n", r"list.txt:3: 2 labels, but line 1 has 3"),
])
def test_multilabel_dataset_errors_name_file_and_line(multilabel, content, match):
    (multilabel / "list.txt").write_text(content)
    with pytest.raises(ConfigError, match=match) as e:
        build("MultiLabelDataset", image_root=str(multilabel), cls_label_path=str(multilabel / "list.txt"),
              transform_ops=OPS_BYTES)
    assert e.value.key == "MultiLabelDataset.cls_label_path"


# ----------------------------------------------------------------------------- ICartoon, CustomLabel
def test_icartoon_dataset_reads_tab_separated_lists(multilabel):
    (multilabel / "cartoon.txt").write_text("img/0.jpg\t7\nimg/1.jpg\t3\n")
    ds = build("ICartoonDataset", image_root=str(multilabel), cls_label_path=str(multilabel / "cartoon.txt"),
               transform_ops=OPS_BYTES)
    assert ds.labels == [7, 3] and ds[1][1] == 3
    (multilabel / "spaces.txt").write_text("img/0.jpg 7\n")
    with pytest.raises(ConfigError, match="spaces.txt:1: expected 2 fields"):
        build("ICartoonDataset", image_root=str(multilabel), cls_label_path=str(multilabel / "spaces.txt"),
              transform_ops=OPS_BYTES)


class _TestRotateLabel:
    """Test op producing a label, in the protocol of RandomRot90 / BlurImage: ``augment`` returns the
    image and the entries it adds to the sample; ``label_key`` declares the label."""

    is_random = True
    label_key = "turns"

    def augment_with_labels(self, img):
        turns = int(img[0, 0, 0]) % 4   # deterministic from the pixels, for the test
        return np.rot90(img, turns).copy(), {"turns": turns}

    def __call__(self, img):
        return self.augment_with_labels(img)[0]


def test_custom_label_dataset_takes_the_label_from_an_op(multilabel):
    OPS.register(_TestRotateLabel, name="_TestRotateLabel")
    write_image(multilabel / "img" / "wide.png", color=(2, 0, 0), size=(4, 10))  # blue 2 -> RGB red 0
    write_image(multilabel / "img" / "odd.png", color=(0, 0, 3), size=(4, 10))   # red 3 -> 3 turns
    (multilabel / "samples.txt").write_text("img/wide.png extra\nimg/odd.png extra\n")
    ops = [{"DecodeImage": {"to_rgb": True}}, {"_TestRotateLabel": None}, NORM]
    ds = build("CustomLabelDataset", image_root=str(multilabel), sample_list_path=str(multilabel / "samples.txt"),
               transform_ops=ops, label_key="turns", delimiter=" ")
    (img0, label0), (img1, label1) = ds[0], ds[1]
    assert (label0, label1) == (0, 3) and label1.dtype == np.int64
    assert img0.shape == (3, 4, 10) and img1.shape == (3, 10, 4)   # rotated by the op
    with pytest.raises(ConfigError, match="'angle' is not produced by any op of transform_ops"):
        build("CustomLabelDataset", image_root=str(multilabel), sample_list_path=str(multilabel / "samples.txt"),
              transform_ops=ops, label_key="angle", delimiter=" ")
    with pytest.raises(ConfigError) as e:
        build("CustomLabelDataset", image_root=str(multilabel), sample_list_path=str(multilabel / "samples.txt"),
              transform_ops=ops)
    assert e.value.key == "CustomLabelDataset.label_key"
    # without a delimiter the whole line is the path (PaddleClas): "img/wide.png extra" does not exist
    with pytest.raises(ConfigError, match="wide.png extra"):
        build("CustomLabelDataset", image_root=str(multilabel), sample_list_path=str(multilabel / "samples.txt"),
              transform_ops=ops, label_key="turns")


# ----------------------------------------------------------------------------- CIFAR
def cifar_tarball(path, members, label_key=b"labels", classes=10, per_batch=4, seed=0, protocol=2):
    """A tarball laid out like the python-version CIFAR download; returns {member: (data, labels)}."""
    rng = np.random.default_rng(seed)
    written = {}
    with tarfile.open(path, "w:gz") as tar:
        for name in members:
            data = rng.integers(0, 256, (per_batch, 3072), dtype=np.uint8)
            labels = [int(v) for v in rng.integers(0, classes, per_batch)]
            payload = pickle.dumps({b"data": data, label_key: labels, b"batch_label": b"b"}, protocol=protocol)
            _add_member(tar, name, payload)
            written[name] = (data, labels)
    return written


def _add_member(tar, name, payload):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


def test_cifar10_reads_batches_in_order_with_the_pixel_layout(tmp_path):
    path = str(tmp_path / "c10.tar.gz")
    members = ["cifar-10-batches-py/data_batch_2", "cifar-10-batches-py/data_batch_1", "cifar-10-batches-py/test_batch",
               "cifar-10-batches-py/batches.meta"]
    written = cifar_tarball(path, members, protocol=4)
    ds = build("Cifar10", data_file=path, mode="train", transform_ops=[NORM])
    # data_batch_1 then data_batch_2 (sorted names), 4 images each; the meta file is not a batch
    expected = written[members[1]][1] + written[members[0]][1]
    assert len(ds) == 8 and ds.labels == expected and ds.class_num == 10
    img, label = ds[5]
    row = written[members[0]][0][1]   # 6th image = 2nd of data_batch_2: R plane, G plane, B plane
    assert img.shape == (3, 32, 32) and label == expected[5]
    np.testing.assert_allclose(img * 255.0, row.reshape(3, 32, 32), atol=1e-3)
    assert len(build("Cifar10", data_file=path, mode="test", transform_ops=[NORM])) == 4
    # the ops get HWC pixels: uint8 with backend pil, float32 (same values) with cv2
    assert build("Cifar10", data_file=path, backend="pil")._image(0).dtype == np.uint8
    assert build("Cifar10", data_file=path, backend="cv2")._image(0).dtype == np.float32


def test_cifar100_fine_labels_subsampling_and_views(tmp_path):
    path = str(tmp_path / "c100.tar.gz")
    cifar_tarball(path, ["cifar-100-python/train", "cifar-100-python/test"], b"fine_labels", classes=100,
                  per_batch=300, seed=1)
    ds = build("Cifar100", data_file=path, transform_ops=[NORM])
    assert len(ds) == 300 and ds.class_num == 100 and ds.backend == "pil"
    picked = dict(data_file=path, transform_ops=[NORM], sample_per_label=1, expand_labels=2)
    with pytest.raises(ConfigError, match="class .* has only 0 images"):   # 300 random labels miss some class
        build("Cifar100", **picked)
    path10 = str(tmp_path / "c10.tar.gz")
    cifar_tarball(path10, ["cifar-10-batches-py/data_batch_1"], per_batch=60, seed=2)
    picked["data_file"] = path10
    a, b = build("Cifar10", seed=5, **picked), build("Cifar10", seed=5, **picked)
    assert len(a) == 20 and sorted(a.labels[:10]) == list(range(10)) and a.labels[:10] == a.labels[10:]
    assert a.labels == b.labels and np.array_equal(a[3][0], b[3][0])   # the draw follows the seed
    views = build("Cifar10", data_file=path10, transform_ops_weak=[NORM], transform_ops_strong=[NORM])[0]
    assert len(views) == 3 and views[0].shape == views[1].shape == (3, 32, 32)


def test_cifar_refuses_code_in_pickles_and_missing_files(tmp_path, monkeypatch):
    path = str(tmp_path / "evil.tar.gz")

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned > " + str(tmp_path / "pwned"),))

    with tarfile.open(path, "w:gz") as tar:
        _add_member(tar, "cifar-10-batches-py/data_batch_1", pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(ConfigError, match=r"evil.tar.gz:cifar-10-batches-py/data_batch_1 is not a plain-data "
                                          r"pickle \(global '(posix|os|nt)\.system' is not allowed\)") as e:
        build("Cifar10", data_file=path)
    assert e.value.key == "Cifar10.data_file" and not (tmp_path / "pwned").exists()
    bad = str(tmp_path / "bad.tar.gz")
    with tarfile.open(bad, "w:gz") as tar:
        _add_member(tar, "cifar-10-batches-py/data_batch_1",
                    pickle.dumps({b"data": np.zeros((2, 10), np.uint8), b"labels": [0, 1]}, protocol=2))
    with pytest.raises(ConfigError, match=r"b'data' must be uint8 \[N, 3072\]"):
        build("Cifar10", data_file=bad)
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="never downloads") as e:
        build("Cifar10", data_file=None, download=True)
    assert os.path.join(str(tmp_path), ".cache", "paddle", "dataset", "cifar", "cifar-10-python.tar.gz") in str(e.value)
    with pytest.raises(ConfigError) as e:
        build("Cifar10", data_file=str(tmp_path / "absent.tar.gz"))
    assert e.value.key == "Cifar10.data_file" and "absent.tar.gz does not exist" in str(e.value)


# ----------------------------------------------------------------------------- re-id folders and lists
MARKET = {"bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c2s1_000301_01.jpg", "0007_c3s3_077419_03.jpg",
                                 "-1_c1s1_000001_00.jpg"],
          "query": ["0007_c1s1_001051_00.jpg"],
          "bounding_box_test": ["0000_c1s1_000001_01.jpg", "0007_c6s1_000001_01.jpg", "-1_c3s1_000001_00.jpg"]}


@pytest.fixture
def market(tmp_path):
    base = tmp_path / "market1501" / "Market-1501-v15.09.15"
    for split, names in MARKET.items():
        for name in names:
            write_image(base / split / name)
    return tmp_path


def test_market1501_splits_identities_cameras_and_junk(market):
    train = build("Market1501", image_root=str(market), cls_label_path="bounding_box_train",
                  transform_ops=OPS_DECODED)
    # junk (-1) dropped; identities 2, 7 relabelled 0, 1 in the train split; cameras from 0
    assert train.labels == [0, 0, 1] and train.cameras == [0, 1, 2] and train.class_num == 2
    img, label, camera = train[2]
    assert img.shape == (3, 6, 8) and (label, camera) == (1, 2)
    gallery = build("Market1501", image_root=str(market), cls_label_path="bounding_box_test",
                    transform_ops=OPS_DECODED)
    assert gallery.labels == [0, 7] and gallery.cameras == [0, 5]   # not relabelled; background 0 kept
    with pytest.raises(ConfigError, match="market1501/Market-1501-v15.09.15/bounding_box_tets does not exist"):
        build("Market1501", image_root=str(market), cls_label_path="bounding_box_tets")
    write_image(market / "market1501" / "Market-1501-v15.09.15" / "query" / "0001_c7s1_000001_00.jpg")
    with pytest.raises(ConfigError, match=r"camera 7 outside 1\.\.6"):
        build("Market1501", image_root=str(market), cls_label_path="query")


def test_dukemtmc_keeps_every_identity_and_eight_cameras(tmp_path):
    base = tmp_path / "dukemtmc" / "DukeMTMC-reID" / "query"
    for name in ("0005_c8_f0001.jpg", "0001_c1_f0002.jpg", "-1_c2_f0003.jpg"):
        write_image(base / name)
    ds = build("DukeMTMC", image_root=str(tmp_path), cls_label_path="query", transform_ops=OPS_DECODED)
    assert ds.labels == [-1, 1, 5] and ds.cameras == [1, 0, 7]   # sorted by file name


def test_veriwild_lists_with_and_without_cameras(tmp_path):
    for i in range(4):
        write_image(tmp_path / "v" / f"{i}.jpg")
    (tmp_path / "cam.txt").write_text("v/0.jpg 5 1\nv/1.jpg 9 2\nv/2.jpg 5 2\n")
    (tmp_path / "plain.txt").write_text("v/0.jpg 5\nv/3.jpg 9\n")
    (tmp_path / "mixed.txt").write_text("v/0.jpg 5 1\nv/3.jpg 9\n")
    ds = build("VeriWild", image_root=str(tmp_path), cls_label_path=str(tmp_path / "cam.txt"), transform_ops=OPS_BYTES,
               relabel=True)
    img, label, camera = ds[1]
    assert img.shape == (3, 6, 8) and (label, camera) == (1, 2) and ds.labels == [0, 1, 0]
    plain = build("VeriWild", image_root=str(tmp_path), cls_label_path=str(tmp_path / "plain.txt"),
                  transform_ops=OPS_BYTES)
    assert len(plain[0]) == 2 and plain.cameras is None
    pil = build("VeriWild", image_root=str(tmp_path), cls_label_path=str(tmp_path / "plain.txt"),
                transform_ops=OPS_DECODED, backend="pil")   # the ops get decoded pixels
    np.testing.assert_allclose(pil[0][0], plain[0][0], atol=2 / 255)
    with pytest.raises(ConfigError, match=r"mixed.txt:2: expected 'image_path label \[camera\]'"):
        build("VeriWild", image_root=str(tmp_path), cls_label_path=str(tmp_path / "mixed.txt"), transform_ops=OPS_BYTES)


def test_compcars_crops_to_the_last_box_line(tmp_path):
    write_image(tmp_path / "img" / "78" / "a.jpg", size=(20, 30))
    (tmp_path / "labels" / "78").mkdir(parents=True)
    (tmp_path / "labels" / "78" / "a.txt").write_text("1\n4\n2 3 12 18\n")
    (tmp_path / "list.txt").write_text("78/a.jpg 4\n")
    common = dict(image_root=str(tmp_path / "img"), cls_label_path=str(tmp_path / "list.txt"),
                  label_root=str(tmp_path / "labels"), transform_ops=[NORM])
    img, label = build("CompCars", bbox_crop=True, **common)[0]
    assert img.shape == (3, 15, 10) and label == 4   # rows 3..18, columns 2..12
    assert build("CompCars", **common)[0][0].shape == (3, 20, 30)
    (tmp_path / "labels" / "78" / "a.txt").write_text("1\n2 3 x\n")
    with pytest.raises(ConfigError, match="the last line must be 'x1 y1 x2 y2'"):
        build("CompCars", bbox_crop=True, **common)


# ----------------------------------------------------------------------------- multi-scale, RASampler, MetaBIN
def _list_dataset(tmp_path, n, size=(40, 40)):
    lines = []
    for i in range(n):
        write_image(tmp_path / "m" / f"{i}.jpg", size=size)
        lines.append(f"m/{i}.jpg {i % 3}")
    (tmp_path / "m.txt").write_text("\n".join(lines) + "\n")
    return {"image_root": str(tmp_path), "cls_label_path": str(tmp_path / "m.txt")}


def test_multi_scale_sampler_and_dataset_through_the_loader(tmp_path):
    files = _list_dataset(tmp_path, 10)
    ops = [{"DecodeImage": {"to_rgb": True}},
           {"RandCropImage": {"size": 32, "scale": [0.5, 1.0], "interpolation": "bilinear"}}, NORM]
    cfg = {"Train": {"dataset": {"name": "MultiScaleDataset", "transform_ops": ops, **files},
                     "sampler": {"name": "MultiScaleSampler", "scales": [32, 16, [24, 8]], "first_bs": 2,
                                 "divided_factor": 8, "is_training": True},
                     "loader": {"num_workers": 0}}}
    loader = build_dataloader(cfg, "Train", seed=3)
    sampler = loader.batch_sampler
    # batch size keeps the pixels of 2 images at 32x32: 16x16 -> 8, 24x8 -> 10
    assert sorted(sampler.resolutions) == [(16, 16, 8), (24, 8, 10), (32, 32, 2)]
    set_loader_epoch(loader, 1)
    seen = []
    for (images, labels), planned in zip(loader, sampler.batches):
        w, h, size = planned
        assert list(images.shape) == [size, 3, h, w] and labels.shape == [size]
        seen += labels.numpy().tolist()
    assert sum(b[2] for b in sampler.batches) >= 10 and len(seen) == sum(b[2] for b in sampler.batches)
    batches = [b for b in sampler]
    assert {i for b in batches for _, _, i in b} == set(range(10))
    crop = loader.dataset.dataset.ops_for(24, 8)[1]   # the size changes, the other arguments stay
    assert crop.size_wh == (24, 8) and crop.scale == (0.5, 1.0)
    sampler.set_epoch(1)
    first = list(sampler)
    sampler.set_epoch(1)
    assert list(sampler) == first
    sampler.set_epoch(2)
    assert list(sampler) != first
    with pytest.raises(ConfigError, match="needs one of RandCropImage, ResizeImage, CropImage"):
        build("MultiScaleDataset", transform_ops=[{"DecodeImage": None}, NORM], **files)
    with pytest.raises(ConfigError) as e:
        build_dataloader({"Train": {**cfg["Train"], "sampler": {**cfg["Train"]["sampler"], "scales": ["(32,32)"]}}},
                         "Train")
    assert e.value.key == "DataLoader.Train.sampler.scales"


def test_ra_sampler_repeats_each_image(tmp_path):
    from ppfreeze.data.sampler import RASampler
    data = list(range(300))
    sampler = RASampler(data, batch_size=64, shuffle=True, num_repeats=3, seed=1)
    batches = list(sampler)
    flat = [i for b in batches for i in b]
    assert len(flat) == 256 and len(batches) == len(sampler) == 4   # floor(300 / 256) * 256 per epoch
    assert all(flat[k] == flat[k + 1] == flat[k + 2] for k in range(0, 255 - 3, 3))   # copies side by side
    r0, r1 = ([i for b in RASampler(data, 32, num_replicas=2, rank=r, shuffle=True, seed=1) for i in b]
              for r in (0, 1))
    assert len(r0) == len(r1) == 128 and r0[0] == r0[1] == r1[0] != r1[1]   # 3 copies dealt to both ranks
    with pytest.raises(ConfigError, match="floor"):
        RASampler(list(range(200)), batch_size=8)


def test_naive_identity_batch_sampler_is_p_by_k(tmp_path):
    from ppfreeze.data.pk_sampler import NaiveIdentityBatchSampler

    class Labelled:
        labels = [0, 0, 1, 1, 1, 2, 2, 3, 3, 3]

        def __len__(self):
            return len(self.labels)

    batches = list(NaiveIdentityBatchSampler(Labelled(), batch_size=4, num_instances=2, drop_last=True))
    for b in batches:
        ids = [Labelled.labels[i] for i in b]
        assert len(b) == 4 and len(set(ids)) == 2 and all(ids.count(v) == 2 for v in set(ids))
    assert {i for b in batches for i in b} == set(range(10))


def test_epoch_seeded_dataset_seeds_multi_scale_items_by_image(tmp_path):
    from ppfreeze.data.loader import EpochSeededDataset
    files = _list_dataset(tmp_path, 2)
    ops = [{"DecodeImage": {"to_rgb": True}}, {"RandCropImage": {"size": 16}}, NORM]
    wrapped = EpochSeededDataset(build("MultiScaleDataset", transform_ops=ops, **files), seed=4)
    wrapped.return_index = True
    img, label, index = wrapped[(24, 8, 1)]
    assert img.shape == (3, 8, 24) and index == 1
    np.testing.assert_array_equal(wrapped[(24, 8, 1)][0], img)
    assert paddle.to_tensor(img).shape == [3, 8, 24]
