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
    alone = {k: v[1:] for k, v in collated.items() if k != "example_ids"}
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
