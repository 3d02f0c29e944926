"""The teacher view: what a teacher sees, and proof that a query's output never enters it."""

import numpy as np
import pytest

from engine.arc import ArcTask, Pair
from engine.teacher_view import (ARC_PALETTE, OUTSIDE_COLOUR, TeacherViewConfig, build_teacher_view,
                                 eagle_image_tokens, eagle_sequence_tokens, render_grid)
from engine.teachers import make_teacher


def grid(rows):
    return np.asarray(rows, dtype=np.uint8)


def make_task(test_output=None, train_outputs=None):
    rng = np.random.default_rng(0)
    train_outputs = train_outputs or [rng.integers(0, 10, (4, 5)) for _ in range(3)]
    train = tuple(Pair(rng.integers(0, 10, (3, 3)).astype(np.uint8), grid(out)) for out in train_outputs)
    test_out = grid([[1, 2], [3, 4]]) if test_output is None else grid(test_output)
    return ArcTask("t1", train, (Pair(grid([[5, 6, 7]]), test_out),))


def with_output(task, kind, index, new_output):
    """The same task with one pair's output grid replaced."""
    pairs = list(task.pairs(kind))
    pairs[index] = Pair(pairs[index].input, grid(new_output))
    return ArcTask(task.id, tuple(pairs) if kind == "train" else task.train,
                   tuple(pairs) if kind == "test" else task.test)


def test_view_holds_demonstrations_then_the_query_input():
    task = make_task()
    config = TeacherViewConfig(max_demos=None)
    view = build_teacher_view(task, "train", 1, config)
    assert view.example_id == "t1/train/1" and view.n_demos == 2
    assert view.frames.shape == (5, 270, 270, 3) and view.frames.dtype == np.uint8
    # Frames: demo 0 in/out, demo 2 in/out (pair 1 is the query), then pair 1's input.
    expected = [task.train[0].input, task.train[0].output, task.train[2].input,
                task.train[2].output, task.train[1].input]
    for frame, g in zip(view.frames, expected):
        assert np.array_equal(frame, render_grid(g, config))
    test_view = build_teacher_view(task, "test", 0, config)
    assert test_view.n_demos == 3 and test_view.frames.shape[0] == 7


def test_max_demos_keeps_the_first_pairs():
    view = build_teacher_view(make_task(), "test", 0, TeacherViewConfig(max_demos=1))
    assert view.frames.shape[0] == 3


@pytest.mark.parametrize("kind,index", [("test", 0), ("train", 0), ("train", 2)])
def test_changing_the_query_output_changes_nothing_the_teacher_sees(kind, index):
    task = make_task()
    changed = with_output(task, kind, index, [[9] * 7] * 6)
    teacher = make_teacher("builtin", dim=32, seed=1)
    a, b = build_teacher_view(task, kind, index), build_teacher_view(changed, kind, index)
    assert a.frames.tobytes() == b.frames.tobytes() and a.prompt == b.prompt
    features_a, mask_a = teacher.encode([a])
    features_b, mask_b = teacher.encode([b])
    assert torch_equal(features_a, features_b) and torch_equal(mask_a, mask_b)


def test_changing_a_demonstration_output_does_change_the_view():
    """The leak test above could not pass by accident: demo outputs do reach the teacher."""
    task = make_task()
    changed = with_output(task, "train", 1, [[9] * 7] * 6)
    assert build_teacher_view(task, "test", 0).frames.tobytes() != \
        build_teacher_view(changed, "test", 0).frames.tobytes()


def torch_equal(a, b):
    return a.shape == b.shape and bool((a == b).all())


def test_rendering_uses_the_official_palette_and_marks_outside_cells():
    config = TeacherViewConfig(cell_px=4)
    image = render_grid(grid([[0, 1], [8, 9]]), config)
    assert image.shape == (120, 120, 3)
    assert tuple(image[0, 0]) == (0, 0, 0)
    assert tuple(image[0, 5]) == tuple(ARC_PALETTE[1]) == (0x00, 0x74, 0xD9)
    assert tuple(image[5, 0]) == (0x7F, 0xDB, 0xFF)
    assert tuple(image[7, 7]) == (0x87, 0x0C, 0x25)
    assert tuple(image[8, 8]) == OUTSIDE_COLOUR and tuple(image[0, 9]) == OUTSIDE_COLOUR
    lined = render_grid(grid([[1, 1]]), TeacherViewConfig(cell_px=4, grid_lines=True))
    assert tuple(lined[3, 0]) != tuple(ARC_PALETTE[1]) and tuple(lined[0, 0]) == tuple(ARC_PALETTE[1])


def test_default_frames_fit_one_eagle_tile():
    config = TeacherViewConfig()
    assert config.frame_px <= 289
    assert eagle_image_tokens(config.frame_px, config.frame_px) == 256
    assert eagle_image_tokens(400, 400) == 1280          # 2x2 + thumbnail
    assert eagle_image_tokens(900, 900) == 2560          # 3x3 + thumbnail
    # The original: two 900-px frames, about 5,160 tokens; default view: 5 frames, ~1,300.
    assert 5100 <= eagle_sequence_tokens([(900, 900)] * 2) <= 5200
    assert 1280 <= eagle_sequence_tokens([(270, 270)] * 5) <= 1400


def test_bad_view_settings_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="cell_px"):
        TeacherViewConfig(cell_px=0)
    with pytest.raises(ValueError, match="unknown teacher view settings: colour"):
        TeacherViewConfig.from_dict({"colour": 1})


def test_sequence_length_matches_the_real_eagle_processors_count():
    # Measured through GR00T's own processor in tests/gr00t: a default example (two
    # demonstration pairs and the query input: 5 one-tile frames) is 1,365 tokens.
    assert eagle_sequence_tokens([(270, 270)] * 5) == 1365
