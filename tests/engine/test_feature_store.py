"""The feature store: layout, zero-copy reads, padded batches, manifests, shards,
recovery from an interrupted batch, and detection of truncated or corrupt shards.
Also the malformed task files the extraction must skip (engine.arc.load_folder)."""

import json

import numpy as np
import pytest
import torch

from engine.arc import load_folder
from engine.features import (FeatureMismatch, FeatureStore, FeatureStoreError, StoreCorrupt,
                             pool_tokens)

DIM = 16
MANIFEST = {"teacher": {"name": "builtin", "dim": DIM, "seed": 0}, "feature_dim": DIM,
            "dtype": "float16", "pool": 1,
            "dataset": {"name": "demo", "version": "folder", "fingerprint": "abc"}}


def batch_of(ids, lengths, seed=0):
    """Keys, right-padded features and mask for examples of the given lengths."""
    gen = torch.Generator().manual_seed(seed)
    longest = max(lengths)
    features = torch.randn(len(ids), longest, DIM, generator=gen)
    mask = torch.zeros(len(ids), longest, dtype=torch.bool)
    for i, n in enumerate(lengths):
        mask[i, :n] = True
    keys = [(i, i.split("/")[0], i.split("/")[1], int(i.split("/")[2])) for i in ids]
    return keys, features, mask


def test_append_get_and_batch(tmp_path):
    store = FeatureStore.create(tmp_path / "s", MANIFEST)
    keys, features, mask = batch_of(["a/train/0", "a/test/0", "b/train/1"], [5, 3, 7])
    assert store.append(keys, features, mask) == 15
    reader = FeatureStore.open(tmp_path / "s")
    assert len(reader) == 3 and "a/test/0" in reader and reader.shards == ["0-of-1"]
    entry = reader.entry("b/train/1")
    assert (entry.task_id, entry.kind, entry.query_index, entry.offset, entry.length) == ("b", "train", 1, 8, 7)

    row = reader.get("a/test/0")
    assert isinstance(row.base, np.memmap) or isinstance(row, np.memmap)   # a view of the file
    assert row.shape == (3, DIM) and row.dtype == np.float16
    assert np.array_equal(row, features[1, :3].half().numpy())
    assert torch.equal(reader.get_tensor("a/train/0"), features[0, :5].half())

    batch, batch_mask = reader.batch(["b/train/1", "a/test/0"])
    assert batch.shape == (2, 7, DIM) and batch.dtype == torch.float16
    assert batch_mask.tolist() == [[True] * 7, [True] * 3 + [False] * 4]
    assert torch.equal(batch[1, :3], features[1, :3].half()) and not batch[1, 3:].any()
    assert reader.summary()["tokens_total"] == 15
    with pytest.raises(KeyError, match="not in the feature store"):
        reader.get("zzz/test/0")


def test_bfloat16_store_and_pooling(tmp_path):
    manifest = {**MANIFEST, "dtype": "bfloat16", "pool": 2}
    store = FeatureStore.create(tmp_path / "s", manifest)
    keys, features, mask = batch_of(["a/train/0"], [5])
    store.append(keys, features, mask, pool=2)
    batch, batch_mask = FeatureStore.open(tmp_path / "s").batch(["a/train/0"])
    expected = pool_tokens(features[0, :5], 2)           # 3 tokens: 2 + 2 + 1
    assert batch.dtype == torch.bfloat16 and batch.shape == (1, 3, DIM)
    assert torch.equal(batch[0], expected.to(torch.bfloat16))
    assert torch.allclose(expected[2], features[0, 4])


def test_a_mismatched_store_is_refused_naming_what_differs(tmp_path):
    FeatureStore.create(tmp_path / "s", MANIFEST)
    other = {**MANIFEST, "teacher": {"name": "builtin", "dim": DIM, "seed": 1}}
    with pytest.raises(FeatureMismatch, match=r"teacher\.seed: store has 0, expected 1"):
        FeatureStore.create(tmp_path / "s", other)
    with pytest.raises(FeatureMismatch, match=r"dataset\.fingerprint"):
        FeatureStore.open(tmp_path / "s").check_manifest({"dataset": {"fingerprint": "zzz"}})
    FeatureStore.open(tmp_path / "s").check_manifest({"feature_dim": DIM, "dtype": "float16"})
    with pytest.raises(FeatureStoreError, match="no feature store"):
        FeatureStore.open(tmp_path / "nowhere")


def test_shards_are_read_as_one_store(tmp_path):
    for shard, ids in (("0/2", ["a/train/0", "b/train/0"]), ("1/2", ["a/test/0"])):
        writer = FeatureStore.create(tmp_path / "s", MANIFEST, shard=shard)
        writer.append(*batch_of(ids, [2] * len(ids)))
    reader = FeatureStore.open(tmp_path / "s")
    assert reader.shards == ["0-of-2", "1-of-2"]
    assert sorted(reader.example_ids) == ["a/test/0", "a/train/0", "b/train/0"]
    assert reader.batch(reader.example_ids)[0].shape == (3, 2, DIM)
    assert reader.verify() == 3


def test_an_interrupted_batch_is_cut_off_and_the_rest_kept(tmp_path):
    writer = FeatureStore.create(tmp_path / "s", MANIFEST)
    writer.append(*batch_of(["a/train/0"], [4]))
    size = (tmp_path / "s" / "shard-0-of-1.bin").stat().st_size
    with open(tmp_path / "s" / "shard-0-of-1.bin", "ab") as f:   # rows of a batch never committed
        f.write(b"\x01" * 1000)
    writer = FeatureStore.create(tmp_path / "s", MANIFEST)
    assert (tmp_path / "s" / "shard-0-of-1.bin").stat().st_size == size
    writer.append(*batch_of(["a/train/1"], [2], seed=1))
    assert FeatureStore.open(tmp_path / "s").verify() == 2


def test_truncated_and_corrupt_shards_name_the_examples_to_re_extract(tmp_path):
    writer = FeatureStore.create(tmp_path / "s", MANIFEST)
    writer.append(*batch_of(["a/train/0", "a/train/1", "a/test/0"], [4, 4, 4]))
    path = tmp_path / "s" / "shard-0-of-1.bin"
    data = bytearray(path.read_bytes())
    data[4 * DIM * 2 + 10] ^= 0xFF                          # a flipped byte in a/train/1
    path.write_bytes(bytes(data[:-DIM * 2]))                # and the last row gone
    reader = FeatureStore.open(tmp_path / "s")
    with pytest.raises(StoreCorrupt) as caught:
        reader.verify()
    assert sorted(caught.value.example_ids) == ["a/test/0", "a/train/1"]
    assert "a/test/0 (shard 0-of-1 truncated)" in str(caught.value)
    assert "a/train/1 (checksum mismatch" in str(caught.value) and "Re-extract" in str(caught.value)
    with pytest.raises(StoreCorrupt, match="truncated"):
        reader.get("a/test/0")
    # The writer drops them; extracted again, the store is whole.
    writer = FeatureStore.create(tmp_path / "s", MANIFEST)
    assert writer.drop(caught.value.example_ids) == 2
    writer.append(*batch_of(["a/train/1", "a/test/0"], [4, 4], seed=2))
    assert FeatureStore.open(tmp_path / "s").verify() == 3


def test_an_example_is_never_stored_twice(tmp_path):
    writer = FeatureStore.create(tmp_path / "s", MANIFEST)
    writer.append(*batch_of(["a/train/0"], [2]))
    with pytest.raises(FeatureStoreError, match="already stored"):
        writer.append(*batch_of(["a/train/0"], [2]))
    assert len(FeatureStore.open(tmp_path / "s")) == 1


GOOD_TASK = {"train": [{"input": [[1, 2]], "output": [[2, 1]]}], "test": [{"input": [[3]], "output": [[3]]}]}
MALFORMED = {
    "not_json": ("{train: oops", "not valid JSON"),
    "wrong_types": ({"train": "abc", "test": []}, "'train' must be a non-empty list"),
    "ragged": ({"train": [{"input": [[1, 2], [3]], "output": [[1]]}], "test": GOOD_TASK["test"]}, "ragged"),
    "colour_10": ({"train": [{"input": [[10]], "output": [[1]]}], "test": GOOD_TASK["test"]}, "colours are 0-9"),
    "too_big": ({"train": [{"input": [[0] * 31], "output": [[1]]}], "test": GOOD_TASK["test"]}, "at most 30"),
    "empty_grid": ({"train": [{"input": [], "output": [[1]]}], "test": GOOD_TASK["test"]}, "non-empty list of rows"),
    "no_train": ({"train": [], "test": GOOD_TASK["test"]}, "'train' must be a non-empty list"),
}


def test_malformed_task_files_are_reported_by_file_and_reason_and_skipped(tmp_path):
    (tmp_path / "good.json").write_text(json.dumps(GOOD_TASK))
    for name, (content, _) in MALFORMED.items():
        text = content if isinstance(content, str) else json.dumps(content)
        (tmp_path / f"{name}.json").write_text(text)
    dataset = load_folder(tmp_path)
    assert [t.id for t in dataset.tasks] == ["good"]
    reasons = {p.source.rsplit("/", 1)[-1][:-5]: p.reason for p in dataset.problems}
    assert set(reasons) == set(MALFORMED)
    for name, (_, expected) in MALFORMED.items():
        assert expected in reasons[name], (name, reasons[name])


def test_batch_can_fill_a_reused_buffer(tmp_path):
    store = FeatureStore.create(tmp_path / "s", MANIFEST)
    keys, features, mask = batch_of(["a/train/0", "a/test/0"], [5, 2])
    store.append(keys, features, mask)
    buffer = torch.full((4, 10, DIM), 7.0, dtype=torch.float16)
    got, got_mask = store.batch(["a/test/0", "a/train/0"], out=buffer)
    assert got.shape == (2, 5, DIM) and got.data_ptr() == buffer.data_ptr()
    assert torch.equal(got[0, :2], features[1, :2].half()) and not got[0, 2:].any()
    assert got_mask.sum(1).tolist() == [2, 5]
    with pytest.raises(ValueError, match="out must be"):
        store.batch(["a/train/0"], out=torch.zeros(1, 2, DIM, dtype=torch.float16))
