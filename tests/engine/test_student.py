import numpy as np
import pytest
import torch

from engine.arc import ArcTask, Pair
from engine.encoding import CANVAS, NUM_CLASSES, build_example, collate
from engine.student import (PRESETS, SeedStudent, StandaloneStudent, build_student,
                            count_parameters)


def grid(rows):
    return np.asarray(rows, dtype=np.uint8)


@pytest.fixture
def batch():
    task = ArcTask("toy", (Pair(grid([[1, 2], [3, 4]]), grid([[4, 3], [2, 1]])),
                           Pair(grid([[5, 6, 7]]), grid([[7, 6, 5]]))),
                   (Pair(grid([[1, 0], [0, 1], [1, 1]]), grid([[1, 1]])),))
    examples = [build_example(task, "test", 0), build_example(task, "train", 1)]
    lengths = [len(e["tokens"]) for e in examples]
    teacher = {"teacher_features": np.random.default_rng(0).normal(size=(2, 7, 24)).astype(np.float32),
               "teacher_mask": np.array([[True] * 7, [True] * 4 + [False] * 3])}
    return collate(examples, teacher=teacher), lengths


@pytest.mark.parametrize("kind", ["standalone", "sage-seed"])
def test_both_students_give_canvas_logits_and_masked_hidden_states(kind, batch):
    collated, lengths = batch
    model = build_student(kind, "tiny", teacher_dim=24)
    output = model(collated)
    assert output.logits.shape == (2, CANVAS, CANVAS, NUM_CLASSES)
    assert torch.isfinite(output.logits).all()
    d_model = PRESETS["tiny"].d_model
    if kind == "standalone":
        assert output.hidden.shape == (2, max(lengths), d_model)
        assert output.hidden_mask.sum(1).tolist() == lengths
    else:
        assert output.hidden.shape == (2, 7, d_model)
        assert output.hidden_mask.sum(1).tolist() == [7, 4]
    assert model.distill_projection(output.hidden).shape[-1] == 24


def test_standalone_runs_without_a_teacher_and_ignores_padding(batch):
    collated, lengths = batch
    torch.manual_seed(0)
    model = build_student("standalone", "tiny").eval()
    assert model.distill_projection is None
    alone = {k: v[1:] for k, v in collated.items() if torch.is_tensor(v)}
    alone = {k: v[:, :lengths[1]] if v.dim() == 2 else v for k, v in alone.items()}
    with torch.no_grad():
        padded_logits = model(collated).logits[1]
        alone_logits = model(alone).logits[0]
    torch.testing.assert_close(padded_logits, alone_logits, atol=1e-4, rtol=1e-4)


def test_sage_seed_needs_teacher_features(batch):
    collated, _ = batch
    with pytest.raises(ValueError, match="teacher_dim"):
        build_student("sage-seed", "tiny")
    model = build_student("sage-seed", "tiny", teacher_dim=24)
    without_teacher = {k: v for k, v in collated.items() if not k.startswith("teacher")}
    with pytest.raises(ValueError, match="teacher_features"):
        model(without_teacher)


def test_seed_preset_matches_the_original_sage_size():
    model = build_student("sage-seed", "seed", teacher_dim=2048)
    assert isinstance(model, SeedStudent)
    # 44.1M in the original with 10 classes; the 11th ("outside") class adds 0.9M.
    assert 44_000_000 < count_parameters(model) < 47_000_000
    projection = 512 * 2048 + 2048
    assert count_parameters(model, include_distillation=True) == count_parameters(model) + projection


def test_overrides_and_bad_names():
    model = build_student("standalone", "tiny", d_model=32, num_layers=1)
    assert isinstance(model, StandaloneStudent)
    assert model.config.d_model == 32 and len(model.encoder.layers) == 1
    with pytest.raises(ValueError, match="standalone"):
        build_student("giant", "tiny")
    with pytest.raises(ValueError, match="tiny"):
        build_student("standalone", "huge")
    with pytest.raises(ValueError, match="override"):
        build_student("standalone", "tiny", no_such_field=1)


def test_the_recursive_student_refines_its_answer_with_deep_supervision():
    import torch
    from engine.arc import load_dataset, select_tasks
    from engine.encoding import build_example, collate
    from engine.losses import combined_loss
    from engine.student import build_student

    task = select_tasks(load_dataset("arc1/train").tasks, max_grid=6)[0]
    batch = collate([build_example(task, "train", 0), build_example(task, "test", 0)])
    model = build_student("recursive", "tiny", cycles=3)
    out = model(batch)
    assert out.logits.shape == (2, 30, 30, 11) and len(out.earlier_logits) == 2
    # Every refinement is supervised: the loss reaches the answer of the first one.
    loss = combined_loss(out, batch)["loss"]
    first = out.earlier_logits[0]
    first.retain_grad()
    loss.backward()
    assert first.grad is not None and first.grad.abs().sum() > 0
    assert not torch.equal(out.earlier_logits[0], out.logits)


def _toy_tasks():
    from engine.arc import load_dataset, select_tasks
    return select_tasks(load_dataset("arc1/train").tasks, max_grid=6)[:3]


@pytest.mark.parametrize("kind", ["standalone", "recursive"])
def test_a_task_embedding_is_a_row_per_training_task_added_to_the_input(kind):
    from engine.student import build_from_spec, student_spec

    tasks = _toy_tasks()
    batch = collate([build_example(t, "test", 0) for t in tasks])
    plain = build_student(kind, "tiny")
    assert not hasattr(plain, "task_vectors") and "task_ids" not in student_spec(plain, kind, "tiny")
    torch.manual_seed(0)
    model = build_student(kind, "tiny", task_ids=[t.id for t in tasks[:2]], task_embedding=8)
    assert model.task_vectors.shape == (2, 8)
    assert count_parameters(model) == count_parameters(plain) + 2 * 8 + 8 * PRESETS["tiny"].d_model
    with torch.no_grad():
        model.task_vectors.normal_()
    assert model(batch).logits.shape == (3, CANVAS, CANVAS, NUM_CLASSES)
    # The vector changes the answer: the same query read as another task differs.
    swapped = dict(batch, task_ids=[tasks[1].id, tasks[0].id, tasks[2].id])
    assert not torch.allclose(model(batch).logits[0], model(swapped).logits[0])
    # A task without a row (the third; or a batch naming none) reads the mean of the rows.
    expected = model.task_projection(model.task_vectors.mean(0))
    torch.testing.assert_close(model.task_inputs(batch, 3)[2], expected)
    torch.testing.assert_close(model.task_inputs({}, 2), expected.expand(2, -1))
    # Round trip through the checkpoint's spec and state.
    spec = student_spec(model, kind, "tiny")
    assert spec["task_ids"] == [t.id for t in tasks[:2]] and spec["task_embedding"] == 8
    again = build_from_spec(spec)
    again.load_state_dict(model.state_dict())
    torch.testing.assert_close(again(batch).logits, model(batch).logits)
    # A spec saved before task embeddings existed still builds a student.
    old = build_from_spec({"kind": kind, "preset": "tiny", "teacher_dim": 0})
    old.load_state_dict(plain.state_dict())


def test_training_moves_the_rows_of_the_tasks_trained_on_and_a_new_task_starts_at_the_mean():
    from engine.losses import combined_loss

    tasks = _toy_tasks()
    torch.manual_seed(0)
    model = build_student("standalone", "tiny", task_ids=[tasks[0].id, "never-seen"], task_embedding=8)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, weight_decay=0.0)
    batch = collate([build_example(tasks[0], "train", 0), build_example(tasks[0], "test", 0)])
    for _ in range(3):
        optimizer.zero_grad()
        combined_loss(model(batch), batch)["loss"].backward()
        optimizer.step()
    trained, untouched = model.task_vectors.detach()
    assert trained.abs().sum() > 0 and untouched.abs().sum() == 0
    # A task not trained on gets a row of its own at the mean, which training then moves.
    model.add_task("new")
    assert model.task_ids[-1] == "new" and model.task_vectors.shape == (3, 8)
    torch.testing.assert_close(model.task_vectors[2], (trained + untouched) / 2)
    new_batch = collate([build_example(replace_id(tasks[1], "new"), "train", 0)])
    combined_loss(model(new_batch), new_batch)["loss"].backward()
    assert model.task_vectors.grad[2].abs().sum() > 0 and model.task_vectors.grad[:2].abs().sum() == 0


def replace_id(task, task_id):
    from dataclasses import replace
    return replace(task, id=task_id)


def test_the_sage_seed_student_has_no_task_embedding():
    with pytest.raises(ValueError, match="no task embedding"):
        build_student("sage-seed", "tiny", teacher_dim=24, task_embedding=8)
