"""A frozen workspace for dashboard tests and snapshots: runs of every kind and status,
metrics, events, system samples and a log with a traceback, at fixed times. No engine
process is involved; the one "running" run lives on another host, so its liveness is
judged by its heartbeat against the frozen clock alone."""

from __future__ import annotations

import math
from pathlib import Path

from db.store import Store

FROZEN_NOW = 1_750_000_000.0   # 2025-06-15 15:06:40 UTC
OTHER_HOST = "gpu-box-7"
TRAIN_KEYS = ("loss", "loss_task", "loss_mse", "loss_cosine", "train_cell_acc", "train_fg_acc", "train_exact",
              "lr", "grad_norm", "examples_per_s", "epoch")
OOM_LOG = """\
2025-06-15 14:01:02 INFO engine: run 4 started on cuda:0
2025-06-15 14:03:10 INFO engine: step 120 loss 1.234
Traceback (most recent call last):
  File "/work/main/engine/train.py", line 210, in train_job
    loss.backward()
torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB
2025-06-15 14:03:11 ERROR engine: run failed
"""


def _train_rows(steps: int, t0: float, seed: float = 0.0, steps_per_epoch: int = 50):
    rows = []
    for step in range(1, steps + 1):
        wall = t0 + step * 2.0
        decay = math.exp(-step / (steps / 3))
        wiggle = 0.05 * math.sin(step * 0.7 + seed)
        values = {
            "loss": 2.5 * decay + 0.2 + wiggle, "loss_task": 2.0 * decay + 0.15 + wiggle,
            "loss_mse": 0.3 * decay + 0.02, "loss_cosine": 0.2 * decay + 0.03,
            "train_cell_acc": 0.95 - 0.6 * decay + wiggle / 5, "train_fg_acc": 0.9 - 0.7 * decay,
            "train_exact": max(0.0, 0.5 - 0.5 * decay), "lr": 3e-3 * min(1.0, step / 20) * (1 - step / (steps * 1.1)),
            "grad_norm": 1.0 + decay + abs(wiggle) * 4, "examples_per_s": 120 + 10 * math.sin(step / 9),
            "epoch": step / steps_per_epoch,
        }
        rows.extend((key, step, values[key], wall) for key in TRAIN_KEYS)
        if step % 100 == 0:
            rows.append(("val_pass2", step, min(1.0, 0.1 + step / steps * 0.4 + seed / 10), wall))
            rows.append(("val_cell_acc", step, 0.8 - 0.4 * decay, wall))
            rows.append(("val_baseline_cell_acc", step, 0.55, wall))
    return rows


def build_frozen_workspace(path: str | Path, now: float = FROZEN_NOW) -> Path:
    workspace = Path(path)
    with Store.open(workspace) as store:
        finished = store.create_run("baseline-tiny", "train", {"epochs": 8, "preset": "tiny", "lr": 0.003})
        store.update_run(finished.id, status="finished", started_at=now - 7200, ended_at=now - 6400,
                         heartbeat_at=now - 6400, step=400, total_steps=400, epoch=8.0, progress=1.0,
                         device="cpu")
        store.append_metrics(finished.id, _train_rows(400, now - 7200))
        store.add_event(finished.id, "started", "run started on cpu")
        store.add_event(finished.id, "checkpoint", "checkpoint at step 200")
        store.add_event(finished.id, "finished", "run finished")
        for step, score, reason in ((200, 0.45, "periodic"), (400, 0.5, "final")):
            checkpoint = store.add_checkpoint(finished.id, step, step / 50, f"runs/0001/checkpoints/step{step}.pt",
                                              1_400_000, {"val_pass2": score, "val_pass1": score - 0.1,
                                                          "val_cell_acc": 0.8}, reason)
            store.conn.execute("UPDATE checkpoints SET created_at = ? WHERE id = ?",
                               (now - 7200 + step * 2, checkpoint))

        running = store.create_run("distill-gr00t", "train",
                                   {"epochs": 20, "features": "arc1-gr00t", "student": "sage-seed"})
        store.update_run(running.id, status="running", pid=424242, host=OTHER_HOST,
                         proc_start_time=now - 3000, started_at=now - 3000, heartbeat_at=now - 2,
                         step=300, total_steps=1000, epoch=6.0, progress=0.3, eta_s=4200,
                         device="cuda:0")
        store.append_metrics(running.id, _train_rows(300, now - 3000, seed=1.0))
        for i in range(60):
            store.add_system_samples(running.id, {
                "cpu_pct": 30 + 20 * math.sin(i / 5), "ram_used_gb": 40 + i / 10, "ram_total_gb": 128,
                "gpu0_util_pct": 80 + 15 * math.sin(i / 3), "gpu0_mem_used_mb": 60_000 + 100 * i,
                "gpu0_mem_total_mb": 81_559, "torch_allocated_mb": 41_000, "torch_reserved_mb": 52_000,
                "torch_peak_mb": 58_000}, t=now - 300 + i * 5)

        extract = store.create_run("extract-arc1", "extract", {"dataset": "arc1/train", "teacher": "builtin"})
        store.update_run(extract.id, status="finished", started_at=now - 90000, ended_at=now - 89000,
                         heartbeat_at=now - 89000, step=1302, total_steps=1302, progress=1.0, device="cpu")

        failed = store.create_run("oom-crash", "train", {"batch_size": 512})
        store.update_run(failed.id, status="failed", started_at=now - 4000, ended_at=now - 3800,
                         heartbeat_at=now - 3800, step=120, total_steps=1000, epoch=2.4,
                         progress=0.12, device="cuda:0", message="CUDA out of memory")
        store.append_metrics(failed.id, _train_rows(120, now - 4000, seed=2.0))
        log = workspace / failed.log_path
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(OOM_LOG)
        store.add_event(failed.id, "oom", "CUDA out of memory at step 120")

        stopped = store.create_run("lr-sweep-1e-3", "train", {"lr": 0.001})
        store.update_run(stopped.id, status="stopped", started_at=now - 5000, ended_at=now - 4500,
                         heartbeat_at=now - 4500, step=200, total_steps=400, epoch=4.0,
                         progress=0.5, device="cpu", message="stopped by request")
        store.append_metrics(stopped.id, _train_rows(200, now - 5000, seed=3.0))

        queued = store.create_run("queued-next", "train", {})
        store.update_run(queued.id, created_at=now - 10)
    return workspace


class FrozenClock:
    """The dashboard's clock in tests: fixed, moved on by hand."""

    def __init__(self, now: float = FROZEN_NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now
