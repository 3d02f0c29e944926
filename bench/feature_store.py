"""Padded batches per second: the feature store vs one torch.save'd .pt file per example.

Same synthetic data written both ways ([~1300, 2048] float16 per example, like GR00T
features of the default teacher view), same machine, one run, warm page cache:

    .venv/bin/python bench/feature_store.py                 # 300 examples, 2048-dim
    .venv/bin/python bench/feature_store.py --examples 50 --dim 256   # a quick look

Also prints the Eagle token count of the default rendering vs the original one.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from engine.features import FeatureStore
from engine.teacher_view import TeacherViewConfig, eagle_image_tokens, eagle_sequence_tokens


def write_both(folder: Path, examples: int, tokens: int, dim: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    # A pool of random rows; each example is a slice of it (content does not matter for I/O).
    pool = torch.from_numpy(rng.standard_normal((tokens * 3, dim), dtype=np.float32)).half()
    manifest = {"teacher": {"name": "synthetic"}, "feature_dim": dim, "dtype": "float16", "pool": 1,
                "dataset": {"name": "synthetic", "version": "0", "fingerprint": str(seed)}}
    store = FeatureStore.create(folder / "store", manifest)
    pt_folder = folder / "pt"
    pt_folder.mkdir()
    ids = []
    for start in range(0, examples, 8):
        keys, rows = [], []
        for n in range(start, min(start + 8, examples)):
            length = int(rng.integers(tokens - 50, tokens + 51))
            offset = int(rng.integers(0, pool.shape[0] - length))
            features = pool[offset:offset + length]
            ids.append(f"task{n:04d}/train/0")
            keys.append((ids[-1], f"task{n:04d}", "train", 0))
            rows.append(features)
            # The original approach: one dict per example, one file each.
            torch.save({"features": features.clone(), "example_id": ids[-1], "length": length},
                       pt_folder / f"{n:04d}.pt")
        padded = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
        mask = torch.nn.utils.rnn.pad_sequence([torch.ones(len(r), dtype=torch.bool) for r in rows],
                                               batch_first=True)
        store.append(keys, padded, mask)
    return ids


def warm(path: Path) -> None:
    for file in path.rglob("*"):
        if file.is_file():
            with open(file, "rb") as f:
                while f.read(1 << 24):
                    pass


def load_pt_batch(pt_folder: Path, numbers: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    rows = [torch.load(pt_folder / f"{n:04d}.pt", weights_only=True)["features"] for n in numbers]
    features = torch.nn.utils.rnn.pad_sequence(rows, batch_first=True)
    mask = torch.nn.utils.rnn.pad_sequence([torch.ones(len(r), dtype=torch.bool) for r in rows],
                                           batch_first=True)
    return features, mask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument("--tokens", type=int, default=1300, help="mean tokens per example (±50)")
    parser.add_argument("--dim", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--batches", type=int, default=60, help="timed batches per approach")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--folder", help="an empty folder to write to and keep "
                                         "(default: a temporary folder, removed after)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    folder = Path(args.folder) if args.folder else Path(tempfile.mkdtemp(prefix="sage-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        ids = write_both(folder, args.examples, args.tokens, args.dim, args.seed)
        size_gb = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e9
        print(f"wrote {len(ids)} examples of ~{args.tokens}x{args.dim} float16 both ways "
              f"({size_gb:.2f} GB in all) in {time.perf_counter() - t0:.1f} s")
        warm(folder)
        store = FeatureStore.open(folder / "store")
        rng = random.Random(args.seed)
        batches = [rng.sample(range(len(ids)), args.batch_size) for _ in range(args.batches)]

        # One untimed pass each (maps the store's pages, loads torch.load's code paths).
        for numbers in batches[:3]:
            store.batch([ids[n] for n in numbers])
            load_pt_batch(folder / "pt", numbers)

        buffer = torch.empty((args.batch_size, args.tokens + 60, args.dim), dtype=torch.float16)

        def store_fresh(numbers):
            return store.batch([ids[n] for n in numbers])

        def store_reused(numbers):
            return store.batch([ids[n] for n in numbers], out=buffer)

        def pt_files(numbers):
            return load_pt_batch(folder / "pt", numbers)

        # The machine may be shared: interleave rounds and keep each approach's best.
        best = {"store": 0.0, "store_reused": 0.0, "pt": 0.0}
        for _ in range(args.rounds):
            for name, load in (("store", store_fresh), ("store_reused", store_reused), ("pt", pt_files)):
                t0 = time.perf_counter()
                for numbers in batches:
                    features, mask = load(numbers)
                best[name] = max(best[name], len(batches) / (time.perf_counter() - t0))
        features, mask = store_fresh(batches[0])
        pt_features, pt_mask = pt_files(batches[0])
        assert torch.equal(features, pt_features) and torch.equal(mask, pt_mask)  # same data

        print(f"padded batches of {args.batch_size} per second, warm page cache, "
              f"best of {args.rounds} interleaved rounds of {len(batches)} batches:")
        print(f"  feature store, new batch array        : {best['store']:8.1f} batches/s")
        print(f"  feature store, reused batch buffer    : {best['store_reused']:8.1f} batches/s")
        print(f"  one .pt per example, torch.load each  : {best['pt']:8.1f} batches/s")
        print(f"  ratio: {best['store'] / best['pt']:.1f}x new array, "
              f"{best['store_reused'] / best['pt']:.1f}x reused buffer (target >= 10x)")
    finally:
        if not args.folder:
            shutil.rmtree(folder, ignore_errors=True)

    view = TeacherViewConfig()
    side = view.frame_px
    frames = 2 * view.max_demos + 1
    ours, original = eagle_sequence_tokens([(side, side)] * frames), eagle_sequence_tokens([(900, 900)] * 2)
    print("Eagle tokens per example (GR00T backbone sequence length, approximate):")
    print(f"  default view: {frames} frames of {side} px x {eagle_image_tokens(side, side)} tokens "
          f"+ text = {ours}")
    print(f"  original    : 2 frames of 900 px x {eagle_image_tokens(900, 900)} tokens + text = {original}")
    print(f"  per image {eagle_image_tokens(900, 900) // eagle_image_tokens(side, side)}x fewer tokens; "
          f"per example {original / ours:.1f}x fewer, with {view.max_demos} demonstration pairs "
          f"instead of the answer")


if __name__ == "__main__":
    main()
