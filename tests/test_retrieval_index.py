"""Tests for ppfreeze.retrieval: gallery files, GalleryIndex, Searcher, retrieval metrics."""
import json
import math
import os
import warnings

import numpy as np
import pytest

from ppfreeze.config.errors import ConfigError
from ppfreeze.utils.io import file_sha256
from ppfreeze.retrieval import (GalleryIndex, IndexMismatchError, Searcher, mean_average_precision,
                                read_gallery_file, recall_at_k)
from ppfreeze.retrieval import index as index_module

METHODS = ["Flat", "HNSW32", "IVF", "IVFPQ"]
DIM = 16


@pytest.fixture(autouse=True)
def _quiet_small_training_warnings():
    # Tiny galleries make IVFPQ use fewer code bits; that warning is tested on its own below.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IVFPQ: .* too few")
        yield


def clustered(n, dim=DIM, n_clusters=10, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((n_clusters, dim)).astype(np.float32) * 3
    which = np.arange(n) % n_clusters
    feats = centers[which] + rng.standard_normal((n, dim)).astype(np.float32) * 0.3
    return feats, [f"class {c}" for c in which]  # labels with a space on purpose


def built(method, n=200, dist="IP"):
    feats, labels = clustered(n)
    index = GalleryIndex.create(DIM, method, dist)
    index.add(feats, labels)
    return index, feats, labels


# ----------------------------------------------------------------------------- metrics

def test_recall_ties_resolve_by_gallery_order():
    query = np.array([[1.0, 0.0]])
    gallery = np.array([[0.0, 1.0], [1.0, 0.0], [2.0, 0.0]])  # items 1 and 2 tie at cosine 1
    res = recall_at_k(query, ["A"], gallery, ["B", "B", "A"], ks=(1, 2))
    assert res == {"recall1": 0.0, "recall2": 1.0, "num_queries_without_positive": 0}
    swapped = recall_at_k(query, ["A"], gallery, ["B", "A", "B"], ks=(1, 2))
    assert swapped["recall1"] == 1.0
    assert mean_average_precision(query, ["A"], gallery, ["B", "B", "A"])["mAP"] == pytest.approx(0.5)


def test_map_hand_computed():
    query = np.array([[1.0, 0.0]])
    gallery = np.array([[1.0, 0.0], [1.0, 0.2], [1.0, 0.5], [1.0, 1.0]])  # already in descending cosine
    res = mean_average_precision(query, [1], gallery, [1, 0, 1, 0])
    assert res["mAP"] == pytest.approx((1 / 1 + 2 / 3) / 2)


def test_self_match_excluded_and_query_without_positive_counted():
    feats = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]])
    labels = ["x", "x", "y"]  # "y" has nobody else
    plain = recall_at_k(feats, labels, feats, labels, ks=(1,))
    assert plain == {"recall1": 1.0, "num_queries_without_positive": 0}  # everyone finds itself
    res = recall_at_k(feats, labels, feats, labels, ks=(1,), exclude_self=True)
    assert res == {"recall1": 1.0, "num_queries_without_positive": 1}
    miss = recall_at_k(feats, ["x", "z", "z"], feats, ["x", "z", "z"], ks=(1,), exclude_self=True)
    assert miss["recall1"] == 0.5  # item 1's nearest other item is 0 ("x"); item 2's is 1 ("z")
    assert miss["num_queries_without_positive"] == 1  # item 0 has no other "x"
    assert mean_average_precision(feats, labels, feats, labels, exclude_self=True)["mAP"] == 1.0


def test_self_exclusion_is_by_id_not_by_score():
    query = np.array([[1.0, 0.0]])
    gallery = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])  # item "dup" is an identical copy
    res = recall_at_k(query, ["a"], gallery, ["a", "a", "b"], ks=(1,), exclude_self=True,
                      query_ids=["q"], gallery_ids=["q", "dup", "other"])
    assert res["recall1"] == 1.0  # the duplicate with another id still counts
    alone = recall_at_k(query, ["a"], gallery, ["a", "b", "b"], ks=(1,), exclude_self=True,
                        query_ids=["q"], gallery_ids=["q", "dup", "other"])
    assert alone["num_queries_without_positive"] == 1 and math.isnan(alone["recall1"])


def test_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="same set"):
        recall_at_k(np.ones((2, 2)), [0, 1], np.ones((3, 2)), [0, 1, 2], exclude_self=True)
    with pytest.raises(ValueError, match="labels"):
        recall_at_k(np.ones((2, 2)), [0], np.ones((3, 2)), [0, 1, 2])


# ----------------------------------------------------------------------------- gallery file

def test_gallery_file_parses_labels_with_spaces_and_skips_blank_lines(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    (tmp_path / "b.jpg").write_bytes(b"x")
    listing = tmp_path / "gallery.txt"
    listing.write_text("a.jpg\tcoca cola\n\nb.jpg\tred\tbull\n", encoding="utf-8")
    entries = read_gallery_file(str(listing), str(tmp_path))
    assert entries == [(str(tmp_path / "a.jpg"), "coca cola"), (str(tmp_path / "b.jpg"), "red\tbull")]
    assert read_gallery_file(str(listing), str(tmp_path), delimiter="\\t") == entries  # YAML '\t'


def test_gallery_line_without_delimiter_names_file_and_line(tmp_path):
    (tmp_path / "a.jpg").write_bytes(b"x")
    listing = tmp_path / "gallery.txt"
    listing.write_text("a.jpg\tcat\n\na.jpg dog\n", encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        read_gallery_file(str(listing), str(tmp_path))
    message = str(err.value)
    assert f"{listing}:3" in message and "a.jpg dog" in message and "TAB" in message


def test_gallery_missing_image_names_line_and_path(tmp_path):
    listing = tmp_path / "gallery.txt"
    listing.write_text("missing.jpg\tcat\n", encoding="utf-8")
    with pytest.raises(ConfigError, match=r"gallery.txt:1: image .*missing.jpg"):
        read_gallery_file(str(listing), str(tmp_path))
    assert read_gallery_file(str(listing), str(tmp_path), check_images=False)[0][1] == "cat"


# ----------------------------------------------------------------------------- index round trips

@pytest.mark.parametrize("method", METHODS)
def test_save_load_round_trip_preserves_ids_and_results(method, tmp_path):
    index, feats, labels = built(method)
    scores, ids, found = index.search(feats[:20], 5)
    assert [row[0] for row in found] == labels[:20]  # even lossy IVFPQ finds the right cluster
    index.save(str(tmp_path / "idx"), model_hash="m1")
    loaded = GalleryIndex.load(str(tmp_path / "idx"), expected_model_hash="m1", expected_embedding_size=DIM)
    scores2, ids2, found2 = loaded.search(feats[:20], 5)
    np.testing.assert_array_equal(ids2, ids)
    np.testing.assert_allclose(scores2, scores, rtol=1e-5, atol=1e-5)
    assert found2 == found and found[0][0] == labels[ids[0, 0]]
    assert len(loaded) == 200 and loaded.next_id == 200
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["index_method"] == method and manifest["count"] == 200 and manifest["model_hash"] == "m1"
    assert sorted(os.listdir(tmp_path)) == ["idx"]  # no staging or backup directory left behind


@pytest.mark.parametrize("method", METHODS)
def test_append_keeps_old_ids(method, tmp_path):
    index, feats, labels = built(method)
    index.save(str(tmp_path / "idx"))
    loaded = GalleryIndex.load(str(tmp_path / "idx"))
    extra, _ = clustered(30, seed=1)
    new_ids = loaded.add(extra, ["new"] * 30)
    np.testing.assert_array_equal(new_ids, np.arange(200, 230))
    loaded.save(str(tmp_path / "idx"))
    again = GalleryIndex.load(str(tmp_path / "idx"))
    id_map = again.id_to_label()
    assert all(id_map[i] == labels[i] for i in range(200)) and id_map[229] == "new"
    _, ids, found = again.search(extra[:5], 1)
    assert set(ids[:, 0]) <= set(range(200, 230)) and found[0][0] == "new"


@pytest.mark.parametrize("method", METHODS)
def test_removed_items_never_come_back(method, tmp_path):
    index, feats, labels = built(method)
    assert index.remove(ids=[0, 1, 2, 999]) == 3  # unknown id 999 ignored
    assert index.remove(labels=["class 5"]) == 20
    gone = {0, 1, 2} | {i for i, label in enumerate(labels) if label == "class 5"}
    assert len(index) == 200 - len(gone)
    probe = feats[sorted(gone)]
    _, ids, found = index.search(probe, 50)
    assert not gone & set(ids.ravel().tolist()) and all(label != "class 5" for row in found for label in row)
    assert (ids >= 0).all()  # HNSW tombstones are filtered inside faiss: k live results still come back
    assert_kept_items_keep_their_ids(index, feats, labels, kept=[3, 4, 6, 7, 8, 9, 10, 11])
    index.save(str(tmp_path / "idx"))
    loaded = GalleryIndex.load(str(tmp_path / "idx"))
    _, ids2, _ = loaded.search(probe, 50)
    assert not gone & set(ids2.ravel().tolist()) and len(loaded) == 200 - len(gone)
    assert_kept_items_keep_their_ids(loaded, feats, labels, kept=[3, 4, 6, 7, 8, 9, 10, 11])
    loaded.remove(ids=[3])  # a second removal on a reloaded index (faiss's IDMap over IVF asserted here)
    assert_kept_items_keep_their_ids(loaded, feats, labels, kept=[4, 6, 7])
    assert GalleryIndex.create(DIM, method).remove(labels="absent") == 0


def assert_kept_items_keep_their_ids(index, feats, labels, kept):
    """Searching a kept item finds that very id (IVFPQ is lossy: there, an item of its label)."""
    _, ids, found = index.search(feats[kept], 1)
    assert [row[0] for row in found] == [labels[i] for i in kept]
    if index.method.name != "IVFPQ":
        assert ids[:, 0].tolist() == kept


def test_hnsw_save_compacts_tombstones(tmp_path):
    index, feats, _ = built("HNSW32")
    index.remove(ids=range(50))
    index.save(str(tmp_path / "idx"))
    loaded = GalleryIndex.load(str(tmp_path / "idx"))
    assert loaded._index.ntotal == 150  # removed vectors are gone from the file, not just hidden
    _, ids, _ = loaded.search(feats[50:60], 1)
    np.testing.assert_array_equal(ids[:, 0], np.arange(50, 60))


def test_search_pads_when_gallery_is_small():
    index = GalleryIndex.create(2, "Flat", "IP")
    index.add(np.array([[1.0, 0.0]]), ["only"])
    scores, ids, labels = index.search(np.array([[3.0, 0.0]]), 3)  # IP normalises the query
    assert ids.tolist() == [[0, -1, -1]] and labels == [["only", None, None]]
    assert scores[0, 0] == pytest.approx(1.0)


# ----------------------------------------------------------------------------- searcher thresholds

def save_tiny(tmp_path, dist, gallery):
    index = GalleryIndex.create(2, "Flat", dist)
    index.add(np.array(gallery, dtype=np.float32), ["a", "b", "c"])
    index.save(str(tmp_path / dist))
    return str(tmp_path / dist)


def test_score_threshold_ip_keeps_higher_scores(tmp_path):
    path = save_tiny(tmp_path, "IP", [[1, 0], [0.6, 0.8], [0, 1]])  # cosines 1.0, 0.6, 0.0 to [1, 0]
    matches = Searcher(path, return_k=3, score_thres=0.5).search_features(np.array([[2.0, 0.0]]))
    assert [m["label"] for m in matches[0]] == ["a", "b"] and matches[0][0]["id"] == 0
    assert len(Searcher(path, return_k=3).search_features(np.array([[1.0, 0.0]]))[0]) == 3


def test_score_threshold_l2_keeps_smaller_distances(tmp_path):
    path = save_tiny(tmp_path, "L2", [[0, 0], [1, 0], [3, 0]])  # squared distances 0, 1, 9 to [0, 0]
    matches = Searcher(path, return_k=3, score_thres="1.0").search_features(np.array([[0.0, 0.0]]))
    assert [(m["label"], m["score"]) for m in matches[0]] == [("a", 0.0), ("b", 1.0)]


def test_search_images_uses_extract_fn(tmp_path):
    path = save_tiny(tmp_path, "IP", [[1, 0], [0.6, 0.8], [0, 1]])
    searcher = Searcher(path, return_k=1, extract_fn=lambda paths: np.array([[0.0, 1.0]] * len(paths)))
    assert [m[0]["label"] for m in searcher.search_images(["x.jpg", "y.jpg"])] == ["c", "c"]
    with pytest.raises(ConfigError, match="extract_fn"):
        Searcher(path).search_images(["x.jpg"])


# ----------------------------------------------------------------------------- damaged or foreign indexes

@pytest.fixture
def saved(tmp_path):
    index, _, _ = built("Flat")
    index.save(str(tmp_path / "idx"), model_hash="m1")
    return tmp_path / "idx"


def test_corrupted_vector_index_is_reported_not_crashed(saved):
    data = bytearray((saved / "vector.index").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (saved / "vector.index").write_bytes(bytes(data))
    with pytest.raises(IndexMismatchError, match=r"vector.index: sha256 .*modified or damaged") as err:
        GalleryIndex.load(str(saved))
    assert "index_operation: new" in str(err.value)


def test_truncated_vector_index_with_matching_checksum_is_reported(saved):
    (saved / "vector.index").write_bytes((saved / "vector.index").read_bytes()[:100])
    manifest = json.loads((saved / "manifest.json").read_text())
    manifest["sha256"]["vector.index"] = file_sha256(str(saved / "vector.index"))
    (saved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatchError, match="faiss cannot read it"):
        GalleryIndex.load(str(saved))


def test_tampered_id_map_is_reported(saved):
    id_map = json.loads((saved / "id_map.json").read_text())
    id_map["labels"]["0"] = "forged"
    (saved / "id_map.json").write_text(json.dumps(id_map))
    with pytest.raises(IndexMismatchError, match="id_map.json: sha256"):
        GalleryIndex.load(str(saved))


def test_id_map_out_of_step_with_vectors_is_reported(saved):
    id_map = json.loads((saved / "id_map.json").read_text())
    del id_map["labels"]["0"]
    (saved / "id_map.json").write_text(json.dumps(id_map))
    manifest = json.loads((saved / "manifest.json").read_text())
    manifest["sha256"]["id_map.json"] = file_sha256(str(saved / "id_map.json"))
    (saved / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexMismatchError, match="holds 199 labels, manifest.json says 200"):
        GalleryIndex.load(str(saved))


def test_model_hash_and_embedding_size_must_match(saved):
    with pytest.raises(IndexMismatchError, match="built with model m1, the current model is m2"):
        GalleryIndex.load(str(saved), expected_model_hash="m2")
    with pytest.raises(IndexMismatchError, match="16-d features, the model produces 128-d"):
        Searcher(str(saved), expected_embedding_size=128)
    with pytest.raises(ConfigError, match="IndexProcess.embedding_size"):
        GalleryIndex.load(str(saved)).search(np.ones((1, 8)), 1)


def test_paddleclas_pickle_index_is_refused(tmp_path):
    (tmp_path / "vector.index").write_bytes(b"")
    (tmp_path / "id_map.pkl").write_bytes(b"")
    with pytest.raises(IndexMismatchError, match="PaddleClas index"):
        GalleryIndex.load(str(tmp_path))


# ----------------------------------------------------------------------------- atomic save

def test_failed_save_leaves_previous_index_loadable(saved, monkeypatch):
    index, feats, _ = built("Flat")
    index.add(feats[:10], ["more"] * 10)

    def broken_write(faiss_index, path):
        open(path, "wb").write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(index_module, "_write_faiss_index", broken_write)
    with pytest.raises(OSError, match="disk full"):
        index.save(str(saved), model_hash="m1")
    assert len(GalleryIndex.load(str(saved), expected_model_hash="m1")) == 200
    assert sorted(os.listdir(saved.parent)) == ["idx"]


def test_failed_directory_swap_rolls_back(saved, monkeypatch):
    index, _, _ = built("Flat", n=50)
    real_rename = os.rename

    def rename_fails_on_staging(src, dst):
        if ".tmp-" in os.path.basename(src):
            raise OSError("simulated crash")
        real_rename(src, dst)

    monkeypatch.setattr(index_module.os, "rename", rename_fails_on_staging)
    with pytest.raises(OSError, match="simulated crash"):
        index.save(str(saved))
    monkeypatch.undo()
    assert len(GalleryIndex.load(str(saved))) == 200


def test_interrupted_swap_points_at_the_backup(saved):
    os.rename(saved, str(saved) + ".previous")
    with pytest.raises(IndexMismatchError, match=r"rename .*idx.previous"):
        GalleryIndex.load(str(saved))


def test_save_refuses_a_directory_with_other_files(tmp_path):
    (tmp_path / "notes.txt").write_text("keep me")
    index, _, _ = built("Flat", n=50)
    with pytest.raises(ConfigError, match="notes.txt"):
        index.save(str(tmp_path))
    assert (tmp_path / "notes.txt").exists()


# ----------------------------------------------------------------------------- creation options

def test_unknown_method_and_bad_pq_m_are_config_errors():
    with pytest.raises(ConfigError, match="Did you mean: HNSW32"):
        GalleryIndex.create(DIM, "HNSW")
    with pytest.raises(ConfigError, match="Did you mean: IP"):
        GalleryIndex.create(DIM, "Flat", "ip")
    with pytest.raises(ConfigError, match="pq_m=5 does not divide embedding_size 16"):
        GalleryIndex.create(DIM, "IVFPQ", pq_m=5)


def test_ivf_nlist_is_capped_by_training_size(caplog):
    feats, labels = clustered(100)
    index = GalleryIndex.create(DIM, "IVF", nlist=50)
    index.add(feats, labels)
    assert "IndexProcess.nlist=50 is too many clusters for 100 training vectors; using 2" in caplog.text
    assert index.options.nlist == 2
    assert GalleryIndex.create(DIM, "IVFPQ").options.pq_m is None  # resolved on first add
    pq = GalleryIndex.create(DIM, "IVFPQ")
    pq.add(feats, labels)
    assert DIM % pq.options.pq_m == 0 and pq.options.pq_nbits == 6
