"""The CUDA paths, checked on a real GPU in one short run (device time is scarce).

    python bench/gpu_check.py --out DIR [--workspace DIR]

1. feature extraction on the GPU (built-in teacher, 2048-dim features like GR00T's);
2. the `sage-seed` student (the original 44M architecture) trained from those features
   with bf16 autocast, and the `standalone` student distilled from them: examples/s and
   torch allocated / reserved / peak memory, as the engine logs them;
3. NVML while an engine trains: per-process GPU memory, our engine's pid among them,
   and the engine's own system samples in the database;
4. a real CUDA out-of-memory (the run's GPU share capped with gpu_memory_fraction):
   the run must end failed with an `oom` event holding the memory figures and a hint;
5. evaluation on the GPU with test-time voting, and single-grid inference latency
   (the original student took 652 ms per grid);
6. the dashboard's system screen rendered headless against the real GPU, while an
   engine trains.
7. GR00T N1.5 at full size with random weights in bf16 (where ``gr00t`` imports: a GR00T
   environment with a CUDA torch, e.g. .venv-gr00t built with a CUDA TORCH_PIP_ARGS, and
   GR00T_SRC or an installed gr00t): extraction through the real teacher on ARC-AGI-1
   training tasks at batch sizes 1, 8, 32: examples/s, tokens per example, peak memory.
   ``--gr00t-only`` runs just this part.

``--learning`` runs only what the learning issue needs from a GPU, in a few minutes:
8. the standalone/base student's training throughput with PyTorch's fused attention
   kernels (what scaled_dot_product_attention picks) against the unfused math kernel,
   same device, batches and bf16 autocast: examples/s and peak memory;
9. the per-task student (test-time training) on the GPU against one CPU thread: seconds
   per task, and whether both answer alike;
10. test-time training through the engine on a random sample of the 400 ARC-AGI-1
   evaluation tasks with a worker per core sharing the GPU, without and with NVIDIA's
   Multi-Process Service (MPS: kernels of several processes run at once); the faster
   set-up is written to ``--choice FILE`` for the full run (bench/arc_generalise.py
   --set arc1-eval --device cuda).
   ``--learning --all-400`` runs 8, then that full run (the default, rule student included,
   all 400 tasks under MPS, stopped after 8 minutes) in place of 9 and 10: one device call.

Prints a summary and writes gpu_check.json (and a screenshot) to --out.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from db.store import Store  # noqa: E402
from db.sysinfo import gpus  # noqa: E402

RESULTS: dict = {}


def engine(workspace: Path, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args, "--workspace", str(workspace)],
                          capture_output=True, text=True, timeout=timeout)


def train_in_background(workspace: Path, settings: dict) -> tuple[subprocess.Popen, int]:
    with Store.open(workspace) as store:
        before = {r.id for r in store.list_runs()}
    args = []
    for key, value in settings.items():
        args += ["--set", f"{key}={value}"]
    proc = subprocess.Popen([sys.executable, "-m", "engine", "train", *args, "--workspace", str(workspace)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    while True:
        with Store.open_readonly(workspace) as store:
            new = [r.id for r in store.list_runs() if r.id not in before]
        if new:
            return proc, new[0]
        time.sleep(0.2)


def summarise_run(workspace: Path, run_id: int, label: str) -> dict:
    with Store.open_readonly(workspace) as store:
        run = store.get_run(run_id)
        def values(key):
            return store.read_metrics_after(run_id, key).values
        speed = sorted(values("examples_per_s"))
        figures = {
            "status": run.status, "message": run.message, "device": run.device, "steps": run.step,
            "median_examples_per_s": speed[len(speed) // 2] if speed else None,
            "loss_first_last": [values("loss")[0], values("loss")[-1]] if values("loss") else None,
            "torch_allocated_mb": max(values("torch_allocated_mb"), default=None),
            "torch_reserved_mb": max(values("torch_reserved_mb"), default=None),
            "torch_peak_mb": max(values("torch_peak_mb"), default=None),
            "gpu0_mem_used_mb_samples": [v for _, v in store.system_series(run_id, "gpu0_mem_used_mb")][-3:],
            "events": [f"{e.kind}: {e.message}" for e in store.events(run_id)],
        }
    RESULTS[label] = figures
    print(f"\n== {label} (run {run_id}) ==")
    for key, value in figures.items():
        if key != "events":
            print(f"  {key:28s} {value}")
    for event in figures["events"]:
        print(f"  event: {event[:160]}")
    return figures


def nvml_while_training(proc: subprocess.Popen, run_id: int, workspace: Path) -> None:
    """Sample NVML a few times while the engine trains; find our engine's pid."""
    seen = []
    for _ in range(20):
        if proc.poll() is not None:
            break
        for gpu in gpus():
            seen.append({"gpu": gpu.index, "name": gpu.name, "util_pct": gpu.util_pct,
                         "mem_used_mb": gpu.mem_used_mb, "mem_total_mb": gpu.mem_total_mb,
                         "temp_c": gpu.temp_c, "power_w": gpu.power_w,
                         "processes": [(p.pid, round(p.used_mb)) for p in gpu.processes]})
        time.sleep(0.5)
    with Store.open_readonly(workspace) as store:
        engine_pid = store.get_run(run_id).pid
    found = any(engine_pid == pid for s in seen for pid, _ in s["processes"])
    RESULTS["nvml"] = {"samples": seen[-3:], "engine_pid": engine_pid, "engine_pid_in_nvml": found}
    print("\n== NVML while training ==")
    for sample in seen[-2:]:
        print(f"  {sample}")
    print(f"  engine pid {engine_pid} listed among GPU processes: {found} "
          f"(empty process lists are normal in containers without the host's pid namespace)")


def inference_latency(workspace: Path, run_id: int, label: str) -> None:
    import torch

    from engine.arc import load_dataset, select_tasks
    from engine.checkpoints import load_state
    from engine.evaluate import load_student
    from engine.features import open_store_for_training
    from engine.predict import predict_grids

    device = torch.device("cuda")
    with Store.open_readonly(workspace) as store:
        checkpoint = store.checkpoints(run_id)[-1]
    state = load_state(workspace / checkpoint.path)
    model = load_student(state, device)
    dataset = load_dataset("arc1/train")
    tasks = select_tasks(dataset.tasks, max_tasks=20)
    features = None
    if state["student"]["kind"] == "sage-seed":
        features = open_store_for_training(workspace, state["config"]["features"], dataset)
    query = [(tasks[0], "test", 0)]
    for _ in range(5):
        predict_grids(model, query, 3, device, features)
    torch.cuda.synchronize()
    times = []
    for _ in range(30):
        start = time.perf_counter()
        predict_grids(model, query, 3, device, features)
        torch.cuda.synchronize()
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    RESULTS[f"{label}_latency_ms"] = times[len(times) // 2]
    print(f"  {label}: one grid, batch 1, median {times[len(times) // 2]:.1f} ms "
          f"(original student: 652 ms)")


def dashboard_screenshot(workspace: Path, out: Path) -> None:
    """The real dashboard, headless, on its system screen while an engine trains."""
    import asyncio

    from sage_tui.app import SageApp

    async def shoot() -> None:
        app = SageApp(workspace)
        async with app.run_test(size=(120, 40)) as pilot:
            await pilot.pause(1.0)
            await pilot.press("y")  # the system screen
            await pilot.pause(6.0)
            app.save_screenshot(filename="system_screen.svg", path=str(out))

    asyncio.run(shoot())
    print(f"\n== dashboard system screen saved to {out / 'system_screen.svg'} ==")


def attention_throughput(batch_sizes=(16, 64), steps=20, max_tokens=2000) -> None:
    """Training steps of the standalone/base student, with the fused attention kernels
    that scaled_dot_product_attention picks by default, then with the math kernel alone,
    on queries of at most ``max_tokens`` tokens (3 demonstrations, as training reads them)."""
    from contextlib import nullcontext

    import torch
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from engine.arc import load_dataset
    from engine.encoding import batch_to, build_example, collate
    from engine.losses import task_loss
    from engine.student import build_student

    print("\n== standalone/base training throughput: fused against unfused attention ==")
    device = torch.device("cuda")
    tasks = load_dataset("arc1/train").tasks
    examples = [build_example(task, "train", i, max_demos=3) for task in tasks for i in range(len(task.train))]
    examples = [e for e in examples if len(e["tokens"]) <= max_tokens]
    figures = {}
    for batch_size in batch_sizes:
        batch = batch_to(collate(examples[:batch_size]), device)
        for label, backends in (("fused", None), ("math", [SDPBackend.MATH])):
            torch.manual_seed(0)
            model = build_student("standalone", "base").to(device).train()
            optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            key = f"{label}_batch_{batch_size}"
            try:
                with sdpa_kernel(backends) if backends else nullcontext():
                    for step in range(steps + 3):          # 3 warm-up steps
                        if step == 3:
                            torch.cuda.synchronize()
                            start = time.perf_counter()
                        with torch.autocast("cuda", dtype=torch.bfloat16):
                            loss = task_loss(model(batch).logits.float(), batch["target"])
                        optimizer.zero_grad(set_to_none=True)
                        loss.backward()
                        optimizer.step()
                    torch.cuda.synchronize()
                figures[key] = {
                    "examples_per_s": round(steps * batch_size / (time.perf_counter() - start), 1),
                    "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2),
                    "longest_tokens": int(batch["tokens"].shape[1])}
            except torch.cuda.OutOfMemoryError:
                figures[key] = {"examples_per_s": None, "out_of_memory": True,
                                "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
            print(f"  {label:5s} batch {batch_size:>3}: {figures[key]}")
            del model, optimizer
            loss = None
            torch.cuda.empty_cache()
        fused, math = figures[f"fused_batch_{batch_size}"], figures[f"math_batch_{batch_size}"]
        if fused["examples_per_s"] and math["examples_per_s"]:
            figures[f"speedup_batch_{batch_size}"] = round(fused["examples_per_s"] / math["examples_per_s"], 2)
            print(f"  batch {batch_size}: fused attention {figures[f'speedup_batch_{batch_size}']}x the math kernel")
    RESULTS["attention"] = figures


def pertask_on_gpu(task_ids=("00576224", "0934a4d8"), steps=300) -> None:
    """One per-task student per task (one model, ``steps`` steps), on the GPU and on one
    CPU thread: the time each takes, and whether their attempts agree (float sums differ
    between devices, so a near tie may go either way)."""
    import torch

    from engine.arc import load_dataset
    from engine.pertask import PerTaskSettings, solve_task

    print("\n== per-task student: GPU against one CPU thread ==")
    torch.set_num_threads(1)
    tasks = {t.id: t for t in load_dataset("arc1/eval").tasks}
    figures = {}
    for task_id in task_ids:
        task = tasks[task_id]
        demos, inputs = [(p.input, p.output) for p in task.train], [p.input for p in task.test]
        answers = {}
        for device in ("cuda", "cpu"):
            solve_task(demos[:1], inputs[:1], PerTaskSettings(steps=2, models=1, device=device))  # warm-up
            solution = solve_task(demos, inputs, PerTaskSettings(steps=steps, models=1, device=device))
            answers[device] = solution.attempts
            figures[f"{task_id}_{device}_s"] = round(solution.seconds, 2)
        figures[f"{task_id}_same_attempts"] = all(
            np.array_equal(a, b) for gpu, cpu in zip(answers["cuda"], answers["cpu"]) for a, b in zip(gpu, cpu))
        print(f"  {task_id} ({max(max(p.input.shape + p.output.shape) for p in task.train)} cells wide), "
              f"{steps} steps: GPU {figures[f'{task_id}_cuda_s']} s, CPU thread {figures[f'{task_id}_cpu_s']} s, "
              f"same attempts: {figures[f'{task_id}_same_attempts']}")
    RESULTS["pertask"] = figures


SAMPLE_TIMEOUT_S = 120   # a set-up slower than this on the sample could not do the 400 in 10 minutes
ALL_400_TIMEOUT_S = 480  # the GPU target: all 400 within 10 minutes, with room left in one device call


def end_process_group(process: subprocess.Popen) -> None:
    """Stop a process started in its own session and everything it started (asked first,
    then killed), and no other process on the machine."""
    try:
        os.killpg(process.pid, signal.SIGTERM)
        process.communicate(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    try:
        os.killpg(process.pid, signal.SIGKILL)   # workers that outlived their engine
    except ProcessLookupError:
        pass
    process.communicate()


def ttt_on_gpu(sample: int | None, workers: int, setups: tuple[str, ...], timeout: int,
               choice: Path | None = None) -> None:
    """Test-time training through the engine (the default: three students and the rule
    student) on a random sample of the 400 tasks, or on all 400 (``sample`` None), with
    ``workers`` worker processes sharing the GPU, in each set-up: ``cuda`` (the workers
    take turns on the GPU) or ``cuda+mps`` (NVIDIA's Multi-Process Service runs)."""
    what = f"{sample} random tasks of the 400" if sample else "all 400 tasks"
    print(f"\n== test-time training, {what}, {workers} workers ==")
    bench = Path(__file__).resolve().parent / "arc_generalise.py"
    tasks = ["--sample", str(sample), "--sample-seed", "7"] if sample else []
    figures = {}
    for setup in setups:
        mps = setup.endswith("+mps")
        if mps and subprocess.run("nvidia-cuda-mps-control -d", shell=True).returncode != 0:
            figures[setup] = "MPS did not start"
            print(f"  {setup}: MPS did not start")
            continue
        # Its own process group: the bench, its engine and the engine's workers end together.
        start = time.perf_counter()
        bench_process = subprocess.Popen(
            [sys.executable, str(bench), "--set", "arc1-eval", *tasks,
             "--workers", str(workers), "--device", setup.split("+")[0],
             "--workspace", tempfile.mkdtemp(prefix=f"ttt-{setup}-")],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
        try:
            stdout, stderr = bench_process.communicate(timeout=timeout)
            wall = time.perf_counter() - start
            row = next((line for line in stdout.splitlines() if line.startswith("| arc1-eval")), None)
            figures[setup] = {"wall_s": round(wall, 1), "exit": bench_process.returncode, "row": row,
                              "tail": (stdout + stderr)[-600:] if bench_process.returncode else "",
                              "report": stdout[-3000:] if not sample else ""}
        except subprocess.TimeoutExpired:
            figures[setup] = {"wall_s": None, "exit": f"timed out after {timeout} s"}
            end_process_group(bench_process)
        finally:
            if mps:
                subprocess.run("echo quit | nvidia-cuda-mps-control", shell=True)
        print(f"  {setup}: {figures[setup]}")
    if choice is not None:
        timed = {k: v["wall_s"] for k, v in figures.items() if isinstance(v, dict) and v.get("exit") == 0}
        best = min(timed, key=timed.get) if timed else "cpu"   # no GPU set-up finished in time
        figures["fastest"] = best
        choice.write_text(best)
        print(f"  fastest: {best} (written to {choice})")
    RESULTS["ttt_all_400" if sample is None else "ttt_sample"] = figures


GR00T_BATCH_SIZES = (1, 8, 32)
GR00T_TESTS = Path(__file__).resolve().parents[1] / "tests" / "gr00t"


def gr00t_full_size(workspace: Path) -> None:
    """The full-size GR00T N1.5 (random weights, bf16) through the real gr00t teacher."""
    import torch

    sys.path[:0] = [str(GR00T_TESTS / "stand_ins"), str(GR00T_TESTS)]   # the pytorch3d stand-in
    if os.environ.get("GR00T_SRC"):
        sys.path.insert(0, os.environ["GR00T_SRC"])
    import torchvision_ops_stand_in  # noqa: F401  (does nothing beside a CUDA torch)
    from random_gr00t import save_random_gr00t

    from engine.arc import all_queries, load_dataset
    from engine.teacher_view import build_teacher_view
    from engine.teachers import TeacherError, make_teacher

    print("\n== GR00T N1.5, full size, random weights, bf16 ==")
    folder = workspace / "GR00T-N1.5-random"
    start = time.perf_counter()
    try:
        save_random_gr00t(folder, tiny=False, device="cuda")
        teacher = make_teacher("gr00t", model_path=str(folder), device="cuda")
    except TeacherError as exc:
        RESULTS["gr00t"] = {"skipped": str(exc)}
        print(f"  skipped: {exc}")
        return
    figures: dict = {"build_and_load_s": round(time.perf_counter() - start, 1),
                     "attn_implementation": teacher.attn_implementation,
                     "feature_dim": teacher.feature_dim,
                     "parameters_b": round(sum(p.numel() for p in teacher.policy.model.parameters()) / 1e9, 2)}
    queries = all_queries(load_dataset("arc1/train").tasks)
    views = [build_teacher_view(task, kind, index) for task, kind, index in queries]
    # A video batch has one frame count: use the views with the commonest (5 frames by default).
    frames = max({v.frames.shape[0] for v in views}, key=lambda t: sum(v.frames.shape[0] == t for v in views))
    views = [v for v in views if v.frames.shape[0] == frames]
    teacher.encode(views[:2])                                         # warm-up
    for batch_size in GR00T_BATCH_SIZES:
        batches = [views[i:i + batch_size] for i in range(0, 4 * batch_size, batch_size)]
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        tokens, start = [], time.perf_counter()
        for batch in batches:
            _, mask = teacher.encode(batch)
            tokens += mask.sum(1).tolist()
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - start
        figures[f"batch_{batch_size}"] = {
            "examples_per_s": round(len(tokens) / elapsed, 2),
            "tokens_per_example": round(sum(tokens) / len(tokens), 1),
            "frames_per_example": frames,
            "peak_memory_gb": round(torch.cuda.max_memory_allocated() / 2**30, 2)}
        print(f"  batch {batch_size:>2}: {figures[f'batch_{batch_size}']}")
    RESULTS["gr00t"] = figures
    print(f"  {figures['parameters_b']}B parameters, {figures['attn_implementation']}, "
          f"built and loaded in {figures['build_and_load_s']} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=".")
    parser.add_argument("--workspace", default=None)
    parser.add_argument("--gr00t-only", action="store_true",
                        help="only the full-size GR00T N1.5 extraction (part 7)")
    parser.add_argument("--learning", action="store_true",
                        help="only the learning issue's parts (8-10): attention throughput, the per-task "
                             "student on the GPU, test-time training on a sample of tasks")
    parser.add_argument("--all-400", action="store_true",
                        help="with --learning: after the attention throughput, the default test-time "
                             "training on all 400 ARC-AGI-1 evaluation tasks under MPS (about 6 minutes on "
                             "an H100), instead of the per-task and sample parts")
    parser.add_argument("--sample", type=int, default=48, help="--learning: tasks in the sample")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="--learning: worker processes")
    parser.add_argument("--choice", default="/tmp/sage_ttt_choice", help="--learning: where the fastest set-up goes")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    workspace = Path(args.workspace or tempfile.mkdtemp(prefix="sage-gpu-"))
    Store.open(workspace).close()

    import torch

    RESULTS["torch"] = torch.__version__
    RESULTS["cuda"] = torch.version.cuda
    RESULTS["gpu"] = torch.cuda.get_device_name(0)
    print(f"torch {torch.__version__}, CUDA {torch.version.cuda}, {torch.cuda.get_device_name(0)}, "
          f"bf16 {torch.cuda.is_bf16_supported()}")
    if args.gr00t_only:
        gr00t_full_size(workspace)
        write_results(out)
        return
    if args.learning:
        parts = [("attention", attention_throughput)]
        if args.all_400:
            parts.append(("ttt_all_400", lambda: ttt_on_gpu(None, args.workers, ("cuda+mps",), ALL_400_TIMEOUT_S)))
        else:
            parts += [("pertask", pertask_on_gpu),
                      ("ttt_sample", lambda: ttt_on_gpu(args.sample, args.workers, ("cuda", "cuda+mps"),
                                                        SAMPLE_TIMEOUT_S, Path(args.choice)))]
        for part, call in parts:
            try:
                call()
            except Exception as exc:  # one part failing must not cost the others' figures
                RESULTS[part] = {"error": f"{type(exc).__name__}: {exc}"}
                print(f"{part} failed: {type(exc).__name__}: {exc}")
            write_results(out)
        return

    start = time.perf_counter()
    result = engine(workspace, "extract", "--dataset", "arc1/train", "--teacher", "builtin",
                    "--teacher-option", "dim=2048", "--teacher-option", "device=cuda",
                    "--store", "gpu2048", "--max-tasks", "70", "--batch-size", "64")
    RESULTS["extract_s"] = time.perf_counter() - start
    print(f"\n== extraction: exit {result.returncode} in {RESULTS['extract_s']:.1f} s ==")
    print("\n".join(result.stderr.splitlines()[-3:]))

    common = {"max_tasks": 60, "max_grid": "", "features": "gpu2048", "device": "cuda",
              "batch_size": 16, "max_steps": 80, "val_tasks": 4, "val_every_steps": 40,
              "checkpoint_every_steps": 40, "lr": "3e-4"}
    proc, seed_run = train_in_background(workspace, {**common, "student": "sage-seed", "preset": "seed"})
    nvml_while_training(proc, seed_run, workspace)
    proc.wait(timeout=600)
    summarise_run(workspace, seed_run, "sage-seed/seed student, bf16")

    proc, base_run = train_in_background(workspace, {**common, "student": "standalone", "preset": "base",
                                                     "lr": "1e-3", "max_steps": 200})
    try:
        dashboard_screenshot(workspace, out)
    except Exception as exc:  # the other figures still count if the dashboard cannot run here
        RESULTS["system_screen_error"] = f"{type(exc).__name__}: {exc}"
        print(f"dashboard screenshot failed: {exc}")
    proc.wait(timeout=600)
    summarise_run(workspace, base_run, "standalone/base student distilled, bf16")

    proc, oom_run = train_in_background(workspace, {**common, "student": "sage-seed", "preset": "seed",
                                                    "batch_size": 512, "gpu_memory_fraction": 0.01})
    proc.wait(timeout=600)
    summarise_run(workspace, oom_run, "real CUDA OOM (GPU share capped at 1%)")

    print("\n== inference latency ==")
    inference_latency(workspace, seed_run, "sage-seed/seed")
    inference_latency(workspace, base_run, "standalone/base")

    with Store.open_readonly(workspace) as store:
        checkpoint = store.checkpoints(base_run)[-1]
    start = time.perf_counter()
    result = engine(workspace, "eval", "--checkpoint", str(checkpoint.id), "--dataset", "arc1/eval",
                    "--max-tasks", "100", "--tta-votes", "8")
    RESULTS["eval_s"] = time.perf_counter() - start
    RESULTS["eval_stdout"] = result.stdout.strip()
    print(f"\n== eval on GPU, 100 tasks x 8 votes: exit {result.returncode} in {RESULTS['eval_s']:.1f} s ==")
    print(result.stdout.strip() or result.stderr[-1500:])

    try:
        gr00t_full_size(workspace)
    except Exception as exc:  # the other figures still count if GR00T cannot run here
        RESULTS["gr00t"] = {"error": f"{type(exc).__name__}: {exc}"}
        print(f"GR00T N1.5 check failed: {exc}")
    write_results(out)


def write_results(out: Path) -> None:
    (out / "gpu_check.json").write_text(json.dumps(RESULTS, indent=2, default=str))
    print(f"\nwrote {out / 'gpu_check.json'}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
