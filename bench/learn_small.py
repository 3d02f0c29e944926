"""Proof that the whole path learns: the tiny standalone student, trained as a real run
on 10 ARC-AGI-1 training tasks whose grids are at most 10x10, must reach >= 90%
exact-match on those tasks' pairs (every train and test pair as a query) within
10 minutes on a 2-core CPU.

    .venv/bin/python bench/learn_small.py [--workspace DIR] [--steps 1500]

The run is an ordinary run in the workspace: open `sage-tui --workspace DIR` while it
trains to watch its curves.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db.store import Store  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", default=None, help="default: a temporary folder")
    parser.add_argument("--steps", type=int, default=1500)
    args = parser.parse_args()

    import torch

    from engine.arc import all_queries, load_dataset, select_tasks
    from engine.checkpoints import load_state
    from engine.evaluate import load_student
    from engine.predict import predict_grids
    from engine.runner import run_job
    from engine.train import train_job

    workspace = Path(args.workspace or tempfile.mkdtemp(prefix="sage-learn-"))
    config = {"max_tasks": 10, "max_grid": 10, "max_demos": 3, "student": "standalone",
              "preset": "tiny", "batch_size": 16, "lr": 4e-3, "warmup_steps": 20,
              "max_steps": args.steps, "epochs": 10_000, "val_tasks": 0,
              "checkpoint_every_steps": 100, "val_every_steps": 10**6}
    with Store.open(workspace) as store:
        run = store.create_run("learn-small", "train", config)
    print(f"workspace {workspace}, run {run.id}: training {args.steps} steps ...", flush=True)
    start = time.perf_counter()
    run_job(workspace, run.id, train_job)
    minutes = (time.perf_counter() - start) / 60

    with Store.open_readonly(workspace) as store:
        checkpoint = store.checkpoints(run.id)[-1]
    model = load_student(load_state(workspace / checkpoint.path), torch.device("cpu"))
    tasks = select_tasks(load_dataset("arc1/train").tasks, max_grid=10, max_tasks=10)
    queries = all_queries(tasks)
    predictions = predict_grids(model, queries, 3, torch.device("cpu"))
    solved = sum(p.shape == t.pairs(k)[i].output.shape and (p == t.pairs(k)[i].output).all()
                 for p, (t, k, i) in zip(predictions, queries))
    share = solved / len(queries)
    print(f"tasks: {', '.join(t.id for t in tasks)}")
    print(f"exact-match on those tasks' pairs : {solved}/{len(queries)} = {share:.1%}  (target >= 90%)")
    print(f"training time                     : {minutes:.1f} min for {checkpoint.step} steps  (target <= 10 min)")
    print("verdict:", "PASS" if share >= 0.9 and minutes <= 10 else "FAIL")


if __name__ == "__main__":
    main()
